"""The library entry point: everything the CLI can do, for one app in one environment."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headway.config.duration import parse_duration
from headway.config.resolve import Target, load_target
from headway.engine import labels as L
from headway.engine.docker import DockerEngine
from headway.errors import CanaryFailed, ConfigError, HeadwayError, NotFound
from headway.proxy.nginx import Proxy
from headway.proxy.routes import Route
from headway.release.deployer import Deployer, Outcome
from headway.release.report import Reporter
from headway.release.version import check_version
from headway.state.store import AppState, state_root

if TYPE_CHECKING:
    from headway.release.source import Source
    from headway.data.backup import BackupService
    from headway.release.quick import QuickSwitch
    from headway.data.restore import RestoreResult


@dataclass
class Headway:
    target: Target
    engine: DockerEngine
    proxy: Proxy
    state: AppState
    deployer: Deployer

    @classmethod
    def open(cls, environment: str, *, config: str | Path | None = None, state_dir: str | Path | None = None,
             reporter: Reporter | None = None, engine: DockerEngine | None = None) -> Headway:
        target = load_target(environment, config)
        root = Path(state_dir) if state_dir else state_root()
        engine = engine or _engine_for(target)
        proxy = Proxy(engine, root)
        state = AppState(root, target.app, target.environment)
        hooks = _DataHooksOnUse() if target.config.databases else None
        return cls(target, engine, proxy, state, Deployer(target, engine, proxy, state, reporter, hooks))

    @classmethod
    def on_host(cls, app: str, environment: str, *, state_dir: str | Path | None = None,
                reporter: Reporter | None = None) -> Headway:
        """app/environment as its last deploy left it on this host, from the config kept there (config/kept.py):
        for what acts on the host by itself (the dashboard, the autoscaler). Secrets are withheld."""
        from headway.config.kept import load_kept

        root = Path(state_dir) if state_dir else state_root()
        target = load_kept(root, app, environment)
        engine = _engine_for(target)
        proxy = Proxy(engine, root)
        state = AppState(root, target.app, target.environment)
        return cls(target, engine, proxy, state, Deployer(target, engine, proxy, state, reporter, None))

    @staticmethod
    def proxy_only(state_dir: str | Path | None = None) -> Proxy:
        return Proxy(DockerEngine(), Path(state_dir) if state_dir else state_root())

    def deploy(self, version: str | None = None, wait: float | None = None, image_tag: str | None = None, *,
               ref: str | None = None, dirty: bool = False, force: bool = False) -> Outcome:
        """Deploy a release built from the committed HEAD (or `ref`, or the working tree when `dirty`), or the
        images CI pushed as `image_tag`. See headway.release.source for the checks. The alert channels hear of
        it (done or failed) and the host's agent watches the new release."""
        try:
            outcome = self._deploy(version, wait, image_tag, ref=ref, dirty=dirty, force=force)
        except HeadwayError as exc:
            canary = isinstance(exc, CanaryFailed)
            self.tell("canary" if canary else "deploy", "warning",
                      f"{'canary' if canary else 'deploy'} of {self.target.app}/{self.target.environment} "
                      f"{'aborted' if canary else 'failed'}", exc.message + (f"\nfix: {exc.fix}" if exc.fix else ""),
                      None)
            raise
        self._after("deploy", outcome)
        return outcome

    def _after(self, kind: str, outcome: Outcome) -> None:
        self._keep()
        rec = outcome.record
        what = {"deploy": "deployed", "rollback": "rolled back to"}.get(kind, kind)
        number = rec.number if kind == "deploy" else rec.target
        self.tell(kind, "info", f"{self.target.app}/{self.target.environment} {what} {rec.version}",
                  f"deploy {number}, by {rec.by}", rec.version)

    def _keep(self) -> None:
        """What the host keeps of this environment's config: what the agent watches (monitor.json) and the config
        the host's own actions use (config/kept.py). Loaded from there already: nothing new."""
        if self.target.secrets_withheld:
            return
        from headway.config.kept import keep
        from headway.observe.spec import write_spec

        write_spec(self.target, self.state.root)
        keep(self.target, self.state.root)

    def tell(self, kind: str, severity: str, title: str, text: str, release: str | None) -> list[Any]:
        """Send a notice to the environment's alert channels; a channel that fails is a warning, never an error."""
        if not self.target.config.alerts_for(self.target.environment).channels:
            return []
        from headway.observe.notify import Notice

        deliveries = self._send(Notice(kind=kind, severity=severity, title=title, text=text,  # type: ignore[arg-type]
                                       app=self.target.app, environment=self.target.environment, release=release))
        for d in deliveries:
            if not d.ok:
                self.deployer.report.info(f"warning: the {kind} notice to {d.channel} failed: {d.error}")
        return deliveries

    def alerts_test(self) -> list[Any]:
        """A test notice to every channel (each one's delivery); the host's agent learns the environment too."""
        from headway.observe.notify import test_notice

        if not self.target.config.alerts_for(self.target.environment).channels:
            raise ConfigError(f"{self.target.app}/{self.target.environment} has no alert channels",
                              "add e.g. alerts: {channels: [{type: slack, url: \"${SLACK_WEBHOOK}\"}]} to "
                              "headway.yml")
        self._keep()
        deliveries = self._send(test_notice(self.target.app, self.target.environment))
        from headway.audit.history import record_alerts_test

        record_alerts_test(self.state.dir, deliveries)  # what `headway doctor` reads
        return deliveries

    def _send(self, notice: Any) -> list[Any]:
        """`notice` to every channel of the environment, secrets filled in from its secrets (with the secrets
        withheld: the channels the host's agent has, filled in when they were written)."""
        from headway.observe.notify import send_all

        if self.target.secrets_withheld:
            from headway.observe.spec import spec_channels

            return send_all(spec_channels(self.state.root, self.target.app, self.target.environment), notice,
                            lambda t: t)
        return send_all(self.target.config.alerts_for(self.target.environment).channels, notice,
                        lambda t: self.target.resolve_text("alerts.channels", t))

    def _deploy(self, version: str | None, wait: float | None, image_tag: str | None, *,
                ref: str | None, dirty: bool, force: bool) -> Outcome:
        self._warn_machines_down()
        if image_tag is not None:
            if ref is not None or dirty:
                raise ConfigError("--image-tag deploys images built elsewhere; --ref and --dirty choose what is "
                                  "built here", "drop --image-tag, or drop --ref/--dirty")
            check_version(image_tag)  # a tag is a version: the same rules
            self._rehearse_first(check_version(version) if version else image_tag, image_tag)
            return self.deployer.deploy(check_version(version) if version else image_tag, wait=wait,
                                        image_tag=image_tag)
        with self.source(ref=ref, dirty=dirty, force=force, version=version) as src:
            self._rehearse_first(src.version, None)
            return self.deployer.deploy(src.version, wait=wait)

    def _rehearse_first(self, version: str, image_tag: str | None) -> None:
        """`deploy: {rehearse: true}`: the release command rehearsed on a copy of the newest backups before the
        deploy starts (headway.release.rehearse); a failure stops it with nothing live changed."""
        from headway.config.rehearse import rehearse_mode

        mode = rehearse_mode(self.target.deploy.rehearse)
        if mode != "off":
            from headway.release.rehearse import rehearse_before_deploy

            rehearse_before_deploy(self, version, image_tag, strict=mode == "strict")

    def _warn_machines_down(self) -> None:
        """On a swarm: the release runs on the machines that are up; say which are not, and what to do."""
        down: list[str] = getattr(self.engine, "machines_down", lambda: [])()
        for name in down:
            self.deployer.report.info(f"warning: swarm machine {name} is down; the release runs on the others "
                                      "(bring it back, or `docker node rm` it on the manager if it is gone)")

    @contextmanager
    def source(self, *, ref: str | None = None, dirty: bool = False, force: bool = False,
               version: str | None = None) -> Iterator[Source]:
        """What a build reads, checked and exported (headway.release.source); the deployer builds from it until
        the block ends, then the exported tree is removed."""
        from headway.release.source import prepared_source

        with prepared_source(self.target, ref=ref, dirty=dirty, force=force, version=version) as src:
            for note in src.notes:
                self.deployer.report.info(note)
            previous, self.deployer.build_root = self.deployer.build_root, src.root
            try:
                yield src
            finally:
                self.deployer.build_root = previous

    def build(self, version: str | None = None, push: bool = False, *, ref: str | None = None, dirty: bool = False,
              force: bool = False) -> dict[str, Any]:
        """Build every image of a release (and push it); {"version", "images": reference -> digest or ""}."""
        from headway.release.images import make_images, plan_images, push_images

        with self.source(ref=ref, dirty=dirty, force=force, version=version) as src:
            version = src.version
            plan = plan_images(self.target, version)
            make_images(plan, self.target, self.engine, self.deployer.build_root, self.deployer.report)
        pushed = push_images(plan, self.target, self.engine, self.deployer.report) if push else {}
        return {"version": version, "images": {j.reference: pushed.get(j.reference, "") for j in plan.jobs
                                               if j.build is not None}}

    def rollback(self, release: str | None = None, wait: float | None = None, *, with_data: bool = False,
                 identities: list[Any] | None = None, confirmed: bool = False, quick: QuickSwitch | None = None
                 ) -> Outcome:
        if with_data:
            from headway.data.deploy_hooks import rollback_with_data

            outcome = rollback_with_data(self.deployer, release, wait, identities, confirmed)[0]
        else:
            outcome = self.deployer.rollback(release, wait=wait, quick=quick)
        self._after("rollback", outcome)
        return outcome

    def databases(self) -> BackupService:
        """Databases of this environment: backups, verification, restore (see headway.data.backup)."""
        from headway.data.backup import BackupService

        svc = BackupService(self.target, self.engine, self.state.root, self.deployer.report)
        def announce(severity: str, title: str, text: str) -> None:
            self.tell("backup", severity, title, text, None)

        svc.announce = announce
        return svc

    def restore_database(self, backup_id: str | None = None, *, name: str | None = None, into: str | None = None,
                         identities: list[Any] | None = None, confirmed: bool = False) -> RestoreResult:
        from headway.data.deploy_hooks import DeployerAppControl

        return self.databases().restore(backup_id, name=name, into=into, identities=identities,
                                        app=DeployerAppControl(self.deployer), confirmed=confirmed)

    def scale(self, counts: dict[str, int], wait: float | None = None, *, reason: str | None = None
              ) -> dict[str, int]:
        return self.deployer.scale(counts, wait=wait, reason=reason)

    def maintenance(self, on: bool, *, message: str | None = None, allow: list[str] | None = None,
                    page: Path | None = None, retry_after: int = 120) -> Route:
        from headway.proxy.maintenance import set_maintenance

        with self.state.lock("maintenance " + ("on" if on else "off"), wait=10):
            route = set_maintenance(self.proxy, self.target, on=on, message=message, allow=allow, page=page,
                                    retry_after=retry_after)
            self.state.set_current(self.state.current().model_copy(update={"maintenance": on}))
            return route

    # -- status ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What is really live (as the proxy routes it), what an interrupted command left, what comes next."""
        from headway.release.reconcile import describe

        current = self.state.current()
        served_state = self.proxy.served() if (self.target.domains or self.target.port) else None
        served = served_state.routes.get(self.deployer.route_key) if served_state else None
        live = served.deploy if served is not None and served.peers else current.live
        if served is not None and not served.peers:
            live = current.live  # stopped: the proxy routes nowhere, the release stays the recorded one
        rec = next((r for r in self.state.history() if r.number == live and r.action == "deploy"), None)
        containers = []
        found = self.engine.summaries(L.selector(app=self.target.app, environment=self.target.environment))
        for c in sorted(found, key=lambda c: (c["labels"].get(L.KIND) != "app", c["name"])):
            labels, kind = c["labels"], c["labels"].get(L.KIND)
            if kind not in ("app", "accessory"):
                continue
            number = int(labels.get(L.DEPLOY, 0) or 0)
            health = "-"
            if kind == "app" and number == live:
                health = "live"
            elif kind == "app" and served is not None and number == served.canary_deploy and served.weight:
                health = "canary"
            elif kind == "app" and number == current.standby:
                health = "standby"
            elif kind == "accessory":
                health = "accessory"
            elif kind == "app":
                health = "retained"
            containers.append({
                "name": c["name"], "role": labels.get(L.ROLE, ""), "release": labels.get(L.RELEASE, ""),
                "deploy": labels.get(L.DEPLOY, ""), "state": c["state"], "health": health,
                "started_at": c["status"] if c["state"] == "running" else "",
            })
        lock = self.state.lock_holder()
        op = self.deployer.journal.open_operation()
        interrupted = describe(op, served.deploy if served else None) if op is not None and lock is None else None
        route = self.proxy.routes.get(self.target.app, self.target.environment)
        return {"app": self.target.app, "environment": self.target.environment,
                "release": served.release if served is not None and served.peers else (rec.version if rec
                                                                                        else None),
                "deploy": live, "standby": current.standby,
                "stopped": current.stopped, "replicas": current.replicas, "containers": containers,
                "served_by_proxy": {"deploy": served.deploy, "release": served.release, "peers": served.peers}
                if served else None,
                "interrupted": interrupted,
                "urls": self.deployer.urls(), "lock": lock.model_dump() if lock else None,
                "maintenance": route.maintenance.model_dump() if route and route.maintenance else None,
                "canary": route.canary.model_dump() if route and route.canary else None,
                "tls": route.tls.model_dump() if route and route.tls else None,
                "databases": self._database_rows(found), "alerts": self._firing(),
                "autoscale": self._autoscale()}

    def _autoscale(self) -> dict[str, Any] | None:
        """The environment's autoscale policy and what the host's agent last decided and did (from its state)."""
        policy = self.target.config.autoscale_for(self.target.environment)
        if not policy.active:
            return None
        from headway.observe.autoscale import EnvironmentState, state_path

        st = EnvironmentState.load(state_path(self.state.root, self.target.app, self.target.environment))
        return {**policy.to_data(), "last": st.last or None, "action": st.action}

    def _firing(self) -> list[dict[str, Any]]:
        """What the host's agent has firing for this environment (read from its state; nothing when none runs)."""
        from headway.observe.alerts import firing_alerts

        return firing_alerts(self.state.root, self.target.app, self.target.environment)

    def _database_rows(self, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The environment's databases for `status`: from the container summaries already read and the catalog."""
        if not self.target.config.databases:
            return []
        from headway.data.status import database_rows

        return database_rows(self.target, self.state.root, found)

    def recover(self, wait: float | None = None) -> list[str]:
        """Finish or undo what an interrupted command left (every other command does this first, too)."""
        with self.state.lock("recover", wait=self.target.deploy.lock_wait if wait is None else wait):
            notes = self.deployer.reconcile()
        from headway.release.rehearse import remove_debris_unless_running

        return notes + remove_debris_unless_running(self)

    # -- logs ------------------------------------------------------------------------------------------
    def logs(self, *, role: str | None = None, follow: bool = False, since: str | None = None,
             tail: int = 100) -> Iterator[str]:
        if role is not None and role not in self.target.roles and role not in self.target.accessories \
                and role not in self.target.config.databases:
            names = [*self.target.roles, *self.target.accessories, *self.target.config.databases]
            raise ConfigError(f"no role, accessory or database {role!r}", f"choose one of: {', '.join(names)}")
        try:
            since_ts = time.time() - parse_duration(since) if since else None
        except ValueError:
            raise ConfigError(f"--since {since!r} is not a duration", "use e.g. --since 30s, 10m, 2h or 1h30m") \
                from None
        if role is not None and role in self.target.config.databases and role not in self.target.roles:
            yield from self._database_logs(role, follow=follow, since=since_ts, tail=tail)
            return
        current = self.state.current()
        if role in self.target.accessories:
            containers = [c for c in self.deployer.accessories() if c.labels.get(L.ROLE) == role]
        else:
            if current.live is None:
                raise NotFound(f"{self.target.app}/{self.target.environment} has not been deployed",
                               f"run `headway deploy -e {self.target.environment}`")
            containers = self.deployer.containers(deploy=current.live, role=role)
        if not containers:
            return
        width = max(len(c.name or "") for c in containers)
        lines: queue.Queue[str | None] = queue.Queue(maxsize=10000)

        def pump(c: Any) -> None:
            try:
                for line in self.engine.logs(c, tail=tail, since=since_ts, follow=follow):
                    lines.put(f"{(c.name or '').ljust(width)} | {line}")
            finally:
                lines.put(None)

        for c in containers:
            threading.Thread(target=pump, args=(c,), daemon=True).start()
        done = 0
        while done < len(containers):
            item = lines.get()
            if item is None:
                done += 1
            else:
                yield item

    def _database_logs(self, name: str, *, follow: bool, since: float | None, tail: int) -> Iterator[str]:
        """The server log of a managed database (headway.data.databases)."""
        from headway.data.databases import Databases

        dbs = Databases(self.target, self.engine, self.state.root)
        spec = dbs.spec(name)
        for line in dbs.logs(spec, follow=follow, tail=tail, since=since):
            yield f"{spec.container_name} | {line}"

    # -- exec ------------------------------------------------------------------------------------------
    def exec(self, role: str, command: list[str], *, interactive: bool = False) -> int:
        if role not in self.target.roles:
            raise ConfigError(f"no role {role!r}", f"choose one of: {', '.join(self.target.roles)}")
        current = self.state.current()
        if current.live is None:
            raise NotFound(f"{self.target.app}/{self.target.environment} has not been deployed",
                           f"run `headway deploy -e {self.target.environment}`")
        rec = self.state.find(current.live)
        env = self.deployer._env_for(self.target.roles[role], rec.version, current.live)
        name = f"{self.target.app}-{self.target.environment}-exec-{os.getpid()}"
        labels = L.owned("oneoff", app=self.target.app, environment=self.target.environment, role=role,
                         release=rec.version, deploy=current.live)
        files = self.target.secret_files(self.target.role_secrets(self.target.roles[role]))
        secret_files = self.deployer.secret_files
        mount = secret_files.mount(name) if files else None
        try:
            if interactive:
                if files:  # `docker run` creates and starts at once: readable by any user of the container
                    secret_files.write_folder(name, files, None)
                return _docker_run_tty(name, rec.image_of(role), command, env, labels, self.deployer.network,
                                       mount)
            result = self.engine.run_oneoff(name=name, image=rec.image_of(role), command=command, env=env,
                                            labels=labels, network=self.deployer.network, timeout=24 * 3600,
                                            on_line=lambda ln: print(ln, flush=True), volumes=mount,
                                            prepare=secret_files.preparer(files))
            return result.exit_code
        finally:
            if files:
                secret_files.remove(name)


def _engine_for(target: Target) -> DockerEngine:
    """The local engine, or the swarm's when the environment runs on one (this host is its manager)."""
    swarm = target.config.environments[target.environment].swarm
    if swarm is None:
        return DockerEngine()
    from headway.engine.swarm import SwarmEngine
    from headway.release.images import registry_auth

    assert target.config.registry is not None  # the config requires one for a swarm
    # with the secrets withheld (the host's own actions: config/kept.py) no image is pushed: no credentials
    auth = None if target.secrets_withheld else registry_auth(target)
    engine = SwarmEngine(registry=target.config.registry.server, auth=auth, constraints=swarm.constraints)
    engine.require_manager()
    return engine


class _DataHooksOnUse:
    """The data deploy hooks, loaded when a deploy first needs them (not for `status` or `logs`)."""

    def __getattr__(self, name: str) -> Any:
        from headway.data.deploy_hooks import DataHooks

        return getattr(DataHooks(), name)


def _docker_run_tty(name: str, image: str, command: list[str], env: dict[str, str], labels: dict[str, str],
                    network: str, volumes: dict[str, dict[str, str]] | None = None) -> int:
    """An interactive console needs a real TTY; the docker CLI provides one. Env goes via a 0600 file (on a
    tmpfs where there is one: secret values never reach a disk)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise HeadwayError(f"bad container name {name!r}", "report this")
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile("w", prefix="headway-env-", delete=True, dir=memory) as fh:
        os.chmod(fh.name, 0o600)
        fh.write("".join(f"{k}={v}\n" for k, v in env.items() if "\n" not in v))
        fh.flush()
        argv = ["docker", "run", "--rm", "-it", "--name", name, "--network", network, "--env-file", fh.name]
        for source, bind in (volumes or {}).items():
            argv += ["-v", f"{source}:{bind['bind']}:{bind.get('mode', 'ro')}"]
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        return subprocess.call([*argv, image, *command])


# -- what the host's agent does by itself, from the config kept on the host (config/kept.py) ------------------
def scale_on_host(root: Path, app: str, environment: str, counts: dict[str, int], reason: str) -> dict[str, int]:
    """The autoscaler's `headway scale`, recorded as by "autoscaler", never waiting for the lock."""
    from headway.release.report import RecordingReporter
    from headway.state.store import acting_as

    with acting_as("autoscaler"):
        hw = Headway.on_host(app, environment, state_dir=root, reporter=RecordingReporter())
        return hw.scale(counts, wait=0, reason=reason)


def recover_on_host(root: Path, app: str, environment: str) -> list[str]:
    """The agent's `headway recover` on a swarm's manager (observe/follow.py), as "agent", never waiting."""
    from headway.release.report import RecordingReporter
    from headway.state.store import acting_as

    with acting_as("agent"):
        return Headway.on_host(app, environment, state_dir=root, reporter=RecordingReporter()).recover(wait=0)
