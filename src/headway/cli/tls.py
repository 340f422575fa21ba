"""`headway tls`: the certificates on this host, and their renewal (run from cron or a timer on the host)."""

from __future__ import annotations

from typing import Any

import click

from headway.cli.render import ConsoleReporter, Table, err_console, out_console, print_json


def _proxy(obj: Any) -> Any:
    from headway.service import Headway

    return Headway.proxy_only(getattr(obj, "state_dir", None))


@click.group()
def tls() -> None:
    """TLS certificates of every app on this host: status, renewal and its schedule."""


@tls.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_obj
def tls_status(obj: Any, as_json: bool) -> None:
    """Every certificate on the host: domains, expiry, days left, ACME or custom, in use or not."""
    from headway.proxy.certificates import CRON_DIR, certificate_report, last_renewal_run, renewal_scheduled

    proxy = _proxy(obj)
    report = certificate_report(proxy)
    last = last_renewal_run(proxy)
    scheduled = renewal_scheduled(proxy.dir.parent.resolve(), CRON_DIR)
    if as_json:
        print_json({"certificates": report, "renewal_scheduled": scheduled, "last_renewal": last})
        return
    if not report:
        err_console.print("no certificates on this host (an environment with `tls:` gets one when it is deployed)")
        return
    table = Table("app--environment", "domains", "expires", "days left", "source", "in use", box=None)
    for c in report:
        days = c["days_left"]
        colour = "red" if days <= 7 else "yellow" if days <= 30 else "green"
        table.add_row(c["route"], " ".join(c["domains"]), c["not_after"][:10], f"[{colour}]{days:.0f}[/{colour}]",
                      c["source"], "yes" if c["in_use"] else "no")
    out_console.print(table)
    if last is not None:
        failed = [r["route"] for r in last["results"] if r["status"] == "failed"]
        outcome = f"[red]failed for {', '.join(failed)}[/red]" if failed else "ok"
        out_console.print(f"last renewal run: {last['at'][:16].replace('T', ' ')} UTC, {outcome}")
    if not scheduled and any(c["renews"] and c["in_use"] for c in report):
        err_console.print("[yellow]warning:[/yellow] nothing renews these certificates on a schedule: run "
                          "`headway tls schedule --install`")


@tls.command("renew")
@click.option("--within-days", default=30, show_default=True, type=click.IntRange(min=0),
              help="Renew ACME certificates that expire within this many days.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and failures (for cron).")
@click.pass_obj
def tls_renew(obj: Any, within_days: int, as_json: bool, quiet: bool) -> None:
    """Renew due certificates, then reload the proxy once; exits non-zero if any renewal failed."""
    from headway.proxy.certificates import renew_due

    reporter = ConsoleReporter(quiet=quiet or as_json)
    results = renew_due(_proxy(obj), within_days=within_days, reporter=reporter)
    if as_json:
        print_json([r.as_dict() for r in results])
    elif not quiet:
        for r in results:
            if r.status == "renewed":
                err_console.print(f"[green]renewed[/green] {r.key} ({' '.join(r.domains)}), valid until "
                                  f"{r.not_after:%Y-%m-%d}")
            elif r.status == "not-due":
                err_console.print(f"ok {r.key}: {r.days_left:.0f} days left")
            elif r.status == "unused":
                err_console.print(f"skipped {r.key}: no route serves it")
            elif r.status == "custom":
                err_console.print(f"[yellow]warning[/yellow] {r.key}: custom certificate expires "
                                  f"{r.not_after:%Y-%m-%d}; replace its files and deploy")
        if not results:
            err_console.print("no certificates on this host")
    elif any(r.status == "custom" for r in results):
        for r in results:
            if r.status == "custom":
                err_console.print(f"warning: {r.key}: custom certificate expires {r.not_after:%Y-%m-%d}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        from headway.proxy.acme import CertificateError

        first = failed[0]
        more = f" (and {len(failed) - 1} more, see `headway tls renew --json`)" if len(failed) > 1 else ""
        raise CertificateError(f"renewal of {first.key} failed{more}: {first.error}",
                               f"{first.fix or 'see the message'}; the current certificate keeps serving until "
                               f"{first.not_after:%Y-%m-%d}")


@tls.command("schedule")
@click.option("--install", is_flag=True, help="Write the cron file (default: print it).")
@click.option("--cron-dir", type=click.Path(file_okay=False), default="/etc/cron.d", show_default=True)
@click.option("--log-dir", type=click.Path(file_okay=False), default="/var/log/headway", show_default=True)
@click.pass_obj
def tls_schedule(obj: Any, install: bool, cron_dir: str, log_dir: str) -> None:
    """Renewal on this host's cron, twice a day (`headway tls renew`); print the cron file, or --install it."""
    import sys
    from pathlib import Path

    from headway.proxy.certificates import install_renewal_schedule, renewal_cron

    root = _proxy(obj).dir.parent.resolve()
    if not install:
        sys.stdout.write(renewal_cron(root, Path(log_dir)))
        return
    path = install_renewal_schedule(root, Path(cron_dir), Path(log_dir))
    err_console.print(f"[green]installed[/green] {path}: `headway tls renew` runs twice a day, logging to "
                      f"{Path(log_dir) / 'tls-renew.log'}")
