"""Session tickets under shared keys: a client resumes on another server node (in memory).

Two ``DtlsServer`` objects stand for two nodes behind one load balancer: the
client keeps one server address and the test swaps which node answers it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_dtls_helpers import CLIENT_ADDR, PSK_ID, PSK_KEY, SERVER_ADDR, Link, psk_store

from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServer, DtlsServerConfig
from lwm2m.coap.dtls_binding import ticket_key_name, ticket_keys_supported
from lwm2m.coap.dtls_records import is_client_hello
from lwm2m.coap.dtls_tickets import TicketKey, client_hello_ticket_key_name
from lwm2m.coap.peer import PeerIdentity
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation

pytestmark = pytest.mark.skipif(
    not ticket_keys_supported(), reason="this OpenSSL binding cannot set session-ticket keys"
)


class Keys:
    """A ticket key source the test rotates by hand (the cluster's lives in Redis)."""

    def __init__(self, *keys: TicketKey) -> None:
        self.keys: tuple[TicketKey, ...] = keys

    def ticket_keys(self) -> Sequence[TicketKey]:
        return self.keys

    def rotate(self) -> None:
        self.keys = (TicketKey(os.urandom(80)), *self.keys[:1])


def psk_node(keys: Keys | None) -> DtlsServer:
    return DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY}), ticket_keys=keys))


def psk_client() -> DtlsClient:
    return DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))


def move_to(link: Link, node: DtlsServer) -> None:
    """The load balancer now sends the client's datagrams to ``node``; the client re-handshakes.

    The node that had the client answered it first: a client forgets a resumed
    session that never carried an answer (the server may have refused it).
    """
    if link.server.is_established(CLIENT_ADDR):
        link.server_send(b"answer")
    link.server = node
    link.client.reset(SERVER_ADDR)


def test_psk_session_made_on_one_node_resumes_on_another_with_its_identity() -> None:
    keys = Keys(TicketKey(os.urandom(80)))
    link = Link(client=psk_client(), server=psk_node(keys))
    link.client_send(b"register")
    assert link.server.session_resumed(CLIENT_ADDR) is False
    node_b = psk_node(keys)
    move_to(link, node_b)
    link.client_send(b"update")
    assert node_b.session_resumed(CLIENT_ADDR) is True
    assert link.client.resumed_handshakes == 1
    # The PSK callback did not run on B: the identity comes from the ticket.
    assert link.server_received[-1] == (b"update", link.server_received[-1][1])
    assert link.server_received[-1][1].identity == PeerIdentity(psk_identity=PSK_ID)


def test_without_shared_keys_the_other_node_does_a_full_handshake() -> None:
    link = Link(client=psk_client(), server=psk_node(None))
    link.client_send(b"register")
    node_b = psk_node(None)
    move_to(link, node_b)
    link.client_send(b"update")
    assert node_b.session_resumed(CLIENT_ADDR) is False
    assert (link.client.full_handshakes, link.client.resumed_handshakes) == (2, 0)
    assert link.server_received[-1][1].identity == PeerIdentity(psk_identity=PSK_ID)


def test_client_resumes_on_the_new_node_after_its_node_went_silent() -> None:
    keys = Keys(TicketKey(os.urandom(80)))
    link = Link(client=psk_client(), server=psk_node(keys))
    link.client_send(b"register")
    link.server_send(b"created")
    # Node A dies: the balancer hands the client to B, which drops records of no session.
    node_b = psk_node(keys)
    link.server = node_b
    link.client_send(b"update, lost")
    assert link.server_received[-1][0] == b"register"
    link.advance(31.0)  # past silence_rehandshake_s
    link.client_send(b"update, again")
    assert link.server_received[-1][0] == b"update, again"
    assert node_b.session_resumed(CLIENT_ADDR) is True
    assert link.server_received[-1][1].identity == PeerIdentity(psk_identity=PSK_ID)


def test_previous_key_still_resumes_and_a_key_two_rotations_old_does_not() -> None:
    keys = Keys(TicketKey(os.urandom(80)))
    first_key = keys.keys[0]
    link = Link(client=psk_client(), server=psk_node(keys))
    link.client_send(b"register")
    node_b = psk_node(keys)
    keys.rotate()
    move_to(link, node_b)
    link.client_send(b"after one rotation")
    assert node_b.session_resumed(CLIENT_ADDR) is True
    # The ticket went to the previous key's context, new tickets to the current one.
    assert ticket_key_name(node_b._keyed_contexts[first_key.name]) == first_key.name
    assert ticket_key_name(node_b._keyed_contexts[keys.keys[0].name]) == keys.keys[0].name
    keys.rotate()
    node_c = psk_node(keys)
    move_to(link, node_c)
    link.client_send(b"after two rotations")
    assert node_c.session_resumed(CLIENT_ADDR) is False
    assert link.server_received[-1][1].identity == PeerIdentity(psk_identity=PSK_ID)
    # That full handshake issued a ticket under the current key: it resumes again.
    move_to(link, psk_node(keys))
    link.client_send(b"once more")
    assert link.server.session_resumed(CLIENT_ADDR) is True


def test_a_forgotten_psk_identity_is_refused_on_resumption_by_another_node() -> None:
    keys = Keys(TicketKey(os.urandom(80)))
    link = Link(client=psk_client(), server=psk_node(keys))
    link.client_send(b"register")
    node_b = DtlsServer(DtlsServerConfig(psk_lookup=psk_store({}), ticket_keys=keys))
    move_to(link, node_b)
    link.client_send(b"update")
    assert not node_b.is_established(CLIENT_ADDR)
    assert any("no longer known" in f.reason for f in link.failed(link.server_events))


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return make_ca("ticket test root")


def test_certificate_session_resumes_on_another_node_with_the_peer_certificate(
    ca: IssuedCertificate,
) -> None:
    server_cert = make_cert(ca, "lwm2m.example.test", ["localhost"])
    device = make_cert(ca, "1:dev-1")
    keys = Keys(TicketKey(os.urandom(80)))

    def node() -> DtlsServer:
        return DtlsServer(
            DtlsServerConfig(
                certificate_pem=server_cert.cert_pem,
                private_key_pem=server_cert.key_pem,
                trusted_ca_pems=(ca.cert_pem,),
                ticket_keys=keys,
            )
        )

    client = DtlsClient(
        DtlsClientConfig(
            certificate=X509Credential(device.cert_pem, device.key_pem, ()),
            server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
            server_host="localhost",
        )
    )
    link = Link(client=client, server=node())
    link.client_send(b"register")
    node_b = node()
    move_to(link, node_b)
    link.client_send(b"update")
    assert node_b.session_resumed(CLIENT_ADDR) is True
    assert link.server_received[-1][1].identity == PeerIdentity(certificate_der=device.der)


def test_ticket_key_name_is_read_from_the_client_hello() -> None:
    keys = Keys(TicketKey(os.urandom(80)))
    link = Link(client=psk_client(), server=psk_node(keys))
    link.client_send(b"register")
    first_hellos = [d for d in link.to_server if is_client_hello(d)]
    # A first contact offers an empty ticket: no key name.
    assert {client_hello_ticket_key_name(d) for d in first_hellos} == {None}
    link.to_server.clear()
    move_to(link, psk_node(keys))
    link.client_send(b"update")
    hellos = [d for d in link.to_server if is_client_hello(d)]
    assert {client_hello_ticket_key_name(d) for d in hellos} == {keys.keys[0].name}
    # Truncated or garbled hellos give no name and never raise.
    for cut in range(len(hellos[0])):
        assert client_hello_ticket_key_name(hellos[0][:cut]) in (None, keys.keys[0].name)
    assert client_hello_ticket_key_name(b"\x16\xfe\xfd" + bytes(60)) is None


def test_ticket_key_material_stays_out_of_reprs() -> None:
    key = TicketKey(bytes(range(80)))
    assert bytes(range(80)).hex()[:8] not in repr(key)
    assert "material" not in repr(key)
    with pytest.raises(ValueError):
        TicketKey(b"short")


@given(st.binary(max_size=400))
def test_arbitrary_datagrams_give_a_key_name_or_none(data: bytes) -> None:
    hello = bytes.fromhex("16fefd000000000000000000ff01") + data
    for candidate in (data, hello):
        name = client_hello_ticket_key_name(candidate)
        assert name is None or len(name) == 16
