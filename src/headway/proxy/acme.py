"""Certificates from an ACME CA (Let's Encrypt by default) over HTTP-01, answered by headway's own nginx.

The proxy serves `/.well-known/acme-challenge/` from `STATE/proxy/acme` on its HTTP port for every host name, so
a challenge is answered by writing one file there: no route, no restart, no port taken from the live site.
Before the CA is asked to look, headway fetches the file through the proxy itself, so "the proxy does not serve
it" is told apart from "the CA cannot reach this host".
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from headway.errors import ProxyError
from headway.observe.health import http_get

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
CA_BUNDLE_ENV = "HEADWAY_ACME_CA_BUNDLE"
CHALLENGE_DIR = Path("acme") / ".well-known" / "acme-challenge"  # relative to the proxy's directory
ACCOUNTS_DIR = "acme-accounts"


class CertificateError(ProxyError):
    """A certificate could not be issued, renewed or accepted; what is served stays as it was."""


@dataclass(frozen=True)
class IssuedCertificate:
    fullchain_pem: bytes
    key_pem: bytes
    directory: str


def directory_url(acme_directory: str | None, staging: bool) -> str:
    """Which CA: an explicit directory URL, else Let's Encrypt (staging when asked)."""
    if acme_directory:
        return acme_directory
    return LETSENCRYPT_STAGING if staging else LETSENCRYPT


def new_private_key_pem() -> bytes:
    """A fresh ECDSA P-256 key for a certificate (every issuance and renewal gets its own)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by root only, atomically (a reader sees the old or the new content)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class AcmeIssuer:
    """Issues one certificate per call for a set of domains, from the CA at `directory`.

    `proxy_dir` is STATE/proxy: challenge files go under its `acme/` (served by nginx), the ACME account key under
    `acme-accounts/<hash of the directory URL>/` (never served). `http_port` is the proxy's HTTP port, used to
    check that the challenge file is served before the CA is asked to validate.
    """

    def __init__(self, proxy_dir: Path, directory: str, *, email: str | None = None, ca_bundle: str | None = None,
                 http_port: int | None = None, timeout: float = 120.0) -> None:
        self.proxy_dir = proxy_dir
        self.directory = directory
        self.email = email
        self.ca_bundle = ca_bundle or os.environ.get(CA_BUNDLE_ENV) or None
        self.http_port = http_port
        self.timeout = timeout

    @property
    def challenge_dir(self) -> Path:
        return self.proxy_dir / CHALLENGE_DIR

    @property
    def account_dir(self) -> Path:
        return self.proxy_dir / ACCOUNTS_DIR / hashlib.sha256(self.directory.encode()).hexdigest()[:16]

    # -- issuing ----------------------------------------------------------------------------------------
    def issue(self, domains: list[str]) -> IssuedCertificate:
        from acme import crypto_util

        for d in domains:
            if d.startswith("*."):
                raise CertificateError(f"{d}: a wildcard certificate needs a DNS-01 challenge, which headway does "
                                       "not answer", "list each host name in `domains`, or give your own "
                                       "certificate and key under `tls:`")
        deadline = time.monotonic() + self.timeout
        try:
            client, account_key = self._client()
            key_pem = new_private_key_pem()
            csr_pem = crypto_util.make_csr(key_pem, domains)
            order = client.new_order(csr_pem)
            written: list[Path] = []
            try:
                self._answer(client, account_key, order, written)
                self._await_authorizations(client, order, deadline)
            finally:
                for path in written:
                    path.unlink(missing_ok=True)
            left = max(1.0, deadline - time.monotonic())
            finalized = client.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=left))
        except CertificateError:
            raise
        except Exception as exc:  # noqa: BLE001 - every library and network failure becomes one clear error
            raise self._explain(exc, domains) from exc
        fullchain = finalized.fullchain_pem
        if not fullchain:
            raise CertificateError(f"{self._ca()} finished the order for {', '.join(domains)} without a certificate",
                                   "try again; if it persists, the CA is misbehaving")
        return IssuedCertificate(fullchain_pem=fullchain.encode(), key_pem=key_pem, directory=self.directory)

    def _client(self) -> tuple[Any, Any]:
        import josepy as jose
        from acme import client as acme_client
        from acme import errors as acme_errors
        from acme import messages

        from headway import __version__

        account_key = self._account_key()
        # requests takes a CA bundle path where acme's signature says bool
        verify = cast(bool, self.ca_bundle) if self.ca_bundle else True
        net = acme_client.ClientNetwork(jose.JWKRSA(key=account_key), verify_ssl=verify, timeout=30,
                                        user_agent=f"headway/{__version__} acme-python")
        directory = acme_client.ClientV2.get_directory(self.directory, net)
        client = acme_client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(email=self.email, terms_of_service_agreed=True)
        try:
            account = client.new_account(registration)
            uri = account.uri
        except acme_errors.ConflictError as exc:  # this key has an account already: use it
            uri = exc.location
            net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        self._remember_account(uri)
        return client, jose.JWKRSA(key=account_key)

    def _account_key(self) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.account_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.account_dir, 0o700)
        path = self.account_dir / "account.key"
        if path.exists():
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return key

    def _remember_account(self, uri: str) -> None:
        info = {"directory": self.directory, "account": uri, "email": self.email}
        path = self.account_dir / "account.json"
        if not path.exists() or json.loads(path.read_text()) != info:
            write_private(path, json.dumps(info, indent=2).encode())

    def _answer(self, client: Any, account_key: Any, order: Any, written: list[Path]) -> None:
        from acme import challenges, messages

        self.challenge_dir.mkdir(parents=True, exist_ok=True)
        for authz in order.authorizations:
            domain = authz.body.identifier.value
            if authz.body.status == messages.STATUS_VALID:
                continue  # the CA remembers a recent validation of this name
            challb = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if challb is None:
                raise CertificateError(f"{self._ca()} offers no HTTP-01 challenge for {domain}",
                                       "headway answers HTTP-01 only; give your own certificate under `tls:`")
            response, validation = challb.response_and_validation(account_key)
            token = challb.chall.encode("token")
            path = self.challenge_dir / token
            path.write_text(validation)
            os.chmod(path, 0o644)  # nginx's workers do not run as root
            written.append(path)
            self._check_served(domain, token, validation)
            client.answer_challenge(challb, response)

    def _check_served(self, domain: str, token: str, validation: str) -> None:
        if self.http_port is None:
            return
        url = f"http://127.0.0.1:{self.http_port}/.well-known/acme-challenge/{token}"
        try:
            status, _, body = http_get(url, domain, 5.0)
        except (OSError, http.client.HTTPException) as exc:
            raise CertificateError(f"the headway proxy does not answer on port {self.http_port} ({exc}), so the CA "
                                   f"could not validate {domain}", "run `headway proxy boot`") from None
        if status != 200 or body.strip() != validation:
            raise CertificateError(f"the headway proxy does not serve the ACME challenge for {domain} "
                                   f"(GET {url} → {status})",
                                   "restart the proxy with `headway proxy boot` so it mounts the state directory, "
                                   "and check `headway proxy logs`")

    def _await_authorizations(self, client: Any, order: Any, deadline: float) -> None:
        """Poll each authorization until the CA has decided (ACME has no push), bounded by the deadline."""
        from acme import messages

        for authz in order.authorizations:
            delay = 0.1
            while authz.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                if time.monotonic() + delay > deadline:
                    raise CertificateError(f"{self._ca()} did not validate {authz.body.identifier.value} within "
                                           f"{self.timeout:.0f} s", "try again later; the CA may be slow")
                time.sleep(delay)  # the CA gives no event when it has looked
                delay = min(delay * 2, 2.0)
                authz, _ = client.poll(authz)
            if authz.body.status != messages.STATUS_VALID:
                raise self._validation_failed(authz)

    # -- errors -----------------------------------------------------------------------------------------
    def _ca(self) -> str:
        if self.directory == LETSENCRYPT:
            return "Let's Encrypt"
        if self.directory == LETSENCRYPT_STAGING:
            return "Let's Encrypt (staging)"
        return f"the ACME CA at {self.directory}"

    def _validation_fix(self) -> str:
        port = "port 80 is open"
        if self.http_port not in (None, 80):
            port += f" and forwarded to the proxy's HTTP port {self.http_port} (CAs validate on port 80)"
        return f"make sure the domain's DNS A record points to this host and {port}"

    def _validation_failed(self, authz: Any) -> CertificateError:
        domain = authz.body.identifier.value
        details = [str(c.error.detail or c.error) for c in authz.body.challenges if c.error is not None]
        why = "; ".join(details) or f"the authorization is {authz.body.status}"
        return CertificateError(f"validation of {domain} failed: {why}", self._validation_fix())

    def _explain(self, exc: Exception, domains: list[str]) -> CertificateError:
        import requests
        from acme import errors as acme_errors
        from acme import messages

        names = ", ".join(domains)
        if isinstance(exc, requests.exceptions.SSLError):
            return CertificateError(f"{self._ca()} presents an HTTPS certificate this host does not trust",
                                    f"for a private CA set {CA_BUNDLE_ENV} to the file of its root certificate",
                                    details=str(exc))
        if isinstance(exc, requests.exceptions.RequestException):
            return CertificateError(f"cannot reach {self._ca()}: {type(exc).__name__}",
                                    "check the directory URL and that this host can make outbound HTTPS requests",
                                    details=str(exc))
        if isinstance(exc, acme_errors.ValidationError):
            failed = exc.failed_authzrs
            if failed:
                return self._validation_failed(failed[0])
        if isinstance(exc, messages.Error):
            detail = exc.detail or exc.description or str(exc)
            code = exc.code or ""
            fixes = {
                "rateLimited": "wait for the limit to pass; use `tls: {staging: true}` while trying things out",
                "rejectedIdentifier": "the CA does not issue for this name: use a public domain you control, or "
                                      "give your own certificate under `tls:`",
                "caa": "the domain's CAA DNS record does not allow this CA; add one that does",
                "dns": "make sure the domain exists and its DNS A record points to this host",
                "connection": self._validation_fix(),
                "unauthorized": self._validation_fix(),
                "incorrectResponse": self._validation_fix(),
                "tls": self._validation_fix(),
                "accountDoesNotExist": f"remove {self.account_dir} so headway registers a new account",
                "externalAccountRequired": "this CA needs external account binding, which headway does not do",
            }
            return CertificateError(f"{self._ca()} refused the certificate for {names}: {detail}",
                                    fixes.get(code, "see the CA's message; nothing was changed"))
        if isinstance(exc, acme_errors.TimeoutError):
            return CertificateError(f"{self._ca()} did not issue the certificate for {names} within "
                                    f"{self.timeout:.0f} s", "try again later; the CA may be slow")
        return CertificateError(f"the certificate for {names} could not be issued: {type(exc).__name__}: {exc}",
                                "see the message; nothing was changed")
