"""What a deploy asks of the rest of headway (databases, for now), as an interface the library facade wires in.

The release code calls these at fixed points of a deploy and never imports the data code itself, so `release/`
does not depend on `data/` (which builds on releases: restore, clone and rollback-with-data use the deployer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from headway.errors import ReleaseCommandFailed
from headway.release.report import Reporter

if TYPE_CHECKING:
    from headway.config.resolve import Target
    from headway.engine.base import Engine


class DeployHooks(Protocol):
    def ensure_databases(self, target: Target, engine: Engine, state_root: Path, report: Reporter) -> None:
        """With the accessories: create and start the environment's databases."""

    def database_env(self, target: Target, engine: Engine, state_root: Path) -> dict[str, str]:
        """The environment variables that give the app its databases (URLs, credentials)."""

    def backup_before_release(self, target: Target, engine: Engine, state_root: Path, report: Reporter,
                              number: int) -> list[Any]:
        """Backups taken before deploy `number`'s release command runs."""

    def with_restore_hint(self, exc: ReleaseCommandFailed, backups: list[Any],
                          environment: str) -> ReleaseCommandFailed:
        """A failed release command, with how to get the data back from those backups."""


class NoHooks:
    """An environment without managed databases."""

    def ensure_databases(self, target: Target, engine: Engine, state_root: Path, report: Reporter) -> None:
        return None

    def database_env(self, target: Target, engine: Engine, state_root: Path) -> dict[str, str]:
        return {}

    def backup_before_release(self, target: Target, engine: Engine, state_root: Path, report: Reporter,
                              number: int) -> list[Any]:
        return []

    def with_restore_hint(self, exc: ReleaseCommandFailed, backups: list[Any],
                          environment: str) -> ReleaseCommandFailed:
        return exc
