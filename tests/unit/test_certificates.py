"""Certificate checks and the certificate store, without Docker or a CA."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from headway.proxy.acme import LETSENCRYPT, LETSENCRYPT_STAGING, AcmeIssuer, CertificateError, directory_url
from headway.proxy.certificates import CertificateMeta, CertificateStore, check_certificate

NOW = datetime.datetime.now(datetime.UTC)


def make(names: list[str], *, start: float = -1, days: float = 90) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW + datetime.timedelta(days=start))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_a_good_certificate_is_described() -> None:
    cert, key = make(["shop.example.com", "www.shop.example.com"])
    checked = check_certificate(cert, key, ["shop.example.com"], what="t")
    assert checked.domains == ["shop.example.com", "www.shop.example.com"]
    assert checked.uncovered == [] and checked.not_after > NOW


def test_wildcards_cover_one_label() -> None:
    cert, key = make(["*.example.com"])
    checked = check_certificate(cert, key, ["shop.example.com", "example.com", "a.b.example.com"], what="t")
    assert checked.uncovered == ["example.com", "a.b.example.com"]


def test_expired_and_not_yet_valid_are_refused() -> None:
    cert, key = make(["shop.example.com"], start=-100, days=-2)
    with pytest.raises(CertificateError, match="expired on") as info:
        check_certificate(cert, key, ["shop.example.com"], what="t")
    assert info.value.fix
    cert, key = make(["shop.example.com"], start=3, days=90)
    with pytest.raises(CertificateError, match="not valid before"):
        check_certificate(cert, key, ["shop.example.com"], what="t")


def test_key_of_another_certificate_is_refused() -> None:
    cert, _ = make(["shop.example.com"])
    _, other = make(["shop.example.com"])
    with pytest.raises(CertificateError, match="does not belong"):
        check_certificate(cert, other, ["shop.example.com"], what="t")


def test_not_pem_and_encrypted_keys_are_refused() -> None:
    cert, key = make(["shop.example.com"])
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        check_certificate(b"hello", key, [], what="t")
    with pytest.raises(CertificateError, match="not a PEM private key"):
        check_certificate(cert, b"hello", [], what="t")
    loaded = serialization.load_pem_private_key(key, password=None)
    locked = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(CertificateError, match="passphrase"):
        check_certificate(cert, locked, [], what="t")


def test_store_installs_private_files_and_restores(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path)
    first = check_certificate(*make(["a.example.com"]), ["a.example.com"], what="t")
    meta = CertificateMeta(domains=first.domains, issuer=first.issuer, serial=first.serial,
                           not_before=first.not_before, not_after=first.not_after, source="custom", installed_at=NOW)
    assert store.install("app--production", first, meta) is None
    stored = store.get("app--production")
    assert stored is not None and stored.meta.serial == first.serial
    assert stored.privkey.stat().st_mode & 0o777 == 0o600 and stored.dir.stat().st_mode & 0o777 == 0o700
    second = check_certificate(*make(["a.example.com"]), ["a.example.com"], what="t")
    previous = store.install("app--production", second, meta.model_copy(update={"serial": second.serial}))
    assert previous is not None and store.get("app--production").meta.serial == second.serial
    store.restore("app--production", previous)
    assert stored.fullchain.read_bytes() == first.fullchain_pem
    assert store.get("app--production").meta.serial == first.serial
    assert [c.key for c in store.all()] == ["app--production"]
    assert CertificateStore.route_paths("app--production") == ("certs/app--production/fullchain.pem",
                                                               "certs/app--production/privkey.pem")


def test_which_ca() -> None:
    assert directory_url(None, False) == LETSENCRYPT
    assert directory_url(None, True) == LETSENCRYPT_STAGING
    assert directory_url("https://ca.internal/acme/directory", True) == "https://ca.internal/acme/directory"


def test_wildcards_are_refused_before_asking_the_ca(tmp_path: Path) -> None:
    issuer = AcmeIssuer(tmp_path, "https://127.0.0.1:9/dir")
    with pytest.raises(CertificateError, match="DNS-01") as info:
        issuer.issue(["*.example.com"])
    assert "certificate and key" in (info.value.fix or "")


def test_renewal_schedule_is_a_cron_file_for_the_host(tmp_path: Path) -> None:
    from headway.proxy.certificates import install_renewal_schedule, renewal_cron, renewal_scheduled

    state, cron, logs = tmp_path / "state dir", tmp_path / "cron.d", tmp_path / "log"
    text = renewal_cron(state, logs)
    [job] = [line for line in text.splitlines() if line and not line.startswith(("#", "SHELL", "PATH"))]
    minute, hours, *_ = job.split()
    assert 0 <= int(minute) < 60 and len(hours.split(",")) == 2
    assert f"--state-dir '{state}' tls renew --quiet" in job and str(logs / "tls-renew.log") in job
    assert " root " in job and text.endswith("\n")
    assert not renewal_scheduled(state, cron)
    path = install_renewal_schedule(state, cron, logs)
    assert path.name == "headway-tls" and path.stat().st_mode & 0o777 == 0o644 and path.read_text() == text
    assert renewal_scheduled(state, cron) and not renewal_scheduled(tmp_path / "other", cron)
