"""`headway server bootstrap`: a fresh Debian or Ubuntu server made ready for headway, over SSH, idempotently.

Each step looks first and changes only what differs, so a second run reports every step `ok` and `--check` tells
what a run would change without changing anything. Order matters twice: Docker's log rotation is written before
the engine first starts (no restart on a fresh server), and the firewall keeps the SSH port of the running session
open and is applied only after `nft -c` accepted it; sshd is reloaded only after `sshd -t` accepted its drop-in.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from headway import __version__
from headway.errors import ConfigError
from headway.remote.host import Server, ServerError
from headway.remote.ssh import SshAddress, SshSession

VENV = "/opt/headway/venv"
WHEEL_DIGEST = "/opt/headway/wheel.sha256"
BIN = "/usr/local/bin/headway"
FIREWALL_FILE = "/etc/headway/firewall.nft"
FIREWALL_DIR = "/etc/headway/firewall.d"  # additions to the ruleset (the swarm's members)
SWARM_PORTS = "30000-32767"  # the ports swarm tasks publish (engine/swarm.py PUBLISHED_PORTS)
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-headway.conf"
AUTO_UPGRADES = "/etc/apt/apt.conf.d/20auto-upgrades"
DAEMON_JSON = "/etc/docker/daemon.json"
DOCKERD_LOG = "/var/log/headway-dockerd.log"
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
BASE_PORTS = (80, 443)

SSHD_HARDENING = ("# Written by `headway server bootstrap`: keys only, root by key only.\n"
                  "PasswordAuthentication no\n"
                  "PermitRootLogin prohibit-password\n"
                  "KbdInteractiveAuthentication no\n")
AUTO_UPGRADES_CONF = ('// Written by `headway server bootstrap`: refresh the package lists and install security\n'
                      '// updates every day (which origins: /etc/apt/apt.conf.d/50unattended-upgrades).\n'
                      'APT::Periodic::Update-Package-Lists "1";\n'
                      'APT::Periodic::Unattended-Upgrade "1";\n')

OK, CHANGED, WOULD_CHANGE = "ok", "changed", "would change"


@dataclass
class StepResult:
    name: str
    status: str  # ok | changed | would change
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"step": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Options:
    user: str = "deploy"
    public_key: str | None = None  # "ssh-ed25519 AAAA… comment", authorized for `user`
    extra_ports: list[int] = field(default_factory=list)  # published by the config given


@dataclass
class Step:
    name: str
    check: Callable[[], str | None]  # None: nothing to do; else what would change
    apply: Callable[[str], str]  # given check's text; returns what it did


# -- shell pieces -----------------------------------------------------------------------------------------
_APT_INSTALL = r"""
apt_install() {
    lock="-o DPkg::Lock::Timeout=300"
    fresh=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n1)
    [ -n "$fresh" ] || apt-get -qq $lock update
    apt-get install -y -qq $lock "$@" >/dev/null || { apt-get -qq $lock update && apt-get install -y -qq $lock "$@"; }
}
"""

_START_DOCKERD = rf"""
if [ -d /run/systemd/system ]; then
    systemctl enable --now docker >/dev/null 2>&1 || systemctl start docker
else
    setsid dockerd >>{DOCKERD_LOG} 2>&1 </dev/null &
fi
i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
        tail -n 20 {DOCKERD_LOG} >&2 2>/dev/null; echo "dockerd did not start in 60s" >&2; exit 1
    fi
    sleep 0.5
done
"""

_STOP_DOCKERD = r"""
if [ -d /run/systemd/system ]; then
    systemctl stop docker
else
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            i=$((i + 1)); [ "$i" -gt 240 ] && { echo "dockerd did not stop in 120s" >&2; exit 1; }
            sleep 0.5
        done
    fi
fi
"""


def _pkg_installed(server: Server, package: str) -> bool:
    return server.ok(f"dpkg-query -W -f='${{Status}}' {shlex.quote(package)} 2>/dev/null | grep -q 'ok installed'")


# -- the steps --------------------------------------------------------------------------------------------
class Bootstrap:
    def __init__(self, server: Server, options: Options) -> None:
        self.server = server
        self.options = options

    def steps(self) -> list[Step]:
        return [
            Step("Docker log rotation", self._logs_check, self._logs_apply),
            Step("Docker Engine", self._docker_check, self._docker_apply),
            Step(f"headway {__version__}", self._headway_check, self._headway_apply),
            Step(f"deploy user {self.options.user}", self._user_check, self._user_apply),
            Step("firewall", self._firewall_check, self._firewall_apply),
            Step("unattended security upgrades", self._upgrades_check, self._upgrades_apply),
            Step("SSH hardening", self._sshd_check, self._sshd_apply),
        ]

    # Docker's log rotation --------------------------------------------------------------------------------
    def _daemon_json(self) -> tuple[dict[str, object], dict[str, object]]:
        text = self.server.read(DAEMON_JSON)
        try:
            current = json.loads(text) if text and text.strip() else {}
        except ValueError as exc:
            raise ServerError(f"{self.server.address}: {DAEMON_JSON} is not valid JSON ({exc})",
                              f"fix or remove {DAEMON_JSON} on the server, then run the command again") from None
        if not isinstance(current, dict):
            raise ServerError(f"{self.server.address}: {DAEMON_JSON} is not a JSON object",
                              f"fix or remove {DAEMON_JSON} on the server, then run the command again")
        desired = dict(current)
        if desired.get("log-driver", "json-file") in ("json-file", "local"):
            raw = desired.get("log-opts")
            opts: dict[str, object] = dict(raw) if isinstance(raw, dict) else {}
            for key, value in LOG_OPTS.items():
                opts.setdefault(key, value)
            desired["log-opts"] = opts
        return current, desired

    def _logs_check(self) -> str | None:
        current, desired = self._daemon_json()
        if current == desired:
            return None
        running = self.server.ok("docker info >/dev/null 2>&1")
        return (f"set log-opts {json.dumps(LOG_OPTS)} in {DAEMON_JSON}"
                + ("; the running engine is restarted for it, which restarts its containers" if running else ""))

    def _logs_apply(self, _: str) -> str:
        current, desired = self._daemon_json()
        running = self.server.ok("docker info >/dev/null 2>&1")
        self.server.write(DAEMON_JSON, json.dumps(desired, indent=2) + "\n")
        done = f"log-opts max-size {LOG_OPTS['max-size']}, max-file {LOG_OPTS['max-file']} in {DAEMON_JSON}"
        if running:
            self.server.sh(_STOP_DOCKERD + _START_DOCKERD, what="restarting the Docker engine", timeout=300)
            done += "; the engine was restarted, and with it its containers (those with a restart policy are back)"
        return done

    # Docker Engine ----------------------------------------------------------------------------------------
    def _docker_check(self) -> str | None:
        if not self.server.ok("command -v dockerd >/dev/null"):
            return "install docker.io and start it"
        if not self.server.ok("docker info >/dev/null 2>&1"):
            return "start the Docker engine"
        if self.server.facts().systemd and not self.server.ok("systemctl is-enabled docker >/dev/null 2>&1"):
            return "start the Docker engine at boot (systemctl enable docker)"
        return None

    def _docker_apply(self, todo: str) -> str:
        script = ""
        if todo.startswith("install"):
            script += _APT_INSTALL + "apt_install docker.io\n"
        script += _START_DOCKERD + "docker version --format '{{.Server.Version}}'\n"
        version = self.server.sh(script, what="installing and starting the Docker engine", timeout=900).strip()
        how = "systemctl enable --now docker" if self.server.facts().systemd else f"dockerd (log: {DOCKERD_LOG})"
        return f"{'installed docker.io, ' if todo.startswith('install') else ''}Docker {version} running ({how})"

    def _docker_ok_detail(self) -> str:
        code, out, _ = self.server.run("docker version --format '{{.Server.Version}}'", timeout=30)
        return f"Docker {out.strip()} running" if code == 0 else ""

    # headway ----------------------------------------------------------------------------------------------
    def _wheel(self) -> tuple[Path, str]:
        from headway.remote.wheel import build_wheel

        if not hasattr(self, "_built"):
            self._tmp = tempfile.TemporaryDirectory(prefix="headway-wheel-")
            wheel = build_wheel(Path(self._tmp.name))
            self._built = (wheel.path, wheel.sha256)
        return self._built

    def _headway_check(self) -> str | None:
        _, digest = self._wheel()
        code, out, _ = self.server.run(f"{BIN} --version 2>/dev/null; cat {WHEEL_DIGEST} 2>/dev/null", timeout=60)
        lines = out.split()
        there = out.splitlines()[0].strip() if out.strip() else ""
        if not there.startswith("headway"):
            return f"install headway {__version__} into {VENV}"
        if there != f"headway, version {__version__}":
            return f"replace {there.removeprefix('headway, ')} with {__version__}"
        if lines and len(lines[-1]) == 64 and lines[-1] != digest:
            return f"install this build of headway {__version__} (the server has another one)"
        return None

    def _headway_apply(self, todo: str) -> str:
        path, digest = self._wheel()
        py = self.server.run("python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))'",
                             timeout=60)[0]
        if py != 0:
            have_python = self.server.run("python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'",
                                          timeout=60)[0] == 0
            if not have_python and self.server.ok("command -v python3 >/dev/null"):
                raise ServerError(f"{self.server.address}: headway needs Python 3.11 or newer; the server's "
                                  "python3 is older", "use Debian 12+ or Ubuntu 23.04+, or install python3.11 there")
            self.server.sh(_APT_INSTALL + "apt_install python3 python3-venv", what="installing python3-venv",
                           timeout=900)
        upload = self.server.sh(f"d=$(mktemp -d) && cat > \"$d/{path.name}\" && echo \"$d\"",
                                what=f"uploading {path.name}", stdin=path.read_bytes()).strip()
        q = shlex.quote(f"{upload}/{path.name}")
        self.server.sh(
            f"set -e\n[ -x {VENV}/bin/pip ] || python3 -m venv {VENV}\n"
            f"{VENV}/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps {q}\n"
            f"{VENV}/bin/pip install --quiet --disable-pip-version-check {q}\n"
            f"ln -sf {VENV}/bin/headway {BIN}\necho {digest} > {WHEEL_DIGEST}\nrm -rf {shlex.quote(upload)}\n"
            f"{BIN} --version >/dev/null",
            what="installing headway (its dependencies come from PyPI)", timeout=1200)
        return f"headway {__version__} installed in {VENV} (this build, sha256 {digest[:12]}), linked as {BIN}"

    # deploy user ------------------------------------------------------------------------------------------
    def _key_blob(self) -> str | None:
        key = self.options.public_key
        return key.split()[1] if key and len(key.split()) >= 2 else None

    def _user_check(self) -> str | None:
        user = shlex.quote(self.options.user)
        if not self.server.ok(f"id -u {user} >/dev/null 2>&1"):
            return f"create {self.options.user} (in the docker group, your key authorized)"
        if not self.server.ok(f"id -nG {user} | tr ' ' '\\n' | grep -qx docker"):
            return f"add {self.options.user} to the docker group"
        blob = self._key_blob()
        if blob and not self.server.ok(f"grep -qF {shlex.quote(blob)} ~{self.options.user}/.ssh/authorized_keys"):
            return f"authorize your key for {self.options.user}"
        if not self.server.ok(f"[ \"$(stat -c %U /var/lib/headway 2>/dev/null)\" = {user} ]"):
            return f"give {self.options.user} headway's state directory /var/lib/headway"
        return None

    def _user_apply(self, todo: str) -> str:
        user = shlex.quote(self.options.user)
        key = self.options.public_key
        script = (f"set -e\ngetent group docker >/dev/null || groupadd --system docker\n"
                  f"id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}\n"
                  f"usermod -aG docker {user}\n"
                  f"mkdir -p /var/lib/headway && chown -R {user}: /var/lib/headway\n")
        if key:
            script += (f"home=$(getent passwd {user} | cut -d: -f6)\n"
                       f"install -d -m 700 -o {user} -g \"$(id -gn {user})\" \"$home/.ssh\"\n"
                       f"touch \"$home/.ssh/authorized_keys\"\n"
                       f"grep -qF {shlex.quote(key.split()[1])} \"$home/.ssh/authorized_keys\" || "
                       f"printf '%s\\n' {shlex.quote(key)} >> \"$home/.ssh/authorized_keys\"\n"
                       f"chmod 600 \"$home/.ssh/authorized_keys\"\n"
                       f"chown {user}: \"$home/.ssh/authorized_keys\"\n")
        self.server.sh(script, what=f"setting up the user {self.options.user}")
        authorized = "your key authorized" if key else "no key authorized (none found: give --ssh-key)"
        return f"{self.options.user}: in the docker group, {authorized}, owns /var/lib/headway"

    # firewall ---------------------------------------------------------------------------------------------
    def _ssh_ports(self) -> list[int]:
        ports = {p for p in [self.server.facts().ssh_port] if p}
        code, out, _ = self.server.run("sshd -T 2>/dev/null | awk '$1 == \"port\" {print $2}'", timeout=30)
        ports |= {int(p) for p in out.split() if p.isdigit()}
        return sorted(ports or {22})

    def firewall_ruleset(self) -> str:
        ssh = self._ssh_ports()
        tcp = sorted({*ssh, *BASE_PORTS, *self.options.extra_ports})
        return (
            "#!/usr/sbin/nft -f\n"
            "# Written by `headway server bootstrap`: new connections from outside reach SSH, HTTP(S) and the\n"
            "# ports headway.yml publishes only. Docker's own tables (published container ports) are not touched.\n"
            "table inet headway\n"
            "delete table inet headway\n"
            "table inet headway {\n"
            "    set swarm_members {\n"
            "        type ipv4_addr\n"
            "        comment \"the machines of this host's swarm (headway swarm init)\"\n"
            "    }\n"
            "    chain input {\n"
            "        type filter hook input priority 0; policy drop;\n"
            '        iif "lo" accept\n'
            "        ct state established,related accept\n"
            "        ct state invalid drop\n"
            '        iifname "docker0" accept\n'
            '        iifname "br-*" accept\n'
            '        iifname "docker_gwbridge" accept\n'
            "        meta l4proto { icmp, ipv6-icmp } accept\n"
            "        udp dport { 68, 546 } accept comment \"DHCP replies\"\n"
            f"        tcp dport {{ {', '.join(map(str, tcp))} }} accept comment \"SSH {', '.join(map(str, ssh))}\"\n"
            "        ip saddr @swarm_members tcp dport { 2377, 7946 } accept comment \"swarm control\"\n"
            "        ip saddr @swarm_members udp dport { 7946, 4789 } accept comment \"swarm gossip, overlay\"\n"
            "    }\n"
            "    chain forward {\n"
            "        type filter hook forward priority 0; policy accept;\n"
            "        ct state new meta l4proto tcp ct original proto-dst "
            f"{SWARM_PORTS} ip saddr != @swarm_members drop "
            "comment \"swarm tasks: reached by the swarm's proxy only\"\n"
            "    }\n"
            "}\n"
            f"include \"{FIREWALL_DIR}/*.nft\"\n")

    def _firewall_check(self) -> str | None:
        wanted = self.firewall_ruleset()
        if not self.server.ok("command -v nft >/dev/null"):
            return "install nftables and apply the ruleset"
        if self.server.read(FIREWALL_FILE) != wanted:
            ports = sorted({*self._ssh_ports(), *BASE_PORTS, *self.options.extra_ports})
            return f"write {FIREWALL_FILE} (tcp {', '.join(map(str, ports))} open) and apply it"
        if not self.server.ok("nft list table inet headway >/dev/null 2>&1"):
            return f"apply {FIREWALL_FILE}"
        if not self.server.ok(f"grep -qF 'include \"{FIREWALL_FILE}\"' /etc/nftables.conf 2>/dev/null"):
            return "load the ruleset at boot (/etc/nftables.conf)"
        return None

    def _firewall_apply(self, _: str) -> str:
        wanted = self.firewall_ruleset()
        if not self.server.ok("command -v nft >/dev/null"):
            self.server.sh(_APT_INSTALL + "apt_install nftables", what="installing nftables", timeout=900)
        candidate = FIREWALL_FILE + ".candidate"
        self.server.write(candidate, wanted, mode="0600")
        self.server.sh(f"mkdir -p {FIREWALL_DIR} && nft -c -f {candidate}",
                       what="checking the firewall ruleset (nft -c)")
        include = f'include "{FIREWALL_FILE}"'
        self.server.sh(f"set -e\nmv -f {candidate} {FIREWALL_FILE}\nnft -f {FIREWALL_FILE}\n"
                       f"[ -f /etc/nftables.conf ] || printf '#!/usr/sbin/nft -f\\n' > /etc/nftables.conf\n"
                       f"grep -qF '{include}' /etc/nftables.conf || printf '%s\\n' '{include}' >> /etc/nftables.conf\n"
                       "if [ -d /run/systemd/system ]; then systemctl enable nftables >/dev/null 2>&1 || true; fi\n",
                       what="applying the firewall ruleset")
        ports = sorted({*self._ssh_ports(), *BASE_PORTS, *self.options.extra_ports})
        return f"nftables: tcp {', '.join(map(str, ports))} open, everything else new from outside dropped"

    # unattended upgrades ----------------------------------------------------------------------------------
    def _upgrades_check(self) -> str | None:
        if not _pkg_installed(self.server, "unattended-upgrades"):
            return "install unattended-upgrades and turn it on"
        if self.server.read(AUTO_UPGRADES) != AUTO_UPGRADES_CONF:
            return f"turn it on in {AUTO_UPGRADES}"
        return None

    def _upgrades_apply(self, todo: str) -> str:
        if todo.startswith("install"):
            self.server.sh(_APT_INSTALL + "apt_install unattended-upgrades", what="installing unattended-upgrades",
                           timeout=900)
        self.server.write(AUTO_UPGRADES, AUTO_UPGRADES_CONF)
        return f"unattended-upgrades on, daily ({AUTO_UPGRADES})"

    # SSH hardening ----------------------------------------------------------------------------------------
    def _sshd_check(self) -> str | None:
        if not self.server.ok("grep -Eiq '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config.d/' "
                              "/etc/ssh/sshd_config"):
            return "include /etc/ssh/sshd_config.d in sshd_config and write the drop-in"
        if self.server.read(SSHD_DROP_IN) != SSHD_HARDENING:
            return f"write {SSHD_DROP_IN} (no passwords, root by key only) and reload sshd"
        return None

    def _sshd_apply(self, todo: str) -> str:
        previous = self.server.read(SSHD_DROP_IN)
        if todo.startswith("include"):
            self.server.sh("set -e\ncp -p /etc/ssh/sshd_config /etc/ssh/sshd_config.headway-backup\n"
                           "sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config",
                           what="including sshd_config.d")
        self.server.write(SSHD_DROP_IN, SSHD_HARDENING)
        code, out, err = self.server.run("mkdir -p /run/sshd && sshd -t", timeout=30)
        if code != 0:
            if previous is None:
                self.server.sh(f"rm -f {SSHD_DROP_IN}", what="removing the rejected drop-in")
            else:
                self.server.write(SSHD_DROP_IN, previous)
            if todo.startswith("include"):
                self.server.sh("mv -f /etc/ssh/sshd_config.headway-backup /etc/ssh/sshd_config",
                               what="restoring sshd_config")
            raise ServerError(f"{self.server.address}: sshd rejects its configuration with the hardening drop-in: "
                              f"{(err or out).strip()[-300:]}", "fix /etc/ssh/sshd_config on the server (`sshd -t` "
                              "shows why), then run the command again; sshd was not reloaded")
        self.server.sh("if [ -d /run/systemd/system ]; then systemctl reload ssh 2>/dev/null || systemctl reload "
                       "sshd; else kill -HUP \"$(cat /run/sshd.pid)\"; fi", what="reloading sshd")
        return f"{SSHD_DROP_IN}: PasswordAuthentication no, PermitRootLogin prohibit-password, " \
               "KbdInteractiveAuthentication no; sshd checked (sshd -t) and reloaded"

    # ------------------------------------------------------------------------------------------------------
    def run(self, *, check_only: bool, on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
        self.server.require_debian()
        results: list[StepResult] = []
        try:
            for step in self.steps():
                todo = step.check()
                if todo is None:
                    detail = self._docker_ok_detail() if step.name == "Docker Engine" else ""
                    result = StepResult(step.name, OK, detail)
                elif check_only:
                    result = StepResult(step.name, WOULD_CHANGE, todo)
                else:
                    result = StepResult(step.name, CHANGED, step.apply(todo))
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            if hasattr(self, "_tmp"):
                self._tmp.cleanup()
        return results


# -- entry points -----------------------------------------------------------------------------------------
def public_key_line(key_file: str | None) -> str | None:
    """The public half of the key we log in with: KEY.pub, the key itself, ~/.ssh/id_*.pub, or the agent's first."""
    import paramiko

    if key_file:
        pub = Path(key_file + ".pub")
        if pub.is_file():
            return pub.read_text().strip()
        try:
            key = paramiko.PKey.from_path(key_file)
        except (OSError, paramiko.SSHException) as exc:
            raise ConfigError(f"cannot read the SSH key {key_file}: {exc}", "give a private key file (without a "
                                                                             "passphrase, or loaded in the agent)"
                              ) from None
        return f"{key.get_name()} {key.get_base64()}"
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        pub = Path.home() / ".ssh" / f"{name}.pub"
        if pub.is_file():
            return pub.read_text().strip()
    try:
        keys = paramiko.Agent().get_keys()
    except (OSError, paramiko.SSHException):
        keys = ()
    return f"{keys[0].get_name()} {keys[0].get_base64()}" if keys else None


def config_ports(config_path: str | None, address: SshAddress) -> list[int]:
    """Ports the config's environments publish on this server (all environments' when none names it)."""
    if not config_path:
        return []
    from headway.config.loader import load_config

    config = load_config(config_path)
    here = [env for env in config.environments.values()
            if env.remote_host and SshAddress.parse(env.remote_host).host == address.host]
    return sorted({env.port for env in (here or list(config.environments.values())) if env.port})


def bootstrap(address: SshAddress, *, key_file: str | None = None, accept_host_key: bool = False,
              check_only: bool = False, user: str = "deploy", config_path: str | None = None,
              on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    if not user or not user.replace("-", "").replace("_", "").isalnum() or user[0].isdigit() or user == "root":
        raise ConfigError(f"{user!r} cannot be the deploy user", "give a plain user name, e.g. --user deploy")
    options = Options(user=user, public_key=public_key_line(key_file), extra_ports=config_ports(config_path, address))
    with SshSession(address, key_file=key_file, accept_host_key=accept_host_key) as session:
        return Bootstrap(Server(session), options).run(check_only=check_only, on_result=on_result)
