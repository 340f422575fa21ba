"""Canary analysis on access-log lines: the verdicts, the minimum request count, the config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.config.model import CanaryAnalysis
from headway.errors import ConfigError
from headway.observe.access_log import AccessLogReader, ReleaseStats
from headway.release.canary import judge


def stats(ok: int, errors: int, time_s: float = 0.01) -> ReleaseStats:
    s = ReleaseStats()
    for _ in range(ok):
        s.add(200, time_s)
    for _ in range(errors):
        s.add(502, time_s)
    return s


def test_too_few_requests_is_no_verdict() -> None:
    assert judge(stats(5, 5), CanaryAnalysis(min_requests=20)) is None


def test_error_share_breaches() -> None:
    verdict = judge(stats(95, 5), CanaryAnalysis(min_requests=20, success_rate=99))
    assert verdict is not None and not verdict.ok and "95.0% < 99%" in verdict.reason


def test_latency_breaches() -> None:
    verdict = judge(stats(100, 0, time_s=0.8), CanaryAnalysis(min_requests=20, p95=0.5))
    assert verdict is not None and not verdict.ok and "p95 latency 800 ms > 500 ms" in verdict.reason


def test_healthy_passes() -> None:
    verdict = judge(stats(100, 0), CanaryAnalysis(min_requests=20))
    assert verdict is not None and verdict.ok


def test_client_errors_do_not_count_against_the_canary() -> None:
    s = stats(50, 0)
    for _ in range(50):
        s.add(404, 0.01)
    assert s.success_rate == 100.0


def test_reader_follows_the_log_per_release(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    reader = AccessLogReader(log, "shop", "production")

    def line(release: str, status: int, app: str = "shop") -> str:
        return json.dumps({"app": app, "environment": "production", "release": release, "status": status,
                           "request_time": 0.002}) + "\n"

    with open(log, "a") as fh:
        fh.write(line("v1", 200) + line("v2", 500) + line("v2", 200, app="other") + '{"app":"shop","envir')
    first = reader.read()
    assert first["v1"].requests == 1 and first["v2"].server_errors == 1 and "other" not in first
    with open(log, "a") as fh:
        fh.write('onment":"production","release":"v2","status":200,"request_time":0.001}\n')
    assert reader.read()["v2"].requests == 1  # the half-written line is read once it is complete


@pytest.mark.parametrize(("snippet", "expected"), [
    ("steps: [{weight: 120, duration: 10s}]", "less than or equal to 100"),
    ("steps: [{weight: 50}, {weight: 10}]", "must not decrease"),
    ("steps: []", "at least one step"),
])
def test_bad_canary_config(snippet: str, expected: str) -> None:
    text = ("app: shop\nroles: {web: {port: 80}}\ndeploy:\n  strategy: canary\n  canary:\n    " + snippet +
            "\nenvironments: {production: {port: 8080}}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert expected in str(info.value)


def test_canary_needs_a_web_role() -> None:
    text = ("app: shop\nroles: {worker: {command: work}}\ndeploy: {strategy: canary}\n"
            "environments: {production: {}}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "a canary needs a role with `port`" in str(info.value)
