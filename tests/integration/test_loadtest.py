"""`headway loadtest` against the fixture app really deployed behind headway's real proxy: a healthy path passes,
a slow one and a failing one miss their thresholds and exit non-zero, production needs --yes, bounds hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import AppDir, RunningProxy

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

FIELDS = {"finished_at", "rps", "duration_s", "requests", "errors", "error_share", "p50_ms", "p95_ms", "p99_ms",
          "passed", "thresholds"}


@pytest.fixture
def staged(tiny_app: AppDir) -> AppDir:
    """Staging on a domain (requests reach it through the proxy's HTTP port by Host), deployed: /slow answers
    after 800 ms, one request to / in 5 answers 500, anything else at once."""
    tiny_app.set_behavior(slow_seconds=0.8, fail_every=5)
    port = tiny_app.ports["staging"]
    tiny_app.edit_config(f"  staging:\n    port: {port}\n",
                         f"  staging:\n    port: {port}\n    domains: [{tiny_app.name}.loadtest.example]\n")
    tiny_app.headway("staging").deploy(version="v1")
    return tiny_app


def result_file(app: AppDir, environment: str = "staging") -> Path:
    return app.state_dir / "apps" / app.name / environment / "loadtest.json"


def test_healthy_path_passes_through_the_proxy(staged: AppDir, proxy: RunningProxy) -> None:
    log = proxy.proxy.access_log
    before = len(log.read_text().splitlines()) if log.exists() else 0
    run = staged.cli("loadtest", "-e", "staging", "--rps", "100", "--for", "3s", "--path", "/ok", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["passed"] is True and out["missed"] == []
    assert out["requests"] == 300 and out["errors"] == 0 and out["error_share"] == 0
    assert out["errors_by_kind"] == {"connection": 0, "timeout": 0, "5xx": 0} and out["statuses"] == {"200": 300}
    assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"] < 500
    assert out["url"] == (f"http://127.0.0.1:{proxy.http_port}/ok (Host: {staged.name}.loadtest.example)")
    # the proxy logged them as this app's staging requests
    lines = [json.loads(line) for line in log.read_text().splitlines()[before:] if line.strip()]
    ours = [x for x in lines if x.get("app") == staged.name and x.get("environment") == "staging"]
    assert len(ours) >= 300
    saved = json.loads(result_file(staged).read_text())
    assert set(saved) == FIELDS and saved["passed"] is True and saved["requests"] == 300
    assert saved["thresholds"] == {"p95_ms": 500.0, "max_error_share": 0.01}
    assert saved["rps"] == 100 and saved["duration_s"] == 3


def test_slow_and_failing_paths_miss_the_thresholds(staged: AppDir) -> None:
    slow = staged.cli("loadtest", "-e", "staging", "--rps", "20", "--for", "2s", "--path", "/slow", "--json")
    assert slow.returncode == 1, slow.stderr
    out = json.loads(slow.stdout)
    assert out["passed"] is False and out["p95_ms"] >= 800 and out["errors"] == 0
    assert "missed the thresholds" in slow.stderr and "p95" in slow.stderr and "Traceback" not in slow.stderr
    assert json.loads(result_file(staged).read_text())["passed"] is False
    failing = staged.cli("loadtest", "-e", "staging", "--rps", "50", "--for", "2s", "--path", "/")
    assert failing.returncode == 1
    saved = json.loads(result_file(staged).read_text())
    assert saved["passed"] is False and saved["requests"] == 100
    assert 0.1 <= saved["error_share"] <= 0.3  # one in five answers 500
    assert "5xx" in failing.stdout and "failed" in failing.stderr
    # a looser threshold passes the slow path
    loose = staged.cli("loadtest", "-e", "staging", "--rps", "10", "--for", "1s", "--path", "/slow", "--p95", "3s")
    assert loose.returncode == 0, loose.stderr


def test_production_is_refused_without_yes(tiny_app: AppDir) -> None:
    refused = tiny_app.cli("loadtest", "-e", "production", "--rps", "10", "--for", "1s")
    assert refused.returncode == 10
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert not result_file(tiny_app, "production").exists()
    tiny_app.headway("production").deploy(version="v1")
    run = tiny_app.cli("loadtest", "-e", "production", "--rps", "20", "--for", "1s", "--path", "/ok", "--yes",
                       "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["url"] == f"http://127.0.0.1:{tiny_app.ports['production']}/ok"  # its own port on the proxy
    assert out["requests"] == 20 and out["errors"] == 0


def test_bounds_and_nothing_deployed_are_refused(tiny_app: AppDir) -> None:
    for args, named in ((["--rps", "2001"], "--rps"), (["--for", "11m"], "--for"),
                        (["--connections", "0"], "--connections"), (["--max-errors", "lots"], "--max-errors")):
        run = tiny_app.cli("loadtest", "-e", "staging", *args)
        assert run.returncode == 2, run.stderr
        assert named in run.stderr and "fix:" in run.stderr and "Traceback" not in run.stderr
    run = tiny_app.cli("loadtest", "-e", "staging", "--for", "1s")
    assert run.returncode == 9 and "headway deploy -e staging" in run.stderr
    assert not result_file(tiny_app).exists()
