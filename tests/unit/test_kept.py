"""The config kept on the host: written whole or not at all, without secret values, read back with them withheld."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.config.kept import keep, kept_dir, kept_environments, load_kept
from headway.config.resolve import SecretWithheld, load_target

CONFIG = """\
app: kept
roles:
  web: {command: python app.py, port: 8000, replicas: 2, health: {path: /health}}
env:
  DATABASE_URL: "postgres://app:${DB_PASSWORD}@db/app"
environments:
  production:
    port: 18999
    proxy: {error_pages: {502: errors/502.html}}
"""
SECRET = "s3cr3t-value-that-must-not-be-kept"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "errors").mkdir(parents=True)
    (root / "errors" / "502.html").write_text("<h1>back soon</h1>")
    (root / "headway.yml").write_text(CONFIG)
    secrets = root / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text(f"DB_PASSWORD={SECRET}\n")
    secrets.chmod(0o600)
    return root


def test_kept_whole_without_secrets_and_read_back_withheld(project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    target = load_target("production", project / "headway.yml")
    keep(target, state)
    folder = kept_dir(state, "kept", "production")
    assert folder.is_symlink() and (folder / "errors" / "502.html").read_text() == "<h1>back soon</h1>"
    assert all(SECRET not in p.read_text() for p in folder.resolve().rglob("*") if p.is_file())
    assert kept_environments(state) == [("kept", "production")]

    again = load_kept(state, "kept", "production")
    assert again.secrets_withheld and again.roles["web"].replicas == 2 and again.port == 18999
    assert again.config == target.config
    with pytest.raises(SecretWithheld) as info:
        again.container_env(again.roles["web"])
    assert "where the deploys of production come from" in (info.value.fix or "")
    with pytest.raises(SecretWithheld) as info2:
        again.resolve_text("env", again.env["DATABASE_URL"])
    assert "DB_PASSWORD" in info2.value.message and SECRET not in str(info2.value)


def test_a_new_keep_replaces_the_old_and_debris_of_a_crash_is_ignored(project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    keep(load_target("production", project / "headway.yml"), state)
    parent = kept_dir(state, "kept", "production").parent
    # what a kill between the steps leaves: a half-written directory and a link not yet renamed
    (parent / ".kept-deadbeef0000").mkdir()
    (parent / ".kept.999.link").symlink_to(".kept-deadbeef0000")
    assert load_kept(state, "kept", "production").roles["web"].replicas == 2
    (project / "headway.yml").write_text(CONFIG.replace("replicas: 2", "replicas: 3"))
    keep(load_target("production", project / "headway.yml"), state)
    assert load_kept(state, "kept", "production").roles["web"].replicas == 3
    assert [p.name for p in parent.glob(".kept-*")] == [kept_dir(state, "kept", "production").resolve().name]
