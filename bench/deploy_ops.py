"""Operations under steady load: the example shop app deployed by headway and by plain docker-compose.

Each stack lives in its own temporary copy of examples/shop with unique names and free ports, and removes
everything it created (containers, networks, volumes, images, its proxy, its files) when closed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import is_failure
from headway.engine import labels as L

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "examples" / "shop"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on now (and not handed out earlier in this run)."""
    while True:
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, check=False, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {result.returncode}:\n{result.stdout[-2000:]}\n"
                           f"{result.stderr[-4000:]}")
    return result


def get_once(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_serving(url: str, timeout: float) -> dict[str, Any]:
    """Until GET url answers 200 with JSON; returns the body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = get_once(url)
            if status == 200:
                return dict(json.loads(body))
            last = f"HTTP {status}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s (last: {last})")


def stamp(app_dir: Path, text: str) -> None:
    """Change a file baked into the image, so the next build produces a different image."""
    (app_dir / "app" / "build_stamp.txt").write_text(text + "\n")


# -- load clients, each in its own process ----------------------------------------------------------------
Timeline = list[tuple[float, float, str, str | None]]  # (sent, answered, status or error, release)


@dataclass
class ClientSpec:
    """One load client: `python -m bench.netload` run on the host, or inside a namespace (`prefix`)."""

    label: str  # "strict" or "retrying"
    url: str
    rate: float
    strict: bool = True
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NS]
    maintenance_marker: str | None = None


@dataclass
class ClientRun:
    spec: ClientSpec
    summary: dict[str, Any]
    timeline: Timeline
    started: float

    @property
    def failed(self) -> int:
        return int(self.summary["non_2xx"]) + int(self.summary["errors"])

    def report(self, t0: float) -> dict[str, Any]:
        """Summary, failed requests (the first 200, seconds after t0) and the window they fell in."""
        failed = [(sent, end, status) for sent, end, status, _ in sorted(self.timeline) if is_failure(status)]
        failures: list[dict[str, Any]] = [{"t_s": round(end - t0, 3), "sent_t_s": round(sent - t0, 3),
                                           "status": status} for sent, end, status in failed]
        return {"label": self.spec.label, "strict": self.spec.strict, "url": self.spec.url,
                "rate_rps": self.spec.rate, **self.summary, "failed": self.failed,
                "failed_statuses": {k: v for k, v in self.summary["statuses"].items() if is_failure(k)},
                "failure_window_s": [round(failed[0][1] - t0, 3), round(max(f[1] for f in failed) - t0, 3)]
                if failed else None,
                "failures": failures[:200], "load_started_before_op_s": round(t0 - self.started, 3)}


class LoadClient:
    def __init__(self, spec: ClientSpec, *, max_seconds: float, min_requests: int) -> None:
        self.spec = spec
        self.max_seconds = max_seconds
        argv = [*spec.prefix, sys.executable, "-m", "bench.netload", spec.url, "--rate", f"{spec.rate:g}",
                "--max-seconds", f"{max_seconds:g}", "--min-requests", str(min_requests)]
        if not spec.strict:
            argv.append("--retrying")
        if spec.maintenance_marker:
            argv += ["--maintenance-marker", spec.maintenance_marker]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in result() or kill()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _event(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=max(0.1, timeout))
        except queue.Empty:
            line = None
        if line is None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self._stderr.seek(0)
            why = self._stderr.read()[-1500:]
            self.kill()
            raise RuntimeError(f"load client {self.spec.label} ({self.spec.url}) gave no answer: {why}")
        return dict(json.loads(line))

    def wait_flowing(self, timeout: float = 40.0) -> dict[str, Any]:
        return self._event(timeout)

    def ask_stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def result(self) -> ClientRun:
        msg = self._event(self.max_seconds + 30)
        self.proc.wait(timeout=30)
        self._stderr.close()
        timeline = [(float(a), float(b), str(st), rel) for a, b, st, rel in msg["timeline"]]
        return ClientRun(self.spec, msg["summary"], timeline, float(msg["started"]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if not self._stderr.closed:
            self._stderr.close()


class LoadSession:
    """Every client started together; `start` returns once each has completed one second of requests. The
    first client is the headline one: the others run for as long (their minimum scaled by their rate)."""

    def __init__(self, clients: list[ClientSpec], *, max_seconds: float, min_requests: int) -> None:
        self.specs = clients
        self.max_seconds = max_seconds
        self.min_requests = min_requests
        self.clients: list[LoadClient] = []

    def start(self) -> None:
        base = self.specs[0].rate
        try:
            for spec in self.specs:
                self.clients.append(LoadClient(spec, max_seconds=self.max_seconds,
                                               min_requests=int(self.min_requests * spec.rate / base)))
            for c in self.clients:
                c.wait_flowing()
        except BaseException:
            self.kill()
            raise

    def finish(self) -> list[ClientRun]:
        try:
            for c in self.clients:
                c.ask_stop()
            return [c.result() for c in self.clients]
        finally:
            self.kill()

    def kill(self) -> None:
        for c in self.clients:
            c.kill()


def clients_for(url: str, *, prefix: list[str] | None = None, strict_rate: float = 200.0,
                retrying_rate: float = 50.0, maintenance_marker: str | None = None) -> list[ClientSpec]:
    """The strict client (the headline) and the retrying one, against the same URL."""
    return [ClientSpec("strict", url, strict_rate, True, list(prefix or []), maintenance_marker),
            ClientSpec("retrying", url, retrying_rate, False, list(prefix or []), maintenance_marker)]


# -- measuring one operation under load ---------------------------------------------------------------------
@dataclass
class OpResult:
    name: str
    command: list[str]
    exit_code: int | None
    timed_out: bool
    wall_s: float
    clients: list[dict[str, Any]]
    stdout_json: Any = None
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return int(self.clients[0]["failed"])

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "exit_code": self.exit_code,
                "timed_out": self.timed_out, "wall_s": round(self.wall_s, 3),
                "clients": {c["label"]: c for c in self.clients}, "stdout_json": self.stdout_json,
                "stderr_tail": self.stderr_tail, **self.extra}


def measure(name: str, argv: list[str], *, cwd: Path, env: dict[str, str], clients: list[ClientSpec],
            min_requests: int, max_seconds: float, tail_s: float = 0.0, old_release: str | None = None,
            from_release: str | None = None) -> OpResult:
    """Steady load from every client; once it flows, run `argv`; keep the load until the headline client has
    completed `min_requests` requests, the operation has exited and `tail_s` more seconds have passed. Everything
    is bounded by `max_seconds` from the start of the load."""
    session = LoadSession(clients, max_seconds=max_seconds, min_requests=min_requests)
    session.start()
    try:
        deadline = time.monotonic() + max_seconds - 5
        log(f"{name}: load flowing ({', '.join(f'{c.label} {c.rate:g}/s' for c in clients)} to "
            f"{clients[0].url}), running {' '.join(argv[-4:])}")
        timed_out = False
        loadavg_at_start = os.getloadavg()[0]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            out, err = proc.communicate()
        t1 = time.monotonic()
        if tail_s:  # a measured window after the exit, not a wait for anything: the load keeps its own clock
            time.sleep(min(tail_s, max(0.0, deadline - time.monotonic())))
        runs = session.finish()
    except BaseException:
        session.kill()
        raise
    head = runs[0]
    log(f"{name}: exit {proc.returncode} after {t1 - t0:.2f}s; "
        + "; ".join(f"{r.spec.label}: {r.summary['sent']} requests, {r.failed} failed" for r in runs))
    try:
        parsed = json.loads(out) if out.strip() else None
    except ValueError:
        parsed = {"unparsed": out[-2000:]}
    op = OpResult(name=name, command=argv, exit_code=proc.returncode, timed_out=timed_out, wall_s=t1 - t0,
                  clients=[r.report(t0) for r in runs], stdout_json=parsed, stderr_tail=err[-3000:])
    op.extra["loadavg_1m_at_start"] = round(loadavg_at_start, 2)
    if from_release is not None:
        op.extra.update(switch_times(head.timeline, t0, from_release, old_release))
    return op


def switch_times(timeline: Timeline, t0: float, from_release: str, old_release: str | None) -> dict[str, Any]:
    """For a rollback: when the last response came from the release rolled back from, and the first from the
    release rolled back to, in seconds after the rollback command was started."""
    last_from = max((end for _, end, _, rel in timeline if rel == from_release), default=None)
    first_old = min((end for _, end, _, rel in timeline if rel == old_release and end >= t0), default=None)
    later_from = sum(1 for _, end, _, rel in timeline if rel == from_release and end >= t0)
    after = [(status, rel) for _, end, status, rel in timeline if last_from is not None and end > last_from]
    return {"from_release": from_release, "to_release": old_release,
            "time_to_old_release_s": round(max(0.0, last_from - t0), 3) if last_from is not None else None,
            "first_old_release_response_s": round(first_old - t0, 3) if first_old is not None else None,
            "responses_from_rolled_back_release_after_start": later_from,
            "responses_after_last_from_release": len(after),
            "of_which_not_old_release": sum(1 for status, rel in after if rel != old_release)}


def settle(label: str, url: str, timeout: float = 60.0) -> float:
    """Until no container with `label` is being created, restarted or removed and `url` answers HTTP (any
    status: a maintenance 503 counts); returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        states = _lines(["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.State}}"])
        busy = [s for s in states if s in ("created", "restarting", "removing", "paused")]
        answering = False
        if not busy:
            try:
                get_once(url)
                answering = True
            except (OSError, http.client.HTTPException):
                pass
        if answering:
            return round(time.monotonic() - t0, 3)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not settled after {timeout:.0f}s: containers {busy}, {url} answering {answering}")
        time.sleep(0.2)  # polling docker and the URL


# -- headway ------------------------------------------------------------------------------------------------
def snapshot_src(workdir: Path) -> dict[str, str]:
    """A byte-compiled copy of src/headway taken now: the CLI runs from it (PYTHONPATH), so one run measures one
    version of headway even if the checkout changes meanwhile, and starts as an installed package does."""
    dest = workdir / "src"
    shutil.copytree(REPO / "src" / "headway", dest / "headway", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted(p for p in (dest / "headway").rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
    run([sys.executable, "-m", "compileall", "-q", str(dest)], timeout=120)
    return {"path": str(dest), "sha256": digest.hexdigest()[:16]}


def headway_argv() -> list[str]:
    script = Path(sys.executable).parent / "headway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "headway"]


class HeadwayStack:
    """examples/shop under a unique app name, deployed by the real `headway` CLI through its own proxy; or, with
    `shared_with`, a second app on the same host: same proxy, same state directory, its own name and port."""

    def __init__(self, workdir: Path, shared_with: HeadwayStack | None = None, src: Path | None = None) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.app = f"benchshop-{suffix}"
        self.dir = workdir / "headway" / self.app
        self.owns_proxy = shared_with is None
        if shared_with is None:
            self.proxy_name = f"headway-proxy-bench-{suffix}"
            self.state_dir = workdir / "headway" / "state"
            self.http_port, self.control_port = free_port(), free_port()
        else:
            self.proxy_name, self.state_dir = shared_with.proxy_name, shared_with.state_dir
            self.http_port, self.control_port = shared_with.http_port, shared_with.control_port
        self.prod_port, self.staging_port = free_port(), free_port()
        self.url = self.url_at("127.0.0.1")
        self.env = {**os.environ, "HEADWAY_STATE_DIR": str(self.state_dir)}
        self.src: Path | None = shared_with.src if shared_with is not None else src
        if self.src is not None:  # headway from this copy of its source (see snapshot_src)
            self.env["PYTHONPATH"] = str(self.src)
        self.env.pop("HEADWAY_DEBUG", None)
        self.env.pop("HEADWAY_FAULT", None)
        self.prepared = False

    def url_at(self, host: str) -> str:
        """The production URL on the proxy, reached at `host` (the proxy listens on every address)."""
        return f"http://{host}:{self.prod_port}/"

    def prepare(self) -> None:
        shutil.copytree(SHOP, self.dir, ignore=shutil.ignore_patterns("__pycache__", ".env", ".env.prod"))
        self.prepared = True
        self.state_dir.mkdir(parents=True, exist_ok=not self.owns_proxy)
        path = self.dir / "headway.yml"
        text = path.read_text()
        for old, new in (("app: shop\n", f"app: {self.app}\n"), ("port: 8080\n", f"port: {self.prod_port}\n"),
                         ("port: 8081\n", f"port: {self.staging_port}\n"),
                         ("domains: [shop.localhost]", f"domains: [{self.app}.localhost]"),
                         ("domains: [staging.shop.localhost]", f"domains: [staging.{self.app}.localhost]")):
            if old not in text:
                raise RuntimeError(f"examples/shop/headway.yml no longer contains {old!r}; update bench/")
            text = text.replace(old, new, 1)
        if "\ndeploy:" in text:
            raise RuntimeError("examples/shop/headway.yml has a top-level deploy: section; update bench/")
        text += "\n# benchmark: keep the previous release running, so rollback is to a warm standby\n" \
                "deploy:\n  warm_standby: true\n"
        path.write_text(text)
        for environment in ("production", "staging"):
            secrets = self.dir / ".headway" / f"secrets.{environment}"
            secrets.write_text(f"POSTGRES_PASSWORD=bench-{uuid.uuid4().hex[:16]}\n")
            os.chmod(secrets, 0o600)

    def cli(self, *args: str) -> list[str]:
        return [*headway_argv(), *args]

    def boot_proxy(self) -> None:
        run(self.cli("proxy", "boot", "--http-port", str(self.http_port), "--control-port",
                     str(self.control_port), "--name", self.proxy_name), cwd=self.dir, env=self.env, timeout=120)

    def deploy(self, version: str) -> dict[str, Any]:
        stamp(self.dir, version)
        out = run(self.cli("deploy", "-e", "production", "--version", version, "--json"), cwd=self.dir,
                  env=self.env, timeout=900)
        return dict(json.loads(out.stdout))

    def status(self) -> dict[str, Any]:
        return dict(json.loads(run(self.cli("status", "-e", "production", "--json"), cwd=self.dir, env=self.env,
                                   timeout=120).stdout))

    def proxy_generation(self) -> str | None:
        """The proxy's config generation: it changes when nginx reloads, not when only routing changes."""
        r = run(self.cli("proxy", "status", "--json"), cwd=self.dir, env=self.env, timeout=60, check=False)
        try:
            return str(json.loads(r.stdout).get("generation")) if r.returncode == 0 else None
        except ValueError:
            return None

    def served(self, samples: int = 10) -> dict[str, Any]:
        """What GET / really answers now: the releases and the deploy numbers of the containers that answered
        (a response names its container's hostname, the container id's first 12 characters)."""
        releases: Counter[str] = Counter()
        hosts: Counter[str] = Counter()
        for _ in range(samples):
            status, body = get_once(self.url, timeout=5)
            if status != 200:
                releases[f"HTTP {status}"] += 1
                continue
            data = json.loads(body)
            releases[str(data.get("release"))] += 1
            hosts[str(data.get("hostname"))] += 1
        deploys: Counter[str] = Counter()
        for line in _lines_raw(["docker", "ps", "--filter", f"label={L.APP}={self.app}", "--format",
                                f'{{{{.ID}}}} {{{{.Label "{L.DEPLOY}"}}}}']):
            cid, _, deploy = line.partition(" ")
            for host, n in hosts.items():
                if cid.startswith(host) or host.startswith(cid):
                    deploys[deploy] += n
        return {"releases": dict(releases), "deploys": dict(deploys)}

    def cli_start_seconds(self) -> float:
        """How long the CLI takes to start and exit doing nothing (python + imports): part of every op."""
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            run(self.cli("--version"), cwd=self.dir, env=self.env, timeout=60)
            times.append(time.monotonic() - t0)
        return round(sorted(times)[1], 3)

    def close(self) -> list[str]:
        """Remove what this stack created; a stack sharing another's proxy leaves the proxy (close it first)."""
        problems: list[str] = []
        if not self.prepared:
            return problems
        if self.dir.exists() and (self.state_dir / "proxy" / "settings.json").exists():
            r = run(self.cli("remove", "-e", "production", "--volumes", "--yes"), cwd=self.dir, env=self.env,
                    timeout=300, check=False)
            if r.returncode != 0:
                problems.append(f"headway remove exited {r.returncode}: {r.stderr.strip()[-500:]}")
        problems += _sweep_label(f"{L.APP}={self.app}")
        problems += _remove_images_named(self.app)
        if self.owns_proxy:
            r = run(["docker", "rm", "-f", "-v", self.proxy_name], check=False)
            if r.returncode != 0 and "No such container" not in r.stderr:
                problems.append(f"docker rm {self.proxy_name}: {r.stderr.strip()}")
        return problems


# -- docker-compose -----------------------------------------------------------------------------------------
class ComposeStack:
    """examples/shop the seeds' way: docker-compose.prod.yml, `up -d --build`, app published on a host port."""

    def __init__(self, workdir: Path) -> None:
        self.project = f"benchcompose{uuid.uuid4().hex[:6]}"
        self.dir = workdir / "compose" / "shop"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.image = f"{self.project}:compose"
        self.env = dict(os.environ)
        self.superseded_images: set[str] = set()
        self.started = False

    def prepare(self) -> None:
        shutil.copytree(SHOP, self.dir, ignore=shutil.ignore_patterns("__pycache__", ".env", ".env.prod"))
        path = self.dir / "docker-compose.prod.yml"
        text = path.read_text()
        for old, new in (("image: shop:compose", f"image: {self.image}"),
                         ('- "8000:8000"', f'- "{self.port}:8000"')):
            if old not in text:
                raise RuntimeError(f"examples/shop/docker-compose.prod.yml no longer contains {old!r}; "
                                   "update bench/")
            text = text.replace(old, new)
        # the app service (only it) names its release, as headway's containers do; the env file the database
        # shares stays unchanged, so an `up` replaces what a changed image replaces and nothing more
        app_block = "  app:\n    build:\n"
        if app_block not in text:
            raise RuntimeError("examples/shop/docker-compose.prod.yml no longer starts the app service with "
                               f"{app_block!r}; update bench/")
        text = text.replace(app_block, "  app:\n    environment:\n      HEADWAY_RELEASE: ${HEADWAY_RELEASE:-unknown}\n"
                            "    build:\n", 1)
        path.write_text(text)
        shutil.copy(self.dir / ".env.prod.example", self.dir / ".env.prod")

    def set_release(self, name: str) -> None:
        """A changed file in the image, and the release name the app service gets (GET / names it)."""
        stamp(self.dir, name)
        self.env["HEADWAY_RELEASE"] = name

    def compose(self, *args: str) -> list[str]:
        return ["docker-compose", "-f", "docker-compose.prod.yml", "-p", self.project, *args]

    def up(self) -> None:
        self.started = True
        run(self.compose("up", "-d", "--build"), cwd=self.dir, env=self.env, timeout=900)
        self.remember_image()

    def remember_image(self) -> None:
        r = run(["docker", "image", "inspect", "-f", "{{.Id}}", self.image], check=False)
        if r.returncode == 0:
            self.superseded_images.add(r.stdout.strip())

    def close(self) -> list[str]:
        problems: list[str] = []
        if self.started:
            # no `--rmi all`: it would also delete the shared base images the compose file names (postgres,
            # redis); the app image has this run's unique name and is removed below
            r = run(self.compose("down", "-v", "--remove-orphans", "-t", "20"), cwd=self.dir,
                    env=self.env, timeout=300, check=False)
            if r.returncode != 0:
                problems.append(f"docker-compose down exited {r.returncode}: {r.stderr.strip()[-500:]}")
        problems += _sweep_label(f"com.docker.compose.project={self.project}")
        for image_id in self.superseded_images:
            r = run(["docker", "image", "rm", image_id], check=False)
            if r.returncode != 0 and "No such image" not in r.stderr:
                problems.append(f"docker image rm {image_id[:19]}: {r.stderr.strip()}")
        problems += _remove_images_named(self.project)
        return problems


# -- cleanup helpers ----------------------------------------------------------------------------------------
def _lines(argv: list[str]) -> list[str]:
    r = run(argv, check=False)
    return [ln for ln in r.stdout.split() if ln] if r.returncode == 0 else []


def _lines_raw(argv: list[str]) -> list[str]:
    r = run(argv, check=False)
    return [ln for ln in r.stdout.splitlines() if ln.strip()] if r.returncode == 0 else []


def _sweep_label(label: str) -> list[str]:
    problems = []
    for cid in _lines(["docker", "ps", "-aq", "--filter", f"label={label}"]):
        r = run(["docker", "rm", "-f", "-v", cid], check=False)
        if r.returncode != 0:
            problems.append(f"docker rm {cid}: {r.stderr.strip()}")
    for net in _lines(["docker", "network", "ls", "-q", "--filter", f"label={label}"]):
        r = run(["docker", "network", "rm", net], check=False)
        if r.returncode != 0:
            problems.append(f"docker network rm {net}: {r.stderr.strip()}")
    for vol in _lines(["docker", "volume", "ls", "-q", "--filter", f"label={label}"]):
        r = run(["docker", "volume", "rm", "-f", vol], check=False)
        if r.returncode != 0:
            problems.append(f"docker volume rm {vol}: {r.stderr.strip()}")
    return problems


def _remove_images_named(repository: str) -> list[str]:
    problems = []
    for ref in _lines(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository]):
        r = run(["docker", "image", "rm", ref], check=False)
        if r.returncode != 0:
            problems.append(f"docker image rm {ref}: {r.stderr.strip()}")
    return problems
