"""`headway secrets list|set|generate|unset`: the secrets file edited in place, values never shown or in argv."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from headway.config.secrets import load_secrets, set_secret, unset_secret
from headway.errors import ConfigError

CONFIG = """\
app: shop
roles:
  web:
    port: 8000
    secrets: [JWT_SECRET]
  worker:
    command: python -m worker
secrets:
  JWT_SECRET: {as: file}
  VAULT_TOKEN: {from: "op read op://prod/vault/token"}
environments:
  production: {port: 8080}
"""


def headway(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=root, input=stdin, text=True,
                          capture_output=True, timeout=60, env={**os.environ, "HEADWAY_STATE_DIR": str(root / "st")})


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "headway.yml").write_text(CONFIG)
    return tmp_path


def secrets_file(root: Path) -> Path:
    return root / ".headway" / "secrets.production"


def test_set_reads_stdin_creates_a_600_file_and_never_prints(app: Path) -> None:
    value = "jwt-" + os.urandom(8).hex()
    result = headway(app, "secrets", "set", "JWT_SECRET", "-e", "production", stdin=value + "\n")
    assert result.returncode == 0, result.stderr
    assert value not in result.stdout + result.stderr
    path = secrets_file(app)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secrets(path, required=True) == {"JWT_SECRET": value}
    listed = headway(app, "secrets", "list", "-e", "production", "--json")
    assert listed.returncode == 0, listed.stderr
    assert value not in listed.stdout + listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["secrets"]}
    assert rows["JWT_SECRET"] == {"name": "JWT_SECRET", "as": "file", "used_by": ["web", "worker", "release"],
                                  "source": "file", "set": True, "note": ""}
    assert rows["VAULT_TOKEN"]["source"] == "command" and rows["VAULT_TOKEN"]["as"] == "env"


def test_set_keeps_other_lines_and_comments_and_replaces_in_place(app: Path) -> None:
    path = secrets_file(app)
    path.parent.mkdir()
    path.write_text("# production secrets\nA=1\n\nexport JWT_SECRET=old\n# trailing comment\nB='two'")
    path.chmod(0o600)
    result = headway(app, "secrets", "set", "JWT_SECRET", "-e", "production", stdin="new value ")
    assert result.returncode == 0, result.stderr
    assert "updated" in result.stderr
    assert path.read_text() == ("# production secrets\nA=1\n\nexport JWT_SECRET='new value '\n"
                                "# trailing comment\nB='two'")
    assert load_secrets(path, required=True) == {"A": "1", "JWT_SECRET": "new value ", "B": "two"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generate_writes_a_strong_value_without_printing_it(app: Path) -> None:
    result = headway(app, "secrets", "generate", "JWT_SECRET", "-e", "production")
    assert result.returncode == 0, result.stderr
    value = load_secrets(secrets_file(app), required=True)["JWT_SECRET"]
    assert len(base64.urlsafe_b64decode(value + "==")) == 64
    assert value not in result.stdout + result.stderr
    again = headway(app, "secrets", "generate", "JWT_SECRET", "-e", "production")
    assert again.returncode == 2 and "--force" in again.stderr
    assert load_secrets(secrets_file(app), required=True)["JWT_SECRET"] == value
    forced = headway(app, "secrets", "generate", "JWT_SECRET", "-e", "production", "--force", "--bytes", "32")
    assert forced.returncode == 0, forced.stderr
    new = load_secrets(secrets_file(app), required=True)["JWT_SECRET"]
    assert new != value and len(base64.urlsafe_b64decode(new + "==")) == 32


def test_unset_removes_only_that_line(app: Path) -> None:
    path = secrets_file(app)
    path.parent.mkdir()
    path.write_text("# keep me\nJWT_SECRET=x\nOTHER=y\n")
    path.chmod(0o600)
    result = headway(app, "secrets", "unset", "JWT_SECRET", "-e", "production")
    assert result.returncode == 0, result.stderr
    assert path.read_text() == "# keep me\nOTHER=y\n"
    missing = headway(app, "secrets", "unset", "JWT_SECRET", "-e", "production")
    assert missing.returncode == 9 and "not in" in missing.stderr


def test_value_is_never_taken_from_argv(app: Path) -> None:
    result = headway(app, "secrets", "set", "JWT_SECRET", "the-value", "-e", "production", stdin="")
    assert result.returncode == 2
    assert not secrets_file(app).exists()


def test_empty_stdin_and_bad_names_are_refused(app: Path) -> None:
    empty = headway(app, "secrets", "set", "JWT_SECRET", "-e", "production", stdin="")
    assert empty.returncode == 2 and "no value" in empty.stderr and "Traceback" not in empty.stderr
    bad = headway(app, "secrets", "set", "1-BAD", "-e", "production", stdin="x")
    assert bad.returncode == 2 and "not a secret name" in bad.stderr
    unknown_env = headway(app, "secrets", "list", "-e", "prod")
    assert unknown_env.returncode == 2 and "known: production" in unknown_env.stderr


def test_a_world_readable_file_is_refused_not_rewritten(app: Path) -> None:
    path = secrets_file(app)
    path.parent.mkdir()
    path.write_text("OTHER=very-secret-other\n")
    path.chmod(0o644)
    result = headway(app, "secrets", "set", "JWT_SECRET", "-e", "production", stdin="v")
    assert result.returncode == 2 and "chmod 600" in result.stderr
    assert "very-secret-other" not in result.stdout + result.stderr
    assert path.read_text() == "OTHER=very-secret-other\n"


def test_list_works_while_a_named_secret_is_missing(app: Path) -> None:
    # deploy would fail (web names JWT_SECRET); list is how one finds out what to set
    listed = headway(app, "secrets", "list", "-e", "production")
    assert listed.returncode == 0, listed.stderr
    assert "JWT_SECRET" in listed.stdout and "no" in listed.stdout
    deploy = headway(app, "status", "-e", "production")
    assert deploy.returncode == 2 and "JWT_SECRET" in deploy.stderr and "role web" in deploy.stderr


@pytest.mark.parametrize("value", ["multi\nline", "nul\0byte", "a\u2028b"])
def test_values_that_cannot_be_a_line_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError):
        set_secret(tmp_path / "secrets.x", "A", value)
    assert not (tmp_path / "secrets.x").exists()


@pytest.mark.parametrize("value", ["plain", " lead", "trail ", "'quoted'", '"dq"', "a'b", "x=y#z", "'"])
def test_every_single_line_value_reads_back_unchanged(tmp_path: Path, value: str) -> None:
    path = tmp_path / "secrets.x"
    set_secret(path, "A", value)
    assert load_secrets(path, required=True) == {"A": value}
    assert unset_secret(path, "A") and load_secrets(path, required=True) == {}
