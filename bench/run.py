"""Deploys under load, side by side: headway deploy / rollback / scale and docker-compose `up -d --build`.

    .venv/bin/python -m bench.run            # full run: >= 10,000 requests per operation; writes the results
    .venv/bin/python -m bench.run --quick    # smoke run: >= 2,000 requests per operation
    .venv/bin/python -m bench.run --render bench/results/deploy-latest.json   # only rewrite the docs section

A full run writes bench/results/deploy-<UTC time>.json and deploy-latest.json and regenerates the
"Deploys under load" section of docs/benchmarks.md. A quick run writes bench/results/quick-<UTC time>.json only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.deploy_ops import REPO, ComposeStack, HeadwayStack, log, measure, stamp, wait_serving

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:deploy:start -->", "<!-- bench:deploy:end -->"

RATE = 200.0  # requests per second
FULL_REQUESTS = 10_000
QUICK_REQUESTS = 2_000
MAX_OP_SECONDS = 120.0  # bound on each measured operation (load included)
ROLLBACK_TARGET_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS:,} requests per operation "
                        f"instead of {FULL_REQUESTS:,}; does not touch the documented results")
    parser.add_argument("--render", metavar="JSON", help="regenerate docs/benchmarks.md from a results file")
    args = parser.parse_args(argv)
    if args.render:
        write_doc(json.loads(Path(args.render).read_text()))
        print(f"wrote {DOC.relative_to(REPO)}")
        return 0

    min_requests = QUICK_REQUESTS if args.quick else FULL_REQUESTS
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {
        "benchmark": "deploys under load", "started_utc": started, "quick": args.quick,
        "settings": {"rate_rps": RATE, "min_requests_per_op": min_requests, "max_seconds_per_op": MAX_OP_SECONDS,
                     "rollback_target_s": ROLLBACK_TARGET_S, "path": "/"},
        "machine": machine_info(), "headway": {}, "compose": {}, "errors": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="headway-bench-"))
    try:
        report["headway"] = run_headway(workdir, min_requests, report["errors"])
        report["compose"] = run_compose(workdir, min_requests, report["errors"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        report["finished_utc"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        report["targets"] = targets(report, min_requests)
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = f"quick-{started}.json" if args.quick else f"deploy-{started}.json"
        text = json.dumps(report, indent=2) + "\n"
        (RESULTS / name).write_text(text)
        log(f"wrote bench/results/{name}")
        complete = len(_ops(report, "headway")) == 4 and len(_ops(report, "compose")) == 1
        if not args.quick and complete:
            (RESULTS / "deploy-latest.json").write_text(text)
            write_doc(report)
            log(f"wrote bench/results/deploy-latest.json and {DOC.relative_to(REPO)}")
        elif not args.quick:
            log("not every operation was measured: deploy-latest.json and the docs were left as they were")
    print(render_table(report))
    for err in report["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not report["errors"] and all(t["pass"] for t in report["targets"]) else 1


# -- the two stacks ---------------------------------------------------------------------------------------
def run_headway(workdir: Path, min_requests: int, errors: list[str]) -> dict[str, Any]:
    stack = HeadwayStack(workdir)
    out: dict[str, Any] = {"app": stack.app, "proxy": stack.proxy_name, "url": stack.url, "operations": []}
    try:
        stack.prepare()
        log(f"headway: proxy {stack.proxy_name} on :{stack.http_port}, production on :{stack.prod_port}")
        stack.boot_proxy()
        out["cli_start_s"] = stack.cli_start_seconds()
        v1, v2 = "bench-1", "bench-2"
        t0 = time.monotonic()
        first = stack.deploy(v1)
        out["first_deploy"] = {"wall_s": round(time.monotonic() - t0, 2), "record": first.get("release")}
        body = wait_serving(stack.url, 60)
        if body.get("release") != v1:
            raise RuntimeError(f"production serves {body.get('release')!r}, expected {v1!r}")
        log(f"headway: {v1} serves at {stack.url}")

        stamp(stack.dir, v2)
        ops = [
            ("headway deploy", ["deploy", "-e", "production", "--version", v2, "--json"], {}),
            ("headway rollback (warm standby)", ["rollback", "-e", "production", "--json"],
             {"from_release": v2, "old_release": v1}),
            ("headway scale web=4", ["scale", "-e", "production", "web=4", "--json"], {}),
            ("headway scale web=2", ["scale", "-e", "production", "web=2", "--json"], {}),
        ]
        for name, args, extra in ops:
            time.sleep(2)  # let the previous operation's stopped containers settle
            op = measure(name, stack.url, stack.cli(*args), cwd=stack.dir, env=stack.env, rate=RATE,
                         min_requests=min_requests, max_seconds=MAX_OP_SECONDS, **extra)
            out["operations"].append(op.as_dict())
            if op.exit_code != 0:
                errors.append(f"{name} exited {op.exit_code}: {op.stderr_tail.strip()[-400:]}")
        status = subprocess.run(stack.cli("status", "-e", "production", "--json"), cwd=stack.dir, env=stack.env,
                                check=False, text=True, capture_output=True, timeout=60)
        out["final_status"] = json.loads(status.stdout) if status.returncode == 0 else status.stderr[-1000:]
    except Exception as exc:  # noqa: BLE001 - recorded and reported; the other stack still runs
        errors.append(f"headway: {type(exc).__name__}: {exc}")
        log(f"headway: FAILED: {exc}")
    finally:
        problems = stack.close()
        out["cleanup_problems"] = problems
        errors.extend(f"headway cleanup: {p}" for p in problems)
    return out


def run_compose(workdir: Path, min_requests: int, errors: list[str]) -> dict[str, Any]:
    stack = ComposeStack(workdir)
    out: dict[str, Any] = {"project": stack.project, "url": stack.url, "operations": []}
    try:
        stack.prepare()
        stamp(stack.dir, "compose-1")
        log(f"compose: project {stack.project}, app on :{stack.port}")
        t0 = time.monotonic()
        stack.up()
        wait_serving(stack.url, 180)
        out["first_up_s"] = round(time.monotonic() - t0, 2)
        log(f"compose: serving at {stack.url}")
        stamp(stack.dir, "compose-2")
        time.sleep(2)
        op = measure("docker-compose up -d --build", stack.url, stack.compose("up", "-d", "--build"),
                     cwd=stack.dir, env=stack.env, rate=RATE, min_requests=min_requests,
                     max_seconds=MAX_OP_SECONDS)
        out["operations"].append(op.as_dict())
        if op.exit_code != 0:
            errors.append(f"docker-compose up exited {op.exit_code}: {op.stderr_tail.strip()[-400:]}")
    except Exception as exc:  # noqa: BLE001 - recorded and reported
        errors.append(f"compose: {type(exc).__name__}: {exc}")
        log(f"compose: FAILED: {exc}")
    finally:
        problems = stack.close()
        out["cleanup_problems"] = problems
        errors.extend(f"compose cleanup: {p}" for p in problems)
    return out


# -- machine ----------------------------------------------------------------------------------------------
def _cmd(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, check=False, text=True, capture_output=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else f"unavailable ({r.stderr.strip()[:200]})"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"


def machine_info() -> dict[str, Any]:
    mem_kb = 0
    cpu = ""
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1)  # type: ignore
    except (OSError, AttributeError):
        pass
    commit = _cmd(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"])
    dirty = _cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "docker_server": _cmd(["docker", "version", "--format", "{{.Server.Version}}"]),
        "docker_client": _cmd(["docker", "version", "--format", "{{.Client.Version}}"]),
        "docker_compose": _cmd(["docker-compose", "version", "--short"]),
        "headway_commit": commit + ("-dirty" if dirty and not dirty.startswith("unavailable") else ""),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- targets and the document -----------------------------------------------------------------------------
def _ops(report: dict[str, Any], stack: str) -> list[dict[str, Any]]:
    return list(report.get(stack, {}).get("operations", []))


def targets(report: dict[str, Any], min_requests: int) -> list[dict[str, Any]]:
    hw = _ops(report, "headway")
    complete = len(hw) == 4 and not any("headway" in e for e in report.get("errors", []))
    fails = {op["name"]: op["failed"] for op in hw}
    ok = complete and all(op["failed"] == 0 and op["sent"] >= min_requests and op["exit_code"] == 0 for op in hw)
    measured = ", ".join(f"{n}: {f} of {next(o['sent'] for o in hw if o['name'] == n):,}" for n, f in fails.items())
    rb = next((op for op in hw if "rollback" in op["name"]), None)
    ttor = rb.get("time_to_old_release_s") if rb else None
    return [
        {"target": f"0 failed requests of >= {min_requests:,} during each headway operation", "pass": ok,
         "measured": measured or "not measured"},
        {"target": f"rollback to the warm standby: 100% old release within {ROLLBACK_TARGET_S:g} s of the "
                   "command starting", "pass": ttor is not None and ttor <= ROLLBACK_TARGET_S and
         rb is not None and rb["exit_code"] == 0,
         "measured": f"{ttor:.2f} s" if ttor is not None else "not measured"},
    ]


def _row(op: dict[str, Any]) -> str:
    ttor = op.get("time_to_old_release_s")
    exit_note = "" if op["exit_code"] == 0 else f" (exit {op['exit_code']}{', timed out' if op['timed_out'] else ''})"
    return (f"| {op['name']}{exit_note} | {op['sent']:,} | {op['failed']:,} | {op['retried']:,} | "
            f"{op['p50_ms']:.1f} | {op['p99_ms']:.1f} | {op['wall_s']:.2f} | "
            f"{f'{ttor:.2f}' if ttor is not None else '—'} |")


def render_table(report: dict[str, Any]) -> str:
    lines = [("| operation | requests | failed (non-2xx + errors) | retried | p50 ms | p99 ms | "
             "operation wall time s | time to 100% old release s |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for op in _ops(report, "headway") + _ops(report, "compose"):
        lines.append(_row(op))
    return "\n".join(lines)


def _failure_notes(report: dict[str, Any]) -> list[str]:
    notes = []
    for op in _ops(report, "headway") + _ops(report, "compose"):
        if op["failed"]:
            statuses = ", ".join(f"{k} ×{v}" for k, v in sorted(op["failed_statuses"].items()))
            window = op.get("failure_window_s")
            when = f", between {window[0]:.2f} s and {window[1]:.2f} s after the command started" if window else ""
            notes.append(f"- **{op['name']}**: {op['failed']:,} failed of {op['sent']:,} ({statuses}){when}.")
    return notes


def _when(stamp: str) -> str:
    t = time.strptime(stamp, "%Y%m%dT%H%M%SZ")
    return time.strftime("%Y-%m-%d %H:%M UTC", t)


def _rollback_note(rb: dict[str, Any] | None) -> str:
    if not rb or rb.get("time_to_old_release_s") is None:
        return ""
    others = rb.get("of_which_not_old_release", 0)
    return (" After that moment every response came from the old release." if not others else
            f" After that moment {others} of {rb['responses_after_last_from_release']} responses did not come "
            "from the old release (see the JSON).")


def render_section(report: dict[str, Any]) -> str:
    s = report["settings"]
    m = report["machine"]
    hw = report.get("headway", {})
    rb = next((op for op in _ops(report, "headway") if "rollback" in op["name"]), None)
    out = [
        START,
        "## Deploys under load",
        "",
        f"Measured {_when(report['started_utc'])} (headway {m.get('headway_commit', '?')}) on {m['nproc']} CPU cores"
        f"{' (' + m['cpu'] + ')' if m.get('cpu') else ''}, {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Docker Engine {m['docker_server']}, docker-compose {m['docker_compose']}; load average "
        f"{' / '.join(map(str, m.get('loadavg_start', [])))} at the start."
        + (" **Quick run: fewer requests than the targets ask for.**" if report.get("quick") else ""),
        "",
        render_table(report),
        "",
        "### Targets",
        "",
    ]
    for t in report.get("targets", []):
        out.append(f"- **{'PASS' if t['pass'] else 'FAIL'}** — {t['target']}. Measured: {t['measured']}.")
    notes = _failure_notes(report)
    out += ["", "### Failed requests", ""]
    out += notes or ["None: every request in every operation above was answered 2xx."]
    if report.get("errors"):
        out += ["", "Errors during the run:", ""] + [f"- `{e[:300]}`" for e in report["errors"]]
    out += [
        "",
        "### Method",
        "",
        (f"- The app is [examples/shop](../examples/shop) (Starlette + PostgreSQL + Redis, 2 web replicas and a "
        f"worker), each stack in a temporary copy with unique names and free ports. The request is `GET "
        f"{s['path']}`, which answers JSON naming the release that served it."),
        ("- headway: its own nginx proxy (host network) is booted; production is deployed once (not measured) "
        "with `deploy: warm_standby: true`. Then, in this order, each under load: `headway deploy -e "
        "production --version …` of a changed release (a file in the image changed), `headway rollback -e "
        "production` (back to the warm standby), `headway scale -e production web=4`, then `web=2`. The load "
        "goes to the production port on the proxy."),
        ("- docker-compose: `docker-compose -f docker-compose.prod.yml -p <unique> up -d --build` is brought up "
        "once (not measured), a file in the image is changed and the same command is run again under load. "
        "The load goes straight to the app's published port, as the compose file serves it."),
        (f"- Load: {s['rate_rps']:.0f} requests/s on a fixed clock (a slow answer does not lower the offered "
        f"rate) from a pool of keep-alive connections ([bench/loadgen.py](../bench/loadgen.py)). The "
        f"operation starts (the real CLI, as a subprocess) once one second of requests has completed; the "
        f"load keeps going until at least {s['min_requests_per_op']:,} requests have completed and the "
        f"operation has exited, bounded at {s['max_seconds_per_op']:.0f} s per operation. "
        "Operation wall time is from starting the command to its exit."),
        ("- Failed = any non-2xx answer plus any connection error or timeout (10 s). The client retries a "
        "request only in one case, the one browsers and Go's net/http also retry: a GET that fails on a "
        "reused keep-alive connection before any byte of the response arrived (the server had closed the idle "
        "connection) is re-sent once on a new connection. Those are counted under *retried*; a retry that "
        "fails again counts as failed. Nothing else is retried or filtered."),
        "- Time to 100% old release (rollback only): from starting `headway rollback` to the last response "
        "served by the release rolled back from"
        + (f". It includes starting the CLI itself, about {hw['cli_start_s']:.2f} s here "
           "(`headway --version`)" if hw.get("cli_start_s") else "")
        + (f"; headway's own record of the switch says {rb['stdout_json']['release']['duration_s']:.2f} s"
           if rb and isinstance(rb.get("stdout_json"), dict) and rb["stdout_json"].get("release") else "")
        + "." + _rollback_note(rb),
        ("- p50/p99 are over every answered request in the window, operation and its surroundings included; "
        "the load generator runs on the same machine as everything else."),
        ("- Raw numbers, failed requests with their timing (the first 200 per operation), and the commands' JSON "
         "output are in "
        "[bench/results/deploy-latest.json](../bench/results/deploy-latest.json)."),
        "",
        ("Re-run with `make bench` (or `.venv/bin/python -m bench.run`; add `--quick` for a smoke run with "
        f"{QUICK_REQUESTS:,} requests per operation, which leaves this page alone). It needs Docker, "
        "docker-compose and the local base images from `scripts/bootstrap.sh`, and takes about 6 minutes."),
        END,
    ]
    return "\n".join(out)


HEADER = """# Benchmarks

Measured with the scripts in [bench/](../bench) on real Docker and nginx. Each section below is generated by
the script it names, between its marker comments; the rest of this page is left alone.
"""


def write_doc(report: dict[str, Any]) -> None:
    section = render_section(report)
    text = DOC.read_text() if DOC.exists() else HEADER
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
