"""`headway ci init github|gitlab`: a CI/CD pipeline that tests, then deploys staging and production."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from headway.cli.render import err_console, escape


@click.group()
def ci() -> None:
    """CI/CD pipelines that deploy with headway."""


@ci.command("init")
@click.argument("provider", type=click.Choice(["github", "gitlab"]))
@click.option("--force", is_flag=True, help="Replace an existing pipeline file.")
@click.option("--staging-branch", default=None, metavar="BRANCH",
              help="The branch that deploys staging (default: its `branch:` in headway.yml, else staging).")
@click.option("--production-branch", default=None, metavar="BRANCH",
              help="The branch that deploys production (default: its `branch:` in headway.yml, else main).")
@click.option("--test-command", default=None, metavar="CMD",
              help="The command that runs the tests (default: `make test` if the Makefile has a test target, "
                   "else pytest if there is a tests/ directory).")
@click.option("--accept-host-key", is_flag=True,
              help="Let the pipeline trust a server's SSH host key the first time instead of pinning it "
                   "(HEADWAY_SSH_KNOWN_HOSTS); only if you accept that risk.")
@click.pass_obj
def init_cmd(obj: Any, provider: str, force: bool, staging_branch: str | None, production_branch: str | None,
             test_command: str | None, accept_host_key: bool) -> None:
    """Write .github/workflows/headway.yml or .gitlab-ci.yml: tests, staging, production."""
    from headway.ci.pipelines import plan_pipeline, write_pipeline

    plan = plan_pipeline(provider, config=obj.config, test_command=test_command, staging_branch=staging_branch,
                         production_branch=production_branch, accept_host_key=accept_host_key)
    path = write_pipeline(plan, force=force)
    err_console.print(f"[green]wrote[/green] {_shown(path)}")
    for d in plan.deploys:
        rehearse = "rehearse, then " if d.rehearse else ""
        err_console.print(f"  {escape(d.branch)} → {rehearse}deploy {d.environment}"
                          + (f" on {d.remote}" if d.remote else " (a runner on the server itself)"))
    err_console.print(f"  tests: {escape(plan.tests.command)}")
    for note in plan.notes:
        err_console.print(f"  • {escape(note)}")
    where = "Settings > Secrets and variables > Actions" if provider == "github" else \
        "Settings > CI/CD > Variables (multi-line values as File variables)"
    err_console.print(f"set these CI secrets ({where}):")
    for name, what in plan.secrets():
        err_console.print(f"  {name}: {escape(what)}")


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
