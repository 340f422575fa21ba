"""Secrets files: dotenv `KEY=value` files that live only on the machine that deploys, never in git or output.

Besides reading them (`load_secrets`), `set_secret` and `unset_secret` edit one line of such a file in place:
atomically (a new file renamed over the old), mode 600, every other line and comment kept as it was.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets as _random
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from headway.config.base import REF
from headway.config.model import AppConfig, SecretSpec
from headway.errors import ConfigError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRETS_MOUNT = "/run/secrets"  # where `as: file` secrets are in a container: /run/secrets/NAME


def is_secret_name(name: str) -> bool:
    """A name that can be an environment variable (and a file under /run/secrets)."""
    return bool(_KEY.match(name))


def check_secret_name(name: str) -> str:
    if not is_secret_name(name):
        raise ConfigError(f"{name!r} is not a secret name", "use letters, digits and _, not starting with a digit, "
                          "e.g. JWT_SECRET")
    return name


def default_secrets_path(root: Path, environment: str) -> Path:
    return root / ".headway" / f"secrets.{environment}"


def secrets_path_for(config: AppConfig, environment: str, root: Path) -> Path:
    """The secrets file of `environment`: its `secrets_file`, else .headway/secrets.<environment>."""
    env_cfg = config.environments[environment]
    return root / env_cfg.secrets_file if env_cfg.secrets_file else default_secrets_path(root, environment)


def secret_specs(config: AppConfig, environment: str) -> dict[str, SecretSpec]:
    """`secrets:` with the environment's `secrets:` laid over it, key by key (staging may change only `from`)."""
    out = dict(config.secrets)
    overrides = config.environments[environment].secrets if environment in config.environments else {}
    for name, override in overrides.items():
        base = out.get(name, SecretSpec())
        data = {**base.model_dump(by_alias=True, exclude_unset=True),
                **override.model_dump(by_alias=True, exclude_unset=True)}
        out[name] = SecretSpec.model_validate(data)
    for name in out:
        if not is_secret_name(name):
            raise ConfigError(f"secrets: {name!r} is not a secret name",
                              "use letters, digits and _, not starting with a digit, e.g. JWT_SECRET")
    return out


FETCHED_ENV = "HEADWAY_FETCHED_SECRETS"  # names whose `from` command already ran where headway was invoked


class SecretValues(dict[str, str]):
    """Secret values by name; the repr never shows a value. Secrets with a `from` command get their value when it
    is first needed (`fetch`), never when headway.yml is read: `status` or `logs` run no command."""

    def __init__(self, values: dict[str, str] | None = None, *, specs: dict[str, SecretSpec] | None = None,
                 cwd: Path | None = None) -> None:
        self.specs: dict[str, SecretSpec] = dict(specs or {})
        self.commands = {n for n, s in self.specs.items() if s.from_}
        # a secret with `from` takes its value from the command, never from a line of the file -- except on a
        # server running a command for the machine that deploys, which ran the commands and sent their values
        given = set(filter(None, os.environ.get(FETCHED_ENV, "").split(",")))
        super().__init__({k: v for k, v in (values or {}).items() if k not in self.commands or k in given})
        self.cwd = cwd or Path.cwd()
        self.fetched: set[str] = given & set(self)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(sorted(self.available()))})"

    def spec(self, name: str) -> SecretSpec:
        return self.specs.get(name) or SecretSpec()

    def as_file(self, name: str) -> bool:
        return self.spec(name).as_ == "file"

    def has(self, name: str) -> bool:
        """Whether `name` has a value: a line of the secrets file or a `from` command."""
        return name in self or name in self.commands

    def available(self) -> list[str]:
        """Every secret with a value (in the file or from a command): what a role that names none gets."""
        return sorted(set(self) | self.commands)

    def fetch(self, names: Iterable[str] | None = None) -> None:
        """Run the `from` commands of `names` (default: all) not run yet; a failure raises, naming the secret."""
        from headway.config.secret_sources import fetch_secret

        for name in sorted(self.commands if names is None else set(names) & self.commands):
            if name in self.fetched:
                continue
            command = self.spec(name).from_
            assert command is not None
            self[name] = fetch_secret(name, command, cwd=self.cwd, known=list(self.values()))
            self.fetched.add(name)

    def value(self, name: str) -> str:
        self.fetch([name])
        return self[name]


def check_named_secrets(config: AppConfig, environment: str, values: SecretValues, path: Path) -> None:
    """Every secret a role names must have a value: a line in the secrets file or a `from` command."""
    for role_name, role in config.roles.items():
        for name in role.secrets or []:
            if not is_secret_name(name):
                raise ConfigError(f"roles.{role_name}.secrets: {name!r} is not a secret name",
                                  "use letters, digits and _, not starting with a digit, e.g. JWT_SECRET")
            if not values.has(name):
                raise ConfigError(f"secret {name} (named by role {role_name}) is not in {path}",
                                  f"add it: `headway secrets set {name} -e {environment}` (or a {name}=... line "
                                  f"in {path}, mode 600), or give it a `from:` command under `secrets:`")


@dataclass(frozen=True)
class SecretInfo:
    """One secret as `headway secrets list` shows it: never its value."""

    name: str
    delivery: str  # env | file
    used_by: list[str] = field(default_factory=list)  # roles, accessory:NAME, release, env:VAR
    source: str = "file"  # file | command
    is_set: bool = False
    note: str = ""


def describe_secrets(config: AppConfig, environment: str, root: Path) -> list[SecretInfo]:
    """Every secret the environment knows of (declared, named, referenced or in the file), where each goes."""
    path = secrets_path_for(config, environment, root)
    specs = secret_specs(config, environment)
    in_file = load_secrets(path, required=False)
    values = SecretValues(in_file, specs=specs, cwd=root)
    env = {**config.env, **config.environments[environment].env}
    refs: dict[str, list[str]] = {}
    for var, text in env.items():
        for m in REF.finditer(text):
            refs.setdefault(m.group(1), []).append(f"env:{var}")
    for role_name, role in config.roles.items():
        for var, text in role.env.items():
            for m in REF.finditer(text):
                refs.setdefault(m.group(1), []).append(f"{role_name}.env:{var}")
    names = set(specs) | set(in_file) | set(refs) | {s for r in config.roles.values() for s in r.secrets or []} \
        | {s for a in config.accessories.values() for s in a.secrets}
    names -= {n for n in refs if n not in specs and n not in in_file and n in env and "${" not in env[n]}
    out = []
    for name in sorted(names):
        used = [r for r, role in config.roles.items() if (role.secrets is None and values.has(name))
                or name in (role.secrets or [])]
        used += [f"accessory:{a}" for a, acc in config.accessories.items() if name in acc.secrets]
        if values.has(name):
            used.append("release")
        used += refs.get(name, [])
        source = "command" if name in values.commands else "file"
        note = ""
        if name in values.commands and name in in_file:
            note = f"the line in {path.name} is ignored: `from` gives the value"
        elif not values.has(name) and not used:
            note = "declared, not used"
        out.append(SecretInfo(name=name, delivery=values.spec(name).as_, used_by=used, source=source,
                              is_set=values.has(name), note=note))
    return out


def load_secrets(path: Path, *, required: bool) -> dict[str, str]:
    """Parse a secrets file; refuse one that others can read. Values are never echoed in errors."""
    if not path.exists():
        if required:
            raise ConfigError(f"secrets file {path} is missing",
                              f"create it with KEY=value lines and `chmod 600 {path}`")
        return {}
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(f"secrets file {path} is readable by others (mode {mode:o})",
                          f"run `chmod 600 {path}`")
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"{path}:{number}: expected KEY=value", "fix or remove that line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def generate_value(nbytes: int = 64) -> str:
    """A strong random value: `nbytes` from the OS's CSPRNG, base64url without padding."""
    return base64.urlsafe_b64encode(_random.token_bytes(nbytes)).rstrip(b"=").decode()


def _line_key(raw: str) -> str | None:
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("export "):
        line = line[len("export "):].lstrip()
    key, sep, _ = line.partition("=")
    return key.strip() if sep else None


def _encode(value: str) -> str:
    """The value as `load_secrets` reads it back unchanged: quoted when it would otherwise be stripped."""
    if "\0" in value or len(f"_{value}_".splitlines()) != 1:  # every line break `splitlines` knows
        raise ConfigError("a secret value in the secrets file cannot span lines (or hold NUL)",
                          "store it elsewhere and fetch it with `from:` (e.g. from: cat /etc/app/key.pem), or "
                          "encode it (base64) and decode it in the app")
    if not value or value != value.strip() or (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
        return f"'{value}'"
    return value


def set_secret(path: Path, name: str, value: str) -> bool:
    """Write NAME=value into the secrets file (the line replaced where it was, else appended). True if it was
    there before."""
    check_secret_name(name)
    encoded = _encode(value)
    lines = _read_lines(path)
    found = False
    out: list[str] = []
    for raw in lines:
        if _line_key(raw) == name:
            if not found:
                prefix = "export " if raw.strip().startswith("export ") else ""
                out.append(f"{prefix}{name}={encoded}\n")
            found = True  # a repeated line would override the new value: drop it
            continue
        out.append(raw)
    if not found:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(f"{name}={encoded}\n")
    _write_atomic(path, "".join(out))
    return found


def unset_secret(path: Path, name: str) -> bool:
    """Remove NAME's line(s) from the secrets file; False if it was not there (the file is then unchanged)."""
    check_secret_name(name)
    lines = _read_lines(path)
    kept = [raw for raw in lines if _line_key(raw) != name]
    if len(kept) == len(lines):
        return False
    _write_atomic(path, "".join(kept))
    return True


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    load_secrets(path, required=True)  # refuses a file others can read, or one with lines it cannot parse
    return path.read_text().splitlines(keepends=True)


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text`: written to a 0600 file beside it, flushed, renamed over it; the owner of the
    file it replaces is kept. A reader sees the old file or the new one, never a part."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    owner = None
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        owner = (st.st_uid, st.st_gid)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            if owner is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), *owner)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
