"""A release is built from the committed tree: an uncommitted change never reaches the running containers."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import AppDir

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, text=True, capture_output=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def served(app: AppDir) -> dict[str, str]:
    body: dict[str, str] = httpx.get(app.url(), timeout=5).json()
    return body


def history(app: AppDir) -> list[str]:
    result = app.cli("releases", "-e", "production", "--json", check=True)
    return [f"{r['number']}:{r['version']}:{r['outcome']}" for r in json.loads(result.stdout)]


def test_uncommitted_changes_stay_out_of_the_release(tiny_app: AppDir) -> None:
    tiny_app.edit_config("  production:\n", "  production:\n    branch: main\n")
    root = tiny_app.root
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the app")
    sha = git(root, "rev-parse", "HEAD")
    tiny_app.set_behavior(greeting="uncommitted")  # behavior.json is baked into the image
    (root / "notes.txt").write_text("untracked")
    leftovers = set(Path(tempfile.gettempdir()).glob(f"headway-{tiny_app.name}-*"))

    deployed = tiny_app.cli("deploy", "-e", "production", check=True)
    assert "building the committed tree of HEAD" in deployed.stderr
    assert "2 uncommitted changes in the build context stay out (--dirty builds them)" in deployed.stderr
    body = served(tiny_app)
    assert body["release"] == sha[:12]
    assert body["greeting"] == "hello", "the committed behavior.json, not the working tree's"
    inside = tiny_app.cli("exec", "-e", "production", "web", "--", "cat", "behavior.json", check=True)
    assert json.loads(inside.stdout.strip().splitlines()[-1]) == {"greeting": "hello"}
    assert set(Path(tempfile.gettempdir()).glob(f"headway-{tiny_app.name}-*")) == leftovers, \
        "the exported tree is removed after the deploy"
    before = history(tiny_app)

    # production takes branch main only: refused before anything is built or changed
    git(root, "switch", "-q", "-c", "develop")
    refused = tiny_app.cli("deploy", "-e", "production")
    assert refused.returncode == 2, refused.stderr
    assert "production deploys branch main; you are on develop" in refused.stderr
    assert "check out main, or pass --force" in refused.stderr and "Traceback" not in refused.stderr
    unknown = tiny_app.cli("deploy", "-e", "production", "--ref", "no-such-ref", "--force")
    assert unknown.returncode == 2 and "unknown ref 'no-such-ref'" in unknown.stderr, unknown.stderr
    assert history(tiny_app) == before
    assert served(tiny_app)["release"] == sha[:12]

    # the working tree on purpose: --dirty (and --force, since production names a branch)
    dirty = tiny_app.cli("deploy", "-e", "production", "--dirty", "--force", check=True)
    assert "--force: production deploys branch main; --dirty builds uncommitted changes" in dirty.stderr
    body = served(tiny_app)
    assert body["release"] == f"{sha[:12]}-dirty" and body["greeting"] == "uncommitted"
