"""Images built in CI and pushed to a registry, then deployed by tag: against a real registry (Debian's
docker-registry, with htpasswd credentials) and the real engine."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

USER, PASSWORD = "ci", "correct-horse-battery-staple-42"


@dataclass
class Registry:
    server: str


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (scripts/bootstrap.sh installs it)")
    root = tmp_path_factory.mktemp("registry")
    htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
    (root / "htpasswd").write_text(htpasswd.stdout)
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: headway-tests, path: {root / 'htpasswd'}}}}}\n")
    with open(root / "log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            else:
                pytest.fail(f"the registry did not start: {(root / 'log').read_text()[-2000:]}")
            yield Registry(server=f"127.0.0.1:{port}")
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def pushed_app(tiny_app, registry: Registry):
    repo = f"{registry.server}/org/{tiny_app.name}"
    tiny_app.edit_config("roles:\n", f"image: {{name: {repo}}}\n"
                                      f"registry: {{server: '{registry.server}', username: {USER}, "
                                      "password: '${REGISTRY_PASSWORD}'}\nroles:\n")
    secrets = tiny_app.root / ".headway" / "secrets.production"
    secrets.parent.mkdir(exist_ok=True)
    secrets.write_text(f"REGISTRY_PASSWORD={PASSWORD}\n")
    secrets.chmod(0o600)
    tiny_app.repo = repo  # type: ignore[attr-defined]
    return tiny_app


def test_build_push_then_deploy_by_tag_records_the_digest(pushed_app, docker_engine) -> None:
    built = pushed_app.cli("build", "-e", "production", "--version", "1.4.2", "--push", check=True)
    assert PASSWORD not in built.stdout + built.stderr
    repo = pushed_app.repo
    # what CI pushed is all a server needs: drop the local copy, so the deploy must pull it
    docker_engine.remove_image(f"{repo}:1.4.2")
    assert not docker_engine.image_exists(f"{repo}:1.4.2")
    deployed = pushed_app.cli("deploy", "-e", "production", "--image-tag", "1.4.2", check=True)
    assert "build image" not in deployed.stderr and "pull image" in deployed.stderr
    assert httpx.get(pushed_app.url(), timeout=5).json()["release"] == "1.4.2"
    hw = pushed_app.headway()
    rec = hw.state.history()[-1]
    assert rec.version == "1.4.2" and rec.image.startswith(f"{repo}@sha256:")
    running = {c.attrs["Config"]["Image"] for c in hw.deployer.containers(include_stopped=False)}
    assert running == {rec.image}
    assert PASSWORD not in deployed.stdout + deployed.stderr


def test_wrong_credentials_and_missing_tags_are_clear_and_change_nothing(pushed_app) -> None:
    pushed_app.cli("build", "-e", "production", "--version", "v1", "--push", check=True)
    pushed_app.cli("deploy", "-e", "production", "--image-tag", "v1", check=True)
    missing = pushed_app.cli("deploy", "-e", "production", "--image-tag", "no-such-tag")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "could not pull" in missing.stderr and "was pushed" in missing.stderr
    secrets = pushed_app.root / ".headway" / "secrets.production"
    secrets.write_text("REGISTRY_PASSWORD=wrong-password\n")
    denied = pushed_app.cli("deploy", "-e", "production", "--image-tag", "v1-other")
    assert denied.returncode != 0 and "credentials" in denied.stderr and "wrong-password" not in denied.stderr
    assert httpx.get(pushed_app.url(), timeout=5).json()["release"] == "v1"  # nothing running changed


def test_an_image_reference_that_does_not_parse_is_refused(pushed_app) -> None:
    pushed_app.edit_config(f"image: {{name: {pushed_app.repo}}}", "image: 'Not An/Image:ref!'")
    result = pushed_app.cli("deploy", "-e", "production")
    assert result.returncode == 2 and "not an image reference" in result.stderr
