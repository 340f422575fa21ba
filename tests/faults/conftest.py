"""Fault injection: headway killed at its step boundaries while a strict client keeps sending requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway.engine import labels as L
from headway.engine.docker import DockerEngine
from headway.state.journal import Journal
from headway.state.store import AppState
from tests.conftest import AppDir, RunningProxy, make_tiny_app


@pytest.fixture(scope="module")
def fault_app(tmp_path_factory: pytest.TempPathFactory, proxy: RunningProxy,
              docker_engine: DockerEngine) -> Iterator[AppDir]:
    """One tiny app for a module's kills, deployed once (each case leaves it deployed for the next)."""
    gen = make_tiny_app(tmp_path_factory.mktemp("fault-app"), proxy, docker_engine)
    app = next(gen)
    app.cli("deploy", "-e", "production", "--version", "base0", check=True)
    app.cli("deploy", "-e", "production", "--version", "base", check=True)
    yield app
    for _ in gen:
        pass


def served_release(app: AppDir) -> str:
    return str(httpx.get(app.url(), timeout=5).json()["release"])


def status(app: AppDir) -> dict:  # type: ignore[type-arg]
    result = app.cli("status", "-e", "production", "--json", check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_converged(app: AppDir, engine: DockerEngine) -> None:
    """No leftovers: every container belongs to a good release, no one-off runs, no lock, no open operation."""
    state = AppState(app.state_dir, app.name, "production")
    good = {r.number for r in state.history() if r.action == "deploy" and r.outcome in ("live", "superseded",
                                                                                      "rolled-back")}
    for c in engine.containers(L.selector(app=app.name, environment="production", kind="app")):
        assert int(c.labels[L.DEPLOY]) in good, f"leftover container {c.name}"
    assert not engine.containers(L.selector(app=app.name, kind="oneoff")), "leftover one-off container"
    assert state.lock_holder() is None
    assert Journal(state.dir).open_operation() is None
    lives = [r for r in state.history() if r.outcome == "live" and r.action == "deploy"]
    assert len(lives) == 1, [(r.number, r.outcome) for r in state.history()]


def state_dir_of(app: AppDir) -> Path:
    return app.state_dir / "apps" / app.name / "production"
