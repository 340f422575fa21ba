"""The dashboard: every app and environment on the host, served by the agent behind headway's proxy.

Pages (login required for all of them): the overview (each environment's live release, health, request rate,
errors, p95 and firing alerts) and one page per environment (charts of the last hour, release history with a
rollback button per retained release, backups and restores, maintenance on/off, recent alerts, a log tail).

Actions are POSTs carrying the session's CSRF token. Each runs as its own `headway agent act` process from the
environment's config kept on the host (config/kept.py), so it is the same journaled, crash-safe operation as from
the command line, recorded with who did it (`dashboard:USER@host`), and it never holds the agent's threads. Every
action, done or refused, is appended to `agent/dashboard/actions.jsonl`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headway.errors import HeadwayError
from headway.state.files import read_json_object
from headway.observe.alerts import alert_history_path, firing_alerts
from headway.observe.dashboard_auth import Session, Sessions, Throttle, Users, csrf_ok

if TYPE_CHECKING:
    from headway.engine.base import Engine

COOKIE = "hw_session"
LOGIN_COOKIE = "hw_login"  # the login form's own CSRF token (double submit): no session exists yet
DEFAULT_PORT = 9106
TEMPLATES = Path(__file__).resolve().parent / "templates"
ACTION_TIMEOUT = 300.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class DashboardError(HeadwayError):
    """The dashboard cannot listen where it was asked to."""


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] | None = None
    cookies: list[str] | None = None


def _redirect(to: str, cookies: list[str] | None = None) -> Answer:
    return Answer(303, b"", headers={"Location": to}, cookies=cookies)


class Dashboard:
    def __init__(self, state_root: Path, engine: Engine | None = None, *,
                 act: Callable[[list[str], dict[str, str]], tuple[int, str]] | None = None) -> None:
        import jinja2

        self.root = state_root
        self.dir = state_root / "agent" / "dashboard"
        self._engine = engine
        self.users = Users(self.dir)
        self.sessions = Sessions(self.dir)
        self.throttle = Throttle()
        self._act = act or _run_action
        self._flash: dict[str, tuple[bool, str]] = {}
        self._acting: set[str] = set()
        self._lock = threading.Lock()
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                      autoescape=True, undefined=jinja2.StrictUndefined)
        self.env.filters["ago"] = _ago

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from headway.engine.docker import DockerEngine

            self._engine = DockerEngine()
        return self._engine

    # -- requests -------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes, client: str) -> Answer:
        url = urllib.parse.urlsplit(path)
        route = url.path
        cookies = _cookies(headers.get("cookie", ""))
        token = cookies.get(COOKIE)
        session = self.sessions.get(token)
        if session is not None:
            set_at = self.users.set_at(session.user)
            if set_at is None or session.created < set_at:  # removed, or its password changed since
                session = None
        if route.startswith("/assets/") and method == "GET":
            return _asset(route.removeprefix("/assets/"))
        if route == "/health":
            return Answer(200, b"ok\n", "text/plain")
        if route == "/favicon.ico":
            return Answer(404, b"", "text/plain")
        if route == "/login":
            return self._login(method, headers, body, client, cookies, session)
        if method == "POST" and not _same_origin(headers):
            return self._refuse(403, "the request came from another site", session, client, route)
        if session is None:
            if method == "POST":
                return self._refuse(401, "log in first", None, client, route)
            return _redirect("/login")
        if method == "GET" and route == "/":
            return self._page("overview.html.j2", session, environments=self.overview())
        m = re.fullmatch(r"/env/([^/]+)/([^/]+)(/[a-z-]+)?", route)
        if m and _NAME.match(m[1]) and _NAME.match(m[2]):
            app, env, action = m[1], m[2], m[3]
            if method == "GET" and action is None:
                view = self.environment(app, env)
                if view is None:
                    return self._page("missing.html.j2", session, app=app, environment=env, status=404)
                flash = self._flash.pop(f"{token}:{app}/{env}", None)
                return self._page("environment.html.j2", session, e=view, flash=flash)
            if method == "POST" and action is not None:
                form = urllib.parse.parse_qs(body.decode(errors="replace"), keep_blank_values=True)
                given = (form.get("csrf") or [""])[0]
                if not csrf_ok(session, given):
                    return self._refuse(403, "the form's CSRF token is missing or wrong: reload the page",
                                        session, client, route)
                return self._action(session, token or "", app, env, action.strip("/"), form, client)
        if method == "POST" and route == "/logout":
            form = urllib.parse.parse_qs(body.decode(errors="replace"))
            if not csrf_ok(session, (form.get("csrf") or [""])[0]):
                return self._refuse(403, "the form's CSRF token is missing or wrong: reload the page",
                                    session, client, route)
            self.sessions.drop(token)
            return _redirect("/login", [_cookie(COOKIE, "", max_age=0)])
        return self._page("missing.html.j2", session, app="", environment=route, status=404)

    def _login(self, method: str, headers: dict[str, str], body: bytes, client: str,
               cookies: dict[str, str], session: Session | None) -> Answer:
        import secrets

        if method == "GET":
            if session is not None:
                return _redirect("/")
            # one token per browser: a second tab (or a stray request sent to the login) keeps the first one valid
            form_token = cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
            page = self._render("login.html.j2", session=None, form_token=form_token, error=None,
                                no_users=not self.users.names())
            return Answer(200, page, cookies=[_cookie(LOGIN_COOKIE, form_token, max_age=1800, path="/login")])
        if method != "POST":
            return Answer(405, b"")
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        user = (form.get("user") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        given = (form.get("form_token") or [""])[0]
        expected = cookies.get(LOGIN_COOKIE, "")
        import hmac

        def again(status: int, error: str, extra: dict[str, str] | None = None) -> Answer:
            token = secrets.token_urlsafe(24)
            page = self._render("login.html.j2", session=None, form_token=token, error=error,
                                no_users=not self.users.names())
            return Answer(status, page, headers=extra,
                          cookies=[_cookie(LOGIN_COOKIE, token, max_age=1800, path="/login")])

        why = "sent from another site" if not _same_origin(headers) else "without its cookie" if not expected \
            else "with a token that is not its own" if not hmac.compare_digest(given.encode(), expected.encode()) \
            else ""
        if why:
            self._log(None, client, "login", None, None, "refused", f"a login form {why}")
            return again(403, "The login form expired. Please try again.")
        wait = self.throttle.wait(f"ip:{client}", f"user:{user}")
        if wait > 0:
            self._log(user, client, "login", None, None, "refused", "rate limited")
            return again(429, f"Too many failed logins. Try again in {int(wait) + 1} seconds.",
                         {"Retry-After": str(int(wait) + 1)})
        if not user or not self.users.check(user, password):
            self.throttle.failed(f"ip:{client}", f"user:{user}")
            self._log(user or None, client, "login", None, None, "refused", "wrong user or password")
            return again(401, "Wrong user name or password.")
        self.throttle.succeeded(f"ip:{client}", f"user:{user}")
        token, _ = self.sessions.create(user)
        self._log(user, client, "login", None, None, "done", "")
        return _redirect("/", [_cookie(COOKIE, token, max_age=12 * 3600),
                               _cookie(LOGIN_COOKIE, "", max_age=0, path="/login")])

    def _refuse(self, status: int, why: str, session: Session | None, client: str, route: str) -> Answer:
        self._log(session.user if session else None, client, route, None, None, "refused", why)
        return Answer(status, self._render("refused.html.j2", status=status, why=why, session=session),
                      headers={"X-Headway-Refused": why})

    def _action(self, session: Session, token: str, app: str, env: str, action: str,
                form: dict[str, list[str]], client: str) -> Answer:
        from headway.config.kept import is_kept

        if not is_kept(self.root, app, env):
            return self._refuse(409, f"{app}/{env} has no config kept on this host: deploy it once with this "
                                "headway", session, client, f"/env/{app}/{env}/{action}")
        if action == "rollback":
            to = (form.get("deploy") or [""])[0]
            if not to.isdigit():
                return self._refuse(400, "which release to roll back to is missing", session, client, action)
            argv = ["rollback", "--to", to]
        elif action == "maintenance":
            state = (form.get("state") or [""])[0]
            if state not in ("on", "off"):
                return self._refuse(400, "maintenance must be on or off", session, client, action)
            argv = ["maintenance", state]
        else:
            return self._refuse(404, f"no action {action!r}", session, client, action)
        subject = f"{app}/{env}"
        with self._lock:
            if subject in self._acting:
                return self._refuse(409, f"an action on {subject} is running already", session, client, action)
            self._acting.add(subject)
        try:
            code, output = self._act(["--state-dir", str(self.root), "agent", "act", "--app", app, "-e", env,
                                      *argv], {"HEADWAY_USER": f"dashboard:{session.user}"})
        finally:
            with self._lock:
                self._acting.discard(subject)
        lines = [ln for ln in _ANSI.sub("", output).splitlines() if ln.strip()]
        summary = lines[-1] if lines else ("done" if code == 0 else f"exited {code}")
        self._log(session.user, client, action, app, env, "done" if code == 0 else "failed", summary,
                  args=argv[1:])
        if len(self._flash) > 1000:  # bounded: results nobody came back for
            self._flash.clear()
        self._flash[f"{token}:{subject}"] = (code == 0, "\n".join(lines[-12:]) or summary)
        return _redirect(f"/env/{app}/{env}")

    def _log(self, user: str | None, client: str, action: str, app: str | None, env: str | None, outcome: str,
             detail: str, args: list[str] | None = None) -> None:
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "user": user, "client": client,
                 "action": action, "app": app, "environment": env, "args": args or [], "outcome": outcome,
                 "detail": detail[:500]}
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, open(self.dir / "actions.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def actions(self, limit: int = 200) -> list[dict[str, Any]]:
        path = self.dir / "actions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()[-limit:] if line.strip()]

    # -- pages ------------------------------------------------------------------------------------------------
    def _render(self, template: str, **values: Any) -> bytes:
        from headway import __version__

        return self.env.get_template(template).render(version=__version__, **values).encode()

    def _page(self, template: str, session: Session, status: int = 200, **values: Any) -> Answer:
        return Answer(status, self._render(template, session=session, **values))

    def overview(self) -> list[dict[str, Any]]:
        from headway.observe.figures import environment_figures, watched_environments

        out = []
        for app, env in watched_environments(self.root):
            figures = environment_figures(self.root, app, env)
            current = read_json_object(self.root / "apps" / app / env / "current.json") or {}
            out.append({"app": app, "environment": env, "release": _live_release(self.root, app, env, current),
                        "health": _health(figures, current), "requests_per_s": figures.get("requests_per_s"),
                        "server_error_ratio": figures.get("server_error_ratio"), "p95_s": figures.get("p95_s"),
                        "firing": firing_alerts(self.root, app, env), "maintenance": bool(current.get("maintenance"))})
        return out

    def environment(self, app: str, env: str) -> dict[str, Any] | None:
        from headway.config.kept import is_kept
        from headway.data.catalog import Catalog, RestoreLog
        from headway.engine import labels as L
        from headway.observe.figures import environment_figures
        from headway.state.store import AppState

        state = AppState(self.root, app, env)
        if not state.dir.is_dir():
            return None
        current = state.current()
        figures = environment_figures(self.root, app, env)
        now = time.time()
        summaries = self.engine.summaries(L.selector(app=app, environment=env))
        present = {int(s["labels"].get(L.DEPLOY, "0") or 0) for s in summaries
                   if s["labels"].get(L.KIND) == "app"}
        records = state.history()
        live_version = next((r.version for r in reversed(records) if r.number == current.live and r.action == "deploy"),
                            None)
        history = []
        for rec in reversed(records[-20:]):
            history.append({"number": rec.number, "action": rec.action, "version": rec.version,
                            "outcome": rec.outcome, "by": rec.by, "at": rec.started_at,
                            "target": rec.target, "live": rec.number == current.live,
                            "can_roll_back": rec.action == "deploy" and rec.number != current.live
                            and rec.number in present and rec.outcome in ("superseded", "rolled-back")})
        catalog = Catalog(self.root, app, env)
        backups = [{"id": b.id, "database": b.database, "status": b.status, "at": b.started_at, "size": b.size,
                    "reason": b.reason, "encrypted": b.encrypted, "verify": b.verify_status,
                    "verified_at": b.verified_at} for b in reversed(catalog.all()[-10:])]
        restores = _restores(RestoreLog(self.root, app, env).path)
        charts = {
            "requests": _chart(figures["series"].get("requests_per_s", []), now, "{:.2f} req/s", floor=1.0),
            "errors": _chart(figures["series"].get("server_error_ratio", []), now, "{:.1%} 5xx", floor=0.05),
            "latency": _chart(figures["series"].get("p95_s", []), now, "{:.0f} ms p95", factor=1000.0,
                              floor=0.1),
        }
        live = [s for s in summaries if s["labels"].get(L.KIND) == "app" and s["state"] == "running"
                and str(current.live) == s["labels"].get(L.DEPLOY)]
        return {"app": app, "environment": env, "release": live_version,
                "live": current.live, "health": _health(figures, current.model_dump(mode="json")),
                "maintenance": bool(current.maintenance), "history": history, "backups": backups,
                "restores": restores, "charts": charts, "containers": figures.get("containers", []),
                "firing": firing_alerts(self.root, app, env), "recent_alerts": _recent_alerts(self.root, app, env),
                "logs": self._log_tail(live), "actions": is_kept(self.root, app, env)}

    def _log_tail(self, summaries: list[dict[str, Any]], lines: int = 40) -> list[str]:
        out: list[str] = []
        for s in sorted(summaries, key=lambda s: s["name"])[:4]:
            c = self.engine.get(s["name"])
            if c is None:
                continue
            with contextlib.suppress(Exception):
                for line in list(self.engine.logs(c, tail=lines // 2))[-lines // 2:]:
                    out.append(f"{s['name']}  {_ANSI.sub('', line.rstrip())}")
        return out[-lines:]

    # -- serving ----------------------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> DashboardServer:
        try:
            server = _Server((host, port), _handler(self))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DashboardError(f"port {port} on {host} is taken, the dashboard cannot listen there",
                                     f"free it, or boot the agent with another: `headway agent boot "
                                     f"--dashboard-port {port + 1}`") from None
            raise DashboardError(f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}",
                                 "use a free port above 1023") from None
        thread = threading.Thread(target=server.serve_forever, name="headway-dashboard", daemon=True)
        thread.start()
        return DashboardServer(server, thread)


class DashboardServer:
    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "headway-dashboard"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            peer = self.client_address[0]
            # behind headway's proxy (on this host) the client is the one the proxy names
            client = headers.get("x-real-ip", peer) if peer in ("127.0.0.1", "::1") else peer
            try:
                answer = dashboard.handle(method, self.path, headers, body, client)
            except Exception as exc:  # noqa: BLE001 - one bad page must not take the dashboard down
                print(f"dashboard: {self.path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                answer = Answer(500, b"<h1>500</h1><p>The dashboard failed on this page; see `headway agent "
                                     b"logs`.</p>")
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for k, v in {**HEADERS, **(answer.headers or {})}.items():
                self.send_header(k, v)
            for c in answer.cookies or []:
                self.send_header("Set-Cookie", c)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(answer.body)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


# -- actions ------------------------------------------------------------------------------------------------
def _run_action(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`headway ARGV` as its own process (journaled and locked as from a terminal); exit code and output."""
    try:
        done = subprocess.run([sys.executable, "-m", "headway", *argv], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=ACTION_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 124, f"the action did not finish within {ACTION_TIMEOUT:.0f}s; see the environment's status"
    return done.returncode, (done.stdout or "") + (done.stderr or "")


# -- helpers ------------------------------------------------------------------------------------------------
def _cookie(name: str, value: str, *, max_age: int, path: str = "/") -> str:
    return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(header)
    return {k: m.value for k, m in jar.items()}


def _same_origin(headers: dict[str, str]) -> bool:
    """A POST's Origin (when the browser sends one) names the host it was sent to."""
    origin = headers.get("origin")
    if not origin:
        return True
    if origin == "null":
        return False
    host = headers.get("x-forwarded-host") or headers.get("host", "")
    given = urllib.parse.urlsplit(origin)
    if ":" in host.rsplit("]", 1)[-1]:  # the Host names a port: all of it must match
        return given.netloc == host
    return given.hostname == host.strip("[]").lower()  # behind the proxy, Host carries the name only


_ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}


def _asset(name: str) -> Answer:
    if name not in _ASSETS:
        return Answer(404, b"")
    return Answer(200, (TEMPLATES / name).read_bytes(), _ASSETS[name], headers={"Cache-Control": "max-age=300"})


def _live_release(root: Path, app: str, env: str, current: dict[str, Any]) -> str | None:
    from headway.state.store import AppState

    live = current.get("live")
    if live is None:
        return None
    try:
        return AppState(root, app, env).find(live).version
    except HeadwayError:
        return None


def _health(figures: dict[str, Any], current: dict[str, Any]) -> str:
    if current.get("stopped"):
        return "stopped"
    if current.get("maintenance"):
        return "maintenance"
    up = figures.get("up_proxy")
    if up is None:
        return "unknown"
    return "up" if up >= 1.0 else "down"


def _recent_alerts(root: Path, app: str, env: str, limit: int = 15) -> list[dict[str, Any]]:
    path = alert_history_path(root, f"{app}/{env}")
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[-limit:]
    out = []
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _restores(path: Path, limit: int = 5) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in reversed(path.read_text().splitlines()[-limit:]):
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _ago(value: str | float | None) -> str:
    from datetime import datetime

    if value in (None, ""):
        return "-"
    try:
        t = float(value) if isinstance(value, int | float) else datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return str(value)
    span = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            return f"{int(span // size)}{unit} ago"
    return f"{int(span)}s ago"


def _chart(points: list[tuple[float, float]], now: float, label: str, *, factor: float = 1.0,
           floor: float = 0.0, width: int = 560, height: int = 110) -> dict[str, Any]:
    """An SVG line chart of the last hour: polylines (broken at gaps), its highest and its latest value. The
    y scale reaches at least `floor`, so a flat zero draws at the bottom, not as a full-height line."""
    since = now - 3600
    pts = [(t, v) for t, v in points if since <= t <= now]
    highest = max((v for _, v in pts), default=0.0)
    top = max(highest, floor) or 1.0
    lines: list[str] = []
    run: list[str] = []
    last_t = None
    for t, v in pts:
        if last_t is not None and t - last_t > 150:
            if len(run) > 1:
                lines.append(" ".join(run))
            run = []
        run.append(f"{(t - since) / 3600 * width:.1f},{height - 4 - v / top * (height - 12):.1f}")
        last_t = t
    if len(run) > 1:
        lines.append(" ".join(run))
    dots = [run[0]] if len(run) == 1 else []
    return {"lines": lines, "dots": dots, "width": width, "height": height,
            "top": label.format(highest * factor) if pts else "no data",
            "latest": label.format(pts[-1][1] * factor) if pts else "-"}
