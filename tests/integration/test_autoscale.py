"""Autoscaling on a real queue: the tiny app with a managed Redis and an autoscaled worker, deployed; jobs pushed onto
the Redis list; the monitor's rounds, driven in-process with their clock, scale the worker out through the normal
zero-downtime `scale` (web under a strict client's load the whole time), record it as done by "autoscaler" with
its reason and tell the channel; a drained queue brings it back to min only after the cooldown; a round that finds
the deploy lock held skips."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from bench.loadgen import SteadyLoad

from headway.engine import exec_stream
from headway.engine import labels as L
from headway.observe.monitor import Monitor
from headway.service import scale_on_host
from headway.state.store import AppState
from tests.conftest import AppDir
from tests.receivers import Receiver, http_receiver

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

QUEUE = "bull:jobs:wait"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as rec:
        yield rec


@pytest.fixture
def scaled_app(tiny_app: AppDir, receiver: Receiver) -> Iterator[AppDir]:
    tiny_app.edit_config("environments:", f"""databases:
  cache: {{engine: redis}}
autoscale:
  worker: {{min: 1, max: 10, queue: "{QUEUE}", per_replica: 100}}
  web: {{min: 2, max: 3, p95: 5s}}
  cooldown: 2s
alerts:
  channels:
    - {{type: webhook, name: hook, url: "{receiver.url('/hook')}", events: [scale]}}
environments:""")
    tiny_app.cli("deploy", "-e", "production", check=True)
    yield tiny_app


def redis(app: AppDir, *args: str) -> str:
    hw = app.headway()
    container = hw.engine.get(L.accessory_name(app.name, "production", "cache"))
    assert container is not None
    code, out, err = exec_stream.run(hw.engine.client, container.id or "",
                                     ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli "$@"', "sh", *args])
    assert code == 0, err
    return out


def workers(app: AppDir) -> int:
    hw = app.headway()
    live = hw.state.current().live
    return sum(1 for c in hw.engine.containers(L.selector(app=app.name, environment="production", deploy=live,
                                                         role="worker")) if hw.engine.state(c).get("Running"))


def autoscaled(summary: dict, app: AppDir) -> dict:  # type: ignore[type-arg]
    return next(a for a in summary["autoscale"] if a["subject"] == f"{app.name}/production")


def test_a_queue_scales_the_worker_out_and_back_after_the_cooldown(scaled_app: AppDir, receiver: Receiver) -> None:
    app = scaled_app
    spec = json.loads((app.state_dir / "apps" / app.name / "production" / "monitor.json").read_text())
    assert spec["autoscale"]["roles"]["worker"] == {"min": 1, "max": 10, "queue": QUEUE, "per_replica": 100}
    assert workers(app) == 1
    redis(app, "RPUSH", QUEUE, *[f"job-{i}" for i in range(450)])
    monitor = Monitor(app.state_dir, scale=scale_on_host)
    t0 = time.time()
    try:
        with SteadyLoad(app.url(), rate=100, max_seconds=240) as load:
            load.wait_for(50)
            decision = autoscaled(monitor.round(now=t0), app)
            assert decision["scaling"] == {"worker": 5}
            assert monitor.autoscaler.idle(180), "the scale did not end"
            assert workers(app) == 5
            record = app.headway().state.history()[-1]
            assert (record.action, record.outcome, record.replicas["worker"]) == ("scale", "done", 5)
            assert record.by.startswith("autoscaler@")
            assert record.reason == f"queue {QUEUE} 450 > 1 x 100"

            redis(app, "DEL", QUEUE)  # drained
            first = autoscaled(monitor.round(now=t0 + 1.0), app)  # wanted since now: a blip must not remove any
            worker = next(d for d in first["decisions"] if d["role"] == "worker")
            assert not first["scaling"] and worker["desired"] == 1 and "once this holds" in worker["note"]
            assert not autoscaled(monitor.round(now=t0 + 2.5), app)["scaling"]  # held 1.5 s of 2
            web = next(d for d in autoscaled(monitor.round(now=t0 + 2.8), app)["decisions"] if d["role"] == "web")
            assert web["reason"].startswith("p95 ") and web["target"] == 2  # real traffic, fast: min 2 kept
            assert workers(app) == 5
            assert autoscaled(monitor.round(now=t0 + 3.5), app)["scaling"] == {"worker": 1}
            assert monitor.autoscaler.idle(180), "the scale did not end"
            assert workers(app) == 1
            record = app.headway().state.history()[-1]
            assert record.replicas["worker"] == 1 and record.by.startswith("autoscaler@")
            assert record.reason is not None and record.reason.startswith(f"queue {QUEUE} 0 <= 1 x 100")
            load.wait_for(load.result.sent + 50)
        assert load.result.failed == 0, load.result.summary()
    finally:
        monitor.autoscaler.close()
        monitor.store.close()
    notices = [json.loads(r.body) for r in receiver.at("/hook")]
    assert [(n["kind"], n["severity"], n["title"]) for n in notices] == [
        ("scale", "info", f"{app.name}/production scaled worker 1 → 5"),
        ("scale", "info", f"{app.name}/production scaled worker 5 → 1")]
    assert notices[0]["text"] == f"queue {QUEUE} 450 > 1 x 100"
    releases = app.cli("releases", "-e", "production", check=True).stdout
    assert "autoscaler@" in releases and f"queue {QUEUE} 450 > 1 x" in releases
    status = app.cli("status", "-e", "production", check=True).stdout
    assert f"autoscale worker: 1-10 replicas on queue {QUEUE} / 100 per replica" in status
    assert "last scale worker 5 -> 1" in status and ": done" in status


def test_a_round_that_finds_the_deploy_lock_held_skips(scaled_app: AppDir) -> None:
    app = scaled_app
    redis(app, "RPUSH", QUEUE, *[f"job-{i}" for i in range(250)])
    monitor = Monitor(app.state_dir, scale=scale_on_host)
    t0 = time.time()
    try:
        with AppState(app.state_dir, app.name, "production").lock("deploy"):
            skipped = autoscaled(monitor.round(now=t0), app)
            assert "locked by" in skipped["skipped"] and "`deploy`" in skipped["skipped"]
            assert monitor.autoscaler.idle(1) and workers(app) == 1
            status = json.loads(app.cli("status", "-e", "production", "--json").stdout)
            assert "locked by" in status["autoscale"]["last"]["skipped"]
        # the lock is free again: the next round scales (the skipped round was no change, so no cooldown)
        assert autoscaled(monitor.round(now=t0 + 0.5), app)["scaling"] == {"worker": 3}
        assert monitor.autoscaler.idle(180) and workers(app) == 3
    finally:
        monitor.autoscaler.close()
        monitor.store.close()


def test_a_scale_that_fails_is_a_warning_and_waits_for_the_cooldown(scaled_app: AppDir, receiver: Receiver) -> None:
    import shutil

    app = scaled_app
    kept = app.state_dir / "apps" / app.name / "production" / "kept"  # what the autoscaler acts from
    shutil.rmtree(kept.resolve())
    kept.unlink()
    redis(app, "RPUSH", QUEUE, *[f"job-{i}" for i in range(150)])
    monitor = Monitor(app.state_dir, scale=scale_on_host)
    t0 = time.time()
    try:
        assert autoscaled(monitor.round(now=t0), app)["scaling"] == {"worker": 2}
        assert monitor.autoscaler.idle(60)
        assert workers(app) == 1
        action = json.loads(app.cli("status", "-e", "production", "--json").stdout)["autoscale"]["action"]
        assert action["result"] == "failed" and "has no config kept on this host" in action["error"]
        again = autoscaled(monitor.round(now=t0 + 1.0), app)  # within the cooldown: not tried again yet
        assert not again["scaling"] and "cooldown" in next(d for d in again["decisions"]
                                                            if d["role"] == "worker")["note"]
    finally:
        monitor.autoscaler.close()
        monitor.store.close()
    notices = [json.loads(r.body) for r in receiver.at("/hook")]
    assert [(n["kind"], n["severity"]) for n in notices] == [("scale", "warning")]
    assert f"{app.name}/production: autoscale worker 1 → 2 failed" == notices[0]["title"]
    assert "deploy it once with this version of headway" in notices[0]["text"]
