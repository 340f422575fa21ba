"""The agent's autoscaler: each round's decisions (observe/autoscale.py) carried out as ordinary zero-downtime
`scale`s, from the config the host keeps (`act`: headway.service.scale_on_host), by "autoscaler".

A round never waits on a scale: the changes of an environment go to one worker thread, one environment's scale at
a time, and the environment is left alone by the rounds until its scale has ended. An environment whose deploy
lock is held (a deploy, a rollback, an operator's scale) is skipped for that round, and said so; a scale that
finds the lock taken after all is skipped too, and may happen again at the next round. Each change is recorded
in the release history (`headway releases`: by autoscaler, with its reason) and sent to the environment's
channels as an info notice; a failed one as a warning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headway.config.autoscale import AutoscalePolicy
from headway.observe.autoscale import EnvironmentState, RoleState, Signals, decide_all, state_path
from headway.observe.worker import EnvironmentWorker

OPERATOR = "autoscaler"
Act = Callable[[Path, str, str, dict[str, int], str], dict[str, int]]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class _Job:
    app: str
    environment: str
    counts: dict[str, int]
    before: dict[str, int]
    reason: str
    previous: dict[str, RoleState]  # the roles' state before this change, restored when it is skipped
    channels: list[dict[str, Any]]


class Autoscaler(EnvironmentWorker[_Job]):
    what = "autoscale"

    def __init__(self, root: Path, act: Act) -> None:
        super().__init__()
        self.root = root
        self._act = act
        self._state = threading.Lock()  # the environments' autoscale state files: the rounds and the worker

    # -- a round ----------------------------------------------------------------------------------------------
    def round(self, spec: dict[str, Any], signals: dict[str, Signals], now: float) -> dict[str, Any] | None:
        """Decide for one environment; start its scale in the background. What was decided, or None when the
        environment has no autoscale policy."""
        policy = AutoscalePolicy.from_data(spec.get("autoscale"))
        if not policy.active:
            return None
        from headway.state.store import AppState

        app, env = spec["app"], spec["environment"]
        subject = f"{app}/{env}"
        path = state_path(self.root, app, env)
        if self.busy(subject):
            return {"subject": subject, "skipped": "a scale is under way"}
        with self._state:
            st = EnvironmentState.load(path)
            holder = AppState(self.root, app, env).lock_holder()
            if holder is not None:
                skipped = f"locked by {holder.by} (`{holder.command}`) since {holder.since}"
                st.last = {"at": _iso(now), "skipped": skipped, "decisions": []}
                st.save(path)
                print(f"{subject}: autoscale skipped this round: {skipped}", flush=True)
                return {"subject": subject, "skipped": skipped}
            decisions, roles = decide_all(policy, signals, st.roles, now)
            changes = [d for d in decisions if d.change]
            previous = {d.role: st.roles.get(d.role, RoleState()) for d in changes}
            st.roles = roles
            st.last = {"at": _iso(now), "decisions": [d.to_data() for d in decisions]}
            job = None
            if changes:
                reason = "; ".join(d.reason for d in changes)
                job = _Job(app, env, {d.role: d.target for d in changes}, {d.role: d.current for d in changes},
                           reason, previous, list(spec.get("channels") or []))
                st.action = {"at": _iso(now), "counts": job.counts, "from": job.before, "reason": reason,
                             "result": "running"}
            st.save(path)
        if job is not None:
            what = ", ".join(f"{r} {job.before[r]} -> {n}" for r, n in job.counts.items())
            print(f"{subject}: autoscale {what} ({job.reason})", flush=True)
            self.submit(subject, job)
        return {"subject": subject, "decisions": st.last["decisions"], "scaling": job.counts if job else {}}

    # -- the worker -------------------------------------------------------------------------------------------
    def carry_out(self, job: _Job) -> None:
        from headway.errors import HeadwayError, LockHeld

        subject = f"{job.app}/{job.environment}"
        what = ", ".join(f"{r} {job.before[r]} → {n}" for r, n in job.counts.items())
        started = time.monotonic()
        result, error = "done", None
        try:
            self._act(self.root, job.app, job.environment, job.counts, job.reason)
        except LockHeld as exc:
            result, error = "skipped", exc.message
        except HeadwayError as exc:
            result, error = "failed", exc.message + (f" (fix: {exc.fix})" if exc.fix else "")
        except Exception as exc:  # noqa: BLE001 - reported, never fatal to the agent
            result, error = "failed", f"{type(exc).__name__}: {exc}"
        path = state_path(self.root, job.app, job.environment)
        with self._state:
            st = EnvironmentState.load(path)
            if result == "skipped":  # nothing changed: the roles may change at the next round
                st.roles.update(job.previous)
            st.action = {**(st.action or {}), "result": result, "error": error,
                         "seconds": round(time.monotonic() - started, 3)}
            st.save(path)
        if result == "skipped":
            print(f"{subject}: autoscale skipped: {error}", flush=True)
            return
        if result == "done":
            print(f"{subject}: autoscaled {what}", flush=True)
            self._tell(job, "info", f"{subject} scaled {what}", job.reason)
        else:
            print(f"{subject}: autoscale {what} failed: {error}", flush=True)
            self._tell(job, "warning", f"{subject}: autoscale {what} failed", f"{error}\nwanted because: "
                                                                              f"{job.reason}")

    def _tell(self, job: _Job, severity: str, title: str, text: str) -> None:
        from headway.observe.notify import Notice, parse_channels, send_all

        if not job.channels:
            return
        try:
            channels = parse_channels(job.channels, filled=True)
        except Exception as exc:  # noqa: BLE001 - a bad channel list must not stop the autoscaler
            print(f"{job.app}/{job.environment}: its channels cannot be used: {getattr(exc, 'message', exc)}",
                  flush=True)
            return
        notice = Notice(kind="scale", severity=severity, title=title, text=text,  # type: ignore[arg-type]
                        app=job.app, environment=job.environment,
                        labels={"by": OPERATOR, **{f"replicas.{r}": str(n) for r, n in job.counts.items()}})
        for d in send_all(channels, notice, lambda t: t):
            if not d.ok:
                print(f"notice to {d.channel} failed: {d.error}", flush=True)
