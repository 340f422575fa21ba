"""`deploy: {rehearse: …}` in headway.yml: whether `headway deploy` rehearses the release command first (on a
throwaway copy of the newest backup, headway/release/rehearse.py), and what counts as a big table.

```yaml
deploy:
  rehearse: true          # a failed rehearsal stops the deploy; flagged locks and rewrites are warnings
  # rehearse: strict      # flagged locks and rewrites stop it too
  # rehearse: {before_deploy: strict, big_table_rows: 50000, big_table_size: 64m}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from headway.config.base import Strict, memory_bytes

BIG_TABLE_ROWS = 10_000  # a lock on, or a rewrite of, a table with more rows than this is flagged
BIG_TABLE_SIZE = "8m"  # … or one larger than this (table, indexes and TOAST)

Mode = Literal["off", "warn", "strict"]


class RehearseSettings(Strict):
    """`deploy.rehearse` written out: when a deploy rehearses, and the thresholds of a flagged finding."""

    before_deploy: bool | Literal["strict"] = Field(
        True, description="rehearse before every deploy (strict: flagged findings stop it too)")
    big_table_rows: int = Field(BIG_TABLE_ROWS, ge=0, description="a table with more rows than this is big")
    big_table_size: str = Field(BIG_TABLE_SIZE, description="a table larger than this is big, e.g. 8m, 1g")

    @field_validator("big_table_size")
    @classmethod
    def _size(cls, v: str) -> str:
        if memory_bytes(v) is None:
            raise ValueError("big_table_size is a size such as 8m or 1g")
        return v


Rehearse = bool | Literal["strict"] | RehearseSettings


def rehearse_mode(value: Rehearse) -> Mode:
    """Whether a deploy rehearses first: off, warn (a failure stops it) or strict (findings stop it too)."""
    if isinstance(value, RehearseSettings):
        value = value.before_deploy
    if value == "strict":
        return "strict"
    return "warn" if value is True else "off"


def thresholds(value: Rehearse) -> tuple[int, int]:
    """(rows, bytes) above which a table counts as big."""
    settings = value if isinstance(value, RehearseSettings) else RehearseSettings()
    size = memory_bytes(settings.big_table_size)
    assert size is not None  # validated
    return settings.big_table_rows, size
