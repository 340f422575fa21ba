"""Turning docker-compose files into a headway.yml.

A compose file describes containers; headway.yml describes an app: roles built from one image, a release
command, accessories, and environments. The mapping keeps everything that has a headway equivalent and
says, in `notes`, what was changed, dropped or needs a hand. Secret values are never copied: only the
names of variables appear in the output, and env files are listed so they can become secrets files.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from headway.config.duration import parse_duration
from headway.config.loader import parse_config
from headway.config.model import NAME
from headway.config.starter import check_app_name, suggest_app_name
from headway.errors import ConfigError

__all__ = ["ComposeConversion", "convert_compose", "guess_environment", "merge_compose_files"]


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
_ENV_TOKENS = {
    "production": "production", "prod": "production", "prd": "production", "live": "production",
    "staging": "staging", "stage": "staging", "stg": "staging",
    "development": "development", "dev": "development",
    "test": "test", "testing": "test", "qa": "qa", "preview": "preview", "demo": "demo",
}
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
    for token in re.split(r"[._-]+", path.name.lower()):
        if token in _ENV_TOKENS:
            return _ENV_TOKENS[token]
    return "production"


def _env_token(path: Path) -> str | None:
    return next((t for t in re.split(r"[._-]+", path.name.lower()) if t in _ENV_TOKENS), None)


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

def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file",
                          "pass the path of your compose file, e.g. docker-compose.prod.yml")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})", "check the path and permissions") from None
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc.problem}",
                          "fix that line; `docker compose -f FILE config` shows how compose reads the file") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else exc}",
                          "fix the file; `docker compose -f FILE config` shows how compose reads it") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        raise ConfigError(f"{path}: no services found",
                          "a compose file lists its containers under `services:`; pass the file that does")
    return data


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
    url = _HEALTH_URL.search(script)
    if not accessory and port is not None and url and (url.group(1) is None or int(url.group(1)) == port):
        return {"path": url.group(2) or "/", **timing}, set()
    if not accessory and port is not None and url:
        draft.notes.append(f"{svc_name}: its healthcheck asks port {url.group(1)}, not the web port {port}; "
                           "kept as a command check")
    command: str | list[str] = ["sh", "-c", script] if _needs_shell(script) else script
    return {"command": command, **timing}, names


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
    if svc.get("secrets"):
        draft.notes.append(f"{svc_name}: compose secrets (files under /run/secrets) are not converted; "
                           "headway passes secrets as environment variables")
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


def _analyse(path: Path, environment: str, data: dict[str, Any], app: str) -> _Draft:
    draft = _Draft(source=path.name, environment=environment)
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
    for key in ("secrets", "configs", "include"):
        if key in data:
            draft.notes.append(f"top-level `{key}` not converted")

    own_images = {_image_repo(s["image"]) for s in services.values()
                  if s.get("build") is not None and isinstance(s.get("image"), str)}
    built = [n for n, s in services.items() if s.get("build") is not None]
    own = [n for n, s in services.items() if s.get("build") is None and isinstance(s.get("image"), str)
           and (_image_repo(s["image"]) in own_images or _image_base(s["image"]) == app)]
    app_services = [n for n in services if n in built or n in own]
    if not app_services:
        raise ConfigError(f"{path}: no service builds the app's image (none has `build:`)",
                          "add `build: .` to the app's service, or pass the app name that its `image:` uses")
    kinds = {n: k for n, s in services.items() if n not in app_services and (k := _accessory_kind(s))}
    with_ports = [n for n in app_services if _ports(services[n].get("ports"))]
    not_web = re.compile(r"migrat|seed|worker|queue|cron|schedul|celery|sidekiq|job", re.IGNORECASE)
    web_service = (with_ports or [n for n in app_services if not not_web.search(n)] or app_services)[0]
    if not built:
        draft.notes.append(f"{web_service}: compose pulled the image {services[web_service]['image']}; "
                           "headway builds it from ./Dockerfile at each deploy")
    with _shape_errors(path, built[0] if built else web_service):
        draft.image = _image(built[0] if built else web_service, services[built[0]] if built else {}, draft)

    env_file_keys: dict[str, list[str]] = {}
    for svc_name in [*app_services, *kinds]:
        keys: list[str] = []
        for item in _env_files(services[svc_name].get("env_file")):
            shown = str(path.parent / item)
            found = _env_file_keys(path.parent / item)
            if found is None:
                draft.notes.append(f"{svc_name}: env file {shown} not found")
            keys += found or []
            if shown not in draft.secret_files:
                draft.secret_files.append(shown)
        env_file_keys[svc_name] = keys
        draft.file_keys |= set(keys)

    draft.aliases = _aliases([services[n] for n in kinds])
    taken: set[str] = set()
    for svc_name in sorted(app_services, key=lambda n: n != web_service):  # web first: it is named `web`
        with _shape_errors(path, svc_name):
            _common_notes(svc_name, services[svc_name], draft)
            _role(svc_name, services[svc_name], svc_name == web_service, draft, taken)
    for svc_name, svc in services.items():
        if svc_name in kinds:
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

    if not draft.secret_files and draft.needed:
        token = _env_token(path)
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


def _role(svc_name: str, svc: dict[str, Any], is_web: bool, draft: _Draft, taken: set[str]) -> None:
    entries = _environment_entries(svc.get("environment"))
    aliases = {**draft.aliases, **{ref: key for key, value in entries if value and (ref := _pure_ref(value))}}
    release, seed, rest, names = _split_command(svc_name, svc.get("command"), aliases, draft)
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
    for name in names:
        draft.need(name, None)
    if not rest and (release or seed) and not is_web:
        draft.notes.append(f"{svc_name}: only ran one-off commands; it is not a role")
        return
    role_name = _unique("web" if is_web else _sanitize(svc_name), taken)
    if not is_web and role_name != svc_name:
        draft.notes.append(f"{svc_name}: becomes the role `{role_name}`")
    role: dict[str, Any] = {}
    if rest:
        role["command"] = _as_command(rest)
    if is_web:
        ports = _ports(svc.get("ports"))
        if ports:
            draft.port, role["port"] = ports[0]
            if len(ports) > 1:
                draft.notes.append(f"{svc_name}: only the first port mapping is served; "
                                   f"others dropped: {', '.join(str(c) for _, c in ports[1:])}")
            if draft.port is None:
                draft.notes.append(f"{svc_name}: port {role['port']} was not published; "
                                   f"set environments.{draft.environment}.port")
        else:
            expose = [int(str(p).split("/")[0]) for p in svc.get("expose") or [] if str(p).split("/")[0].isdigit()]
            if expose:
                role["port"] = expose[0]
            else:
                draft.notes.append(f"{svc_name}: no port found; set roles.web.port to the port the app serves")
    elif _ports(svc.get("ports")):
        draft.notes.append(f"{svc_name}: its ports are dropped; only one role (web) serves HTTP")
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
    health, health_names = _health(svc_name, svc.get("healthcheck"), draft, aliases,
                                   port=role.get("port"), accessory=False)
    for name in health_names:
        draft.need(name, None)
    if health is not None:
        role["health"] = health
        interval = health.get("interval")
        if "path" in health and interval is not None and parse_duration(interval) >= 10:
            draft.notes.append(f"{svc_name}: the health check runs every {interval}; a deploy waits for it, "
                               "so a shorter interval (1s-2s) makes deploys faster")
    elif is_web and "port" in role:
        draft.notes.append(f"{svc_name}: no healthcheck; add roles.web.health (e.g. path: /health) so "
                           "traffic moves only to a container that answers")
    limits = _resources(svc_name, svc, draft)
    if limits:
        draft.resources[role_name] = limits
    env: dict[str, str] = {}
    for key, value in entries:
        if value is None:
            env[key] = "${" + key + "}"
            draft.need(key, "compose passed it through from the shell")
            continue
        ref = _pure_ref(value)
        if _looks_secret(key):
            draft.need(key, f"the value of {ref}" if ref and ref != key else None)
            continue
        translated, refs = _env_value(value, draft.file_keys, draft.aliases)
        m = _URL_CREDENTIALS.search(translated)
        if m and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", m.group(1)):
            draft.need(key, "its value holds a password")
            continue
        env[key] = translated
        for name in refs:
            draft.need(name, None)
    draft.role_env[role_name] = env
    if is_web:
        draft.domains = _domains(svc, entries)
    if svc.get("volumes"):
        draft.notes.append(f"{svc_name}: volumes dropped; app containers are replaced at every deploy, "
                           "so keep state in an accessory (database, object storage)")
    draft.roles[role_name] = role


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

    for key, value in entries:
        if value is None:
            secret(key, "compose passed it through from the shell")
            continue
        ref = _pure_ref(value)
        hint = f"the value of {ref}" if ref and ref != key else None
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

    The first file shapes the shared parts (image, roles, release, accessories); what differs between
    files goes under each environment where headway.yml can express it, and into a note where it cannot.
    """
    if not paths:
        raise ConfigError("no compose file given", "pass e.g. docker-compose.prod.yml")
    paths = [Path(p) for p in paths]
    if environments is not None and len(environments) != len(paths):
        raise ConfigError(f"{len(paths)} compose files but {len(environments)} environment names",
                          "give one environment name per file, in the same order")
    names = list(environments) if environments else [guess_environment(p) for p in paths]
    for env_name in names:
        if not re.fullmatch(NAME, env_name):
            raise ConfigError(f"{env_name!r} is not a valid environment name",
                              f"use lower-case letters, digits and dashes, e.g. {suggest_app_name(env_name)!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"two compose files map to the environment {dup!r}",
                          "name the environment of each file explicitly (e.g. production, staging)")
    loaded = [_load(p) for p in paths]
    app_name = _app_name(app, loaded[0], paths[0])
    drafts = [_analyse(p, env_name, data, app_name) for p, env_name, data in zip(paths, names, loaded, strict=True)]
    doc, notes = _assemble(app_name, drafts)
    secrets = {d.environment: list(d.secret_files) for d in drafts if d.secret_files}
    notes += _secret_notes(drafts, doc)
    text = _dump(doc, [p.name for p in paths])
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
        if "command" in spec:
            role["command"] = _flow(spec["command"])
        if "port" in spec:
            role["port"] = spec["port"]
        role["replicas"] = owner.replicas.get(name, 1)
        if "stop_timeout" in spec:
            role["stop_timeout"] = spec["stop_timeout"]
        if "health" in spec:
            health = CommentedMap(spec["health"])
            if "command" in health:
                health["command"] = _flow(health["command"])
            role["health"] = health
        roles[name] = role
        for d in drafts:
            if d is not owner and name in d.roles:
                other = d.roles[name]
                for key in ("command", "port", "health"):
                    if other.get(key) != spec.get(key):
                        notes.append(f"{d.source}: roles.{name}.{key} differs from {owner.source}; "
                                     f"the one from {owner.source} is used")
    doc["roles"] = roles

    release = next((d for d in drafts if d.release is not None), None)
    if release is not None:
        doc["release"] = _flow(release.release)
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
        if not env:
            env["hosts"] = ["local"]
        environments[d.environment] = env
    if not any("port" in e for e in environments.values()):
        notes.append("no environment publishes a port; set environments.<name>.port for the proxy")
    doc["environments"] = environments
    for d in drafts:
        missing = [n for n in accessories if n not in d.accessories]
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


def _secret_notes(drafts: list[_Draft], doc: CommentedMap) -> list[str]:
    notes = []
    for d in drafts:
        target = f".headway/secrets.{d.environment}"
        defined = {**dict(doc.get("env", {})), **dict(doc["environments"][d.environment].get("env", {}))}
        acc_secrets = {s for a in doc.get("accessories", {}).values() for s in a.get("secrets", [])}
        needed = {n: h for n, h in d.needed.items()
                  if n in acc_secrets or n not in defined or "${" in defined[n]}
        needed.update({n: None for n in acc_secrets if n not in needed})
        if d.secret_files:
            keys = sorted({k for f in d.secret_files for k in _env_file_keys(Path(f)) or []})
            note = (f"{d.environment}: start {target} from {', '.join(d.secret_files)} "
                    f"(KEY=value lines, chmod 600)")
            notes.append(note + (f"; it defines {', '.join(keys)}" if keys else ""))
        missing = sorted(n for n in needed if n not in d.file_keys)
        if missing:
            verb = "also add" if d.secret_files else "create it with"
            hints = [f"{n} ({needed[n]})" if needed[n] else n for n in missing]
            notes.append(f"{d.environment}: {target}: {verb} {', '.join(hints)}; "
                         "these values were not copied into headway.yml")
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
