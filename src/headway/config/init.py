"""`headway init`: write a starter headway.yml, or one converted from docker-compose files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headway.config.compose_import import merge_compose_files
from headway.config.loader import CONFIG_NAME
from headway.config.starter import check_app_name, starter_config, suggest_app_name
from headway.errors import ConfigError


@dataclass
class InitResult:
    path: Path
    notes: list[str] = field(default_factory=list)


def write_config(directory: Path, compose_files: list[Path], *, app: str | None = None,
                 force: bool = False) -> InitResult:
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", "pass --force to overwrite it")
    notes: list[str] = []
    if compose_files:
        conversion = merge_compose_files(compose_files, app=app)
        text = conversion.yaml_text
        notes.extend(conversion.notes)
        for environment, files in conversion.secrets.items():
            for f in files:
                notes.append(f"secrets for {environment}: copy the values from {f} into "
                             f".headway/secrets.{environment} and `chmod 600` it")
    else:
        text = starter_config(check_app_name(app) if app else suggest_app_name(directory.resolve().name))
    target.write_text(text)
    gitignore = directory / ".gitignore"
    rule = ".headway/secrets.*"
    existing = gitignore.read_text() if gitignore.exists() else ""
    if rule not in existing:
        gitignore.write_text(existing + ("" if not existing or existing.endswith("\n") else "\n") + rule + "\n")
        notes.append(f"added `{rule}` to .gitignore: secrets files must never be committed")
    return InitResult(target, notes)
