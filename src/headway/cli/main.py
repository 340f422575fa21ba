"""The `headway` command: parses arguments, calls the library, renders the result. No decisions here."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import click

from headway import __version__
from headway.cli.render import ConsoleReporter, Table, err_console, out_console, print_error, print_json
from headway.errors import ExitCode, HeadwayError

if TYPE_CHECKING:
    from headway.proxy.nginx import Proxy
    from headway.service import Headway


def _proxy_only(state_dir: str | None) -> Proxy:
    from headway.service import Headway

    return Headway.proxy_only(state_dir)


class Context:
    def __init__(self, config: str | None, state_dir: str | None, ssh_key: str | None = None,
                 accept_host_key: bool = False) -> None:
        self.config = config
        self.state_dir = state_dir
        self.ssh_key = ssh_key
        self.accept_host_key = accept_host_key

    def headway(self, environment: str, reporter: ConsoleReporter | None = None) -> Headway:
        from headway.service import Headway

        self.forward_if_remote(environment)
        return Headway.open(environment, config=self.config, state_dir=self.state_dir, reporter=reporter)

    def forward_if_remote(self, environment: str) -> None:
        """An environment on a server: the command runs there (over SSH), and this process exits with its status."""
        from headway.remote.where import remote_host

        if remote_host(self.config, environment) is not None:
            from headway.remote.forward import forward

            sys.exit(forward(environment, config=self.config, ssh_key=self.ssh_key,
                             accept_host_key=self.accept_host_key))


pass_ctx = click.make_pass_decorator(Context)
env_option = click.option("-e", "--environment", "environment", required=True, metavar="ENV",
                          help="Environment from headway.yml, e.g. production or staging.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
wait_option = click.option("--wait", type=float, default=None, metavar="SECONDS",
                           help="Wait this long for another operation's lock instead of failing at once.")


class LazyGroup(click.Group):
    """Command groups that live in their own modules load when they are used (`headway db …`), not at start."""

    lazy = {"db": "headway.cli.db:db", "tls": "headway.cli.tls:tls", "secrets": "headway.cli.secrets:secrets",
            "render": "headway.cli.manifests:render", "server": "headway.cli.server:server",
            "swarm": "headway.cli.swarm:swarm", "agent": "headway.cli.agent:agent",
            "alerts": "headway.cli.alerts:alerts", "metrics": "headway.cli.metrics:metrics",
            "top": "headway.cli.metrics:top", "doctor": "headway.cli.doctor:doctor", "ci": "headway.cli.ci:ci",
            "loadtest": "headway.cli.loadtest:loadtest", "rehearse": "headway.cli.rehearse:rehearse"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="headway")
@click.option("-c", "--config", type=click.Path(dir_okay=False), default=None,
              help="Path to headway.yml (default: ./headway.yml or the nearest parent's).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, envvar="HEADWAY_STATE_DIR",
              help="Where the host keeps release history, locks and proxy config (default /var/lib/headway).")
@click.option("--ssh-key", type=click.Path(dir_okay=False), default=None, envvar="HEADWAY_SSH_KEY",
              help="SSH key for environments on a server (default: the SSH agent and ~/.ssh keys).")
@click.option("--accept-host-key", is_flag=True, envvar="HEADWAY_ACCEPT_HOST_KEY",
              help="Trust a server's host key the first time (it is saved to known_hosts).")
@click.option("--host", default=None, metavar="USER@HOST[:PORT]",
              help="Run the command on this server over SSH (e.g. `--host deploy@vps proxy boot`).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, state_dir: str | None, ssh_key: str | None,
        accept_host_key: bool, host: str | None) -> None:
    """Zero-downtime deploys, instant rollback, production and staging on your own Docker hosts."""
    ctx.obj = Context(config, state_dir, ssh_key, accept_host_key)
    if host is not None and os.environ.get("HEADWAY_ON_SERVER") != "1" and ctx.invoked_subcommand != "server":
        from headway.remote.forward import forward_to_host

        sys.exit(forward_to_host(host, ssh_key=ssh_key, accept_host_key=accept_host_key))


# -- init ---------------------------------------------------------------------------------------------
@cli.command()
@click.option("--from", "from_compose", multiple=True, metavar="FILE[:ENV]|DIR",
              help="Convert a compose file, one environment per --from (repeat for prod + staging files; "
                   "FILE:ENV names the environment). An override file is merged into the file before it; "
                   "a directory gives its compose.yml and compose.override.yml.")
@click.option("-f", "--file", "merged_files", multiple=True, metavar="FILE",
              help="Compose files merged into one environment, as `docker compose -f a -f b` merges them.")
@click.option("--app", default=None, help="App name (default: the directory's name).")
@click.option("--force", is_flag=True, help="Overwrite an existing headway.yml.")
def init(from_compose: tuple[str, ...], merged_files: tuple[str, ...], app: str | None, force: bool) -> None:
    """Write a commented headway.yml, or convert docker-compose files into one."""
    from headway.config.init import write_config

    result = write_config(Path.cwd(), [Path(p) for p in from_compose], app=app, force=force,
                          merged_files=list(merged_files))
    err_console.print(f"[green]wrote[/green] {result.path}")
    for note in result.notes:
        err_console.print(f"  • {note}")
    err_console.print("next: `headway proxy boot`, then `headway deploy -e production`")


# -- deploy / rollback / releases ---------------------------------------------------------------------
def source_options(f: Any) -> Any:
    """--ref, --dirty, --force: what a build reads (headway.release.source)."""
    f = click.option("--force", is_flag=True,
                     help="Build although the environment's `branch:` says otherwise.")(f)
    f = click.option("--dirty", is_flag=True,
                     help="Build the working tree as it is, uncommitted changes included (version marked -dirty).")(f)
    return click.option("--ref", default=None, metavar="REF",
                        help="Build this branch, tag or commit (default: the committed HEAD).")(f)


@cli.command()
@env_option
@click.option("--version", "version", default=None,
              help="Release version (default: the short commit id built, -dirty marked for --dirty).")
@click.option("--image-tag", default=None, metavar="TAG",
              help="Deploy the images CI pushed with this tag (pulled from the registry; nothing is built).")
@source_options
@wait_option
@json_option
@pass_ctx
def deploy(obj: Context, environment: str, version: str | None, image_tag: str | None, ref: str | None,
           dirty: bool, force: bool, wait: float | None, as_json: bool) -> None:
    """Build, run the release command, start beside the old, health-gate, switch, drain."""
    reporter = ConsoleReporter(quiet=False)
    hw = obj.headway(environment, reporter)
    outcome = hw.deploy(version=version, wait=wait, image_tag=image_tag, ref=ref, dirty=dirty, force=force)
    rec = outcome.record
    if as_json:
        print_json({"release": rec.model_dump(), "urls": outcome.urls,
                    "steps": [s.__dict__ for s in reporter.steps]})
        return
    err_console.print(f"[bold green]deployed[/bold green] {hw.target.app}/{environment} release {rec.version} "
                      f"(deploy {rec.number}, {rec.color}) in {rec.duration_s:.1f}s")
    for url in outcome.urls:
        err_console.print(f"  {url}")


@cli.command()
@env_option
@click.option("--version", "version", default=None,
              help="Tag for the images (default: the short commit id built, -dirty marked for --dirty).")
@click.option("--push", is_flag=True, help="Push the images to their registry (image.name), e.g. from CI.")
@source_options
@json_option
@pass_ctx
def build(obj: Context, environment: str, version: str | None, push: bool, ref: str | None, dirty: bool,
          force: bool, as_json: bool) -> None:
    """Build the release images (and push them), without deploying: for CI, then `deploy --image-tag`."""
    reporter = ConsoleReporter(quiet=False)
    hw = obj.headway(environment, reporter)
    built = hw.build(version=version, push=push, ref=ref, dirty=dirty, force=force)
    if as_json:
        print_json(built)
        return
    for ref, digest in built["images"].items():
        err_console.print(f"[green]{'pushed' if push else 'built'}[/green] {ref}" + (f"  {digest}" if push else ""))
    err_console.print(f"deploy it with `headway deploy -e {environment} --image-tag {built['version']}`")


@cli.command()
@env_option
@click.argument("release", required=False)
@wait_option
@click.option("--with-data", is_flag=True, help="Also restore the database backups taken before the live deploy.")
@click.option("--identity", type=click.Path(dir_okay=False), default=None, envvar="HEADWAY_AGE_IDENTITY",
              help="age identity file, for --with-data of encrypted backups.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (--with-data).")
@json_option
@pass_ctx
def rollback(obj: Context, environment: str, release: str | None, wait: float | None, with_data: bool,
             identity: str | None, yes: bool, as_json: bool) -> None:
    """Put a previous release back in service (default: the one before the live one)."""
    obj.forward_if_remote(environment)
    quick = None
    if release is None and not with_data:  # to the warm standby before the library even loads, if it can
        from headway.release.quick import try_switch

        quick = try_switch(obj.state_dir, obj.config, environment)
    reporter = ConsoleReporter()
    if release is None and not with_data and quick is None:
        from headway.release import quick as quick_path

        reporter.info(f"the ordinary rollback: {quick_path.last_reason}")
    try:
        hw = obj.headway(environment, reporter)
    except BaseException:
        if quick is not None:
            quick.release_lock()  # switched and journaled: the next command finishes it
        raise
    if with_data and not yes and (not sys.stdin.isatty() or not click.confirm(
            f"Roll back {environment} AND restore its databases as they were before the live deploy?")):
        raise HeadwayError("not rolled back", "confirm at the prompt, or pass --yes", exit_code=ExitCode.ABORTED)
    identities = None
    if identity:
        from headway.data.pipeline import load_identity

        identities = load_identity(identity)
    outcome = hw.rollback(release, wait=wait, with_data=with_data, identities=identities, confirmed=True,
                          quick=quick)
    rec = outcome.record
    if as_json:
        print_json({"release": rec.model_dump(), "urls": outcome.urls,
                    "steps": [s.__dict__ for s in reporter.steps]})
        return
    err_console.print(f"[bold green]rolled back[/bold green] {hw.target.app}/{environment} to release "
                      f"{rec.version} (deploy {rec.target}); traffic switched in {rec.duration_s:.2f}s")


@cli.command()
@env_option
@json_option
@pass_ctx
def releases(obj: Context, environment: str, as_json: bool) -> None:
    """The release history: deploys, rollbacks, scale, stop and start."""
    hw = obj.headway(environment)
    history = hw.state.history()
    if as_json:
        print_json([r.model_dump() for r in history])
        return
    table = Table("#", "action", "version", "outcome", "by", "when", "took", "note", box=None)
    for r in history:
        note = r.error or (f"to deploy {r.target}" if r.action == "rollback" else "") or (r.reason or "")
        table.add_row(str(r.number), r.action, r.version, r.outcome, r.by, r.started_at[:19].replace("T", " "),
                      f"{r.duration_s:.1f}s", note)
    out_console.print(table)


# -- day two ------------------------------------------------------------------------------------------
@cli.command()
@env_option
@json_option
@pass_ctx
def status(obj: Context, environment: str, as_json: bool) -> None:
    """What is live: release, containers, health, uptime, URLs."""
    report = obj.headway(environment).status()
    if as_json:
        print_json(report)
        return
    out_console.print(f"[bold]{report['app']}/{report['environment']}[/bold]  release "
                      f"{report['release'] or '—'} (deploy {report['deploy'] or '—'})"
                      f"{'  [red]STOPPED[/red]' if report['stopped'] else ''}")
    if report.get("maintenance"):
        m = report["maintenance"]
        allowed = f", allowed: {' '.join(m['allow'])}" if m["allow"] else ""
        out_console.print(f"[yellow]MAINTENANCE[/yellow] since {m['since'][:19].replace('T', ' ')}{allowed}")
    if report.get("canary"):
        c = report["canary"]
        out_console.print(f"[cyan]CANARY[/cyan] release {c['release']} gets {c['weight']}% of requests")
    if report.get("lock"):
        out_console.print(f"[yellow]locked by {report['lock']['by']} since {report['lock']['since']}: "
                          f"{report['lock']['command']}[/yellow]")
    if report.get("interrupted"):
        i = report["interrupted"]
        out_console.print(f"[red]INTERRUPTED[/red] {i['interrupted']}")
        out_console.print(f"  the next command (or `headway recover -e {report['environment']}`) will {i['next']}")
    for a in report.get("alerts") or []:
        out_console.print(f"[red]ALERT[/red] {a['rule']}: {a['detail']}")
    if report.get("autoscale"):
        _print_autoscale(report["autoscale"])
    table = Table("container", "role", "release", "state", "health", "up since", box=None)
    for c in report["containers"]:
        table.add_row(c["name"], c["role"], c["release"], c["state"], c["health"], c["started_at"])
    out_console.print(table)
    if report.get("databases"):
        dbs = Table("database", "engine", "version", "state", "last backup", "age", "size", box=None)
        for d in report["databases"]:
            last = d["last_backup"]
            dbs.add_row(d["name"], d["engine"], d["version"], d["state"], last["id"] if last else "[red]none[/red]",
                        last["age"] if last else "", _human_size(last["size"]) if last else "")
        out_console.print(dbs)
    for url in report["urls"]:
        out_console.print(f"  {url}")


def _print_autoscale(auto: dict[str, Any]) -> None:
    """`status`: each autoscaled role's bounds and signals, what the agent last decided, its last scale."""
    from headway.observe.alerts import format_span

    last = auto.get("last") or {}
    decided = {d["role"]: d for d in last.get("decisions") or []}
    for role, rule in auto["roles"].items():
        signals = [f"queue {rule['queue']} / {rule['per_replica']} per replica" if rule.get("queue") else "",
                   f"cpu {rule['cpu']:g}%" if rule.get("cpu") else "",
                   f"p95 {rule['p95'] * 1000:.0f}ms" if rule.get("p95") else ""]
        line = f"autoscale {role}: {rule['min']}-{rule['max']} replicas on {', '.join(s for s in signals if s)}"
        d = decided.get(role)
        if d is not None:
            line += f"; last round ({last['at']}): {d['current']} running, wants {d['desired']} ({d['reason']})"
            line += f", {d['note']}" if d.get("note") else ""
        out_console.print(line, markup=False)
    if last.get("skipped"):
        out_console.print(f"autoscale: last round ({last['at']}) skipped: {last['skipped']}", markup=False)
    action = auto.get("action")
    if action:
        counts = ", ".join(f"{r} {action.get('from', {}).get(r, '?')} -> {n}" for r, n in action["counts"].items())
        error = f": {action['error']}" if action.get("error") else ""
        out_console.print(f"autoscale: last scale {counts} at {action['at']}: {action.get('result')}{error} "
                          f"({action['reason']}); cooldown {format_span(auto['cooldown'])}", markup=False)


def _human_size(n: int) -> str:
    from headway.data.backup import _size

    return _size(n)


@cli.command()
@env_option
@wait_option
@json_option
@pass_ctx
def recover(obj: Context, environment: str, wait: float | None, as_json: bool) -> None:
    """Finish or undo what an interrupted command left; every command does this first anyway."""
    notes = obj.headway(environment, ConsoleReporter(quiet=True)).recover(wait=wait)
    if as_json:
        print_json({"actions": notes})
        return
    for note in notes or ["nothing to recover: what is recorded is what is served"]:
        out_console.print(note)


@cli.command()
@env_option
@click.argument("role", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--since", default=None, help="Only lines newer than this: 10m, 2h, 30s.")
@click.option("--tail", default=100, show_default=True, help="Lines per container to start with.")
@pass_ctx
def logs(obj: Context, environment: str, role: str | None, follow: bool, since: str | None, tail: int) -> None:
    """Logs of the live release's containers, merged, each line prefixed by its container."""
    for line in obj.headway(environment).logs(role=role, follow=follow, since=since, tail=tail):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@env_option
@click.argument("role")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def exec_(obj: Context, environment: str, role: str, command: tuple[str, ...]) -> None:
    """Run a command in a one-off container of the live release (a console, a script)."""
    code = obj.headway(environment).exec(role, list(command), interactive=sys.stdin.isatty())
    sys.exit(code)


@cli.command()
@env_option
@click.argument("counts", nargs=-1, required=True)
@wait_option
@json_option
@pass_ctx
def scale(obj: Context, environment: str, counts: tuple[str, ...], wait: float | None, as_json: bool) -> None:
    """Change replicas without failing a request: headway scale -e production web=3 worker=2."""
    parsed: dict[str, int] = {}
    for item in counts:
        role, sep, n = item.partition("=")
        if not sep or not n.isdigit():
            raise HeadwayError(f"{item!r} is not ROLE=COUNT", "write e.g. web=3 worker=2",
                               exit_code=ExitCode.USAGE)
        parsed[role] = int(n)
    replicas = obj.headway(environment, ConsoleReporter()).scale(parsed, wait=wait)
    if as_json:
        print_json({"replicas": replicas})
    else:
        err_console.print("[green]scaled[/green] " + " ".join(f"{k}={v}" for k, v in replicas.items()))


@cli.command()
@env_option
@pass_ctx
def stop(obj: Context, environment: str) -> None:
    """Stop the environment's app containers (the proxy answers 503 until `start`)."""
    obj.headway(environment, ConsoleReporter()).deployer.stop()
    err_console.print(f"[yellow]stopped[/yellow] {environment}")


@cli.command()
@env_option
@pass_ctx
def start(obj: Context, environment: str) -> None:
    """Start a stopped environment again: health-gate, then route traffic."""
    obj.headway(environment, ConsoleReporter()).deployer.start()
    err_console.print(f"[green]started[/green] {environment}")


@cli.command()
@env_option
@click.option("--volumes", is_flag=True, help="Also delete the environment's volumes (databases!).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def remove(obj: Context, environment: str, volumes: bool, yes: bool) -> None:
    """Remove an environment: containers, network, proxy route, history. Volumes stay unless --volumes."""
    hw = obj.headway(environment, ConsoleReporter())
    if not yes:
        what = "containers, network, route and history" + (" AND ITS VOLUMES (data)" if volumes else "")
        if not sys.stdin.isatty() or not click.confirm(f"Remove {hw.target.app}/{environment}: {what}?"):
            raise HeadwayError("not removed", "confirm at the prompt, or pass --yes", exit_code=ExitCode.ABORTED)
    removed = hw.deployer.remove(volumes=volumes, confirmed=True)
    err_console.print(f"[yellow]removed[/yellow] {len(removed)} object(s) of {hw.target.app}/{environment}")


@cli.command()
@env_option
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--message", default=None, help="Text of the maintenance page.")
@click.option("--allow", multiple=True, metavar="IP", help="An address or network that still reaches the app.")
@click.option("--page", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Your own HTML page instead of the generated one.")
@click.option("--retry-after", default=120, show_default=True, help="Seconds, sent as Retry-After.")
@pass_ctx
def maintenance(obj: Context, environment: str, state: str, message: str | None, allow: tuple[str, ...],
                page: str | None, retry_after: int) -> None:
    """Answer 503 with a maintenance page (health checks and --allow addresses still get through)."""
    hw = obj.headway(environment)
    hw.maintenance(state == "on", message=message, allow=list(allow), page=Path(page) if page else None,
                   retry_after=retry_after)
    err_console.print(f"maintenance [bold]{state}[/bold] for {hw.target.app}/{environment}")


@cli.command()
@env_option
@pass_ctx
def promote(obj: Context, environment: str) -> None:
    """Send every request to the canary now, skipping its remaining steps."""
    err_console.print(obj.headway(environment).deployer.canary_request("promote"))


@cli.command()
@env_option
@pass_ctx
def abort(obj: Context, environment: str) -> None:
    """Stop a running canary: every request goes back to the stable release."""
    err_console.print(obj.headway(environment).deployer.canary_request("abort"))


# -- proxy --------------------------------------------------------------------------------------------
@cli.group()
def proxy() -> None:
    """headway's nginx, shared by every app and environment on the host."""


@proxy.command("boot")
@click.option("--image", default=None,
              help="Proxy image: nginx with the lua module (default openresty/openresty:bookworm).")
@click.option("--http-port", type=int, default=None, help="Port for routing by host name (default 80).")
@click.option("--https-port", type=int, default=None, help="Port for TLS (default 443).")
@click.option("--control-port", type=int, default=None, help="Loopback port headway uses to confirm reloads.")
@click.option("--name", default=None, help="Container name (default headway-proxy).")
@json_option
@pass_ctx
def proxy_boot(obj: Context, image: str | None, http_port: int | None, https_port: int | None,
               control_port: int | None, name: str | None, as_json: bool) -> None:
    """Start the proxy (idempotent); it serves every route recorded on this host."""
    st = _proxy_only(obj.state_dir).boot(image=image, http_port=http_port, https_port=https_port,
                                         control_port=control_port, name=name)
    if as_json:
        print_json(st.model_dump())
    else:
        err_console.print(f"[green]proxy running[/green] {st.container} ({st.image}) on port {st.http_port}, "
                          f"{len(st.routes)} route(s)")


@proxy.command("status")
@json_option
@pass_ctx
def proxy_status(obj: Context, as_json: bool) -> None:
    """Whether the proxy runs, its config generation and its routes."""
    st = _proxy_only(obj.state_dir).status()
    if as_json:
        print_json(st.model_dump())
        return
    out_console.print(f"{st.container} ({st.image}): {'running' if st.running else 'NOT RUNNING'}, "
                      f"generation {st.generation or '—'}")
    table = Table("app", "environment", "release", "domains", "port", "upstreams", box=None)
    for r in st.routes:
        table.add_row(r.app, r.environment, r.release, " ".join(r.domains), str(r.port or ""),
                      " ".join(r.upstreams) or "(stopped)")
    out_console.print(table)


@proxy.command("logs")
@click.option("-f", "--follow", is_flag=True)
@click.option("--access", is_flag=True, help="Show the JSON access log instead of nginx's own log.")
@click.option("--tail", default=100, show_default=True)
@pass_ctx
def proxy_logs(obj: Context, follow: bool, access: bool, tail: int) -> None:
    """nginx's error log, or with --access the JSON access log."""
    px = _proxy_only(obj.state_dir)
    lines = _tail_file(px.access_log, tail, follow) if access else px.logs(follow=follow, tail=tail)
    for line in lines:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _tail_file(path: Path, n: int, follow: bool) -> Any:
    import time

    if not path.exists():
        return
    with open(path) as fh:
        lines = fh.readlines()[-n:]
        yield from (ln.rstrip("\n") for ln in lines)
        while follow:
            line = fh.readline()
            if line:
                yield line.rstrip("\n")
            else:
                time.sleep(0.2)  # tail -f




@cli.command("remote-run", hidden=True,
             context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--expect-version", required=True)
@click.option("--fetched", default="")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def remote_run(expect_version: str, fetched: str, args: tuple[str, ...]) -> None:
    """The server side of a command for an environment on this server: its files on stdin (a tar stream)."""
    from headway.remote.forward import run_bundle

    run_bundle(sys.stdin.buffer, list(args), expect_version=expect_version, fetched=fetched)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(ExitCode.ABORTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except HeadwayError as exc:
        print_error(exc)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or os.environ.get("HEADWAY_DEBUG"):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print_error(HeadwayError(f"the disk is full{where}; the command stopped before changing anything more",
                                 "free space there (`df -h`), then run the command again: it finishes or undoes "
                                 "what was started"))
        sys.exit(ExitCode.FAILURE)
    except Exception as exc:
        if not type(exc).__module__.startswith("docker.") or os.environ.get("HEADWAY_DEBUG"):
            raise
        print_error(HeadwayError(f"Docker refused: {exc}", "see the message; set HEADWAY_DEBUG=1 for a trace"))
        sys.exit(ExitCode.FAILURE)
    sys.exit(0)
