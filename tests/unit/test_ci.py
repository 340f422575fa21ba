"""`headway ci init github|gitlab`: the pipelines validate against GitHub's and GitLab's own schemas, deploy the
right environment from the right branch, refuse to overwrite, and handle credentials without showing them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from headway import __version__
from headway.ci.pipelines import plan_pipeline, render
from headway.errors import ConfigError
from tests.ci_support import load, run_github_job, run_gitlab_job, runner_env
from tests.receivers import http_receiver

SCHEMAS = Path(__file__).resolve().parent.parent / "fixtures" / "schemas"

CONFIG = """\
app: shop
roles:
  web:
    port: 8000
    health: {path: /health}
environments:
  production:
    hosts: [deploy@203.0.113.7]
    domains: [shop.example.com]
  staging:
    port: 8081
"""


def headway(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=root, text=True, capture_output=True,
                          timeout=60, env={**os.environ, "HEADWAY_STATE_DIR": str(root / ".state")})


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "headway.yml").write_text(CONFIG)
    return root


def validate(doc: Any, schema_name: str) -> list[str]:
    schema = json.loads((SCHEMAS / schema_name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc)]


# -- the files validate against the CI's own schemas ------------------------------------------------------
def test_github_workflow_validates_against_githubs_schema(app: Path) -> None:
    result = headway(app, "ci", "init", "github")
    assert result.returncode == 0, result.stderr
    doc = load(app / ".github" / "workflows" / "headway.yml")
    assert validate(doc, "github-workflow.json") == []
    # the schema is not a rubber stamp: a job without runs-on and a step with an unknown key fail it
    broken = json.loads(json.dumps(doc))
    del broken["jobs"]["deploy-staging"]["runs-on"]
    broken["jobs"]["test"]["steps"][0]["runs"] = "x"
    assert len(validate(broken, "github-workflow.json")) >= 2


def test_gitlab_ci_validates_against_gitlabs_schema(app: Path) -> None:
    result = headway(app, "ci", "init", "gitlab")
    assert result.returncode == 0, result.stderr
    doc = load(app / ".gitlab-ci.yml")
    assert validate(doc, "gitlab-ci.json") == []
    broken = json.loads(json.dumps(doc))
    broken["deploy-staging"]["when"] = "sometimes"
    broken["deploy-production"]["artifacts"]["when"] = "never"
    assert len(validate(broken, "gitlab-ci.json")) >= 2


@pytest.mark.parametrize("workdir", [".", "deploy/shop"])
@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_every_variant_validates(tmp_path: Path, provider: str, workdir: str) -> None:
    """headway.yml in a subdirectory of the repository, a Makefile's tests, a local and a remote environment,
    --accept-host-key: each rendering still validates."""
    top = tmp_path / "repo"
    root = top / workdir
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    (root / "headway.yml").write_text(CONFIG.replace("environments:", "alerts:\n  channels: [{type: webhook, url: "
                                                     "\"https://hooks.example.com/x\"}]\nenvironments:"))
    (root / "Makefile").write_text("build:\n\ttrue\ntest: build\n\tpytest\n")
    plan = plan_pipeline(provider, cwd=root, accept_host_key=True)
    assert plan.root == top.resolve() and plan.workdir == workdir
    doc = load_text(render(plan))
    assert validate(doc, "github-workflow.json" if provider == "github" else "gitlab-ci.json") == []
    if provider == "github" and workdir != ".":
        assert doc["defaults"]["run"]["working-directory"] == workdir
        assert doc["jobs"]["deploy-staging"]["steps"][-2]["with"]["path"] == f"{workdir}/headway-deploy-staging.json"
        assert doc["jobs"]["notify"]["defaults"]["run"]["working-directory"] == "."  # no checkout there
    if provider == "gitlab" and workdir != ".":
        assert doc["deploy-staging"]["script"][0] == f"cd {workdir}"
        assert doc["deploy-staging"]["artifacts"]["paths"] == [f"{workdir}/headway-deploy-staging.json"]


def load_text(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


# -- what the pipeline does ---------------------------------------------------------------------------------
def test_github_jobs_branches_concurrency_and_pinned_version(app: Path) -> None:
    doc = load_text(render(plan_pipeline("github", cwd=app)))
    jobs = doc["jobs"]
    assert set(jobs) == {"test", "deploy-staging", "deploy-production", "notify"}
    assert jobs["deploy-staging"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/staging'"
    assert jobs["deploy-production"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert doc["on"]["push"]["branches"] == ["staging", "main"]
    for env in ("staging", "production"):
        job = jobs[f"deploy-{env}"]
        assert job["needs"] == "test" and job["environment"] == env
        assert job["concurrency"] == {"group": f"headway-shop-{env}", "cancel-in-progress": False}
        runs = [s.get("run", "") for s in job["steps"]]
        assert any(f'"headway=={__version__}"' in r for r in runs)
        assert f"headway deploy -e {env} --json > headway-deploy-{env}.json" in runs
        upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
        assert upload["if"] == "always()" and upload["with"]["path"] == f"headway-deploy-{env}.json"
    # production is rehearsed first; staging is not
    prod = [s.get("run", "") for s in jobs["deploy-production"]["steps"]]
    assert prod.index("headway rehearse -e production") < prod.index(
        "headway deploy -e production --json > headway-deploy-production.json")
    assert not any("rehearse" in s.get("run", "") for s in jobs["deploy-staging"]["steps"])
    # the remote environment runs on a hosted runner; the local one on the server's own runner
    assert jobs["deploy-production"]["runs-on"] == "ubuntu-latest"
    assert jobs["deploy-staging"]["runs-on"] == "self-hosted"
    assert jobs["notify"]["if"] == "failure()"
    assert jobs["notify"]["needs"] == ["test", "deploy-staging", "deploy-production"]


def test_gitlab_jobs_rules_resource_groups_artifacts(app: Path) -> None:
    doc = load_text(render(plan_pipeline("gitlab", cwd=app, staging_branch="develop", production_branch="prod")))
    assert doc["deploy-staging"]["rules"] == [{"if": '$CI_COMMIT_BRANCH == "develop"'}]
    assert doc["deploy-production"]["rules"] == [{"if": '$CI_COMMIT_BRANCH == "prod"'}]
    for env in ("staging", "production"):
        job = doc[f"deploy-{env}"]
        assert job["resource_group"] == f"headway-shop-{env}"
        assert job["artifacts"] == {"when": "always", "paths": [f"headway-deploy-{env}.json"], "expire_in": "30 days"}
        assert f"headway=={__version__}" in "\n".join(job["before_script"])
        assert job["script"][-1] == f"headway deploy -e {env} --json > headway-deploy-{env}.json"
    assert doc["deploy-production"]["script"][-2] == "headway rehearse -e production"
    assert doc["deploy-staging"]["tags"] == ["headway"] and "tags" not in doc["deploy-production"]
    assert doc["notify-failure"]["when"] == "on_failure" and doc["notify-failure"]["stage"] == ".post"


def test_test_command_guesses(app: Path) -> None:
    assert plan_pipeline("github", cwd=app).tests.placeholder
    (app / "tests").mkdir()
    (app / "requirements.txt").write_text("fastapi\n")
    tests = plan_pipeline("github", cwd=app).tests
    assert tests.command == "python -m pytest" and "python -m pip install -r requirements.txt" in tests.setup
    (app / "Makefile").write_text("lint:\n\truff .\n\ntest:\n\tpytest -q\n")
    assert plan_pipeline("github", cwd=app).tests.command == "make test"
    (app / "Makefile").write_text("lint:\n\truff .\n")  # no test target: back to pytest
    assert plan_pipeline("github", cwd=app).tests.command == "python -m pytest"
    given = plan_pipeline("gitlab", cwd=app, test_command="npm test")
    assert given.tests.command == "npm test" and given.tests.setup == ()
    assert load_text(render(given))["test"]["script"] == ["npm test"]


def test_branch_from_config_and_conflicts(app: Path) -> None:
    (app / "headway.yml").write_text(CONFIG.replace("    port: 8081", "    port: 8081\n    branch: develop"))
    assert [d.branch for d in plan_pipeline("github", cwd=app).deploys] == ["develop", "main"]
    with pytest.raises(ConfigError) as info:
        plan_pipeline("github", cwd=app, staging_branch="staging")
    assert "branch: develop" in str(info.value) or "develop" in info.value.message
    assert "--staging-branch" in (info.value.fix or "")
    with pytest.raises(ConfigError) as info:
        plan_pipeline("github", cwd=app, production_branch="develop")
    assert "both deploy from branch develop" in info.value.message
    with pytest.raises(ConfigError) as info:
        plan_pipeline("github", cwd=app, production_branch="main; rm -rf /")
    assert "not a branch name" in info.value.message


def test_only_the_environments_it_has(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text(CONFIG.replace("  staging:\n    port: 8081\n", ""))
    plan = plan_pipeline("github", cwd=tmp_path)
    assert [d.environment for d in plan.deploys] == ["production"]
    assert any("no staging environment" in n for n in plan.notes)
    assert "deploy-staging" not in load_text(render(plan))["jobs"]
    with pytest.raises(ConfigError) as info:
        plan_pipeline("github", cwd=tmp_path, staging_branch="staging")
    assert "--staging-branch" in info.value.message
    (tmp_path / "headway.yml").write_text(CONFIG.replace("production:", "live:").replace("staging:", "qa:"))
    with pytest.raises(ConfigError) as info:
        plan_pipeline("gitlab", cwd=tmp_path)
    assert "live, qa" in info.value.message


def test_secrets_file_path_follows_secrets_file(app: Path) -> None:
    (app / "headway.yml").write_text(CONFIG.replace("    port: 8081", "    port: 8081\n    secrets_file: "
                                                                      "config/staging.env"))
    plan = plan_pipeline("github", cwd=app)
    staging = next(d for d in plan.deploys if d.environment == "staging")
    assert staging.secrets_path == "config/staging.env" and staging.secrets_secret == "HEADWAY_SECRETS_STAGING"
    assert "secrets_file=config/staging.env" in render(plan)


# -- refusing to overwrite -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("provider", "name"), [("github", ".github/workflows/headway.yml"),
                                                ("gitlab", ".gitlab-ci.yml")])
def test_existing_pipeline_is_kept_unless_force(app: Path, provider: str, name: str) -> None:
    path = app / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# mine\n")
    result = headway(app, "ci", "init", provider)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == "# mine\n"
    result = headway(app, "ci", "init", provider, "--force")
    assert result.returncode == 0, result.stderr
    assert "headway deploy -e staging --json" in path.read_text()


def test_bad_input_is_a_clear_error(app: Path, tmp_path: Path) -> None:
    result = headway(app, "ci", "init", "jenkins")
    assert result.returncode == 2 and "jenkins" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = headway(empty, "ci", "init", "github")
    assert result.returncode == 2 and "headway init" in result.stderr and "Traceback" not in result.stderr
    assert not (empty / ".github").exists()
    result = headway(app, "ci", "init", "github", "--test-command", " ")
    assert result.returncode == 2 and "--test-command" in result.stderr
    assert not (app / ".github").exists()


# -- the credentials steps, run as a runner runs them ---------------------------------------------------------
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUtc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----"
KNOWN = "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBf0bkVDc2hZNkR6bU1ZWlpQV1h3ZXR0aW5n"
SECRETS = "JWT_SECRET=jwt-value-never-shown-7f3a\n"


def _credentials_only(doc: Any, job: str) -> Any:
    """`job` with its deploy and rehearse steps dropped: the credentials alone (no server here)."""
    doc = json.loads(json.dumps(doc))
    doc["jobs"][job]["steps"] = [s for s in doc["jobs"][job]["steps"] if not s.get("run", "").startswith(
        "headway ") and s.get("name") != "Remove the credentials"]
    return doc


def test_github_credentials_become_0600_files_and_are_never_printed(app: Path, tmp_path: Path) -> None:
    doc = _credentials_only(load_text(render(plan_pipeline("github", cwd=app))), "deploy-production")
    temp = tmp_path / "runner-temp"
    seen: dict[str, str] = {}
    runs = run_github_job(doc, "deploy-production", app, temp, runner_env(tmp_path / "home"),
                          {"HEADWAY_SSH_PRIVATE_KEY": KEY, "HEADWAY_SSH_KNOWN_HOSTS": KNOWN,
                           "HEADWAY_SECRETS_PRODUCTION": SECRETS},
                          after_step=lambda name, env: seen.update(env))
    assert [r.returncode for r in runs] == [0], runs
    key_file, known_file = Path(seen["HEADWAY_SSH_KEY"]), Path(seen["HEADWAY_KNOWN_HOSTS"])
    assert key_file.read_text().strip() == KEY and known_file.read_text().strip() == KNOWN
    secrets_file = app / ".headway" / "secrets.production"
    assert secrets_file.read_text() == SECRETS + "\n"
    for f in (key_file, known_file, secrets_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert "HEADWAY_ACCEPT_HOST_KEY" not in seen  # pinned, never trust-on-first-use unless asked
    for r in runs:
        for secret in ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUtc2VjcmV0", "jwt-value-never-shown-7f3a"):
            assert secret not in r.stdout + r.stderr


def test_github_remote_deploy_without_key_or_known_hosts_fails_naming_the_secret(app: Path, tmp_path: Path) -> None:
    doc = _credentials_only(load_text(render(plan_pipeline("github", cwd=app))), "deploy-production")
    runs = run_github_job(doc, "deploy-production", app, tmp_path / "t1", runner_env(tmp_path / "home"), {})
    assert runs[0].returncode == 2 and "HEADWAY_SSH_PRIVATE_KEY" in runs[0].stderr
    runs = run_github_job(doc, "deploy-production", app, tmp_path / "t2", runner_env(tmp_path / "home"),
                          {"HEADWAY_SSH_PRIVATE_KEY": KEY})
    assert runs[0].returncode == 2 and "HEADWAY_SSH_KNOWN_HOSTS" in runs[0].stderr
    # --accept-host-key: no known_hosts needed, trust on first use said to headway
    doc = _credentials_only(load_text(render(plan_pipeline("github", cwd=app, accept_host_key=True))),
                            "deploy-production")
    seen: dict[str, str] = {}
    runs = run_github_job(doc, "deploy-production", app, tmp_path / "t3", runner_env(tmp_path / "home"),
                          {"HEADWAY_SSH_PRIVATE_KEY": KEY}, after_step=lambda name, env: seen.update(env))
    assert runs[0].returncode == 0, runs[0].stderr
    assert seen["HEADWAY_ACCEPT_HOST_KEY"] == "1"


def test_gitlab_file_variables_are_copied(app: Path, tmp_path: Path) -> None:
    """GitLab's "File" variables hold a path to the value: the script copies the file."""
    doc = load_text(render(plan_pipeline("gitlab", cwd=app)))
    key = tmp_path / "key-var"
    key.write_text(KEY + "\n")
    doc["deploy-production"]["script"] = doc["deploy-production"]["script"][:1] + [
        'echo "key=$HEADWAY_SSH_KEY known=$HEADWAY_KNOWN_HOSTS"']
    env = {**runner_env(tmp_path / "home"), "TMPDIR": str(tmp_path)}
    run, after = run_gitlab_job(doc, "deploy-production", app, env,
                                {"HEADWAY_SSH_PRIVATE_KEY": str(key), "HEADWAY_SSH_KNOWN_HOSTS": KNOWN})
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip().splitlines()[-1]
    key_path = Path(line.split()[0].removeprefix("key="))
    assert key_path == tmp_path / "headway-credentials-4242" / "ssh_key"
    assert after is not None and after.returncode == 0
    assert not key_path.exists()  # after_script removed the credentials


def test_failure_notice_reaches_the_webhook(app: Path, tmp_path: Path) -> None:
    doc = load_text(render(plan_pipeline("github", cwd=app)))
    with http_receiver() as rec:
        env = runner_env(tmp_path / "home", GITHUB_SERVER_URL="https://github.com", GITHUB_REPOSITORY="o/shop",
                         GITHUB_RUN_ID="77", GITHUB_REF_NAME="main", GITHUB_SHA="abc123")
        steps = run_github_job(doc, "notify", app, tmp_path / "t", env,
                               {"HEADWAY_NOTIFY_WEBHOOK": rec.url("/hook")})
        assert [s.returncode for s in steps] == [0], steps
        assert len(rec.at("/hook")) == 1
        text = rec.at("/hook")[0].json()["text"]
        assert text == "shop: the pipeline failed on main (abc123): https://github.com/o/shop/actions/runs/77"
        # no webhook secret: the step says so and passes
        steps = run_github_job(doc, "notify", app, tmp_path / "t2", env, {})
        assert steps[0].returncode == 0 and "not set" in steps[0].stdout
        assert len(rec.at("/hook")) == 1
    gitlab = load_text(render(plan_pipeline("gitlab", cwd=app)))
    with http_receiver() as rec:
        env = runner_env(tmp_path / "home", CI_COMMIT_REF_NAME="main", CI_COMMIT_SHA="def456",
                         CI_PIPELINE_URL="https://gitlab.example.com/o/shop/-/pipelines/9")
        run, _ = run_gitlab_job(gitlab, "notify-failure", app, env, {"HEADWAY_NOTIFY_WEBHOOK": rec.url("/g")})
        assert run.returncode == 0, run.stderr
        assert rec.at("/g")[0].json()["text"].endswith("(def456): https://gitlab.example.com/o/shop/-/pipelines/9")
