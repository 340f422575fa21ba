"""Alert rules, and the evaluator that turns observations into notices a person reads.

A rule's condition must hold continuously for its `for` duration before the alert fires, so a blip pages no one; a
firing alert is sent again every `repeat`, and once more when it clears. Silences and maintenance windows keep the
notices quiet without stopping the bookkeeping. The evaluator's state is one JSON file replaced atomically, so the
agent can be restarted (or killed) without re-sending what is firing or forgetting it.

Observations carry the value the rule compares, in the rule's unit:

| rule | value | labels |
|---|---|---|
| down | True while the health check fails (detail: what it saw) | |
| error_rate | percent of requests answered 5xx | |
| p95 | seconds (95th percentile of request time) | |
| cpu, memory, disk | percent used | optional (`role`, `volume`) |
| queue | jobs waiting | `queue` |
| certificate | seconds until the certificate expires | `domain` |
| backup | True when a backup failed, was missed, or is not verified (see `backup_observation`) | `database` |
| restart_loop | restarts within the rule's `within` (see `restart_count`) | `role` or `container` |
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from headway.config.base import Strict
from headway.config.duration import Duration
from headway.data.cron import CronSchedule, parse_cron
from headway.errors import ConfigError, HeadwayError, NotFound
from headway.state.files import atomic_write

STATE_VERSION = 1
DEFAULT_GAP = 90.0  # seconds without an observation after which a pending condition starts over
DOCS = "docs/monitoring.md#alert-rules"

# -- values as people write them --------------------------------------------------------------------------------


def parse_percent(value: Any) -> float:
    """80, 80.5, "80%" or "80" -> 80.0; between 0 and 100."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*%?\s*", value):
        number = float(value.strip().rstrip("%"))
    if number is None or not math.isfinite(number):
        raise ValueError(f"expected a percentage such as 80% (got {value!r})")
    if not 0 <= number <= 100:
        raise ValueError(f"a percentage is between 0% and 100% (got {value!r})")
    return number


def parse_count(value: Any) -> int:
    """A whole number, at least 0: 100 or "100"."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"expected a whole number such as 100 (got {value!r})")


_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_SPAN_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_span(value: Any) -> float:
    """A longer time written with its unit: 14d, 2w, 36h, 1d12h -> seconds. A bare number is refused: 14 could mean
    days or seconds."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, total = 0, 0.0
        for m in _SPAN_PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _SPAN_UNITS[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return total
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write the unit: {value:g}d for days, or hours such as 36h (got {value!r})")
    raise ValueError(f"expected a time such as 14d, 2w or 36h (got {value!r})")


Percent = Annotated[float, BeforeValidator(parse_percent)]
Count = Annotated[int, BeforeValidator(parse_count)]
Span = Annotated[float, BeforeValidator(parse_span)]


def format_span(seconds: float) -> str:
    """2m 5s, 4h 2m, 3d 4h: the two largest units (the second left out when it is 0)."""
    s = int(max(0.0, seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units):
        if s >= size or unit == "s":
            text = f"{s // size}{unit}"
            if i + 1 < len(units):
                unit2, size2 = units[i + 1]
                if (s % size) // size2:
                    text += f" {(s % size) // size2}{unit2}"
            return text
    return "0s"  # pragma: no cover - the loop always returns at "s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# -- the rules --------------------------------------------------------------------------------------------------


class Rule(Strict):
    """What every rule has: `enabled`, `for` (how long the condition must hold) and `repeat`."""

    model_config = ConfigDict(populate_by_name=True)

    enabled: bool = True
    for_: Duration = Field(0.0, alias="for", description="how long the condition must hold before the alert fires")
    repeat: Duration | None = Field(None, description="re-send while firing; default: the rule set's repeat; 0: never")

    def breached(self, value: float | bool) -> bool:
        return bool(value)


class DownRule(Rule):
    for_: Duration = Field(120.0, alias="for")


class _Above(Rule):
    above: Percent = 0.0

    def breached(self, value: float | bool) -> bool:
        return float(value) > self.above


class ErrorRateRule(_Above):
    above: Percent = 1.0
    for_: Duration = Field(300.0, alias="for")


class P95Rule(_Above):
    above: Duration = Field(0.5, description="seconds, e.g. 500ms")
    for_: Duration = Field(300.0, alias="for")


class CpuRule(_Above):
    above: Percent = 80.0
    for_: Duration = Field(600.0, alias="for")


class MemoryRule(_Above):
    above: Percent = 80.0
    for_: Duration = Field(600.0, alias="for")


class DiskRule(_Above):
    above: Percent = 85.0


class QueueOverride(Strict):
    """Settings for one named queue, over the queue rule's."""

    model_config = ConfigDict(populate_by_name=True)

    enabled: bool | None = None
    above: Count | None = None
    for_: Duration | None = Field(None, alias="for")
    repeat: Duration | None = None


class QueueRule(Rule):
    above: Count = 100
    for_: Duration = Field(300.0, alias="for")
    queues: dict[str, QueueOverride] = Field(default_factory=dict, description="per named queue")

    def breached(self, value: float | bool) -> bool:
        return float(value) > self.above

    def for_queue(self, name: str | None) -> QueueRule:
        over = self.queues.get(name or "")
        if over is None:
            return self
        return self.model_copy(update={k: v for k, v in over.model_dump().items() if v is not None})


class CertificateRule(Rule):
    below: Span = Field(14 * 86400.0, description="time left before the certificate expires, e.g. 14d")

    def breached(self, value: float | bool) -> bool:
        return float(value) < self.below


class BackupRule(Rule):
    verified_within: Span = Field(7 * 86400.0, description="a backup must have been verified this recently")
    grace: Duration = Field(3600.0, description="how long after its scheduled time a backup may take")


class RestartLoopRule(Rule):
    restarts: Count = Field(3, ge=1, description="this many restarts ...")
    within: Duration = Field(600.0, description="... within this time")

    def breached(self, value: float | bool) -> bool:
        return float(value) >= self.restarts


class AlertRules(Strict):
    """The rule set. Every rule has the defaults below; a key given overrides only itself."""

    repeat: Duration = Field(4 * 3600.0, description="how often a firing alert is sent again; 0: never")
    down: DownRule = Field(default_factory=DownRule)
    error_rate: ErrorRateRule = Field(default_factory=ErrorRateRule)
    p95: P95Rule = Field(default_factory=P95Rule)
    cpu: CpuRule = Field(default_factory=CpuRule)
    memory: MemoryRule = Field(default_factory=MemoryRule)
    disk: DiskRule = Field(default_factory=DiskRule)
    queue: QueueRule = Field(default_factory=QueueRule)
    certificate: CertificateRule = Field(default_factory=CertificateRule)
    backup: BackupRule = Field(default_factory=BackupRule)
    restart_loop: RestartLoopRule = Field(default_factory=RestartLoopRule)

    NAMES: ClassVar[tuple[str, ...]] = ("down", "error_rate", "p95", "cpu", "memory", "disk", "queue",
                                        "certificate", "backup", "restart_loop")

    def rule(self, name: str, labels: Mapping[str, str] | None = None) -> Rule:
        """The rule as it applies to one observation (a named queue may have its own settings)."""
        if name not in self.NAMES:
            raise ValueError(f"no alert rule {name!r}; the rules are {', '.join(self.NAMES)}")
        rule: Rule = getattr(self, name)
        if isinstance(rule, QueueRule):
            return rule.for_queue((labels or {}).get("queue"))
        return rule

    def repeat_of(self, rule: Rule) -> float:
        return self.repeat if rule.repeat is None else rule.repeat


def parse_alert_rules(data: Mapping[str, Any] | None, where: str = "alerts") -> AlertRules:
    """The rule set from its YAML mapping; every problem named by its key, with what to write instead."""
    try:
        return AlertRules.model_validate(dict(data or {}))
    except ValidationError as exc:
        lines = [_describe(err, where) for err in exc.errors()]
        raise ConfigError(f"{where}: {len(lines)} problem(s)\n" + "\n".join(f"  {ln}" for ln in lines),
                          f"correct the keys above; leave a key out to keep its default (see {DOCS})") from None


def _describe(err: Mapping[str, Any], where: str) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join([where, *loc])
    kind, msg = str(err["type"]), str(err["msg"])
    if kind == "extra_forbidden":
        allowed = rule_fields(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"expected one of: {', '.join(allowed)}"
        return f"{dotted}: unknown key; {hint}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{dotted}: use true or false (got {err.get('input')!r})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{dotted}: expected the rule's settings as a mapping, e.g. `{loc[-1]}: {{for: 5m}}` " \
               f"(got {err.get('input')!r})"
    if kind == "greater_than_equal":
        return f"{dotted}: must be at least {err.get('ctx', {}).get('ge')} (got {err.get('input')!r})"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        return f"{dotted}: expected a number (got {err.get('input')!r})"
    return f"{dotted}: {msg.removeprefix('Value error, ')}"


def rule_fields(loc: Sequence[str]) -> list[str]:
    """The keys allowed at a location of the rule set, for 'did you mean'."""
    cls: type[BaseModel] = AlertRules
    i = 0
    while i < len(loc):
        part = loc[i]
        if cls is QueueRule and part == "queues":
            cls, i = QueueOverride, i + 2
            continue
        info = next((f for n, f in cls.model_fields.items() if part in (n, f.alias)), None)
        ann = info.annotation if info is not None else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cls = ann
        i += 1
    return [f.alias or n for n, f in cls.model_fields.items()]


# -- helpers that turn facts into observations ------------------------------------------------------------------


class Observation(NamedTuple):
    rule: str
    subject: str  # e.g. "shop/production"
    value: float | bool
    labels: Mapping[str, str] | None = None
    detail: str = ""  # what was seen, in words: "GET /health → connection refused"


def restart_count(restarts: Iterable[float], now: float, within: float) -> int:
    """How many of the restart times fall within the last `within` seconds."""
    return sum(1 for t in restarts if now - within <= t <= now)


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def backup_observation(subject: str, database: str, rule: BackupRule, now: float, *,
                       last_success: float | None, last_failure: tuple[float, str] | None = None,
                       schedule: str | CronSchedule | None = None, watched_since: float | None = None,
                       last_verified: float | None = None, first_backup: float | None = None) -> Observation:
    """The backup rule's observation for one database, from its catalog facts.

    Failed: the newest attempt failed. Missed: the schedule had a run due (the first after the last success, or
    after `watched_since` when none succeeded yet), `grace` has passed, and nothing succeeded since. Not verified:
    the newest verification (or, never verified, the first backup) is older than `verified_within`."""
    problems = []
    if last_failure is not None and (last_success is None or last_failure[0] > last_success):
        problems.append(f"the backup at {_clock(last_failure[0])} failed: {last_failure[1]}")
    if schedule is not None:
        cron = parse_cron(schedule) if isinstance(schedule, str) else schedule
        ref = last_success if last_success is not None else watched_since
        if ref is not None:
            due = cron.next_after(datetime.fromtimestamp(ref, UTC)).timestamp()
            if due + rule.grace < now:
                problems.append(f"a backup was due at {_clock(due)} and none succeeded since")
    ref = last_verified if last_verified is not None else first_backup
    if ref is not None and now - ref > rule.verified_within:
        problems.append(f"last verified {format_span(now - ref)} ago" if last_verified is not None
                        else f"never verified (first backup {format_span(now - ref)} ago)")
    return Observation("backup", subject, bool(problems), {"database": database}, "; ".join(problems))


# -- the evaluator ----------------------------------------------------------------------------------------------


Kind = Literal["firing", "repeat", "resolved"]


@dataclass(frozen=True)
class Transition:
    kind: Kind
    rule: str
    subject: str
    labels: dict[str, str]
    text: str  # what a person reads
    since: float  # when the condition began
    at: float
    value: float | bool
    silenced: bool = False  # True: record it, send no notice
    silenced_by: str | None = None  # a silence's id, "maintenance", or "never sent" (it fired unsent)

    @property
    def key(self) -> str:
        return alert_key(self.rule, self.subject, self.labels)


@dataclass
class Silence:
    id: str
    matcher: dict[str, str]  # "rule", "subject" or a label name -> a glob pattern
    until: float
    by: str
    reason: str
    created: float

    def matches(self, rule: str, subject: str, labels: Mapping[str, str]) -> bool:
        fields = {**labels, "rule": rule, "subject": subject}
        return all(k in fields and fnmatch.fnmatchcase(fields[k], pattern) for k, pattern in self.matcher.items())


@dataclass
class _Alert:
    rule: str
    subject: str
    labels: dict[str, str]
    state: Literal["pending", "firing"]
    since: float
    last_seen: float
    value: float | bool
    detail: str = ""
    fired_at: float | None = None
    last_sent: float | None = None
    notified: bool = False  # a notice of this firing went out (False while it fired silenced)


def alert_key(rule: str, subject: str, labels: Mapping[str, str]) -> str:
    return "|".join([rule, subject, *(f"{k}={v}" for k, v in sorted(labels.items()))])


class AlertStateError(HeadwayError):
    pass


class Evaluator:
    """Feeds observations through the rules; returns what changed. `now` is always given by the caller (the agent's
    clock, or a test's); `clock` is used only where no time is passed (silences)."""

    def __init__(self, rules: AlertRules, state_path: str | Path, *, clock: Callable[[], float] = time.time,
                 in_maintenance: Callable[[str], bool] | None = None, max_gap: float = DEFAULT_GAP) -> None:
        self.rules = rules
        self.path = Path(state_path)
        self.clock = clock
        self.in_maintenance = in_maintenance
        self.max_gap = max_gap
        self._alerts: dict[str, _Alert] = {}
        self._silences: dict[str, Silence] = {}
        self._next_silence = 1
        self._saved_at = -math.inf
        self._load()

    # -- state --

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            self._alerts = {k: _Alert(**v) for k, v in data["alerts"].items()}
            self._silences = {s["id"]: Silence(**s) for s in data["silences"]}
            self._next_silence = int(data["next_silence"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AlertStateError(f"cannot read the alert state {self.path}: {exc}",
                                  f"move {self.path} aside; the agent then starts with nothing firing") from None

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({
            "version": STATE_VERSION,
            "alerts": {k: asdict(a) for k, a in sorted(self._alerts.items())},
            "silences": [asdict(s) for s in self._silences.values()],
            "next_silence": self._next_silence,
        }, indent=1, ensure_ascii=False) + "\n")

    def firing(self) -> list[Transition]:
        """What is firing now, its text as of its last observation."""
        out = []
        for a in self._alerts.values():
            if a.state == "firing" and a.rule in AlertRules.NAMES:
                rule = self.rules.rule(a.rule, a.labels)
                at = a.last_seen
                out.append(Transition("firing", a.rule, a.subject, a.labels, _text(a, rule, at, "firing"),
                                      a.since, at, a.value))
        return sorted(out, key=lambda t: t.since)

    def forget(self, subject: str) -> int:
        """Drop every alert of a subject without a notice (its environment was removed). Returns how many."""
        gone = [k for k, a in self._alerts.items() if a.subject == subject]
        for k in gone:
            del self._alerts[k]
        if gone:
            self._save()
        return len(gone)

    # -- silences --

    def silence(self, matcher: Mapping[str, str] | str, until: float, by: str, reason: str = "") -> Silence:
        """Keep alerts matching every key of `matcher` quiet until `until` (epoch seconds). Keys: "rule", "subject"
        or a label name; values are glob patterns ("shop/*"). A plain string matches the subject."""
        match = {"subject": matcher} if isinstance(matcher, str) else {str(k): str(v) for k, v in matcher.items()}
        now = self.clock()
        if not match or not all(match.values()):
            raise HeadwayError("a silence needs something to match",
                               "give a subject such as shop/production (or shop/*), and optionally a rule")
        if until <= now:
            raise HeadwayError(f"the silence would end at {_clock(until)}, which has passed",
                               "give an end in the future, e.g. two hours from now")
        if not by.strip():
            raise HeadwayError("a silence needs the name of who set it", "pass by= with a person's name")
        s = Silence(f"s{self._next_silence}", match, until, by, reason, now)
        self._next_silence += 1
        self._silences[s.id] = s
        self._save()
        return s

    def unsilence(self, silence_id: str) -> Silence:
        s = self._silences.pop(silence_id, None)
        if s is None:
            known = ", ".join(sorted(self._silences)) or "none"
            raise NotFound(f"no silence {silence_id!r}", f"the active silences are: {known}")
        self._save()
        return s

    def silences(self) -> list[Silence]:
        now = self.clock()
        return sorted((s for s in self._silences.values() if s.until > now), key=lambda s: s.until)

    def _quiet(self, a: _Alert, now: float) -> str | None:
        for s in self._silences.values():
            if s.until > now and s.matches(a.rule, a.subject, a.labels):
                return s.id
        if self.in_maintenance is not None and self.in_maintenance(a.subject):
            return "maintenance"
        return None

    # -- evaluation --

    def observe(self, observations: Iterable[Observation | tuple[Any, ...]], now: float) -> list[Transition]:
        """Feed one round of observations; returns the transitions (firing, repeat, resolved) in order."""
        out: list[Transition] = []
        changed = False  # beyond "still seen": the state file is written at once
        for raw in observations:
            obs = raw if isinstance(raw, Observation) else Observation(*raw)
            labels = {str(k): str(v) for k, v in (obs.labels or {}).items()}
            rule = self.rules.rule(obs.rule, labels)
            key = alert_key(obs.rule, obs.subject, labels)
            a = self._alerts.get(key)
            if not rule.enabled:
                changed |= self._alerts.pop(key, None) is not None
                continue
            if not rule.breached(obs.value):
                if a is not None:
                    changed = True
                    del self._alerts[key]
                    if a.state == "firing":
                        a.value, a.detail = obs.value, obs.detail
                        quiet = self._quiet(a, now) or (None if a.notified else "never sent")
                        out.append(self._transition("resolved", a, rule, now, quiet))
                continue
            if a is None or (a.state == "pending" and now - a.last_seen > self.max_gap):
                a = self._alerts[key] = _Alert(obs.rule, obs.subject, labels, "pending", now, now, obs.value)
                changed = True
            a.last_seen, a.value, a.detail = now, obs.value, obs.detail
            if a.state == "pending":
                if now - a.since >= rule.for_:
                    a.state, a.fired_at = "firing", now
                    out.append(self._send("firing", a, rule, now))
                continue
            repeat = self.rules.repeat_of(rule)
            if not a.notified and self._quiet(a, now) is None:  # fired while silenced: tell someone now
                out.append(self._send("firing", a, rule, now))
            elif repeat > 0 and a.last_sent is not None and now - a.last_sent >= repeat:
                out.append(self._send("repeat", a, rule, now))
        for k in [k for k, a in self._alerts.items() if a.state == "pending" and now - a.last_seen > self.max_gap]:
            del self._alerts[k]  # a pending condition not seen for a while starts over anyway
            changed = True
        live = {i: s for i, s in self._silences.items() if s.until > now}
        changed |= len(live) != len(self._silences)
        self._silences = live
        # "still seen" alone is written every third of the gap: a restart then loses less than that of a pending
        # alert's history, and the file is not rewritten at every round
        if changed or out or now - self._saved_at >= self.max_gap / 3:
            self._save()
            self._saved_at = now
        return out

    def _send(self, kind: Kind, a: _Alert, rule: Rule, now: float) -> Transition:
        quiet = self._quiet(a, now)
        a.last_sent = now
        if quiet is None:
            a.notified = True
        return self._transition(kind, a, rule, now, quiet)

    def _transition(self, kind: Kind, a: _Alert, rule: Rule, now: float, quiet: str | None) -> Transition:
        return Transition(kind, a.rule, a.subject, dict(a.labels), _text(a, rule, now, kind), a.since, now, a.value,
                          silenced=quiet is not None, silenced_by=quiet)


# -- what a person reads ----------------------------------------------------------------------------------------


def _text(a: _Alert, rule: Rule, now: float, kind: Kind) -> str:
    held = format_span(now - a.since)
    labels = dict(a.labels)
    who = a.subject
    v = a.value
    detail = f": {a.detail}" if a.detail else ""
    during = f" for {held}" if now - a.since >= 1 else ""

    def extra() -> str:  # labels the sentence does not already say (app and environment are the subject's)
        return "".join(f" ({k}={val})" for k, val in sorted(labels.items()) if k not in ("app", "environment"))

    if isinstance(rule, DownRule):
        cond, back = f"{who}{extra()} is down{during}{detail}", f"{who}{extra()} is up again (was down for {held})"
    elif isinstance(rule, P95Rule):
        cond = f"{who}{extra()}: p95 latency {_ms(float(v))} > {_ms(rule.above)}{during}{detail}"
        back = f"{who}{extra()}: p95 latency back to {_ms(float(v))} (was above {_ms(rule.above)} for {held})"
    elif isinstance(rule, QueueRule):
        q = labels.pop("queue", "?")
        cond = f"{who}{extra()}: queue {q} has {float(v):g} jobs waiting (> {rule.above}){during}{detail}"
        back = f"{who}{extra()}: queue {q} back to {float(v):g} jobs (was above {rule.above} for {held})"
    elif isinstance(rule, CertificateRule):
        domain = labels.pop("domain", "the site")
        left = float(v)
        state = "has expired" if left <= 0 else f"expires in {format_span(left)}"
        cond = f"{who}{extra()}: the certificate for {domain} {state} (alert below {format_span(rule.below)}){detail}"
        back = f"{who}{extra()}: the certificate for {domain} was renewed (expires in {format_span(left)})"
    elif isinstance(rule, BackupRule):
        db = labels.pop("database", "?")
        cond = f"{who}{extra()}: backup of {db}{detail or ': a problem'}"
        back = f"{who}{extra()}: backups of {db} are fine again (after {held})"
    elif isinstance(rule, RestartLoopRule):
        what = labels.pop("role", None) or labels.pop("container", None) or "a container"
        cond = f"{who}{extra()}: {what} restarted {float(v):g} times in {format_span(rule.within)}{detail}"
        back = f"{who}{extra()}: {what} stopped restarting (after {held})"
    elif isinstance(rule, _Above):
        name = {"error_rate": "error rate", "cpu": "CPU", "memory": "memory", "disk": "disk"}[a.rule]
        cond = f"{who}{extra()}: {name} {float(v):.1f}% > {rule.above:g}%{during}{detail}"
        back = f"{who}{extra()}: {name} back to {float(v):.1f}% (was above {rule.above:g}% for {held})"
    else:  # pragma: no cover - every rule class is handled above
        cond, back = f"{who}: {a.rule}{during}{detail}", f"{who}: {a.rule} cleared"
    if kind == "resolved":
        return f"resolved: {back}"
    if kind == "repeat":
        return f"{cond} (still firing since {_clock(a.fired_at or a.since)})"
    return cond


# -- the agent's alert state on the host, read by `status`, `alerts list` and the dashboard ----------------------
def alert_state_path(root: Path, subject: str) -> Path:
    """The Evaluator's state of `subject` (app/environment, or "host") under the host's state directory."""
    return root / "agent" / "alerts" / f"{subject.replace('/', '--')}.json"


def alert_history_path(root: Path, subject: str) -> Path:
    """The subject's firing, repeat and resolved notices, newest last (observe/monitor.py record_alert)."""
    return alert_state_path(root, subject).with_suffix(".history.jsonl")


def firing_alerts(root: Path, app: str, environment: str) -> list[dict[str, Any]]:
    """What the host's agent has firing for app/environment (nothing when no agent runs)."""
    try:
        alerts = json.loads(alert_state_path(root, f"{app}/{environment}").read_text()).get("alerts", {})
    except (OSError, ValueError):
        return []
    return [{"rule": a["rule"], "since": a["since"], "detail": a.get("detail", ""), "labels": a.get("labels") or {}}
            for a in alerts.values() if a.get("state") == "firing"]
