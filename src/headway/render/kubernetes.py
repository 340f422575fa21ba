"""Kubernetes manifests for one environment of an app: what `headway render kubernetes -e ENV` prints.

Plain data first (`render_kubernetes` returns the documents, in the order they are applied, and the notes a person
needs), YAML last. Secrets are referenced by name and key only: the values are never read into a manifest, and the
secrets file is read for its key names alone. Databases and accessories are not rendered (a managed database or the
cluster's operator runs them); the app gets their URLs from the environment's Secret.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headway import __version__
from headway.config.base import memory_bytes
from headway.config.model import AppConfig, CommandHealth, HttpHealth, ImageBuild, Resources
from headway.config.resolve import RoleSpec, Secrets, Target
from headway.config.secrets import SECRETS_MOUNT, load_secrets, secret_specs, secrets_path_for
from headway.data.schema import url_env_of
from headway.errors import ConfigError
from headway.release.images import RELEASE, plan_images
from headway.release.version import check_version

Doc = dict[str, Any]

KUBERNETES_VERSION = "1.29"  # the API the manifests are written for (and checked against in the tests)
DRAIN_SECONDS = 5  # preStop sleep: endpoints controllers and ingress controllers stop sending to a stopping pod
LIVENESS_PERIOD = 10
MANAGED_BY = "headway"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KINDS = ["Namespace", "Job", "Deployment", "Service", "PodDisruptionBudget", "Ingress"]
_FILES = {kind: f"{i * 10:02d}-{kind.lower()}.yaml" for i, kind in enumerate(_KINDS)}


@dataclass(frozen=True)
class Options:
    version: str | None = None
    image_tag: str | None = None
    namespace: str | None = None  # default <app>-<env>
    namespace_object: bool = True  # render the Namespace itself
    ingress_class: str | None = None
    cluster_issuer: str | None = None  # cert-manager ClusterIssuer for ACME environments


@dataclass
class Rendered:
    app: str
    environment: str
    version: str
    namespace: str
    documents: list[Doc]
    notes: list[str] = field(default_factory=list)  # what is not rendered, and why; shown on stderr too
    steps: list[str] = field(default_factory=list)  # shell commands, in order, for a person to run

    @property
    def release_job(self) -> str | None:
        return next((d["metadata"]["name"] for d in self.documents if d["kind"] == "Job"), None)

    def header(self, file: str) -> str:
        lines = [f"Kubernetes manifests for {self.app}, environment {self.environment}, release {self.version} "
                 f"(headway {__version__}, Kubernetes {KUBERNETES_VERSION} API).", ""]
        lines += ["Apply them in this order (the release Job runs once per version, before new pods start)"
                  + (", with this output saved as manifests.yaml:" if file == "manifests.yaml" else ":")]
        lines += ["  " + s.replace("FILE", file) for s in self.steps]
        if self.notes:
            lines += ["", "Not rendered, or to know:"]
            lines += [f"  - {n}" for n in self.notes]
        return "".join(f"# {ln}".rstrip() + "\n" for ln in lines)

    def yaml(self) -> str:
        """Every document in one multi-document stream, the header as comments first."""
        return self.header("manifests.yaml") + "".join("---\n" + dump(d) for d in self.documents)

    def files(self) -> dict[str, str]:
        """One file per kind (NN-kind.yaml, in apply order) and NOTES.txt with the header."""
        out: dict[str, str] = {}
        for kind in _KINDS:
            docs = [d for d in self.documents if d["kind"] == kind]
            if docs:
                out[_FILES[kind]] = "".join("---\n" + dump(d) for d in docs)
        out["NOTES.txt"] = self.header("DIR")
        return out


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # every document spelled out: no &id001 anchors between probes


def dump(doc: Doc) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


def write_files(rendered: Rendered, folder: Path) -> list[Path]:
    """Write `rendered.files()` into `folder`; files of kinds no longer rendered (from an earlier run) go."""
    folder.mkdir(parents=True, exist_ok=True)
    files = rendered.files()
    for stale in set(_FILES.values()) - set(files):
        (folder / stale).unlink(missing_ok=True)
    written = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written


# -- names and labels ----------------------------------------------------------------------------------------
def dns_name(*parts: str) -> str:
    """A DNS-1123 name (lower case, digits, '-', at most 63) from `parts`; a long one keeps a hash of the rest."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name[:54].rstrip("-") + "-" + digest
    return name or "x"


def label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


# -- the inputs ----------------------------------------------------------------------------------------------
def _target(config: AppConfig, environment: str, root: Path) -> Target:
    """The environment's roles as a deploy resolves them, without any secret value (none is needed here)."""
    if environment not in config.environments:
        known = ", ".join(config.environments)
        raise ConfigError(f"no environment {environment!r} in headway.yml (known: {known})",
                          f"use -e with one of: {known}, or add it under `environments:`")
    env_cfg = config.environments[environment]
    roles = {}
    for name, role in config.roles.items():
        roles[name] = RoleSpec(name=name, argv=role.argv, port=role.port,
                               replicas=env_cfg.replicas.get(name, role.replicas), health=role.health,
                               stop_timeout=role.stop_timeout, resources=env_cfg.resources.get(name, role.resources),
                               env=dict(role.env), image=role.image or config.image, path=role.path,
                               strip_prefix=role.strip_prefix, stop_signal=role.stop_signal,
                               secret_names=list(role.secrets) if role.secrets is not None else None)
    return Target(app=config.app, environment=environment, root=root, config=config, roles=roles, accessories={},
                  domains=list(env_cfg.domains), port=env_cfg.port, deploy=env_cfg.deploy or config.deploy,
                  seed_argv=shlex.split(env_cfg.seed) if isinstance(env_cfg.seed, str) else env_cfg.seed,
                  edge=env_cfg.proxy, tls=env_cfg.tls_options, env={**config.env, **env_cfg.env}, secrets=Secrets())


def _version(root: Path, options: Options) -> str:
    if options.version is not None:
        return check_version(options.version)
    if options.image_tag is not None:
        return check_version(options.image_tag)
    from headway.release.source import plan_source

    fix = ("pass --version V (the tag the images were built with, e.g. `headway build --version V --push`) or "
           "--image-tag TAG")
    try:
        plan = plan_source(root, [])
    except ConfigError:
        raise ConfigError("no release version: nothing is committed here to name the images after", fix) from None
    if plan.commit is None:
        raise ConfigError(f"no release version: {root} is not in a git checkout, so the images' tag cannot be "
                          "derived", fix)
    return plan.version


@dataclass(frozen=True)
class _SecretKey:
    env: str  # the variable the container sees
    key: str  # the key in the environment's Secret
    as_file: bool = False


# -- rendering -----------------------------------------------------------------------------------------------
class _Renderer:
    def __init__(self, config: AppConfig, environment: str, root: Path, options: Options) -> None:
        self.config = config
        self.options = options
        self.target = _target(config, environment, root)
        self.env_name = environment
        self.root = root
        self.version = _version(root, options)
        self.namespace = options.namespace or dns_name(config.app, environment)
        if options.namespace is not None and dns_name(options.namespace) != options.namespace:
            raise ConfigError(f"--namespace {options.namespace!r} is not a Kubernetes name",
                              "use lower-case letters, digits and '-', at most 63, e.g. shop-staging")
        self.secret_name = dns_name(config.app, environment, "secrets")
        self.notes: list[str] = []
        plan = plan_images(self.target, self.version, options.image_tag)
        self.images = {user: plan.for_user(user) for user in [*self.target.roles, RELEASE]}
        self.specs = secret_specs(config, environment)
        path = secrets_path_for(config, environment, root)
        self.secrets_file = path.relative_to(root) if path.is_relative_to(root) else path
        self.file_keys = sorted(load_secrets(path, required=False))  # names only; values are dropped here
        self.all_secrets = sorted(set(self.specs) | set(self.file_keys))
        self.release_component = "release-job" if "release" in config.roles else "release"

    # labels
    def labels(self, component: str | None) -> dict[str, str]:
        out = {"app.kubernetes.io/name": self.config.app,
               "app.kubernetes.io/instance": dns_name(self.config.app, self.env_name),
               "app.kubernetes.io/version": label_value(self.version)}
        if component is not None:
            out["app.kubernetes.io/component"] = component
        out["app.kubernetes.io/managed-by"] = MANAGED_BY
        return out

    def selector(self, component: str) -> dict[str, str]:
        labels = self.labels(component)
        return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                                       "app.kubernetes.io/component")}

    def meta(self, name: str, component: str | None, annotations: dict[str, str] | None = None) -> Doc:
        out: Doc = {"name": name, "namespace": self.namespace, "labels": self.labels(component)}
        if annotations:
            out["annotations"] = annotations
        return out

    # secrets and env
    def database_keys(self) -> list[_SecretKey]:
        out = []
        env_cfg = self.config.environments[self.env_name]
        for name, db in self.config.databases.items():
            override = env_cfg.databases.get(name)
            url = (override.external_url if override and override.external_url else None) or db.external_url
            ref = _REF.fullmatch(url) if url else None
            out.append(_SecretKey(env=url_env_of(db), key=ref.group(1) if ref else url_env_of(db)))
        return out

    def secret_keys(self, role: RoleSpec | None) -> list[_SecretKey]:
        names = self.all_secrets if role is None or role.secret_names is None else role.secret_names
        return [_SecretKey(env=f"{n}_FILE" if self.specs.get(n) and self.specs[n].as_ == "file" else n, key=n,
                           as_file=bool(self.specs.get(n) and self.specs[n].as_ == "file")) for n in names]

    def container_env(self, role: RoleSpec | None) -> tuple[list[Doc], list[str]]:
        """The env list (secret references first, then plain values, then values referring to others, as
        Kubernetes expands $(VAR) only from variables before it) and the `as: file` secrets to mount."""
        keys = self.secret_keys(role) + self.database_keys()
        values = {**self.target.env, **(role.env if role else {})}
        out: list[Doc] = []
        defined: set[str] = set()
        files: list[str] = []

        def from_secret(var: str, key: str) -> None:
            out.append({"name": var, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": key}}})
            defined.add(var)

        for k in keys:
            if k.env in defined:
                continue
            if k.as_file:
                files.append(k.key)
                out.append({"name": k.env, "value": f"{SECRETS_MOUNT}/{k.key}"})
                defined.add(k.env)
            else:
                from_secret(k.env, k.key)
        refs = sorted({m.group(1) for v in values.values() for m in _REF.finditer(v)})
        for ref in refs:
            if ref not in defined and (ref not in values or ref in self.all_secrets):
                from_secret(ref, ref)  # a secret the value needs: Kubernetes fills $(REF) from it
        plain = [(k, v) for k, v in values.items() if not _REF.search(v)]
        templated = [(k, v) for k, v in values.items() if _REF.search(v)]
        for var, value in plain + templated:
            if var in defined:
                continue
            text = value.replace("$(", "$$(")
            text = _REF.sub(lambda m: f"$({m.group(1)})", text)
            out.append({"name": var, "value": text})
            defined.add(var)
        return out, files

    def volumes(self, files: list[str]) -> tuple[list[Doc], list[Doc]]:
        if not files:
            return [], []
        volume = {"name": "secrets", "secret": {"secretName": self.secret_name, "defaultMode": 0o444,
                                                 "items": [{"key": n, "path": n} for n in files]}}
        return [volume], [{"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}]

    # images and security
    def image(self, user: str) -> str:
        return self.images[user].reference

    def _users(self, reference: str) -> str:
        users = [u for u, j in self.images.items() if j.reference == reference]
        names = [f"roles.{u}" for u in users if u != RELEASE] + (["the release Job"] if RELEASE in users else [])
        return ", ".join(names)

    def pod_security(self, user: str) -> tuple[Doc, Doc]:
        job = self.images[user]
        pod: Doc = {"seccompProfile": {"type": "RuntimeDefault"}}
        container: Doc = {"allowPrivilegeEscalation": False}
        uid = _dockerfile_user(self.root, job.build) if job.build is not None else None
        if uid is not None and uid.isdigit() and int(uid) != 0:
            pod["runAsNonRoot"] = True
            container["capabilities"] = {"drop": ["ALL"]}
        elif uid is not None and uid not in ("root", "0"):
            self.notes.append(f"{job.reference} ({self._users(job.reference)}) runs as user {uid!r}, a name, so "
                              "Kubernetes cannot check runAsNonRoot; a numeric USER in the Dockerfile (e.g. USER "
                              "10001) has it enforced")
        return pod, container

    def pull_secrets(self) -> list[Doc]:
        reg = self.config.registry
        if reg is None or reg.username is None:
            return []
        return [{"name": dns_name(self.config.app, "registry")}]

    # documents
    def namespace_doc(self) -> Doc:
        meta = self.meta(self.namespace, None)
        del meta["namespace"]
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}

    def probes(self, role: RoleSpec) -> Doc:
        h = role.health
        out: Doc = {}
        tcp = {"tcpSocket": {"port": "http"}}
        if isinstance(h, HttpHealth):
            get: Doc = {"path": h.path, "port": "http"}
            if h.host or self.target.domains:
                host = h.host or self.target.domains[0].removeprefix("*.")
                get["httpHeaders"] = [{"name": "Host", "value": host}]
            period, timeout = _seconds(h.interval), _seconds(h.timeout)
            out["startupProbe"] = {"httpGet": get, "periodSeconds": period, "timeoutSeconds": timeout,
                                   "failureThreshold": max(1, math.ceil(h.attempts * h.interval / period))}
            if h.start_period:
                out["startupProbe"]["initialDelaySeconds"] = math.ceil(h.start_period)
            out["readinessProbe"] = {"httpGet": get, "periodSeconds": period, "timeoutSeconds": timeout,
                                     "failureThreshold": 3}
        elif isinstance(h, CommandHealth) and h.argv:
            check = {"exec": {"command": h.argv}}
            period, timeout = _seconds(h.interval), _seconds(h.timeout)
            out["startupProbe"] = {**check, "periodSeconds": period, "timeoutSeconds": timeout,
                                   "failureThreshold": h.attempts}
            if h.start_period:
                out["startupProbe"]["initialDelaySeconds"] = math.ceil(h.start_period)
            out["readinessProbe"] = {**check, "periodSeconds": max(period, 10), "timeoutSeconds": timeout,
                                     "failureThreshold": 3}
        elif role.port is not None:
            out["readinessProbe"] = {**tcp, "periodSeconds": 1, "failureThreshold": 3}
        # liveness restarts a container: only when it stops answering at all, never for a dependency being down
        if role.port is not None:
            out["livenessProbe"] = {**tcp, "periodSeconds": LIVENESS_PERIOD, "timeoutSeconds": 5,
                                    "failureThreshold": 3}
        elif isinstance(h, CommandHealth) and h.argv:
            out["livenessProbe"] = {"exec": {"command": h.argv}, "periodSeconds": 30,
                                    "timeoutSeconds": _seconds(h.timeout), "failureThreshold": 5}
        return out

    def pre_stop(self, role: RoleSpec) -> Doc | None:
        drain = role.port is not None
        if role.stop_signal in ("SIGTERM", "SIGKILL"):
            return {"exec": {"command": ["sleep", str(DRAIN_SECONDS)]}} if drain else None
        signal = role.stop_signal.removeprefix("SIG")
        script = (f"sleep {DRAIN_SECONDS}; " if drain else "") + \
            f"kill -{signal} 1; while kill -0 1 2>/dev/null; do sleep 1; done"
        self.notes.append(f"roles.{role.name}: stop_signal {role.stop_signal} is sent by the preStop hook "
                          f"(`kill -{signal} 1`; the image needs sh), as Kubernetes {KUBERNETES_VERSION} sends "
                          "SIGTERM (or the image's STOPSIGNAL) itself")
        return {"exec": {"command": ["sh", "-c", script]}}

    def deployment(self, role: RoleSpec) -> Doc:
        env, files = self.container_env(role)
        volumes, mounts = self.volumes(files)
        pod_sec, container_sec = self.pod_security(role.name)
        container: Doc = {"name": role.name, "image": self.image(role.name)}
        if role.argv:
            container["args"] = role.argv  # as headway runs it: the image's ENTRYPOINT is kept
        if role.port is not None:
            container["ports"] = [{"name": "http", "containerPort": role.port, "protocol": "TCP"}]
        if env:
            container["env"] = env
        if mounts:
            container["volumeMounts"] = mounts
        resources = _resources(role.resources)
        if resources:
            container["resources"] = resources
        container.update(self.probes(role))
        pre_stop = self.pre_stop(role)
        if pre_stop:
            container["lifecycle"] = {"preStop": pre_stop}
        container["securityContext"] = container_sec
        grace = math.ceil(role.stop_timeout) + (DRAIN_SECONDS if role.port is not None else 0)
        pod: Doc = {"enableServiceLinks": False, "terminationGracePeriodSeconds": grace,
                    "securityContext": pod_sec}
        pulls = self.pull_secrets()
        if pulls:
            pod["imagePullSecrets"] = pulls
        pod["containers"] = [container]
        if volumes:
            pod["volumes"] = volumes
        deploy = self.target.deploy
        spec: Doc = {"replicas": role.replicas, "revisionHistoryLimit": deploy.retain,
                     "selector": {"matchLabels": self.selector(role.name)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}}
        if isinstance(role.health, CommandHealth) and role.health.stays_running is not None:
            spec["minReadySeconds"] = math.ceil(role.health.stays_running)
        spec["progressDeadlineSeconds"] = max(_seconds(deploy.health_deadline), spec.get("minReadySeconds", 0) + 1)
        spec["template"] = {"metadata": {"labels": self.labels(role.name)}, "spec": pod}
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": self.meta(dns_name(self.config.app, role.name), role.name), "spec": spec}

    def service(self, role: RoleSpec) -> Doc:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": self.meta(dns_name(self.config.app, role.name), role.name),
                "spec": {"type": "ClusterIP", "selector": self.selector(role.name),
                         "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}

    def pdb(self, role: RoleSpec) -> Doc:
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": self.meta(dns_name(self.config.app, role.name), role.name),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self.selector(role.name)}}}

    def release_job(self) -> Doc | None:
        release, seed = self.config.release_argv, self.target.seed_argv
        if not release and not seed:
            return None
        env, files = self.container_env(None)
        volumes, mounts = self.volumes(files)
        pod_sec, container_sec = self.pod_security(RELEASE)

        def container(name: str, argv: list[str]) -> Doc:
            out: Doc = {"name": name, "image": self.image(RELEASE), "args": argv}
            if env:
                out["env"] = env
            if mounts:
                out["volumeMounts"] = mounts
            out["securityContext"] = container_sec
            return out

        pod: Doc = {"restartPolicy": "Never", "enableServiceLinks": False, "securityContext": pod_sec}
        pulls = self.pull_secrets()
        if pulls:
            pod["imagePullSecrets"] = pulls
        if release and seed:  # the seed after the release command, as a deploy runs them
            pod["initContainers"] = [container("release", release)]
            pod["containers"] = [container("seed", seed)]
        else:
            pod["containers"] = [container("release" if release else "seed", release or seed or [])]
        if volumes:
            pod["volumes"] = volumes
        component = self.release_component
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": self.meta(dns_name(self.config.app, "release", self.version), component),
                "spec": {"backoffLimit": 0, "activeDeadlineSeconds": _seconds(self.target.deploy.release_timeout),
                         "template": {"metadata": {"labels": self.labels(component)}, "spec": pod}}}

    def ingresses(self) -> list[Doc]:
        http = sorted(self.target.http_roles, key=lambda r: (-len(r.path), r.path))
        if not http:
            return []
        edge, tls = self.target.edge, self.target.tls
        common = {"nginx.ingress.kubernetes.io/proxy-body-size": edge.client_max_body_size,
                  "nginx.ingress.kubernetes.io/proxy-read-timeout": str(_seconds(edge.read_timeout)),
                  "nginx.ingress.kubernetes.io/proxy-connect-timeout": str(_seconds(edge.connect_timeout))}
        if tls is not None and not tls.redirect:
            common["nginx.ingress.kubernetes.io/ssl-redirect"] = "false"
        hosts: list[str | None] = list(self.target.domains) or [None]
        tls_secret = dns_name(self.config.app, self.env_name, "tls")
        groups: list[tuple[str, list[RoleSpec], dict[str, str]]] = []
        plain = [r for r in http if not r.strip_prefix]
        if plain:
            groups.append((dns_name(self.config.app), plain, {}))
        for r in http:
            if r.strip_prefix:
                groups.append((dns_name(self.config.app, r.name), [r], {
                    "nginx.ingress.kubernetes.io/use-regex": "true",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/$2"}))
        if any(r.strip_prefix for r in http):
            self.notes.append("strip_prefix is rendered for ingress-nginx (a regex path and "
                              "nginx.ingress.kubernetes.io/rewrite-target); another ingress controller needs its "
                              "own rewrite, or the app serving the prefix")
        out = []
        for i, (name, roles, extra) in enumerate(groups):
            annotations = {**common, **extra}
            if tls is not None and tls.certificate is None and i == 0:
                issuer = self.options.cluster_issuer or ("letsencrypt-staging" if tls.staging else "letsencrypt")
                annotations["cert-manager.io/cluster-issuer"] = issuer
            paths = []
            for r in roles:
                backend = {"service": {"name": dns_name(self.config.app, r.name), "port": {"name": "http"}}}
                if r.strip_prefix:
                    paths.append({"path": f"{r.path}(/|$)(.*)", "pathType": "ImplementationSpecific",
                                  "backend": backend})
                else:
                    paths.append({"path": r.path, "pathType": "Prefix", "backend": backend})
            rules = []
            for host in hosts:
                rule: Doc = {"host": host} if host else {}
                rule["http"] = {"paths": paths}
                rules.append(rule)
            spec: Doc = {}
            if self.options.ingress_class:
                spec["ingressClassName"] = self.options.ingress_class
            if tls is not None:
                spec["tls"] = [{"hosts": list(self.target.domains), "secretName": tls_secret}]
            spec["rules"] = rules
            out.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "metadata": self.meta(name, "ingress", sorted_dict(annotations)), "spec": spec})
        return out

    def render(self) -> Rendered:
        docs: list[Doc] = []
        if self.options.namespace_object:
            docs.append(self.namespace_doc())
        job = self.release_job()
        if job is not None:
            docs.append(job)
        roles = list(self.target.roles.values())
        docs += [self.deployment(r) for r in roles]
        docs += [self.service(r) for r in roles if r.port is not None]
        docs += [self.pdb(r) for r in roles if r.replicas > 1]
        docs += self.ingresses()
        self._notes()
        return Rendered(app=self.config.app, environment=self.env_name, version=self.version,
                        namespace=self.namespace, documents=docs, notes=list(dict.fromkeys(self.notes)),
                        steps=self._steps(job))

    def _notes(self) -> None:
        if self.config.databases:
            names = ", ".join(f"{n} ({db.engine}, {url_env_of(db)})" for n, db in self.config.databases.items())
            self.notes.append(f"databases are not rendered ({names}): use a managed database or your cluster's "
                              "operator; the app reads each URL from the Secret, so add it there")
        if self.config.accessories:
            self.notes.append(f"accessories are not rendered ({', '.join(self.config.accessories)}): run them as "
                              "managed services or with their own charts, and point the app's env at them")
        if self.target.deploy.strategy == "canary":
            self.notes.append("deploy.strategy canary is not rendered: the Deployments roll out gradually, gated "
                              "by readiness (maxUnavailable 0); use Argo Rollouts or Flagger for weighted steps")
        tls = self.target.tls
        if tls is not None and tls.certificate is not None:
            self.notes.append(f"tls uses certificate files: create the TLS Secret from them: kubectl -n "
                              f"{self.namespace} create secret tls {dns_name(self.config.app, self.env_name, 'tls')} "
                              f"--cert={tls.certificate} --key={tls.key}")
        elif tls is not None:
            self.notes.append("tls (ACME) is rendered for cert-manager: the Ingress names a ClusterIssuer "
                              "(--cluster-issuer to choose), which must exist")
        local = {j.reference: j for j in self.images.values() if j.build is not None and "/" not in j.repository}
        for job in local.values():
            self.notes.append(f"{job.reference} ({self._users(job.reference)}) is a local image name: load it into "
                              f"the cluster (e.g. `kind load docker-image {job.reference}`), or give the image a "
                              "registry `name` and push it (`headway build --push`)")
        if self.target.http_roles:
            self.notes.append(f"preStop hooks run `sleep {DRAIN_SECONDS}` (the image needs sleep) so endpoints "
                              "drain before the container gets its stop signal")

    def _steps(self, job: Doc | None) -> list[str]:
        ns = self.namespace
        steps = []
        if self.options.namespace_object:
            steps.append("kubectl apply -f FILE -l '!app.kubernetes.io/component'   # the Namespace")
        else:
            steps.append(f"# the namespace {ns} must exist")
        keys = sorted({k.key for r in [*self.target.roles.values(), None] for k in self.secret_keys(r)}
                      | {k.key for k in self.database_keys()}
                      | {m.group(1) for r in self.target.roles.values()
                         for v in {**self.target.env, **r.env}.values() for m in _REF.finditer(v)
                         if m.group(1) not in {**self.target.env, **r.env} or m.group(1) in self.all_secrets})
        if keys:
            steps.append(f"kubectl -n {ns} create secret generic {self.secret_name} "
                         f"--from-env-file={self.secrets_file}   # keys used: {', '.join(keys)}")
            steps.append("#   (KEY=value lines as written: kubectl keeps quotes and does not read `export`; add "
                         "--from-literal=KEY=... for keys not in the file)")
            commands = sorted(n for n, s in self.specs.items() if s.from_ and n in keys)
            for name in commands:
                cmd = self.specs[name].from_
                text = cmd if isinstance(cmd, str) else shlex.join(cmd or [])
                steps.append(f"#   {name} comes from a command: --from-literal={name}=\"$({text})\"")
        reg = self.config.registry
        if reg is not None and reg.username is not None:
            user = reg.username if "${" not in reg.username else "USER"
            password = _REF.fullmatch(reg.password or "")
            steps.append(f"kubectl -n {ns} create secret docker-registry {dns_name(self.config.app, 'registry')} "
                         f"--docker-server={reg.server} --docker-username={user} "
                         f"--docker-password=\"${password.group(1) if password else 'PASSWORD'}\"")
        if job is not None:
            name = job["metadata"]["name"]
            steps.append(f"kubectl apply -f FILE -l app.kubernetes.io/component={self.release_component}")
            steps.append(f"kubectl -n {ns} wait --for=condition=complete --timeout="
                         f"{_seconds(self.target.deploy.release_timeout)}s job/{name}")
        steps.append("kubectl apply -f FILE")
        return steps


def sorted_dict(d: dict[str, str]) -> dict[str, str]:
    return dict(sorted(d.items()))


def _resources(resources: Resources | None) -> Doc:
    if resources is None:
        return {}
    values: dict[str, str] = {}
    if resources.cpus is not None:
        values["cpu"] = f"{round(resources.cpus * 1000)}m"
    if resources.memory is not None:
        values["memory"] = memory_quantity(resources.memory)
    return {"requests": dict(values), "limits": dict(values)} if values else {}


def memory_quantity(docker: str) -> str:
    """A Docker memory size (512m, 1g, 1.5g, 1048576) as a Kubernetes quantity (512Mi, 1Gi, 1536Mi, 1Mi)."""
    size = memory_bytes(docker)
    if size is None:
        raise ConfigError(f"memory {docker!r} is not a size", "write e.g. 256m or 1g")
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _dockerfile_user(root: Path, build: ImageBuild) -> str | None:
    """The user the shipped stage of a Dockerfile runs as (its last USER, following FROM <stage>), else None."""
    from headway.config.dockerfile import _logical_lines

    try:
        text = (root / build.context / build.dockerfile).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    stages: list[tuple[str | None, str | None]] = []  # (alias, user) per stage
    for line in _logical_lines(text):
        m = re.match(r"(\w+)\s*(.*)", line, re.DOTALL)
        if not m:
            continue
        word, rest = m.group(1).upper(), m.group(2).strip()
        if word == "FROM":
            args = [a for a in rest.split() if not a.startswith("--")]
            if args:
                parent = next((u for a, u in reversed(stages) if a == args[0].lower()), None)
                alias = args[2].lower() if len(args) >= 3 and args[1].upper() == "AS" else None
                stages.append((alias, parent))
        elif word == "USER" and rest and stages:
            stages[-1] = (stages[-1][0], rest.split(":", 1)[0])
    if build.target:
        return next((u for a, u in stages if a == build.target.lower()), None)
    return stages[-1][1] if stages else None


def render_kubernetes(config: AppConfig, environment: str, root: Path, options: Options | None = None) -> Rendered:
    """The manifests of `environment`, in apply order, with the notes and steps a person needs."""
    return _Renderer(config, environment, root, options or Options()).render()
