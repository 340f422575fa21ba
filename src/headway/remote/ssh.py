"""SSH to a server: host keys checked against known_hosts, keys from the agent or a file, commands streamed.

paramiko does the protocol; this module decides what is trusted and turns every failure into an error that names
the fix, never a traceback.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headway.errors import ConfigError, HeadwayError

if TYPE_CHECKING:
    import paramiko

_ADDRESS = re.compile(r"^(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)"
                      r"(?::(?P<port>\d{1,5}))?$")
LineSink = Callable[[bytes], None]


class SshError(HeadwayError):
    """The server could not be reached or refused us; nothing was changed on it."""


@dataclass(frozen=True)
class SshAddress:
    user: str
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> SshAddress:
        m = _ADDRESS.match(text.strip())
        if not m or not 0 < int(m.group("port") or 22) < 65536:
            raise ConfigError(f"{text!r} is not an SSH address", "write it as user@host or user@host:port, e.g. "
                                                                  "deploy@203.0.113.7:22")
        return cls(user=m.group("user") or "root", host=m.group("host").strip("[]"), port=int(m.group("port") or 22))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" + ("" if self.port == 22 else f":{self.port}")

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def is_remote(host: str) -> bool:
    return host not in ("local", "localhost")


def known_hosts_path() -> Path:
    return Path(os.environ.get("HEADWAY_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts")


def fingerprint(key: paramiko.PKey) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SshSession:
    """One SSH connection to a server, opened on first use."""

    def __init__(self, address: SshAddress, *, key_file: str | Path | None = None, accept_host_key: bool = False,
                 timeout: float = 15.0) -> None:
        self.address = address
        self.key_file = str(key_file) if key_file else os.environ.get("HEADWAY_SSH_KEY") or None
        self.accept_host_key = accept_host_key or os.environ.get("HEADWAY_ACCEPT_HOST_KEY") == "1"
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None

    # -- connecting ---------------------------------------------------------------------------------------
    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        client = paramiko.SSHClient()
        path = known_hosts_path()
        if path.exists():
            try:
                client.load_host_keys(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise SshError(f"cannot read {path}: {exc}", "fix or move that known_hosts file") from None
        client.set_missing_host_key_policy(_FirstUse(self, path))
        where = str(self.address)
        try:
            client.connect(self.address.host, port=self.address.port, username=self.address.user,
                           key_filename=self.key_file, timeout=self.timeout, banner_timeout=self.timeout,
                           auth_timeout=self.timeout, allow_agent=True, look_for_keys=self.key_file is None)
        except _UnknownHostKey as exc:
            raise SshError(f"{where}: unknown host key {exc.fingerprint}",
                           "check that fingerprint with the server's owner, then pass --accept-host-key "
                           "(it is saved to known_hosts)") from None
        except paramiko.BadHostKeyException:
            raise SshError(f"{where}: the host key changed since it was saved in {path}",
                           f"if the server was reinstalled, remove the old key (`ssh-keygen -R "
                           f"'{self.address.known_hosts_name}'`) and connect again; otherwise do not trust it"
                           ) from None
        except paramiko.AuthenticationException:
            raise SshError(f"{where}: the server refused our SSH key",
                           f"add your public key to ~{self.address.user}/.ssh/authorized_keys on the server, or "
                           "give the key with --ssh-key FILE (or HEADWAY_SSH_KEY)") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
                reason = f"nothing accepts connections on port {self.address.port}"
            else:
                reason = str(exc) or type(exc).__name__
            port = "" if self.address.port == 22 else f"-p {self.address.port} "
            ssh = f"ssh {port}{self.address.user}@{self.address.host}"
            raise SshError(f"cannot reach {where}: {reason}",
                           f"check the address and that sshd runs there (`{ssh}` must work)") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SshSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- commands -----------------------------------------------------------------------------------------
    def run(self, argv: list[str], *, stdin: bytes | IO[bytes] | None = None, on_stdout: LineSink | None = None,
            on_stderr: LineSink | None = None, timeout: float | None = None) -> int:
        """Run `argv` on the server (quoted for its shell); stream its output; return its exit status."""
        import paramiko

        try:
            transport = self.client.get_transport()
            if transport is None:
                raise OSError("not connected")
            channel = transport.open_session()
            channel.exec_command(shlex.join(argv))
            if timeout is not None:
                channel.settimeout(timeout)
            feeder = threading.Thread(target=_feed, args=(channel, stdin), daemon=True)
            feeder.start()
            out = on_stdout or (lambda b: None)
            err = on_stderr or (lambda b: None)
            while True:
                select.select([channel], [], [], 0.1)
                while channel.recv_ready():
                    out(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err(channel.recv_stderr(65536))
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
            feeder.join(5)
            return int(channel.recv_exit_status())
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise SshError(f"the connection to {self.address} broke: {exc or type(exc).__name__}",
                           "run the command again; an interrupted operation is finished or undone by the next "
                           "command on the server") from None

    def output(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = 60.0
               ) -> tuple[int, str, str]:
        out: list[bytes] = []
        err: list[bytes] = []
        code = self.run(argv, stdin=stdin, on_stdout=out.append, on_stderr=err.append, timeout=timeout)
        return code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")


def _feed(channel: Any, stdin: bytes | IO[bytes] | None) -> None:
    try:
        if isinstance(stdin, bytes):
            channel.sendall(stdin)
        elif stdin is not None:
            while chunk := stdin.read(65536):
                channel.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            channel.shutdown_write()
        except OSError:
            pass


class _UnknownHostKey(Exception):
    def __init__(self, fingerprint: str) -> None:
        super().__init__(fingerprint)
        self.fingerprint = fingerprint


class _FirstUse:
    """An unknown host key: saved when the user accepted it (flag or an interactive yes), refused otherwise."""

    def __init__(self, session: SshSession, path: Path) -> None:
        self.session = session
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fp = fingerprint(key)
        accepted = self.session.accept_host_key
        if not accepted and sys.stdin.isatty() and sys.stderr.isatty():
            sys.stderr.write(f"The host key of {self.session.address} is not known.\n"
                             f"{key.get_name()} key fingerprint is {fp}.\nTrust it and save it? [y/N] ")
            sys.stderr.flush()
            accepted = sys.stdin.readline().strip().lower() in ("y", "yes")
        if not accepted:
            raise _UnknownHostKey(fp)
        name = self.session.address.known_hosts_name
        client.get_host_keys().add(name, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path, "a") as fh:
            fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
