"""`as: file` secrets on the host: only on a tmpfs, in folders no other user of the host can reach."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.errors import HeadwayError
from headway.release.secret_files import SecretFiles, _check_memory_fs


@pytest.fixture
def shm_root() -> Iterator[Path]:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm on this machine")
    root = Path("/dev/shm") / f"headway-test-{uuid.uuid4().hex[:8]}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_files_are_private_on_the_host_and_readable_by_the_container_user(shm_root: Path) -> None:
    files = SecretFiles(None, "shop", "production", root=shm_root)  # type: ignore[arg-type]
    files.write_folder("shop-production-web-1-1", {"JWT_SECRET": "v1", "OTHER": "v2"}, (10001, 10001))
    for level in (shm_root, shm_root / "shop", shm_root / "shop" / "production"):
        assert mode(level) == 0o700 and level.stat().st_uid == os.geteuid()
    folder = files.folder("shop-production-web-1-1")
    assert (folder / "JWT_SECRET").read_text() == "v1"
    if os.geteuid() == 0:
        assert mode(folder) == 0o500 and folder.stat().st_uid == 10001
        assert mode(folder / "JWT_SECRET") == 0o400 and (folder / "JWT_SECRET").stat().st_uid == 10001
    assert files.mount("shop-production-web-1-1") == {str(folder): {"bind": "/run/secrets", "mode": "ro"}}
    # written again (after a reboot) with one secret fewer: the stale one goes
    files.write_folder("shop-production-web-1-1", {"JWT_SECRET": "v3"}, (10001, 10001))
    assert sorted(p.name for p in folder.iterdir()) == ["JWT_SECRET"]
    assert (folder / "JWT_SECRET").read_text() == "v3"
    files.remove("shop-production-web-1-1")
    assert not folder.exists()


def test_unknown_user_gets_world_readable_files_inside_a_private_root(shm_root: Path) -> None:
    files = SecretFiles(None, "shop", "staging", root=shm_root)  # type: ignore[arg-type]
    files.write_folder("c1", {"A": "x"}, None)
    assert mode(files.folder("c1") / "A") == 0o444 and mode(files.folder("c1")) == 0o555
    assert mode(shm_root) == 0o700


def test_a_root_reopened_by_the_engine_is_closed_again(shm_root: Path) -> None:
    files = SecretFiles(None, "shop", "production", root=shm_root)  # type: ignore[arg-type]
    files.write_folder("c1", {"A": "x"}, None)
    os.chmod(shm_root, 0o755)  # as the engine creates a missing bind source after a reboot
    files.write_folder("c2", {"A": "x"}, None)
    assert mode(shm_root) == 0o700


def test_a_root_on_a_disk_is_refused(tmp_path: Path) -> None:
    if "tmpfs" in {line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1] == "/tmp"}:
        pytest.skip("/tmp is a tmpfs here")
    with pytest.raises(HeadwayError) as info:
        _check_memory_fs(tmp_path / "secrets")
    assert "not a tmpfs" in str(info.value) and "HEADWAY_SECRETS_TMPFS" in str(info.value)
