"""Whether a command's environment runs on a server: decided from the config's text first, so a command for a
local environment (and rollback's fast path) pays nothing for remote hosts."""

from __future__ import annotations

import os
from pathlib import Path

ON_SERVER_ENV = "HEADWAY_ON_SERVER"  # set by remote-run: this process is the server side of a forwarded command


def remote_host(config_path: str | Path | None, environment: str) -> str | None:
    """The SSH address of `environment`'s server, or None when it runs here (or on the server itself). A config
    without any `@` is local, decided without loading the config library (rollback's fast path stays fast)."""
    if os.environ.get(ON_SERVER_ENV) == "1":
        return None
    if config_path is not None:
        path: Path | None = Path(config_path)
    else:
        here = Path.cwd()
        path = next((d / "headway.yml" for d in (here, *here.parents) if (d / "headway.yml").is_file()), None)
    try:
        if path is None or "@" not in path.read_text():
            return None
    except OSError:
        return None  # the command itself says what is wrong with the path
    from headway.config.loader import load_config

    config = load_config(path.resolve())
    env = config.environments.get(environment)
    return env.remote_host if env is not None else None
