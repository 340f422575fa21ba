"""Who may use the dashboard: passwords stored hashed, sessions, CSRF tokens and a login throttle.

Passwords are set on the host (`headway agent password`) and kept as scrypt hashes in `agent/dashboard/users.json`
(0600). A login creates a session: a random token in a cookie (HttpOnly, Secure, SameSite=Strict), kept on the host
only as its SHA-256 with the user, an expiry and the session's CSRF token, so an agent restart keeps everyone
logged in and a copy of the file logs no one in. Every action carries the CSRF token of its session, compared in
constant time. Failed logins are counted per client address and per user name: five within five minutes and that
address or user must wait.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from headway.errors import ConfigError
from headway.state.files import atomic_write

MIN_PASSWORD = 12
SESSION_SECONDS = 12 * 3600
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), dklen=32, n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _write_private(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(data, indent=1), mode=0o600)


def _read(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Users:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "users.json"
        self._lock = threading.Lock()
        self._dummy = hash_password(secrets.token_hex(8))

    def set_password(self, user: str, password: str) -> None:
        if not user or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"user name {user!r} is not usable", "use letters, digits, '.', '-' or '_'")
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"the password is too short ({len(password)} characters)",
                              f"use at least {MIN_PASSWORD} characters, e.g. four random words")
        with self._lock:
            users = _read(self.path)
            users[user] = {"hash": hash_password(password), "set_at": time.time()}
            _write_private(self.path, users)

    def remove(self, user: str) -> bool:
        with self._lock:
            users = _read(self.path)
            if users.pop(user, None) is None:
                return False
            _write_private(self.path, users)
            return True

    def names(self) -> list[str]:
        return sorted(_read(self.path))

    def set_at(self, user: str) -> float | None:
        """When the user's password was last set (None: no such user): sessions from before it are void."""
        entry = _read(self.path).get(user)
        return float(str(entry.get("set_at", 0))) if isinstance(entry, dict) else None

    def check(self, user: str, password: str) -> bool:
        entry = _read(self.path).get(user)
        stored = str(entry.get("hash", "")) if isinstance(entry, dict) else ""
        # an unknown user costs the same time as a known one: no telling them apart by the answer's speed
        ok = check_password(password, stored or self._dummy)
        return ok and bool(stored)


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    expires: float
    created: float = 0.0


class Sessions:
    def __init__(self, directory: Path, *, clock: object = time.time) -> None:
        self.path = directory / "sessions.json"
        self._lock = threading.Lock()
        self._clock = clock

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(self, user: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = self._now()
        session = Session(user=user, csrf=secrets.token_urlsafe(32), expires=now + SESSION_SECONDS, created=now)
        with self._lock:
            data = {k: v for k, v in _read(self.path).items() if float(str(v.get("expires", 0))) > now}
            data[self._key(token)] = {"user": session.user, "csrf": session.csrf, "expires": session.expires,
                                      "created": session.created}
            _write_private(self.path, data)
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        entry = _read(self.path).get(self._key(token))
        if not isinstance(entry, dict):
            return None
        session = Session(user=str(entry["user"]), csrf=str(entry["csrf"]), expires=float(str(entry["expires"])),
                          created=float(str(entry.get("created", 0))))
        return session if session.expires > self._now() else None

    def drop(self, token: str | None) -> None:
        if not token:
            return
        with self._lock:
            data = _read(self.path)
            if data.pop(self._key(token), None) is not None:
                _write_private(self.path, data)


def csrf_ok(session: Session | None, given: str | None) -> bool:
    return session is not None and bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())


class Throttle:
    """At most `limit` failures per key within `window` seconds; then the key waits until the oldest expires."""

    def __init__(self, limit: int = 5, window: float = 300.0, *, clock: object = time.monotonic) -> None:
        self.limit, self.window = limit, window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def wait(self, *keys: str) -> float:
        """Seconds until every key may try again (0: now)."""
        now = self._now()
        longest = 0.0
        with self._lock:
            for key in keys:
                q = self._failures.get(key)
                while q and q[0] <= now - self.window:
                    q.popleft()
                if q and len(q) >= self.limit:
                    longest = max(longest, q[0] + self.window - now)
        return longest

    def failed(self, *keys: str) -> None:
        now = self._now()
        with self._lock:
            if len(self._failures) > 10_000:  # bounded: a flood of addresses cannot grow it without end
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, deque(maxlen=self.limit * 2)).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
