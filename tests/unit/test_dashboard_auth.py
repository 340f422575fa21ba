"""The dashboard's passwords, sessions, CSRF check and login throttle, on their own."""

from __future__ import annotations

import stat

import pytest

from headway.errors import ConfigError
from headway.observe.dashboard_auth import (
    SESSION_SECONDS,
    Sessions,
    Throttle,
    Users,
    check_password,
    csrf_ok,
    hash_password,
)


def test_passwords_are_hashed_salted_and_checked(tmp_path):
    one, two = hash_password("a long enough password"), hash_password("a long enough password")
    assert one != two and "a long enough" not in one  # salted
    assert check_password("a long enough password", one)
    assert not check_password("a long enough passworD", one)
    assert not check_password("x", "not-a-hash")
    users = Users(tmp_path)
    users.set_password("admin", "a long enough password")
    assert users.check("admin", "a long enough password")
    assert not users.check("admin", "wrong")
    assert not users.check("nobody", "a long enough password")
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError) as info:
        users.set_password("admin", "short")
    assert "at least 12" in (info.value.fix or "")
    with pytest.raises(ConfigError):
        users.set_password("bad name!", "a long enough password")
    assert users.remove("admin") and not users.check("admin", "a long enough password")


def test_sessions_survive_a_restart_expire_and_keep_only_a_hash(tmp_path):
    now = [1000.0]
    sessions = Sessions(tmp_path, clock=lambda: now[0])
    token, session = sessions.create("admin")
    assert token not in sessions.path.read_text()  # only its hash is on disk
    again = Sessions(tmp_path, clock=lambda: now[0])  # the agent restarted
    assert again.get(token) == session
    assert again.get(token + "x") is None and again.get(None) is None
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "forged") and not csrf_ok(None, session.csrf)
    assert not csrf_ok(session, "")
    now[0] += SESSION_SECONDS + 1
    assert again.get(token) is None
    token2, _ = again.create("admin")
    again.drop(token2)
    assert again.get(token2) is None


def test_the_throttle_counts_failures_per_key_within_its_window():
    now = [0.0]
    throttle = Throttle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait("ip:1", "user:a") == 0
        throttle.failed("ip:1", "user:a")
    assert throttle.wait("ip:1") == pytest.approx(60)
    assert throttle.wait("user:a") > 0 and throttle.wait("ip:2", "user:b") == 0
    now[0] = 30
    assert throttle.wait("ip:1") == pytest.approx(30)
    now[0] = 61
    assert throttle.wait("ip:1") == 0
    throttle.failed("ip:1")
    throttle.succeeded("ip:1")
    assert throttle.wait("ip:1") == 0


def test_a_password_change_or_removal_voids_the_sessions_before_it(tmp_path):
    from headway.observe.dashboard import Dashboard

    board = Dashboard(tmp_path)
    board.users.set_password("admin", "a long enough password")
    token, _ = board.sessions.create("admin")
    cookie = {"cookie": f"hw_session={token}"}
    assert board.handle("GET", "/", cookie, b"", "127.0.0.1").status == 200
    board.users.set_password("admin", "another long password")
    assert board.handle("GET", "/", cookie, b"", "127.0.0.1").status == 303  # to the login
    token, _ = board.sessions.create("admin")
    cookie = {"cookie": f"hw_session={token}"}
    assert board.handle("GET", "/", cookie, b"", "127.0.0.1").status == 200
    board.users.remove("admin")
    assert board.handle("POST", "/logout", cookie, b"", "127.0.0.1").status == 401
