"""On a swarm's manager, the agent's rounds route replicas the swarm moved.

When a machine of a swarm dies, the swarm starts its replicas on the machines left; the proxy (on the manager)
keeps passing over the dead peers, but serves the moved replicas only once headway reconciles — what every headway
command does first (release/reconcile.py: the proxy follows a deploy to where its containers run now). The agent
does it for each swarm environment on its rounds, from the config the host keeps (`follow`:
headway.service.recover_on_host, secrets withheld: following needs none), so the moved replicas serve within a
round instead of at the next command.

One worker thread, one environment at a time; a lock held by a command skips the environment for that round (the
command reconciles anyway); what it changed is printed in the agent's log and recorded in the journal by "agent".
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Follow = Callable[[Path, str, str], list[str]]


class SwarmFollower:
    def __init__(self, root: Path, follow: Follow) -> None:
        self.root = root
        self._follow = follow
        self._jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._busy: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def round(self, spec: dict[str, Any]) -> bool:
        """Start following a swarm environment; False when it is not on a swarm or is being followed already."""
        if not spec.get("swarm"):
            return False
        subject = f"{spec['app']}/{spec['environment']}"
        with self._cond:
            if subject in self._busy:
                return False
            self._busy.add(subject)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="headway-swarm-follower", daemon=True)
            self._thread.start()
        self._jobs.put((spec["app"], spec["environment"]))
        return True

    def _work(self) -> None:
        from headway.errors import HeadwayError, LockHeld

        while True:
            job = self._jobs.get()
            if job is None:
                return
            app, env = job
            try:
                for note in self._follow(self.root, app, env):
                    print(f"{app}/{env}: {note}", flush=True)
            except LockHeld:
                pass  # a command runs: it reconciles first anyway
            except HeadwayError as exc:
                print(f"{app}/{env}: following the swarm: {exc.message}", flush=True)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one environment
                print(f"{app}/{env}: following the swarm: {type(exc).__name__}: {exc}", flush=True)
            finally:
                with self._cond:
                    self._busy.discard(f"{app}/{env}")
                    self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 60.0) -> None:
        """Let the environment being followed finish (at most `timeout` s), then stop the worker."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)
