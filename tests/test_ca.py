"""The offline CA: keys 0600, certificates as TLS expects them, idempotent issuing,
and check_cert's problems (expired, renewal window, names, wrong CA)."""

from __future__ import annotations

import datetime as dt
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from airlift import ca, cli

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ca_dir(tmp_path):
    directory = tmp_path / "ca"
    ca.init(directory, now=NOW)
    return directory


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_private_key_and_a_path_length_zero_signing_ca(ca_dir):
    assert mode(ca_dir / "ca.key") == 0o600
    cert = load(ca_dir / "ca.crt")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    before = (ca_dir / "ca.key").read_bytes()
    ca.init(ca_dir)   # a second init keeps the CA
    assert (ca_dir / "ca.key").read_bytes() == before


def test_init_refuses_half_a_ca(tmp_path):
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca.crt").write_text("x")
    with pytest.raises(ca.CAError, match="exists without its pair"):
        ca.init(tmp_path / "ca")


def test_an_init_killed_before_the_certificate_is_made_again(ca_dir):
    """The key is written first: a kill before the certificate leaves the key alone. It
    never signed anything, so the next init makes a new pair; once the CA has issued a
    certificate, a lost CA certificate is refused (restore it from the backup)."""
    (ca_dir / "ca.crt").unlink()
    old_key = (ca_dir / "ca.key").read_bytes()
    ca.init(ca_dir)
    assert (ca_dir / "ca.key").read_bytes() != old_key
    ca.load_ca(ca_dir)                          # a matching pair
    ca.issue_server(ca_dir, "host-1")
    (ca_dir / "ca.crt").unlink()
    with pytest.raises(ca.CAError, match="exists without its pair"):
        ca.init(ca_dir)


def test_server_certificate_has_names_usage_and_verifies_with_tls(ca_dir):
    issued = ca.issue_server(ca_dir, "lab-1", ["lab-1.example.org", "10.0.0.5"], now=NOW)
    assert issued.issued and mode(issued.key) == 0o600
    cert = load(issued.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["lab-1.example.org"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(load(ca_dir / "ca.crt"))
    # The pair loads as a TLS server identity.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)


def test_issuing_again_keeps_a_valid_certificate_and_renews_when_needed(ca_dir):
    first = ca.issue_server(ca_dir, "lab-1", ["lab-1"], days=90, now=NOW)
    pem = first.cert.read_bytes()
    assert not ca.issue_server(ca_dir, "lab-1", ["lab-1"], days=90, now=NOW).issued
    assert first.cert.read_bytes() == pem
    # Names changed: a new certificate with exactly the new names.
    renamed = ca.issue_server(ca_dir, "lab-1", ["lab-1", "10.1.1.1"], days=90, now=NOW)
    assert renamed.issued
    # Within the renewal window: renewed, with a new key.
    key = renamed.key.read_bytes()
    later = NOW + dt.timedelta(days=70)
    renewed = ca.issue_server(ca_dir, "lab-1", ["lab-1", "10.1.1.1"], days=90, now=later,
                              renew_days=30)
    assert renewed.issued and renewed.key.read_bytes() != key
    assert load(renewed.cert).not_valid_after_utc > later + dt.timedelta(days=80)


def test_client_certificate_is_for_client_auth(ca_dir):
    issued = ca.issue_client(ca_dir, "ops-console", now=NOW)
    cert = load(issued.cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH] and mode(issued.key) == 0o600
    assert not ca.issue_client(ca_dir, "ops-console", now=NOW).issued
    problems = ca.check_cert(issued.cert, [], ca_dir / "ca.crt", NOW,
                             usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    assert problems == []


@pytest.mark.parametrize("host, names, message", [
    ("../etc", [], "cannot be used"),
    ("lab-1", ["has space"], "neither an IP address nor a DNS name"),
])
def test_bad_host_or_name_is_refused_with_the_fix(ca_dir, host, names, message):
    with pytest.raises(ca.CAError, match=message):
        ca.issue_server(ca_dir, host, names, now=NOW)


def test_certificate_outliving_the_ca_is_refused(ca_dir):
    with pytest.raises(ca.CAError, match="issue for fewer days"):
        ca.issue_server(ca_dir, "lab-1", days=20000, now=NOW)


def test_check_cert_fine(ca_dir):
    issued = ca.issue_server(ca_dir, "lab-1", ["lab-1", "10.0.0.5"], now=NOW)
    assert ca.check_cert(issued.cert, ["lab-1", "10.0.0.5"], ca_dir / "ca.crt", NOW) == []


def test_check_cert_expired_and_expiring(ca_dir):
    issued = ca.issue_server(ca_dir, "lab-1", ["lab-1"], days=60, now=NOW)
    expired = ca.check_cert(issued.cert, ["lab-1"], ca_dir / "ca.crt",
                            NOW + dt.timedelta(days=61))
    assert len(expired) == 1 and "expired on" in expired[0]
    assert f"airlift ca issue-server --dir {ca_dir} --host lab-1 --name lab-1" in expired[0]
    expiring = ca.check_cert(issued.cert, ["lab-1"], ca_dir / "ca.crt",
                             NOW + dt.timedelta(days=40), renew_days=30)
    assert len(expiring) == 1 and "within the renewal window of 30 days" in expiring[0]
    assert ca.check_cert(issued.cert, ["lab-1"], ca_dir / "ca.crt",
                         NOW + dt.timedelta(days=40), renew_days=10) == []


def test_check_cert_wrong_names(ca_dir):
    issued = ca.issue_server(ca_dir, "lab-1", ["lab-1", "10.0.0.5"], now=NOW)
    problems = ca.check_cert(issued.cert, ["lab-1.example.org", "10.0.0.6", "LAB-1"],
                             ca_dir / "ca.crt", NOW)
    assert len(problems) == 1
    assert "does not name lab-1.example.org, 10.0.0.6" in problems[0]
    assert "--name lab-1.example.org --name 10.0.0.6" in problems[0]


def test_check_cert_wrong_ca(tmp_path, ca_dir):
    other = tmp_path / "other-ca"
    ca.init(other, common_name="someone else", now=NOW)
    issued = ca.issue_server(other, "lab-1", ["lab-1"], now=NOW)
    problems = ca.check_cert(issued.cert, ["lab-1"], ca_dir / "ca.crt", NOW)
    assert len(problems) == 1 and "not signed by this CA" in problems[0]
    assert "someone else" in problems[0]


def test_check_cert_unreadable_and_client_cert_as_server(tmp_path, ca_dir):
    assert "cannot read it" in ca.check_cert(tmp_path / "nope.crt", ["x"], ca_dir / "ca.crt",
                                             NOW)[0]
    client = ca.issue_client(ca_dir, "ops", now=NOW)
    problems = ca.check_cert(client.cert, [], ca_dir / "ca.crt", NOW)
    assert problems and "not a TLS server certificate" in problems[0]


def test_cli_prints_paths_never_keys(tmp_path, capsys):
    directory = str(tmp_path / "ca")
    assert cli.main(["ca", "init", "--dir", directory]) == 0
    assert cli.main(["ca", "issue-server", "--dir", directory, "--host", "lab-1",
                     "--name", "lab-1", "--name", "192.0.2.10"]) == 0
    assert cli.main(["ca", "issue-client", "--dir", directory, "--name", "ops"]) == 0
    assert cli.main(["ca", "issue-server", "--dir", directory, "--host", "lab-1",
                     "--name", "lab-1", "--name", "192.0.2.10"]) == 0
    out = capsys.readouterr()
    assert "kept" in out.out and "PRIVATE KEY" not in out.out + out.err
    assert cli.main(["ca", "issue-server", "--dir", directory, "--host", "x",
                     "--name", "not valid"]) == 2
    assert "neither an IP address" in capsys.readouterr().err


def test_an_issue_killed_between_key_and_certificate_is_issued_again(ca_dir):
    """The host's new key is written before its certificate: a kill between them leaves a
    key that does not match the certificate, which the next run replaces (never serves)."""
    first = ca.issue_server(ca_dir, "host-1")
    other = ca.issue_server(ca_dir, "host-2")
    first.key.write_bytes(other.key.read_bytes())   # the new key landed, its certificate not
    again = ca.issue_server(ca_dir, "host-1")
    assert again.issued
    key = serialization.load_pem_private_key(again.key.read_bytes(), password=None)
    assert key.public_key().public_numbers() == load(again.cert).public_key().public_numbers()
