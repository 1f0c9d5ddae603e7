"""libcoap's client (coap-client-notls) registers with our LwM2M server over coap+tcp.

``coap-client-notls`` exits 0 even on errors: the server's registration store
and what the tool printed are what is checked.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores.memory import MemoryStores

CLIENT_BIN = shutil.which("coap-client-notls")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(CLIENT_BIN is None, reason="coap-client-notls not installed"),
]


async def test_libcoap_registers_through_rd_over_tcp() -> None:
    assert CLIENT_BIN is not None
    server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0, coap_tcp_port=0))
    await server.start()
    try:
        assert server.coap_tcp_address is not None
        port = server.coap_tcp_address[1]
        proc = await asyncio.create_subprocess_exec(
            CLIENT_BIN,
            "-B", "5",
            "-m", "post",
            "-t", "40",
            "-e", "</1/0>,</3/0>",
            f"coap+tcp://127.0.0.1:{port}/rd?ep=libcoap-dev&lt=60&b=T&lwm2m=1.1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode(errors="replace")
        assert "4." not in text and "5." not in text and "ERR" not in text, text
        reg = server.get_registration("libcoap-dev")
        assert reg is not None, text
        assert reg.transport == "tcp" and reg.binding == "T" and reg.lifetime_s == 60
        assert {o.id for o in reg.objects} == {1, 3}
    finally:
        await server.stop()
