"""headway.yml loading: every error names file, line, key and what was expected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headway.config.duration import parse_duration
from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.errors import ConfigError

BASE = """\
app: shop
roles:
  web:
    port: 8000
    health: {path: /health}
  worker:
    command: python -m worker
    health: {stays_running: 2s}
env:
  DATABASE_URL: postgresql://shop:${DB_PASSWORD}@db/shop
environments:
  production:
    port: 8080
    replicas: {web: 3}
  staging:
    port: 8081
"""


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "headway.yml")
    return str(info.value)


def test_valid_config_loads() -> None:
    cfg = parse_config(BASE)
    assert cfg.web_role == "web"
    assert cfg.roles["worker"].health.stays_running == 2.0  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "expected"), [
    ("app: shop\nroles: [\n", "invalid YAML"),
    (BASE.replace("    port: 8000\n", "    port: 8000\n    helth: {}\n"),
     "headway.yml:5: roles.web.helth: unknown key; "
                                                                         "did you mean `health`?"),
    (BASE.replace("path: /health", "path: health"), "headway.yml:5: roles.web.health.path: a health check path "
                                                    "starts with /"),
    (BASE.replace("port: 8080", "port: 99999"), "headway.yml:13: environments.production.port"),
    (BASE.replace("app: shop", "app: Shop_App"), "headway.yml:1: app: use lower-case letters"),
    (BASE.replace("replicas: {web: 3}", "replicas: {wbe: 3}"), "unknown role 'wbe'"),
    (BASE.replace("port: 8081", "port: 8080"), "both publish port 8080"),
    (BASE.replace("{stays_running: 2s}", "{stays_running: soon}"), "expected a duration"),
    (BASE.replace("{stays_running: 2s}", "{command: x, stays_running: 2s}"), "exactly one of"),
    ("app: shop\nenvironments: {production: {}}\n", "roles: required key is missing"),
    ("- just\n- a list\n", "expected a mapping at the top"),
])
def test_errors_name_line_key_and_expectation(text: str, expected: str) -> None:
    message = problems(text)
    assert expected in message
    assert "fix:" in message


def test_hosts_that_are_not_addresses_are_refused_clearly() -> None:
    message = problems(BASE.replace("    port: 8081\n", "    port: 8081\n    hosts: ['web 1']\n"))
    assert "user@host[:port]" in message
    message = problems(BASE.replace("    port: 8081\n", "    port: 8081\n    hosts: [a@web1, a@web2]\n"))
    assert "one host per environment" in message


@pytest.mark.parametrize(("value", "seconds"), [("500ms", 0.5), ("2s", 2), ("1m30s", 90), (3, 3), ("1.5", 1.5)])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def _write_secrets(root: Path, env: str, text: str, mode: int = 0o600) -> Path:
    path = root / ".headway" / f"secrets.{env}"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_secrets_fill_env_and_never_show_in_repr(tmp_path: Path) -> None:
    _write_secrets(tmp_path, "production", "DB_PASSWORD=s3cr3t-value\n# comment\nAPI_KEY='k-123'\n")
    target = resolve(parse_config(BASE), "production", tmp_path)
    env = target.container_env(target.roles["web"])
    assert env["DATABASE_URL"] == "postgresql://shop:s3cr3t-value@db/shop"
    assert env["API_KEY"] == "k-123"
    assert target.roles["web"].replicas == 3 and target.roles["worker"].replicas == 1
    assert "s3cr3t" not in repr(target) and "s3cr3t" not in repr(target.secrets)


def test_world_readable_secrets_are_refused(tmp_path: Path) -> None:
    _write_secrets(tmp_path, "production", "DB_PASSWORD=s3cr3t-value\n", mode=0o644)
    with pytest.raises(ConfigError) as info:
        resolve(parse_config(BASE), "production", tmp_path)
    assert "readable by others" in str(info.value) and "chmod 600" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_missing_secrets_file_and_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(parse_config(BASE), "production", tmp_path)
    assert "is missing" in str(info.value)
    _write_secrets(tmp_path, "production", "OTHER=1\n")
    with pytest.raises(ConfigError) as info:
        resolve(parse_config(BASE), "production", tmp_path)
    assert "missing DB_PASSWORD" in str(info.value)


def test_unknown_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(parse_config(BASE), "prod", tmp_path)
    assert "known: production, staging" in str(info.value)


def test_config_hash_changes_with_secret_value_but_never_reveals_it(tmp_path: Path) -> None:
    _write_secrets(tmp_path, "production", "DB_PASSWORD=one\n")
    first = resolve(parse_config(BASE), "production", tmp_path).config_hash()
    _write_secrets(tmp_path, "production", "DB_PASSWORD=two\n")
    assert resolve(parse_config(BASE), "production", tmp_path).config_hash() != first
