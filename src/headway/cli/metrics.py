"""`headway metrics -e ENV` and `headway top`: the agent's figures in the terminal."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import Table, err_console, escape, out_console, print_json


def _state_root(obj: Any) -> Path:
    from headway.state.store import state_root

    return Path(obj.state_dir) if getattr(obj, "state_dir", None) else state_root()


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}/s"


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 1048576:.0f} MB"


@click.command("metrics")
@env_option
@click.option("--hours", type=float, default=1.0, show_default=True, help="How far back the sparklines go.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures and their series as JSON on stdout.")
@click.pass_obj
def metrics(obj: Any, environment: str, hours: float, as_json: bool) -> None:
    """Requests, errors, latency and each container's CPU and memory, now and over the last hour (from the
    host's agent: `headway agent boot`)."""
    from headway.observe.figures import environment_figures, sparkline

    obj.forward_if_remote(environment)
    from headway.config.resolve import load_target

    target = load_target(environment, obj.config)
    root = _state_root(obj)
    if not (root / "agent" / "metrics").exists():
        from headway.errors import HeadwayError

        raise HeadwayError("no figures on this host yet", "start the agent: `headway agent boot`")
    figures = environment_figures(root, target.app, target.environment, hours=hours)
    if as_json:
        print_json(figures)
        return
    now, since = figures["at"], figures["at"] - hours * 3600
    up = figures["up_proxy"]
    health = "[green]up[/green]" if up == 1 else "[red]down[/red]" if up == 0 else "-"
    out_console.print(f"[bold]{escape(target.app)}/{escape(target.environment)}[/bold]  health {health}")
    table = Table("", "now", f"last {hours:g}h", box=None)
    for key, label, fmt in (("requests_per_s", "requests", _rate), ("server_error_ratio", "5xx", _pct),
                            ("p95_s", "p95", _ms)):
        table.add_row(label, fmt(figures[key]), sparkline(figures["series"][key], since, now, 60.0 * hours))
    out_console.print(table)
    if figures["containers"]:
        ct = Table("container", "role", "release", "CPU", "memory", box=None)
        for c in figures["containers"]:
            ct.add_row(escape(c["container"]), c["role"], c["release"],
                       _pct(c["cpu_ratio"]), _mb(c["memory_bytes"]))
        out_console.print(ct)


@click.command("top")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--count", type=int, default=0, help="Refresh this many times, then exit (0: until Ctrl-C).")
@click.pass_obj
def top(obj: Any, interval: float, count: int) -> None:
    """Every environment on this host: requests, 5xx, p95, health, with the last hour as sparklines."""
    from rich.live import Live

    from headway.observe.figures import environment_figures, sparkline, watched_environments

    root = _state_root(obj)
    if not (root / "agent" / "metrics").exists():
        err_console.print("no figures on this host yet: start the agent with `headway agent boot`")
        sys.exit(1)

    def render() -> Any:
        table = Table("app/env", "health", "req/s", "5xx", "p95", "requests, last hour", "containers", box=None)
        for app, env in watched_environments(root):
            f = environment_figures(root, app, env)
            up = f["up_proxy"]
            health = "[green]up[/green]" if up == 1 else "[red]down[/red]" if up == 0 else "-"
            table.add_row(escape(f"{app}/{env}"), health, _rate(f["requests_per_s"]), _pct(f["server_error_ratio"]),
                          _ms(f["p95_s"]), sparkline(f["series"]["requests_per_s"], f["at"] - 3600, f["at"]),
                          str(len(f["containers"])))
        return table

    shown = 0
    with Live(render(), console=out_console, auto_refresh=False) as live:
        try:
            while count == 0 or shown < count:
                shown += 1
                live.update(render(), refresh=True)
                if count and shown >= count:
                    break
                time.sleep(interval)  # the refresh period
        except KeyboardInterrupt:
            pass
