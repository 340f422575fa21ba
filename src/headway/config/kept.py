"""The environment's config kept on its host, so what acts on the host by itself -- the dashboard's buttons, the
autoscaler -- uses the config of the last deploy and needs no checkout.

At every deploy, rollback and `alerts test` headway writes `apps/APP/ENV/kept/headway.json` (the parsed
headway.yml, as set by its author) and copies the files the proxy reads from the project (error pages). No secret
value is kept: a Target loaded from here has its secrets *withheld*. What needs none works as from a checkout
(rollback to a retained release, maintenance, scale down); a new replica takes its env from a running replica of
the same release and role, which already holds it; anything else that would need a value is refused, naming the
secret and saying to run the command where the deploys come from.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from headway.errors import ConfigError

if TYPE_CHECKING:
    from headway.config.resolve import Target

KEPT = "kept"
CONFIG = "headway.json"


def kept_dir(state_root: Path, app: str, environment: str) -> Path:
    return state_root / "apps" / app / environment / KEPT


def is_kept(state_root: Path, app: str, environment: str) -> bool:
    """Whether app/environment has a config kept on this host (what the host's own actions need)."""
    return (kept_dir(state_root, app, environment) / CONFIG).is_file()


def keep(target: Target, state_root: Path) -> Path:
    """Write the config of `target` (and the files it names) next to the environment's state. `kept` is a
    symlink to a complete directory, swapped in one rename: a crash leaves the old config or the new one."""
    final = kept_dir(state_root, target.app, target.environment)
    if target.secrets_withheld:  # loaded from here: nothing new to keep
        return final
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fresh = folder / f".{KEPT}-{uuid.uuid4().hex[:12]}"
    fresh.mkdir(mode=0o700)
    data = target.config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    (fresh / CONFIG).write_text(json.dumps(data, indent=1, sort_keys=True))
    for rel in target.edge.error_pages.values():
        src = target.root / rel
        if src.is_file() and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
            dest = fresh / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    link = folder / f".{KEPT}.{os.getpid()}.link"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(fresh.name)
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)  # a directory written by an older headway
    os.replace(link, final)
    for old in folder.glob(f".{KEPT}-*"):
        if old.name != fresh.name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_kept(state_root: Path, app: str, environment: str) -> Target:
    """The Target of the last deploy of app/environment on this host, secrets withheld."""
    from pydantic import ValidationError

    from headway.config.model import AppConfig
    from headway.config.resolve import resolve

    folder = kept_dir(state_root, app, environment)
    path = folder / CONFIG
    if not path.is_file():
        raise ConfigError(f"{app}/{environment} has no config kept on this host",
                          f"deploy it once with this version of headway (`headway deploy -e {environment}`)")
    try:
        config = AppConfig.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"{path} cannot be read: {str(exc).splitlines()[0]}",
                          f"deploy {app}/{environment} again to write it anew") from None
    return resolve(config, environment, folder, withheld=True)


def kept_environments(state_root: Path) -> list[tuple[str, str]]:
    """(app, environment) of every environment with a kept config on this host."""
    apps = state_root / "apps"
    if not apps.is_dir():
        return []
    return sorted((p.parent.parent.parent.name, p.parent.parent.name)
                  for p in apps.glob(f"*/*/{KEPT}/{CONFIG}"))
