"""A process inside a container whose stdout is a stream and whose stdin is writable (docker exec, hijacked).

Dumps and restores flow through this without ever being held whole in memory. Secrets reach the process as
environment variables of the exec, never on its command line, so they do not show in process listings.
"""

from __future__ import annotations

import fcntl
import io
import os
import signal
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from headway.errors import HeadwayError

if TYPE_CHECKING:  # the SDK itself loads with the engine's client, not with this module
    import docker

_STDOUT, _STDERR = 1, 2
_TAIL = 64 * 1024


class ExecProcess(io.RawIOBase):
    """`argv` running in `container_id`: read() gives its stdout; stderr is kept (the last 64 KiB)."""

    def __init__(self, client: docker.DockerClient, container_id: str, argv: list[str], *,
                 env: dict[str, str] | None = None, stdin: bool = False, user: str = "") -> None:
        super().__init__()
        self.api = client.api
        self.argv = argv
        self.exec_id: str = self.api.exec_create(container_id, argv, stdin=stdin, stdout=True, stderr=True,
                                                 environment=env or {}, user=user)["Id"]
        raw = self.api.exec_start(self.exec_id, socket=True)
        self._keep = raw  # the response object must outlive the socket
        self.sock: socket.socket = getattr(raw, "_sock", raw)
        self._left = 0  # bytes left in the current frame
        self._stream = 0
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._stdout_tail: deque[bytes] = deque()
        self._stdout_tail_size = 0
        self._eof = False
        self._drainer: threading.Thread | None = None

    # -- reading ----------------------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._eof:
            if self._left == 0 and not self._next_header():
                return 0
            if self._stream == _STDOUT:
                n = self.sock.recv_into(view[:min(len(view), self._left)])
                if n == 0:
                    self._eof = True
                    return 0
                self._left -= n
                return n
            chunk = self.sock.recv(min(self._left, 65536))
            if not chunk:
                self._eof = True
                return 0
            self._left -= len(chunk)
            self._keep_tail(self._stderr, chunk, "_stderr_size")
        return 0

    def _next_header(self) -> bool:
        header = b""
        while len(header) < 8:
            chunk = self.sock.recv(8 - len(header))
            if not chunk:
                self._eof = True
                return False
            header += chunk
        self._stream, self._left = struct.unpack(">BxxxL", header)
        return True

    def _keep_tail(self, store: deque[bytes], chunk: bytes, size_attr: str) -> None:
        store.append(chunk)
        size = getattr(self, size_attr) + len(chunk)
        while size > _TAIL and len(store) > 1:
            size -= len(store.popleft())
        setattr(self, size_attr, size)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    @property
    def stdout_tail(self) -> str:
        return b"".join(self._stdout_tail).decode(errors="replace")

    def drain_in_background(self) -> None:
        """Read (and keep the tail of) stdout in a thread, so a process fed through stdin never blocks on output."""
        def drain() -> None:
            try:
                buf = bytearray(65536)
                while True:
                    n = self.readinto(buf)
                    if n == 0:
                        return
                    self._keep_tail(self._stdout_tail, bytes(buf[:n]), "_stdout_tail_size")
            except OSError:
                return
        self._drainer = threading.Thread(target=drain, daemon=True)
        self._drainer.start()

    # -- writing ----------------------------------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise BrokenPipeError(f"{self.argv[0]} stopped reading its input ({exc})") from None
        return len(data)

    def close_stdin(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # -- ending -----------------------------------------------------------------------------------------
    def wait(self, timeout: float = 3600.0) -> int:
        """The exit code, once the process ended (its output must have been read to the end)."""
        if self._drainer is not None:
            self._drainer.join(timeout)
        deadline = time.monotonic() + timeout
        while True:
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                self._close_socket()
                code = info.get("ExitCode")
                return int(code) if code is not None else -1
            if time.monotonic() > deadline:
                raise HeadwayError(f"{self.argv[0]} did not finish within {timeout:.0f}s", "see its output")
            time.sleep(0.05)  # the daemon reports the exit a moment after the stream closes

    def kill(self) -> None:
        """Stop the process now: closing the stream alone leaves a reader of stdin waiting for more."""
        try:
            pid = int(self.api.exec_inspect(self.exec_id).get("Pid") or 0)
            if pid > 0:
                os.kill(pid, signal.SIGKILL)  # the pid is the host's: the engine runs on this host
        except Exception:  # noqa: BLE001 - OSError or the engine's own error: the process is gone either way
            pass
        self._close_socket()

    def _close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        self._close_socket()
        super().close()


def run(client: docker.DockerClient, container_id: str, argv: list[str], *, env: dict[str, str] | None = None,
        input: bytes | None = None, user: str = "", timeout: float = 600.0) -> tuple[int, str, str]:
    """Run a short command to completion: (exit code, stdout, stderr)."""
    proc = ExecProcess(client, container_id, argv, env=env, stdin=input is not None, user=user)
    if input is not None:
        proc.drain_in_background()
        proc.write(input)
        proc.close_stdin()
        code = proc.wait(timeout)
        return code, proc.stdout_tail, proc.stderr
    chunks = []
    while True:
        chunk = proc.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait(timeout)
    return code, b"".join(chunks).decode(errors="replace"), proc.stderr


def _wide_pipe(fh: Any) -> None:
    """A 1 MiB pipe buffer instead of 64 KiB: fewer wake-ups of both ends per chunk (Linux; best effort)."""
    try:
        fcntl.fcntl(fh.fileno(), fcntl.F_SETPIPE_SZ, 1024 * 1024)
    except (OSError, AttributeError):
        pass


class SpoolPipe(io.RawIOBase):
    """The stdout of `argv` in a container, read from a FIFO in a directory the container shares with the host.

    Same bytes as ExecProcess, without the Docker daemon copying each of them: a dump leaves the container at pipe
    speed, which matters on a busy host with few cores.
    """

    def __init__(self, client: docker.DockerClient, container_id: str, argv: list[str], *, env: dict[str, str],
                 host_dir: str, container_dir: str) -> None:
        super().__init__()
        name = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}.fifo"
        self.host_path = os.path.join(host_dir, name)
        os.mkfifo(self.host_path, 0o600)
        self.proc = ExecProcess(client, container_id, ["sh", "-c", 'exec "$@" > "$0"',
                                                       f"{container_dir}/{name}", *argv], env=env)
        self.proc.drain_in_background()
        self.argv = argv
        self.fh: Any = None
        opened = threading.Event()

        def open_reader() -> None:
            self.fh = open(self.host_path, "rb", buffering=0)  # noqa: SIM115 - closed in wait()/kill()
            _wide_pipe(self.fh)
            opened.set()

        threading.Thread(target=open_reader, daemon=True).start()
        while not opened.wait(0.05):
            if not self.proc.api.exec_inspect(self.proc.exec_id).get("Running"):
                # the tool ended without opening the pipe: open its write end to release the reader
                os.close(os.open(self.host_path, os.O_WRONLY | os.O_NONBLOCK))
                opened.wait(5)
                break

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return int(self.fh.readinto(buffer) or 0) if self.fh is not None else 0

    @property
    def stderr(self) -> str:
        return self.proc.stderr + self.proc.stdout_tail

    def wait(self, timeout: float = 3600.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._cleanup()

    def kill(self) -> None:
        self.proc.kill()
        self._cleanup()

    def _cleanup(self) -> None:
        if self.fh is not None:
            self.fh.close()
        try:
            os.unlink(self.host_path)
        except OSError:
            pass


class SpoolFeed(io.RawIOBase):
    """The stdin of `argv` in a container, written into a FIFO in a directory the container shares with the host
    (the mirror of SpoolPipe, for restores)."""

    def __init__(self, client: docker.DockerClient, container_id: str, argv: list[str], *, env: dict[str, str],
                 host_dir: str, container_dir: str) -> None:
        super().__init__()
        name = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}.fifo"
        self.host_path = os.path.join(host_dir, name)
        os.mkfifo(self.host_path, 0o600)
        self.proc = ExecProcess(client, container_id, ["sh", "-c", 'exec "$@" < "$0"',
                                                       f"{container_dir}/{name}", *argv], env=env)
        self.proc.drain_in_background()
        self.argv = argv
        self.fh: Any = None
        opened = threading.Event()

        def open_writer() -> None:
            try:
                self.fh = open(self.host_path, "wb", buffering=0)  # noqa: SIM115 - closed in close_stdin()/kill()
                _wide_pipe(self.fh)
            finally:
                opened.set()

        threading.Thread(target=open_writer, daemon=True).start()
        while not opened.wait(0.05):
            if not self.proc.api.exec_inspect(self.proc.exec_id).get("Running"):
                # the tool ended without opening the pipe: open its read end to release the writer
                os.close(os.open(self.host_path, os.O_RDONLY | os.O_NONBLOCK))
                opened.wait(5)
                break

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.fh is None:
            raise BrokenPipeError(f"{self.argv[0]} did not start")
        try:
            return int(self.fh.write(data))
        except OSError as exc:
            raise BrokenPipeError(f"{self.argv[0]} stopped reading its input ({exc})") from None

    def close_stdin(self) -> None:
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:
                pass

    @property
    def stderr(self) -> str:
        return self.proc.stderr

    @property
    def stdout_tail(self) -> str:
        return self.proc.stdout_tail

    def wait(self, timeout: float = 3600.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._cleanup()

    def kill(self) -> None:
        self.proc.kill()
        self.close_stdin()
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            os.unlink(self.host_path)
        except OSError:
            pass
