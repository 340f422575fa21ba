"""The example shop on a three-machine Docker Swarm: headway's deploy, rollback and a machine killed under load,
side by side with a plain `docker service update --update-order start-first` of the same app on the same swarm.

    .venv/bin/python -m bench.swarm_bench              # 2 rounds; writes the results and the docs
    .venv/bin/python -m bench.swarm_bench --rounds 1 --quick   # smoke run: bench/results/swarm-quick-*.json only

The machines are the test servers of tests/remote (sshd and a Docker engine each, bootstrapped by `headway server
bootstrap`, on a network of their own), with Debian's docker-registry on that network's gateway. The strict client
(HTTP/1.1 keep-alive, no retries) sends GET / at RATE requests/s to each stack:

- headway: `headway deploy -e production` of a new commit, then `headway rollback -e production`, from a
  laptop-like checkout over SSH; 3 web replicas as single-task services, the proxy on the manager;
- the peer: one swarm service of 3 replicas of the same image (same databases, same overlay network) behind nginx
  on the manager resolving the service's tasks through Docker's DNS every second (what Swarm-based tools put in
  front), updated with `docker service update --image NEW --update-order start-first` and rolled back with
  `docker service rollback`.

Then one worker machine is killed (`docker kill` of its box) while both stacks are under load: failed requests,
how many requests still tried the dead machine and until when, when the swarm started the lost replicas elsewhere,
and (headway) when `headway recover` had the proxy follow them.

Writes bench/results/swarm-<UTC time>.json and swarm-latest.json and the section between
<!-- bench:swarm:start --> and <!-- bench:swarm:end --> in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.deploy_ops import REPO, log
from bench.loadgen import SteadyLoad
from bench.run import exit_on_sigterm, machine_info, write_section

RESULTS = REPO / "bench" / "results"
START, END = "<!-- bench:swarm:start -->", "<!-- bench:swarm:end -->"
RATE = 100.0
ROUNDS = 2
REGISTRY_USER = "swarm"  # tests/remote/conftest.py
PEER_PORT = 8083  # published by the manager's box (tests/remote DOCKER_SERVER_PORTS)
MAX_LOAD_S = 400.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.swarm_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--quick", action="store_true", help="does not touch the documented results")
    parser.add_argument("--keep", action="store_true", help="leave the servers running on an error (to look)")
    parser.add_argument("--render", metavar="JSON", help="regenerate the docs section from a results file")
    args = parser.parse_args(argv)
    if args.render:
        write_section(START, END, render_section(json.loads(Path(args.render).read_text())))
        return 0
    exit_on_sigterm()
    sys.path.insert(0, str(REPO))
    from tests.remote.conftest import SshKeys, start_swarm, stop_swarm

    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {"benchmark": "swarm", "started_utc": started, "quick": args.quick,
                              "settings": {"rounds": args.rounds, "strict_rate_rps": RATE, "path": "/",
                                           "machines": 3, "web_replicas": 3},
                              "machine": machine_info(), "errors": []}
    workdir = Path(tempfile.mkdtemp(prefix="headway-swarm-bench-"))
    swarm = None
    known = os.environ.get("HEADWAY_KNOWN_HOSTS")
    try:
        key = workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (workdir / "known_hosts").touch(mode=0o600)
        os.environ["HEADWAY_KNOWN_HOSTS"] = str(workdir / "known_hosts")
        keys = SshKeys(key, (workdir / "id_ed25519.pub").read_text().strip(), workdir / "known_hosts")
        log("starting three servers and a registry (bootstrap installs Docker in each)")
        swarm = start_swarm(keys, f"bench-{started}", workdir)
        report["setup_s"] = round(swarm.setup_seconds, 1)
        report.update(run(swarm, workdir, args.rounds, report["errors"]))
    except Exception as exc:  # noqa: BLE001 - recorded, the report is still written
        report["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        if swarm is not None and args.keep and report["errors"]:
            log(f"kept: {[(s.name, str(s.address)) for s in swarm.servers]}, key {workdir / 'id_ed25519'}")
        elif swarm is not None:
            stop_swarm(swarm)
        if not (args.keep and report["errors"]):
            shutil.rmtree(workdir, ignore_errors=True)
        if known is None:
            os.environ.pop("HEADWAY_KNOWN_HOSTS", None)
        else:
            os.environ["HEADWAY_KNOWN_HOSTS"] = known
        report["finished_utc"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = f"swarm-quick-{started}.json" if args.quick else f"swarm-{started}.json"
        text = json.dumps(report, indent=2) + "\n"
        (RESULTS / name).write_text(text)
        log(f"wrote bench/results/{name}")
        if not args.quick and not report["errors"]:
            (RESULTS / "swarm-latest.json").write_text(text)
            write_section(START, END, render_section(report))
            log("wrote bench/results/swarm-latest.json and docs/benchmarks.md")
    print(render_section(report))
    for err in report["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not report["errors"] else 1


# -- the run ----------------------------------------------------------------------------------------------
def _load(url: str, host: str | None = None) -> SteadyLoad:
    return SteadyLoad(url, rate=RATE, max_seconds=MAX_LOAD_S, headers={"Host": host} if host else None,
                      strict=True)


def _timed(load: SteadyLoad, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
           tail_requests: int = 100) -> dict[str, Any]:
    """`argv` run while `load` runs; the requests from its start until `tail_requests` after it ended."""
    before_sent, before_failed = load.result.sent, load.result.failed
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t0
    load.wait_for(load.result.sent + tail_requests, timeout=60)
    import re

    switched = re.search(r"([\d.]+)s ✓ switch traffic", done.stderr) or \
        re.search(r"traffic switched in ([\d.]+)s", done.stderr)
    return {"exit_code": done.returncode, "wall_s": round(wall, 2), "requests": load.result.sent - before_sent,
            "failed": load.result.failed - before_failed,
            "switched_after_s": float(switched.group(1)) if switched else None,
            "stderr_tail": done.stderr[-1500:] if done.returncode else ""}


def run(swarm: Any, workdir: Path, rounds: int, errors: list[str]) -> dict[str, Any]:
    from tests.remote.conftest import git
    from tests.remote.test_swarm import swarm_checkout

    manager = swarm.manager
    root, name = swarm_checkout(workdir, swarm)
    host = f"{name}.localhost"
    url = manager.url(80, "/")
    peer_url = manager.url(PEER_PORT, "/")
    out: dict[str, Any] = {"headway": {"rounds": []}, "peer": {"rounds": []}}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = manager.cli(*args, cwd=root)
        if result.returncode != 0:
            raise RuntimeError(f"headway {' '.join(args)} exited {result.returncode}: {result.stderr[-1500:]}")
        return result

    t0 = time.monotonic()
    cli("swarm", "init", "-e", "production")
    out["swarm_init_s"] = round(time.monotonic() - t0, 2)
    cli("--host", str(manager.address), "proxy", "boot")
    t0 = time.monotonic()
    cli("deploy", "-e", "production")
    out["headway"]["first_deploy_s"] = round(time.monotonic() - t0, 2)
    images = [_service_image(manager, f"{name}-production-web-1-1")]

    # headway: deploy and rollback, each under the strict client
    headway_cli = [sys.executable, "-m", "headway"]
    for i in range(rounds):
        app_main = root / "app" / "main.py"
        app_main.write_text(app_main.read_text() + f"\n# bench round {i}\n")
        git(root, "commit", "-qam", f"round {i}")
        with _load(url, host) as load:
            load.wait_for(100)
            deploy = _timed(load, [*headway_cli, "deploy", "-e", "production"], cwd=root, env=manager.env)
            rollback = _timed(load, [*headway_cli, "rollback", "-e", "production"], cwd=root, env=manager.env)
        out["headway"]["rounds"].append({"deploy": deploy, "rollback": rollback})
        for op, r in (("deploy", deploy), ("rollback", rollback)):
            if r["exit_code"] != 0:
                errors.append(f"headway {op} round {i} exited {r['exit_code']}: {r['stderr_tail'][-300:]}")
    images.append(_newest_image(manager, name, images[0]))

    # the peer: one service of the same image, Swarm's own update and rollback
    _start_peer(swarm, name, images[0])
    with _load(peer_url) as load:
        load.wait_for(100)
        for _ in range(rounds):
            update = _timed(load, ["docker", "exec", manager.container, "docker", "service", "update", "-q",
                                   "--detach=false", "--image", images[1], "--update-order", "start-first",
                                   f"{name}-peer"])
            back = _timed(load, ["docker", "exec", manager.container, "docker", "service", "rollback", "-q",
                                 "--detach=false", f"{name}-peer"])
            out["peer"]["rounds"].append({"deploy": update, "rollback": back})

    # a worker machine killed while both stacks are under load
    out["machine_kill"] = _kill(swarm, root, name, url, host, peer_url)
    return out


def _service_image(manager: Any, service: str) -> str:
    return manager.sh(f"docker service inspect -f '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {service}").strip()


def _newest_image(manager: Any, app: str, not_this: str) -> str:
    found = manager.sh(f"docker service ls --filter label=dev.headway.app={app} --format '{{{{.Image}}}}'").split()
    return next(i for i in found if i != not_this)


def _start_peer(swarm: Any, app: str, image: str) -> None:
    """The app as one swarm service behind nginx on the manager (Docker's DNS, re-resolved every second)."""
    manager = swarm.manager
    manager.sh(f"printf '%s' '{swarm.registry_password}' | docker login -u {REGISTRY_USER} --password-stdin "
               f"{swarm.registry}")
    web = f"{app}-production-web-1-1"
    env = json.loads(manager.sh(f"docker service inspect -f '{{{{json .Spec.TaskTemplate.ContainerSpec.Env}}}}' "
                                f"{web}"))
    network = f"hw-{app}-production"
    command = "uvicorn app.main:app --host 0.0.0.0 --port 8000 --timeout-graceful-shutdown 10"
    script = "\n".join([
        f"docker service create -q --detach=false --with-registry-auth --name {app}-peer --replicas 3 \\",
        f"  --network {network} --endpoint-mode dnsrr --update-order start-first \\",
        "  --health-cmd \"python -c 'import urllib.request as u; "
        "u.urlopen(\\\"http://127.0.0.1:8000/health/ready\\\")'\" \\",
        "  --health-interval 1s --health-retries 3 --stop-grace-period 10s \\",
        *[f"  --env '{e}' \\" for e in env],
        f"  {image} {command}", ""])
    manager.sh(f"mkdir -p /srv/peer && cat > /srv/peer/create.sh <<'EOF'\n{script}EOF\nsh /srv/peer/create.sh",
               timeout=600)
    conf = ("events {}\nhttp {\n  resolver 127.0.0.11 valid=1s;\n  server {\n    listen " + str(PEER_PORT) + ";\n"
            f"    location / {{ set $up {app}-peer; proxy_pass http://$up:8000; proxy_http_version 1.1;\n"
            "      proxy_set_header Connection \"\"; proxy_next_upstream error timeout; }\n  }\n}\n")
    manager.sh(f"mkdir -p /srv/peer && cat > /srv/peer/nginx.conf <<'EOF'\n{conf}EOF\n"
               f"docker run -d --name {app}-peer-proxy --network {network} -p {PEER_PORT}:{PEER_PORT} "
               f"-v /srv/peer/nginx.conf:/srv/nginx.conf:ro openresty/openresty:bookworm nginx -c /srv/nginx.conf "
               "-g 'daemon off;'")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code = manager.exec(f"python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:"
                            f"{PEER_PORT}/', timeout=5)\"", check=False).returncode
        if code == 0:
            return
        time.sleep(0.5)  # the peer's tasks and its nginx, polled until they answer
    diagnosis = manager.exec(f"docker service ps --no-trunc {app}-peer; docker logs --tail 20 {app}-peer-proxy; "
                             f"python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:"
                             f"{PEER_PORT}/', timeout=5)\" 2>&1 | tail -3", check=False)
    raise RuntimeError(f"the peer service did not answer through its nginx: {diagnosis.stdout[-1500:]} "
                       f"{diagnosis.stderr[-500:]}")


def _tried(manager: Any, dead_ip: str, since: float) -> list[float]:
    """Times (epoch) of the proxy's requests after `since` that tried the dead machine."""
    log_text = manager.sh("tail -n 20000 /var/lib/headway/proxy/logs/access.log")
    out = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if dead_ip in entry.get("upstream_addr", "") and entry["msec"] > since:
                out.append(float(entry["msec"]))
    return out


def _kill(swarm: Any, root: Path, name: str, url: str, host: str, peer_url: str) -> dict[str, Any]:
    manager = swarm.manager
    nodes = json.loads(manager.cli("swarm", "nodes", "-e", "production", "--json", cwd=root).stdout)["nodes"]
    placed = {n["hostname"]: n["containers"] for n in nodes}
    victim = max(swarm.nodes, key=lambda s: sum(1 for c in placed.get(s.name, []) if "-web-" in c))
    dead_ip = swarm.ip(victim)
    result: dict[str, Any] = {"machine": victim.name, "web_replicas_on_it": sum(
        1 for c in placed.get(victim.name, []) if "-web-" in c)}
    with _load(url, host) as ours, _load(peer_url) as peer:
        ours.wait_for(200)
        peer.wait_for(200)
        sent0 = {"headway": (ours.result.sent, ours.result.failed), "peer": (peer.result.sent, peer.result.failed)}
        killed = time.time()
        t0 = time.monotonic()
        subprocess.run(["docker", "kill", victim.container], check=True, capture_output=True)
        rescheduled = None
        while time.monotonic() - t0 < 120:
            listing = json.loads(manager.cli("swarm", "nodes", "-e", "production", "--json", cwd=root).stdout)
            alive = {n["hostname"]: n["containers"] for n in listing["nodes"] if n["state"] == "ready"}
            if victim.name not in alive and sum(1 for cs in alive.values() for c in cs if "-web-" in c) == 3:
                rescheduled = time.monotonic() - t0
                break
            time.sleep(0.5)  # the swarm's heartbeat and rescheduling, polled
        recover = manager.cli("recover", "-e", "production", cwd=root)
        followed = time.monotonic() - t0
        ours.wait_for(ours.result.sent + 300, timeout=60)
        peer.wait_for(peer.result.sent + 300, timeout=60)
    tried = _tried(manager, dead_ip, killed)
    result.update({
        "rescheduled_after_s": round(rescheduled, 1) if rescheduled is not None else None,
        "headway": {"requests": ours.result.sent - sent0["headway"][0],
                    "failed": ours.result.failed - sent0["headway"][1],
                    "requests_that_tried_it": len(tried),
                    "last_try_after_s": round(max(tried) - killed, 2) if tried else 0.0,
                    "proxy_followed_after_s": round(followed, 1), "recover_exit": recover.returncode},
        "peer": {"requests": peer.result.sent - sent0["peer"][0], "failed": peer.result.failed - sent0["peer"][1]},
    })
    return result


# -- the docs -------------------------------------------------------------------------------------------
def _sum(rounds: list[dict[str, Any]], op: str, key: str) -> int:
    return sum(int(r[op][key]) for r in rounds)


def _median(rounds: list[dict[str, Any]], op: str) -> float:
    values = sorted(float(r[op]["wall_s"]) for r in rounds)
    return values[len(values) // 2] if values else 0.0


def render_section(report: dict[str, Any]) -> str:
    lines = [START, "## Three machines on a Docker Swarm (`python -m bench.swarm_bench`)", ""]
    if "headway" not in report:
        lines += [f"Not measured: {'; '.join(report.get('errors', [])) or 'no result'}", END]
        return "\n".join(lines)
    h, p = report["headway"]["rounds"], report["peer"]["rounds"]
    n = len(h)
    lines += [f"examples/shop, 3 web replicas across 3 machines (test servers with sshd and their own Docker "
              f"engine), strict client at {report['settings']['strict_rate_rps']:.0f} requests/s, {n} round(s); "
              f"run {report['started_utc']}.", "",
              "| operation | headway failed / requests | headway wall (median) | `docker service` start-first "
              "failed / requests | its wall (median) |", "|---|---:|---:|---:|---:|"]
    for op, label in (("deploy", "deploy a new release"), ("rollback", "roll back")):
        lines.append(f"| {label} | {_sum(h, op, 'failed')} / {_sum(h, op, 'requests')} | {_median(h, op):.1f} s | "
                     f"{_sum(p, op, 'failed')} / {_sum(p, op, 'requests')} | {_median(p, op):.1f} s |")
    k = report.get("machine_kill")
    if k:
        hk, pk = k["headway"], k["peer"]
        lines.append(f"| a machine killed ({k['web_replicas_on_it']} web replicas on it) | {hk['failed']} / "
                     f"{hk['requests']} | — | {pk['failed']} / {pk['requests']} | — |")
        lines += ["", f"After the kill: {hk['requests_that_tried_it']} of headway's requests still tried the dead "
                      f"machine (each retried on another replica), the last {hk['last_try_after_s']:.1f} s after the "
                      f"kill; the swarm had the lost replicas running elsewhere after "
                      f"{k['rescheduled_after_s']} s and `headway recover` routed them "
                      f"{hk['proxy_followed_after_s']:.1f} s after the kill."]
    sw = [r[op]["switched_after_s"] for r in h for op in ("deploy", "rollback") if r[op].get("switched_after_s")]
    if sw:
        d = [r["deploy"]["switched_after_s"] for r in h if r["deploy"].get("switched_after_s")]
        b = [r["rollback"]["switched_after_s"] for r in h if r["rollback"].get("switched_after_s")]
        lines += ["", "headway's traffic switch, in its own words: deploy "
                  + ", ".join(f"{x:.1f}" for x in d) + " s after the command started (after build, push, pull "
                  "and health gate); rollback " + ", ".join(f"{x:.2f}" for x in b) + " s."]
    lines += ["", f"headway's wall time includes the SSH round trip, the bundle, the build on the manager (layer "
                  f"cache warm), the push to the registry and the pull on the machines; first deploy "
              f"{report['headway'].get('first_deploy_s', 0):.1f} s, `swarm init` {report.get('swarm_init_s', 0):.1f} "
              "s. The peer's wall time is Swarm's update of an image already in the registry.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
