"""`headway swarm`: make an environment's machines one Docker Swarm (init), see its machines and tasks (nodes)."""

from __future__ import annotations

import sys
from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import Table, err_console, escape, out_console, print_json
from headway.cli.server import _ssh, accept_option, ssh_key_option


@click.group()
def swarm() -> None:
    """Environments on a Docker Swarm: the machines of `hosts` (the manager) and `swarm.nodes`."""


@swarm.command("init")
@env_option
@click.option("--check", is_flag=True, help="Only report what would change (exit 1 if anything would).")
@ssh_key_option
@accept_option
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON on stdout.")
@click.pass_obj
def init_cmd(obj: Any, environment: str, check: bool, ssh_key: str | None, accept_host_key: bool,
             as_json: bool) -> None:
    """Initialise the swarm on the manager, join every node, open the members' firewalls to each other.

    Safe to run again: done steps are `ok`. Each machine needs Docker (`headway server bootstrap` first).
    """
    from headway.config.loader import find_config, load_config
    from headway.errors import ConfigError
    from headway.remote.bootstrap import OK, StepResult
    from headway.remote.ssh import SshAddress
    from headway.remote.swarm import swarm_init

    path = find_config(explicit=getattr(obj, "config", None))
    config = load_config(path)
    env = config.environments.get(environment)
    if env is None:
        raise ConfigError(f"no environment {environment!r} in {path.name}",
                          f"use one of: {', '.join(config.environments)}")
    if env.swarm is None or env.remote_host is None:
        raise ConfigError(f"environment {environment} is not on a swarm",
                          "give it hosts: [user@manager] and swarm: {nodes: [user@node, ...]} in headway.yml")
    key, accept = _ssh(obj, ssh_key, accept_host_key)

    def show(result: StepResult) -> None:
        colour = "green" if result.status == OK else "yellow"
        detail = f" — {escape(result.detail)}" if result.detail else ""
        err_console.print(f"[{colour}]{result.status:>12}[/{colour}]  {escape(result.name)}{detail}")

    results = swarm_init(SshAddress.parse(env.remote_host), [SshAddress.parse(n) for n in env.swarm.nodes],
                         advertise=env.swarm.advertise, key_file=key, accept_host_key=accept, check_only=check,
                         on_result=show)
    pending = [r for r in results if r.status != OK]
    if as_json:
        print_json({"environment": environment, "check": check, "steps": [r.as_dict() for r in results]})
    if check:
        err_console.print(f"{len(pending)} step(s) would change" if pending else "nothing would change")
        sys.exit(1 if pending else 0)
    err_console.print(f"{len(pending)} changed, {len(results) - len(pending)} ok")


@swarm.command("nodes")
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_obj
def nodes_cmd(obj: Any, environment: str, as_json: bool) -> None:
    """The swarm's machines (state, address) and which of the environment's containers each one runs."""
    from headway.engine import labels as L
    from headway.engine.swarm import SwarmEngine, is_service
    from headway.errors import ConfigError

    hw = obj.headway(environment)
    engine = hw.engine
    if not isinstance(engine, SwarmEngine):
        raise ConfigError(f"environment {environment} is not on a swarm", "add `swarm:` to it in headway.yml")
    nodes = engine.nodes()
    placed: dict[str, list[str]] = {n["hostname"]: [] for n in nodes}
    manager = next((n["hostname"] for n in nodes if n["role"] == "manager"), "")
    sel = L.selector(app=hw.target.app, environment=hw.target.environment)
    for c in engine.containers(sel, include_stopped=False):
        where = engine.node_of(c) if is_service(c) else manager
        placed.setdefault(where or "?", []).append(c.name)
    rows = [{**n, "containers": sorted(placed.get(n["hostname"], []))} for n in nodes]
    if as_json:
        print_json({"environment": environment, "nodes": rows})
        return
    table = Table("node", "role", "state", "address", "containers", box=None)
    for r in rows:
        colour = "green" if r["state"] == "ready" else "red"
        table.add_row(escape(r["hostname"]), r["role"], f"[{colour}]{r['state']}[/{colour}]", r["address"],
                      escape(", ".join(r["containers"])) or "-")
    out_console.print(table)
