"""Deploy, rollback, scale, stop, start and remove one app in one environment on a Docker host.

The order of a deploy: lock → build → release command → start new containers beside the old → health gate →
switch the proxy → drain → stop the old (kept for rollback) → record. Anything that fails before the switch
removes the new containers and leaves the old release serving as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from headway.config.model import CommandHealth, HttpHealth
from headway.config.resolve import RoleSpec, Target
from headway.engine import labels as L
from headway.errors import (
    Aborted,
    CanaryFailed,
    ConfigError,
    HeadwayError,
    HealthCheckFailed,
    NotFound,
    ProxyError,
    ReleaseCommandFailed,
)
from headway.proxy.nginx import Proxy
from headway.proxy.routes import Route, RouteCanary, RouteEdge, RouteMaintenance, RoutePath, RouteTls, peer_address
from headway.release.plan import DeployPlan, plan_deploy, plan_from_data, plan_to_data, rollback_candidate
from headway.release.images import RELEASE, make_images, plan_images
from headway.release.quick import NOTE, QuickSwitch
from headway.release.report import RecordingReporter, Reporter
from headway.release.secret_files import LABEL as SECRET_FILES_LABEL
from headway.release.secret_files import SecretFiles
from headway import faults
from headway.state.journal import Journal
from headway.release.hooks import DeployHooks, NoHooks
from headway.state.store import AppState, Current, ReleaseRecord, now_iso, operator

if TYPE_CHECKING:
    from headway.observe.health import HealthGate, HealthResult, HealthTarget
    from headway.engine.base import Engine
    from headway.engine.base import Container


@dataclass(frozen=True)
class Outcome:
    record: ReleaseRecord
    urls: list[str]


class Deployer:
    def __init__(self, target: Target, engine: Engine, proxy: Proxy, state: AppState,
                 reporter: Reporter | None = None, hooks: DeployHooks | None = None) -> None:
        self.t = target
        self.hooks: DeployHooks = hooks or NoHooks()
        self.engine = engine
        self.proxy = proxy
        self.state = state
        self.report: Reporter = reporter or RecordingReporter()
        self._gate_: HealthGate | None = None
        self.network = L.network_name(target.app, target.environment)
        self.journal = Journal(state.dir)
        self._tls: RouteTls | None = None  # set by the certificate step of a deploy
        self.secret_files = SecretFiles(engine, target.app, target.environment)  # `as: file` secrets
        # where image build contexts are read from: the app's directory, or a checkout of the ref being deployed
        self.build_root = target.root

    @property
    def gate(self) -> HealthGate:
        """The health gate, loaded when a command first checks containers (status never does)."""
        if self._gate_ is None:
            from headway.observe.health import HealthGate

            self._gate_ = HealthGate(self.engine)
        return self._gate_

    # -- queries ----------------------------------------------------------------------------------------
    def containers(self, deploy: int | None = None, role: str | None = None,
                   include_stopped: bool = True) -> list[Container]:
        sel = L.selector(app=self.t.app, environment=self.t.environment, kind="app", deploy=deploy, role=role)
        return sorted(self.engine.containers(sel, include_stopped=include_stopped), key=lambda c: c.name or "")

    def accessories(self) -> list[Container]:
        return self.engine.containers(L.selector(app=self.t.app, environment=self.t.environment,
                                                 kind="accessory"))

    def present_deploys(self) -> set[int]:
        sel = L.selector(app=self.t.app, environment=self.t.environment, kind="app")
        # labels are all this needs: the sparse list avoids inspecting every retained container
        labels = [c["labels"] for c in self.engine.summaries(sel)]
        return {int(lb[L.DEPLOY]) for lb in labels if L.DEPLOY in lb}

    def urls(self) -> list[str]:
        settings = self.proxy.settings()
        if self.t.tls is not None:
            suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
            out = [f"https://{d}{suffix}/" for d in self.t.domains]
        else:
            suffix = "" if settings.http_port == 80 else f":{settings.http_port}"
            out = [f"http://{d}{suffix}/" for d in self.t.domains]
        if self.t.port:
            out.append(f"http://localhost:{self.t.port}/")
        return out

    # -- deploy -----------------------------------------------------------------------------------------
    def deploy(self, version: str, *, wait: float | None = None, image_tag: str | None = None) -> Outcome:
        """Deploy `version`: built here, or with `image_tag` pulled from the registry as CI pushed it."""
        with self.state.lock(f"deploy {version}", wait=self.t.deploy.lock_wait if wait is None else wait):
            started = time.monotonic()
            self._require_proxy()
            self.reconcile()
            self.t.secrets.fetch()  # every `from:` command, before anything is recorded or changed
            history = self.state.history()
            current = self.state.current()
            present = self.present_deploys()
            number = self.state.allocate_number(present)
            plan = plan_deploy(self.t, number, version, current, history, present)
            images = plan_images(self.t, version, image_tag)
            image = images.for_user(RELEASE).reference
            record = ReleaseRecord(number=number, version=version, image=image, config_hash=self.t.config_hash(),
                                   color=plan.color, replicas=plan.replicas, replaced=current.live)
            op = self.journal.begin("deploy", {"number": number, "record": record.model_dump(mode="json"),
                                               "plan": plan_to_data(plan),
                                               "previous": current.model_dump(mode="json")},
                                    by=record.by, started_at=record.started_at)
            faults.point("deploy:begin")
            try:
                self._preflight()
                with self.report.step("prepare network and accessories"):
                    self.ensure_accessories()
                faults.point("deploy:accessories")
                if self.t.tls is not None:
                    with self.report.step(f"certificate for {', '.join(self.t.domains)}"):
                        from headway.proxy.certificates import ensure_certificate

                        self._tls = ensure_certificate(self.t, self.proxy, self.report)
                made = make_images(images, self.t, self.engine, self.build_root, self.report)
                image = record.image = made[RELEASE]
                record.images = {r: ref for r, ref in made.items() if r != RELEASE}
                self.journal.step(op, "built", {"record": record.model_dump(mode="json")})
                faults.point("deploy:built")
                pre_release = self.hooks.backup_before_release(self.t, self.engine, self.state.root, self.report,
                                                               number) if self.t.config.databases else []
                try:
                    self._run_release_commands(image, number, version)
                except ReleaseCommandFailed as exc:
                    raise self.hooks.with_restore_hint(exc, pre_release, self.t.environment) from None
                faults.point("deploy:released")
                if self._canary_applies(current):
                    http = {r.name for r in self.t.http_roles}
                    web_plan = replace(plan, start=[s for s in plan.start if s.role in http])
                    rest_plan = replace(plan, start=[s for s in plan.start if s.role not in http])
                    new = self._start_new(web_plan, record)
                    self._run_canary(plan, new, version, current)
                    new += self._start_new(rest_plan, record)
                else:
                    new = self._start_new(plan, record)
                faults.point("deploy:gated")
                self._switch(plan, new, version)
                self.journal.step(op, "switched")
                faults.point("deploy:switched")
            except BaseException as exc:
                record.outcome = "failed"
                record.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                record.duration_s = round(time.monotonic() - started, 3)
                self.state.record(record)
                self.journal.end(op, "undone", record.error)
                raise
            record.duration_s = round(time.monotonic() - started, 3)
            self._supersede(current.live)
            self.state.record(record)
            self.state.set_current(Current(live=number, standby=plan.standby, replicas=plan.replicas,
                                           maintenance=current.maintenance))
            self.journal.step(op, "recorded")
            faults.point("deploy:recorded")
            self._retire_after_switch(plan, current)
            self.journal.end(op, "finished")
            self._write_standby_note(plan)
            return Outcome(record, self.urls())

    def reconcile(self) -> list[str]:
        """Finish or undo what an interrupted command left, and make the files agree with what is served.
        Call with the deploy lock held."""
        from headway.release.reconcile import Reconciler

        notes = Reconciler(self).run()
        notes += self._reconcile_secret_files()
        for note in notes:
            self.report.info(note)
        return notes

    def _preflight(self) -> None:
        """Every domain and port clash with other apps on this host, all at once, before anything is built."""
        if not (self.t.domains or self.t.port):
            return
        live = self.proxy.routes.get(self.t.app, self.t.environment)
        probe = Route(app=self.t.app, environment=self.t.environment, release="-", deploy=0,
                      domains=self.t.domains, port=self.t.port, tls=live.tls if live else None)
        self.proxy.preflight(probe)

    def _canary_applies(self, current: Current) -> bool:
        """A canary needs a stable release to compare with and a route to split."""
        return (self.t.deploy.strategy == "canary" and current.live is not None and not current.stopped
                and self.t.web_role is not None and bool(self.t.domains or self.t.port)
                and self.proxy.routes.get(self.t.app, self.t.environment) is not None)

    def _run_canary(self, plan: DeployPlan, web: list[Container], version: str, current: Current) -> None:
        from headway.observe.access_log import AccessLogReader
        from headway.release.canary import CanaryAborted, CanaryPromoted, CanaryRequests, watch_step

        settings = self.t.deploy.canary
        stable = self.proxy.routes.get(self.t.app, self.t.environment)
        assert stable is not None
        stable = stable.model_copy(update={"canary": None})
        reader = AccessLogReader(self.proxy.access_log, self.t.app, self.t.environment)
        requests = CanaryRequests(self.state.dir)
        requests.clear()
        upstreams = self._upstreams(web)
        try:
            for step in settings.steps:
                with self.report.step(f"canary: {step.weight}% of requests to {version} for {step.duration:g}s"):
                    self.proxy.set_route(stable.model_copy(update={"canary": RouteCanary(
                        release=version, deploy=plan.number, upstreams=upstreams, weight=step.weight,
                        sticky=settings.sticky)}))
                    faults.point("canary:step")
                    watch_step(reader, version, step.weight, step.duration, settings, requests, self.report)
        except CanaryPromoted:
            self.report.info("  canary promoted by hand")
        except BaseException as exc:
            with self.report.step("canary failed: all requests back to the stable release"):
                self.proxy.set_route(stable)
                self._discard(web)
            if isinstance(exc, CanaryAborted):
                raise CanaryFailed(f"canary of {version} rolled back: {exc.reason}",
                                   "see `headway releases` for the reason; fix the release and deploy again",
                                   details=None) from None
            raise
        finally:
            requests.clear()

    def canary_request(self, action: str, *, wait: float = 120.0) -> str:
        """`headway promote` / `headway abort`: ask the running deploy, or act directly if none runs."""
        from headway.release.canary import CanaryRequests

        route = self.proxy.routes.get(self.t.app, self.t.environment)
        if route is None or route.canary is None:
            raise NotFound(f"no canary is running for {self.t.app}/{self.t.environment}",
                           "a canary runs while `headway deploy` with `strategy: canary` is in progress")
        if self.state.lock_holder() is not None:
            CanaryRequests(self.state.dir).put(action, operator())
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                live = self.proxy.routes.get(self.t.app, self.t.environment)
                if live is None or live.canary is None:
                    return f"{action} done by the running deploy"
                time.sleep(0.2)  # the deploy acts at its next analysis interval
            raise HeadwayError(f"the running deploy did not act on `{action}` within {wait:g}s",
                               "check the deploy's output; `headway status` shows the canary")
        if action == "promote":
            raise HeadwayError("the deploy that ran this canary is no longer running, so it cannot be promoted",
                               f"abort it (`headway abort -e {self.t.environment}`) and deploy again")
        with self.state.lock("abort canary"):
            canary = route.canary
            self.proxy.set_route(route.model_copy(update={"canary": None}))
            for c in self.containers(deploy=canary.deploy):
                self.engine.remove(c)
        return "canary aborted; every request goes to the stable release"

    def _require_proxy(self) -> None:
        if (self.t.domains or self.t.port) and not self.proxy.is_running():
            raise ProxyError("the headway proxy is not running on this host", "run `headway proxy boot` once")

    def _env_for(self, role: RoleSpec | None, version: str, number: int) -> dict[str, str]:
        return self.hooks.database_env(self.t, self.engine, self.state.root) | self.t.container_env(role, {
            "HEADWAY_APP": self.t.app, "HEADWAY_ENVIRONMENT": self.t.environment,
            "HEADWAY_RELEASE": version, "HEADWAY_DEPLOY": str(number),
            "HEADWAY_ROLE": role.name if role else "release"})

    def _run_release_commands(self, image: str, number: int, version: str) -> None:
        commands = [("release", self.t.config.release_argv), ("seed", self.t.seed_argv)]
        for kind, argv in commands:
            if not argv:
                continue
            with self.report.step(f"{kind} command: {' '.join(argv)}"):
                name = f"{self.t.app}-{self.t.environment}-{kind}-{number}"
                files = self.t.secret_files(self.t.role_secrets(None))
                try:
                    result = self.engine.run_oneoff(
                        name=name, image=image, command=argv, env=self._env_for(None, version, number),
                        labels=L.owned("oneoff", app=self.t.app, environment=self.t.environment, role=kind,
                                       release=version, deploy=number),
                        network=self.network, timeout=self.t.deploy.release_timeout, on_line=self.report.output,
                        volumes=self.secret_files.mount(name) if files else None,
                        prepare=self.secret_files.preparer(files))
                finally:
                    self.secret_files.remove(name)
                if result.timed_out or result.exit_code != 0:  # inside the step: it shows as failed
                    why = "timed out" if result.timed_out else f"exited {result.exit_code}"
                    raise ReleaseCommandFailed(f"{kind} command `{' '.join(argv)}` {why}; nothing was switched",
                                               "fix the command or its migration; the old release keeps serving",
                                               details=result.output[-4000:])

    def _start_new(self, plan: DeployPlan, record: ReleaseRecord) -> list[Container]:
        new: list[Container] = []
        try:
            with self.report.step(f"start {len(plan.start)} new container(s)"):
                for spec in plan.start:
                    role = self.t.roles[spec.role]
                    new.append(self._create_app_container(spec.name, role, record.image_of(role.name),
                                                          plan.version, plan.number, plan.color))
                for c in new:
                    self.engine.start(c)
            faults.point("deploy:started")
            with self.report.step("health gate"):
                self._gate(new)
        except BaseException:
            self._discard(new)
            raise
        return new

    def _create_app_container(self, name: str, role: RoleSpec, image: str, version: str, number: int,
                              color: str) -> Container:
        if self.t.secrets_withheld:
            env, labels, files = self._like_sibling(role, number)
        else:
            files = self.t.secret_files(self.t.role_secrets(role))
            env = self._env_for(role, version, number)
            labels = L.owned("app", app=self.t.app, environment=self.t.environment, role=role.name,
                             release=version, deploy=number, color=color, config_hash=self.t.config_hash()) \
                | (SecretFiles.label(list(files)) if files else {})
        container = self.engine.create(
            name=name, image=image, command=role.argv, env=env, labels=labels,
            network=self.network, resources=role.resources, fixed_address=role.port is not None,
            stop_signal=role.stop_signal, volumes=self.secret_files.mount(name) if files else None,
            serve_port=role.port, stop_timeout=role.stop_timeout,
            health_command=role.health.argv if isinstance(role.health, CommandHealth) and role.health.argv
            else None)
        if files:
            self._write_secret_files(container, files)
        return container

    def _like_sibling(self, role: RoleSpec, number: int) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """Env, labels and secret files of a replica of `role` in deploy `number`, for a new one when the secrets
        are withheld (config/kept.py): the running replica holds them already."""
        siblings = sorted(self.containers(deploy=number, role=role.name, include_stopped=False),
                          key=lambda c: c.name or "")
        if not siblings:
            raise HeadwayError(f"no running {role.name} container of deploy {number} to take its env from, and the "
                               "secrets are not kept on the host",
                               f"scale {role.name} where the deploys of {self.t.environment} come from")
        model = siblings[0]
        names = [n for n in (model.labels.get(SECRET_FILES_LABEL) or "").split(",") if n]
        folder = self.secret_files.folder(model.name or "")
        files = {n: (folder / n).read_text() for n in names if (folder / n).is_file()}
        if len(files) != len(names):
            raise HeadwayError(f"the secret files of {model.name} are missing on the host",
                               f"run the command where the deploys of {self.t.environment} come from")
        return self.engine.container_env(model), dict(model.labels), files

    def _write_secret_files(self, container: Container, files: dict[str, str]) -> None:
        try:
            self.secret_files.write(container, files)
        except BaseException:
            self.engine.remove(container)
            self.secret_files.remove(container.name or "")
            raise

    def _reconcile_secret_files(self) -> list[str]:
        """Folders of removed containers go; files missing after a host reboot are written again."""
        self.secret_files.sweep()
        if self.t.secrets_withheld:  # no values to write them with: the next command with secrets does
            return []

        def values(names: list[str]) -> dict[str, str]:
            known = [n for n in names if self.t.secrets.has(n)]
            self.t.secrets.fetch(known)
            return {n: self.t.secrets[n] for n in known}
        return self.secret_files.restore(values)

    def _gate(self, containers: list[Container]) -> None:
        targets = []
        for c in containers:
            role = self.t.roles[c.labels[L.ROLE]]
            targets.append(_health_target()(container=c, role=role.name, health=role.health, port=role.port,
                                        network=self.network, host_header=self.t.domains[0] if self.t.domains
                                        else None))
        results = self.gate.wait_all(targets, self.t.deploy.health_deadline)
        failed = [r for r in results if not r.healthy]
        if failed:
            raise HealthCheckFailed(_health_message(failed),
                                    "fix the app or its health check in headway.yml; the old release keeps serving",
                                    details=self._last_logs(containers, failed))

    def _last_logs(self, containers: list[Container], failed: list[HealthResult]) -> str:
        names = {r.container for r in failed}
        parts = []
        for c in containers:
            if c.name in names:
                parts.append(f"--- last log lines of {c.name} ---\n{self.engine.last_lines(c, 15)}")
        return "\n".join(parts)

    def _discard(self, containers: list[Container]) -> None:
        for c in containers:
            self.engine.remove(c)
            self.secret_files.remove(c.name or "")

    def routed_peers(self) -> set[str]:
        """Every ip:port the proxy sends this environment's requests to now (stable and canary, every role)."""
        served = self.proxy.served()
        route = served.routes.get(self.route_key) if served else None
        if route is None:
            return set()
        return {peer_address(p) for p in list(route.peers) + list(route.canary_peers)}

    def peer_of(self, container: Container) -> str | None:
        """ip:port the proxy would route to for this container (None: not an HTTP role)."""
        role = self.t.roles.get(container.labels.get(L.ROLE, ""))
        if role is None or role.port is None:
            return None
        return self.engine.endpoint(container, self.network, role.port)

    def _web_only(self, containers: list[Container]) -> list[Container]:
        """The containers of the roles that serve HTTP through the proxy."""
        http = {r.name for r in self.t.http_roles}
        return [c for c in containers if c.labels.get(L.ROLE) in http]

    def _upstreams(self, containers: list[Container]) -> list[str]:
        """The proxy's peers for these containers: role@ip:port of each one that serves HTTP."""
        out = []
        for c in self._web_only(containers):
            address = self.peer_of(c)
            if address:
                out.append(f"{c.labels[L.ROLE]}@{address}")
        return out

    def _route_for(self, web: list[Container], version: str, number: int) -> Route | None:
        """The route serving `web`; maintenance and TLS carry over from the route already live."""
        if not (self.t.domains or self.t.port):
            return None
        live = self.proxy.routes.get(self.t.app, self.t.environment)
        edge = self.t.edge
        pages = self.proxy.install_error_pages(f"{self.t.app}--{self.t.environment}",
                                               {s: self.t.root / p for s, p in edge.error_pages.items()})
        return Route(app=self.t.app, environment=self.t.environment, release=version, deploy=number,
                     domains=self.t.domains, port=self.t.port, upstreams=self._upstreams(web),
                     paths=[RoutePath(role=r.name, path=r.path, strip_prefix=r.strip_prefix)
                            for r in self.t.http_roles],
                     edge=RouteEdge(client_max_body_size=edge.client_max_body_size,
                                    read_timeout=max(1, int(edge.read_timeout)),
                                    connect_timeout=max(1, int(edge.connect_timeout)), gzip=edge.gzip,
                                    security_headers=edge.security_headers, error_pages=pages),
                     tls=self._tls if self._tls is not None else (live.tls if live and self.t.tls else None),
                     maintenance=live.maintenance if live else None,
                     maintenance_rules=self._maintenance_rules(live))

    def _maintenance_rules(self, live: Route | None) -> RouteMaintenance:
        """Health checks keep reaching the app in maintenance: their path is part of the config from the first
        deploy, so turning maintenance on later changes routing only."""
        exempt = self.t.public_health_paths
        rules = live.maintenance_rules if live and live.maintenance_rules else RouteMaintenance(message="")
        return rules.model_copy(update={"exempt_paths": exempt})

    def _switch(self, plan: DeployPlan, new: list[Container], version: str) -> None:
        web = self._web_only(new)
        route = self._route_for(web, version, plan.number)
        if route is None:
            return
        try:
            with self.report.step("switch traffic"):
                self.proxy.set_route(route)
        except BaseException:
            if self.serving_deploy() == plan.number:
                # the proxy took the new routing before the failure: the new release serves, keep it
                self.report.info("warning: the proxy serves the new release, but did not confirm every change")
                return
            self._discard(new)
            raise

    def serving_deploy(self) -> int | None:
        """The deploy number the proxy routes this environment's requests to, as the proxy says."""
        served = self.proxy.served()
        route = served.routes.get(self.route_key) if served else None
        return route.deploy if route is not None else None

    @property
    def route_key(self) -> str:
        return f"{self.t.app}--{self.t.environment}"

    def _retire_after_switch(self, plan: DeployPlan, current: Current) -> None:
        """The new release serves already: a failure to clean up the old one is reported, not fatal."""
        try:
            self._retire(plan, current)
        except Exception as exc:  # noqa: BLE001 - anything here must not undo a good switch
            self.report.info(f"warning: the previous release was not fully stopped: {exc}")

    def _retire(self, plan: DeployPlan, current: Current) -> None:
        with self.report.step("drain and stop the previous release"):
            retired_web = [c for n in plan.retire for c in self.containers(deploy=n, include_stopped=False)
                           if n != plan.standby]
            self.proxy.wait_drained(self.t.deploy.drain_timeout, self._upstreams(self._web_only(retired_web)))
            routed = self.routed_peers()
            for number in plan.retire:
                for c in self.containers(deploy=number, include_stopped=False):
                    if number == plan.standby and self.peer_of(c) is not None:
                        continue  # the warm standby keeps its web containers running
                    if self.peer_of(c) in routed:
                        continue  # never stop what the proxy routes to
                    self.engine.stop(c, self.t.roles[c.labels[L.ROLE]].stop_timeout
                                     if c.labels[L.ROLE] in self.t.roles else 10)
                    faults.point("retire:stopped")
        if plan.prune:
            with self.report.step(f"prune releases {', '.join(map(str, plan.prune))}"):
                kept = {ref for rec in self.state.history() if rec.number not in plan.prune
                        and rec.action == "deploy" for ref in [rec.image, *rec.images.values()]}
                kept |= {str(c.attrs.get("Config", {}).get("Image", "")) for c in self.containers()
                         if int(c.labels.get(L.DEPLOY, 0)) not in plan.prune}
                for number in plan.prune:
                    refs = {ref for rec in self.state.history() if rec.number == number and rec.action == "deploy"
                            for ref in [rec.image, *rec.images.values()]}
                    for c in self.containers(deploy=number):
                        refs.add(str(c.attrs.get("Config", {}).get("Image", "")))
                        self.engine.remove(c)
                        self.secret_files.remove(c.name or "")
                    for ref in refs - kept - {""}:
                        self.engine.remove_image(ref)

    def _supersede(self, previous: int | None) -> None:
        if previous is None:
            return
        for rec in self.state.history():
            if rec.number == previous and rec.outcome == "live":
                self.state.record(rec.model_copy(update={"outcome": "superseded"}))

    # -- accessories ------------------------------------------------------------------------------------
    def ensure_accessories(self) -> None:
        self.engine.ensure_network(self.network, L.owned("network", app=self.t.app,
                                                         environment=self.t.environment))
        pending = []
        for acc in self.t.accessories.values():
            name = L.accessory_name(self.t.app, self.t.environment, acc.name)
            existing = self.engine.get(name)
            if existing is not None:
                if not self.engine.state(existing).get("Running"):
                    self.engine.start(existing)
                    pending.append((existing, acc))
                continue
            self.engine.require_image(acc.image, f"accessory {acc.name}")
            volumes = {}
            for vol, path in acc.volumes:
                vname = L.volume_name(self.t.app, self.t.environment, acc.name, vol)
                self.engine.ensure_volume(vname, L.owned("volume", app=self.t.app,
                                                         environment=self.t.environment, role=acc.name))
                volumes[vname] = {"bind": path, "mode": "rw"}
            files = self.t.secret_files(acc.secret_names)
            container = self.engine.create(
                name=name, image=acc.image, command=acc.argv, env=self.t.accessory_env(acc),
                labels=L.owned("accessory", app=self.t.app, environment=self.t.environment, role=acc.name)
                | (SecretFiles.label(list(files)) if files else {}),
                network=self.network, aliases=[acc.name], resources=acc.resources,
                volumes={**volumes, **(self.secret_files.mount(name) if files else {})})
            if files:
                self._write_secret_files(container, files)
            self.engine.start(container)
            pending.append((container, acc))
        targets = [_health_target()(container=c, role=a.name, health=a.health, port=None, network=self.network)
                   for c, a in pending]
        failed = [r for r in self.gate.wait_all(targets, self.t.deploy.health_deadline) if not r.healthy]
        if failed:
            raise HealthCheckFailed("accessory " + _health_message(failed),
                                    "check the accessory's image, env and secrets in headway.yml",
                                    details=self._last_logs([c for c, _ in pending], failed))
        self.hooks.ensure_databases(self.t, self.engine, self.state.root, self.report)

    # -- rollback ---------------------------------------------------------------------------------------
    def rollback(self, ref: str | None = None, *, wait: float | None = None,
                 quick: QuickSwitch | None = None) -> Outcome:
        if quick is not None:
            return self._finish_quick_rollback(quick)
        with self.state.lock(f"rollback {ref or ''}".strip(), wait=self.t.deploy.lock_wait if wait is None
                             else wait):
            started = time.monotonic()
            switched_at = 0.0
            self.reconcile()
            current = self.state.current()
            present = self.present_deploys()
            if ref is None:
                number = rollback_candidate(self.state.history(), current, present)
                if number is None:
                    raise NotFound(f"no earlier release of {self.t.app}/{self.t.environment} to roll back to",
                                   f"see `headway releases -e {self.t.environment}`")
            else:
                number = self.state.find(ref).number
            if number == current.live:
                raise HeadwayError(f"release {ref} (deploy {number}) is already live", "nothing to do")
            if number not in present:
                rec = self.state.find(number)
                raise NotFound(f"the containers of release {rec.version} (deploy {number}) were pruned",
                               f"redeploy it: `headway deploy -e {self.t.environment} --version {rec.version}` "
                               "from that commit")
            target_rec = self.state.find(number)
            containers = self.containers(deploy=number)
            web = self._web_only(containers)
            others = [c for c in containers if c not in web]
            record = ReleaseRecord(number=self.state.allocate_number(), action="rollback", outcome="done",
                                   version=target_rec.version, image=target_rec.image,
                                   config_hash=target_rec.config_hash, color=target_rec.color,
                                   rollback_of=current.live, target=number,
                                   replicas={r: sum(1 for c in containers if c.labels.get(L.ROLE) == r)
                                             for r in self.t.roles})
            standby = current.live if self.t.deploy.warm_standby else None
            plan = DeployPlan(number=number, version=target_rec.version, color=target_rec.color, start=[],
                              replicas=record.replicas,
                              retire=[n for n in (current.live, current.standby) if n is not None and n != number],
                              standby=standby)
            op = self.journal.begin("rollback", {
                "number": number, "record": record.model_dump(mode="json"), "plan": plan_to_data(plan),
                "previous": current.model_dump(mode="json"),
                "running_before": [c.name for c in containers if c.status == "running"]},
                by=record.by, started_at=record.started_at)
            faults.point("rollback:begin")
            switched = False
            try:
                # web first: traffic moves as soon as the web containers pass; the other roles follow
                for group, label in ((web, "web"), (others, "other roles")):
                    if not group:
                        continue
                    with self.report.step(f"start {label} of release {target_rec.version} (deploy {number})"):
                        for c in group:
                            if c.status != "running":  # a warm standby is running already
                                self.engine.start(c)
                    with self.report.step(f"health gate ({label})"):
                        self._gate(group)
                    route = self._route_for(web, target_rec.version, number) if group is web else None
                    if route is not None:
                        with self.report.step("switch traffic"):
                            self.proxy.set_route(route)
                        switched_at = time.monotonic() - started
                        switched = True
                        self.journal.step(op, "switched")
                        faults.point("rollback:switched")
            except BaseException as exc:
                if not switched and self.serving_deploy() != number:
                    self._stop_unless(containers, op.plan["running_before"])
                    self.journal.end(op, "undone", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    raise
                self.report.info(f"warning: release {target_rec.version} serves, but: {exc}")
            record.duration_s = round(switched_at, 3)
            self._record_rollback(record, current, plan)
            self.journal.step(op, "recorded")
            faults.point("rollback:recorded")
            self._retire_after_switch(plan, current)
            self.journal.end(op, "finished")
            self._write_standby_note(plan)
            return Outcome(record, self.urls())

    def _finish_quick_rollback(self, quick: QuickSwitch) -> Outcome:
        """The switch to the warm standby was made before the library loaded (release/quick.py): sync the files,
        start the other roles, record, retire. The lock and the journal operation are the quick path's."""
        with self.state.adopt_lock(quick.lock_fd):
            op = next(o for o in self.journal.operations() if o.id == quick.op_id)
            record = ReleaseRecord.model_validate(op.plan["record"])
            plan = plan_from_data(op.plan["plan"])
            current = self.state.current()  # not yet recorded: still names the release traffic left
            containers = self.containers(deploy=quick.number)
            web = self._web_only(containers)
            route = self._route_for(web, record.version, quick.number)
            if route is not None:
                self.proxy.set_route(route)  # the files on the host say what the proxy already serves
            others = [c for c in containers if c not in web]
            try:
                with self.report.step(f"start other roles of release {record.version} (deploy {quick.number})"):
                    for c in others:
                        if c.status != "running":
                            self.engine.start(c)
                with self.report.step("health gate (other roles)"):
                    self._gate(others)
            except Exception as exc:  # noqa: BLE001 - traffic is on the standby already; say what is wrong
                self.report.info(f"warning: release {record.version} serves, but: {exc}")
            record.duration_s = round(quick.switched_after_s, 3)
            self._record_rollback(record, current, plan)
            self.journal.step(op, "recorded")
            self._retire_after_switch(plan, current)
            self.journal.end(op, "finished")
            self._write_standby_note(plan)
            return Outcome(record, self.urls())

    def _write_standby_note(self, plan: DeployPlan) -> None:
        """What a rollback to the warm standby will do, for release/quick.py; removed when there is none."""
        path = self.state.dir / NOTE
        http = self.t.http_roles
        if plan.standby is None or not http or not all(isinstance(r.health, HttpHealth) for r in http) or \
                not (self.t.domains or self.t.port):
            path.unlink(missing_ok=True)
            return
        standby = [c for c in self.containers(deploy=plan.standby, include_stopped=False)]
        web = self._web_only(standby)
        target = next((r for r in self.state.history() if r.number == plan.standby and r.action == "deploy"),
                      None)
        if not web or target is None:
            path.unlink(missing_ok=True)
            return
        all_standby = self.containers(deploy=plan.standby)
        replicas = {r: sum(1 for c in all_standby if c.labels.get(L.ROLE) == r) for r in self.t.roles}
        record = ReleaseRecord(number=0, action="rollback", outcome="done", version=target.version,
                               image=target.image, config_hash=target.config_hash, color=target.color,
                               rollback_of=plan.number, target=plan.standby, replicas=replicas)
        back = DeployPlan(number=plan.standby, version=target.version, color=target.color, start=[],
                          replicas=replicas, retire=[plan.number],
                          standby=plan.number if self.t.deploy.warm_standby else None)
        current = self.state.current()
        checks = {}
        for role in http:
            health = role.health
            assert isinstance(health, HttpHealth)
            checks[role.name] = {"path": health.path, "status": health.status, "timeout": health.timeout,
                                 "host": health.host or (self.t.domains[0] if self.t.domains else None)}
        note = {"live": plan.number, "standby": plan.standby, "release": target.version,
                "route_key": self.route_key, "peers": self._upstreams(web), "health": checks,
                "plan": {"number": plan.standby, "record": record.model_dump(mode="json"),
                         "plan": plan_to_data(back), "previous": current.model_dump(mode="json"),
                         "running_before": [c.name for c in all_standby if c.status == "running"]}}
        tmp = path.with_name(f".{NOTE}.tmp")
        tmp.write_text(json.dumps(note, indent=2))
        os.replace(tmp, path)

    def _record_rollback(self, record: ReleaseRecord, current: Current, plan: DeployPlan) -> None:
        for rec in self.state.history():
            if rec.action != "deploy":
                continue
            if rec.number == current.live or (rec.outcome == "live" and rec.number != plan.number):
                self.state.record(rec.model_copy(update={"outcome": "rolled-back"}))
            elif rec.number == plan.number and rec.outcome != "live":
                self.state.record(rec.model_copy(update={"outcome": "live"}))
        self.state.record(record)
        self.state.set_current(Current(live=plan.number, standby=plan.standby, replicas=record.replicas,
                                       maintenance=current.maintenance))

    def _stop_unless(self, containers: list[Container], keep_running: list[str]) -> None:
        """Undo of a start: stop what was not running before (and is not routed to)."""
        routed = self.routed_peers()
        for c in containers:
            if c.name in keep_running or self.peer_of(c) in routed:
                continue
            role = self.t.roles.get(c.labels.get(L.ROLE, ""))
            self.engine.stop(c, role.stop_timeout if role else 10)

    # -- scale ------------------------------------------------------------------------------------------
    def scale(self, counts: dict[str, int], *, wait: float | None = None, reason: str | None = None
              ) -> dict[str, int]:
        for role, n in counts.items():
            if role not in self.t.roles:
                raise ConfigError(f"no role {role!r} in headway.yml", f"roles: {', '.join(self.t.roles)}")
            if not 0 <= n <= 100:
                raise ConfigError(f"{role}={n}: replicas must be between 0 and 100", "use e.g. web=3")
        with self.state.lock("scale", wait=self.t.deploy.lock_wait if wait is None else wait):
            self.reconcile()
            current = self._require_live()
            live = current.live
            assert live is not None
            rec = self.state.find(live)
            by_role: dict[str, list[Container]] = defaultdict(list)
            for c in self.containers(deploy=live, include_stopped=False):
                by_role[c.labels[L.ROLE]].append(c)
            http_roles = {r.name for r in self.t.http_roles}
            stale = [c for c in self.containers(deploy=live) if c.status != "running"]
            create: list[tuple[str, str]] = []
            removed: list[Container] = []
            for role, n in counts.items():
                have = by_role[role]
                if n > len(have):
                    used = {int((c.name or "0").rsplit("-", 1)[-1]) for c in self.containers(deploy=live,
                                                                                            role=role)}
                    index = max(used, default=0)
                    for _ in range(n - len(have)):
                        index += 1
                        create.append((role, L.container_name(self.t.app, self.t.environment, role, live, index)))
                elif n < len(have):
                    removed.extend(sorted(have, key=lambda c: c.name or "")[n:])
            op = self.journal.begin("scale", {"live": live, "counts": counts, "create": [n for _, n in create],
                                              "remove": [c.name for c in removed]},
                                    by=operator(), started_at=now_iso())
            faults.point("scale:begin")
            added: list[Container] = []
            try:
                with self.report.step("start new containers"):
                    for c in stale:
                        if c.name in {n for _, n in create}:
                            self.engine.remove(c)
                    for role, name in create:
                        c = self._create_app_container(name, self.t.roles[role], rec.image_of(role), rec.version,
                                                       live, rec.color)
                        self.engine.start(c)
                        added.append(c)
                faults.point("scale:started")
                with self.report.step("health gate"):
                    self._gate(added)
                keep = [c for c in self.containers(deploy=live, include_stopped=False)
                        if c.id not in {r.id for r in removed}]
                if any(c.labels[L.ROLE] in http_roles for c in added + removed):
                    web = self._web_only(keep)
                    route = self._route_for(web, rec.version, live)
                    if route is not None:
                        with self.report.step("update proxy"):
                            self.proxy.set_route(route)
            except BaseException as exc:
                routed = self.routed_peers()
                if not any(self.peer_of(c) in routed for c in added) or not routed:
                    self._discard(added)
                    self.journal.end(op, "undone", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    raise
                self.report.info(f"warning: the proxy serves the new containers, but: {exc}")
            self.journal.step(op, "switched")
            faults.point("scale:switched")
            if removed:
                with self.report.step(f"drain and stop {len(removed)} container(s)"):
                    self.proxy.wait_drained(self.t.deploy.drain_timeout, self._upstreams(self._web_only(removed)))
                    self._remove_unrouted(removed)
            replicas = {**current.replicas, **counts}
            self.state.set_current(current.model_copy(update={"replicas": replicas}))
            self.state.record(ReleaseRecord(number=self.state.allocate_number(), action="scale",
                                            outcome="done", version=rec.version, image=rec.image, color=rec.color,
                                            replicas=replicas, target=live, reason=reason))
            self.journal.end(op, "finished")
            return replicas

    def _remove_unrouted(self, containers: list[Container]) -> None:
        routed = self.routed_peers()
        for c in containers:
            if self.peer_of(c) in routed:
                continue
            role = self.t.roles.get(c.labels.get(L.ROLE, ""))
            self.engine.stop(c, role.stop_timeout if role else 10)
            self.engine.remove(c)
            self.secret_files.remove(c.name or "")

    def _require_live(self) -> Current:
        current = self.state.current()
        if current.live is None:
            raise NotFound(f"{self.t.app}/{self.t.environment} has not been deployed",
                           f"run `headway deploy -e {self.t.environment}` first")
        return current

    # -- stop / start / remove --------------------------------------------------------------------------
    def stop(self, *, lock: bool = True) -> None:
        """Take the environment out of the proxy and stop it (`lock=False`: the caller holds the deploy lock)."""
        with self.state.lock("stop") if lock else nullcontext():
            if lock:
                self.reconcile()
            current = self._require_live()
            assert current.live is not None
            rec = self.state.find(current.live)
            op = self.journal.begin("stop", {"live": current.live}, by=operator(), started_at=now_iso())
            route = self._route_for([], rec.version, current.live)
            if route is not None:
                with self.report.step("take out of the proxy"):
                    self.proxy.set_route(route)
            self.journal.step(op, "switched")
            faults.point("stop:switched")
            with self.report.step("drain and stop containers"):
                self.proxy.wait_drained(self.t.deploy.drain_timeout,
                                        self._upstreams(self._web_only(self.containers(include_stopped=False))))
                self._stop_all()
            self._record_stopped(current)
            self.journal.end(op, "finished")

    def _stop_all(self) -> None:
        routed = self.routed_peers()
        for c in self.containers(include_stopped=False):
            if self.peer_of(c) in routed:
                continue
            self.engine.stop(c, self.t.roles[c.labels[L.ROLE]].stop_timeout
                             if c.labels.get(L.ROLE) in self.t.roles else 10)

    def _record_stopped(self, current: Current) -> None:
        assert current.live is not None
        rec = self.state.find(current.live)
        self.state.set_current(current.model_copy(update={"stopped": True, "standby": None}))
        self.state.record(ReleaseRecord(number=self.state.allocate_number(), action="stop", outcome="done",
                                        version=rec.version, image=rec.image, target=current.live))

    def start(self, *, lock: bool = True) -> None:
        """Start the live release again (`lock=False`: the caller holds the deploy lock)."""
        with self.state.lock("start") if lock else nullcontext():
            if lock:
                self.reconcile()
            current = self._require_live()
            assert current.live is not None
            rec = self.state.find(current.live)
            op = self.journal.begin("start", {"live": current.live}, by=operator(), started_at=now_iso())
            try:
                with self.report.step("start accessories"):
                    self.ensure_accessories()
                containers = self.containers(deploy=current.live)
                with self.report.step(f"start {len(containers)} container(s)"):
                    for c in containers:
                        if not self.engine.state(c).get("Running"):
                            self.engine.start(c)
                faults.point("start:started")
                with self.report.step("health gate"):
                    self._gate(containers)
                web = self._web_only(containers)
                route = self._route_for(web, rec.version, current.live)
                if route is not None:
                    with self.report.step("switch traffic"):
                        self.proxy.set_route(route)
            except BaseException as exc:
                self.journal.end(op, "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                raise
            self.journal.step(op, "switched")
            faults.point("start:switched")
            self._record_started(current)
            self.journal.end(op, "finished")

    def _record_started(self, current: Current) -> None:
        assert current.live is not None
        rec = self.state.find(current.live)
        self.state.set_current(current.model_copy(update={"stopped": False}))
        self.state.record(ReleaseRecord(number=self.state.allocate_number(), action="start", outcome="done",
                                        version=rec.version, image=rec.image, target=current.live))

    def remove(self, *, volumes: bool = False, confirmed: bool = False) -> list[str]:
        if not confirmed:
            raise Aborted("removing needs confirmation", "pass --yes")
        removed: list[str] = []
        with self.state.lock("remove"):
            if self.proxy.routes.get(self.t.app, self.t.environment) is not None:
                with self.report.step("remove from the proxy"):
                    self.proxy.drop_route(self.t.app, self.t.environment)
            with self.report.step("remove containers"):
                sel = L.selector(app=self.t.app, environment=self.t.environment)
                for c in self.engine.containers(sel):
                    removed.append(c.name or c.id)
                    self.engine.stop(c, 10)
                    self.engine.remove(c)
                self.engine.remove_network(self.network)
                self.secret_files.remove_all()
            shutil.rmtree(self.proxy.dir / "certs" / f"{self.t.app}--{self.t.environment}", ignore_errors=True)
            if volumes:
                with self.report.step("remove volumes"):
                    for v in self.engine.volumes(L.selector(app=self.t.app, environment=self.t.environment)):
                        removed.append(v.name)
                        v.remove(force=True)
            self.state.forget()
        return removed


def _health_target() -> type[HealthTarget]:
    from headway.observe.health import HealthTarget

    return HealthTarget


def _health_message(failed: list[HealthResult]) -> str:
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"health check failed for {first.container} ({first.role}): {first.reason}{more}"
