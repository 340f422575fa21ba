"""Releases: can a bad release be caught before production, and undone once there?"""

from __future__ import annotations

from headway.audit.checks import AuditContext, Check, Result, check, failed, passed, unknown
from headway.config.model import CommandHealth, HttpHealth
from headway.state.store import AppState

CHECKS: list[Check] = []
_STAGING_WORDS = ("staging", "stage", "preprod", "pre-prod", "uat")


def staging_name(ctx: AuditContext) -> str | None:
    envs = [e for e in ctx.target.config.environments if e != ctx.env]
    return next((e for e in envs if any(w in e for w in _STAGING_WORDS)), None)


def is_staging(name: str) -> bool:
    return any(w in name for w in _STAGING_WORDS)


@check(CHECKS, "releases.staging", "staging deployed the live version first", "warning")
def staging_first(ctx: AuditContext) -> Result | None:
    if is_staging(ctx.env):
        return None  # this is the staging environment
    staging = staging_name(ctx)
    if staging is None:
        return failed("headway.yml has no staging environment: a release reaches production untried",
                      "add environments: {staging: {port: …}} and run `headway deploy -e staging` before "
                      f"`headway deploy -e {ctx.env}`")
    envs = ctx.target.config.environments
    if envs[staging].remote_host != envs[ctx.env].remote_host:
        return unknown(f"{staging}'s state is on {envs[staging].remote_host or 'another host'}, not here",
                       f"run `headway releases -e {staging}` to compare")
    live = ctx.live_record
    if live is None:
        return unknown(f"{ctx.env} has no live release yet", f"`headway deploy -e {staging}`, then -e {ctx.env}")
    tried = [r for r in AppState(ctx.state_root, ctx.target.app, staging).deploys()
             if r.version == live.version and r.outcome in ("live", "superseded", "rolled-back")]
    before = [r for r in tried if r.started_at <= live.started_at]
    if before:
        return passed(f"{live.version} ran on {staging} (deploy {before[0].number}, "
                      f"{before[0].started_at[:16].replace('T', ' ')}) before {ctx.env}")
    if tried:
        return failed(f"{live.version} reached {staging} only after {ctx.env}",
                      f"deploy to {staging} first: `headway deploy -e {staging}`")
    return failed(f"the live release {live.version} was never deployed to {staging}",
                  f"`headway deploy -e {staging}` with the same commit before `headway deploy -e {ctx.env}`")


@check(CHECKS, "releases.replicas", "at least 2 web replicas", "warning")
def replicas(ctx: AuditContext) -> Result | None:
    http = ctx.target.http_roles
    if not http:
        return None
    few = [f"{r.name}={r.replicas}" for r in http if r.replicas < 2]
    counts = " ".join(f"{r.name}={r.replicas}" for r in http)
    if few:
        return failed(f"replicas: {counts}: one container's crash or restart takes the site down",
                      f"`headway scale -e {ctx.env} {' '.join(f'{r.name}=2' for r in http if r.replicas < 2)}` "
                      f"and environments.{ctx.env}.replicas in headway.yml")
    return passed(f"replicas: {counts}")


@check(CHECKS, "releases.health", "health checks on every role", "warning")
def health(ctx: AuditContext) -> Result:
    """headway.yml has one kind of check per role (`health:`): it gates each new container before it gets
    traffic (readiness); running containers are watched by the agent's rules, not by a separate liveness probe."""
    parts, missing = [], []
    for r in ctx.target.roles.values():
        if isinstance(r.health, HttpHealth):
            parts.append(f"{r.name}: GET {r.health.path} → {r.health.status}")
        elif isinstance(r.health, CommandHealth):
            parts.append(f"{r.name}: " + ("command" if r.health.command else
                                          f"stays running {r.health.stays_running:g}s"))
        else:
            missing.append(r.name)
    note = ("; headway has one health check per role: a readiness gate before traffic (no separate liveness "
            "probe; the agent watches running containers)")
    if missing:
        return failed(f"no health check for {', '.join(missing)}: a new container gets traffic once it runs"
                      + (f" ({'; '.join(parts)})" if parts else ""),
                      f"add roles.{missing[0]}.health (path: /health/ready for HTTP roles, command: … otherwise)")
    return passed("; ".join(parts) + note)


@check(CHECKS, "releases.retained", "previous releases kept for rollback", "warning")
def retained(ctx: AuditContext) -> Result:
    retain = ctx.target.deploy.retain
    if retain < 2:
        return failed(f"deploy.retain is {retain}: no previous release is kept to roll back to",
                      "set deploy: {retain: 5} in headway.yml")
    deploys = [r for r in ctx.history if r.action == "deploy" and r.outcome in ("live", "superseded",
                                                                                 "rolled-back")]
    if len(deploys) < 2:
        return unknown(f"retain {retain}; {len(deploys)} good deploy(s) so far: nothing to roll back to yet")
    if ctx.engine is None:
        return ctx.no_engine()
    from headway.engine import labels as L

    present = {int(s["labels"][L.DEPLOY]) for s in ctx.engine.summaries(L.selector(
        app=ctx.target.app, environment=ctx.env, kind="app")) if L.DEPLOY in s["labels"]}
    kept = sorted(n for n in present if n != ctx.current.live)
    if not kept:
        return failed(f"retain {retain}, but no container of an earlier release is left",
                      f"the next `headway deploy -e {ctx.env}` keeps the release it replaces")
    standby = " (warm standby)" if ctx.current.standby else ""
    return passed(f"retain {retain}; kept: deploy {', '.join(map(str, kept))}{standby}")


@check(CHECKS, "releases.rollback-tried", "a rollback was exercised", "info")
def rollback_tried(ctx: AuditContext) -> Result:
    where = [(ctx.env, ctx.history)]
    staging = staging_name(ctx)
    if staging is not None:
        where.append((staging, AppState(ctx.state_root, ctx.target.app, staging).history()))
    for env, history in where:
        done = [r for r in history if r.action == "rollback" and r.outcome in ("done", "live")]
        if done:
            return passed(f"{env}: rollback to deploy {done[-1].target} on {done[-1].started_at[:10]}")
    return failed("no rollback in the release history: the way back was never tried",
                  f"try it where it is safe: `headway rollback -e {staging or ctx.env}`, then deploy again")


@check(CHECKS, "releases.rehearsal", "the release command is idempotent (rehearsed)", "warning")
def rehearsal(ctx: AuditContext) -> Result:
    data = ctx.read_json("rehearsal.json")
    fix = f"run `headway rehearse -e {ctx.env}`"
    if data is None:
        return unknown("no rehearsal recorded", fix)
    when = str(data.get("finished_at") or "")[:16].replace("T", " ")
    if not data.get("ok"):
        return failed(f"the last rehearsal ({when}) failed", fix + " and fix what it reports")
    twice = data.get("release_twice_ok")
    if twice is False:
        return failed(f"the release command failed when run a second time ({when}): it is not idempotent",
                      "make the migrations safe to run twice, then " + fix)
    if twice is None:
        return unknown(f"the rehearsal ({when}) did not run the release command twice", fix)
    return passed(f"rehearsed {when}: the release command ran twice without error")
