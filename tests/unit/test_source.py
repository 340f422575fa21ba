"""What a release is built from, checked against real temporary git repositories (no Docker)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from headway.config.loader import load_config
from headway.config.model import ImageBuild
from headway.config.resolve import Target, resolve
from headway.errors import ConfigError, ExitCode
from headway.release.source import plan_source, prepared_source

CONFIG = """\
app: shop
image: {context: %s, dockerfile: %s}
roles:
  web: {command: python app.py, port: 8000}
environments:
  production: {port: 18080%s}
  staging: {port: 18081}
"""

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, check=True, text=True,
                          capture_output=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def commit(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_repo(path: Path, *, app_dir: str = ".", context: str = ".", dockerfile: str = "Dockerfile",
              branch: str | None = None, extra: dict[str, str] | None = None) -> tuple[Path, str]:
    """A repository with the app in `app_dir`, one commit on main; returns the app's directory and the commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    app = path / app_dir
    env_extra = f", branch: {branch}" if branch else ""
    write(app, {"headway.yml": CONFIG % (context, dockerfile, env_extra), "Dockerfile": "FROM scratch\n",
                "app.py": "print('committed')\n", ".gitignore": ".env\n", **(extra or {})})
    return app, commit(path, "first")


def target(app: Path, environment: str = "production") -> Target:
    return resolve(load_config(app / "headway.yml"), environment, app)


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# -- the committed tree ----------------------------------------------------------------------------------
def test_default_builds_the_committed_tree_only(tmp_path: Path) -> None:
    app, sha = make_repo(tmp_path / "repo")
    (app / "app.py").write_text("print('uncommitted edit')\n")
    (app / "untracked.txt").write_text("not committed")
    (app / ".env").write_text("SECRET=ignored-by-git")
    with prepared_source(target(app)) as src:
        exported = src.root
        assert exported != app
        assert files_under(exported) == {".gitignore": ".env\n", "Dockerfile": "FROM scratch\n",
                                         "app.py": "print('committed')\n",
                                         "headway.yml": CONFIG % (".", "Dockerfile", "")}
        assert src.version == sha[:12]
        assert src.plan.commit == sha
        # one info line: what is built, and that the changes stay out
        assert len(src.notes) == 1
        assert "committed tree of HEAD" in src.notes[0] and "2 uncommitted changes" in src.notes[0]
        assert "--dirty" in src.notes[0]
    assert not exported.exists(), "the exported tree is removed after the build"


def test_clean_tree_says_nothing(tmp_path: Path) -> None:
    app, sha = make_repo(tmp_path / "repo")
    with prepared_source(target(app)) as src:
        assert src.notes == ()
        assert src.version == sha[:12]


def test_only_the_build_context_is_exported(tmp_path: Path) -> None:
    """The app lives in services/api of a bigger repository; its context is its own directory, its Dockerfile
    is kept in docker/ at the top."""
    repo = tmp_path / "repo"
    app, _ = make_repo(repo, app_dir="services/api", dockerfile="../../docker/api.Dockerfile",
                       extra={"../../docker/api.Dockerfile": "FROM scratch\n", "../../docs/big.txt": "x" * 1000,
                              "../web/index.html": "<p>other service</p>"})
    with prepared_source(target(app)) as src:
        top = src.root.parent.parent
        assert src.root == top / "services" / "api"
        assert sorted(files_under(top)) == ["docker/api.Dockerfile", "services/api/.gitignore",
                                            "services/api/Dockerfile", "services/api/app.py",
                                            "services/api/headway.yml"]


def test_a_context_above_the_app_directory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, _ = make_repo(repo, app_dir="deploy", context="..", dockerfile="deploy/Dockerfile",
                       extra={"../src/main.py": "print('code')\n"})
    with prepared_source(target(app)) as src:
        assert (src.root / ".." / "src" / "main.py").read_text() == "print('code')\n"
        assert (src.root / "Dockerfile").is_file()


def test_a_context_not_committed_is_refused(tmp_path: Path) -> None:
    app, _ = make_repo(tmp_path / "repo", context="build")
    (app / "build").mkdir()
    (app / "build" / "Dockerfile").write_text("FROM scratch\n")  # exists, but only in the working tree
    with pytest.raises(ConfigError) as err:
        plan_source(app, [ImageBuild(context="build")])
    assert "build is not in the commit built" in err.value.message
    assert "--dirty" in (err.value.fix or "")
    assert err.value.exit_code == ExitCode.USAGE


def test_a_dockerfile_not_committed_is_refused(tmp_path: Path) -> None:
    app, _ = make_repo(tmp_path / "repo")
    (app / "Dockerfile.prod").write_text("FROM scratch\n")
    with pytest.raises(ConfigError, match="Dockerfile.prod is not in the commit built"):
        plan_source(app, [ImageBuild(dockerfile="Dockerfile.prod")])
    assert plan_source(app, [ImageBuild(dockerfile="Dockerfile.prod")], dirty=True).version.endswith("-dirty")


def test_a_context_outside_the_repository_is_refused(tmp_path: Path) -> None:
    app, _ = make_repo(tmp_path / "repo")
    with pytest.raises(ConfigError, match="outside the git repository"):
        plan_source(app, [ImageBuild(context="..")])


def test_nothing_committed_yet(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, {"Dockerfile": "FROM scratch\n"})
    with pytest.raises(ConfigError, match="nothing is committed"):
        plan_source(repo, [ImageBuild()])
    plan = plan_source(repo, [ImageBuild()], dirty=True)
    assert not plan.from_commit and re.fullmatch(r"t\d{8}-\d{6}", plan.version)


# -- --ref -----------------------------------------------------------------------------------------------
def test_ref_builds_that_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, first = make_repo(repo)
    git(repo, "tag", "-a", "v1.0", "-m", "release 1.0")  # an annotated tag: peeled to its commit
    (app / "app.py").write_text("print('second')\n")
    second = commit(repo)
    (app / "app.py").write_text("print('uncommitted')\n")
    for ref, sha, text in [("v1.0", first, "committed"), (first[:7], first, "committed"),
                           ("main", second, "second"), ("HEAD~1", first, "committed")]:
        with prepared_source(target(app), ref=ref) as src:
            assert (src.root / "app.py").read_text() == f"print('{text}')\n", ref
            assert src.version == sha[:12], "the version is the commit id, also for a tag"
            assert src.notes == ()


def test_explicit_version_with_a_ref(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, first = make_repo(repo)
    git(repo, "tag", "v1.0")
    with prepared_source(target(app), ref="v1.0", version="v1.0") as src:
        assert src.version == "v1.0" and src.plan.commit == first
    with pytest.raises(ConfigError, match="not a valid image tag"):
        plan_source(app, [ImageBuild()], version="bad tag!")


@pytest.mark.parametrize("ref", ["nope", "v9.9", "0123456789abcdef", "-x", "--output=/tmp/x"])
def test_unknown_ref_is_refused(tmp_path: Path, ref: str) -> None:
    app, _ = make_repo(tmp_path / "repo")
    with pytest.raises(ConfigError) as err:
        plan_source(app, [ImageBuild()], ref=ref)
    assert err.value.exit_code == ExitCode.USAGE
    assert ref in err.value.message and err.value.fix


def test_ref_and_dirty_together_are_refused(tmp_path: Path) -> None:
    app, _ = make_repo(tmp_path / "repo")
    with pytest.raises(ConfigError, match="use one of them"):
        plan_source(app, [ImageBuild()], ref="main", dirty=True)


# -- --dirty and outside git -----------------------------------------------------------------------------
def test_dirty_builds_the_working_tree(tmp_path: Path) -> None:
    app, sha = make_repo(tmp_path / "repo")
    with prepared_source(target(app), dirty=True) as src:
        assert src.root == app and src.version == sha[:12], "a clean tree: no -dirty mark"
    (app / "untracked.txt").write_text("new")
    with prepared_source(target(app), dirty=True) as src:
        assert src.root == app and src.version == f"{sha[:12]}-dirty"


def test_changes_outside_the_build_context_do_not_mark_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, sha = make_repo(repo, app_dir="api", extra={"../README.md": "readme"})
    (repo / "README.md").write_text("edited")
    plan = plan_source(app, [ImageBuild()], dirty=True)
    assert plan.version == sha[:12]
    assert plan_source(app, [ImageBuild()]).notes == ()


def test_outside_git_the_directory_is_built(tmp_path: Path) -> None:
    app = tmp_path / "plain"
    write(app, {"headway.yml": CONFIG % (".", "Dockerfile", ""), "Dockerfile": "FROM scratch\n"})
    with prepared_source(target(app)) as src:
        assert src.root == app and re.fullmatch(r"t\d{8}-\d{6}", src.version) and src.notes == ()
    with prepared_source(target(app), version="1.2.3") as src:
        assert src.root == app and src.version == "1.2.3"
    with pytest.raises(ConfigError, match="--ref needs a git checkout") as err:
        plan_source(app, [ImageBuild()], ref="main")
    assert "drop --ref" in (err.value.fix or "")


# -- branch: ---------------------------------------------------------------------------------------------
def test_branch_on_another_branch_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, _ = make_repo(repo, branch="main")
    git(repo, "switch", "-q", "-c", "develop")
    with pytest.raises(ConfigError) as err:
        plan_source(app, [ImageBuild()], environment="production", branch="main")
    assert err.value.message == "production deploys branch main; you are on develop"
    assert err.value.fix == "check out main, or pass --force"
    plan = plan_source(app, [ImageBuild()], environment="production", branch="main", force=True)
    assert plan.from_commit and plan.notes == ("--force: production deploys branch main; you are on develop",)
    # through the target: staging has no branch, so anything goes there
    with prepared_source(target(app, "staging")) as src:
        assert src.notes == ()
    with pytest.raises(ConfigError, match="you are on develop"), prepared_source(target(app, "production")):
        pass


def test_branch_tip_is_accepted_and_other_refs_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, first = make_repo(repo, branch="main")
    (app / "app.py").write_text("print('second')\n")
    second = commit(repo)
    kw: dict[str, Any] = {"environment": "production", "branch": "main"}
    assert plan_source(app, [ImageBuild()], **kw).commit == second
    assert plan_source(app, [ImageBuild()], ref="main", **kw).commit == second
    assert plan_source(app, [ImageBuild()], ref=second[:8], **kw).commit == second
    with pytest.raises(ConfigError) as err:
        plan_source(app, [ImageBuild()], ref="HEAD~1", **kw)
    assert err.value.message == f"production deploys branch main; HEAD~1 ({first[:12]}) is not its tip"
    assert "--force" in (err.value.fix or "")
    git(repo, "switch", "-q", "--detach", first)  # a detached HEAD behind the tip
    with pytest.raises(ConfigError, match="is not its tip"):
        plan_source(app, [ImageBuild()], **kw)
    git(repo, "switch", "-q", "--detach", second)  # a detached HEAD at the tip (how CI checks out)
    assert plan_source(app, [ImageBuild()], **kw).commit == second


def test_branch_tip_of_a_remote_tracking_branch(tmp_path: Path) -> None:
    """A CI checkout: detached at origin/release/2.x, no local branch of that name."""
    origin = tmp_path / "origin"
    make_repo(origin)
    git(origin, "switch", "-q", "-c", "release/2.x")
    (origin / "app.py").write_text("print('2.x')\n")
    tip = commit(origin)
    git(tmp_path, "clone", "-q", "--no-checkout", str(origin), "clone")
    clone = tmp_path / "clone"
    git(clone, "switch", "-q", "--detach", "origin/release/2.x")
    kw: dict[str, Any] = {"environment": "production", "branch": "release/2.x"}
    assert plan_source(clone, [ImageBuild()], **kw).commit == tip
    with pytest.raises(ConfigError, match="is not its tip"):
        plan_source(clone, [ImageBuild()], ref="origin/main", **kw)


def test_branch_that_does_not_exist(tmp_path: Path) -> None:
    app, _ = make_repo(tmp_path / "repo")
    git(tmp_path / "repo", "switch", "-q", "--detach", "HEAD")
    with pytest.raises(ConfigError, match="which does not exist in this repository"):
        plan_source(app, [ImageBuild()], environment="production", branch="prod")


def test_dirty_on_a_branch_environment_needs_force(tmp_path: Path) -> None:
    app, sha = make_repo(tmp_path / "repo", branch="main")
    (app / "app.py").write_text("print('edit')\n")
    kw: dict[str, Any] = {"environment": "production", "branch": "main"}
    with pytest.raises(ConfigError) as err:
        plan_source(app, [ImageBuild()], dirty=True, **kw)
    assert "--dirty builds uncommitted changes" in err.value.message and "--force" in (err.value.fix or "")
    plan = plan_source(app, [ImageBuild()], dirty=True, force=True, **kw)
    assert plan.version == f"{sha[:12]}-dirty" and not plan.from_commit and plan.notes[0].startswith("--force")


def test_branch_outside_git_needs_force(tmp_path: Path) -> None:
    app = tmp_path / "plain"
    write(app, {"Dockerfile": "FROM scratch\n"})
    with pytest.raises(ConfigError, match="is not a git checkout"):
        plan_source(app, [ImageBuild()], environment="production", branch="main")
    assert plan_source(app, [ImageBuild()], environment="production", branch="main", force=True).notes


# -- submodules ------------------------------------------------------------------------------------------
def test_submodules_are_exported_at_their_recorded_commit(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_repo(lib)
    write(lib, {"lib.py": "v1\n"})
    recorded = commit(lib)
    repo = tmp_path / "repo"
    app, _ = make_repo(repo)
    git(repo, "submodule", "add", "-q", str(lib), "vendor/lib")
    commit(repo, "add lib")
    write(repo / "vendor" / "lib", {"lib.py": "v2 in the working tree\n"})  # uncommitted inside the submodule
    with prepared_source(target(app)) as src:
        assert (src.root / "vendor" / "lib" / "lib.py").read_text() == "v1\n"
        assert src.plan.exports[1].commit == recorded
    # a clone whose submodule was never initialised
    git(tmp_path, "clone", "-q", str(repo), "clone")
    with pytest.raises(ConfigError) as err:
        plan_source(tmp_path / "clone", [ImageBuild()])
    assert "submodule vendor/lib" in err.value.message
    assert "git submodule update --init --recursive" in (err.value.fix or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the repository to another user needs root")
def test_a_repository_git_refuses_to_read(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    app, _ = make_repo(repo)
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 12345, 12345)
    with pytest.raises(ConfigError) as err:
        plan_source(app, [ImageBuild()])
    assert "belongs to another user" in err.value.message
    assert f"git config --global --add safe.directory {repo}" in (err.value.fix or "")
