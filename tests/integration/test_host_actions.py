"""Actions taken on the host by itself (the dashboard, the autoscaler) from the config kept there: no checkout, no
secrets file, against the real Docker Engine and proxy."""

from __future__ import annotations

import httpx
import pytest

from headway.config.kept import kept_dir, kept_environments
from headway.engine import labels as L
from headway.errors import HeadwayError
from headway.service import Headway

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

TOKEN = "tok-5f1c0d9e8a7b6c5d4e3f2a1b"


def served(app) -> str:
    return httpx.get(app.url(), timeout=5).json()["release"]


def test_the_host_scales_and_rolls_back_without_the_checkout(tiny_app):
    secrets = tiny_app.root / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text(f"API_TOKEN={TOKEN}\n")
    secrets.chmod(0o600)
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    hw.deploy(version="v2")
    kept = kept_dir(tiny_app.state_dir, tiny_app.name, "production")
    assert (tiny_app.name, "production") in kept_environments(tiny_app.state_dir)
    assert all(TOKEN not in p.read_text() for p in kept.rglob("*") if p.is_file())

    on_host = Headway.on_host(tiny_app.name, "production", state_dir=tiny_app.state_dir)
    assert on_host.target.secrets_withheld
    on_host.scale({"web": 3})
    web = on_host.deployer.containers(role="web", include_stopped=False)
    assert len(web) == 3
    # the new replica has the env and labels of the others: its secret came from a running replica
    assert {on_host.engine.container_env(c)["API_TOKEN"] for c in web} == {TOKEN}
    assert len({c.labels[L.CONFIG_HASH] for c in web}) == 1

    on_host.rollback()
    assert served(tiny_app) == "v1"
    assert tiny_app.headway().state.history()[-1].action == "rollback"

    # a role with no running replica to copy from: refused, the fix named, nothing changed
    on_host = Headway.on_host(tiny_app.name, "production", state_dir=tiny_app.state_dir)
    on_host.scale({"worker": 0})
    with pytest.raises(HeadwayError) as info:
        on_host.scale({"worker": 1})
    assert "where the deploys of production come from" in (info.value.fix or "")
    assert on_host.deployer.containers(role="worker", include_stopped=False) == []
    assert served(tiny_app) == "v1"


def test_an_environment_never_deployed_here_has_no_kept_config(tiny_app):
    with pytest.raises(HeadwayError) as info:
        Headway.on_host(tiny_app.name, "staging", state_dir=tiny_app.state_dir)
    assert "deploy it once" in (info.value.fix or "")
