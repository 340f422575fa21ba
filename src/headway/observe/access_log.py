"""Reading headway's JSON access log: per-release request counts, error share and latency, from an offset on."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ReleaseStats:
    requests: int = 0
    server_errors: int = 0  # 5xx
    times: list[float] = field(default_factory=list)  # request_time, seconds

    @property
    def success_rate(self) -> float:
        """Percent of requests that were not 5xx (100 when there were none)."""
        return 100.0 if not self.requests else 100.0 * (self.requests - self.server_errors) / self.requests

    def percentile(self, p: float) -> float:
        if not self.times:
            return 0.0
        data = sorted(self.times)
        return data[min(len(data) - 1, max(0, math.ceil(p / 100 * len(data)) - 1))]

    def add(self, status: int, request_time: float) -> None:
        self.requests += 1
        if status >= 500:
            self.server_errors += 1
        self.times.append(request_time)

    def merge(self, other: ReleaseStats) -> None:
        self.requests += other.requests
        self.server_errors += other.server_errors
        self.times.extend(other.times)


class AccessLogReader:
    """Follows the access log from a byte offset; yields the stats of one app/environment per release."""

    def __init__(self, path: Path, app: str, environment: str, offset: int | None = None) -> None:
        self.path, self.app, self.environment = path, app, environment
        self.offset = offset if offset is not None else (path.stat().st_size if path.exists() else 0)
        self._partial = b""

    def read(self) -> dict[str, ReleaseStats]:
        stats: dict[str, ReleaseStats] = {}
        if not self.path.exists():
            return stats
        size = self.path.stat().st_size
        if size < self.offset:  # rotated or truncated: start from the top
            self.offset, self._partial = 0, b""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("app") != self.app or entry.get("environment") != self.environment:
                continue
            release = str(entry.get("release", ""))
            stats.setdefault(release, ReleaseStats()).add(int(entry.get("status", 0)),
                                                          float(entry.get("request_time", 0.0)))
        return stats
