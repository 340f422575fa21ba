"""Which compose files make up which environment, and merging them as `docker compose -f a -f b` does.

`--from` names one environment per value (`FILE`, `FILE:ENV`, `DIR`, `DIR:ENV`). A file that only changes
services another file defines (named `*.override.*`, or with a service that has neither `image` nor `build`)
is merged into the file before it: `compose.override.yml` changes that environment, and `compose.prod.yml`
after a `compose.yml` becomes an environment of its own, the base with the prod file merged over it. `-f` files
are always merged, in order, into one environment, exactly as compose does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from headway.config.model import NAME
from headway.errors import ConfigError

__all__ = ["ComposeSource", "env_token", "load_compose", "merge_documents", "plan_sources", "split_env_suffix"]

ENV_TOKENS = {
    "production": "production", "prod": "production", "prd": "production", "live": "production",
    "staging": "staging", "stage": "staging", "stg": "staging",
    "development": "development", "dev": "development",
    "test": "test", "testing": "test", "qa": "qa", "preview": "preview", "demo": "demo",
}

# compose's own lookup order in a project directory
_BASE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_APPENDED = {"expose", "dns", "dns_search", "tmpfs", "cap_add", "cap_drop", "env_file", "external_links",
             "security_opt", "group_add", "profiles", "dns_opt"}
_AS_MAPPING = {"environment", "labels", "extra_hosts", "sysctls", "annotations", "depends_on", "networks",
               "ulimits", "args"}
_REPLACED = {"command", "entrypoint", "test"}


class _Reset:
    """`!reset`: the key is removed from the merged result."""


@dataclass
class _Override:
    """`!override VALUE`: the value replaces the base's instead of being merged with it."""

    value: Any


class _ComposeConstructor(SafeConstructor):
    pass


def _construct_reset(constructor: SafeConstructor, node: Node) -> _Reset:
    return _Reset()


def _construct_override(constructor: SafeConstructor, node: Node) -> _Override:
    if isinstance(node, MappingNode):
        return _Override(constructor.construct_mapping(node, deep=True))
    if isinstance(node, SequenceNode):
        return _Override(constructor.construct_sequence(node, deep=True))
    return _Override(constructor.construct_scalar(node))


_ComposeConstructor.add_constructor("!reset", _construct_reset)
_ComposeConstructor.add_constructor("!override", _construct_override)


@dataclass
class ComposeSource:
    """The compose files of one environment, merged. `files[0]` is the base: relative paths start at its folder."""

    files: list[Path]
    data: dict[str, Any]
    environment: str | None = None  # given as FILE:ENV; None means guessed from the file names
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.files[0]

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.files)

    @property
    def naming_path(self) -> Path:
        """The file whose name tells the environment: the last one with prod/staging/... in it."""
        return next((p for p in reversed(self.files) if env_token(p)), self.files[0])


# --- reading ---------------------------------------------------------------------------------------------

def load_compose(path: Path, *, partial: bool = False) -> dict[str, Any]:
    """One compose file as data. `partial`: an override file, whose services may be incomplete (or absent)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory without a compose file",
                          f"put compose.yml or docker-compose.yml in it, or pass the file ({', '.join(_BASE_NAMES)})")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file", "pass the path of your compose file, e.g. docker-compose.prod.yml")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file", "pass your compose file (YAML), e.g. docker-compose.yml") \
            from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", "check the path and permissions") from None
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _ComposeConstructor
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc.problem}",
                          "fix that line; `docker compose -f FILE config` shows how compose reads the file") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else exc}",
                          "fix the file; `docker compose -f FILE config` shows how compose reads it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a compose file (expected `services:` at the top)",
                          "pass your docker-compose.yml (or compose.yaml)")
    if "roles" in data and "app" in data:
        raise ConfigError(f"{path}: this is already a headway.yml, not a compose file",
                          "use it as it is (`headway deploy -c FILE`), or pass your docker-compose.yml to --from")
    if "apiVersion" in data and "kind" in data:
        raise ConfigError(f"{path}: a Kubernetes manifest, not a compose file",
                          "pass your docker-compose.yml; headway does not convert Kubernetes manifests")
    services = data.get("services")
    if services is None and partial:
        return data
    if not isinstance(services, dict) or (not services and not partial):
        raise ConfigError(f"{path}: no services found",
                          "a compose file lists its containers under `services:`; pass the file that does")
    return data


def split_env_suffix(value: str) -> tuple[Path, str | None]:
    """`FILE:ENV` -> (FILE, ENV); a path that exists as written is never split."""
    if Path(value).exists() or ":" not in value:
        return Path(value), None
    head, _, env = value.rpartition(":")
    if not env:
        raise ConfigError(f"--from {value}: no environment name after the colon",
                          "write FILE:ENV, e.g. docker-compose.prod.yml:production, or just FILE")
    if not re.fullmatch(NAME, env):
        raise ConfigError(f"--from {value}: {env!r} is not a valid environment name",
                          "use lower-case letters, digits and dashes, e.g. docker-compose.prod.yml:production")
    return Path(head), env


def _dir_files(folder: Path) -> list[Path]:
    base = next((folder / n for n in _BASE_NAMES if (folder / n).is_file()), None)
    if base is None:
        raise ConfigError(f"{folder}: no compose file in this directory",
                          f"put one of {', '.join(_BASE_NAMES)} there, or pass the file itself")
    stem = base.name.rsplit(".", 1)[0]
    override = next((folder / f"{stem}.override.{ext}" for ext in ("yaml", "yml")
                     if (folder / f"{stem}.override.{ext}").is_file()), None)
    return [base, override] if override else [base]


def env_token(path: Path) -> str | None:
    """The word of a file name that names an environment (`prod` in docker-compose.prod.yml), if any."""
    return next((t for t in re.split(r"[._-]+", path.name.lower()) if t in ENV_TOKENS), None)


def _is_override_name(path: Path) -> bool:
    return "override" in re.split(r"[._-]+", path.name.lower())


def _incomplete_services(data: dict[str, Any]) -> list[str]:
    services = data.get("services")
    if not isinstance(services, dict):
        return []
    return [str(n) for n, s in services.items()
            if isinstance(s, dict) and "image" not in s and "build" not in s and "extends" not in s]


# --- merging ---------------------------------------------------------------------------------------------

def _as_mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):  # networks / depends_on written as a list of one-key mappings
            out.update(item)
            continue
        key, sep, val = str(item).partition("=")
        if not sep and ":" in key and not key.startswith("["):  # extra_hosts "host:ip"
            key, _, val = key.partition(":")
            sep = ":"
        out[key.strip()] = val if sep else None
    return out


def _volume_target(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target") or item.get("source") or item)
    pieces = str(item).split(":")
    return pieces[1] if len(pieces) >= 2 else pieces[0]


def _port_key(item: Any) -> str:
    if isinstance(item, dict):
        return "|".join(str(item.get(k, "")) for k in ("host_ip", "published", "target", "protocol"))
    return str(item)


def _by_key(base: list[Any], override: list[Any], key: Any) -> list[Any]:
    merged = {key(i): i for i in base}
    for item in override:
        merged[key(item)] = item
    return list(merged.values())


def _unwrap(value: Any) -> Any:
    """The value with `!override` markers taken off (a base file may carry them too)."""
    if isinstance(value, _Override):
        return _unwrap(value.value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items() if not isinstance(v, _Reset)}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _merge_value(key: str, base: Any, override: Any) -> Any:
    if isinstance(override, _Override):
        return _unwrap(override.value)
    if base is None or key in _REPLACED:
        return _unwrap(override)
    if key in _AS_MAPPING and isinstance(base, (dict, list)) and isinstance(override, (dict, list)):
        return _merge_mapping(_as_mapping(base), _as_mapping(override))
    if isinstance(base, dict) and isinstance(override, dict):
        return _merge_mapping(base, override)
    if isinstance(base, list) and isinstance(override, list):
        if key == "ports":
            return _by_key(base, override, _port_key)
        if key in ("volumes", "devices"):
            return _by_key(base, override, _volume_target)
        if key in ("secrets", "configs"):
            return _by_key(base, override, lambda i: str(i.get("target") or i.get("source"))
                           if isinstance(i, dict) else str(i))
        if key in _APPENDED:
            return base + [_unwrap(i) for i in override if i not in base]
        return _unwrap(override)
    if key == "env_file":
        items = (base if isinstance(base, list) else [base]) + (override if isinstance(override, list)
                                                               else [override])
        return list(dict.fromkeys(str(i) if not isinstance(i, dict) else i.get("path") for i in items))
    return _unwrap(override)


def _merge_mapping(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, _Reset):
            out.pop(key, None)
        elif key in out:
            out[key] = _merge_value(str(key), out[key], value)
        else:
            out[key] = _unwrap(value)
    return out


def merge_documents(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Compose files merged in order, the later winning: mappings key by key, `ports` and `expose` added to,
    `volumes` replaced by container path, `command`/`entrypoint`/healthcheck `test` replaced whole;
    `!reset` removes a value and `!override` replaces one."""
    merged = _unwrap(documents[0])
    for doc in documents[1:]:
        merged = _merge_mapping(merged, doc)
    return merged


# --- which files make which environment ------------------------------------------------------------------

@dataclass
class _Entry:
    path: Path
    environment: str | None
    data: dict[str, Any]
    from_dir: bool = False


@dataclass
class _Group:
    base: _Entry
    overrides: list[_Entry] = field(default_factory=list)  # merged into the base itself
    overlays: list[_Entry] = field(default_factory=list)  # each one environment: base (+overrides) + it


def _check_complete(source: ComposeSource) -> None:
    missing = _incomplete_services(source.data)
    if missing:
        raise ConfigError(f"{source.name}: service {missing[0]} has neither `image` nor `build`",
                          f"give {missing[0]} `build: .` (or an `image:`) in the base compose file, or pass "
                          "the base file before this one")


def _entries(values: list[str]) -> list[_Entry]:
    out: list[_Entry] = []
    for value in values:
        path, env = split_env_suffix(value)
        if path.is_dir():
            files = _dir_files(path)
            out.append(_Entry(files[0], env, load_compose(files[0]), from_dir=True))
            out += [_Entry(f, None, load_compose(f, partial=True), from_dir=True) for f in files[1:]]
        else:
            out.append(_Entry(path, env, load_compose(path, partial=True)))
    return out


def _source(entries: list[_Entry], environment: str | None) -> ComposeSource:
    source = ComposeSource(files=[e.path for e in entries], data=merge_documents([e.data for e in entries]),
                           environment=environment)
    _check_complete(source)
    if not isinstance(source.data.get("services"), dict) or not source.data["services"]:
        raise ConfigError(f"{source.name}: no services found",
                          "a compose file lists its containers under `services:`; pass the file that does")
    return source


def plan_sources(from_values: list[str], merged_files: list[str] | None = None) -> list[ComposeSource]:
    """The environments `--from` and `-f` values describe, each with its compose files merged."""
    sources: list[ComposeSource] = []
    if merged_files:
        entries = _entries(list(merged_files))
        env = next((e.environment for e in reversed(entries) if e.environment), None)
        sources.append(_source(entries, env))
    groups: list[_Group] = []
    for entry in _entries(list(from_values)):
        incomplete = _incomplete_services(entry.data)
        overriding = _is_override_name(entry.path) or bool(incomplete) or not entry.data.get("services")
        if not overriding:
            groups.append(_Group(entry))
            continue
        if not groups and not entry.data.get("services"):
            raise ConfigError(f"{entry.path}: no services found",
                              "a compose file lists its containers under `services:`; pass the file that does")
        if not groups:
            what = (f"its service {incomplete[0]} has neither `image` nor `build`" if incomplete
                    else "it is an override file")
            raise ConfigError(f"{entry.path}: {what}, so it only changes a base compose file",
                              f"pass the base file first: --from compose.yml --from {entry.path} "
                              "(or --from DIR for a folder with compose.yml and compose.override.yml)")
        group = groups[-1]
        if entry.from_dir or _is_override_name(entry.path) or (entry.environment is None
                                                                and env_token(entry.path) is None):
            if group.overlays:
                raise ConfigError(f"{entry.path}: an override after an environment file "
                                  f"({group.overlays[-1].path.name})",
                                  "list the base file, then its override, then the environment files")
            group.overrides.append(entry)
        else:
            group.overlays.append(entry)
    for group in groups:
        base = [group.base, *group.overrides]
        if not group.overlays:
            env = next((e.environment for e in reversed(base) if e.environment), None)
            sources.append(_source(base, env))
        for overlay in group.overlays:
            sources.append(_source([*base, overlay], overlay.environment))
    return sources
