"""Canary releases: the new release gets a growing share of requests while its errors and latency are watched;
a breach sends every request back to the stable release within one analysis interval, by itself."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from headway.config.model import CanaryAnalysis, CanarySettings
from headway.observe.access_log import AccessLogReader, ReleaseStats
from headway.release.report import Reporter


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def judge(stats: ReleaseStats, analysis: CanaryAnalysis) -> Verdict | None:
    """A verdict on one window of the canary's requests; None while there are too few to judge."""
    if stats.requests < analysis.min_requests:
        return None
    if stats.success_rate < analysis.success_rate:
        return Verdict(False, f"success rate {stats.success_rate:.1f}% < {analysis.success_rate:g}% over "
                              f"{stats.requests} requests ({stats.server_errors} 5xx)")
    p95 = stats.percentile(95)
    if p95 > analysis.p95:
        return Verdict(False, f"p95 latency {p95 * 1000:.0f} ms > {analysis.p95 * 1000:.0f} ms over "
                              f"{stats.requests} requests")
    return Verdict(True, f"success {stats.success_rate:.1f}%, p95 {p95 * 1000:.0f} ms over {stats.requests} "
                         "requests")


class CanaryAborted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CanaryPromoted(Exception):
    """Promoted by hand: skip the remaining steps."""


class CanaryRequests:
    """`headway promote` / `headway abort` from another terminal leave a request the running deploy picks up."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "canary-request.json"

    def put(self, action: str, by: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"action": action, "by": by}))
        tmp.replace(self.path)

    def take(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        self.path.unlink(missing_ok=True)
        return data if isinstance(data, dict) else None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def watch_step(reader: AccessLogReader, release: str, weight: int, duration: float, settings: CanarySettings,
               requests: CanaryRequests, report: Reporter) -> ReleaseStats:
    """Hold one step: judge every analysis interval; raise CanaryAborted on a breach or a lack of traffic."""
    analysis = settings.analysis
    step_stats = ReleaseStats()
    window = ReleaseStats()
    started = time.monotonic()
    while True:
        time.sleep(min(analysis.interval, max(0.05, duration)))  # the analysis interval is the sampling period
        request = requests.take()
        if request is not None:
            if request.get("action") == "abort":
                raise CanaryAborted(f"aborted by {request.get('by', 'an operator')}")
            if request.get("action") == "promote":
                raise CanaryPromoted()
        fresh = reader.read().get(release, ReleaseStats())
        step_stats.merge(fresh)
        window.merge(fresh)
        verdict = judge(window, analysis)
        if verdict is not None:
            if not verdict.ok:
                raise CanaryAborted(f"at {weight}%: {verdict.reason}")
            window = ReleaseStats()  # judged: the next interval starts a new window
        elapsed = time.monotonic() - started
        if elapsed >= duration:
            final = judge(step_stats, analysis)
            if final is not None and final.ok:
                report.info(f"  canary at {weight}%: {final.reason}")
                return step_stats
            if elapsed >= duration + analysis.max_wait:
                raise CanaryAborted(f"at {weight}%: only {step_stats.requests} requests reached the canary in "
                                    f"{elapsed:.0f}s, fewer than min_requests={analysis.min_requests}; "
                                    "not enough traffic to judge it")
