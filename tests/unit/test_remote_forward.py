"""Commands sent to a server: which arguments go, what the bundle holds, which addresses parse -- without SSH."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.errors import ConfigError
from headway.remote.forward import Bundle, _without_source_flags, command_args, remote_host
from headway.remote.ssh import SshAddress


def test_global_options_stay_here_and_the_command_goes() -> None:
    argv = ["-c", "x/headway.yml", "--state-dir=/tmp/s", "--ssh-key", "k", "--accept-host-key", "deploy", "-e",
            "production", "--wait", "5"]
    assert command_args(argv) == ["deploy", "-e", "production", "--wait", "5"]
    # an option after the command name belongs to the command
    assert command_args(["logs", "-e", "p", "-c", "x"]) == ["logs", "-e", "p", "-c", "x"]


def test_source_flags_are_settled_before_sending() -> None:
    args = ["deploy", "-e", "production", "--ref", "v1", "--dirty", "--force", "--ref=main", "--json"]
    assert _without_source_flags(args) == ["deploy", "-e", "production", "--json"]


@pytest.mark.parametrize("text, expected", [
    ("deploy@203.0.113.7", SshAddress("deploy", "203.0.113.7", 22)),
    ("root@vps.example.com:2222", SshAddress("root", "vps.example.com", 2222)),
    ("vps.example.com", SshAddress("root", "vps.example.com", 22)),
    ("ci@[2001:db8::7]:22", SshAddress("ci", "2001:db8::7", 22)),
])
def test_ssh_addresses(text: str, expected: SshAddress) -> None:
    assert SshAddress.parse(text) == expected


@pytest.mark.parametrize("text", ["a b@c", "user@", "user@host:99999", "us;er@host"])
def test_bad_ssh_addresses_name_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match="user@host"):
        SshAddress.parse(text)


def test_hosts_take_one_server_or_local() -> None:
    base = "app: x\nroles:\n  web: {port: 80}\nenvironments:\n  production: {hosts: %s}\n"
    assert parse_config(base % "[deploy@203.0.113.7:2222]").environments["production"].remote_host == \
        "deploy@203.0.113.7:2222"
    assert parse_config(base % "[local]").environments["production"].remote_host is None
    with pytest.raises(ConfigError, match="one host per environment"):
        parse_config(base % "[a@h1, a@h2]")
    with pytest.raises(ConfigError, match="user@host"):
        parse_config(base % "['not a host!']")


def test_a_local_config_is_decided_without_parsing(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: x\nroles: {web: {port: 80}}\nenvironments: {production: {}}\n")
    assert remote_host(tmp_path / "headway.yml", "production") is None
    (tmp_path / "headway.yml").write_text("app: x\nroles: {web: {port: 80}}\n"
                                          "environments: {production: {hosts: [ci@h.example.com]}}\n")
    assert remote_host(tmp_path / "headway.yml", "production") == "ci@h.example.com"


def test_the_bundle_keeps_paths_relative_to_the_app_and_secrets_private(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: x\n")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "ctx" / ".git").mkdir()
    (tmp_path / "ctx" / ".git" / "config").write_text("never sent\n")
    bundle = Bundle(tmp_path)
    bundle.add_file(tmp_path / "headway.yml", "headway.yml")
    bundle.add_bytes(".headway/secrets.production", b"A=1\n", 0o600)
    bundle.add_tree(tmp_path / "ctx", "ctx")
    stream, size = bundle.finish()
    data = stream.read()
    assert size == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"headway.yml", ".headway/secrets.production", "ctx/Dockerfile"}
    assert members[".headway/secrets.production"].mode == 0o600
    assert all(m.uid == 0 and m.uname == "" for m in members.values())
