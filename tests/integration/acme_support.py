"""Fixtures for the TLS tests (imported by tests/integration/test_tls.py): Pebble, Let's Encrypt's test ACME
server, validating HTTP-01 against the test proxy, with pebble-challtestsrv answering its DNS queries."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.receivers import self_signed

PEBBLE_VALIDITY_DAYS = 7  # short-lived: every certificate Pebble issues is due for renewal (< 30 days left)


def _loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _await_listening(port: int, proc: subprocess.Popen[bytes], log: Path, deadline: float = 15.0) -> None:
    """Poll until the process accepts TCP connections on `port` (neither program signals readiness)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port} within {deadline:g}s:\n{log.read_text()[-2000:]}")


@dataclass
class Pebble:
    directory: str  # the ACME directory URL
    ca_bundle: Path  # trusts Pebble's HTTPS (HEADWAY_ACME_CA_BUNDLE)
    root: Path  # the root Pebble issues under, for TLS clients checking a served certificate
    validity_days: float
    dns_management: str  # pebble-challtestsrv's management URL

    def _dns(self, path: str, body: dict[str, object]) -> None:
        request = urllib.request.Request(f"{self.dns_management}{path}", data=json.dumps(body).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200, f"challtestsrv {path}: {response.status}"

    def servfail(self, host: str) -> None:
        """DNS queries for `host` fail (SERVFAIL): the CA cannot resolve it."""
        self._dns("/set-servfail", {"host": host})

    def clear_servfail(self, host: str) -> None:
        self._dns("/clear-servfail", {"host": host})


def _start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"`{argv[0]}` is needed for this test; run scripts/bootstrap.sh (Debian package pebble)")
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session", name="pebble")
def pebble_fixture(proxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """Pebble validating HTTP-01 against the test proxy's HTTP port; every name resolves to 127.0.0.1."""
    work = tmp_path_factory.mktemp("pebble")
    dns_port, dns_management = _udp_port(), _loopback_port()
    challtestsrv = _start(["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                           "-tlsalpn01", "", "-management", f"127.0.0.1:{dns_management}",
                           "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], work / "challtestsrv.log")
    pebble_proc = None
    try:
        _await_listening(dns_management, challtestsrv, work / "challtestsrv.log")
        cert, key = self_signed(work, "pebble test https", days=2, stem="https")  # Pebble's own HTTPS
        listen, management = _loopback_port(), _loopback_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{listen}", "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(cert), "privateKey": str(key), "httpPort": proxy.http_port,
            "tlsPort": _loopback_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "certificateValidityPeriod": PEBBLE_VALIDITY_DAYS * 86400}}
        (work / "pebble.json").write_text(json.dumps(config))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": "0",
               "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        pebble_proc = _start(["pebble", "-config", str(work / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
                             work / "pebble.log", env)
        _await_listening(listen, pebble_proc, work / "pebble.log")
        _await_listening(management, pebble_proc, work / "pebble.log")
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{management}/roots/0", context=context, timeout=10) as r:
            (work / "pebble-root.pem").write_bytes(r.read())
        yield Pebble(directory=f"https://127.0.0.1:{listen}/dir", ca_bundle=cert, root=work / "pebble-root.pem",
                     validity_days=PEBBLE_VALIDITY_DAYS, dns_management=f"http://127.0.0.1:{dns_management}")
    finally:
        if pebble_proc is not None:
            _stop(pebble_proc)
        _stop(challtestsrv)


@pytest.fixture(name="acme_ca_bundle")
def acme_ca_bundle_fixture(pebble: Pebble, monkeypatch: pytest.MonkeyPatch) -> Path:
    """headway (in this process and in `headway` subprocesses) trusts Pebble's HTTPS."""
    monkeypatch.setenv("HEADWAY_ACME_CA_BUNDLE", str(pebble.ca_bundle))
    return pebble.ca_bundle
