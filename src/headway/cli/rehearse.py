"""`headway rehearse -e ENV`: the new release's release command run against a throwaway copy of the newest backup
(headway.release.rehearse), with its duration, output, schema change, heavy locks and rewritten tables."""

from __future__ import annotations

import sys

import click

from headway.cli.main import Context, env_option, json_option, pass_ctx, source_options
from headway.cli.render import ConsoleReporter, Table, err_console, escape, out_console, print_json
from headway.errors import ExitCode

DIFF_LINES = 80  # of the schema diff shown on the terminal (--json has all of it)


@click.command()
@env_option
@click.option("--version", "version", default=None,
              help="Release version (default: the short commit id built, -dirty marked for --dirty).")
@click.option("--image-tag", default=None, metavar="TAG",
              help="Rehearse the images CI pushed with this tag (pulled from the registry; nothing is built).")
@source_options
@click.option("--backup", "backup_id", default=None, metavar="ID",
              help="Restore this backup (default: the newest good backup of each database).")
@click.option("--allow-empty", is_flag=True, help="With no backup to restore, rehearse on an empty database.")
@click.option("--identity", type=click.Path(dir_okay=False), default=None, envvar="HEADWAY_AGE_IDENTITY",
              help="age identity file, for encrypted backups.")
@click.option("--strict", is_flag=True,
              help="Exit 1 on flagged findings (heavy locks, rewrites of big tables) and on a failed second run.")
@json_option
@pass_ctx
def rehearse(obj: Context, environment: str, version: str | None, image_tag: str | None, ref: str | None,
             dirty: bool, force: bool, backup_id: str | None, allow_empty: bool, identity: str | None,
             strict: bool, as_json: bool) -> None:
    """Run the new release's release command against a throwaway copy of the newest backup, before production."""
    from headway.release.rehearse import rehearse as run

    hw = obj.headway(environment, ConsoleReporter(quiet=as_json))
    identities = None
    if identity is not None:
        from headway.data.pipeline import load_identity

        identities = load_identity(identity)
    report = run(hw, version=version, image_tag=image_tag, ref=ref, dirty=dirty, force=force,
                 allow_empty=allow_empty, backup_id=backup_id, identities=identities)
    if as_json:
        print_json(report.as_dict())
    else:
        show(report)
    if not report.ok:
        sys.exit(ExitCode.RELEASE_COMMAND_FAILED)
    if strict and (report.findings or report.release_twice_ok is False):
        sys.exit(ExitCode.FAILURE)


def show(report: object) -> None:
    from headway.release.rehearse import RehearsalReport, size_text

    assert isinstance(report, RehearsalReport)
    if not report.rehearsed:
        for note in report.notes:
            err_console.print(escape(note))
        return
    for note in report.notes:
        err_console.print(f"[yellow]{escape(note)}[/yellow]" if note.startswith("warning") else escape(note))
    for db in report.databases:
        for note in db.notes:
            err_console.print(f"[yellow]note[/yellow] {escape(db.name)}: {escape(note)}")
        diff = db.schema_diff.splitlines()
        if diff:
            out_console.print(f"[bold]schema change of {escape(db.name)}[/bold] ({len(diff)} diff lines)")
            for line in diff[:DIFF_LINES]:
                colour = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                out_console.print(f"[{colour}]{escape(line)}[/{colour}]")
            if len(diff) > DIFF_LINES:
                out_console.print(f"[dim]… {len(diff) - DIFF_LINES} more lines (--json has them all)[/dim]")
        else:
            out_console.print(f"[bold]schema of {escape(db.name)}[/bold]: unchanged")
        if db.locks:
            table = Table("database", "table", "lock", "held", "rows", "size", "statement", title="heavy locks")
            for lock in db.locks:
                table.add_row(escape(db.name), escape(lock.table), lock.mode, f"{lock.held_s:.2f}s",
                              f"{lock.rows:,}" if lock.rows is not None else "new",
                              size_text(lock.bytes) if lock.bytes is not None else "",
                              escape(" ".join(lock.statement.split())[:80]))
            out_console.print(table)
        if db.rewrites:
            out_console.print(f"rewritten in {escape(db.name)}: {escape(', '.join(db.rewrites))}")
    if not report.ok:
        err_console.print(f"[bold red]failed[/bold red] {escape(report.summary())}")
        if report.output_tail:
            err_console.print("[dim]--- its last output lines ---[/dim]")
            err_console.print(escape("\n".join(report.output_tail.splitlines()[-30:])))
        err_console.print("nothing live was touched; fix the release command or its migration and rehearse again")
        return
    for finding in report.findings:
        err_console.print(f"[yellow]warning[/yellow] {escape(finding.text)}")
    if report.release_twice_ok is False:
        err_console.print("[yellow]warning[/yellow] the release command failed when run a second time: it is not "
                          "safe to run twice (a retried deploy runs it again)")
        err_console.print(escape("\n".join(report.second_output_tail.splitlines()[-15:])))
    colour = "yellow" if report.findings or report.release_twice_ok is False else "green"
    copies = ", ".join(f"{d.name} from {d.backup or 'an empty database'}" for d in report.databases)
    err_console.print(f"[bold {colour}]rehearsed[/bold {colour}] {escape(report.version or '')}: release command "
                      f"{report.duration_s:.1f}s on {escape(copies)}; second run "
                      f"{'ok' if report.release_twice_ok else 'failed'}; {len(report.findings)} finding(s)")
