"""The agent's swarm follower on its own: which environments it follows, one at a time, a held lock skipped."""

from __future__ import annotations

import threading
from pathlib import Path

from headway.errors import LockHeld
from headway.observe.follow import SwarmFollower


def test_follows_swarm_environments_one_at_a_time(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    calls: list[tuple[str, str]] = []

    def follow(root: Path, app: str, env: str) -> list[str]:
        calls.append((app, env))
        if env == "locked":
            raise LockHeld("the lock is held", "wait")
        release.wait(10)
        return ["the proxy follows deploy 3 to where its containers run now"]

    follower = SwarmFollower(tmp_path, follow)
    assert not follower.round({"app": "shop", "environment": "one-host", "swarm": False})
    assert follower.round({"app": "shop", "environment": "production", "swarm": True})
    assert not follower.round({"app": "shop", "environment": "production", "swarm": True})  # under way
    release.set()
    assert follower.idle(10)
    assert follower.round({"app": "shop", "environment": "locked", "swarm": True})
    assert follower.idle(10)
    follower.close()
    assert calls == [("shop", "production"), ("shop", "locked")]
    out = capsys.readouterr().out
    assert "shop/production: the proxy follows deploy 3" in out and "locked" not in out
