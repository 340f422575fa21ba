"""What the agent does in the background beside its rounds: one thread carrying out jobs one at a time, each for
one environment, which stays busy (the rounds leave it alone) until its job has ended. The autoscaler's scales
(observe/autoscaler.py) and the swarm follower's reconciles (observe/follow.py) run this way, so a round never
waits on a command."""

from __future__ import annotations

import queue
import threading
import time
from typing import Generic, TypeVar

J = TypeVar("J")


class EnvironmentWorker(Generic[J]):
    what = "background work"  # how the agent's log names a job that failed

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[str, J] | None] = queue.Queue()
        self._busy: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def carry_out(self, job: J) -> None:
        raise NotImplementedError

    def busy(self, subject: str) -> bool:
        with self._cond:
            return subject in self._busy

    def submit(self, subject: str, job: J) -> bool:
        """Carry out `job` for `subject` (app/environment) in the background; False when one is under way."""
        with self._cond:
            if subject in self._busy:
                return False
            self._busy.add(subject)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=f"headway-{self.what.replace(' ', '-')}",
                                            daemon=True)
            self._thread.start()
        self._jobs.put((subject, job))
        return True

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            subject, job = item
            try:
                self.carry_out(job)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one job
                print(f"{subject}: {self.what}: {type(exc).__name__}: {exc}", flush=True)
            finally:
                with self._cond:
                    self._busy.discard(subject)
                    self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until no job is under way; True when none is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 60.0) -> None:
        """Let the job under way finish (at most `timeout` s), then stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)
