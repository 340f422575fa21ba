"""The deploy plan as plain data: what to start, what to stop after the switch, what to prune.

Computed from the current state alone, so it can be checked without Docker; the deployer carries it out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from headway.config.resolve import Target
from headway.engine import labels as L
from headway.state.store import Current, ReleaseRecord


@dataclass(frozen=True)
class NewContainer:
    name: str
    role: str
    index: int


@dataclass(frozen=True)
class DeployPlan:
    number: int
    version: str
    color: str
    start: list[NewContainer]
    replicas: dict[str, int]
    retire: list[int] = field(default_factory=list)  # deploy numbers to stop after the switch
    standby: int | None = None  # deploy number kept running for instant rollback
    prune: list[int] = field(default_factory=list)  # deploy numbers whose containers are removed


def next_color(history: list[ReleaseRecord], live: int | None) -> str:
    live_rec = next((r for r in history if r.number == live and r.action == "deploy"), None)
    return "green" if live_rec is not None and live_rec.color == "blue" else "blue"


def plan_deploy(target: Target, number: int, version: str, current: Current, history: list[ReleaseRecord],
                present: set[int]) -> DeployPlan:
    """`present`: deploy numbers that still have containers on the host."""
    replicas = {name: role.replicas for name, role in target.roles.items()}
    start = [NewContainer(L.container_name(target.app, target.environment, role, number, i), role, i)
             for role, n in replicas.items() for i in range(1, n + 1)]
    retire = sorted({n for n in (current.live, current.standby) if n is not None})
    standby = current.live if target.deploy.warm_standby and current.live is not None else None
    keep = _retained(history, present | {number}, target.deploy.retain, number)
    prune = sorted(n for n in present if n not in keep and n != number and n != current.live and n != standby)
    return DeployPlan(number=number, version=version, color=next_color(history, current.live), start=start,
                      replicas=replicas, retire=retire, standby=standby, prune=prune)


def _retained(history: list[ReleaseRecord], present: set[int], retain: int, number: int) -> set[int]:
    """The newest `retain` successful deploys keep their containers (the new one counts)."""
    good = [r.number for r in history if r.action == "deploy" and r.outcome != "failed" and r.number in present]
    return set(sorted(set(good) | {number})[-retain:])


def rollback_candidate(history: list[ReleaseRecord], current: Current, present: set[int]) -> int | None:
    """What served before the live release (its warm standby, if any); else the newest earlier good deploy."""
    live = next((r for r in history if r.number == current.live and r.action == "deploy"), None)
    if current.standby is not None and current.standby in present:
        return current.standby
    if live is not None and live.replaced is not None and live.replaced in present:
        return live.replaced
    for rec in reversed(history):
        if rec.action == "deploy" and rec.outcome != "failed" and rec.number != current.live \
                and rec.number in present and (current.live is None or rec.number < current.live):
            return rec.number
    return None


def plan_to_data(plan: DeployPlan) -> dict[str, Any]:
    return asdict(plan)


def plan_from_data(data: dict[str, Any]) -> DeployPlan:
    fields = dict(data)
    fields["start"] = [NewContainer(**c) for c in data.get("start", [])]
    return DeployPlan(**fields)
