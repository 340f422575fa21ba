"""The commented starter headway.yml that `headway init` writes."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from pathlib import Path

from headway.config.model import NAME
from headway.errors import ConfigError

_PLACEHOLDER = "__APP__"

# A literal template rather than a YAML dump, so every comment survives. Validated by the tests.
_TEMPLATE = """\
# headway.yml: how headway builds, releases and runs __APP__.
# Durations take 500ms, 5s, 2m or 1h; a bare number means seconds.
# Secret values never go in this file: they live in .headway/secrets.<environment> (KEY=value, chmod 600), set
# with `headway secrets set NAME -e ENV` (the value from stdin or a hidden prompt) or `headway secrets generate
# NAME -e ENV` (a strong random value, never printed); `headway secrets list -e ENV` shows who gets what.

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

# Roles: the processes run from the release image. A role with `port` serves HTTP through the proxy; with
# several (a frontend and an API), each takes its own `path` (path: /api) and may build its own
# `image: {dockerfile: Dockerfile.frontend, context: .}`.
roles:
  web:
    port: 3000               # container port the app listens on; the proxy sends traffic here
    command: npm start       # overrides the image's CMD; leave out to use the image's own
    replicas: 2              # containers per environment (override per environment below)
    stop_timeout: 10s        # grace period between SIGTERM and SIGKILL
    # secrets: [JWT_SECRET, POSTGRES_PASSWORD]   # only these secrets; a role without the list gets every one
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
    # secrets: [STRIPE_KEY]   # only this one; ${POSTGRES_PASSWORD} in `env:` below is filled in all the same

# Secrets: each one is an env var of the roles that get it, unless declared here as a file. `as: file` puts it
# in /run/secrets/NAME (read-only, in memory) and sets NAME_FILE=/run/secrets/NAME instead, so it never shows in
# `docker inspect`; `from:` takes the value from a command at deploy time instead of the secrets file.
# A new random one: `headway secrets generate JWT_SECRET -e production` (and -e staging).
# secrets:
#   JWT_SECRET: {as: file}   # the app reads the file named by $JWT_SECRET_FILE
#   STRIPE_KEY: {from: "op read op://production/stripe/secret-key"}   # printed by a password manager's CLI

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
    secrets:                 # names from the secrets file, passed as env (as files with `as: file` above)
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

# Managed databases: instead of the db/redis accessories above, headway can run the database itself. It
# creates the credentials (per environment, never in this file), gives the app DATABASE_URL (REDIS_URL for
# redis), backs it up before each deploy and on a schedule, and verifies and restores backups
# (`headway db backup|verify|restore`). To use one, remove the accessory and DATABASE_URL from env below:
# databases:
#   db:
#     engine: postgres       # postgres | mysql | mariadb | redis
#     version: "15"          # the image tag; upgrades take a backup first
#     backup:
#       schedule: "0 3 * * *"        # cron syntax; `headway db schedule -e ENV --install` adds the cron entry
#       retention: {last: 7, daily: 7, weekly: 4, monthly: 6}
#       before_deploy: always        # a backup before each deploy's release command

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
    port: __PORT_PRODUCTION__               # published port on the proxy; each environment needs its own
    domains:                 # host names the proxy answers for; the first is the health-check Host
      - __APP__.example.com
    replicas:                # per-environment replica counts, by role
      web: 3
    # resources:             # per-role limits in this environment
    #   web: {cpus: 1, memory: 512m}
    # secrets_file: .headway/secrets.production   # the default location
  staging:
    port: __PORT_STAGING__
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


def port_is_free(port: int) -> bool:
    """Nothing on this host listens on `port` (TCP, any address): binding it succeeds."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:  # EADDRNOTAVAIL: this address family is not configured
                    return False
    return True


def _claimed_ports(state_dir: Path) -> set[int]:
    """Ports other apps' environments on this host publish through headway's proxy (they may be stopped)."""
    out: set[int] = set()
    for route in sorted((state_dir / "proxy" / "routes").glob("*.json"))[:1000]:
        try:
            data = json.loads(route.read_text())
        except (OSError, ValueError):
            continue
        port = data.get("port") if isinstance(data, dict) else None
        if isinstance(port, int):
            out.add(port)
    return out


def free_environment_ports(preferred: tuple[int, int] = (8080, 8081), *, limit: int = 200,
                           state_dir: Path | None = None) -> tuple[int, int]:
    """Production and staging ports not in use here: the preferred ones when free, else the next free ones."""
    root = state_dir or Path(os.environ.get("HEADWAY_STATE_DIR") or "/var/lib/headway")
    claimed = _claimed_ports(root)
    chosen: list[int] = []
    for wanted in preferred:
        port = wanted
        for _ in range(limit):
            if port not in chosen and port not in claimed and port_is_free(port):
                break
            port += 1
            if port == preferred[1] and wanted == preferred[0]:
                port += 1  # leave staging's default to staging
        else:
            port = wanted
        chosen.append(port)
    return chosen[0], chosen[1]


def starter_config(app: str, ports: tuple[int, int] = (8080, 8081)) -> str:
    """A fully commented headway.yml for `app`, valid as written; `ports`: production's and staging's."""
    text = _TEMPLATE.replace(_PLACEHOLDER, check_app_name(app))
    text = text.replace("port: __PORT_PRODUCTION__               #", f"port: {ports[0]}".ljust(25) + "#")
    return text.replace("__PORT_STAGING__", str(ports[1]))
