"""`headway doctor`: the config- and file-level checks, the score and the report history (no Docker)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headway.audit import data as data_checks
from headway.audit import security
from headway.audit.checks import AuditContext, Finding, category_score, run_checks, scores
from headway.audit.history import changes, record_alerts_test
from headway.audit.operations import DockerIgnore, dockerignore_findings
from headway.audit.report import ALL_CHECKS, audit
from headway.config.resolve import load_target
from headway.data.catalog import BackupRecord, Catalog

BASE = """\
app: shop
roles:
  web:
    command: python app.py
    port: 8000
    replicas: {replicas}
    health: {{path: /health}}
{resources}
  worker:
    command: python worker.py
    health: {{command: python worker.py --check}}
{resources}
{extra}
environments:
  production: {{port: 18080}}
{staging}
"""
STRONG = "kJ3n9Qx7Lp2Vb8Zr5Tg1Wm4Yc6Hd0Fs-_aEuIoPqRsTuVwXyZ0123456789abcdefghijKLMNOP"  # 75 chars


def make_app(tmp_path: Path, *, replicas: int = 2, staging: bool = True, resources: bool = True, extra: str = "",
             secrets: dict[str, str] | None = None, dockerignore: str | None = ".env*\n.headway/\n.git\n"
             ) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    res = "    resources: {memory: 256m}" if resources else ""
    (root / "headway.yml").write_text(BASE.format(replicas=replicas, resources=res, extra=extra,
                                                  staging="  staging: {port: 18081}" if staging else ""))
    (root / "Dockerfile").write_text("FROM python:3.11-slim\nUSER 10001\n")
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)
    (root / ".headway").mkdir()
    values = {"JWT_SECRET": STRONG} if secrets is None else secrets
    for env in ("production", "staging"):
        path = root / ".headway" / f"secrets.{env}"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        os.chmod(path, 0o600)
    return root


def context(root: Path, tmp_path: Path, env: str = "production", **kw: object) -> AuditContext:
    return AuditContext(load_target(env, root / "headway.yml"), tmp_path / "state", None,
                        engine_error="not connected in this test", **kw)  # type: ignore[arg-type]


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


def run(ctx: AuditContext) -> dict[str, Finding]:
    return by_id(run_checks(ALL_CHECKS, ctx))


# -- releases -------------------------------------------------------------------------------------------------
def test_one_web_replica_and_no_staging_fail_with_the_fix(tmp_path: Path) -> None:
    found = run(context(make_app(tmp_path, replicas=1, staging=False), tmp_path))
    assert found["releases.replicas"].status == "failed"
    assert "web=1" in found["releases.replicas"].evidence
    assert "headway scale -e production web=2" in (found["releases.replicas"].fix or "")
    assert found["releases.staging"].status == "failed"
    assert "headway deploy -e staging" in (found["releases.staging"].fix or "")


def test_staging_deployed_first_is_read_from_the_release_history(tmp_path: Path) -> None:
    from headway.state.store import AppState, Current, ReleaseRecord

    root = make_app(tmp_path)
    state_root = tmp_path / "state"
    staging, prod = AppState(state_root, "shop", "staging"), AppState(state_root, "shop", "production")
    prod.record(ReleaseRecord(number=1, version="abc123", image="shop:abc123", started_at="2026-01-02T10:00:00+00:00"))
    prod.set_current(Current(live=1))
    ctx = context(root, tmp_path)
    assert run(ctx)["releases.staging"].status == "failed"  # never on staging
    staging.record(ReleaseRecord(number=1, version="abc123", image="shop:abc123", outcome="superseded",
                                 started_at="2026-01-01T10:00:00+00:00"))
    found = run(context(root, tmp_path))["releases.staging"]
    assert found.status == "passed", found
    assert "abc123" in found.evidence


def test_health_checks_reported_as_what_headway_has(tmp_path: Path) -> None:
    found = run(context(make_app(tmp_path), tmp_path))["releases.health"]
    assert found.status == "passed"
    assert "web: GET /health" in found.evidence and "readiness" in found.evidence


def test_rehearsal_file_is_read_and_absent_means_unknown(tmp_path: Path) -> None:
    root = make_app(tmp_path)
    ctx = context(root, tmp_path)
    assert run(ctx)["releases.rehearsal"].status == "unknown"
    assert "headway rehearse -e production" in (run(ctx)["releases.rehearsal"].fix or "")
    ctx.state.dir.mkdir(parents=True)
    (ctx.state.dir / "rehearsal.json").write_text(json.dumps({"finished_at": "2026-01-01T00:00:00Z", "ok": True,
                                                              "release_twice_ok": False}))
    assert run(context(root, tmp_path))["releases.rehearsal"].status == "failed"
    (ctx.state.dir / "rehearsal.json").write_text(json.dumps({"finished_at": "2026-01-01T00:00:00Z", "ok": True,
                                                              "release_twice_ok": True}))
    assert run(context(root, tmp_path))["releases.rehearsal"].status == "passed"


# -- data -----------------------------------------------------------------------------------------------------
DB = """\
databases:
  db:
    engine: postgres
    backup: {{schedule: "0 3 * * *"{more}}}
"""


def test_backup_policy_checks_name_each_gap(tmp_path: Path) -> None:
    found = run(context(make_app(tmp_path, extra=DB.format(more=", before_deploy: never")), tmp_path))
    assert found["data.offsite.db"].status == "failed"
    assert found["data.encrypted.db"].status == "failed"
    assert found["data.before-deploy.db"].status == "failed"
    assert found["data.pitr.db"].status == "failed" and "no RPO" in found["data.pitr.db"].evidence
    assert found["data.fresh.db"].status == "failed" and "no good backup" in found["data.fresh.db"].evidence
    assert found["data.verified.db"].status == "failed"
    assert found["data.restore-drill.db"].status == "failed"
    assert "headway db verify -e production db" in (found["data.restore-drill.db"].fix or "")
    assert found["data.scheduled.db"].severity == "critical"


def _backup(root: Path, days_old: float, **kw: object) -> BackupRecord:
    when = (datetime.now(UTC) - timedelta(days=days_old)).isoformat(timespec="milliseconds")
    return BackupRecord(id=f"db-{days_old}", app="shop", environment="production", database="db",
                        engine="postgres", image="postgres:15", format="pg_dump custom format", key="k",
                        status="good", started_at=when, finished_at=when, **kw)  # type: ignore[arg-type]


def test_a_stale_backup_fails_and_a_fresh_verified_one_passes(tmp_path: Path) -> None:
    root = make_app(tmp_path, extra=DB.format(more=""))
    catalog = Catalog(tmp_path / "state", "shop", "production")
    catalog.record(_backup(root, 9))
    found = run(context(root, tmp_path))
    assert found["data.fresh.db"].status == "failed"
    assert "9.0 days old" in found["data.fresh.db"].evidence
    recent = datetime.now(UTC).isoformat(timespec="milliseconds")
    catalog.record(_backup(root, 0.2, verified_at=recent, verify_status="passed"))
    found = run(context(root, tmp_path))
    assert found["data.fresh.db"].status == "passed", found["data.fresh.db"]
    assert found["data.verified.db"].status == "passed"
    assert found["data.restore-drill.db"].status == "passed"


def test_a_checksum_only_verification_is_not_a_restore_drill(tmp_path: Path) -> None:
    root = make_app(tmp_path, extra=DB.format(more=""))
    recent = datetime.now(UTC).isoformat(timespec="milliseconds")
    Catalog(tmp_path / "state", "shop", "production").record(
        _backup(root, 0.1, verified_at=recent, verify_status="checksum-only"))
    found = run(context(root, tmp_path))
    assert found["data.verified.db"].status == "passed"
    assert found["data.restore-drill.db"].status == "failed"


def test_schedule_interval() -> None:
    assert data_checks.schedule_interval_days("0 3 * * *") == pytest.approx(1.0)
    assert data_checks.schedule_interval_days("0 3 * * 0") == pytest.approx(7.0)


# -- secrets --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "verdict"), [
    ("JWT_SECRET", "secret", "guessable"),
    ("JWT_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "guessable"),
    ("JWT_SECRET", "9f86d081884c7d659a2feaa0c55ad015", "weak"),  # 32 hex: enough for a key, not for JWT
    ("API_KEY", "9f86d081884c7d659a2feaa0c55ad015", "ok"),
    ("JWT_SECRET", STRONG, "ok"),
    ("POSTGRES_PASSWORD", "hunter2hunter2", "guessable"),
    ("POSTGRES_PASSWORD", "Tr0ub4dor&3xyz", "weak"),
])
def test_secret_strength(name: str, value: str, verdict: str) -> None:
    got, why = security.strength(name, value)
    assert got == verdict
    if why:
        assert value not in why and name in why


def test_a_weak_secret_is_reported_by_name_and_length_never_value(tmp_path: Path) -> None:
    root = make_app(tmp_path, secrets={"JWT_SECRET": "tooshort-but-not-tiny", "API_TOKEN": STRONG})
    found = run(context(root, tmp_path))["security.secret-strength"]
    assert found.status == "failed"
    assert "JWT_SECRET: 21 characters" in found.evidence
    assert "tooshort" not in found.evidence and STRONG not in found.evidence


def test_a_secrets_file_committed_to_git_is_critical(tmp_path: Path) -> None:
    root = make_app(tmp_path)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    ctx = context(root, tmp_path)
    found = run(ctx)["security.secrets-file"]
    assert found.status == "failed" and found.severity == "warning"  # not ignored
    (root / ".gitignore").write_text(".headway/\n")
    assert run(context(root, tmp_path))["security.secrets-file"].status == "passed"
    subprocess.run(["git", "-C", str(root), "add", "-f", ".headway/secrets.production"], check=True)
    found = run(context(root, tmp_path))["security.secrets-file"]
    assert found.status == "failed" and found.severity == "critical"
    assert "committed to git" in found.evidence


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_secret_values_are_found_in_saved_layers_plain_or_compressed() -> None:
    secret = b"s3cr3t-value-0123456789"
    plain = _layer({"app/config.txt": b"x" * 5000 + secret + b"y" * 10, "app/ok.txt": b"nothing"})
    packed = gzip.compress(_layer({"etc/token": secret}))
    config = json.dumps({"history": [{"created_by": "RUN echo hello"}]}).encode()
    saved = _layer({f"blobs/sha256/{'a' * 64}": plain, f"blobs/sha256/{'b' * 64}": packed,
                    f"blobs/sha256/{'c' * 64}": config, "manifest.json": b"[]"})
    chunks = [saved[i:i + 777] for i in range(0, len(saved), 777)]  # cut anywhere, as a stream arrives
    hits = security.scan_saved_image(chunks, {"API_TOKEN": secret, "OTHER": b"not-there-at-all"})
    assert ("API_TOKEN", "layer sha256:aaaaaaaaaaaa: /app/config.txt") in hits
    assert ("API_TOKEN", "layer sha256:bbbbbbbbbbbb: /etc/token") in hits
    assert all(name == "API_TOKEN" for name, _ in hits) and len(hits) == 2


def test_listening_sockets_are_read_from_proc(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(header + "   0: 0100007F:1F90 00000000:0000 0A 0 0 0 0 0\n"
                                           "   1: 00000000:0016 00000000:0000 0A 0 0 0 0 0\n"
                                           "   2: 0100007F:C350 0100007F:1F90 01 0 0 0 0 0\n")
    (tmp_path / "tcp6").write_text(header + "   0: 00000000000000000000000000000000:1538 "
                                            "00000000000000000000000000000000:0000 0A 0 0\n")
    found = security.listening_ports(tmp_path)
    assert found == [("0.0.0.0", 22), ("127.0.0.1", 8080), ("::", 5432)]
    assert security.is_loopback("127.0.0.1") and not security.is_loopback("::")


# -- .dockerignore --------------------------------------------------------------------------------------------
def test_dockerignore_matching_follows_dockers_rules() -> None:
    rules = DockerIgnore("# comment\n.env*\n**/*.pyc\nnode_modules\n/build/\n!build/keep\n")
    assert rules.ignored(".env") and rules.ignored(".env.production")
    assert rules.ignored("app/x.pyc") and rules.ignored("x.pyc")
    assert rules.ignored("node_modules/a/b.js")
    assert rules.ignored("build/out.o") and not rules.ignored("build/keep")
    assert not rules.ignored("app/main.py") and not rules.ignored("sub/.env")


def test_dockerignore_that_drops_migrations_or_keeps_env_files_fails(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "app" / "alembic").mkdir(parents=True)
    (tmp_path / ".dockerignore").write_text("**/alembic\n")
    state, leaks, lost = dockerignore_findings(tmp_path)
    assert state == "present" and ".env*" in leaks and ".headway/" in leaks
    assert lost == ["app/alembic"]
    (tmp_path / "x").mkdir()
    root = make_app(tmp_path / "x", dockerignore="*\n!app.py\n")
    (root / "prisma").mkdir()
    found = run(context(root, tmp_path))["operations.dockerignore..dockerignore"]
    assert found.status == "failed" and found.severity == "critical"
    assert "prisma" in found.evidence


def test_a_good_dockerignore_passes(tmp_path: Path) -> None:
    root = make_app(tmp_path)
    (root / "migrations").mkdir()
    found = run(context(root, tmp_path))["operations.dockerignore..dockerignore"]
    assert found.status == "passed", found
    assert "migrations" in found.evidence


# -- operations -----------------------------------------------------------------------------------------------
def test_memory_limits_ci_and_loadtest(tmp_path: Path) -> None:
    root = make_app(tmp_path, resources=False)
    ctx = context(root, tmp_path)
    found = run(ctx)
    assert found["operations.resources"].status == "failed" and "web, worker" in found["operations.resources"].evidence
    assert found["operations.ci"].status == "failed"
    assert found["operations.loadtest"].status == "unknown"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "deploy.yml").write_text("jobs: {d: {steps: [{run: headway deploy}]}}\n")
    ctx.state.dir.mkdir(parents=True)
    (ctx.state.dir / "loadtest.json").write_text(json.dumps({
        "finished_at": "2026-01-01T00:00:00Z", "rps": 100, "duration_s": 30, "requests": 3000, "errors": 90,
        "error_share": 0.03, "p50_ms": 5, "p95_ms": 40, "p99_ms": 90, "passed": False,
        "thresholds": {"p95_ms": 500, "max_error_share": 0.01}}))
    found = run(context(root, tmp_path))
    assert found["operations.ci"].status == "passed"
    assert found["operations.loadtest"].status == "failed" and "3.00%" in found["operations.loadtest"].evidence


def test_alerts_test_record_is_read(tmp_path: Path) -> None:
    from dataclasses import dataclass

    @dataclass
    class D:
        channel: str
        ok: bool

    extra = 'alerts: {channels: [{type: webhook, name: ops, url: "http://127.0.0.1:9/x"}]}\n'
    root = make_app(tmp_path, extra=extra)
    ctx = context(root, tmp_path)
    assert run(ctx)["operations.alerts"].status == "failed"  # never tested
    record_alerts_test(ctx.state.dir, [D("ops", False)])
    assert run(context(root, tmp_path))["operations.alerts"].status == "failed"
    record_alerts_test(ctx.state.dir, [D("ops", True)])
    found = run(context(root, tmp_path))["operations.alerts"]
    assert found.status == "passed" and "reached ops" in found.evidence
    assert oct((ctx.state.dir / "alerts-test.json").stat().st_mode & 0o777) == "0o600"


def test_without_an_engine_the_engine_checks_say_why(tmp_path: Path) -> None:
    found = run(context(make_app(tmp_path), tmp_path))
    for fid in ("security.db-exposed", "security.non-root", "operations.monitoring"):
        assert found[fid].status == "unknown"
        assert found[fid].evidence.startswith("could not check: the Docker engine is not reachable")


# -- score and history ----------------------------------------------------------------------------------------
def F(fid: str, severity: str, status: str, category: str = "security") -> Finding:  # noqa: N802
    return Finding(fid, category, severity, fid, status, "e")  # type: ignore[arg-type]


def test_scoring_weights_unknowns_half_and_caps_on_a_critical_failure() -> None:
    assert category_score([F("a", "warning", "passed"), F("b", "warning", "failed")]) == 50
    assert category_score([F("a", "warning", "passed"), F("b", "warning", "unknown")]) == 75
    many = [F(str(i), "warning", "passed") for i in range(20)] + [F("c", "critical", "failed")]
    assert category_score(many) == 40  # 92 without the cap
    assert category_score([]) is None
    total, per = scores([F("a", "info", "passed", "releases"), F("b", "info", "failed", "data")])
    assert per == {"releases": 100, "data": 0, "security": None, "operations": None} and total == 50


def test_changes_since_the_last_run(tmp_path: Path) -> None:
    root = make_app(tmp_path, resources=False)
    first = audit(context(root, tmp_path))
    assert first["changes"] is None
    assert (tmp_path / "state" / "apps" / "shop" / "production" / "doctor.json").exists()
    (root / "headway.yml").write_text((root / "headway.yml").read_text().replace(
        "    health: {path: /health}\n", "    health: {path: /health}\n    resources: {memory: 256m}\n").replace(
        "    health: {command: python worker.py --check}\n",
        "    health: {command: python worker.py --check}\n    resources: {memory: 256m}\n").replace(
        "replicas: 2", "replicas: 1"))
    second = audit(context(root, tmp_path))
    assert second["changes"]["newly_passed"] == ["operations.resources"]
    assert second["changes"]["newly_failed"] == ["releases.replicas"]
    assert second["changes"]["previous_score"] == first["score"]
    assert changes(None, []) is None


def test_cli_json_shape_min_score_and_no_secret_in_output(tmp_path: Path) -> None:
    root = make_app(tmp_path, secrets={"JWT_SECRET": "weak-jwt-value-x"})
    env = {**os.environ, "HEADWAY_STATE_DIR": str(tmp_path / "state"), "DOCKER_HOST": "unix:///nonexistent.sock"}
    cmd = [sys.executable, "-m", "headway", "doctor", "-e", "production"]
    res = subprocess.run([*cmd, "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert set(report) >= {"app", "environment", "score", "categories", "findings", "changes"}
    assert set(report["categories"]) == {"releases", "data", "security", "operations"}
    assert {"id", "category", "severity", "status", "evidence", "fix", "title"} <= set(report["findings"][0])
    assert "weak-jwt-value-x" not in res.stdout + res.stderr
    low = subprocess.run([*cmd, "--min-score", "100"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert low.returncode == 1 and "below --min-score 100" in low.stderr
    assert "weak-jwt-value-x" not in low.stdout + low.stderr
    assert "since the last audit" in low.stdout and "Traceback" not in low.stderr
    ok = subprocess.run([*cmd, "--min-score", "0"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0
    bad = subprocess.run([sys.executable, "-m", "headway", "doctor", "-e", "nope"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no environment 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_on_a_server_the_repository_checks_say_the_repository_is_not_there(tmp_path: Path) -> None:
    found = run(context(make_app(tmp_path, dockerignore=None), tmp_path, from_bundle=True))
    for fid in ("operations.dockerignore", "operations.ci", "operations.hadolint", "security.secrets-file"):
        assert found[fid].status == "unknown", found[fid]
        assert "not sent to the server" in found[fid].evidence
