"""Commands and files inside a running container, for tools that need stdout and stderr apart and secrets in
the exec's environment (never on a command line, so nothing shows in a process listing)."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from docker.models.containers import Container

from headway.errors import HeadwayError


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


def exec_split(container: Container, argv: list[str], *, env: dict[str, str] | None = None, user: str = "",
               timeout: float | None = None) -> ExecResult:
    """Run a command in a container; stdout and stderr apart; a timeout leaves it running and says so."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(container.exec_run(argv, environment=env or None, user=user, demux=True))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return ExecResult(-1, "", "", timed_out=True)
    if failure:
        raise failure[0]
    code, (out, err) = result[0]
    return ExecResult(int(code if code is not None else -1), (out or b"").decode(errors="replace"),
                      (err or b"").decode(errors="replace"))


def put_file(container: Container, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write one file into a container (through a tar stream: no shell, no command line)."""
    folder, _, name = path.rpartition("/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(folder or "/", buf.getvalue()):
        raise HeadwayError(f"could not copy {name} into {container.name}", "check that the container is running")
