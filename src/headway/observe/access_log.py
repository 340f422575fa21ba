"""Reading headway's JSON access log: per-release request counts, error share and latency, from an offset on.

One line per request, written by the proxy's `headway_json` log format (src/headway/proxy/templates/nginx.conf.j2).
`parse_entry` turns a line into an `AccessEntry`; `AccessLogReader` follows the log in memory for one app and
environment (canary analysis); `AccessLogTail` follows it across restarts for every app, its position kept in a
state file, and survives the log being rotated or truncated.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple


class AccessEntry(NamedTuple):
    """The fields of one access-log line that headway measures."""

    app: str
    environment: str
    release: str
    role: str
    status: int
    request_time: float  # seconds
    msec: float  # when the request ended, Unix time in seconds (0 when the line has none)
    upstream_addr: str = ""


# The proxy writes its fields in this order (log_format headway_json): a line that starts so, with no escaped
# character in the fields headway measures, is read without a full JSON parse (about three times faster).
_PROXY_LINE = re.compile(
    rb'\{"time":"[^"\\]*","msec":([0-9.]+),"app":"([^"\\]*)","environment":"([^"\\]*)","release":"([^"\\]*)",'
    rb'"role":"([^"\\]*)","status":([0-9]+),"request_time":([0-9.]+),"upstream_response_time":"[^"\\]*",'
    rb'"upstream_addr":"([^"\\]*)",')


def parse_entry(line: bytes | str) -> AccessEntry | None:
    """One access-log line, or None when it is not a JSON object with a numeric status and request time."""
    raw = line.encode() if isinstance(line, str) else line
    m = _PROXY_LINE.match(raw)
    if m is not None and raw.rstrip().endswith(b"}"):
        try:
            msec, app, env, release, role, status, request_time, upstream = m.groups()
            return AccessEntry(app.decode(), env.decode(), release.decode(), role.decode(), int(status),
                               float(request_time), float(msec), upstream.decode())
        except ValueError:
            pass  # not what it looked like: the full parse decides
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict):
            return None
        return AccessEntry(str(entry.get("app", "")), str(entry.get("environment", "")),
                           str(entry.get("release", "")), str(entry.get("role", "")),
                           int(entry.get("status", 0)), float(entry.get("request_time", 0.0)),
                           float(entry.get("msec", 0.0)), str(entry.get("upstream_addr", "")))
    except (ValueError, TypeError):
        return None


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines in `data`, and what follows the last newline (a line still being written)."""
    lines = data.split(b"\n")
    return lines, lines.pop()


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
        lines, self._partial = split_lines(self._partial + chunk)  # an unfinished last line waits for the next read
        for line in lines:
            entry = parse_entry(line)
            if entry is None or entry.app != self.app or entry.environment != self.environment:
                continue
            stats.setdefault(entry.release, ReleaseStats()).add(entry.status, entry.request_time)
        return stats


class AccessLogTail:
    """Follows the access log across restarts: each `read()` returns the complete lines written since the last one.

    Its position (the file's inode and the byte after the last complete line read) is kept in `state_file`, written
    atomically after each read. A line still being written is left for the next read. When the log is rotated (a new
    inode at `path`), the rest of the old file is read first if it is still beside it as `<path>.1`, then the new
    file from its start; when it is truncated (smaller than the position), from its start. One read returns at most
    `max_bytes` of the file (`behind` tells how much is left); a single line longer than that is skipped. Without a
    state file the tail starts at the end of the log as it is when the tail is made (`from_start=True`: at its
    beginning; a log that does not exist yet is read from its beginning once it does).
    """

    def __init__(self, path: Path, state_file: Path, *, max_bytes: int = 4 << 20, from_start: bool = False) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.path, self.state_file, self.max_bytes, self.from_start = path, state_file, max_bytes, from_start
        self.behind = 0  # bytes of the log not read yet, as of the last read
        self.skipped_lines = 0  # lines longer than max_bytes, skipped since this tail was made
        self._state = self._load()
        if self._state is None:  # no position yet: the end of the log as it is now (its start when there is none)
            try:
                st = path.stat()
                self._state = {"inode": st.st_ino, "device": st.st_dev,
                               "offset": 0 if from_start else st.st_size, "skipping": 0}
            except FileNotFoundError:
                pass

    # -- position -----------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, int] | None:
        try:
            data = json.loads(self.state_file.read_text())
            return {k: int(data[k]) for k in ("inode", "device", "offset", "skipping")}
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no state yet, or unreadable: start afresh

    def _save(self, state: dict[str, int]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    @property
    def offset(self) -> int:
        """The byte of the current log file the next read starts at."""
        return self._state["offset"] if self._state else 0

    # -- reading ------------------------------------------------------------------------------------------------
    def _rotated_away(self, inode: int, device: int) -> Path | None:
        old = self.path.with_name(self.path.name + ".1")
        try:
            st = old.stat()
        except OSError:
            return None
        return old if (st.st_ino, st.st_dev) == (inode, device) else None

    def _read_from(self, fh: BinaryIO, state: dict[str, int], budget: int) -> tuple[list[bytes], int, bool]:
        """Complete lines from state's offset within `budget` bytes, advancing state past them; the bytes read and
        whether the end of the file was reached."""
        fh.seek(state["offset"])
        chunk = fh.read(budget)
        eof = len(chunk) < budget
        start = 0
        if state["skipping"]:  # the rest of a line longer than max_bytes: drop it, up to its newline
            newline = chunk.find(b"\n")
            if newline < 0:
                state["offset"] += len(chunk)
                return [], len(chunk), eof
            start, state["skipping"] = newline + 1, 0
        lines, partial = split_lines(chunk[start:])
        consumed = len(chunk) - len(partial)
        if consumed == 0 and budget == self.max_bytes and not eof:
            consumed, state["skipping"] = len(chunk), 1  # one line longer than max_bytes: skipped
            self.skipped_lines += 1
        state["offset"] += consumed
        return [line for line in lines if line], len(chunk), eof

    def read(self) -> list[bytes]:
        """The complete lines written since the last read (without their newlines), at most `max_bytes` of them."""
        try:
            with open(self.path, "rb") as fh:
                lines, state = self._read_open(fh, self._state)
        except FileNotFoundError:
            return []  # no log yet (or between a rename and the proxy reopening it): nothing new
        if state != self._state:
            self._save(state)
        self._state = state
        return lines

    def _read_open(self, fh: BinaryIO, before: dict[str, int] | None) -> tuple[list[bytes], dict[str, int]]:
        st = os.fstat(fh.fileno())
        current = {"inode": st.st_ino, "device": st.st_dev, "offset": 0, "skipping": 0}
        lines: list[bytes] = []
        budget, old_left = self.max_bytes, 0
        if before is None:  # the log did not exist when this tail was made: all of it is new
            state = current
        elif (before["inode"], before["device"]) != (st.st_ino, st.st_dev):  # rotated: finish the old file first
            state, eof = dict(before), True
            old = self._rotated_away(before["inode"], before["device"])
            if old is not None:
                try:
                    with open(old, "rb") as ofh:
                        lines, used, eof = self._read_from(ofh, state, budget)
                        old_left = os.fstat(ofh.fileno()).st_size - state["offset"]
                    budget -= used
                except OSError:
                    eof = True  # gone meanwhile: what was left in it is lost
            if eof:
                state, old_left = current, 0
        elif st.st_size < before["offset"]:  # truncated in place
            state = current
        else:
            state = dict(before)
        if budget > 0 and state["inode"] == st.st_ino and state["device"] == st.st_dev:
            lines += self._read_from(fh, state, budget)[0]
            self.behind = max(0, st.st_size - state["offset"])
        else:
            self.behind = old_left + st.st_size
        return lines, state
