"""The headway.yml schema. Unknown keys are errors, so a typo never silently does nothing."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from headway.config.autoscale import Autoscale, AutoscalePolicy, check_autoscale, policy_for
from headway.config.base import Resources, Strict
from headway.config.duration import Duration
from headway.config.rehearse import Rehearse
from headway.data.schema import Database, DatabaseOverride, Storage, check_databases
from headway.observe.alerts import AlertRules
from headway.observe.notify import Channel

NAME = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$"
Name = Annotated[str, Field(pattern=NAME)]
AccessoryVolumes = list[tuple[str, str]]


def _split_command(value: str | list[str] | None) -> list[str] | None:
    if value is None or isinstance(value, list):
        return value
    return shlex.split(value)


_IMAGE_REF = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::\d+)?)/)?(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def check_image_reference(ref: str) -> str:
    """`ref` if it is a Docker image reference (registry/path:tag@digest), else a ValueError naming the fix."""
    if not _IMAGE_REF.match(ref):
        raise ValueError(f"{ref!r} is not an image reference; write e.g. registry.example.com/org/api:1.4.2")
    return ref


class ImageBuild(Strict):
    """How a release image is built: `docker build` with these settings."""

    name: str | None = Field(None, description="image repository (e.g. registry.example.com/org/api, where "
                                               "`headway build --push` pushes); defaults to the app name")
    dockerfile: str = "Dockerfile"
    context: str = "."
    target: str | None = None
    args: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None:
            check_image_reference(v)
            if ":" in v.rsplit("/", 1)[-1] or "@" in v:
                raise ValueError(f"image name {v!r} is a repository without tag; headway tags each release")
        return v


class PrebuiltImage(Strict):
    """An image built elsewhere (CI) and pulled on deploy; recorded by digest so a rollback runs the same bytes."""

    pull: str = Field(description="registry.example.com/org/api:1.4.2; `deploy --image-tag` replaces the tag")

    @field_validator("pull")
    @classmethod
    def _ref(cls, v: str) -> str:
        return check_image_reference(v)


def _image_kind(value: object) -> str:
    if isinstance(value, (str, PrebuiltImage)):
        return "prebuilt"
    if isinstance(value, dict) and "pull" in value:
        return "prebuilt"
    return "build"


def _prebuilt_from_str(value: object) -> object:
    return {"pull": value} if isinstance(value, str) else value


ImageSource = Annotated[
    Annotated[ImageBuild, Tag("build")] | Annotated[PrebuiltImage, Tag("prebuilt")],
    Discriminator(_image_kind),
]


class Registry(Strict):
    """Where built images are pushed and prebuilt ones pulled from; credentials come from the secrets file."""

    server: str = Field(description="host[:port] of the registry, e.g. registry.example.com or localhost:5000")
    username: str | None = Field(None, description="plain or ${SECRET}")
    password: str | None = Field(None, description="a ${SECRET} reference, e.g. ${REGISTRY_PASSWORD}")

    @model_validator(mode="after")
    def _pair(self) -> Registry:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both `username` and `password`, or neither (anonymous pulls)")
        if self.password is not None and not _REF_ONLY.fullmatch(self.password):
            raise ValueError("registry `password` must be a secret reference such as ${REGISTRY_PASSWORD}, "
                             "never the value itself")
        return self


_SSH_HOST = re.compile(r"^(?:[a-z_][a-z0-9_.-]{0,31}@)?(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$")
_REF_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_SIGNALS = {"SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL"}


class SecretSpec(Strict):
    """How one secret reaches the containers that name it."""

    as_: Literal["env", "file"] = Field("env", alias="as", description="env: an environment variable; file: "
                                        "/run/secrets/NAME (read-only, tmpfs) and NAME_FILE set to that path")
    from_: str | list[str] | None = Field(None, alias="from", description="a command printing the value at "
                                          "deploy time, e.g. `op read op://prod/api/jwt`")
    model_config = {"populate_by_name": True, "extra": "forbid", "frozen": True}


class HttpHealth(Strict):
    """An HTTP check made against each new web container itself, before it gets traffic."""

    path: str = "/health"
    interval: Duration = 1.0
    timeout: Duration = 2.0
    attempts: int = Field(60, ge=1)
    start_period: Duration = 0.0
    status: int = Field(200, ge=100, le=599)
    host: str | None = Field(None, description="Host header to send; defaults to the first domain")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("a health check path starts with /, e.g. /health")
        return v


class CommandHealth(Strict):
    """A check for roles without HTTP: a command inside the container, or 'stays running for N s'."""

    command: str | list[str] | None = None
    stays_running: Duration | None = None
    interval: Duration = 1.0
    timeout: Duration = 5.0
    attempts: int = Field(30, ge=1)
    start_period: Duration = 0.0

    @model_validator(mode="after")
    def _one_kind(self) -> CommandHealth:
        if (self.command is None) == (self.stays_running is None):
            raise ValueError("give exactly one of `command` or `stays_running`")
        return self

    @property
    def argv(self) -> list[str] | None:
        return _split_command(self.command)


def _health_kind(value: object) -> str:
    if isinstance(value, dict):
        return "command-check" if ("command" in value or "stays_running" in value) else "http-check"
    return "command-check" if isinstance(value, CommandHealth) else "http-check"


HealthCheck = Annotated[
    Annotated[HttpHealth, Tag("http-check")] | Annotated[CommandHealth, Tag("command-check")],
    Discriminator(_health_kind),
]


class Role(Strict):
    command: str | list[str] | None = None
    image: Annotated[ImageSource | None, BeforeValidator(_prebuilt_from_str)] = Field(
        None, description="this role's own build or prebuilt image; default: the app's `image`")
    port: int | None = Field(None, ge=1, le=65535, description="container port that serves HTTP")
    path: str = Field("/", description="requests under this path go to this role (HTTP roles)")
    strip_prefix: bool = Field(False, description="remove `path` from the request before it reaches the role")
    replicas: int = Field(1, ge=0, le=100)
    health: HealthCheck | None = None
    stop_signal: str = Field("SIGTERM", description="sent first when a container of this role stops")
    stop_timeout: Duration = Field(10.0, description="how long a stopping container may finish its work")
    resources: Resources | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] | None = Field(None, description="secrets this role gets; all of them when not given")

    @property
    def argv(self) -> list[str] | None:
        return _split_command(self.command)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path {v!r} must start with /, e.g. /api")
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", v) or "//" in v:
            raise ValueError(f"path {v!r}: use letters, digits, - . _ ~ and single slashes, e.g. /api")
        return v.rstrip("/") or "/"

    @field_validator("stop_signal")
    @classmethod
    def _signal(cls, v: str) -> str:
        name = v.upper() if v.upper().startswith("SIG") else f"SIG{v.upper()}"
        if name not in _SIGNALS:
            raise ValueError(f"stop_signal {v!r}: use one of {', '.join(sorted(_SIGNALS))}")
        return name

    @model_validator(mode="after")
    def _health_fits(self) -> Role:
        if self.port is None and isinstance(self.health, HttpHealth):
            raise ValueError("an HTTP health check needs the role's `port`; use `command` or `stays_running`")
        if self.port is None and (self.path != "/" or self.strip_prefix):
            raise ValueError("`path` and `strip_prefix` route HTTP requests: they need the role's `port`")
        if self.strip_prefix and self.path == "/":
            raise ValueError("`strip_prefix` needs a `path` other than /")
        return self


class ReleaseCommand(Strict):
    """The release command (migrations) and the role whose image it runs from."""

    command: str | list[str]
    role: Name | None = Field(None, description="whose image runs it; default: a role using the app's `image`")


class Accessory(Strict):
    """A service the app needs that is not deployed per release (database, cache): started once, kept."""

    image: str
    command: str | list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="names from the secrets file to pass in")
    volumes: list[str] = Field(default_factory=list, description="NAME:/path, a named volume per environment")
    port: int | None = Field(None, ge=1, le=65535)
    health: CommandHealth | None = None
    resources: Resources | None = None

    @property
    def argv(self) -> list[str] | None:
        return _split_command(self.command)

    @property
    def volume_mounts(self) -> AccessoryVolumes:
        return [tuple(v.split(":", 1)) for v in self.volumes]  # type: ignore[misc]

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str]) -> list[str]:
        for item in v:
            name, _, path = item.partition(":")
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) or not path.startswith("/"):
                raise ValueError(f"volume {item!r} should be NAME:/absolute/path, e.g. data:/var/lib/data")
        return v


class CanaryStep(Strict):
    weight: int = Field(ge=1, le=100, description="percent of requests sent to the new release")
    duration: Duration = Field(60.0, description="how long traffic stays at this weight while it is analysed")


class CanaryAnalysis(Strict):
    """Thresholds the new release must meet at every step (Flagger's defaults: 99% success, p95 <= 500 ms)."""

    interval: Duration = 10.0
    min_requests: int = Field(20, ge=1, description="fewer requests than this in a step cannot pass it")
    success_rate: float = Field(99.0, ge=0, le=100, description="percent of non-5xx answers, at least")
    p95: Duration = Field(0.5, description="95th percentile of request time, at most")
    max_wait: Duration = Field(300.0, description="how long a step may wait for enough requests before aborting")


class CanarySettings(Strict):
    steps: list[CanaryStep] = Field(default_factory=lambda: [CanaryStep(weight=10, duration=60.0),
                                                             CanaryStep(weight=50, duration=60.0)])
    sticky: Literal["cookie", "ip"] | None = Field(None, description="keep a client on one release")
    analysis: CanaryAnalysis = CanaryAnalysis()

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[CanaryStep]) -> list[CanaryStep]:
        if not v:
            raise ValueError("give at least one step, e.g. [{weight: 10, duration: 60s}]")
        weights = [s.weight for s in v]
        if weights != sorted(weights):
            raise ValueError("step weights must not decrease")
        return v


class DeploySettings(Strict):
    strategy: Literal["blue-green", "canary"] = "blue-green"
    canary: CanarySettings = CanarySettings()
    drain_timeout: Duration = 30.0
    health_deadline: Duration = 120.0
    release_timeout: Duration = 600.0
    retain: int = Field(5, ge=1, le=50, description="how many past releases keep their containers")
    warm_standby: bool = Field(False, description="keep the previous release running for instant rollback")
    lock_wait: Duration = Field(0.0, description="how long a deploy waits for another to finish; 0 fails fast")
    rehearse: Rehearse = Field(False, description="rehearse the release command on a copy of the newest backup "
                               "first (true, strict, or {before_deploy, big_table_rows, big_table_size})")


class TlsOptions(Strict):
    """Certificates for the environment's domains: from an ACME CA (Let's Encrypt) or given as files."""

    email: str | None = Field(None, description="contact for the ACME account (expiry notices)")
    acme_directory: str | None = Field(None, description="ACME directory URL; default Let's Encrypt")
    staging: bool = Field(False, description="use Let's Encrypt's staging CA (untrusted certs, high limits)")
    certificate: str | None = Field(None, description="a certificate chain file (PEM) instead of ACME")
    key: str | None = Field(None, description="its private key (PEM)")
    hsts: bool = True
    redirect: bool = Field(True, description="answer plain HTTP with a redirect to HTTPS")

    @model_validator(mode="after")
    def _pair(self) -> TlsOptions:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("give both `certificate` and `key`, or neither (ACME)")
        return self


class EdgeOptions(Strict):
    """What the proxy does for this environment's requests."""

    client_max_body_size: str = Field("10m", pattern=r"^\d+[kKmMgG]?$")
    read_timeout: Duration = 60.0
    connect_timeout: Duration = 2.0
    gzip: bool = True
    security_headers: bool = True
    error_pages: dict[int, str] = Field(default_factory=dict,
                                        description="status -> HTML file, e.g. 502: errors/502.html")

    @field_validator("error_pages")
    @classmethod
    def _statuses(cls, v: dict[int, str]) -> dict[int, str]:
        for status in v:
            if not 400 <= status <= 599:
                raise ValueError(f"error page for {status}: only 4xx and 5xx statuses")
        return v


class Alerts(AlertRules):
    """Whom headway tells (channels) about what: the alert rules (defaults from the guides, each overridable) and
    the deploy, rollback, canary and backup events."""

    channels: list[Channel] = Field(default_factory=list, description="webhook, slack, discord, telegram, ntfy, "
                                    "email; see docs/monitoring.md")


class Swarm(Strict):
    """An environment on a Docker Swarm: `hosts` names its manager, where headway, its proxy and the databases run."""

    nodes: list[str] = Field(default_factory=list,
                             description="user@host[:port] of the other machines, joined by `headway swarm init`")
    advertise: str | None = Field(None, description="the manager's address the nodes reach (default: its route)")
    constraints: dict[str, list[str]] = Field(default_factory=dict,
                                              description="role -> placement constraints, e.g. node.role==worker")

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: list[str]) -> list[str]:
        for host in v:
            if not _SSH_HOST.match(host) or host in ("local", "localhost"):
                raise ValueError(f"swarm node {host!r}: write user@host[:port], e.g. deploy@203.0.113.8")
        if len(set(v)) != len(v):
            raise ValueError("a swarm node is listed twice")
        return v


class Environment(Strict):
    hosts: list[str] = Field(default_factory=lambda: ["local"])
    swarm: Swarm | None = Field(None, description="run the app roles as services across a Docker Swarm")
    alerts: Alerts | None = Field(None, description="overrides of `alerts:`: each key given replaces the app's")
    autoscale: Autoscale | None = Field(None, description="overrides of `autoscale:`, key by key per role")
    branch: str | None = Field(None, description="the git branch deployed here; another ref needs --force")
    secrets: dict[str, SecretSpec] = Field(default_factory=dict, description="overrides of `secrets:`")
    domains: list[str] = Field(default_factory=list)
    port: int | None = Field(None, ge=1, le=65535, description="published port on the proxy")
    env: dict[str, str] = Field(default_factory=dict)
    secrets_file: str | None = None
    replicas: dict[str, int] = Field(default_factory=dict)
    resources: dict[str, Resources] = Field(default_factory=dict)
    seed: str | list[str] | None = None
    deploy: DeploySettings | None = None
    databases: dict[Name, DatabaseOverride] = Field(default_factory=dict)
    storage: Storage | None = Field(None, description="where this environment's backups go")
    tls: bool | TlsOptions = False
    proxy: EdgeOptions = EdgeOptions()

    @model_validator(mode="after")
    def _tls_needs_domains(self) -> Environment:
        if self.tls and not self.domains:
            raise ValueError("tls needs `domains`: certificates are issued for host names")
        return self

    @property
    def tls_options(self) -> TlsOptions | None:
        if self.tls is False:
            return None
        return TlsOptions() if self.tls is True else self.tls

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name the host: `local` (this machine) or user@host[:port] (over SSH)")
        if len(v) > 1:
            raise ValueError("one host per environment; several machines form a swarm: hosts: [the manager] "
                             "and swarm: {nodes: [the others]}")
        for host in v:
            if host not in ("local", "localhost") and not _SSH_HOST.match(host):
                raise ValueError(f"host {host!r}: write `local` or user@host[:port], e.g. deploy@203.0.113.7")
        return v

    @property
    def remote_host(self) -> str | None:
        """user@host[:port] when the environment runs on a server reached over SSH."""
        host = self.hosts[0]
        return None if host in ("local", "localhost") else host

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        for d in v:
            if not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", d):
                raise ValueError(f"{d!r} is not a valid domain name (lower case, e.g. app.example.com)")
        return v

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, v: dict[str, int]) -> dict[str, int]:
        for role, n in v.items():
            if not 0 <= n <= 100:
                raise ValueError(f"replicas for {role!r} must be between 0 and 100")
        return v


class AppConfig(Strict):
    app: Name
    image: Annotated[ImageSource, BeforeValidator(_prebuilt_from_str)] = ImageBuild()
    registry: Registry | None = None
    roles: dict[Name, Role]
    secrets: dict[str, SecretSpec] = Field(default_factory=dict, description="how each secret is delivered "
                                           "(env var or file) and where its value comes from")
    release: str | list[str] | ReleaseCommand | None = Field(None, description="run once per deploy before "
                                                             "traffic moves")
    accessories: dict[Name, Accessory] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    deploy: DeploySettings = DeploySettings()
    databases: dict[Name, Database] = Field(default_factory=dict)
    storage: Storage = Field(default_factory=Storage, description="where backups go: local and/or s3")
    alerts: Alerts = Field(default_factory=Alerts, description="notification channels and alert rules")
    autoscale: Autoscale | None = Field(None, description="replicas per role from queue length, CPU, p95 latency")
    environments: dict[Name, Environment]

    def autoscale_for(self, environment: str) -> AutoscalePolicy:
        """The app's `autoscale:` with the environment's overrides (key by key), checked."""
        return policy_for(self, environment)

    def alerts_for(self, environment: str) -> Alerts:
        """The app's alerts with the environment's overrides (its channels, when it names any, replace them)."""
        env = self.environments[environment].alerts
        if env is None:
            return self.alerts
        return self.alerts.model_copy(update={k: getattr(env, k) for k in env.model_fields_set})

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, Role]) -> dict[str, Role]:
        if not v:
            raise ValueError("declare at least one role, e.g. web")
        paths: dict[str, str] = {}
        for name, role in v.items():
            if role.port is None:
                continue
            if role.path in paths:
                raise ValueError(f"roles {paths[role.path]} and {name} both serve path {role.path}; give each "
                                 "HTTP role its own `path`, e.g. path: /api")
            paths[role.path] = name
        return v

    @field_validator("environments")
    @classmethod
    def _envs(cls, v: dict[str, Environment]) -> dict[str, Environment]:
        if not v:
            raise ValueError("declare at least one environment, e.g. production")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> AppConfig:
        clash = set(self.roles) & set(self.accessories)
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))}: a name is either a role or an accessory, not both")
        for env_name, env in self.environments.items():
            for role in list(env.replicas) + list(env.resources):
                if role not in self.roles:
                    raise ValueError(
                        f"environments.{env_name}: unknown role {role!r} (roles: {', '.join(self.roles)})")
        for env_name, env in self.environments.items():
            if (env.deploy or self.deploy).strategy == "canary" and self.web_role is None:
                raise ValueError(f"environments.{env_name}: a canary needs a role with `port` (weights split HTTP "
                                 "traffic)")
        ports: dict[int, str] = {}
        for env_name, env in self.environments.items():
            if env.port is not None:
                if env.port in ports:
                    raise ValueError(f"environments {ports[env.port]} and {env_name} both publish port {env.port}")
                ports[env.port] = env_name
        if isinstance(self.release, ReleaseCommand) and self.release.role and self.release.role not in self.roles:
            raise ValueError(f"release.role {self.release.role!r} is not a role (roles: {', '.join(self.roles)})")
        if (self.release is not None or any(e.seed for e in self.environments.values())) and \
                not (isinstance(self.release, ReleaseCommand) and self.release.role) and \
                all(r.image is not None for r in self.roles.values()) and len(self.roles) > 1:
            raise ValueError("every role has its own image: say which one runs the release command, e.g. "
                             "release: {command: python -m app.migrate, role: api}")
        check_databases(self.databases, self.storage, set(self.roles) | set(self.accessories), set(self.env),
                        {n: (e.databases, e.storage) for n, e in self.environments.items()})
        check_autoscale(self)
        for env_name, env in self.environments.items():
            if env.swarm is None:
                continue
            if self.registry is None:
                raise ValueError(f"environments.{env_name} runs on a swarm: its nodes pull the images from a "
                                 "registry; add e.g. registry: {server: registry.example.com}")
            unknown = set(env.swarm.constraints) - set(self.roles)
            if unknown:
                raise ValueError(f"environments.{env_name}.swarm.constraints: unknown role "
                                 f"{', '.join(sorted(unknown))} (roles: {', '.join(self.roles)})")
            filed = sorted(n for n, s in {**self.secrets, **env.secrets}.items() if s.as_ == "file")
            if filed:
                raise ValueError(f"environments.{env_name} runs on a swarm, where `as: file` secrets are not "
                                 f"delivered yet ({', '.join(filed)}); use `as: env` there")
        return self

    @property
    def web_role(self) -> str | None:
        """The HTTP role on / (or the first HTTP role): what health, canary and maintenance speak of first."""
        http = self.http_roles
        return next((n for n in http if self.roles[n].path == "/"), http[0] if http else None)

    @property
    def http_roles(self) -> list[str]:
        return [n for n, r in self.roles.items() if r.port is not None]

    @property
    def release_argv(self) -> list[str] | None:
        release = self.release.command if isinstance(self.release, ReleaseCommand) else self.release
        return _split_command(release)

    @property
    def release_role(self) -> str | None:
        """The role whose image runs the release and seed commands; None: the app's `image`."""
        if isinstance(self.release, ReleaseCommand) and self.release.role:
            return self.release.role
        if any(r.image is None for r in self.roles.values()):
            return None
        return next(iter(self.roles))


