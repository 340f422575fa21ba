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

from collections.abc import Callable
from pathlib import Path
from typing import Any

from headway.observe.worker import EnvironmentWorker

Follow = Callable[[Path, str, str], list[str]]


class SwarmFollower(EnvironmentWorker[tuple[str, str]]):
    what = "following the swarm"

    def __init__(self, root: Path, follow: Follow) -> None:
        super().__init__()
        self.root = root
        self._follow = follow

    def round(self, spec: dict[str, Any]) -> bool:
        """Start following a swarm environment; False when it is not on a swarm or is being followed already."""
        if not spec.get("swarm"):
            return False
        return self.submit(f"{spec['app']}/{spec['environment']}", (spec["app"], spec["environment"]))

    def carry_out(self, job: tuple[str, str]) -> None:
        from headway.errors import HeadwayError, LockHeld

        app, env = job
        try:
            for note in self._follow(self.root, app, env):
                print(f"{app}/{env}: {note}", flush=True)
        except LockHeld:
            pass  # a command runs: it reconciles first anyway
        except HeadwayError as exc:
            print(f"{app}/{env}: {self.what}: {exc.message}", flush=True)
