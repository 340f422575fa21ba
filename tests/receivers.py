"""Real receivers for notifications, run in the test process on 127.0.0.1: an HTTP server that records what it
is sent, and an SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that records every request and answers from `answers` (path -> status, content type, body)."""

    port: int
    requests: list[Request] = field(default_factory=list)
    answers: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


@contextlib.contextmanager
def http_receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 (a free port) recording every POST, in a thread, for the `with` block."""
    rec = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            rec.requests.append(Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, ctype, answer = rec.answers.get(self.path, (200, "text/plain", b"ok"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(5)



def self_signed(directory: Path, common_name: str = "headway test smtp", *, days: int = 1,
                stem: str = "smtp") -> tuple[Path, Path]:
    """A self-signed CA certificate for 127.0.0.1 and localhost, and its key: <stem>.crt, <stem>.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Mailbox:
    port: int
    ca_file: Path
    offers: str  # the AUTH mechanism offered, or "any"
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # mechanism, user, accepted


@contextlib.contextmanager
def smtp_server(tmp_path: Path, offers: str = "any", implicit_tls: bool = False, *, user: str = "alerts",
                password: str) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1 with a self-signed certificate: STARTTLS required (or TLS from the first byte), then
    AUTH as `user`/`password` (offering PLAIN, LOGIN or any); every accepted message kept in the Mailbox."""
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox(port, cert, offers)
    exclude = {"PLAIN": ["LOGIN"], "LOGIN": ["PLAIN"], "any": []}[offers]

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            box.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, given = auth_data.login.decode(), auth_data.password.decode()
        accepted = login == user and given == password
        box.logins.append((mechanism, login, accepted))
        return AuthResult(success=accepted, handled=False)

    # aiosmtpd counts only STARTTLS as TLS for `auth_require_tls`; with ssl_context every byte is TLS already
    tls: dict[str, Any] = ({"ssl_context": server_tls, "auth_require_tls": False} if implicit_tls
                           else {"tls_context": server_tls, "require_starttls": True, "auth_require_tls": True})
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, auth_required=True,
                            authenticator=authenticator, auth_exclude_mechanism=exclude, **tls)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
