"""Events a command reports to the environment's alert channels, against a real HTTP receiver: a backup taken or
failed (a real PostgreSQL, a disk that fills up), a canary that aborts under real traffic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.loadgen import SteadyLoad
from tests.integration.db_support import small_disk  # noqa: F401
from tests.integration.test_edge import CANARY
from tests.receivers import Receiver, http_receiver

from headway.data.storage import StorageError
from headway.errors import CanaryFailed

pytestmark = [pytest.mark.docker]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as rec:
        yield rec


def hook(receiver: Receiver) -> str:
    return f"alerts:\n  channels:\n    - {{type: webhook, name: hook, url: \"{receiver.url('/hook')}\"}}\n"


def notices(receiver: Receiver, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [r.json() for r in receiver.at("/hook") if r.json().get("kind") == kind]


def test_a_backup_and_a_failed_one_are_announced(db_app, small_disk: Path, receiver: Receiver) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    app = db_app("  db: {engine: postgres}", f"storage: {{local: {{path: {small_disk}}}}}", hook(receiver))
    app.service().dbs.ensure()
    app.psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)")
    rec = app.headway().databases().backup("db")
    [done] = notices(receiver, "backup")
    assert done["severity"] == "info" and rec.id in done["text"] and done["environment"] == "production"
    app.psql("CREATE TABLE blobs AS SELECT decode(string_agg(md5(random()::text), ''), 'hex') AS b "
             "FROM generate_series(1, 250000) g")  # more than the 2 MiB disk holds
    with pytest.raises(StorageError):
        app.headway().databases().backup("db")
    failed = notices(receiver, "backup")[1]
    assert failed["severity"] == "warning" and "failed" in failed["title"] and "no space" in failed["text"]


def test_a_canary_abort_is_announced(tiny_app, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    tiny_app.edit_config("  drain_timeout: 5s\n", "  drain_timeout: 5s\n" + CANARY)
    tiny_app.edit_config("environments:", hook(receiver) + "environments:")
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(fail_every=4)
    with SteadyLoad(tiny_app.url(), rate=100, max_seconds=60) as load:
        load.wait_for(50)
        with pytest.raises(CanaryFailed):
            hw.deploy(version="bad")
    [aborted] = notices(receiver, "canary")
    assert aborted["severity"] == "warning" and "aborted" in aborted["title"] and "success rate" in aborted["text"]
    assert [r.json()["kind"] for r in receiver.at("/hook")] == ["deploy", "canary"]
