"""Labels on every Docker object headway owns, and the names it gives them."""

from __future__ import annotations

PREFIX = "dev.headway"
MANAGED = f"{PREFIX}.managed"
APP = f"{PREFIX}.app"
ENVIRONMENT = f"{PREFIX}.environment"
ROLE = f"{PREFIX}.role"
RELEASE = f"{PREFIX}.release"  # the version a person reads: git sha or --version
DEPLOY = f"{PREFIX}.deploy"  # the deploy number in the release history
COLOR = f"{PREFIX}.color"
KIND = f"{PREFIX}.kind"  # app | accessory | oneoff | proxy | network | volume
CONFIG_HASH = f"{PREFIX}.config-hash"


def owned(kind: str, **fields: str | int | None) -> dict[str, str]:
    labels = {MANAGED: "true", KIND: kind}
    keys = {"app": APP, "environment": ENVIRONMENT, "role": ROLE, "release": RELEASE, "deploy": DEPLOY,
            "color": COLOR, "config_hash": CONFIG_HASH}
    for name, value in fields.items():
        if value is not None:
            labels[keys[name]] = str(value)
    return labels


def selector(**fields: str | int | None) -> list[str]:
    """A Docker label filter list for the given fields, e.g. app=shop, environment=staging."""
    keys = {"app": APP, "environment": ENVIRONMENT, "role": ROLE, "release": RELEASE, "deploy": DEPLOY,
            "color": COLOR, "kind": KIND}
    out = [f"{MANAGED}=true"]
    out += [f"{keys[k]}={v}" for k, v in fields.items() if v is not None]
    return out


def network_name(app: str, environment: str) -> str:
    return f"hw-{app}-{environment}"


def container_name(app: str, environment: str, role: str, deploy: int, index: int) -> str:
    return f"{app}-{environment}-{role}-{deploy}-{index}"


def accessory_name(app: str, environment: str, accessory: str) -> str:
    return f"{app}-{environment}-{accessory}"


def volume_name(app: str, environment: str, accessory: str, volume: str) -> str:
    return f"{app}-{environment}-{accessory}-{volume}"
