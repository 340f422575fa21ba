"""Notification channels against real receivers on 127.0.0.1: an HTTP server and an SMTP server (aiosmtpd) with
STARTTLS and AUTH. No Docker needed."""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.config.loader import parse_config
from headway.config.resolve import Target, resolve
from headway.errors import ConfigError
from headway.observe import notify
from headway.observe.notify import Delivery, Notice, parse_channels, send_all
from tests.receivers import Mailbox, Receiver, http_receiver, smtp_server

TG_TOKEN = "123456:AAH-tg-secret-token-value"
HOOK_TOKEN = "hook-bearer-7f3a9c1e55"
NTFY_TOKEN = "tk_ntfysecret0123456789"
SMTP_PASSWORD = "smtp-pass-Q9x!v2"
WRONG_PASSWORD = "not-the-pass-Z7k"
SECRETS = (TG_TOKEN, HOOK_TOKEN, NTFY_TOKEN, SMTP_PASSWORD, WRONG_PASSWORD)


# --- receivers ---------------------------------------------------------------------------------------------------

@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as rec:
        yield rec


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound by nobody's listener: a connect is refused at once (the socket stays bound, so no one takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


class _Holder:
    """Accepts connections and then, per `mode`, says nothing or trickles one byte at a time, never finishing."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self.conns.append(conn)
            if self.mode == "trickle":
                t = threading.Thread(target=self._trickle, args=(conn,), daemon=True)
                t.start()
                self.threads.append(t)

    def _trickle(self, conn: socket.socket) -> None:
        data = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000
        for i in range(len(data)):  # one byte each 0.2 s: every read succeeds, the answer never ends
            if self.stop.wait(0.2):
                return
            try:
                conn.sendall(data[i:i + 1])
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[_Holder]:
    holder = _Holder("silent")
    yield holder
    holder.close()


@pytest.fixture
def trickle_server() -> Iterator[_Holder]:
    holder = _Holder("trickle")
    yield holder
    holder.close()


def _smtp_server(tmp_path: Path, offers: str, implicit_tls: bool = False) -> Iterator[Mailbox]:
    with smtp_server(tmp_path, offers, implicit_tls, password=SMTP_PASSWORD) as box:
        yield box


@pytest.fixture(params=["PLAIN", "LOGIN"])
def mailbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mailbox]:
    """An SMTP server that demands STARTTLS, then AUTH with only the mechanism of the test's parameter."""
    yield from _smtp_server(tmp_path, request.param)


@pytest.fixture
def plain_mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    yield from _smtp_server(tmp_path, "any")


@pytest.fixture
def tls_mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    """An SMTP server speaking TLS from the first byte (as on port 465)."""
    yield from _smtp_server(tmp_path, "any", implicit_tls=True)


# --- secrets: a real headway Target, its secrets file holding the values -----------------------------------------

@pytest.fixture
def target(tmp_path: Path) -> Target:
    project = tmp_path / "project"
    (project / ".headway").mkdir(parents=True)
    config = ("app: shop\nimage: {dockerfile: Dockerfile}\nroles:\n  web: {command: x, port: 8000}\n"
              "environments:\n  production: {port: 8080}\n")
    (project / "headway.yml").write_text(config)
    secrets = project / ".headway" / "secrets.production"
    secrets.write_text(f"TG_TOKEN={TG_TOKEN}\nHOOK_TOKEN={HOOK_TOKEN}\nNTFY_TOKEN={NTFY_TOKEN}\n"
                       f"SMTP_PASSWORD={SMTP_PASSWORD}\nWRONG_PASSWORD={WRONG_PASSWORD}\n")
    secrets.chmod(0o600)
    return resolve(parse_config(config), "production", project)


def _send(target: Target, channels: list[dict[str, Any]], notice: Notice, timeout: float = 5.0) -> list[Delivery]:
    deliveries = send_all(parse_channels(channels), notice, lambda text: target.resolve_text("alerts", text),
                          timeout=timeout)
    for d in deliveries:
        for secret in SECRETS:
            assert secret not in (d.error or ""), d
    return deliveries


def _alert(**kw: Any) -> Notice:
    base: dict[str, Any] = dict(kind="alert", severity="critical", title="Site down",
                                text="https://shop.example.com/ answered 502 for 3 checks in a row <b>&</b>",
                                app="shop", environment="production", release="r-2024-05-01-abc123",
                                labels={"host": "web-1", "check": "http"},
                                time=dt.datetime(2024, 5, 1, 12, 30, 5, tzinfo=dt.UTC),
                                url="https://grafana.example.com/d/shop")
    base.update(kw)
    return Notice(**base)


# --- HTTP channels -----------------------------------------------------------------------------------------------

def test_webhook_posts_the_notice_as_json_with_its_headers(receiver: Receiver, target: Target) -> None:
    [d] = _send(target, [{"type": "webhook", "name": "ops-hook", "url": receiver.url("/hooks/headway"),
                          "headers": {"Authorization": "Bearer ${HOOK_TOKEN}", "X-Team": "shop"}}], _alert())
    assert d.ok and d.error is None and d.channel == "ops-hook" and d.type == "webhook", d
    [req] = receiver.at("/hooks/headway")
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["authorization"] == f"Bearer {HOOK_TOKEN}"
    assert req.headers["x-team"] == "shop"
    assert req.json() == {
        "kind": "alert", "severity": "critical", "title": "Site down",
        "text": "https://shop.example.com/ answered 502 for 3 checks in a row <b>&</b>",
        "app": "shop", "environment": "production", "release": "r-2024-05-01-abc123",
        "fired_at": "2024-05-01T12:30:05Z", "resolved": False,
        "labels": {"host": "web-1", "check": "http"}, "url": "https://grafana.example.com/d/shop"}


def test_slack_payload_has_text_and_a_coloured_attachment(receiver: Receiver, target: Target) -> None:
    [d] = _send(target, [{"type": "slack", "url": receiver.url("/services/T000/B000/XXXXXXXXXXXXXXXX")}],
                _alert())
    assert d.ok, d
    body = receiver.at("/services/T000/B000/XXXXXXXXXXXXXXXX")[0].json()
    assert "[shop production] CRITICAL: Site down" in body["text"]
    [att] = body["attachments"]
    assert att["color"] == "#d93025"
    section = att["blocks"][0]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in section["text"]["text"]  # Slack's escaping: no stray markup
    context = att["blocks"][1]["elements"][0]["text"]
    assert "release: r-2024-05-01-abc123" in context and "host: web-1" in context
    assert att["blocks"][2]["elements"][0]["url"] == "https://grafana.example.com/d/shop"

    receiver.requests.clear()
    assert _send(target, [{"type": "slack", "url": receiver.url("/s")}], _alert(kind="resolved"))[0].ok
    resolved = receiver.at("/s")[0].json()
    assert resolved["attachments"][0]["color"] == "#188038"
    assert "RESOLVED: Site down" in resolved["text"]


def test_discord_payload_is_an_embed_that_mentions_nobody(receiver: Receiver, target: Target) -> None:
    receiver.answers["/api/webhooks/1/abc"] = (204, "text/plain", b"")  # what Discord answers
    [d] = _send(target, [{"type": "discord", "url": receiver.url("/api/webhooks/1/abc")}],
                _alert(severity="warning", title="Error rate 7%", text="@everyone 5xx above 5% for 5 min"))
    assert d.ok, d
    body = receiver.at("/api/webhooks/1/abc")[0].json()
    assert "Error rate 7%" in body["content"]
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["title"] == "Error rate 7%"
    assert embed["description"] == "@everyone 5xx above 5% for 5 min"
    assert embed["color"] == 0xF29900
    assert embed["url"] == "https://grafana.example.com/d/shop"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["app"] == "shop" and fields["environment"] == "production"
    assert fields["release"] == "r-2024-05-01-abc123" and fields["host"] == "web-1"
    assert embed["timestamp"].startswith("2024-05-01T12:30:05")


def test_telegram_posts_send_message_to_the_bot_api(receiver: Receiver, target: Target) -> None:
    path = f"/bot{TG_TOKEN}/sendMessage"
    receiver.answers[path] = (200, "application/json", b'{"ok": true, "result": {"message_id": 7}}')
    [d] = _send(target, [{"type": "telegram", "token": "${TG_TOKEN}", "chat": -100123,
                          "api": receiver.url("")}], _alert())
    assert d.ok, d
    [req] = receiver.at(path)
    body = req.json()
    assert body["chat_id"] == "-100123"
    assert body["parse_mode"] == "HTML"
    assert "<b>[shop production] CRITICAL: Site down</b>" in body["text"]
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in body["text"]  # the notice's own text cannot inject markup
    assert "release</i>: r-2024-05-01-abc123" in body["text"]


def test_telegram_refusal_is_reported_without_the_token(receiver: Receiver, target: Target) -> None:
    path = f"/bot{TG_TOKEN}/sendMessage"
    receiver.answers[path] = (401, "application/json",
                              b'{"ok": false, "error_code": 401, "description": "Unauthorized"}')
    [d] = _send(target, [{"type": "telegram", "token": "${TG_TOKEN}", "chat": "-100123",
                          "api": receiver.url("")}], _alert())
    assert not d.ok
    assert "HTTP 401" in (d.error or "") and "Unauthorized" in (d.error or "")
    assert TG_TOKEN not in (d.error or "") and "123456" not in (d.error or "")

    receiver.answers[path] = (200, "application/json", b'{"ok": false, "description": "Bad Request: chat not found"}')
    [d] = _send(target, [{"type": "telegram", "token": "${TG_TOKEN}", "chat": "-1", "api": receiver.url("")}],
                _alert())
    assert not d.ok and "chat not found" in (d.error or ""), d


def test_ntfy_publishes_with_title_priority_and_tags(receiver: Receiver, target: Target) -> None:
    [d] = _send(target, [{"type": "ntfy", "url": receiver.url("/shop-alerts"), "token": "${NTFY_TOKEN}"}],
                _alert(title="Certificate expires in 6 days — shop.example.com", severity="warning"))
    assert d.ok, d
    [req] = receiver.at("/shop-alerts")
    title = str(email.header.make_header(email.header.decode_header(req.headers["title"])))
    assert title == "[shop production] WARNING: Certificate expires in 6 days — shop.example.com"
    assert req.headers["priority"] == "4"
    assert req.headers["tags"].split(",") == ["warning", "alert"]
    assert req.headers["click"] == "https://grafana.example.com/d/shop"
    assert req.headers["authorization"] == f"Bearer {NTFY_TOKEN}"
    assert req.body.decode() == "https://shop.example.com/ answered 502 for 3 checks in a row <b>&</b>"

    receiver.requests.clear()
    assert _send(target, [{"type": "ntfy", "url": receiver.url("/t")}], _alert())[0].ok
    [req] = receiver.at("/t")
    assert req.headers["priority"] == "5" and req.headers["tags"].startswith("rotating_light")
    assert "authorization" not in req.headers


def test_events_filter_picks_the_channels_of_each_notice(receiver: Receiver, target: Target) -> None:
    channels = [{"type": "webhook", "name": "deploys", "url": receiver.url("/deploys"), "events": ["deploy"]},
                {"type": "webhook", "name": "alerts", "url": receiver.url("/alerts"), "events": ["alert"]},
                {"type": "webhook", "url": receiver.url("/all")}]
    got = _send(target, channels, _alert(kind="deploy", severity="info", title="Deployed r-2"))
    assert [d.channel for d in got] == ["deploys", "webhook"] and all(d.ok for d in got)
    got = _send(target, channels, _alert(kind="resolved", severity="info"))  # a resolved alert counts as alert
    assert [d.channel for d in got] == ["alerts", "webhook"]
    assert [len(receiver.at(p)) for p in ("/deploys", "/alerts", "/all")] == [1, 1, 2]
    assert receiver.at("/alerts")[0].json()["resolved"] is True


def test_http_error_names_the_status_not_the_webhook_path(receiver: Receiver, target: Target) -> None:
    receiver.answers["/services/T1/B2/secretpathtoken123"] = (404, "text/plain", b"no_service")
    [d] = _send(target, [{"type": "slack", "url": receiver.url("/services/T1/B2/secretpathtoken123")}], _alert())
    assert not d.ok
    assert d.error == f"POST http://127.0.0.1:{receiver.port}: HTTP 404 Not Found: no_service"


def test_test_notice_reaches_each_channel(receiver: Receiver, target: Target) -> None:
    notice = notify.test_notice("shop", "production")
    assert notice.kind == "test" and notice.severity == "info"
    assert notice.app == "shop" and notice.environment == "production" and notice.labels["host"]
    got = _send(target, [{"type": "webhook", "url": receiver.url("/a")},
                         {"type": "slack", "url": receiver.url("/b"), "events": ["alert", "test"]},
                         {"type": "slack", "url": receiver.url("/c"), "events": ["alert"]}], notice)
    assert [(d.channel, d.ok) for d in got] == [("webhook", True), ("slack#1", True)]
    assert receiver.at("/a")[0].json()["kind"] == "test"


# --- email -------------------------------------------------------------------------------------------------------

def _email_channel(box: Mailbox, password: str = "${SMTP_PASSWORD}", **kw: Any) -> dict[str, Any]:
    channel = {"type": "email", "name": "mail", "to": ["ops@example.com", "oncall@example.com"],
               "from": "Shop alerts <alerts@shop.example.com>", "host": "127.0.0.1", "port": box.port,
               "username": "alerts", "password": password, "starttls": True, "ca_file": str(box.ca_file)}
    channel.update(kw)
    return channel


def test_email_over_starttls_with_auth(mailbox: Mailbox, target: Target) -> None:
    [d] = _send(target, [_email_channel(mailbox)], _alert())
    assert d.ok, d
    [(mechanism, user, accepted)] = mailbox.logins
    assert (mechanism, user, accepted) == (mailbox.offers, "alerts", True)
    assert mailbox.envelopes == [("alerts@shop.example.com", ["ops@example.com", "oncall@example.com"])]
    [msg] = mailbox.messages
    assert msg["Subject"] == "[shop production] CRITICAL: Site down"
    assert msg["From"] == "Shop alerts <alerts@shop.example.com>"
    assert msg["To"] == "ops@example.com, oncall@example.com"
    assert msg["X-Headway-Kind"] == "alert"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert "answered 502 for 3 checks" in text and "release: r-2024-05-01-abc123" in text
    assert "dashboard: https://grafana.example.com/d/shop" in text
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in html.get_content()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_over_implicit_tls(tls_mailbox: Mailbox, target: Target) -> None:
    [d] = _send(target, [_email_channel(tls_mailbox, tls=True, starttls=False)],
                _alert(kind="backup", severity="warning", title="Backup failed", text="pg_dump exited 1"))
    assert d.ok, d
    assert [accepted for _, _, accepted in tls_mailbox.logins] == [True]
    [msg] = tls_mailbox.messages
    assert msg["Subject"] == "[shop production] Backup failed" and msg["X-Headway-Severity"] == "warning"
    # plain SMTP to a TLS port: the server waits for a TLS hello, the client for a greeting
    [d] = _send(target, [_email_channel(tls_mailbox, tls=False, starttls=True)], _alert(), timeout=1)
    assert not d.ok and d.error == f"smtp 127.0.0.1:{tls_mailbox.port}: no answer within 1 s", d


def test_wrong_smtp_password_fails_alone(plain_mailbox: Mailbox, receiver: Receiver, target: Target) -> None:
    got = _send(target, [_email_channel(plain_mailbox, password="${WRONG_PASSWORD}"),
                         {"type": "webhook", "url": receiver.url("/hook")},
                         {"type": "slack", "url": receiver.url("/slack")}], _alert())
    mail, hook, slack = got
    assert not mail.ok
    assert mail.error is not None
    assert mail.error.startswith(f"smtp 127.0.0.1:{plain_mailbox.port}: login as alerts refused (535")
    assert "${WRONG_PASSWORD}" in mail.error  # names where the password comes from, never the password
    assert WRONG_PASSWORD not in mail.error and SMTP_PASSWORD not in mail.error
    assert hook.ok and slack.ok
    assert len(receiver.at("/hook")) == 1 and len(receiver.at("/slack")) == 1
    assert plain_mailbox.messages == [] and plain_mailbox.logins and not any(a for _, _, a in plain_mailbox.logins)


def test_smtp_certificate_not_trusted_is_refused(plain_mailbox: Mailbox, target: Target) -> None:
    [d] = _send(target, [_email_channel(plain_mailbox, ca_file=None)], _alert())
    assert not d.ok
    assert "TLS certificate is not trusted" in (d.error or "") and "ca_file" in (d.error or "")
    assert plain_mailbox.logins == [] and plain_mailbox.messages == []  # no password sent to that server


def test_smtp_without_starttls_on_a_server_that_demands_it(plain_mailbox: Mailbox, target: Target) -> None:
    [d] = _send(target, [_email_channel(plain_mailbox, host="localhost", starttls=False)], _alert())
    assert not d.ok and d.error is not None
    assert d.error.startswith(f"smtp localhost:{plain_mailbox.port}: the server offers no AUTH here"), d
    assert plain_mailbox.messages == []


# --- channels that do not answer ---------------------------------------------------------------------------------

def test_refused_connection_fails_alone_and_fast(dead_port: int, receiver: Receiver, target: Target) -> None:
    started = time.monotonic()
    dead, live = _send(target, [{"type": "webhook", "url": f"http://127.0.0.1:{dead_port}/x"},
                                {"type": "webhook", "url": receiver.url("/live")}], _alert(), timeout=5)
    assert time.monotonic() - started < 2
    assert not dead.ok and dead.error == f"POST http://127.0.0.1:{dead_port}: Connection refused"
    assert dead.seconds < 2
    assert live.ok and len(receiver.at("/live")) == 1


def test_silent_servers_are_bounded_by_the_timeout_in_parallel(silent_server: _Holder, receiver: Receiver,
                                                               target: Target) -> None:
    url = f"http://127.0.0.1:{silent_server.port}/hook"
    started = time.monotonic()
    got = _send(target, [{"type": "webhook", "url": url}, {"type": "slack", "url": url},
                         {"type": "discord", "url": receiver.url("/d")}], _alert(), timeout=1)
    took = time.monotonic() - started
    assert 1 <= took < 1.9, took  # both silent ones waited out one timeout together, not one after the other
    hook, slack, discord = got
    for d in (hook, slack):
        assert not d.ok and d.error == f"POST http://127.0.0.1:{silent_server.port}: no answer within 1 s", d
        assert 1 <= d.seconds < 1.9
    assert silent_server.accepted == 2
    assert discord.ok and len(receiver.at("/d")) == 1


def test_a_trickling_server_is_given_up_on_at_the_timeout(trickle_server: _Holder, receiver: Receiver,
                                                          target: Target) -> None:
    started = time.monotonic()
    slow, fast = _send(target, [{"type": "webhook", "url": f"http://127.0.0.1:{trickle_server.port}/"},
                                {"type": "webhook", "url": receiver.url("/ok")}], _alert(), timeout=1)
    assert time.monotonic() - started < 2.5
    assert not slow.ok and slow.error == "gave up: no complete answer within 1 s", slow
    assert fast.ok


def test_a_secret_that_cannot_be_filled_in_fails_that_channel_only(receiver: Receiver, target: Target) -> None:
    bad, good = _send(target, [{"type": "telegram", "token": "${MISSING_TOKEN}", "chat": "1",
                                "api": receiver.url("")},
                               {"type": "slack", "url": "${SLACK_WEBHOOK}"}], _alert())
    assert not bad.ok and "${MISSING_TOKEN}" in (bad.error or "") and "secrets file" in (bad.error or "")
    assert not good.ok and "${SLACK_WEBHOOK}" in (good.error or "")
    assert receiver.requests == []


def test_webhook_url_from_a_secret(receiver: Receiver, tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / ".headway").mkdir(parents=True)
    config = ("app: shop\nimage: {dockerfile: Dockerfile}\nroles:\n  web: {command: x, port: 8000}\n"
              "environments:\n  production: {port: 8080}\n")
    secrets = project / ".headway" / "secrets.production"
    secrets.write_text(f"SLACK_WEBHOOK={receiver.url('/services/T9/B9/tokenfromsecret999')}\nNOT_A_URL=hello\n")
    secrets.chmod(0o600)
    target = resolve(parse_config(config), "production", project)
    ok, bad = send_all(parse_channels([{"type": "slack", "url": "${SLACK_WEBHOOK}"},
                                       {"type": "discord", "url": "${NOT_A_URL}"}]),
                       _alert(), lambda text: target.resolve_text("alerts", text), timeout=5)
    assert ok.ok and len(receiver.at("/services/T9/B9/tokenfromsecret999")) == 1
    assert not bad.ok
    assert bad.error == "discord `url` from ${NOT_A_URL} is not an http:// or https:// URL once filled in"


def test_channels_with_secrets_filled_in_still_hide_them(receiver: Receiver, plain_mailbox: Mailbox,
                                                         target: Target) -> None:
    """A host's copy of the channels, references filled in (as written from model_dump), sends the same way."""
    path = f"/bot{TG_TOKEN}/sendMessage"
    receiver.answers[path] = (401, "application/json", b'{"ok": false, "description": "Unauthorized"}')
    configured = parse_channels([
        {"type": "telegram", "token": "${TG_TOKEN}", "chat": "-1", "api": receiver.url("")},
        _email_channel(plain_mailbox, password="${WRONG_PASSWORD}"),
        {"type": "ntfy", "url": receiver.url("/topic"), "token": "${NTFY_TOKEN}"},
    ])

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return target.resolve_text("alerts", value) if isinstance(value, str) and "${" in value else value

    copy = json.loads(json.dumps([fill(c.model_dump(mode="json", by_alias=True)) for c in configured]))
    assert copy[0]["token"] == TG_TOKEN and copy[1]["password"] == WRONG_PASSWORD
    with pytest.raises(ConfigError, match="must be a secret reference"):
        parse_channels(copy)  # as headway.yml: values refused
    telegram, mail, ntfy = send_all(parse_channels(copy, filled=True), _alert(), lambda text: text, timeout=5)
    assert not telegram.ok and "Unauthorized" in (telegram.error or "")
    assert not mail.ok and mail.error is not None
    assert "login as alerts refused" in mail.error and mail.error.endswith("check the password")
    assert ntfy.ok and receiver.at("/topic")[0].headers["authorization"] == f"Bearer {NTFY_TOKEN}"
    for d in (telegram, mail):
        for secret in SECRETS:
            assert secret not in (d.error or "")


# --- configuration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("channel", "expected"), [
    ({"type": "telegram", "token": "123456:AAH-literal", "chat": "1"},
     "channels[0].token: telegram `token` must be a secret reference such as ${TG_TOKEN}, never the value itself"),
    ({"type": "email", "to": ["a@example.com"], "from": "b@example.com", "host": "smtp.example.com",
      "username": "u", "password": "hunter2"},
     "channels[0]: email `password` must be a secret reference such as ${SMTP_PASSWORD}, never the value itself"),
    ({"type": "ntfy", "url": "https://ntfy.sh/shop", "token": "tk_literal"},
     "channels[0].token: ntfy `token` must be a secret reference such as ${NTFY_TOKEN}"),
    ({"type": "webhook", "url": "https://example.com/h", "headers": {"Authorization": "Bearer literal"}},
     "webhook header Authorization carries a credential: write it as a secret reference"),
])
def test_literal_credentials_are_refused_with_the_fix(channel: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_channels([channel])
    text = str(err.value)
    assert expected in text
    assert "secrets file" in text  # the fix: where the value goes instead
    for literal in ("AAH-literal", "hunter2", "tk_literal", "Bearer literal"):
        assert literal not in text


def test_unknown_and_missing_type_are_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_channels([{"type": "slack", "url": "https://hooks.slack.com/services/x"}, {"type": "sms", "to": "1"},
                        {"url": "https://example.com"}])
    text = str(err.value)
    assert "channels: 2 problem(s)" in text
    assert ("channels[1]: unknown channel type 'sms'; expected one of: webhook, slack, discord, telegram, ntfy, "
            "email") in text
    assert "channels[2]: every channel needs a `type`, one of: webhook" in text


@pytest.mark.parametrize(("channel", "expected"), [
    ({"type": "webhook", "url": "ftp://example.com/x"}, "channels[0].url: webhook `url` must be an http://"),
    ({"type": "slack", "url": "https://hooks.slack.com/x", "token": "${X}"}, "channels[0].token: unknown key"),
    ({"type": "email", "to": ["ops@example.com"], "from": "a@example.com", "host": "smtp.example.com",
      "tls": True, "starttls": True}, "exclude each other"),
    ({"type": "email", "to": ["ops@example.com"], "from": "a@example.com", "host": "smtp.example.com",
      "username": "u", "password": "${P}", "starttls": False}, "would cross the network in clear"),
    ({"type": "email", "to": ["not-an-address"], "from": "a@example.com", "host": "smtp.example.com"},
     "is not an email address"),
    ({"type": "email", "to": ["ops@example.com"], "from": "a@example.com", "host": "h", "username": "u"},
     "give both `username` and `password`"),
    ({"type": "telegram", "chat": "1"}, "channels[0].token: required key is missing"),
    ({"type": "ntfy", "url": "https://ntfy.sh/"}, "names the topic"),
    ({"type": "slack", "url": "https://x.example/h", "events": ["deploys"]}, "channels[0].events.0"),
])
def test_invalid_channels_are_refused(channel: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_channels([channel])
    assert expected in str(err.value)


def test_valid_channels_parse_with_their_defaults() -> None:
    tg, mail, mail465, hook = parse_channels([
        {"type": "telegram", "token": "${TG_TOKEN}", "chat": -100123},
        {"type": "email", "to": ["ops@example.com"], "from": "alerts@example.com", "host": "smtp.example.com",
         "username": "alerts", "password": "${SMTP_PASSWORD}"},
        {"type": "email", "to": ["ops@example.com"], "from": "alerts@example.com", "host": "smtp.example.com",
         "tls": True},
        {"type": "webhook", "url": "${HOOK_URL}", "headers": {"X-Token": "${HOOK_TOKEN}"}},
    ])
    assert isinstance(tg, notify.TelegramChannel) and tg.chat == "-100123" and tg.api == "https://api.telegram.org"
    assert isinstance(mail, notify.EmailChannel) and mail.smtp_port == 587 and mail.use_starttls
    assert isinstance(mail465, notify.EmailChannel) and mail465.smtp_port == 465 and not mail465.use_starttls
    assert isinstance(hook, notify.WebhookChannel) and hook.url == "${HOOK_URL}"
    with pytest.raises(ConfigError, match="name a is used twice"):
        parse_channels([{"type": "slack", "name": "a", "url": "https://x.example/1"},
                        {"type": "discord", "name": "a", "url": "https://x.example/2"}])
