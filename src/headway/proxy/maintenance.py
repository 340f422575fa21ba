"""Maintenance mode: the proxy answers 503 with a page and Retry-After, except for health paths and allowed IPs.

The state is part of the route on the host, so it survives proxy restarts and later deploys.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from headway.config.resolve import Target
from headway.errors import ConfigError, NotFound
from headway.proxy.nginx import Proxy, maintenance_page
from headway.proxy.routes import Route, RouteMaintenance
from headway.state.store import now_iso


def check_addresses(addresses: list[str]) -> list[str]:
    out = []
    for item in addresses:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"--allow {item!r} is not an IP address or network",
                              "give addresses like 203.0.113.7 or 10.0.0.0/8") from None
    return out


def set_maintenance(proxy: Proxy, target: Target, *, on: bool, message: str | None = None,
                    allow: list[str] | None = None, page: Path | None = None, retry_after: int = 120) -> Route:
    route = proxy.routes.get(target.app, target.environment)
    if route is None:
        raise NotFound(f"{target.app}/{target.environment} has never been deployed, so there is nothing to put "
                       "into maintenance", f"deploy it first: `headway deploy -e {target.environment}`")
    key = route.key
    if on:
        allowed = check_addresses(allow or [])
        if page is not None:
            if not page.is_file():
                raise ConfigError(f"maintenance page {page} does not exist", "pass an HTML file with --page")
            html = page.read_text()
        else:
            html = maintenance_page(message or RouteMaintenance().message)
        exempt = target.public_health_paths
        proxy.set_maintenance_page(key, html)
        state = RouteMaintenance(message=message or RouteMaintenance().message, allow=allowed,
                                 exempt_paths=exempt, retry_after=retry_after, since=now_iso())
    else:
        state = None

    def change(routes: dict[str, Route]) -> None:
        route = routes[key]
        rules = state.model_copy(update={"message": "", "since": ""}) if state is not None \
            else route.maintenance_rules
        routes[key] = route.model_copy(update={"maintenance": state, "maintenance_rules": rules})

    proxy.apply(change)
    result = proxy.routes.get(target.app, target.environment)
    assert result is not None
    return result
