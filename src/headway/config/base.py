"""Building blocks of the headway.yml schema shared by its sections."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    """CPU and memory limits of a container."""

    cpus: float | None = Field(None, gt=0)
    memory: str | None = Field(None, description="e.g. 512m, 1g")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+(\.\d+)?[bkmg]?", v.lower()):
            raise ValueError("memory is a size such as 256m or 1g")
        return v
