"""Deploys killed with SIGKILL at a random moment, then run again: headway and docker-compose side by side.

    .venv/bin/python -m bench.fault_bench                 # 8 kills per stack; writes the results and the docs
    .venv/bin/python -m bench.fault_bench --kills 3 --quick   # smoke run: bench/results/faults-quick-<time>.json only

For each stack, one normal deploy is measured first (under load); its wall time is the range of the kill delays.
Then, N times: a changed release is deployed under the strict client's load and the deploying process is sent
SIGKILL after a delay drawn uniformly from [0, that wall time] (a seeded RNG, so the delays repeat); right after,
the same command is run again and must converge. Recorded: failed requests while the killed command ran and while
the rerun ran, the rerun's wall time, how long after the kill the app answered every request again, and for
headway whether `headway status --json` names the release (and deploy) that really answers `GET /`, both right
after the kill and after the rerun.

Writes bench/results/faults-<UTC time>.json and faults-latest.json and the section between
<!-- bench:faults:start --> and <!-- bench:faults:end --> in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.deploy_ops import (REPO, ClientSpec, ComposeStack, HeadwayStack, LoadSession, Timeline, get_once, log,
                              measure, run, settle, snapshot_src, stamp, wait_serving)
from bench.loadgen import is_failure
from bench.run import exit_on_sigterm, machine_info, one_line, save_results, write_section
from headway.engine import labels as L

RESULTS = REPO / "bench" / "results"
START, END = "<!-- bench:faults:start -->", "<!-- bench:faults:end -->"
RATE = 200.0  # the strict client
KILLS = 8
SEED = 20261201
MAX_ROUND_S = 300.0  # bound on one round's load: killed command + rerun + the wait for the app to serve
SERVE_TIMEOUT_S = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=KILLS, help=f"kills per stack (default {KILLS})")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--quick", action="store_true", help="does not touch the documented results")
    parser.add_argument("--render", metavar="JSON", help="regenerate the docs section from a results file")
    args = parser.parse_args(argv)
    if args.render:
        write_section(START, END, render_section(json.loads(Path(args.render).read_text())))
        return 0
    exit_on_sigterm()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {"benchmark": "deploys killed", "started_utc": started, "quick": args.quick,
                              "settings": {"kills": args.kills, "seed": args.seed, "strict_rate_rps": RATE,
                                           "max_round_s": MAX_ROUND_S},
                              "machine": machine_info(), "errors": []}
    workdir = Path(tempfile.mkdtemp(prefix="headway-faults-"))
    try:
        report["headway"] = run_headway(workdir, args.kills, random.Random(args.seed), report["errors"])
        report["compose"] = run_compose(workdir, args.kills, random.Random(args.seed), report["errors"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        for key in ("headway", "compose"):
            if key in report:
                report[key]["summary"] = summarize(report[key].get("rounds", []))
        complete = all(len(report.get(k, {}).get("rounds", [])) == args.kills for k in ("headway", "compose"))
        save_results("faults", report, quick=args.quick, started=started, section=render_section,
                     start=START, end=END, complete=complete)
    print(render_tables(report))
    for err in report["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not report["errors"] else 1


# -- one round ------------------------------------------------------------------------------------------
def _killed_after(argv: list[str], *, cwd: Path, env: dict[str, str], delay: float) -> dict[str, Any]:
    """Start `argv`; SIGKILL it `delay` seconds later unless it has exited by then."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
    t_kill = time.monotonic()
    _, err = proc.communicate(timeout=60)
    return {"t0": t0, "t_kill": t_kill, "killed": killed, "exit_code": proc.returncode,
            "ran_s": round(t_kill - t0, 3), "stderr_tail": err[-1500:]}


def _window(timeline: Timeline, start: float, end: float | None) -> dict[str, Any]:
    rows = [(s, e, st) for s, e, st, _ in timeline if e >= start and (end is None or e < end)]
    failed = [st for _, _, st in rows if is_failure(st)]
    return {"requests": len(rows), "failed": len(failed),
            "statuses": {k: failed.count(k) for k in sorted(set(failed))}}


def _serving_again(timeline: Timeline, t_kill: float) -> float:
    """Seconds from the kill until the app answered every request again (0 if nothing failed after the kill)."""
    last = max((e for _, e, st, _ in timeline if e >= t_kill and is_failure(st)), default=None)
    return round(last - t_kill, 3) if last is not None else 0.0


def _first_of(timeline: Timeline, release: str, after: float) -> float | None:
    first = min((e for _, e, _, rel in timeline if rel == release and e >= after), default=None)
    return round(first - after, 3) if first is not None else None


def _wait_release(url: str, release: str, timeout: float) -> bool:
    """Until GET url answers 200 naming `release`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = get_once(url)
            if status == 200 and json.loads(body).get("release") == release:
                return True
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            pass  # not answering yet
        time.sleep(0.2)  # polling the app
    return False


Look = Callable[[], dict[str, Any]]


def _settle(label: str, url: str) -> str | None:
    """As deploy_ops.settle, but a stack that does not settle is a result here, not an error."""
    try:
        settle(label, url, timeout=30)
        return None
    except RuntimeError as exc:
        return str(exc)


def _round(i: int, delay: float, version: str, url: str, argv: list[str], *, cwd: Path, env: dict[str, str],
           check: Look, after_kill: Look) -> dict[str, Any]:
    """One round: kill, look (after_kill), rerun, wait for the app to serve `version`, look again (check)."""
    session = LoadSession([ClientSpec("strict", url, RATE)], max_seconds=MAX_ROUND_S, min_requests=0)
    session.start()
    try:
        killed = _killed_after(argv, cwd=cwd, env=env, delay=delay)
        looked = after_kill()
        t_rerun = time.monotonic()
        rerun = run(argv, cwd=cwd, env=env, timeout=600, check=False)
        t_done = time.monotonic()
        serving = _wait_release(url, version, SERVE_TIMEOUT_S)
        t_serving = time.monotonic()
        time.sleep(1.0)  # a measured second of load after the app serves the new release, not a wait for anything
        runs = session.finish()
    except BaseException:
        session.kill()
        raise
    tl = runs[0].timeline
    row = {"round": i, "delay_s": round(delay, 3), "version": version, "killed": killed["killed"],
           "killed_exit_code": killed["exit_code"], "killed_ran_s": killed["ran_s"],
           "killed_stderr_tail": killed["stderr_tail"],
           "during_kill": _window(tl, killed["t0"], t_rerun), "during_rerun": _window(tl, t_rerun, None),
           "rerun_exit_code": rerun.returncode, "rerun_wall_s": round(t_done - t_rerun, 3),
           "rerun_stderr_tail": rerun.stderr[-1500:] if rerun.returncode else "",
           "serves_new_release": serving, "serves_new_release_after_rerun_start_s": round(t_serving - t_rerun, 3)
           if serving else None,
           "first_new_release_response_after_rerun_start_s": _first_of(tl, version, t_rerun),
           "serving_again_after_kill_s": _serving_again(tl, killed["t_kill"]),
           "requests": runs[0].summary["sent"], "failed": runs[0].failed, "after_kill": looked}
    row["converged"] = rerun.returncode == 0 and serving
    row.update(check())
    log(f"round {i}: delay {delay:.2f}s, {'killed' if killed['killed'] else 'finished first'} "
        f"(exit {killed['exit_code']}); rerun exit {rerun.returncode} in {row['rerun_wall_s']:.2f}s; "
        f"failed {row['during_kill']['failed']} during the kill, {row['during_rerun']['failed']} after")
    return row


# -- headway ----------------------------------------------------------------------------------------------
def _status_check(stack: HeadwayStack) -> dict[str, Any]:
    """What `headway status --json` names, against what GET / answers (releases and deploy numbers)."""
    try:
        st = stack.status()
    except RuntimeError as exc:
        return {"status_error": str(exc)[-500:], "status_matches": False}
    served = stack.served(samples=12)
    names = st.get("release")
    deploy = str(st.get("deploy"))
    matches = set(served["releases"]) == {names} and set(served["deploys"]) == {deploy}
    return {"status_release": names, "status_deploy": st.get("deploy"), "served": served,
            "status_matches": matches, "interrupted": st.get("interrupted"), "lock": st.get("lock")}


def _leftovers(stack: HeadwayStack) -> dict[str, Any]:
    """Containers no good release owns, one-off containers, and the lock, after a round converged."""
    r = run(stack.cli("releases", "-e", "production", "--json"), cwd=stack.dir, env=stack.env, timeout=60)
    good = {str(x["number"]) for x in json.loads(r.stdout) if x["action"] == "deploy" and
            x["outcome"] in ("live", "superseded", "rolled-back")}
    fmt = f'{{{{.Names}}}} {{{{.Label "{L.DEPLOY}"}}}} {{{{.Label "{L.KIND}"}}}} {{{{.State}}}}'
    out = run(["docker", "ps", "-a", "--filter", f"label={L.APP}={stack.app}", "--format", fmt], check=False)
    stray = []
    for line in out.stdout.splitlines():
        name, deploy, kind, state = (line.split() + ["", "", "", ""])[:4]
        if kind == "oneoff" or (kind == "app" and deploy not in good):
            stray.append(f"{name} ({kind}, deploy {deploy}, {state})")
    return {"leftover_containers": stray}


def run_headway(workdir: Path, kills: int, rng: random.Random, errors: list[str]) -> dict[str, Any]:
    src = snapshot_src(workdir)
    stack = HeadwayStack(workdir, src=Path(src["path"]))
    out: dict[str, Any] = {"app": stack.app, "url": stack.url, "headway_src": src, "rounds": []}
    try:
        stack.prepare()
        stack.boot_proxy()
        stack.deploy("fault-0")
        wait_serving(stack.url, 60)
        stamp(stack.dir, "fault-1")
        label = f"{L.APP}={stack.app}"
        settle(label, stack.url)
        normal = measure("headway deploy (normal)", stack.cli("deploy", "-e", "production", "--version", "fault-1",
                                                               "--json"),
                         cwd=stack.dir, env=stack.env, clients=[ClientSpec("strict", stack.url, RATE)],
                         min_requests=0, max_seconds=MAX_ROUND_S, tail_s=1.0)
        if normal.exit_code != 0:
            raise RuntimeError(f"the normal deploy exited {normal.exit_code}: {normal.stderr_tail[-500:]}")
        out["normal"] = {"wall_s": round(normal.wall_s, 3), "failed": normal.failed,
                         "requests": normal.clients[0]["sent"]}
        log(f"headway: a normal deploy takes {normal.wall_s:.2f}s; kills uniform over [0, {normal.wall_s:.2f}]")
        for i in range(1, kills + 1):
            delay = rng.uniform(0, normal.wall_s)
            version = f"kill-{i}"
            stamp(stack.dir, version)
            unsettled = _settle(label, stack.url)
            row = _round(i, delay, version, stack.url, stack.cli("deploy", "-e", "production", "--version", version,
                                                                  "--json"),
                         cwd=stack.dir, env=stack.env,
                         check=lambda: {**_status_check(stack), **_leftovers(stack)},
                         after_kill=lambda: _status_check(stack))
            row["not_settled_before"] = unsettled
            out["rounds"].append(row)
            if not row["converged"]:
                errors.append(f"headway round {i}: the rerun did not converge (exit {row['rerun_exit_code']}): "
                              f"{row['rerun_stderr_tail'][-300:]}")
                repair = run(stack.cli("deploy", "-e", "production", "--version", version, "--json"),
                             cwd=stack.dir, env=stack.env, timeout=600, check=False)
                row["repair_exit_code"] = repair.returncode
    except Exception as exc:  # noqa: BLE001 - recorded and reported; the compose stack still runs
        errors.append(f"headway: {type(exc).__name__}: {exc}")
        log(f"headway: FAILED: {exc}")
    finally:
        problems = stack.close()
        out["cleanup_problems"] = problems
        errors.extend(f"headway cleanup: {p}" for p in problems)
    return out


# -- docker-compose ---------------------------------------------------------------------------------------
def run_compose(workdir: Path, kills: int, rng: random.Random, errors: list[str]) -> dict[str, Any]:
    stack = ComposeStack(workdir)
    out: dict[str, Any] = {"project": stack.project, "url": stack.url, "rounds": []}
    label = f"com.docker.compose.project={stack.project}"
    try:
        stack.prepare()
        stack.set_release("compose-0")
        stack.up()
        wait_serving(stack.url, 180)
        stack.set_release("compose-1")
        settle(label, stack.url)
        normal = measure("docker-compose up -d --build (normal)", stack.compose("up", "-d", "--build"),
                         cwd=stack.dir, env=stack.env, clients=[ClientSpec("strict", stack.url, RATE)],
                         min_requests=0, max_seconds=MAX_ROUND_S, tail_s=1.0)
        if normal.exit_code != 0:
            raise RuntimeError(f"the normal up exited {normal.exit_code}: {normal.stderr_tail[-500:]}")
        stack.remember_image()
        if not _wait_release(stack.url, "compose-1", SERVE_TIMEOUT_S):
            raise RuntimeError("compose-1 never served after a normal up")
        out["normal"] = {"wall_s": round(normal.wall_s, 3), "failed": normal.failed,
                         "requests": normal.clients[0]["sent"]}
        log(f"compose: a normal up takes {normal.wall_s:.2f}s; kills uniform over [0, {normal.wall_s:.2f}]")
        for i in range(1, kills + 1):
            delay = rng.uniform(0, normal.wall_s)
            version = f"ckill-{i}"
            stack.set_release(version)
            unsettled = _settle(label, stack.url)
            row = _round(i, delay, version, stack.url, stack.compose("up", "-d", "--build"), cwd=stack.dir,
                         env=stack.env, check=dict, after_kill=dict)
            row["not_settled_before"] = unsettled
            stack.remember_image()
            out["rounds"].append(row)
            if not row["converged"]:
                repair = run(stack.compose("up", "-d", "--build", "--force-recreate"), cwd=stack.dir,
                             env=stack.env, timeout=600, check=False)
                row["repair_exit_code"] = repair.returncode
                row["repaired"] = repair.returncode == 0 and _wait_release(stack.url, version, SERVE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - recorded and reported
        errors.append(f"compose: {type(exc).__name__}: {exc}")
        log(f"compose: FAILED: {exc}")
    finally:
        problems = stack.close()
        out["cleanup_problems"] = problems
        errors.extend(f"compose cleanup: {p}" for p in problems)
    return out


# -- summary and rendering ----------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    if not rounds:
        return {}
    converged = [r for r in rounds if r["converged"]]
    out: dict[str, Any] = {
        "rounds": len(rounds), "killed": sum(r["killed"] for r in rounds),
        "requests": sum(r["requests"] for r in rounds),
        "failed_during_kill": sum(r["during_kill"]["failed"] for r in rounds),
        "failed_during_rerun": sum(r["during_rerun"]["failed"] for r in rounds),
        "rounds_with_failures": sum(1 for r in rounds if r["failed"]),
        "converged": len(converged),
        "rerun_wall_median_s": _median([r["rerun_wall_s"] for r in converged]),
        "rerun_wall_max_s": max((r["rerun_wall_s"] for r in converged), default=None),
        "serving_again_median_s": _median([r["serving_again_after_kill_s"] for r in rounds]),
        "serving_again_max_s": max((r["serving_again_after_kill_s"] for r in rounds), default=None),
    }
    if "status_matches" in rounds[0]:
        out["status_matches_after_rerun"] = sum(1 for r in rounds if r.get("status_matches"))
        out["status_matches_after_kill"] = sum(1 for r in rounds if r["after_kill"].get("status_matches"))
        out["rounds_with_leftovers"] = sum(1 for r in rounds if r.get("leftover_containers"))
    return out


def _served(served: dict[str, Any] | None) -> str:
    if not served:
        return "nothing"
    rel = ", ".join(f"{k} ×{v}" for k, v in served.get("releases", {}).items())
    dep = ", ".join(f"deploy {k} ×{v}" for k, v in served.get("deploys", {}).items())
    return f"{rel or 'nothing'} ({dep or 'no container matched'})"


def _last_line(text: str) -> str:
    """The killed command's last progress line (headway's step, docker-compose's action), for the table."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(nothing yet)"
    line = " ".join(lines[-1].split()).replace("|", "/").replace("`", "'")
    return f"`{line[:70]}`"


def _fmt(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "—"


def render_tables(report: dict[str, Any]) -> str:
    lines = ["| stack | kills (killed / finished first) | requests | failed while the killed command ran | "
             "failed during the rerun | reruns that converged | rerun wall time s, median (max) | answering every "
             "request again after the kill s, median (max) | status names what is served: after the kill / "
             "after the rerun |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key, name in (("headway", "`headway deploy`"), ("compose", "`docker-compose up -d --build`")):
        s = report.get(key, {}).get("summary") or {}
        if not s:
            continue
        status = f"{s['status_matches_after_kill']} / {s['status_matches_after_rerun']} of {s['rounds']}" \
            if "status_matches_after_rerun" in s else "— (no such command)"
        lines.append(f"| {name} | {s['rounds']} ({s['killed']} / {s['rounds'] - s['killed']}) | {s['requests']:,} | "
                     f"**{s['failed_during_kill']:,}** | {s['failed_during_rerun']:,} | {s['converged']} of "
                     f"{s['rounds']} | {_fmt(s['rerun_wall_median_s'])} ({_fmt(s['rerun_wall_max_s'])}) | "
                     f"{_fmt(s['serving_again_median_s'])} ({_fmt(s['serving_again_max_s'])}) | {status} |")
    lines += ["", "| stack | round | kill after s | killed | last progress line before the kill | failed while "
              "killed / during rerun | rerun exit | rerun s | answering again after the kill s | status right after "
              "the kill |", "|---|---:|---:|---|---|---:|---:|---:|---:|---|"]
    for key, name in (("headway", "headway"), ("compose", "docker-compose")):
        for r in report.get(key, {}).get("rounds", []):
            ak = r.get("after_kill") or {}
            st = "—" if not ak else (f"names {ak.get('status_release')} (deploy {ak.get('status_deploy')}), "
                                     f"{'matches' if ak.get('status_matches') else 'DOES NOT match'} GET /"
                                     + (", interrupted" if ak.get("interrupted") else ""))
            lines.append(f"| {name} | {r['round']} | {r['delay_s']:.2f} | {'yes' if r['killed'] else 'no'} | "
                         f"{_last_line(r.get('killed_stderr_tail', ''))} | "
                         f"{r['during_kill']['failed']} / {r['during_rerun']['failed']} | {r['rerun_exit_code']} | "
                         f"{r['rerun_wall_s']:.2f} | {r['serving_again_after_kill_s']:.2f} | {st} |")
    return "\n".join(lines)


def _when(stamp_: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.strptime(stamp_, "%Y%m%dT%H%M%SZ"))


def _notes(report: dict[str, Any]) -> list[str]:
    notes = []
    for key, name in (("headway", "headway"), ("compose", "docker-compose")):
        for r in report.get(key, {}).get("rounds", []):
            bits = []
            for window, what in (("during_kill", "while the killed command ran"),
                                 ("during_rerun", "during the rerun")):
                w = r[window]
                if w["failed"]:
                    bits.append(f"{w['failed']} failed {what} ("
                                + ", ".join(f"{k} ×{v}" for k, v in w["statuses"].items()) + ")")
            if not r["converged"]:
                bits.append(f"the rerun did not converge (exit {r['rerun_exit_code']}"
                            + (f"; `up --force-recreate` exit {r.get('repair_exit_code')}" if key == "compose"
                               else f"; another deploy exit {r.get('repair_exit_code')}") + ")")
            if r.get("not_settled_before"):
                bits.append(f"before the round: {r['not_settled_before'][:200]}")
            if r.get("leftover_containers"):
                bits.append("left behind: " + ", ".join(r["leftover_containers"]))
            if key == "headway" and not r.get("status_matches", True):
                bits.append(f"after the rerun `headway status` named {r.get('status_release')} (deploy "
                            f"{r.get('status_deploy')}) but GET / answered {_served(r.get('served'))}")
            ak = r.get("after_kill") or {}
            if key == "headway" and ak and not ak.get("status_matches", True):
                bits.append(f"right after the kill `headway status` named {ak.get('status_release')} (deploy "
                            f"{ak.get('status_deploy')}) but GET / answered {_served(ak.get('served'))}")
            if bits:
                notes.append(f"- {name} round {r['round']} (killed after {r['delay_s']:.2f} s): " + "; ".join(bits)
                             + ".")
    return notes


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    hw, co = report.get("headway", {}), report.get("compose", {})
    out = [START, "## Deploys killed mid-way", "",
           f"Measured {_when(report['started_utc'])} (headway {m.get('headway_commit', '?')}, source tree "
           f"{hw.get('headway_src', {}).get('sha256', '?')}) on {m['nproc']} CPU "
           f"cores, Docker Engine {m['docker_server']}, docker-compose {m['docker_compose']}; load average "
           f"{' / '.join(map(str, m.get('loadavg_start', [])))} at the start. {s['kills']} kills per stack, "
           f"seed {s['seed']}. A normal deploy took {_fmt(hw.get('normal', {}).get('wall_s'))} s with headway and "
           f"{_fmt(co.get('normal', {}).get('wall_s'))} s with docker-compose; each kill came after a delay drawn "
           "uniformly from [0, that time].", "", render_tables(report), "", "### What went wrong", ""]
    out += _notes(report) or ["Nothing: every request was answered, every rerun converged."]
    if report.get("errors"):
        out += ["", "Errors during the run:", ""] + [f"- {one_line(e)}" for e in report["errors"]]
    out += ["", "### Method", "",
            "- The app is [examples/shop](../examples/shop), as in *Deploys under load*: headway through its own "
            "proxy with `deploy: warm_standby: true`, docker-compose with `docker-compose.prod.yml` and the app's "
            "published port. The release is named in the app's environment (`HEADWAY_RELEASE`, which headway sets "
            "and the compose env file sets here), and a file in the image changes every round, so every round "
            "builds and replaces.",
            f"- Each round: the strict client (HTTP/1.1 keep-alive, no retries, no check of the socket before "
            f"reuse) at {s['strict_rate_rps']:.0f} requests/s; `headway deploy -e production --version kill-N` "
            "(or `docker-compose up -d --build`) is started and SIGKILLed after the round's delay (the process "
            "alone, as `kill -9 PID` does); for headway `headway status --json` is read and `GET /` sampled; "
            "then the same command runs again. The round ends one second after `GET /` answers the new release "
            f"(at most {SERVE_TIMEOUT_S:.0f} s).",
            "- *Failed while the killed command ran*: from its start to the rerun's start; *during the rerun*: from "
            "the rerun's start to the end of the round. Failed = any non-2xx answer plus any connection error, "
            "reset or timeout. *Answering every request again*: from the kill to the last failed request "
            "(0 when none failed after the kill). *Converged*: the rerun exited 0 and `GET /` then named its "
            "release.",
            "- *Status names what is served*: `headway status --json` names the release and deploy number that "
            "answer `GET /` (12 requests; each response names its container, whose deploy label is read). After "
            "converging, no container may be left that no good release owns, and no one-off container.",
            "- Raw numbers: [bench/results/faults-latest.json](../bench/results/faults-latest.json). Re-run with "
            "`.venv/bin/python -m bench.fault_bench` (`--kills N`, `--seed S`; `--quick` leaves this page alone).",
            END]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
