"""`headway db`: the environment's databases: status, logs, shell, backups, verification and restore."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import ConsoleReporter, Table, err_console, escape, out_console, print_json
from headway.errors import ConfigError, ExitCode, HeadwayError

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
        row["pitr"] = _pitr_window(hw, row["name"])
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
        pitr = row["pitr"]
        if pitr is None:
            continue
        if pitr.get("error"):
            out_console.print(f"[yellow]point-in-time recovery of {row['name']}[/yellow]: "
                              f"{escape(pitr['error'])}")
        elif pitr["earliest"]:
            out_console.print(f"point-in-time recovery of {row['name']}: {pitr['earliest']} … {pitr['latest']} "
                              f"({pitr['base_backups']} base backup(s), archive_timeout {pitr['archive_timeout']}s)")
        else:
            out_console.print(f"[yellow]point-in-time recovery of {row['name']}[/yellow]: no base backup yet "
                              f"(`headway db base-backup -e {environment} {row['name']}`)")


def _pitr_window(hw: Any, name: str) -> dict[str, Any] | None:
    """The recoverable window of a database with `pitr`, or None without it."""
    from headway.data.recovery import show

    svc = hw.databases()
    spec = svc.dbs.spec(name)
    if not spec.pitr_enabled:
        return None
    out: dict[str, Any] = {"earliest": None, "latest": None, "base_backups": 0,
                           "archive_timeout": int(spec.pitr.archive_timeout)}
    if svc.dbs.container(spec) is None:
        out["error"] = f"not created yet (`headway deploy -e {hw.target.environment}` creates it)"
        return out
    try:
        info = svc.dbs.pitr(spec).info()
    except HeadwayError as exc:
        out["error"] = exc.message
        return out
    out.update(earliest=show(info.earliest) if info.earliest else None,
               latest=show(info.latest) if info.latest else None, base_backups=len(info.backups))
    return out


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
    """Dump with the engine's own tool, compress, checksum (encrypt), store; then apply retention. Without NAME:
    every database of the environment, one after the other."""
    svc = _hw(obj, environment).databases()
    records = [svc.backup(name, wait=wait)] if name is not None else svc.backup_all(wait=wait)
    if as_json:
        print_json(records[0].model_dump() if len(records) == 1 else [r.model_dump() for r in records])
        return
    for rec in records:
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
@click.option("--db", "--name", "name", default=None,
              help="Database (when BACKUP is not given): its newest good backup (safety backups left out).")
@click.option("--into", default=None, help="Restore into this database of headway.yml (default: the backup's).")
@click.option("--to", "to", default=None, metavar="TIME",
              help='Point-in-time recovery (databases with pitr): the state at TIME, e.g. "2026-11-21 14:05" '
                   "(UTC unless a zone is given).")
@identity_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def db_restore(obj: Any, environment: str, backup: str | None, name: str | None, into: str | None,
               to: str | None, identity: str | None, yes: bool, as_json: bool) -> None:
    """Check the backup, restore beside the live data, take a safety backup, then swap it in, holding requests
    (maintenance page) for the swap alone; or, with --to, recover the database to a point in time. Without BACKUP:
    the newest good backup someone took (safety backups are never picked unless named)."""
    if to is not None:
        if backup is not None or into is not None:
            raise HeadwayError("--to recovers from the WAL archive; it takes no BACKUP and no --into",
                               "drop BACKUP/--into, or drop --to", exit_code=ExitCode.USAGE)
        _restore_to(obj, environment, name, to, yes, as_json)
        return
    hw = _hw(obj, environment)
    svc = hw.databases()
    if into is not None:
        svc.dbs.spec(into)  # an unknown --into is refused before anything else
    rec = svc.get(backup, name)
    identities = _identities(identity)
    _notes(svc.describe_choice(rec))
    if not yes:
        target = into or rec.database
        if not sys.stdin.isatty() or not click.confirm(
                f"Replace the data of {target} in {environment} with {rec.id} ({rec.started_at[:19]})? "
                "Requests are held (maintenance page) for the swap."):
            raise HeadwayError("not restored", "confirm at the prompt, or pass --yes", exit_code=ExitCode.ABORTED)
    result = hw.restore_database(rec.id, into=into, identities=identities, confirmed=True)
    if as_json:
        print_json(result.__dict__)
        return
    err_console.print(f"[green]restored[/green] {result.backup_id} into {result.database} in {result.seconds:.1f}s "
                      f"(requests held {result.held_s:.2f}s, no container restarted); safety backup "
                      f"{result.safety_backup}; the data that was live is kept as {result.kept_as}")


def _notes(lines: list[str]) -> None:
    """Which backup was picked and how old it is; warnings in yellow."""
    for line in lines:
        if line.startswith("warning: "):
            err_console.print(f"[yellow]warning:[/yellow] {escape(line[len('warning: '):])}")
        elif ": warning: " in line:
            where, _, rest = line.partition(": warning: ")
            err_console.print(f"[yellow]warning[/yellow] ({escape(where)}): {escape(rest)}")
        else:
            err_console.print(escape(line))


def _restore_to(obj: Any, environment: str, name: str | None, to: str, yes: bool, as_json: bool) -> None:
    from headway.data.recovery import parse_time, restore_to_time, show

    when = parse_time(to)
    hw = _hw(obj, environment)
    spec = hw.databases().dbs.spec(name)
    if not yes and (not sys.stdin.isatty() or not click.confirm(
            f"Restore {spec.name} in {environment} to {show(when)}? Everything written after it is set aside; "
            "the app stops until the database is back.")):
        raise HeadwayError("not restored", "confirm at the prompt, or pass --yes", exit_code=ExitCode.ABORTED)
    result = restore_to_time(hw, when, spec.name, confirmed=True)
    if as_json:
        print_json(result.as_dict())
        return
    err_console.print(f"[green]restored[/green] {result.database} to {show(result.target)}: recovered to "
                      f"{show(result.recovered_to)} (the last transaction replayed) in {result.seconds:.1f}s; "
                      + (f"app down {result.app_down_s:.1f}s, " if result.app_stopped else "app not running, ")
                      + f"database down {result.database_down_s:.1f}s")
    err_console.print(f"  serving from {result.data_volume}; the data before is kept in {result.previous_volume} "
                      "until the next restore" + (f"; new base backup {result.base_backup}"
                                                  if result.base_backup else ""))
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


@db.command("base-backup")
@env_option
@click.argument("name", required=False)
@click.option("--db", "--name", "db_name", default=None, help="Database (the same as NAME).")
@click.option("--kind", type=click.Choice(["full", "diff", "incr"]), default="full", show_default=True)
@json_option
@click.pass_obj
def db_base_backup(obj: Any, environment: str, name: str | None, db_name: str | None, kind: str,
                   as_json: bool) -> None:
    """A pgBackRest base backup of a database with point-in-time recovery (pitr)."""
    from headway.data.recovery import base_backup, show

    backup = base_backup(_hw(obj, environment), name or db_name, kind)
    if as_json:
        print_json({"label": backup.label, "kind": backup.kind, "started": backup.started.isoformat(),
                    "stopped": backup.stopped.isoformat(), "size": backup.size, "repo_size": backup.repo_size})
        return
    err_console.print(f"[green]base backup[/green] {backup.label} ({backup.kind}): {_size(backup.size)} → "
                      f"{_size(backup.repo_size)} in the repository, finished {show(backup.stopped)}")


@db.command("clone")
@click.argument("source", metavar="SOURCE")
@click.argument("target", metavar="TARGET")
@click.option("--anonymize", "rules_path", required=True, type=click.Path(dir_okay=False),
              help="Rules file (anonymize.yml): what each table's personal columns become in the copy.")
@click.option("--db", "--name", "name", default=None, help="Database (when the app has more than one).")
@click.option("--salt-secret", "salt_secret", default=None, metavar="NAME",
              help="A secret of TARGET whose value salts the fakes (unsalted, a fake can be matched against a list "
                   "of known values).")
@identity_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def db_clone(obj: Any, source: str, target: str, rules_path: str, name: str | None, salt_secret: str | None,
             identity: str | None, yes: bool, as_json: bool) -> None:
    """Fill TARGET's database with an anonymized copy of SOURCE's newest good backup (never production; safety
    backups are never picked)."""
    from headway.data.anonymize import load_rules
    from headway.data.clone import check_environments, clone_database, plan_clone
    from headway.data.deploy_hooks import DeployerAppControl

    rules = load_rules(rules_path)  # a broken rules file is reported before anything else happens
    check_environments(source, target)
    src, dst = _hw(obj, source, quiet=True), _hw(obj, target)
    salt = ""
    if salt_secret is not None:
        if salt_secret not in dst.target.secrets:
            raise ConfigError(f"--salt-secret {salt_secret}: no such secret for {target}",
                              f"add {salt_secret}=... to the secrets file of {target} (.headway/secrets.{target})")
        salt = dst.target.secrets[salt_secret]
    plan = plan_clone(src, dst, name)
    _notes(plan.notes)
    if not yes and (not sys.stdin.isatty() or not click.confirm(
            f"Replace the data of {plan.database} in {target} with an anonymized copy of {plan.backup.id} "
            f"({source}, {plan.backup.started_at[:19]})? Requests of {target} are held for the swap.")):
        raise HeadwayError("not cloned", "confirm at the prompt, or pass --yes", exit_code=ExitCode.ABORTED)
    result = clone_database(src, dst, plan, rules, identities=_identities(identity),
                            app=DeployerAppControl(dst.deployer), salt=salt, confirmed=True)
    if as_json:
        print_json(result.as_dict())
        return
    err_console.print(f"[green]cloned[/green] {result.backup_id} ({source}) into {result.database} in {target}, "
                      f"anonymized with {escape(rules.source)}, in {result.seconds:.1f}s (requests held "
                      f"{result.held_s:.2f}s); {target}'s data before is kept as {result.kept_as} (safety "
                      f"backup {result.safety_backup})")
    table = Table("table", "rows", "column", "rule", "values rewritten", box=None)
    for t in result.anonymized.tables:
        for i, c in enumerate(t.columns):
            table.add_row(t.table if i == 0 else "", str(t.rows) if i == 0 else "", c.column, escape(c.rule),
                          str(c.values))
    out_console.print(table)


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
    root = hw.state.root
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
