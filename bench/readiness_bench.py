"""What the readiness tools measure and cost: `headway loadtest` beside wrk against the same environment, and
`headway doctor` beside `headway status`.

    .venv/bin/python -m bench.readiness_bench           # about 5 minutes; writes the results and the docs
    .venv/bin/python -m bench.readiness_bench --quick   # about 1.5 minutes: bench/results/readiness-quick-*.json

One headway proxy of its own and tests/fixtures/apps/tiny deployed by `headway deploy -e production` (2 web
replicas and the worker, behind the proxy on a port of its own, with a 32-character secret in its secrets file so
doctor's image scan has something to look for). Then, in one run, against the same URL:

1. The load check. `headway loadtest -e production --rps R --for 30s --connections 32 --json --yes` at R = 200
   and 800 (open loop: requests due on a fixed clock, latency from when each was due), each beside
   `wrk -t2 -c32 -d30s --latency` paced to the same rate (a Lua `delay()` between a connection's requests, random
   around 32/R s, so the 32 closed-loop connections send about R requests/s between them), then wrk unpaced (as
   fast as 32 connections go: the closed-loop ceiling of the box). Each client is a child of the bench, reaped
   with wait4(), which gives its CPU time (user + sys) and peak RSS. p50/p95/p99 of wrk come from its latency
   histogram (the `done()` hook of the same Lua script; `--latency` prints 50/75/90/99). The floor: 200
   sequential GETs over one keep-alive connection (http.client) and 5 `curl` runs, each a new connection.
   Also `headway loadtest --rps 10 --for 1s`: what the command costs besides sending the load.
2. Doctor's cost. `headway doctor -e production --json` and `headway status -e production --json`, interleaved,
   3 runs each (after one warm-up of each): wall time, CPU and peak RSS by wait4(). Then each of doctor's checks
   timed alone in one process (the same AuditContext the command builds), and the image the scan reads streamed
   from the engine alone (`docker save`), to show how much of doctor's time is the image layer scan.

Writes bench/results/readiness-<UTC time>.json and readiness-latest.json and the section between
<!-- bench:readiness:start --> and <!-- bench:readiness:end --> in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.deploy_ops import (REPO, _remove_images_named, _sweep_label, free_port, headway_argv, log, run,
                              snapshot_src, wait_serving)
from bench.run import exit_on_sigterm, machine_info, recorded, save_results, write_section
from headway.engine import labels as L

RESULTS = REPO / "bench" / "results"
START, END = "<!-- bench:readiness:start -->", "<!-- bench:readiness:end -->"
TINY = REPO / "tests" / "fixtures" / "apps" / "tiny"
ENV = "production"
RATES = (200.0, 800.0)
CONNECTIONS = 32
WRK_THREADS = 2
SECONDS = {"full": 30.0, "quick": 5.0}
DOCTOR_RUNS = {"full": 3, "quick": 1}
FLOOR_REQUESTS = 200
CURL_RUNS = 5
SECRET_NAME = "APP_SECRET"
MIB = 1024 * 1024

WRK_LUA = r"""
-- paced closed loop: each connection waits a random delay (mean WRK_DELAY_MS) before each request
local mean_delay = tonumber(os.getenv("WRK_DELAY_MS") or "0")
function init(args)
  math.randomseed(os.time() + tonumber(string.sub(tostring({}), 8), 16) % 100000)
end
function delay()
  if mean_delay <= 0 then return 0 end
  return math.floor(math.random() * 2 * mean_delay + 0.5)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p75_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n', summary.requests, summary.duration, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""

CHECK_TIMINGS = r"""
import json, sys, time
from headway.audit.checks import AuditContext, run_checks
from headway.audit.report import ALL_CHECKS
from headway.cli.render import ConsoleReporter
from headway.service import Headway

t0 = time.perf_counter()
hw = Headway.open(sys.argv[1], config=None, state_dir=None, reporter=ConsoleReporter(quiet=True))
ctx = AuditContext(hw.target, hw.state.root, hw.engine)
opened = time.perf_counter() - t0
rows = []
for c in ALL_CHECKS:
    t = time.perf_counter()
    found = run_checks([c], ctx)
    rows.append({"id": c.id, "seconds": round(time.perf_counter() - t, 4),
                 "statuses": [f.status for f in found]})
from headway.audit.security import audited_images
streams = []
for ref in audited_images(ctx):
    t = time.perf_counter()
    size = sum(len(chunk) for chunk in hw.engine.save_image(ref))
    streams.append({"image": ref, "bytes": size, "seconds": round(time.perf_counter() - t, 4)})
print("CHECKJSON " + json.dumps({"open_s": round(opened, 4), "checks": rows, "save_image": streams}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{SECONDS['quick']:g} s per load instead of {SECONDS['full']:g}, one doctor run; "
                             "does not touch the documented results")
    parser.add_argument("--render", metavar="JSON", help="regenerate the docs section from a results file")
    args = parser.parse_args(argv)
    if args.render:
        write_section(START, END, render_section(json.loads(Path(args.render).read_text())))
        return 0
    exit_on_sigterm()
    mode = "quick" if args.quick else "full"
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {
        "benchmark": "the readiness tools: headway loadtest beside wrk, headway doctor beside headway status",
        "started_utc": started, "quick": args.quick,
        "settings": {"environment": ENV, "rates_rps": list(RATES), "connections": CONNECTIONS,
                     "wrk_threads": WRK_THREADS, "seconds_per_load": SECONDS[mode],
                     "doctor_runs": DOCTOR_RUNS[mode], "floor_requests": FLOOR_REQUESTS, "curl_runs": CURL_RUNS},
        "machine": machine_info(), "errors": []}
    workdir = Path(tempfile.mkdtemp(prefix="headway-readiness-bench-"))
    bench = ReadinessBench(workdir, report["errors"])
    try:
        with recorded(report, bench.close):
            bench.run(report, mode)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        complete = all(k in report for k in ("load", "doctor")) and not report["errors"]
        save_results("readiness", report, quick=args.quick, started=started, section=render_section,
                     start=START, end=END, complete=complete)
    if "load" in report:
        print(render_load_table(report))
    if "doctor" in report:
        print(render_doctor_table(report))
    for err in report["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not report["errors"] else 1


# -- a child process, measured --------------------------------------------------------------------------------
def measured(argv: list[str], *, timeout: float, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `argv` to its end (killed after `timeout`); its wall time, exit status, output and, from wait4(), the
    CPU time (user + sys, its waited-for children included) and peak resident set (the largest of them)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # SIGTERM or Ctrl-C while waiting: the child goes too
            kill()
            os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        finally:
            watchdog.cancel()
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return {"argv": argv, "exit_code": proc.returncode, "timed_out": killed.is_set(), "wall_s": round(wall, 4),
            "cpu_user_s": round(usage.ru_utime, 3), "cpu_sys_s": round(usage.ru_stime, 3),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "stdout": stdout, "stderr": stderr}


def _json_after(marker: str, text: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith(marker + " "):
            return dict(json.loads(line[len(marker) + 1:]))
    raise RuntimeError(f"no {marker} line in: {text[-1500:]}")


def _pct(data: list[float], p: float) -> float:
    """Nearest-rank percentile (as headway loadtest computes it)."""
    s = sorted(data)
    rank = max(1, -(-len(s) * p // 100))
    return s[int(min(rank, len(s))) - 1]


# -- the bench ------------------------------------------------------------------------------------------------
class ReadinessBench:
    def __init__(self, workdir: Path, errors: list[str]) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.errors = errors
        self.state = workdir / "state"
        self.app = f"rdy{self.suffix}"
        self.root = workdir / "apps" / self.app
        self.proxy_name = f"headway-proxy-bench-readiness-{self.suffix}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env: dict[str, str] = dict(os.environ)
        self.proxy_booted = False
        self.deployed = False
        self.lua = workdir / "paced.lua"

    def cli(self, *args: str) -> list[str]:
        return [*headway_argv(), *args]

    def run(self, report: dict[str, Any], mode: str) -> None:
        src = snapshot_src(self.workdir)
        report["headway_src"] = src
        self.env["PYTHONPATH"] = src["path"]
        self.env["HEADWAY_STATE_DIR"] = str(self.state)
        for key in ("HEADWAY_DEBUG", "HEADWAY_FAULT"):
            self.env.pop(key, None)
        self.state.mkdir()
        self.lua.write_text(WRK_LUA)
        report["wrk_version"] = " ".join(run(["wrk", "--version"], check=False).stdout.split()[:2])
        report["deploy"] = self.setup()
        report["load"] = self.load(SECONDS[mode])
        report["doctor"] = self.doctor(DOCTOR_RUNS[mode])

    # -- setup ----------------------------------------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        shutil.copytree(TINY, self.root, ignore=shutil.ignore_patterns("__pycache__"))
        path = self.root / "headway.yml"
        text = path.read_text()
        for old, new in (("app: tiny\n", f"app: {self.app}\n"),
                         ("  production:\n    port: 18480\n", f"  production:\n    port: {self.port}\n"),
                         ("  staging:\n    port: 18481\n", f"  staging:\n    port: {free_port()}\n")):
            if old not in text:
                raise RuntimeError(f"tests/fixtures/apps/tiny/headway.yml no longer contains {old!r}; "
                                   "update bench/readiness_bench.py")
            text = text.replace(old, new, 1)
        path.write_text(text)
        secrets = self.root / ".headway" / f"secrets.{ENV}"
        secrets.parent.mkdir(exist_ok=True)
        secrets.write_text(f"{SECRET_NAME}={uuid.uuid4().hex}\n")  # 32 characters: doctor's scan looks for it
        os.chmod(secrets, 0o600)
        http_port, control_port = free_port(), free_port()
        log(f"booting proxy {self.proxy_name} on :{http_port}")
        self.proxy_booted = True
        run(self.cli("proxy", "boot", "--http-port", str(http_port), "--control-port", str(control_port),
                     "--name", self.proxy_name), env=self.env, timeout=180)
        log(f"deploying {self.app} -e {ENV} (port {self.port})")
        t0 = time.monotonic()
        self.deployed = True
        run(self.cli("deploy", "-e", ENV, "--version", "bench-1", "--json"), cwd=self.root, env=self.env,
            timeout=600)
        wait_serving(self.url, 60)
        web = run(["docker", "ps", "--filter", f"label={L.APP}={self.app}", "--filter", f"label={L.ROLE}=web",
                   "--format", "{{.Names}}"]).stdout.split()
        if len(web) != 2:
            raise RuntimeError(f"expected 2 running web containers of {self.app}, found {web}")
        return {"app": self.app, "port": self.port, "url": self.url, "web_containers": len(web),
                "seconds": round(time.monotonic() - t0, 1)}

    # -- 1. the load check ----------------------------------------------------------------------------------
    def load(self, seconds: float) -> dict[str, Any]:
        floor = self.floor()
        service_ms = floor["keepalive"]["p50_ms"]
        rows: list[dict[str, Any]] = []
        fixed = self.headway_load(10.0, 1.0, "fixed cost: `headway loadtest --rps 10 --for 1s`")
        for rate in RATES:
            rows.append(self.headway_load(rate, seconds, f"headway loadtest --rps {rate:g}"))
            rows.append(self.wrk(seconds, rate, service_ms))
        rows.append(self.wrk(seconds, None, service_ms))
        return {"floor": floor, "fixed": fixed, "rows": rows}

    def floor(self) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        lat: list[float] = []
        statuses: dict[str, int] = {}
        try:
            for _ in range(FLOOR_REQUESTS):
                t = time.perf_counter()
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                lat.append((time.perf_counter() - t) * 1000)
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
        finally:
            conn.close()
        curl: list[float] = []
        for _ in range(CURL_RUNS):
            r = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", self.url], timeout=30)
            code, total = r.stdout.split()
            if code != "200":
                self.errors.append(f"curl {self.url} answered {code}")
            curl.append(float(total) * 1000)
        keep = {"requests": len(lat), "statuses": statuses, "p50_ms": round(_pct(lat, 50), 3),
                "p95_ms": round(_pct(lat, 95), 3), "p99_ms": round(_pct(lat, 99), 3),
                "max_ms": round(max(lat), 3)}
        if statuses != {"200": FLOOR_REQUESTS}:
            self.errors.append(f"the floor's requests got {statuses}")
        log(f"floor: keep-alive p50 {keep['p50_ms']:.2f} ms, curl median {statistics.median(curl):.2f} ms")
        return {"keepalive": keep, "curl_ms": [round(x, 3) for x in curl],
                "curl_median_ms": round(statistics.median(curl), 3)}

    def headway_load(self, rate: float, seconds: float, name: str) -> dict[str, Any]:
        log(f"{name} for {seconds:g}s")
        m = measured(self.cli("loadtest", "-e", ENV, "--rps", f"{rate:g}", "--for", f"{seconds:g}s",
                              "--connections", str(CONNECTIONS), "--json", "--yes"),
                     cwd=self.root, env=self.env, timeout=seconds + 60)
        if m["exit_code"] not in (0, 1):  # 1: a threshold missed, still a measurement
            raise RuntimeError(f"headway loadtest exited {m['exit_code']}: {m['stderr'][-1500:]}")
        data = dict(json.loads(m["stdout"]))
        answered = sum(v for k, v in data["statuses"].items() if k.isdigit())
        errors = int(data["errors"])
        row = {"client": "headway", "name": name, "asked_rps": rate, "seconds_asked": seconds,
               "connections": CONNECTIONS, "requests": int(data["requests"]), "answered": answered,
               "errors": errors, "errors_by_kind": data["errors_by_kind"], "statuses": data["statuses"],
               "seconds": float(data["seconds"]),
               # answered requests over the run's own duration (its clock's start to the last answer): a client
               # that falls behind its clock takes longer than asked, and what it did not get answered is not counted
               "achieved_rps": round(answered / float(data["seconds"]), 1),
               "p50_ms": data["p50_ms"], "p95_ms": data["p95_ms"], "p99_ms": data["p99_ms"],
               "passed": data["passed"], "missed": data["missed"], "command_wall_s": m["wall_s"],
               "cpu_s": m["cpu_s"], "cpu_user_s": m["cpu_user_s"], "cpu_sys_s": m["cpu_sys_s"],
               "peak_rss_mib": m["peak_rss_mib"], "exit_code": m["exit_code"]}
        log(f"  {row['requests']} requests in {row['seconds']:.2f}s, p50 {row['p50_ms']} p99 {row['p99_ms']} ms, "
            f"{errors} errors, CPU {m['cpu_s']:.2f}s, peak RSS {m['peak_rss_mib']} MiB")
        return row

    def wrk(self, seconds: float, rate: float | None, service_ms: float) -> dict[str, Any]:
        # each of the 32 connections waits a random delay (mean 32/R s less the service time) before each request
        delay_ms = max(0.0, CONNECTIONS * 1000.0 / rate - service_ms) if rate else 0.0
        name = f"wrk, paced to {rate:g}/s" if rate else "wrk, unpaced (as fast as it goes)"
        log(f"{name} for {seconds:g}s (mean delay {delay_ms:.1f} ms per connection)")
        m = measured(["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "--timeout",
                      "10s", "-s", str(self.lua), self.url], env={**os.environ, "WRK_DELAY_MS": f"{delay_ms:.3f}"},
                     timeout=seconds + 60)
        if m["exit_code"] != 0:
            raise RuntimeError(f"wrk exited {m['exit_code']}: {m['stderr'][-1500:]}")
        w = _json_after("WRKJSON", m["stdout"])
        dur = w["duration_us"] / 1e6
        errors = sum(int(w[k]) for k in ("connect", "read", "write", "status", "timeout"))
        dist = [ln.strip() for ln in m["stdout"].split("Latency Distribution", 1)[-1].splitlines()[1:5]]
        row = {"client": "wrk", "name": name, "asked_rps": rate, "seconds_asked": seconds,
               "connections": CONNECTIONS, "mean_delay_ms": round(delay_ms, 3), "requests": int(w["requests"]),
               "errors": errors, "errors_by_kind": {k: int(w[k]) for k in ("connect", "read", "write", "status",
                                                                           "timeout")},
               "seconds": round(dur, 3), "achieved_rps": round(w["requests"] / dur, 1),
               "p50_ms": round(w["p50_us"] / 1000, 3), "p75_ms": round(w["p75_us"] / 1000, 3),
               "p90_ms": round(w["p90_us"] / 1000, 3), "p95_ms": round(w["p95_us"] / 1000, 3),
               "p99_ms": round(w["p99_us"] / 1000, 3), "max_ms": round(w["max_us"] / 1000, 3),
               "latency_distribution": dist, "command_wall_s": m["wall_s"], "cpu_s": m["cpu_s"],
               "cpu_user_s": m["cpu_user_s"], "cpu_sys_s": m["cpu_sys_s"], "peak_rss_mib": m["peak_rss_mib"],
               "stdout": m["stdout"]}
        log(f"  {row['requests']} requests ({row['achieved_rps']}/s), p50 {row['p50_ms']} p99 {row['p99_ms']} ms, "
            f"{errors} errors, CPU {m['cpu_s']:.2f}s, peak RSS {m['peak_rss_mib']} MiB")
        return row

    # -- 2. doctor's cost ---------------------------------------------------------------------------------
    def doctor(self, runs: int) -> dict[str, Any]:
        commands = {"doctor": self.cli("doctor", "-e", ENV, "--json"),
                    "status": self.cli("status", "-e", ENV, "--json")}
        out: dict[str, Any] = {}
        samples: dict[str, list[dict[str, Any]]] = {k: [] for k in commands}
        for i in range(runs + 1):  # the first of each is a warm-up (page cache, the engine's image metadata)
            for key, argv in commands.items():
                log(f"{key} run {i}{' (warm-up)' if i == 0 else ''}")
                m = measured(argv, cwd=self.root, env=self.env, timeout=300)
                if m["exit_code"] != 0:
                    raise RuntimeError(f"headway {key} exited {m['exit_code']}: {m['stderr'][-1500:]}")
                if i:
                    samples[key].append(m)
                else:
                    out[f"{key}_warmup_wall_s"] = m["wall_s"]
        for key, ms in samples.items():
            out[key] = {"runs": len(ms), "wall_s": [m["wall_s"] for m in ms], "cpu_s": [m["cpu_s"] for m in ms],
                        "peak_rss_mib": [m["peak_rss_mib"] for m in ms],
                        "wall_s_median": statistics.median(m["wall_s"] for m in ms),
                        "cpu_s_median": statistics.median(m["cpu_s"] for m in ms),
                        "peak_rss_mib_median": statistics.median(m["peak_rss_mib"] for m in ms)}
        last = json.loads(samples["doctor"][-1]["stdout"])
        out["report"] = {"score": last["score"], "categories": last["categories"],
                         "findings": len(last["findings"]),
                         "image_secrets": [{"id": f["id"], "status": f["status"], "evidence": f["evidence"]}
                                           for f in last["findings"] if f["id"].startswith("security.image-secrets")],
                         "statuses": {s: sum(f["status"] == s for f in last["findings"])
                                      for s in ("passed", "failed", "unknown")}}
        scanned = [f for f in out["report"]["image_secrets"] if "secret value(s) in its layers" in f["evidence"]]
        if not scanned:
            self.errors.append(f"doctor did not scan an image for the secret: {out['report']['image_secrets']}")
        log("timing each check alone")
        m = measured([sys.executable, "-c", CHECK_TIMINGS, ENV], cwd=self.root, env=self.env, timeout=300)
        if m["exit_code"] != 0:
            raise RuntimeError(f"the check timings exited {m['exit_code']}: {m['stderr'][-1500:]}")
        timings = _json_after("CHECKJSON", m["stdout"])
        timings["wall_s"] = m["wall_s"]
        timings["peak_rss_mib"] = m["peak_rss_mib"]
        out["check_timings"] = timings
        return out

    # -- cleanup --------------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        problems: list[str] = []
        if self.deployed and (self.state / "apps" / self.app / ENV).exists():
            r = run(self.cli("remove", "-e", ENV, "--volumes", "--yes"), cwd=self.root, env=self.env, timeout=300,
                    check=False)
            if r.returncode != 0:
                problems.append(f"headway remove exited {r.returncode}: {r.stderr.strip()[-300:]}")
        if self.deployed:
            problems += _sweep_label(f"{L.APP}={self.app}")
            problems += _remove_images_named(self.app)
            for ref in run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], check=False
                           ).stdout.split():
                if ref.rpartition(":")[0].startswith(self.app + "-"):
                    r = run(["docker", "image", "rm", ref], check=False)
                    if r.returncode != 0:
                        problems.append(f"docker image rm {ref}: {r.stderr.strip()}")
        if self.proxy_booted:
            r = run(["docker", "rm", "-f", "-v", self.proxy_name], check=False)
            if r.returncode != 0 and "No such container" not in r.stderr:
                problems.append(f"docker rm {self.proxy_name}: {r.stderr.strip()}")
        return problems


# -- rendering ------------------------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 2) -> str:
    return f"{v:,.{digits}f}" if v is not None else "—"


LOAD_HEAD = ("| client | asked req/s | achieved req/s | requests | errors | p50 ms | p95 ms | p99 ms | client CPU s "
             "(user + sys) | client CPU % of one core | CPU ms per 1,000 requests | client peak RSS MiB |\n"
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _load_row(r: dict[str, Any], fixed_cpu: float) -> str:
    asked = f"{r['asked_rps']:g}" if r.get("asked_rps") else "— (closed loop)"
    achieved = _f(r["achieved_rps"], 1)
    if r.get("asked_rps") and r["achieved_rps"] < 0.97 * r["asked_rps"]:
        achieved = f"**{achieved}** (short of the rate asked)"
    load_cpu = r["cpu_s"] - (fixed_cpu if r["client"] == "headway" else 0.0)
    per_k = 1e6 * load_cpu / r["requests"] if r["requests"] else None  # CPU ms per 1,000 requests
    share = 100 * r["cpu_s"] / r["seconds_asked"]
    what = f"`headway loadtest --rps {r['asked_rps']:g}` (open loop)" if r["client"] == "headway" else \
        (f"`wrk -t{WRK_THREADS} -c{r['connections']}` paced to {r['asked_rps']:g}/s" if r.get("asked_rps") else
         f"`wrk -t{WRK_THREADS} -c{r['connections']}` unpaced")
    return (f"| {what} | {asked} | {achieved} | {r['requests']:,} | {r['errors']:,} | {_f(r['p50_ms'])} | "
            f"{_f(r['p95_ms'])} | {_f(r['p99_ms'])} | {_f(r['cpu_s'])} ({_f(r['cpu_user_s'])} + "
            f"{_f(r['cpu_sys_s'])}) | {_f(share, 1)} | {_f(per_k, 0)} | {_f(r['peak_rss_mib'], 1)} |")


def render_load_table(report: dict[str, Any]) -> str:
    load = report["load"]
    fl = load["floor"]
    k = fl["keepalive"]
    fixed = load["fixed"]
    lines = [LOAD_HEAD]
    lines += [_load_row(r, fixed["cpu_s"]) for r in load["rows"]]
    lines.append(f"| floor: {k['requests']} sequential GETs over one keep-alive connection (http.client) | — | — | "
                 f"{k['requests']:,} | 0 | {_f(k['p50_ms'])} | {_f(k['p95_ms'])} | {_f(k['p99_ms'])} | — | — | — "
                 "| — |")
    lines.append(f"| floor: `curl` ×{len(fl['curl_ms'])}, a new connection each (its time_total) | — | — | "
                 f"{len(fl['curl_ms'])} | 0 | {_f(fl['curl_median_ms'])} | — | — | — | — | — | — |")
    return "\n".join(lines)


def render_doctor_table(report: dict[str, Any]) -> str:
    d = report["doctor"]
    t = d["check_timings"]
    image = next((c for c in t["checks"] if c["id"] == "security.image-secrets"), None)
    total = sum(c["seconds"] for c in t["checks"])
    lines = ["| command | wall s: median (every run) | CPU s: median | peak RSS MiB: median |",
             "|---|---:|---:|---:|"]
    for key, what in (("status", f"`headway status -e {ENV} --json` (the floor)"),
                      ("doctor", f"`headway doctor -e {ENV} --json`")):
        r = d[key]
        lines.append(f"| {what} | **{r['wall_s_median']:.3f}** ({', '.join(f'{x:.3f}' for x in r['wall_s'])}) | "
                     f"{r['cpu_s_median']:.2f} | {r['peak_rss_mib_median']:.1f} |")
    lines += ["", "| doctor's checks, each timed alone in one process | seconds | share of the checks' time |",
              "|---|---:|---:|"]
    ranked = sorted(t["checks"], key=lambda c: -c["seconds"])
    for c in ranked[:6]:
        lines.append(f"| `{c['id']}` | {c['seconds']:.3f} | {100 * c['seconds'] / total:.0f} % |")
    rest = ranked[6:]
    lines.append(f"| the other {len(rest)} checks | {sum(c['seconds'] for c in rest):.3f} | "
                 f"{100 * sum(c['seconds'] for c in rest) / total:.0f} % |")
    lines.append(f"| all {len(t['checks'])} checks | {total:.3f} | 100 % |")
    for s in t["save_image"]:
        lines.append(f"| of `security.image-secrets`: streaming {s['image']} from the engine alone (`docker save`, "
                     f"{s['bytes'] / MIB:.0f} MiB, not read) | {s['seconds']:.3f} | "
                     f"{100 * s['seconds'] / total:.0f} % |")
    if image is None:
        lines.append("| `security.image-secrets` | not run | — |")
    return "\n".join(lines)


def _when(stamp: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.strptime(stamp, "%Y%m%dT%H%M%SZ"))


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    load = report["load"]
    rows = load["rows"]
    hw = {r["asked_rps"]: r for r in rows if r["client"] == "headway"}
    wk = {r["asked_rps"]: r for r in rows if r["client"] == "wrk"}
    free = wk.get(None)
    fl = load["floor"]["keepalive"]
    fixed = load["fixed"]
    d = report["doctor"]
    t = d["check_timings"]
    total = sum(c["seconds"] for c in t["checks"])
    image = next((c for c in t["checks"] if c["id"] == "security.image-secrets"), {"seconds": 0.0})
    save = sum(x["seconds"] for x in t["save_image"])
    saved_mib = sum(x["bytes"] for x in t["save_image"]) / MIB
    doc, st = d["doctor"], d["status"]
    short = [r for r in hw.values() if r["achieved_rps"] < 0.97 * r["asked_rps"]]
    agree = []
    gaps = []
    for rate in RATES:
        if rate in hw and rate in wk:
            agree.append(f"at {rate:g} requests/s headway's p50/p95/p99 are {hw[rate]['p50_ms']:.2f} / "
                         f"{hw[rate]['p95_ms']:.2f} / {hw[rate]['p99_ms']:.2f} ms and wrk's "
                         f"{wk[rate]['p50_ms']:.2f} / {wk[rate]['p95_ms']:.2f} / {wk[rate]['p99_ms']:.2f} ms")
            gaps.append(abs(hw[rate]["p50_ms"] - wk[rate]["p50_ms"]))
    out = [
        START,
        "## The readiness tools: load check and doctor",
        "",
        f"Measured {_when(report['started_utc'])} on {m['nproc']} CPU cores ({m['cpu']}), {m['memory_gib']} GiB "
        f"RAM, Docker Engine {m['docker_server']} (headway {m['headway_commit']}, source tree "
        f"{report.get('headway_src', {}).get('sha256', '?')}); load average "
        f"{' / '.join(map(str, m['loadavg_start']))} at the start. One environment for everything below: "
        "tests/fixtures/apps/tiny (a Python `ThreadingHTTPServer` answering a small JSON body), deployed by "
        f"`headway deploy -e {s['environment']}` with 2 web replicas and its worker behind headway's own proxy, "
        "every request `GET /` to the environment's port on the proxy, from the same machine.",
        "",
        "### The load check beside wrk",
        "",
        f"Each client ran for {s['seconds_per_load']:g} s against that URL, one after the other, with "
        f"{s['connections']} keep-alive connections: `headway loadtest -e {s['environment']} --rps R --for "
        f"{s['seconds_per_load']:g}s --connections {s['connections']} --json --yes` (open loop: each request is due "
        "on a fixed clock and its latency counts from when it was due), and `wrk -t2 -c32 --latency` (Debian's "
        f"{report.get('wrk_version', 'wrk')}, closed loop: a connection sends its next request when the last one "
        "is answered) paced to the same rate by a Lua `delay()` before each request (random, mean 32/R s less "
        "the service time), then unpaced. wrk's p50/p95/p99 come from its latency histogram (the `done()` hook; "
        "`--latency` prints the same p50 and p99). Achieved requests/s: the answered requests over the run's own "
        "duration (headway's from its clock's start to its last answer, wrk's as it measures it). "
        "Client CPU and peak RSS are the client process's, from "
        "wait4(); headway's include starting the CLI, reading the config and asking the engine and proxy — "
        f"`headway loadtest --rps 10 --for 1s` alone took {fixed['cpu_s']:.2f} s of CPU and "
        f"{fixed['peak_rss_mib']:.0f} MiB, which the CPU-per-1,000-requests column takes off headway's rows. "
        "The floor is the service time with nothing else going on.",
        "",
        render_load_table(report),
        "",
        "An open-loop client's p99 can be higher than a closed-loop one's on the same server: when an answer is "
        "slow, a closed-loop connection simply sends its next request later, so the requests that would have "
        "waited behind the stall are never sent and never measured (coordinated omission), while the open-loop "
        "client keeps sending on its clock and counts each request's wait from when it was due.",
        "",
        ("Where both measure the same thing (a load of the same rate over the same 32 connections to the same "
         "URL): " + "; ".join(agree) + f". The medians are within {max(gaps):.2f} ms of each other; what "
         "headway adds is its own time per request, as it counts from when a request was due: the hand-off "
         "from its clock to one of its worker threads and Python's HTTP client, where wrk times from the write "
         "of a request in its C event loop. " if agree else "")
        + (f"Unpaced, wrk's 32 connections reach {free['achieved_rps']:,.0f} requests/s (p50 "
           f"{free['p50_ms']:.2f} ms): the ceiling of this box, where client, proxy and app share 2 cores. "
           if free else "")
        + ("headway loadtest reached the rate asked at every rate measured. " if not short else
           "headway loadtest did **not** reach " + " and ".join(
               f"{r['asked_rps']:g} requests/s ({r['achieved_rps']:,.1f} achieved)" for r in short) + ". ")
        + "The load check's own cost: "
        + ", ".join(f"at {rate:g}/s {100 * r['cpu_s'] / r['seconds_asked']:.1f} % of one core and "
                    f"{r['peak_rss_mib']:.0f} MiB (wrk: {100 * wk[rate]['cpu_s'] / wk[rate]['seconds_asked']:.1f}"
                    f" % and {wk[rate]['peak_rss_mib']:.0f} MiB)" for rate, r in hw.items() if rate in wk)
        + f". Floor: {fl['p50_ms']:.2f} ms p50 over one keep-alive connection, "
        f"{load['floor']['curl_median_ms']:.2f} ms for `curl` with a new connection.",
        "",
        "### Doctor's cost",
        "",
        f"`headway doctor -e {s['environment']} --json` and, as the floor, `headway status -e "
        f"{s['environment']} --json` (the cheapest command that loads the same config and asks the engine), "
        f"run {doc['runs']} time{'s' if doc['runs'] != 1 else ''} each, interleaved, after one warm-up each, "
        "against the environment above "
        "(after the load checks, so doctor's `operations.loadtest` finds a result). Wall time, CPU and peak RSS "
        "(the largest of the command and the processes it waited for: git, hadolint) are from wait4(). Then each "
        "check was timed alone in one process, with the same AuditContext the command builds (the first check "
        "to read a fact pays for it: importing the engine's client and connecting to it fall to the first check "
        "that asks the engine), and the image the scan reads was streamed from the engine without being "
        f"read. The environment has one secret of 32 characters in its secrets file, so `security.image-secrets` "
        "reads every file of every layer of the live release's image.",
        "",
        render_doctor_table(report),
        "",
        f"doctor takes {doc['wall_s_median']:.2f} s (median) where status takes {st['wall_s_median']:.2f} s, and "
        f"peaks at {doc['peak_rss_mib_median']:.0f} MiB against {st['peak_rss_mib_median']:.0f} MiB; its "
        f"{doc['cpu_s_median']:.2f} s of CPU are its own (and its children's), the engine's work writing the "
        "`docker save` stream is dockerd's and not in it. Of the "
        f"{total:.2f} s its checks take, the image layer scan is {image['seconds']:.2f} s "
        f"({100 * image['seconds'] / total if total else 0:.0f} %), of which streaming the {saved_mib:.0f} MiB "
        f"image from the engine alone takes {save:.2f} s; the report scored {d['report']['score']}/100 with "
        f"{d['report']['findings']} findings ({d['report']['statuses']['passed']} passed, "
        f"{d['report']['statuses']['failed']} failed, {d['report']['statuses']['unknown']} unknown).",
        "",
        "Generated by `.venv/bin/python -m bench.readiness_bench` (results in "
        "[bench/results/readiness-latest.json](../bench/results/readiness-latest.json)).",
        END,
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
