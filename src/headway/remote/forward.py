"""Commands for an environment on a server: run by headway on that server, sent from here over SSH.

The server is where the truth is: its Docker engine, its proxy, and headway's lock, journal, release history and
backups under /var/lib/headway. The machine the command is typed on (a laptop, a CI runner) sends what only it
has — headway.yml, the environment's secrets, the files the config names and, for a build, the build contexts
exported from git — as one tar stream on the SSH channel's stdin; `headway remote-run` on the server unpacks it
on a tmpfs, runs the same command there and streams its output and exit status back.

Builds therefore happen on the server, from a context of kilobytes, instead of shipping an image of hundreds of
megabytes (see docs/design.md#remote-hosts); `deploy --image-tag` pulls on the server from a registry.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headway import __version__
from headway.archive import extract
from headway.errors import ConfigError, HeadwayError

from headway.remote.where import ON_SERVER_ENV, remote_host  # noqa: F401 - remote_host: part of this interface

if TYPE_CHECKING:
    from headway.remote.ssh import SshAddress
BUNDLE_SOURCE_ENV = "HEADWAY_SOURCE"  # "bundle": the build contexts were exported and checked where sent from
BUILDING = {"deploy", "build", "rehearse"}
_SOURCE_FLAGS = {"--ref": True, "--dirty": False, "--force": False}  # flag -> takes a value
_GLOBAL_FLAGS = {"-c": True, "--config": True, "--state-dir": True, "--ssh-key": True, "--accept-host-key": False,
                 "--host": True}
_NOT_INSTALLED = 127
_SCRIPT = 'command -v headway >/dev/null 2>&1 || exit 127; exec headway "$@"'


def command_args(argv: list[str]) -> list[str]:
    """`argv` without headway's global options (the server uses its own config path and state directory)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if not out and name in _GLOBAL_FLAGS:
            i += 1 if "=" in arg or not _GLOBAL_FLAGS[name] else 2
            continue
        out.append(arg)
        i += 1
    return out


def _without_source_flags(args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        if name in _SOURCE_FLAGS:
            i += 1 if "=" in args[i] or not _SOURCE_FLAGS[name] else 2
            continue
        out.append(args[i])
        i += 1
    return out


class Bundle:
    """What a command on the server needs from here, as a tar archive rooted at the app's directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 - closed by the caller
        self.tar = tarfile.open(fileobj=self.file, mode="w")  # noqa: SIM115 - closed by finish()
        self.names: set[str] = set()

    def add_file(self, path: Path, arcname: str | None = None, mode: int | None = None) -> None:
        name = arcname or path.resolve().relative_to(self.root).as_posix()
        if name in self.names or not path.is_file():
            return
        info = self.tar.gettarinfo(str(path), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = int(info.mtime)  # whole seconds: a fractional one costs a pax header (1 kB) per file
        if mode is not None:
            info.mode = mode
        with open(path, "rb") as fh:
            self.tar.addfile(info, fh)
        self.names.add(name)

    def add_bytes(self, arcname: str, data: bytes, mode: int = 0o600) -> None:
        info = tarfile.TarInfo(arcname)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        self.tar.addfile(info, io.BytesIO(data))
        self.names.add(arcname)

    def add_tree(self, directory: Path, arcprefix: str) -> None:
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory)
            if ".git" in rel.parts or not path.is_file():
                continue
            self.add_file(path, f"{arcprefix}/{rel.as_posix()}".lstrip("/") if arcprefix else rel.as_posix())

    def finish(self) -> tuple[IO[bytes], int]:
        self.tar.close()
        size = self.file.tell()
        self.file.seek(0)
        return self.file, size


def _referenced_files(config: Any, environment: str) -> list[str]:
    env = config.environments[environment]
    files = list(env.proxy.error_pages.values())
    tls = env.tls_options
    if tls is not None and tls.certificate and tls.key:
        files += [tls.certificate, tls.key]
    return files


def _secrets_text(target: Any) -> tuple[bytes, list[str]]:
    """The environment's secret values as a secrets file, `from` commands run here; and the names fetched."""
    from headway.config.secrets import _encode  # the file format's own quoting

    values = target.secrets
    fetched = sorted(getattr(values, "commands", set()))
    if fetched:
        values.fetch(fetched)
    lines = [f"{name}={_encode(values[name])}" for name in sorted(values)]
    return ("".join(line + "\n" for line in lines)).encode(), fetched


def forward(environment: str, *, config: str | None, ssh_key: str | None, accept_host_key: bool,
            argv: list[str] | None = None) -> int:
    """Run this command (`argv`, default sys.argv[1:]) for `environment` on its server; its exit status."""
    import click

    from headway.config.loader import find_config, load_config
    from headway.config.resolve import resolve
    from headway.remote.ssh import SshAddress

    config_path = find_config(explicit=config)
    cfg = load_config(config_path)
    host = cfg.environments[environment].remote_host
    assert host is not None
    address = SshAddress.parse(host)
    root = config_path.parent
    target = resolve(cfg, environment, root)
    args = command_args(list(sys.argv[1:] if argv is None else argv))
    ctx = click.get_current_context(silent=True)
    params = ctx.params if ctx is not None else {}
    command = ctx.info_name if ctx is not None else ""
    bundle = Bundle(root)
    bundle.add_file(config_path, "headway.yml")
    secrets, fetched = _secrets_text(target)
    from headway.config.secrets import secrets_path_for

    secrets_rel = secrets_path_for(cfg, environment, root).resolve().relative_to(root.resolve()).as_posix()
    bundle.add_bytes(secrets_rel, secrets, 0o600)
    for rel in _referenced_files(cfg, environment):
        bundle.add_file(root / rel, rel)
    notes: list[str] = []
    with _build_source(target, command, params) as source:
        if source is not None:
            src_root, version, notes = source
            bundle.add_tree(src_root, "")
            args = _without_source_flags(args)
            if params.get("version") is None:
                args += ["--version", version]
        stream, size = bundle.finish()
        for note in notes:
            sys.stderr.write(f"  {note}\n")
        announce = f"  sending {_size(size)} to {address} (headway.yml, secrets, build context)\n" \
            if source is not None else ""
        return _run_on_server(address, args, stream, fetched=fetched, ssh_key=ssh_key,
                              accept_host_key=accept_host_key, announce=announce)


def forward_to_host(host: str, *, ssh_key: str | None, accept_host_key: bool, argv: list[str] | None = None) -> int:
    """`headway --host user@host COMMAND…`: run a command that is not about one environment (`proxy boot`,
    `proxy status`…) on that server."""
    from headway.remote.ssh import SshAddress

    args = command_args(list(sys.argv[1:] if argv is None else argv))  # --host is a global option: not sent
    stream, _ = Bundle(Path.cwd()).finish()
    return _run_on_server(SshAddress.parse(host), args, stream, fetched=[], ssh_key=ssh_key,
                          accept_host_key=accept_host_key)


def _run_on_server(address: SshAddress, args: list[str], stream: IO[bytes], *, fetched: list[str],
                   ssh_key: str | None, accept_host_key: bool, announce: str = "") -> int:
    """`headway remote-run … -- ARGS` on the server with `stream` (a bundle) on its stdin; its exit status, its
    output streamed here."""
    from headway.remote.ssh import SshError, SshSession

    with SshSession(address, key_file=ssh_key, accept_host_key=accept_host_key) as ssh:
        if announce:  # once connected: the bytes are about to go
            sys.stderr.write(announce)
            sys.stderr.flush()
        code = ssh.run(["sh", "-c", _SCRIPT, "headway", "remote-run", "--expect-version", __version__,
                        "--fetched", ",".join(fetched), "--", *args],
                       stdin=stream, on_stdout=_sink(sys.stdout.buffer), on_stderr=_sink(sys.stderr.buffer))
    if code == _NOT_INSTALLED:
        raise SshError(f"headway is not installed on {address}",
                       f"run `headway server bootstrap {address}` once: it installs Docker and this headway there")
    return code


@contextmanager
def _build_source(target: Any, command: str | None, params: dict[str, Any]
                  ) -> Iterator[tuple[Path, str, list[str]] | None]:
    """For a command that builds: the checked, exported source (root, version, notes); else None."""
    if command not in BUILDING or params.get("image_tag"):
        yield None
        return
    from headway.release.source import prepared_source, target_builds

    with prepared_source(target, ref=params.get("ref"), dirty=bool(params.get("dirty")),
                         force=bool(params.get("force")), version=params.get("version")) as src:
        if src.root == target.root.resolve() or src.root == target.root:
            # the working tree (--dirty, or no git): only the build contexts go
            with tempfile.TemporaryDirectory(prefix="headway-send-") as tmp:
                staged = Path(tmp)
                for build in target_builds(target):
                    ctx_dir = (target.root / build.context).resolve()
                    rel = ctx_dir.relative_to(target.root.resolve())
                    _copy_tree(ctx_dir, staged / rel)
                    dockerfile = ctx_dir / build.dockerfile
                    if dockerfile.is_file():
                        dest = staged / rel / build.dockerfile
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(dockerfile.read_bytes())
                yield staged, src.version, list(src.notes)
            return
        yield src.root, src.version, list(src.notes)


def _sink(stream: IO[bytes]) -> Callable[[bytes], None]:
    def put(data: bytes) -> None:
        stream.write(data)
        stream.flush()
    return put


def _copy_tree(source: Path, dest: Path) -> None:
    import shutil

    shutil.copytree(source, dest, dirs_exist_ok=True, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".headway"))


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


# -- the server side ----------------------------------------------------------------------------------------
def bundle_dir() -> Path:
    """Where bundles are unpacked on the server: a tmpfs, so secrets never reach its disk."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) \
        else Path(tempfile.gettempdir())
    root = base / "headway-bundles"
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    return Path(tempfile.mkdtemp(prefix="b-", dir=root))


def run_bundle(stdin: IO[bytes], args: list[str], *, expect_version: str, fetched: str) -> None:
    """Unpack the bundle from `stdin` and run `args` in it, as the command typed where it was sent from."""
    import shutil

    if expect_version != __version__:
        raise ConfigError(f"headway {__version__} runs on this server, {expect_version} where the command was typed",
                          "run `headway server bootstrap` for this server from there: it installs the same version")
    where = bundle_dir()
    try:
        with tarfile.open(fileobj=stdin, mode="r|") as tar:
            extract(tar, where)
        secrets_dir = where / ".headway"
        if secrets_dir.is_dir():
            os.chmod(secrets_dir, 0o700)
        os.environ[ON_SERVER_ENV] = "1"
        os.environ[BUNDLE_SOURCE_ENV] = "bundle"
        os.environ["HEADWAY_FETCHED_SECRETS"] = fetched
        os.chdir(where)
        from headway.cli.main import cli

        cli.main(args=args, prog_name="headway", standalone_mode=False)
    except tarfile.TarError as exc:
        raise HeadwayError(f"the command's files did not arrive whole: {exc}", "run the command again") from None
    finally:
        os.chdir("/")
        shutil.rmtree(where, ignore_errors=True)
