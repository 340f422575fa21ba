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


def test_starter_mentions_managed_databases_and_the_example_is_valid() -> None:
    text = starter_config("shop")
    assert "# databases:" in text and "engine: postgres" in text and "schedule:" in text
    # using the commented database instead of the db accessory gives a valid file
    swapped = re.sub(r"^  db:\n(    .*\n)+", "", text, count=1, flags=re.MULTILINE)
    swapped = swapped.replace("  DATABASE_URL: postgres://shop:${POSTGRES_PASSWORD}@db:5432/shop\n", "")
    head, _, block = swapped.partition("# databases:\n")
    block_lines = block.split("\n\n", 1)
    swapped = head + "databases:\n" + re.sub(r"^# ", "", block_lines[0], flags=re.MULTILINE) + "\n\n" + block_lines[1]
    config = parse_config(swapped)
    assert "db" not in config.accessories
    db = config.databases["db"]
    assert (db.engine, db.version, db.backup.schedule) == ("postgres", "15", "0 3 * * *")


def test_starter_uses_the_ports_it_is_given() -> None:
    config = parse_config(starter_config("shop", (18080, 18081)))
    assert (config.environments["production"].port, config.environments["staging"].port) == (18080, 18081)
    line = next(ln for ln in starter_config("shop").splitlines() if "port: 8080" in ln)
    assert line.index("#") == 29  # the comment column stays aligned


def test_free_ports_skip_what_listens_here_and_what_other_apps_claim(tmp_path: Path) -> None:
    import json
    import socket

    from headway.config.starter import free_environment_ports, port_is_free

    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        a.listen()
        taken = a.getsockname()[1]
        assert not port_is_free(taken)
        routes = tmp_path / "proxy" / "routes"
        routes.mkdir(parents=True)
        b.bind(("0.0.0.0", 0))
        spare = b.getsockname()[1]  # bound, not listening: still not free to publish
        (routes / "other--production.json").write_text(json.dumps({"port": taken + 1}))
        production, staging = free_environment_ports((taken, taken + 1), state_dir=tmp_path)
        assert production not in (taken, taken + 1) and staging not in (taken, taken + 1)
        assert production != staging and port_is_free(production) and port_is_free(staging)
        assert not port_is_free(spare)
    with socket.socket() as c, socket.socket() as d:
        c.bind(("0.0.0.0", 0))
        d.bind(("0.0.0.0", 0))
        pair = (c.getsockname()[1], d.getsockname()[1])
    assert free_environment_ports(pair, state_dir=tmp_path) == pair  # free ones are kept


def test_starter_shows_file_secrets_scoped_per_role() -> None:
    text = starter_config("shop")
    assert "headway secrets generate JWT_SECRET -e production" in text and "headway secrets set NAME" in text
    assert "# secrets:\n#   JWT_SECRET: {as: file}" in text
    assert "/run/secrets/NAME" in text and "JWT_SECRET_FILE" in text
    # uncommenting the examples gives a valid file: the web role gets only what it names, JWT_SECRET as a file
    uncommented = re.sub(r"^    # (secrets: \[)", r"    \1", text, flags=re.MULTILINE)
    head, _, block = uncommented.partition("# secrets:\n")
    example, _, rest = block.partition("\n\n")
    uncommented = head + "secrets:\n" + re.sub(r"^# ", "", example, flags=re.MULTILINE) + "\n\n" + rest
    config = parse_config(uncommented)
    assert config.roles["web"].secrets == ["JWT_SECRET", "POSTGRES_PASSWORD"]
    assert config.roles["worker"].secrets == ["STRIPE_KEY"]
    assert config.secrets["JWT_SECRET"].as_ == "file"
    assert config.secrets["STRIPE_KEY"].from_ == "op read op://production/stripe/secret-key"
    assert parse_config(text).secrets == {} and parse_config(text).roles["web"].secrets is None


def test_uncommented_file_secret_reaches_only_the_roles_that_name_it(tmp_path: Path) -> None:
    text = starter_config("shop").replace("    # secrets: [JWT_SECRET, POSTGRES_PASSWORD]",
                                          "    secrets: [JWT_SECRET, POSTGRES_PASSWORD]")
    text = text.replace("# secrets:\n#   JWT_SECRET: {as: file}", "secrets:\n  JWT_SECRET: {as: file}")
    secrets = tmp_path / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text("POSTGRES_PASSWORD=example-only\nJWT_SECRET=jwt-example\n")
    secrets.chmod(0o600)
    target = resolve(parse_config(text), "production", tmp_path)
    web, worker = target.roles["web"], target.roles["worker"]
    env = target.container_env(web)
    assert env["JWT_SECRET_FILE"] == "/run/secrets/JWT_SECRET" and "JWT_SECRET" not in env
    assert target.secret_files(target.role_secrets(web)) == {"JWT_SECRET": "jwt-example"}
    assert "example-only" in target.container_env(worker)["DATABASE_URL"]  # the worker names none: gets all
