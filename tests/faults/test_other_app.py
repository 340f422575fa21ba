"""Two apps on one host: one deploys, rolls back, scales and toggles maintenance while the other is under a strict
client's load, and the one deploying is under load too: 0 failed for both. (A *first* deploy of a new domain or
port changes the proxy's config, which nginx only takes with a reload; that case is measured in
docs/benchmarks.md, not asserted here.)"""

from __future__ import annotations

import pytest
from bench.loadgen import SteadyLoad

from tests.conftest import make_tiny_app

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults]


def test_another_apps_deploy_fails_none_of_this_apps_requests(tiny_app, proxy, docker_engine, tmp_path):
    gen = make_tiny_app(tmp_path / "other", proxy, docker_engine)
    other = next(gen)
    try:
        tiny_app.cli("deploy", "-e", "production", "--version", "steady", check=True)
        other.cli("deploy", "-e", "production", "--version", "o1", check=True)
        with SteadyLoad(tiny_app.url(), rate=150, max_seconds=150, strict=True) as load:
            load.wait_for(50)
            # the app that deploys is under the same strict load while it deploys, rolls back and scales
            with SteadyLoad(other.url(), rate=100, max_seconds=150, strict=True) as own:
                own.wait_for(50)
                for args in (("deploy", "-e", "production", "--version", "o2"), ("rollback", "-e", "production"),
                             ("scale", "-e", "production", "web=3")):
                    other.cli(*args, check=True)
                own.wait_for(own.result.sent + 50)
            for args in (("maintenance", "on", "-e", "production"), ("maintenance", "off", "-e", "production")):
                other.cli(*args, check=True)
            load.wait_for(load.result.sent + 50)
        assert load.result.failed == 0, load.result.summary()
        assert set(load.result.bodies) == {"steady"}
        assert own.result.failed == 0, own.result.summary()
        assert set(own.result.bodies) == {"o1", "o2"}
    finally:
        for _ in gen:
            pass
