"""One app in one environment: the base config with that environment's overrides and secrets applied."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from headway.config.base import REF
from headway.config.loader import find_config, load_config
from headway.config.model import (
    AccessoryVolumes,
    AppConfig,
    CommandHealth,
    DeploySettings,
    EdgeOptions,
    HttpHealth,
    ImageBuild,
    PrebuiltImage,
    Resources,
    TlsOptions,
)
from headway.config.secrets import (
    SECRETS_MOUNT,
    SecretValues,
    check_named_secrets,
    load_secrets,
    secret_specs,
    secrets_path_for,
)
from headway.errors import ConfigError, HeadwayError



class Secrets(SecretValues):
    """Secret values; their repr never shows a value, so they cannot leak through logs or tracebacks."""

    def __repr__(self) -> str:
        return f"Secrets({', '.join(sorted(self))})"


class SecretWithheld(HeadwayError):
    """An action taken on the host (config/kept.py) needed a secret's value, which is not kept there."""


def _withheld(name: str | None, environment: str) -> SecretWithheld:
    what = f"the secret {name}, which is" if name else f"the secrets of {environment}, which are"
    return SecretWithheld(f"this needs {what} not kept on the host",
                          f"run the command where the deploys of {environment} come from (with its secrets file)")


@dataclass(frozen=True)
class RoleSpec:
    name: str
    argv: list[str] | None
    port: int | None
    replicas: int
    health: HttpHealth | CommandHealth | None
    stop_timeout: float
    resources: Resources | None
    env: dict[str, str]
    image: ImageBuild | PrebuiltImage = field(default_factory=ImageBuild)  # this role's, or the app's
    path: str = "/"
    strip_prefix: bool = False
    stop_signal: str = "SIGTERM"
    secret_names: list[str] | None = None  # None: every secret


@dataclass(frozen=True)
class AccessorySpec:
    name: str
    image: str
    argv: list[str] | None
    env: dict[str, str]
    secret_names: list[str]
    volumes: AccessoryVolumes
    port: int | None
    health: CommandHealth | None
    resources: Resources | None


@dataclass(frozen=True)
class Target:
    """Everything a deploy of `app` to `environment` needs to know, resolved and checked."""

    app: str
    environment: str
    root: Path
    config: AppConfig
    roles: dict[str, RoleSpec]
    accessories: dict[str, AccessorySpec]
    domains: list[str]
    port: int | None
    deploy: DeploySettings
    seed_argv: list[str] | None
    edge: EdgeOptions = field(default_factory=EdgeOptions)
    tls: TlsOptions | None = None
    env: dict[str, str] = field(repr=False, default_factory=dict)
    secrets: Secrets = field(repr=False, default_factory=Secrets)
    secrets_withheld: bool = False  # loaded from the config kept on the host (config/kept.py): no values

    @property
    def web_role(self) -> RoleSpec | None:
        """The HTTP role on / (else the first HTTP role)."""
        name = self.config.web_role
        return self.roles[name] if name else None

    @property
    def http_roles(self) -> list[RoleSpec]:
        """Every role that serves HTTP through the proxy, each on its own path."""
        return [r for r in self.roles.values() if r.port is not None]

    @property
    def public_health_paths(self) -> list[str]:
        """The HTTP health checks as a client requests them through the proxy (a stripped prefix put back):
        maintenance keeps them reaching the app."""
        out = set()
        for r in self.http_roles:
            if isinstance(r.health, HttpHealth):
                path = r.health.path
                if r.strip_prefix and r.path != "/":
                    path = r.path + (path if path != "/" else "")
                out.add(path)
        return sorted(out)

    @property
    def image_repository(self) -> str:
        """Where the app image is tagged when it is built here."""
        image = self.config.image
        return (image.name if isinstance(image, ImageBuild) else None) or self.app

    def container_env(self, role: RoleSpec | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The env of an app container: the role's secrets (NAME=value, or NAME_FILE=/run/secrets/NAME for
        `as: file`), then config env and role env with ${SECRET} references filled in. `role` None: the
        release/seed one-off, which gets every secret."""
        names = self.role_secrets(role)
        if self.secrets_withheld:  # which ones a role gets is not known either
            raise _withheld(None, self.environment)
        self.secrets.fetch(names)
        delivered = {f"{n}_FILE" if self.secrets.as_file(n) else n:
                     f"{SECRETS_MOUNT}/{n}" if self.secrets.as_file(n) else self.secrets[n] for n in names}
        merged = {**self.env, **(role.env if role else {})}
        values = {k: self._interpolate(k, v) for k, v in merged.items()}
        return {**delivered, **values, **(extra or {})}

    def role_secrets(self, role: RoleSpec | None) -> list[str]:
        """The secrets a role gets: those it names, or every one when it names none (and for the one-off)."""
        if role is None or role.secret_names is None:
            return self.secrets.available()
        return list(role.secret_names)

    def secret_files(self, names: list[str]) -> dict[str, str]:
        """Of `names`, the `as: file` secrets, with their values (commands run as needed)."""
        files = [n for n in names if self.secrets.as_file(n) and self.secrets.has(n)]
        self.secrets.fetch(files)
        return {n: self.secrets[n] for n in files}

    def accessory_env(self, acc: AccessorySpec) -> dict[str, str]:
        if self.secrets_withheld and acc.secret_names:
            raise _withheld(acc.secret_names[0], self.environment)
        env = {k: self._interpolate(k, v) for k, v in acc.env.items()}
        self.secrets.fetch(acc.secret_names)
        for name in acc.secret_names:
            if self.secrets.as_file(name) and name in self.secrets:
                env[f"{name}_FILE"] = f"{SECRETS_MOUNT}/{name}"
            else:
                env[name] = self.secrets[name] if name in self.secrets else self._interpolate(name, self.env[name])
        return env

    def resolve_text(self, key: str, value: str) -> str:
        """`value` with ${SECRET} / ${ENV} references filled in (`key` names it in errors)."""
        return self._interpolate(key, value)

    def _interpolate(self, key: str, value: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            self.secrets.fetch([name])
            if name in self.secrets:
                return self.secrets[name]
            if name in self.env and "${" not in self.env[name]:
                return self.env[name]
            if self.secrets_withheld:
                raise _withheld(name, self.environment)
            raise ConfigError(f"env {key} refers to ${{{name}}}, which is neither a secret nor an env var",
                              f"add {name}=... to the secrets file of {self.environment}")
        return REF.sub(sub, value)

    def config_hash(self) -> str:
        """Changes whenever anything that shapes the running containers changes (secrets included, unseen)."""
        body = json.dumps({"config": self.config.model_dump(mode="json"), "environment": self.environment,
                           "secrets": sorted((k, hashlib.sha256(v.encode()).hexdigest())
                                             for k, v in self.secrets.items()
                                             if k not in self.secrets.fetched)}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def resolve(config: AppConfig, environment: str, root: Path, *, withheld: bool = False) -> Target:
    """`withheld`: no secrets file is read (the config kept on the host, config/kept.py); what needs a value
    raises SecretWithheld."""
    if environment not in config.environments:
        known = ", ".join(config.environments)
        raise ConfigError(f"no environment {environment!r} in headway.yml (known: {known})",
                          f"use -e with one of: {known}, or add it under `environments:`")
    env_cfg = config.environments[environment]
    deploy = env_cfg.deploy or config.deploy
    roles = {}
    for name, role in config.roles.items():
        resources = env_cfg.resources.get(name, role.resources)
        roles[name] = RoleSpec(name=name, argv=role.argv, port=role.port,
                               replicas=env_cfg.replicas.get(name, role.replicas), health=role.health,
                               stop_timeout=role.stop_timeout, resources=resources, env=dict(role.env),
                               image=role.image or config.image, path=role.path, strip_prefix=role.strip_prefix,
                               stop_signal=role.stop_signal,
                               secret_names=list(role.secrets) if role.secrets is not None else None)
    accessories = {
        name: AccessorySpec(name=name, image=acc.image, argv=acc.argv, env=dict(acc.env),
                            secret_names=list(acc.secrets), volumes=acc.volume_mounts, port=acc.port,
                            health=acc.health, resources=acc.resources)
        for name, acc in config.accessories.items()
    }
    secrets_path = secrets_path_for(config, environment, root)
    specs = secret_specs(config, environment)
    needed = sorted({s for a in accessories.values() for s in a.secret_names}
                    | {m.group(1) for v in {**config.env, **env_cfg.env}.values() for m in REF.finditer(v)}
                    | _registry_refs(config))
    commands = {n for n, spec in specs.items() if spec.from_}
    env = {**config.env, **env_cfg.env}
    if withheld:
        secrets = Secrets({}, specs={}, cwd=root)
    else:
        secrets = Secrets(load_secrets(secrets_path, required=bool(set(needed) - commands)), specs=specs, cwd=root)
        missing = [n for n in needed if not secrets.has(n) and not (n in env and "${" not in env[n])]
        if missing:
            raise ConfigError(f"{secrets_path}: missing {', '.join(missing)}",
                              f"add {missing[0]}=... to {secrets_path} (mode 600)")
        check_named_secrets(config, environment, secrets, secrets_path)
    seed = env_cfg.seed
    seed_argv = shlex.split(seed) if isinstance(seed, str) else seed
    return Target(app=config.app, environment=environment, root=root, config=config, roles=roles,
                  accessories=accessories, domains=list(env_cfg.domains), port=env_cfg.port, deploy=deploy,
                  seed_argv=seed_argv, edge=env_cfg.proxy, tls=env_cfg.tls_options, env=env, secrets=secrets,
                  secrets_withheld=withheld)


def _registry_refs(config: AppConfig) -> set[str]:
    reg = config.registry
    if reg is None:
        return set()
    return {m.group(1) for v in (reg.username, reg.password) if v for m in REF.finditer(v)}


def load_target(environment: str, config_path: str | Path | None = None) -> Target:
    path = find_config(explicit=config_path)
    return resolve(load_config(path), environment, path.parent)
