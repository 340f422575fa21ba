"""What the monitoring agent costs: its CPU and memory with 10 environments on the host, beside the same agent
watching nothing and the bare interpreter.

    .venv/bin/python -m bench.agent_bench              # 4 minutes sampled; writes the results and the docs
    .venv/bin/python -m bench.agent_bench --quick      # 1 minute: bench/results/agent-quick-*.json only

One headway proxy of its own, 5 copies of tests/fixtures/apps/tiny × production and staging (web ×1 and the
worker: 10 environments, 20 containers), each deployed by `headway deploy`, each sent 2 requests/s through the
proxy by a strict client (so the access-log path works). Then, side by side over the same window:

- the agent as `headway agent boot` starts it (default interval, 15 s), watching the 10 environments;
- the same agent booted against an empty state directory (0 environments): what the agent costs by itself;
- the floor: a container of the agent's image running `python -c "import time; time.sleep(1e9)"` with the same
  caps (the interpreter's own resident memory).

After each agent's first round (the warm-up), each container is sampled every 5 s for `--minutes`: CPU from its
cgroup (cpuacct.usage) as a share of one core over the window, memory from its cgroup (memory.usage_in_bytes less
total_inactive_file: the working set `docker stats` shows; and total_rss), the rounds done and their durations
(the agent's last-round.json, read at every sample). Then the agent's /metrics must list headway_up for the 10
environments. Also measured: what `headway agent run`'s imports cost in the image (`python -X importtime`, and
the resident memory once they are imported).

Budget: with 10 environments the agent averages at most 2 % of one core and 80 MiB of memory.

Writes bench/results/agent-<UTC time>.json and agent-latest.json and the section between
<!-- bench:agent:start --> and <!-- bench:agent:end --> in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.deploy_ops import REPO, free_port, headway_argv, log, run, snapshot_src, wait_serving
from bench.loadgen import SteadyLoad
from bench.run import exit_on_sigterm, machine_info, recorded, save_results, write_section
from headway.engine import labels as L
from headway.state.files import read_json_object

RESULTS = REPO / "bench" / "results"
START, END = "<!-- bench:agent:start -->", "<!-- bench:agent:end -->"
TINY = REPO / "tests" / "fixtures" / "apps" / "tiny"
APPS = 5
ENVIRONMENTS = ("production", "staging")
RATE = 2.0  # requests/s per environment, through the proxy
SAMPLE_S = 5.0
MINUTES = 4.0
QUICK_MINUTES = 1.0
INTERVAL_S = 15.0  # the agent's default; the bench does not pass --interval
BUDGET_CPU_PCT = 2.0
BUDGET_MEM_MIB = 80.0
MIB = 1024 * 1024
BENCH_LABEL = "dev.headway.bench"
CGROUP = Path("/sys/fs/cgroup")
# what `headway agent run` imports: the entry point, then what a round uses
AGENT_MODULES = ["headway.cli.main", "headway.cli.agent", "headway.observe.monitor", "headway.observe.access_log",
                 "headway.observe.metrics", "headway.observe.store", "headway.observe.alerts",
                 "headway.observe.health", "headway.observe.notify", "headway.engine.docker",
                 "headway.data.catalog", "headway.proxy.certificates"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=None,
                        help=f"sampling window (default {MINUTES:g}; {QUICK_MINUTES:g} with --quick)")
    parser.add_argument("--quick", action="store_true", help="does not touch the documented results")
    parser.add_argument("--render", metavar="JSON", help="regenerate the docs section from a results file")
    args = parser.parse_args(argv)
    if args.render:
        write_section(START, END, render_section(json.loads(Path(args.render).read_text())))
        return 0
    minutes = args.minutes if args.minutes is not None else (QUICK_MINUTES if args.quick else MINUTES)
    exit_on_sigterm()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {
        "benchmark": "the monitoring agent's cost", "started_utc": started, "quick": args.quick,
        "settings": {"apps": APPS, "environments": APPS * len(ENVIRONMENTS), "rate_rps_per_environment": RATE,
                     "minutes": minutes, "sample_s": SAMPLE_S, "agent_interval_s": INTERVAL_S,
                     "budget_cpu_pct_of_one_core": BUDGET_CPU_PCT, "budget_memory_mib": BUDGET_MEM_MIB,
                     "container_caps": {"cpus": 0.25, "memory": "192m"}},
        "machine": machine_info(), "errors": []}
    workdir = Path(tempfile.mkdtemp(prefix="headway-agent-bench-"))
    bench = AgentBench(workdir, report["errors"])
    try:
        with recorded(report, bench.close):
            bench.run(report, minutes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        complete = all(k in report.get("containers", {}) for k in ("agent10", "agent0", "floor")) and \
            "metrics_check" in report and not report["errors"]
        save_results("agent", report, quick=args.quick, started=started, section=render_section,
                     start=START, end=END, complete=complete)
    print(render_table(report))
    for err in report["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not report["errors"] and all(b["pass"] for b in budget(report)) else 1


# -- cgroup readings --------------------------------------------------------------------------------------
def _cg(controller: str, cid: str, name: str) -> str:
    return (CGROUP / controller / "docker" / cid / name).read_text()


def cpu_ns(cid: str) -> int:
    return int(_cg("cpuacct", cid, "cpuacct.usage"))


def memory(cid: str) -> dict[str, int]:
    """The container's memory: working set (usage less inactive file pages, as `docker stats`) and rss."""
    usage = int(_cg("memory", cid, "memory.usage_in_bytes"))
    stat = {k: int(v) for k, v in (line.split() for line in _cg("memory", cid, "memory.stat").splitlines())}
    return {"working_set": max(0, usage - stat.get("total_inactive_file", 0)), "rss": stat.get("total_rss", 0),
            "cache": stat.get("total_cache", 0), "usage": usage}


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (kB) and threads of the container's main process, read from the host."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def inspect(name: str) -> dict[str, Any]:
    data = json.loads(run(["docker", "inspect", name]).stdout)[0]
    return dict(data)


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


_IMPORTS_SCRIPT = """\
import json, sys
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
marks = [['python', rss(), len(sys.modules)]]
for m in MODULES:
    __import__(m)
    marks.append([m, rss(), len(sys.modules)])
from headway.engine.docker import sdk  # the docker SDK, imported by the first round that lists containers
sdk()
marks.append(['docker SDK (first round)', rss(), len(sys.modules)])
tops = {}
for name in list(sys.modules):
    tops[name.split('.')[0]] = tops.get(name.split('.')[0], 0) + 1
print('JSON ' + json.dumps({'marks': marks, 'tops': tops, 'order': list(tops),
                            'stdlib': sorted(sys.stdlib_module_names)}))
"""
_ALONE_SCRIPT = """\
import json, sys
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
out = []
for p in PACKAGES:
    before = rss()
    try:
        __import__(p)
    except Exception:
        continue
    out.append([p, rss() - before])
print('JSON ' + json.dumps(out))
"""


def _in_image(image: str, suffix: str, script: str, *flags: str) -> Any:
    return run(["docker", "run", "--rm", "--entrypoint", "python", "--label", f"{BENCH_LABEL}=agent-{suffix}",
                image, *flags, "-c", script], timeout=120)


# -- the bench ----------------------------------------------------------------------------------------------
class AgentBench:
    def __init__(self, workdir: Path, errors: list[str]) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.errors = errors
        self.state = workdir / "state"  # the host's state: proxy, 10 environments, the agent
        self.empty_state = workdir / "state-empty"  # the 0-environment agent's
        self.proxy_name = f"headway-proxy-bench-agent-{self.suffix}"
        self.agent_names = {"agent10": f"headway-agent-bench-{self.suffix}",
                            "agent0": f"headway-agent-bench-empty-{self.suffix}"}
        self.floor_name = f"headway-agent-bench-floor-{self.suffix}"
        self.apps: list[dict[str, Any]] = []
        self.loads: list[tuple[str, SteadyLoad]] = []
        self.env: dict[str, str] = dict(os.environ)
        self.proxy_booted = False
        self.agent_image: str | None = None
        self.agent_ports: dict[str, int] = {}
        self.agent_images_before: set[str] | None = None  # headway-agent images before this run

    def cli(self, *args: str) -> list[str]:
        return [*headway_argv(), *args]

    def env_for(self, state: Path) -> dict[str, str]:
        return {**self.env, "HEADWAY_STATE_DIR": str(state)}

    # -- setup ----------------------------------------------------------------------------------------------
    def run(self, report: dict[str, Any], minutes: float) -> None:
        self.agent_images_before = set(_agent_images())
        src = snapshot_src(self.workdir)
        report["headway_src"] = src
        # laid out as a checkout (src/headway beside pyproject.toml), so the wheel the agent's image installs
        # declares this checkout's dependencies
        shutil.copy2(REPO / "pyproject.toml", Path(src["path"]).parent / "pyproject.toml")
        self.env["PYTHONPATH"] = src["path"]  # the CLI, and the wheel the agent's image is built from
        for key in ("HEADWAY_DEBUG", "HEADWAY_FAULT", "HEADWAY_STATE_DIR"):
            self.env.pop(key, None)
        self.state.mkdir()
        self.empty_state.mkdir()
        http_port, control_port = free_port(), free_port()
        log(f"booting proxy {self.proxy_name} on :{http_port}")
        self.proxy_booted = True
        run(self.cli("proxy", "boot", "--http-port", str(http_port), "--control-port", str(control_port),
                     "--name", self.proxy_name), env=self.env_for(self.state), timeout=180)
        report["deploys"] = self.deploy_all()
        self.start_load(minutes)
        report["agents"] = self.boot_agents()
        report["floor"] = self.start_floor()
        report["import_cost"] = self.import_cost()
        report["warmup"] = self.warm_up()
        report["containers"] = self.sample(minutes)
        report["metrics_check"] = self.check_metrics()
        report["load"] = self.stop_load()
        report["store"] = self.store_size()

    def deploy_all(self) -> list[dict[str, Any]]:
        out = []
        for i in range(APPS):
            name = f"agb{self.suffix}{i}"
            root = self.workdir / "apps" / name
            shutil.copytree(TINY, root, ignore=shutil.ignore_patterns("__pycache__"))
            ports = {env: free_port() for env in ENVIRONMENTS}
            app: dict[str, Any] = {"name": name, "root": root, "ports": ports}
            self.apps.append(app)
            path = root / "headway.yml"
            text = path.read_text()
            for old, new in (("app: tiny\n", f"app: {name}\n"),
                             ("  production:\n    port: 18480\n",
                              f"  production:\n    port: {ports['production']}\n    replicas: {{web: 1}}\n"),
                             ("  staging:\n    port: 18481\n",
                              f"  staging:\n    port: {ports['staging']}\n    replicas: {{web: 1}}\n")):
                if old not in text:
                    raise RuntimeError(f"tests/fixtures/apps/tiny/headway.yml no longer contains {old!r}; "
                                       "update bench/agent_bench.py")
                text = text.replace(old, new, 1)
            path.write_text(text)
        for app in self.apps:
            for env in ENVIRONMENTS:
                t0 = time.monotonic()
                log(f"deploying {app['name']} -e {env}")
                run(self.cli("deploy", "-e", env, "--version", "bench-1", "--json"), cwd=app["root"],
                    env=self.env_for(self.state), timeout=600)
                wait_serving(f"http://127.0.0.1:{app['ports'][env]}/", 60)
                if not (self.state / "apps" / app["name"] / env / "monitor.json").exists():
                    raise RuntimeError(f"{app['name']}/{env}: headway deploy wrote no monitor.json")
                out.append({"app": app["name"], "environment": env, "port": app["ports"][env],
                            "seconds": round(time.monotonic() - t0, 1)})
        return out

    def start_load(self, minutes: float) -> None:
        bound = minutes * 60 + 600  # the window, the boots and the warm-up; stopped before that
        for app in self.apps:
            for env in ENVIRONMENTS:
                load = SteadyLoad(f"http://127.0.0.1:{app['ports'][env]}/", rate=RATE, max_seconds=bound,
                                  max_requests=int(RATE * bound) + 10, workers=2, track_release=False,
                                  strict=True)
                load.start()
                self.loads.append((f"{app['name']}/{env}", load))
        for key, load in self.loads:
            load.wait_for(1, timeout=10)
            if load.result.sent < 1:
                raise RuntimeError(f"the load on {key} sent nothing")

    def stop_load(self) -> dict[str, Any]:
        per: dict[str, Any] = {}
        for key, load in self.loads:
            r = load.stop()
            per[key] = {"sent": r.sent, "ok": r.ok, "failed": r.failed, "p50_ms": round(r.percentile(50), 2)}
        self.loads = []
        sent = sum(p["sent"] for p in per.values())
        failed = sum(p["failed"] for p in per.values())
        if failed:
            self.errors.append(f"the load saw {failed} failed requests of {sent}")
        return {"sent": sent, "failed": failed, "per_environment": per}

    def boot_agents(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, state in (("agent10", self.state), ("agent0", self.empty_state)):
            port = self.agent_ports[key] = free_port()
            t0 = time.monotonic()
            log(f"booting {self.agent_names[key]} on :{port} (state {state.name})")
            # each with its dashboard on a port of its own: what the agent serves by default is measured
            result = run(self.cli("agent", "boot", "--port", str(port), "--name", self.agent_names[key],
                                  "--dashboard-port", str(free_port()), "--json"),
                         env=self.env_for(state), timeout=900, check=False)
            if result.returncode != 0:
                logs = run(["docker", "logs", "--tail", "15", self.agent_names[key]], check=False)
                raise RuntimeError(f"headway agent boot exited {result.returncode}: {result.stderr.strip()[-600:]}"
                                   f"\nits log:\n{(logs.stdout + logs.stderr)[-1500:]}")
            status = json.loads(result.stdout)
            self.agent_image = status["image"]
            out[key] = {"container": self.agent_names[key], "port": port, "image": status["image"],
                        "boot_s": round(time.monotonic() - t0, 1), "state_dir": str(state)}
        out["image_built_by_this_run"] = self.agent_image not in (self.agent_images_before or set())
        return out

    def start_floor(self) -> dict[str, Any]:
        assert self.agent_image is not None
        run(["docker", "run", "-d", "--name", self.floor_name, "--label", f"{BENCH_LABEL}=agent-{self.suffix}",
             "--cpus", "0.25", "--memory", "192m", "--network", "host", "--entrypoint", "python", self.agent_image,
             "-c", "import time; time.sleep(1e9)"])
        return {"container": self.floor_name, "command": 'python -c "import time; time.sleep(1e9)"'}

    def import_cost(self) -> dict[str, Any]:
        """`headway agent run`'s imports in the agent's image: the resident memory after each of headway's
        modules, the import time by top-level package (`python -X importtime`), and what each third-party
        package costs imported alone (in the order the agent first imports them)."""
        assert self.agent_image is not None
        first = _in_image(self.agent_image, self.suffix, _IMPORTS_SCRIPT.replace("MODULES", repr(AGENT_MODULES)),
                          "-X", "importtime")
        data = json.loads(first.stdout.split("JSON ", 1)[1])
        self_us: dict[str, int] = {}
        for line in first.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or not line.startswith("import time:") or "self [us]" in line:
                continue
            top = parts[2].strip().split(".")[0]
            self_us[top] = self_us.get(top, 0) + int(parts[0].split(":")[1].strip())
        third = [t for t in data["order"] if t not in data["stdlib"] and t != "headway" and not t.startswith("_")]
        second = _in_image(self.agent_image, self.suffix, _ALONE_SCRIPT.replace("PACKAGES", repr(third)))
        alone = json.loads(second.stdout.split("JSON ", 1)[1])
        ranked = sorted(self_us.items(), key=lambda kv: -kv[1])
        return {"modules": AGENT_MODULES, "rss_kib_after": data["marks"], "modules_by_package": data["tops"],
                "total_import_ms": round(sum(self_us.values()) / 1000, 1),
                "import_ms_by_package": [{"package": k, "ms": round(v / 1000, 1)} for k, v in ranked[:15]],
                "third_party_alone_kib": alone}

    def warm_up(self) -> dict[str, Any]:
        """Until each agent has finished its first round (and the 10-environment one saw all 10)."""
        deadline = time.monotonic() + 120
        out: dict[str, Any] = {}
        for key, state in (("agent10", self.state), ("agent0", self.empty_state)):
            while True:
                last = read_json_object(state / "agent" / "last-round.json")
                if last is not None:
                    out[key] = last
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.agent_names[key]} finished no round within 120 s: "
                                       + run(["docker", "logs", "--tail", "20", self.agent_names[key]],
                                             check=False).stdout[-1500:])
                time.sleep(0.5)  # the agent's first round, polled
        want = APPS * len(ENVIRONMENTS)
        if out["agent10"].get("environments") != want:
            raise RuntimeError(f"the agent's first round saw {out['agent10'].get('environments')} environments, "
                               f"not {want}")
        return {k: {"at": v.get("at"), "seconds": v.get("seconds"), "environments": v.get("environments")}
                for k, v in out.items()}

    def sample(self, minutes: float) -> dict[str, Any]:
        names = {**self.agent_names, "floor": self.floor_name}
        info = {key: inspect(name) for key, name in names.items()}
        ids = {key: str(i["Id"]) for key, i in info.items()}
        pids = {key: int(i["State"]["Pid"]) for key, i in info.items()}
        restarts0 = {key: int(i.get("RestartCount", 0)) for key, i in info.items()}
        states = {"agent10": self.state, "agent0": self.empty_state}
        rounds: dict[str, dict[str, dict[str, Any]]] = {"agent10": {}, "agent0": {}}
        warm = {k: (read_json_object(s / "agent" / "last-round.json") or {}).get("at") for k, s in states.items()}
        mem: dict[str, list[dict[str, int]]] = {k: [] for k in names}
        procs: dict[str, list[dict[str, int]]] = {k: [] for k in names}
        cpu_steps: dict[str, list[float]] = {k: [] for k in names}
        window = minutes * 60
        log(f"sampling {', '.join(names.values())} every {SAMPLE_S:g} s for {minutes:g} min")
        t0 = time.monotonic()
        cpu0 = {k: cpu_ns(cid) for k, cid in ids.items()}
        last_cpu, last_t = dict(cpu0), t0
        n = 0
        while True:
            n += 1
            due = t0 + n * SAMPLE_S
            time.sleep(max(0.0, due - time.monotonic()))  # the sampling period
            now = time.monotonic()
            for key, cid in ids.items():
                mem[key].append(memory(cid))
                procs[key].append(proc_status(pids[key]))
                c = cpu_ns(cid)
                cpu_steps[key].append((c - last_cpu[key]) / 1e9 / (now - last_t))
                last_cpu[key] = c
            last_t = now
            for key, state in states.items():
                last = read_json_object(state / "agent" / "last-round.json")
                if last and last.get("at") and last.get("at") != warm[key]:
                    rounds[key][str(last["at"])] = {"seconds": last.get("seconds"),
                                                    "environments": last.get("environments"),
                                                    "observations": last.get("observations"),
                                                    "firing": last.get("firing"),
                                                    "transitions": len(last.get("transitions") or [])}
            if now - t0 >= window - 1e-3:
                break
        elapsed = last_t - t0
        out: dict[str, Any] = {}
        for key, cid in ids.items():
            after = inspect(names[key])
            restarts = int(after.get("RestartCount", 0)) - restarts0[key]
            if restarts or not after["State"].get("Running"):
                self.errors.append(f"{names[key]} restarted {restarts} time(s) during the window "
                                   f"(running: {after['State'].get('Running')}, OOMKilled: "
                                   f"{after['State'].get('OOMKilled')})")
            ws = [m["working_set"] / MIB for m in mem[key]]
            rss = [m["rss"] / MIB for m in mem[key]]
            vm = [p.get("VmRSS", 0) / 1024 for p in procs[key]]
            anon = [p.get("RssAnon", 0) / 1024 for p in procs[key]]
            row: dict[str, Any] = {
                "container": names[key], "id": cid[:12], "window_s": round(elapsed, 1), "samples": len(ws),
                "cpu_pct_avg": round(100 * (last_cpu[key] - cpu0[key]) / 1e9 / elapsed, 3),
                "cpu_pct_max_5s": round(100 * max(cpu_steps[key]), 2),
                "resident_mib_avg": round(statistics.fmean(vm), 2), "resident_mib_max": round(max(vm), 2),
                "resident_mib_first": round(vm[0], 2), "resident_mib_last": round(vm[-1], 2),
                "resident_anon_mib_avg": round(statistics.fmean(anon), 2),
                "mem_working_set_mib_avg": round(statistics.fmean(ws), 2), "mem_working_set_mib_max": round(max(ws), 2),
                "mem_working_set_mib_first": round(ws[0], 2), "mem_working_set_mib_last": round(ws[-1], 2),
                "mem_rss_mib_avg": round(statistics.fmean(rss), 2), "mem_rss_mib_max": round(max(rss), 2),
                "mem_cache_mib_last": round(mem[key][-1]["cache"] / MIB, 2),
                "process": proc_status(pids[key]), "restarts": restarts}
            if key in rounds:
                done = rounds[key]
                secs = [float(r["seconds"]) for r in done.values() if r.get("seconds") is not None]
                row.update({"rounds": len(done), "rounds_expected": int(elapsed // INTERVAL_S),
                            "round_s_median": round(statistics.median(secs), 3) if secs else None,
                            "round_s_max": round(max(secs), 3) if secs else None,
                            "round_records": done})
                if len(done) < max(1, int(elapsed // INTERVAL_S) - 1):
                    self.errors.append(f"{names[key]} did {len(done)} rounds in {elapsed:.0f} s "
                                       f"(expected about {elapsed / INTERVAL_S:.0f})")
            out[key] = row
        return out

    def check_metrics(self) -> dict[str, Any]:
        status, body = get(f"http://127.0.0.1:{self.agent_ports['agent10']}/metrics")
        want = {(a["name"], env) for a in self.apps for env in ENVIRONMENTS}
        up: dict[tuple[str, str], dict[str, float]] = {}
        requests: set[tuple[str, str]] = set()
        for line in body.splitlines():
            m = re.match(r'^(headway_up|headway_http_requests_total)\{(.*)\} (\S+)$', line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            key = (labels.get("app", ""), labels.get("environment", ""))
            if key not in want:
                continue
            if m.group(1) == "headway_up":
                up.setdefault(key, {})[labels.get("check", "")] = float(m.group(3))
            else:
                requests.add(key)
        listed = [k for k in want if {"proxy", "direct"} <= set(up.get(k, {}))]
        healthy = [k for k in listed if all(v == 1.0 for v in up[k].values())]
        out = {"status": status, "series_lines": sum(1 for ln in body.splitlines() if ln and ln[0] != "#"),
               "bytes": len(body), "environments_with_headway_up": len(listed),
               "environments_up": len(healthy), "environments_with_request_counts": len(requests)}
        if status != 200 or len(listed) != len(want):
            self.errors.append(f"/metrics answered {status} and listed headway_up for {len(listed)} of "
                               f"{len(want)} environments")
        if len(healthy) != len(want):
            self.errors.append(f"/metrics shows {len(healthy)} of {len(want)} environments up")
        if len(requests) != len(want):
            self.errors.append(f"/metrics counts requests for {len(requests)} of {len(want)} environments "
                               "(the access-log path)")
        return out

    def store_size(self) -> dict[str, Any]:
        folder = self.state / "agent" / "metrics"
        files = {p.name: p.stat().st_size for p in folder.glob("*") if p.is_file()} if folder.exists() else {}
        return {"metric_store_bytes": sum(files.values()), "files": files}

    # -- cleanup ------------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        problems: list[str] = []
        for _, load in self.loads:
            try:
                load.stop()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                problems.append(f"stopping a load: {exc}")
        self.loads = []
        for name in [*self.agent_names.values(), self.floor_name]:
            r = run(["docker", "rm", "-f", "-v", name], check=False)
            if r.returncode != 0 and "No such container" not in r.stderr:
                problems.append(f"docker rm {name}: {r.stderr.strip()}")
        for cid in run(["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}=agent-{self.suffix}"],
                       check=False).stdout.split():
            run(["docker", "rm", "-f", "-v", cid], check=False)
        for app in self.apps:
            for env in ENVIRONMENTS:
                if (self.state / "apps" / app["name"] / env).exists():
                    r = run(self.cli("remove", "-e", env, "--volumes", "--yes"), cwd=app["root"],
                            env=self.env_for(self.state), timeout=300, check=False)
                    if r.returncode != 0:
                        problems.append(f"headway remove {app['name']} -e {env} exited {r.returncode}: "
                                        f"{r.stderr.strip()[-300:]}")
            problems += _sweep(f"{L.APP}={app['name']}")
            for ref in run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], check=False
                           ).stdout.split():
                repo = ref.rpartition(":")[0]
                if repo == app["name"] or repo.startswith(app["name"] + "-"):
                    r = run(["docker", "image", "rm", ref], check=False)
                    if r.returncode != 0:
                        problems.append(f"docker image rm {ref}: {r.stderr.strip()}")
        if self.proxy_booted:
            r = run(["docker", "rm", "-f", "-v", self.proxy_name], check=False)
            if r.returncode != 0 and "No such container" not in r.stderr:
                problems.append(f"docker rm {self.proxy_name}: {r.stderr.strip()}")
        if self.agent_images_before is not None:  # the agent images this run built (Docker runs serialized)
            for ref in set(_agent_images()) - self.agent_images_before:
                r = run(["docker", "image", "rm", ref], check=False)
                if r.returncode != 0:
                    problems.append(f"docker image rm {ref}: {r.stderr.strip()}")
        return problems


def _agent_images() -> list[str]:
    return run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "headway-agent"],
               check=False).stdout.split()


def _sweep(label: str) -> list[str]:
    problems = []
    for kind, rm in (("ps", ["docker", "rm", "-f", "-v"]), ("network", ["docker", "network", "rm"]),
                     ("volume", ["docker", "volume", "rm", "-f"])):
        listing = ["docker", "ps", "-aq"] if kind == "ps" else ["docker", kind, "ls", "-q"]
        for obj in run([*listing, "--filter", f"label={label}"], check=False).stdout.split():
            r = run([*rm, obj], check=False)
            if r.returncode != 0:
                problems.append(f"{' '.join(rm)} {obj}: {r.stderr.strip()}")
    return problems


# -- summary and rendering ------------------------------------------------------------------------------------
def budget(report: dict[str, Any]) -> list[dict[str, Any]]:
    a = (report.get("containers") or {}).get("agent10")
    if not a:
        return [{"what": "the agent with 10 environments was measured", "pass": False}]
    return [{"what": f"CPU ≤ {BUDGET_CPU_PCT:g} % of one core (average)", "measured": a["cpu_pct_avg"],
             "pass": a["cpu_pct_avg"] <= BUDGET_CPU_PCT},
            {"what": f"memory ≤ {BUDGET_MEM_MIB:g} MiB (the process's resident set, VmRSS, average)",
             "measured": a["resident_mib_avg"], "pass": a["resident_mib_avg"] <= BUDGET_MEM_MIB}]


def _fmt(v: float | None, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if v is not None else "—"


ROWS = (("agent10", "agent, 10 environments"), ("agent0", "agent, 0 environments"),
        ("floor", "floor: `python -c \"import time; time.sleep(1e9)\"` in the agent's image"))


def render_table(report: dict[str, Any]) -> str:
    c = report.get("containers") or {}
    checks = budget(report) if c.get("agent10") else []
    lines = ["| container | CPU % of one core: average (highest 5 s) | resident MiB (VmRSS): average / max "
             "| cgroup memory MiB (usage less inactive file): average / max | cgroup total_rss MiB: average / max "
             "| rounds | round s: median (max) | CPU ≤ 2 % | memory ≤ 80 MiB |",
             "|---|---:|---:|---:|---:|---:|---:|:-:|:-:|"]
    for key, name in ROWS:
        r = c.get(key)
        if not r:
            continue
        verdicts = [("PASS" if b["pass"] else "**FAIL**") for b in checks] if key == "agent10" else ["—", "—"]
        rounds = f"{r['rounds']} (of {r['rounds_expected']})" if "rounds" in r else "—"
        dur = f"{_fmt(r.get('round_s_median'), 3)} ({_fmt(r.get('round_s_max'), 3)})" if "rounds" in r else "—"
        lines.append(f"| {name} | **{_fmt(r['cpu_pct_avg'])}** ({_fmt(r['cpu_pct_max_5s'], 1)}) | "
                     f"**{_fmt(r['resident_mib_avg'], 1)}** / {_fmt(r['resident_mib_max'], 1)} | "
                     f"{_fmt(r['mem_working_set_mib_avg'], 1)} / {_fmt(r['mem_working_set_mib_max'], 1)} | "
                     f"{_fmt(r['mem_rss_mib_avg'], 1)} / {_fmt(r['mem_rss_mib_max'], 1)} | {rounds} | {dur} | "
                     f"{' | '.join(verdicts[:2])} |")
    return "\n".join(lines)


def _import_notes(imp: dict[str, Any]) -> str:
    marks = imp.get("rss_kib_after") or []
    if len(marks) < 2:
        return ""
    steps = sorted(((m[0], (m[1] - prev[1]) / 1024) for prev, m in zip(marks, marks[1:], strict=False)),
                   key=lambda kv: -kv[1])
    alone = sorted(imp.get("third_party_alone_kib") or [], key=lambda kv: -kv[1])
    pkgs = sorted((imp.get("modules_by_package") or {}).items(), key=lambda kv: -kv[1])
    return (f"Importing what `headway agent run` imports ({marks[-1][2]} modules) takes the interpreter from "
            f"{marks[0][1] / 1024:.1f} to {marks[-1][1] / 1024:.1f} MiB resident and "
            f"{_fmt(imp.get('total_import_ms'), 0)} ms; the steps that cost most: "
            + ", ".join(f"`{n}` +{v:.1f} MiB" for n, v in steps[:4] if v > 0)
            + ". Imported alone, the third-party packages cost: "
            + ", ".join(f"{n} {v / 1024:.1f} MiB" for n, v in alone[:7])
            + " (modules loaded: " + ", ".join(f"{n} {k}" for n, k in pkgs[:6]) + "). Import time by package: "
            + ", ".join(f"{t['package']} {t['ms']:.0f} ms" for t in (imp.get("import_ms_by_package") or [])[:6])
            + ".")


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    c = report.get("containers") or {}
    a10, a0, fl = c.get("agent10") or {}, c.get("agent0") or {}, c.get("floor") or {}
    mc = report.get("metrics_check") or {}
    load = report.get("load") or {}
    when = report["started_utc"]
    checks = budget(report)
    verdict = "PASS" if all(b["pass"] for b in checks) else "FAIL"
    proc = a10.get("process") or {}
    cpu_round_ms = a10.get("cpu_pct_avg", 0) / 100 * s["agent_interval_s"] * 1000
    lines = [
        START,
        "## The monitoring agent's cost",
        "",
        f"Measured {when[:4]}-{when[4:6]}-{when[6:8]} {when[9:11]}:{when[11:13]} UTC on {m['nproc']} CPU cores "
        f"({m['cpu']}), Docker Engine {m['docker_server']} (headway {m['headway_commit']}); load average "
        f"{' / '.join(map(str, m['loadavg_start']))} at the start. {s['environments']} environments on one host "
        f"({s['apps']} copies of the tiny test app × production and staging, web ×1 and a worker each: "
        f"{2 * s['environments']} containers), each sent {s['rate_rps_per_environment']:g} requests/s through "
        f"the proxy ({load.get('sent', 0):,} requests, {load.get('failed', 0)} failed). The agent as `headway "
        f"agent boot` runs it (a round every {s['agent_interval_s']:g} s, capped at 0.25 CPU and 192 MB, its "
        "dashboard served), beside "
        "the same agent on an empty host and the bare interpreter in the same image, all three sampled every "
        f"{s['sample_s']:g} s over the same {s['minutes']:g} minutes, after each agent's first round. CPU is the "
        "container's cgroup CPU time over the window; resident is the process's VmRSS (its own pages and the "
        "shared libraries it maps); the cgroup figures count page cache to the container that first read it, so "
        "the agent booted first is charged the image's files the others share.",
        "",
        render_table(report),
        "",
    ]
    for b in checks:
        lines.append(f"- **{'PASS' if b['pass'] else 'FAIL'}** — {b['what']}: measured {_fmt(b.get('measured'))}.")
    lines += [
        f"- Overall: **{verdict}**. /metrics listed `headway_up` (proxy and direct) for "
        f"{mc.get('environments_with_headway_up', 0)} of {s['environments']} environments "
        f"({mc.get('environments_up', 0)} up) and request counts read from the access log for "
        f"{mc.get('environments_with_request_counts', 0)}: {mc.get('series_lines', 0)} series, "
        f"{mc.get('bytes', 0) / 1024:.0f} KiB.",
        "",
        f"Where it goes. The interpreter alone: {_fmt(fl.get('resident_mib_avg'), 1)} MiB resident. "
        + _import_notes(report.get("import_cost") or {})
        + f" The agent watching nothing: {_fmt(a0.get('resident_mib_avg'), 1)} MiB and "
        f"{_fmt(a0.get('cpu_pct_avg'))} % of a core. The 10 environments add "
        f"{_fmt(_diff(a10, a0, 'resident_mib_avg'), 1)} MiB resident "
        f"({_fmt(_diff(a10, a0, 'resident_anon_mib_avg'), 1)} MiB of it anonymous memory) and "
        f"{_fmt(_diff(a10, a0, 'cpu_pct_avg'))} % of a core: about {cpu_round_ms:.0f} ms of CPU per round, in a "
        f"round that takes {_fmt(a10.get('round_s_median'), 3)} s (median) mostly waiting on the health checks "
        "and the Docker Engine. Over the window the agent's resident memory went from "
        f"{_fmt(a10.get('resident_mib_first'), 1)} to {_fmt(a10.get('resident_mib_last'), 1)} MiB; its process "
        f"ended with {proc.get('RssAnon', 0) / 1024:.1f} MiB anonymous and {proc.get('RssFile', 0) / 1024:.1f} MiB "
        f"of mapped files, {proc.get('Threads', 0)} threads, and its metric store took "
        f"{(report.get('store') or {}).get('metric_store_bytes', 0) / 1024:.0f} KiB on disk.",
        "",
        "Generated by `.venv/bin/python -m bench.agent_bench` (results in "
        "[bench/results/agent-latest.json](../bench/results/agent-latest.json)).",
        END,
    ]
    return "\n".join(lines)


def _diff(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    return a[key] - b[key] if key in a and key in b else None


if __name__ == "__main__":
    sys.exit(main())
