"""Fault points: named places where a test can make headway die as if SIGKILLed (HEADWAY_FAULT=<point>).

`HEADWAY_FAULT=deploy:switched` kills the process the first time it reaches that point; `name@2` the second
time. Nothing happens when the variable is unset, which is always the case outside the fault tests.
"""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get("HEADWAY_FAULT")
    if not wanted:
        return
    target, _, nth = wanted.partition("@")
    if target != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
