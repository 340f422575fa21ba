"""`headway init --from` as a user runs it: compose files in, a valid headway.yml out; bad input changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from headway.config.loader import load_config
from headway.config.model import ImageBuild

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "compose"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=cwd, text=True, capture_output=True,
                          env={**os.environ, "HEADWAY_STATE_DIR": str(cwd / ".state")}, timeout=120)


def _project(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def test_init_from_a_directory_merges_compose_and_override(tmp_path: Path) -> None:
    project = _project(tmp_path, "override")
    result = run(["init", "--from", "."], project)
    assert result.returncode == 0, result.stderr
    config = load_config(project / "headway.yml")
    assert config.env["LOG_LEVEL"] == "debug"  # compose.override.yml won
    assert "databases" in (project / "headway.yml").read_text() and config.databases["db"].engine == "mariadb"


def test_init_from_base_and_environment_files_and_with_dash_f(tmp_path: Path) -> None:
    project = _project(tmp_path, "override")
    result = run(["init", "--from", "compose.yml", "--from", "compose.prod.yml:production",
                  "--from", "compose.staging.yml:staging"], project)
    assert result.returncode == 0, result.stderr
    assert list(load_config(project / "headway.yml").environments) == ["production", "staging"]
    result = run(["init", "--force", "-f", "compose.yml", "-f", "compose.staging.yml:staging"], project)
    assert result.returncode == 0, result.stderr
    config = load_config(project / "headway.yml")
    assert list(config.environments) == ["staging"] and config.environments["staging"].port == 8001


def test_init_from_the_incident_tracker_writes_roles_with_their_own_images(tmp_path: Path) -> None:
    project = _project(tmp_path, "incident-tracker")
    result = run(["init", "--from", "deploy/prod-docker-compose.yml"], project)
    assert result.returncode == 0, result.stderr
    assert "frontend" in result.stderr and "Traceback" not in result.stderr
    config = load_config(project / "headway.yml")
    assert {n: r.path for n, r in config.roles.items()} == {"frontend": "/", "backend": "/api"}
    frontend = config.roles["frontend"].image
    assert isinstance(frontend, ImageBuild) and (project / frontend.context / frontend.dockerfile).is_file()
    assert isinstance(config.image, ImageBuild) and (project / config.image.context / config.image.dockerfile).is_file()
    assert "hunter2" not in (project / "headway.yml").read_text() + result.stderr + result.stdout


def test_bare_init_picks_ports_nothing_listens_on(tmp_path: Path) -> None:
    from headway.config.starter import port_is_free

    result = run(["init", "--app", "shop"], tmp_path)
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path / "headway.yml")
    ports = [config.environments[e].port for e in ("production", "staging")]
    assert all(p is not None and port_is_free(p) for p in ports), ports
    assert "databases:" in (tmp_path / "headway.yml").read_text()


@pytest.mark.parametrize(("files", "args", "phrases"), [
    ({}, ["--from", "docker-compose.yml"], ["no such file"]),
    ({"docker-compose.yml": "services:\n  web: [\n"}, ["--from", "docker-compose.yml"], ["invalid YAML"]),
    ({"docker-compose.yml": "apiVersion: v1\nkind: Service\n"}, ["--from", "docker-compose.yml"], ["Kubernetes"]),
    ({"compose.override.yml": "services:\n  web:\n    ports: ['80:80']\n"}, ["--from", "compose.override.yml"],
     ["only changes a base compose file", "--from compose.yml"]),
    ({"compose.yml": "services:\n  web:\n    build: .\n"}, ["--from", "compose.yml:Prod"],
     ["not a valid environment name"]),
    ({}, ["--from", "."], ["no compose file in this directory"]),
    ({"a.yml": "services:\n  web:\n    build: .\n", "b.yml": "services:\n  web:\n    build: .\n"},
     ["--from", "a.yml", "--from", "b.yml"], ["two compose files map to the environment 'production'"]),
])
def test_bad_input_is_a_short_error_and_writes_nothing(tmp_path: Path, files: dict[str, str], args: list[str],
                                                       phrases: list[str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run(["init", *args], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "error:" in result.stderr and "fix:" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr
    assert not (tmp_path / "headway.yml").exists() and not (tmp_path / ".gitignore").exists()
