"""Scheduled backups run by the host's cron (/etc/cron.d), not by a long-running container.

The host already runs cron and keeps it running across reboots; a cron job is a plain `headway db run-scheduled`
with the same code, state dir, locks and Docker access as an operator's command, so there is no second copy of
headway (an image to build, update and keep alive) that could drift from the one on the host.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from headway.config.resolve import Target
from headway.data.cron import parse_cron
from headway.data.databases import resolve_databases

CRON_DIR = Path("/etc/cron.d")
LOG_DIR = Path("/var/log/headway")


def cron_file_name(app: str, environment: str) -> str:
    # cron ignores files in cron.d whose names contain a dot
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"headway-{app}-{environment}")


def headway_command() -> list[str]:
    exe = Path(sys.executable).with_name("headway")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "headway"]


def render_cron(target: Target, config_path: Path, state_root: Path, log_dir: Path = LOG_DIR) -> str:
    lines = [f"# headway: scheduled backups of {target.app}/{target.environment} (from {config_path})",
             "# written by `headway db schedule --install`; edit headway.yml and install again instead",
             "SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ""]
    for spec in resolve_databases(target).values():
        if not spec.backup.schedule:
            continue
        log = log_dir / f"{target.app}-{target.environment}-{spec.name}.log"
        argv = [*headway_command(), "-c", str(config_path), "--state-dir", str(state_root), "db", "run-scheduled",
                "-e", target.environment, spec.name]
        lines.append(f"{spec.backup.schedule} root cd {shlex.quote(str(config_path.parent))} && "
                     f"{' '.join(shlex.quote(a) for a in argv)} >> {shlex.quote(str(log))} 2>&1")
    return "\n".join(lines) + "\n"


def install(target: Target, config_path: Path, state_root: Path, cron_dir: Path = CRON_DIR,
            log_dir: Path = LOG_DIR) -> Path | None:
    """Write (or, with no schedule left, remove) the environment's cron file. Returns its path if written."""
    path = cron_dir / cron_file_name(target.app, target.environment)
    text = render_cron(target, config_path, state_root, log_dir)
    if " root " not in text:
        path.unlink(missing_ok=True)
        return None
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cron_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def next_runs(target: Target, now: datetime | None = None) -> dict[str, str | None]:
    now = now or datetime.now(UTC)
    return {name: parse_cron(spec.backup.schedule).next_after(now).isoformat(timespec="minutes")
            if spec.backup.schedule else None for name, spec in resolve_databases(target).items()}
