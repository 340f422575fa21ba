from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from headway.config.compose_files import merge_documents
from headway.config.init import write_config
from headway.config.compose_import import (
    ComposeConversion,
    convert_compose,
    convert_from,
    guess_environment,
    merge_compose_files,
)
from headway.config.loader import parse_config
from headway.config.model import AppConfig, CommandHealth, HttpHealth, ImageBuild
from headway.config.resolve import resolve
from headway.config.secrets import check_named_secrets
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


def test_pair_database_becomes_a_managed_database(node_pair: ComposeConversion) -> None:
    config = _config(node_pair)
    assert config.accessories == {}
    db = config.databases["db"]
    assert (db.engine, db.version) == ("mysql", "8.0")
    assert db.backup.schedule == "0 3 * * *" and db.backup.before_deploy == "always"
    assert db.database is None and db.user is None  # compose took them from variables: the app name is used
    assert db.url_env is None  # the app read DATABASE_URL, which headway gives it
    text = "\n".join(node_pair.notes)
    assert "tecket_prod_mysql_data" in text and "headway db shell" in text
    assert "MYSQL_DATABASE comes from a variable" in text


def test_pair_env_is_shared_or_per_environment(node_pair: ComposeConversion) -> None:
    config = _config(node_pair)
    assert "DATABASE_URL" not in config.env  # headway sets it from databases.db, with its own credentials
    assert config.env["LOG_LEVEL"] == "info"  # ${LOG_LEVEL:-info} with LOG_LEVEL set nowhere
    assert config.environments["production"].env == {"NODE_ENV": "production"}
    assert config.environments["staging"].env == {"NODE_ENV": "staging"}
    assert "SESSION_SECRET" not in config.env
    assert any(n.startswith("DATABASE_URL now comes from headway (databases.db)") for n in node_pair.notes)


def test_pair_secrets_files_and_notes(node_pair: ComposeConversion) -> None:
    assert node_pair.secrets == {"production": [str(NODE / ".env.prod")],
                                 "staging": [str(NODE / ".env.staging")]}
    prod_notes = [n for n in node_pair.notes if n.startswith("production:")]
    assert any(".headway/secrets.production" in n and "SESSION_SECRET" in n for n in prod_notes)
    assert any("JWT_SECRET" in n for n in prod_notes)  # key names from the env file may be shown
    # the database's own password is generated by headway: not asked for
    assert not any("also add" in n and "MYSQL" in n for n in prod_notes)
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
    assert config.env == {"ENVIRONMENT": "production"}  # DATABASE_URL and REDIS_URL come from the databases
    secrets_note = next(n for n in fastapi.notes if n.startswith("production: .headway/secrets.production"))
    assert "API_KEY" in secrets_note
    for name in ("DATABASE_URL", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert name not in secrets_note
    assert fastapi.secrets == {"production": [str(FASTAPI / ".env")]}
    _assert_no_secret_values(fastapi)


def test_fastapi_databases(fastapi: ComposeConversion) -> None:
    config = _config(fastapi)
    assert config.accessories == {}
    assert list(config.databases) == ["postgres", "redis"]
    pg, redis = config.databases["postgres"], config.databases["redis"]
    assert (pg.engine, pg.version, pg.database, pg.user) == ("postgres", "15-alpine", "tracker", "tracker")
    assert (redis.engine, redis.version) == ("redis", "7-alpine")
    assert pg.backup.schedule == redis.backup.schedule == "0 3 * * *"
    text = "\n".join(fastapi.notes)
    assert "nginx: proxy" in text
    assert "init.sql" in text and "init scripts do not run" in text
    assert "redis: command `redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}` not converted" in text
    assert "postgres: a managed postgres database" in text


def test_fastapi_conversion_resolves_once_secrets_exist(fastapi: ComposeConversion, tmp_path: Path) -> None:
    secrets = tmp_path / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text("API_KEY=x\nSECRET_KEY=y\n")
    secrets.chmod(0o600)
    target = resolve(_config(fastapi), "production", tmp_path)
    assert target.roles["worker"].replicas == 3
    assert "DATABASE_URL" not in target.container_env(target.roles["web"])


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
            image: valkey/valkey:8
            healthcheck:
              test: ["CMD-SHELL", "valkey-cli -a $$REDIS_PASSWORD ping | grep PONG"]
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
    assert cache.health.argv == ["sh", "-c", "valkey-cli -a $REDIS_PASSWORD ping | grep PONG"]
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
    assert set(config.databases) == {"db", "cache"}
    assert config.databases["db"].database == "app"
    assert any("cache: command `redis-server --requirepass ${CACHE_PASSWORD}` not converted" in n
               for n in conv.notes)
    note = next(n for n in conv.notes if n.startswith("production: .headway/secrets.production"))
    for name in ("STRIPE_SECRET_KEY", "ACCESS_TOKEN"):
        assert name in note
    for name in ("DATABASE_URL", "POSTGRES_PASSWORD"):  # headway sets the URL and generates the password
        assert name not in note
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


# --- Incident Tracker: React SPA behind nginx + FastAPI + postgres, each service its own Dockerfile ----------

TRACKER = FIXTURES / "incident-tracker"


@pytest.fixture(scope="module")
def tracker() -> ComposeConversion:
    return convert_from([str(TRACKER / "deploy" / "prod-docker-compose.yml")], output_dir=TRACKER)


def test_tracker_has_one_http_role_per_service_on_its_own_path(tracker: ComposeConversion) -> None:
    config = _config(tracker)
    assert config.app == "incident-tracker"  # the folder above deploy/
    assert list(config.roles) == ["frontend", "backend"]
    frontend, backend = config.roles["frontend"], config.roles["backend"]
    assert (frontend.path, frontend.port, frontend.strip_prefix) == ("/", 80, False)  # nginx.conf: / -> :8080
    assert (backend.path, backend.port, backend.strip_prefix) == ("/api", 8000, False)  # /api/ -> :8000, no URI
    assert config.web_role == "frontend"
    assert config.http_roles == ["frontend", "backend"]
    assert config.environments["production"].port == 8080  # what the frontend published
    assert config.environments["production"].domains == ["inctra.example.com"]  # nginx server_name


def test_tracker_images_are_per_role_and_rebased_to_the_output_folder(tracker: ComposeConversion) -> None:
    config = _config(tracker)
    assert isinstance(config.image, ImageBuild)
    assert (config.image.context, config.image.dockerfile, config.image.target) == (".", "Dockerfile.backend",
                                                                                    "runtime")
    frontend = config.roles["frontend"].image
    assert isinstance(frontend, ImageBuild)
    assert (frontend.context, frontend.dockerfile) == (".", "Dockerfile.frontend")
    assert config.roles["backend"].image is None  # the app's image, which also runs `release:`


def test_tracker_command_release_and_health_come_from_the_dockerfile(tracker: ComposeConversion) -> None:
    config = _config(tracker)
    backend = config.roles["backend"]
    assert backend.command == "uv run uvicorn main:app --host 0.0.0.0 --port 8000"
    assert config.release == "uv run alembic upgrade head"
    assert isinstance(backend.health, HttpHealth)  # HEALTHCHECK CMD curl -f http://localhost:8000/api/health
    assert (backend.health.path, backend.health.interval, backend.health.timeout,
            backend.health.attempts) == ("/api/health", 10.0, 3.0, 5)
    frontend = config.roles["frontend"]
    assert frontend.command is None  # nginx's own CMD
    assert isinstance(frontend.health, HttpHealth) and frontend.health.path == "/"  # wget -q --spider ... || exit 1
    assert (frontend.health.interval, frontend.health.attempts) == (30.0, 3)
    text = "\n".join(tracker.notes)
    assert "command taken from the CMD of Dockerfile.backend" in text
    assert "HEALTHCHECK of Dockerfile.backend" in text


def test_tracker_postgres_is_a_managed_database(tracker: ComposeConversion) -> None:
    config = _config(tracker)
    db = config.databases["postgres"]
    assert (db.engine, db.version) == ("postgres", "15")
    assert db.backup.schedule == "0 3 * * *"
    assert "DATABASE_URL" not in config.env and "DATABASE_URL" not in config.roles["backend"].env
    assert "POSTGRES_PASSWORD" not in config.roles["backend"].env
    note = next(n for n in tracker.notes if n.startswith("production: start .headway/secrets.production"))
    assert "JWT_SECRET" in note.split("; leave out")[0]  # an app secret, kept
    assert "leave out DATABASE_URL: headway sets it" in note
    assert "POSTGRES_PASSWORD set the compose database's password" in note
    assert any("base_schema.sql" in n and "init scripts do not run" in n for n in tracker.notes)
    _assert_no_secret_values(tracker)


def test_tracker_resolves(tracker: ComposeConversion, tmp_path: Path) -> None:
    target = resolve(_config(tracker), "production", tmp_path)
    assert [r.name for r in target.http_roles] == ["frontend", "backend"]
    assert isinstance(target.roles["frontend"].image, ImageBuild)
    assert target.roles["frontend"].image.dockerfile == "Dockerfile.frontend"
    assert target.roles["backend"].image.dockerfile == "Dockerfile.backend"  # type: ignore[union-attr]


# --- API + worker: Dockerfile and Dockerfile.worker, postgres + redis, prod and staging files ----------------

APIW = FIXTURES / "api-worker"


@pytest.fixture(scope="module")
def api_worker() -> ComposeConversion:
    return convert_from([f"{APIW / 'docker-compose.prod.yml'}:production",
                         f"{APIW / 'docker-compose.staging.yml'}:staging"])


def test_api_worker_roles_and_images(api_worker: ComposeConversion) -> None:
    config = _config(api_worker)
    assert config.app == "myapp"
    assert list(config.roles) == ["web", "worker"]
    web, worker = config.roles["web"], config.roles["worker"]
    assert web.image is None and web.port == 3000 and web.command == "node dist/main.js"  # CMD of Dockerfile
    assert isinstance(web.health, HttpHealth) and (web.health.path, web.health.attempts) == ("/health", 20)
    assert isinstance(worker.image, ImageBuild) and worker.image.dockerfile == "Dockerfile.worker"
    assert worker.image.name == "myapp-worker"
    assert worker.port is None and worker.command == "node dist/worker.js"
    assert worker.stop_timeout == 60.0
    assert config.release == "npx prisma migrate deploy"  # the one-off `migrate` service
    assert (web.env, worker.env) == ({"MODE": "api", "ENABLE_SWAGGER": "false"},
                                     {"MODE": "worker", "QUEUE_CONCURRENCY": "10"})


def test_api_worker_environments_and_databases(api_worker: ComposeConversion) -> None:
    config = _config(api_worker)
    prod, staging = config.environments["production"], config.environments["staging"]
    assert (prod.port, staging.port) == (3000, 3001)
    assert (config.roles["web"].replicas, config.roles["worker"].replicas) == (3, 5)
    assert staging.replicas == {"web": 1, "worker": 1}
    assert (prod.env, staging.env) == ({"CORS_ORIGIN": "https://app.example.com"},
                                       {"CORS_ORIGIN": "https://staging.app.example.com"})
    pg, redis = config.databases["postgres"], config.databases["redis"]
    assert (pg.engine, pg.version, pg.database, pg.user) == ("postgres", "16-alpine", "myapp", "myapp")
    assert (redis.engine, redis.version) == ("redis", "7-alpine")
    assert api_worker.secrets == {"production": [str(APIW / ".env.production")],
                                  "staging": [str(APIW / ".env.staging")]}
    _assert_no_secret_values(api_worker)


def test_api_worker_resolves_per_environment(api_worker: ComposeConversion, tmp_path: Path) -> None:
    for env in ("production", "staging"):
        target = resolve(_config(api_worker), env, tmp_path)
        assert target.roles["worker"].image.dockerfile == "Dockerfile.worker"  # type: ignore[union-attr]
        assert "DATABASE_URL" not in target.container_env(target.roles["web"])


# --- base + override files -------------------------------------------------------------------------------------

OVERRIDE = FIXTURES / "override"


def test_a_directory_gives_compose_and_its_override_merged() -> None:
    conv = convert_from([str(OVERRIDE)])
    config = _config(conv)
    assert list(config.environments) == ["production"]
    web = config.roles["web"]
    assert web.command == "gunicorn app.wsgi -b 0.0.0.0:8000 --workers 4"  # from compose.yml
    assert isinstance(web.health, HttpHealth) and (web.health.path, web.health.interval) == ("/healthz", 2.0)
    assert config.env == {"APP_ENV": "production", "LOG_LEVEL": "debug"}  # the override wins per key
    assert config.environments["production"].port == 8000  # ports: both kept, the base's first
    assert any("5678" in n for n in conv.notes)
    assert "compose.yml + compose.override.yml" in conv.yaml_text
    assert (config.databases["db"].engine, config.databases["db"].version) == ("mariadb", "10.11")
    # the same as naming both files
    pair = convert_from([str(OVERRIDE / "compose.yml"), str(OVERRIDE / "compose.override.yml")])
    assert _config(pair) == config


def test_environment_files_over_one_base_become_environments() -> None:
    conv = convert_from([str(OVERRIDE / "compose.yml"), str(OVERRIDE / "compose.prod.yml"),
                         str(OVERRIDE / "compose.staging.yml")])
    config = _config(conv)
    assert list(config.environments) == ["production", "staging"]
    assert config.roles["web"].replicas == 3  # compose.prod.yml
    assert config.environments["staging"].replicas == {"web": 1}
    assert config.environments["staging"].port == 8001  # `ports: !override` replaced the base's
    assert config.environments["staging"].env == {"APP_ENV": "staging"}
    health = config.roles["web"].health
    assert isinstance(health, HttpHealth) and (health.interval, health.attempts) == (5.0, 10)


def test_dash_f_files_merge_into_one_environment_named_by_suffix() -> None:
    conv = convert_from([], [str(OVERRIDE / "compose.yml"), f"{OVERRIDE / 'compose.staging.yml'}:stage2"])
    config = _config(conv)
    assert list(config.environments) == ["stage2"]
    assert config.environments["stage2"].port == 8001
    assert config.roles["web"].command == "gunicorn app.wsgi -b 0.0.0.0:8000 --workers 1"


def test_file_env_suffix_names_the_environment() -> None:
    conv = convert_from([f"{FASTAPI / 'docker-compose.yml'}:live-eu"])
    assert list(_config(conv).environments) == ["live-eu"]
    with pytest.raises(ConfigError) as err:
        convert_from([f"{FASTAPI / 'docker-compose.yml'}:Prod"])
    assert "not a valid environment name" in err.value.message and err.value.fix


def test_merge_documents_follows_compose_rules() -> None:
    base = {"services": {"web": {
        "image": "a", "command": ["run", "--a"], "ports": ["80:80", "443:443"], "expose": ["9000"],
        "environment": ["A=1", "B=2"], "volumes": ["data:/data", "./conf:/etc/conf:ro"], "labels": {"x": "1"},
        "healthcheck": {"test": ["CMD", "a"], "interval": "5s"}, "env_file": ".env"}}}
    override = {"services": {"web": {
        "command": ["serve"], "ports": ["80:80", "8080:8080"], "expose": ["9001"], "environment": {"B": "3", "C": "4"},
        "volumes": ["other:/data"], "labels": ["y=2"], "healthcheck": {"test": ["CMD", "b"]},
        "env_file": [".env.local"]}}}
    merged = merge_documents([base, override])["services"]["web"]
    assert merged["command"] == ["serve"]  # replaced, never appended
    assert merged["ports"] == ["80:80", "443:443", "8080:8080"]
    assert merged["expose"] == ["9000", "9001"]
    assert merged["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert merged["volumes"] == ["other:/data", "./conf:/etc/conf:ro"]  # by container path
    assert merged["labels"] == {"x": "1", "y": "2"}
    assert merged["healthcheck"] == {"test": ["CMD", "b"], "interval": "5s"}
    assert merged["env_file"] == [".env", ".env.local"]
    assert merged["image"] == "a"


def test_reset_and_override_tags(tmp_path: Path) -> None:
    _write(tmp_path, """
        services:
          web:
            build: .
            ports: ["3000:3000"]
            environment: {A: "1", B: "2"}
            healthcheck:
              test: ["CMD", "curl", "-f", "http://localhost:3000/health"]
        """, "compose.yml")
    _write(tmp_path, """
        services:
          web:
            healthcheck: !reset null
            environment: !override {C: "3"}
        """, "compose.override.yml")
    config = _config(convert_from([str(tmp_path)]))
    assert config.roles["web"].health is None
    assert config.env == {"C": "3"}


# --- Dockerfile facts, health probes, HTTP roles ----------------------------------------------------------------

def test_port_and_command_from_a_multi_stage_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(textwrap.dedent("""\
        ARG PORT=9000
        FROM python:3.11-slim AS base
        EXPOSE 1234
        CMD ["python", "-m", "wrong"]

        FROM base AS release
        ARG PORT
        ENV PORT=${PORT}
        EXPOSE ${PORT}
        CMD python -m app.migrate && \\
            exec gunicorn app:app -b 0.0.0.0:${PORT}

        FROM base AS debug
        CMD ["python", "-m", "pdb"]
        """))
    path = _write(tmp_path, """
        services:
          app:
            build: {context: ., target: release}
        """)
    conv = convert_compose(path, app="svc")
    config = _config(conv)
    assert config.roles["web"].port == 1234  # EXPOSE inherited from `base`, before the stage's own 9000
    assert config.release == "python -m app.migrate"
    assert config.roles["web"].argv == ["sh", "-c", "gunicorn app:app -b 0.0.0.0:${PORT}"]  # the shell expands it
    assert "PORT" not in "\n".join(n for n in conv.notes if ".headway/secrets" in n)  # the image defines it


def test_entrypoint_images_keep_their_cmd(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text('FROM node:20\nCMD ["node", "x.js"]\nFROM 0\n'
                                         'ENTRYPOINT ["docker-entrypoint.sh"]\nEXPOSE 3000/tcp\n')
    conv = convert_compose(_write(tmp_path, "services:\n  app:\n    build: .\n"), app="svc")
    config = _config(conv)
    assert config.roles["web"].command is None and config.roles["web"].port == 3000
    assert any("ENTRYPOINT" in n and "release:" in n for n in conv.notes)


def test_missing_dockerfile_is_a_note_not_an_error(tmp_path: Path) -> None:
    conv = convert_compose(_write(tmp_path, "services:\n  app:\n    build: {context: ., dockerfile: Nope}\n"),
                           app="svc")
    assert any("Nope not found" in n for n in conv.notes)
    assert any("no port found" in n for n in conv.notes)


@pytest.mark.parametrize(("test", "path"), [
    (["CMD", "curl", "-f", "http://localhost:8000/ready"], "/ready"),
    (["CMD-SHELL", "curl -fsS http://127.0.0.1:8000/health || exit 1"], "/health"),
    (["CMD-SHELL", "wget -q --spider http://localhost:8000/h?deep=1 || exit 1"], "/h?deep=1"),
    ("wget -qO- http://localhost:8000 || exit 1", "/"),
    (["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/hz')"], "/hz"),
])
def test_http_probes_become_http_checks(tmp_path: Path, test: object, path: str) -> None:
    import json

    compose = {"services": {"web": {"build": ".", "ports": ["8000:8000"],
                                    "healthcheck": {"test": test, "interval": "3s", "timeout": "1s", "retries": 7}}}}
    (tmp_path / "docker-compose.yml").write_text(json.dumps(compose))
    health = _config(convert_compose(tmp_path / "docker-compose.yml", app="svc")).roles["web"].health
    assert isinstance(health, HttpHealth)
    assert (health.path, health.interval, health.timeout, health.attempts) == (path, 3.0, 1.0, 7)


def test_a_probe_that_reads_the_body_stays_a_command(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          web:
            build: .
            ports: ["8000:8000"]
            healthcheck:
              test: ["CMD-SHELL", "curl -fs http://localhost:8000/health | grep -q ok"]
        """)
    conv = convert_compose(path, app="svc")
    assert isinstance(_config(conv).roles["web"].health, CommandHealth)
    assert any("does more than request a URL" in n for n in conv.notes)


def test_two_services_publishing_http_share_the_port_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          api:
            build: {context: ./api}
            ports: ["8000:8000"]
          ui:
            build: {context: ./ui}
            ports: ["3000:80"]
          worker:
            build: {context: ./api}
            command: python -m worker
        """)
    config = _config(convert_compose(path, app="svc"))
    assert {n: (r.path, r.port) for n, r in config.roles.items() if r.port} == {"ui": ("/", 80),
                                                                                "api": ("/api", 8000)}
    assert config.environments["production"].port == 3000
    assert config.roles["worker"].image is None and config.roles["ui"].image is not None
    assert isinstance(config.image, ImageBuild) and config.image.context == "./api"


def test_nginx_that_strips_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "default.conf").write_text(textwrap.dedent("""\
        upstream api_up { server backend:9000; }
        server {
          listen 80;
          location /backend/ { proxy_pass http://api_up/; }   # the API serves at /
          location / { proxy_pass http://frontend:80; }
        }
        """))
    path = _write(tmp_path, """
        services:
          proxy:
            image: nginx:1.25
            ports: ["80:80"]
            volumes: ["./nginx/default.conf:/etc/nginx/conf.d/default.conf:ro"]
          frontend:
            build: {context: ., dockerfile: Dockerfile.web}
          backend:
            build: .
            expose: ["9000"]
        """)
    config = _config(convert_compose(path, app="svc"))
    backend = config.roles["backend"]
    assert (backend.path, backend.strip_prefix, backend.port) == ("/backend", True, 9000)
    assert config.roles["frontend"].path == "/"


# --- more bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "phrase"), [
    ("apiVersion: apps/v1\nkind: Deployment\n", "Kubernetes"),
    ("app: x\nroles: {web: {port: 80}}\nenvironments: {production: {}}\n", "already a headway.yml"),
    ("- a\n- b\n", "not a compose file"),
    ("", "not a compose file"),
])
def test_files_that_are_not_compose_files(tmp_path: Path, text: str, phrase: str) -> None:
    assert phrase in _error(_write(tmp_path, text)).message


def test_an_override_without_its_base(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  web:\n    environment: {A: '1'}\n", "compose.override.yml")
    err = _error(path)
    assert "only changes a base compose file" in err.message and "--from compose.yml" in (err.fix or "")
    partial = _write(tmp_path, "services:\n  web:\n    ports: ['80:80']\n", "docker-compose.yml")
    assert "neither `image` nor `build`" in _error(partial).message


def test_a_directory_without_compose_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        convert_from([str(tmp_path)])
    assert "no compose file in this directory" in err.value.message and "compose.yml" in (err.value.fix or "")


# --- compose secrets: files under /run/secrets -----------------------------------------------------------------

FILE_SECRETS = FIXTURES / "file-secrets"


@pytest.fixture(scope="module")
def file_secrets() -> ComposeConversion:
    return convert_compose(FILE_SECRETS / "docker-compose.yml")


def test_compose_secrets_become_file_secrets_of_the_same_name(file_secrets: ComposeConversion) -> None:
    config = _config(file_secrets)
    assert {n: s.as_ for n, s in config.secrets.items()} == {
        "jwt_secret": "file", "stripe_key": "file", "signing_pem": "file", "mongo_root_password": "file"}
    assert all(s.from_ is None for s in config.secrets.values())  # the values stay out of headway.yml
    assert "unused_token" not in config.secrets and "db_password" not in config.secrets
    text = "\n".join(file_secrets.notes)
    assert "not converted; headway passes secrets as environment variables" not in text
    assert "top-level `secrets` not converted" not in text
    assert "top-level secret unused_token: no service uses it" in text
    _assert_no_secret_values(file_secrets)


def test_each_role_names_the_secrets_its_service_had(file_secrets: ComposeConversion) -> None:
    config = _config(file_secrets)
    web, worker = config.roles["web"], config.roles["worker"]
    # its compose secrets as files, and the env vars it read from secrets (a literal SESSION_SECRET)
    assert web.secrets == ["jwt_secret", "stripe_key", "signing_pem", "SESSION_SECRET"]
    assert worker.secrets == ["stripe_key", "QUEUE_TOKEN"]
    assert config.accessories["mongo"].secrets == ["mongo_root_password"]
    assert any("SESSION_SECRET (compose had the value written out)" in n for n in file_secrets.notes)


def test_env_vars_that_point_at_secret_files(file_secrets: ComposeConversion) -> None:
    config = _config(file_secrets)
    env = config.roles["web"].env
    assert env["JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"  # the app's own name: kept, the path still works
    assert "stripe_key_FILE" not in env  # exactly the variable headway sets
    assert env["SIGNING_KEY_PATH"] == "/run/secrets/signing_pem"  # `target: signing.pem` is no secret name
    assert "DB_PASSWORD_FILE" not in env and "DB_PASSWORD_FILE" not in config.env  # the managed db's password
    mongo_env = config.accessories["mongo"].env
    assert mongo_env["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo_root_password"
    text = "\n".join(file_secrets.notes)
    assert "stripe_key_FILE dropped: headway sets it" in text
    assert "secret signing-key was /run/secrets/signing.pem; headway mounts it at /run/secrets/signing_pem" in text
    assert "secret db_password dropped: it was the password of the database db" in text
    assert "db: secret db_password not needed" in text
    assert "POSTGRES_PASSWORD_FILE" not in text  # headway configures the database's password itself


def test_notes_say_how_to_give_each_file_secret_its_value(file_secrets: ComposeConversion) -> None:
    note = next(n for n in file_secrets.notes if "give the file secrets their values" in n)
    jwt = FILE_SECRETS / "secrets" / "jwt.txt"
    assert f"`headway secrets set jwt_secret -e production < {jwt}`" in note
    assert '`printf %s "$STRIPE_KEY" | headway secrets set stripe_key -e production`' in note
    assert f"`from: cat {FILE_SECRETS / 'secrets' / 'signing.pem'}` under secrets.signing_pem" in note
    assert "`headway secrets generate mongo_root_password -e production`" in note
    assert "unused" not in note and "db_password" not in note


def _headway(root: Path, command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command from a note, as a user pastes it into a shell in the app's folder."""
    command = command.replace("headway secrets", f"{shlex.quote(sys.executable)} -m headway secrets")
    return subprocess.run(["bash", "-c", command], cwd=root, text=True, capture_output=True, timeout=60,
                          env={**os.environ, **(env or {}), "HEADWAY_STATE_DIR": str(root / ".state")})


def test_following_the_notes_gives_every_role_its_secrets(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    shutil.copytree(FILE_SECRETS, project)
    cwd = os.getcwd()
    os.chdir(project)  # `headway init --from docker-compose.yml` in the app's folder
    try:
        result = write_config(project, [Path("docker-compose.yml")])
    finally:
        os.chdir(cwd)
    note = next(n for n in result.notes if "give the file secrets their values" in n)
    commands = [c for c in re.findall(r"`([^`]+)`", note) if c.startswith(("headway", "printf"))]
    assert len(commands) == 4  # jwt_secret, stripe_key, mongo_root_password (set and generate)
    typed = [c for c in commands if c.startswith("headway secrets set") and "<" not in c]
    assert typed == ["headway secrets set mongo_root_password -e production"]  # asks on a terminal: generated here
    for command in (c for c in commands if c not in typed):
        done = _headway(project, command, {"STRIPE_KEY": "sk-hunter2-stripe"})
        assert done.returncode == 0, done.stderr
        assert FAKE_SECRET not in done.stdout + done.stderr
    for name in ("SESSION_SECRET", "QUEUE_TOKEN"):
        assert _headway(project, f"headway secrets generate {name} -e production").returncode == 0
    config_text = (project / "headway.yml").read_text()
    config_text = config_text.replace("signing_pem: {as: file}",
                                      "signing_pem: {as: file, from: cat secrets/signing.pem}")  # as the note says
    (project / "headway.yml").write_text(config_text)

    target = resolve(parse_config(config_text, "headway.yml"), "production", project)
    check_named_secrets(target.config, "production", target.secrets, project / ".headway" / "secrets.production")
    web, worker = target.roles["web"], target.roles["worker"]
    files = target.secret_files(target.role_secrets(web))
    assert files["jwt_secret"] == "hunter2-jwt"  # the file's contents, its trailing newline dropped
    assert files["stripe_key"] == "sk-hunter2-stripe"
    assert files["signing_pem"].startswith("-----BEGIN PRIVATE KEY-----\n")
    env = target.container_env(web)
    assert env["jwt_secret_FILE"] == env["JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"
    assert env["SIGNING_KEY_PATH"] == env["signing_pem_FILE"] == "/run/secrets/signing_pem"
    assert "jwt_secret" not in env and "QUEUE_TOKEN" not in env and "SESSION_SECRET" in env
    worker_env = target.container_env(worker)
    assert set(target.secret_files(target.role_secrets(worker))) == {"stripe_key"}
    assert "QUEUE_TOKEN" in worker_env and "SESSION_SECRET" not in worker_env and "jwt_secret_FILE" not in worker_env


def test_file_secrets_across_environments(tmp_path: Path) -> None:
    _write(tmp_path, """
        services:
          web:
            build: .
            command: ["node", "server.js"]
            ports: ["3000:3000"]
            environment:
              - TOKEN_FILE=/run/secrets/api-token
            env_file: .env.prod
            secrets: [api-token]
          worker:
            build: .
            command: ["node", "worker.js"]
        secrets:
          api-token: {file: ./token.txt}
        """, "docker-compose.prod.yml")
    (tmp_path / ".env.prod").write_text("MAIL_PASSWORD=hunter2-mail\nLOG_LEVEL=info\n")
    _write(tmp_path, """
        services:
          web:
            build: .
            command: ["node", "server.js"]
            ports: ["3001:3000"]
            environment: {TOKEN_FILE: /run/secrets/api-token}
            secrets: [{source: staging_token, target: api-token}]
        secrets:
          staging_token: {environment: STAGING_API_TOKEN}
        """, "docker-compose.staging.yml")
    conv = merge_compose_files([tmp_path / "docker-compose.prod.yml", tmp_path / "docker-compose.staging.yml"])
    _assert_no_secret_values(conv)
    config = _config(conv)
    assert list(config.secrets) == ["api_token"]  # a valid name near the compose one
    web = config.roles["web"]
    assert web.secrets == ["api_token", "MAIL_PASSWORD", "LOG_LEVEL"]  # what the env file gave it, too
    assert config.roles["worker"].secrets == []  # compose gave it none
    assert web.env["TOKEN_FILE"] == "/run/secrets/api_token"
    notes = "\n".join(conv.notes)
    assert f"`headway secrets set api_token -e production < {tmp_path / 'token.txt'}`" in notes
    assert '`printf %s "$STAGING_API_TOKEN" | headway secrets set api_token -e staging`' in notes
    assert "staging: roles.web.secrets names MAIL_PASSWORD, LOG_LEVEL for another environment" in notes
    assert "production: roles.web.secrets names" not in notes


def test_secrets_only_on_an_accessory_leave_roles_unscoped(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        services:
          web:
            build: .
            command: ["node", "server.js"]
            ports: ["3000:3000"]
            environment: {API_KEY: "${API_KEY}"}
          queue:
            image: rabbitmq:3
            environment: {RABBITMQ_DEFAULT_PASS_FILE: /run/secrets/rabbit_pass}
            secrets: [rabbit_pass]
        secrets:
          rabbit_pass: {external: true}
        """)
    conv = convert_compose(path, app="shop")
    config = _config(conv)
    assert config.roles["web"].secrets is None  # gets every secret, as before
    assert config.accessories["queue"].secrets == ["rabbit_pass"]
    assert config.secrets["rabbit_pass"].as_ == "file"
    assert config.accessories["queue"].env == {"RABBITMQ_DEFAULT_PASS_FILE": "/run/secrets/rabbit_pass"}
    note = next(n for n in conv.notes if "give the file secrets their values" in n)
    assert "`headway secrets set rabbit_pass -e production` (external in compose" in note


def test_merge_documents_keys_service_secrets_by_target() -> None:
    merged = merge_documents([
        {"services": {"web": {"build": ".", "secrets": ["a", {"source": "b", "target": "key"}]}},
         "secrets": {"a": {"file": "a.txt"}, "b": {"file": "b.txt"}}},
        {"services": {"web": {"secrets": [{"source": "c", "target": "key"}]}}, "secrets": {"c": {"external": True}}},
    ])
    assert merged["services"]["web"]["secrets"] == ["a", {"source": "c", "target": "key"}]
    assert set(merged["secrets"]) == {"a", "b", "c"}
