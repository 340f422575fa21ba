"""Deploying to a server over SSH: what `headway deploy` sends (a build context) against shipping the image.

    flock /tmp/headway-docker.lock .venv/bin/python -m bench.remote_bench --rounds 2
    .venv/bin/python -m bench.remote_bench --rounds 1 --quick     # smoke run: bench/results/remote-quick-*.json only
    .venv/bin/python -m bench.remote_bench --render bench/results/remote-latest.json   # the docs section again

The server is the test server of tests/remote (a Debian box with sshd, published on 127.0.0.1), made a Docker host
by `headway server bootstrap`, with the base images loaded into its engine. examples/shop, as a developer's clone
(its tracked files, committed, `hosts: [root@127.0.0.1:PORT]` in production), is deployed there by the real
`headway` CLI from this machine:

- `headway deploy -e production`, first deploy and then, per round, a redeploy of a changed commit: wall time, the
  bytes of the bundle sent on the SSH channel (headway.yml, secrets, the build context exported from git: the
  command's own "sending … to …" line), and for the redeploy the strict client's failed requests;
- `headway rollback -e production` per round: wall time, failed requests;
- the alternative: the same commit's image built here and streamed (`docker save IMAGE | ssh docker load`, the
  way tests/remote loads base images): bytes of the saved image, seconds of the stream and load;
- the floor: an SSH connection running `true`, and `headway --host … proxy --help` (the CLI here, SSH, headway
  started on the server, a no-op), so the overhead of forwarding a command is visible.

The strict client (HTTP/1.1 keep-alive, no retries) sends GET / at 80 requests/s through the server's published port
80 with the app's Host header during every redeploy and rollback; every load is bounded in count and time.

Writes bench/results/remote-<UTC time>.json and remote-latest.json and the section between
<!-- bench:remote:start --> and <!-- bench:remote:end --> in docs/benchmarks.md. The server container is removed at
the end, also on an error or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.deploy_ops import REPO, SHOP, log, run, snapshot_src
from bench.loadgen import SteadyLoad, is_failure
from bench.run import exit_on_sigterm, machine_info, save_results, write_section
from tests.remote.conftest import (DOCKER_SERVER_IMAGES, DOCKER_SERVER_PORTS, RemoteServer, SshKeys,
                                   _remove_stale_servers, start_server, stop_server)

RESULTS = REPO / "bench" / "results"
START, END = "<!-- bench:remote:start -->", "<!-- bench:remote:end -->"
ROUNDS = 2
RATE = 80.0  # requests/s of the strict client
MAX_LOAD_S = 600.0  # one load at most this long (and RATE × this many requests)
FLOWING_TIMEOUT_S = 30.0
TAIL_REQUESTS = int(RATE * 2)  # requests completed after the command exited, still measured
OP_TIMEOUT_S = 540.0  # a redeploy or a rollback
FIRST_DEPLOY_TIMEOUT_S = 1200.0  # builds the dependencies' layer on the server
BOOTSTRAP_TIMEOUT_S = 1500.0
FLOOR_RUNS = 5
UPLINK_MBIT = 20  # for the arithmetic in the docs: what the bytes cost on an operator's uplink
APP_IMAGES = ("postgres:15", "redis:7")  # the shop's accessories, loaded into the server's engine with the bases
_SENDING = re.compile(r"sending ([0-9.]+) (B|kB|MB|GB) to ")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="redeploy + rollback + image streams")
    parser.add_argument("--quick", action="store_true", help="does not touch the documented results")
    parser.add_argument("--render", metavar="JSON", help="regenerate the docs section from a results file")
    parser.add_argument("--worktree", action="store_true",
                        help="measure headway as src/ is now, uncommitted changes included (default: HEAD's)")
    args = parser.parse_args(argv)
    if args.render:
        write_section(START, END, render_section(json.loads(Path(args.render).read_text())))
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    exit_on_sigterm()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report: dict[str, Any] = {"benchmark": "deploying to a server over SSH", "started_utc": started,
                              "quick": args.quick,
                              "settings": {"rounds": args.rounds, "strict_rate_rps": RATE, "path": "/",
                                           "max_load_s": MAX_LOAD_S, "floor_runs": FLOOR_RUNS},
                              "machine": machine_info(), "errors": []}
    workdir = Path(tempfile.mkdtemp(prefix="headway-remote-bench-"))
    known_hosts_before = os.environ.get("HEADWAY_KNOWN_HOSTS")
    bench = RemoteBench(workdir, report, worktree=args.worktree)
    try:
        bench.run(args.rounds)
    except Exception as exc:  # noqa: BLE001 - recorded and reported; what was measured is still written
        report["errors"].append(f"{type(exc).__name__}: {exc}")
        log(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        report["cleanup_problems"] = bench.close()
        report["errors"].extend(f"cleanup: {p}" for p in report["cleanup_problems"])
        if known_hosts_before is None:
            os.environ.pop("HEADWAY_KNOWN_HOSTS", None)
        else:
            os.environ["HEADWAY_KNOWN_HOSTS"] = known_hosts_before
        shutil.rmtree(workdir, ignore_errors=True)
        report["summary"] = summarize(report)
        complete = len(report.get("rounds", [])) == args.rounds and "first_deploy" in report and not report["errors"]
        save_results("remote", report, quick=args.quick, started=started, section=render_section,
                     start=START, end=END, complete=complete)
    print(render_table(report))
    for err in report["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 0 if not report["errors"] and zero_failed(report) else 1


# -- the run ------------------------------------------------------------------------------------------------
def _bundle_bytes(stderr: str) -> int | None:
    """The bundle's size from the command's own line: `sending 51.2 kB to root@… (headway.yml, secrets, …)`."""
    m = _SENDING.search(stderr)
    return round(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def _json(stdout: str) -> dict[str, Any]:
    try:
        data = json.loads(stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


class RemoteBench:
    """One test server, one checkout of examples/shop deployed to it, and what was measured."""

    def __init__(self, workdir: Path, report: dict[str, Any], *, worktree: bool = False) -> None:
        self.workdir = workdir
        self.worktree = worktree
        self.report = report
        self.server: RemoteServer | None = None
        self.root = workdir / "shop"
        self.app = f"rbench{uuid.uuid4().hex[:6]}"
        self.host_header = f"{self.app}.localhost"
        self.env: dict[str, str] = {}  # for the CLI here: headway from a snapshot of its source
        self.local_images: list[str] = []

    # -- setup ------------------------------------------------------------------------------------------------
    def _keys(self) -> SshKeys:
        d = self.workdir / "ssh"
        d.mkdir()
        key = d / "id_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "headway-bench", "-f", str(key)], timeout=60)
        known_hosts = d / "known_hosts"
        known_hosts.touch(mode=0o600)
        os.environ["HEADWAY_KNOWN_HOSTS"] = str(known_hosts)  # this process's SSH sessions (load_images, floor)
        return SshKeys(key, (d / "id_ed25519.pub").read_text().strip(), known_hosts)

    def cli(self, *args: str, timeout: float = OP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        assert self.server is not None
        return self.server.cli(*args, env=self.env, timeout=timeout, cwd=self.root)

    def _git(self, *args: str) -> str:
        return run(["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", *args], cwd=self.root,
                   timeout=60).stdout.strip()

    def _checkout(self, address: str) -> None:
        """examples/shop as a developer's clone: its tracked files, its own name, production on the server."""
        tracked = run(["git", "-C", str(REPO), "ls-files", "-z", "--", str(SHOP.relative_to(REPO))],
                      timeout=60).stdout.split("\0")
        for rel in filter(None, tracked):
            dest = self.root / Path(rel).relative_to(SHOP.relative_to(REPO))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest)
        path = self.root / "headway.yml"
        text = path.read_text()
        for old, new in (("app: shop\n", f"app: {self.app}\n"),
                         ("domains: [shop.localhost]", f"domains: [{self.host_header}]"),
                         ("  production:\n", f"  production:\n    hosts: ['{address}']\n")):
            if old not in text:
                raise RuntimeError(f"examples/shop/headway.yml no longer contains {old!r}; update bench/")
            text = text.replace(old, new, 1)
        path.write_text(text)
        secrets = self.root / ".headway" / "secrets.production"
        secrets.write_text(f"POSTGRES_PASSWORD=bench-{uuid.uuid4().hex}\n")
        secrets.chmod(0o600)
        self._git("init", "-q", "-b", "main")
        self._git("add", "-A")
        self._git("commit", "-qm", "shop")
        tracked_bytes = sum((self.root / p).stat().st_size for p in self._git("ls-files").splitlines())
        self.report["checkout"] = {"app": self.app, "tracked_files": len(self._git("ls-files").splitlines()),
                                   "tracked_bytes": tracked_bytes}

    def setup(self) -> None:
        src = snapshot_src(self.workdir) if self.worktree else committed_src(self.workdir)
        self.report["headway_src"] = src
        if not self.worktree:
            self.report["machine"]["headway_commit"] = src["commit"]
        self.env = {"PYTHONPATH": src["path"]}
        keys = self._keys()
        _remove_stale_servers()
        t0 = time.monotonic()
        self.server = server = start_server(keys, f"bench-{uuid.uuid4().hex[:8]}", publish=DOCKER_SERVER_PORTS)
        log(f"server {server.name} at {server.address} (ports {server.ports})")
        boot = server.cli("server", "bootstrap", str(server.address), "--json", env=self.env,
                          timeout=BOOTSTRAP_TIMEOUT_S)
        if boot.returncode != 0:
            raise RuntimeError(f"headway server bootstrap exited {boot.returncode}: {boot.stderr[-2000:]}")
        bootstrap_s = time.monotonic() - t0
        log(f"bootstrapped in {bootstrap_s:.0f}s; loading base images")
        images = (*DOCKER_SERVER_IMAGES, *APP_IMAGES)
        images_s = server.load_images(*images)
        self.report["server"] = {"name": server.name, "address": str(server.address),
                                 "bootstrap_s": round(bootstrap_s, 1), "base_images": list(images),
                                 "base_images_load_s": round(images_s, 1),
                                 "docker": server.sh("docker version --format '{{.Server.Version}}'").strip()}
        self._checkout(str(server.address))
        proxy = self.cli("--host", str(server.address), "proxy", "boot")
        if proxy.returncode != 0:
            raise RuntimeError(f"headway --host … proxy boot exited {proxy.returncode}: {proxy.stderr[-1500:]}")

    # -- measurements -----------------------------------------------------------------------------------------
    def floor(self, runs: int) -> dict[str, Any]:
        """A no-op over SSH: a new connection running `true`; the CLI forwarding `proxy --help`; the CLI alone."""
        assert self.server is not None
        server = self.server
        ssh_s: list[float] = []
        forwarded_s: list[float] = []
        local_s: list[float] = []
        for _ in range(runs):
            t0 = time.monotonic()
            with server.session() as s:
                code = s.run(["true"], timeout=60)
            ssh_s.append(time.monotonic() - t0)
            if code != 0:
                raise RuntimeError(f"ssh true exited {code}")
            t0 = time.monotonic()
            r = self.cli("--host", str(server.address), "proxy", "--help", timeout=120)
            forwarded_s.append(time.monotonic() - t0)
            if r.returncode != 0 or "Usage" not in r.stdout:
                raise RuntimeError(f"headway --host … proxy --help exited {r.returncode}: {r.stderr[-800:]}")
            t0 = time.monotonic()
            r = self.cli("--version", timeout=60)
            local_s.append(time.monotonic() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"headway --version exited {r.returncode}: {r.stderr[-800:]}")
        out = {"ssh_true_s": [round(v, 3) for v in ssh_s], "forwarded_noop_s": [round(v, 3) for v in forwarded_s],
               "local_cli_s": [round(v, 3) for v in local_s]}
        log(f"floor: ssh true {_median(ssh_s)}s, headway --host … proxy --help {_median(forwarded_s)}s, "
            f"headway --version {_median(local_s)}s (medians of {runs})")
        return out

    def first_deploy(self) -> dict[str, Any]:
        assert self.server is not None
        t0 = time.monotonic()
        r = self.cli("deploy", "-e", "production", "--json", timeout=FIRST_DEPLOY_TIMEOUT_S)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"first deploy exited {r.returncode}: {r.stderr[-2000:]}")
        record = _json(r.stdout).get("release", {})
        body = self.wait_serving(120)
        if body.get("release") != record.get("version"):
            raise RuntimeError(f"the server serves {body.get('release')!r}, not {record.get('version')!r}")
        image = str(record.get("image", ""))
        size = self.server.sh(f"docker image inspect -f '{{{{.Size}}}}' {image}").strip() if image else ""
        out = {"exit_code": r.returncode, "wall_s": round(wall, 3), "bundle_bytes": _bundle_bytes(r.stderr),
               "version": record.get("version"), "image": image,
               "server_image_bytes": int(size) if size.isdigit() else None,
               "duration_s": record.get("duration_s"), "steps": _json(r.stdout).get("steps")}
        log(f"first deploy: {wall:.1f}s, bundle {out['bundle_bytes']} B, image on the server {size} B")
        return out

    def wait_serving(self, timeout: float) -> dict[str, Any]:
        """Until GET / through the server's port 80 with the app's Host header answers 200; its JSON body. (The
        environment's own port is closed by the server's firewall.)"""
        assert self.server is not None
        url = self.server.url(80, "/")
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(url, headers={"Host": self.host_header}, timeout=5)
                if resp.status_code == 200:
                    return dict(resp.json())
                last = f"HTTP {resp.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(0.25)  # polling the server until it serves
        raise RuntimeError(f"{url} (Host: {self.host_header}) did not answer 200 within {timeout:.0f}s ({last})")

    def under_load(self, name: str, *args: str) -> dict[str, Any]:
        """`headway ARGS` while the strict client sends through port 80 with the app's Host header."""
        assert self.server is not None
        timeline: list[tuple[float, float, str, str | None]] = []
        load = SteadyLoad(self.server.url(80, "/"), rate=RATE, max_seconds=MAX_LOAD_S,
                          max_requests=int(RATE * MAX_LOAD_S) + 1, headers={"Host": self.host_header},
                          strict=True, timeline=timeline)
        load.start()
        try:
            load.wait_for(int(RATE), timeout=FLOWING_TIMEOUT_S)
            if load.result.sent < RATE:
                raise RuntimeError(f"{name}: the load did not flow ({load.result.summary()})")
            before = load.result.failed
            t0 = time.monotonic()
            try:
                r = self.cli(*args, "--json", timeout=OP_TIMEOUT_S)
            finally:
                t1 = time.monotonic()
            load.wait_for(load.result.sent + TAIL_REQUESTS, timeout=TAIL_REQUESTS / RATE + 15)
        finally:
            result = load.stop()
        summary = result.summary()
        failed = sorted((end, status) for sent, end, status, _ in timeline if is_failure(status))
        releases = Counter(rel for sent, _, status, rel in timeline if sent >= t0 and rel is not None)
        row = {"name": name, "exit_code": r.returncode, "wall_s": round(t1 - t0, 3),
               "bundle_bytes": _bundle_bytes(r.stderr), "requests": result.sent, "failed": result.failed,
               "failed_before_command": before,
               "failed_statuses": {k: v for k, v in result.statuses.items() if is_failure(k)},
               "failure_window_s": [round(failed[0][0] - t0, 3), round(failed[-1][0] - t0, 3)] if failed else None,
               "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
               "releases_after_start": dict(releases), "record": _json(r.stdout).get("release"),
               "steps": _json(r.stdout).get("steps"),
               "stderr_tail": r.stderr[-1500:] if r.returncode else _notes(r.stderr)}
        log(f"{name}: exit {r.returncode} after {t1 - t0:.2f}s; {result.sent} requests, {result.failed} failed")
        if r.returncode != 0:
            raise RuntimeError(f"{name} exited {r.returncode}: {r.stderr[-1500:]}")
        return row

    def image_way(self, round_no: int) -> dict[str, Any]:
        """This commit's image built here, then `docker save | SSH | docker load` (RemoteServer.load_images)."""
        assert self.server is not None
        tag = f"{self.app}-shipped:r{round_no}"
        ctx = self.workdir / f"ctx-{round_no}"
        ctx.mkdir()
        archive = subprocess.run(["git", "-C", str(self.root), "archive", "HEAD"], capture_output=True,
                                 check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(ctx)], input=archive, check=True, timeout=60)
        t0 = time.monotonic()
        self.local_images.append(tag)
        run(["docker", "build", "-q", "--target", "runtime", "-t", tag, str(ctx)], timeout=900)
        build_s = time.monotonic() - t0
        shutil.rmtree(ctx, ignore_errors=True)
        saved = _saved_bytes(tag)
        stream_s = self.server.load_images(tag)
        loaded = self.server.sh(f"docker image inspect -f '{{{{.Size}}}}' {tag}").strip()
        self.server.exec(f"docker image rm {tag}", check=False)  # the next round streams into the same state
        layers = _layers(tag)
        out = {"tag": tag, "local_build_s": round(build_s, 3), "saved_bytes": saved,
               "stream_and_load_s": round(stream_s, 3), "loaded_image_bytes": int(loaded) if loaded.isdigit()
               else None, **layers}
        log(f"image way, round {round_no}: docker save {saved} B, streamed and loaded in {stream_s:.1f}s "
            f"(built here in {build_s:.1f}s)")
        return out

    def run(self, rounds: int) -> None:
        self.setup()
        self.report["floor"] = self.floor(FLOOR_RUNS)
        self.report["first_deploy"] = self.first_deploy()
        self.report["rounds"] = []
        for i in range(1, rounds + 1):
            main_py = self.root / "app" / "main.py"
            main_py.write_text(main_py.read_text() + f"\n# benchmark round {i}\n")
            self._git("commit", "-qam", f"round {i}")
            commit = self._git("rev-parse", "--short=12", "HEAD")
            redeploy = self.under_load(f"headway deploy (round {i})", "deploy", "-e", "production")
            rollback = self.under_load(f"headway rollback (round {i})", "rollback", "-e", "production")
            image = self.image_way(i)
            self.report["rounds"].append({"round": i, "commit": commit, "redeploy": redeploy,
                                          "rollback": rollback, "image_way": image})
            for op in (redeploy, rollback):
                if op["failed"]:
                    self.report["errors"].append(f"{op['name']}: {op['failed']} failed requests "
                                                 f"{op['failed_statuses']}")

    # -- cleanup ----------------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        problems: list[str] = []
        if self.server is not None:
            stop_server(self.server)
            left = run(["docker", "ps", "-aq", "--filter", f"id={self.server.container}"], check=False).stdout
            if left.strip():
                problems.append(f"the server container {self.server.name} is still there")
        for tag in self.local_images:
            r = run(["docker", "image", "rm", tag], check=False)
            if r.returncode != 0 and "No such image" not in r.stderr:
                problems.append(f"docker image rm {tag}: {r.stderr.strip()[-300:]}")
        return problems


def committed_src(workdir: Path) -> dict[str, str]:
    """headway as HEAD has it (src/headway and pyproject.toml, byte-compiled): what the CLI here runs and what
    `server bootstrap` installs, whatever is being changed in the working tree meanwhile."""
    dest = workdir / "committed"
    dest.mkdir()
    commit = run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], timeout=60).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src/headway", "pyproject.toml"],
                             capture_output=True, check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=120)
    run([sys.executable, "-m", "compileall", "-q", str(dest / "src")], timeout=120)
    return {"path": str(dest / "src"), "commit": commit, "source": "commit"}


def _notes(stderr: str) -> str:
    """The lines of a command's output worth keeping: what was sent, how the rollback went."""
    keep = [ln.strip() for ln in stderr.splitlines() if "sending" in ln or "rollback" in ln or "switched" in ln]
    return "\n".join(keep)[-1000:]


def _saved_bytes(tag: str) -> int:
    """Bytes of `docker save TAG`, counted as they stream (nothing written to disk)."""
    proc = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    try:
        while chunk := proc.stdout.read(1 << 20):
            total += len(chunk)
    finally:
        proc.stdout.close()
        code = proc.wait(timeout=120)
    if code != 0:
        raise RuntimeError(f"docker save {tag} exited {code}")
    return total


def _layers(tag: str) -> dict[str, Any]:
    """The image's size, its base's, and the layers on top of the base (what a registry push would add)."""
    base = run(["docker", "image", "inspect", "-f", "{{.Size}}", "python:3.11-slim"]).stdout.strip()
    size = run(["docker", "image", "inspect", "-f", "{{.Size}}", tag]).stdout.strip()
    base_rows = len(run(["docker", "history", "-q", "--no-trunc", "python:3.11-slim"]).stdout.splitlines())
    rows = run(["docker", "history", "--human=false", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}",
                tag]).stdout.splitlines()
    own = [row.split("\t", 1) for row in rows[:max(0, len(rows) - base_rows)]]
    layers = [(int(b), c) for b, c in own if b.isdigit() and int(b) > 0]
    app_code = [n for n, created_by in layers if re.search(r"COPY .*\./app/", created_by)]
    return {"image_bytes": int(size), "base_image_bytes": int(base),
            "app_layers_bytes": sum(n for n, _ in layers), "code_layer_bytes": app_code[0] if app_code else None,
            "app_layers": [{"bytes": n, "created_by": created_by[-120:]} for n, created_by in layers]}


# -- summary and rendering ------------------------------------------------------------------------------------
def summarize(report: dict[str, Any]) -> dict[str, Any]:
    rounds = report.get("rounds", [])
    first = report.get("first_deploy") or {}
    floor = report.get("floor") or {}

    def ops(key: str) -> list[dict[str, Any]]:
        return [r[key] for r in rounds if key in r]

    def med(key: str, field: str) -> float | None:
        return _median([float(op[field]) for op in ops(key) if op.get(field) is not None])

    redeploys, rollbacks, images = ops("redeploy"), ops("rollback"), ops("image_way")
    return {
        "rounds": len(rounds),
        "first_deploy_wall_s": first.get("wall_s"), "first_deploy_bundle_bytes": first.get("bundle_bytes"),
        "server_image_bytes": first.get("server_image_bytes"),
        "redeploy_wall_median_s": med("redeploy", "wall_s"),
        "redeploy_bundle_bytes_median": med("redeploy", "bundle_bytes"),
        "redeploy_requests": sum(op["requests"] for op in redeploys),
        "redeploy_failed": sum(op["failed"] for op in redeploys),
        "rollback_wall_median_s": med("rollback", "wall_s"),
        "rollback_requests": sum(op["requests"] for op in rollbacks),
        "rollback_failed": sum(op["failed"] for op in rollbacks),
        "image_saved_bytes_median": med("image_way", "saved_bytes"),
        "image_stream_median_s": med("image_way", "stream_and_load_s"),
        "image_local_build_median_s": med("image_way", "local_build_s"),
        "image_bytes": images[-1]["image_bytes"] if images else None,
        "base_image_bytes": images[-1]["base_image_bytes"] if images else None,
        "app_layers_bytes": images[-1]["app_layers_bytes"] if images else None,
        "code_layer_bytes": images[-1]["code_layer_bytes"] if images else None,
        "ssh_true_median_s": _median(floor.get("ssh_true_s", [])),
        "forwarded_noop_median_s": _median(floor.get("forwarded_noop_s", [])),
        "local_cli_median_s": _median(floor.get("local_cli_s", [])),
    }


def zero_failed(report: dict[str, Any]) -> bool:
    s = report.get("summary") or {}
    return bool(s.get("rounds")) and s["redeploy_failed"] == 0 and s["rollback_failed"] == 0


def _bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _s(v: float | None, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if v is not None else "—"


def render_table(report: dict[str, Any]) -> str:
    s = report.get("summary") or {}
    n = s.get("rounds", 0)
    runs = report.get("settings", {}).get("floor_runs", FLOOR_RUNS)
    lines = ["| what | runs | sent over SSH | wall time s (median) | strict client: requests / failed |",
             "|---|---:|---:|---:|---:|"]
    if s.get("first_deploy_wall_s") is not None:
        lines.append(f"| `headway deploy -e production`, first deploy (builds every layer on the server) | 1 | "
                     f"{_bytes(s['first_deploy_bundle_bytes'])} | {_s(s['first_deploy_wall_s'])} | — |")
    if n:
        lines += [
            f"| `headway deploy -e production`, redeploy of a changed commit | {n} | "
            f"{_bytes(s['redeploy_bundle_bytes_median'])} | {_s(s['redeploy_wall_median_s'])} | "
            f"{s['redeploy_requests']:,} / **{s['redeploy_failed']}** |",
            f"| `headway rollback -e production` | {n} | headway.yml and secrets | {_s(s['rollback_wall_median_s'])} "
            f"| {s['rollback_requests']:,} / **{s['rollback_failed']}** |",
            f"| the image built here, `docker save IMAGE \\| ssh docker load` (stream and load; the build here "
            f"{_s(s['image_local_build_median_s'])} s more) | {n} | {_bytes(s['image_saved_bytes_median'])} | "
            f"{_s(s['image_stream_median_s'])} | — |"]
    if s.get("ssh_true_median_s") is not None:
        lines += [f"| floor: a new SSH connection running `true` | {runs} | — | {_s(s['ssh_true_median_s'], 3)} | — |",
                  f"| floor: `headway --host … proxy --help` (CLI here, SSH, headway started there, a no-op) | "
                  f"{runs} | an empty bundle | {_s(s['forwarded_noop_median_s'], 3)} | — |",
                  f"| for reference: `headway --version` here, no SSH | {runs} | — | "
                  f"{_s(s['local_cli_median_s'], 3)} | — |"]
    return "\n".join(lines)


def render_section(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report.get("summary") or {}
    srv = report.get("server", {})
    checkout = report.get("checkout", {})
    when = report["started_utc"]
    ratio = (s["image_saved_bytes_median"] / s["redeploy_bundle_bytes_median"]
             if s.get("image_saved_bytes_median") and s.get("redeploy_bundle_bytes_median") else None)
    verdict = "PASS" if zero_failed(report) else "FAIL"
    redeploy: dict[str, Any] = next((r["redeploy"] for r in report.get("rounds", [])), {})
    rollback: dict[str, Any] = next((r["rollback"] for r in report.get("rounds", [])), {})
    return "\n".join([
        START,
        "## Deploying to a server over SSH",
        "",
        f"Measured {when[:4]}-{when[4:6]}-{when[6:8]} {when[9:11]}:{when[11:13]} UTC on {m['nproc']} CPU cores "
        f"({m['cpu']}), Docker Engine {m['docker_server']} (headway {m['headway_commit']}); load average "
        f"{' / '.join(map(str, m['loadavg_start']))} at the start. The server is a Debian container with sshd on "
        f"127.0.0.1 made a Docker host by `headway server bootstrap` ({_s(srv.get('bootstrap_s'), 0)} s; its engine "
        f"Docker {srv.get('docker', '?')}, nested in this machine's, on the same cores), with the base images "
        "loaded into its engine. examples/shop as a developer's clone (its tracked files, committed; production "
        "`hosts: ['root@127.0.0.1:PORT']`) is deployed from this machine by the `headway` CLI; every redeploy is "
        "of a new commit (a changed app/main.py). The strict client sends GET / at "
        f"{report['settings']['strict_rate_rps']:g} requests/s through the server's published port 80 with the "
        "app's Host header during every redeploy and rollback.",
        "",
        render_table(report),
        "",
        f"- **{verdict}** — no request of the strict client failed during the redeploys and rollbacks on the "
        "server.",
        f"- What `headway deploy` sends is the bundle its own line announces (`sending … to …`: headway.yml, the "
        f"secrets, the build context exported from the commit): {_bytes(s.get('redeploy_bundle_bytes_median'))}, "
        f"for the checkout's {checkout.get('tracked_files', '?')} tracked files of "
        f"{_bytes(checkout.get('tracked_bytes'))} (the rest is tar headers and padding). "
        f"Shipping the image instead sends {_bytes(s.get('image_saved_bytes_median'))} per deploy "
        f"(`docker save` carries every layer" + (f", {ratio:,.0f}× the bundle" if ratio else "") + "). The image "
        f"is {_bytes(s.get('image_bytes'))}: {_bytes(s.get('base_image_bytes'))} the python:3.11-slim base and "
        f"{_bytes(s.get('app_layers_bytes'))} the app's own layers (a registry that deduplicates layers would "
        f"still send those on a dependency change; {_bytes(s.get('code_layer_bytes'))} for the code layer "
        "alone). The server-built image is "
        f"{_bytes(s.get('server_image_bytes'))}.",
        f"- Over loopback both transfers are cheap; on an operator's uplink the bytes decide. At "
        f"{UPLINK_MBIT} Mbit/s (arithmetic, not measured) the bundle takes "
        f"{_s(_at_uplink(s.get('redeploy_bundle_bytes_median')), 2)} s and the saved image "
        f"{_s(_at_uplink(s.get('image_saved_bytes_median')), 0)} s.",
        f"- The floor: a new SSH connection running `true` takes {_s(s.get('ssh_true_median_s'), 3)} s; a "
        f"forwarded no-op (`headway --host … proxy --help`) {_s(s.get('forwarded_noop_median_s'), 3)} s, of which "
        f"{_s(s.get('local_cli_median_s'), 3)} s is the CLI starting here — the rest is the SSH handshake and "
        "headway starting on the server. The rest of a redeploy's wall time is its steps on the server"
        + (f" (this run's first redeploy: {_steps(redeploy)})" if _steps(redeploy) else "") + ".",
        f"- Rollback: {_rollback_note(rollback)}",
        "",
        "Generated by `flock /tmp/headway-docker.lock .venv/bin/python -m bench.remote_bench --rounds "
        f"{report['settings']['rounds']}` (results in "
        "[bench/results/remote-latest.json](../bench/results/remote-latest.json)); this run took "
        f"{_minutes(report)}, the server's bootstrap included.",
        END,
    ])


def _minutes(report: dict[str, Any]) -> str:
    try:
        fmt = "%Y%m%dT%H%M%SZ"
        start = time.mktime(time.strptime(report["started_utc"], fmt))
        end = time.mktime(time.strptime(report["finished_utc"], fmt))
    except (KeyError, ValueError):
        return "several minutes"
    return f"{max(1, round((end - start) / 60))} min"


def _at_uplink(n: float | None) -> float | None:
    return n * 8 / (UPLINK_MBIT * 1e6) if n is not None else None


def _rollback_note(op: dict[str, Any]) -> str:
    note = _notes(op.get("stderr_tail", "")).replace("\n", "; ")
    record = op.get("record") or {}
    switched = record.get("duration_s") if isinstance(record, dict) else None
    text = f"headway's own note: «{note}». " if note else ""
    if "no warm standby" in note:
        text += ("examples/shop as shipped keeps no warm standby (`deploy: {warm_standby: false}`), so the "
                 "previous release's containers are started again and health-gated before traffic moves")
    else:
        text += "traffic moved to the previous release"
    return text + (f"; headway's record of the rollback: {switched:.2f} s on the server." if switched else ".")


def _steps(op: dict[str, Any]) -> str:
    steps = op.get("steps")
    if not isinstance(steps, list):
        return ""
    return ", ".join(f"{re.sub(r'^build image .*', 'build', str(st.get('name')))} {st.get('seconds', 0):.1f} s"
                     for st in steps
                     if isinstance(st, dict) and st.get("name") and float(st.get("seconds") or 0) >= 0.1)


if __name__ == "__main__":
    os.environ.pop("HEADWAY_FAULT", None)
    os.environ.pop("HEADWAY_DEBUG", None)
    sys.exit(main())
