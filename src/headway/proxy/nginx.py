"""headway's nginx: one per host, shared by every app and environment, reconfigured without dropping a connection.

Two kinds of change. Where traffic goes (releases, peers, canary weights, maintenance on/off) is *routing*: plain
data posted to the proxy's control endpoint and read by a few lines of lua on each request, so no reload happens
and no client connection of any app is closed. What the proxy listens on and how (domains, ports, certificates,
edge settings) is *structure*: rendered into a fresh config tree, checked with `nginx -t` inside the proxy
container, and only then made live by swapping the `current` symlink and sending SIGHUP. A config that does not
validate never goes live, so one app cannot take the others down.
"""

from __future__ import annotations

import errno
import hashlib
import html
import fcntl
import functools
import http.client
import importlib.resources
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from headway import faults
from headway.engine import labels as L
from headway.engine.base import Engine

if TYPE_CHECKING:
    from headway.engine.base import Container
from headway.errors import ProxyError
from headway.observe.health import http_get
from headway.proxy.routes import Route, RouteTable, peer_address
from headway.proxy.routing import RoutingState, parse_state, render_state
from headway.state.files import atomic_write as _atomic_write

MOUNT = "/etc/headway"
KEEP_TREES = 5
PLACEHOLDER = "@@GENERATION@@"
DEFAULT_IMAGE = "openresty/openresty:bookworm"
PRE_LUA_IMAGES = {"nginx:stable"}  # the default before routing moved into lua: boot moves to DEFAULT_IMAGE


class ProxySettings(BaseModel):
    name: str = "headway-proxy"
    image: str = DEFAULT_IMAGE
    http_port: int = 80
    https_port: int = 443
    control_port: int = 8765
    drain_timeout: float = 30.0


class ProxyStatus(BaseModel):
    running: bool
    container: str
    image: str
    generation: str | None
    http_port: int
    routes: list[Route]
    routing: dict[str, str] = {}  # route key -> "release (deploy N)" as the proxy serves it now


@functools.cache
def _template() -> Any:
    import jinja2  # imported when a config is rendered, not on every CLI start

    env = jinja2.Environment(loader=jinja2.PackageLoader("headway.proxy", "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)
    return env.get_template("nginx.conf.j2")


class Proxy:
    def __init__(self, engine: Engine, state_dir: Path) -> None:
        self.engine = engine
        self.dir = state_dir / "proxy"
        self.routes = RouteTable(self.dir / "routes")

    # -- settings ---------------------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.dir / "settings.json"

    def settings(self) -> ProxySettings:
        if self.settings_path.exists():
            settings = ProxySettings.model_validate_json(self.settings_path.read_text())
            if settings.image in PRE_LUA_IMAGES:
                settings = settings.model_copy(update={"image": DEFAULT_IMAGE})
            return settings
        return ProxySettings()

    def container(self) -> Container | None:
        return self.engine.get(self.settings().name)

    def is_running(self) -> bool:
        c = self.container()
        return c is not None and self.engine.state(c).get("Running", False)

    # -- boot -------------------------------------------------------------------------------------------
    def boot(self, *, image: str | None = None, http_port: int | None = None, control_port: int | None = None,
             name: str | None = None, https_port: int | None = None) -> ProxyStatus:
        """Start the proxy (or restart it on new settings), serving every route already recorded."""
        with self._locked():
            old = self.settings()
            settings = old.model_copy(update={k: v for k, v in {
                "image": image, "http_port": http_port, "control_port": control_port, "name": name,
                "https_port": https_port}.items()
                if v is not None})
            existing = self.engine.get(settings.name)
            restarts_always = existing is not None and \
                (existing.attrs.get("HostConfig") or {}).get("RestartPolicy", {}).get("Name") == "always"
            if existing is not None and self.engine.state(existing).get("Running") and settings == old \
                    and restarts_always:
                live = os.readlink(self.dir / "current").rpartition("/")[2] if (self.dir / "current").exists() \
                    else None
                if live:
                    self._await_generation(live, settings, existing)  # e.g. just restarted: wait until it serves
                return self.status()
            self.engine.require_image(settings.image, "proxy")
            if existing is not None:
                self.engine.remove(existing)
            ports = {settings.http_port, *_listen_ports(self.routes.all(), settings)}
            _require_free_ports(ports | {settings.control_port}, owned=set())
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "logs").mkdir(exist_ok=True)
            self.settings_path.write_text(settings.model_dump_json(indent=2))
            routes = self.routes.all()
            generation = self._render(routes, settings)
            self._write_routing_file(render_state(routes, self._certificates(routes)))
            self._point_current_at(generation)
            container = self.engine.create(
                name=settings.name, image=settings.image,
                command=["nginx", "-c", f"{MOUNT}/current/nginx.conf", "-g", "daemon off;"],
                env={}, labels=L.owned("proxy"), network=None, network_mode="host", restart="always",
                volumes={str(self.dir.resolve()): {"bind": MOUNT, "mode": "rw"}})
            container.start()
            self._await_generation(generation, settings, container)
            return self.status()

    def status(self) -> ProxyStatus:
        settings = self.settings()
        c = self.engine.get(settings.name)
        running = c is not None and bool(self.engine.state(c).get("Running"))
        served = self.served() if running else None
        return ProxyStatus(running=running, container=settings.name, image=settings.image,
                           generation=self._live_generation(settings) if running else None,
                           http_port=settings.http_port, routes=list(self.routes.all().values()),
                           routing={k: f"{r.release} (deploy {r.deploy})" for k, r in
                                    (served.routes.items() if served else [])})

    def logs(self, *, follow: bool = False, tail: int = 100) -> Iterator[str]:
        c = self.container()
        if c is None:
            raise ProxyError("the proxy is not running", "run `headway proxy boot`")
        yield from self.engine.logs(c, tail=tail, follow=follow)

    @property
    def access_log(self) -> Path:
        return self.dir / "logs" / "access.log"

    # -- changing routes --------------------------------------------------------------------------------
    def apply(self, change: Callable[[dict[str, Route]], None]) -> str:
        """Change the route table. Routing alone goes live through the control endpoint (no reload); a change
        of structure is validated with nginx -t, then made live by a reload. Returns the live generation."""
        with self._locked():
            settings = self.settings()
            container = self.container()
            if container is None or not self.engine.state(container).get("Running"):
                raise ProxyError("the headway proxy is not running", "run `headway proxy boot`")
            before = self.routes.all()
            after = {k: v.model_copy(deep=True) for k, v in before.items()}
            change(after)
            _check_conflicts(after, settings, before)
            new_ports = _listen_ports(after, settings) - _listen_ports(before, settings)
            _require_free_ports(new_ports, owned=set())
            state = render_state(after, self._certificates(after))
            live = self._current_generation()
            projection = self._projection(after, settings)
            same = live is not None and self._tree_file(live, "projection.sha256") == projection
            structure = ""
            if not same:
                structure = self._structure(after, settings)
                same = live is not None and self._tree_file(live, "structure.sha256") == _digest(structure)
            if same and live is not None:
                self._commit_routing(after, state, settings)
                (self.dir / "trees" / live / "projection.sha256").write_text(projection)
                return live
            generation = self._write_tree(structure, settings, projection)
            self._validate(container, generation)
            self._commit_routing(after, state, settings)  # the running workers route the new way first
            self._point_current_at(generation)
            reload = self.engine.signal_main_process(container, ["nginx", "-s", "reload", "-c",
                                                                 f"{MOUNT}/current/nginx.conf"])
            if reload.exit_code != 0:
                raise ProxyError("the proxy did not reload", "see `headway proxy logs`", details=reload.output)
            self._await_generation(generation, settings, container)
            self._prune_trees(keep=generation)
            return generation

    def preflight(self, route: Route) -> None:
        """Would this route clash with another app's domains or ports, or need a port something else holds?
        Raises ProxyError naming every problem; changes nothing."""
        settings = self.settings()
        before = self.routes.all()
        after = {**before, route.key: route}
        problems = _conflicts(after, settings, {route.key})
        new_ports = _listen_ports(after, settings) - _listen_ports(before, settings)
        for port in sorted(new_ports):
            try:
                _require_free_ports({port}, owned=set())
            except ProxyError as exc:
                problems.append((exc.message, exc.fix or ""))
        if problems:
            first, rest = problems[0], problems[1:]
            raise ProxyError(first[0] + (f" (and {len(rest)} more problem(s))" if rest else "") +
                             "; nothing was built or changed", "; ".join(fix for _, fix in problems),
                             details="\n".join(msg for msg, _ in problems) if rest else None)

    def _commit_routing(self, routes: dict[str, Route], state: str, settings: ProxySettings) -> None:
        """Make `routes` what is served: certificates and routing to the proxy first (it is the truth), then
        the files on the host that say so."""
        self._push_certificates(routes, settings)
        self._push_routing(state, settings)
        faults.point("proxy:routed")
        self._write_routing_file(state)
        self.routes.save(routes)

    def served(self) -> RoutingState | None:
        """The routing the proxy's workers use right now; None when the proxy does not answer."""
        try:
            status, _, body = http_get(f"http://127.0.0.1:{self.settings().control_port}/routing", None, 2.0,
                                       limit=4 << 20)
        except (OSError, http.client.HTTPException):
            return None
        return parse_state(body) if status == 200 else None

    def _push_routing(self, state: str, settings: ProxySettings) -> None:
        expected = parse_state(state)
        assert expected is not None
        self._control_post(settings, "/routing", state.encode(), expected.version, "the new routing")

    def _control_post(self, settings: ProxySettings, path: str, body: bytes, expected: str, what: str) -> None:
        """POST to the proxy's loopback control endpoint; it answers with the version it now serves."""
        conn = http.client.HTTPConnection("127.0.0.1", settings.control_port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
            resp = conn.getresponse()
            answer = resp.read().decode(errors="replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            raise ProxyError(f"the proxy did not take {what}; nothing was changed",
                             "see `headway proxy logs`; `headway proxy boot` restarts it", details=str(exc)) from None
        finally:
            conn.close()
        if resp.status != 200 or answer != expected:
            raise ProxyError(f"the proxy did not take {what}; nothing was changed",
                             "see `headway proxy logs`; `headway proxy boot` restarts it",
                             details=f"{resp.status}: {answer[:200]}")

    def _push_certificates(self, routes: dict[str, Route], settings: ProxySettings) -> None:
        """Certificates whose files changed since the proxy last got them: posted to its control endpoint (it
        serves them from the next handshake on). The proxy's workers cannot read the 0600 key files."""
        certificates = self._certificates(routes)
        if not certificates:
            return
        served = self.served()
        for key, version in certificates.items():
            got = served.routes.get(key) if served else None
            if got is not None and got.certificate == version:
                continue
            route = routes[key]
            assert route.tls is not None
            try:
                body = (self.dir / route.tls.certificate).read_bytes().rstrip(b"\n") + b"\n--\n" + \
                    (self.dir / route.tls.key).read_bytes()
            except OSError:
                continue  # nothing to serve yet; nginx -t has the final word on the files
            self._control_post(settings, f"/certificate?key={key}&version={version}", body, version,
                               f"the new certificate of {key}")

    def _write_routing_file(self, state: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.dir / "routing.state", state)

    def resync(self) -> RoutingState | None:
        """After an interrupted change: make the files on the host say what the proxy serves (the proxy is the
        truth), and push the files' routing when the proxy lost it. Returns what is served."""
        with self._locked():
            served = self.served()
            routes = self.routes.all()
            if served is None:
                return None
            changed = False
            for key, route in routes.items():
                got = served.routes.get(key)
                if got is None:
                    continue
                update = got.apply_to(route)
                if update != route:
                    routes[key] = update
                    changed = True
            if changed:
                self.routes.save(routes)
            state = render_state(routes, self._certificates(routes))
            if parse_state(state) != served:
                self._push_certificates(routes, self.settings())
                self._push_routing(state, self.settings())
            self._write_routing_file(state)
            return parse_state(state)

    def set_route(self, route: Route) -> str:
        def change(routes: dict[str, Route]) -> None:
            routes[route.key] = route
        return self.apply(change)

    def drop_route(self, app: str, environment: str) -> str:
        def change(routes: dict[str, Route]) -> None:
            routes.pop(f"{app}--{environment}", None)
        return self.apply(change)

    def wait_drained(self, timeout: float, peers: list[str] | None = None) -> bool:
        """Wait until the requests in flight to `peers` (role@ip:port or ip:port) have finished, and workers of
        earlier configs with them."""
        peers = [peer_address(p) for p in peers or []]
        container = self.container()
        if container is None:
            return True
        port = self.settings().control_port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            if peers:
                try:
                    _, _, body = http_get(f"http://127.0.0.1:{port}/active?peers={','.join(peers)}", None, 2.0)
                    busy = int(body.strip() or 0) > 0
                except (OSError, http.client.HTTPException, ValueError):
                    busy = False
            if not busy:
                titles = [p[-1] for p in container.top(ps_args="-eo pid,args").get("Processes") or []]
                busy = any("shutting down" in t for t in titles)
            if not busy:
                return True
            time.sleep(0.05)  # nginx gives no event when a request ends
        return False

    # -- internals --------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "proxy.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _render(self, routes: dict[str, Route], settings: ProxySettings) -> str:
        return self._write_tree(self._structure(routes, settings), settings, self._projection(routes, settings))

    def _certificates(self, routes: dict[str, Route]) -> dict[str, str]:
        """Route key -> digest of its certificate and key as the files hold them now."""
        return {key: _file_digest(self.dir / r.tls.certificate)[:8] + _file_digest(self.dir / r.tls.key)[:8]
                for key, r in routes.items() if r.tls is not None}

    def _projection(self, routes: dict[str, Route], settings: ProxySettings) -> str:
        """A digest of everything the config is rendered from (routing left out): equal digests, equal configs,
        so a routing change needs no rendering at all."""
        items = []
        for key in sorted(routes):
            route = routes[key]
            item = route.model_dump(mode="json", exclude={"release", "deploy", "upstreams", "canary",
                                                          "maintenance", "maintenance_rules"})
            rules = route.maintenance or route.maintenance_rules
            item["rules"] = rules.model_dump(mode="json", include={"exempt_paths", "retry_after"}) \
                if rules else None
            items.append(item)
        return _digest(json.dumps({"routes": items, "settings": settings.model_dump(mode="json"),
                                   "template": _template_digest()}, sort_keys=True))

    def _structure(self, routes: dict[str, Route], settings: ProxySettings) -> str:
        """The config for these routes, with a placeholder for its generation; routing is not part of it."""
        self._write_pages(routes)
        return str(_template().render(
            generation=PLACEHOLDER, routes=sorted(routes.values(), key=lambda r: r.key),
            http_port=settings.http_port, https_port=settings.https_port, control_port=settings.control_port,
            drain_timeout=int(settings.drain_timeout), root=MOUNT))

    def _write_tree(self, structure: str, settings: ProxySettings, projection: str) -> str:
        generation = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:6]}"
        tree = self.dir / "trees" / generation
        tree.mkdir(parents=True)
        self._install_lua()
        (tree / "nginx.conf").write_text(structure.replace(PLACEHOLDER, generation))
        (tree / "structure.sha256").write_text(_digest(structure))
        (tree / "projection.sha256").write_text(projection)
        return generation

    def _install_lua(self) -> None:
        source = importlib.resources.files("headway.proxy").joinpath("lua/headway.lua").read_text()
        path = self.dir / "lua" / "headway.lua"
        if not path.exists() or path.read_text() != source:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, source)

    def _current_generation(self) -> str | None:
        link = self.dir / "current"
        if not link.is_symlink():
            return None
        return os.readlink(link).rpartition("/")[2] or None

    def _tree_file(self, generation: str, name: str) -> str | None:
        try:
            return (self.dir / "trees" / generation / name).read_text().strip()
        except OSError:
            return None

    def _write_pages(self, routes: dict[str, Route]) -> None:
        """Maintenance pages live beside the config, so a proxy restart serves them as they were."""
        pages = self.dir / "maintenance"
        pages.mkdir(parents=True, exist_ok=True)
        (self.dir / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True, exist_ok=True)
        for route in routes.values():
            if route.maintenance is not None:
                path = pages / f"{route.key}.html"
                if not path.exists():
                    path.write_text(maintenance_page(route.maintenance.message))

    def install_error_pages(self, key: str, pages: dict[int, Path]) -> dict[int, str]:
        """Copy an environment's custom error pages beside the config; return status -> file name."""
        if not pages:
            return {}
        target = self.dir / "pages" / key / "__headway_errors"
        target.mkdir(parents=True, exist_ok=True)
        out = {}
        for status, source in pages.items():
            if not source.is_file():
                raise ProxyError(f"error page for {status}: {source} does not exist",
                                 "fix proxy.error_pages in headway.yml")
            shutil.copyfile(source, target / f"{status}.html")
            out[status] = f"{status}.html"
        return out

    def set_maintenance_page(self, key: str, html: str) -> None:
        pages = self.dir / "maintenance"
        pages.mkdir(parents=True, exist_ok=True)
        tmp = pages / f".{key}.html.tmp"
        tmp.write_text(html)
        os.replace(tmp, pages / f"{key}.html")

    def _validate(self, container: Container, generation: str) -> None:
        result = self.engine.exec(container, ["nginx", "-t", "-q", "-c", f"{MOUNT}/trees/{generation}/nginx.conf"],
                                  timeout=30)
        if result.exit_code != 0:
            shutil.rmtree(self.dir / "trees" / generation, ignore_errors=True)
            message = result.output.strip().replace(f"{MOUNT}/trees/{generation}/", "")
            raise ProxyError("the new proxy config does not validate; nothing was changed",
                             "see nginx's message below; the previous config keeps serving",
                             details=message)

    def _point_current_at(self, generation: str) -> None:
        tmp = self.dir / f".current-{generation}"
        os.symlink(f"trees/{generation}", tmp)
        os.replace(tmp, self.dir / "current")

    def _live_generation(self, settings: ProxySettings) -> str | None:
        try:
            status, _, body = http_get(f"http://127.0.0.1:{settings.control_port}/generation", None, 1.0)
            return body if status == 200 else None
        except (OSError, http.client.HTTPException):
            return None

    def _await_generation(self, generation: str, settings: ProxySettings, container: Container) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._live_generation(settings) == generation:
                return
            state = self.engine.state(container)
            if not state.get("Running"):
                raise ProxyError("the proxy container stopped", "see `headway proxy logs`",
                                 details=self.engine.last_lines(container))
            time.sleep(0.02)  # nginx has no reload-complete event; the control endpoint is the signal
        raise ProxyError("the proxy did not pick up its new config within 15 s", "see `headway proxy logs`",
                         details=self.engine.last_lines(container))

    def _prune_trees(self, keep: str) -> None:
        trees = sorted((self.dir / "trees").iterdir(), key=lambda p: p.name)
        for old in trees[:-KEEP_TREES]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)


@functools.cache
def _template_digest() -> str:
    source = importlib.resources.files("headway.proxy").joinpath("templates/nginx.conf.j2").read_bytes()
    lua = importlib.resources.files("headway.proxy").joinpath("lua/headway.lua").read_bytes()
    return hashlib.sha256(source + lua).hexdigest()[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def maintenance_page(message: str) -> str:
    text = html.escape(message)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Down for maintenance</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;"
            "margin:15vh auto;padding:0 1rem;color:#222}h1{font-size:1.6rem}</style></head>"
            f"<body><h1>Down for maintenance</h1><p>{text}</p></body></html>\n")


def _check_conflicts(routes: dict[str, Route], settings: ProxySettings, before: dict[str, Route]) -> None:
    changed = {k for k, r in routes.items() if k not in before or (before[k].domains, before[k].port) !=
               (r.domains, r.port)}
    problems = _conflicts(routes, settings, changed)
    if problems:
        first, rest = problems[0], problems[1:]
        raise ProxyError(first[0] + (f" (and {len(rest)} more clash(es))" if rest else ""),
                         "; ".join(fix for _, fix in problems),
                         details="\n".join(msg for msg, _ in problems) if rest else None)


def _conflicts(routes: dict[str, Route], settings: ProxySettings, newcomers: set[str]) -> list[tuple[str, str]]:
    """Every domain and port clash between routes: (message, fix) each. Routes already on the host own what
    they have; the `newcomers` are the ones that clash."""
    domains: dict[str, str] = {}
    ports: dict[int, str] = {}
    problems: list[tuple[str, str]] = []
    for route in sorted(routes.values(), key=lambda r: (r.key in newcomers, r.key)):
        owner = f"{route.app}/{route.environment}"
        for d in route.domains:
            if d in domains and domains[d] != owner:
                problems.append((f"domain {d} is already served by {domains[d]}",
                                 f"pick another domain for {owner}, or remove {domains[d]} first"))
            domains.setdefault(d, owner)
        if route.port:
            if route.port in (settings.http_port, settings.control_port, settings.https_port):
                problems.append((f"port {route.port} is the proxy's own port",
                                 f"publish {owner} on another port, or route it by domain"))
            elif route.port in ports and ports[route.port] != owner:
                problems.append((f"port {route.port} is already published by {ports[route.port]}",
                                 f"pick another port for {owner}"))
            ports.setdefault(route.port, owner)
    return problems


def _listen_ports(routes: dict[str, Route], settings: ProxySettings) -> set[int]:
    ports = {r.port for r in routes.values() if r.port}
    if any(r.tls and r.domains for r in routes.values()):
        ports.add(settings.https_port)
    return ports


def _require_free_ports(ports: set[int], owned: set[int]) -> None:
    for port in sorted(ports - owned):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ProxyError(f"port {port} is already in use on this host",
                                     f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or pick another "
                                     "port") from None
                raise
