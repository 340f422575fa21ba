"""A wheel of the headway that is running: what `headway server bootstrap` installs on a server.

Built from the installed package itself (its files and its metadata), so a server gets exactly the code the
command was typed with — from a release, an editable checkout or a local change — without a build backend or a
network on this side. The archive is deterministic: the same code gives the same bytes and the same digest, which
is how a server that already runs it is recognised.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import headway
from headway import __version__

_EPOCH = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class Wheel:
    path: Path
    sha256: str
    version: str


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _package_files() -> list[tuple[str, bytes]]:
    root = Path(headway.__file__).resolve().parent
    files: list[tuple[str, bytes]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or _SKIP_DIRS & set(rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        files.append((f"headway/{rel.as_posix()}", path.read_bytes()))
    return files


def _source_metadata() -> str | None:
    """METADATA from the checkout's pyproject.toml when headway runs from one (its dependencies may be newer than
    those an editable install recorded)."""
    import tomllib

    pyproject = Path(headway.__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, ValueError):
        return None
    if project.get("name") != "headway":
        return None
    lines = ["Metadata-Version: 2.1", "Name: headway", f"Version: {__version__}"]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _metadata() -> tuple[str, str]:
    """METADATA and entry_points.txt of the installed distribution (the console script `headway`)."""
    source = _source_metadata()
    try:
        dist = metadata.distribution("headway")
        text = dist.read_text("METADATA") or ""
        entry_points = dist.read_text("entry_points.txt") or ""
    except metadata.PackageNotFoundError:
        text, entry_points = "", ""
    if source is not None:
        text = source
    if not text:
        text = f"Metadata-Version: 2.1\nName: headway\nVersion: {__version__}\n"
    if "[console_scripts]" not in entry_points:
        entry_points = "[console_scripts]\nheadway = headway.cli.main:main\n"
    return text, entry_points


def build_wheel(directory: Path) -> Wheel:
    """Write headway-<version>-py3-none-any.whl into `directory`."""
    dist_info = f"headway-{__version__}.dist-info"
    meta, entry_points = _metadata()
    members = _package_files() + [
        (f"{dist_info}/METADATA", meta.encode()),
        (f"{dist_info}/entry_points.txt", entry_points.encode()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: headway\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members)
    members.append((f"{dist_info}/RECORD", f"{record}{dist_info}/RECORD,,\n".encode()))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"headway-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return Wheel(path, hashlib.sha256(path.read_bytes()).hexdigest(), __version__)
