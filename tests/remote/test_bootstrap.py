"""`headway server bootstrap` against real servers: sshd, apt, nftables and a Docker engine in a test server."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway import __version__
from headway.remote.bootstrap import AUTO_UPGRADES_CONF, SSHD_HARDENING
from tests.conftest import free_port
from tests.remote.conftest import RemoteServer

pytestmark = [pytest.mark.docker, pytest.mark.remote]

STEPS = ["Docker log rotation", "Docker Engine", f"headway {__version__}", "deploy user deploy", "firewall",
         "unattended security upgrades", "SSH hardening"]
WATCHED = "/etc /opt /usr /var/lib/dpkg /var/lib/headway /home"


def steps(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {s["step"]: s for s in json.loads(result.stdout)["steps"]}


class Unchanged:
    """Files under the directories bootstrap writes, compared before and after (mtimes and contents)."""

    def __init__(self, server: RemoteServer) -> None:
        self.server = server
        self.before = self.snapshot()

    def snapshot(self) -> str:
        # headway's own firewall table, without counters (Docker's tables change with every container)
        return self.server.sh(f"find {WATCHED} -xdev \\( -type f -o -type l \\) -printf '%p %s %T@\\n' 2>/dev/null "
                              "| sort | sha256sum; getent passwd | sha256sum; "
                              "nft -s list table inet headway 2>/dev/null | sha256sum")

    def check(self) -> None:
        assert self.snapshot() == self.before, "the server was changed"


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "fix:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# -- a fresh server, bootstrapped (the docker_server fixture's run) -----------------------------------------
def test_bootstrap_prepares_every_item(docker_server: RemoteServer) -> None:
    run = docker_server.bootstrap
    assert run is not None and run.returncode == 0, run and run.stderr
    result = steps(run)
    assert list(result) == STEPS
    assert {s["status"] for s in result.values()} == {"changed"}, result
    for name in STEPS:
        assert re.search(rf"changed\s+{re.escape(name)}", run.stderr), run.stderr

    s = docker_server
    # Docker Engine: running, answering as root and as the deploy user (docker group), log rotation configured
    assert s.sh("docker info --format '{{.ServerVersion}}'").strip()
    assert json.loads(s.sh("cat /etc/docker/daemon.json"))["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert s.sh("docker info --format '{{.LoggingDriver}}'").strip() == "json-file"
    with s.session("deploy") as deploy:
        code, out, err = deploy.output(["docker", "ps", "--format", "{{.ID}}"])
        assert code == 0, err
        assert deploy.output(["id", "-nG"])[1].split().count("docker") == 1
    assert s.sh("stat -c %U /var/lib/headway").strip() == "deploy"
    # headway: this very version, in its venv, with its dependencies
    assert s.sh("headway --version").strip() == f"headway, version {__version__}"
    assert s.sh("readlink /usr/local/bin/headway").strip() == "/opt/headway/venv/bin/headway"
    s.sh("/opt/headway/venv/bin/python -c 'import headway.cli.main, docker, paramiko, pydantic'")
    # firewall: our table, input dropped by default, SSH / HTTP / HTTPS open
    ruleset = s.sh("nft list ruleset")
    table = ruleset[ruleset.index("table inet headway"):]
    assert "policy drop;" in table
    assert "ct state established,related accept" in table
    assert re.search(r"tcp dport \{ 22, 80, 443 \} accept", table), table
    assert "table ip nat" in ruleset  # Docker's own tables are still there
    # unattended upgrades
    assert "ok installed" in s.sh("dpkg-query -W -f='${Status}' unattended-upgrades")
    assert s.sh("cat /etc/apt/apt.conf.d/20auto-upgrades") == AUTO_UPGRADES_CONF
    # SSH hardening, as sshd itself reads its config
    assert s.sh("cat /etc/ssh/sshd_config.d/00-headway.conf") == SSHD_HARDENING
    effective = dict(line.split(" ", 1) for line in s.sh("sshd -T").splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] in ("prohibit-password", "without-password")
    # and we can still log in (firewall and sshd reload kept the door open)
    with s.session() as root:
        assert root.output(["true"])[0] == 0


def test_second_run_changes_nothing(docker_server: RemoteServer) -> None:
    unchanged = Unchanged(docker_server)
    dockerd = docker_server.sh("cat /var/run/docker.pid")
    again = docker_server.cli("server", "bootstrap", str(docker_server.address), "--json")
    assert again.returncode == 0, again.stderr
    assert {name: s["status"] for name, s in steps(again).items()} == dict.fromkeys(STEPS, "ok")
    assert "0 changed, 7 ok" in again.stderr
    unchanged.check()
    assert docker_server.sh("cat /var/run/docker.pid") == dockerd  # the engine was not restarted

    check = docker_server.cli("server", "bootstrap", str(docker_server.address), "--check")
    assert check.returncode == 0, check.stderr
    assert "nothing would change" in check.stderr


def test_check_through_sudo(docker_server: RemoteServer) -> None:
    """A user with passwordless sudo is as good as root."""
    s = docker_server
    s.sh("useradd -m ops && install -d -m 700 -o ops ~ops/.ssh && cp /root/.ssh/authorized_keys ~ops/.ssh/ "
         "&& chown ops ~ops/.ssh/authorized_keys && echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops")
    try:
        check = s.cli("server", "bootstrap", f"ops@127.0.0.1:{s.address.port}", "--check")
        assert check.returncode == 0, check.stderr
        assert "nothing would change" in check.stderr
    finally:
        s.sh("rm -f /etc/sudoers.d/ops; userdel -r ops 2>/dev/null || true")


def test_config_ports_are_opened(docker_server: RemoteServer, tmp_path: Path) -> None:
    config = tmp_path / "headway.yml"
    config.write_text(f"app: portcheck\nimage: {{dockerfile: Dockerfile}}\nroles:\n  web: {{port: 8000}}\n"
                      f"environments:\n  production: {{hosts: [{docker_server.address}], port: 8081}}\n"
                      "  staging: {hosts: [deploy@203.0.113.9], port: 8082}\n")
    unchanged = Unchanged(docker_server)
    check = docker_server.cli("server", "bootstrap", str(docker_server.address), "-c", str(config), "--check",
                              "--json")
    assert check.returncode == 1, check.stderr
    result = steps(check)
    assert result["firewall"]["status"] == "would change"
    assert "tcp 22, 80, 443, 8081 open" in result["firewall"]["detail"]  # not staging's: another server
    assert {s["status"] for n, s in result.items() if n != "firewall"} == {"ok"}
    unchanged.check()


# -- a fresh server stays fresh -------------------------------------------------------------------------
def test_check_on_a_fresh_server_changes_nothing(fresh_server: RemoteServer) -> None:
    unchanged = Unchanged(fresh_server)
    check = fresh_server.cli("server", "bootstrap", str(fresh_server.address), "--check", "--json")
    assert check.returncode == 1, check.stderr
    assert {name: s["status"] for name, s in steps(check).items()} == dict.fromkeys(STEPS, "would change")
    assert "7 step(s) would change" in check.stderr
    unchanged.check()
    assert fresh_server.exec("command -v dockerd", check=False).returncode != 0


# -- bad input: a short error naming the fix, non-zero exit, nothing changed ------------------------------
def test_unreachable_server(fresh_server: RemoteServer) -> None:
    port = free_port()
    result = fresh_server.cli("server", "bootstrap", f"root@127.0.0.1:{port}")
    assert_clean_error(result, f"cannot reach root@127.0.0.1:{port}", f"ssh -p {port} root@127.0.0.1")


def test_wrong_key(fresh_server: RemoteServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    unchanged = Unchanged(fresh_server)
    result = fresh_server.cli("server", "bootstrap", str(fresh_server.address), "--ssh-key", str(other))
    assert_clean_error(result, "refused our SSH key", "--ssh-key")
    unchanged.check()


def test_unknown_host_key_needs_accepting(fresh_server: RemoteServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    env = {"HEADWAY_KNOWN_HOSTS": str(known_hosts)}
    unchanged = Unchanged(fresh_server)
    refused = fresh_server.cli("server", "bootstrap", str(fresh_server.address), env=env)
    assert_clean_error(refused, "unknown host key SHA256:", "--accept-host-key")
    assert not known_hosts.exists()
    unchanged.check()

    accepted = fresh_server.cli("server", "bootstrap", str(fresh_server.address), "--check", "--accept-host-key",
                                env=env)
    assert accepted.returncode == 1, accepted.stderr  # connected; a fresh server: everything would change
    host_key = fresh_server.sh("cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").strip()
    assert f"[127.0.0.1]:{fresh_server.address.port} ssh-ed25519 {host_key}" in known_hosts.read_text()
    unchanged.check()


@pytest.fixture
def not_debian(fresh_server: RemoteServer) -> Iterator[RemoteServer]:
    fresh_server.sh("mv /etc/os-release /etc/os-release.real && printf 'ID=alpine\\nPRETTY_NAME=\"Alpine Linux "
                    "v3.19\"\\n' > /etc/os-release")
    try:
        yield fresh_server
    finally:
        fresh_server.sh("mv -f /etc/os-release.real /etc/os-release")


def test_not_debian(not_debian: RemoteServer) -> None:
    unchanged = Unchanged(not_debian)
    result = not_debian.cli("server", "bootstrap", str(not_debian.address))
    assert_clean_error(result, "runs Alpine Linux v3.19", "Debian and Ubuntu servers only")
    unchanged.check()


@pytest.fixture
def plain_user(fresh_server: RemoteServer) -> Iterator[str]:
    fresh_server.sh("useradd -m alice && install -d -m 700 -o alice ~alice/.ssh && cp /root/.ssh/authorized_keys "
                    "~alice/.ssh/ && chown alice ~alice/.ssh/authorized_keys")
    try:
        yield f"alice@127.0.0.1:{fresh_server.address.port}"
    finally:
        fresh_server.sh("userdel -r alice 2>/dev/null || true")


def test_no_root_no_sudo(fresh_server: RemoteServer, plain_user: str) -> None:
    unchanged = Unchanged(fresh_server)
    result = fresh_server.cli("server", "bootstrap", plain_user)
    assert_clean_error(result, "alice is not root and cannot use sudo", "NOPASSWD")
    unchanged.check()


def test_bad_address(fresh_server: RemoteServer) -> None:
    result = fresh_server.cli("server", "bootstrap", "root@bad host")
    assert result.returncode == 2
    assert_clean_error(result, "is not an SSH address")


def test_log_rotation_is_merged_and_restarts_the_engine(docker_server: RemoteServer) -> None:
    """A daemon.json of one's own: headway's keys are added to it, the engine restarted because it changed."""
    s = docker_server
    s.sh("""printf '{"log-level": "info", "log-opts": {"max-size": "10m"}}' > /etc/docker/daemon.json""")
    dockerd = s.sh("cat /var/run/docker.pid")
    check = s.cli("server", "bootstrap", str(s.address), "--check", "--json")
    assert check.returncode == 1
    assert "restarts its containers" in steps(check)["Docker log rotation"]["detail"]
    assert s.sh("cat /var/run/docker.pid") == dockerd

    run = s.cli("server", "bootstrap", str(s.address), "--json")
    assert run.returncode == 0, run.stderr
    result = steps(run)
    assert result["Docker log rotation"]["status"] == "changed"
    assert "the engine was restarted" in result["Docker log rotation"]["detail"]
    assert {st["status"] for n, st in result.items() if n != "Docker log rotation"} == {"ok"}
    assert json.loads(s.sh("cat /etc/docker/daemon.json")) == {
        "log-level": "info", "log-opts": {"max-size": "10m", "max-file": "3"}}
    assert s.sh("cat /var/run/docker.pid") != dockerd
    assert s.sh("docker info --format '{{.ServerVersion}}'").strip()


def test_sshd_rejecting_the_drop_in_leaves_sshd_as_it_was(docker_server: RemoteServer) -> None:
    s = docker_server
    s.sh("cp -p /etc/ssh/sshd_config /root/sshd_config.orig && echo 'NoSuchOption yes' >> /etc/ssh/sshd_config "
         "&& rm /etc/ssh/sshd_config.d/00-headway.conf")
    try:
        sshd = s.sh("cat /run/sshd.pid")
        run = s.cli("server", "bootstrap", str(s.address))
        assert_clean_error(run, "sshd rejects its configuration", "sshd -t")
        assert s.exec("test -e /etc/ssh/sshd_config.d/00-headway.conf", check=False).returncode == 1
        assert s.sh("cat /run/sshd.pid") == sshd
        with s.session() as root:  # sshd still lets us in
            assert root.output(["true"])[0] == 0
    finally:
        s.sh("mv -f /root/sshd_config.orig /etc/ssh/sshd_config")
    again = s.cli("server", "bootstrap", str(s.address), "--json")
    assert again.returncode == 0, again.stderr
    assert steps(again)["SSH hardening"]["status"] == "changed"
    assert s.sh("cat /etc/ssh/sshd_config.d/00-headway.conf") == SSHD_HARDENING
