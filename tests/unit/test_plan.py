"""The deploy plan is plain data: checked here without Docker."""

from __future__ import annotations

from pathlib import Path

from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.release.plan import plan_deploy, rollback_candidate
from headway.state.store import Current, ReleaseRecord

CONFIG = """\
app: shop
roles:
  web: {port: 8000, replicas: 2}
  worker: {command: work}
deploy: {retain: 3, warm_standby: %s}
environments:
  production: {port: 8080, replicas: {web: 3}}
"""


def target(tmp_path: Path, warm: bool = False):  # type: ignore[no-untyped-def]
    return resolve(parse_config(CONFIG % str(warm).lower()), "production", tmp_path)


def rec(n: int, outcome: str = "superseded", color: str = "blue", action: str = "deploy") -> ReleaseRecord:
    return ReleaseRecord(number=n, version=f"v{n}", image=f"shop:v{n}", outcome=outcome, color=color,
                         action=action)  # type: ignore[arg-type]


def test_first_deploy_starts_every_replica(tmp_path: Path) -> None:
    plan = plan_deploy(target(tmp_path), 1, "v1", Current(), [], set())
    assert [c.name for c in plan.start] == ["shop-production-web-1-1", "shop-production-web-1-2",
                                            "shop-production-web-1-3", "shop-production-worker-1-1"]
    assert plan.retire == [] and plan.prune == [] and plan.color == "blue"


def test_colors_alternate_and_old_release_retires(tmp_path: Path) -> None:
    plan = plan_deploy(target(tmp_path), 2, "v2", Current(live=1), [rec(1, "live", "blue")], {1})
    assert plan.color == "green" and plan.retire == [1] and plan.standby is None


def test_warm_standby_keeps_previous(tmp_path: Path) -> None:
    plan = plan_deploy(target(tmp_path, warm=True), 3, "v3", Current(live=2, standby=1),
                       [rec(1), rec(2, "live", "green")], {1, 2})
    assert plan.standby == 2 and plan.retire == [1, 2]


def test_retention_prunes_oldest_but_never_live(tmp_path: Path) -> None:
    history = [rec(1), rec(2), rec(3, "failed"), rec(4), rec(5, "live")]
    plan = plan_deploy(target(tmp_path), 6, "v6", Current(live=5), history, {1, 2, 4, 5})
    assert plan.prune == [1, 2]  # keeps 4, 5 and the new 6


def test_rollback_candidate_skips_failed_and_pruned() -> None:
    history = [rec(1), rec(2), rec(3, "failed"), rec(4, "live")]
    assert rollback_candidate(history, Current(live=4), {2, 4}) == 2
    assert rollback_candidate(history, Current(live=4), {4}) is None


def test_rollback_goes_to_what_served_before() -> None:
    history = [rec(1), rec(2), rec(3, "live")]
    history[2] = history[2].model_copy(update={"replaced": 1})  # 3 was deployed while 1 was live
    assert rollback_candidate(history, Current(live=3), {1, 2, 3}) == 1
    assert rollback_candidate(history, Current(live=3, standby=2), {1, 2, 3}) == 2
