"""Where deploys meet databases: create them with the environment, give apps their URLs, and back them up before
a release command (migrations) runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headway.config.resolve import Target
from headway.data.catalog import BackupRecord
from headway.data.databases import Databases
from headway.engine.base import Engine
from headway.engine.docker import DockerEngine
from headway.errors import Aborted, NotFound, ReleaseCommandFailed
from headway.release.report import Reporter

if TYPE_CHECKING:
    from headway.release.deployer import Deployer, Outcome


def docker_engine(engine: Engine) -> DockerEngine:
    """The data tools stream dumps through the engine's exec API, which only the Docker implementation has."""
    if not isinstance(engine, DockerEngine):
        raise NotFound("managed databases need the Docker engine on this host",
                       "remove `databases:` from headway.yml for this environment, or deploy to a Docker host")
    return engine


class DataHooks:
    """The deploy hooks (release/hooks.py) for environments with managed databases."""

    def ensure_databases(self, target: Target, engine: Engine, state_root: Path, report: Reporter) -> None:
        ensure_databases(target, docker_engine(engine), state_root, report)

    def database_env(self, target: Target, engine: Engine, state_root: Path) -> dict[str, str]:
        return database_env(target, docker_engine(engine), state_root)

    def backup_before_release(self, target: Target, engine: Engine, state_root: Path, report: Reporter,
                              number: int) -> list[Any]:
        return backup_before_release(target, docker_engine(engine), state_root, report, number)

    def with_restore_hint(self, exc: ReleaseCommandFailed, backups: list[Any],
                          environment: str) -> ReleaseCommandFailed:
        return with_restore_hint(exc, backups, environment)


def ensure_databases(target: Target, engine: DockerEngine, state_root: Path, report: Reporter) -> None:
    if not target.config.databases:
        return
    from headway.data.backup import BackupService

    svc = BackupService(target, engine, state_root, report)
    with report.step("databases"):
        svc.dbs.ensure(backup_first=lambda spec: svc.backup(spec.name, reason=f"before image change to {spec.image}",
                                                          wait=600))


def database_env(target: Target, engine: DockerEngine, state_root: Path) -> dict[str, str]:
    if not target.config.databases:
        return {}
    return Databases(target, engine, state_root).app_env()


def backup_before_release(target: Target, engine: DockerEngine, state_root: Path, report: Reporter,
                          number: int) -> list[BackupRecord]:
    """A backup of every database whose policy says so, taken before the release command of deploy `number`."""
    from headway.data.backup import BackupService

    svc = BackupService(target, engine, state_root, report)
    return [svc.backup(spec.name, reason=f"before deploy {number}", deploy=number, wait=600)
            for spec in svc.dbs.specs.values() if spec.backup.before_deploy == "always"]


def with_restore_hint(exc: ReleaseCommandFailed, backups: list[BackupRecord], environment: str) -> ReleaseCommandFailed:
    """The release command failed: say how to put the data back as it was before it ran."""
    if not backups:
        return exc
    cmds = "; ".join(f"`headway db restore -e {environment} {b.id}`" for b in backups)
    return ReleaseCommandFailed(exc.message, f"{exc.fix}; if it changed data, restore the backup taken just before "
                                f"it: {cmds}", details=exc.details)


class DeployerAppControl:
    """A restore's view of the environment: the deploy lock (what an interrupted command left is finished or undone
    first), and the swap's hold: the proxy answers the maintenance page (routing data, no reload) while the
    databases are swapped, then the live web containers must answer their health check before requests go through
    again. No container is stopped or started."""

    READY_DEADLINE_S = 10.0

    def __init__(self, deployer: Deployer) -> None:
        self.deployer = deployer
        self.phases: dict[str, float] = {}  # how the last hold's time was spent

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        d = self.deployer
        with d.state.lock(what, wait=d.t.deploy.lock_wait):
            d.reconcile()
            yield

    def hold_route(self) -> str | None:
        d = self.deployer
        route = d.proxy.routes.get(d.t.app, d.t.environment)
        if route is None or not route.upstreams or route.maintenance is not None or d.state.current().stopped:
            return None
        return route.key

    @contextmanager
    def hold(self) -> Iterator[None]:
        from headway.data.restore import set_hold

        key = self.hold_route()
        t0 = time.monotonic()
        held = key is not None and set_hold(self.deployer.proxy, key, True)
        self.phases = {"proxy_on_s": round(time.monotonic() - t0, 3)}
        try:
            t1 = time.monotonic()
            yield
            self.phases["swap_s"] = round(time.monotonic() - t1, 3)
        finally:
            if held and key is not None:
                try:
                    t2 = time.monotonic()
                    self._ready()
                    self.phases["ready_s"] = round(time.monotonic() - t2, 3)
                finally:
                    t3 = time.monotonic()
                    set_hold(self.deployer.proxy, key, False)
                    self.phases["proxy_off_s"] = round(time.monotonic() - t3, 3)

    def _ready(self) -> None:
        """The live web containers answer their HTTP health check again (their pools reconnected): each polled
        every 20 ms, bounded; a container that does not is reported, and requests go through anyway."""
        from headway.config.model import HttpHealth
        from headway.observe.health import http_check

        d = self.deployer
        role = d.t.web_role
        current = d.state.current()
        if role is None or current.live is None or not isinstance(role.health, HttpHealth):
            return
        health = role.health
        urls = []
        for c in d.containers(deploy=current.live, role=role.name, include_stopped=False):
            address = d.engine.endpoint(c, d.network, role.port or 80)
            if address:
                urls.append(f"http://{address}{health.path}")
        host = health.host or (d.t.domains[0] if d.t.domains else None)
        deadline = time.monotonic() + self.READY_DEADLINE_S
        reason = ""
        while urls:
            pending = []
            for url in urls:
                ok, reason = http_check(url, host, min(health.timeout, 2.0), health.status)
                if not ok:
                    pending.append(url)
            urls = pending
            if not urls:
                return
            if time.monotonic() > deadline:
                d.report.info(f"warning: {len(urls)} web container(s) do not pass their health check after the "
                              f"swap ({reason}); requests go through again anyway")
                return
            time.sleep(0.02)  # polling the app's readiness with a deadline


def rollback_with_data(deployer: Deployer, release: str | None, wait: float | None, identities: list[Any] | None,
                       confirmed: bool) -> tuple[Outcome, list[BackupRecord]]:
    """Roll the code back, then restore the backups taken just before the deploy being rolled back."""
    from headway.data.backup import BackupService

    svc = BackupService(deployer.t, docker_engine(deployer.engine), deployer.state.root, deployer.report)
    live = deployer.state.current().live
    if live is None:
        raise NotFound(f"{deployer.t.app}/{deployer.t.environment} has not been deployed", "nothing to roll back")
    backups = []
    for spec in svc.dbs.specs.values():
        taken = [r for r in svc.catalog.good(spec.name) if r.deploy == live]
        if not taken:
            raise NotFound(f"no backup of {spec.name} was taken before deploy {live}: --with-data has nothing to "
                           "restore", f"roll back without --with-data, or restore a backup from "
                           f"`headway db backups -e {deployer.t.environment}`")
        backups.append(taken[0])
    if not backups:
        raise NotFound(f"{deployer.t.app} declares no databases", "roll back without --with-data")
    for rec in backups:  # every backup must be readable before anything changes
        with deployer.report.step(f"check {rec.id}"):
            svc.check(rec, identities)
    if not confirmed:
        raise Aborted(f"--with-data replaces the data of {', '.join(b.database for b in backups)} with the backup "
                      f"taken before deploy {live}", "confirm at the prompt, or pass --yes")
    outcome = deployer.rollback(release, wait=wait)
    control = DeployerAppControl(deployer)
    for rec in backups:
        svc.restore(rec.id, identities=identities, app=control, confirmed=True)
    return outcome, backups
