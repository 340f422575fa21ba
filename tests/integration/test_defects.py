"""Defects a user met, each pinned by a test: crash loops in the gate, clashes before the build, a failed release
command shown as failed, one live row in `releases`, a bad --since, an unknown role in `scale`."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


def test_a_container_that_exits_fails_the_gate_at_once_with_its_exit_code(tiny_app):
    tiny_app.set_behavior(worker_crashes=True)
    t0 = time.monotonic()
    result = tiny_app.cli("deploy", "-e", "production", "--version", "crashy")
    took = time.monotonic() - t0
    assert result.returncode == 6, result.stderr
    assert "exited with code 3" in result.stderr, result.stderr
    assert "no IP address" not in result.stderr
    assert took < 60, f"the gate waited {took:.0f}s for a container that had exited"


def test_every_clash_is_reported_before_the_build(tiny_app, proxy, docker_engine, tmp_path):
    from tests.conftest import make_tiny_app

    def with_domain(app, domain: str) -> None:
        app.edit_config(f"  production:\n    port: {app.ports['production']}",
                        f"  production:\n    domains: [{domain}]\n    port: {app.ports['production']}")

    with_domain(tiny_app, "clash.test")
    tiny_app.cli("deploy", "-e", "production", "--version", "v1", check=True)
    gen = make_tiny_app(tmp_path / "other", proxy, docker_engine)
    other = next(gen)
    try:
        # another app asks for the same domain and the same port: both refused at once, before anything is built
        with_domain(other, "clash.test")
        other.edit_config(f"port: {other.ports['production']}", f"port: {tiny_app.ports['production']}")
        result = other.cli("deploy", "-e", "production", "--version", "o1")
        assert result.returncode == 7, result.stderr
        assert f"domain clash.test is already served by {tiny_app.name}/production" in result.stderr
        assert f"port {tiny_app.ports['production']} is already published by {tiny_app.name}/production" \
            in result.stderr
        assert "nothing was built" in result.stderr
        assert "build image" not in result.stderr  # refused before the build started
        assert docker_engine.containers([f"dev.headway.app={other.name}"]) == []
    finally:
        for _ in gen:
            pass


def test_a_failed_release_command_shows_as_failed(tiny_app):
    tiny_app.set_behavior(release_exit=3)
    result = tiny_app.cli("deploy", "-e", "production", "--version", "bad")
    assert result.returncode == 5
    line = next(ln for ln in result.stderr.splitlines() if "release command" in ln and ("✓" in ln or "✗" in ln))
    assert "✗" in line, result.stderr


def test_releases_has_one_live_row_after_rollback_and_scale(tiny_app):
    for v in ("v1", "v2"):
        tiny_app.cli("deploy", "-e", "production", "--version", v, check=True)
    tiny_app.cli("rollback", "-e", "production", check=True)
    tiny_app.cli("scale", "-e", "production", "web=1", check=True)
    rows = json.loads(tiny_app.cli("releases", "-e", "production", "--json", check=True).stdout)
    live = [r for r in rows if r["outcome"] == "live"]
    assert [(r["action"], r["version"]) for r in live] == [("deploy", "v1")], rows
    assert {r["outcome"] for r in rows if r["action"] != "deploy"} == {"done"}


def test_bad_since_is_a_clear_error(tiny_app):
    tiny_app.cli("deploy", "-e", "production", "--version", "v1", check=True)
    result = tiny_app.cli("logs", "-e", "production", "--since", "yesterdayish")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "--since" in result.stderr


def test_unknown_role_in_scale_exits_2(tiny_app):
    result = tiny_app.cli("scale", "-e", "production", "nosuchrole=2")
    assert result.returncode == 2 and "nosuchrole" in result.stderr
