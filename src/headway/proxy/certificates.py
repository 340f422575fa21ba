"""TLS certificates of the routes on this host: issued over ACME or given as files, kept beside the proxy config.

STATE/proxy/certs/<route key>/ holds `fullchain.pem`, `privkey.pem` (0600) and `meta.json` (domains, issuer,
serial, validity, source `acme` or `custom`, and for ACME the directory and contact to renew with). Renewal reads
only this and the route table, so it runs on the host from a schedule, with no headway.yml and no laptop.

Files change only after the new certificate has been checked (parses, key matches, covers the domains, valid
now), and the pair is swapped while holding the proxy's lock, so nginx never loads a certificate with the other
one's key. A failed issuance or renewal leaves the old files, and what nginx serves, as they were.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import shlex
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from headway.errors import HeadwayError, ProxyError
from headway.proxy.acme import (
    CA_BUNDLE_ENV,
    AcmeIssuer,
    CertificateError,
    directory_url,
    write_private,
)
from headway.proxy.routes import Route, RouteTls
from headway.release.report import Reporter

if TYPE_CHECKING:
    from headway.config.resolve import Target
    from headway.proxy.nginx import Proxy

CRON_DIR = Path("/etc/cron.d")
RENEW_BEFORE_DAYS = 30  # a certificate with less left than this is renewed (Let's Encrypt's are 90 days)
FULLCHAIN = "fullchain.pem"
PRIVKEY = "privkey.pem"
META = "meta.json"
LAST_RUN = "last-renewal.json"
CRON_FILE = "headway-tls"  # in /etc/cron.d; cron skips names with a dot

__all__ = ["CertificateError", "CertificateMeta", "CertificateStore", "RenewResult", "StoredCertificate",
           "ensure_certificate", "install_renewal_schedule", "renew_due", "renewal_cron", "renewal_scheduled",
           "route_tls_for"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CertificateMeta(BaseModel):
    domains: list[str]
    issuer: str
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    source: Literal["acme", "custom"]
    acme_directory: str | None = None
    email: str | None = None
    ca_bundle: str | None = None
    installed_at: datetime.datetime

    def days_left(self, now: datetime.datetime | None = None) -> float:
        return (self.not_after - (now or _now())).total_seconds() / 86400


@dataclass(frozen=True)
class StoredCertificate:
    key: str  # the route key, APP--ENV
    dir: Path
    meta: CertificateMeta

    @property
    def fullchain(self) -> Path:
        return self.dir / FULLCHAIN

    @property
    def privkey(self) -> Path:
        return self.dir / PRIVKEY


@dataclass(frozen=True)
class Checked:
    """A certificate chain and key that passed every check, with what headway records about them."""

    fullchain_pem: bytes
    key_pem: bytes
    domains: list[str]  # the DNS names it covers
    issuer: str
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    uncovered: list[str]  # requested names it does not cover


def check_certificate(fullchain_pem: bytes, key_pem: bytes, domains: list[str], *, what: str,
                      now: datetime.datetime | None = None) -> Checked:
    """Parse and check a chain and its key: PEM, key matches the first certificate, valid now. Raises with a fix."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or _now()
    try:
        chain = x509.load_pem_x509_certificates(fullchain_pem)
    except ValueError as exc:
        raise CertificateError(f"{what}: the certificate file is not a PEM certificate chain ({exc})",
                               "give the PEM file that starts with -----BEGIN CERTIFICATE----- (the server "
                               "certificate first, then the intermediates)") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateError(f"{what}: the private key is protected by a passphrase",
                               "nginx reloads without a person present: give the key unencrypted "
                               "(`openssl pkey -in key.pem -out plain.pem`), readable by root only") from None
    except ValueError as exc:
        raise CertificateError(f"{what}: the key file is not a PEM private key ({exc})",
                               "give the PEM file that starts with -----BEGIN PRIVATE KEY-----") from None
    leaf = chain[0]
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != leaf.public_key().public_bytes(*public):
        raise CertificateError(f"{what}: the private key does not belong to the certificate "
                               f"({leaf.subject.rfc4514_string()})",
                               "give the key the certificate was issued for, and the server certificate first in "
                               "the chain file")
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_after <= now:
        raise CertificateError(f"{what}: the certificate expired on {not_after:%Y-%m-%d %H:%M} UTC",
                               "get a new certificate (or use ACME: remove `certificate` and `key` under `tls:`); "
                               "nothing was changed")
    if not_before > now:
        raise CertificateError(f"{what}: the certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC",
                               "check the certificate's dates and this host's clock")
    try:
        names = list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                     .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    uncovered = [d for d in domains if not any(_matches(pattern, d) for pattern in names)]
    return Checked(fullchain_pem=fullchain_pem, key_pem=key_pem, domains=names, issuer=leaf.issuer.rfc4514_string(),
                   serial=format(leaf.serial_number, "x"), not_before=not_before, not_after=not_after,
                   uncovered=uncovered)


def _matches(pattern: str, name: str) -> bool:
    """Whether a certificate name covers a host name; a wildcard covers exactly one label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        label, rest = name.split(".", 1)
        return label != "*" and rest == pattern[2:]
    return False


class CertificateStore:
    """The certificates on this host, one directory per route key."""

    def __init__(self, proxy_dir: Path, lock: Callable[[], AbstractContextManager[None]] | None = None) -> None:
        self.proxy_dir = proxy_dir
        self.dir = proxy_dir / "certs"
        self._lock = lock

    @staticmethod
    def route_paths(key: str) -> tuple[str, str]:
        """Certificate and key as the route names them: relative to the proxy's directory."""
        return f"certs/{key}/{FULLCHAIN}", f"certs/{key}/{PRIVKEY}"

    def get(self, key: str) -> StoredCertificate | None:
        d = self.dir / key
        if not (d / META).is_file() or not (d / FULLCHAIN).is_file() or not (d / PRIVKEY).is_file():
            return None
        return StoredCertificate(key, d, CertificateMeta.model_validate_json((d / META).read_text()))

    def all(self) -> list[StoredCertificate]:
        if not self.dir.is_dir():
            return []
        return [c for c in (self.get(p.name) for p in sorted(self.dir.iterdir()) if p.is_dir()) if c is not None]

    @contextmanager
    def issuing(self, key: str) -> Iterator[None]:
        """One issuance per route key at a time (a deploy and a scheduled renewal may meet)."""
        d = self.dir / key
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def install(self, key: str, checked: Checked, meta: CertificateMeta) -> dict[str, bytes] | None:
        """Make `checked` the route's certificate; returns the previous files (for `restore`), if any."""
        d = self.dir / key
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        os.chmod(d, 0o700)
        files = {FULLCHAIN: checked.fullchain_pem, PRIVKEY: checked.key_pem, META: meta.model_dump_json(indent=2)
                 .encode()}
        previous = {name: (d / name).read_bytes() for name in files if (d / name).is_file()}
        self._write(d, files)
        return previous if len(previous) == len(files) else None

    def restore(self, key: str, previous: dict[str, bytes]) -> None:
        self._write(self.dir / key, previous)

    def _write(self, d: Path, files: dict[str, bytes]) -> None:
        staged = []
        for name, data in files.items():
            tmp = d / f".{name}.new"
            write_private(tmp, data)
            staged.append((tmp, d / name))
        with self._lock() if self._lock is not None else _nothing():
            for tmp, final in staged:
                os.replace(tmp, final)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _store(proxy: Proxy) -> CertificateStore:
    return CertificateStore(proxy.dir, lock=proxy._locked)


def route_tls_for(key: str, hsts: bool = True, redirect: bool = True) -> RouteTls:
    certificate, private_key = CertificateStore.route_paths(key)
    return RouteTls(certificate=certificate, key=private_key, hsts=hsts, redirect=redirect)


def _meta(checked: Checked, source: Literal["acme", "custom"], *, directory: str | None = None,
          email: str | None = None, ca_bundle: str | None = None) -> CertificateMeta:
    return CertificateMeta(domains=checked.domains, issuer=checked.issuer, serial=checked.serial,
                           not_before=checked.not_before, not_after=checked.not_after, source=source,
                           acme_directory=directory, email=email, ca_bundle=ca_bundle, installed_at=_now())


def _info(reporter: Reporter | None, message: str) -> None:
    if reporter is not None:
        reporter.info(message)


# -- during a deploy -------------------------------------------------------------------------------------
def ensure_certificate(target: Target, proxy: Proxy, reporter: Reporter | None = None) -> RouteTls | None:
    """The environment's certificate, ready in the store before traffic moves; None when it has no TLS.

    Custom files are checked and copied in. With ACME, a stored certificate for the same domains from the same CA
    with more than 30 days left is kept; otherwise a new one is issued (the proxy must be running: it answers the
    CA's HTTP-01 challenge).
    """
    options = target.tls
    if options is None:
        return None
    if not target.domains:
        raise HeadwayError(f"{target.app}/{target.environment}: tls needs `domains`",
                           "list the host names under the environment's `domains:`")
    key = f"{target.app}--{target.environment}"
    for route in proxy.routes.all().values():  # refused at the switch anyway: ask no CA for it
        taken = [d for d in target.domains if d in route.domains]
        if route.key != key and taken:
            raise ProxyError(f"domain {taken[0]} is already served by {route.app}/{route.environment}",
                             f"pick another domain for {target.app}/{target.environment}, or remove "
                             f"{route.app}/{route.environment} first")
    store = _store(proxy)
    tls = route_tls_for(key, hsts=options.hsts, redirect=options.redirect)
    if options.certificate is not None and options.key is not None:
        checked = _read_custom(target.root / options.certificate, target.root / options.key, target.domains,
                               f"tls.certificate {options.certificate}")
        for name in checked.uncovered:
            _info(reporter, f"warning: the certificate does not cover {name}; browsers will refuse it there")
        left = (checked.not_after - _now()).days
        if left <= RENEW_BEFORE_DAYS:
            _info(reporter, f"warning: the certificate expires in {left} days and headway cannot renew it: replace "
                            "the files named under `tls:` and deploy again")
        with store.issuing(key):
            existing = store.get(key)
            if existing is None or existing.fullchain.read_bytes() != checked.fullchain_pem or \
                    existing.privkey.read_bytes() != checked.key_pem:
                store.install(key, checked, _meta(checked, "custom"))
        _info(reporter, f"custom certificate for {', '.join(checked.domains)}, valid until "
                        f"{checked.not_after:%Y-%m-%d}")
        return tls

    directory = directory_url(options.acme_directory, options.staging)
    with store.issuing(key):
        existing = store.get(key)
        if existing is not None and _reusable(existing, target.domains, directory):
            _info(reporter, f"certificate kept: {', '.join(existing.meta.domains)} valid until "
                            f"{existing.meta.not_after:%Y-%m-%d} ({existing.meta.days_left():.0f} days left)")
            return tls
        if not proxy.is_running():
            raise ProxyError("the headway proxy is not running, and it answers the CA's HTTP-01 challenge",
                             "run `headway proxy boot`")
        ca_bundle = os.environ.get(CA_BUNDLE_ENV) or None
        issuer = AcmeIssuer(proxy.dir, directory, email=options.email, ca_bundle=ca_bundle,
                            http_port=proxy.settings().http_port)
        _info(reporter, f"requesting a certificate for {', '.join(target.domains)} from {directory}")
        issued = issuer.issue(list(target.domains))
        checked = check_certificate(issued.fullchain_pem, issued.key_pem, target.domains,
                                    what=f"the certificate issued for {', '.join(target.domains)}")
        if checked.uncovered:
            raise CertificateError(f"the CA issued a certificate that does not cover {', '.join(checked.uncovered)}",
                                   "nothing was changed; report this to the CA")
        store.install(key, checked, _meta(checked, "acme", directory=directory, email=options.email,
                                          ca_bundle=os.path.abspath(ca_bundle) if ca_bundle else None))
        _info(reporter, f"certificate issued for {', '.join(checked.domains)}, valid until "
                        f"{checked.not_after:%Y-%m-%d}")
    if not renewal_scheduled(proxy.dir.parent.resolve(), CRON_DIR):
        _info(reporter, "warning: nothing renews certificates on this host yet: run `headway tls schedule "
                        "--install` once (a cron job running `headway tls renew`)")
    return tls


def _reusable(existing: StoredCertificate, domains: list[str], directory: str) -> bool:
    meta = existing.meta
    if meta.source != "acme" or meta.acme_directory != directory or set(meta.domains) != set(domains):
        return False
    if meta.days_left() <= RENEW_BEFORE_DAYS:
        return False
    try:
        check_certificate(existing.fullchain.read_bytes(), existing.privkey.read_bytes(), domains, what="stored")
    except CertificateError:
        return False
    return True


def _read_custom(cert_path: Path, key_path: Path, domains: list[str], what: str) -> Checked:
    for path, name in ((cert_path, "certificate"), (key_path, "key")):
        if not path.is_file():
            raise CertificateError(f"{what}: the {name} file {path} does not exist",
                                   f"fix tls.{name} in headway.yml (paths are relative to headway.yml)")
    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{what}: cannot read {exc.filename}: {exc.strerror}",
                               "run headway as a user that can read the certificate and key") from None
    return check_certificate(cert_pem, key_pem, domains, what=what)


# -- on a schedule ---------------------------------------------------------------------------------------
@dataclass
class RenewResult:
    key: str
    domains: list[str]
    status: Literal["renewed", "not-due", "failed", "custom", "unused"]
    not_after: datetime.datetime  # of the certificate served now (the new one when renewed)
    previous_not_after: datetime.datetime | None = None
    error: str | None = None
    fix: str | None = None

    @property
    def days_left(self) -> float:
        return (self.not_after - _now()).total_seconds() / 86400

    def as_dict(self) -> dict[str, Any]:
        return {"route": self.key, "domains": self.domains, "status": self.status,
                "not_after": self.not_after.isoformat(),
                "previous_not_after": self.previous_not_after.isoformat() if self.previous_not_after else None,
                "days_left": round(self.days_left, 1), "error": self.error, "fix": self.fix}


def renew_due(proxy: Proxy, within_days: int = RENEW_BEFORE_DAYS, reporter: Reporter | None = None,
              *, ca_bundle: str | None = None) -> list[RenewResult]:
    """Renew every ACME certificate on this host that expires within `within_days`, then reload the proxy once.

    Needs only the state directory: domains, CA and contact come from each certificate's meta.json, and a
    certificate is renewed only while a route serves it. A certificate that fails to renew keeps serving (its
    result says why); so does every certificate when the reloaded config does not validate.
    """
    store = _store(proxy)
    routes = proxy.routes.all()
    results: list[RenewResult] = []
    renewed: list[tuple[RenewResult, dict[str, bytes] | None]] = []
    running: bool | None = None
    for cert in store.all():
        meta = cert.meta
        result = RenewResult(cert.key, meta.domains, "not-due", meta.not_after)
        results.append(result)
        if not _serves(routes.get(cert.key), cert.key):
            result.status = "unused"
            continue
        if meta.days_left() > within_days:
            continue
        if meta.source == "custom":
            result.status = "custom"
            _info(reporter, f"warning: the custom certificate of {cert.key} expires {meta.not_after:%Y-%m-%d}; "
                            "replace the files named under `tls:` and deploy")
            continue
        if running is None:
            running = proxy.is_running()
        if not running:
            result.status, result.error = "failed", "the headway proxy is not running (it answers the CA's challenge)"
            result.fix = "run `headway proxy boot`"
            continue
        try:
            previous = _renew_one(proxy, store, cert, ca_bundle, reporter)
        except HeadwayError as exc:
            result.status, result.error, result.fix = "failed", exc.message, exc.fix
            _info(reporter, f"renewal of {cert.key} failed; its current certificate keeps serving: {exc.message}")
            continue
        now_meta = store.get(cert.key)
        result.status, result.previous_not_after = "renewed", meta.not_after
        result.not_after = now_meta.meta.not_after if now_meta is not None else meta.not_after
        renewed.append((result, previous))
    if renewed:
        try:
            proxy.apply(lambda routes: None)  # the new files' digest goes into the routing: served from the next
            # handshake on, without a reload
        except HeadwayError as exc:
            for result, previous in renewed:
                if previous is not None:
                    store.restore(result.key, previous)
                result.status, result.fix = "failed", exc.fix
                result.error = f"the proxy did not take the renewed certificate: {exc.message}"
                result.not_after = result.previous_not_after or result.not_after
    _record_run(store, within_days, results)
    return results


def _record_run(store: CertificateStore, within_days: int, results: list[RenewResult]) -> None:
    """The last renewal run, for `headway tls status` (did the schedule run, did it work)."""
    if not store.dir.is_dir():
        return
    body = {"at": _now().isoformat(timespec="seconds"), "within_days": within_days,
            "results": [r.as_dict() for r in results]}
    tmp = store.dir / ".last-renewal.json.tmp"
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, store.dir / LAST_RUN)


def last_renewal_run(proxy: Proxy) -> dict[str, Any] | None:
    path = proxy.dir / "certs" / LAST_RUN
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _serves(route: Route | None, key: str) -> bool:
    return route is not None and route.tls is not None and \
        (route.tls.certificate, route.tls.key) == CertificateStore.route_paths(key)


def _renew_one(proxy: Proxy, store: CertificateStore, cert: StoredCertificate, ca_bundle: str | None,
               reporter: Reporter | None) -> dict[str, bytes] | None:
    meta = cert.meta
    if not meta.acme_directory:
        raise CertificateError(f"{cert.key}: the stored certificate does not say which CA issued it",
                               "deploy the environment once more; headway records it then")
    with store.issuing(cert.key):
        current = store.get(cert.key)
        if current is not None and current.meta.serial != meta.serial:
            return None  # renewed meanwhile (by a deploy)
        issuer = AcmeIssuer(proxy.dir, meta.acme_directory, email=meta.email,
                            ca_bundle=ca_bundle or meta.ca_bundle, http_port=proxy.settings().http_port)
        _info(reporter, f"renewing {cert.key} ({', '.join(meta.domains)}), expires {meta.not_after:%Y-%m-%d}")
        issued = issuer.issue(list(meta.domains))
        checked = check_certificate(issued.fullchain_pem, issued.key_pem, meta.domains,
                                    what=f"the certificate issued for {', '.join(meta.domains)}")
        if checked.uncovered:
            raise CertificateError(f"the CA issued a certificate that does not cover {', '.join(checked.uncovered)}",
                                   "nothing was changed; report this to the CA")
        return store.install(cert.key, checked, _meta(checked, "acme", directory=meta.acme_directory,
                                                     email=meta.email, ca_bundle=meta.ca_bundle))


def certificate_report(proxy: Proxy) -> list[dict[str, Any]]:
    """What `headway tls status` shows: every certificate on the host, whether a route serves it, days left."""
    routes = proxy.routes.all()
    out = []
    for cert in _store(proxy).all():
        meta = cert.meta
        out.append({"route": cert.key, "domains": meta.domains, "source": meta.source, "issuer": meta.issuer,
                    "serial": meta.serial, "not_after": meta.not_after.isoformat(),
                    "days_left": round(meta.days_left(), 1), "in_use": _serves(routes.get(cert.key), cert.key),
                    "renews": meta.source == "acme", "acme_directory": meta.acme_directory})
    return out


# -- the schedule: the host's cron runs `headway tls renew` ----------------------------------------------------------
def renewal_cron(state_root: Path, log_dir: Path) -> str:
    """A cron file that renews every certificate on the host twice a day, at a minute of its own (spreading the
    load on the CA, as Let's Encrypt asks). It needs the state directory only: no headway.yml, no laptop."""
    from headway.data.schedule import headway_command

    seed = int(hashlib.sha256(socket.gethostname().encode()).hexdigest(), 16)
    minute, hour = seed % 60, (seed // 60) % 12
    argv = [*headway_command(), "--state-dir", str(state_root), "tls", "renew", "--quiet"]
    log = log_dir / "tls-renew.log"
    return "\n".join([
        f"# headway: TLS certificate renewal for every app on this host (state in {state_root})",
        "# written by `headway tls schedule --install`; renews ACME certificates with 30 days or less left",
        "SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "",
        f"{minute} {hour},{hour + 12} * * * root {' '.join(shlex.quote(a) for a in argv)} >> "
        f"{shlex.quote(str(log))} 2>&1", ""])


def install_renewal_schedule(state_root: Path, cron_dir: Path, log_dir: Path) -> Path:
    path = cron_dir / CRON_FILE
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cron_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(renewal_cron(state_root, log_dir))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def renewal_scheduled(state_root: Path, cron_dir: Path) -> bool:
    """Whether the host's cron renews the certificates kept under `state_root`."""
    path = cron_dir / CRON_FILE
    try:
        text = path.read_text()
    except OSError:
        return False
    return any(not line.startswith("#") and "tls renew" in line and
               f"--state-dir {shlex.quote(str(state_root))} " in line for line in text.splitlines())
