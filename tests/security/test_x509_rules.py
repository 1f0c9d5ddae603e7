"""The LwM2M X.509 rules (TS 7.1.3 + seed 000 change 4 + seed 002 change 7), exhaustively."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.credentials import X509Expectation
from lwm2m.security.x509 import (
    NAME_MISMATCH_MESSAGE,
    HostnameMismatch,
    InvalidCertificate,
    NameMismatch,
    UntrustedCertificate,
    certificate_matches_host,
    check_registration_name,
    common_names,
    dns_name_matches,
    expected_cn,
    has_names,
    load_certificate,
    subject_alt_names,
    verify_chain,
    verify_client_certificate,
    verify_server_certificate,
)

NOW = datetime(2030, 6, 1, tzinfo=UTC)
START = NOW - timedelta(days=10)
END = NOW + timedelta(days=10)


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return make_ca(
        "root", not_before=START - timedelta(days=1), not_after=END + timedelta(days=365)
    )


@pytest.fixture(scope="module")
def device(ca: IssuedCertificate) -> IssuedCertificate:
    return make_cert(ca, "1:dev-1", (), START, END)


# ------------------------------------------------------------------ CN / endpoint name


def test_expected_cn_follows_seed_002_change_7() -> None:
    assert expected_cn(1, "dev-1") == "1:dev-1"
    assert expected_cn(2, "IMEI:490154203237518") == "2:IMEI:490154203237518"
    assert expected_cn(None, "dev-1") == "dev-1"
    assert expected_cn(0, "x") == "0:x"


def test_registration_name_matches(device: IssuedCertificate) -> None:
    check_registration_name(device.cert, 1, "dev-1")
    check_registration_name(device.der, 1, "dev-1")
    check_registration_name(device.cert_pem, 1, "dev-1")


@pytest.mark.parametrize(
    ("ept", "ep"),
    [(2, "dev-1"), (1, "dev-2"), (None, "dev-1"), (None, "1:dev-1x"), (1, "DEV-1"), (1, "dev-1 ")],
)
def test_registration_name_mismatch_has_the_exact_message(
    device: IssuedCertificate, ept: int | None, ep: str
) -> None:
    with pytest.raises(NameMismatch) as info:
        check_registration_name(device.cert, ept, ep)
    assert (
        str(info.value) == "Endpoint Client Name does not match with CN field of X.509 Certificates"
    )
    assert str(info.value) == NAME_MISMATCH_MESSAGE


def test_plain_ep_cn_without_ept(ca: IssuedCertificate) -> None:
    cert = make_cert(ca, "dev-9", (), START, END)
    check_registration_name(cert.cert, None, "dev-9")
    with pytest.raises(NameMismatch):
        check_registration_name(cert.cert, 1, "dev-9")


# ------------------------------------------------------------------ wildcards


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.acme.com", "a.acme.com", True),
        ("*.acme.com", "A.ACME.COM", True),
        ("*.ACME.com", "a.acme.com", True),
        ("*.acme.com", "a.acme.com.", True),
        ("*.acme.com", "acme.com", False),
        ("*.acme.com", "a.b.acme.com", False),
        ("*.acme.com", ".acme.com", False),
        ("*.acme.com", "a.acme.org", False),
        ("*.acme.com", "a.acmeXcom", False),
        ("*.com", "acme.com", False),  # wildcard over a top-level domain only: never valid
        ("*.com", "a.com", False),
        ("*", "localhost", False),
        ("a*.acme.com", "ab.acme.com", False),  # partial-label wildcards: never
        ("*a.acme.com", "ba.acme.com", False),
        ("a*b.acme.com", "axb.acme.com", False),
        ("a.*.acme.com", "a.b.acme.com", False),  # not the left-most label
        ("*.*.acme.com", "a.b.acme.com", False),
        ("**.acme.com", "a.acme.com", False),
        ("*.acme.com", "*.acme.com", False),
        ("*.acme.com", "127.0.0.1", False),
        ("*.0.0.1", "127.0.0.1", False),  # IP addresses never match wildcards
        ("acme.com", "acme.com", True),
        ("acme.com", "ACME.com", True),
        ("acme.com", "www.acme.com", False),
        ("www.acme.com", "acme.com", False),
        ("", "acme.com", False),
        ("acme..com", "acme..com", False),
        ("*.acme.co.uk", "x.acme.co.uk", True),
    ],
)
def test_dns_name_matching(pattern: str, host: str, expected: bool) -> None:
    assert dns_name_matches(pattern, host) is expected


@given(st.text(max_size=30), st.text(max_size=30))
def test_dns_matching_never_raises(pattern: str, host: str) -> None:
    assert dns_name_matches(pattern, host) in (True, False)


# ------------------------------------------------------------------ host vs certificate


@pytest.mark.parametrize(
    ("sans", "cn", "host", "expected"),
    [
        (["localhost", "127.0.0.1"], "server", "localhost", True),
        (["localhost", "127.0.0.1"], "server", "127.0.0.1", True),
        (["localhost", "127.0.0.1"], "server", "127.0.0.2", False),
        (["localhost", "127.0.0.1"], "server", "server", False),  # CN ignored when SAN present
        (["*.acme.com"], "server", "lwm2m.acme.com", True),
        (["*.acme.com"], "server", "acme.com", False),
        (["*.com"], "server", "acme.com", False),
        (["::1"], "server", "::1", True),
        (["::1"], "server", "[::1]", True),
        (["::1"], "server", "0:0:0:0:0:0:0:1", True),
        (["127.0.0.1"], "server", "localhost", False),  # DNS host never matches an IP SAN
        (["localhost"], "server", "127.0.0.1", False),  # IP host never matches a DNS SAN
        ([], "lwm2m.acme.com", "lwm2m.acme.com", True),  # CN only without any SAN
        ([], "*.acme.com", "lwm2m.acme.com", True),
        ([], "*.com", "acme.com", False),
        ([], "127.0.0.1", "127.0.0.1", True),
        ([], "127.0.0.1", "localhost", False),
        ([], "server", "other", False),
    ],
)
def test_certificate_matches_host(
    ca: IssuedCertificate, sans: list[str], cn: str, host: str, expected: bool
) -> None:
    cert = make_cert(ca, cn, sans, START, END)
    assert certificate_matches_host(cert.cert, host) is expected


def test_subject_alt_names_and_common_names(ca: IssuedCertificate) -> None:
    cert = make_cert(ca, "srv", ["a.example", "10.0.0.1"], START, END)
    assert subject_alt_names(cert.cert) == ["a.example", "10.0.0.1"]
    assert common_names(cert.cert) == ["srv"]
    assert has_names(cert.cert, ["srv", "a.example", "10.0.0.1"])
    assert has_names(cert.cert, ["CN=srv"])
    assert not has_names(cert.cert, ["b.example"])
    assert has_names(cert.cert, [])


# ------------------------------------------------------------------ chains and trust


def test_chain_to_trusted_ca(ca: IssuedCertificate, device: IssuedCertificate) -> None:
    path = verify_chain(device.cert, [ca.cert], NOW)
    assert path == [device.cert, ca.cert]


def test_chain_through_intermediate(ca: IssuedCertificate) -> None:
    intermediate = make_ca("inter", issuer=ca, not_before=START, not_after=END)
    leaf = make_cert(intermediate, "1:dev-1", (), START, END)
    assert verify_chain(leaf.cert, [ca.cert], NOW, [intermediate.cert]) == [
        leaf.cert,
        intermediate.cert,
        ca.cert,
    ]
    with pytest.raises(UntrustedCertificate, match="not signed by a trusted CA"):
        verify_chain(leaf.cert, [ca.cert], NOW)


def test_leaf_cannot_act_as_an_intermediate(ca: IssuedCertificate) -> None:
    not_a_ca = make_cert(ca, "leaf", (), START, END)
    # A certificate "signed" by a leaf's key with the leaf as issuer name.
    forged = make_cert(IssuedCertificate(not_a_ca.cert, not_a_ca.key), "1:dev-1", (), START, END)
    with pytest.raises(UntrustedCertificate):
        verify_chain(forged.cert, [ca.cert], NOW, [not_a_ca.cert])


def test_untrusted_ca(device: IssuedCertificate) -> None:
    other = make_ca("other")
    with pytest.raises(UntrustedCertificate, match="not signed by a trusted CA"):
        verify_chain(device.cert, [other.cert], NOW)


def test_forged_signature_with_the_same_issuer_name(ca: IssuedCertificate) -> None:
    impostor_ca = make_ca("root", not_before=START, not_after=END)  # same name, other key
    forged = make_cert(impostor_ca, "1:dev-1", (), START, END)
    with pytest.raises(UntrustedCertificate):
        verify_chain(forged.cert, [ca.cert], NOW)


@pytest.mark.parametrize(
    ("now", "fragment"),
    [(START - timedelta(seconds=1), "not valid before"), (END + timedelta(seconds=1), "expired")],
)
def test_validity_period(
    device: IssuedCertificate, ca: IssuedCertificate, now: datetime, fragment: str
) -> None:
    with pytest.raises(UntrustedCertificate, match=fragment):
        verify_chain(device.cert, [ca.cert], now)


def test_expired_ca_breaks_the_chain() -> None:
    old_ca = make_ca(
        "old", not_before=START - timedelta(days=100), not_after=START - timedelta(days=1)
    )
    leaf = make_cert(old_ca, "x", (), START, END)
    with pytest.raises(UntrustedCertificate, match="expired"):
        verify_chain(leaf.cert, [old_ca.cert], NOW)


def test_naive_now_is_taken_as_utc(device: IssuedCertificate, ca: IssuedCertificate) -> None:
    verify_chain(device.cert, [ca.cert], NOW.replace(tzinfo=None))


def test_no_trusted_cas(device: IssuedCertificate) -> None:
    with pytest.raises(UntrustedCertificate, match="no trusted CA"):
        verify_chain(device.cert, [], NOW)


# ------------------------------------------------------------------ server side (client certs)


def test_server_direct_trust_is_a_byte_exact_match(
    ca: IssuedCertificate, device: IssuedCertificate
) -> None:
    verify_client_certificate(device.cert, X509Expectation(certificate_der=device.der), NOW)
    # direct trust ignores CAs and validity: the operator pinned this very certificate
    verify_client_certificate(
        device.cert, X509Expectation(certificate_der=device.der), END + timedelta(days=99)
    )
    twin = make_cert(ca, "1:dev-1", (), START, END)  # same names, different key
    with pytest.raises(UntrustedCertificate, match="does not match the stored client certificate"):
        verify_client_certificate(twin.cert, X509Expectation(certificate_der=device.der), NOW)


def test_server_indirect_trust(ca: IssuedCertificate, device: IssuedCertificate) -> None:
    verify_client_certificate(device.cert, X509Expectation(ca_pems=(ca.cert_pem,)), NOW)
    verify_client_certificate(device.cert, X509Expectation(), NOW, default_cas=[ca.cert])
    verify_client_certificate(
        device.cert, X509Expectation(ca_pems=(ca.cert_pem,), expected_names=("1:dev-1",)), NOW
    )
    with pytest.raises(UntrustedCertificate, match="lacks the expected names"):
        verify_client_certificate(
            device.cert, X509Expectation(ca_pems=(ca.cert_pem,), expected_names=("2:dev-1",)), NOW
        )
    with pytest.raises(UntrustedCertificate, match="expired"):
        verify_client_certificate(
            device.cert, X509Expectation(ca_pems=(ca.cert_pem,)), END + timedelta(days=1)
        )
    with pytest.raises(UntrustedCertificate, match="no trusted CA"):
        verify_client_certificate(device.cert, X509Expectation(), NOW)


# ------------------------------------------------------------------ client side (server certs)


def test_client_direct_trust(ca: IssuedCertificate) -> None:
    server = make_cert(ca, "srv", ["lwm2m.acme.com"], START, END)
    verify_server_certificate(
        server.cert, X509Expectation(certificate_der=server.der), "anything", NOW
    )
    other = make_cert(ca, "srv", ["lwm2m.acme.com"], START, END)
    with pytest.raises(UntrustedCertificate, match="does not match the stored server certificate"):
        verify_server_certificate(
            other.cert, X509Expectation(certificate_der=server.der), "lwm2m.acme.com", NOW
        )


def test_client_indirect_trust_checks_host_and_names(ca: IssuedCertificate) -> None:
    server = make_cert(ca, "srv", ["*.acme.com", "192.0.2.7"], START, END)
    trust = X509Expectation(ca_pems=(ca.cert_pem,))
    verify_server_certificate(server.cert, trust, "lwm2m.acme.com", NOW)
    verify_server_certificate(server.cert, trust, "192.0.2.7", NOW)
    with pytest.raises(HostnameMismatch, match=r"does not name the server host 'acme\.com'"):
        verify_server_certificate(server.cert, trust, "acme.com", NOW)
    with pytest.raises(HostnameMismatch):
        verify_server_certificate(server.cert, trust, "192.0.2.8", NOW)
    named = X509Expectation(ca_pems=(ca.cert_pem,), expected_names=("srv",))
    verify_server_certificate(server.cert, named, "lwm2m.acme.com", NOW)
    wrong = X509Expectation(ca_pems=(ca.cert_pem,), expected_names=("other",))
    with pytest.raises(UntrustedCertificate, match="lacks the expected names"):
        verify_server_certificate(server.cert, wrong, "lwm2m.acme.com", NOW)
    with pytest.raises(UntrustedCertificate, match="expired"):
        verify_server_certificate(server.cert, trust, "lwm2m.acme.com", END + timedelta(days=1))


# ------------------------------------------------------------------ parsing


def test_load_certificate_accepts_pem_and_der(device: IssuedCertificate) -> None:
    assert load_certificate(device.cert_pem) == device.cert
    assert load_certificate(device.der) == device.cert
    assert load_certificate(device.cert) is device.cert


@given(st.binary(max_size=200))
def test_load_certificate_rejects_garbage_with_one_error(data: bytes) -> None:
    with pytest.raises(InvalidCertificate):
        load_certificate(data)


def test_load_certificate_rejects_non_bytes() -> None:
    with pytest.raises(InvalidCertificate):
        load_certificate("text")  # type: ignore[arg-type]
