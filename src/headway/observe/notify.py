"""Notification channels: where alerts and deploy, rollback, canary and backup events are sent.

Every notice goes to every configured channel that wants its kind, all at once (one thread each), each bounded by
a timeout; a channel that fails never stops the others. Secrets (a bot token, an SMTP password, a header value) are
``${SECRET}`` references filled in by the caller's ``resolve_secret`` at send time, and never appear in an error.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from headway import __version__
from headway.config.base import REF, Strict
from headway.errors import ConfigError

Kind = Literal["alert", "resolved", "deploy", "rollback", "canary", "backup", "test", "scale"]
Severity = Literal["critical", "warning", "info"]
Event = Literal["alert", "deploy", "rollback", "canary", "backup", "test", "scale"]
KINDS: tuple[str, ...] = ("alert", "resolved", "deploy", "rollback", "canary", "backup", "test", "scale")
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
EVENTS: tuple[str, ...] = ("alert", "deploy", "rollback", "canary", "backup", "test", "scale")
CHANNEL_TYPES: tuple[str, ...] = ("webhook", "slack", "discord", "telegram", "ntfy", "email")

ResolveSecret = Callable[[str], str]

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_SENSITIVE_HEADER = re.compile(r"authorization|token|secret|key|password|passwd|signature|cookie", re.I)
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


# --- configuration -----------------------------------------------------------------------------------------------

def _has_ref(text: str) -> bool:
    return bool(REF.search(text))


def _check_url(what: str, url: str) -> str:
    """A literal http(s) URL with a host, or any text holding a ${SECRET} reference (checked once filled in)."""
    if _has_ref(url):
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL (or a ${{SECRET}} reference holding one)")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{what} has a port that is not a number") from None
    return url


def _filled(info: ValidationInfo) -> bool:
    """Validating channels whose secrets are already filled in (parse_channels(..., filled=True))?"""
    return isinstance(info.context, dict) and bool(info.context.get("filled"))


def _ref_only(what: str, example: str, value: str | None, info: ValidationInfo) -> str | None:
    if value is not None and not _filled(info) and not REF.fullmatch(value):
        raise ValueError(f"{what} must be a secret reference such as ${{{example}}}, never the value itself: "
                         f"put {example}=... in the secrets file and write ${{{example}}} here")
    return value


class _Channel(Strict):
    name: str | None = Field(None, description="shown in `headway alerts test` and in delivery errors; "
                             "default: the type")
    events: list[Event] | None = Field(None, description="only these kinds of notice (default: all); a resolved "
                                       "alert counts as `alert`")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", v):
            raise ValueError("a channel name is letters, digits, '.', '_' and '-' (at most 63)")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError(f"`events` lists at least one of: {', '.join(EVENTS)} (leave it out for all)")
        return v

    def wants(self, notice: Notice) -> bool:
        if self.events is None:
            return True
        return notice.event in self.events


class WebhookChannel(_Channel):
    """POST of the notice as JSON (see Notice.to_json) to any URL."""

    type: Literal["webhook"]
    url: str = Field(description="http(s) URL, literal or a ${SECRET} reference")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers; values may hold "
                                    "${SECRET} references, and must for Authorization, tokens and keys")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url("webhook `url`", v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, value in v.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"webhook header {name!r} is not a valid header name")
            if "\r" in value or "\n" in value:
                raise ValueError(f"webhook header {name}: a value is one line")
            if _SENSITIVE_HEADER.search(name) and not _has_ref(value) and not _filled(info):
                raise ValueError(f"webhook header {name} carries a credential: write it as a secret reference, "
                                 f"e.g. {name}: \"Bearer ${{WEBHOOK_TOKEN}}\", with WEBHOOK_TOKEN=... in the "
                                 "secrets file")
        return v


class SlackChannel(_Channel):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    url: str = Field(description="https://hooks.slack.com/services/..., literal or a ${SECRET} reference")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url("slack `url`", v)


class DiscordChannel(_Channel):
    """A Discord channel webhook."""

    type: Literal["discord"]
    url: str = Field(description="https://discord.com/api/webhooks/..., literal or a ${SECRET} reference")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url("discord `url`", v)


class TelegramChannel(_Channel):
    """A Telegram bot posting to a chat (sendMessage of the Bot API)."""

    type: Literal["telegram"]
    token: str = Field(description="the bot token: a ${SECRET} reference, e.g. ${TG_TOKEN}")
    chat: str = Field(description="chat id (e.g. -100123456) or @channelname")
    api: str = Field("https://api.telegram.org", description="Bot API base URL")

    @field_validator("chat", mode="before")
    @classmethod
    def _chat(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, str) and not v.strip():
            raise ValueError("telegram `chat` is a chat id such as -100123456 or @channelname")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: str, info: ValidationInfo) -> str:
        _ref_only("telegram `token`", "TG_TOKEN", v, info)
        return v

    @field_validator("api")
    @classmethod
    def _api(cls, v: str) -> str:
        return _check_url("telegram `api`", v)


class NtfyChannel(_Channel):
    """An ntfy topic (ntfy.sh or a server of your own)."""

    type: Literal["ntfy"]
    url: str = Field(description="the topic URL, e.g. https://ntfy.sh/shop-alerts")
    token: str | None = Field(None, description="access token for a protected topic: a ${SECRET} reference")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        _check_url("ntfy `url`", v)
        if not _has_ref(v) and urlsplit(v).path.strip("/") == "":
            raise ValueError("ntfy `url` names the topic, e.g. https://ntfy.sh/shop-alerts")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _ref_only("ntfy `token`", "NTFY_TOKEN", v, info)


class EmailChannel(_Channel):
    """Mail through an SMTP server (STARTTLS or TLS, AUTH with a username and password)."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["email"]
    to: list[str] = Field(min_length=1, description="recipient addresses")
    from_: str = Field(alias="from", description="sender address, e.g. alerts@example.com or "
                       "\"Shop alerts <alerts@example.com>\"")
    host: str = Field(description="SMTP server")
    port: int | None = Field(None, ge=1, le=65535, description="default 587 (465 with tls: true)")
    username: str | None = Field(None, description="plain or a ${SECRET} reference")
    password: str | None = Field(None, description="a ${SECRET} reference, e.g. ${SMTP_PASSWORD}")
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS (port 587)")
    tls: bool = Field(False, description="TLS from the first byte (port 465)")
    ca_file: str | None = Field(None, description="PEM file of the CA that signed the server's certificate, for a "
                                "server with a private CA (default: the system's)")

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        for addr in v:
            _address("email `to`", addr)
        return v

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        _address("email `from`", v)
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", v):
            raise ValueError("email `host` is the SMTP server's name or address, e.g. smtp.example.com")
        return v

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> EmailChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("email: give both `username` and `password`, or neither (a relay without AUTH)")
        _ref_only("email `password`", "SMTP_PASSWORD", self.password, info)
        if self.tls and self.starttls and "starttls" in self.model_fields_set:
            raise ValueError("email: `tls: true` (port 465) and `starttls: true` (port 587) exclude each other; "
                             "keep one")
        if (self.password is not None and not self.tls and not self.starttls
                and self.host.strip("[]") not in _LOCAL_HOSTS):
            raise ValueError("email: the password would cross the network in clear; set `starttls: true` "
                             "(port 587) or `tls: true` (port 465)")
        return self

    @property
    def smtp_port(self) -> int:
        if self.port is not None:
            return self.port
        return 465 if self.tls else 587

    @property
    def use_starttls(self) -> bool:
        return self.starttls and not self.tls


def _address(what: str, text: str) -> None:
    _, addr = parseaddr(text)
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", addr or ""):
        raise ValueError(f"{what}: {text!r} is not an email address such as ops@example.com")


Channel = Annotated[
    WebhookChannel | SlackChannel | DiscordChannel | TelegramChannel | NtfyChannel | EmailChannel,
    Field(discriminator="type"),
]

_CHANNELS: TypeAdapter[list[Channel]] = TypeAdapter(list[Channel])


def parse_channels(items: Sequence[Any], where: str = "channels", *, filled: bool = False) -> list[Channel]:
    """Validate a list of channel mappings (as read from headway.yml); ConfigError names each problem.

    `filled=True` takes channels whose ${SECRET} references were already filled in (e.g. a host's 0600 copy made
    from `model_dump(mode="json", by_alias=True)`): tokens and passwords are accepted as values then. They are
    still never shown in a delivery error.
    """
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{where} is a list of channels, e.g. [{{type: slack, url: \"${{SLACK_WEBHOOK}}\"}}]",
                          "write each channel as a `- type: ...` item")
    try:
        channels = _CHANNELS.validate_python(list(items), context={"filled": filled})
    except ValidationError as exc:
        lines = [_describe(err, items, where) for err in exc.errors()]
        raise ConfigError(f"{where}: {len(lines)} problem(s)\n" + "\n".join(f"  {ln}" for ln in lines),
                          "correct the channels above; docs/monitoring.md shows each type") from None
    labels = [c.name for c in channels if c.name is not None]
    twice = sorted({n for n in labels if labels.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: channel name {', '.join(twice)} is used twice",
                          "give each channel its own `name`")
    return channels


def _describe(err: Any, items: Sequence[Any], where: str) -> str:
    loc = list(err["loc"])
    kind = err["type"]
    index = loc[0] if loc and isinstance(loc[0], int) else None
    prefix = f"{where}[{index}]" if index is not None else where
    item = items[index] if index is not None and index < len(items) else None
    if kind == "union_tag_invalid":
        got = item.get("type") if isinstance(item, dict) else None
        return f"{prefix}: unknown channel type {got!r}; expected one of: {', '.join(CHANNEL_TYPES)}"
    if kind == "union_tag_not_found":
        return f"{prefix}: every channel needs a `type`, one of: {', '.join(CHANNEL_TYPES)}"
    if kind == "model_type" or (kind == "model_attributes_type" and len(loc) <= 1):
        return f"{prefix}: a channel is a mapping such as {{type: slack, url: \"${{SLACK_WEBHOOK}}\"}}"
    # loc: index, channel type (the union tag), field, ...
    keys = [str(p) for p in loc[2:]] if len(loc) > 2 else []
    dotted = ".".join(keys)
    label = f"{prefix}.{dotted}" if dotted else prefix
    if kind == "extra_forbidden":
        return f"{label}: unknown key"
    if kind == "missing":
        return f"{label}: required key is missing"
    return f"{label}: {str(err['msg']).removeprefix('Value error, ')}"


def channel_labels(channels: Sequence[Channel]) -> list[str]:
    """How each channel is called in deliveries: its name, else its type (type#N among several unnamed ones)."""
    unnamed = [c.type if c.name is None else None for c in channels]
    out = []
    for i, c in enumerate(channels):
        if c.name is not None:
            out.append(c.name)
        elif unnamed.count(c.type) > 1:
            out.append(f"{c.type}#{unnamed[:i + 1].count(c.type)}")
        else:
            out.append(c.type)
    return out


# --- notices -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    """One thing worth telling a person about: an alert firing or resolved, a deploy, a rollback, ..."""

    kind: Kind
    severity: Severity
    title: str
    text: str
    app: str
    environment: str
    release: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    url: str | None = None  # a dashboard or log page to open

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"notice kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"notice severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.time.tzinfo is None:
            raise ValueError("a notice's time carries its timezone (datetime.now(UTC))")

    @property
    def event(self) -> str:
        """The `events:` filter entry this notice counts as."""
        return "alert" if self.kind == "resolved" else self.kind

    @property
    def resolved(self) -> bool:
        return self.kind == "resolved"

    @property
    def fired_at(self) -> str:
        return self.time.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    @property
    def scope(self) -> str:
        return f"{self.app} {self.environment}"

    @property
    def headline(self) -> str:
        """One line: `[shop production] CRITICAL: Site down`."""
        if self.kind == "resolved":
            tag = "RESOLVED: "
        elif self.kind == "alert" and self.severity != "info":
            tag = f"{self.severity.upper()}: "
        else:
            tag = ""
        return f"[{self.scope}] {tag}{self.title}"

    def facts(self) -> list[tuple[str, str]]:
        """Name/value pairs shown under the text: app, environment, release, labels."""
        out = [("app", self.app), ("environment", self.environment)]
        if self.release:
            out.append(("release", self.release))
        out += [(str(k), str(v)) for k, v in sorted(self.labels.items())]
        return out

    def to_json(self) -> dict[str, Any]:
        """The body a `webhook` channel receives (documented in docs/monitoring.md)."""
        return {"kind": self.kind, "severity": self.severity, "title": self.title, "text": self.text,
                "app": self.app, "environment": self.environment, "release": self.release,
                "fired_at": self.fired_at, "resolved": self.resolved,
                "labels": {str(k): str(v) for k, v in self.labels.items()}, "url": self.url}


def test_notice(app: str, environment: str) -> Notice:
    """What `headway alerts test` sends to every channel."""
    return Notice(kind="test", severity="info", title="Test notice",
                  text=f"headway alerts test: if you can read this, notices for {app} {environment} reach this "
                       "channel.",
                  app=app, environment=environment, labels={"host": socket.gethostname()})

_COLOURS = {"critical": 0xD93025, "warning": 0xF29900, "info": 0x1A73E8}
_RESOLVED_COLOUR = 0x188038
_EMOJI = {"critical": "\U0001F534", "warning": "\U0001F7E0", "info": "\U0001F535"}
_NTFY_PRIORITY = {"critical": "5", "warning": "4", "info": "3"}
_NTFY_TAG = {"critical": "rotating_light", "warning": "warning", "info": "information_source"}


def _colour(notice: Notice) -> int:
    return _RESOLVED_COLOUR if notice.resolved else _COLOURS[notice.severity]


def _emoji(notice: Notice) -> str:
    return "\u2705" if notice.resolved else _EMOJI[notice.severity]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notice: Notice) -> dict[str, Any]:
    """Incoming-webhook body: `text` (the notification line) and one attachment coloured by severity."""
    head = f"{_emoji(notice)} {notice.headline}"
    body = _slack_escape(notice.text or notice.title)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, 3000)}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": _cut(_slack_escape(
                " \u00b7 ".join(f"{k}: {v}" for k, v in notice.facts()) + f" \u00b7 {notice.fired_at}"), 3000)}]},
    ]
    if notice.url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open dashboard"}, "url": notice.url}]})
    return {"text": _cut(head, 3000), "attachments": [{"color": f"#{_colour(notice):06x}", "blocks": blocks}]}


def discord_payload(notice: Notice) -> dict[str, Any]:
    """Webhook body: one embed coloured by severity; mentions in the text never ping anyone."""
    embed: dict[str, Any] = {
        "title": _cut(notice.title, 256),
        "description": _cut(notice.text, 4096),
        "color": _colour(notice),
        "fields": [{"name": _cut(k, 256), "value": _cut(v or "-", 1024), "inline": True}
                   for k, v in notice.facts()[:25]],
        "timestamp": notice.time.astimezone(UTC).isoformat(),
        "footer": {"text": f"headway \u00b7 {notice.kind}"},
    }
    if notice.url:
        embed["url"] = notice.url
    return {"content": _cut(f"{_emoji(notice)} {notice.headline}", 2000), "embeds": [embed],
            "allowed_mentions": {"parse": []}}


def telegram_text(notice: Notice) -> str:
    """The message, in Telegram's HTML parse mode."""
    lines = [f"{_emoji(notice)} <b>{html.escape(notice.headline, quote=False)}</b>"]
    if notice.text:
        lines.append(html.escape(notice.text, quote=False))
    lines.append("")
    lines += [f"<i>{html.escape(k, quote=False)}</i>: {html.escape(v, quote=False)}" for k, v in notice.facts()]
    if notice.url:
        lines.append(f'<a href="{html.escape(notice.url)}">Open dashboard</a>')
    text = "\n".join(lines)
    if len(text) > 4096:  # cut the plain text instead of breaking a tag
        text = html.escape(_cut(f"{notice.headline}\n{notice.text}", 4000), quote=False)
    return text


def plain_text(notice: Notice) -> str:
    lines = [notice.headline, ""]
    if notice.text:
        lines += [notice.text, ""]
    lines += [f"{k}: {v}" for k, v in notice.facts()]
    lines.append(f"time: {notice.fired_at}")
    if notice.url:
        lines.append(f"dashboard: {notice.url}")
    lines += ["", f"-- headway {notice.kind} notice"]
    return "\n".join(lines) + "\n"


def html_text(notice: Notice) -> str:
    colour = f"#{_colour(notice):06x}"
    rows = "".join(f"<tr><td style=\"padding:2px 12px 2px 0;color:#5f6368\">{html.escape(k)}</td>"
                   f"<td>{html.escape(v)}</td></tr>" for k, v in [*notice.facts(), ("time", notice.fired_at)])
    link = (f'<p><a href="{html.escape(notice.url)}">Open dashboard</a></p>' if notice.url else "")
    return ("<!doctype html><html><body style=\"font-family:sans-serif\">"
            f"<h2 style=\"border-left:6px solid {colour};padding-left:8px\">{html.escape(notice.headline)}</h2>"
            f"<p style=\"white-space:pre-wrap\">{html.escape(notice.text)}</p>"
            f"<table>{rows}</table>{link}"
            f"<p style=\"color:#5f6368;font-size:small\">headway {html.escape(notice.kind)} notice</p>"
            "</body></html>\n")


# --- delivery ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """How sending one notice to one channel went."""

    channel: str  # its name, else its type
    type: str
    ok: bool
    error: str | None
    seconds: float


class _SendFailed(Exception):
    """A delivery failure already described in words (secret values still to be redacted)."""


_GRACE = 0.5  # past the timeout, a channel still busy is given up on


def send_all(channels: Iterable[Channel], notice: Notice, resolve_secret: ResolveSecret,
             timeout: float = 10.0) -> list[Delivery]:
    """Send `notice` to every channel that wants it, in parallel; one Delivery per channel tried, in order.

    `resolve_secret(text)` returns `text` with its ${SECRET} references filled in (e.g.
    ``lambda text: target.resolve_text("alerts", text)``); it is called only for texts that hold a reference.
    Each channel gets `timeout` seconds for its whole exchange; one still busy after that is reported as failed
    and left to end on its own socket timeout.
    """
    chosen = list(channels)
    labels = channel_labels(chosen)
    todo = [(label, ch) for label, ch in zip(labels, chosen, strict=True) if ch.wants(notice)]
    results: list[Delivery | None] = [None] * len(todo)
    lock = threading.Lock()
    workers: list[tuple[int, threading.Thread, float]] = []

    def finish(i: int, ok: bool, error: str | None, started: float) -> None:
        label, ch = todo[i]
        with lock:
            if results[i] is None:
                results[i] = Delivery(label, ch.type, ok, error, round(time.monotonic() - started, 3))

    def run(i: int, send: Callable[[], object], secrets: list[str], started: float) -> None:
        try:
            send()
        except _SendFailed as exc:
            finish(i, False, _redact(str(exc), secrets), started)
        except Exception as exc:  # noqa: BLE001 - whatever one channel hits, the others go on
            finish(i, False, _redact(f"{type(exc).__name__}: {exc}", secrets), started)
        else:
            finish(i, True, None, started)

    for i, (label, ch) in enumerate(todo):
        started = time.monotonic()
        secrets: list[str] = []
        try:
            send = _prepare(ch, notice, _Resolver(resolve_secret, secrets), timeout)
        except Exception as exc:  # noqa: BLE001 - a secret that cannot be filled in fails this channel only
            finish(i, False, _redact(str(exc), secrets), started)
            continue
        worker = threading.Thread(target=run, args=(i, send, secrets, started), daemon=True,
                                  name=f"headway-notify-{label}")
        worker.start()
        workers.append((i, worker, started))
    for i, worker, started in workers:
        worker.join(max(0.0, started + timeout + _GRACE - time.monotonic()))
        if worker.is_alive():
            finish(i, False, f"gave up: no complete answer within {timeout:g} s", started)
    out = []
    for r in results:
        assert r is not None
        out.append(r)
    return out


class _Resolver:
    """Fills in ${SECRET} references through the caller's callback and remembers each value, to redact it."""

    def __init__(self, resolve: ResolveSecret, seen: list[str]) -> None:
        self._resolve = resolve
        self.seen = seen

    def __call__(self, text: str) -> str:
        if not _has_ref(text):
            return text
        value = self._resolve(text)
        if value:
            self.seen.append(value)
        return value

    def hide(self, value: str) -> None:
        if value:
            self.seen.append(value)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {value, quote(value, safe=""), quote(value)}:
            text = text.replace(form, "***")
    return text


def _prepare(ch: Channel, notice: Notice, resolve: _Resolver, timeout: float) -> Callable[[], object]:
    """Fill in the channel's secrets and build its request; returns the call that sends it."""
    ua = f"headway/{__version__}"
    if isinstance(ch, WebhookChannel):
        url = _filled_url("webhook `url`", ch.url, resolve)
        headers = {"Content-Type": "application/json", "User-Agent": ua}
        for name, value in ch.headers.items():
            filled = resolve(value)
            if _SENSITIVE_HEADER.search(name):
                resolve.hide(filled)
            headers[name] = filled
        body = json.dumps(notice.to_json()).encode()
        return lambda: _post(url, body, headers, timeout)
    if isinstance(ch, SlackChannel | DiscordChannel):
        url = _filled_url(f"{ch.type} `url`", ch.url, resolve)
        payload = slack_payload(notice) if isinstance(ch, SlackChannel) else discord_payload(notice)
        body = json.dumps(payload).encode()
        return lambda: _post(url, body, {"Content-Type": "application/json", "User-Agent": ua}, timeout)
    if isinstance(ch, TelegramChannel):
        token = resolve(ch.token)
        resolve.hide(token)
        if not token or "/" in token or any(c.isspace() for c in token):
            source = f" from {ch.token}" if _has_ref(ch.token) else ""
            raise _SendFailed(f"the telegram bot token{source} is not a bot token (123456:ABC-...)")
        chat = resolve(ch.chat)
        api = _filled_url("telegram `api`", ch.api, resolve).rstrip("/")
        url = f"{api}/bot{token}/sendMessage"
        body = json.dumps({"chat_id": chat, "text": telegram_text(notice), "parse_mode": "HTML",
                           "disable_web_page_preview": True}).encode()

        def telegram() -> None:
            answer = _post(url, body, {"Content-Type": "application/json", "User-Agent": ua}, timeout)
            try:
                ok = json.loads(answer).get("ok") is True
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                raise _SendFailed(f"telegram {_where(url)}: the Bot API did not confirm the message: "
                                  f"{_snippet(answer)}")
        return telegram
    if isinstance(ch, NtfyChannel):
        url = _filled_url("ntfy `url`", ch.url, resolve)
        headers = {"Title": _header_text(notice.headline), "Priority": _NTFY_PRIORITY[notice.severity],
                   "Tags": ",".join(["white_check_mark" if notice.resolved else _NTFY_TAG[notice.severity],
                                     notice.kind]),
                   "Content-Type": "text/plain; charset=utf-8", "User-Agent": ua}
        if notice.url:
            headers["Click"] = notice.url
        if ch.token is not None:
            token = resolve(ch.token)
            resolve.hide(token)
            headers["Authorization"] = f"Bearer {token}"
        body = (notice.text or notice.title).encode()
        return lambda: _post(url, body, headers, timeout)
    if isinstance(ch, EmailChannel):
        username = resolve(ch.username) if ch.username is not None else None
        password = resolve(ch.password) if ch.password is not None else None
        if password is not None:
            resolve.hide(password)
        message = _email(ch, notice)
        return lambda: _smtp_send(ch, message, username, password, timeout)
    raise _SendFailed(f"unknown channel type {ch.type!r}")  # pragma: no cover - the union is closed


def _filled_url(what: str, url: str, resolve: _Resolver) -> str:
    if not _has_ref(url):
        parts = urlsplit(url)
        secretish = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(secretish) >= 16:  # a webhook URL's path is its token: never shown in an error
            resolve.hide(secretish)
        return url
    filled = resolve(url)
    try:
        _check_url(what, filled)
    except ValueError:
        raise _SendFailed(f"{what} from {url} is not an http:// or https:// URL once filled in") from None
    return filled


def _where(url: str) -> str:
    """scheme://host[:port] of a URL: never its path, where webhook tokens live."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _snippet(body: str) -> str:
    text = " ".join(body.split())
    return _cut(text, 200) if text else "(empty answer)"


def _header_text(text: str) -> str:
    """A header value: ASCII as it is, anything else RFC 2047 encoded (ntfy decodes it)."""
    one_line = " ".join(text.split())
    try:
        one_line.encode("ascii")
        return one_line
    except UnicodeEncodeError:
        return Header(one_line, "utf-8").encode(maxlinelen=10_000)


def _tls_context(cafile: str | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str:
    """POST; the answer's text on 2xx, else _SendFailed with the status and the start of the answer."""
    parts = urlsplit(url)
    where = _where(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=_tls_context())
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read(65536).decode("utf-8", "replace")
    except TimeoutError:
        raise _SendFailed(f"POST {where}: no answer within {timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        raise _SendFailed(f"POST {where}: its TLS certificate is not trusted ({exc.verify_message})") from None
    except ssl.SSLError as exc:
        raise _SendFailed(f"POST {where}: TLS failed ({exc.reason or exc})") from None
    except socket.gaierror as exc:
        raise _SendFailed(f"POST {where}: cannot resolve {host} ({exc.strerror})") from None
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _SendFailed(f"POST {where}: {reason}") from None
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        extra = " (a redirect: give the final URL)" if 300 <= resp.status < 400 else ""
        raise _SendFailed(f"POST {where}: HTTP {resp.status} {resp.reason}{extra}: {_snippet(answer)}")
    return answer


def _email(ch: EmailChannel, notice: Notice) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = notice.headline
    msg["From"] = ch.from_
    msg["To"] = ", ".join(ch.to)
    msg["Date"] = format_datetime(notice.time.astimezone(UTC))
    domain = parseaddr(ch.from_)[1].rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid("headway", domain=domain)
    msg["X-Headway-Kind"] = notice.kind
    msg["X-Headway-Severity"] = notice.severity
    msg.set_content(plain_text(notice))
    msg.add_alternative(html_text(notice), subtype="html")
    return msg


def _smtp_send(ch: EmailChannel, message: EmailMessage, username: str | None, password: str | None,
               timeout: float) -> None:
    where = f"smtp {ch.host}:{ch.smtp_port}"
    context = _tls_context(ch.ca_file)
    try:
        smtp: smtplib.SMTP
        if ch.tls:
            smtp = smtplib.SMTP_SSL(ch.host, ch.smtp_port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(ch.host, ch.smtp_port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if ch.use_starttls:
                if not smtp.has_extn("starttls"):
                    raise _SendFailed(f"{where}: the server does not offer STARTTLS; use its TLS port with "
                                      "`tls: true` (465), or `starttls: false` for a relay on this host")
                smtp.starttls(context=context)
                smtp.ehlo()
            if username is not None and password is not None:
                try:
                    smtp.login(username, password)
                except smtplib.SMTPAuthenticationError as exc:
                    source = (f"{ch.password} in the secrets file" if ch.password and _has_ref(ch.password)
                              else "the password")
                    raise _SendFailed(f"{where}: login as {username} refused ({_smtp_answer(exc)}); check "
                                      f"{source}") from None
                except smtplib.SMTPNotSupportedError:
                    raise _SendFailed(f"{where}: the server offers no AUTH here (it may need STARTTLS or TLS "
                                      "first)") from None
                except smtplib.SMTPException as exc:
                    if "no suitable authentication method" in str(exc).lower():
                        raise _SendFailed(f"{where}: the server offers no AUTH method headway speaks "
                                          "(PLAIN, LOGIN, CRAM-MD5)") from None
                    raise
            refused = smtp.send_message(message)
    except _SendFailed:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        who = ", ".join(f"{addr} ({code} {_decode(text)})" for addr, (code, text) in exc.recipients.items())
        raise _SendFailed(f"{where}: every recipient refused: {who}") from None
    except smtplib.SMTPSenderRefused as exc:
        raise _SendFailed(f"{where}: sender {ch.from_} refused ({exc.smtp_code} {_decode(exc.smtp_error)})") from None
    except smtplib.SMTPResponseException as exc:
        raise _SendFailed(f"{where}: {_smtp_answer(exc)}") from None
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):  # smtplib wraps a read that timed out
            raise _SendFailed(f"{where}: no answer within {timeout:g} s") from None
        raise _SendFailed(f"{where}: the server closed the connection ({exc or 'no reason given'})") from None
    except TimeoutError:
        raise _SendFailed(f"{where}: no answer within {timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        raise _SendFailed(f"{where}: its TLS certificate is not trusted ({exc.verify_message}); if the server "
                          "uses a private CA, set `ca_file`") from None
    except ssl.SSLError as exc:
        raise _SendFailed(f"{where}: TLS failed ({exc.reason or exc})") from None
    except socket.gaierror as exc:
        raise _SendFailed(f"{where}: cannot resolve {ch.host} ({exc.strerror})") from None
    except smtplib.SMTPException as exc:
        raise _SendFailed(f"{where}: {exc}") from None
    except OSError as exc:
        raise _SendFailed(f"{where}: {exc.strerror or exc}") from None
    if refused:
        who = ", ".join(f"{addr} ({code} {_decode(text)})" for addr, (code, text) in refused.items())
        raise _SendFailed(f"{where}: sent, but these recipients were refused: {who}")


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _smtp_answer(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_decode(exc.smtp_error)}".strip()
