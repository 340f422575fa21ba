"""Secrets: which container gets which secret and how (env var or file), values from commands, bad input."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.config.secret_sources import SecretCommandFailed, fetch_secret, redact
from headway.config.secrets import describe_secrets, load_secrets, secret_specs
from headway.errors import ConfigError, HeadwayError

CONFIG = """\
app: shop
roles:
  web:
    port: 8000
    secrets: [JWT_SECRET, API_KEY]
  worker:
    command: python -m worker
    secrets: [API_KEY]
  admin:
    port: 9000
    path: /admin
secrets:
  JWT_SECRET: {as: file}
  UNUSED: {as: file}
env:
  DATABASE_URL: postgresql://shop:${DB_PASSWORD}@db/shop
environments:
  production:
    port: 8080
  staging:
    port: 8081
    secrets:
      API_KEY: {from: "printf staging-key"}
"""


def write_secrets(root: Path, env: str, text: str) -> Path:
    path = root / ".headway" / f"secrets.{env}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def target(root: Path, env: str = "production", text: str = CONFIG):  # type: ignore[no-untyped-def]
    return resolve(parse_config(text), env, root)


def test_a_role_gets_only_the_secrets_it_names(tmp_path: Path) -> None:
    write_secrets(tmp_path, "production", "DB_PASSWORD=db-pw\nJWT_SECRET=jwt-value\nAPI_KEY=api-value\n"
                  "OTHER=other-value\n")
    t = target(tmp_path)
    web = t.container_env(t.roles["web"])
    worker = t.container_env(t.roles["worker"])
    assert web["API_KEY"] == "api-value"
    assert web["JWT_SECRET_FILE"] == "/run/secrets/JWT_SECRET" and "JWT_SECRET" not in web
    assert "DB_PASSWORD" not in web and "OTHER" not in web
    assert worker["API_KEY"] == "api-value"
    assert not {"JWT_SECRET", "JWT_SECRET_FILE", "DB_PASSWORD", "OTHER"} & set(worker)
    # ${NAME} references in env keep working whatever the role names
    assert web["DATABASE_URL"] == worker["DATABASE_URL"] == "postgresql://shop:db-pw@db/shop"
    # the file secret's value goes to the file, never into the env
    assert "jwt-value" not in web.values()
    assert t.secret_files(t.role_secrets(t.roles["web"])) == {"JWT_SECRET": "jwt-value"}
    assert t.secret_files(t.role_secrets(t.roles["worker"])) == {}


def test_a_role_naming_none_and_the_release_one_off_get_every_secret(tmp_path: Path) -> None:
    write_secrets(tmp_path, "production", "DB_PASSWORD=db-pw\nJWT_SECRET=jwt-value\nAPI_KEY=api-value\n")
    t = target(tmp_path)
    admin = t.container_env(t.roles["admin"])
    release = t.container_env(None, {"HEADWAY_ROLE": "release"})
    for env in (admin, release):
        assert env["DB_PASSWORD"] == "db-pw" and env["API_KEY"] == "api-value"
        assert env["JWT_SECRET_FILE"] == "/run/secrets/JWT_SECRET"
    assert "UNUSED_FILE" not in release  # declared, no value, named by no role: fine, and not delivered
    assert t.secret_files(t.role_secrets(None)) == {"JWT_SECRET": "jwt-value"}


def test_a_named_secret_missing_names_secret_role_and_file(tmp_path: Path) -> None:
    path = write_secrets(tmp_path, "production", "DB_PASSWORD=very-secret-db-pw\nAPI_KEY=api\n")
    with pytest.raises(ConfigError) as info:
        target(tmp_path)
    text = str(info.value)
    assert "JWT_SECRET" in text and "role web" in text and str(path) in text
    assert "headway secrets set JWT_SECRET -e production" in text
    assert "very-secret-db-pw" not in text


def test_environment_override_changes_only_what_it_gives(tmp_path: Path) -> None:
    config = parse_config(CONFIG.replace("  JWT_SECRET: {as: file}", "  JWT_SECRET: {as: file}\n"
                                         "  API_KEY: {as: file}"))
    specs = secret_specs(config, "staging")
    assert specs["API_KEY"].as_ == "file" and specs["API_KEY"].from_ == "printf staging-key"
    assert secret_specs(config, "production")["API_KEY"].from_ is None


def test_from_command_runs_only_when_the_value_is_needed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "fetch.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nprintf 'cmd-value\\n'\n")
    script.chmod(0o755)
    config = CONFIG.replace('{from: "printf staging-key"}', f"{{from: [{script}]}}")
    write_secrets(tmp_path, "staging", "DB_PASSWORD=db\nJWT_SECRET=jwt\nAPI_KEY=ignored-file-value\n")
    t = target(tmp_path, "staging", config)
    assert not marker.exists()  # reading headway.yml runs nothing (status, logs)
    hash_before = t.config_hash()
    env = t.container_env(t.roles["worker"])
    assert marker.exists()
    assert env["API_KEY"] == "cmd-value"  # one trailing newline stripped; the command wins over the file
    assert t.config_hash() == hash_before  # fetched values do not move the hash mid-deploy
    assert "cmd-value" not in repr(t.secrets)


def test_from_command_is_enough_without_a_secrets_file(tmp_path: Path) -> None:
    config = """\
app: shop
roles:
  web: {port: 8000, secrets: [TOKEN]}
secrets:
  TOKEN: {from: "sh -c 'echo from-sh'"}
env:
  URL: https://x:${TOKEN}@example.com
environments:
  production: {port: 8080}
"""
    t = target(tmp_path, text=config)
    env = t.container_env(t.roles["web"])
    assert env["TOKEN"] == "from-sh" and env["URL"] == "https://x:from-sh@example.com"


def test_only_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    assert fetch_secret("X", ["printf", "v\\n\\n"], cwd=tmp_path) == "v\n"
    assert fetch_secret("X", "printf ' spaced '", cwd=tmp_path) == " spaced "


def test_failing_command_shows_status_and_redacted_stderr(tmp_path: Path) -> None:
    with pytest.raises(SecretCommandFailed) as info:
        fetch_secret("JWT", ["sh", "-c", "echo leaked-known-value; echo 'denied for known-value' >&2; exit 7"],
                     cwd=tmp_path, known=["known-value"])
    err = info.value
    assert "exited 7" in err.message and "JWT" in err.message
    assert "denied for ***" in (err.details or "")
    assert "known-value" not in str(err) + (err.details or "")
    assert "leaked" not in str(err) + (err.details or "")  # stdout (the would-be value) is never shown


def test_command_not_found_names_it(tmp_path: Path) -> None:
    with pytest.raises(SecretCommandFailed) as info:
        fetch_secret("JWT", "no-such-tool-xyz read op://x", cwd=tmp_path)
    assert "'no-such-tool-xyz' not found" in str(info.value) and "secrets.JWT.from" in str(info.value)


def test_command_printing_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretCommandFailed) as info:
        fetch_secret("JWT", [sys.executable, "-c", "print()"], cwd=tmp_path)
    assert "printed nothing" in str(info.value)


def test_redact_longest_first() -> None:
    assert redact("abc abcdef", ["abc", "abcdef"]) == "*** ***"


def test_bad_secret_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        target(tmp_path, text=CONFIG.replace("  UNUSED: {as: file}", "  9BAD: {as: file}"))
    assert "9BAD" in str(info.value)


def test_list_describes_without_values(tmp_path: Path) -> None:
    write_secrets(tmp_path, "staging", "DB_PASSWORD=db-pw-xyz\nJWT_SECRET=jwt-xyz\nAPI_KEY=file-xyz\n")
    infos = {i.name: i for i in describe_secrets(parse_config(CONFIG), "staging", tmp_path)}
    assert set(infos) == {"DB_PASSWORD", "JWT_SECRET", "API_KEY", "UNUSED"}
    assert infos["JWT_SECRET"].delivery == "file" and infos["JWT_SECRET"].used_by[:2] == ["web", "admin"]
    assert infos["API_KEY"].source == "command" and "ignored" in infos["API_KEY"].note
    assert infos["API_KEY"].used_by[:3] == ["web", "worker", "admin"]
    assert infos["DB_PASSWORD"].used_by == ["admin", "release", "env:DATABASE_URL"]
    assert not infos["UNUSED"].is_set and infos["UNUSED"].note == "declared, not used"
    assert "xyz" not in repr(list(infos.values()))


def test_load_secrets_reads_quoted_values(tmp_path: Path) -> None:
    path = write_secrets(tmp_path, "production", "A=' padded '\nexport B=\"x\"\n")
    assert load_secrets(path, required=True) == {"A": " padded ", "B": "x"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_command_error_is_a_headway_error() -> None:
    assert issubclass(SecretCommandFailed, HeadwayError)
