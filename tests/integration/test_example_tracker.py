"""The second bundled example end to end: the Incident Tracker, a single-page app in its own nginx image on /
and a FastAPI image on /api (prefix kept), PostgreSQL managed by headway, migrations run from the api image,
deployed with the `headway` command and redeployed under a strict client's load on both paths."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.loadgen import SteadyLoad
from tests.conftest import REPO, AppDir, RunningProxy, _cleanup_app, free_port

from headway.engine import labels as L
from headway.engine.docker import DockerEngine

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


@pytest.fixture
def tracker(tmp_path: Path, proxy: RunningProxy, docker_engine: DockerEngine) -> Iterator[AppDir]:
    name = f"trk{uuid.uuid4().hex[:6]}"
    root = tmp_path / "tracker"
    shutil.copytree(REPO / "examples" / "tracker", root,
                    ignore=shutil.ignore_patterns(".mypy_cache", "__pycache__", ".headway"))
    ports = {"production": free_port(), "staging": free_port()}
    text = (root / "headway.yml").read_text()
    for old, new in (("app: tracker", f"app: {name}"), ("port: 8090", f"port: {ports['production']}"),
                     ("port: 8091", f"port: {ports['staging']}"), ("[tracker.localhost]", f"[{name}.localhost]"),
                     ("[staging.tracker.localhost]", f"[staging.{name}.localhost]")):
        assert old in text, f"{old!r} not in examples/tracker/headway.yml"
        text = text.replace(old, new)
    (root / "headway.yml").write_text(text)
    app = AppDir(root, name, proxy.state_dir, ports)
    yield app
    _cleanup_app(docker_engine, name)
    # the roles' own images are tagged <app>-frontend and <app>-api
    for image in docker_engine.client.images.list(filters={"label": f"{L.APP}={name}"}):
        for tag in image.tags:
            docker_engine.remove_image(tag)
    shutil.rmtree(proxy.state_dir / "apps" / name, ignore_errors=True)
    for env in ports:
        if proxy.proxy.routes.get(name, env) is not None:
            proxy.proxy.drop_route(name, env)


def deploy(app: AppDir, environment: str, version: str) -> None:
    app.cli("deploy", "-e", environment, "--version", version, check=True, timeout=600)


def test_tracker_paths_reach_their_own_images(tracker: AppDir, proxy: RunningProxy) -> None:
    deploy(tracker, "production", "t1")
    url = tracker.url("production")

    # / and the app's own routes: index.html from the frontend image's nginx
    for path in ("/", "/incidents/42", "/new"):
        page = httpx.get(url + path.lstrip("/"), timeout=5)
        assert page.status_code == 200, (path, page.text[:200])
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>Incident Tracker</title>" in page.text
        assert page.headers["x-release"] == "t1"
    script = httpx.get(url + "assets/app.js", timeout=5)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(url + "assets/missing.js", timeout=5).status_code == 404  # not index.html
    assert httpx.get(url + "release.json", timeout=5).json() == {"role": "frontend", "release": "t1"}

    # /api/*: the API, with the prefix it expects (strip_prefix: false), on a migrated database
    assert httpx.get(url + "api/health", timeout=5).json() == {"status": "ok", "database": "ok"}
    assert httpx.get(url + "api/info", timeout=5).json()["release"] == "t1"
    assert httpx.get(url + "api/incidents", timeout=5).json() == []  # production is not seeded
    created = httpx.post(url + "api/incidents", json={"title": "Checkout returns 502", "severity": "sev1"},
                         timeout=5)
    assert created.status_code == 201, created.text
    incident = created.json()
    assert incident["status"] == "open" and incident["resolved_at"] is None
    resolved = httpx.patch(f"{url}api/incidents/{incident['id']}", json={"status": "resolved"}, timeout=5)
    assert resolved.status_code == 200 and resolved.json()["resolved_at"] is not None
    listed = httpx.get(url + "api/incidents", params={"status": "resolved"}, timeout=5).json()
    assert [i["id"] for i in listed] == [incident["id"]]
    bad = httpx.post(url + "api/incidents", json={"title": "", "severity": "sev9"}, timeout=5)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/json"
    assert httpx.get(url + "api/incidents/999999", timeout=5).status_code == 404

    # the same routes by host name on the proxy's shared port
    by_name = httpx.get(f"http://127.0.0.1:{proxy.http_port}/api/info", headers={"Host": f"{tracker.name}.localhost"},
                        timeout=5)
    assert by_name.json()["release"] == "t1"

    # each role runs its own image, the frontend as an unprivileged user with nginx's graceful stop signal
    hw = tracker.headway("production")
    running = hw.deployer.containers(include_stopped=False)
    images = {(c.labels[L.ROLE], c.attrs["Config"]["Image"]) for c in running}
    assert images == {("frontend", f"{tracker.name}-frontend:t1"), ("api", f"{tracker.name}-api:t1")}
    assert len(running) == 4  # production: 2 + 2
    for c in running:
        assert c.attrs["Config"]["User"] not in ("", "root", "0"), (c.name, c.attrs["Config"]["User"])
        if c.labels[L.ROLE] == "frontend":
            assert c.attrs["Config"]["StopSignal"] == "SIGQUIT"

    # staging: its own database, seeded by the api image after the migrations
    deploy(tracker, "staging", "t1")
    seeded = httpx.get(tracker.url("staging", "/api/incidents"), timeout=5).json()
    assert len(seeded) == 3 and incident["title"] not in {i["title"] for i in seeded}
    assert [i["id"] for i in httpx.get(url + "api/incidents", timeout=5).json()] == [incident["id"]]


def test_tracker_redeploy_under_load_fails_no_request_on_either_path(tracker: AppDir) -> None:
    deploy(tracker, "production", "r1")
    url = tracker.url("production")
    kept = httpx.post(url + "api/incidents", json={"title": "Survives the redeploy"}, timeout=5).json()
    # the SPA and the incident list, and (to see the switch happen under load) the release each role answers with
    loads = [SteadyLoad(url, rate=100, max_seconds=240), SteadyLoad(url + "api/incidents", rate=100, max_seconds=240),
             SteadyLoad(url + "release.json", rate=40, max_seconds=240),
             SteadyLoad(url + "api/info", rate=40, max_seconds=240)]
    with contextlib.ExitStack() as stack:
        for load in loads:
            stack.enter_context(load)
        for load in loads:
            load.wait_for(40)
        deploy(tracker, "production", "r2")
        for load in loads:
            load.wait_for(load.result.sent + 40)
    for load in loads:
        assert load.strict
        assert load.result.failed == 0, (load.path, load.result.summary())
        assert load.result.ok >= 80, (load.path, load.result.summary())
    for load in loads[2:]:
        assert load.result.bodies["r1"] > 0 and load.result.bodies["r2"] > 0, (load.path, load.result.summary())
    assert httpx.get(url + "release.json", timeout=5).json()["release"] == "r2"
    assert httpx.get(url + "api/info", timeout=5).json()["release"] == "r2"
    # the data lives in the database, not in a release
    assert httpx.get(f"{url}api/incidents/{kept['id']}", timeout=5).json()["title"] == "Survives the redeploy"
