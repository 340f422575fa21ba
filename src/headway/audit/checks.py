"""The audit's model: what each check found (a Finding), the facts the checks read (AuditContext), and the score.

A check is a small function that reads facts and returns what it found; no check changes anything. A check that
cannot read what it needs says so (`unknown`, with why) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from headway.config.resolve import Target
from headway.state.files import read_json_object
from headway.state.store import AppState, Current, ReleaseRecord

if TYPE_CHECKING:
    from headway.engine.base import Engine
    from headway.proxy.nginx import Proxy

Severity = Literal["critical", "warning", "info"]
Status = Literal["passed", "failed", "unknown"]
CATEGORIES = ("releases", "data", "security", "operations")
WEIGHTS: dict[str, int] = {"critical": 5, "warning": 3, "info": 1}
CRITICAL_CAP = 40  # a category with a failed critical check scores at most this
UNKNOWN_CREDIT = 0.5  # what was not checked is not known to be good: half the credit of a pass


@dataclass(frozen=True)
class Finding:
    id: str  # category.check[.subject], stable from run to run
    category: str
    severity: Severity
    title: str
    status: Status
    evidence: str  # what was seen (never a secret value); for `unknown`, why it could not be checked
    fix: str | None = None  # a headway command where one exists

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "severity": self.severity, "title": self.title,
                "status": self.status, "evidence": self.evidence, "fix": self.fix}


@dataclass(frozen=True)
class Result:
    """What one check function returns; the check's id, category and title are added by `run_checks`."""

    status: Status
    evidence: str
    fix: str | None = None
    severity: Severity | None = None  # instead of the check's usual severity
    subject: str | None = None  # a database, a role, an image: the finding's id gets it as a suffix


def passed(evidence: str, **kw: Any) -> Result:
    return Result("passed", evidence, **kw)


def failed(evidence: str, fix: str | None = None, **kw: Any) -> Result:
    return Result("failed", evidence, fix, **kw)


def unknown(why: str, fix: str | None = None, **kw: Any) -> Result:
    return Result("unknown", f"could not check: {why}", fix, **kw)


CheckFn = Callable[["AuditContext"], "Result | Iterable[Result] | None"]


@dataclass(frozen=True)
class Check:
    id: str
    category: str
    title: str
    severity: Severity
    fn: CheckFn


def check(registry: list[Check], id: str, title: str, severity: Severity) -> Callable[[CheckFn], CheckFn]:
    """Register `fn` as the check `id` (category.name) in `registry`."""
    def add(fn: CheckFn) -> CheckFn:
        registry.append(Check(id, id.split(".", 1)[0], title, severity, fn))
        return fn
    return add


@dataclass
class AuditContext:
    """Everything the checks read, each fact read once. `engine` None: no Docker engine here (or a unit test)."""

    target: Target
    state_root: Path
    engine: Engine | None = None
    engine_error: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    max_age_days: float = 7.0
    probe_timeout: float = 5.0
    from_bundle: bool = False  # on a server, for a command typed elsewhere: the repository is not here
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> str:
        return self.target.environment

    @cached_property
    def state(self) -> AppState:
        return AppState(self.state_root, self.target.app, self.target.environment)

    @cached_property
    def current(self) -> Current:
        try:
            return self.state.current()
        except (OSError, ValueError):
            return Current()

    @cached_property
    def history(self) -> list[ReleaseRecord]:
        try:
            return self.state.history()
        except (OSError, ValueError):
            return []

    @cached_property
    def live_record(self) -> ReleaseRecord | None:
        live = self.current.live
        return next((r for r in reversed(self.history) if r.number == live and r.action == "deploy"), None)

    @cached_property
    def proxy(self) -> Proxy:
        """The proxy's files on this host (settings, routes); its container only through the engine."""
        from headway.proxy.nginx import Proxy

        return Proxy(cast("Engine", self.engine), self.state_root)

    def no_engine(self) -> Result:
        return unknown(f"the Docker engine is not reachable here ({self.engine_error or 'not connected'})",
                       "run `headway doctor` on the host that runs the environment, with Docker running")

    def no_repository(self) -> Result:
        return unknown("the repository is not sent to the server", "run `headway doctor` in a checkout of it "
                       "against a local environment, or in CI")

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object from the environment's state directory; None when absent or unreadable."""
        return read_json_object(self.state.dir / name)

    def age_days(self, iso: str) -> float | None:
        try:
            when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (self.now - when).total_seconds() / 86400


def run_checks(checks: Iterable[Check], ctx: AuditContext) -> list[Finding]:
    """Run every check; one that raises is reported as `unknown` with its error (the audit goes on)."""
    out: list[Finding] = []
    for c in checks:
        try:
            raw = c.fn(ctx)
            results = [] if raw is None else [raw] if isinstance(raw, Result) else list(raw)
        except Exception as exc:  # noqa: BLE001 - an audit reports what it could not check and goes on
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            results = [unknown(message.splitlines()[0][:300])]
        for r in results:
            out.append(Finding(id=f"{c.id}.{r.subject}" if r.subject else c.id, category=c.category,
                               severity=r.severity or c.severity, title=c.title + (f" ({r.subject})" if r.subject
                                                                                   else ""),
                               status=r.status, evidence=r.evidence, fix=r.fix))
    return out


# -- scoring --------------------------------------------------------------------------------------------------
def category_score(findings: list[Finding]) -> int | None:
    """0-100: the weighted share of passed checks (critical 5, warning 3, info 1; an unknown gets half credit);
    a failed critical check caps it at CRITICAL_CAP. None when the category has nothing to check."""
    total = sum(WEIGHTS[f.severity] for f in findings)
    if total == 0:
        return None
    got = sum(WEIGHTS[f.severity] * (1.0 if f.status == "passed" else UNKNOWN_CREDIT if f.status == "unknown"
                                     else 0.0) for f in findings)
    score = round(100 * got / total)
    if any(f.severity == "critical" and f.status == "failed" for f in findings):
        score = min(score, CRITICAL_CAP)
    return score


def scores(findings: list[Finding]) -> tuple[int, dict[str, int | None]]:
    """The overall score (the mean of the categories that have checks) and each category's."""
    per = {cat: category_score([f for f in findings if f.category == cat]) for cat in CATEGORIES}
    counted = [s for s in per.values() if s is not None]
    return (round(sum(counted) / len(counted)) if counted else 0), per
