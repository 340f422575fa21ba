"""Turning docker-compose files into a headway.yml.

A compose file describes containers; headway.yml describes an app: roles built from its image (or each from
its own), HTTP roles on their paths, a release command, managed databases, accessories, and environments. The
mapping keeps everything that has a headway equivalent and says, in `notes`, what was changed, dropped or needs
a hand; what compose leaves out (port, command, health check) is read from the Dockerfile the service builds.
Which files make which environment, and how overrides merge, is `compose_files`. Secret values are never
copied: only the names of variables appear in the output, and env files are listed so they can become secrets
files. Compose secrets (files under /run/secrets) become `as: file` secrets of the same name, and each role then
names the secrets it gets, as each compose service did.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from headway.config.compose_files import ENV_TOKENS, ComposeSource, env_token, plan_sources
from headway.config.dockerfile import DockerfileError, ImageFacts, parse_dockerfile, read_dockerfile
from headway.config.duration import parse_duration
from headway.config.loader import parse_config
from headway.config.model import NAME
from headway.config.secrets import SECRETS_MOUNT, is_secret_name
from headway.config.starter import check_app_name, suggest_app_name
from headway.data.schema import DEFAULT_VERSIONS
from headway.errors import ConfigError

__all__ = ["ComposeConversion", "convert_compose", "convert_from", "convert_sources", "guess_environment",
           "merge_compose_files"]


@dataclass
class ComposeConversion:
    """The result of a conversion. `secrets` maps environment name -> env files to turn into
    `.headway/secrets.<environment>`; their values are never read into this object."""

    yaml_text: str
    notes: list[str] = field(default_factory=list)
    secrets: dict[str, list[str]] = field(default_factory=dict)


# --- recognising things ------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"PASS(WORD|WD)?|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
_MIGRATE = re.compile(r"\bmigrat(e|ions?)\b|\balembic\b.*\bupgrade\b|\bdb\s+upgrade\b|\bprisma\s+db\s+push\b",
                      re.IGNORECASE)
_SEED = re.compile(r"seed", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:([^@\s]+)@")
_HEALTH_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::(\d+))?(/[^\s'\"`|;&)]*)?")
_COMPOSE_REF = re.compile(
    r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_DOMAIN = r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
_SHELLS = {"sh", "bash", "ash", "dash", "zsh"}
_PROXIES = ("nginx", "traefik", "caddy", "haproxy", "nginx-proxy", "acme-companion", "certbot", "envoy")
# image base name -> (kind, data directory, default health command)
_ACCESSORIES: dict[str, tuple[str, str | None, str | None]] = {
    "postgres": ("database", "/var/lib/postgresql/data", "pg_isready"),
    "postgis": ("database", "/var/lib/postgresql/data", "pg_isready"),
    "timescaledb": ("database", "/var/lib/postgresql/data", "pg_isready"),
    "mysql": ("database", "/var/lib/mysql", "mysqladmin ping -h 127.0.0.1"),
    "mariadb": ("database", "/var/lib/mysql", None),
    "mongo": ("database", "/data/db", 'mongosh --quiet --eval "db.adminCommand(\'ping\')"'),
    "redis": ("cache", "/data", "redis-cli ping"),
    "valkey": ("cache", "/data", "valkey-cli ping"),
    "keydb": ("cache", "/data", "keydb-cli ping"),
    "memcached": ("cache", None, None),
    "rabbitmq": ("service", "/var/lib/rabbitmq", "rabbitmq-diagnostics -q ping"),
    "minio": ("service", "/data", None),
    "elasticsearch": ("service", "/usr/share/elasticsearch/data", None),
    "opensearch": ("service", "/usr/share/opensearch/data", None),
}
_DROPPED = {
    "container_name": "headway names containers itself (one set per release)",
    "depends_on": "headway starts accessories first and waits for their health checks",
    "restart": "headway restarts the containers it runs",
    "networks": "headway puts an app's containers on its own network",
    "links": "containers reach each other by service name",
    "hostname": "headway names containers itself",
}
_HANDLED = {"build", "image", "command", "ports", "expose", "environment", "env_file", "healthcheck", "deploy",
            "volumes", "labels", "scale", "cpus", "mem_limit", "stop_grace_period", "entrypoint", "secrets",
            *_DROPPED}


def guess_environment(path: Path) -> str:
    """`docker-compose.prod.yml` -> production, `compose.staging.yaml` -> staging; otherwise production."""
    token = env_token(path)
    return ENV_TOKENS[token] if token else "production"


_env_token = env_token


def _looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _image_base(image: str) -> str:
    """`docker.io/library/postgres:15-alpine` -> postgres."""
    repo = _image_repo(image)
    return repo.rsplit("/", 1)[-1].lower()


def _image_repo(image: str) -> str:
    repo = image.split("@", 1)[0]
    head, _, tail = repo.rpartition(":")
    if head and "/" not in tail:
        repo = head
    return repo


def _sanitize(text: str) -> str:
    return suggest_app_name(text)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = name[: 32 - len(suffix)] + suffix
        n += 1
    taken.add(candidate)
    return candidate


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _duration(value: Any) -> str | float | None:
    """A compose duration (Go syntax) as headway writes it; None if it cannot be read."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        pass
    else:
        return value.strip() if isinstance(value, str) else seconds
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if parts and "".join(a + b for a, b in parts) == text:
        return round(sum(float(a) * units[b] for a, b in parts), 6)
    return None


# --- compose interpolation ---------------------------------------------------------------------------

def _env_value(value: str, file_keys: set[str], aliases: dict[str, str]) -> tuple[str, set[str]]:
    """Compose `${VAR}` / `$VAR` / `${VAR:-default}` -> headway `${VAR}`; `$$` -> `$`.

    A default is used as the value when the variable is not set by an env file and is not secret-looking;
    `aliases` renames variables (PROD_DB_PASSWORD -> DB_PASSWORD when the database gets it under that name).
    Returns the new value and the variable names it refers to.
    """
    refs: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        if (op is not None and op.lstrip(":") == "-" and default is not None and "$" not in default
                and name not in file_keys and not _looks_secret(name)):
            return default
        name = aliases.get(name, name)
        refs.add(name)
        return "${" + name + "}"

    return _COMPOSE_REF.sub(sub, value), refs


def _pure_ref(value: str) -> str | None:
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)", value.strip())
    return (m.group(1) or m.group(2)) if m else None


def _runtime_script(text: str, aliases: dict[str, str]) -> tuple[str, set[str]]:
    """Compose text for a shell: `$$X` (runtime) and `${X}` (compose-time) both become shell references,
    expanded inside the container, where headway puts the secrets. Returns the script and the names used."""
    names: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = aliases.get(m.group(1) or m.group(4), m.group(1) or m.group(4))
        names.add(name)
        rest = (m.group(2) or "") + (m.group(3) or "")
        return "${" + name + rest + "}"

    script = _COMPOSE_REF.sub(sub, text)
    names |= {m.group(1) or m.group(2) for m in re.finditer(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)", script)}
    return script, names


def _needs_shell(text: str) -> bool:
    if re.search(r"[$|&;<>()`*?~\n]", text):
        return True
    try:
        shlex.split(text)
    except ValueError:
        return True
    return False


def _shell_word(arg: str) -> str:
    if re.fullmatch(r"[\w${}:/.=@%+,-]+", arg):
        return arg
    if "$" in arg and '"' not in arg and "\\" not in arg and "`" not in arg:
        return f'"{arg}"'
    return shlex.quote(arg)


def _split_script(script: str) -> list[str] | None:
    """Split a shell script at top-level `&&`, `;` and newlines; None when it is more than a command list."""
    parts: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(script):
        c = script[i]
        if quote:
            buf.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(script):
                buf.append(script[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c == "\\" and i + 1 < len(script):
            buf += [c, script[i + 1]]
            i += 1
        elif c in "'\"":
            quote = c
            buf.append(c)
        elif script.startswith("&&", i):
            parts.append("".join(buf))
            buf = []
            i += 1
        elif c in ";\n":
            parts.append("".join(buf))
            buf = []
        elif script.startswith("${", i):
            end = script.find("}", i)
            if end < 0:
                return None
            buf.append(script[i:end + 1])
            i = end
        elif c in "|&(){}`":
            return None  # pipelines, background jobs, subshells: keep the script whole
        else:
            buf.append(c)
        i += 1
    if quote:
        return None
    parts.append("".join(buf))
    cleaned = [p.strip() for p in parts if p.strip()]
    if any(re.match(r"(if|then|else|elif|fi|for|while|until|do|done|case|esac)\b", p) for p in cleaned):
        return None
    return cleaned


def _as_command(parts: list[str]) -> str | list[str]:
    if len(parts) == 1 and not _needs_shell(parts[0]):
        return parts[0]
    return ["sh", "-c", " && ".join(parts)]


def _show(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


# --- reading compose files ---------------------------------------------------------------------------

def _env_file_keys(path: Path) -> list[str] | None:
    """The variable NAMES an env file defines (values are not kept); None if it cannot be read."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    keys: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if m and m.group(1) not in keys:
            keys.append(m.group(1))
    return keys


def _environment_entries(raw: Any) -> list[tuple[str, str | None]]:
    if isinstance(raw, dict):
        return [(str(k), None if v is None else _scalar(v)) for k, v in raw.items() if str(k).strip()]
    if isinstance(raw, list):
        out: list[tuple[str, str | None]] = []
        for item in raw:
            key, sep, value = str(item).partition("=")
            if key.strip():
                out.append((key.strip(), value if sep else None))
        return out
    return []


def _env_files(raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("path")
        if item:
            out.append(str(item))
    return out


def _port_number(value: Any) -> int | None:
    m = re.fullmatch(r"(\d+)(-\d+)?", str(value).strip())
    return int(m.group(1)) if m and 1 <= int(m.group(1)) <= 65535 else None


def _ports(raw: Any) -> list[tuple[int | None, int]]:
    """(published, container) pairs; ranges give their first port; a published port in a variable is None."""
    out: list[tuple[int | None, int]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            host_text, container_text = item.get("published", ""), item.get("target", "")
        else:
            text = str(item).split("/", 1)[0]
            if text.startswith("["):  # [::1]:8000:8000
                text = text.partition("]:")[2]
            pieces = text.rsplit(":", 2)
            container_text, host_text = pieces[-1], pieces[-2] if len(pieces) >= 2 else ""
        container = _port_number(container_text)
        if container is not None:
            out.append((_port_number(host_text) if host_text not in (None, "") else None, container))
    return out


def _domains(service: dict[str, Any], env_entries: list[tuple[str, str | None]]) -> list[str]:
    found: list[str] = []
    labels = service.get("labels")
    values = (list(labels.values()) if isinstance(labels, dict)
              else [str(x).partition("=")[2] for x in labels] if isinstance(labels, list) else [])
    for value in values:
        for rule in re.findall(r"Host\(([^)]*)\)", str(value)):
            found += re.findall(r"`([^`]+)`", rule)
    for key, value in env_entries:
        if key in ("VIRTUAL_HOST", "LETSENCRYPT_HOST") and value and "$" not in value:
            found += [d.strip() for d in value.split(",")]
    return list(dict.fromkeys(d.lower() for d in found if d))


# --- compose secrets: files under /run/secrets -------------------------------------------------------

def _secret_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(compose secret, path of its file in the container) for each of a service's `secrets:`."""
    raw = svc.get("secrets")
    out: list[tuple[str, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            source = _scalar(item.get("source")).strip()
            target = _scalar(item.get("target")).strip() or source
        else:
            source = target = _scalar(item).strip()
        if source:
            out.append((source, target if target.startswith("/") else f"{SECRETS_MOUNT}/{target}"))
    return out


def _file_secret_name(source: str, path: str) -> str:
    """The headway secret for a compose secret mounted at `path`: the file's own name when it is a valid secret
    name (/run/secrets/jwt_secret -> jwt_secret), so the app finds it where it did; else a valid one near it."""
    inside = path[len(SECRETS_MOUNT) + 1:] if path.startswith(SECRETS_MOUNT + "/") else source
    if is_secret_name(inside):
        return inside
    name = re.sub(r"[^A-Za-z0-9_]", "_", inside).strip("_") or "secret"
    return name if is_secret_name(name) else f"_{name}"


def _mount_secrets(svc_name: str, svc: dict[str, Any], draft: _Draft) -> dict[str, str | None]:
    """The service's compose secrets as headway `as: file` secrets: path in the container -> secret name (None:
    the password of a database headway now manages, which is dropped)."""
    paths: dict[str, str | None] = {}
    for source, path in _secret_mounts(svc):
        if source in draft.db_secrets:
            paths[path] = None
            draft.notes.append(f"{svc_name}: secret {source} dropped: it was the password of the database "
                               f"{draft.db_secrets[source]}, which headway now generates; the app gets its URL "
                               "(DATABASE_URL / REDIS_URL) instead")
            continue
        name = _file_secret_name(source, path)
        known = draft.file_secrets.get(name)
        if known is not None and known != source:
            draft.notes.append(f"{svc_name}: compose secrets {known} and {source} would both be "
                               f"{SECRETS_MOUNT}/{name}; {source} is left out: mount it under another name")
            continue
        draft.file_secrets[name] = source
        paths[path] = name
        if path != f"{SECRETS_MOUNT}/{name}":
            draft.notes.append(f"{svc_name}: secret {source} was {path}; headway mounts it at "
                               f"{SECRETS_MOUNT}/{name} (and sets {name}_FILE): make the app read that path")
    return paths


def _secret_path_env(svc_name: str, key: str, value: str | None, mounts: dict[str, str | None],
                     draft: _Draft) -> tuple[bool, str | None]:
    """An env var that holds the path of a secret's file (`JWT_SECRET_FILE: /run/secrets/jwt_secret`): a path,
    not a value, so it stays a plain variable. Returns (handled, the value to keep; None: drop it)."""
    if not value or (value not in mounts and not value.startswith(SECRETS_MOUNT + "/")):
        return False, None
    if value not in mounts:
        draft.notes.append(f"{svc_name}: {key} points at {value}, but the service mounts no such secret; "
                           "kept as it is")
        return True, value
    name = mounts[value]
    if name is None:
        draft.notes.append(f"{svc_name}: {key} dropped with the database password it pointed at")
        return True, None
    if key == f"{name}_FILE":
        draft.notes.append(f"{svc_name}: {key} dropped: headway sets it to {value} itself")
        return True, None
    return True, f"{SECRETS_MOUNT}/{name}"


# --- one compose file --------------------------------------------------------------------------------

@dataclass
class _Draft:
    """What one compose file says, in headway terms, for one environment."""

    source: str
    environment: str
    image: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    role_env: dict[str, dict[str, str]] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    release: str | list[str] | None = None
    release_from: str = ""
    seed: str | list[str] | None = None
    accessories: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int | None = None
    domains: list[str] = field(default_factory=list)
    secret_files: list[str] = field(default_factory=list)
    file_keys: set[str] = field(default_factory=set)
    needed: dict[str, str | None] = field(default_factory=dict)  # secret name -> where compose took it from
    aliases: dict[str, str] = field(default_factory=dict)  # compose variable -> the accessory env name it feeds
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    db_services: dict[str, str] = field(default_factory=dict)  # compose service -> database engine
    db_url_env: dict[str, str] = field(default_factory=dict)  # compose service -> the app's variable for its URL
    db_refs: set[str] = field(default_factory=set)  # variables the database services take their settings from
    db_noted: set[tuple[str, str]] = field(default_factory=set)
    nginx_domains: list[str] = field(default_factory=list)  # server_name of an nginx config that routes to roles
    other_ports: list[int] = field(default_factory=list)  # published ports of HTTP roles besides the root one
    root: Path = Path(".")  # the folder of the compose file: relative paths in it start here
    top_secrets: dict[str, Any] = field(default_factory=dict)  # compose's top-level `secrets:`
    file_secrets: dict[str, str] = field(default_factory=dict)  # headway secret (as: file) -> compose secret
    db_secrets: dict[str, str] = field(default_factory=dict)  # compose secret -> the managed database it was for
    service_file_keys: dict[str, list[str]] = field(default_factory=dict)  # service -> its env files' names
    role_files: dict[str, list[str]] = field(default_factory=dict)  # role -> its `as: file` secrets
    role_needs: dict[str, list[str]] = field(default_factory=dict)  # role -> secrets it reads as env vars
    notes: list[str] = field(default_factory=list)

    def need(self, name: str, hint: str | None = None) -> None:
        if hint or name not in self.needed:
            self.needed[name] = hint


def _app_name(explicit: str | None, data: dict[str, Any], path: Path) -> str:
    if explicit is not None:
        return check_app_name(explicit)
    if isinstance(data.get("name"), str) and "$" not in data["name"]:
        return _sanitize(data["name"])
    for svc in data["services"].values():
        if isinstance(svc, dict) and svc.get("build") is not None and isinstance(svc.get("image"), str) \
                and "$" not in svc["image"]:
            return _sanitize(_image_base(svc["image"]))
    folder = path.resolve().parent
    if folder.name in ("deploy", "docker", "compose", "ops", "infra", "deployment") and folder.parent.name:
        folder = folder.parent
    return _sanitize(folder.name)


def _health(svc_name: str, raw: Any, draft: _Draft, aliases: dict[str, str], *, port: int | None,
            accessory: bool) -> tuple[dict[str, Any] | None, set[str]]:
    """A compose healthcheck as a headway health block (HTTP for the web role when it requests a URL)."""
    if not isinstance(raw, dict) or raw.get("disable") is True:
        return None, set()
    test = raw.get("test")
    if isinstance(test, list) and test and str(test[0]).upper() == "NONE":
        return None, set()
    if isinstance(test, list) and test and str(test[0]).upper() == "CMD":
        args = [str(a) for a in test[1:]]
        needs = any("$" in a for a in args)
        script = " ".join(_shell_word(a) for a in args) if needs else shlex.join(args)
        shell = needs
    elif isinstance(test, list) and test and str(test[0]).upper() == "CMD-SHELL":
        script, shell = " ".join(str(a) for a in test[1:]), True
    elif isinstance(test, str):
        script, shell = test, True
    else:
        if test is not None:
            draft.notes.append(f"{svc_name}: healthcheck test not understood; add a `health:` block by hand")
        return None, set()
    script, names = _runtime_script(script, aliases) if shell or "$" in script else (script, set())
    script = _redact(svc_name, script, draft, names)
    timing: dict[str, Any] = {}
    for compose_key, key in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "start_period")):
        if compose_key in raw:
            value = _duration(raw[compose_key])
            if value is None:
                draft.notes.append(f"{svc_name}: healthcheck {compose_key} {raw[compose_key]!r} not understood")
            else:
                timing[key] = value
    if isinstance(raw.get("retries"), int) and raw["retries"] >= 1:
        timing["attempts"] = raw["retries"]
    probe = _http_probe(script)
    if not accessory and port is not None and probe is not None and probe[0] in (None, port):
        return {"path": probe[1], **timing}, set()
    if not accessory and port is not None and probe is not None:
        draft.notes.append(f"{svc_name}: its healthcheck asks port {probe[0]}, not the web port {port}; "
                           "kept as a command check")
    elif not accessory and port is not None and _HEALTH_URL.search(script):
        draft.notes.append(f"{svc_name}: its healthcheck does more than request a URL; kept as a command check "
                           "(the image needs the tools it uses)")
    command: str | list[str] = ["sh", "-c", script] if _needs_shell(script) else script
    return {"command": command, **timing}, names


_PROBE_TAIL = re.compile(r"\s*\|\|\s*(exit(\s+\d+)?|false)\s*;?\s*$")
_PY_URL = re.compile(r"(?:urlopen|requests\.get|httpx\.get|urllib\.request\.urlopen)\(\s*['\"]([^'\"]+)['\"]")


def _http_probe(script: str) -> tuple[int | None, str] | None:
    """(port, path) when a check only requests a local URL (`curl -f URL || exit 1`, `wget -q --spider URL`,
    a python urlopen one-liner), so headway's own HTTP check does the same without curl in the image."""
    text = _PROBE_TAIL.sub("", script.strip()).strip()
    try:
        argv = shlex.split(text)
    except ValueError:
        return None
    if len(argv) == 3 and Path(argv[0]).name in _SHELLS and argv[1] == "-c":
        return _http_probe(argv[2])
    if not argv:
        return None
    tool = Path(argv[0]).name
    urls: list[str] = []
    if tool in ("curl", "wget"):
        if re.search(r"[|;&`<>]", text.replace("&&", "")) or "&&" in text:
            return None
        urls = [a for a in argv[1:] if re.match(r"https?://", a)]
    elif tool.startswith("python") and "-c" in argv:
        code = argv[argv.index("-c") + 1] if argv.index("-c") + 1 < len(argv) else ""
        urls = _PY_URL.findall(code)
    if len(urls) != 1 or urls[0].startswith("https"):
        return None
    m = _HEALTH_URL.fullmatch(urls[0])
    if m is None:
        return None
    return (int(m.group(1)) if m.group(1) else None), (m.group(2) or "/")


def _redact(svc_name: str, script: str, draft: _Draft, names: set[str]) -> str:
    """Replace a literal password given on a command line with a reference to a secret."""
    secret = re.sub(r"[^A-Z0-9]+", "_", svc_name.upper()).strip("_") + "_PASSWORD"
    pattern = r"(--(?:requirepass|password|pass|token|secret|auth)(?:=|\s+))(?![$\"'-])(\S+)"
    if re.search(r"\bmysql|\bmariadb", script):
        pattern += r"|(\s-p)(?![$\"'\s])(\S+)"
    redacted = re.sub(pattern, lambda m: (m.group(1) or m.group(3)) + "${" + secret + "}", script)
    if redacted != script:
        names.add(secret)
        draft.need(secret, f"{svc_name}'s command had it written out")
        draft.notes.append(f"{svc_name}: a password written in a command was replaced by ${{{secret}}}")
    return redacted


def _split_command(svc_name: str, raw: Any, aliases: dict[str, str],
                   draft: _Draft) -> tuple[list[str], list[str], list[str], set[str]]:
    """A service command as (release parts, seed parts, remaining parts, variable names it uses)."""
    if raw is None:
        return [], [], [], set()
    if not isinstance(raw, list):
        raw = _scalar(raw)
    if isinstance(raw, str):
        try:
            argv = shlex.split(raw)
        except ValueError:
            draft.notes.append(f"{svc_name}: command has unbalanced quotes; copied as a shell script")
            script, names = _runtime_script(raw, aliases)
            return [], [], [script], names
    else:
        argv = [_scalar(a) for a in raw]
    if len(argv) == 3 and Path(argv[0]).name in _SHELLS and re.fullmatch(r"-[a-z]*c[a-z]*", argv[1]):
        script, names = _runtime_script(argv[2], aliases)
        script = _redact(svc_name, script, draft, names)
        parts = _split_script(script)
        if parts is None:
            if _MIGRATE.search(script) or _SEED.search(script):
                draft.notes.append(f"{svc_name}: its command is a shell script too complex to take apart; "
                                   "move its migration or seed steps to `release:` / `seed:` by hand")
            return [], [], [script], names
    elif any("$" in a for a in argv):
        script, names = _runtime_script(" ".join(_shell_word(a) for a in argv), aliases)
        parts = [_redact(svc_name, script, draft, names)]
    else:
        parts, names = [_redact(svc_name, shlex.join(argv), draft, set())], set()
    release = [p for p in parts if _MIGRATE.search(p)]
    seed = [p for p in parts if p not in release and _SEED.search(p)]
    rest = [re.sub(r"^exec\s+", "", p) for p in parts if p not in release and p not in seed]
    for p in release:
        if re.search(r"\bprisma\s+migrate\s+dev\b", p):
            draft.notes.append(f"{svc_name}: `{p}` is a development command; "
                               "production deploys use `prisma migrate deploy`")
    return release, seed, rest, names


def _volume_specs(raw: Any) -> list[tuple[str, str, str]]:
    """(kind, source, target) for each volume of a service; kind is named, bind or anonymous."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            source, target = str(item.get("source") or ""), str(item.get("target") or "")
            kind = item.get("type", "volume")
        else:
            pieces = str(item).split(":")
            if len(pieces) == 1:
                source, target = "", pieces[0]
            else:
                source, target = pieces[0], pieces[1]
            kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        if kind == "volume" and not source:
            out.append(("anonymous", "", target))
        elif kind == "volume":
            out.append(("named", source, target))
        else:
            out.append(("bind", source, target))
    return out


def _resources(svc_name: str, svc: dict[str, Any], draft: _Draft) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    deploy = svc.get("deploy") if isinstance(svc.get("deploy"), dict) else {}
    raw_limits = ((deploy or {}).get("resources") or {}).get("limits") or {}
    cpus = raw_limits.get("cpus", svc.get("cpus"))
    memory = raw_limits.get("memory", svc.get("mem_limit"))
    if cpus is not None:
        try:
            limits["cpus"] = float(cpus)
        except (TypeError, ValueError):
            draft.notes.append(f"{svc_name}: cpu limit {cpus!r} not understood")
    if memory is not None:
        text = str(memory).strip().lower().replace(" ", "")
        text = re.sub(r"^(\d+(?:\.\d+)?)([kmg])i?b$", r"\1\2", text)
        if re.fullmatch(r"\d+(\.\d+)?[bkmg]?", text):
            limits["memory"] = text
        else:
            draft.notes.append(f"{svc_name}: memory limit {memory!r} not understood")
    return limits


def _common_notes(svc_name: str, svc: dict[str, Any], draft: _Draft) -> None:
    for key, why in _DROPPED.items():
        if key in svc:
            draft.notes.append(f"{svc_name}: `{key}` dropped; {why}")
    other = [k for k in svc if k not in _HANDLED and not str(k).startswith("x-")]
    if other:
        draft.notes.append(f"{svc_name}: not converted: {', '.join(map(str, other))}")
    if "entrypoint" in svc:
        draft.notes.append(f"{svc_name}: `entrypoint` not converted; the image's ENTRYPOINT is used")
    deploy = svc.get("deploy")
    if isinstance(deploy, dict):
        extra = [k for k in deploy if k not in ("replicas", "resources", "mode")]
        if extra:
            draft.notes.append(f"{svc_name}: deploy.{', deploy.'.join(map(str, extra))} dropped; "
                               "headway deploys blue-green and restarts containers itself")


def _accessory_kind(svc: dict[str, Any]) -> str | None:
    image = svc.get("image")
    base = _image_base(image) if isinstance(image, str) else ""
    return next((k for k in _ACCESSORIES if base == k or base.startswith(k + "-")), None)


@contextmanager
def _shape_errors(path: Path, svc_name: str) -> Iterator[None]:
    """A service whose keys have shapes compose itself would refuse: say which one, not a traceback."""
    try:
        yield
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        raise ConfigError(f"{path}: service {svc_name}: a key has an unexpected shape",
                          f"run `docker compose -f {path} config` to find it, fix it, and convert again") from None


def _aliases(services: list[dict[str, Any]]) -> dict[str, str]:
    """`MYSQL_PASSWORD: ${PROD_MYSQL_PASSWORD}` in a database service makes PROD_MYSQL_PASSWORD an alias of
    MYSQL_PASSWORD, so the app refers to the same secret name in every environment. Ambiguous ones are left."""
    found: dict[str, set[str]] = {}
    for svc in services:
        for key, value in _environment_entries(svc.get("environment")):
            ref = _pure_ref(value) if value else None
            if ref and ref != key:
                found.setdefault(ref, set()).add(key)
    return {ref: next(iter(keys)) for ref, keys in found.items() if len(keys) == 1}


_FRONTEND = re.compile(r"front|^web$|^www$|^ui$|client|^spa$|^site$|^app$|nginx|static|portal|dashboard", re.I)
_API = re.compile(r"api|back|server|^srv$|service", re.I)
_NOT_WEB = re.compile(r"migrat|seed|worker|queue|cron|schedul|celery|sidekiq|job", re.IGNORECASE)
_CMD_PORTS = (r"--port[= ](\d{2,5})\b", r"(?:^|\s)(?:-b|--bind)[= ]?['\"]?[\w.\[\]]*:(\d{2,5})\b",
              r"\brunserver\s+(?:[\w.]+:)?(\d{2,5})\b", r"\b(?:0\.0\.0\.0|localhost|\[::\]):(\d{2,5})\b",
              r"\bPORT=(\d{2,5})\b", r"--listen[= ](?:[\w.]*:)?(\d{2,5})\b")
_DB_ENGINES = ("postgres", "mysql", "mariadb", "redis")
_DB_SETTINGS = {  # engine -> (database variable, user variable, variables headway sets itself)
    "postgres": ("POSTGRES_DB", "POSTGRES_USER", {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE",
                                                 "POSTGRES_HOST_AUTH_METHOD"}),
    "mysql": ("MYSQL_DATABASE", "MYSQL_USER", {"MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "MYSQL_RANDOM_ROOT_PASSWORD",
                                              "MYSQL_ALLOW_EMPTY_PASSWORD", "MYSQL_ROOT_HOST"}),
    "mariadb": ("MARIADB_DATABASE", "MARIADB_USER", {"MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD",
                                                    "MARIADB_RANDOM_ROOT_PASSWORD",
                                                    "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD"}),
    "redis": ("", "", {"REDIS_PASSWORD", "REDIS_ARGS"}),
}
_DB_URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?([A-Za-z0-9_.-]+)(?::\d+)?(?:[/?#]|$)")


def _command_port(command: Any) -> int | None:
    text = command if isinstance(command, str) else " ".join(str(a) for a in command or [])
    for pattern in _CMD_PORTS:
        m = re.search(pattern, text)
        if m and 1 <= int(m.group(1)) <= 65535:
            return int(m.group(1))
    return None


def _database_engine(svc: dict[str, Any]) -> tuple[str, str | None] | None:
    """(engine, version) for a service running an official postgres/mysql/mariadb/redis image."""
    image = svc.get("image")
    if not isinstance(image, str):
        return None
    image = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", image)  # ${PG_TAG:-15} -> 15
    repo = _image_repo(image).lower()
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/", "library/"):
        repo = repo.removeprefix(prefix)
    if repo not in _DB_ENGINES or "$" in image:
        return None
    tag = image.split("@", 1)[0][len(_image_repo(image)):].lstrip(":")
    return repo, (tag if tag and tag != "latest" else None)


def _build_key(image: dict[str, Any]) -> tuple[Any, ...]:
    return (str(Path(image.get("context", ".")).as_posix()).rstrip("/") or ".", image.get("dockerfile", "Dockerfile"),
            image.get("target"), tuple(sorted((image.get("args") or {}).items())))


class _Facts:
    """Dockerfiles read on demand (only when compose leaves a port, command or health check out)."""

    def __init__(self, root: Path, draft: _Draft) -> None:
        self.root = root
        self.draft = draft
        self.cache: dict[tuple[Any, ...], ImageFacts | None] = {}

    def of(self, svc_name: str, svc: dict[str, Any], image: dict[str, Any] | None) -> ImageFacts | None:
        build = svc.get("build")
        if image is None:
            return None
        key = _build_key(image)
        if key in self.cache:
            return self.cache[key]
        facts: ImageFacts | None = None
        context = str(image.get("context", "."))
        inline = build.get("dockerfile_inline") if isinstance(build, dict) else None
        if re.match(r"[a-z]+://|git@", context):
            pass
        else:
            dockerfile = self.root / context / str(image.get("dockerfile", "Dockerfile"))
            try:
                facts = parse_dockerfile(str(inline), image.get("target"), f"{svc_name}'s dockerfile_inline") \
                    if inline else read_dockerfile(dockerfile, image.get("target"))
            except DockerfileError as exc:
                self.draft.notes.append(f"{svc_name}: {exc}, so nothing was taken from it (EXPOSE, CMD, "
                                        "HEALTHCHECK)")
        self.cache[key] = facts
        return facts


def _dockerfile_name(image: dict[str, Any]) -> str:
    context = str(image.get("context", "."))
    name = str(image.get("dockerfile", "Dockerfile"))
    return name if context in (".", "./") else f"{context.rstrip('/')}/{name}"


# --- nginx in front: which path goes to which service ----------------------------------------------------

def _nginx_routes(text: str) -> list[tuple[str, str, int | None, str | None]]:
    """(location prefix, upstream host, port, URI after the port) for each `location /p { proxy_pass ... }`."""
    text = re.sub(r"#[^\n]*", "", text)
    upstreams: dict[str, tuple[str, int | None]] = {}
    for m in re.finditer(r"\bupstream\s+([\w.-]+)\s*\{([^}]*)\}", text):
        server = re.search(r"\bserver\s+([\w.-]+)(?::(\d+))?", m.group(2))
        if server:
            upstreams[m.group(1)] = (server.group(1), int(server.group(2)) if server.group(2) else None)
    out = []
    for m in re.finditer(r"\blocation\s+(?:\^~\s+|=\s+)?(/[^\s{]*)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i]
        pp = re.search(r"\bproxy_pass\s+https?://([\w.-]+)(?::(\d+))?(/[^;\s]*)?\s*;", body)
        if not pp:
            continue
        host, port = pp.group(1), int(pp.group(2)) if pp.group(2) else None
        if host in upstreams:
            host, port = upstreams[host][0], upstreams[host][1] or port
        out.append((m.group(1), host, port, pp.group(3)))
    return out


def _nginx_files(root: Path, services: dict[str, Any]) -> list[Path]:
    """Config files of an nginx in front of the app: mounted into a proxy service, or kept in the project."""
    found: list[Path] = []
    for svc in services.values():
        for kind, source, _target in _volume_specs(svc.get("volumes")):
            if kind == "bind" and "$" not in source and not source.startswith("~"):
                found.append(root / source)
    folders = [root, *(root / d for d in ("nginx", "deploy", "docker", "config", "conf", "frontend", "proxy"))]
    if root.name in ("deploy", "docker", "ops", "infra", "deployment"):
        folders += [root.parent, root.parent / "nginx", root.parent / "frontend"]
    for folder in folders:
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in (".conf", ".template") or p.name == "nginx.conf")
    out: list[Path] = []
    for path in found:
        candidates = sorted(path.glob("*.conf"))[:50] if path.is_dir() else [path]
        for c in candidates:
            if c.is_file() and c not in out and c.stat().st_size < 256 * 1024:
                out.append(c)
    return out[:100]


def _proxy_routes(root: Path, services: dict[str, Any], http_candidates: list[str],
                  draft: _Draft) -> dict[str, tuple[str, bool]]:
    """service -> (path, strip_prefix) as an nginx config routes to it."""
    names: dict[str, str] = {}
    published: dict[int, str] = {}
    for name in http_candidates:
        svc = services[name]
        names[name.lower()] = name
        for key in ("container_name", "hostname"):
            if isinstance(svc.get(key), str):
                names[svc[key].lower()] = name
        for host_port, _container in _ports(svc.get("ports")):
            if host_port is not None:
                published[host_port] = name
    found: dict[str, list[tuple[str, bool]]] = {}
    for conf in _nginx_files(root, services):
        try:
            text = conf.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if "proxy_pass" not in text:
            continue
        routed = False
        for prefix, host, port, uri in _nginx_routes(text):
            svc = names.get(host.lower())
            if svc is None and host in ("localhost", "127.0.0.1") and port is not None:
                svc = published.get(port)
            if svc is None:
                continue
            path = prefix.rstrip("/") or "/"
            if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path) or "//" in path:
                continue
            strip = uri is not None and path != "/" and uri.rstrip("/") != path
            if strip and uri not in ("/", ""):
                draft.notes.append(f"{svc}: nginx ({conf.name}) rewrites {prefix} to {uri}; headway removes the "
                                   "prefix only (strip_prefix), check the role's paths")
            routed = True
            if (path, strip) not in found.setdefault(svc, []):
                found[svc].append((path, strip))
        if routed:
            for names_text in re.findall(r"\bserver_name\s+([^;]+);", re.sub(r"#[^\n]*", "", text)):
                for domain in names_text.split():
                    if re.fullmatch(_DOMAIN, domain.lower()) and "." in domain and domain not in draft.nginx_domains:
                        draft.nginx_domains.append(domain.lower())
    routes: dict[str, tuple[str, bool]] = {}
    for svc, options in found.items():
        best = min(options, key=lambda o: (o[0] != "/", len(o[0])))
        routes[svc] = best
        others = [p for p, _ in options if p != best[0]]
        if others:
            draft.notes.append(f"{svc}: nginx also sends {', '.join(others)} to it; headway routes {best[0]} "
                               "to this role (give each role one path)")
    return routes


def _assign_paths(http: list[str], routes: dict[str, tuple[str, bool]],
                  draft: _Draft) -> tuple[str, dict[str, tuple[str, bool]]]:
    """The root service (path /) and each HTTP service's (path, strip_prefix)."""
    paths: dict[str, tuple[str, bool]] = {}
    taken: set[str] = set()
    for svc in http:
        if svc in routes and routes[svc][0] not in taken:
            paths[svc] = routes[svc]
            taken.add(routes[svc][0])
    if "/" not in taken:
        rest = [s for s in http if s not in paths]
        root = next((s for s in rest if _FRONTEND.search(s)), None) or next(
            (s for s in rest if not _API.search(s)), None) or (rest[0] if rest else None)
        if root is not None:
            paths[root] = ("/", False)
            taken.add("/")
    for svc in http:
        if svc in paths:
            continue
        path = "/api" if _API.search(svc) and "/api" not in taken else "/" + _sanitize(svc)
        path = _unique(path, taken) if path in taken else path
        taken.add(path)
        paths[svc] = (path, False)
        draft.notes.append(f"{svc}: served under {path} beside the other HTTP roles; set strip_prefix: true if it "
                           f"expects requests without the {path} prefix")
    root = next((s for s, (p, _) in paths.items() if p == "/"), http[0])
    return root, paths


def _rebase(image: dict[str, Any], compose_dir: Path, output_dir: Path | None) -> dict[str, Any]:
    context = str(image.get("context", "."))
    if output_dir is None or re.match(r"[a-z]+://|git@", context) or compose_dir.resolve() == output_dir.resolve():
        return image
    return {**image, "context": os.path.relpath((compose_dir / context).resolve(), output_dir.resolve())}


def _analyse(source: ComposeSource, environment: str, app: str, output_dir: Path | None = None) -> _Draft:
    path, data = source.path, source.data
    draft = _Draft(source=source.name, environment=environment)
    draft.notes += source.notes
    services: dict[str, Any] = {}
    for name, svc in data["services"].items():
        if isinstance(svc, dict):
            services[str(name)] = svc
        else:
            draft.notes.append(f"{name}: empty service skipped")
    for key in ("version", "networks"):
        if key in data:
            draft.notes.append(f"top-level `{key}` dropped; "
                               + ("not needed" if key == "version" else _DROPPED["networks"]))
    for key in ("configs", "include"):
        if key in data:
            draft.notes.append(f"top-level `{key}` not converted")
    draft.root = path.parent
    draft.top_secrets = {str(k): v for k, v in data["secrets"].items()} \
        if isinstance(data.get("secrets"), dict) else {}

    own_images = {_image_repo(s["image"]) for s in services.values()
                  if s.get("build") is not None and isinstance(s.get("image"), str)}
    built = [n for n, s in services.items() if s.get("build") is not None]
    own = [n for n, s in services.items() if s.get("build") is None and isinstance(s.get("image"), str)
           and (_image_repo(s["image"]) in own_images or _image_base(s["image"]) == app)]
    app_services = [n for n in services if n in built or n in own]
    if not app_services:
        raise ConfigError(f"{source.name}: no service builds the app's image (none has `build:`)",
                          "add `build: .` to the app's service, or pass the app name that its `image:` uses")
    kinds = {n: k for n, s in services.items() if n not in app_services and (k := _accessory_kind(s))}
    draft.db_services = {n: e[0] for n in kinds if (e := _database_engine(services[n]))}
    draft.db_secrets = {source: _sanitize(n) for n in draft.db_services for source, _ in _secret_mounts(services[n])}

    # the builds: one per service that has one; a service running another's image uses that one's build
    scratch = _Draft(source=draft.source, environment=environment)
    builds: dict[str, dict[str, Any]] = {}
    for n in built:
        with _shape_errors(path, n):
            builds[n] = _image(n, services[n], scratch)
    by_repo = {_image_repo(services[n]["image"]): builds[n] for n in built if isinstance(services[n].get("image"), str)}
    for n in own:
        builds[n] = by_repo.get(_image_repo(services[n]["image"]), builds[built[0]] if built else {})
    facts = _Facts(path.parent, draft)

    # which services serve HTTP: those that publish a port, those an nginx config sends requests to
    routes = _proxy_routes(path.parent, services, app_services, draft)
    http = [n for n in app_services if _ports(services[n].get("ports")) or n in routes]
    if not http:
        http = [([n for n in app_services if not _NOT_WEB.search(n)] or app_services)[0]]
    multi = len(http) > 1
    root, paths = _assign_paths(http, routes, draft) if multi else (http[0], {})
    if multi:
        draft.notes.append(f"{', '.join(http)} serve HTTP: each is a role with its own `path` "
                           f"({', '.join(f'{n} {paths[n][0]}' for n in http)}) on the environment's port")

    # the app's image: the build of the service that migrates, else of the API, else the first one
    def migrates(n: str) -> bool:
        return bool(_MIGRATE.search(_scalar(services[n].get("command"))))

    primary = next((n for n in built if migrates(n)), None)
    if primary is None and multi:
        primary = next((n for n in built if n in http and n != root), None)
    primary = primary or (built[0] if built else root)
    if not built:
        draft.notes.append(f"{root}: compose pulled the image {services[root]['image']}; "
                           "headway builds it from ./Dockerfile at each deploy")
    with _shape_errors(path, primary):
        draft.image = _image(primary, services[primary] if built else {}, draft)
    distinct = len({_build_key(builds[n]) for n in app_services if n in builds}) > 1
    role_images: dict[str, dict[str, Any]] = {}
    if distinct:
        for n in app_services:
            if n in builds and _build_key(builds[n]) != _build_key(draft.image):
                role_images[n] = _rebase(_image(n, services[n], draft) if n in built else dict(builds[n]),
                                         path.parent, output_dir)

    draft.image = _rebase(draft.image, path.parent, output_dir)
    if distinct:
        draft.notes.append(f"the services build different images: roles built from another Dockerfile than "
                           f"{_dockerfile_name(draft.image)} (the app's `image:`, which also runs `release:` and "
                           "`seed:`) name their own `image:`")
    env_file_keys: dict[str, list[str]] = {}
    for svc_name in [*app_services, *kinds]:
        keys: list[str] = []
        for item in _env_files(services[svc_name].get("env_file")):
            shown = str(path.parent / item)
            found = _env_file_keys(path.parent / item)
            if found is None:
                draft.notes.append(f"{svc_name}: env file {shown} not found")
            keys += found or []
            if shown not in draft.secret_files and svc_name not in draft.db_services:
                draft.secret_files.append(shown)
        env_file_keys[svc_name] = keys
        draft.service_file_keys[svc_name] = keys
        if svc_name not in draft.db_services:
            draft.file_keys |= set(keys)
    for n in draft.db_services:
        for key, value in _environment_entries(services[n].get("environment")):
            draft.db_refs.add(key)
            if value and (ref := _pure_ref(value)):
                draft.db_refs.add(ref)
        prefixes = ("POSTGRES_", "PG", "MYSQL_", "MARIADB_", "REDIS_")
        draft.db_refs |= {k for k in env_file_keys[n] if k.startswith(prefixes)}

    draft.aliases = _aliases([services[n] for n in kinds])
    taken: set[str] = set()
    for svc_name in sorted(app_services, key=lambda n: n != root):  # web first: it is named `web`
        with _shape_errors(path, svc_name):
            _common_notes(svc_name, services[svc_name], draft)
            image = role_images.get(svc_name) if distinct else None
            _role(svc_name, services[svc_name], draft, taken, http=svc_name in http, root=svc_name == root,
                  multi=multi, route=paths.get(svc_name), image=image,
                  facts=functools.partial(facts.of, svc_name, services[svc_name], builds.get(svc_name)))
    for svc_name, svc in services.items():
        if svc_name in draft.db_services:
            with _shape_errors(path, svc_name):
                _common_notes(svc_name, svc, draft)
                _database(svc_name, svc, draft, taken, app)
        elif svc_name in kinds:
            with _shape_errors(path, svc_name):
                _common_notes(svc_name, svc, draft)
                _accessory(svc_name, svc, kinds[svc_name], env_file_keys[svc_name], draft, taken)
        elif svc_name not in app_services:
            image = svc.get("image")
            base = _image_base(image) if isinstance(image, str) else ""
            if any(base.startswith(p) for p in _PROXIES):
                draft.notes.append(f"{svc_name}: proxy `{image}` dropped; headway runs its own proxy "
                                   "in front of the web role (set domains under environments)")
            else:
                draft.notes.append(f"{svc_name}: `{image}` not converted; add it under `accessories:` "
                                   "if the app needs it")

    mounted = {source for svc in services.values() for source, _ in _secret_mounts(svc)}
    unused = [n for n in draft.top_secrets if n not in mounted]
    if unused:
        draft.notes.append(f"top-level secret{'s' if len(unused) > 1 else ''} {', '.join(unused)}: no service "
                           "uses it; not converted")
    if not draft.domains and draft.nginx_domains:
        draft.domains = list(draft.nginx_domains)
        draft.notes.append(f"domains {', '.join(draft.domains)} taken from the nginx config in front of the app")
    if not draft.secret_files and draft.needed:
        token = env_token(source.naming_path)
        candidate = path.parent / (f".env.{token}" if token else ".env")
        if candidate.is_file():
            draft.secret_files.append(str(candidate))
            draft.file_keys |= set(_env_file_keys(candidate) or [])
            draft.notes.append(f"compose filled ${{...}} variables from {candidate} "
                               "(likely passed with --env-file); it becomes the secrets file")
    return draft


def _image(svc_name: str, svc: dict[str, Any], draft: _Draft) -> dict[str, Any]:
    build = svc.get("build")
    image: dict[str, Any] = {}
    if isinstance(build, str):
        image["context"] = build
    elif isinstance(build, dict):
        image["context"] = str(build.get("context", "."))
        if build.get("dockerfile"):
            image["dockerfile"] = str(build["dockerfile"])
        if build.get("target"):
            image["target"] = str(build["target"])
        args: dict[str, str] = {}
        for key, value in _environment_entries(build.get("args")):
            if _looks_secret(key):
                draft.notes.append(f"{svc_name}: build arg {key} not copied; secrets do not belong in an "
                                   "image (pass them at run time from the secrets file)")
            elif value is None or "$" in value:
                draft.notes.append(f"{svc_name}: build arg {key} takes its value from the shell; "
                                   "set it under image.args")
            else:
                args[key] = value
        if args:
            image["args"] = args
        for key in build:
            if key not in ("context", "dockerfile", "target", "args"):
                draft.notes.append(f"{svc_name}: build.{key} not converted")
    image.setdefault("context", ".")
    image.setdefault("dockerfile", "Dockerfile")
    name = svc.get("image")
    if isinstance(name, str) and "$" not in name:
        image["name"] = _image_repo(name)
    elif isinstance(name, str):
        draft.notes.append(f"{svc_name}: image name {name} uses variables; set image.name by hand if needed")
    return image


def _image_health(facts: ImageFacts) -> dict[str, Any] | None:
    """A Dockerfile HEALTHCHECK in the shape of a compose healthcheck."""
    if facts.healthcheck is None:
        return None
    test: Any = ["CMD", *facts.healthcheck] if isinstance(facts.healthcheck, list) else \
        ["CMD-SHELL", facts.healthcheck]
    raw: dict[str, Any] = {"test": test}
    for option, key in (("interval", "interval"), ("timeout", "timeout"), ("start-period", "start_period")):
        if option in facts.healthcheck_options:
            raw[key] = facts.healthcheck_options[option]
    if facts.healthcheck_options.get("retries", "").isdigit():
        raw["retries"] = int(facts.healthcheck_options["retries"])
    return raw


def _role(svc_name: str, svc: dict[str, Any], draft: _Draft, taken: set[str], *, http: bool, root: bool,
          multi: bool, route: tuple[str, bool] | None, image: dict[str, Any] | None,
          facts: Callable[[], ImageFacts | None]) -> None:
    entries = _environment_entries(svc.get("environment"))
    aliases = {**draft.aliases, **{ref: key for key, value in entries if value and (ref := _pure_ref(value))}}
    raw_command = svc.get("command")
    image_env: set[str] = set()
    dockerfile = _dockerfile_name(image or draft.image)
    if raw_command is None and (found := facts()) is not None:
        image_env = set(found.env)
        if found.entrypoint is not None:
            draft.notes.append(f"{svc_name}: its image starts with ENTRYPOINT {_show(found.entrypoint)} "
                               f"({dockerfile}); if that runs migrations at start, move them to `release:`")
        elif found.cmd is not None:
            raw_command = found.cmd if isinstance(found.cmd, list) else ["sh", "-c", found.cmd]
            draft.notes.append(f"{svc_name}: command taken from the CMD of {dockerfile}")
    release, seed, rest, names = _split_command(svc_name, raw_command, aliases, draft)
    if release:
        command = _as_command(release)
        if draft.release is None:
            draft.release, draft.release_from = command, svc_name
            draft.notes.append(f"{svc_name}: `{' && '.join(release)}` moved to `release:`; it runs once per "
                               "deploy, before traffic moves, instead of at every container start")
        elif _show(command) != _show(draft.release):
            draft.notes.append(f"{svc_name}: a second migration command `{_show(command)}` was not "
                               "converted; combine it into `release:`")
    if seed:
        command = _as_command(seed)
        if draft.seed is None:
            draft.seed = command
            draft.notes.append(f"{svc_name}: `{' && '.join(seed)}` moved to "
                               f"environments.{draft.environment}.seed")
    needs = sorted(names - image_env)  # the secrets this role reads as env vars
    for name in needs:
        draft.need(name, None)
    mounts = _mount_secrets(svc_name, svc, draft)  # the release and seed commands get every secret
    if not rest and (release or seed) and not http:
        draft.notes.append(f"{svc_name}: only ran one-off commands; it is not a role")
        return
    role_name = _unique("web" if root and not multi else _sanitize(svc_name), taken)
    if not (root and not multi) and role_name != svc_name:
        draft.notes.append(f"{svc_name}: becomes the role `{role_name}`")
    role: dict[str, Any] = {}
    if image is not None:
        role["image"] = image
    if rest:
        role["command"] = _as_command(rest)
    health_raw = svc.get("healthcheck")
    if health_raw is None and (found := facts()) is not None:
        health_raw = _image_health(found)
        if health_raw is not None:
            draft.notes.append(f"{svc_name}: health check taken from the HEALTHCHECK of {dockerfile}")
    if http:
        ports = _ports(svc.get("ports"))
        port: int | None = None
        published: int | None = None
        if ports:
            published, port = ports[0]
            if len(ports) > 1:
                draft.notes.append(f"{svc_name}: only the first port mapping is served; "
                                   f"others dropped: {', '.join(str(c) for _, c in ports[1:])}")
        expose = [int(str(p).split("/")[0]) for p in svc.get("expose") or [] if str(p).split("/")[0].isdigit()]
        if port is None and expose:
            port = expose[0]
        if port is None and (found := facts()) is not None and (found.ports or found.base_port):
            port = found.ports[0] if found.ports else found.base_port
            draft.notes.append(f"{svc_name}: port {port} taken from "
                               + (f"the EXPOSE of {dockerfile}" if found.ports else f"its base image {found.base}"))
        if port is None and isinstance(health_raw, dict):
            test = health_raw.get("test")
            probe = _http_probe(test if isinstance(test, str) else " ".join(str(t) for t in (test or [])[1:]))
            if probe is not None and probe[0] is not None:
                port = probe[0]
                draft.notes.append(f"{svc_name}: port {port} taken from its healthcheck URL")
        if port is None and (guess := _command_port(raw_command)) is not None:
            port = guess
            draft.notes.append(f"{svc_name}: port {port} taken from its command")
        if port is not None:
            role["port"] = port
        else:
            draft.notes.append(f"{svc_name}: no port found; set roles.{role_name}.port to the port it serves")
        if route is not None:
            role["path"], strip = route
            if strip:
                role["strip_prefix"] = True
        if root:
            draft.port = published
            if published is None and port is not None:
                draft.notes.append(f"{svc_name}: port {port} was not published; "
                                   f"set environments.{draft.environment}.port")
        elif published is not None:
            draft.other_ports.append(published)
            draft.notes.append(f"{svc_name}: published port {published} dropped; the proxy serves it under "
                               f"{role.get('path', '/')} on the environment's port")
    elif _ports(svc.get("ports")):
        draft.notes.append(f"{svc_name}: its ports are dropped; it is not an HTTP role")
    replicas = (svc.get("deploy") or {}).get("replicas") if isinstance(svc.get("deploy"), dict) else None
    replicas = replicas if replicas is not None else svc.get("scale")
    if isinstance(replicas, int):
        draft.replicas[role_name] = replicas
    if "stop_grace_period" in svc:
        timeout = _duration(svc["stop_grace_period"])
        if timeout is None:
            draft.notes.append(f"{svc_name}: stop_grace_period {svc['stop_grace_period']!r} not understood")
        else:
            role["stop_timeout"] = timeout
    if isinstance(svc.get("stop_signal"), str):
        role["stop_signal"] = svc["stop_signal"]
    health, health_names = _health(svc_name, health_raw, draft, aliases, port=role.get("port"), accessory=False)
    for name in sorted(health_names - image_env):
        draft.need(name, None)
        needs.append(name)
    if health is not None:
        role["health"] = health
        interval = health.get("interval")
        if "path" in health and interval is not None and parse_duration(interval) >= 10:
            draft.notes.append(f"{svc_name}: the health check runs every {interval}; a deploy waits for it, "
                               "so a shorter interval (1s-2s) makes deploys faster")
    elif "port" in role:
        draft.notes.append(f"{svc_name}: no healthcheck; add roles.{role_name}.health (e.g. path: /health) so "
                           "traffic moves only to a container that answers")
    limits = _resources(svc_name, svc, draft)
    if limits:
        draft.resources[role_name] = limits
    env: dict[str, str] = {}
    for key, value in entries:
        handled, path = _secret_path_env(svc_name, key, value, mounts, draft)
        if handled:
            if path is not None:
                env[key] = path
            continue
        if _database_env(svc_name, key, value, draft):
            continue
        if value is None:
            env[key] = "${" + key + "}"
            draft.need(key, "compose passed it through from the shell")
            continue
        ref = _pure_ref(value)
        if _looks_secret(key):
            draft.need(key, f"the value of {ref}" if ref and ref != key else
                       None if "$" in value or not value else "compose had the value written out")
            needs.append(key)
            continue
        translated, refs = _env_value(value, draft.file_keys, draft.aliases)
        m = _URL_CREDENTIALS.search(translated)
        if m and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", m.group(1)):
            draft.need(key, "its value holds a password")
            needs.append(key)
            continue
        env[key] = translated
        for name in refs:
            draft.need(name, None)
    draft.role_env[role_name] = env
    draft.role_files[role_name] = list(dict.fromkeys(n for n in mounts.values() if n is not None))
    draft.role_needs[role_name] = list(dict.fromkeys([*needs, *draft.service_file_keys.get(svc_name, [])]))
    if http:
        draft.domains += [d for d in _domains(svc, entries) if d not in draft.domains]
    if svc.get("volumes"):
        draft.notes.append(f"{svc_name}: volumes dropped; app containers are replaced at every deploy, "
                           "so keep state in an accessory (database, object storage)")
    draft.roles[role_name] = role


def _database_env(svc_name: str, key: str, value: str | None, draft: _Draft) -> bool:
    """True when an app variable is about a database headway now manages (its URL, its password): headway
    gives the app the URL itself, with credentials it generates."""
    if not draft.db_services:
        return False
    m = _DB_URL_HOST.match(value or "")
    target = m.group(1) if m else None
    if target in draft.db_services:
        engine = draft.db_services[target]
        current = draft.db_url_env.setdefault(target, key)
        default = "REDIS_URL" if engine == "redis" else "DATABASE_URL"
        if current != key:
            draft.notes.append(f"{svc_name}: {key} also points at {target}; headway sets only {current}, so make "
                               f"the app read {current}")
        elif (target, key) not in draft.db_noted:
            draft.db_noted.add((target, key))
            draft.notes.append(f"{key} now comes from headway (databases.{_sanitize(target)}"
                               + (f", url_env: {key}" if key != default else "")
                               + "), with credentials it generates per environment")
        return True
    ref = _pure_ref(value) if value else None
    if _looks_secret(key) and (key in draft.db_refs or (ref is not None and ref in draft.db_refs)):
        draft.notes.append(f"{svc_name}: {key} dropped; headway generates the database password and gives the "
                           "app only the URL (DATABASE_URL / REDIS_URL), so read the password from there")
        return True
    return False


def _database(svc_name: str, svc: dict[str, Any], draft: _Draft, taken: set[str], app: str) -> None:
    """An official postgres/mysql/mariadb/redis service as a managed database with backups."""
    engine, version = _database_engine(svc) or ("postgres", None)
    name = _unique(_sanitize(svc_name), taken)
    if name != svc_name:
        draft.notes.append(f"{svc_name}: renamed to database `{name}`; update host names that used "
                           f"`{svc_name}`")
    db: dict[str, Any] = {"engine": engine}
    if version:
        db["version"] = version
    else:
        draft.notes.append(f"{name}: image {svc.get('image')} has no version tag; headway runs its default "
                           f"({DEFAULT_VERSIONS[engine]}): set databases.{name}.version to pin yours")
    db_var, user_var, managed = _DB_SETTINGS[engine]
    entries = dict(_environment_entries(svc.get("environment")))
    for var, field_name in ((db_var, "database"), (user_var, "user")):
        value = entries.get(var) if var else None
        if value and "$" not in value and re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", value):
            db[field_name] = value
        elif value:
            draft.notes.append(f"{name}: {var} comes from a variable; the {field_name} is "
                               f"{app.replace('-', '_')} unless you set databases.{name}.{field_name}")
    other = [k for k in entries if k not in (db_var, user_var) and k not in managed
             and not (entries[k] or "").startswith(SECRETS_MOUNT + "/")]
    mounted = [source for source, _ in _secret_mounts(svc)]
    if mounted:
        draft.notes.append(f"{name}: secret{'s' if len(mounted) > 1 else ''} {', '.join(mounted)} not needed: "
                           f"headway generates the {engine} password")
    if other:
        draft.notes.append(f"{name}: {', '.join(other)} not converted; headway configures {engine} itself")
    url_var = draft.db_url_env.get(svc_name)
    default = "REDIS_URL" if engine == "redis" else "DATABASE_URL"
    used = {d.get("url_env") or ("REDIS_URL" if d["engine"] == "redis" else "DATABASE_URL")
            for d in draft.databases.values()}
    if url_var and url_var != default:
        db["url_env"] = url_var
    elif (url_var or default) in used:
        db["url_env"] = re.sub(r"[^A-Z0-9]+", "_", name.upper()) + "_URL"
        draft.notes.append(f"{name}: the app gets its URL as {db['url_env']} ({default} is another database's)")
    limits = _resources(svc_name, svc, draft)
    if limits:
        db["resources"] = limits
    db["backup"] = {"schedule": DoubleQuotedScalarString("0 3 * * *")}
    for kind, source, target in _volume_specs(svc.get("volumes")):
        if kind == "named":
            draft.notes.append(f"{name}: its data lived in the compose volume `{source}`; headway keeps it in a "
                               f"volume of its own per environment, so move the data over before switching "
                               "(dump it from the old container, load it with `headway db shell`)")
        elif kind == "bind":
            draft.notes.append(f"{name}: bind mount {source}:{target} not converted"
                               + ("; init scripts do not run: headway creates the database empty, so load them "
                                  "from `release:` or with `headway db shell`" if "initdb" in target else ""))
    if svc.get("command") is not None:
        raw = svc["command"]
        shown = _show([_scalar(a) for a in raw]) if isinstance(raw, list) else _scalar(raw)
        draft.notes.append(f"{name}: command `{_redact(svc_name, shown, _Draft('', ''), set())}` not converted; "
                           f"headway runs {engine} with its own settings (and password)")
    if _ports(svc.get("ports")):
        draft.notes.append(f"{name}: published port dropped; the database is reachable from the app only "
                           "(`headway db shell` for a console)")
    draft.notes.append(f"{name}: a managed {engine} database: headway creates its credentials, gives the app "
                       f"{db.get('url_env', default)}, backs it up before each deploy and daily at 03:00 "
                       f"(`headway db schedule -e ENV --install` adds the cron entry)")
    draft.databases[name] = db


def _accessory(svc_name: str, svc: dict[str, Any], image_key: str, file_keys: list[str], draft: _Draft,
               taken: set[str]) -> None:
    kind, data_dir, default_health = _ACCESSORIES[image_key]
    name = _unique(_sanitize(svc_name), taken)
    if name != svc_name:
        draft.notes.append(f"{svc_name}: renamed to accessory `{name}`; update host names that used "
                           f"`{svc_name}` (e.g. in DATABASE_URL)")
    acc: dict[str, Any] = {"image": str(svc["image"])}
    entries = _environment_entries(svc.get("environment"))
    aliases = {ref: key for key, value in entries if value and (ref := _pure_ref(value))}
    env: dict[str, str] = {}
    secrets: list[str] = []

    def secret(key: str, hint: str | None) -> None:
        if key not in secrets:
            secrets.append(key)
        draft.need(key, hint)

    mounts = _mount_secrets(svc_name, svc, draft)
    for mounted in mounts.values():
        if mounted is not None and mounted not in secrets:
            secrets.append(mounted)
    for key, value in entries:
        handled, path = _secret_path_env(svc_name, key, value, mounts, draft)
        if handled:
            if path is not None:
                env[key] = path
            continue
        if value is None:
            secret(key, "compose passed it through from the shell")
            continue
        ref = _pure_ref(value)
        hint = f"the value of {ref}" if ref and ref != key else \
            None if "$" in value or not value else "compose had the value written out"
        if _looks_secret(key):
            secret(key, hint)
            continue
        translated, refs = _env_value(value, set(file_keys) | draft.file_keys, {})
        m = _URL_CREDENTIALS.search(translated)
        if refs and _pure_ref(translated):
            secret(key, hint)  # the same name in every environment, whatever compose called the variable
        elif m and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", m.group(1)):
            secret(key, "its value holds a password")
        else:
            env[key] = translated
            for ref_name in refs:
                draft.need(ref_name, None)
    for key in file_keys:
        if key not in env:
            secret(key, None)
    if "command" in svc and svc["command"] is not None:
        raw = svc["command"]
        text = raw if isinstance(raw, str) else " ".join(_shell_word(_scalar(a)) for a in raw)
        script, names = _runtime_script(text, aliases)
        script = _redact(svc_name, script, draft, names)
        acc["command"] = ["sh", "-c", script] if "$" in script else script
        for ref_name in names:
            if ref_name not in env:
                secret(ref_name, None)
    if env:
        acc["env"] = env
    volumes: list[str] = []
    vol_names: set[str] = set()
    for vkind, source, target in _volume_specs(svc.get("volumes")):
        if vkind == "named":
            vname = _unique("data" if not volumes else re.sub(r"[^a-z0-9_-]+", "-", source.lower()).strip("-_")
                            or "data", vol_names)
            volumes.append(f"{vname}:{target}")
            draft.notes.append(f"{svc_name}: its data lived in the compose volume `{source}`; headway keeps "
                               f"`{vname}` in a volume of its own per environment, so copy the data over "
                               "before switching")
        elif vkind == "anonymous" and target.startswith("/"):
            volumes.append(f"{_unique('data', vol_names)}:{target}")
        else:
            draft.notes.append(f"{svc_name}: bind mount {source}:{target} not converted; "
                               "build a small image that includes the file, or mount it by hand")
    if not volumes and data_dir:
        volumes.append(f"data:{data_dir}")
        draft.notes.append(f"{svc_name}: added volume data:{data_dir} so its data survives restarts")
    if volumes:
        acc["volumes"] = volumes
    if _ports(svc.get("ports")):
        draft.notes.append(f"{svc_name}: published port dropped; accessories stay private to the app "
                           f"(set accessories.{name}.port to publish it)")
    health, names = _health(svc_name, svc.get("healthcheck"), draft, aliases, port=None, accessory=True)
    if health is None and default_health is not None and not isinstance(svc.get("healthcheck"), dict):
        health = {"command": default_health}
        draft.notes.append(f"{svc_name}: added health check `{default_health}`")
    for ref_name in names:
        if ref_name not in env:
            secret(ref_name, None)
    if secrets:
        acc["secrets"] = secrets
    if health is not None:
        acc["health"] = health
    limits = _resources(svc_name, svc, draft)
    if limits:
        acc["resources"] = limits
    if kind == "database":
        draft.notes.append(f"{name}: database accessory; full database management (backups, restore) "
                           "is configured under accessories/databases")
    draft.accessories[name] = acc


# --- several files, one headway.yml -----------------------------------------------------------------

def convert_compose(path: Path, app: str | None = None, environment: str | None = None) -> ComposeConversion:
    """Convert one compose file. The environment defaults to a guess from the file name."""
    return merge_compose_files([path], app=app, environments=[environment] if environment else None)


def merge_compose_files(paths: list[Path], app: str | None = None,
                        environments: list[str] | None = None) -> ComposeConversion:
    """Convert compose files for several environments (e.g. prod + staging) into one headway.yml.

    Each path is one environment, except an override of the file before it, which is merged into it the way
    `docker compose -f base -f override` does (see `plan_sources`).
    """
    if not paths:
        raise ConfigError("no compose file given", "pass e.g. docker-compose.prod.yml")
    if environments is not None and len(environments) != len(paths):
        raise ConfigError(f"{len(paths)} compose files but {len(environments)} environment names",
                          "give one environment name per file, in the same order")
    for env_name in environments or []:
        _check_environment_name(env_name)
    values = [f"{p}:{e}" if environments else str(p) for p, e in zip(paths, environments or paths, strict=True)]
    return convert_sources(plan_sources(values), app=app)


def _check_environment_name(env_name: str) -> None:
    if not re.fullmatch(NAME, env_name):
        raise ConfigError(f"{env_name!r} is not a valid environment name",
                          f"use lower-case letters, digits and dashes, e.g. {suggest_app_name(env_name)!r}")


def convert_from(from_values: list[str], merged_files: list[str] | None = None, app: str | None = None,
                 output_dir: Path | None = None) -> ComposeConversion:
    """`headway init --from FILE[:ENV] ... -f FILE ...`: one environment per --from (an override merged into
    the file before it), and the -f files merged into one environment, as compose merges them."""
    if not from_values and not merged_files:
        raise ConfigError("no compose file given", "pass e.g. --from docker-compose.prod.yml")
    return convert_sources(plan_sources(list(from_values), list(merged_files or [])), app=app, output_dir=output_dir)


def convert_sources(sources: list[ComposeSource], app: str | None = None,
                    output_dir: Path | None = None) -> ComposeConversion:
    """Convert planned sources (see `plan_sources`). Build contexts are rewritten relative to `output_dir`,
    where headway.yml is written (by default they stay relative to the compose file)."""
    names = [s.environment or guess_environment(s.naming_path) for s in sources]
    for env_name in names:
        _check_environment_name(env_name)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        files = [s.name for s, n in zip(sources, names, strict=True) if n == dup]
        raise ConfigError(f"two compose files map to the environment {dup!r} ({', '.join(files)})",
                          "name the environment of each: --from FILE:production --from FILE:staging; "
                          "or merge them into one environment with -f FILE -f FILE")
    app_name = _app_name(app, sources[0].data, sources[0].path)
    drafts = [_analyse(s, env_name, app_name, output_dir) for s, env_name in zip(sources, names, strict=True)]
    doc, notes = _assemble(app_name, drafts)
    secrets = {d.environment: list(d.secret_files) for d in drafts if d.secret_files}
    _file_secrets(drafts, doc, notes)
    notes += _secret_notes(drafts, doc)
    notes += _file_secret_notes(drafts)
    text = _dump(doc, [s.name for s in sources])
    parse_config(text, "headway.yml")  # the result must load; a failure here is a bug worth reporting
    return ComposeConversion(yaml_text=text, notes=notes, secrets=secrets)


def _merge_notes(drafts: list[_Draft]) -> list[str]:
    if len(drafts) == 1:
        return list(dict.fromkeys(drafts[0].notes))
    out: list[str] = []
    common = set.intersection(*(set(d.notes) for d in drafts))
    for d in drafts:
        for note in d.notes:
            text = note if note in common else f"{d.source}: {note}"
            if text not in out:
                out.append(text)
    return out


def _flow(value: Any) -> Any:
    if isinstance(value, list):
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()
        return seq
    return value


def _assemble(app: str, drafts: list[_Draft]) -> tuple[CommentedMap, list[str]]:
    first = drafts[0]
    notes = _merge_notes(drafts)
    doc = CommentedMap()
    doc["app"] = app
    doc["image"] = CommentedMap(first.image)
    for d in drafts[1:]:
        if d.image != first.image:
            notes.append(f"{d.source}: builds the image differently; the build of {first.source} is used")

    role_names = list(dict.fromkeys(r for d in drafts for r in d.roles))
    roles = CommentedMap()
    for name in role_names:
        owner = next(d for d in drafts if name in d.roles)
        spec = dict(owner.roles[name])
        role = CommentedMap()
        if "image" in spec:
            role["image"] = CommentedMap(spec["image"])
        if "command" in spec:
            role["command"] = _flow(spec["command"])
        for key in ("port", "path", "strip_prefix"):
            if key in spec:
                role[key] = spec[key]
        role["replicas"] = owner.replicas.get(name, 1)
        for key in ("stop_timeout", "stop_signal"):
            if key in spec:
                role[key] = spec[key]
        if "health" in spec:
            health = CommentedMap(spec["health"])
            if "command" in health:
                health["command"] = _flow(health["command"])
            role["health"] = health
        roles[name] = role
        for d in drafts:
            if d is not owner and name in d.roles:
                other = d.roles[name]
                for key in ("image", "command", "port", "path", "health"):
                    if other.get(key) != spec.get(key):
                        notes.append(f"{d.source}: roles.{name}.{key} differs from {owner.source}; "
                                     f"the one from {owner.source} is used")
    doc["roles"] = roles

    release = next((d for d in drafts if d.release is not None), None)
    own_images = len(roles) > 1 and all("image" in r for r in roles.values())
    if release is not None and own_images:
        first_role = next(iter(roles))
        doc["release"] = CommentedMap({"command": _flow(release.release), "role": first_role})
        notes.append(f"every role builds its own image; the release command runs from {first_role}'s: change "
                     "release.role if another one has the migrations")
    elif release is not None:
        doc["release"] = _flow(release.release)
    if release is not None:
        doc.yaml_add_eol_comment(f"was part of {release.release_from}'s command", "release")
        for d in drafts:
            if d.release is not None and _show(d.release) != _show(release.release or ""):
                notes.append(f"{d.source}: its migration command differs; `release:` uses the one "
                             f"from {release.source}")

    accessories = CommentedMap()
    for d in drafts:
        for name, spec in d.accessories.items():
            if name in accessories:
                if spec.get("image") != accessories[name]["image"]:
                    notes.append(f"{d.source}: accessory {name} uses {spec.get('image')}; "
                                 f"{accessories[name]['image']} is used for every environment")
                for secret in spec.get("secrets", []):
                    if secret not in accessories[name].setdefault("secrets", []):
                        accessories[name]["secrets"].append(secret)
                continue
            acc = CommentedMap()
            for key, value in spec.items():
                if key == "command":
                    acc[key] = _flow(value)
                elif key == "health":
                    health = CommentedMap(value)
                    health["command"] = _flow(health["command"])
                    acc[key] = health
                elif isinstance(value, (dict, list)):
                    acc[key] = type(value)(value)
                else:
                    acc[key] = value
            accessories[name] = acc
    if accessories:
        doc["accessories"] = accessories

    databases = CommentedMap()
    db_overrides: dict[str, dict[str, dict[str, Any]]] = {}
    for d in drafts:
        for name, spec in d.databases.items():
            if name in accessories or name in roles:
                notes.append(f"{d.source}: database {name} has the name of another service; rename it by hand")
                continue
            if name not in databases:
                db = CommentedMap()
                for key, value in spec.items():
                    db[key] = CommentedMap(value) if isinstance(value, dict) else value
                databases[name] = db
                continue
            if spec["engine"] != databases[name]["engine"]:
                notes.append(f"{d.source}: {name} runs {spec['engine']}, not {databases[name]['engine']}; "
                             f"{databases[name]['engine']} is used for every environment")
                continue
            for key in ("version", "database", "user"):
                if spec.get(key) != databases[name].get(key) and spec.get(key) is not None:
                    db_overrides.setdefault(d.environment, {}).setdefault(name, {})[key] = spec[key]
    if databases:
        doc["databases"] = databases

    shared_env, env_by_environment = _split_env(drafts, roles, notes)
    if shared_env:
        doc["env"] = CommentedMap(shared_env)

    environments = CommentedMap()
    used_ports: set[int] = set()
    for d in drafts:
        env = CommentedMap()
        port = d.port
        if port is not None and port in used_ports:
            new = port + 1
            while new in used_ports:
                new += 1
            notes.append(f"{d.source}: port {port} is already used by another environment; "
                         f"{d.environment} publishes {new} instead")
            port = new
        if port is not None:
            used_ports.add(port)
            env["port"] = port
        if d.domains:
            valid = [x for x in d.domains if re.fullmatch(_DOMAIN, x)]
            for bad in (x for x in d.domains if x not in valid):
                notes.append(f"{d.source}: {bad!r} is not a valid domain name; left out")
            if valid:
                env["domains"] = valid
        replicas = {}
        for name in role_names:
            base = roles[name]["replicas"]
            if name not in d.roles:
                replicas[name] = 0
                if len(drafts) > 1:
                    notes.append(f"{d.source}: has no {name} role; environments.{d.environment}.replicas "
                                 f"sets it to 0")
            elif d.replicas.get(name, 1) != base:
                replicas[name] = d.replicas.get(name, 1)
        if replicas:
            env["replicas"] = CommentedMap(replicas)
        if d.resources:
            env["resources"] = CommentedMap({k: CommentedMap(v) for k, v in d.resources.items()})
        if env_by_environment.get(d.environment):
            env["env"] = CommentedMap(env_by_environment[d.environment])
        if d.seed is not None:
            env["seed"] = _flow(d.seed)
        if db_overrides.get(d.environment):
            env["databases"] = CommentedMap({k: CommentedMap(v) for k, v in db_overrides[d.environment].items()})
        if not env:
            env["hosts"] = ["local"]
        environments[d.environment] = env
    if not any("port" in e for e in environments.values()):
        notes.append("no environment publishes a port; set environments.<name>.port for the proxy")
    doc["environments"] = environments
    for d in drafts:
        missing = [n for n in [*accessories, *databases] if n not in d.accessories and n not in d.databases]
        if missing and len(drafts) > 1:
            notes.append(f"{d.source}: has no {', '.join(missing)}; accessories run in every environment")
    return doc, notes


def _split_env(drafts: list[_Draft], roles: CommentedMap,
               notes: list[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Place each variable: top-level env if the same everywhere, role env if specific to a role,
    environment env if it differs between environments."""
    shared: dict[str, str] = {}
    per_env: dict[str, dict[str, str]] = {}
    pairs = [(d, r) for d in drafts for r in d.roles]
    variables = list(dict.fromkeys(k for d in drafts for r in d.roles for k in d.role_env.get(r, {})))
    for var in variables:
        values = {(d.environment, r): d.role_env[r][var] for d, r in pairs if var in d.role_env.get(r, {})}
        if len(values) == len(pairs) and len(set(values.values())) == 1:
            shared[var] = next(iter(values.values()))
            continue
        by_role: dict[str, set[str]] = {}
        covered: dict[str, set[bool]] = {}
        for d, r in pairs:
            if var in d.role_env.get(r, {}):
                by_role.setdefault(r, set()).add(d.role_env[r][var])
            covered.setdefault(r, set()).add(var in d.role_env.get(r, {}))
        if all(len(v) == 1 for v in by_role.values()) and all(len(c) == 1 for c in covered.values()):
            for r, role_values in by_role.items():
                roles[r].setdefault("env", CommentedMap())[var] = next(iter(role_values))
            continue
        for d in drafts:
            vals = [d.role_env[r][var] for r in d.roles if var in d.role_env.get(r, {})]
            if not vals:
                continue
            per_env.setdefault(d.environment, {})[var] = vals[0]
            if len(set(vals)) > 1:
                notes.append(f"{d.source}: {var} differs between roles; environments.{d.environment}.env "
                             "uses the web role's value for all of them")
    return shared, per_env


def _database_url_vars(doc: CommentedMap) -> set[str]:
    return {db.get("url_env") or ("REDIS_URL" if db["engine"] == "redis" else "DATABASE_URL")
            for db in doc.get("databases", {}).values()}


def _secret_notes(drafts: list[_Draft], doc: CommentedMap) -> list[str]:
    notes = []
    for d in drafts:
        target = f".headway/secrets.{d.environment}"
        defined = {**dict(doc.get("env", {})), **dict(doc["environments"][d.environment].get("env", {}))}
        acc_secrets = {s for a in doc.get("accessories", {}).values() for s in a.get("secrets", [])
                       if s not in d.file_secrets}
        needed = {n: h for n, h in d.needed.items()
                  if n in acc_secrets or n not in defined or "${" in defined[n]}
        needed.update({n: None for n in acc_secrets if n not in needed})
        if d.secret_files:
            keys = sorted({k for f in d.secret_files for k in _env_file_keys(Path(f)) or []})
            note = (f"{d.environment}: start {target} from {', '.join(d.secret_files)} "
                    f"(KEY=value lines, chmod 600)")
            url_vars = [k for k in keys if k in _database_url_vars(doc)]
            for_db = [k for k in keys if k in d.db_refs and _looks_secret(k) and k not in d.needed
                      and k not in url_vars]
            keys = [k for k in keys if k not in for_db and k not in url_vars]
            notes.append(note + (f"; it defines {', '.join(keys)}" if keys else "")
                         + (f"; leave out {', '.join(url_vars)}: headway sets it" if url_vars else "")
                         + (f"; {', '.join(for_db)} set the compose database's password: headway generates "
                            "one per environment, so it is not needed" if for_db else ""))
        missing = sorted(n for n in needed if n not in d.file_keys)
        if missing:
            verb = "also add" if d.secret_files else "create it with"
            hints = [f"{n} ({needed[n]})" if needed[n] else n for n in missing]
            notes.append(f"{d.environment}: {target}: {verb} {', '.join(hints)}; "
                         f"these values were not copied into headway.yml (`headway secrets set NAME -e "
                         f"{d.environment}` sets one, `headway secrets generate NAME -e {d.environment}` a new "
                         "random one)")
    return notes


def _file_secrets(drafts: list[_Draft], doc: CommentedMap, notes: list[str]) -> None:
    """Compose secrets as `secrets: {NAME: {as: file}}`; and, when there are any, each role names the secrets it
    gets, as each compose service had its own (a role without `secrets:` would get every one)."""
    names = list(dict.fromkeys(n for d in drafts for n in d.file_secrets))
    if not names:
        return
    specs = CommentedMap()
    for name in names:
        spec = CommentedMap({"as": "file"})
        spec.fa.set_flow_style()
        specs[name] = spec
    doc.insert(list(doc).index("roles") + 1, "secrets", specs)
    if not any(files for d in drafts for files in d.role_files.values()):
        notes.append("compose secrets become `as: file` secrets (" + ", ".join(names) + f") at {SECRETS_MOUNT}/NAME, "
                     "with NAME_FILE set")
        return
    url_vars = _database_url_vars(doc)
    lists: dict[str, list[str]] = {r: [] for r in doc["roles"]}
    own: dict[str, dict[str, list[str]]] = {}  # environment -> role -> the secrets its own compose file gave it
    for d in drafts:
        mine = own.setdefault(d.environment, {})
        for role, files in d.role_files.items():
            mine.setdefault(role, []).extend(files)
        env = {**dict(doc.get("env", {})), **dict(doc["environments"][d.environment].get("env", {}))}
        for role, needs in d.role_needs.items():
            defined = {*env, *dict(doc["roles"][role].get("env", {}))}
            mine.setdefault(role, []).extend(
                n for n in needs if n not in defined and n not in url_vars and n not in names
                and not (n in d.db_refs and _looks_secret(n) and n not in d.needed))
        for role, role_secrets in mine.items():
            lists[role] += role_secrets
    for role, role_secrets in lists.items():
        lists[role] = list(dict.fromkeys(role_secrets))
        doc["roles"][role]["secrets"] = _flow(lists[role])
    for env_name, mine in own.items():
        for role, role_secrets in lists.items():
            others = [n for n in role_secrets if n not in mine.get(role, [])]
            if others and role in mine:
                notes.append(f"{env_name}: roles.{role}.secrets names {', '.join(others)} for another environment; "
                             f"give {'them' if len(others) > 1 else 'it'} a value in .headway/secrets.{env_name} "
                             "too (headway refuses to deploy a role without the secrets it names)")
    notes.append("compose secrets become `as: file` secrets (" + ", ".join(names) + f") at {SECRETS_MOUNT}/NAME, "
                 "with NAME_FILE set; each role names the secrets it gets, as each compose service did ("
                 + "; ".join(f"{r}: {', '.join(v) if v else 'none'}" for r, v in lists.items()) + ")")


_MULTILINE = {".pem", ".key", ".crt", ".cer", ".der", ".p12", ".pfx", ".json", ".asc", ".gpg"}


def _file_secret_notes(drafts: list[_Draft]) -> list[str]:
    """What to run to give each `as: file` secret its value in each environment (the values are never read)."""
    notes = []
    for d in drafts:
        if not d.file_secrets:
            continue
        env, commands, files = d.environment, [], False
        for name, source in d.file_secrets.items():
            spec = d.top_secrets.get(source)
            spec = spec if isinstance(spec, dict) else {}
            if spec.get("file") and not spec.get("external"):
                file = d.root / str(spec["file"])
                if file.suffix.lower() in _MULTILINE:
                    commands.append(f"for {name}, likely several lines ({file.name}), which a line of the file "
                                    f"cannot hold: `from: cat {shlex.quote(str(file))}` under secrets.{name}")
                    continue
                files = True
                commands.append(f"`headway secrets set {name} -e {env} < {shlex.quote(str(file))}`")
            elif spec.get("environment"):
                variable = str(spec["environment"])
                commands.append(f'`printf %s "${variable}" | headway secrets set {name} -e {env}`')
            else:
                how = "external in compose" if spec.get("external") else "not declared under compose's `secrets:`"
                commands.append(f"`headway secrets set {name} -e {env}` ({how}; or `headway secrets generate "
                                f"{name} -e {env}` for a new random value)")
        notes.append(f"{env}: .headway/secrets.{env}: give the file secrets their values, which were not copied: "
                     + ", ".join(commands)
                     + ("; a value is one line: for a file of several lines write "
                        "`secrets: {NAME: {as: file, from: cat FILE}}` instead" if files else ""))
    return notes


def _dump(doc: CommentedMap, sources: list[str]) -> str:
    doc.yaml_set_start_comment(
        f"headway.yml converted from {', '.join(sources)}.\n"
        "Secret values are not in this file: they go in .headway/secrets.<environment> (KEY=value, chmod 600).\n"
        "`headway init` writes a commented example of every setting.")
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # long commands stay on one line
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
