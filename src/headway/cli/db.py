"""`headway db`: the environment's databases: status, logs, shell, backups, verification and restore."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from headway.cli.render import ConsoleReporter, err_console, out_console, print_json
from headway.errors import ExitCode, HeadwayError

env_option = click.option("-e", "--environment", "environment", required=True, metavar="ENV",
                          help="Environment from headway.yml, e.g. production or staging.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
identity_option = click.option("--identity", "identity", type=click.Path(dir_okay=False), default=None,
                               envvar="HEADWAY_AGE_IDENTITY",
                               help="age identity file (private key) for encrypted backups.")


def _hw(obj: Any, environment: str, quiet: bool = False) -> Any:
    return obj.headway(environment, ConsoleReporter(quiet=quiet))


def _identities(path: str | None) -> list[Any] | None:
    if path is None:
        return None
    from headway.data.pipeline import load_identity

    return load_identity(path)


def _size(n: int) -> str:
    from headway.data.backup import _size as size

    return size(n)


@click.group()
def db() -> None:
    """Databases of an environment: status, logs, shell, backups, verification, restore."""


@db.command("status")
@env_option
@json_option
@click.pass_obj
def db_status(obj: Any, environment: str, as_json: bool) -> None:
    """Each database: engine, image, state, URL variable, newest good backup and its verification."""
    from headway.data.schedule import next_runs

    hw = _hw(obj, environment, quiet=True)
    svc = hw.databases()
    rows = svc.dbs.status()
    runs = next_runs(hw.target)
    for row in rows:
        good = svc.catalog.good(row["name"])
        failed = [r for r in svc.catalog.all(row["name"]) if r.status == "failed"]
        row["last_backup"] = good[0].model_dump() if good else None
        row["last_failure"] = failed[-1].model_dump() if failed else None
        row["next_scheduled"] = runs.get(row["name"])
    if as_json:
        print_json(rows)
        return
    table = Table("database", "engine", "image", "state", "env var", "last good backup", "verified", "next backup",
                  box=None)
    for row in rows:
        last = row["last_backup"]
        table.add_row(row["name"], row["engine"], row["image"], row["state"], row["url_env"],
                      f"{last['id']} ({last['started_at'][:16].replace('T', ' ')})" if last else "[red]none[/red]",
                      (last.get("verify_status") or "no") if last else "",
                      (row["next_scheduled"] or "not scheduled").replace("T", " ")[:16])
    out_console.print(table)
    for row in rows:
        if row["last_failure"] and (not row["last_backup"] or
                                    row["last_failure"]["started_at"] > row["last_backup"]["started_at"]):
            out_console.print(f"[red]last backup of {row['name']} FAILED[/red]: "
                              f"{escape(row['last_failure']['error'] or '')}")


@db.command("logs")
@env_option
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", default=100, show_default=True, help="Lines to start with.")
@click.pass_obj
def db_logs(obj: Any, environment: str, name: str | None, follow: bool, tail: int) -> None:
    """The database server's log."""
    svc = _hw(obj, environment, quiet=True).databases()
    for line in svc.dbs.logs(svc.dbs.spec(name), follow=follow, tail=tail):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@db.command("shell")
@env_option
@click.argument("name", required=False)
@click.pass_obj
def db_shell(obj: Any, environment: str, name: str | None) -> None:
    """An interactive client (psql, mariadb, redis-cli) connected as the app's user."""
    svc = _hw(obj, environment, quiet=True).databases()
    container, argv, env = svc.dbs.shell_command(svc.dbs.spec(name))
    with tempfile.NamedTemporaryFile("w", prefix="headway-env-", delete=True) as fh:
        os.chmod(fh.name, 0o600)  # the password goes through a private file, never the command line
        fh.write("".join(f"{k}={v}\n" for k, v in env.items()))
        fh.flush()
        tty = ["-it"] if sys.stdin.isatty() else ["-i"]
        sys.exit(subprocess.call(["docker", "exec", *tty, "--env-file", fh.name, container, *argv]))


@db.command("backup")
@env_option
@click.argument("name", required=False)
@click.option("--wait", type=float, default=0.0, metavar="SECONDS",
              help="Wait this long for another backup or restore of the database to finish.")
@json_option
@click.pass_obj
def db_backup(obj: Any, environment: str, name: str | None, wait: float, as_json: bool) -> None:
    """Dump with the engine's own tool, compress, checksum (encrypt), store; then apply retention."""
    svc = _hw(obj, environment).databases()
    rec = svc.backup(name, wait=wait)
    if as_json:
        print_json(rec.model_dump())
        return
    err_console.print(f"[green]backed up[/green] {rec.database} as {rec.id}: {_size(rec.raw_size)} → "
                      f"{_size(rec.size)} in {rec.duration_s:.1f}s, sha256 {rec.sha256[:16]}…"
                      + (" (encrypted)" if rec.encrypted else ""))
    for where, location in rec.locations.items():
        err_console.print(f"  {where}: {location}")


@db.command("backups")
@env_option
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="Include backups deleted by retention.")
@json_option
@click.pass_obj
def db_backups(obj: Any, environment: str, name: str | None, show_all: bool, as_json: bool) -> None:
    """The backup catalog: status (failures included), size, duration, checksum, where, verified when."""
    svc = _hw(obj, environment, quiet=True).databases()
    records = [r for r in svc.backups(name) if show_all or r.status != "deleted"]
    if as_json:
        print_json([r.model_dump() for r in records])
        return
    table = Table("backup", "status", "reason", "when", "size", "took", "verified", "where", "sha256 / error",
                  box=None)
    for r in reversed(records):
        status = {"good": "[green]good[/green]", "failed": "[red]FAILED[/red]",
                  "running": "[yellow]running or interrupted[/yellow]"}.get(r.status, r.status)
        verified = f"{r.verify_status} {r.verified_at[:16].replace('T', ' ')}" if r.verified_at else "no"
        table.add_row(r.id, status, r.reason, r.started_at[:19].replace("T", " "),
                      _size(r.size) if r.status == "good" else "", f"{r.duration_s:.1f}s", verified,
                      ", ".join(r.locations), escape(r.error or "") if r.status == "failed" else r.sha256[:16])
    out_console.print(table)


@db.command("verify")
@env_option
@click.argument("backup", required=False)
@click.option("--db", "name", default=None, help="Database (when BACKUP is not given): its newest good backup.")
@identity_option
@json_option
@click.pass_obj
def db_verify(obj: Any, environment: str, backup: str | None, name: str | None, identity: str | None,
              as_json: bool) -> None:
    """Restore a backup into a throwaway container and check it: exit status, row counts, the SQL check."""
    svc = _hw(obj, environment).databases()
    result = svc.verify(backup, name=name, identities=_identities(identity))
    if as_json:
        print_json(result.__dict__)
    colour = "green" if result.status == "passed" else "yellow" if result.ok else "red"
    err_console.print(f"[{colour}]{result.status}[/{colour}] {result.backup_id}: {escape(result.detail)}")
    if not result.ok:
        sys.exit(ExitCode.FAILURE)


@db.command("restore")
@env_option
@click.argument("backup", required=False)
@click.option("--db", "name", default=None, help="Database (when BACKUP is not given): its newest good backup.")
@click.option("--into", default=None, help="Restore into this database of headway.yml (default: the backup's).")
@identity_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def db_restore(obj: Any, environment: str, backup: str | None, name: str | None, into: str | None,
               identity: str | None, yes: bool, as_json: bool) -> None:
    """Check the backup, take a safety backup, restore beside the live data, then swap it in with the app stopped."""
    hw = _hw(obj, environment)
    svc = hw.databases()
    rec = svc.get(backup, name)
    identities = _identities(identity)
    if not yes:
        target = into or rec.database
        if not sys.stdin.isatty() or not click.confirm(
                f"Replace the data of {target} in {environment} with {rec.id} ({rec.started_at[:19]})? "
                "The app stops for the swap."):
            raise HeadwayError("not restored", "confirm at the prompt, or pass --yes", exit_code=ExitCode.ABORTED)
    result = hw.restore_database(rec.id, into=into, identities=identities, confirmed=True)
    if as_json:
        print_json(result.__dict__)
        return
    err_console.print(f"[green]restored[/green] {result.backup_id} into {result.database} in {result.seconds:.1f}s "
                      f"(app stopped {result.app_stopped_s:.1f}s); safety backup {result.safety_backup}; the data "
                      f"that was live is kept as {result.kept_as}")


@db.command("schedule")
@env_option
@click.option("--install", is_flag=True, help="Write the cron file (default: print it).")
@click.option("--cron-dir", type=click.Path(file_okay=False), default="/etc/cron.d", show_default=True)
@click.option("--log-dir", type=click.Path(file_okay=False), default="/var/log/headway", show_default=True)
@click.pass_obj
def db_schedule(obj: Any, environment: str, install: bool, cron_dir: str, log_dir: str) -> None:
    """Scheduled backups (backup.schedule) as a cron file for the host's cron; print it, or --install it."""
    from headway.config.loader import find_config
    from headway.data import schedule

    hw = _hw(obj, environment, quiet=True)
    config = find_config(explicit=getattr(obj, "config", None))
    root = hw.state.dir.parents[2]
    if not install:
        sys.stdout.write(schedule.render_cron(hw.target, config, root, Path(log_dir)))
        return
    path = schedule.install(hw.target, config, root, Path(cron_dir), Path(log_dir))
    err_console.print(f"[green]installed[/green] {path}" if path else "no database has a backup.schedule: "
                      "removed the cron file")


@db.command("run-scheduled")
@env_option
@click.argument("name")
@identity_option
@click.pass_obj
def db_run_scheduled(obj: Any, environment: str, name: str, identity: str | None) -> None:
    """What cron runs: a backup, then its verification (backup.verify), retention after success."""
    hw = _hw(obj, environment)
    out = hw.databases().scheduled(name, identities=_identities(identity))
    print_json(out)
    verify = out.get("verify")
    if verify is not None and verify["status"] == "failed":
        sys.exit(ExitCode.FAILURE)
