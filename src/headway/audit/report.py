"""One audit run: every category's checks, the scores, what changed since the last run, and the report kept."""

from __future__ import annotations

from typing import Any

from headway.audit import data, operations, releases, security
from headway.audit.checks import CATEGORIES, AuditContext, Check, Finding, run_checks, scores
from headway.audit.history import changes, load_report, save_report
from headway.state.store import now_iso

ALL_CHECKS: list[Check] = [*releases.CHECKS, *data.CHECKS, *security.CHECKS, *operations.CHECKS]


def audit(ctx: AuditContext, *, keep: bool = True) -> dict[str, Any]:
    """Run every check against `ctx`; the report as plain data. `keep`: save it as the environment's last report
    (the one thing an audit writes), after reading the previous one for `changes`."""
    findings: list[Finding] = run_checks(ALL_CHECKS, ctx)
    total, per = scores(findings)
    rows = [f.as_dict() for f in findings]
    report: dict[str, Any] = {
        "app": ctx.target.app, "environment": ctx.env, "at": now_iso(), "score": total,
        "categories": {c: {"score": per[c], "passed": sum(f.status == "passed" for f in findings if f.category == c),
                           "failed": sum(f.status == "failed" for f in findings if f.category == c),
                           "unknown": sum(f.status == "unknown" for f in findings if f.category == c)}
                       for c in CATEGORIES},
        "findings": rows,
    }
    previous = load_report(ctx.state.dir)
    report["changes"] = changes(previous, rows)
    if keep:
        save_report(ctx.state.dir, report)
    return report
