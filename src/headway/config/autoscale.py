"""`autoscale:` in headway.yml: per role, how many replicas (min..max) and on what signal (queue length, CPU,
p95 latency); per environment, overrides key by key. The decisions themselves are observe/autoscale.py's.

```yaml
autoscale:
  worker: {min: 1, max: 10, queue: "bull:jobs:wait", per_replica: 100}
  web: {min: 2, max: 6, cpu: 70%, p95: 400ms}
  cooldown: 2m
environments:
  staging:
    autoscale: {worker: {max: 2}}
```
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from headway.config.base import Strict
from headway.config.duration import Duration

DEFAULT_COOLDOWN = 180.0
MAX_REPLICAS = 100


def _percent(value: Any) -> float:
    from headway.observe.alerts import parse_percent

    number = parse_percent(value)
    if number <= 0:
        raise ValueError(f"a CPU target is above 0%, e.g. 70% (got {value!r})")
    return number


class AutoscaleRule(Strict):
    """One role's autoscaling: its bounds and the signals it follows (every key optional, so that an environment
    can override one; the merged rule is checked whole)."""

    enabled: bool | None = Field(None, description="false: this role is not autoscaled (here)")
    min: int | None = Field(None, ge=0, description="fewest replicas; default 1")
    max: int | None = Field(None, ge=0, description="most replicas, at most 100")
    queue: str | None = Field(None, min_length=1, description="a Redis list, stream or sorted set of the "
                                                            "environment's managed redis, e.g. bull:jobs:wait")
    per_replica: int | None = Field(None, ge=1, description="jobs waiting per replica: ceil(length / this)")
    cpu: Annotated[float | None, BeforeValidator(_percent)] = Field(
        None, description="average CPU per replica to aim at, in percent of one core (or of its cpus limit)")
    p95: Duration | None = Field(None, description="request time the 95th percentile should stay under, e.g. "
                                                   "400ms")


class Autoscale(BaseModel):
    """`autoscale:`: role -> AutoscaleRule, and `cooldown`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    cooldown: Duration | None = Field(None, description="no second change of a role within it; a scale-down "
                                                        "waits until its condition held this long (default 3m)")
    __pydantic_extra__: dict[str, AutoscaleRule] = Field(init=False)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError("expected a mapping of roles and `cooldown`, e.g. autoscale: {worker: {min: 1, max: "
                             "10, queue: jobs, per_replica: 100}, cooldown: 2m}")
        for key, value in data.items():
            if key != "cooldown" and not isinstance(value, (dict, AutoscaleRule)):
                close = difflib.get_close_matches(str(key), ["cooldown"], n=1)
                hint = "did you mean `cooldown`?" if close else \
                    f"a role's rule is a mapping, e.g. {key}: {{min: 1, max: 4, cpu: 70%}}"
                raise ValueError(f"{key}: {hint} (got {value!r})")
        return data

    @property
    def rules(self) -> dict[str, AutoscaleRule]:
        return dict(self.__pydantic_extra__ or {})


@dataclass(frozen=True)
class RolePolicy:
    """One role's merged, checked rule."""

    min: int
    max: int
    queue: str | None = None
    per_replica: int | None = None
    cpu: float | None = None  # percent
    p95: float | None = None  # seconds


@dataclass(frozen=True)
class AutoscalePolicy:
    """What the autoscaler follows in one environment (the app's `autoscale:` with the environment's overrides)."""

    cooldown: float = DEFAULT_COOLDOWN
    roles: dict[str, RolePolicy] | None = None

    @property
    def active(self) -> dict[str, RolePolicy]:
        return dict(self.roles or {})

    def to_data(self) -> dict[str, Any]:
        return {"cooldown": self.cooldown,
                "roles": {name: {k: v for k, v in r.__dict__.items() if v is not None}
                          for name, r in self.active.items()}}

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> AutoscalePolicy:
        data = data or {}
        roles = {str(name): RolePolicy(**{k: v for k, v in rule.items() if k in RolePolicy.__dataclass_fields__})
                 for name, rule in (data.get("roles") or {}).items()}
        return cls(cooldown=float(data.get("cooldown", DEFAULT_COOLDOWN)), roles=roles)


class AppConfig(Protocol):
    """What the autoscale checks read of headway.yml (config/model.py's AppConfig)."""

    @property
    def autoscale(self) -> Autoscale | None: ...
    @property
    def environments(self) -> Mapping[str, Any]: ...
    @property
    def roles(self) -> Mapping[str, Any]: ...
    @property
    def databases(self) -> Mapping[str, Any]: ...


def merged(config: AppConfig, environment: str) -> tuple[float, dict[str, tuple[dict[str, Any], str]]]:
    """The cooldown and, per role, the merged keys of its rule and where they were written (for errors)."""
    app = config.autoscale or Autoscale()
    env = config.environments[environment].autoscale or Autoscale()
    cooldown = env.cooldown if env.cooldown is not None else app.cooldown
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for role, rule in app.rules.items():
        out[role] = ({k: getattr(rule, k) for k in rule.model_fields_set}, f"autoscale.{role}")
    for role, rule in env.rules.items():
        keys = out.get(role, ({}, ""))[0]
        out[role] = ({**keys, **{k: getattr(rule, k) for k in rule.model_fields_set}},
                     f"environments.{environment}.autoscale.{role}")
    return (DEFAULT_COOLDOWN if cooldown is None else cooldown), out


def policy_for(config: AppConfig, environment: str) -> AutoscalePolicy:
    """The checked policy of `environment` (the config was validated, so every rule is whole)."""
    cooldown, rules = merged(config, environment)
    roles = {}
    for role, (keys, _) in rules.items():
        if keys.get("enabled") is False:
            continue
        roles[role] = RolePolicy(min=1 if keys.get("min") is None else int(keys["min"]),
                                 max=int(keys.get("max") or 0), queue=keys.get("queue"),
                                 per_replica=keys.get("per_replica"), cpu=keys.get("cpu"), p95=keys.get("p95"))
    return AutoscalePolicy(cooldown=cooldown, roles=roles)


def managed_redis(config: AppConfig, environment: str) -> str | None:
    """The environment's managed Redis (the first `engine: redis` database without an external_url), whose
    queues the agent reads."""
    for name, db in config.databases.items():
        if db.engine != "redis":
            continue
        over = config.environments[environment].databases.get(name)
        external = over.external_url if over is not None and "external_url" in over.model_fields_set \
            else db.external_url
        if external is None:
            return name
    return None


def check_autoscale(config: AppConfig) -> None:
    """Every environment's merged rules: a ValueError naming the key and the fix for the first problem."""
    roles = config.roles
    for env_name in config.environments:
        cooldown, rules = merged(config, env_name)
        for role, (keys, where) in rules.items():
            if role not in roles:
                close = difflib.get_close_matches(role, [*roles, "cooldown"], n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"roles: {', '.join(roles)}"
                raise ValueError(f"{where}: {role!r} is not a role; {hint}")
            if keys.get("enabled") is False:
                continue
            http = roles[role].port is not None
            low = 1 if keys.get("min") is None else keys["min"]
            high = keys.get("max")
            if high is None:
                raise ValueError(f"{where}: give `max`, the most replicas it may scale to, e.g. max: 10")
            if high > MAX_REPLICAS:
                raise ValueError(f"{where}.max: at most {MAX_REPLICAS} replicas (got {high})")
            if http and low < 1:
                raise ValueError(f"{where}.min: an HTTP role keeps at least 1 replica to serve requests")
            if low > high:
                raise ValueError(f"{where}: min {low} is above max {high}; give min <= max")
            if (keys.get("queue") is None) != (keys.get("per_replica") is None):
                raise ValueError(f"{where}: a queue rule needs both `queue` and `per_replica`, e.g. queue: "
                                 "bull:jobs:wait, per_replica: 100")
            if not http and keys.get("queue") is None:
                raise ValueError(f"{where}: {role} serves no HTTP, so it scales on a queue: give `queue` and "
                                 "`per_replica`, e.g. queue: bull:jobs:wait, per_replica: 100")
            if not http and keys.get("p95") is not None:
                raise ValueError(f"{where}.p95: {role} has no `port`, so it has no request latency; scale it "
                                 "on `queue` (and `cpu`)")
            if http and keys.get("cpu") is None and keys.get("p95") is None:
                raise ValueError(f"{where}: an HTTP role scales on `cpu` and/or `p95`, e.g. cpu: 70%, p95: 400ms")
            if keys.get("p95") is not None and keys["p95"] <= 0:
                raise ValueError(f"{where}.p95: a latency target above 0, e.g. 400ms")
            if keys.get("queue") is not None and managed_redis(config, env_name) is None:
                raise ValueError(f"{where}: queue {keys['queue']!r} is read from the environment's managed redis, "
                                 f"and environments.{env_name} has none; add one, e.g. databases: {{queue: "
                                 "{engine: redis}}, or scale on `cpu`")
        if cooldown < 0:
            raise ValueError(f"environments.{env_name}: autoscale.cooldown cannot be negative")
