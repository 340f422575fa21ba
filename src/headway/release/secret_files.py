"""`as: file` secrets: files on a tmpfs of the host, bind-mounted read-only at /run/secrets in the container.

Layout (the root is /dev/shm/headway-secrets, or HEADWAY_SECRETS_TMPFS):

    <root>/                         0700 root: no other user of the host can reach anything below
      <app>/<environment>/          0700
        <container name>/           0500, owned by the container's user (0555 when it is root or unknown)
          JWT_SECRET                0400, owned by the container's user (0444 likewise)

The folder is mounted at /run/secrets, read-only: `docker inspect` shows the mount's source path and nothing
else, the image never holds a value, and the value is never on a disk (a tmpfs lives in memory and swap).

A container's folder is removed when the container is (`sweep`: every folder whose container is gone). The names
of a container's file secrets are in its label `dev.headway.secret-files`, so the files can be written again:
a Docker daemon restart keeps them (the tmpfs is the host's), a host reboot empties the tmpfs, the engine starts
the containers with an empty /run/secrets (their apps fail until the files are back), and the next headway
command's reconcile (`restore`) writes them again from the current values.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from headway.config.secrets import SECRETS_MOUNT
from headway.engine import labels as L
from headway.errors import HeadwayError

if TYPE_CHECKING:
    from headway.engine.base import Container, Engine

ROOT_ENV = "HEADWAY_SECRETS_TMPFS"
DEFAULT_ROOT = "/dev/shm/headway-secrets"
LABEL = f"{L.PREFIX}.secret-files"  # on a container: its file secrets' names, comma separated
_GRACE = 60.0  # a folder this young may belong to a container being created right now: sweep keeps it
_MEMORY_FS = {"tmpfs", "ramfs"}


def secrets_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@functools.cache
def _check_memory_fs(root: Path) -> None:
    """Refuse to write secret values to a disk: the root must be on a tmpfs (or ramfs)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return  # no /proc: cannot tell, the default (/dev/shm) is a tmpfs wherever Docker runs
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    probe = probe.resolve()
    best, kind = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].replace("\\040", " ")
            if (probe == Path(point) or Path(point) in probe.parents) and len(point) >= len(best):
                best, kind = point, fields[2]
    if kind not in _MEMORY_FS:
        raise HeadwayError(f"{root} is on {kind or 'an unknown filesystem'}, not a tmpfs: secret files would be "
                           "written to a disk", f"set {ROOT_ENV} to a folder on a tmpfs, e.g. /dev/shm/headway-secrets")


class SecretFiles:
    """The file secrets of one app in one environment."""

    def __init__(self, engine: Engine, app: str, environment: str, root: Path | None = None) -> None:
        self.engine = engine
        self.app = app
        self.environment = environment
        self.root = root or secrets_root()
        self.base = self.root / app / environment

    def folder(self, container_name: str) -> Path:
        return self.base / container_name

    def mount(self, container_name: str) -> dict[str, dict[str, str]]:
        """The read-only bind mount of a container's folder at /run/secrets."""
        return {str(self.folder(container_name)): {"bind": SECRETS_MOUNT, "mode": "ro"}}

    @staticmethod
    def label(names: list[str]) -> dict[str, str]:
        return {LABEL: ",".join(sorted(names))}

    def write(self, container: Container, files: dict[str, str]) -> None:
        """The files of a created container (before it starts), owned by the user it runs as."""
        self.write_folder(container.name or "", files, self._owner(container))

    def _owner(self, container: Container) -> tuple[int, int] | None:
        """Who owns a container's files: its image's USER. An image that starts as root usually drops to a user
        of its own (postgres does, then reads POSTGRES_PASSWORD_FILE): its files are readable by every user of
        the container, as Docker's own secrets are."""
        ids = self.engine.user_ids(container)
        return None if ids is None or ids[0] == 0 else ids

    def preparer(self, files: dict[str, str]) -> Callable[[Container], None] | None:
        """For `Engine.run_oneoff(prepare=…)`: writes `files` for the one-off once it is created."""
        if not files:
            return None
        return lambda container: self.write(container, files)

    def write_folder(self, container_name: str, files: dict[str, str], ids: tuple[int, int] | None) -> None:
        """Write `files` (name -> value) into the container's folder: each to a new file renamed into place, so
        a reader sees the whole value or none. `ids` None: readable by every user of the container."""
        self._secure_base()
        folder = self.folder(container_name)
        folder.mkdir(mode=0o700, exist_ok=True)
        owner = ids is not None and os.geteuid() == 0
        for name, value in files.items():
            tmp = folder / f".{name}.tmp"
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400 if owner else 0o444)
            try:
                if owner:
                    assert ids is not None
                    os.fchown(fd, *ids)
                os.fchmod(fd, 0o400 if owner else 0o444)
                os.write(fd, value.encode())
            finally:
                os.close(fd)
            os.replace(tmp, folder / name)
        for extra in folder.iterdir():
            if extra.name not in files:
                extra.unlink(missing_ok=True)
        if owner:
            assert ids is not None
            os.chown(folder, *ids)
        os.chmod(folder, 0o500 if owner else 0o555)

    def _secure_base(self) -> None:
        _check_memory_fs(self.root)
        for path in (self.root, self.root / self.app, self.base):
            path.mkdir(mode=0o700, exist_ok=True)
            st = path.lstat()
            if not path.is_dir() or path.is_symlink():
                raise HeadwayError(f"{path} is not a folder",
                                   f"remove it; headway keeps secret files under {self.root}")
            if st.st_uid != os.geteuid():
                raise HeadwayError(f"{path} belongs to uid {st.st_uid}, not to the user headway runs as",
                                   f"remove it (`rm -rf {path}`); headway creates it again")
            # the engine creates a missing bind source as 0755 (after a reboot): close it again
            os.chmod(path, 0o700)

    def remove(self, container_name: str) -> None:
        shutil.rmtree(self.folder(container_name), ignore_errors=True)

    def remove_all(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def sweep(self) -> list[str]:
        """Remove the folders of containers that no longer exist; the names removed."""
        if not self.base.is_dir():
            return []
        existing = {c["name"] for c in self.engine.summaries(L.selector(app=self.app,
                                                                         environment=self.environment))}
        removed = []
        now = time.time()
        for folder in self.base.iterdir():
            if folder.name in existing:
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - folder.lstat().st_mtime < _GRACE:
                    continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        return removed

    def restore(self, value_of: Callable[[list[str]], dict[str, str]]) -> list[str]:
        """Write again the files of every container that misses some (after a host reboot): their names from the
        container's label, their values from `value_of` (the current ones). Notes for the user."""
        notes = []
        for c in self.engine.summaries(L.selector(app=self.app, environment=self.environment)):
            names = [n for n in (c["labels"].get(LABEL) or "").split(",") if n]
            if not names:
                continue
            folder = self.folder(c["name"])
            missing = [n for n in names if not (folder / n).is_file()]
            if not missing:
                continue
            values = value_of(names)
            lost = [n for n in names if n not in values]
            container = self.engine.get(c["name"])
            if container is None:
                continue
            self.write_folder(c["name"], values, self._owner(container))
            note = f"wrote the secret files of {c['name']} again ({', '.join(missing)})"
            if lost:
                note += f"; {', '.join(lost)} no longer has a value: add it to the secrets file"
            notes.append(note)
        return notes
