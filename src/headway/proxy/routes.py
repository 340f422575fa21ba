"""What the proxy serves: one route per app and environment, kept as files on the host."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, Field


class RouteTls(BaseModel):
    certificate: str  # paths inside the proxy's directory, e.g. certs/shop--production/fullchain.pem
    key: str
    hsts: bool = True
    redirect: bool = True


class RouteMaintenance(BaseModel):
    message: str = "We are doing some maintenance and will be back shortly."
    allow: list[str] = Field(default_factory=list)  # client addresses or CIDRs that still reach the app
    exempt_paths: list[str] = Field(default_factory=list)  # health checks keep reaching the app
    retry_after: int = 120
    since: str = ""


class RouteCanary(BaseModel):
    release: str
    deploy: int
    upstreams: list[str]
    weight: int = Field(ge=0, le=100)
    sticky: Literal["cookie", "ip"] | None = None


class RouteEdge(BaseModel):
    client_max_body_size: str = "10m"
    read_timeout: int = 60
    connect_timeout: int = 2
    gzip: bool = True
    security_headers: bool = True
    error_pages: dict[int, str] = Field(default_factory=dict)  # status -> file name under pages/<route key>/


class RoutePath(BaseModel):
    """Requests under `path` go to the peers of `role` (peers are written `role@ip:port`)."""

    role: str
    path: str = "/"
    strip_prefix: bool = False

    def contains(self, uri: str) -> bool:
        return self.path == "/" or uri == self.path or uri.startswith(self.path + "/")


def peer_role(peer: str) -> str:
    """The role of a peer written `role@ip:port`; "" for a bare ip:port (a route with one role)."""
    role, sep, _ = peer.partition("@")
    return role if sep else ""


def peer_address(peer: str) -> str:
    """ip:port of a peer, without its role."""
    return peer.rpartition("@")[2]


class Route(BaseModel):
    app: str
    environment: str
    release: str
    deploy: int
    domains: list[str] = Field(default_factory=list)
    port: int | None = None
    upstreams: list[str] = Field(default_factory=list)  # role@ip:port of each live HTTP container
    paths: list[RoutePath] = Field(default_factory=list)  # longest first in the config; none: all to one role
    edge: RouteEdge = RouteEdge()
    tls: RouteTls | None = None
    maintenance: RouteMaintenance | None = None  # on when set
    # the settings of the last maintenance (allowed addresses, exempt paths), kept when it is turned off so the
    # next toggle changes only routing, not the config
    maintenance_rules: RouteMaintenance | None = None
    canary: RouteCanary | None = None

    @property
    def key(self) -> str:
        return f"{self.app}--{self.environment}"

    @property
    def locations(self) -> list[RoutePath]:
        """The paths the config routes, longest first, always with one on / (a bare route: every role)."""
        paths = sorted(self.paths, key=lambda p: len(p.path), reverse=True)
        if not any(p.path == "/" for p in paths):
            paths.append(RoutePath(role="", path="/"))
        return paths

    def exempt_locations(self) -> list[tuple[str, RoutePath]]:
        """Each maintenance-exempt path (health checks) with the role path that serves it."""
        rules = self.maintenance or self.maintenance_rules
        out = []
        for path in rules.exempt_paths if rules else []:
            owner = next((p for p in self.locations if p.contains(path)), self.locations[-1])
            out.append((path, owner))
        return out

    @property
    def upstream_name(self) -> str:
        return f"headway_{self.app}_{self.environment}".replace("-", "_")

    @property
    def ident(self) -> str:
        """A name usable inside nginx variable names."""
        return f"{self.app}_{self.environment}".replace("-", "_")


class RouteTable:
    """The routes of every app and environment on this host, one JSON file each."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def all(self) -> dict[str, Route]:
        if not self.dir.is_dir():
            return {}
        out = {}
        for path in sorted(self.dir.glob("*.json")):
            route = Route.model_validate_json(path.read_text())
            out[route.key] = route
        return out

    def get(self, app: str, environment: str) -> Route | None:
        return self.all().get(f"{app}--{environment}")

    def save(self, routes: dict[str, Route]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = {p.stem for p in self.dir.glob("*.json")}
        for key, route in routes.items():
            tmp = self.dir / f".{key}.tmp"
            tmp.write_text(json.dumps(route.model_dump(), indent=2))
            os.replace(tmp, self.dir / f"{key}.json")
        for stale in existing - set(routes):
            (self.dir / f"{stale}.json").unlink(missing_ok=True)
