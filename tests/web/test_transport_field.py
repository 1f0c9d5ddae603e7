"""The REST API shows how each client registered: coap, coaps, coap+tcp or coaps+tcp."""

from __future__ import annotations

import pytest

from lwm2m.coap.peer import PeerIdentity
from lwm2m.stores.records import Registration
from lwm2m.web.adapters import client_info
from lwm2m.web.present import client_json
from lwm2m.web.schemas import Client


@pytest.mark.parametrize(
    ("transport", "identity", "shown"),
    [
        ("udp", None, "coap"),
        ("udp", PeerIdentity(psk_identity=b"id"), "coaps"),
        ("tcp", None, "coap+tcp"),
        ("tcp", PeerIdentity(psk_identity=b"id"), "coaps+tcp"),
    ],
)
def test_client_json_carries_the_transport(
    transport: str, identity: PeerIdentity | None, shown: str
) -> None:
    reg = Registration(
        id="r1",
        endpoint="dev",
        address=("127.0.0.1", 40000),
        lifetime_s=300,
        registered_at=1.0,
        updated_at=1.0,
        binding="T" if transport == "tcp" else "U",
        identity=identity,
        transport=transport,
    )
    doc = client_json(client_info(reg))
    assert doc["transport"] == shown
    assert Client.model_validate(doc).transport == shown
    # and the stores keep it
    assert Registration.from_dict(reg.to_dict()).transport == transport
