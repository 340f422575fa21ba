"""Rollback to the warm standby in a blink: the switch happens before the rest of headway is even imported.

When a deploy leaves the previous release running as a warm standby, it also writes down (`standby.json`) what a
rollback to it would do: the routing line, the journal plan, the health checks. `headway rollback` without
arguments first tries this path, with nothing but the standard library: take the deploy lock, make sure nothing
was interrupted and that the proxy still serves what the note was written for, check the standby's health, journal
the operation, and post the new routing to the proxy. The library then takes over (lock, journal operation and
all) to sync the files on the host, start the other roles, record the rollback and retire what it left.

Any doubt (an open operation, a changed state, a failed check, a canary, a lock held by someone else) returns None
and the ordinary rollback runs instead, which reconciles first.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import http.client
import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from headway import faults
from headway.state.files import atomic_write as _atomic_write
from headway.state.files import read_json_object

NOTE = "standby.json"
last_reason = ""  # why the last try_switch declined, for the ordinary path to say


def _decline(reason: str) -> None:
    global last_reason
    last_reason = reason


@dataclass
class QuickSwitch:
    lock_fd: int
    op_id: str
    number: int  # the deploy now served
    record_number: int
    switched_after_s: float

    def release_lock(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.lock_fd, 0)
            os.close(self.lock_fd)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _operator() -> str:
    return f"{os.environ.get('HEADWAY_USER') or getpass.getuser()}@{socket.gethostname()}"


def _config_app(config: str | None) -> str | None:
    if config:
        path: Path | None = Path(config)
    else:
        here = Path.cwd()
        path = next((d / "headway.yml" for d in (here, *here.parents) if (d / "headway.yml").is_file()), None)
    if path is None or not path.is_file():
        return None
    m = re.search(r"^app:\s*[\"']?([A-Za-z0-9][A-Za-z0-9_.-]*)[\"']?\s*(#.*)?$", path.read_text(), re.MULTILINE)
    return m.group(1) if m else None


def _open_operation(journal: Path) -> bool:
    if not journal.exists():
        return False
    ended: dict[str, bool] = {}
    with open(journal, "rb") as fh:
        for raw in fh:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("event") == "begin":
                ended[entry["op"]] = False
            elif entry.get("event") == "end":
                ended[entry.get("op", "")] = True
    return not all(ended.values())


def _http(method: str, host: str, port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None
          = None, timeout: float = 2.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(1 << 22).decode(errors="replace")
    finally:
        conn.close()


def _append(journal: Path, entry: dict[str, Any]) -> None:
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def try_switch(state_dir: str | None, config: str | None, environment: str) -> QuickSwitch | None:
    started = time.monotonic()
    app = _config_app(config)
    if app is None:
        _decline("no app name found in headway.yml")
        return None
    root = Path(state_dir or os.environ.get("HEADWAY_STATE_DIR") or "/var/lib/headway")
    env_dir = root / "apps" / app / environment
    note = read_json_object(env_dir / NOTE)
    if not isinstance(note, dict) or not (env_dir / "deploy.lock").exists():
        _decline("no warm standby recorded")
        return None
    fd = os.open(env_dir / "deploy.lock", os.O_RDWR | os.O_CREAT, 0o600)
    switch: QuickSwitch | None = None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _decline("the deploy lock is held")
            return None  # the ordinary path reports who holds it, or waits with --wait
        info = {"by": _operator(), "pid": os.getpid(), "since": _now_iso(), "command": "rollback"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        switch = _switch(root, env_dir, note, fd, started)
        return switch
    finally:
        if switch is None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _switch(root: Path, env_dir: Path, note: dict[str, Any], fd: int, started: float) -> QuickSwitch | None:
    journal = env_dir / "journal.jsonl"
    current = read_json_object(env_dir / "current.json")
    if _open_operation(journal) or not isinstance(current, dict):
        _decline("an interrupted operation needs recovering first")
        return None
    if current.get("live") != note.get("live") or current.get("standby") != note.get("standby") \
            or current.get("stopped"):
        _decline("the warm standby note is out of date")
        return None
    settings = read_json_object(root / "proxy" / "settings.json") or {}
    port = int(settings.get("control_port", 8765))
    try:
        status, served = _http("GET", "127.0.0.1", port, "/routing")
    except (OSError, http.client.HTTPException):
        _decline("the proxy does not answer")
        return None
    lines = served.splitlines()
    key = note["route_key"]
    index = next((i for i, ln in enumerate(lines) if ln.split()[:2] == ["r", key]), None)
    if status != 200 or index is None:
        _decline("the proxy serves no route for this environment")
        return None
    fields = lines[index].split()
    if len(fields) < 11 or fields[3] != str(note["live"]) or fields[8] != "0":
        _decline("the proxy does not serve what the note was written for (or a canary runs)")
        return None
    checks = note.get("health") or {}  # role -> its HTTP check ("" for a peer written without its role)
    for peer in note["peers"]:
        role, _, address = peer.rpartition("@")
        health = checks.get(role) or checks.get("")
        if not isinstance(health, dict):
            _decline(f"the note has no health check for {peer}")
            return None
        host, _, peer_port = address.rpartition(":")
        try:
            got, _ = _http("GET", host, int(peer_port), health["path"],
                           headers={"Host": health["host"]} if health.get("host") else None,
                           timeout=float(health.get("timeout", 2.0)))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            _decline(f"the standby's health check failed at {peer}: {exc}")
            return None
        if got != int(health.get("status", 200)):
            _decline(f"the standby's health check at {peer} answered {got}")
            return None
    # a number for the rollback's history record, written down before it is used
    history = env_dir / "releases.jsonl"
    last = 0
    if history.exists():
        for raw in history.read_bytes().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                last = max(last, int(json.loads(raw)["number"]))
    try:
        stored = int((env_dir / "next-number").read_text().strip() or 1)
    except (OSError, ValueError):
        stored = 1
    number = max(stored, last + 1)
    _atomic_write(env_dir / "next-number", str(number + 1))
    plan = dict(note["plan"])
    plan["record"] = {**plan["record"], "number": number, "by": _operator(), "started_at": _now_iso()}
    op_id = uuid.uuid4().hex[:12]
    _append(journal, {"op": op_id, "event": "begin", "id": op_id, "kind": "rollback", "by": _operator(),
                      "pid": os.getpid(), "started_at": plan["record"]["started_at"], "plan": plan})
    fields[2], fields[3], fields[4] = quote(note["release"], safe="") or "-", str(note["standby"]), \
        ",".join(note["peers"]) or "-"
    lines[index] = " ".join(fields)
    body = "".join(ln + "\n" for ln in lines if ln.startswith("r "))
    version = hashlib.sha256(body.encode()).hexdigest()[:16]
    try:
        status, answer = _http("POST", "127.0.0.1", port, "/routing", body=f"v {version}\n{body}".encode(),
                               headers={"Content-Type": "text/plain"}, timeout=5.0)
    except (OSError, http.client.HTTPException):
        status, answer = 0, ""
    if status != 200 or answer.strip() != version:
        _decline("the proxy did not take the routing")
        _append(journal, {"op": op_id, "event": "end", "how": "undone", "note": "the proxy did not take it"})
        return None
    _append(journal, {"op": op_id, "event": "step", "step": "switched"})
    faults.point("quick:switched")
    return QuickSwitch(fd, op_id, int(note["standby"]), number, time.monotonic() - started)
