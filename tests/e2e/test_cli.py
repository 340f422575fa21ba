"""The `headway` command as a user runs it: bad input gets a short error with a fix, an exit code, no trace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest

from headway.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=cwd, text=True, capture_output=True,
                          env={**os.environ, **env}, timeout=300)


def assert_user_error(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "error:" in result.stderr and "fix:" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def test_every_command_has_help() -> None:
    def walk(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        out = []
        for name, cmd in group.commands.items():
            out.append((f"{prefix} {name}".strip(), cmd))
            if isinstance(cmd, click.Group):
                out += walk(cmd, f"{prefix} {name}")
        return out

    commands = walk(cli, "")
    assert len(commands) >= 14
    for name, cmd in commands:
        assert cmd.help, f"`headway {name}` has no help text"
        assert name.split()[-1] in (REPO / "docs" / "cli.md").read_text(), f"`headway {name}` is not in docs/cli.md"


def test_invalid_yaml(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: shop\nroles:\n  web: [\n")
    assert_user_error(run(["deploy", "-e", "production"], tmp_path), 2, "headway.yml:", "invalid YAML")


def test_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: shop\nroles: {web: {port: 80, replica: 2}}\n"
                                          "environments: {production: {}}\n")
    assert_user_error(run(["deploy", "-e", "production"], tmp_path), 2, "roles.web.replica", "replicas")


def test_no_config(tmp_path: Path) -> None:
    assert_user_error(run(["status", "-e", "production"], tmp_path), 2, "headway init")


def test_world_readable_secrets(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: shop\nroles: {web: {port: 80}}\nenv: {A: '${TOKEN}'}\n"
                                          "environments: {production: {}}\n")
    secrets = tmp_path / ".headway" / "secrets.production"
    secrets.parent.mkdir()
    secrets.write_text("TOKEN=very-secret-token\n")
    secrets.chmod(0o644)
    result = run(["deploy", "-e", "production"], tmp_path)
    assert_user_error(result, 2, "chmod 600")
    assert "very-secret-token" not in result.stderr + result.stdout


def test_docker_not_running(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: shop\nroles: {web: {port: 80}}\nenvironments: {production: {}}\n")
    result = run(["deploy", "-e", "production"], tmp_path, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    assert_user_error(result, 8, "Docker daemon")


def test_init_writes_a_valid_starter(tmp_path: Path) -> None:
    result = run(["init"], tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "headway.yml").read_text()
    assert "environments:" in text and "#" in text
    assert ".headway/secrets.*" in (tmp_path / ".gitignore").read_text()
    assert_user_error(run(["init"], tmp_path), 2, "--force")


def test_init_from_compose(tmp_path: Path) -> None:
    src = REPO / "tests" / "fixtures" / "compose"
    compose = next(p for p in sorted(src.rglob("docker-compose.prod.yml")))
    result = run(["init", "--from", str(compose), "--app", "converted"], tmp_path)
    assert result.returncode == 0, result.stderr
    from headway.config.loader import load_config

    cfg = load_config(tmp_path / "headway.yml")
    assert cfg.app == "converted" and cfg.web_role is not None and "production" in cfg.environments


@pytest.mark.docker
@pytest.mark.proxy
def test_deploy_errors_change_nothing(tiny_app) -> None:  # type: ignore[no-untyped-def]
    root = tiny_app.root
    assert tiny_app.cli("deploy", "-e", "production", "--version", "v1").returncode == 0
    served = httpx.get(tiny_app.url()).json()["release"]

    # a failing image build
    dockerfile = (root / "Dockerfile").read_text()
    (root / "Dockerfile").write_text(dockerfile.replace("COPY app.py", "COPY missing-file.py"))
    assert_user_error(tiny_app.cli("deploy", "-e", "production", "--version", "v2"), 4, "build failed")
    (root / "Dockerfile").write_text(dockerfile)

    # a failing release command
    tiny_app.set_behavior(release_exit=2)
    assert_user_error(tiny_app.cli("deploy", "-e", "production", "--version", "v3"), 5, "migration 002 failed")

    # a health check that never passes
    tiny_app.set_behavior(healthy=False)
    tiny_app.edit_config("health_deadline: 20s", "health_deadline: 2s")
    assert_user_error(tiny_app.cli("deploy", "-e", "production", "--version", "v4"), 6, "→ 503")

    # a port already taken by something else on the host
    tiny_app.set_behavior()
    with socket.socket() as blocker:
        blocker.bind(("0.0.0.0", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        tiny_app.edit_config(f"port: {tiny_app.ports['staging']}", f"port: {taken}")
        assert_user_error(tiny_app.cli("deploy", "-e", "staging", "--version", "s1"), 7, f"port {taken}")
    assert httpx.get(tiny_app.url()).json()["release"] == served
    hw = tiny_app.headway()
    assert hw.state.current().live == 1
    outcomes = [r.outcome for r in hw.state.history()]
    assert outcomes == ["live", "failed", "failed", "failed"]


@pytest.mark.docker
@pytest.mark.proxy
def test_secret_values_never_leak(tiny_app, docker_engine) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cr3t-" + os.urandom(6).hex()
    tiny_app.edit_config("roles:", "env:\n  API_TOKEN: ${TOKEN}\nroles:")
    path = tiny_app.root / ".headway" / "secrets.production"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"TOKEN={secret}\n")
    path.chmod(0o600)
    tiny_app.set_behavior(show_env=["HEADWAY_RELEASE"])
    result = tiny_app.cli("deploy", "-e", "production", "--version", "v1", "--json")
    assert result.returncode == 0, result.stderr
    status = tiny_app.cli("status", "-e", "production", "--json")
    releases = tiny_app.cli("releases", "-e", "production", "--json")
    for text in (result.stdout, result.stderr, status.stdout, releases.stdout):
        assert secret not in text
    image = docker_engine.client.images.get(f"{tiny_app.name}:v1")
    assert secret not in str(image.history()) and secret not in str(image.attrs)
    # the app does receive it
    exec_result = tiny_app.cli("exec", "-e", "production", "web", "--", "sh", "-c", 'test "$API_TOKEN" = "$0"',
                               secret)
    assert exec_result.returncode == 0
    state_files = "".join(p.read_text() for p in (tiny_app.state_dir / "apps" / tiny_app.name).rglob("*")
                          if p.is_file())
    assert secret not in state_files
