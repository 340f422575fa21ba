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
@click.option("--dashboard-port", type=int, default=None,
              help="127.0.0.1 port of the dashboard (default 9106; 0 turns it off).")
@click.option("--dashboard-domain", default=None, help="Serve the dashboard through the proxy on this name.")
@click.option("--dashboard-public-port", type=int, default=None,
              help="Or on this port of the proxy (plain HTTP: reach it through an SSH tunnel or a VPN).")
@click.option("--dashboard-tls/--no-dashboard-tls", default=None,
              help="A certificate for --dashboard-domain from the ACME CA (default on with a domain).")
@click.option("--acme-email", default=None, help="Contact for the dashboard's ACME account.")
@click.option("--acme-directory", default=None, help="ACME directory URL (default Let's Encrypt).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.pass_obj
def boot_cmd(obj: Any, port: int | None, interval: float | None, base_image: str | None, name: str | None,
             dashboard_port: int | None, dashboard_domain: str | None, dashboard_public_port: int | None,
             dashboard_tls: bool | None, acme_email: str | None, acme_directory: str | None,
             as_json: bool) -> None:
    """Build the agent's image for this headway and start it (idempotent)."""
    tls: dict[str, Any] | None = None
    if dashboard_domain and dashboard_tls is not False:
        tls = {k: v for k, v in {"email": acme_email, "acme_directory": acme_directory}.items() if v}
    agent = _agent(obj)
    st = agent.boot(port=port, interval=interval, base_image=base_image, name=name, dashboard_port=dashboard_port,
                    dashboard_domain=dashboard_domain, dashboard_public_port=dashboard_public_port,
                    dashboard_tls=tls)
    if as_json:
        print_json(st.model_dump())
    else:
        err_console.print(f"[green]agent running[/green] {st.container} ({st.image}), "
                          f"metrics on 127.0.0.1:{st.port}/metrics")
        if st.dashboard:
            err_console.print(f"dashboard on {st.dashboard}")
            from headway.observe.dashboard_auth import Users

            if not Users(agent.dir / "dashboard").names():
                err_console.print("set its password first: `headway agent password`")


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
        if st.dashboard:
            out_console.print(f"dashboard on {st.dashboard}", markup=False)
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


@agent.command("password")
@click.option("--user", default="admin", show_default=True, help="The dashboard user to set the password of.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@click.option("--remove", is_flag=True, help="Remove the user instead.")
@click.pass_obj
def password_cmd(obj: Any, user: str, from_stdin: bool, remove: bool) -> None:
    """Set the password of a dashboard user on this host (stored hashed; at least 12 characters)."""
    from headway.observe.dashboard_auth import Users

    users = Users(_agent(obj).dir / "dashboard")
    if remove:
        err_console.print(f"user {user} removed" if users.remove(user) else f"no user {user}")
        return
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True)
    users.set_password(user, password)
    err_console.print(f"password of dashboard user [bold]{user}[/bold] set")


@agent.command("act", hidden=True)
@click.option("--app", required=True)
@click.option("-e", "--environment", required=True)
@click.argument("action", type=click.Choice(["rollback", "maintenance"]))
@click.argument("state", required=False, type=click.Choice(["on", "off"]))
@click.option("--to", "to", default=None, help="rollback: the deploy number to roll back to.")
@click.pass_obj
def act_cmd(obj: Any, app: str, environment: str, action: str, state: str | None, to: str | None) -> None:
    """An action from the dashboard, from the config kept on this host (what `headway agent run` starts)."""
    from headway.cli.render import ConsoleReporter
    from headway.service import Headway

    hw = Headway.on_host(app, environment, state_dir=getattr(obj, "state_dir", None), reporter=ConsoleReporter())
    if action == "rollback":
        outcome = hw.rollback(to, wait=5)
        err_console.print(f"rolled back {app}/{environment} to {outcome.record.version}")
    else:
        if state is None:
            raise click.UsageError("maintenance needs on or off")
        hw.maintenance(state == "on")
        err_console.print(f"maintenance {state} for {app}/{environment}")


@agent.command("run", hidden=True)
@click.option("--state-dir", "state_dir", type=click.Path(file_okay=False), required=True)
@click.option("--port", type=int, default=9105)
@click.option("--bind", default="127.0.0.1")
@click.option("--interval", type=float, default=15.0)
@click.option("--dashboard-port", type=int, default=0, help="127.0.0.1 port of the dashboard (0: none).")
@click.option("--once", is_flag=True, help="One round of checks, then exit.")
def run_cmd(state_dir: str, port: int, bind: str, interval: float, dashboard_port: int, once: bool) -> None:
    """The agent itself (what the container runs)."""
    from headway.observe.monitor import Monitor

    if dashboard_port and not once:
        from headway.observe.dashboard import Dashboard

        Dashboard(Path(state_dir)).serve("127.0.0.1", dashboard_port)
    def scale(root: Path, app: str, env: str, counts: dict[str, int], reason: str) -> dict[str, int]:
        from headway.service import scale_on_host  # loaded at the first scale, not at the agent's start

        return scale_on_host(root, app, env, counts, reason)

    def follow(root: Path, app: str, env: str) -> list[str]:
        from headway.service import recover_on_host

        return recover_on_host(root, app, env)

    Monitor(Path(state_dir), interval=interval, scale=scale, follow=follow).run(port=port, bind=bind, once=once)
