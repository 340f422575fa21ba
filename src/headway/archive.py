"""Unpacking tar streams headway made itself (build contexts, command bundles) without trusting their paths.

Python 3.11.4+ has extraction filters; Debian bookworm ships 3.11.2, so on older interpreters each member is
checked here the way the `data` filter would: regular files and directories only, no absolute paths, nothing
outside the destination, no device files, no set-id bits.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from headway.errors import HeadwayError


def extract(tar: tarfile.TarFile, dest: Path, *, links: bool = False) -> None:
    """Extract every member of a streamed `tar` into `dest`. `links`: symlinks inside `dest` are kept (a git
    export of a build context may hold some)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="tar" if links else "data")
        return
    root = dest.resolve()
    for member in tar:
        target = (root / member.name).resolve()
        if member.name.startswith("/") or (target != root and root not in target.parents):
            raise HeadwayError(f"archive member {member.name!r} points outside {dest}", "this is not an archive "
                               "headway made; nothing was unpacked past this member")
        if member.issym() and links:
            link = (target.parent / member.linkname).resolve()
            if member.linkname.startswith("/") or (link != root and root not in link.parents):
                raise HeadwayError(f"archive link {member.name!r} points outside {dest}", "remove that symlink")
        elif not (member.isfile() or member.isdir()):
            continue  # devices, fifos, hard links: never needed here
        member.mode &= 0o777
        tar.extract(member, dest, set_attrs=member.isfile() or member.isdir())
