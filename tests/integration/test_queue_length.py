"""Queue lengths the agent reads from an environment's Redis: against a real redis-server."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.observe.monitor import redis_length
from tests.conftest import free_port

PASSWORD = "queue-test-password"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/bootstrap.sh installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
                             "--save", "", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis_length("127.0.0.1", port, PASSWORD, "nothing")
            break
        except OSError:
            time.sleep(0.05)  # redis-server's start-up, polled
    yield port
    proc.terminate()
    proc.wait(10)


def _cli(port: int, *args: str) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "-a", PASSWORD, "--no-auth-warning", *args], check=True,
                   capture_output=True)


def test_lists_streams_and_missing_keys(redis: int) -> None:
    _cli(redis, "RPUSH", "bull:jobs:wait", "a", "b", "c")
    _cli(redis, "XADD", "events", "*", "k", "v")
    assert redis_length("127.0.0.1", redis, PASSWORD, "bull:jobs:wait") == 3
    assert redis_length("127.0.0.1", redis, PASSWORD, "events") == 1
    assert redis_length("127.0.0.1", redis, PASSWORD, "no-such-queue") == 0


def test_a_wrong_password_is_an_error_not_a_length(redis: int) -> None:
    with pytest.raises(OSError, match="WRONGPASS|invalid"):
        redis_length("127.0.0.1", redis, "not-it", "bull:jobs:wait")
