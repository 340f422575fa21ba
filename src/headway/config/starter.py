"""The commented starter headway.yml that `headway init` writes."""

from __future__ import annotations

import re

from headway.config.model import NAME
from headway.errors import ConfigError

_PLACEHOLDER = "__APP__"

# A literal template rather than a YAML dump, so every comment survives. Validated by the tests.
_TEMPLATE = """\
# headway.yml: how headway builds, releases and runs __APP__.
# Durations take 500ms, 5s, 2m or 1h; a bare number means seconds.
# Secret values never go in this file: put them in .headway/secrets.<environment> (KEY=value, chmod 600).

# The app's name: lower-case letters, digits and dashes; it prefixes containers, volumes and images.
app: __APP__

# How the release image is built (`docker build`), once per deploy.
image:
  context: .                 # build context, relative to this file
  dockerfile: Dockerfile     # Dockerfile inside the context
  # target: production       # multi-stage build: the stage to ship
  # name: registry.example.com/__APP__   # image repository; defaults to the app name
  # args:                    # build arguments (never secrets: they stay in the image)
  #   NODE_ENV: production

# Roles: the processes run from the release image. Exactly one role may serve HTTP (has `port`).
roles:
  web:
    port: 3000               # container port the app listens on; the proxy sends traffic here
    command: npm start       # overrides the image's CMD; leave out to use the image's own
    replicas: 2              # containers per environment (override per environment below)
    stop_timeout: 10s        # grace period between SIGTERM and SIGKILL
    health:                  # new containers get traffic only after this check passes
      path: /health          # HTTP path requested on each new container
      interval: 1s           # time between attempts
      timeout: 2s            # time one attempt may take
      attempts: 60           # attempts before the deploy fails and the old release keeps serving
      start_period: 5s       # failures during this warm-up do not count
      status: 200            # expected HTTP status
  worker:
    command: npm run worker  # a background process: no port, no traffic
    replicas: 1              # 0 keeps the role defined but stopped
    health:
      stays_running: 10s     # healthy once it has run this long without exiting
      # command: ./bin/worker-healthcheck   # or: a command that exits 0 when healthy

# Release command: runs once per deploy in a one-off container of the new image, before traffic moves.
# If it fails, the deploy stops and the running release is untouched. Typical migrations:
#   alembic upgrade head | npx prisma migrate deploy | python manage.py migrate | bin/rails db:migrate
release: npx prisma migrate deploy

# Accessories: long-lived services the app needs (database, cache). Started once, kept across deploys.
accessories:
  db:
    image: postgres:15       # pin a major version; upgrades are a deliberate step
    env:                     # plain settings for the accessory
      POSTGRES_USER: __APP__
      POSTGRES_DB: __APP__
    secrets:                 # names of values taken from the secrets file, passed as env
      - POSTGRES_PASSWORD
    volumes:                 # NAME:/path, one named volume per environment; survives deploys
      - data:/var/lib/postgresql/data
    health:                  # the app is deployed only once this passes
      command: pg_isready -U __APP__
      interval: 2s
      attempts: 30
  redis:
    image: redis:7
    volumes:
      - data:/data
    health:
      command: redis-cli ping

# Environment variables for every role. ${NAME} is filled in from the secrets file (or from env itself).
# Accessories are reachable from the app by their name (db, redis).
env:
  NODE_ENV: production
  DATABASE_URL: postgres://__APP__:${POSTGRES_PASSWORD}@db:5432/__APP__
  REDIS_URL: redis://redis:6379/0

# How deploys behave (each environment may override the whole block under its own `deploy:`).
deploy:
  drain_timeout: 30s         # time old containers get to finish in-flight requests
  health_deadline: 2m        # the longest a deploy waits for new containers to become healthy
  release_timeout: 10m       # the longest the release command may run
  retain: 5                  # past releases kept, ready for a rollback
  warm_standby: false        # true keeps the previous release running for an instant rollback
  lock_wait: 0s              # how long to wait for another deploy to finish; 0 fails at once

# Environments: where and how the app runs. Deploy one with `headway deploy -e <name>`.
environments:
  production:
    hosts: [local]           # this version deploys to the local Docker engine
    port: 8080               # published port on the proxy; each environment needs its own
    domains:                 # host names the proxy answers for; the first is the health-check Host
      - __APP__.example.com
    replicas:                # per-environment replica counts, by role
      web: 3
    # resources:             # per-role limits in this environment
    #   web: {cpus: 1, memory: 512m}
    # secrets_file: .headway/secrets.production   # the default location
  staging:
    port: 8081
    domains:
      - staging.__APP__.example.com
    replicas:
      web: 1
    env:                     # extra or overriding variables for this environment only
      NODE_ENV: staging
    seed: npm run db:seed    # fills this environment's database with sample data
"""


def suggest_app_name(text: str) -> str:
    """A valid app name derived from any text (a folder name, a compose project name)."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower())
    name = re.sub(r"^[^a-z]+", "", name)[:32].strip("-")
    return name or "app"


def check_app_name(app: str) -> str:
    if not re.fullmatch(NAME, app):
        raise ConfigError(f"{app!r} is not a valid app name",
                          f"use lower-case letters, digits and dashes, starting with a letter, "
                          f"at most 32 characters, e.g. {suggest_app_name(app)!r}")
    return app


def starter_config(app: str) -> str:
    """A fully commented headway.yml for `app`, valid as written."""
    return _TEMPLATE.replace(_PLACEHOLDER, check_app_name(app))
