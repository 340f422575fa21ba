"""The byte path of a backup: dump stream → zstd → (age) → sha256 → storage, and back again.

Everything streams in fixed-size chunks, so a dump of any size passes through a few MiB of memory.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyrage
import zstandard

from headway.data.storage import ObjectWriter
from headway.errors import ConfigError, HeadwayError

CHUNK = 1024 * 1024
ZSTD_LEVEL = 1  # this data compresses well at 1; 3 costs a third more CPU for a few % of size


class IntegrityError(HeadwayError):
    """A backup whose bytes are not the ones recorded: truncated, corrupted, or the wrong key."""


@dataclass(frozen=True)
class Encoded:
    size: int  # bytes stored
    raw_size: int  # bytes the dump tool produced
    sha256: str  # of the stored bytes: checkable without the key


class _Counting(io.RawIOBase):
    def __init__(self, source: Any) -> None:
        self.source = source
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = int(self.source.readinto(b) or 0)
        self.count += n
        return n


class _Tee(io.RawIOBase):
    """Writes to every storage at once, hashing and counting what passes."""

    def __init__(self, writers: Sequence[ObjectWriter]) -> None:
        self.writers = writers
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.count += len(data)
        for w in self.writers:
            w.write(data)
        return len(data)


class _Hashing(io.RawIOBase):
    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.source.read(len(b))
        n = len(data)
        b[:n] = data
        self.hash.update(data)
        self.count += n
        return n


class NullSink(io.RawIOBase):
    """Counts what is written and passes it on to `out`, or nowhere."""

    def __init__(self, out: Any = None) -> None:
        self.out = out
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.out is not None:
            self.out.write(data)
        self.count += len(data)
        return len(data)


def recipients(keys: list[str]) -> list[Any]:
    try:
        return [pyrage.x25519.Recipient.from_str(k) for k in keys]
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own error types
        raise ConfigError(f"bad age public key in backup.encrypt_to: {exc}",
                          "use the age1… line of age-keygen") from None


def load_identity(path: str | Path) -> list[Any]:
    """The age identities (private keys) in a file written by age-keygen."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the identity file {path}: {exc.strerror}",
                          "pass the file age-keygen wrote, with --identity") from None
    keys = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise ConfigError(f"{path} holds no age identity (AGE-SECRET-KEY-…)", "pass the file age-keygen wrote")
    try:
        return [pyrage.x25519.Identity.from_str(k) for k in keys]
    except Exception:  # noqa: BLE001
        raise ConfigError(f"{path}: the identity is malformed", "pass the file age-keygen wrote") from None


def encode(source: Any, writers: Sequence[ObjectWriter], encrypt_to: list[str]) -> Encoded:
    """Compress (and encrypt) a dump stream into every writer; nothing here holds more than a few chunks."""
    counted = _Counting(source)
    compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1).stream_reader(counted, read_size=CHUNK)  # type: ignore[arg-type]
    tee = _Tee(writers)
    if encrypt_to:
        pyrage.encrypt_io(compressed, tee, recipients(encrypt_to))
    else:
        shutil.copyfileobj(compressed, tee, CHUNK)
    return Encoded(size=tee.count, raw_size=counted.count, sha256=tee.hash.hexdigest())


def decode(stored: BinaryIO, out: Any, *, sha256: str, size: int, identities: list[Any] | None,
           encrypted: bool) -> int:
    """Stream a stored backup back into `out` (plain dump bytes); raise IntegrityError unless every stored byte
    matches the recorded checksum. Returns the number of dump bytes written."""
    hashing = _Hashing(stored)
    counter = NullSink(out)
    decompressor = zstandard.ZstdDecompressor().stream_writer(counter, write_size=CHUNK, closefd=False)  # type: ignore[arg-type]
    if encrypted and not identities:
        raise ConfigError("this backup is encrypted: restoring it needs the age identity (private key)",
                          "pass --identity FILE (the key the server does not have)")
    failure: Exception | None = None
    try:
        if encrypted:
            pyrage.decrypt_io(hashing, decompressor, identities)
        else:
            shutil.copyfileobj(hashing, decompressor, CHUNK)
        decompressor.flush()
    except BrokenPipeError:
        # the tool stopped reading: a damaged backup is reported as damaged, not as the tool's failure
        _check(hashing, sha256, size)
        raise
    except HeadwayError:
        raise
    except Exception as exc:  # noqa: BLE001 - codec errors of pyrage and zstandard; judged after the checksum
        failure = exc
    # the checksum decides first: a damaged file is reported as damaged, whatever the codecs said
    _check(hashing, sha256, size)
    if failure is not None:
        if encrypted and "no matching keys" in str(failure).lower():
            raise IntegrityError("the identity given cannot decrypt this backup (wrong key)",
                                 "pass the identity whose public key is in backup.encrypt_to")
        raise IntegrityError(f"the backup cannot be decoded: {failure}", "use another backup")
    return counter.count


def _check(hashing: _Hashing, sha256: str, size: int) -> None:
    """Read what is left of the stored bytes, and raise IntegrityError unless all of them match the catalog."""
    buf = bytearray(CHUNK)
    while hashing.readinto(buf):
        pass
    if hashing.count != size or hashing.hash.hexdigest() != sha256:
        raise IntegrityError(f"the backup's checksum does not match the catalog ({hashing.count} of {size} bytes, "
                             f"sha256 {hashing.hash.hexdigest()[:12]}… ≠ {sha256[:12]}…)",
                             "it is corrupted or truncated; use another backup (`headway db backups`)")
