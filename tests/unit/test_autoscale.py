"""Autoscaling: the config (merged per environment, checked), and the decisions each round makes -- queue, CPU and
latency signals, clamping, the cooldown, scale-downs that must hold, and the state that survives a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headway.config.autoscale import AutoscalePolicy, RolePolicy
from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.errors import ConfigError
from headway.observe.autoscale import (
    Decision,
    EnvironmentState,
    RoleState,
    Signals,
    decide,
    decide_all,
    state_path,
    wanted,
)
from headway.observe.spec import autoscale_spec

APP = """\
app: shop
roles:
  web: {command: x, port: 8000}
  worker: {command: y}
databases:
  cache: {engine: redis}
autoscale:
  worker: {min: 1, max: 10, queue: "bull:jobs:wait", per_replica: 100}
  web: {min: 2, max: 6, cpu: 70%, p95: 400ms}
  cooldown: 2m
environments:
  production: {port: 8080}
  staging:
    port: 8081
    autoscale: {worker: {max: 2}}
"""

WORKER = RolePolicy(min=1, max=10, queue="bull:jobs:wait", per_replica=100)
WEB = RolePolicy(min=2, max=6, cpu=70.0, p95=0.4)


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "headway.yml")
    return str(info.value)


# -- config ------------------------------------------------------------------------------------------------------

def test_the_environment_overrides_key_by_key() -> None:
    config = parse_config(APP)
    prod, staging = config.autoscale_for("production"), config.autoscale_for("staging")
    assert prod.cooldown == 120.0 and staging.cooldown == 120.0
    assert prod.active["worker"] == WORKER
    assert staging.active["worker"] == RolePolicy(min=1, max=2, queue="bull:jobs:wait", per_replica=100)
    assert staging.active["web"] == WEB


def test_the_default_cooldown_is_three_minutes_and_a_rule_can_be_turned_off_per_environment() -> None:
    text = APP.replace("  cooldown: 2m\n", "").replace("{worker: {max: 2}}", "{worker: {enabled: false}}")
    config = parse_config(text)
    assert config.autoscale_for("production").cooldown == 180.0
    assert set(config.autoscale_for("staging").active) == {"web"}


def test_no_autoscale_is_no_policy() -> None:
    text = APP.split("autoscale:")[0] + "environments:\n  production: {port: 8080}\n"
    assert parse_config(text).autoscale_for("production").active == {}


def test_the_policy_reaches_monitor_json_and_round_trips(tmp_path: Path) -> None:
    target = resolve(parse_config(APP), "staging", tmp_path, withheld=True)
    spec = json.loads(json.dumps(autoscale_spec(target)))
    policy = AutoscalePolicy.from_data(spec)
    assert policy.cooldown == 120.0 and policy.active == {"worker": RolePolicy(1, 2, "bull:jobs:wait", 100),
                                                          "web": WEB}


def test_the_kept_config_reads_back_the_same_policy() -> None:
    from headway.config.model import AppConfig

    config = parse_config(APP)
    again = AppConfig.model_validate(json.loads(json.dumps(config.model_dump(mode="json", by_alias=True,
                                                                             exclude_unset=True))))
    assert again.autoscale_for("staging") == config.autoscale_for("staging")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  web: {min: 2,", "  wbe: {min: 2,", "headway.yml:9: autoscale.wbe: 'wbe' is not a role; did you mean `web`?"),
    ("min: 2, max: 6", "min: 7, max: 6", "autoscale.web: min 7 is above max 6; give min <= max"),
    ("max: 10,", "max: 101,", "autoscale.worker.max: at most 100 replicas (got 101)"),
    (', per_replica: 100}', "}", "autoscale.worker: a queue rule needs both `queue` and `per_replica`"),
    ('queue: "bull:jobs:wait", per_replica: 100', "cpu: 50%",
     "autoscale.worker: worker serves no HTTP, so it scales on a queue: give `queue` and `per_replica`"),
    (", cpu: 70%, p95: 400ms", "", "autoscale.web: an HTTP role scales on `cpu` and/or `p95`"),
    ("{worker: {max: 2}}", "{worker: {max: 2, p95: 1s}}",
     "environments.staging.autoscale.worker.p95: worker has no `port`, so it has no request latency"),
    ("{min: 1, max: 10,", "{min: 1,", "autoscale.worker: give `max`"),
    ("cpu: 70%", "cpu: lots", "autoscale.web.cpu: expected a percentage such as 80% (got 'lots')"),
    ("p95: 400ms", "p95: soon", "autoscale.web.p95: expected a duration such as 500ms"),
    ("  cooldown: 2m", "  cooldwn: 2m", "cooldwn: did you mean `cooldown`?"),
    ("{worker: {max: 2}}", "{worker: {mx: 2}}", "environments.staging.autoscale.worker.mx: unknown key; did you "
                                                "mean `max`?"),
    ("min: 2, max: 6", "min: 0, max: 6", "autoscale.web.min: an HTTP role keeps at least 1 replica"),
])
def test_bad_rules_are_refused_with_the_fix(old: str, new: str, expected: str) -> None:
    assert old in APP
    assert expected in problems(APP.replace(old, new))


def test_a_queue_rule_needs_the_environments_managed_redis() -> None:
    text = APP.replace("databases:\n  cache: {engine: redis}\n", "")
    message = problems(text)
    assert "autoscale.worker: queue 'bull:jobs:wait' is read from the environment's managed redis" in message
    assert "add one, e.g. databases: {queue: {engine: redis}}" in message
    external = APP.replace("    autoscale: {worker: {max: 2}}\n",
                           "    databases: {cache: {external_url: 'redis://elsewhere:6379'}}\n")
    assert "environments.staging has none" in problems(external)


# -- decisions ---------------------------------------------------------------------------------------------------

def test_queue_length_over_per_replica_rounded_up_and_clamped() -> None:
    assert wanted(WORKER, Signals(replicas=1, queue_length=450)) == (5, "queue bull:jobs:wait 450 > 1 x 100")
    assert wanted(WORKER, Signals(replicas=1, queue_length=401))[0] == 5
    assert wanted(WORKER, Signals(replicas=1, queue_length=5000)) == (10, "queue bull:jobs:wait 5000 > 1 x 100 "
                                                                          "(max 10)")
    assert wanted(WORKER, Signals(replicas=5, queue_length=0))[0] == 1  # never below min
    assert wanted(WORKER, Signals(replicas=3, queue_length=None)) == (3, "no signal this round")


def test_cpu_is_proportional_with_a_tolerance() -> None:
    assert wanted(WEB, Signals(replicas=2, cpu=140.0))[0] == 4
    assert wanted(WEB, Signals(replicas=4, cpu=35.0))[0] == 2
    assert wanted(WEB, Signals(replicas=3, cpu=74.0))[0] == 3  # within 10% of 70%
    assert wanted(WEB, Signals(replicas=5, cpu=300.0))[0] == 6  # max


def test_latency_above_adds_one_below_half_removes_one_no_traffic_changes_nothing() -> None:
    rule = RolePolicy(min=1, max=6, p95=0.4)
    assert wanted(rule, Signals(replicas=3, p95=0.62, requests=100)) == (4, "p95 620 ms > 400 ms")
    assert wanted(rule, Signals(replicas=3, p95=0.15, requests=100))[0] == 2
    assert wanted(rule, Signals(replicas=3, p95=0.3, requests=100))[0] == 3
    assert wanted(rule, Signals(replicas=3, p95=None, requests=0))[0] == 3


def test_any_signal_may_ask_for_more_fewer_only_when_all_agree() -> None:
    both = Signals(replicas=3, cpu=10.0, p95=0.3, requests=50)  # cpu says 1, latency says keep 3
    assert wanted(WEB, both)[0] == 3
    assert wanted(WEB, Signals(replicas=3, cpu=10.0, p95=0.5, requests=50))[0] == 4


def test_up_at_once_then_nothing_more_within_the_cooldown() -> None:
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=1, queue_length=450), RoleState(), now=1000.0)
    assert d.change and d.target == 5 and st.last_change == 1000.0
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=900), st, now=1030.0)
    assert not d.change and d.desired == 9 and "cooldown" in d.note
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=900), st, now=1060.0)
    assert d.change and d.target == 9


def test_down_only_after_it_held_for_the_cooldown_and_a_blip_resets_it() -> None:
    st = RoleState(last_change=0.0)
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=0), st, now=1000.0)
    assert not d.change and st.down_since == 1000.0 and "once this holds" in d.note
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=480), st, now=1030.0)  # the blip
    assert not d.change and st.down_since is None
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=0), st, now=1040.0)
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=0), st, now=1099.0)
    assert not d.change
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=0), st, now=1100.0)
    assert d.change and d.target == 1 and st == RoleState(last_change=1100.0)


def test_a_scale_down_goes_to_the_most_replicas_wanted_while_it_held() -> None:
    st = RoleState()
    _, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=0), st, now=0.0)
    _, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=250), st, now=30.0)  # wants 3
    d, st = decide("worker", WORKER, 60.0, Signals(replicas=5, queue_length=0), st, now=60.0)
    assert d.change and d.target == 3


def test_replicas_below_min_are_brought_up_without_any_signal() -> None:
    d, _ = decide("web", WEB, 60.0, Signals(replicas=1), RoleState(), now=0.0)
    assert d.change and d.target == 2 and d.reason == "below min 2"


def test_the_state_survives_a_restart_so_it_neither_flaps_nor_forgets(tmp_path: Path) -> None:
    policy = AutoscalePolicy(cooldown=60.0, roles={"worker": WORKER})
    path = state_path(tmp_path, "shop", "production")
    st = EnvironmentState.load(path)
    decisions, st.roles = decide_all(policy, {"worker": Signals(replicas=1, queue_length=450)}, st.roles, 1000.0)
    assert [d.target for d in decisions] == [5]
    st.save(path)
    # a restarted agent: the queue is drained at once; the change 10 s ago keeps it, and so does the hold
    st = EnvironmentState.load(path)
    decisions, st.roles = decide_all(policy, {"worker": Signals(replicas=5, queue_length=0)}, st.roles, 1010.0)
    assert not decisions[0].change
    st.save(path)
    st = EnvironmentState.load(path)  # restarted again: the hold began at 1010, not now
    assert st.roles["worker"].down_since == 1010.0
    decisions, _ = decide_all(policy, {"worker": Signals(replicas=5, queue_length=0)}, st.roles, 1070.0)
    assert decisions[0].change and decisions[0].target == 1
    assert not list(path.parent.glob(".*.tmp"))  # written beside and renamed over


def test_a_damaged_or_foreign_state_file_starts_over(tmp_path: Path) -> None:
    path = state_path(tmp_path, "shop", "production")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert EnvironmentState.load(path).roles == {}
    path.write_text(json.dumps({"version": 99, "roles": {"worker": {"last_change": 1}}}))
    assert EnvironmentState.load(path).roles == {}


def test_roles_without_signals_this_round_are_left_alone() -> None:
    policy = AutoscalePolicy(cooldown=60.0, roles={"worker": WORKER, "web": WEB})
    kept = {"web": RoleState(last_change=5.0)}
    decisions, states = decide_all(policy, {"worker": Signals(replicas=1, queue_length=0)}, kept, 10.0)
    assert [d.role for d in decisions] == ["worker"] and states["web"] == RoleState(last_change=5.0)
    assert isinstance(decisions[0], Decision) and decisions[0].to_data()["change"] is False
