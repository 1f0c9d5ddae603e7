"""Register / Update / De-register from independent CoAP stacks: libcoap's coap-client and aiocoap."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from lwm2m.server import LwM2MServer

pytestmark = pytest.mark.interop

COAP_CLIENT = shutil.which("coap-client-notls") or shutil.which("coap-client")


async def coap_client(*args: str) -> str:
    assert COAP_CLIENT is not None
    proc = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        "-v",
        "6",
        "-B",
        "5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode("utf-8", "replace")


def ack_code(output: str) -> str:
    match = re.search(r"t:ACK c:(\d\.\d\d)", output)
    assert match is not None, output
    return match.group(1)


@pytest.mark.skipif(COAP_CLIENT is None, reason="libcoap coap-client is not installed")
async def test_libcoap_register_update_deregister(server: LwM2MServer) -> None:
    base = f"coap://127.0.0.1:{server.coap_address[1]}"
    out = await coap_client("-m", "post", "-e", "</1/0>,</3/0>", f"{base}/rd?ep=libcoap&lt=60&b=U")
    assert ack_code(out) == "2.01"
    locations = re.findall(r"Location-Path:([^,\s\]]+)", out)
    assert locations[0] == "rd"
    reg = server.get_registration("libcoap")
    assert reg is not None and locations[1] == reg.id
    location = "/".join(locations)
    assert ack_code(await coap_client("-m", "put", f"{base}/{location}?lt=120")) == "2.04"
    assert ack_code(await coap_client("-m", "post", f"{base}/{location}")) == "2.04"
    assert server.get_registration("libcoap").lifetime_s == 120  # type: ignore[union-attr]
    # Another address wants the same name: 4.09.
    out = await coap_client(
        "-a", "127.0.0.2", "-m", "post", "-e", "</1/0>", f"{base}/rd?ep=libcoap"
    )
    assert ack_code(out) == "4.09"
    assert ack_code(await coap_client("-m", "post", "-e", "</1/0>", f"{base}/rd?lt=60")) == "4.00"
    assert ack_code(await coap_client("-m", "delete", f"{base}/{location}")) == "2.02"
    assert ack_code(await coap_client("-m", "delete", f"{base}/{location}")) == "4.04"


async def test_aiocoap_register_update_deregister(server: LwM2MServer) -> None:
    aiocoap = pytest.importorskip("aiocoap")
    context = await aiocoap.Context.create_client_context()
    base = f"coap://127.0.0.1:{server.coap_address[1]}"
    try:

        async def call(code: object, uri: str, payload: bytes = b"") -> object:
            request = aiocoap.Message(code=code, uri=uri, payload=payload)
            return await asyncio.wait_for(context.request(request).response, 10)

        resp = await call(aiocoap.POST, f"{base}/rd?ep=aiocoap&lt=60", b"</1/0>,</3/0>")
        assert str(resp.code) == "2.01 Created"  # type: ignore[attr-defined]
        location = "/".join(resp.opt.location_path)  # type: ignore[attr-defined]
        assert location.startswith("rd/")
        resp = await call(aiocoap.PUT, f"{base}/{location}?lt=90")
        assert str(resp.code) == "2.04 Changed"  # type: ignore[attr-defined]
        resp = await call(aiocoap.POST, f"{base}/rd?ep=aiocoap&lt=0", b"</1/0>")
        assert str(resp.code) == "4.00 Bad Request"  # type: ignore[attr-defined]
        assert b"lt=" in resp.payload  # type: ignore[attr-defined]
        resp = await call(aiocoap.DELETE, f"{base}/{location}")
        assert str(resp.code) == "2.02 Deleted"  # type: ignore[attr-defined]
        resp = await call(aiocoap.DELETE, f"{base}/{location}")
        assert str(resp.code) == "4.04 Not Found"  # type: ignore[attr-defined]
    finally:
        await context.shutdown()
