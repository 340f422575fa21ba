"""The pipelines `headway ci init` writes, run as a CI runner on the server runs them: the staging deploy job's
steps in bash, in a git checkout of the fixture app, with the CI secrets as environment variables, against the
real Docker Engine and headway's proxy. The deploy happens, the app gets the secret, the JSON report is kept."""

from __future__ import annotations

import json
import stat
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from headway.state.store import AppState
from tests.ci_support import load, run_github_job, run_gitlab_job, runner_env
from tests.conftest import AppDir

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args], cwd=root, check=True,
                   capture_output=True, timeout=60)


@pytest.fixture
def checkout(tiny_app: AppDir) -> AppDir:
    """The tiny app as a repository on its staging branch: its web role gets a secret and shows it."""
    tiny_app.edit_config("    replicas: 2\n", "    replicas: 2\n    secrets: [CI_TOKEN]\n")
    tiny_app.set_behavior(show_env=["CI_TOKEN"])
    (tiny_app.root / ".gitignore").write_text(".headway/\nheadway-deploy-*.json\n")
    git(tiny_app.root, "init", "-q", "-b", "staging")
    git(tiny_app.root, "add", "-A")
    git(tiny_app.root, "commit", "-qm", "app")
    return tiny_app


def _served(app: AppDir) -> dict[str, object]:
    return dict(httpx.get(app.url("staging"), timeout=5).json())


def _after_deploy(app: AppDir, artifact: Path, token: str, outputs: str) -> None:
    report = json.loads(artifact.read_text())
    assert report["release"]["outcome"] == "live"
    version = report["release"]["version"]
    state = AppState(app.state_dir, app.name, "staging")  # what the host records (status needs the secrets)
    assert state.history()[-1].version == version and state.history()[-1].outcome == "live"
    assert state.current().live == report["release"]["number"]
    served = _served(app)
    assert served["release"] == version
    assert served["env"] == {"CI_TOKEN": token}  # the CI secret reached the app through the secrets file
    assert token not in outputs  # and was never printed
    assert not (app.root / ".headway" / "secrets.staging").exists()  # removed when the job ended


def test_github_staging_job_deploys(checkout: AppDir, tmp_path: Path) -> None:
    result = checkout.cli("ci", "init", "github", "--test-command", "python -c 'print(1)'", check=True)
    assert "HEADWAY_SECRETS_STAGING" in result.stderr
    git(checkout.root, "add", "-A")
    git(checkout.root, "commit", "-qm", "ci")
    doc = load(checkout.root / ".github" / "workflows" / "headway.yml")
    assert doc["jobs"]["deploy-staging"]["runs-on"] == "self-hosted"  # a local environment: the server's runner
    token = f"tok-{uuid.uuid4().hex}"
    secrets = {"HEADWAY_SECRETS_STAGING": f"CI_TOKEN={token}",
               "HEADWAY_SSH_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nunused-here\n"
                                          "-----END OPENSSH PRIVATE KEY-----"}
    env = runner_env(tmp_path / "home", HEADWAY_STATE_DIR=str(checkout.state_dir), GITHUB_REF_NAME="staging")
    modes: dict[str, int] = {}

    def after(name: str, carried: dict[str, str]) -> None:
        if name == "Credentials":
            modes["key"] = stat.S_IMODE(Path(carried["HEADWAY_SSH_KEY"]).stat().st_mode)
            modes["secrets"] = stat.S_IMODE((checkout.root / ".headway" / "secrets.staging").stat().st_mode)

    steps = run_github_job(doc, "deploy-staging", checkout.root, tmp_path / "runner-temp", env, secrets,
                           after_step=after)
    assert [(s.name, s.returncode) for s in steps] == [("Credentials", 0), ("Deploy staging", 0),
                                                       ("Remove the credentials", 0)], steps
    assert modes == {"key": 0o600, "secrets": 0o600}
    outputs = "".join(s.stdout + s.stderr for s in steps)
    _after_deploy(checkout, checkout.root / "headway-deploy-staging.json", token, outputs)
    assert not (tmp_path / "runner-temp" / "headway-credentials").exists()


def test_gitlab_staging_job_deploys(checkout: AppDir, tmp_path: Path) -> None:
    checkout.cli("ci", "init", "gitlab", check=True)
    doc = load(checkout.root / ".gitlab-ci.yml")
    token = f"tok-{uuid.uuid4().hex}"
    env = runner_env(tmp_path / "home", HEADWAY_STATE_DIR=str(checkout.state_dir), TMPDIR=str(tmp_path),
                     CI_COMMIT_BRANCH="staging")
    run, after = run_gitlab_job(doc, "deploy-staging", checkout.root, env,
                                {"HEADWAY_SECRETS_STAGING": f"CI_TOKEN={token}"})
    assert run.returncode == 0, run.stderr
    assert after is not None and after.returncode == 0, after
    _after_deploy(checkout, checkout.root / "headway-deploy-staging.json", token, run.stdout + run.stderr)
    # a second run deploys again (the resource_group serialises runs; headway's lock is free between them)
    run, _ = run_gitlab_job(doc, "deploy-staging", checkout.root, env,
                            {"HEADWAY_SECRETS_STAGING": f"CI_TOKEN={token}"}, job_number="4243")
    assert run.returncode == 0, run.stderr
    report = json.loads((checkout.root / "headway-deploy-staging.json").read_text())
    assert report["release"]["number"] == 2 and report["release"]["outcome"] == "live"


def test_failed_deploy_fails_the_job_with_headways_exit_code(checkout: AppDir, tmp_path: Path) -> None:
    """The CI job fails with headway's exit code (2: bad input) when the secret the app needs is missing, and the
    report file is left empty: nothing was deployed."""
    checkout.cli("ci", "init", "github", check=True)
    doc = load(checkout.root / ".github" / "workflows" / "headway.yml")
    env = runner_env(tmp_path / "home", HEADWAY_STATE_DIR=str(checkout.state_dir))
    steps = run_github_job(doc, "deploy-staging", checkout.root, tmp_path / "runner-temp", env, {})
    by_name = {s.name: s for s in steps}
    assert by_name["Credentials"].returncode == 0 and "HEADWAY_SECRETS_STAGING is not set" in by_name[
        "Credentials"].stdout
    assert by_name["Deploy staging"].returncode == 2, by_name["Deploy staging"].stderr
    assert "CI_TOKEN" in by_name["Deploy staging"].stderr and "Traceback" not in by_name["Deploy staging"].stderr
    assert by_name["Remove the credentials"].returncode == 0  # `if: always()` still ran
    assert (checkout.root / "headway-deploy-staging.json").read_text() == ""
    with pytest.raises(httpx.HTTPError):
        httpx.get(checkout.url("staging"), timeout=3).raise_for_status()
