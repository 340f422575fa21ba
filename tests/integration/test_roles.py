"""Several HTTP roles of one app, each with its own image and path, switched together by one release."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from bench.loadgen import SteadyLoad

from headway.engine import labels as L

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

TWO_ROLES = """roles:
  web:
    command: python app.py serve
    port: 8000
    replicas: 2
    health:
      path: /health
      interval: 200ms
      attempts: 50
  api:
    image: {dockerfile: Dockerfile.api}
    command: python app.py serve
    port: 8000
    path: /api
    strip_prefix: true
    replicas: 1
    health:
      path: /health
      interval: 200ms
      attempts: 50
"""


@pytest.fixture
def roles_app(tiny_app):
    tiny_app.edit_config("""roles:
  web:
    command: python app.py serve
    port: 8000
    replicas: 2
    health:
      path: /health
      interval: 200ms
      attempts: 50
""", TWO_ROLES)
    return tiny_app


def get(app, path):
    return httpx.get(app.url(path=path), timeout=5)


def test_paths_go_to_their_roles_with_their_own_images(roles_app):
    hw = roles_app.headway()
    outcome = hw.deploy(version="v1")
    root, api, bare = get(roles_app, "/anything"), get(roles_app, "/api/items?x=1"), get(roles_app, "/api")
    assert root.json()["flavor"] == "" and root.json()["path"] == "/anything"
    assert api.json()["flavor"] == "api" and api.json()["path"] == "/items?x=1"  # the prefix is stripped
    assert bare.json()["flavor"] == "api" and bare.json()["path"] == "/"
    assert get(roles_app, "/apix").json()["flavor"] == ""  # a path, not a string prefix
    # each role runs its own image, recorded per role
    assert outcome.record.images["api"] == f"{roles_app.name}-api:v1"
    assert outcome.record.images["web"] == outcome.record.image == f"{roles_app.name}:v1"
    running = hw.deployer.containers(include_stopped=False)
    images = {c.labels[L.ROLE]: c.attrs["Config"]["Image"] for c in running}
    assert images == {"web": f"{roles_app.name}:v1", "api": f"{roles_app.name}-api:v1",
                      "worker": f"{roles_app.name}:v1"}
    # the access log names the role of each request
    log = hw.proxy.access_log.read_text()
    assert '"role":"api"' in log and '"role":"web"' in log


def test_one_release_switches_every_path_without_a_failed_request(roles_app):
    hw = roles_app.headway()
    hw.deploy(version="v1")
    with SteadyLoad(roles_app.url(path="/"), rate=80, max_seconds=120) as web_load, \
            SteadyLoad(roles_app.url(path="/api/x"), rate=80, max_seconds=120) as api_load:
        web_load.wait_for(60)
        api_load.wait_for(60)
        hw.deploy(version="v2")
        web_load.wait_for(web_load.result.sent + 60)
        api_load.wait_for(api_load.result.sent + 60)
    for load in (web_load, api_load):
        assert load.result.failed == 0, load.result.summary()
        assert load.result.bodies["v1"] > 0 and load.result.bodies["v2"] > 0
    assert get(roles_app, "/").json()["release"] == get(roles_app, "/api/").json()["release"] == "v2"
    # a rollback brings both roles back together
    hw.rollback()
    assert get(roles_app, "/").json()["release"] == get(roles_app, "/api/").json()["release"] == "v1"
    # scaling one HTTP role keeps the other routed
    hw.scale({"api": 2})
    flavors = {get(roles_app, "/api/").json()["hostname"] for _ in range(8)}
    assert len(flavors) == 2
    assert get(roles_app, "/").json()["flavor"] == ""


def test_maintenance_covers_every_path_and_spares_each_health_check(roles_app):
    hw = roles_app.headway()
    hw.deploy(version="v1")
    hw.maintenance(True, message="back soon")
    try:
        assert get(roles_app, "/").status_code == 503
        assert get(roles_app, "/api/x").status_code == 503
        assert get(roles_app, "/health").status_code == 200
        health = get(roles_app, "/api/health")  # the api's own check, under its public path
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        hw.maintenance(False)
    assert get(roles_app, "/api/x").json()["flavor"] == "api"


def test_two_roles_on_one_path_is_a_clear_error_that_changes_nothing(roles_app):
    roles_app.edit_config("    path: /api\n    strip_prefix: true\n", "    path: /\n")
    result = roles_app.cli("deploy", "-e", "production")
    assert result.returncode == 2
    assert "both serve path /" in result.stderr and "Traceback" not in result.stderr


def test_a_sticky_canary_keeps_a_client_on_one_release_for_every_path(roles_app):
    roles_app.edit_config("  drain_timeout: 5s\n", "  drain_timeout: 5s\n  strategy: canary\n  canary:\n"
                          "    sticky: cookie\n    steps: [{weight: 50, duration: 60s}]\n"
                          "    analysis: {interval: 1s, min_requests: 5, max_wait: 60s}\n")
    hw = roles_app.headway()
    hw.deploy(version="v1")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            roles_app.headway().deploy(version="v2")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    deploying = threading.Thread(target=run)
    deploying.start()
    try:
        deadline = time.monotonic() + 90
        while hw.proxy.routes.get(roles_app.name, "production").canary is None:
            assert time.monotonic() < deadline and deploying.is_alive(), errors
            time.sleep(0.1)  # the deploy builds and health-checks before the proxy splits traffic
        seen = set()
        for _ in range(12):  # new clients: each gets a cookie, then every path answers from its release
            first = get(roles_app, "/")
            cookie = first.headers["set-cookie"].split(";")[0]
            release = first.json()["release"]
            seen.add(release)
            for path in ("/api/a", "/", "/api/b"):
                assert httpx.get(roles_app.url(path=path), headers={"Cookie": cookie},
                                 timeout=5).json()["release"] == release
        assert seen == {"v1", "v2"}  # 12 clients at 50%: both sides (fails with probability 2 * 0.5**12)
        assert roles_app.cli("promote", "-e", "production").returncode == 0
    finally:
        deploying.join(120)
    assert not errors
    assert get(roles_app, "/").json()["release"] == get(roles_app, "/api/").json()["release"] == "v2"
