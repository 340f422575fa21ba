"""Alert rules and their evaluation, on an injected clock: `for`, gaps, repeat, resolve, silences, maintenance, a
restart from the state file, and every override that does not parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headway.errors import ConfigError, HeadwayError, NotFound
from headway.observe.alerts import (
    AlertRules,
    AlertStateError,
    Evaluator,
    Observation,
    backup_observation,
    format_span,
    parse_alert_rules,
    restart_count,
)

T0 = 1_750_000_000.0
SUBJECT = "shop/production"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def down(is_down: bool, detail: str = "GET /health → connection refused") -> Observation:
    return Observation("down", SUBJECT, is_down, None, detail if is_down else "")


def run(ev: Evaluator, obs: Observation, start: float, end: float, every: float = 15.0) -> list:
    """Observe `obs` every `every` seconds from start to end (inclusive); all transitions."""
    out = []
    t = start
    while t <= end:
        out += ev.observe([obs], t)
        t += every
    return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ev(tmp_path: Path, clock: Clock) -> Evaluator:
    return Evaluator(AlertRules(), tmp_path / "alerts.json", clock=clock)


# -- the rules --------------------------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    r = AlertRules()
    assert (r.down.for_, r.error_rate.above, r.error_rate.for_) == (120, 1, 300)
    assert (r.p95.above, r.p95.for_, r.cpu.above, r.cpu.for_, r.memory.above, r.memory.for_) == (0.5, 300, 80, 600,
                                                                                                  80, 600)
    assert (r.disk.above, r.disk.for_, r.queue.above, r.queue.for_) == (85, 0, 100, 300)
    assert r.certificate.below == 14 * 86400
    assert (r.restart_loop.restarts, r.restart_loop.within, r.repeat) == (3, 600, 4 * 3600)
    assert all(getattr(r, name).enabled for name in AlertRules.NAMES)


def test_overrides_change_only_their_key() -> None:
    r = parse_alert_rules({"repeat": "1h", "cpu": {"above": "90%", "for": "15m"}, "disk": {"enabled": False},
                           "certificate": {"below": "3w"}, "p95": {"above": "800ms"},
                           "queue": {"queues": {"mail": {"above": 1000, "for": "1m"}}}})
    assert (r.repeat, r.cpu.above, r.cpu.for_, r.memory.above) == (3600, 90, 900, 80)
    assert not r.disk.enabled and r.disk.above == 85
    assert r.certificate.below == 21 * 86400 and r.p95.above == 0.8
    mail, other = r.rule("queue", {"queue": "mail"}), r.rule("queue", {"queue": "default"})
    assert (mail.above, mail.for_) == (1000, 60)  # type: ignore[attr-defined]
    assert (other.above, other.for_) == (100, 300)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("override", "message"), [
    ({"cpu": {"above": "lots"}}, "alerts.cpu.above: expected a percentage such as 80% (got 'lots')"),
    ({"down": {"for": "5 minutes"}}, "alerts.down.for: expected a duration such as 500ms, 5s, 2m (got '5 minutes')"),
    ({"repeat": "often"}, "alerts.repeat: expected a duration such as 500ms, 5s, 2m (got 'often')"),
    ({"error_rate": {"repeat": "hourly"}}, "alerts.error_rate.repeat: expected a duration"),
    ({"memory": {"enabled": "maybe"}}, "alerts.memory.enabled: use true or false (got 'maybe')"),
    ({"disk": {"above": 120}}, "alerts.disk.above: a percentage is between 0% and 100% (got 120)"),
    ({"error_rate": {"above": "1 percent"}}, "alerts.error_rate.above: expected a percentage such as 80%"),
    ({"p95": {"above": "slow"}}, "alerts.p95.above: expected a duration such as 500ms, 5s, 2m (got 'slow')"),
    ({"queue": {"above": -1}}, "alerts.queue.above: expected a whole number such as 100 (got -1)"),
    ({"queue": {"above": "many"}}, "alerts.queue.above: expected a whole number such as 100 (got 'many')"),
    ({"queue": {"queues": {"mail": {"for": "soon"}}}}, "alerts.queue.queues.mail.for: expected a duration"),
    ({"queue": {"queues": {"mail": {"abov": 3}}}}, "alerts.queue.queues.mail.abov: unknown key; did you mean "
                                                   "`above`?"),
    ({"certificate": {"below": 14}}, "alerts.certificate.below: write the unit: 14d for days, or hours such as 36h"),
    ({"certificate": {"below": "two weeks"}}, "alerts.certificate.below: expected a time such as 14d, 2w or 36h"),
    ({"backup": {"verified_within": "weekly"}}, "alerts.backup.verified_within: expected a time such as 14d"),
    ({"backup": {"grace": "a while"}}, "alerts.backup.grace: expected a duration"),
    ({"restart_loop": {"restarts": "three"}}, "alerts.restart_loop.restarts: expected a whole number"),
    ({"restart_loop": {"restarts": 0}}, "alerts.restart_loop.restarts: must be at least 1 (got 0)"),
    ({"restart_loop": {"within": "ten minutes"}}, "alerts.restart_loop.within: expected a duration"),
    ({"cpuu": {"above": 90}}, "alerts.cpuu: unknown key; did you mean `cpu`?"),
    ({"cpu": {"abov": 90}}, "alerts.cpu.abov: unknown key; did you mean `above`?"),
    ({"cpu": {"fro": "5m"}}, "alerts.cpu.fro: unknown key; did you mean `for`?"),
    ({"cpu": 90}, "alerts.cpu: expected the rule's settings as a mapping, e.g. `cpu: {for: 5m}` (got 90)"),
])
def test_every_bad_override_names_its_key_and_the_fix(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_alert_rules(override)
    text = str(err.value)
    assert message in text, text
    assert "fix: correct the keys above" in text and "docs/monitoring.md#alert-rules" in text
    assert "Traceback" not in text and "pydantic" not in text


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_alert_rules({"cpu": {"above": "lots"}, "down": {"for": "5 minutes"}})
    assert "2 problem(s)" in str(err.value)


def test_format_span() -> None:
    assert [format_span(s) for s in (0, 45, 120, 125, 4 * 3600 + 120, 3 * 86400 + 4 * 3600 + 5)] == [
        "0s", "45s", "2m", "2m 5s", "4h 2m", "3d 4h"]


# -- for, gaps, repeat, resolve ---------------------------------------------------------------------------------


def test_a_blip_shorter_than_for_never_fires(ev: Evaluator) -> None:
    assert run(ev, down(True), T0, T0 + 105) == []  # down for 1m 45s < 2m
    assert ev.observe([down(False)], T0 + 120) == []  # cleared: no resolve of what never fired
    assert run(ev, down(True), T0 + 135, T0 + 240) == []  # a new blip starts over
    assert ev.observe([down(False)], T0 + 255) == []
    assert ev.firing() == []


def test_held_fires_once_at_for_with_the_text_a_person_reads(ev: Evaluator) -> None:
    out = run(ev, down(True), T0, T0 + 125, every=5)
    assert [(t.kind, t.at) for t in out] == [("firing", T0 + 120)]
    assert out[0].text == "shop/production is down for 2m: GET /health → connection refused"
    assert not out[0].silenced
    more = run(ev, down(True), T0 + 130, T0 + 3600)  # still down for an hour: nothing new before repeat
    assert more == []
    assert [t.subject for t in ev.firing()] == [SUBJECT]


def test_firing_text_says_how_long_it_held(ev: Evaluator) -> None:
    ev.observe([down(True)], T0)
    ev.observe([down(True)], T0 + 60)  # observations 60s apart: no gap
    out = ev.observe([down(True)], T0 + 125)
    assert out[0].text == "shop/production is down for 2m 5s: GET /health → connection refused"


def test_a_gap_in_observations_resets_pending(ev: Evaluator) -> None:
    assert run(ev, down(True), T0, T0 + 90) == []
    # no observation for 5 minutes (the agent was busy or down): the condition was not seen to hold
    assert ev.observe([down(True)], T0 + 390) == []
    out = run(ev, down(True), T0 + 405, T0 + 510)
    assert [t.at for t in out] == [T0 + 510]  # 2m after it was seen again, not after the first sighting


def test_repeat_every_repeat_while_firing(tmp_path: Path, clock: Clock) -> None:
    ev = Evaluator(parse_alert_rules({"repeat": "1h"}), tmp_path / "a.json", clock=clock)
    out = run(ev, down(True), T0, T0 + 120 + 3 * 3600 + 60, every=30)
    assert [(t.kind, t.at - T0) for t in out] == [("firing", 120), ("repeat", 3720), ("repeat", 7320),
                                                 ("repeat", 10920)]
    assert "(still firing since" in out[1].text and out[1].text.startswith("shop/production is down for 1h 2m")


def test_repeat_per_rule_and_never(tmp_path: Path, clock: Clock) -> None:
    rules = parse_alert_rules({"repeat": "1h", "disk": {"repeat": "0"}, "cpu": {"repeat": "30m", "for": 0}})
    ev = Evaluator(rules, tmp_path / "a.json", clock=clock)
    out: list = []
    for i in range(0, 2 * 3600 + 1, 60):
        out += ev.observe([Observation("disk", SUBJECT, 95.0), Observation("cpu", SUBJECT, 95.0)], T0 + i)
    assert [(t.rule, t.kind, t.at - T0) for t in out if t.rule == "disk"] == [("disk", "firing", 0)]
    assert [t.at - T0 for t in out if t.rule == "cpu"] == [0, 1800, 3600, 5400, 7200]


def test_resolved_once_when_it_clears(ev: Evaluator) -> None:
    run(ev, down(True), T0, T0 + 150)
    out = ev.observe([down(False)], T0 + 165)
    assert [(t.kind, t.text) for t in out] == [("resolved", "resolved: shop/production is up again "
                                                            "(was down for 2m 45s)")]
    assert run(ev, down(False), T0 + 180, T0 + 600) == []
    assert ev.firing() == []


def test_thresholds_and_their_texts(ev: Evaluator) -> None:
    cpu = Observation("cpu", SUBJECT, 93.0, {"role": "web"})
    assert run(ev, cpu, T0, T0 + 585) == []
    out = ev.observe([cpu], T0 + 600)
    assert out[0].text == "shop/production (role=web): CPU 93.0% > 80% for 10m"
    assert ev.observe([Observation("cpu", SUBJECT, 80.0, {"role": "web"})], T0 + 615)[0].text == \
        "resolved: shop/production (role=web): CPU back to 80.0% (was above 80% for 10m 15s)"
    disk = ev.observe([Observation("disk", SUBJECT, 91.0)], T0)  # for 0: at once
    assert disk[0].text == "shop/production: disk 91.0% > 85%"
    p95 = run(ev, Observation("p95", SUBJECT, 0.812), T0, T0 + 300)
    assert p95[0].text == "shop/production: p95 latency 812 ms > 500 ms for 5m"
    err = run(ev, Observation("error_rate", SUBJECT, 3.25, {"app": "shop", "environment": "production"}), T0, T0 + 300)
    assert err[0].text == "shop/production: error rate 3.2% > 1% for 5m"
    assert run(ev, Observation("error_rate", "shop/staging", 1.0), T0, T0 + 900) == []  # not above 1%
    cert = ev.observe([Observation("certificate", SUBJECT, 9 * 86400.0, {"domain": "shop.example.com"})], T0)
    assert cert[0].text == "shop/production: the certificate for shop.example.com expires in 9d (alert below 14d)"


def test_each_named_queue_is_its_own_alert(tmp_path: Path, clock: Clock) -> None:
    ev = Evaluator(parse_alert_rules({"queue": {"queues": {"reports": {"above": 1000}}}}), tmp_path / "a.json",
                   clock=clock)
    obs = [Observation("queue", SUBJECT, 340, {"queue": "emails"}),
           Observation("queue", SUBJECT, 340, {"queue": "reports"})]  # under its own 1000
    out: list = []
    for i in range(0, 301, 15):
        out += ev.observe(obs, T0 + i)
    assert [t.text for t in out] == ["shop/production: queue emails has 340 jobs waiting (> 100) for 5m"]
    assert out[0].labels == {"queue": "emails"}


def test_restart_loop(ev: Evaluator) -> None:
    restarts = [T0 - 700, T0 - 300, T0 - 100, T0 - 10]
    n = restart_count(restarts, T0, 600)
    assert n == 3
    out = ev.observe([Observation("restart_loop", SUBJECT, n, {"role": "worker"})], T0)
    assert out[0].text == "shop/production: worker restarted 3 times in 10m"
    assert ev.observe([Observation("restart_loop", SUBJECT, 2, {"role": "worker"})], T0 + 15)[0].kind == "resolved"


def test_backup_failed_missed_and_unverified(ev: Evaluator) -> None:
    rule = AlertRules().backup
    day = 86400.0
    now = datetime(2025, 6, 10, 12, 0, tzinfo=UTC).timestamp()
    three_am = datetime(2025, 6, 10, 3, 0, tzinfo=UTC).timestamp()
    ok = backup_observation(SUBJECT, "db", rule, now, last_success=three_am + 60, schedule="0 3 * * *",
                            last_verified=now - day)
    assert ok.value is False and ok.detail == ""
    failed = backup_observation(SUBJECT, "db", rule, now, last_success=three_am - day + 60,
                                last_failure=(three_am + 30, "pg_dump exited 1"), schedule="0 3 * * *",
                                last_verified=now - day)
    assert failed.value is True
    assert failed.detail.startswith("the backup at 2025-06-10 03:00 UTC failed: pg_dump exited 1")
    missed = backup_observation(SUBJECT, "db", rule, now, last_success=three_am - day + 60, schedule="0 3 * * *",
                                last_verified=now - day)
    assert missed.value is True and missed.detail == "a backup was due at 2025-06-10 03:00 UTC and none succeeded since"
    within_grace = backup_observation(SUBJECT, "db", rule, three_am + 1800, last_success=three_am - day + 60,
                                      schedule="0 3 * * *", last_verified=now - day)
    assert within_grace.value is False
    stale = backup_observation(SUBJECT, "db", rule, now, last_success=three_am + 60, last_verified=now - 9 * day)
    assert stale.value is True and stale.detail == "last verified 9d ago"
    never = backup_observation(SUBJECT, "db", rule, now, last_success=three_am + 60, first_backup=now - 8 * day)
    assert never.detail == "never verified (first backup 8d ago)"
    out = ev.observe([missed], now)
    assert out[0].text == ("shop/production: backup of db: a backup was due at 2025-06-10 03:00 UTC and none "
                           "succeeded since")
    assert out[0].labels == {"database": "db"}


def test_disabled_rule_never_fires_and_drops_its_state(tmp_path: Path, clock: Clock) -> None:
    ev = Evaluator(parse_alert_rules({"disk": {"enabled": False}}), tmp_path / "a.json", clock=clock)
    assert run(ev, Observation("disk", SUBJECT, 99.0), T0, T0 + 3600) == []
    assert ev.firing() == []


def test_observations_may_be_plain_tuples(ev: Evaluator) -> None:
    out = ev.observe([("disk", SUBJECT, 99.0, {"volume": "data"})], T0)
    assert out[0].labels == {"volume": "data"} and out[0].kind == "firing"


# -- silences and maintenance -----------------------------------------------------------------------------------


def test_a_silenced_alert_changes_state_but_sends_nothing(ev: Evaluator, clock: Clock) -> None:
    s = ev.silence({"subject": "shop/*", "rule": "down"}, until=T0 + 1800, by="ana", reason="moving the database")
    assert [x.id for x in ev.silences()] == [s.id]
    out = run(ev, down(True), T0, T0 + 600)
    assert [(t.kind, t.silenced, t.silenced_by) for t in out] == [("firing", True, s.id)]
    assert [t.subject for t in ev.firing()] == [SUBJECT]  # the state changed all the same
    # the silence ends while it is still down: now someone is told, once
    out = run(ev, down(True), T0 + 1800, T0 + 1860)
    assert [(t.kind, t.silenced) for t in out] == [("firing", False)]
    assert ev.observe([down(False)], T0 + 1875)[0].silenced is False


def test_resolved_while_silenced_and_never_sent_is_silent(ev: Evaluator) -> None:
    s = ev.silence(SUBJECT, until=T0 + 3600, by="ana", reason="load test")
    run(ev, down(True), T0, T0 + 300)
    out = ev.observe([down(False)], T0 + 315)
    assert [(t.kind, t.silenced, t.silenced_by) for t in out] == [("resolved", True, s.id)]


def test_a_silence_matches_only_what_it_names(ev: Evaluator) -> None:
    ev.silence({"subject": "shop/staging"}, until=T0 + 3600, by="ana")
    ev.silence({"rule": "queue", "queue": "reports"}, until=T0 + 3600, by="ana")
    out = ev.observe([Observation("disk", SUBJECT, 99.0), Observation("disk", "shop/staging", 99.0),
                      Observation("queue", SUBJECT, 500, {"queue": "reports"})], T0)
    loud = {(t.rule, t.subject) for t in out if not t.silenced}
    assert loud == {("disk", SUBJECT)}
    assert len(out) == 2  # the queue is still pending (for 5m), silenced or not


def test_unsilence_and_expiry(ev: Evaluator, clock: Clock) -> None:
    s = ev.silence(SUBJECT, until=T0 + 600, by="ana")
    assert ev.unsilence(s.id).id == s.id and ev.silences() == []
    with pytest.raises(NotFound) as err:
        ev.unsilence(s.id)
    assert "no silence 's1'" in str(err.value) and "fix:" in str(err.value)
    s2 = ev.silence(SUBJECT, until=T0 + 600, by="ana")
    assert s2.id == "s2"  # ids are never reused
    clock.now = T0 + 601
    assert ev.silences() == []
    assert ev.observe([Observation("disk", SUBJECT, 99.0)], T0 + 601)[0].silenced is False


def test_bad_silences_are_refused(ev: Evaluator) -> None:
    with pytest.raises(HeadwayError, match="has passed"):
        ev.silence(SUBJECT, until=T0 - 1, by="ana")
    with pytest.raises(HeadwayError, match="needs something to match"):
        ev.silence({}, until=T0 + 60, by="ana")
    with pytest.raises(HeadwayError, match="who set it"):
        ev.silence(SUBJECT, until=T0 + 60, by=" ")


def test_a_maintenance_window_silences_its_environment(tmp_path: Path, clock: Clock) -> None:
    maintenance = {"shop/production"}
    ev = Evaluator(AlertRules(), tmp_path / "a.json", clock=clock, in_maintenance=lambda s: s in maintenance)
    out = ev.observe([Observation("disk", SUBJECT, 99.0), Observation("disk", "shop/staging", 99.0)], T0)
    assert {(t.subject, t.silenced, t.silenced_by) for t in out} == {(SUBJECT, True, "maintenance"),
                                                                    ("shop/staging", False, None)}
    maintenance.clear()  # the window ends while the disk is still full: the notice goes out then
    out = ev.observe([Observation("disk", SUBJECT, 99.0)], T0 + 15)
    assert [(t.kind, t.silenced) for t in out] == [("firing", False)]


# -- the state file ---------------------------------------------------------------------------------------------


def test_a_restarted_evaluator_neither_refires_nor_forgets(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state" / "alerts.json"
    rules = parse_alert_rules({"repeat": "1h"})
    first = Evaluator(rules, path, clock=clock)
    assert [t.kind for t in run(first, down(True), T0, T0 + 120)] == ["firing"]
    pending = run(first, Observation("cpu", SUBJECT, 95.0), T0, T0 + 300)  # half way to its 10m
    assert pending == []
    sil = first.silence("shop/staging", until=T0 + 7200, by="ana")
    del first

    second = Evaluator(rules, path, clock=clock)  # the agent restarted
    assert [t.subject for t in second.firing()] == [SUBJECT]
    assert [s.id for s in second.silences()] == [sil.id]
    out = []
    for t in range(315, 601, 15):
        out += second.observe([down(True), Observation("cpu", SUBJECT, 95.0)], T0 + t)
    # no second "firing" of down; cpu's pending carried over: it fires 10m after it began, not after the restart
    assert [(t.rule, t.kind, t.at) for t in out] == [("cpu", "firing", T0 + 600)]
    assert run(second, down(True), T0 + 615, T0 + 3600) == []
    assert [t.kind for t in second.observe([down(True)], T0 + 3720)] == ["repeat"]  # the repeat clock too
    assert [t.kind for t in second.observe([down(False)], T0 + 3735)] == ["resolved"]
    third = Evaluator(rules, path, clock=clock)
    assert [t.rule for t in third.firing()] == ["cpu"]  # firing states are kept while unobserved
    assert third.silence(SUBJECT, until=T0 + 7200, by="ana").id == "s2"


def test_state_is_plain_json_replaced_atomically(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alerts.json"
    ev = Evaluator(AlertRules(), path, clock=clock)
    ev.observe([Observation("disk", SUBJECT, 99.0)], T0)
    data = json.loads(path.read_text())
    assert data["version"] == 1 and list(data["alerts"]) == ["disk|shop/production"]
    assert data["alerts"]["disk|shop/production"]["state"] == "firing"
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.json"]  # no temporary file left beside it


def test_an_unreadable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text('{"version": 1, "alerts": {')
    with pytest.raises(AlertStateError) as err:
        Evaluator(AlertRules(), path)
    assert f"cannot read the alert state {path}" in str(err.value) and "move" in str(err.value)


def test_forget_drops_an_environment_without_notices(ev: Evaluator) -> None:
    ev.observe([Observation("disk", SUBJECT, 99.0), Observation("disk", "shop/staging", 99.0)], T0)
    assert ev.forget("shop/staging") == 1
    assert [t.subject for t in ev.firing()] == [SUBJECT]
