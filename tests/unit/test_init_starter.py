from __future__ import annotations

import re
from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.config.model import CommandHealth, HttpHealth
from headway.config.resolve import resolve
from headway.config.starter import check_app_name, starter_config, suggest_app_name
from headway.errors import ConfigError


def test_starter_validates() -> None:
    config = parse_config(starter_config("shop"), "headway.yml")
    assert config.app == "shop"
    assert set(config.roles) == {"web", "worker"}
    assert config.web_role == "web"
    web, worker = config.roles["web"], config.roles["worker"]
    assert isinstance(web.health, HttpHealth) and web.health.path == "/health"
    assert isinstance(worker.health, CommandHealth) and worker.health.stays_running == 10.0
    assert config.release == "npx prisma migrate deploy"
    assert set(config.accessories) == {"db", "redis"}
    assert config.accessories["db"].image == "postgres:15"
    assert config.accessories["db"].secrets == ["POSTGRES_PASSWORD"]
    assert config.accessories["db"].volume_mounts == [("data", "/var/lib/postgresql/data")]
    assert "${POSTGRES_PASSWORD}" in config.env["DATABASE_URL"]
    assert set(config.environments) == {"production", "staging"}
    assert config.environments["staging"].seed == "npm run db:seed"
    assert config.environments["production"].port != config.environments["staging"].port


def test_starter_is_commented() -> None:
    text = starter_config("shop")
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line]
    assert len(comments) > 40
    for section in ("app", "image", "roles", "release", "accessories", "env", "deploy", "environments"):
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
        assert lines[index - 1].startswith("#"), f"{section} has no comment above it"
    for word in ("alembic upgrade head", "prisma migrate deploy", "drain_timeout", "health_deadline", "retain",
                 "warm_standby", "lock_wait", "start_period", "attempts", "stays_running", "pg_isready"):
        assert word in text


def test_commented_alternatives_are_valid_too() -> None:
    """Uncommenting the optional settings still gives a valid file."""
    text = starter_config("shop")
    uncommented = re.sub(r"^(\s*)# (target|name|args|  NODE_ENV|resources|  web|secrets_file):",
                         r"\1\2:", text, flags=re.MULTILINE)
    assert uncommented != text
    config = parse_config(uncommented)
    assert config.image.target == "production"
    assert config.environments["production"].resources["web"].memory == "512m"


def test_starter_resolves_with_a_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text("POSTGRES_PASSWORD=example-only\n")
    secrets.chmod(0o600)
    target = resolve(parse_config(starter_config("shop")), "production", tmp_path)
    assert target.roles["web"].replicas == 3
    assert "example-only" in target.container_env(target.roles["web"])["DATABASE_URL"]


@pytest.mark.parametrize("name", ["Shop", "my_app", "1app", "-app", "a" * 40, ""])
def test_bad_app_names_are_refused_with_a_fix(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        starter_config(name)
    assert err.value.fix and "lower-case" in err.value.fix
    check_app_name(suggest_app_name(name))  # the suggestion itself is valid


@pytest.mark.parametrize(("text", "expected"), [("My_App", "my-app"), ("123 shop!", "shop"), ("x", "x"),
                                                ("---", "app"), ("Incident Tracker", "incident-tracker")])
def test_suggest_app_name(text: str, expected: str) -> None:
    assert suggest_app_name(text) == expected
