"""Building blocks of the headway.yml schema shared by its sections."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${NAME}: a secret or env var, in env values and settings


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    """CPU and memory limits of a container."""

    cpus: float | None = Field(None, gt=0)
    memory: str | None = Field(None, description="e.g. 512m, 1g")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and memory_bytes(v) is None:
            raise ValueError("memory is a size such as 256m or 1g")
        return v


def memory_bytes(size: str) -> int | None:
    """A Docker memory size (512m, 1g, 1.5g, 1048576) in bytes; None when it is not one."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmg]?)", size.lower())
    if m is None:
        return None
    return int(float(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)])
