from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from headway.config.compose_import import (
    ComposeConversion,
    convert_compose,
    guess_environment,
    merge_compose_files,
)
from headway.config.loader import parse_config
from headway.config.model import AppConfig, CommandHealth, HttpHealth
from headway.config.resolve import resolve
from headway.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "compose"
NODE = FIXTURES / "node-prisma"
FASTAPI = FIXTURES / "fastapi"
FAKE_SECRET = "hunter2"  # every fake secret value in the fixtures and their env files contains this


def _config(conv: ComposeConversion) -> AppConfig:
    return parse_config(conv.yaml_text, "headway.yml")


def _assert_no_secret_values(conv: ComposeConversion) -> None:
    assert FAKE_SECRET not in conv.yaml_text
    for note in conv.notes:
        assert FAKE_SECRET not in note, note


def _write(tmp_path: Path, text: str, name: str = "docker-compose.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def node_pair() -> ComposeConversion:
    return merge_compose_files([NODE / "docker-compose.prod.yml", NODE / "docker-compose.staging.yml"],
                               app="tecket")


@pytest.fixture(scope="module")
def fastapi() -> ComposeConversion:
    return convert_compose(FASTAPI / "docker-compose.yml")


# --- the Node / Prisma / MySQL prod + staging pair ------------------------------------------------------

def test_pair_becomes_one_valid_config(node_pair: ComposeConversion) -> None:
    config = _config(node_pair)
    assert config.app == "tecket"
    assert list(config.environments) == ["production", "staging"]
    assert config.image.target == "production"
    assert config.image.dockerfile == "Dockerfile"


def test_pair_roles_ports_release_seed(node_pair: ComposeConversion) -> None:
    config = _config(node_pair)
    assert list(config.roles) == ["web"]
    web = config.roles["web"]
    assert web.port == 3000
    assert web.command == "npm start"
    assert web.replicas == 2
    assert config.release == "npx prisma migrate deploy"
    prod, staging = config.environments["production"], config.environments["staging"]
    assert (prod.port, staging.port) == (3000, 3001)
    assert prod.seed is None
    assert staging.seed == "npm run db:seed"
    assert staging.replicas == {"web": 1}
    resources = prod.resources["web"]
    assert (resources.cpus, resources.memory) == (0.5, "512m")


def test_pair_health_is_http(node_pair: ComposeConversion) -> None:
    health = _config(node_pair).roles["web"].health
    assert isinstance(health, HttpHealth)
    assert health.path == "/api/health"
    assert (health.interval, health.timeout, health.attempts, health.start_period) == (10.0, 5.0, 5, 20.0)


def test_pair_database_accessory(node_pair: ComposeConversion) -> None:
    db = _config(node_pair).accessories["db"]
    assert db.image == "mysql:8.0"
    assert db.volumes == ["data:/var/lib/mysql"]
    assert set(db.secrets) == {"MYSQL_ROOT_PASSWORD", "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD"}
    assert isinstance(db.health, CommandHealth)
    assert db.health.argv is not None and "${MYSQL_ROOT_PASSWORD}" in db.health.argv[-1]
    assert db.health.attempts == 10
    assert any("db:" in n and "backups, restore" in n and "accessories/databases" in n for n in node_pair.notes)


def test_pair_env_is_shared_or_per_environment(node_pair: ComposeConversion) -> None:
    config = _config(node_pair)
    # the app refers to the names the database is given, so one DATABASE_URL serves both environments
    assert config.env["DATABASE_URL"] == "mysql://${MYSQL_USER}:${MYSQL_PASSWORD}@db:3306/${MYSQL_DATABASE}"
    assert config.env["LOG_LEVEL"] == "info"  # ${LOG_LEVEL:-info} with LOG_LEVEL set nowhere
    assert config.environments["production"].env == {"NODE_ENV": "production"}
    assert config.environments["staging"].env == {"NODE_ENV": "staging"}
    assert "SESSION_SECRET" not in config.env


def test_pair_secrets_files_and_notes(node_pair: ComposeConversion) -> None:
    assert node_pair.secrets == {"production": [str(NODE / ".env.prod")],
                                 "staging": [str(NODE / ".env.staging")]}
    prod_notes = [n for n in node_pair.notes if n.startswith("production:")]
    assert any(".headway/secrets.production" in n and "SESSION_SECRET" in n and "MYSQL_ROOT_PASSWORD" in n
               for n in prod_notes)
    assert any("JWT_SECRET" in n for n in prod_notes)  # key names from the env file may be shown
    _assert_no_secret_values(node_pair)


def test_pair_dropped_keys_are_noted(node_pair: ComposeConversion) -> None:
    text = "\n".join(node_pair.notes)
    for key in ("container_name", "depends_on", "restart", "networks", "version"):
        assert f"`{key}` dropped" in text
    assert "tecket_prod_mysql_data" in text and "tecket_staging_mysql_data" in text
    assert "moved to `release:`" in text and "environments.staging.seed" in text


def test_single_files_guess_their_environment() -> None:
    prod = convert_compose(NODE / "docker-compose.prod.yml", app="tecket")
    staging = convert_compose(NODE / "docker-compose.staging.yml", app="tecket")
    assert list(_config(prod).environments) == ["production"]
    assert list(_config(staging).environments) == ["staging"]
    assert _config(staging).environments["staging"].seed == "npm run db:seed"
    assert _config(staging).release == "npx prisma migrate deploy"
    assert _config(staging).environments["staging"].port == 3001
    assert prod.secrets == {"production": [str(NODE / ".env.prod")]}
    _assert_no_secret_values(prod)
    _assert_no_secret_values(staging)


def test_app_name_defaults_to_the_folder() -> None:
    assert _config(convert_compose(NODE / "docker-compose.prod.yml")).app == "node-prisma"


# --- the FastAPI + postgres + redis + worker file --------------------------------------------------------

def test_fastapi_image_and_name(fastapi: ComposeConversion) -> None:
    config = _config(fastapi)
    assert config.app == "incident-tracker"  # from `name: Incident_Tracker`
    assert config.image.context == "./backend"
    assert config.image.dockerfile == "Dockerfile.prod"
    assert config.image.args == {"PYTHON_VERSION": "3.11"}  # PIP_TOKEN is not copied
    assert config.image.name == "incident-tracker-api"
    assert list(config.environments) == ["production"]


def test_fastapi_roles(fastapi: ComposeConversion) -> None:
    config = _config(fastapi)
    assert list(config.roles) == ["web", "worker"]
    web, worker = config.roles["web"], config.roles["worker"]
    assert web.port == 8000
    assert web.command == "uvicorn app.main:app --host 0.0.0.0 --port 8000"
    assert web.stop_timeout == 30.0
    assert isinstance(web.health, HttpHealth) and web.health.path == "/healthz"
    assert (web.health.interval, web.health.attempts) == (2.0, 30)
    assert worker.port is None
    assert worker.command == "celery -A app.worker worker --loglevel=info"
    assert worker.replicas == 3
    assert isinstance(worker.health, CommandHealth)
    assert worker.health.argv == ["celery", "-A", "app.worker", "inspect", "ping"]
    assert config.release == "alembic upgrade head"
    env = config.environments["production"]
    assert env.port == 8000
    assert env.domains == ["incidents.example.com", "www.incidents.example.com"]
    assert env.resources["worker"].memory == "1g"


def test_fastapi_env_keeps_only_plain_values(fastapi: ComposeConversion) -> None:
    config = _config(fastapi)
    assert config.env == {"ENVIRONMENT": "production", "REDIS_URL": "redis://redis:6379/0"}
    secrets_note = next(n for n in fastapi.notes if n.startswith("production: .headway/secrets.production"))
    for name in ("DATABASE_URL", "API_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert name in secrets_note
    assert fastapi.secrets == {"production": [str(FASTAPI / ".env")]}
    _assert_no_secret_values(fastapi)


def test_fastapi_accessories(fastapi: ComposeConversion) -> None:
    config = _config(fastapi)
    assert list(config.accessories) == ["postgres", "redis"]
    pg, redis = config.accessories["postgres"], config.accessories["redis"]
    assert pg.image == "postgres:15-alpine"
    assert pg.env == {"POSTGRES_USER": "tracker", "POSTGRES_DB": "tracker"}
    assert pg.secrets == ["POSTGRES_PASSWORD"]
    assert pg.volumes == ["data:/var/lib/postgresql/data"]
    assert isinstance(pg.health, CommandHealth) and pg.health.command == "pg_isready -U tracker -d tracker"
    assert (pg.health.interval, pg.health.timeout, pg.health.attempts) == (5.0, 3.0, 10)
    assert pg.port is None
    assert redis.argv == ["sh", "-c", "redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}"]
    assert redis.secrets == ["REDIS_PASSWORD"]
    assert redis.volumes == ["data:/data"]
    assert redis.health is not None and redis.health.command == "redis-cli ping"
    text = "\n".join(fastapi.notes)
    assert "nginx: proxy" in text
    assert "init.sql" in text
    assert "postgres: database accessory" in text and "redis: database accessory" not in text


def test_fastapi_conversion_resolves_once_secrets_exist(fastapi: ComposeConversion, tmp_path: Path) -> None:
    names = ["DATABASE_URL", "API_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "SECRET_KEY"]
    secrets = tmp_path / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text("".join(f"{n}=x\n" for n in names))
    secrets.chmod(0o600)
    target = resolve(_config(fastapi), "production", tmp_path)
    assert target.accessory_env(target.accessories["postgres"])["POSTGRES_PASSWORD"] == "x"
    assert target.roles["worker"].replicas == 3


def test_explicit_environment_name() -> None:
    conv = convert_compose(FASTAPI / "docker-compose.yml", environment="staging")
    assert list(_config(conv).environments) == ["staging"]
    assert list(conv.secrets) == ["staging"]


# --- rules on small files ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("docker-compose.prod.yml", "production"), ("docker-compose.production.yaml", "production"),
    ("docker-compose.staging.yml", "staging"), ("compose.stage.yml", "staging"),
    ("prod-docker-compose.yml", "production"), ("docker-compose.yml", "production"),
    ("compose.yaml", "production"), ("docker-compose.dev.yml", "development"),
])
def test_guess_environment(name: str, expected: str) -> None:
    assert guess_environment(Path(name)) == expected


def test_command_split_into_release_seed_and_command(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          app:
            build: .
            ports: ["80:8000"]
            command: >-
              sh -c "python manage.py migrate --noinput && python manage.py loaddata seed.json
              && exec gunicorn site.wsgi -b 0.0.0.0:8000"
          jobs:
            build: .
            command: ["python", "-m", "jobs"]
        """, "docker-compose.staging.yml")
    config = _config(convert_compose(path, app="site"))
    assert config.release == "python manage.py migrate --noinput"
    assert config.environments["staging"].seed == "python manage.py loaddata seed.json"
    assert config.roles["web"].command == "gunicorn site.wsgi -b 0.0.0.0:8000"
    assert config.roles["web"].port == 8000
    assert config.environments["staging"].port == 80
    assert config.roles["jobs"].command == "python -m jobs"


def test_several_steps_left_in_the_command_stay_a_shell_script(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          app:
            build: .
            ports: ["3000:3000"]
            command: sh -c "npx prisma generate && npm run db:migrate && node server.js"
        """)
    config = _config(convert_compose(path, app="shop"))
    assert config.release == "npm run db:migrate"
    assert config.roles["web"].argv == ["sh", "-c", "npx prisma generate && node server.js"]


def test_migration_only_service_becomes_the_release(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          web:
            build: .
            ports: ["8000:8000"]
          migrate:
            build: .
            command: alembic upgrade head
            restart: "no"
        """)
    conv = convert_compose(path, app="api")
    config = _config(conv)
    assert list(config.roles) == ["web"]
    assert config.release == "alembic upgrade head"
    assert config.roles["web"].command is None
    assert any("no healthcheck" in n for n in conv.notes)


def test_healthcheck_forms(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          web:
            build: .
            ports: ["8080:8080"]
            healthcheck:
              test: curl -fsS http://127.0.0.1:9090/metrics || exit 1
          worker:
            build: .
            command: bin/worker
            healthcheck:
              test: ["CMD", "bin/worker", "--check"]
              interval: 1m30s
              start_period: 500ms
          cache:
            image: redis:7
            healthcheck:
              test: ["CMD-SHELL", "redis-cli -a $$REDIS_PASSWORD ping | grep PONG"]
        """)
    conv = convert_compose(path, app="svc")
    config = _config(conv)
    web = config.roles["web"].health
    assert isinstance(web, CommandHealth)  # asks another port than the web port: kept as a command
    assert web.argv == ["sh", "-c", "curl -fsS http://127.0.0.1:9090/metrics || exit 1"]
    worker = config.roles["worker"].health
    assert isinstance(worker, CommandHealth)
    assert worker.argv == ["bin/worker", "--check"]
    assert (worker.interval, worker.start_period) == (90.0, 0.5)
    cache = config.accessories["cache"]
    assert cache.health is not None
    assert cache.health.argv == ["sh", "-c", "redis-cli -a $REDIS_PASSWORD ping | grep PONG"]
    assert cache.secrets == ["REDIS_PASSWORD"]


def test_secret_looking_values_are_never_copied(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          web:
            build:
              context: .
              args:
                NPM_TOKEN: hunter2-build
            ports: ["3000:3000"]
            environment:
              - STRIPE_SECRET_KEY=hunter2-stripe
              - DATABASE_URL=postgres://app:hunter2-url@db:5432/app
              - ACCESS_TOKEN=hunter2-token
              - PUBLIC_URL=https://shop.example.com
          db:
            image: postgres:16
            environment:
              POSTGRES_PASSWORD: hunter2-pg
              POSTGRES_DB: app
          cache:
            image: redis:7
            command: ["redis-server", "--requirepass", "hunter2-redis"]
        """)
    conv = convert_compose(path, app="shop")
    _assert_no_secret_values(conv)
    config = _config(conv)
    assert config.env == {"PUBLIC_URL": "https://shop.example.com"}
    assert config.accessories["db"].secrets == ["POSTGRES_PASSWORD"]
    assert config.accessories["cache"].argv == ["sh", "-c", "redis-server --requirepass ${CACHE_PASSWORD}"]
    note = next(n for n in conv.notes if n.startswith("production: .headway/secrets.production"))
    for name in ("STRIPE_SECRET_KEY", "DATABASE_URL", "ACCESS_TOKEN", "POSTGRES_PASSWORD", "CACHE_PASSWORD"):
        assert name in note
    assert any("NPM_TOKEN" in n for n in conv.notes)


def test_ports_long_syntax_replicas_and_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          api:
            build: .
            image: registry.example.com:5000/team/api:1.2
            ports:
              - target: 8000
                published: "8081"
            scale: 4
            mem_limit: 256mb
            cpus: 1.5
          mongo:
            image: mongo:7
        """)
    conv = convert_compose(path)
    config = _config(conv)
    assert config.app == "api"  # from the image name
    assert config.image.name == "registry.example.com:5000/team/api"
    assert config.roles["web"].port == 8000
    assert config.roles["web"].replicas == 4
    assert config.environments["production"].port == 8081
    limits = config.environments["production"].resources["web"]
    assert (limits.cpus, limits.memory) == (1.5, "256m")
    mongo = config.accessories["mongo"]
    assert mongo.volumes == ["data:/data/db"]  # added so data survives restarts
    assert mongo.health is not None


def test_merge_handles_port_clash_and_missing_roles(tmp_path: Path) -> None:
    prod = _write(tmp_path, """
        services:
          web:
            build: .
            ports: ["3000:3000"]
          worker:
            build: .
            command: npm run worker
        """, "docker-compose.prod.yml")
    staging = _write(tmp_path, """
        services:
          web:
            build: .
            ports: ["3000:3000"]
        """, "docker-compose.staging.yml")
    conv = merge_compose_files([prod, staging], app="shop")
    config = _config(conv)
    assert config.environments["production"].port == 3000
    assert config.environments["staging"].port == 3001
    assert config.environments["staging"].replicas == {"worker": 0}
    assert any("3001" in n for n in conv.notes)


# --- errors -------------------------------------------------------------------------------------------------

def _error(path: Path, **kwargs: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        convert_compose(path, **kwargs)
    assert err.value.fix, "every error says what to do"
    return err.value


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _error(tmp_path / "docker-compose.yml").message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  web:\n    build: .\n    ports: [\n")
    err = _error(path)
    assert "invalid YAML" in err.message and f"{path}:" in err.message


def test_no_services(tmp_path: Path) -> None:
    assert "no services" in _error(_write(tmp_path, "version: '3'\n")).message
    assert "no services" in _error(_write(tmp_path, "services: {}\n")).message


def test_no_buildable_service(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  db:\n    image: postgres:16\n")
    err = _error(path)
    assert "build" in err.message and "build: ." in (err.fix or "")


def test_bad_names(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  web:\n    build: .\n")
    assert "app name" in _error(path, app="My_App").message
    assert "environment name" in _error(path, environment="Prod").message


def test_two_files_for_one_environment(tmp_path: Path) -> None:
    a = _write(tmp_path, "services:\n  web:\n    build: .\n", "docker-compose.yml")
    b = _write(tmp_path, "services:\n  web:\n    build: .\n", "docker-compose.prod.yml")
    with pytest.raises(ConfigError) as err:
        merge_compose_files([a, b])
    assert "production" in err.value.message and err.value.fix
    config = _config(merge_compose_files([a, b], environments=["staging", "production"]))
    assert list(config.environments) == ["staging", "production"]


def test_unexpected_shapes_name_the_service(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          app:
            build: .
            deploy:
              resources: 5
        """)
    err = _error(path)
    assert "service app" in err.message and "docker compose" in (err.fix or "")
