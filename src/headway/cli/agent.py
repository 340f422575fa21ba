"""`headway agent`: the host's monitoring agent (a container headway runs and owns, like the proxy)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from headway.cli.render import err_console, out_console, print_json


def _agent(obj: Any) -> Any:
    from headway.engine.docker import DockerEngine
    from headway.observe.agent import Agent
    from headway.state.store import state_root

    state_dir = getattr(obj, "state_dir", None)
    return Agent(DockerEngine(), Path(state_dir) if state_dir else state_root())


@click.group()
def agent() -> None:
    """The monitoring agent on this host: health, metrics and alerts for every app and environment."""


@agent.command("boot")
@click.option("--port", type=int, default=None, help="127.0.0.1 port of /metrics and /health (default 9105).")
@click.option("--interval", type=float, default=None, help="Seconds between checks (default 15).")
@click.option("--base-image", default=None, help="Image the agent's image is built from (default python:3.11-slim).")
@click.option("--name", default=None, help="Container name (default headway-agent).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.pass_obj
def boot_cmd(obj: Any, port: int | None, interval: float | None, base_image: str | None, name: str | None,
             as_json: bool) -> None:
    """Build the agent's image for this headway and start it (idempotent)."""
    st = _agent(obj).boot(port=port, interval=interval, base_image=base_image, name=name)
    if as_json:
        print_json(st.model_dump())
    else:
        err_console.print(f"[green]agent running[/green] {st.container} ({st.image}), "
                          f"metrics on 127.0.0.1:{st.port}/metrics")


@agent.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.pass_obj
def status_cmd(obj: Any, as_json: bool) -> None:
    """Whether the agent runs, and what its last round of checks saw."""
    st = _agent(obj).status()
    if as_json:
        print_json(st.model_dump())
    else:
        out_console.print(f"{st.container}: {'running' if st.running else 'NOT RUNNING'} ({st.image or '-'})")
        last = st.last_round or {}
        if last:
            out_console.print(f"last round {last.get('at', '?')}: {last.get('environments', 0)} environment(s), "
                              f"{last.get('firing', 0)} alert(s) firing, took {last.get('seconds', 0):.2f}s")
    if not st.running:
        sys.exit(1)


@agent.command("logs")
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default=100, show_default=True)
@click.pass_obj
def logs_cmd(obj: Any, follow: bool, tail: int) -> None:
    """The agent's own log."""
    for line in _agent(obj).logs(follow=follow, tail=tail):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@agent.command("stop")
@click.pass_obj
def stop_cmd(obj: Any) -> None:
    """Stop and remove the agent container (its state stays)."""
    err_console.print("agent removed" if _agent(obj).stop() else "the agent was not running")


@agent.command("run", hidden=True)
@click.option("--state-dir", "state_dir", type=click.Path(file_okay=False), required=True)
@click.option("--port", type=int, default=9105)
@click.option("--bind", default="127.0.0.1")
@click.option("--interval", type=float, default=15.0)
@click.option("--once", is_flag=True, help="One round of checks, then exit.")
def run_cmd(state_dir: str, port: int, bind: str, interval: float, once: bool) -> None:
    """The agent itself (what the container runs)."""
    from headway.observe.monitor import Monitor

    Monitor(Path(state_dir), interval=interval).run(port=port, bind=bind, once=once)
