"""`headway doctor` against a real deploy: each bad case planted is found, a good setup passes the same checks,
and no secret value ever reaches the output or the saved report."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headway.data.catalog import BackupRecord, Catalog
from headway.engine import labels as L
from tests.conftest import free_port
from tests.receivers import http_receiver

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

DATABASE = "databases:\n  cache: {engine: redis, backup: {before_deploy: %s}}\nenvironments:"
DOCS_404 = '''    def do_GET(self):
        if self.path in ("/docs", "/swagger", "/swagger-ui", "/api-docs", "/openapi.json", "/redoc"):
            self._send(404, {"error": "not here"})
            return
'''


def write_secrets(app: Any, **values: str) -> None:
    path = app.root / ".headway" / "secrets.production"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chmod(path, 0o600)


def doctor(app: Any, *args: str) -> tuple[dict[str, Any], Any]:
    res = app.cli("doctor", "-e", "production", "--json", *args)
    assert "Traceback" not in res.stderr, res.stderr
    return json.loads(res.stdout), res


def finding(report: dict[str, Any], fid: str) -> dict[str, Any]:
    found = [f for f in report["findings"] if f["id"] == fid or f["id"].startswith(fid + ".")]
    assert len(found) == 1, (fid, [f["id"] for f in report["findings"]])
    return found[0]


def test_every_planted_problem_is_found_and_no_secret_value_is_shown(tiny_app, docker_engine) -> None:
    weak, leaked = "weak-but-not-tiny-1", secrets.token_urlsafe(32)
    write_secrets(tiny_app, JWT_SECRET=weak, LEAKED_TOKEN=leaked)
    (tiny_app.root / "leak.txt").write_text(f"token={leaked}\n")
    tiny_app.edit_config("environments:", DATABASE % "never")
    dockerfile = tiny_app.root / "Dockerfile"  # root, and a secret copied into a layer
    dockerfile.write_text(dockerfile.read_text().replace("USER app\n", "COPY leak.txt /app/leak.txt\n"))
    app_py = tiny_app.root / "app.py"  # any origin allowed
    app_py.write_text(app_py.read_text().replace(
        '        self.send_header("Content-Type", "application/json")\n',
        '        self.send_header("Content-Type", "application/json")\n'
        '        self.send_header("Access-Control-Allow-Origin", "*")\n'))
    tiny_app.headway().deploy(version="v1")

    rogue = f"{tiny_app.name}-production-rogue"  # a cache published on every address of the host
    c = docker_engine.create(name=rogue, image="redis:7", command=None, env={}, network=None, restart=False,
                             labels=L.owned("accessory", app=tiny_app.name, environment="production", role="rogue"),
                             ports={"6379/tcp": free_port()})
    docker_engine.start(c)
    stale = (datetime.now(UTC) - timedelta(days=10)).isoformat(timespec="milliseconds")
    Catalog(tiny_app.state_dir, tiny_app.name, "production").record(BackupRecord(
        id="cache-old", app=tiny_app.name, environment="production", database="cache", engine="redis",
        image="redis:7", format="redis rdb", key="k", status="good", started_at=stale, finished_at=stale))

    report, res = doctor(tiny_app, "--min-score", "95")
    assert res.returncode == 1 and "below --min-score 95" in res.stderr
    exposed = finding(report, "security.db-exposed")
    assert exposed["status"] == "failed" and exposed["severity"] == "critical" and rogue in exposed["evidence"]
    root_user = finding(report, "security.non-root")
    assert root_user["status"] == "failed" and "root" in root_user["evidence"]
    baked = finding(report, "security.image-secrets")
    assert baked["status"] == "failed" and baked["severity"] == "critical"
    assert "LEAKED_TOKEN" in baked["evidence"] and "/app/leak.txt" in baked["evidence"]
    fresh = finding(report, "data.fresh.cache")
    assert fresh["status"] == "failed" and "10 days old" in fresh["evidence"]
    strength = finding(report, "security.secret-strength")
    assert strength["status"] == "failed" and "JWT_SECRET: 19 characters" in strength["evidence"]
    assert finding(report, "security.cors")["status"] == "failed"
    docs = finding(report, "security.api-docs")
    assert docs["status"] == "failed" and "/docs" in docs["evidence"]
    assert finding(report, "data.before-deploy.cache")["status"] == "failed"
    assert report["categories"]["security"]["score"] <= 40  # capped by the critical failures

    text = tiny_app.cli("doctor", "-e", "production")
    assert text.returncode == 0 and "no secret value in the images" in text.stdout
    saved = (tiny_app.state_dir / "apps" / tiny_app.name / "production" / "doctor.json").read_text()
    for output in (res.stdout, res.stderr, text.stdout, text.stderr, saved):
        assert leaked not in output and weak not in output


def test_a_good_setup_passes_and_a_new_problem_shows_as_newly_failing(tiny_app, docker_engine) -> None:
    strong = secrets.token_urlsafe(64)
    write_secrets(tiny_app, JWT_SECRET=strong)
    tiny_app.edit_config("environments:", DATABASE % "always")
    app_py = tiny_app.root / "app.py"
    app_py.write_text(app_py.read_text().replace("    def do_GET(self):\n", DOCS_404))
    tiny_app.headway().deploy(version="v1")
    tiny_app.cli("db", "backup", "-e", "production", check=True)
    tiny_app.cli("db", "verify", "-e", "production", check=True)

    report, res = doctor(tiny_app, "--min-score", "0")
    assert res.returncode == 0, res.stderr
    assert report["changes"] is None  # the first audit
    for fid in ("security.db-exposed", "security.non-root", "security.image-secrets", "security.secret-strength",
                "security.cors", "security.api-docs", "security.secrets-file", "data.fresh.cache",
                "data.verified.cache", "data.restore-drill.cache", "data.before-deploy.cache",
                "operations.log-rotation", "releases.replicas", "releases.health"):
        f = finding(report, fid)
        assert f["status"] == "passed", f
    assert "none of 1 secret value(s)" in finding(report, "security.image-secrets")["evidence"]

    c = docker_engine.create(name=f"{tiny_app.name}-production-rogue", image="redis:7", command=None, env={},
                             network=None, restart=False, ports={"6379/tcp": free_port()},
                             labels=L.owned("accessory", app=tiny_app.name, environment="production", role="rogue"))
    docker_engine.start(c)
    again, _ = doctor(tiny_app)
    assert again["changes"]["newly_failed"] == ["security.db-exposed"]
    assert again["changes"]["previous_score"] == report["score"] and again["score"] < report["score"]
    assert strong not in json.dumps(again) + json.dumps(report)


def test_alerts_test_is_recorded_and_read_by_the_audit(tiny_app) -> None:
    with http_receiver() as receiver:
        tiny_app.edit_config("environments:", f"""alerts:
  channels:
    - {{type: webhook, name: hook, url: "{receiver.url('/hook')}"}}
environments:""")
        before, _ = doctor(tiny_app)
        assert finding(before, "operations.alerts")["status"] == "failed"  # channels, never tested
        tiny_app.cli("alerts", "test", "-e", "production", check=True)
        assert [r.json()["kind"] for r in receiver.at("/hook")] == ["test"]
    recorded = json.loads((tiny_app.state_dir / "apps" / tiny_app.name / "production" / "alerts-test.json").read_text())
    assert recorded["delivered"] == ["hook"] and recorded["failed"] == [] and recorded["at"]
    after, _ = doctor(tiny_app)
    alerts = finding(after, "operations.alerts")
    assert alerts["status"] == "passed" and "reached hook" in alerts["evidence"]
    assert after["changes"]["newly_passed"] == ["operations.alerts"]
