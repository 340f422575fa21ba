"""Deploys under load, side by side: headway deploy / rollback / scale / maintenance / a second app deploying, and
docker-compose `up -d --build`, over loopback and with 25 ms added round-trip latency; CLI and rollback timings.

    .venv/bin/python -m bench.run                    # full run: >= 10,000 requests per operation; both parts
    .venv/bin/python -m bench.run --part loopback    # one part: loopback rows, timings, compose
    .venv/bin/python -m bench.run --part latency     # the other: the rows through a namespace with 25 ms RTT
    .venv/bin/python -m bench.run --quick            # smoke run: >= 2,000 requests per operation
    .venv/bin/python -m bench.run --render bench/results/deploy-latest.json   # only rewrite the docs section

A full run writes bench/results/deploy-<UTC time>.json, merges the parts it measured completely into
deploy-latest.json (a part not measured keeps its earlier results, with their own time) and regenerates the
"Deploys under load" section of docs/benchmarks.md from it. A quick run writes bench/results/quick-<UTC time>.json
only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.deploy_ops import (REPO, ClientSpec, ComposeStack, HeadwayStack, OpResult, clients_for, log, measure,
                              run, settle, snapshot_src, stamp, wait_serving)
from bench.netns import LatencyNamespace
from headway.engine import labels as L

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:deploy:start -->", "<!-- bench:deploy:end -->"

RATE = 200.0  # requests per second, the strict client (the headline)
RETRY_RATE = 50.0  # requests per second, the retrying client, at the same time against the same URL
FULL_REQUESTS = 10_000
QUICK_REQUESTS = 2_000
MAX_OP_SECONDS = 120.0  # bound on each measured operation (load included)
DELAY_MS = 25.0  # added round-trip time in the latency part
TIMING_RUNS = {"full": 9, "quick": 7}  # runs of each timed command (interleaved)
ROLLBACK_RUNS = {"full": 7, "quick": 5}  # rollbacks back and forth between two warm releases
TARGETS_S = {"version": 0.15, "status": 0.3, "rollback": 0.3}
PARTS = ("loopback", "latency")
MAINTENANCE_MARKER = "headway-bench-maintenance"

LOOPBACK_ROWS = ["headway deploy", "headway rollback (warm standby)", "headway scale web=4", "headway scale web=2",
                 "headway maintenance on", "headway maintenance off", "another app deploying"]
LATENCY_ROWS = ["headway deploy", "headway rollback (warm standby)", "another app deploying"]
MAINTENANCE_ROWS = {"headway maintenance on", "headway maintenance off"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS:,} requests per operation "
                        f"instead of {FULL_REQUESTS:,}; does not touch the documented results")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="measure only this part (repeatable; default: every part, in one process)")
    parser.add_argument("--render", metavar="JSON", help="regenerate docs/benchmarks.md from a results file")
    args = parser.parse_args(argv)
    if args.render:
        write_doc(json.loads(Path(args.render).read_text()))
        print(f"wrote {DOC.relative_to(REPO)}")
        return 0

    exit_on_sigterm()
    parts = [p for p in PARTS if p in (args.part or PARTS)]
    min_requests = QUICK_REQUESTS if args.quick else FULL_REQUESTS
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {"benchmark": "deploys under load", "started_utc": started, "quick": args.quick,
                              "settings": settings(min_requests), "parts": {}}
    runners: dict[str, Callable[[Path, int, bool, list[str]], dict[str, Any]]] = {
        "loopback": run_loopback, "latency": run_latency}
    try:
        for part in parts:
            workdir = Path(tempfile.mkdtemp(prefix="headway-bench-"))
            result: dict[str, Any] = {"started_utc": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                                      "quick": args.quick, "machine": machine_info(), "errors": []}
            report["parts"][part] = result
            try:
                result.update(runners[part](workdir, min_requests, args.quick, result["errors"]))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
                result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
                result["finished_utc"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                result["complete"] = part_complete(part, result)
    finally:
        report["finished_utc"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        report["targets"] = targets(report)
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = f"quick-{started}.json" if args.quick else f"deploy-{started}.json"
        (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote bench/results/{name}")
        if not args.quick:
            merged = merge_latest(report)
            if merged is not None:
                (RESULTS / "deploy-latest.json").write_text(json.dumps(merged, indent=2) + "\n")
                write_doc(merged)
                log(f"wrote bench/results/deploy-latest.json and {DOC.relative_to(REPO)}")
            else:
                log("no part was measured completely: deploy-latest.json and the docs were left as they were")
    print(render_tables(report))
    errors = [e for p in report["parts"].values() for e in p.get("errors", [])]
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not errors and all(t["pass"] for t in report["targets"]) else 1


def exit_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every finally block cleans up what it created."""
    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def settings(min_requests: int) -> dict[str, Any]:
    return {"strict_rate_rps": RATE, "retrying_rate_rps": RETRY_RATE, "min_requests_per_op": min_requests,
            "max_seconds_per_op": MAX_OP_SECONDS, "added_rtt_ms": DELAY_MS, "targets_s": TARGETS_S, "path": "/"}


# -- the loopback part ------------------------------------------------------------------------------------
def _check(op: OpResult, errors: list[str]) -> None:
    if op.exit_code != 0:
        errors.append(f"{op.name} exited {op.exit_code}: {op.stderr_tail.strip()[-400:]}")


def _first_deploy(stack: HeadwayStack, version: str, out: dict[str, Any], key: str = "first_deploy") -> None:
    t0 = time.monotonic()
    first = stack.deploy(version)
    out[key] = {"app": stack.app, "wall_s": round(time.monotonic() - t0, 2), "record": first.get("release")}
    body = wait_serving(stack.url, 60)
    if body.get("release") != version:
        raise RuntimeError(f"{stack.app} serves {body.get('release')!r}, expected {version!r}")
    log(f"headway: {stack.app} {version} serves at {stack.url}")


def run_loopback(workdir: Path, min_requests: int, quick: bool, errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"network": {"kind": "loopback"}, "headway_src": snapshot_src(workdir)}
    stack = HeadwayStack(workdir, src=Path(out["headway_src"]["path"]))
    second = HeadwayStack(workdir, shared_with=stack)
    hw: dict[str, Any] = {"app": stack.app, "second_app": second.app, "proxy": stack.proxy_name, "url": stack.url,
                          "operations": []}
    out["headway"] = hw
    try:
        stack.prepare()
        log(f"headway: proxy {stack.proxy_name} on :{stack.http_port}, production on :{stack.prod_port}")
        stack.boot_proxy()
        v1, v2, v3 = "bench-1", "bench-2", "bench-3"
        _first_deploy(stack, v1, hw)
        label = f"{L.APP}={stack.app}"

        def op(name: str, args: list[str], clients: list[ClientSpec], from_release: str | None = None,
               old_release: str | None = None) -> OpResult:
            settle(label, stack.url)
            generation = stack.proxy_generation()
            result = measure(name, stack.cli(*args), cwd=stack.dir, env=stack.env, clients=clients,
                             min_requests=min_requests, max_seconds=MAX_OP_SECONDS, from_release=from_release,
                             old_release=old_release)
            result.extra["proxy_reloaded"] = generation != stack.proxy_generation()
            hw["operations"].append(result.as_dict())
            _check(result, errors)
            return result

        plain = clients_for(stack.url, strict_rate=RATE, retrying_rate=RETRY_RATE)
        marked = clients_for(stack.url, strict_rate=RATE, retrying_rate=RETRY_RATE,
                             maintenance_marker=MAINTENANCE_MARKER)
        stamp(stack.dir, v2)
        op("headway deploy", ["deploy", "-e", "production", "--version", v2, "--json"], plain)
        op("headway rollback (warm standby)", ["rollback", "-e", "production", "--json"], plain,
           from_release=v2, old_release=v1)
        op("headway scale web=4", ["scale", "-e", "production", "web=4", "--json"], plain)
        op("headway scale web=2", ["scale", "-e", "production", "web=2", "--json"], plain)
        on = op("headway maintenance on", ["maintenance", "on", "-e", "production", "--message",
                                           f"Back soon ({MAINTENANCE_MARKER})"], marked)
        if not on.clients[0]["expected_503"]:
            errors.append("maintenance on: no request was answered by the maintenance page")
        op("headway maintenance off", ["maintenance", "off", "-e", "production"], marked)
        body = wait_serving(stack.url, 30)
        if body.get("release") != v1:
            errors.append(f"after maintenance off {stack.url} serves {body.get('release')!r}, expected {v1!r}")

        second.prepare()
        _first_deploy(second, "other-1", hw, "second_app_first_deploy")
        stamp(stack.dir, v3)
        op("another app deploying", ["deploy", "-e", "production", "--version", v3, "--json"],
           clients_for(second.url, strict_rate=RATE, retrying_rate=RETRY_RATE))
        hw["operations"][-1].update(load_on=second.app, deployed_app=stack.app)
        out["timings"] = run_timings(stack, live=v3, standby=v1, quick=quick, errors=errors)
        hw["final_status"] = stack.status()
    except Exception as exc:  # noqa: BLE001 - recorded and reported; the compose stack still runs
        errors.append(f"headway: {type(exc).__name__}: {exc}")
        log(f"headway: FAILED: {exc}")
    finally:
        problems = second.close() + stack.close()
        hw["cleanup_problems"] = problems
        errors.extend(f"headway cleanup: {p}" for p in problems)
    out["compose"] = run_compose(workdir, min_requests, errors, host="127.0.0.1", prefix=[])
    return out


# -- timings ----------------------------------------------------------------------------------------------
def _timed(argv: list[str], stack: HeadwayStack) -> float:
    t0 = time.perf_counter()
    run(argv, cwd=stack.dir, env=stack.env, timeout=60)
    return time.perf_counter() - t0


def run_timings(stack: HeadwayStack, *, live: str, standby: str, quick: bool, errors: list[str]) -> dict[str, Any]:
    """CLI start and `status` against the interpreter's own start (interleaved, so a noisy moment hits all three),
    then rollbacks back and forth between two releases kept warm, each under the strict client."""
    runs = TIMING_RUNS["quick" if quick else "full"]
    commands = {"floor": [sys.executable, "-c", "pass"], "version": stack.cli("--version"),
                "status": stack.cli("status", "-e", "production")}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for argv in commands.values():  # one warm-up each (page cache), not counted
        _timed(argv, stack)
    for _ in range(runs):
        for key, argv in commands.items():
            times[key].append(_timed(argv, stack))
    out: dict[str, Any] = {"runs": runs}
    for key, values in times.items():
        out[key] = {"median_s": round(statistics.median(values), 4), "runs_s": [round(v, 4) for v in values],
                    "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(commands[key]))}
    rollbacks = []
    label = f"{L.APP}={stack.app}"
    current, other = live, standby
    for i in range(ROLLBACK_RUNS["quick" if quick else "full"]):
        before = stack.status()
        settle(label, stack.url)
        # `headway rollback -e production` as a person types it: without a release it goes to the warm standby
        op = measure(f"rollback {i + 1}: {current} -> {other}", stack.cli("rollback", "-e", "production", "--json"),
                     cwd=stack.dir, env=stack.env, clients=[ClientSpec("strict", stack.url, RATE)],
                     min_requests=int(RATE * 2), max_seconds=60, tail_s=1.0, from_release=current,
                     old_release=other)
        record = op.stdout_json.get("release", {}) if isinstance(op.stdout_json, dict) else {}
        if op.exit_code == 0 and record.get("version") != other:
            errors.append(f"rollback {i + 1} went to {record.get('version')!r}, not to the standby {other!r}")
        rollbacks.append({"from": current, "to": other, "exit_code": op.exit_code, "wall_s": round(op.wall_s, 3),
                          "time_to_old_release_s": op.extra.get("time_to_old_release_s"),
                          "first_old_release_response_s": op.extra.get("first_old_release_response_s"),
                          "of_which_not_old_release": op.extra.get("of_which_not_old_release"),
                          "headway_switch_s": record.get("duration_s"), "sent": op.clients[0]["sent"],
                          "failed": op.clients[0]["failed"], "standby_before": before.get("standby"),
                          "path": "ordinary" if "the ordinary rollback" in op.stderr_tail else "quick",
                          "note": next((ln.strip() for ln in op.stderr_tail.splitlines()
                                        if "the ordinary rollback" in ln), ""),
                          "warm": any(c["health"] == "standby" and c["state"] == "running" and c["role"] == "web"
                                      for c in before.get("containers", []))})
        _check(op, errors)
        if op.exit_code != 0:
            break
        current, other = other, current
    values = [r["time_to_old_release_s"] for r in rollbacks if r["time_to_old_release_s"] is not None]
    out["rollback"] = {"median_s": round(statistics.median(values), 3) if values else None,
                       "runs_s": values, "rollbacks": rollbacks,
                       "headway_switch_median_s": round(statistics.median(
                           [r["headway_switch_s"] for r in rollbacks if r["headway_switch_s"] is not None]), 3)
                       if any(r["headway_switch_s"] is not None for r in rollbacks) else None}
    log("timings: " + ", ".join(f"{k} {out[k]['median_s']}" for k in (*commands, "rollback")))
    return out


# -- the latency part -------------------------------------------------------------------------------------
def run_latency(workdir: Path, min_requests: int, quick: bool, errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ns = LatencyNamespace(DELAY_MS)
    try:
        ns.create()
        out["network"] = {"kind": "namespace", **ns.describe()}
        log(f"namespace {ns.name}: {ns.method}; TCP connect {ns.rtt_ms}")
        prefix = ns.exec_prefix()
        out["headway_src"] = snapshot_src(workdir)
        stack = HeadwayStack(workdir, src=Path(out["headway_src"]["path"]))
        second = HeadwayStack(workdir, shared_with=stack)
        hw: dict[str, Any] = {"app": stack.app, "second_app": second.app, "proxy": stack.proxy_name,
                              "url": stack.url_at(ns.host_ip), "operations": []}
        out["headway"] = hw
        try:
            stack.prepare()
            stack.boot_proxy()
            v1, v2, v3 = "bench-1", "bench-2", "bench-3"
            _first_deploy(stack, v1, hw)
            second.prepare()
            _first_deploy(second, "other-1", hw, "second_app_first_deploy")
            label = f"{L.APP}={stack.app}"
            far = clients_for(stack.url_at(ns.host_ip), prefix=prefix, strict_rate=RATE, retrying_rate=RETRY_RATE)
            steps: list[tuple[str, list[str], list[ClientSpec], str | None, bool]] = [
                ("headway deploy", ["deploy", "-e", "production", "--version", v2, "--json"], far, v2, False),
                ("headway rollback (warm standby)", ["rollback", "-e", "production", "--json"], far, None, True),
                ("another app deploying", ["deploy", "-e", "production", "--version", v3, "--json"],
                 clients_for(second.url_at(ns.host_ip), prefix=prefix, strict_rate=RATE,
                             retrying_rate=RETRY_RATE), v3, False),
            ]
            for name, args, clients, version, is_rollback in steps:
                if version:
                    stamp(stack.dir, version)
                settle(label, stack.url)
                generation = stack.proxy_generation()
                op = measure(name, stack.cli(*args), cwd=stack.dir, env=stack.env, clients=clients,
                             min_requests=min_requests, max_seconds=MAX_OP_SECONDS,
                             from_release=v2 if is_rollback else None, old_release=v1 if is_rollback else None)
                op.extra["proxy_reloaded"] = generation != stack.proxy_generation()
                row = op.as_dict()
                if name == "another app deploying":
                    row.update(load_on=second.app, deployed_app=stack.app)
                hw["operations"].append(row)
                _check(op, errors)
        except Exception as exc:  # noqa: BLE001 - recorded and reported; the compose stack still runs
            errors.append(f"headway: {type(exc).__name__}: {exc}")
            log(f"headway: FAILED: {exc}")
        finally:
            problems = second.close() + stack.close()
            hw["cleanup_problems"] = problems
            errors.extend(f"headway cleanup: {p}" for p in problems)
        out["compose"] = run_compose(workdir, min_requests, errors, host=ns.host_ip, prefix=prefix)
        out["network"]["tcp_connect_rtt_ms_end"] = ns.measure_rtt()
    except Exception as exc:  # noqa: BLE001 - recorded and reported
        errors.append(f"latency: {type(exc).__name__}: {exc}")
        log(f"latency: FAILED: {exc}")
    finally:
        problems = ns.close()
        errors.extend(f"namespace cleanup: {p}" for p in problems)
    return out


# -- the peer -----------------------------------------------------------------------------------------------
def run_compose(workdir: Path, min_requests: int, errors: list[str], *, host: str,
                prefix: list[str]) -> dict[str, Any]:
    stack = ComposeStack(workdir)
    url = f"http://{host}:{stack.port}/"
    out: dict[str, Any] = {"project": stack.project, "url": url, "operations": []}
    try:
        stack.prepare()
        stack.set_release("compose-1")
        log(f"compose: project {stack.project}, app on :{stack.port}")
        t0 = time.monotonic()
        stack.up()
        wait_serving(stack.url, 180)
        out["first_up_s"] = round(time.monotonic() - t0, 2)
        log(f"compose: serving at {url}")
        stack.set_release("compose-2")
        settle(f"com.docker.compose.project={stack.project}", stack.url)
        op = measure("docker-compose up -d --build", stack.compose("up", "-d", "--build"), cwd=stack.dir,
                     env=stack.env, clients=clients_for(url, prefix=prefix, strict_rate=RATE,
                                                        retrying_rate=RETRY_RATE),
                     min_requests=min_requests, max_seconds=MAX_OP_SECONDS)
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


# -- completeness, merging, targets -----------------------------------------------------------------------
def _ops(part: dict[str, Any] | None, stack: str) -> list[dict[str, Any]]:
    return list((part or {}).get(stack, {}).get("operations", []))


def part_complete(name: str, part: dict[str, Any]) -> bool:
    rows = LOOPBACK_ROWS if name == "loopback" else LATENCY_ROWS
    measured = [op["name"] for op in _ops(part, "headway")]
    timings_ok = name != "loopback" or bool(part.get("timings", {}).get("rollback", {}).get("runs_s"))
    return measured == rows and len(_ops(part, "compose")) == 1 and timings_ok


def merge_latest(report: dict[str, Any]) -> dict[str, Any] | None:
    """deploy-latest.json with the parts this run measured completely replaced; None if there are none."""
    done = {k: v for k, v in report["parts"].items() if v.get("complete")}
    if not done:
        return None
    path = RESULTS / "deploy-latest.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    parts = dict(old.get("parts", {})) if isinstance(old.get("parts"), dict) else {}
    parts.update(done)
    merged = {"benchmark": report["benchmark"], "settings": report["settings"], "quick": False,
              "parts": {k: parts[k] for k in PARTS if k in parts}}
    merged["targets"] = targets(merged)
    return merged


def _min_requests(report: dict[str, Any]) -> int:
    return int(report.get("settings", {}).get("min_requests_per_op", FULL_REQUESTS))


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    n = _min_requests(report)
    for name, title in (("loopback", "over loopback"), ("latency", f"with {DELAY_MS:g} ms added round trip")):
        part = report.get("parts", {}).get(name)
        if part is None:
            continue
        hw = _ops(part, "headway")
        rows = LOOPBACK_ROWS if name == "loopback" else LATENCY_ROWS
        complete = [op["name"] for op in hw] == rows and not any(e.startswith("headway") for e in part["errors"])
        strict = [op["clients"]["strict"] for op in hw]
        ok = complete and all(c["failed"] == 0 and c["sent"] >= n for c in strict) and \
            all(op["exit_code"] == 0 for op in hw)
        measured = ", ".join(f"{op['name']}: {op['clients']['strict']['failed']} of "
                             f"{op['clients']['strict']['sent']:,}" for op in hw)
        out.append({"target": f"0 failed requests of >= {n:,} (strict client) during each headway operation "
                              f"{title}", "pass": ok, "measured": measured or "not measured"})
    timings = report.get("parts", {}).get("loopback", {}).get("timings")
    if timings:
        for key, what in (("version", "`headway --version`"), ("status", "`headway status -e production`")):
            med = timings.get(key, {}).get("median_s")
            floor = timings.get("floor", {}).get("median_s")
            out.append({"target": f"{what} median <= {TARGETS_S[key]:g} s", "pass": med is not None and
                        med <= TARGETS_S[key], "measured": f"{med:.3f} s (`python -c pass`: {floor:.3f} s)"
                        if med is not None and floor is not None else "not measured"})
        rb = timings.get("rollback", {})
        med = rb.get("median_s")
        all_ok = all(r["exit_code"] == 0 and r["failed"] == 0 for r in rb.get("rollbacks", []))
        out.append({"target": f"rollback to a warm standby: median seconds from starting `headway rollback` to "
                              f"100% of requests answered by the release rolled back to <= {TARGETS_S['rollback']:g} "
                              f"s (over >= 5 rollbacks)", "pass": med is not None and med <= TARGETS_S["rollback"]
                    and len(rb.get("runs_s", [])) >= 5 and all_ok,
                    "measured": f"{med:.3f} s over {len(rb.get('runs_s', []))} rollbacks" if med is not None
                    else "not measured"})
    return out


# -- rendering ----------------------------------------------------------------------------------------------
def _row(op: dict[str, Any]) -> str:
    s, r = op["clients"]["strict"], op["clients"].get("retrying")
    ttor = op.get("time_to_old_release_s")
    exit_note = "" if op["exit_code"] == 0 else f" (exit {op['exit_code']}{', timed out' if op['timed_out'] else ''})"
    name = op["name"] + (" †" if op["name"] in MAINTENANCE_ROWS else "") + \
        (" ‡" if op["name"] == "another app deploying" else "")
    return (f"| {name}{exit_note} | {s['sent']:,} / {r['sent'] if r else 0:,} | **{s['failed']:,}** | "
            f"{r['failed'] if r else 0:,} | {r['retried'] if r else 0:,} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{op['wall_s']:.2f} | {f'{ttor:.2f}' if ttor is not None else '—'} |")


TABLE_HEAD = ("| operation | requests (strict / retrying) | failed, strict client | failed, retrying client | "
              "retried (retrying client) | p50 ms | p99 ms | operation wall time s | time to 100% old release s |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def render_table(part: dict[str, Any]) -> str:
    return "\n".join([TABLE_HEAD] + [_row(op) for op in _ops(part, "headway") + _ops(part, "compose")])


def render_timings(t: dict[str, Any]) -> str:
    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.3f}" for v in values)

    floor = t["floor"]["median_s"]
    lines = ["| what | median s | above the floor s | target s | result | every run s |",
             "|---|---:|---:|---:|---|---|",
             f"| `python -c pass` (the floor: the interpreter alone) | {floor:.3f} | — | — | — | "
             f"{runs(t['floor']['runs_s'])} |"]
    for key, what in (("version", "`headway --version`"), ("status", "`headway status -e production`")):
        med = t[key]["median_s"]
        lines.append(f"| {what} | {med:.3f} | {med - floor:+.3f} | {TARGETS_S[key]:g} | "
                     f"{'PASS' if med <= TARGETS_S[key] else 'FAIL'} | {runs(t[key]['runs_s'])} |")
    rb = t.get("rollback", {})
    if rb.get("median_s") is not None:
        med = rb["median_s"]
        lines.append(f"| `headway rollback` to the warm standby: start of the command to 100% of requests answered "
                     f"by the release rolled back to | {med:.3f} | {med - floor:+.3f} | {TARGETS_S['rollback']:g} | "
                     f"{'PASS' if med <= TARGETS_S['rollback'] else 'FAIL'} | {runs(rb['runs_s'])} |")
    return "\n".join(lines)


def render_tables(report: dict[str, Any]) -> str:
    out = []
    for name, part in report.get("parts", {}).items():
        out += [f"[{name}]", render_table(part)]
        if part.get("timings", {}).get("floor"):
            out.append(render_timings(part["timings"]))
    return "\n".join(out)


def _when(stamp_: str) -> str:
    t = time.strptime(stamp_, "%Y%m%dT%H%M%SZ")
    return time.strftime("%Y-%m-%d %H:%M UTC", t)


def _machine(part: dict[str, Any]) -> str:
    m = part["machine"]
    src = part.get("headway_src", {}).get("sha256")
    return (f"{_when(part['started_utc'])} (headway {m.get('headway_commit', '?')}"
            + (f", source tree {src}" if src else "") + "), load average "
            f"{' / '.join(map(str, m.get('loadavg_start', [])))} at the start")


def _failure_notes(report: dict[str, Any]) -> list[str]:
    notes = []
    for pname, part in report.get("parts", {}).items():
        where = "over loopback" if pname == "loopback" else f"with {DELAY_MS:g} ms added RTT"
        for op in _ops(part, "headway") + _ops(part, "compose"):
            for label, c in op["clients"].items():
                if not c["failed"]:
                    continue
                statuses = ", ".join(f"{k} ×{v}" for k, v in sorted(c["failed_statuses"].items()))
                window = c.get("failure_window_s")
                when = f", between {window[0]:.2f} s and {window[1]:.2f} s after the command started" if window \
                    else ""
                reload = " The proxy's config generation changed during this operation (nginx reloaded)." \
                    if op.get("proxy_reloaded") else ""
                notes.append(f"- **{op['name']}** {where}, {label} client: {c['failed']:,} failed of "
                             f"{c['sent']:,} ({statuses}){when}.{reload}")
    return notes


def _maintenance_note(report: dict[str, Any]) -> str:
    part = report.get("parts", {}).get("loopback")
    counts = {op["name"]: op["clients"]["strict"].get("expected_503", 0) for op in _ops(part, "headway")
              if op["name"] in MAINTENANCE_ROWS}
    if not counts:
        return ""
    return (" The strict client got the maintenance page "
            + " and ".join(f"{v:,} times during *{k}*" for k, v in counts.items()) + ".")


def render_section(report: dict[str, Any]) -> str:
    s = report["settings"]
    parts = report.get("parts", {})
    loop, lat = parts.get("loopback"), parts.get("latency")
    any_part = loop or lat or {}
    m = any_part.get("machine", {})
    out = [
        START,
        "## Deploys under load",
        "",
        f"On {m.get('nproc', '?')} CPU cores{' (' + m['cpu'] + ')' if m.get('cpu') else ''}, "
        f"{m.get('memory_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}, Docker Engine "
        f"{m.get('docker_server', '?')}, docker-compose {m.get('docker_compose', '?')}. Each part below was "
        "measured in one run, headway and docker-compose side by side."
        + (" **Quick run: fewer requests than the targets ask for.**" if report.get("quick") else ""),
        "",
    ]
    if loop:
        rb = next((op for op in _ops(loop, "headway") if "rollback" in op["name"]), None)
        out += ["### Over loopback", "", f"Measured {_machine(loop)}.", "", render_table(loop), "",
                f"† During maintenance a 503 with the maintenance page is the expected answer: in these two rows "
                f"only connection errors, resets, timeouts and statuses other than 2xx and that 503 count as "
                f"failed.{_maintenance_note(report)}", "",
                "‡ A second app (another copy of examples/shop, its own name, domain and port, the same proxy and "
                "state directory) under load while the first app deploys; the row counts what the second app's "
                "clients saw.", ""] + ([_rollback_note(rb).strip(), ""] if _rollback_note(rb) else [])
    if lat:
        net = lat.get("network", {})
        rtt = net.get("tcp_connect_rtt_ms", {})
        out += [f"### With {DELAY_MS:g} ms added round trip", "",
                f"Measured {_machine(lat)}. The clients run inside the network namespace `{net.get('namespace')}`, "
                f"joined to the host by a veth pair ({net.get('namespace_end')} inside, {net.get('host_end')} on "
                f"the host), and send to the host end. Delay: {net.get('method', '?').rstrip('.')}. TCP connect from "
                f"inside "
                f"the namespace: {rtt.get('min', 0):.1f} ms min, {rtt.get('median', 0):.1f} ms median.", "",
                render_table(lat), "",
                "‡ As above: the second app's clients, while the first app deploys.", ""]
    timings = (loop or {}).get("timings")
    if timings and timings.get("floor"):
        out += ["### Timings", "",
                f"Medians of {timings['runs']} runs of each command, interleaved (after one warm-up run each), and "
                f"of {len(timings.get('rollback', {}).get('runs_s', []))} rollbacks back and forth between two "
                "releases, each kept warm (`deploy: warm_standby: true`), each `headway rollback -e production` "
                "(no release named: to the warm standby), under the strict client at "
                f"{s['strict_rate_rps']:.0f} requests/s; measured in the loopback part's run.", "",
                render_timings(timings), "", _timings_note(timings), ""]
    out += ["### Targets", ""]
    for t in report.get("targets", []):
        out.append(f"- **{'PASS' if t['pass'] else 'FAIL'}** — {t['target']}. Measured: {t['measured']}.")
    notes = _failure_notes(report)
    out += ["", "### Failed requests", ""]
    out += notes or ["None: every request in every operation above got its expected answer."]
    errors = [f"{k}: {e}" for k, p in parts.items() for e in p.get("errors", [])]
    if errors:
        out += ["", "Errors during the runs:", ""] + [f"- {one_line(e)}" for e in errors]
    out += [
        "",
        "### Method",
        "",
        ("- The app is [examples/shop](../examples/shop) (Starlette + PostgreSQL + Redis, 2 web replicas and a "
         f"worker), each stack in a temporary copy with unique names and free ports. The request is `GET "
         f"{s['path']}`, which answers JSON naming the release that served it."),
        ("- headway: its own nginx proxy (host network) is booted; production is deployed once (not measured) "
         "with `deploy: warm_standby: true`. Then, in this order, each under load: `headway deploy -e "
         "production --version …` of a changed release (a file in the image changed), `headway rollback -e "
         "production` (back to the warm standby), `headway scale -e production web=4`, then `web=2`, `headway "
         "maintenance on -e production --message …`, `headway maintenance off -e production`; then a second app "
         "is deployed (not measured) and the first app is deployed again while the load goes to the second. "
         "The load goes to the production port on the proxy."),
        ("- docker-compose: `docker-compose -f docker-compose.prod.yml -p <unique> up -d --build` is brought up "
         "once (not measured), a file in the image is changed and the same command is run again under load. "
         "The load goes straight to the app's published port, as the compose file serves it."),
        (f"- Two clients at once against the same URL, each its own process "
         f"([bench/netload.py](../bench/netload.py) running [bench/loadgen.py](../bench/loadgen.py)), each on a "
         f"fixed clock (a slow answer does not lower the offered rate): the **strict** client at "
         f"{s['strict_rate_rps']:.0f} requests/s — HTTP/1.1 keep-alive, no retries, no check of the socket "
         f"before reuse, so a keep-alive connection the server closes under it is a failed request — and the "
         f"**retrying** client at {s['retrying_rate_rps']:.0f} requests/s, which behaves as browsers and Go's "
         "net/http do: it does not reuse an idle socket the server has closed, and re-sends a GET once on a new "
         "connection when it fails on a reused one before any byte of the response arrived (counted under "
         "*retried*; a retry that fails again counts as failed). The strict client is the headline."),
        (f"- The operation starts (the real CLI, as a subprocess) once each client has completed one second of "
         f"requests; the load keeps going until the strict client has completed at least "
         f"{s['min_requests_per_op']:,} requests (the retrying one as long) and the operation has exited, "
         f"bounded at {s['max_seconds_per_op']:.0f} s per operation. Before each operation the bench waits until "
         "no container of the app is being created, restarted or removed and the URL answers. Operation wall "
         "time is from starting the command to its exit."),
        ("- Failed = any non-2xx answer plus any connection error, reset or timeout (10 s); in the maintenance "
         "rows the maintenance page's 503 (recognised by its text) is not a failure. Nothing else is filtered."),
        ("- Time to 100% old release (rollback only): from starting `headway rollback` to the last response "
         "served by the release rolled back from, as the strict client saw it; it includes starting the CLI."),
        ("- headway runs as the real CLI from a byte-compiled copy of src/headway taken when the part starts (as "
         "an installed package is byte-compiled), so a part measures one version; its digest is given above."),
        ("- p50/p99 are the strict client's, over every answered request in the window, operation and its "
         "surroundings included; the clients run on the same machine as everything else."),
        ("- Raw numbers, failed requests with their timing (the first 200 per operation and client), and the "
         "commands' JSON output are in [bench/results/deploy-latest.json](../bench/results/deploy-latest.json)."),
        "",
        ("Re-run with `make bench` (or `.venv/bin/python -m bench.run`; `--part loopback` or `--part latency` "
         f"for one part, `--quick` for a smoke run with {QUICK_REQUESTS:,} requests per operation, which leaves "
         "this page alone). It needs root (for the namespace), Docker, docker-compose and the local base images "
         "from `scripts/bootstrap.sh`; the loopback part takes about 8 minutes, the latency part about 4."),
        END,
    ]
    return "\n".join(out)


def one_line(text: str, limit: int = 300) -> str:
    """An error message as one line of Markdown-safe text."""
    flat = " ".join(text.split()).replace("`", "'")
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _rollback_note(rb: dict[str, Any] | None) -> str:
    if not rb or rb.get("time_to_old_release_s") is None:
        return ""
    others = rb.get("of_which_not_old_release", 0)
    record = rb.get("stdout_json", {}).get("release", {}) if isinstance(rb.get("stdout_json"), dict) else {}
    own = f" (headway's own record of the switch: {record['duration_s']:.2f} s)" if record.get("duration_s") \
        is not None else ""
    return (f"Rollback row: the last response from the release rolled back from came "
            f"{rb['time_to_old_release_s']:.2f} s after the command started{own};"
            + (" after that every response came from the old release." if not others else
               f" after that {others} of {rb['responses_after_last_from_release']} responses did not come from "
               "the old release (see the JSON)."))


def _timings_note(t: dict[str, Any]) -> str:
    rb = t.get("rollback", {})
    rows = rb.get("rollbacks", [])
    if not rows:
        return ""
    failed = sum(r["failed"] for r in rows)
    sent = sum(r["sent"] for r in rows)
    cold = [i + 1 for i, r in enumerate(rows) if not r["warm"]]
    return (f"Rollbacks: {failed} of {sent:,} requests failed (strict client); headway's own record of the switch "
            f"(from its start to the route change) has a median of {rb.get('headway_switch_median_s') or 0:.3f} s; "
            + ("the release rolled back to had running web containers (a warm standby) before every rollback."
               if not cold else f"before rollback {', '.join(map(str, cold))} the release rolled back to had no "
               "running web container (not warm)."))


HEADER = """# Benchmarks

Measured with the scripts in [bench/](../bench) on real Docker and nginx. Each section below is generated by
the script it names, between its marker comments; the rest of this page is left alone.
"""


@contextmanager
def recorded(report: dict[str, Any], close: Callable[[], list[str]]) -> Iterator[None]:
    """Run the block; a failure is recorded in report["errors"] (and logged) instead of raised; SIGTERM or Ctrl-C
    is recorded as an interruption and raised. Either way `close()` cleans up, its problems recorded too."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - recorded in the results and reported
        report["errors"].append(f"{type(exc).__name__}: {exc}")
        log(f"FAILED: {type(exc).__name__}: {exc}")
    except BaseException as exc:  # never written as a complete result
        report["errors"].append(f"interrupted ({type(exc).__name__})")
        raise
    finally:
        report["cleanup_problems"] = close()
        report["errors"].extend(f"cleanup: {p}" for p in report["cleanup_problems"])


def save_results(kind: str, report: dict[str, Any], *, quick: bool, complete: bool, started: str,
                 section: Callable[[dict[str, Any]], str], start: str, end: str) -> None:
    """bench/results/<kind>[-quick]-<started>.json; for a full run that measured everything, also
    <kind>-latest.json and the docs section between `start` and `end` (rendered by `section`)."""
    report["finished_utc"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-quick-{started}.json" if quick else f"{kind}-{started}.json"
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS / name).write_text(text)
    log(f"wrote bench/results/{name}")
    if quick:
        return
    if complete:
        (RESULTS / f"{kind}-latest.json").write_text(text)
        write_section(start, end, section(report))
        log(f"wrote bench/results/{kind}-latest.json and docs/benchmarks.md")
    else:
        log(f"not everything was measured: {kind}-latest.json and the docs were left as they were")


def write_section(start: str, end: str, section: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def write_doc(report: dict[str, Any]) -> None:
    write_section(START, END, render_section(report))


if __name__ == "__main__":
    sys.exit(main())
