"""`headway ci init github|gitlab`: a pipeline file that tests every push, deploys the staging branch to staging
and the production branch to production, with headway pinned to this version.

What goes into it is decided here, as plain data (`plan_pipeline`), and rendered from the jinja2 templates in
`headway/ci/templates/`. The pipeline gets everything secret from the CI's own secret store: the SSH key of the
server and its pinned host key (written to 0600 files for HEADWAY_SSH_KEY and HEADWAY_KNOWN_HOSTS), each
environment's secrets file (written where headway reads it), and a webhook for failure notices.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast

from headway import __version__
from headway.config.loader import find_config, load_config
from headway.config.model import AppConfig
from headway.config.secrets import secrets_path_for
from headway.errors import ConfigError

Provider = Literal["github", "gitlab"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab")
PIPELINE_FILES: dict[Provider, str] = {"github": ".github/workflows/headway.yml", "gitlab": ".gitlab-ci.yml"}
SSH_KEY_SECRET = "HEADWAY_SSH_PRIVATE_KEY"
KNOWN_HOSTS_SECRET = "HEADWAY_SSH_KNOWN_HOSTS"
WEBHOOK_SECRET = "HEADWAY_NOTIFY_WEBHOOK"
STAGING, PRODUCTION = "staging", "production"
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}(?<![/.])$")
_MAKE_TEST = re.compile(r"^test\s*:", re.MULTILINE)


@dataclass(frozen=True)
class DeployJob:
    """One environment deployed from one branch."""

    environment: str
    branch: str
    remote: str | None  # user@host[:port] of its server, None when the runner is the server
    secrets_path: str  # where headway reads the environment's secrets file, relative to headway.yml's directory
    has_channels: bool  # headway itself tells the environment's alert channels of a failed deploy
    rehearse: bool  # `headway rehearse` runs before the deploy (production)

    @property
    def job_id(self) -> str:
        return f"deploy-{self.environment}"

    @property
    def secrets_secret(self) -> str:
        return secrets_secret_name(self.environment)

    @property
    def artifact(self) -> str:
        return f"headway-deploy-{self.environment}.json"

    @property
    def self_hosted(self) -> bool:
        return self.remote is None


@dataclass(frozen=True)
class TestStep:
    name: str
    setup: tuple[str, ...]  # commands before it (dependencies)
    command: str
    placeholder: bool = False


@dataclass(frozen=True)
class PipelinePlan:
    provider: Provider
    app: str
    version: str
    root: Path  # where the pipeline file goes: the repository's top directory
    workdir: str  # headway.yml's directory relative to `root` ("." when they are the same)
    tests: TestStep
    deploys: tuple[DeployJob, ...]
    accept_host_key: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def path(self) -> Path:
        return self.root / PIPELINE_FILES[self.provider]

    @property
    def branches(self) -> list[str]:
        return [d.branch for d in self.deploys]

    def in_root(self, name: str) -> str:
        """A file of headway.yml's directory, relative to the repository's top (where CI resolves artifact paths)."""
        return name if self.workdir == "." else str(PurePosixPath(self.workdir) / name)

    def secrets(self) -> list[tuple[str, str]]:
        """The CI secrets the pipeline reads: (name, what it holds)."""
        out: list[tuple[str, str]] = []
        remote = [d for d in self.deploys if d.remote]
        if remote:
            hosts = ", ".join(sorted({d.remote or "" for d in remote}))
            out.append((SSH_KEY_SECRET, f"the private SSH key headway logs in with ({hosts})"))
            if not self.accept_host_key:
                out.append((KNOWN_HOSTS_SECRET, "the servers' host keys, known_hosts lines you checked "
                                                "(`ssh-keygen -F HOST` prints yours)"))
        for d in self.deploys:
            out.append((d.secrets_secret, f"the content of {d.secrets_path} for {d.environment} (optional when it "
                                          "has no secrets)"))
        out.append((WEBHOOK_SECRET, "optional: a webhook URL (Slack, Mattermost, Discord, …) told when the "
                                    "pipeline fails"))
        return out


def secrets_secret_name(environment: str) -> str:
    return "HEADWAY_SECRETS_" + re.sub(r"[^A-Z0-9]", "_", environment.upper())


def plan_pipeline(provider: str, *, config: str | Path | None = None, cwd: Path | None = None,
                  test_command: str | None = None, staging_branch: str | None = None,
                  production_branch: str | None = None, accept_host_key: bool = False) -> PipelinePlan:
    """What `headway ci init PROVIDER` writes, checked: nothing is written when this raises."""
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown CI {provider!r}", "use `headway ci init github` or `headway ci init gitlab`")
    config_path = find_config(cwd, config)
    app_dir = config_path.parent
    cfg = load_config(config_path)
    root = _repository_top(app_dir)
    workdir = os.path.relpath(app_dir, root).replace(os.sep, "/")
    wanted = {STAGING: staging_branch, PRODUCTION: production_branch}
    present = [env for env in (STAGING, PRODUCTION) if env in cfg.environments]
    if not present:
        raise ConfigError(f"{config_path.name} has no environment named staging or production "
                          f"(it has {', '.join(sorted(cfg.environments))})",
                          "name the environments the pipeline deploys `staging` and `production` in headway.yml")
    notes: list[str] = []
    for env, option in ((STAGING, "--staging-branch"), (PRODUCTION, "--production-branch")):
        if env not in cfg.environments and wanted[env] is not None:
            raise ConfigError(f"{option} was given, but headway.yml has no {env} environment",
                              f"add {env} under environments:, or drop {option}")
        if env not in cfg.environments:
            notes.append(f"no {env} environment in headway.yml: the pipeline has no {env} deploy")
    deploys = tuple(_deploy_job(cfg, env, wanted[env], app_dir) for env in present)
    if len({d.branch for d in deploys}) != len(deploys):
        raise ConfigError(f"staging and production would both deploy from branch {deploys[0].branch}",
                          "give each its own branch: --staging-branch staging --production-branch main")
    tests = _test_step(app_dir, root, test_command)
    if tests.placeholder:
        notes.append("no test command found (no Makefile `test:` target, no tests/ directory): the tests step only "
                     "says so; give one with --test-command")
    if accept_host_key and any(d.remote for d in deploys):
        notes.append("--accept-host-key: the pipeline trusts whatever host key the server shows the first time "
                     "of every run (no pinning); set HEADWAY_SSH_KNOWN_HOSTS and drop it to pin the key")
    return PipelinePlan(provider=cast(Provider, provider), app=cfg.app, version=__version__, root=root,
                        workdir=workdir, tests=tests, deploys=deploys, accept_host_key=accept_host_key,
                        notes=tuple(notes))


def _deploy_job(cfg: AppConfig, environment: str, branch: str | None, app_dir: Path) -> DeployJob:
    env = cfg.environments[environment]
    option = "--staging-branch" if environment == STAGING else "--production-branch"
    if branch is not None and env.branch is not None and branch != env.branch:
        raise ConfigError(f"{environment} deploys branch {env.branch} (its `branch:` in headway.yml), and "
                          f"{option} says {branch}",
                          f"drop {option}, or change `branch:` of {environment} in headway.yml")
    chosen = branch or env.branch or ("staging" if environment == STAGING else "main")
    if not _BRANCH.match(chosen):
        raise ConfigError(f"{option} {chosen!r} is not a branch name a pipeline can match",
                          "use letters, digits and . _ / -, e.g. main or release/prod")
    secrets = secrets_path_for(cfg, environment, Path("."))
    if secrets.is_absolute():
        raise ConfigError(f"{environment}: secrets_file {env.secrets_file} is an absolute path; a CI runner writes "
                          "it inside the checkout", "make secrets_file relative to headway.yml's directory")
    return DeployJob(environment=environment, branch=chosen, remote=env.remote_host,
                     secrets_path=secrets.as_posix(), has_channels=bool(cfg.alerts_for(environment).channels),
                     rehearse=environment == PRODUCTION)


def _repository_top(app_dir: Path) -> Path:
    """The git checkout's top directory (CI reads its pipeline file there), else headway.yml's directory."""
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=app_dir, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return app_dir
    top = out.stdout.strip()
    return Path(top).resolve() if out.returncode == 0 and top else app_dir


def _test_step(app_dir: Path, root: Path, command: str | None) -> TestStep:
    """The given test command, else a guess from the project: `make test`, then pytest, then a placeholder."""
    if command is not None:
        if not command.strip():
            raise ConfigError("--test-command is empty", "give the command that runs your tests, e.g. 'make test'")
        return TestStep("Run the tests", (), command.strip())
    for folder in dict.fromkeys((app_dir, root)):
        makefile = folder / "Makefile"
        if makefile.is_file() and _MAKE_TEST.search(makefile.read_text(errors="replace")):
            return TestStep("Run the tests (make test)", (), _in(folder, app_dir, "make test"))
    for folder in dict.fromkeys((app_dir, root)):
        if (folder / "tests").is_dir():
            setup = ["python -m pip install --upgrade pip"]
            if (folder / "requirements.txt").is_file():
                setup.append("python -m pip install -r requirements.txt")
            elif (folder / "pyproject.toml").is_file():
                setup.append("python -m pip install .")
            setup.append("python -m pip install pytest")
            return TestStep("Run the tests (pytest)", tuple(_in(folder, app_dir, s) for s in setup),
                            _in(folder, app_dir, "python -m pytest"))
    return TestStep("Tests: none configured (headway ci init --test-command CMD)", (),
                    "echo 'No test command is configured: rerun `headway ci init --force --test-command CMD`.'",
                    placeholder=True)


def _in(folder: Path, app_dir: Path, command: str) -> str:
    """`command` run in `folder` by a step that starts in headway.yml's directory."""
    if folder == app_dir:
        return command
    return f"cd {shlex.quote(os.path.relpath(folder, app_dir))} && {command}"


# -- rendering ----------------------------------------------------------------------------------------
def _yaml_string(value: Any) -> str:
    """A YAML scalar for any string: JSON strings are YAML double-quoted strings."""
    return json.dumps(str(value), ensure_ascii=False)


def _gha_literal(value: str) -> str:
    """A string literal inside a GitHub expression (`${{ … }}`, `if:`)."""
    return "'" + value.replace("'", "''") + "'"


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("headway.ci", "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["yq"] = _yaml_string
    env.filters["sh"] = shlex.quote
    env.filters["gha"] = _gha_literal
    return env


def render(plan: PipelinePlan) -> str:
    text: str = _environment().get_template(f"{plan.provider}.yml.j2").render(
        plan=plan, STAGING=STAGING, SSH_KEY_SECRET=SSH_KEY_SECRET, KNOWN_HOSTS_SECRET=KNOWN_HOSTS_SECRET,
        WEBHOOK_SECRET=WEBHOOK_SECRET)
    _check_yaml(text, plan)
    return text


def _check_yaml(text: str, plan: PipelinePlan) -> None:
    """The rendered file parses (a template or value that broke it is headway's bug, said plainly)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        YAML(typ="safe").load(text)
    except YAMLError as exc:  # pragma: no cover - the templates are tested
        raise ConfigError(f"the {plan.provider} pipeline rendered as invalid YAML: {exc}",
                          "report this with your headway.yml; nothing was written") from None


def write_pipeline(plan: PipelinePlan, *, force: bool = False) -> Path:
    """Render `plan` and write it; an existing pipeline file is kept unless `force`."""
    text = render(plan)
    path = plan.path
    if path.exists() and not force:
        shown = os.path.relpath(path, Path.cwd()) if path.is_relative_to(Path.cwd()) else str(path)
        raise ConfigError(f"{shown} already exists; it was left as it is",
                          f"pass --force to replace it (`headway ci init {plan.provider} --force`), or move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
