"""Release versions: the short commit built (marked -dirty for a working tree with changes), a timestamp outside
git, or one given with --version. Which commit and tree are built is decided in `headway.release.source`."""

from __future__ import annotations

import re
import time

from headway.errors import ConfigError

_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SHORT_SHA = 12  # characters of the commit id in a version


def check_version(explicit: str) -> str:
    """`explicit` if it can be an image tag, else a ConfigError naming the fix."""
    if not _VALID.match(explicit):
        raise ConfigError(f"version {explicit!r} is not a valid image tag",
                          "use letters, digits, '.', '_' and '-' (at most 128)")
    return explicit


def commit_version(sha: str, *, dirty: bool = False) -> str:
    """The version of a build of commit `sha`: its first 12 hex digits, `-dirty` when the working tree differs."""
    short = sha[:SHORT_SHA]
    return f"{short}-dirty" if dirty else short


def timestamp_version() -> str:
    """The version of a build outside git: the UTC time, e.g. t20260101-120000."""
    return time.strftime("t%Y%m%d-%H%M%S", time.gmtime())
