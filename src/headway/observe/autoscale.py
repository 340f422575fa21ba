"""Autoscaling decisions: from what the agent measured in a round to how many replicas each role should run.

Pure: no engine, no clock of its own (every call is given `now`), no I/O but the state file. The agent
(observe/autoscaler.py) feeds it each round and carries the changes out.

Per role, each signal the rule names has an opinion:

- queue: ceil(length / per_replica) replicas;
- cpu: proportional, ceil(replicas * average CPU / target), none within 10% of the target;
- p95 (over the last minute): above the target +1, below half of it -1; no traffic, no opinion.

The role wants the largest opinion (any signal can ask for more; fewer only when all agree), kept within
min..max. More replicas are asked for at once; fewer only once the wish held for the whole cooldown (to the most
replicas wanted during it), so a blip never removes any. A role is changed at most once per cooldown. The state
(last change of each role, since when a scale-down has been wanted) is one JSON file per environment, replaced
atomically: an agent restarted or killed neither flaps nor forgets.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from headway.config.autoscale import AutoscalePolicy, RolePolicy
from headway.state.files import atomic_write

STATE_VERSION = 1
CPU_TOLERANCE = 0.1  # no CPU opinion while the average is within 10% of the target


@dataclass(frozen=True)
class Signals:
    """What one round saw of one role."""

    replicas: int  # running replicas of the live release
    queue_length: int | None = None  # None: not read this round
    cpu: float | None = None  # average CPU per replica, percent of its core (or cpus limit)
    p95: float | None = None  # seconds, over the last minute
    requests: int = 0  # in the last minute


@dataclass
class RoleState:
    last_change: float | None = None  # when this role was last scaled by the autoscaler
    down_since: float | None = None  # since when fewer replicas have been wanted
    down_to: int | None = None  # the most replicas wanted since then


@dataclass(frozen=True)
class Decision:
    role: str
    current: int
    desired: int  # what the signals want now (within min..max)
    target: int  # what to scale to this round; == current: no change
    reason: str  # the signal that decided, e.g. "queue bull:jobs:wait 512 > 5 x 100"
    note: str = ""  # why nothing changes yet (cooldown, a scale-down that must hold)

    @property
    def change(self) -> bool:
        return self.target != self.current

    def to_data(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change}


def _fmt_span(seconds: float) -> str:
    from headway.observe.alerts import format_span

    return format_span(seconds) if seconds >= 1 else f"{seconds * 1000:.0f}ms"


def wanted(rule: RolePolicy, s: Signals) -> tuple[int, str]:
    """The replicas the signals want (within min..max) and the reason."""
    n = s.replicas
    opinions: list[tuple[int, str]] = []
    if rule.queue and rule.per_replica and s.queue_length is not None:
        d = math.ceil(s.queue_length / rule.per_replica)
        sign = ">" if s.queue_length > n * rule.per_replica else "<="
        shown = n if sign == ">" else max(d, 1)
        opinions.append((d, f"queue {rule.queue} {s.queue_length} {sign} {shown} x {rule.per_replica}"))
    if rule.cpu and s.cpu is not None and n > 0:
        ratio = s.cpu / rule.cpu
        d = n if abs(ratio - 1) <= CPU_TOLERANCE else math.ceil(n * ratio)
        opinions.append((d, f"cpu {s.cpu:.0f}% {'>' if s.cpu > rule.cpu else '<'} {rule.cpu:.0f}% per replica"))
    if rule.p95 and s.p95 is not None and s.requests > 0:
        ms, target = s.p95 * 1000, rule.p95 * 1000
        if s.p95 > rule.p95:
            opinions.append((n + 1, f"p95 {ms:.0f} ms > {target:.0f} ms"))
        elif s.p95 < rule.p95 / 2:
            opinions.append((n - 1, f"p95 {ms:.0f} ms < half of {target:.0f} ms"))
        else:
            opinions.append((n, f"p95 {ms:.0f} ms near {target:.0f} ms"))
    if opinions:
        desired, reason = max(opinions, key=lambda o: o[0])
    else:
        desired, reason = n, "no signal this round"
    if desired > rule.max:
        return rule.max, f"{reason} (max {rule.max})"
    if desired < rule.min:
        return rule.min, f"{reason} (min {rule.min})" if opinions else f"below min {rule.min}"
    return desired, reason


def decide(role: str, rule: RolePolicy, cooldown: float, s: Signals, state: RoleState,
           now: float) -> tuple[Decision, RoleState]:
    """This round's decision for `role` and its new state."""
    desired, reason = wanted(rule, s)
    n = s.replicas
    wait = None if state.last_change is None else state.last_change + cooldown - now
    if desired == n:
        return Decision(role, n, desired, n, reason), RoleState(state.last_change)
    if desired > n:
        kept = RoleState(state.last_change)
        if wait is not None and wait > 0:
            return Decision(role, n, desired, n, reason, f"up to {desired} after the cooldown "
                                                         f"({_fmt_span(wait)} left)"), kept
        return Decision(role, n, desired, desired, reason), RoleState(now)
    since = now if state.down_since is None else state.down_since
    to = desired if state.down_to is None else max(desired, min(state.down_to, n - 1))
    held = now - since
    kept = RoleState(state.last_change, since, to)
    if held < cooldown:
        return Decision(role, n, desired, n, reason, f"down to {to} once this holds for {_fmt_span(cooldown)} "
                                                     f"(held {_fmt_span(held)})"), kept
    if wait is not None and wait > 0:
        return Decision(role, n, desired, n, reason, f"down to {to} after the cooldown "
                                                     f"({_fmt_span(wait)} left)"), kept
    return Decision(role, n, desired, to, f"{reason} for {_fmt_span(held)}"), RoleState(now)


def decide_all(policy: AutoscalePolicy, signals: dict[str, Signals], states: dict[str, RoleState],
               now: float) -> tuple[list[Decision], dict[str, RoleState]]:
    """Every autoscaled role with signals this round; roles without are left as they were."""
    decisions: list[Decision] = []
    out = dict(states)
    for role, rule in policy.active.items():
        if role not in signals:
            continue
        d, st = decide(role, rule, policy.cooldown, signals[role], states.get(role, RoleState()), now)
        decisions.append(d)
        out[role] = st
    return decisions, out


@dataclass
class EnvironmentState:
    """What the autoscaler keeps of one environment: each role's state, the last decisions, the last action."""

    roles: dict[str, RoleState] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)  # {"at", "decisions": [...], "skipped": "..."}
    action: dict[str, Any] | None = None  # the last scale: {"at", "counts", "reason", "result", "error"}

    @classmethod
    def load(cls, path: Path) -> EnvironmentState:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return cls()
        roles = {}
        for name, st in (data.get("roles") or {}).items():
            try:
                roles[str(name)] = RoleState(**{k: st.get(k) for k in ("last_change", "down_since", "down_to")})
            except (TypeError, AttributeError):
                continue
        return cls(roles=roles, last=data.get("last") or {}, action=data.get("action"))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"version": STATE_VERSION, "roles": {k: asdict(v) for k, v in
                                                                           self.roles.items()},
                                       "last": self.last, "action": self.action}, indent=2, default=str))


def state_path(root: Path, app: str, environment: str) -> Path:
    return root / "agent" / "autoscale" / f"{app}--{environment}.json"
