"""`headway alerts`: the environment's notification channels and alerts."""

from __future__ import annotations

import sys
from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import Table, err_console, escape, out_console, print_json


@click.group()
def alerts() -> None:
    """Alert channels and rules: test them, see what fires, silence it."""


@alerts.command("test")
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print each channel's delivery as JSON on stdout.")
@click.pass_obj
def test_cmd(obj: Any, environment: str, as_json: bool) -> None:
    """Send a test notice to every channel; exit 1 if any of them failed (each one is tried)."""
    deliveries = obj.headway(environment).alerts_test()
    failed = [d for d in deliveries if not d.ok]
    if as_json:
        print_json({"environment": environment, "deliveries": [
            {"channel": d.channel, "type": d.type, "ok": d.ok, "error": d.error, "seconds": round(d.seconds, 3)}
            for d in deliveries]})
    else:
        table = Table("channel", "type", "result", "seconds", box=None)
        for d in deliveries:
            result = "[green]delivered[/green]" if d.ok else f"[red]failed[/red]: {escape(d.error or '')}"
            table.add_row(escape(d.channel), d.type, result, f"{d.seconds:.2f}")
        out_console.print(table)
        err_console.print(f"{len(deliveries) - len(failed)} of {len(deliveries)} channel(s) delivered")
    if failed:
        sys.exit(1)


def _subject(obj: Any, environment: str) -> tuple[str, Any]:
    hw = obj.headway(environment)
    return f"{hw.target.app}/{hw.target.environment}", hw


@alerts.command("list")
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print the alerts and silences as JSON on stdout.")
@click.pass_obj
def list_cmd(obj: Any, environment: str, as_json: bool) -> None:
    """What the host's agent has pending or firing for the environment, and its silences."""
    import json as json_

    from headway.observe.alerts import alert_state_path

    subject, hw = _subject(obj, environment)
    path = alert_state_path(hw.state.root, subject)
    state = json_.loads(path.read_text()) if path.exists() else {"alerts": {}, "silences": []}
    alerts_ = [a for a in state.get("alerts", {}).values()]
    if as_json:
        print_json({"environment": environment, "alerts": alerts_, "silences": state.get("silences", [])})
        return
    if not path.exists():
        err_console.print("no alert state yet: is the agent running? (`headway agent boot`)")
    table = Table("rule", "state", "since", "detail", box=None)
    for a in alerts_:
        table.add_row(a["rule"], a["state"], _ago(a["since"]), escape(a.get("detail", "")))
    out_console.print(table)
    for s in state.get("silences", []):
        out_console.print(f"silence {s['id']}: {s['matcher']} until {_ago(s['until'])} by {escape(s['by'])} "
                          f"— {escape(s.get('reason', ''))}")


def _ago(t: float) -> str:
    import time

    delta = time.time() - float(t)
    return f"{int(delta)}s ago" if delta >= 0 else f"in {int(-delta)}s"


@alerts.command("silence")
@env_option
@click.option("--rule", default=None, help="Only this rule (down, error_rate, p95, …); default: every rule.")
@click.option("--for", "for_", required=True, metavar="DURATION", help="How long, e.g. 1h or 30m.")
@click.option("--reason", default="", help="Why, for whoever looks later.")
@click.pass_obj
def silence_cmd(obj: Any, environment: str, rule: str | None, for_: str, reason: str) -> None:
    """Keep the environment's alerts quiet for a while (they still show as firing; no notice is sent)."""
    import time

    from headway.config.duration import parse_duration
    from headway.errors import HeadwayError
    from headway.observe.monitor import request
    from headway.state.store import operator

    seconds = parse_duration(for_)
    subject, hw = _subject(obj, environment)
    matcher = {"subject": subject, **({"rule": rule} if rule else {})}
    answer = request(hw.state.root, {"op": "silence", "subject": subject, "matcher": matcher,
                                     "until": time.time() + seconds, "by": operator(), "reason": reason},
                     timeout=60.0)
    if answer is None:
        raise HeadwayError("the agent did not take the silence within 60s", "is it running? `headway agent status`")
    if answer.get("error"):
        raise HeadwayError(f"the agent refused the silence: {answer['error']}", "see the message")
    err_console.print(f"silenced {subject}{f' ({rule})' if rule else ''} for {for_}: {answer['silence']}")


@alerts.command("unsilence")
@env_option
@click.argument("silence_id")
@click.pass_obj
def unsilence_cmd(obj: Any, environment: str, silence_id: str) -> None:
    """End a silence before its time (its id from `headway alerts list`)."""
    from headway.errors import HeadwayError
    from headway.observe.monitor import request

    subject, hw = _subject(obj, environment)
    answer = request(hw.state.root, {"op": "unsilence", "subject": subject, "id": silence_id}, timeout=60.0)
    if answer is None:
        raise HeadwayError("the agent did not answer within 60s", "is it running? `headway agent status`")
    if answer.get("error"):
        raise HeadwayError(answer["error"], "see `headway alerts list`")
    err_console.print(f"silence {silence_id} ended")
