"""Running the jobs of a pipeline `headway ci init` wrote as a CI runner runs them: each `run:` step (GitHub) or
the `script:` (GitLab) in bash, with the CI secrets as environment variables, GITHUB_ENV and GITHUB_PATH carried
from step to step. Setup steps (actions such as checkout, and installing headway from the package index) are
skipped: the test puts this checkout's headway on PATH instead."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
_SECRET = re.compile(r"\$\{\{\s*secrets\.([A-Za-z0-9_]+)\s*\}\}")
_EXPR = re.compile(r"\$\{\{.*?\}\}")
SETUP_STEPS = {"Install headway"}


def load(path: Path) -> Any:
    """The pipeline file as GitHub and GitLab read it (YAML 1.2: `on` is a string, not true)."""
    return YAML(typ="safe").load(path.read_text())


@dataclass
class StepRun:
    name: str
    returncode: int
    stdout: str
    stderr: str


def runner_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CI runner's shell on this machine, with this checkout's headway on PATH."""
    home.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(VENV_BIN), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin",
                            "/bin"])
    keep = {k: os.environ[k] for k in ("DOCKER_HOST", "LANG", "TZ") if k in os.environ}
    return {**keep, "PATH": path, "HOME": str(home), "CI": "true", "USER": "runner", **extra}


def _expand(value: Any, secrets: dict[str, str]) -> str:
    text = _SECRET.sub(lambda m: secrets.get(m.group(1), ""), str(value))
    leftover = _EXPR.search(text)
    assert leftover is None, f"an expression the test runner does not evaluate: {leftover.group(0)}"
    return text


def _bash(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=timeout)


def run_github_job(doc: Any, job_id: str, workspace: Path, runner_temp: Path, env: dict[str, str],
                   secrets: dict[str, str], *, after_step: Callable[[str, dict[str, str]], None] | None = None,
                   timeout: float = 600) -> list[StepRun]:
    """The `run:` steps of `job_id`, in order, as a GitHub runner runs them; `if: failure()` steps only after a
    failure, `if: always()` ones always, others only while every step before passed."""
    job = doc["jobs"][job_id]
    runner_temp.mkdir(parents=True, exist_ok=True)
    github_env, github_path = runner_temp / "github_env", runner_temp / "github_path"
    github_env.write_text("")
    github_path.write_text("")
    base = {**env, "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(runner_temp),
            "GITHUB_ENV": str(github_env), "GITHUB_PATH": str(github_path),
            **{k: _expand(v, secrets) for k, v in (doc.get("env") or {}).items()},
            **{k: _expand(v, secrets) for k, v in (job.get("env") or {}).items()}}
    workdir = (job.get("defaults") or doc.get("defaults") or {}).get("run", {}).get("working-directory", ".")
    runs: list[StepRun] = []
    failed = False
    for step in job["steps"]:
        name = step.get("name") or step.get("uses") or step.get("run", "")[:40]
        if "uses" in step or name in SETUP_STEPS:
            continue
        condition = str(step.get("if", "success()"))
        if (condition == "failure()" and not failed) or (condition not in ("always()", "failure()") and failed):
            continue
        step_env = {**base, **_carried(github_env), **{k: _expand(v, secrets) for k, v in
                                                        (step.get("env") or {}).items()}}
        extra_path = [line for line in github_path.read_text().splitlines() if line.strip()]
        if extra_path:
            step_env["PATH"] = os.pathsep.join([*reversed(extra_path), step_env["PATH"]])
        result = _bash(_expand(step["run"], secrets), workspace / step.get("working-directory", workdir), step_env,
                       timeout)
        runs.append(StepRun(name, result.returncode, result.stdout, result.stderr))
        failed = failed or result.returncode != 0
        if after_step is not None:
            after_step(name, {**_carried(github_env)})
    return runs


def _carried(github_env: Path) -> dict[str, str]:
    out = {}
    for line in github_env.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def run_gitlab_job(doc: Any, job_id: str, project_dir: Path, env: dict[str, str], variables: dict[str, str], *,
                   job_number: str = "4242", timeout: float = 600) -> tuple[StepRun, StepRun | None]:
    """`script:` of `job_id` in one shell (its `before_script:` installs headway: skipped), then `after_script:`
    in a shell of its own, as GitLab's runner does; the CI/CD variables in the environment."""
    job = doc[job_id]
    base = {**env, "GITLAB_CI": "true", "CI_PROJECT_DIR": str(project_dir), "CI_JOB_ID": job_number,
            "CI_JOB_NAME": job_id, **{k: str(v) for k, v in (doc.get("variables") or {}).items()},
            **{k: str(v) for k, v in (job.get("variables") or {}).items()}, **variables}
    script = "\n".join(job["script"])
    main = _bash(script, project_dir, base, timeout)
    first = StepRun("script", main.returncode, main.stdout, main.stderr)
    after = None
    if job.get("after_script"):
        status = "success" if main.returncode == 0 else "failed"
        result = _bash("\n".join(job["after_script"]), project_dir, {**base, "CI_JOB_STATUS": status}, timeout)
        after = StepRun("after_script", result.returncode, result.stdout, result.stderr)
    return first, after
