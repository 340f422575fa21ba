"""What an environment asks the host's agent to watch: `monitor.json` in its state directory.

headway writes it at every deploy, rollback and `alerts test` (`write_spec`): the environment's domains and port,
the health check of each HTTP role, its databases, its alert rules, its autoscale policy and its notification
channels with their secrets filled in (the file is 0600, like the host's other secrets). The agent reads every one
of them each round (`read_specs`), so it needs no headway.yml and follows what the host runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headway.config.resolve import Target

SPEC = "monitor.json"


def write_spec(target: Target, state_root: Path) -> Path:
    """monitor.json for `target`: what the agent checks and whom it tells (secrets filled in, file 0600)."""
    from headway.config.model import HttpHealth

    health = []
    for role in target.http_roles:
        if isinstance(role.health, HttpHealth):
            check = role.health.path
            public = role.path + (check if check != "/" else "") if role.strip_prefix and role.path != "/" \
                else check
            health.append({"role": role.name, "port": role.port, "path": check, "public_path": public,
                           "status": role.health.status,
                           "timeout": role.health.timeout,
                           "host": role.health.host or (target.domains[0] if target.domains else None)})
    alerts = target.config.alerts_for(target.environment)
    channels = [_resolved(target, ch.model_dump(mode="json", by_alias=True, exclude_none=True))
                for ch in alerts.channels]
    from headway.data.databases import resolve_databases

    databases = [{"name": name, "engine": db.engine, "schedule": db.backup.schedule,
                  "container": db.container_name, "managed": db.external_url is None, "database": db.database}
                 for name, db in resolve_databases(target).items()]
    spec = {"app": target.app, "environment": target.environment, "written_at": time.time(),
            "domains": target.domains, "port": target.port, "health": health, "databases": databases,
            "tls": target.tls is not None,
            "swarm": target.config.environments[target.environment].swarm is not None,
            "alerts": rules_data(alerts, skip={"channels"}),
            "autoscale": autoscale_spec(target),
            "channels": channels}
    path = state_root / "apps" / target.app / target.environment / SPEC
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SPEC}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(spec, indent=2))
    os.replace(tmp, path)
    return path


def autoscale_spec(target: Target) -> dict[str, Any] | None:
    """The environment's merged autoscale policy for the agent, with each role's CPU limit (a CPU target is a
    share of it)."""
    policy = target.config.autoscale_for(target.environment)
    if not policy.active:
        return None
    return {**policy.to_data(), "limits": {name: role.resources.cpus for name, role in target.roles.items()
                                           if role.resources is not None and role.resources.cpus}}


def rules_data(model: Any, skip: set[str] | None = None) -> dict[str, Any]:
    """A rule set as data `parse_alert_rules` reads back: spans (written with their unit in headway.yml) as
    seconds with an `s`."""
    from pydantic import BaseModel

    from headway.observe.alerts import parse_span

    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        if skip and name in skip:
            continue
        value = getattr(model, name)
        key = info.alias or name
        if isinstance(value, BaseModel):
            out[key] = rules_data(value)
        elif isinstance(value, dict):
            out[key] = {k: rules_data(v) if isinstance(v, BaseModel) else v for k, v in value.items()}
        elif value is not None and any(getattr(m, "func", None) is parse_span for m in info.metadata):
            out[key] = f"{float(value):.3f}".rstrip("0").rstrip(".") + "s"
        else:
            out[key] = value
    return out


def _resolved(target: Target, value: Any) -> Any:
    if isinstance(value, str) and "${" in value:
        return target.resolve_text("notify", value)
    if isinstance(value, dict):
        return {k: _resolved(target, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(target, v) for v in value]
    return value


def spec_channels(state_root: Path, app: str, environment: str) -> list[Any]:
    """The notification channels the environment's monitor.json has (their secrets filled in when written)."""
    from headway.observe.notify import parse_channels

    path = state_root / "apps" / app / environment / SPEC
    try:
        channels = json.loads(path.read_text()).get("channels") or []
    except (OSError, ValueError):
        return []
    return list(parse_channels(channels, filled=True))


def read_specs(state_root: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((state_root / "apps").glob(f"*/*/{SPEC}")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being rewritten: the next round reads it
    return out
