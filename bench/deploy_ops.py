"""Operations under steady load: the example shop app deployed by headway and by plain docker-compose.

Each stack lives in its own temporary copy of examples/shop with unique names and free ports, and removes
everything it created (containers, networks, volumes, images, its proxy, its files) when closed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import SteadyLoad
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
                return json.loads(body)
            last = f"HTTP {status}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s (last: {last})")


def stamp(app_dir: Path, text: str) -> None:
    """Change a file baked into the image, so the next build produces a different image."""
    (app_dir / "app" / "build_stamp.txt").write_text(text + "\n")


# -- measuring one operation under load ---------------------------------------------------------------------
@dataclass
class OpResult:
    name: str
    command: list[str]
    exit_code: int | None
    timed_out: bool
    wall_s: float
    load: dict[str, Any]
    failures: list[dict[str, Any]]
    failure_window_s: list[float] | None  # first and last failed request, seconds after the operation started
    stdout_json: Any = None
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "exit_code": self.exit_code,
                "timed_out": self.timed_out, "wall_s": round(self.wall_s, 3), **self.load,
                "failed": self.load["non_2xx"] + self.load["errors"], "failures": self.failures,
                "failure_window_s": self.failure_window_s, "stdout_json": self.stdout_json,
                "stderr_tail": self.stderr_tail, **self.extra}


def measure(name: str, url: str, argv: list[str], *, cwd: Path, env: dict[str, str], rate: float,
            min_requests: int, max_seconds: float, old_release: str | None = None,
            from_release: str | None = None) -> OpResult:
    """Steady load on `url`; once it flows, run `argv`; keep the load until `min_requests` requests have been
    made AND the operation has exited. Everything is bounded by `max_seconds` from the start of the load."""
    timeline: list[tuple[float, float, str, str | None]] = []
    load = SteadyLoad(url, rate=rate, max_seconds=max_seconds, max_requests=int(rate * max_seconds) + 1,
                      timeline=timeline)
    load.start()
    deadline = time.monotonic() + max_seconds
    load.wait_for(int(rate), timeout=30)  # one second of completed requests before the operation starts
    log(f"{name}: load flowing ({load.result.sent} requests), running {' '.join(argv[-4:])}")
    timed_out = False
    loadavg_at_start = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, err = proc.communicate()
    t1 = time.monotonic()
    while load.result.sent < min_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    result = load.stop()
    log(f"{name}: exit {proc.returncode} after {t1 - t0:.2f}s; {result.sent} requests, {result.failed} failed")

    failures = [{"t_s": round(t_end - t0, 3), "sent_t_s": round(t_sent - t0, 3), "status": status}
                for t_sent, t_end, status, _ in sorted(timeline)
                if not status.isdigit() or not 200 <= int(status) < 300]
    window = [failures[0]["t_s"], max(f["t_s"] for f in failures)] if failures else None
    try:
        parsed = json.loads(out) if out.strip() else None
    except ValueError:
        parsed = {"unparsed": out[-2000:]}
    op = OpResult(name=name, command=argv, exit_code=proc.returncode, timed_out=timed_out, wall_s=t1 - t0,
                  load=result.summary(), failures=failures[:200], failure_window_s=window, stdout_json=parsed,
                  stderr_tail=err[-3000:])
    op.extra["failed_statuses"] = {k: v for k, v in result.statuses.items()
                                   if not (k.isdigit() and 200 <= int(k) < 300)}
    op.extra["load_started_before_op_s"] = round(t0 - load._started, 3)
    op.extra["loadavg_1m_at_start"] = round(loadavg_at_start, 2)
    if from_release is not None:
        op.extra.update(_switch_times(timeline, t0, from_release, old_release))
    return op


def _switch_times(timeline: list[tuple[float, float, str, str | None]], t0: float, from_release: str,
                  old_release: str | None) -> dict[str, Any]:
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


# -- headway ------------------------------------------------------------------------------------------------
def headway_argv() -> list[str]:
    script = Path(sys.executable).parent / "headway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "headway"]


class HeadwayStack:
    """examples/shop under a unique app name, deployed by the real `headway` CLI through its own proxy."""

    def __init__(self, workdir: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.app = f"benchshop-{suffix}"
        self.proxy_name = f"headway-proxy-bench-{suffix}"
        self.dir = workdir / "headway" / "shop"
        self.state_dir = workdir / "headway" / "state"
        self.http_port, self.control_port = free_port(), free_port()
        self.prod_port, self.staging_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.prod_port}/"
        self.env = {**os.environ, "HEADWAY_STATE_DIR": str(self.state_dir)}
        self.env.pop("HEADWAY_DEBUG", None)

    def prepare(self) -> None:
        shutil.copytree(SHOP, self.dir, ignore=shutil.ignore_patterns("__pycache__", ".env", ".env.prod"))
        self.state_dir.mkdir(parents=True)
        path = self.dir / "headway.yml"
        text = path.read_text()
        for old, new in (("app: shop\n", f"app: {self.app}\n"), ("port: 8080\n", f"port: {self.prod_port}\n"),
                         ("port: 8081\n", f"port: {self.staging_port}\n")):
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
        return json.loads(out.stdout)

    def cli_start_seconds(self) -> float:
        """How long the CLI takes to start and exit doing nothing (python + imports): part of every op."""
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            run(self.cli("--version"), cwd=self.dir, env=self.env, timeout=60)
            times.append(time.monotonic() - t0)
        return round(sorted(times)[1], 3)

    def close(self) -> list[str]:
        problems: list[str] = []
        if self.dir.exists() and (self.state_dir / "proxy" / "settings.json").exists():
            r = run(self.cli("remove", "-e", "production", "--volumes", "--yes"), cwd=self.dir, env=self.env,
                    timeout=300, check=False)
            if r.returncode != 0:
                problems.append(f"headway remove exited {r.returncode}: {r.stderr.strip()[-500:]}")
        problems += _sweep_label(f"{L.APP}={self.app}")
        problems += _remove_images_named(self.app)
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
        path.write_text(text)
        shutil.copy(self.dir / ".env.prod.example", self.dir / ".env.prod")

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
