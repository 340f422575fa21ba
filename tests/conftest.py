"""Fixtures for the real components headway drives: the Docker Engine and headway's nginx proxy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(REPO))  # bench.loadgen

from headway.engine import labels as L
from headway.engine.docker import DockerEngine
from headway.proxy.nginx import Proxy
from headway.service import Headway

pytest_plugins = ["tests.integration.db_support"]  # databases and an S3 server (test_db_*)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the Docker daemon run last, so nothing else sees the daemon go away (scripts/test.sh runs
    them on their own, after the others). With several workers (pytest-xdist, --dist loadgroup) the tests of one
    file stay on one worker, sharing its fixtures, and the test servers of tests/remote are made once."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_dockerd") is not None)
    for item in items:
        path = Path(str(item.fspath))
        group = "remote" if "remote" in path.parts else path.stem
        item.add_marker(pytest.mark.xdist_group(group))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def quiet_port() -> int:
    """A free port below the kernel's ephemeral range: a port held for later (the proxy's HTTPS port is bound only
    once a route has TLS) that no `free_port()` or outgoing connection can be handed meanwhile."""
    import random

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):  # bounded: a few ports of the range are taken at most
        port = random.randint(20000, low - 1)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@pytest.fixture(scope="session")
def docker_engine() -> DockerEngine:
    try:
        return DockerEngine()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the Docker Engine is needed for this test ({exc}); run scripts/bootstrap.sh")


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("headway-state")


@dataclass
class RunningProxy:
    proxy: Proxy
    state_dir: Path
    http_port: int
    control_port: int
    https_port: int = 443


@pytest.fixture(scope="session")
def proxy(docker_engine: DockerEngine, state_dir: Path) -> Iterator[RunningProxy]:
    """A real nginx proxy container owned by headway, on free ports, for the whole test session."""
    px = Proxy(docker_engine, state_dir)
    http_port, control_port, https_port = quiet_port(), quiet_port(), quiet_port()
    px.boot(http_port=http_port, control_port=control_port, name=f"headway-proxy-test-{uuid.uuid4().hex[:6]}",
            https_port=https_port)
    yield RunningProxy(px, state_dir, http_port, control_port, https_port)
    c = px.container()
    if c is not None:
        docker_engine.remove(c)


@dataclass
class AppDir:
    """A copy of a fixture app with its own name and ports, so tests never collide."""

    root: Path
    name: str
    state_dir: Path
    ports: dict[str, int]

    def headway(self, environment: str = "production") -> Headway:
        return Headway.open(environment, config=self.root / "headway.yml", state_dir=self.state_dir)

    def set_behavior(self, **behavior: object) -> None:
        (self.root / "behavior.json").write_text(json.dumps(behavior))

    def edit_config(self, old: str, new: str) -> None:
        path = self.root / "headway.yml"
        text = path.read_text()
        assert old in text, f"{old!r} not in headway.yml"
        path.write_text(text.replace(old, new))

    def url(self, environment: str = "production", path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[environment]}{path}"

    def cli(self, *args: str, check: bool = False, timeout: float = 300,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real `headway` command as a user would (`input` typed on its standard input)."""
        env = {**os.environ, "HEADWAY_STATE_DIR": str(self.state_dir), **(env or {})}
        result = subprocess.run([sys.executable, "-m", "headway", *args], cwd=self.root, env=env, text=True,
                                capture_output=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"headway {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result


def _cleanup_app(engine: DockerEngine, name: str) -> None:
    for c in engine.containers(L.selector(app=name)):
        engine.remove(c, volumes=True)
    for net in engine.client.networks.list(filters={"label": [f"{L.APP}={name}"]}):
        net.remove()
    for vol in engine.volumes(L.selector(app=name)):
        vol.remove(force=True)
    for image in engine.client.images.list(name=name):
        for tag in image.tags:
            engine.remove_image(tag)


@pytest.fixture
def tiny_app(tmp_path: Path, proxy: RunningProxy, docker_engine: DockerEngine) -> Iterator[AppDir]:
    """The small fixture app (web + worker + release command), ready to deploy, removed afterwards."""
    yield from make_tiny_app(tmp_path, proxy, docker_engine)


def make_tiny_app(tmp_path: Path, proxy: RunningProxy, docker_engine: DockerEngine) -> Iterator[AppDir]:
    name = f"t{uuid.uuid4().hex[:8]}"
    root = tmp_path / "app"
    shutil.copytree(FIXTURES / "apps" / "tiny", root)
    ports = {"production": free_port(), "staging": free_port()}
    text = (root / "headway.yml").read_text().replace("app: tiny", f"app: {name}")
    text = text.replace("port: 18480", f"port: {ports['production']}").replace(
        "port: 18481", f"port: {ports['staging']}")
    (root / "headway.yml").write_text(text)
    app = AppDir(root, name, proxy.state_dir, ports)
    yield app
    _cleanup_app(docker_engine, name)
    Path(proxy.state_dir / "apps" / name).exists() and shutil.rmtree(proxy.state_dir / "apps" / name)
    for env in ports:
        if proxy.proxy.routes.get(name, env) is not None:
            proxy.proxy.drop_route(name, env)
