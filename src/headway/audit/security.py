"""Security: TLS, what is open on the host, what the image holds and runs as, how strong and well kept the secrets
are, what the app answers a stranger. Evidence names a secret, its length or where it was found: never its value.
"""

from __future__ import annotations

import gzip
import http.client
import io
import math
import re
import shutil
import socket
import ssl
import stat
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headway.audit.checks import AuditContext, Check, Result, check, failed, passed, unknown
from headway.config.secrets import secrets_path_for
from headway.engine import labels as L

if TYPE_CHECKING:
    from headway.engine.base import Engine

CHECKS: list[Check] = []
HSTS_MIN_DAYS = 14
MIN_SCANNED = 8  # shorter secret values are not looked for in images: they would match by chance
DB_IMAGES = ("postgres", "mysql", "mariadb", "redis", "mongo", "memcached", "valkey", "keydb", "elasticsearch",
             "opensearch", "rabbitmq", "cassandra", "clickhouse", "couchdb", "influxdb")
DB_PORTS = {5432, 3306, 6379, 27017, 11211, 9200, 5672, 9042, 8123, 5984, 8086}
DOCS_PATHS = ("/docs", "/swagger", "/swagger-ui", "/api-docs", "/openapi.json", "/redoc")
EVIL_ORIGIN = "https://evil.example"
AUTO_UPGRADES = Path("/etc/apt/apt.conf.d/20auto-upgrades")


# -- TLS ------------------------------------------------------------------------------------------------------
@check(CHECKS, "security.tls", "TLS with HSTS and time left", "warning")
def tls(ctx: AuditContext) -> Result:
    t = ctx.target
    if not t.domains:
        return failed(f"no domains: served as plain HTTP on port {t.port}" if t.port else "no domains",
                      f"add environments.{ctx.env}.domains and tls: true, then `headway deploy -e {ctx.env}`")
    if t.tls is None:
        return failed(f"{', '.join(t.domains)} served over plain HTTP: logins and cookies travel in the clear",
                      f"environments.{ctx.env}.tls: true (Let's Encrypt), then `headway deploy -e {ctx.env}`",
                      severity="critical")
    from headway.proxy.certificates import CertificateStore

    key = f"{t.app}--{ctx.env}"
    cert = CertificateStore(ctx.state_root / "proxy").get(key)
    if cert is None:
        return unknown(f"no certificate for {key} on this host (not deployed here yet?)",
                       f"`headway deploy -e {ctx.env}` issues it")
    route = ctx.proxy.routes.get(t.app, ctx.env)
    hsts = route.tls.hsts if route is not None and route.tls is not None else t.tls.hsts
    left = cert.meta.days_left(ctx.now)
    evidence = f"{cert.meta.source} certificate for {', '.join(cert.meta.domains)}: {left:.0f} days left, " \
               f"HSTS {'on' if hsts else 'off'}"
    if left <= HSTS_MIN_DAYS:
        return failed(evidence + f" (renewal is due at 30; under {HSTS_MIN_DAYS} means it is failing)",
                      "`headway tls renew`, and `headway tls schedule --install` on the host",
                      severity="critical" if left <= 3 else None)
    if not hsts:
        return failed(evidence, f"environments.{ctx.env}.tls.hsts: true")
    return passed(evidence)


# -- ports ----------------------------------------------------------------------------------------------------
def listening_ports(proc: Path = Path("/proc/net")) -> list[tuple[str, int]] | None:
    """(address, port) of every listening TCP socket of this host's network namespace; None when unreadable."""
    out: list[tuple[str, int]] = []
    read_any = False
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        read_any = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            out.append((_address(addr_hex), int(port_hex, 16)))
    return sorted(set(out)) if read_any else None


def _address(hexed: str) -> str:
    raw = bytes.fromhex(hexed)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1",) or addr.startswith("::ffff:127.")


def _ssh_ports() -> set[int]:
    ports = {22}
    try:
        for line in Path("/etc/ssh/sshd_config").read_text().splitlines():
            m = re.match(r"\s*Port\s+(\d+)", line)
            if m:
                ports.add(int(m.group(1)))
    except OSError:
        pass
    return ports


def expected_ports(ctx: AuditContext) -> dict[int, str]:
    settings = ctx.proxy.settings()
    out = {p: "SSH" for p in _ssh_ports()}
    out[settings.http_port] = "the proxy (HTTP)"
    out[settings.https_port] = "the proxy (HTTPS)"
    for route in ctx.proxy.routes.all().values():
        if route.port:
            out[route.port] = f"the proxy: {route.app}/{route.environment}"
    if ctx.target.port:
        out[ctx.target.port] = f"the proxy: {ctx.target.app}/{ctx.env}"
    return out


@check(CHECKS, "security.ports", "only the expected ports open", "warning")
def ports(ctx: AuditContext) -> Result:
    found = listening_ports()
    if found is None:
        return unknown("/proc/net/tcp is not readable here")
    expected = expected_ports(ctx)
    published = {}
    if ctx.engine is not None:
        for p in ctx.engine.published_ports(None):
            published[p["public"]] = p["container"]
    extra = sorted({port for addr, port in found if not is_loopback(addr) and port not in expected})
    if not extra:
        return passed("listening beyond loopback: " + ", ".join(f"{p} ({expected[p]})" for p in sorted(
            {port for addr, port in found if not is_loopback(addr)})) or "nothing")
    shown = [f"{p} ({'container ' + published[p] if p in published else 'a host process'})" for p in extra[:12]]
    more = f" and {len(extra) - 12} more" if len(extra) > 12 else ""
    return failed(f"open beyond SSH and the proxy: {', '.join(shown)}{more}",
                  "bind them to 127.0.0.1 or stop them; `headway server bootstrap` sets a firewall that drops the "
                  "rest")


@check(CHECKS, "security.db-exposed", "no database or cache port published to the world", "critical")
def db_exposed(ctx: AuditContext) -> Result:
    if ctx.engine is None:
        return ctx.no_engine()
    mine = ctx.engine.published_ports(L.selector(app=ctx.target.app, environment=ctx.env))
    bad = []
    for p in mine:
        kind = p["labels"].get(L.KIND, "")
        image = p["image"].rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        db_like = kind in ("accessory", "database") or image in DB_IMAGES or p["private"] in DB_PORTS
        if db_like and p["ip"] in ("0.0.0.0", "::", ""):
            bad.append(f"{p['container']} publishes {p['private']}/{p['proto']} on {p['ip'] or '0.0.0.0'}:"
                       f"{p['public']}")
    if bad:
        return failed("; ".join(bad) + ": reachable from anywhere the host is",
                      "remove the published port (the app reaches it on the environment's network), or bind it to "
                      "127.0.0.1; connect from a laptop with `headway db shell` or an SSH tunnel")
    return passed(f"{len(mine)} port(s) published by {ctx.target.app}/{ctx.env}, none of a database on all "
                  "addresses")


# -- images ---------------------------------------------------------------------------------------------------
def audited_images(ctx: AuditContext) -> list[str]:
    """The images of the live release; before any deploy, the newest build of each repository of the app."""
    if "images" in ctx.cache:
        return list(ctx.cache["images"])
    rec = ctx.live_record
    refs: list[str] = sorted({*rec.images.values(), rec.image} - {""}) if rec is not None else []
    if not refs and ctx.engine is not None:
        seen: set[str] = set()
        for image in ctx.engine.images(L.selector(app=ctx.target.app, kind="image")):
            if not image["tags"]:
                continue
            repo = image["tags"][0].rpartition(":")[0]
            if repo not in seen:
                seen.add(repo)
                refs.append(image["tags"][0])
    ctx.cache["images"] = refs
    return refs


def _images_to_audit(ctx: AuditContext) -> tuple[Engine, list[str]] | Result:
    """The engine and the images an image check reads, or why there are none to read."""
    if ctx.engine is None:
        return ctx.no_engine()
    refs = audited_images(ctx)
    if not refs:
        return unknown("no image built or deployed yet", f"`headway build -e {ctx.env}` or deploy first")
    return ctx.engine, refs


@check(CHECKS, "security.non-root", "images run as a non-root user", "warning")
def non_root(ctx: AuditContext) -> Iterator[Result]:
    found = _images_to_audit(ctx)
    if isinstance(found, Result):
        yield found
        return
    engine, refs = found
    for ref in refs:
        config = engine.image_config(ref)
        if config is None:
            yield unknown(f"{ref} is not on this host", subject=ref)
            continue
        user = config["user"]
        if user.split(":", 1)[0] in ("", "root", "0"):
            yield failed(f"{ref} runs as {user or 'root (no USER)'}: a hole in the app is root in the container",
                         "add `RUN useradd --uid 10001 app` and `USER app` to the Dockerfile's last stage",
                         subject=ref)
        else:
            yield passed(f"{ref} runs as {user}", subject=ref)


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (a `docker save` stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Prefixed(io.RawIOBase):
    """`head` then the rest of `rest`: a stream whose first bytes were read to tell what it is."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[:len(data)] = data
        return len(data)


def _scan_stream(fh: IO[bytes], needles: dict[str, bytes]) -> set[str]:
    """Names of the `needles` whose bytes occur in `fh` (read in 1 MiB chunks, across chunk boundaries)."""
    keep = max((len(v) for v in needles.values()), default=1) - 1
    tail, found = b"", set[str]()
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            return found
        window = tail + chunk
        for name, value in needles.items():
            if name not in found and value in window:
                found.add(name)
        tail = window[-keep:] if keep > 0 else b""


def _blob_name(member: str) -> str:
    m = re.search(r"([0-9a-f]{64})", member)
    return f"layer sha256:{m.group(1)[:12]}" if m else member


def scan_saved_image(chunks: Iterable[bytes], needles: dict[str, bytes]) -> list[tuple[str, str]]:
    """(secret name, where) for every secret value found in a `docker save` stream: in a file of a layer
    ("layer sha256:…12: path/in/image") or in the image's config or manifest (its build history included)."""
    hits: list[tuple[str, str]] = []
    with tarfile.open(fileobj=io.BufferedReader(_Chunks(chunks), 1 << 20), mode="r|") as outer:
        for member in outer:
            if not member.isfile():
                continue
            fh = outer.extractfile(member)
            if fh is None:
                continue
            head = fh.read(512)
            stream: IO[bytes] = io.BufferedReader(_Prefixed(head, fh), 1 << 20)
            unpacked: Any = None
            if head[:2] == b"\x1f\x8b":
                unpacked = gzip.GzipFile(fileobj=stream)
            elif head[:4] == b"\x28\xb5\x2f\xfd":
                import zstandard

                unpacked = zstandard.ZstdDecompressor().stream_reader(stream)
            if unpacked is not None:  # a compressed layer: look at what it holds
                head = unpacked.read(512)
                stream = io.BufferedReader(_Prefixed(head, unpacked), 1 << 20)
            if head[257:262] == b"ustar":
                where = _blob_name(member.name)
                with tarfile.open(fileobj=stream, mode="r|") as layer:
                    for inner in layer:
                        if inner.isfile():
                            content = layer.extractfile(inner)
                            if content is not None:
                                hits += [(n, f"{where}: /{inner.name.lstrip('./')}")
                                         for n in sorted(_scan_stream(content, needles))]
            else:
                what = "image config or manifest" if member.name.endswith(".json") or head[:1] == b"{" else "file"
                hits += [(n, f"{what} ({_blob_name(member.name)}, build history included)")
                         for n in sorted(_scan_stream(stream, needles))]
    return hits


def _secret_values(ctx: AuditContext) -> tuple[dict[str, bytes], list[str]]:
    """The environment's secret values (commands run) that are long enough to look for, and the short ones."""
    secrets = ctx.target.secrets
    secrets.fetch()
    long = {n: v.encode() for n, v in secrets.items() if len(v) >= MIN_SCANNED}
    return long, sorted(n for n, v in secrets.items() if len(v) < MIN_SCANNED)


@check(CHECKS, "security.image-secrets", "no secret value in the images", "critical")
def image_secrets(ctx: AuditContext) -> Iterator[Result]:
    found = _images_to_audit(ctx)
    if isinstance(found, Result):
        yield found
        return
    engine, refs = found
    needles, short = _secret_values(ctx)
    if not needles:
        yield passed("the environment has no secret values to look for" + (
            f" ({len(short)} shorter than {MIN_SCANNED} characters not looked for)" if short else ""))
        return
    note = f"; not looked for (shorter than {MIN_SCANNED}): {', '.join(short)}" if short else ""
    for ref in refs:
        config = engine.image_config(ref)
        if config is None:
            yield unknown(f"{ref} is not on this host", subject=ref)
            continue
        hits: list[tuple[str, str]] = []
        for item in config["env"]:
            key, _, value = item.partition("=")
            hits += [(n, f"image ENV {key}") for n, v in needles.items() if v in value.encode()]
        for key, value in config["labels"].items():
            hits += [(n, f"image LABEL {key}") for n, v in needles.items() if v in str(value).encode()]
        hits += scan_saved_image(engine.save_image(ref), needles)
        if hits:
            shown = sorted({f"{n} in {w}" for n, w in hits})
            more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
            yield failed(f"{ref}: {'; '.join(shown[:8])}{more}: whoever can pull the image has the secret",
                         "stop baking it in (no COPY of .headway/ or .env, no ARG/ENV with it; pass it with "
                         f"`secrets:`), rotate it (`headway secrets generate NAME -e {ctx.env}`), rebuild and deploy",
                         subject=ref)
        else:
            yield passed(f"{ref}: none of {len(needles)} secret value(s) in its layers, ENV, labels or build "
                         f"history{note}", subject=ref)


# -- the secrets themselves -----------------------------------------------------------------------------------
@check(CHECKS, "security.secrets-file", "the secrets file is private and not in git", "critical")
def secrets_file(ctx: AuditContext) -> Result | None:
    if ctx.from_bundle:
        return ctx.no_repository()
    path = secrets_path_for(ctx.target.config, ctx.env, ctx.target.root)
    if not path.exists():
        return None if not ctx.target.secrets else passed(f"no {path.name}: every secret comes from a command")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return failed(f"{path} has mode {mode:o}: other users of this machine can read it", f"`chmod 600 {path}`")
    root = ctx.target.root
    in_git = _in_git(root)
    if in_git:
        tracked = _git(root, "ls-files", "--error-unmatch", str(path))
        if tracked == 0:
            return failed(f"{path} is committed to git: every clone has the secrets",
                          f"`git rm --cached {path}`, add .headway/ to .gitignore, and rotate every secret in it "
                          f"(`headway secrets generate NAME -e {ctx.env}`)")
        if _git(root, "check-ignore", "-q", str(path)) != 0:
            return failed(f"{path} (mode {mode:o}) is not ignored by git: one `git add .` from a commit",
                          "add .headway/ to .gitignore", severity="warning")
    return passed(f"{path}: mode {mode:o}" + (", ignored by git" if in_git else ""))


def _in_git(root: Path) -> bool:
    return shutil.which("git") is not None and _git(root, "rev-parse", "--git-dir") == 0


def _git(root: Path, *args: str) -> int:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=20).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


_SECRET_NAME = re.compile(r"SECRET|KEY|TOKEN|PASSWORD|PASSWD|PASS$")
_WEAK = ("password", "changeme", "change_me", "secret", "123456", "qwerty", "admin", "letmein", "example")


def min_length(name: str) -> int:
    """What the guides ask of a secret called `name`: 64 for a JWT signing secret, 32 for other keys and
    secrets, 16 for passwords and tokens."""
    upper = name.upper()
    if "JWT" in upper:
        return 64
    if "SECRET" in upper or "KEY" in upper:
        return 32
    return 16


def entropy_bits(value: str) -> float:
    """A conservative estimate of a value's entropy: the Shannon entropy of its characters times its length."""
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    per_char = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())
    return per_char * len(value)


def strength(name: str, value: str) -> tuple[str, str | None]:
    """("ok" | "weak" | "guessable", why) for one secret; `why` never contains the value."""
    need = min_length(name)
    bits = entropy_bits(value)
    lowered = value.lower()
    if len(value) < 8 or bits < 40 or any(w in lowered for w in _WEAK) and bits < 100:
        return "guessable", f"{name}: {len(value)} characters, ~{bits:.0f} bits"
    if len(value) < need:
        return "weak", f"{name}: {len(value)} characters (at least {need})"
    if bits < min(128.0, need * 3.0):
        return "weak", f"{name}: {len(value)} characters but ~{bits:.0f} bits (repetitive)"
    return "ok", None


@check(CHECKS, "security.secret-strength", "secrets are long and random", "warning")
def secret_strength(ctx: AuditContext) -> Result | None:
    secrets = ctx.target.secrets
    names = [n for n in secrets.available() if _SECRET_NAME.search(n.upper())]
    if not names:
        return None
    secrets.fetch(names)
    verdicts = {n: strength(n, secrets[n]) for n in names if n in secrets}
    guessable = [why for v, why in verdicts.values() if v == "guessable" and why]
    weak = [why for v, why in verdicts.values() if v == "weak" and why]
    fix = f"`headway secrets generate NAME -e {ctx.env}` (64 random bytes), then deploy"
    if guessable:
        return failed("guessable: " + "; ".join(guessable) + ("; weak: " + "; ".join(weak) if weak else ""),
                      fix, severity="critical")
    if weak:
        return failed("weak: " + "; ".join(weak), fix)
    return passed(", ".join(f"{n} ({len(secrets[n])} characters)" for n in verdicts))


# -- what the app answers a stranger --------------------------------------------------------------------------
def _probe_base(ctx: AuditContext) -> tuple[str, int, str] | None:
    """(scheme, port, host name) to reach the environment through the proxy on this host; None: no route."""
    route = ctx.proxy.routes.get(ctx.target.app, ctx.env)
    if route is None or not route.upstreams:
        return None
    settings = ctx.proxy.settings()
    host = route.domains[0] if route.domains else "localhost"
    if route.port:
        return "http", route.port, host
    if route.tls is not None:
        return "https", settings.https_port, host
    return "http", settings.http_port, host


def request(ctx: AuditContext, method: str, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str]]:
    """One request to the environment through the proxy on 127.0.0.1: (status, headers in lower case)."""
    base = _probe_base(ctx)
    assert base is not None
    scheme, port, host = base
    sock = socket.create_connection(("127.0.0.1", port), timeout=ctx.probe_timeout)
    if scheme == "https":
        tls_ctx = ssl.create_default_context()
        tls_ctx.check_hostname = False
        tls_ctx.verify_mode = ssl.CERT_NONE  # what is asked is the app's answer, not the certificate's trust
        sock = tls_ctx.wrap_socket(sock, server_hostname=host)
    conn = http.client.HTTPConnection(host, port, timeout=ctx.probe_timeout)
    conn.sock = sock
    try:
        conn.request(method, path, headers={"Host": host, "User-Agent": "headway-doctor", **(headers or {})})
        resp = conn.getresponse()
        resp.read(1 << 16)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def _no_route(ctx: AuditContext) -> Result:
    return unknown(f"{ctx.target.app}/{ctx.env} is not served by the proxy on this host",
                   f"`headway deploy -e {ctx.env}`, then run the audit again")


@check(CHECKS, "security.cors", "CORS does not allow any origin", "warning")
def cors(ctx: AuditContext) -> Result:
    if _probe_base(ctx) is None:
        return _no_route(ctx)
    seen = []
    for method, path in (("OPTIONS", "/"), ("GET", "/")):
        try:
            status, headers = request(ctx, method, path, {"Origin": EVIL_ORIGIN,
                                                          "Access-Control-Request-Method": "POST"})
        except OSError as exc:
            return unknown(f"the proxy did not answer ({exc})")
        allowed = headers.get("access-control-allow-origin")
        seen.append(f"{method} / → {status}, Access-Control-Allow-Origin: {allowed or '(none)'}")
        if allowed == "*" or allowed == EVIL_ORIGIN:
            creds = headers.get("access-control-allow-credentials", "").lower() == "true"
            return failed(f"Origin {EVIL_ORIGIN}: {seen[-1]}" + (" with credentials" if creds else "") +
                          ": any web page can call the API from its visitors' browsers",
                          "allow only your own origins in the app's CORS settings (e.g. "
                          "allow_origins=[\"https://app.example.com\"])",
                          severity="critical" if creds else None)
    return passed("; ".join(seen))


def _is_production_like(name: str) -> bool:
    return not any(w in name for w in ("stag", "dev", "test", "preview", "qa", "uat", "sandbox"))


@check(CHECKS, "security.api-docs", "API docs not public", "warning")
def api_docs(ctx: AuditContext) -> Result:
    if _probe_base(ctx) is None:
        return _no_route(ctx)
    public = []
    for path in DOCS_PATHS:
        try:
            status, _ = request(ctx, "GET", path)
        except OSError as exc:
            return unknown(f"the proxy did not answer ({exc})")
        if status == 200:
            public.append(path)
    severity = None if _is_production_like(ctx.env) else "info"
    if public:
        return failed(f"{', '.join(public)} answer 200 to anyone: the whole API is mapped for an attacker",
                      "turn the docs off in production (FastAPI: docs_url=None, redoc_url=None, openapi_url=None) "
                      "or put them behind a login", severity=severity)
    return passed(f"none of {', '.join(DOCS_PATHS)} answers 200", severity=severity)


# -- the host -------------------------------------------------------------------------------------------------
@check(CHECKS, "security.firewall", "a firewall drops what is not served", "warning")
def firewall(ctx: AuditContext) -> Result:
    nft = shutil.which("nft")
    fix = "`headway server bootstrap USER@HOST` (nftables: SSH, HTTP(S) and the published ports only)"
    if nft is None:
        return unknown("nft is not installed here (headway's firewall is the nftables table `inet headway`)", fix)
    try:
        run = subprocess.run([nft, "list", "table", "inet", "headway"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return unknown(f"`nft list` failed ({exc})", fix)
    if run.returncode == 0:
        if "policy drop" in run.stdout:
            return passed("nftables table inet headway: input policy drop")
        return failed("nftables table inet headway exists but does not drop by default", fix)
    err = (run.stderr or "").lower()
    if "no such file" in err or "does not exist" in err:
        return failed("no nftables table inet headway: every listening port is open to the world", fix)
    return unknown(f"`nft list table inet headway`: {(run.stderr or '').strip()[:120] or 'failed'}", fix)


@check(CHECKS, "security.upgrades", "unattended security upgrades on", "warning")
def upgrades(ctx: AuditContext) -> Result:
    fix = "`headway server bootstrap USER@HOST` (turns on unattended-upgrades)"
    if not AUTO_UPGRADES.parent.parent.is_dir():
        return unknown("not a Debian or Ubuntu host (no /etc/apt)")
    try:
        text = AUTO_UPGRADES.read_text()
    except FileNotFoundError:
        return failed(f"{AUTO_UPGRADES} is absent: security updates wait for someone to install them", fix)
    except OSError as exc:
        return unknown(f"{AUTO_UPGRADES}: {exc.strerror}")
    m = re.search(r'APT::Periodic::Unattended-Upgrade\s+"(\d+)"', text)
    if m is None or m.group(1) == "0":
        return failed(f"{AUTO_UPGRADES} does not turn Unattended-Upgrade on", fix)
    if not any(Path(d, "unattended-upgrade").exists() for d in ("/usr/bin", "/usr/sbin")):
        return failed(f"{AUTO_UPGRADES} turns it on, but the unattended-upgrades package is not installed", fix)
    return passed(f"{AUTO_UPGRADES}: Unattended-Upgrade \"{m.group(1)}\"")

