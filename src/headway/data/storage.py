"""Where backups are kept: a directory on the host and/or any S3-compatible object storage.

An object is written under a temporary name (local) or as an unfinished multipart upload (S3) and only becomes
visible when `commit()` is called, after every byte and the checksum are in; `abort()` leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from headway.data.schema import S3Storage
from headway.errors import HeadwayError

PART_SIZE = 16 * 1024 * 1024


class StorageError(HeadwayError):
    pass


class ObjectWriter(Protocol):
    def write(self, data: Any) -> int: ...
    def commit(self) -> str: ...
    def abort(self) -> None: ...


class Store(Protocol):
    name: str

    def open_write(self, key: str) -> ObjectWriter: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def location(self, key: str) -> str: ...


# -- a directory on the host ------------------------------------------------------------------------------
class LocalWriter:
    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fh: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit or abort
        os.chmod(self.tmp, 0o600)

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            raise _local_error(exc, self.final.parent) from None

    def commit(self) -> str:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.final)
            dir_fd = os.open(self.final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise _local_error(exc, self.final.parent) from None
        return str(self.final)

    def abort(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)


def _local_error(exc: OSError, where: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left in {where}: the backup was not kept",
                            "free space there or choose another storage.local.path; older backups are untouched")
    return StorageError(f"cannot write to {where}: {exc.strerror}", "check the directory and its permissions")


class LocalStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def open_write(self, key: str) -> ObjectWriter:
        try:
            return LocalWriter(self.path(key))
        except OSError as exc:
            raise _local_error(exc, self.path(key).parent) from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise StorageError(f"backup file {self.path(key)} is missing", "use another backup or location") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        writer = self.open_write(key)
        writer.write(data)
        writer.commit()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def location(self, key: str) -> str:
        return str(self.path(key))


# -- S3-compatible object storage -------------------------------------------------------------------------
class S3Writer:
    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key
        self.buf = bytearray()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None

    def write(self, data: Any) -> int:
        self.buf += data
        if len(self.buf) >= PART_SIZE:
            self._flush_part()
        return len(data)

    def _flush_part(self) -> None:
        with self.store.errors("upload to"):
            if self.upload_id is None:
                self.upload_id = self.store.client.create_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store.full(self.key))["UploadId"]
            number = len(self.parts) + 1
            resp = self.store.client.upload_part(Bucket=self.store.bucket, Key=self.store.full(self.key),
                                                 UploadId=self.upload_id, PartNumber=number, Body=bytes(self.buf))
        self.parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        self.buf.clear()

    def commit(self) -> str:
        with self.store.errors("upload to"):
            if self.upload_id is None:
                self.store.client.put_object(Bucket=self.store.bucket, Key=self.store.full(self.key),
                                             Body=bytes(self.buf))
            else:
                if self.buf:
                    self._flush_part()
                self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store.full(self.key), UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts})
        return self.store.location(self.key)

    def abort(self) -> None:
        if self.upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(Bucket=self.store.bucket, Key=self.store.full(self.key),
                                                         UploadId=self.upload_id)
            except Exception:  # noqa: BLE001 - best effort: storage may be the thing that failed
                pass
        self.buf.clear()


class S3Store:
    name = "s3"

    def __init__(self, cfg: S3Storage) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = cfg.bucket
        self.prefix = cfg.prefix.strip("/")
        self.endpoint = cfg.endpoint
        self.client: Any = boto3.client(
            "s3", endpoint_url=cfg.endpoint, region_name=cfg.region, aws_access_key_id=cfg.access_key,
            aws_secret_access_key=cfg.secret_key,
            config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                          s3={"addressing_style": "path"}))

    def full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def errors(self, verb: str) -> Any:
        store = self

        class _Ctx:
            def __enter__(self) -> None:
                return None

            def __exit__(self, et: Any, exc: Any, tb: Any) -> None:
                if exc is None or isinstance(exc, HeadwayError):
                    return
                from botocore.exceptions import BotoCoreError, ClientError

                if isinstance(exc, ClientError):
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                        raise StorageError(f"S3 storage refused the credentials ({code}) for bucket {store.bucket}",
                                           "check storage.s3.access_key / secret_key in the secrets file") from None
                    if code in ("NoSuchBucket", "404", "NoSuchKey"):
                        raise StorageError(f"S3: {code} in bucket {store.bucket}",
                                           "check storage.s3.bucket (and that the object exists)") from None
                    raise StorageError(f"S3 {verb} {store.bucket} failed: {code}", "check storage.s3") from None
                if isinstance(exc, BotoCoreError | OSError):
                    raise StorageError(f"S3 storage at {store.endpoint or 'AWS'} is unreachable: {exc}",
                                       "check storage.s3.endpoint and the network; nothing was changed") from None
        return _Ctx()

    def open_write(self, key: str) -> ObjectWriter:
        with self.errors("reach"):
            self.client.head_bucket(Bucket=self.bucket)
        return S3Writer(self, key)

    def open_read(self, key: str) -> BinaryIO:
        with self.errors("download from"):
            body = self.client.get_object(Bucket=self.bucket, Key=self.full(key))["Body"]
        return body

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.errors("upload to"):
            self.client.put_object(Bucket=self.bucket, Key=self.full(key), Body=data)

    def exists(self, key: str) -> bool:
        try:
            with self.errors("read"):
                self.client.head_object(Bucket=self.bucket, Key=self.full(key))
            return True
        except StorageError:
            return False

    def delete(self, key: str) -> None:
        with self.errors("delete from"):
            self.client.delete_object(Bucket=self.bucket, Key=self.full(key))

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full(key)}"
