"""An offline certificate authority on the controller, for the front door's TLS.

    CA_DIR/
      ca.key, ca.crt                       the CA (key 0600, never leaves the controller)
      hosts/<host>/server.key, server.crt  one per host: the host's own key goes to it, 0600
      clients/<name>/client.key, .crt      optional client certificates for callers

ECDSA P-256 keys (every TLS client takes them). Issuing is idempotent: a certificate that
is signed by this CA, matches the requested names and stays valid beyond the renewal
window is kept; otherwise a new key and certificate replace it (written beside and
renamed in, so a reader never sees half a file). No function returns or prints a key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY, CA_CERT = "ca.key", "ca.crt"
DEFAULT_CA_DAYS = 3650
DEFAULT_DAYS = 397          # what public CAs may issue at most; renew well before
DEFAULT_RENEW_DAYS = 30
_LABEL = re.compile(r"^(\*|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$")
_ENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class CAError(RuntimeError):
    """The CA cannot do what was asked; the message names the fix."""


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    issued: bool            # False: the existing certificate was kept


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """0600 from the first byte, renamed into place."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def _write_public(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.chmod(0o644)
    os.replace(partial, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _entity(kind: str, value: str) -> str:
    """A host or client name that is safe as a directory name."""
    if not _ENTITY.match(value or "") or ".." in value:
        raise CAError(f"{kind} {value!r} cannot be used: use letters, digits, '.', '_' or '-' "
                      "(the inventory hostname, e.g. site-a-ai-01)")
    return value


def parse_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses for a subjectAltName; a bad one names the fix."""
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        labels = str(name).rstrip(".").split(".")
        if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
            raise CAError(f"{name!r} is neither an IP address nor a DNS name: give the host's "
                          "names as they are used to reach it (host.example.org, 10.0.0.5)")
        out.append(x509.DNSName(str(name).rstrip(".").lower()))
    return out


def _name_strings(general: Iterable[x509.GeneralName]) -> set[str]:
    return {str(item.value).lower() for item in general}


# -- the CA ---------------------------------------------------------------------------


def init(ca_dir: Path, common_name: str = "airlift offline CA",
         days: int = DEFAULT_CA_DAYS, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """Make the CA key (0600) and self-signed certificate once; an existing CA is kept."""
    ca_dir = Path(ca_dir)
    if ca_dir.exists() and not ca_dir.is_dir():
        raise CAError(f"{ca_dir} is a file, not a folder: give --dir a folder for the CA "
                      "(it is made if missing)")
    key_path, cert_path = ca_dir / CA_KEY, ca_dir / CA_CERT
    if key_path.exists() and cert_path.exists():
        load_ca(ca_dir)   # fails clearly if the pair is broken
        return key_path, cert_path
    if key_path.exists() and not _issued_any(ca_dir):
        # An init killed between writing the key and its certificate: the key never
        # signed anything (issuing needs the certificate), so making the pair anew is safe.
        key_path.unlink()
    if key_path.exists() or cert_path.exists():
        present = key_path if key_path.exists() else cert_path
        raise CAError(f"{present} exists without its pair: restore the missing file from your "
                      "backup, or move the directory aside and run `airlift ca init` again "
                      "(every certificate must then be issued again)")
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    moment = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "airlift")])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - dt.timedelta(minutes=5))
            .not_valid_after(moment + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, _cert_pem(cert))
    return key_path, cert_path


def _issued_any(ca_dir: Path) -> bool:
    """Whether any host or client certificate was issued from the CA in ca_dir."""
    return any(any((Path(ca_dir) / kind).glob("*/*.crt")) for kind in ("hosts", "clients"))


def load_ca(ca_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_dir = Path(ca_dir)
    try:
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    except (OSError, ValueError) as exc:
        raise CAError(f"cannot read the CA in {ca_dir}: {exc.__class__.__name__} (make one "
                      f"with `airlift ca init --dir {ca_dir}`)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_key(key, cert):
        raise CAError(f"{ca_dir / CA_KEY} does not belong to {ca_dir / CA_CERT}: restore "
                      "the pair from your backup")
    return key, cert


def _same_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == cert.public_key().public_bytes(serialization.Encoding.DER, spki))


def _load_cert(path: Path | x509.Certificate) -> x509.Certificate:
    if isinstance(path, x509.Certificate):
        return path
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


# -- issuing --------------------------------------------------------------------------


def server_paths(ca_dir: Path, host: str) -> tuple[Path, Path]:
    base = Path(ca_dir) / "hosts" / _entity("host", host)
    return base / "server.crt", base / "server.key"


def client_paths(ca_dir: Path, name: str) -> tuple[Path, Path]:
    base = Path(ca_dir) / "clients" / _entity("client name", name)
    return base / "client.crt", base / "client.key"


def _issue(ca_dir: Path, cert_path: Path, key_path: Path, common_name: str,
           sans: list[x509.GeneralName], usage: x509.ObjectIdentifier, days: int,
           now: dt.datetime) -> None:
    ca_key, ca_cert = load_ca(ca_dir)
    if now + dt.timedelta(days=days) > ca_cert.not_valid_after_utc:
        raise CAError(f"the CA in {ca_dir} expires on {ca_cert.not_valid_after_utc:%Y-%m-%d}, "
                      f"before a {days}-day certificate would: issue for fewer days, or make "
                      "a new CA and distribute its certificate to every client")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.chmod(0o700)
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, _cert_pem(cert))


def _reusable(cert_path: Path, key_path: Path, names: Sequence[str], ca_dir: Path,
              usage: x509.ObjectIdentifier, now: dt.datetime, renew_days: int) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    if check_cert(cert_path, names, Path(ca_dir) / CA_CERT, now, renew_days, usage=usage):
        return False
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = _load_cert(cert_path)
    except (OSError, ValueError):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_key(key, cert):
        return False
    # Names must match exactly: a host that lost a name gets a certificate without it.
    return _name_strings(_sans(cert)) == _name_strings(parse_names(names))


def issue_server(ca_dir: Path, host: str, names: Sequence[str] = (), days: int = DEFAULT_DAYS,
                 renew_days: int = DEFAULT_RENEW_DAYS, now: dt.datetime | None = None,
                 force: bool = False) -> Issued:
    """The host's key (0600) and server certificate (serverAuth, SANs from names)."""
    cert_path, key_path = server_paths(ca_dir, host)
    names = list(dict.fromkeys(names or [host]))
    sans = parse_names(names)
    moment = _now(now)
    if not force and _reusable(cert_path, key_path, names, ca_dir,
                               ExtendedKeyUsageOID.SERVER_AUTH, moment, renew_days):
        return Issued(cert_path, key_path, False)
    _issue(ca_dir, cert_path, key_path, names[0], sans, ExtendedKeyUsageOID.SERVER_AUTH,
           days, moment)
    return Issued(cert_path, key_path, True)


def issue_client(ca_dir: Path, name: str, days: int = DEFAULT_DAYS,
                 renew_days: int = DEFAULT_RENEW_DAYS, now: dt.datetime | None = None,
                 force: bool = False) -> Issued:
    """A caller's key (0600) and client certificate (clientAuth, CN = name)."""
    cert_path, key_path = client_paths(ca_dir, name)
    moment = _now(now)
    if not force and _reusable(cert_path, key_path, [], ca_dir,
                               ExtendedKeyUsageOID.CLIENT_AUTH, moment, renew_days):
        try:
            cn = _load_cert(cert_path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        except (OSError, ValueError):
            cn = []
        if cn and cn[0].value == name:
            return Issued(cert_path, key_path, False)
    _issue(ca_dir, cert_path, key_path, name, [], ExtendedKeyUsageOID.CLIENT_AUTH,
           days, moment)
    return Issued(cert_path, key_path, True)


# -- checking -------------------------------------------------------------------------


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def check_cert(path: Path | x509.Certificate, host_names: Sequence[str],
               ca_cert: Path | x509.Certificate, now: dt.datetime | None = None,
               renew_days: int = DEFAULT_RENEW_DAYS,
               usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH) -> list[str]:
    """Every problem with a certificate, each naming the fix; [] when it is fine.

    host_names: names the host is reached by; each must be in the certificate's SANs.
    """
    label = str(path) if not isinstance(path, x509.Certificate) else "the certificate"
    ca_dir = Path(ca_cert).parent if not isinstance(ca_cert, x509.Certificate) else "CA_DIR"
    host = Path(path).parent.name if not isinstance(path, x509.Certificate) else "HOST"
    wanted = list(dict.fromkeys(host_names))
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        fix = (f"issue it again on the controller: airlift ca issue-server --dir {ca_dir} "
               f"--host {host}" + "".join(f" --name {name}" for name in wanted or ["NAME"]))
    else:
        fix = ("issue it again on the controller: airlift ca issue-client "
               f"--dir {ca_dir} --name {host if host != 'HOST' else 'NAME'}")
    try:
        cert = _load_cert(path)
    except (OSError, ValueError) as exc:
        return [f"{label}: cannot read it ({exc.__class__.__name__}): {fix}"]
    try:
        ca = _load_cert(ca_cert)
    except (OSError, ValueError) as exc:
        return [f"cannot read the CA certificate {ca_cert} ({exc.__class__.__name__}): "
                f"make the CA with `airlift ca init --dir {ca_dir}`"]
    moment = _now(now)
    problems = []
    expires = cert.not_valid_after_utc
    if expires <= moment:
        problems.append(f"{label}: expired on {expires:%Y-%m-%d %H:%M} UTC: {fix}")
    elif expires - moment < dt.timedelta(days=renew_days):
        problems.append(f"{label}: expires on {expires:%Y-%m-%d} UTC, within the renewal "
                        f"window of {renew_days} days: {fix}")
    if cert.not_valid_before_utc > moment:
        problems.append(f"{label}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                        f"UTC (is the controller's clock right?): {fix}")
    present = _name_strings(_sans(cert))
    missing = [name for name in wanted
               if _name_strings(parse_names([name])) - present]
    if missing:
        problems.append(f"{label}: does not name {', '.join(missing)} (it names "
                        f"{', '.join(sorted(present)) or 'nothing'}), so clients will refuse "
                        f"it: {fix}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        problems.append(f"{label}: not signed by this CA ({ca.subject.rfc4514_string()}; "
                        f"its issuer is {cert.issuer.rfc4514_string()}): {fix}")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if usage not in usages:
        kind = "server" if usage == ExtendedKeyUsageOID.SERVER_AUTH else "client"
        problems.append(f"{label}: not a TLS {kind} certificate (extended key usage): {fix}")
    return problems
