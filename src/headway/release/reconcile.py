"""Reconcile: before any command acts, finish or undo what an interrupted one left, from what is true.

What is true, in order: what the proxy routes to (the live release *is* the one it serves), then the engine's
objects (found by label), then the journal (what was under way and how far it got). The release history and
`current.json` are brought in line with those; they are never trusted over them. Nothing the proxy routes to is
ever stopped or removed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headway.engine import labels as L
from headway.proxy.routing import ServedRoute
from headway.release.plan import DeployPlan, plan_from_data
from headway.state.journal import Operation
from headway.state.store import Current, ReleaseRecord

if TYPE_CHECKING:
    from headway.release.deployer import Deployer

GOOD = ("live", "superseded", "rolled-back")


def describe(op: Operation, served_deploy: int | None) -> dict[str, str]:
    """For `headway status`: what was interrupted and what the next command will do about it."""
    last = op.steps[-1] if op.steps else "its first step"
    what = f"{op.kind} by {op.by} (pid {op.pid}) since {op.started_at[:19].replace('T', ' ')}, after {last}"
    number = op.plan.get("number", op.plan.get("live"))
    if op.kind in ("deploy", "rollback"):
        if served_deploy is not None and served_deploy == number:
            nxt = f"finish it: the proxy already serves deploy {number}; record it and stop what it replaced"
        else:
            nxt = (f"undo it: remove what it started for deploy {number}; deploy {served_deploy} keeps serving"
                   if op.kind == "deploy" else
                   f"undo it: stop what it started; deploy {served_deploy} keeps serving")
    elif op.kind == "restore":
        db = op.plan.get("database", "the database")
        nxt = (f"finish or undo the restore of {db} from what its server holds (the restored copy is live "
               f"only if the swap happened), and let held requests through")
    else:
        nxt = "finish or undo it from what the proxy serves"
    return {"operation": op.kind, "interrupted": what, "next": nxt}


def _planned(op: Operation) -> tuple[int, ReleaseRecord, Current, DeployPlan]:
    """What a journaled deploy or rollback meant to do: its number, its record, the state before, its plan."""
    return (int(op.plan["number"]), ReleaseRecord.model_validate(op.plan["record"]),
            Current.model_validate(op.plan.get("previous") or {}), plan_from_data(op.plan["plan"]))


class Reconciler:
    def __init__(self, deployer: Deployer) -> None:
        self.d = deployer
        self.notes: list[str] = []

    def served(self) -> ServedRoute | None:
        proxy = self.d.proxy
        if not proxy.is_running():
            return None
        state = proxy.resync()
        return state.routes.get(self.d.route_key) if state else None

    def run(self) -> list[str]:
        served = self.served()
        op = self.d.journal.open_operation()
        if op is not None:
            self.recover(op, served)
            served = self.served()
        self.follow_proxy(served)
        self.follow_tasks(served)
        self.remove_debris(served)
        self.d.journal.compact()
        return self.notes

    # -- an interrupted operation ---------------------------------------------------------------------
    def recover(self, op: Operation, served: ServedRoute | None) -> None:
        handler = {"deploy": self._deploy, "rollback": self._rollback, "scale": self._scale,
                   "stop": self._stop, "start": self._start, "restore": self._restore}.get(op.kind)
        if handler is None:
            self.d.journal.end(op, "recovered", "nothing to finish")
            return
        handler(op, served)

    def _restore(self, op: Operation, served: ServedRoute | None) -> None:
        """A database restore: finished or undone from what the database holds (headway.data.restore)."""
        from headway.data.backup import BackupService
        from headway.data.deploy_hooks import docker_engine
        from headway.data.restore import recover_restore

        d = self.d
        svc = BackupService(d.t, docker_engine(d.engine), d.state.root, d.report)
        self.notes.append(recover_restore(svc, op, d.proxy))

    def _switched(self, op: Operation, served: ServedRoute | None, number: int) -> bool:
        if self.d.t.web_role is not None and (self.d.t.domains or self.d.t.port):
            return served is not None and served.deploy == number
        return op.done("switched")  # no route: the journal is all there is

    def _deploy(self, op: Operation, served: ServedRoute | None) -> None:
        d = self.d
        number, record, previous, plan = _planned(op)
        if self._switched(op, served, number):
            if not op.done("recorded"):
                d._supersede(previous.live)
                d.state.record(record.model_copy(update={"outcome": "live"}))
                d.state.set_current(Current(live=number, standby=plan.standby, replicas=plan.replicas,
                                            maintenance=previous.maintenance))
            d._retire_after_switch(plan, previous)
            d.journal.end(op, "recovered", "finished: it was serving")
            d._write_standby_note(plan)
            self.notes.append(f"an interrupted deploy of {record.version} (deploy {number}) was already serving: "
                              "finished it")
            return
        canary = served is not None and served.canary_deploy == number and served.weight > 0
        if canary:
            route = d.proxy.routes.get(d.t.app, d.t.environment)
            if route is not None:
                d.proxy.set_route(route.model_copy(update={"canary": None}))
        routed = d.routed_peers()
        for c in d.containers(deploy=number):
            if d.peer_of(c) not in routed:
                d.engine.remove(c)
        for c in self._oneoffs(number):
            d.engine.remove(c)
        last = op.steps[-1] if op.steps else "begin"
        d.state.record(record.model_copy(update={"outcome": "interrupted",
                                                 "error": f"headway stopped during the deploy (after {last})"}))
        d.journal.end(op, "recovered", "undone")
        if canary:
            self.notes.append(f"an interrupted canary of {record.version} (deploy {number}): every request back "
                              "to the stable release, its containers removed")
        else:
            self.notes.append(f"an interrupted deploy of {record.version} (deploy {number}) never took traffic: "
                              "removed what it had started")

    def _rollback(self, op: Operation, served: ServedRoute | None) -> None:
        d = self.d
        number, record, previous, plan = _planned(op)
        if self._switched(op, served, number):
            if not op.done("recorded"):
                d._record_rollback(record, previous, plan)
            d._retire_after_switch(plan, previous)
            d.journal.end(op, "recovered", "finished: it was serving")
            d._write_standby_note(plan)
            self.notes.append(f"an interrupted rollback to {record.version} (deploy {number}) was already "
                              "serving: finished it")
            return
        d._stop_unless(d.containers(deploy=number), list(op.plan.get("running_before", [])))
        d.journal.end(op, "recovered", "undone")
        self.notes.append(f"an interrupted rollback to {record.version} never took traffic: stopped what it "
                          "had started")

    def _scale(self, op: Operation, served: ServedRoute | None) -> None:
        d = self.d
        live = int(op.plan["live"])
        created = [c for c in d.containers(deploy=live) if c.name in set(op.plan.get("create", []))]
        removed = [c for c in d.containers(deploy=live) if c.name in set(op.plan.get("remove", []))]
        routed = d.routed_peers()
        web_changed = any(d.peer_of(c) is not None for c in created + removed)
        switched = op.done("switched") or (web_changed and (
            any(d.peer_of(c) in routed for c in created) or
            (bool(removed) and not any(d.peer_of(c) in routed for c in removed if d.peer_of(c)))))
        if switched:
            d._remove_unrouted(removed)
            current = d.state.current()
            replicas = {**current.replicas, **{k: int(v) for k, v in op.plan.get("counts", {}).items()}}
            d.state.set_current(current.model_copy(update={"replicas": replicas}))
            d.journal.end(op, "recovered", "finished")
            self.notes.append("an interrupted scale had moved traffic: finished it")
        else:
            for c in created:
                if d.peer_of(c) not in routed:
                    d.engine.remove(c)
            d.journal.end(op, "recovered", "undone")
            self.notes.append("an interrupted scale never moved traffic: removed the containers it had started")

    def _stop(self, op: Operation, served: ServedRoute | None) -> None:
        d = self.d
        if served is not None and served.peers:
            d.journal.end(op, "recovered", "undone: still serving")
            self.notes.append("an interrupted stop had not taken the environment out of the proxy: nothing stopped")
            return
        d._stop_all()
        current = d.state.current()
        if not current.stopped and current.live is not None:
            d._record_stopped(current)
        d.journal.end(op, "recovered", "finished")
        self.notes.append("an interrupted stop had taken the environment out of the proxy: finished it")

    def _start(self, op: Operation, served: ServedRoute | None) -> None:
        d = self.d
        current = d.state.current()
        if served is not None and served.peers:
            if current.stopped:
                d._record_started(current)
            d.journal.end(op, "recovered", "finished")
            self.notes.append("an interrupted start was serving: finished it")
            return
        if current.live is not None:
            d._stop_unless(d.containers(deploy=current.live), [])
        d.journal.end(op, "recovered", "undone")
        self.notes.append("an interrupted start never took traffic: stopped what it had started")

    # -- the files follow the truth ---------------------------------------------------------------------
    def follow_proxy(self, served: ServedRoute | None) -> None:
        d = self.d
        if served is None or not served.peers:
            return
        current = d.state.current()
        known = {r.number for r in d.state.history() if r.action == "deploy"}
        update: dict[str, object] = {}
        if current.live != served.deploy and served.deploy in known:
            update["live"] = served.deploy
            self.notes.append(f"the proxy serves deploy {served.deploy}, not {current.live}: recorded that")
        if current.stopped:
            update["stopped"] = False
        if current.maintenance != served.maintenance:
            update["maintenance"] = served.maintenance
        if update:
            d.state.set_current(current.model_copy(update=update))

    def follow_tasks(self, served: ServedRoute | None) -> None:
        """On an engine that moves containers between machines (a swarm whose machine died), the proxy follows
        the live release's containers to where they run now. Only a running container is routed, never a
        stopped one, and never during a canary (its own command decides)."""
        d = self.d
        if not getattr(d.engine, "moves_containers", False) or served is None or not served.peers:
            return
        if served.canary_deploy is not None and served.weight > 0:
            return
        route = d.proxy.routes.get(d.t.app, d.t.environment)
        if route is None or route.deploy != served.deploy:
            return
        web = d._web_only(d.containers(deploy=served.deploy, include_stopped=False))
        now = d._upstreams(web)
        if not now or sorted(now) == sorted(route.upstreams):
            return
        d.proxy.set_route(route.model_copy(update={"upstreams": now}))
        gone = sorted(set(route.upstreams) - set(now))
        self.notes.append(f"the proxy follows deploy {served.deploy} to where its containers run now"
                          + (f" (no longer {', '.join(gone)})" if gone else ""))

    def remove_debris(self, served: ServedRoute | None) -> None:
        """Containers no release needs: of deploys that never became good, one-off release/seed runs."""
        d = self.d
        current = d.state.current()
        keep = {r.number for r in d.state.history() if r.action == "deploy" and r.outcome in GOOD}
        keep |= {n for n in (current.live, current.standby) if n is not None}
        if served is not None:
            keep |= {served.deploy, served.canary_deploy}
        routed = d.routed_peers() if served is not None else set()
        removed = []
        for c in d.containers():
            number = int(c.labels.get(L.DEPLOY, 0) or 0)
            if number in keep or d.peer_of(c) in routed:
                continue
            d.engine.remove(c)
            removed.append(c.name or c.id)
        for c in self._oneoffs(None):
            d.engine.remove(c)
            removed.append(c.name or c.id)
        if removed:
            self.notes.append(f"removed {len(removed)} container(s) left by interrupted commands: "
                              f"{', '.join(sorted(removed))}")

    def _oneoffs(self, number: int | None) -> list[Any]:
        sel = L.selector(app=self.d.t.app, environment=self.d.t.environment, kind="oneoff", deploy=number)
        return [c for c in self.d.engine.containers(sel) if c.labels.get(L.ROLE) in ("release", "seed")]
