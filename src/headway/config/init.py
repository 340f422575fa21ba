"""`headway init`: write a starter headway.yml, or one converted from docker-compose files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headway.config.compose_import import convert_from
from headway.config.loader import CONFIG_NAME
from headway.config.starter import check_app_name, free_environment_ports, starter_config, suggest_app_name
from headway.errors import ConfigError


@dataclass
class InitResult:
    path: Path
    notes: list[str] = field(default_factory=list)


def write_config(directory: Path, compose_files: list[Path], *, app: str | None = None,
                 force: bool = False, merged_files: list[str] | None = None) -> InitResult:
    """`compose_files`: one environment each (`FILE`, `FILE:ENV` or `DIR`; an override joins the file before it);
    `merged_files`: merged into one environment, as `docker compose -f a -f b` does. Nothing is written when
    the conversion fails."""
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", "pass --force to overwrite it")
    notes: list[str] = []
    if compose_files or merged_files:
        conversion = convert_from([str(p) for p in compose_files], list(merged_files or []), app=app,
                                  output_dir=directory)
        text = conversion.yaml_text
        notes.extend(conversion.notes)
        for environment, files in conversion.secrets.items():
            for f in files:
                notes.append(f"secrets for {environment}: copy the values from {f} into "
                             f".headway/secrets.{environment} and `chmod 600` it")
    else:
        ports = free_environment_ports()
        text = starter_config(check_app_name(app) if app else suggest_app_name(directory.resolve().name), ports)
        if ports != (8080, 8081):
            notes.append(f"ports 8080/8081 are taken on this host: production publishes {ports[0]}, "
                         f"staging {ports[1]}")
    target.write_text(text)
    gitignore = directory / ".gitignore"
    rule = ".headway/secrets.*"
    existing = gitignore.read_text() if gitignore.exists() else ""
    if rule not in existing:
        gitignore.write_text(existing + ("" if not existing or existing.endswith("\n") else "\n") + rule + "\n")
        notes.append(f"added `{rule}` to .gitignore: secrets files must never be committed")
    return InitResult(target, notes)
