"""Routing: where each app's requests go, as the proxy's lua reads it (see proxy/lua/headway.lua).

The state is text, one line per route, so the proxy parses it without a JSON library and a person can read it:

    v <version>
    r <key> <release> <deploy> <peers> <canary release> <canary deploy> <canary peers> <weight> <sticky> <maint>
      <allowed> <certificate>

`peers`: `role@ip:port` separated by commas (`-` for none); each path of the route's config names the role whose
peers serve it, so one line switches every role of a release at once.

`allowed`: the networks a maintenance window lets through, as hex bytes/prefix bits (so the proxy compares them
with the client's binary address without parsing text). `certificate`: a digest of the route's certificate and
key files; when it changes the proxy loads the files at the next TLS handshake (no reload).

`version` is a digest of the lines: the same routing always has the same version, and the control endpoint
answers a POST with the version it now serves, which is how headway confirms a change.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from headway.errors import ProxyError
from headway.proxy.routes import Route, RouteCanary, RouteMaintenance

_PEER = re.compile(r"^([a-z0-9-]+@)?(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$")
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ServedRoute:
    release: str
    deploy: int
    peers: list[str] = field(default_factory=list)
    canary_release: str = ""
    canary_deploy: int = 0
    canary_peers: list[str] = field(default_factory=list)
    weight: int = 0
    sticky: str = "none"
    maintenance: bool = False
    allow: list[str] = field(default_factory=list)  # CIDRs, as RouteMaintenance.allow
    certificate: str = ""  # digest of the certificate files; "" without TLS

    def apply_to(self, route: Route) -> Route:
        """`route` with what this says is served (the files on the host follow the proxy)."""
        canary = route.canary
        if self.weight > 0 and self.canary_peers:
            canary = RouteCanary(release=self.canary_release, deploy=self.canary_deploy,
                                 upstreams=list(self.canary_peers), weight=self.weight,
                                 sticky=None if self.sticky == "none" else self.sticky)
        else:
            canary = None
        maintenance = route.maintenance
        if self.maintenance:
            base = maintenance or route.maintenance_rules or RouteMaintenance()
            maintenance = base.model_copy(update={"allow": list(self.allow)})
        else:
            maintenance = None
        return route.model_copy(update={"release": self.release, "deploy": self.deploy,
                                        "upstreams": list(self.peers), "canary": canary,
                                        "maintenance": maintenance})


@dataclass(frozen=True)
class RoutingState:
    version: str
    routes: dict[str, ServedRoute]


def _field(text: str) -> str:
    return quote(text, safe="") if text else "-"


def _peers(peers: list[str]) -> str:
    return ",".join(peers) if peers else "-"


def served_route(route: Route, certificate: str = "") -> ServedRoute:
    canary = route.canary
    return ServedRoute(
        release=route.release, deploy=route.deploy, peers=list(route.upstreams),
        canary_release=canary.release if canary else "", canary_deploy=canary.deploy if canary else 0,
        canary_peers=list(canary.upstreams) if canary else [], weight=canary.weight if canary else 0,
        sticky=(canary.sticky or "none") if canary else "none",
        maintenance=route.maintenance is not None,
        allow=list(route.maintenance.allow) if route.maintenance else [], certificate=certificate)


def render_state(routes: dict[str, Route], certificates: dict[str, str] | None = None) -> str:
    """The routing of these routes; a peer that is not ip:port is refused before anything changes.
    `certificates`: route key -> digest of its certificate files."""
    lines = []
    for key in sorted(routes):
        s = served_route(routes[key], (certificates or {}).get(key, ""))
        bad = [p for p in s.peers + s.canary_peers if not _PEER.match(p)]
        if bad or not _KEY.match(key):
            raise ProxyError(f"route {key}: {bad[0] if bad else key!r} is not a valid ip:port peer; nothing was "
                             "changed", "this is a bug in what built the route; the previous routing keeps serving")
        lines.append(" ".join([
            "r", key, _field(s.release), str(s.deploy), _peers(s.peers), _field(s.canary_release),
            str(s.canary_deploy), _peers(s.canary_peers), str(s.weight), s.sticky, "1" if s.maintenance else "0",
            _networks(s.allow), s.certificate or "-"]))
    body = "".join(line + "\n" for line in lines)
    version = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"v {version}\n{body}"


def parse_state(text: str) -> RoutingState | None:
    version = None
    routes: dict[str, ServedRoute] = {}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "v" and len(f) >= 2:
            version = f[1]
        elif f[0] == "r" and len(f) >= 11:
            routes[f[1]] = ServedRoute(
                release=_text(f[2]), deploy=int(f[3]), peers=_peer_list(f[4]), canary_release=_text(f[5]),
                canary_deploy=int(f[6]), canary_peers=_peer_list(f[7]), weight=int(f[8]), sticky=f[9],
                maintenance=f[10] == "1", allow=_network_list(f[11]) if len(f) > 11 else [],
                certificate=f[12] if len(f) > 12 and f[12] != "-" else "")
        else:
            return None
    return RoutingState(version, routes) if version else None


def _networks(cidrs: list[str]) -> str:
    out = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        out.append(f"{net.network_address.packed.hex()}/{net.prefixlen}")
    return ",".join(out) if out else "-"


def _network_list(field_: str) -> list[str]:
    if field_ == "-":
        return []
    out = []
    for item in field_.split(","):
        hexbytes, _, bits = item.partition("/")
        raw = bytes.fromhex(hexbytes)
        address = ipaddress.ip_address(raw)
        out.append(str(ipaddress.ip_network(f"{address}/{bits}", strict=False)))
    return out


def _text(field_: str) -> str:
    return "" if field_ == "-" else unquote(field_)


def _peer_list(field_: str) -> list[str]:
    return [] if field_ == "-" else field_.split(",")
