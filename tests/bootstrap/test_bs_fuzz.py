"""Garbage in: every parser raises its one error type, nothing else."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.bootstrap.leshan import convert_leshan_store, import_leshan_store
from lwm2m.bootstrap.session import existing_security_instances
from lwm2m.client.bootstrap.smartcard import SmartcardError, decode_image, encode_image
from lwm2m.formats.errors import FormatError
from lwm2m.protocol.bootstrap_config import BootstrapConfigError, parse_config

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "servers",
        "short_server_id",
        "uri",
        "security",
        "mode",
        "identity",
        "key",
        "delete",
        "acl",
        "rights",
        "owner",
        "object",
        "instance",
        "bootstrap_server",
        "ept",
        "lifetime",
        "binding",
        "content_format",
        "discover",
        "toDelete",
        "securityMode",
        "serverId",
        "shortId",
        "acls",
        "objectId",
        "objectInstanceId",
        "publicKeyOrId",
        "secretKey",
    ]
)
shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.sampled_from(["coap://h", "nosec", "psk", "/0", "RW", "00ff", "U"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(KEYS | st.sampled_from(["0", "1", "101"]), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), shaped | json_values, max_size=3))
def test_parse_config_only_raises_config_error(clients: dict[str, Any]) -> None:
    with contextlib.suppress(BootstrapConfigError):
        parse_config({"clients": clients})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), shaped, max_size=3))
def test_leshan_import_only_raises_config_error(store: dict[str, Any]) -> None:
    try:
        convert_leshan_store(store)
        import_leshan_store(store)
    except BootstrapConfigError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_image_only_raises_smartcard_error(data: bytes) -> None:
    with contextlib.suppress(SmartcardError):
        decode_image(b"LWSC" + data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255))
def test_any_single_byte_flip_is_detected(position: int, mask: int) -> None:
    from lwm2m.protocol.bootstrap_config import parse_client_config
    from lwm2m.protocol.provisioning import plan_writes

    image = bytearray(
        encode_image(
            plan_writes(
                parse_client_config("d", {"servers": [{"short_server_id": 1, "uri": "coap://h"}]})
            )
        )
    )
    position %= len(image)
    if mask == 0:
        return
    image[position] ^= mask
    try:
        decode_image(bytes(image))
    except SmartcardError:
        return
    raise AssertionError(f"flip at {position} not detected")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_discover_answer_parsing(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        existing_security_instances(data)


class _Request:
    def __init__(self, message: Any) -> None:
        self.message = message
        self.peer = None


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["PUT", "DELETE", "GET"]),
    st.lists(st.sampled_from(["0", "1", "2", "3", "0x", "", "65535", "5", "bs"]), max_size=4),
    st.binary(max_size=80),
    st.sampled_from([None, 0, 40, 42, 110, 112, 11542, 11543, 11544, 1]),
)
def test_client_bootstrap_handler_never_crashes(
    method: str, segments: list[str], payload: bytes, fmt: int | None
) -> None:
    import asyncio

    from lwm2m.client.bootstrap.interface import ClientBootstrap
    from lwm2m.client.client import LwM2MClient
    from lwm2m.client.config import ClientConfig, FactoryAccount
    from lwm2m.coap.codes import Code
    from lwm2m.coap.message import Message

    async def run() -> None:
        client = LwM2MClient(
            ClientConfig(
                "dev-f",
                servers=(
                    FactoryAccount("coap://127.0.0.1:9", short_server_id=101),
                    FactoryAccount("coap://127.0.0.1:5783", bootstrap=True),
                ),
            )
        )
        handler = ClientBootstrap(client)
        message = Message(
            Code[method], uri_path=tuple(segments), payload=payload, content_format=fmt
        )
        response = await handler.handle(_Request(message))  # type: ignore[arg-type]
        assert response.is_response
        for task in list(client._tasks):
            task.cancel()

    asyncio.run(run())
