"""X.509 trust rules of LwM2M (TS 7.1.3 as amended by the seed change requests).

Pure functions over :mod:`cryptography.x509`; ``now`` is passed in. They are
used by the DTLS layer (names, direct trust) and by the LwM2M server at
Register (CN = ``ept:ep``).

Server side: a client certificate is trusted directly (byte-exact match with a
stored certificate) or indirectly (chains to a trusted CA with verified
signatures, every certificate valid at ``now``, and it carries the expected
Subject/SubjectAltName names). Its Subject CN must be ``"<ept>:<ep>"``
(seed 002 change 7), or ``"<ep>"`` when the client sent no ``ept`` (published
LwM2M).

Client side: the server certificate is trusted directly (the Security object's
Server Public Key resource, exact match) or indirectly (CA + names), and its
SubjectAltName DNS/IP entries (the Subject CN only when there is no SAN) must
match the host of the server URI. Wildcards follow RFC 6125 narrowed by the
seed: ``*`` only as the whole left-most label, followed by at least two labels.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from lwm2m.security.credentials import X509Expectation

#: Longest issuer chain we follow from a leaf to a trusted CA.
MAX_CHAIN_DEPTH = 8

NAME_MISMATCH_MESSAGE = "Endpoint Client Name does not match with CN field of X.509 Certificates"


class CertificateError(Exception):
    """Base of certificate problems; the message is safe to log."""


class InvalidCertificate(CertificateError):
    """Bytes that are not a parseable X.509 certificate."""


class UntrustedCertificate(CertificateError):
    """A certificate that does not satisfy the configured trust (direct or indirect)."""


class HostnameMismatch(UntrustedCertificate):
    """The server certificate names do not cover the host of the server URI."""


class NameMismatch(CertificateError):
    """Register's ``ept``/``ep`` do not match the certificate CN; the server answers 4.00."""

    def __init__(self, message: str = NAME_MISMATCH_MESSAGE) -> None:
        super().__init__(message)


CertificateLike = x509.Certificate | bytes


def load_certificate(data: CertificateLike) -> x509.Certificate:
    """A certificate from PEM or DER bytes (or one already loaded)."""
    if isinstance(data, x509.Certificate):
        return data
    if not isinstance(data, bytes):
        raise InvalidCertificate(f"certificate must be bytes, got {type(data).__name__}")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InvalidCertificate("not a valid X.509 certificate (PEM or DER)") from None


def load_certificates(pems: Iterable[bytes]) -> list[x509.Certificate]:
    """Every certificate in a sequence of PEM blobs (a blob may hold several)."""
    result: list[x509.Certificate] = []
    for blob in pems:
        try:
            result.extend(x509.load_pem_x509_certificates(blob))
        except ValueError:
            raise InvalidCertificate("not a valid PEM certificate bundle") from None
    return result


def der(cert: CertificateLike) -> bytes:
    return load_certificate(cert).public_bytes(Encoding.DER)


def describe(cert: x509.Certificate) -> str:
    """A short human label for messages: the subject in RFC 4514 form."""
    return cert.subject.rfc4514_string() or "<empty subject>"


# --------------------------------------------------------------------------- names


def expected_cn(ept: int | None, ep: str) -> str:
    """The CN a client certificate must carry: ``"ept:ep"`` (seed 002 change 7) or ``ep``."""
    return ep if ept is None else f"{ept}:{ep}"


def common_names(cert: CertificateLike) -> list[str]:
    c = load_certificate(cert)
    names: list[str] = []
    for attribute in c.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        names.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return names


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        # A malformed extension is a certificate we cannot judge: no names.
        raise InvalidCertificate("malformed SubjectAltName extension") from None


def subject_alt_names(cert: CertificateLike) -> list[str]:
    """DNS, IP and URI SubjectAltName values as strings."""
    san = _san(load_certificate(cert))
    if san is None:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    names.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
    return names


def has_names(cert: CertificateLike, expected: Sequence[str]) -> bool:
    """True when every expected name is the subject (RFC 4514), a CN or a SAN value."""
    c = load_certificate(cert)
    available = {c.subject.rfc4514_string()}
    available.update(common_names(c))
    for name in subject_alt_names(c):
        available.add(name)
        available.add(name.lower())
    return all(name in available or name.lower() in available for name in expected)


def check_registration_name(cert: CertificateLike, ept: int | None, ep: str) -> None:
    """Raise :class:`NameMismatch` unless the certificate's CN is ``expected_cn(ept, ep)``.

    A certificate with several CNs is rejected: which one would the client mean?
    """
    cns = common_names(cert)
    if len(cns) != 1 or cns[0] != expected_cn(ept, ep):
        raise NameMismatch()


def _normalise_dns(name: str) -> str | None:
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or ".." in name or name.startswith("."):
        return None
    return name


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    text = text.split("%", 1)[0]  # scope id of a link-local IPv6 address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def dns_name_matches(pattern: str, hostname: str) -> bool:
    """One certificate DNS name against a DNS host name (not an IP address).

    ``*`` is honoured only as the whole left-most label with at least two labels
    after it (``*.acme.com`` matches ``a.acme.com``, never ``acme.com``,
    ``a.b.acme.com``; ``*.com`` and ``a*.acme.com`` match nothing).
    """
    if _parse_ip(hostname) is not None:
        return False
    pat = _normalise_dns(pattern)
    host = _normalise_dns(hostname)
    if pat is None or host is None:
        return False
    if "*" not in pat:
        return pat == host
    labels = pat.split(".")
    if labels[0] != "*" or any("*" in label for label in labels[1:]) or len(labels) < 3:
        return False
    host_labels = host.split(".")
    if len(host_labels) != len(labels) or host_labels[0] in ("", "*"):
        return False
    return host_labels[1:] == labels[1:]


def certificate_matches_host(cert: CertificateLike, host: str) -> bool:
    """Does the certificate name ``host`` (the host part of the server URI)?

    SubjectAltName DNS entries are compared with DNS hosts, IP entries with IP
    hosts; the Subject CN is used only when the certificate has no SAN at all.
    """
    c = load_certificate(cert)
    ip = _parse_ip(host)
    san = _san(c)
    if san is not None:
        if ip is not None:
            return any(ip == candidate for candidate in san.get_values_for_type(x509.IPAddress))
        return any(dns_name_matches(name, host) for name in san.get_values_for_type(x509.DNSName))
    for cn in common_names(c):
        if ip is not None:
            if _parse_ip(cn) == ip:
                return True
        elif _parse_ip(cn) is None and dns_name_matches(cn, host):
            return True
    return False


# --------------------------------------------------------------------------- chains


def _as_utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def check_validity(cert: x509.Certificate, now: datetime) -> None:
    """Raise :class:`UntrustedCertificate` if ``now`` is outside the validity period."""
    moment = _as_utc(now)
    if moment < cert.not_valid_before_utc:
        raise UntrustedCertificate(
            f"certificate {describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
        )
    if moment > cert.not_valid_after_utc:
        raise UntrustedCertificate(
            f"certificate {describe(cert)} expired on {cert.not_valid_after_utc.isoformat()}"
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    except ValueError:
        return False
    return constraints.ca


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Is ``cert`` issued by ``issuer`` (name and signature)?"""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(
    leaf: CertificateLike,
    trusted_cas: Sequence[CertificateLike],
    now: datetime,
    intermediates: Sequence[CertificateLike] = (),
) -> list[x509.Certificate]:
    """Check that ``leaf`` chains to one of ``trusted_cas``; return the path, leaf first.

    Every certificate on the path must be valid at ``now``, every signature must
    verify, and every issuer must be a CA (BasicConstraints cA).
    """
    current = load_certificate(leaf)
    anchors = [load_certificate(ca) for ca in trusted_cas]
    pool = [load_certificate(c) for c in intermediates]
    if not anchors:
        raise UntrustedCertificate("no trusted CA certificates are configured")
    anchor_ders = {a.public_bytes(Encoding.DER) for a in anchors}
    path = [current]
    for _ in range(MAX_CHAIN_DEPTH):
        check_validity(current, now)
        if current.public_bytes(Encoding.DER) in anchor_ders:
            return path
        for anchor in anchors:
            if _is_ca(anchor) and is_signed_by(current, anchor):
                check_validity(anchor, now)
                path.append(anchor)
                return path
        step = next(
            (c for c in pool if c not in path and _is_ca(c) and is_signed_by(current, c)),
            None,
        )
        if step is None:
            raise UntrustedCertificate(
                f"certificate {describe(path[0])} is not signed by a trusted CA"
                + (f" (issuer {current.issuer.rfc4514_string()})" if current is path[0] else "")
            )
        path.append(step)
        current = step
    raise UntrustedCertificate(f"certificate chain longer than {MAX_CHAIN_DEPTH}")


# --------------------------------------------------------------------------- trust


def verify_client_certificate(
    cert: CertificateLike,
    expectation: X509Expectation,
    now: datetime,
    *,
    default_cas: Sequence[CertificateLike] = (),
    intermediates: Sequence[CertificateLike] = (),
) -> None:
    """Server side: does a client certificate satisfy ``expectation``?

    Raises :class:`UntrustedCertificate`. The CN/endpoint check is separate
    (:func:`check_registration_name`) because it needs the Register parameters.
    """
    c = load_certificate(cert)
    if expectation.certificate_der is not None:
        check_pinned(c, expectation.certificate_der, "client")
        return
    cas: list[x509.Certificate] = load_certificates(expectation.ca_pems) or [
        load_certificate(ca) for ca in default_cas
    ]
    verify_chain(c, cas, now, intermediates)
    if not has_names(c, expectation.expected_names):
        raise UntrustedCertificate(
            f"certificate {describe(c)} lacks the expected names {list(expectation.expected_names)}"
        )


def check_pinned(cert: CertificateLike, certificate_der: bytes, whose: str) -> None:
    """Direct trust: ``cert`` must be the stored certificate, byte for byte."""
    if load_certificate(cert).public_bytes(Encoding.DER) != certificate_der:
        raise UntrustedCertificate(f"certificate does not match the stored {whose} certificate")


def check_server_names(cert: CertificateLike, expectation: X509Expectation, host: str) -> None:
    """Indirect trust, client side: the expected names, and a name that covers ``host``.

    Raises :class:`UntrustedCertificate` (:class:`HostnameMismatch` for the host).
    """
    c = load_certificate(cert)
    if not has_names(c, expectation.expected_names):
        raise UntrustedCertificate(
            f"certificate {describe(c)} lacks the expected names {list(expectation.expected_names)}"
        )
    if not certificate_matches_host(c, host):
        raise HostnameMismatch(f"certificate {describe(c)} does not name the server host {host!r}")


def verify_server_certificate(
    cert: CertificateLike,
    expectation: X509Expectation,
    host: str,
    now: datetime,
    *,
    intermediates: Sequence[CertificateLike] = (),
) -> None:
    """Client side: does the server certificate satisfy ``expectation`` for ``host``?

    Direct trust needs only the exact match (the operator pinned that very
    certificate); indirect trust needs the chain, the expected names and a name
    that covers the URI host.
    """
    c = load_certificate(cert)
    if expectation.certificate_der is not None:
        check_pinned(c, expectation.certificate_der, "server")
        return
    verify_chain(c, load_certificates(expectation.ca_pems), now, intermediates)
    check_server_names(c, expectation, host)
