"""TLS against real components: certificates issued by Pebble over HTTP-01, served by headway's nginx, checked by
Python's TLS client; renewal on the host; failures that change nothing; custom certificates."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from bench.loadgen import SteadyLoad
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.acme_support import acme_ca_bundle_fixture, pebble_fixture  # noqa: F401

from headway.errors import ProxyError
from headway.proxy.acme import CertificateError
from headway.proxy.certificates import CertificateStore, renew_due

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


# -- a TLS client that connects to the proxy's HTTPS port and asks for a host name (SNI) -------------------------
@dataclass
class Served:
    status: int
    headers: dict[str, str]
    body: str
    certificate: x509.Certificate
    version: str | None

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def names(self) -> list[str]:
        san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return list(san.get_values_for_type(x509.DNSName))


def https_get(port: int, host: str, cafile: Path, path: str = "/") -> Served:
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    conn._create_connection = lambda address, *args: socket.create_connection(("127.0.0.1", port), *args)
    try:
        conn.request("GET", path)
        assert conn.sock is not None  # the peer's certificate, before a `Connection: close` answer detaches it
        der = conn.sock.getpeercert(binary_form=True)
        version = conn.sock.version()
        response = conn.getresponse()
        body = response.read().decode()
        return Served(response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                      x509.load_der_x509_certificate(der), version)
    finally:
        conn.close()


def http_get(port: int, host: str, path: str = "/") -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def enable_tls(app, domain: str, tls: str) -> None:
    """Give the app's production environment a domain and a `tls:` block."""
    app.edit_config("  production:\n", f"  production:\n    domains: [{domain}]\n    tls: {tls}\n")


def acme_tls(pebble) -> str:
    return json.dumps({"acme_directory": pebble.directory, "email": "ops@example.com"})


def domain_for(app) -> str:
    return f"{app.name}-{uuid.uuid4().hex[:4]}.test"


def cert_files(proxy, app) -> dict[str, bytes]:
    return cert_files_in(proxy.state_dir / "proxy" / "certs" / f"{app.name}--production")


def cert_files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and not p.name.startswith(".")}


# -- (a) issued over ACME before the first switch, served by nginx, checked by a TLS client ----------------------
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_deploy_with_tls_issues_and_serves_a_certificate(tiny_app, proxy, pebble, acme_ca_bundle):
    domain = domain_for(tiny_app)
    enable_tls(tiny_app, domain, acme_tls(pebble))
    hw = tiny_app.headway()
    outcome = hw.deploy(version="v1")
    assert outcome.record.outcome == "live"

    served = https_get(proxy.https_port, domain, pebble.root)
    assert served.names == [domain]
    assert served.status == 200 and json.loads(served.body)["release"] == "v1"
    assert served.headers["strict-transport-security"].startswith("max-age=")
    assert served.version in ("TLSv1.2", "TLSv1.3")
    # Pebble's short-lived certificate, as recorded on the host
    meta = json.loads(cert_files(proxy, tiny_app)["meta.json"])
    assert meta["source"] == "acme" and meta["domains"] == [domain] and meta["acme_directory"] == pebble.directory
    assert int(meta["serial"], 16) == served.serial
    key = proxy.state_dir / "proxy" / "certs" / f"{tiny_app.name}--production" / "privkey.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    # challenge files are removed once the CA has looked
    assert list((proxy.state_dir / "proxy" / "acme" / ".well-known" / "acme-challenge").iterdir()) == []

    # plain HTTP on the host name: a permanent redirect to HTTPS
    status, headers = http_get(proxy.http_port, domain, "/some/path?q=1")
    assert status == 301
    assert headers["location"] == f"https://{domain}:{proxy.https_port}/some/path?q=1"
    # the ACME challenge path is still answered over plain HTTP (renewals need it)
    status, _ = http_get(proxy.http_port, domain, "/.well-known/acme-challenge/missing")
    assert status == 404

    # Mozilla intermediate: nothing older than TLS 1.2
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(pebble.root))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw, \
            pytest.raises(ssl.SSLError) as refused:
        old.wrap_socket(raw, server_hostname=domain).close()
    if "NO_PROTOCOLS_AVAILABLE" not in str(refused.value):  # else this client cannot even offer TLS 1.1
        assert "VERSION" in str(refused.value).upper(), refused.value

    # a redeploy keeps a certificate that is not due... Pebble's are (7 days < 30), so it gets a fresh one
    hw.deploy(version="v2")
    again = https_get(proxy.https_port, domain, pebble.root)
    assert json.loads(again.body)["release"] == "v2" and again.names == [domain]
    assert again.serial != served.serial

    # `headway tls status` lists it, without a headway.yml
    status_cli = run_cli(proxy, "tls", "status", "--json")
    assert status_cli.returncode == 0, status_cli.stderr
    [listed] = [c for c in json.loads(status_cli.stdout)["certificates"]
                if c["route"] == f"{tiny_app.name}--production"]
    assert listed["domains"] == [domain] and listed["source"] == "acme" and listed["in_use"]
    assert 6 < listed["days_left"] <= pebble.validity_days


def run_cli(proxy, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`headway` as cron runs it on the host: from a directory without headway.yml."""
    base = {k: v for k, v in os.environ.items() if k != "HEADWAY_ACME_CA_BUNDLE"}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd="/", text=True, capture_output=True,
                          env={**base, "HEADWAY_STATE_DIR": str(proxy.state_dir), **(env or {})}, timeout=120)


# -- (b) renewal on the host swaps the certificate without failing a request --------------------------------------
def test_renewal_swaps_certificate_without_failing_a_request(tiny_app, proxy, pebble, acme_ca_bundle):
    domain = domain_for(tiny_app)
    enable_tls(tiny_app, domain, acme_tls(pebble))
    tiny_app.headway().deploy(version="v1")
    before = https_get(proxy.https_port, domain, pebble.root)

    https_results: list[str] = []
    stop = threading.Event()

    def https_loop() -> None:
        while not stop.is_set() and len(https_results) < 5000:
            try:
                served = https_get(proxy.https_port, domain, pebble.root)
                https_results.append("ok" if served.status == 200 else f"status {served.status}")
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                https_results.append(f"{type(exc).__name__}: {exc}")

    client = threading.Thread(target=https_loop, daemon=True)
    with SteadyLoad(tiny_app.url(), rate=100, max_seconds=60) as load:
        client.start()
        load.wait_for(50)
        # the command cron runs: no headway.yml, no HEADWAY_ACME_CA_BUNDLE (the CA bundle is in the meta)
        renewed = run_cli(proxy, "tls", "renew", "--json")
        load.wait_for(load.result.sent + 50)
        stop.set()
        client.join(timeout=20)
    assert renewed.returncode == 0, renewed.stderr
    [result] = [r for r in json.loads(renewed.stdout) if r["route"] == f"{tiny_app.name}--production"]
    assert result["status"] == "renewed", result

    after = https_get(proxy.https_port, domain, pebble.root)
    assert after.serial != before.serial and after.names == [domain]
    assert after.certificate.not_valid_after_utc >= before.certificate.not_valid_after_utc
    assert load.result.failed == 0, load.result.summary()
    assert https_results and set(https_results) == {"ok"}, [r for r in https_results if r != "ok"][:5]

    last = json.loads(run_cli(proxy, "tls", "status", "--json").stdout)["last_renewal"]
    assert {r["route"]: r["status"] for r in last["results"]}[f"{tiny_app.name}--production"] == "renewed"

    # nothing due within 0 days: nothing renewed, nothing reloaded
    quiet = renew_due(proxy.proxy, within_days=0)
    assert {r.status for r in quiet if r.key == f"{tiny_app.name}--production"} == {"not-due"}
    assert https_get(proxy.https_port, domain, pebble.root).serial == after.serial


# -- (c) failing issuance: clear error before the switch; failing renewal: old certificate keeps serving ---------
def test_failing_issuance_stops_the_deploy_before_the_switch(tiny_app, proxy, pebble, acme_ca_bundle):
    tiny_app.headway().deploy(version="v1")
    domain = domain_for(tiny_app)
    pebble.servfail(domain)  # the CA cannot resolve it
    enable_tls(tiny_app, domain, acme_tls(pebble))
    result = tiny_app.cli("deploy", "-e", "production", "--version", "v2")
    assert result.returncode == ProxyError.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert f"validation of {domain} failed" in result.stderr
    assert "DNS A record points to this host" in result.stderr and "fix:" in result.stderr
    # live traffic untouched: v1 serves, on the same route, without TLS; no certificate stored
    hw = tiny_app.headway()
    assert json.loads(http_get_body(tiny_app.url()))["release"] == "v1"
    route = proxy.proxy.routes.get(tiny_app.name, "production")
    assert route is not None and route.release == "v1" and route.tls is None and route.domains == []
    assert hw.state.current().live == 1 and hw.state.history()[-1].outcome == "failed"
    assert CertificateStore(proxy.state_dir / "proxy").get(f"{tiny_app.name}--production") is None


def http_get_body(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=5).text


def test_failing_renewal_keeps_serving_the_old_certificate(tiny_app, proxy, pebble, acme_ca_bundle):
    domain = domain_for(tiny_app)
    enable_tls(tiny_app, domain, acme_tls(pebble))
    tiny_app.headway().deploy(version="v1")
    before = https_get(proxy.https_port, domain, pebble.root)
    files = cert_files(proxy, tiny_app)

    pebble.servfail(domain)  # e.g. the DNS record was changed meanwhile
    failed = run_cli(proxy, "tls", "renew")
    assert failed.returncode == ProxyError.exit_code, failed.stderr
    assert "Traceback" not in failed.stderr
    assert f"validation of {domain} failed" in failed.stderr and "fix:" in failed.stderr

    results = [r for r in renew_due(proxy.proxy) if r.key == f"{tiny_app.name}--production"]
    assert [r.status for r in results] == ["failed"], results
    assert "resolve" in (results[0].error or "") and results[0].fix and "DNS A record" in results[0].fix
    assert cert_files(proxy, tiny_app) == files
    assert https_get(proxy.https_port, domain, pebble.root).serial == before.serial

    pebble.clear_servfail(domain)  # fixed: the next scheduled run renews
    [ok] = [r for r in renew_due(proxy.proxy) if r.key == f"{tiny_app.name}--production"]
    assert ok.status == "renewed"
    assert https_get(proxy.https_port, domain, pebble.root).serial != before.serial


# -- (d) custom certificates: accepted when good, refused with a clear error when expired ------------------------
def make_certificate(directory: Path, domain: str, *, days: float, name: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for `domain` signed by it, valid from a day ago for `days` (negative: expired)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"headway test CA {name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=400))
          .not_valid_after(now + datetime.timedelta(days=400))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    start = now - datetime.timedelta(days=1) + (datetime.timedelta(days=days) if days < 0 else datetime.timedelta())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start - datetime.timedelta(days=30) if days < 0 else start)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / f"{name}.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (directory / f"{name}.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    (directory / f"{name}-ca.pem").write_bytes(ca.public_bytes(pem))
    return directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}-ca.pem"


def test_custom_certificate_accepted_and_expired_one_refused(tiny_app, proxy):
    domain = domain_for(tiny_app)
    certs = tiny_app.root / "certs"
    _, _, ca = make_certificate(certs, domain, days=200, name="good")
    enable_tls(tiny_app, domain, "{certificate: certs/good.pem, key: certs/good.key}")
    tiny_app.headway().deploy(version="v1")
    served = https_get(proxy.https_port, domain, ca)
    assert served.names == [domain] and json.loads(served.body)["release"] == "v1"
    files = cert_files(proxy, tiny_app)
    assert json.loads(files["meta.json"])["source"] == "custom"

    make_certificate(certs, domain, days=-3, name="old")
    tiny_app.edit_config("certs/good.pem, key: certs/good.key", "certs/old.pem, key: certs/old.key")
    result = tiny_app.cli("deploy", "-e", "production", "--version", "v2")
    assert result.returncode == ProxyError.exit_code, result.stderr
    assert "the certificate expired on" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr
    # nothing changed: same files, same certificate served, v1 live
    assert cert_files(proxy, tiny_app) == files
    again = https_get(proxy.https_port, domain, ca)
    assert again.serial == served.serial and json.loads(again.body)["release"] == "v1"
    assert tiny_app.headway().state.current().live == 1

    # a key that is not the certificate's: refused the same way, by the library call too
    make_certificate(certs, domain, days=200, name="other")
    tiny_app.edit_config("certs/old.pem, key: certs/old.key", "certs/good.pem, key: certs/other.key")
    with pytest.raises(CertificateError, match="does not belong to the certificate"):
        tiny_app.headway().deploy(version="v3")
    assert cert_files(proxy, tiny_app) == files


# -- reuse: a certificate with more than 30 days left is kept without asking the CA ------------------------------
def test_certificate_with_time_left_is_kept_without_asking_the_ca(tmp_path, docker_engine):
    from headway.config.resolve import load_target
    from headway.proxy.certificates import CertificateMeta, check_certificate, ensure_certificate
    from headway.proxy.nginx import Proxy

    proxy = Proxy(docker_engine, tmp_path / "state")
    proxy.dir.mkdir(parents=True)
    (proxy.dir / "settings.json").write_text(json.dumps({"name": f"headway-proxy-absent-{uuid.uuid4().hex[:6]}"}))
    directory = "https://127.0.0.1:9/dir"  # nothing listens there: any request to the CA would fail
    (tmp_path / "headway.yml").write_text(
        "app: keep\nroles: {web: {port: 8000}}\nenvironments:\n  production:\n    domains: [keep.test]\n"
        f"    tls: {{acme_directory: '{directory}', hsts: false}}\n")
    cert, key, _ = make_certificate(tmp_path / "made", "keep.test", days=60, name="acme")
    checked = check_certificate(cert.read_bytes(), key.read_bytes(), ["keep.test"], what="test")
    store = CertificateStore(proxy.dir)
    store.install("keep--production", checked, CertificateMeta(
        domains=checked.domains, issuer=checked.issuer, serial=checked.serial, not_before=checked.not_before,
        not_after=checked.not_after, source="acme", acme_directory=directory,
        installed_at=datetime.datetime.now(datetime.UTC)))
    before = cert_files_in(store.get("keep--production").dir)

    tls = ensure_certificate(load_target("production", tmp_path / "headway.yml"), proxy)
    assert tls is not None
    assert (tls.certificate, tls.key, tls.hsts, tls.redirect) == (
        "certs/keep--production/fullchain.pem", "certs/keep--production/privkey.pem", False, True)
    assert cert_files_in(store.get("keep--production").dir) == before

    # another domain set needs a new certificate, and issuing one needs the proxy (it answers the challenge)
    (tmp_path / "headway.yml").write_text((tmp_path / "headway.yml").read_text().replace(
        "[keep.test]", "[keep.test, www.keep.test]"))
    with pytest.raises(ProxyError, match="proxy is not running"):
        ensure_certificate(load_target("production", tmp_path / "headway.yml"), proxy)
    # no TLS, no certificate
    (tmp_path / "headway.yml").write_text("app: keep\nroles: {web: {port: 8000}}\nenvironments: {production: {}}\n")
    assert ensure_certificate(load_target("production", tmp_path / "headway.yml"), proxy) is None


# -- the agent's dashboard on a domain: its own certificate from the CA, HSTS, behind the same proxy --------------
def test_the_dashboard_on_a_domain_is_served_over_tls(proxy, pebble, acme_ca_bundle, docker_engine):
    from headway.observe.agent import DASHBOARD_APP, DASHBOARD_ENV, Agent, AgentSettings
    from headway.observe.dashboard import Dashboard
    from tests.conftest import free_port

    domain = f"dash-{uuid.uuid4().hex[:6]}.test"
    board = Dashboard(proxy.state_dir, docker_engine)
    server = board.serve("127.0.0.1", free_port())
    agent = Agent(docker_engine, proxy.state_dir)
    try:
        url = agent.publish_dashboard(AgentSettings(
            dashboard_port=server.server.server_address[1], dashboard_domain=domain,
            dashboard_tls={"acme_directory": pebble.directory, "email": "ops@example.com"}))
        assert url == f"https://{domain}/"
        served = https_get(proxy.https_port, domain, pebble.root, "/login")
        assert served.status == 200 and "Log in" in served.body
        assert served.names == [domain]
        assert served.headers["strict-transport-security"].startswith("max-age=")
        assert "Secure" in served.headers["set-cookie"] and "HttpOnly" in served.headers["set-cookie"]
        status, headers = http_get(proxy.http_port, domain, "/login")
        assert status == 301 and headers["location"].startswith(f"https://{domain}")
    finally:
        server.close()
        agent.publish_dashboard(AgentSettings(dashboard_port=0))
    assert proxy.proxy.routes.get(DASHBOARD_APP, DASHBOARD_ENV) is None
