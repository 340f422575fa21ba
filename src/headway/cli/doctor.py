"""`headway doctor -e ENV`: the production-readiness audit (headway.audit), as tables or JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from headway.cli.main import Context, env_option, json_option, pass_ctx
from headway.cli.render import ConsoleReporter, Table, escape, out_console, print_json
from headway.errors import DockerUnavailable, ExitCode, HeadwayError

_MARK = {"passed": "[green]✓[/green]", "failed": "[red]✗[/red]", "unknown": "[yellow]?[/yellow]"}
_SEVERITY = {"critical": "[bold red]critical[/bold red]", "warning": "[yellow]warning[/yellow]", "info": "info"}


@click.command()
@env_option
@click.option("--min-score", type=click.IntRange(0, 100), default=None, metavar="N",
              help="Exit with status 1 when the score is below N (for CI).")
@click.option("--max-age", type=click.FloatRange(min=0.1), default=7.0, show_default=True, metavar="DAYS",
              help="How recent the last backup, verification and restore drill must be.")
@json_option
@pass_ctx
def doctor(obj: Context, environment: str, min_score: int | None, max_age: float, as_json: bool) -> None:
    """Audit an environment for production: releases, data, security, operations, scored out of 100."""
    from headway.audit.checks import AuditContext
    from headway.audit.report import audit

    obj.forward_if_remote(environment)
    bundled = os.environ.get("HEADWAY_SOURCE") == "bundle"  # run on a server for a command typed elsewhere
    try:
        hw = obj.headway(environment, ConsoleReporter(quiet=True))
        ctx = AuditContext(hw.target, hw.state.root, hw.engine, max_age_days=max_age, from_bundle=bundled)
    except DockerUnavailable as exc:  # the config, files and host can still be audited
        from headway.config.resolve import load_target
        from headway.state.store import state_root

        root = Path(obj.state_dir) if obj.state_dir else state_root()
        ctx = AuditContext(load_target(environment, obj.config), root, None, engine_error=exc.message,
                           max_age_days=max_age, from_bundle=bundled)
    report = audit(ctx)
    if as_json:
        print_json(report)
    else:
        show(report)
    if min_score is not None and report["score"] < min_score:
        raise HeadwayError(f"the score {report['score']} is below --min-score {min_score}",
                           "fix the failed checks above (each says how), then run `headway doctor` again",
                           exit_code=ExitCode.FAILURE)


def show(report: dict[str, Any]) -> None:
    out_console.print(f"[bold]{escape(report['app'])}/{escape(report['environment'])}[/bold]  production "
                      f"readiness [bold]{report['score']}/100[/bold]")
    for category, summary in report["categories"].items():
        rows = [f for f in report["findings"] if f["category"] == category]
        if not rows:
            continue
        score = summary["score"]
        table = Table("", "severity", "check", "evidence", "fix", box=None, title_justify="left",
                      title=f"[bold]{category}[/bold] {score}/100  ({summary['passed']} passed, {summary['failed']} "
                            f"failed, {summary['unknown']} unknown)")
        order = {"failed": 0, "unknown": 1, "passed": 2}
        for f in sorted(rows, key=lambda f: (order[f["status"]], f["id"])):
            table.add_row(_MARK[f["status"]], _SEVERITY[f["severity"]], escape(f["title"]), escape(f["evidence"]),
                          escape(f["fix"] or ""))
        out_console.print()
        out_console.print(table)
    changed = report.get("changes")
    out_console.print()
    if changed is None:
        out_console.print("first audit of this environment: the next one shows what changed")
        return
    since = str(changed.get("since") or "")[:16].replace("T", " ")
    before = changed.get("previous_score")
    out_console.print(f"since the last audit ({since}, score {before if before is not None else '—'}):")
    if not changed["newly_failed"] and not changed["newly_passed"]:
        out_console.print("  nothing newly failing or passing")
    for fid in changed["newly_failed"]:
        out_console.print(f"  [red]newly failing[/red] {escape(fid)}")
    for fid in changed["newly_passed"]:
        out_console.print(f"  [green]newly passing[/green] {escape(fid)}")
