"""Secret values printed by a command at deploy time (`secrets: {NAME: {from: "op read op://…"}}`).

The command runs on the machine that deploys, without a shell (a string is split like a shell would), with
headway's environment (so `op`, `vault`, `aws` find their sessions) and stdin closed. Its stdout, less one trailing
newline, is the value. The value is kept in memory only: it goes to containers as an env var or, for `as: file`,
to a file on a tmpfs (release/secret_files.py); it is never written anywhere else. A command that fails shows its
exit status and its stderr with every secret value headway knows replaced by `***`.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path

from headway.errors import ConfigError, HeadwayError

TIMEOUT = 60.0


class SecretCommandFailed(HeadwayError):
    """A `from:` command did not print a value (exit status, not found, timed out, nothing printed)."""


def source_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def redact(text: str, values: Iterable[str]) -> str:
    """`text` with every one of `values` (longest first, so none shows through a shorter one) replaced."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def fetch_secret(name: str, command: str | list[str], *, cwd: Path, known: Iterable[str] = (),
                 timeout: float = TIMEOUT) -> str:
    """Run `command` and return what it printed: the value of secret `name`. `known` are values to redact from
    anything shown on failure (the value itself is never shown: it is not returned when the command fails)."""
    argv = source_argv(command)
    where = f"secrets.{name}.from"
    if not argv:
        raise ConfigError(f"{where} is empty", "give the command that prints the value, e.g. op read op://vault/item")
    try:
        result = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                                check=False)
    except FileNotFoundError:
        raise SecretCommandFailed(f"secret {name}: command {argv[0]!r} not found ({where} in headway.yml)",
                                  f"install {argv[0]} on this machine (or put it on PATH), or fix {where}") from None
    except PermissionError:
        raise SecretCommandFailed(f"secret {name}: command {argv[0]!r} is not executable ({where} in headway.yml)",
                                  f"`chmod +x {argv[0]}`, or fix {where}") from None
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise SecretCommandFailed(f"secret {name}: `{argv[0]}` did not finish within {timeout:g}s; nothing was "
                                  "changed", f"check that it works without a prompt: run `{argv[0]} …` by hand",
                                  details=_shown(stderr, known) or None) from None
    out = result.stdout.decode(errors="replace")
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise SecretCommandFailed(
            f"secret {name}: `{argv[0]}` exited {result.returncode}; nothing was changed",
            f"fix {where} in headway.yml, or sign in to the tool it runs",
            details=_shown(stderr, [*known, out.strip()]) or None)
    value = out[:-1] if out.endswith("\n") else out
    if value.endswith("\r"):
        value = value[:-1]
    if not value:
        raise SecretCommandFailed(f"secret {name}: `{argv[0]}` printed nothing; nothing was changed",
                                  f"check {where}: its output (stdout) is the value",
                                  details=_shown(stderr, known) or None)
    if not _utf8(result.stdout):
        raise SecretCommandFailed(f"secret {name}: `{argv[0]}` printed bytes that are not UTF-8 text",
                                  "print the value as text (e.g. base64) and decode it in the app")
    return value


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _shown(stderr: str, known: Iterable[str]) -> str:
    """The last lines of a failed command's stderr, with secret values redacted."""
    return redact(stderr, known).strip()[-2000:]
