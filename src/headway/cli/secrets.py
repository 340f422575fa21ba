"""`headway secrets`: the secrets of an environment, by name: where each goes, where its value comes from, whether
it is set; set, generate and unset values in .headway/secrets.<env>. No value is ever printed or taken from argv."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import Table, err_console, out_console, print_json
from headway.errors import ConfigError, ExitCode, HeadwayError, NotFound



def _config(obj: Any, environment: str) -> tuple[Any, Path]:
    from headway.config.loader import find_config, load_config

    path = find_config(explicit=getattr(obj, "config", None))
    config = load_config(path)
    if environment not in config.environments:
        known = ", ".join(config.environments)
        raise ConfigError(f"no environment {environment!r} in headway.yml (known: {known})",
                          f"use -e with one of: {known}, or add it under `environments:`")
    return config, path.parent


def _path(obj: Any, environment: str) -> tuple[Any, Path]:
    from headway.config.secrets import secrets_path_for

    config, root = _config(obj, environment)
    return config, secrets_path_for(config, environment, root)


def _warn_if_command(config: Any, environment: str, name: str, path: Path) -> None:
    from headway.config.secrets import secret_specs

    spec = secret_specs(config, environment).get(name)
    if spec is not None and spec.from_:
        err_console.print(f"[yellow]warning:[/yellow] {name} has `from:` in headway.yml: deploys take its value "
                          f"from that command, and ignore this line of {path}")


@click.group()
def secrets() -> None:
    """An environment's secrets by name: list, set (from stdin), generate, unset. Values are never shown."""


@secrets.command("list")
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_obj
def secrets_list(obj: Any, environment: str, as_json: bool) -> None:
    """Every secret: env var or file, the roles that get it, its source (file or command), set or not."""
    from headway.config.secrets import describe_secrets, secrets_path_for

    config, root = _config(obj, environment)
    infos = describe_secrets(config, environment, root)
    path = secrets_path_for(config, environment, root)
    if as_json:
        print_json({"file": str(path), "secrets": [
            {"name": i.name, "as": i.delivery, "used_by": i.used_by, "source": i.source, "set": i.is_set,
             "note": i.note} for i in infos]})
        return
    if not infos:
        err_console.print(f"no secrets for {environment} (add one: `headway secrets set NAME -e {environment}`)")
        return
    table = Table("name", "as", "used by", "source", "set", "note", box=None)
    for i in infos:
        where = "/run/secrets/" + i.name if i.delivery == "file" else "env"
        is_set = "[green]yes[/green]" if i.is_set else "[red]no[/red]"
        if i.source == "command":
            is_set = "at deploy"
        table.add_row(i.name, where, " ".join(i.used_by) or "-", i.source, is_set, i.note)
    out_console.print(table)
    err_console.print(f"file: {path}")


@secrets.command("set")
@click.argument("name")
@env_option
@click.pass_obj
def secrets_set(obj: Any, name: str, environment: str) -> None:
    """Set NAME to a value read from stdin (or typed at a hidden prompt), never from the command line."""
    from headway.config.secrets import check_secret_name, set_secret

    check_secret_name(name)
    config, path = _path(obj, environment)
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True, err=True,
                             show_default=False)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise HeadwayError(f"no value for {name} on stdin", f"pipe it in: `printf %s \"$VALUE\" | headway secrets set "
                           f"{name} -e {environment}`, or run it from a terminal to type it",
                           exit_code=ExitCode.USAGE)
    existed = set_secret(path, name, value)
    err_console.print(f"[green]{'updated' if existed else 'set'}[/green] {name} in {path}")
    _warn_if_command(config, environment, name, path)


@secrets.command("generate")
@click.argument("name")
@env_option
@click.option("--bytes", "nbytes", default=64, show_default=True, type=click.IntRange(16, 1024),
              help="Random bytes; the value is their base64url (no padding).")
@click.option("--force", is_flag=True, help="Replace a value that is already set.")
@click.pass_obj
def secrets_generate(obj: Any, name: str, environment: str, nbytes: int, force: bool) -> None:
    """Set NAME to a strong random value, without printing it."""
    from headway.config.secrets import check_secret_name, generate_value, load_secrets, set_secret

    check_secret_name(name)
    config, path = _path(obj, environment)
    if not force and name in load_secrets(path, required=False):
        raise HeadwayError(f"{name} is already set in {path}; not replaced",
                           "pass --force to replace it (apps using the old value need it too)",
                           exit_code=ExitCode.USAGE)
    set_secret(path, name, generate_value(nbytes))
    err_console.print(f"[green]generated[/green] {name} ({nbytes} random bytes) in {path}")
    _warn_if_command(config, environment, name, path)


@secrets.command("unset")
@click.argument("name")
@env_option
@click.pass_obj
def secrets_unset(obj: Any, name: str, environment: str) -> None:
    """Remove NAME from the secrets file (running containers keep theirs until the next deploy)."""
    from headway.config.secrets import check_secret_name, unset_secret

    check_secret_name(name)
    _, path = _path(obj, environment)
    if not unset_secret(path, name):
        raise NotFound(f"{name} is not in {path}", f"`headway secrets list -e {environment}` shows what is there")
    err_console.print(f"[yellow]removed[/yellow] {name} from {path}")
