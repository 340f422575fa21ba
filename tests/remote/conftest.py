"""Test servers for everything headway does over SSH: real sshd, a real Docker engine inside, no mocks.

A test server is a container of tests/fixtures/server (Debian bookworm + openssh-server, root by key only) run with
every capability the machine allows and read-write cgroups, so that the Docker Engine `headway server bootstrap`
installs in it can run containers of its own. Its sshd is published on 127.0.0.1:<random port>; each session has
its own ed25519 key pair and known_hosts file (the box's host key is written there before a test connects).

  fresh_server   (session)  a pristine Debian server: tests must leave it as they found it
  new_server     (function) a factory for a pristine server of one's own, removed after the test
  docker_server  (session)  `headway server bootstrap` run on a fresh server (the run is recorded in .bootstrap),
                            base images loaded into its engine, ports 80, 443 and 8080-8083 published
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from headway.remote.ssh import SshAddress, SshSession

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "server"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_REPO = "headway-test-server"
LABEL = "io.headway.test-server"
PID_LABEL = "io.headway.test-server.pid"
# what a privileged container has, less what this machine may not grant (CAP_SYS_RESOURCE is not in its bounding set)
RUN_FLAGS = ["--init", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
             "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
             "--device-cgroup-rule", "a *:* rwm", "--mount", "type=volume,dst=/var/lib/docker"]
DOCKER_SERVER_PORTS = (80, 443, 8080, 8081, 8082, 8083)
# base images the server's engine gets (docker save | ssh | docker load); more with docker_server.load_images()
DOCKER_SERVER_IMAGES = tuple(os.environ.get("HEADWAY_TEST_SERVER_IMAGES",
                                            "python:3.11-slim openresty/openresty:bookworm").split())
READY_TIMEOUT = 60.0


def _docker(*args: str, input: bytes | None = None, timeout: float = 300, check: bool = True
            ) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return result


def server_image() -> str:
    """The test server's image, built when its inputs (Dockerfile, entrypoint, CA bundle) changed."""
    inputs = [FIXTURE_DIR / "Dockerfile", FIXTURE_DIR / "entrypoint.sh", CA_BUNDLE]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs)).hexdigest()[:16]
    tag = f"{IMAGE_REPO}:{digest}"
    if _docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    context = Path(os.environ.get("TMPDIR", "/tmp")) / f"headway-test-server-{uuid.uuid4().hex[:8]}"
    context.mkdir()
    try:
        for p in inputs:
            shutil.copy2(p, context / p.name)
        _docker("build", "-q", "--label", f"{LABEL}.image=1", "-t", tag, str(context), timeout=900)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    for old in _docker("images", IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split():
        if old != tag:
            _docker("rmi", old, check=False)  # an earlier version of the fixture
    return tag


def _remove_stale_servers() -> None:
    """Boxes left by a test session that was killed (its pytest process is gone)."""
    out = _docker("ps", "-a", "--filter", f"label={LABEL}", "--format", f'{{{{.ID}}}} {{{{.Label "{PID_LABEL}"}}}}',
                  check=False).stdout.decode()
    for line in out.splitlines():
        cid, _, pid = line.partition(" ")
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            _docker("rm", "-fv", cid, check=False)
    out = _docker("network", "ls", "--filter", f"label={LABEL}", "--format",
                  f'{{{{.ID}}}} {{{{.Label "{PID_LABEL}"}}}}', check=False).stdout.decode()
    for line in out.splitlines():
        nid, _, pid = line.partition(" ")
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            _docker("network", "rm", nid, check=False)


@dataclass
class SshKeys:
    key_file: Path
    public_key: str
    known_hosts: Path


@dataclass
class RemoteServer:
    """One test server. `address` is what headway is given (root@127.0.0.1:<port>)."""

    name: str
    container: str  # the container's id (docker CLI)
    address: SshAddress
    key_file: Path
    known_hosts: Path
    ports: dict[int, int] = field(default_factory=dict)  # the server's port -> 127.0.0.1:<port> here
    bootstrap: subprocess.CompletedProcess[str] | None = None  # docker_server: the `server bootstrap` run
    bootstrap_seconds: float = 0.0
    images_seconds: float = 0.0

    # -- inside the box (docker exec: not through what is being tested) ----------------------------------
    def exec(self, script: str, *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`script` run by sh as root inside the server."""
        result = subprocess.run(["docker", "exec", self.container, "sh", "-c", script], capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"in {self.name}: {script!r} exited {result.returncode}:\n{result.stderr}")
        return result

    def sh(self, script: str, timeout: float = 120) -> str:
        return self.exec(script, timeout=timeout).stdout

    # -- as a user reaches it ------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for headway: this session's key and known_hosts."""
        return {**os.environ, "HEADWAY_KNOWN_HOSTS": str(self.known_hosts), "HEADWAY_SSH_KEY": str(self.key_file)}

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 900,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The real `headway` command, run here with this session's key and known_hosts."""
        return subprocess.run([sys.executable, "-m", "headway", *args], env={**self.env, **(env or {})}, text=True,
                              capture_output=True, timeout=timeout, cwd=cwd)

    def session(self, user: str | None = None) -> SshSession:
        """An SSH session from this process (HEADWAY_KNOWN_HOSTS is this session's file while tests run)."""
        address = self.address if user is None else SshAddress(user, self.address.host, self.address.port)
        return SshSession(address, key_file=self.key_file)

    def url(self, port: int, path: str = "/") -> str:
        """http://127.0.0.1:<published port>/path for the server's `port` (docker_server: 80, 443, 8080-8083)."""
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def load_images(self, *names: str) -> float:
        """`docker save` here | SSH | `docker load` there, for the images the server's engine lacks; seconds."""
        t0 = time.monotonic()
        have = self.sh("docker images --format '{{.Repository}}:{{.Tag}}'").split()
        missing = [n for n in names if n not in have]
        if missing:
            save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
            assert save.stdout is not None
            with self.session() as s:
                err: list[bytes] = []
                code = s.run(["docker", "load", "-q"], stdin=save.stdout, on_stderr=err.append, timeout=600)
            save.stdout.close()
            assert save.wait(timeout=60) == 0, f"docker save {missing} failed"
            assert code == 0, f"docker load on {self.name} failed: {b''.join(err).decode()[-1000:]}"
        return time.monotonic() - t0


def _wait_for_sshd(port: int, container: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError as exc:
            last = str(exc)
        state = _docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.decode().strip()
        if state == "false":
            logs = _docker("logs", container, check=False)
            raise RuntimeError(f"the test server exited: {(logs.stdout + logs.stderr).decode()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"sshd of the test server did not answer on 127.0.0.1:{port} ({last})")


def start_server(keys: SshKeys, session_id: str, *, publish: tuple[int, ...] = (), network: str | None = None,
                 name: str | None = None) -> RemoteServer:
    image = server_image()
    name = name or f"headway-test-server-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name, "--hostname", name, "-l", f"{LABEL}={session_id}",
            "-l", f"{PID_LABEL}={os.getpid()}", *RUN_FLAGS, "-e", f"AUTHORIZED_KEY={keys.public_key}",
            "-p", "127.0.0.1::22"]
    if network:
        args += ["--network", network]
    for port in publish:
        args += ["-p", f"127.0.0.1::{port}"]
    container = _docker(*args, image).stdout.decode().strip()
    try:
        ports: dict[int, int] = {}
        for line in _docker("port", container).stdout.decode().splitlines():
            inside, _, outside = line.partition(" -> ")
            if outside.startswith("127.0.0.1:"):
                ports[int(inside.split("/")[0])] = int(outside.rsplit(":", 1)[1])
        _wait_for_sshd(ports[22], container)
        host_key = _docker("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.decode().split()
        address = SshAddress("root", "127.0.0.1", ports[22])
        with open(keys.known_hosts, "a") as fh:
            fh.write(f"{address.known_hosts_name} {host_key[0]} {host_key[1]}\n")
        return RemoteServer(name, container, address, keys.key_file, keys.known_hosts, ports)
    except BaseException:
        _docker("rm", "-fv", container, check=False)
        raise


def stop_server(server: RemoteServer) -> None:
    _docker("rm", "-fv", server.container, check=False, timeout=120)


@pytest.fixture(scope="session")
def server_session_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshKeys]:
    """This session's ed25519 key pair (the servers' root accepts it) and its own known_hosts file, which
    SSH sessions of this process use too (~/.ssh/known_hosts is never read or written by the tests)."""
    d = tmp_path_factory.mktemp("ssh")
    key = d / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "headway-tests", "-f", str(key)],
                   check=True, capture_output=True)
    known_hosts = d / "known_hosts"
    known_hosts.touch(mode=0o600)
    before = os.environ.get("HEADWAY_KNOWN_HOSTS")
    os.environ["HEADWAY_KNOWN_HOSTS"] = str(known_hosts)
    yield SshKeys(key, (d / "id_ed25519.pub").read_text().strip(), known_hosts)
    if before is None:
        os.environ.pop("HEADWAY_KNOWN_HOSTS", None)
    else:
        os.environ["HEADWAY_KNOWN_HOSTS"] = before


@pytest.fixture(scope="session")
def _servers(server_session_id: str) -> Iterator[list[RemoteServer]]:
    _remove_stale_servers()
    started: list[RemoteServer] = []
    yield started
    for s in started:
        stop_server(s)


@pytest.fixture(scope="session")
def fresh_server(ssh_keys: SshKeys, server_session_id: str, _servers: list[RemoteServer]) -> RemoteServer:
    """A pristine Debian server for the session; a test may not leave anything changed on it."""
    server = start_server(ssh_keys, server_session_id)
    _servers.append(server)
    return server


@pytest.fixture
def new_server(ssh_keys: SshKeys, server_session_id: str) -> Iterator[Callable[..., RemoteServer]]:
    """make() -> a pristine server of this test's own (publish=(80, ...) to reach its ports), removed after it."""
    mine: list[RemoteServer] = []

    def make(publish: tuple[int, ...] = ()) -> RemoteServer:
        server = start_server(ssh_keys, server_session_id, publish=publish)
        mine.append(server)
        return server

    yield make
    for s in mine:
        stop_server(s)


@pytest.fixture(scope="session")
def docker_server(ssh_keys: SshKeys, server_session_id: str, _servers: list[RemoteServer]) -> RemoteServer:
    """A server made by `headway server bootstrap` (recorded in .bootstrap), with base images in its engine."""
    server = start_server(ssh_keys, server_session_id, publish=DOCKER_SERVER_PORTS)
    _servers.append(server)
    t0 = time.monotonic()
    server.bootstrap = server.cli("server", "bootstrap", str(server.address), "--json")
    server.bootstrap_seconds = time.monotonic() - t0
    if server.bootstrap.returncode != 0:
        pytest.fail(f"headway server bootstrap failed (exit {server.bootstrap.returncode}):\n"
                    f"{server.bootstrap.stderr[-4000:]}")
    json.loads(server.bootstrap.stdout)
    server.images_seconds = server.load_images(*DOCKER_SERVER_IMAGES)
    sys.stderr.write(f"\n[docker_server] bootstrap {server.bootstrap_seconds:.0f}s, images "
                     f"{' '.join(DOCKER_SERVER_IMAGES)} loaded in {server.images_seconds:.0f}s\n")
    return server


# -- a swarm of test servers ------------------------------------------------------------------------------
REGISTRY_USER, REGISTRY_PASSWORD = "swarm", f"registry-{uuid.uuid4().hex}"
SWARM_MANAGER_IMAGES = ("python:3.11-slim", "openresty/openresty:bookworm", "postgres:15", "redis:7")


@dataclass
class Swarm:
    """Bootstrapped test servers on one Docker network of their own (the machines' LAN) and a real registry
    (Debian's docker-registry, htpasswd auth) on that network's gateway, which every machine's engine trusts
    over plain HTTP. `headway swarm init` is the tests' to run."""

    network: str
    servers: list[RemoteServer]
    registry: str  # host:port, as the machines and headway on the manager reach it
    registry_password: str = REGISTRY_PASSWORD
    registry_process: subprocess.Popen[bytes] | None = None
    setup_seconds: float = 0.0

    @property
    def manager(self) -> RemoteServer:
        return self.servers[0]

    @property
    def nodes(self) -> list[RemoteServer]:
        return self.servers[1:]

    def ip(self, server: RemoteServer) -> str:
        return _docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{self.network}\").IPAddress}}}}",
                       server.container).stdout.decode().strip()


def _gateway(network: str) -> str:
    return _docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network).stdout.decode().strip()


def _start_registry(root: Path, address: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (scripts/bootstrap.sh installs it)")
    with socket.socket() as s:
        s.bind((address, 0))
        port = s.getsockname()[1]
    htpasswd = subprocess.run(["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], capture_output=True, text=True,
                              check=True)
    (root / "htpasswd").write_text(htpasswd.stdout)
    (root / "config.yml").write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{address}:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: headway-tests, path: {root / 'htpasswd'}}}}}\n")
    log = open(root / "log", "wb")  # noqa: SIM115 - the registry's log for the whole session
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return proc, f"{address}:{port}"
        except OSError:
            time.sleep(0.05)  # the registry's start-up, polled
    proc.terminate()
    raise RuntimeError(f"the registry did not start: {(root / 'log').read_text()[-2000:]}")


def start_swarm(keys: SshKeys, session_id: str, root: Path, count: int = 3) -> Swarm:
    t0 = time.monotonic()
    network = f"headway-test-lan-{uuid.uuid4().hex[:8]}"
    _docker("network", "create", "--label", f"{LABEL}={session_id}", "--label", f"{PID_LABEL}={os.getpid()}",
            network)
    swarm = Swarm(network, [], "")
    try:
        swarm.registry_process, swarm.registry = _start_registry(root, _gateway(network))
        for i in range(count):
            server = start_server(keys, session_id, publish=DOCKER_SERVER_PORTS if i == 0 else (), network=network,
                                  name=f"headway-test-{'manager' if i == 0 else 'node'}-{uuid.uuid4().hex[:6]}")
            swarm.servers.append(server)
            # the registry speaks plain HTTP on the LAN: every engine is told so before bootstrap starts it
            server.sh(f"mkdir -p /etc/docker && printf '%s' '{json.dumps({'insecure-registries': [swarm.registry]})}'"
                      " > /etc/docker/daemon.json")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=count) as pool:
            runs = list(pool.map(lambda s: s.cli("server", "bootstrap", str(s.address), "--json"), swarm.servers))
        for server, run in zip(swarm.servers, runs, strict=True):
            server.bootstrap = run
            if run.returncode != 0:
                raise RuntimeError(f"headway server bootstrap {server.name} failed:\n{run.stderr[-4000:]}")
        swarm.manager.load_images(*SWARM_MANAGER_IMAGES)
        swarm.setup_seconds = time.monotonic() - t0
        return swarm
    except BaseException:
        stop_swarm(swarm)
        raise


def stop_swarm(swarm: Swarm) -> None:
    for server in swarm.servers:
        stop_server(server)
    if swarm.registry_process is not None:
        swarm.registry_process.terminate()
        swarm.registry_process.wait(10)
    _docker("network", "rm", swarm.network, check=False)


@pytest.fixture(scope="session")
def swarm_servers(ssh_keys: SshKeys, server_session_id: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Swarm]:
    """Three bootstrapped servers on their own LAN and a registry (see Swarm); not yet a swarm."""
    _remove_stale_servers()
    swarm = start_swarm(ssh_keys, server_session_id, tmp_path_factory.mktemp("swarm"))
    sys.stderr.write(f"\n[swarm_servers] three servers bootstrapped, images loaded in {swarm.setup_seconds:.0f}s\n")
    yield swarm
    stop_swarm(swarm)


# -- a developer's checkout of the example shop -----------------------------------------------------------
SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", *args], cwd=root,
                   check=True, capture_output=True)


def shop_checkout(tmp_path: Path, prefix: str, production: str, *, edits: tuple[tuple[str, str], ...] = (),
                  secrets: dict[str, str] | None = None) -> tuple[Path, str]:
    """examples/shop as a developer's clone under a name of its own (`prefix` + random), `production` (indented
    lines) added to its production environment, each (old, new) of `edits` replaced once, a secrets file with a
    fresh POSTGRES_PASSWORD and `secrets`, all committed. Returns (root, app name)."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root, ignore=shutil.ignore_patterns("__pycache__", ".headway", ".mypy_cache"))
    text = (root / "headway.yml").read_text().replace("app: shop", f"app: {name}")
    text = text.replace("[shop.localhost]", f"[{name}.localhost]")
    text = text.replace("  production:\n", f"  production:\n{production}", 1)
    for old, new in edits:
        assert old in text, f"examples/shop/headway.yml no longer has {old!r}"
        text = text.replace(old, new, 1)
    (root / "headway.yml").write_text(text)
    (root / ".gitignore").write_text(".headway/\n")
    path = root / ".headway" / "secrets.production"
    path.parent.mkdir()
    values = {"POSTGRES_PASSWORD": f"pw-{uuid.uuid4().hex}", **(secrets or {})}
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "shop")
    return root, name
