"""The monitoring agent: one container per host, run and owned by headway like the proxy.

`headway agent boot` builds the agent's image (the base Python image, headway's dependencies, then this very
headway as a wheel: the agent runs the same code as the command that booted it) and starts it with the engine's
restart policy `always`, capped in CPU and memory, on the host's network (it reaches the proxy on 127.0.0.1 and
the containers at their addresses), the Docker socket and the host's state directory mounted. Inside, `headway
agent run` checks every environment the host serves every `interval` seconds (observe/monitor.py).

What each environment asks to be watched is written by headway on the host at every deploy, rollback and scale
(`monitor.json` in the environment's state directory, 0600: its notification channels carry secrets), so the agent
needs no headway.yml and follows the host's truth.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from headway import __version__
from headway.engine import labels as L
from headway.errors import HeadwayError

if TYPE_CHECKING:
    from headway.engine.base import Engine

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DASHBOARD_APP, DASHBOARD_ENV = "headway-agent", "dashboard"  # the dashboard's route in the proxy


class AgentError(HeadwayError):
    """The agent could not be built, started or reached."""


class AgentSettings(BaseModel):
    name: str = "headway-agent"
    base_image: str = Field("python:3.11-slim", description="the image the agent's image is built from")
    port: int = Field(9105, ge=1, le=65535, description="127.0.0.1:<port>/metrics, /health")
    bind: str = "127.0.0.1"
    interval: float = Field(15.0, ge=1.0)
    cpus: float = 0.25
    memory: str = "192m"
    dashboard_port: int = Field(9106, ge=0, le=65535, description="127.0.0.1 port of the dashboard (0: none)")
    dashboard_domain: str | None = Field(None, description="serve the dashboard through the proxy on this name")
    dashboard_public_port: int | None = Field(None, ge=1, le=65535,
                                              description="or on this port of the proxy")
    dashboard_tls: dict[str, Any] | None = Field(None, description="tls: options for the dashboard's domain")


class AgentStatus(BaseModel):
    running: bool
    container: str
    image: str | None
    port: int
    version: str | None = None
    last_round: dict[str, Any] | None = None
    dashboard: str | None = None  # where the dashboard is served (None: off)


_DOCKERFILE = """\
# headway's agent: the host's monitoring, built by `headway agent boot`
FROM {base}
COPY ca-certificates.crt /etc/headway/ca-certificates.crt
ENV PIP_CERT=/etc/headway/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \\
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.txt /tmp/headway-requirements.txt
RUN pip install -q -r /tmp/headway-requirements.txt && rm /tmp/headway-requirements.txt
COPY {wheel} /tmp/
RUN pip install -q --no-deps /tmp/{wheel} && rm /tmp/{wheel}
ENTRYPOINT ["headway", "agent", "run"]
"""


class Agent:
    def __init__(self, engine: Engine, state_dir: Path) -> None:
        self.engine = engine
        self.root = state_dir
        self.dir = state_dir / "agent"

    @property
    def settings_path(self) -> Path:
        return self.dir / "settings.json"

    def settings(self) -> AgentSettings:
        if self.settings_path.exists():
            return AgentSettings.model_validate_json(self.settings_path.read_text())
        return AgentSettings()

    def image(self, settings: AgentSettings, on_line: Any = None) -> str:
        """The agent's image for this headway (built once per version and code)."""
        from headway.remote.wheel import build_wheel

        work = Path(tempfile.mkdtemp(prefix="headway-agent-"))
        try:
            wheel = build_wheel(work)
            requires = _requirements(wheel.path)
            digest = hashlib.sha256((wheel.sha256 + settings.base_image + requires).encode()).hexdigest()[:12]
            tag = f"headway-agent:{__version__}-{digest}"
            if self.engine.image_exists(tag):
                return tag
            self.engine.require_image(settings.base_image, "agent base")
            (work / "requirements.txt").write_text(requires)
            if CA_BUNDLE.is_file():
                shutil.copy2(CA_BUNDLE, work / "ca-certificates.crt")
            else:
                (work / "ca-certificates.crt").write_text("")
            (work / "Dockerfile").write_text(_DOCKERFILE.format(base=settings.base_image, wheel=wheel.path.name))
            self.engine.build(context=work, dockerfile="Dockerfile", tag=tag, args={}, target=None,
                              labels=L.owned("agent"), on_line=on_line)
            return tag
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def boot(self, *, port: int | None = None, interval: float | None = None, base_image: str | None = None,
             name: str | None = None, on_line: Any = None, dashboard_port: int | None = None,
             dashboard_domain: str | None = None, dashboard_public_port: int | None = None,
             dashboard_tls: dict[str, Any] | None = None) -> AgentStatus:
        """Start the agent (or restart it on a new image or settings); publish its dashboard through the proxy
        when a domain or a port is given for it."""
        old = self.settings()
        settings = old.model_copy(update={k: v for k, v in {
            "port": port, "interval": interval, "base_image": base_image, "name": name,
            "dashboard_port": dashboard_port, "dashboard_domain": dashboard_domain,
            "dashboard_public_port": dashboard_public_port, "dashboard_tls": dashboard_tls}.items()
            if v is not None})
        settings = AgentSettings.model_validate(settings.model_dump())
        image = self.image(settings, on_line)
        existing = self.engine.get(settings.name)
        if existing is not None and self.engine.state(existing).get("Running") and settings == old and \
                str((existing.attrs.get("Config") or {}).get("Image", "")) == image:
            self.publish_dashboard(settings)
            return self.status()
        if existing is not None:
            self.engine.remove(existing)
        _require_free_port(settings.bind, settings.port)
        if settings.dashboard_port:
            _require_free_port("127.0.0.1", settings.dashboard_port, "--dashboard-port")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings_path.write_text(settings.model_dump_json(indent=2))
        from headway.config.model import Resources

        root = str(self.root.resolve())  # the same path inside: files the config names read the same there
        container = self.engine.create(
            name=settings.name, image=image,
            command=["--state-dir", root, "--port", str(settings.port), "--bind", settings.bind,
                     "--interval", str(settings.interval), "--dashboard-port", str(settings.dashboard_port)],
            env={}, labels=L.owned("agent"), network=None, network_mode="host", restart="always",
            resources=Resources(cpus=settings.cpus, memory=settings.memory),
            volumes={root: {"bind": root, "mode": "rw"},
                     "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                     "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}})
        self.engine.start(container)
        self._await_health(settings)
        self.publish_dashboard(settings)
        return self.status()

    def publish_dashboard(self, settings: AgentSettings) -> str | None:
        """Route the dashboard's domain (TLS when it has options for it) or port through the proxy to the agent;
        with neither, no route. The URL it is served on."""
        from headway.proxy.nginx import Proxy
        from headway.proxy.routes import Route

        proxy = Proxy(self.engine, self.root)
        if not settings.dashboard_port or not (settings.dashboard_domain or settings.dashboard_public_port):
            if proxy.routes.get(DASHBOARD_APP, DASHBOARD_ENV) is not None:
                proxy.drop_route(DASHBOARD_APP, DASHBOARD_ENV)
            return None
        tls = None
        if settings.dashboard_domain and settings.dashboard_tls is not None:
            from headway.proxy.certificates import ensure_certificate

            tls = ensure_certificate(_dashboard_target(settings, self.root), proxy)
        route = Route(app=DASHBOARD_APP, environment=DASHBOARD_ENV, release=__version__, deploy=1,
                      domains=[settings.dashboard_domain] if settings.dashboard_domain else [],
                      port=settings.dashboard_public_port, upstreams=[f"127.0.0.1:{settings.dashboard_port}"],
                      tls=tls)
        proxy.set_route(route)
        return dashboard_url(settings)

    def _await_health(self, settings: AgentSettings, timeout: float = 60.0) -> None:
        import time

        from headway.observe.health import http_get

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                status, _, body = http_get(f"http://{settings.bind}:{settings.port}/metrics", None, 2.0)
                if status == 200:
                    return
                last = f"{status} {body[:200]}"
            except OSError as exc:
                last = str(exc)
            c = self.engine.get(settings.name)
            if c is not None and not self.engine.state(c).get("Running") and \
                    self.engine.state(c).get("Status") == "exited":
                raise AgentError("the agent exited at start", "see `headway agent logs`",
                                 details=self.engine.last_lines(c, 20))
            time.sleep(0.25)  # the agent's start-up, polled
        raise AgentError(f"the agent did not answer on {settings.bind}:{settings.port} within {timeout:.0f}s",
                         "see `headway agent logs`", details=last)

    def status(self) -> AgentStatus:
        import json

        settings = self.settings()
        c = self.engine.get(settings.name)
        running = c is not None and bool(self.engine.state(c).get("Running"))
        last = None
        path = self.dir / "last-round.json"
        if path.exists():
            try:
                last = json.loads(path.read_text())
            except ValueError:
                last = None
        image = str((c.attrs.get("Config") or {}).get("Image", "")) if c is not None else None
        return AgentStatus(running=running, container=settings.name, image=image, port=settings.port,
                           version=__version__ if running else None, last_round=last,
                           dashboard=dashboard_url(settings))

    def logs(self, *, follow: bool = False, tail: int = 100) -> Iterator[str]:
        c = self.engine.get(self.settings().name)
        if c is None:
            raise AgentError("the agent is not running", "run `headway agent boot`")
        yield from self.engine.logs(c, tail=tail, follow=follow)

    def stop(self) -> bool:
        c = self.engine.get(self.settings().name)
        if c is None:
            return False
        self.engine.remove(c)
        return True


def _requirements(wheel: Path) -> str:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    deps = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return "\n".join(d for d in deps if "extra ==" not in d) + "\n"


def dashboard_url(settings: AgentSettings) -> str | None:
    """Where the dashboard is reached: its domain, a port of the proxy, or the host's loopback (a tunnel)."""
    if not settings.dashboard_port:
        return None
    if settings.dashboard_domain:
        return f"{'https' if settings.dashboard_tls is not None else 'http'}://{settings.dashboard_domain}/"
    if settings.dashboard_public_port:
        return f"http://<this host>:{settings.dashboard_public_port}/"
    return f"http://127.0.0.1:{settings.dashboard_port}/ (on the host: ssh -L {settings.dashboard_port}:127.0.0.1:" \
        f"{settings.dashboard_port})"


def _dashboard_target(settings: AgentSettings, root: Path) -> Any:
    """The dashboard as the one-role environment certificates are issued for (proxy/certificates.py)."""
    from headway.config.model import AppConfig
    from headway.config.resolve import resolve

    config = AppConfig.model_validate({
        "app": DASHBOARD_APP, "roles": {"dashboard": {"port": settings.dashboard_port}},
        "environments": {DASHBOARD_ENV: {"domains": [settings.dashboard_domain],
                                         "tls": settings.dashboard_tls or True}}})
    return resolve(config, DASHBOARD_ENV, root, withheld=True)


def _require_free_port(bind: str, port: int, option: str = "--port") -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError:
            raise AgentError(f"port {port} on {bind} is taken, the agent cannot listen there",
                             f"free it, or boot the agent on another port: `headway agent boot {option} "
                             f"{port + 1}`") from None
