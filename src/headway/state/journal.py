"""The operation journal: every change to an environment is written down before anything acts.

One append-only file per app and environment. An operation is `begin` (its plan, as plain data), then one line
per completed step, then `end` (finished, undone or recovered). A line is written and fsynced before the step it
announces acts, so after a SIGKILL or a reboot the next command knows exactly what was under way. A torn last line
(a kill or a full disk mid-write) is ignored: the operation it belonged to is still open and gets recovered.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from headway.errors import HeadwayError

OpKind = Literal["deploy", "rollback", "scale", "stop", "start", "maintenance", "restore", "canary-abort"]
OpEnd = Literal["finished", "undone", "recovered", "failed"]


class Operation(BaseModel):
    id: str
    kind: OpKind
    by: str
    pid: int
    started_at: str
    plan: dict[str, Any] = Field(default_factory=dict)
    steps: list[str] = Field(default_factory=list)
    ended: OpEnd | None = None
    note: str = ""

    def done(self, step: str) -> bool:
        return step in self.steps


class JournalFull(HeadwayError):
    pass


class Journal:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "journal.jsonl"

    def _append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise JournalFull(f"the state directory {self.path.parent} is full; nothing more was changed",
                                  "free disk space there (`df -h`), then run the command again",
                                  details=str(exc)) from None
            raise

    def begin(self, kind: OpKind, plan: dict[str, Any], *, by: str, started_at: str) -> Operation:
        op = Operation(id=uuid.uuid4().hex[:12], kind=kind, by=by, pid=os.getpid(), started_at=started_at,
                       plan=plan)
        self._append({"op": op.id, "event": "begin", **op.model_dump(exclude={"steps", "ended", "note"})})
        return op

    def step(self, op: Operation, step: str, data: dict[str, Any] | None = None) -> None:
        """`step` is done; `data` updates the operation's plan (what a recovery needs to know from here on)."""
        entry: dict[str, Any] = {"op": op.id, "event": "step", "step": step}
        if data:
            entry["data"] = data
        self._append(entry)
        op.steps.append(step)
        if data:
            op.plan.update(data)

    def end(self, op: Operation, how: OpEnd, note: str = "") -> None:
        self._append({"op": op.id, "event": "end", "how": how, "note": note})
        op.ended, op.note = how, note

    def operations(self) -> list[Operation]:
        if not self.path.exists():
            return []
        ops: dict[str, Operation] = {}
        with open(self.path, "rb") as fh:
            for raw in fh:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue  # a torn line: its step did not happen as far as anyone knows
                op = ops.get(entry.get("op", ""))
                event = entry.get("event")
                if event == "begin":
                    fields = {k: v for k, v in entry.items() if k not in ("op", "event", "id")}
                    ops[entry["op"]] = Operation(id=entry["op"], **fields)
                elif op is not None and event == "step":
                    op.steps.append(entry["step"])
                    if isinstance(entry.get("data"), dict):
                        op.plan.update(entry["data"])
                elif op is not None and event == "end":
                    op.ended, op.note = entry.get("how"), entry.get("note", "")
        return list(ops.values())

    def open_operation(self) -> Operation | None:
        """The newest operation that began and never ended (its process died), if any."""
        for op in reversed(self.operations()):
            if op.ended is None:
                return op
        return None

    def last(self) -> Operation | None:
        ops = self.operations()
        return ops[-1] if ops else None

    def compact(self, keep: int = 200) -> None:
        """Keep the journal small: the newest `keep` operations (called under the deploy lock)."""
        ops = self.operations()
        if len(ops) <= keep * 2:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as fh:
            for op in ops[-keep:]:
                fh.write(json.dumps({"op": op.id, "event": "begin",
                                     **op.model_dump(exclude={"steps", "ended", "note"})}, sort_keys=True) + "\n")
                for s in op.steps:
                    fh.write(json.dumps({"op": op.id, "event": "step", "step": s}) + "\n")
                if op.ended:
                    fh.write(json.dumps({"op": op.id, "event": "end", "how": op.ended, "note": op.note}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
