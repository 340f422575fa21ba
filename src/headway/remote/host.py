"""A server as `headway server …` sees it: shell scripts run as root over SSH (directly or through sudo)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from headway.errors import HeadwayError
from headway.remote.ssh import SshSession

SBIN_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ServerError(HeadwayError):
    """The server is not one headway can prepare, or a step on it failed."""


@dataclass(frozen=True)
class Facts:
    os_id: str
    os_like: str
    os_name: str
    root: bool  # logged in as root (else: passwordless sudo)
    systemd: bool
    ssh_port: int | None  # the server's port of this SSH connection


_FACTS = r"""
. /etc/os-release 2>/dev/null || true
echo "id=${ID:-}"
echo "like=${ID_LIKE:-}"
echo "name=${PRETTY_NAME:-unknown}"
echo "uid=$(id -u)"
if [ "$(id -u)" != 0 ]; then sudo -n true >/dev/null 2>&1 && echo sudo=yes || echo sudo=no; fi
[ -d /run/systemd/system ] && echo systemd=yes || echo systemd=no
set -- ${SSH_CONNECTION:-}
echo "sshport=${4:-}"
"""


class Server:
    """Runs scripts on the server as root; every failure becomes a ServerError with the output's last lines."""

    def __init__(self, session: SshSession) -> None:
        self.session = session
        self._facts: Facts | None = None

    @property
    def address(self) -> str:
        return str(self.session.address)

    def facts(self) -> Facts:
        if self._facts is None:
            code, out, err = self.session.output(["sh", "-c", _FACTS], timeout=30)
            if code != 0:
                raise ServerError(f"{self.address}: cannot run a shell there ({err.strip()[-200:]})",
                                  "log in with `ssh` and check the account's shell")
            v = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            root = v.get("uid") == "0"
            if not root and v.get("sudo") != "yes":
                raise ServerError(f"{self.address}: {self.session.address.user} is not root and cannot use sudo "
                                  "without a password",
                                  f"connect as root@{self.session.address.host}, or give "
                                  f"{self.session.address.user} passwordless sudo "
                                  f"(`{self.session.address.user} ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/)")
            port = v.get("sshport", "")
            self._facts = Facts(os_id=v.get("id", ""), os_like=v.get("like", ""), os_name=v.get("name", "unknown"),
                                root=root, systemd=v.get("systemd") == "yes",
                                ssh_port=int(port) if port.isdigit() else None)
        return self._facts

    def require_debian(self) -> Facts:
        f = self.facts()
        if not {"debian", "ubuntu"} & {f.os_id, *f.os_like.split()}:
            raise ServerError(f"{self.address} runs {f.os_name}: headway prepares Debian and Ubuntu servers only",
                              "use a Debian (12+) or Ubuntu (22.04+) server, or install Docker Engine, python3 "
                              "(3.11+) and headway on it yourself")
        return f

    def _argv(self, script: str) -> list[str]:
        body = f"export {SBIN_PATH} DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8\n{script}"
        argv = ["sh", "-c", body]
        return argv if self.facts().root else ["sudo", "-n", *argv]

    def run(self, script: str, *, stdin: bytes | None = None, timeout: float = 600) -> tuple[int, str, str]:
        """`script` as root; its exit status, stdout and stderr."""
        return self.session.output(self._argv(script), stdin=stdin, timeout=timeout)

    def sh(self, script: str, *, what: str, stdin: bytes | None = None, timeout: float = 600) -> str:
        """`script` as root; its stdout; a ServerError naming `what` if it fails."""
        code, out, err = self.run(script, stdin=stdin, timeout=timeout)
        if code != 0:
            tail = "\n".join((err or out).strip().splitlines()[-8:])
            raise ServerError(f"{self.address}: {what} failed (exit {code})", "see the output above, fix it on the "
                              "server, then run the command again (done steps are skipped)", details=tail)
        return out

    def ok(self, script: str, timeout: float = 120) -> bool:
        return self.run(script, timeout=timeout)[0] == 0

    def read(self, path: str) -> str | None:
        code, out, _ = self.run(f"cat {shlex.quote(path)} 2>/dev/null", timeout=30)
        return out if code == 0 else None

    def write(self, path: str, content: str, *, mode: str = "0644", what: str | None = None) -> None:
        """Replace `path` atomically (a temporary file beside it, then a rename)."""
        q = shlex.quote(path)
        self.sh(f"mkdir -p \"$(dirname {q})\" && tmp={q}.headway-new && cat > \"$tmp\" && chmod {mode} \"$tmp\" "
                f"&& mv -f \"$tmp\" {q}", what=what or f"writing {path}", stdin=content.encode())
