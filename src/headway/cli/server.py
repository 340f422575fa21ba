"""`headway server`: prepare a server over SSH (bootstrap) and see what it has (status)."""

from __future__ import annotations

import sys
from typing import Any

import click

from headway.cli.render import Table, err_console, escape, out_console, print_json

ssh_key_option = click.option("--ssh-key", type=click.Path(dir_okay=False, exists=True), default=None,
                              help="Private key to log in with (default: the SSH agent and ~/.ssh keys).")
accept_option = click.option("--accept-host-key", is_flag=True,
                             help="Trust the server's host key the first time (it is saved to known_hosts).")


def _ssh(obj: Any, ssh_key: str | None, accept_host_key: bool) -> tuple[str | None, bool]:
    return ssh_key or getattr(obj, "ssh_key", None), accept_host_key or bool(getattr(obj, "accept_host_key", False))


@click.group()
def server() -> None:
    """Servers reached over SSH: make one ready for headway, see its state."""


@server.command("bootstrap")
@click.argument("address", metavar="USER@HOST[:PORT]")
@click.option("--check", is_flag=True, help="Only report what would change (exit 1 if anything would).")
@click.option("--user", default="deploy", show_default=True, help="The deploy user: in the docker group, your key "
                                                                   "authorized, owner of /var/lib/headway.")
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False, exists=True), default=None,
              help="headway.yml whose environments' ports the firewall opens too.")
@ssh_key_option
@accept_option
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON on stdout.")
@click.pass_obj
def bootstrap_cmd(obj: Any, address: str, check: bool, user: str, config: str | None, ssh_key: str | None,
                  accept_host_key: bool, as_json: bool) -> None:
    """Install and configure a Debian/Ubuntu server for headway; safe to run again (done steps are `ok`).

    Docker Engine (docker.io) with log rotation, headway itself at this version, a deploy user, an nftables
    firewall (SSH, 80, 443 and the config's ports), unattended security upgrades and key-only SSH.
    """
    from headway.remote.bootstrap import CHANGED, OK, StepResult, bootstrap
    from headway.remote.ssh import SshAddress

    key, accept = _ssh(obj, ssh_key, accept_host_key)
    addr = SshAddress.parse(address)
    colours = {OK: "green", CHANGED: "yellow"}

    def show(result: StepResult) -> None:
        colour = colours.get(result.status, "cyan")
        detail = f" — {escape(result.detail)}" if result.detail else ""
        err_console.print(f"[{colour}]{result.status:>12}[/{colour}]  {escape(result.name)}{detail}")

    err_console.print(f"{'checking' if check else 'bootstrapping'} {addr}")
    results = bootstrap(addr, key_file=key, accept_host_key=accept, check_only=check, user=user,
                        config_path=config or getattr(obj, "config", None), on_result=show)
    pending = [r for r in results if r.status != OK]
    if as_json:
        print_json({"address": str(addr), "check": check, "steps": [r.as_dict() for r in results]})
    if check:
        err_console.print(f"{len(pending)} step(s) would change" if pending else "nothing would change")
        sys.exit(1 if pending else 0)
    err_console.print(f"{len(pending)} changed, {len(results) - len(pending)} ok")


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


@server.command("status")
@click.argument("address", metavar="USER@HOST[:PORT]")
@ssh_key_option
@accept_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_obj
def status_cmd(obj: Any, address: str, ssh_key: str | None, accept_host_key: bool, as_json: bool) -> None:
    """Docker, disk, memory, load, listening ports, pending updates and headway's version on a server."""
    from headway.remote.ssh import SshAddress
    from headway.remote.status import server_status

    key, accept = _ssh(obj, ssh_key, accept_host_key)
    report = server_status(SshAddress.parse(address), key_file=key, accept_host_key=accept)
    if as_json:
        print_json(report)
        return
    d = report["docker"]
    if d["running"]:
        docker = f"[green]{d['version']} running[/green], {d.get('containers_running')} container(s) running"
    else:
        docker = "[red]installed, not running[/red]" if d["installed"] else "[red]not installed[/red]"
    out_console.print(f"[bold]{escape(report['address'])}[/bold]  {escape(report['os'])}  "
                      f"up {report['uptime_seconds'] // 86400}d {report['uptime_seconds'] % 86400 // 3600}h")
    out_console.print(f"headway:  {report['headway'] or '[red]not installed[/red]'}")
    out_console.print(f"docker:   {docker}")
    for disk in report["disks"]:
        same = f" (same filesystem as {disk['same_filesystem_as']})" if disk["same_filesystem_as"] else ""
        pct = disk["used_percent"]
        colour = "red" if pct and pct >= 90 else "yellow" if pct and pct >= 80 else "green"
        out_console.print(f"disk {disk['path']}: [{colour}]{pct}% used[/{colour}], {_bytes(disk['free_bytes'])} "
                          f"free of {_bytes(disk['total_bytes'])}{same}")
    m = report["memory"]
    out_console.print(f"memory:   {_bytes(m['available_bytes'])} available of {_bytes(m['total_bytes'])}")
    load = report["load"]
    out_console.print(f"load:     {load['1m']:.2f} {load['5m']:.2f} {load['15m']:.2f} ({load['cpus']} CPUs)")
    u = report["updates"]
    if u is None:
        out_console.print("updates:  unknown (apt not usable)")
    else:
        colour = "red" if u["security"] else "yellow" if u["pending"] else "green"
        age = f", package lists {u['lists_age_hours']}h old" if u["lists_age_hours"] is not None else ""
        out_console.print(f"updates:  [{colour}]{u['pending']} pending, {u['security']} security[/{colour}]{age}")
    table = Table("proto", "address", "port", "process", box=None)
    for p in report["listening"]:
        table.add_row(p["proto"], p["address"], str(p["port"]),
                      f"{p['process']} ({p['pid']})" if p["process"] else "?")
    out_console.print("listening:")
    out_console.print(table)
