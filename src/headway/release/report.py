"""How a long operation tells the person (or a machine) what it is doing, step by step, with timings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""


class Reporter(Protocol):
    def step(self, name: str) -> AbstractContextManager[Step]: ...
    def info(self, message: str) -> None: ...
    def output(self, line: str) -> None: ...


@dataclass
class RecordingReporter:
    """Collects steps; used by --json output and by library callers that print nothing."""

    steps: list[Step] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        step = Step(name)
        self.steps.append(step)
        started = time.monotonic()
        try:
            yield step
        except BaseException:
            step.ok = False
            raise
        finally:
            step.seconds = round(time.monotonic() - started, 3)

    def info(self, message: str) -> None:
        self.messages.append(message)

    def output(self, line: str) -> None:
        self.lines.append(line)
