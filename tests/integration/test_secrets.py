"""Secrets against the real Docker Engine: per-role scoping, `as: file` mounts that never show in `docker inspect`,
values from `from:` commands, files written again after a reboot, removed with their containers."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from headway.engine import labels as L
from headway.release.secret_files import LABEL, secrets_root

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

SECRETS = """\
secrets:
  JWT_SECRET: {as: file}
  SIGNING_KEY: {as: file, from: [%(signing)s]}
  API_TOKEN: {from: "%(token)s --print"}
roles:"""


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o700)
    return path


@pytest.fixture
def secret_app(tiny_app, tmp_path):  # type: ignore[no-untyped-def]
    """The tiny app with three secrets: one from the secrets file as a file, one from a command as a file, one
    from a command as env. web names all three, worker only API_TOKEN; the release command checks it got all."""
    values = {"SIGNING_KEY": "sign-" + os.urandom(8).hex(), "API_TOKEN": "tok-" + os.urandom(8).hex()}
    # the commands live outside the app's directory (not in the build context) and print the values
    signing = script(tmp_path / "signing-key.sh", f"printf '%s\\n' '{values['SIGNING_KEY']}'\n")
    token = script(tmp_path / "token.sh", f"test \"$1\" = --print && printf '%s\\n' '{values['API_TOKEN']}'\n")
    tiny_app.edit_config("roles:", SECRETS % {"signing": signing, "token": token})
    tiny_app.edit_config("    replicas: 2\n", "    replicas: 2\n    secrets: [JWT_SECRET, SIGNING_KEY, API_TOKEN]\n")
    tiny_app.edit_config("      command: python app.py check\n",
                         "      command: python app.py check\n    secrets: [API_TOKEN]\n")
    tiny_app.edit_config("deploy:\n", "accessories:\n  side:\n    image: python:3.11-slim\n"
                         "    command: [sleep, '3600']\n    secrets: [JWT_SECRET]\n"
                         "    health: {command: [sh, -c, 'test -s \"$JWT_SECRET_FILE\"'], interval: 200ms}\n"
                         "deploy:\n")
    tiny_app.edit_config("release: python app.py release",
                         "release: [sh, -c, 'test -s \"$JWT_SECRET_FILE\" && test -s \"$SIGNING_KEY_FILE\" && "
                         "test -n \"$API_TOKEN\" && exec python app.py release']")
    generated = tiny_app.cli("secrets", "generate", "JWT_SECRET", "-e", "production")
    assert generated.returncode == 0, generated.stderr
    text = (tiny_app.root / ".headway" / "secrets.production").read_text()
    values["JWT_SECRET"] = text.split("JWT_SECRET=", 1)[1].strip()
    assert values["JWT_SECRET"] not in generated.stdout + generated.stderr
    tiny_app.values = values
    yield tiny_app
    shutil.rmtree(secrets_root() / tiny_app.name, ignore_errors=True)


def inspect_text(engine, container) -> str:  # type: ignore[no-untyped-def]
    return json.dumps(engine.client.api.inspect_container(container.id))


def in_container(engine, container, command: str) -> str:  # type: ignore[no-untyped-def]
    result = engine.exec(container, ["sh", "-c", command], timeout=30)
    assert result.exit_code == 0, f"{command}: {result.output}"
    return result.output.strip()


def test_file_secrets_are_mounted_never_inspectable_and_scoped_per_role(secret_app, docker_engine):  # type: ignore[no-untyped-def]
    values = secret_app.values
    deployed = secret_app.cli("deploy", "-e", "production", "--version", "v1", "--json")
    assert deployed.returncode == 0, deployed.stderr
    listed = secret_app.cli("secrets", "list", "-e", "production")
    status = secret_app.cli("status", "-e", "production", "--json")
    for text in (deployed.stdout, deployed.stderr, listed.stdout, listed.stderr, status.stdout):
        for value in values.values():
            assert value not in text
    hw = secret_app.headway()
    web = hw.deployer.containers(role="web", include_stopped=False)
    worker = hw.deployer.containers(role="worker", include_stopped=False)
    assert len(web) == 2 and len(worker) == 1
    base = secrets_root() / secret_app.name / "production"
    for c in web:
        attrs = docker_engine.client.api.inspect_container(c.id)
        text = json.dumps(attrs)
        # the file secrets: nowhere in inspect, only the mount's path
        assert values["JWT_SECRET"] not in text and values["SIGNING_KEY"] not in text
        mounts = [m for m in attrs["Mounts"] if m["Destination"] == "/run/secrets"]
        assert len(mounts) == 1 and mounts[0]["RW"] is False
        assert mounts[0]["Source"] == str(base / c.name)
        env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
        assert env["JWT_SECRET_FILE"] == "/run/secrets/JWT_SECRET"
        assert env["SIGNING_KEY_FILE"] == "/run/secrets/SIGNING_KEY"
        assert "JWT_SECRET" not in env and "SIGNING_KEY" not in env
        assert env["API_TOKEN"] == values["API_TOKEN"]  # from a command, delivered as env (as asked)
        assert c.labels[LABEL] == "JWT_SECRET,SIGNING_KEY"
        # the app, as the image's user, reads them; nobody can write them
        assert in_container(docker_engine, c, "id -u") == "10001"
        assert in_container(docker_engine, c, 'cat "$JWT_SECRET_FILE"') == values["JWT_SECRET"]
        assert in_container(docker_engine, c, 'cat "$SIGNING_KEY_FILE"') == values["SIGNING_KEY"]
        assert in_container(docker_engine, c, "stat -c '%a %u' /run/secrets/JWT_SECRET") == "400 10001"
        denied = docker_engine.exec(c, ["sh", "-c", "echo x > /run/secrets/JWT_SECRET"], timeout=30)
        assert denied.exit_code != 0
        # on the host: a tmpfs folder no other user can reach
        folder = base / c.name
        assert stat.S_IMODE(secrets_root().stat().st_mode) == 0o700
        assert stat.S_IMODE(folder.stat().st_mode) == 0o500 and folder.stat().st_uid == 10001
    for c in worker:
        attrs = docker_engine.client.api.inspect_container(c.id)
        text = json.dumps(attrs)
        assert values["JWT_SECRET"] not in text and values["SIGNING_KEY"] not in text
        assert not [m for m in attrs["Mounts"] if m["Destination"] == "/run/secrets"]
        env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
        assert env["API_TOKEN"] == values["API_TOKEN"] and "JWT_SECRET_FILE" not in env
    # an accessory that names a file secret; its image runs as root, so the file is readable by all its users
    side = docker_engine.get(L.accessory_name(secret_app.name, "production", "side"))
    assert side is not None and values["JWT_SECRET"] not in inspect_text(docker_engine, side)
    assert in_container(docker_engine, side, 'cat "$JWT_SECRET_FILE"') == values["JWT_SECRET"]
    assert in_container(docker_engine, side, "stat -c '%a %u' /run/secrets/JWT_SECRET") == "444 0"
    image = docker_engine.client.images.get(f"{secret_app.name}:v1")
    image_text = json.dumps(image.attrs) + json.dumps(image.history())
    for value in values.values():
        assert value not in image_text
    state_files = "".join(p.read_text() for p in (secret_app.state_dir / "apps" / secret_app.name).rglob("*")
                          if p.is_file())
    for value in values.values():
        assert value not in state_files
    # only live containers have folders: the release one-off's went with it
    assert sorted(p.name for p in base.iterdir()) == sorted([side.name] + [c.name for c in web])


def test_files_come_back_after_a_reboot_and_go_with_their_containers(secret_app, docker_engine):  # type: ignore[no-untyped-def]
    values = secret_app.values
    secret_app.edit_config("drain_timeout: 5s", "drain_timeout: 5s\n  retain: 1")
    first = secret_app.cli("deploy", "-e", "production", "--version", "v1")
    assert first.returncode == 0, first.stderr
    hw = secret_app.headway()
    base = secrets_root() / secret_app.name / "production"
    v1 = [c.name for c in hw.deployer.containers(deploy=1, role="web")]
    assert all((base / name / "JWT_SECRET").is_file() for name in v1)
    # a reboot empties the tmpfs, then the engine starts the containers again (with an empty /run/secrets: it
    # creates the missing folders); the next command writes the files again, with the same values
    shutil.rmtree(secrets_root() / secret_app.name)
    for c in hw.deployer.containers(deploy=1, include_stopped=False):
        docker_engine.stop(c, 5)
        docker_engine.start(c)
    assert not any((base / name / "JWT_SECRET").exists() for name in v1)
    recovered = secret_app.cli("recover", "-e", "production")
    assert recovered.returncode == 0, recovered.stderr
    assert "wrote the secret files" in recovered.stdout + recovered.stderr
    for value in values.values():
        assert value not in recovered.stdout + recovered.stderr
    assert stat.S_IMODE(secrets_root().stat().st_mode) == 0o700
    for c in hw.deployer.containers(deploy=1, role="web", include_stopped=False):
        assert in_container(docker_engine, c, 'cat "$JWT_SECRET_FILE"') == values["JWT_SECRET"]
        assert in_container(docker_engine, c, 'cat "$SIGNING_KEY_FILE"') == values["SIGNING_KEY"]
        assert in_container(docker_engine, c, "stat -c '%a %u' /run/secrets/SIGNING_KEY") == "400 10001"
    # exec: a one-off with the role's files, removed after
    ran = secret_app.cli("exec", "-e", "production", "web", "--", "sh", "-c",
                         'test "$(cat "$JWT_SECRET_FILE")" = "$0"', values["JWT_SECRET"])
    assert ran.returncode == 0, ran.stderr
    # two more deploys prune release 1 (retain: 1; the release that was live is kept): its folders go with it
    for version in ("v2", "v3"):
        again = secret_app.cli("deploy", "-e", "production", "--version", version)
        assert again.returncode == 0, again.stderr
    assert hw.deployer.containers(deploy=1) == []
    kept = {c.name for c in hw.deployer.containers(role="web")}
    assert len(kept) == 4 and {p.name for p in base.iterdir()} == kept | {f"{secret_app.name}-production-side"}
    removed = secret_app.cli("remove", "-e", "production", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not base.exists()


def test_a_failing_from_command_changes_nothing_and_shows_no_value(secret_app, docker_engine, tmp_path):  # type: ignore[no-untyped-def]
    values = secret_app.values
    first = secret_app.cli("deploy", "-e", "production", "--version", "v1")
    assert first.returncode == 0, first.stderr
    hw = secret_app.headway()
    before = {c.id for c in hw.deployer.containers()}
    history = [(r.number, r.outcome) for r in hw.state.history()]
    # the tool fails, and its error message happens to contain a secret value
    script(tmp_path / "signing-key.sh", f"echo 'session expired (last key {values['JWT_SECRET']})' >&2\nexit 3\n")
    result = secret_app.cli("deploy", "-e", "production", "--version", "v2")
    assert result.returncode == 1
    assert "SIGNING_KEY" in result.stderr and "exited 3" in result.stderr and "session expired" in result.stderr
    assert "Traceback" not in result.stderr
    for value in values.values():
        assert value not in result.stdout + result.stderr
    assert {c.id for c in hw.deployer.containers()} == before
    assert [(r.number, r.outcome) for r in hw.state.history()] == history
    # a command that is not there: named
    secret_app.edit_config(f"from: [{tmp_path / 'signing-key.sh'}]", "from: [no-such-vault-cli, read]")
    missing = secret_app.cli("deploy", "-e", "production", "--version", "v2")
    assert missing.returncode == 1 and "'no-such-vault-cli' not found" in missing.stderr
    assert {c.id for c in hw.deployer.containers()} == before
    assert all(c.labels.get(L.DEPLOY) == "1" for c in hw.deployer.containers())


def test_a_role_naming_an_unknown_secret_is_refused_by_name(secret_app, docker_engine):  # type: ignore[no-untyped-def]
    secret_app.edit_config("secrets: [API_TOKEN]", "secrets: [API_TOKEN, STRIPE_KEY]")
    result = secret_app.cli("deploy", "-e", "production", "--version", "v1")
    assert result.returncode == 2
    assert "STRIPE_KEY" in result.stderr and "role worker" in result.stderr
    assert ".headway/secrets.production" in result.stderr
    for value in secret_app.values.values():
        assert value not in result.stdout + result.stderr
    assert docker_engine.containers(L.selector(app=secret_app.name)) == []
