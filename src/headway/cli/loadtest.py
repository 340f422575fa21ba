"""`headway loadtest -e ENV`: a bounded load check through the proxy, judged against p95 and error thresholds."""

from __future__ import annotations

from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import err_console, escape, out_console, print_json


@click.command()
@env_option
@click.option("--rps", type=float, default=50.0, show_default=True, help="Requests per second (at most 2000).")
@click.option("--for", "duration", default="30s", show_default=True, metavar="DURATION",
              help="How long, e.g. 60s or 2m (at most 10m).")
@click.option("--connections", type=int, default=32, show_default=True,
              help="Keep-alive connections, so requests in flight at most.")
@click.option("--path", default="/", show_default=True, help="The request path.")
@click.option("--timeout", default="10s", show_default=True, metavar="DURATION",
              help="A request without an answer this long is a timeout.")
@click.option("--p95", default="500ms", show_default=True, metavar="DURATION",
              help="Passes only if 95% of the requests are answered within this.")
@click.option("--max-errors", default="1%", show_default=True, metavar="PERCENT",
              help="Passes only if at most this share of the requests fail (connection errors, timeouts, 5xx).")
@click.option("-y", "--yes", is_flag=True, help="Load a production environment too.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_obj
def loadtest(obj: Any, environment: str, rps: float, duration: str, connections: int, path: str, timeout: str,
             p95: str, max_errors: str, yes: bool, as_json: bool) -> None:
    """Send a steady load through the proxy; exit 1 if p95 or the error share misses its threshold."""
    from headway.observe.loadtest import LoadTestFailed, check_settings, refuse_production, run_loadtest

    settings = check_settings(rps=rps, duration=duration, connections=connections, path=path, timeout=timeout,
                              p95=p95, max_errors=max_errors)
    refuse_production(environment, yes)
    hw = obj.headway(environment)  # an environment on a server: the load runs there, next to its proxy

    def announce(endpoint: Any) -> None:
        err_console.print(f"loading {escape(endpoint.url(settings.path))}: {settings.rps:g} requests/s for "
                          f"{settings.duration_s:g}s over up to {settings.connections} connection(s)…")

    report = run_loadtest(hw.target, settings, hw.proxy.settings(), live=hw.state.current().live,
                          proxy_running=hw.proxy.is_running(), state_dir=hw.state.dir, announce=announce)
    rec = report.record
    if as_json:
        print_json(report.as_json())
    else:
        kinds = report.as_json()["errors_by_kind"]
        out_console.print(f"requests {rec['requests']}  errors {rec['errors']} ({rec['error_share']:.2%}: "
                          f"{kinds['connection']} connection, {kinds['timeout']} timeout, {kinds['5xx']} 5xx)")
        out_console.print(f"latency p50 {rec['p50_ms']:.1f} ms  p95 {rec['p95_ms']:.1f} ms  "
                          f"p99 {rec['p99_ms']:.1f} ms")
        statuses = " ".join(f"{k}×{v}" for k, v in sorted(report.result.statuses.items()))
        out_console.print(f"answers {escape(statuses) or '—'}")
        others = sum(v for k, v in report.result.statuses.items() if k.isdigit() and not 200 <= int(k) < 400
                     and int(k) < 500)
        if others:
            err_console.print(f"[yellow]note[/yellow]: {others} answer(s) were 4xx (not counted as errors): is "
                              f"--path {escape(settings.path)} right?")
    if not report.passed:
        t = settings.thresholds
        raise LoadTestFailed(f"{hw.target.app}/{environment} missed the thresholds (p95 <= {t.p95_ms:g} ms, errors "
                             f"<= {t.max_error_share:.2%}): " + "; ".join(report.reasons),
                             f"see where the time goes: `headway metrics -e {environment}`, `headway logs -e "
                             f"{environment}`; or lower --rps")
    err_console.print(f"[green]passed[/green]: p95 {rec['p95_ms']:.1f} ms <= {settings.thresholds.p95_ms:g} ms, "
                      f"errors {rec['error_share']:.2%} <= {settings.thresholds.max_error_share:.2%}")
