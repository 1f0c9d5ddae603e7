"""DTLS cost: handshakes/s, and secured vs plain CoAP requests/s on loopback.

Handshakes are measured in memory (two sans-I/O layers joined directly), so
the figure is the CPU cost of the handshake itself: PSK full, PSK resumed and
ECDHE-ECDSA (X.509, P-256) full, plus how fast the server answers a
cookie-less (e.g. spoofed) ClientHello without keeping state.

Requests/s: a server Endpoint (plain UDP, then DTLS PSK) runs in its own
process; a client process runs ``--clients`` Endpoints each sending CON GETs
back to back for ``--seconds``. Only 127.0.0.1 is used.

    python bench/dtls.py --seconds 3 --clients 8 --rounds 3

Request rounds alternate plain and DTLS; the medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

PSK_ID = b"bench-id"
PSK_KEY = bytes(range(16))
SERVER: tuple[str, int] = ("127.0.0.1", 5684)
CLIENT: tuple[str, int] = ("127.0.0.1", 40000)


# --------------------------------------------------------------------- handshakes


def _handshake(client: object, server: object) -> None:
    from lwm2m.coap.dtls import DtlsClient, DtlsServer

    assert isinstance(client, DtlsClient) and isinstance(server, DtlsServer)
    client.send(b"x", SERVER, 0.0)
    for _ in range(20):
        moved = False
        for data, _ in client.datagrams_to_send():
            moved = True
            server.receive_datagram(data, CLIENT, 0.0)
        for data, _ in server.datagrams_to_send():
            moved = True
            client.receive_datagram(data, SERVER, 0.0)
        if not moved:
            break
    if not server.is_established(CLIENT):
        raise RuntimeError("handshake did not complete")
    while client.next_event() is not None or server.next_event() is not None:
        pass


def bench_handshakes(seconds: float) -> None:
    from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServer, DtlsServerConfig
    from lwm2m.security.certs import make_ca, make_cert
    from lwm2m.security.client_config import ServerTrust
    from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation

    psk_server = DtlsServer(DtlsServerConfig(psk_lookup={PSK_ID: PSK_KEY}.get))
    ca = make_ca()
    server_cert = make_cert(ca, "localhost", ["localhost", "127.0.0.1"])
    device = make_cert(ca, "1:bench")
    cert_server = DtlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        )
    )

    def psk_client() -> DtlsClient:
        return DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))

    def cert_client() -> DtlsClient:
        return DtlsClient(
            DtlsClientConfig(
                certificate=X509Credential(device.cert_pem, device.key_pem),
                server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
                server_host="localhost",
            )
        )

    resuming = psk_client()

    def resumed() -> None:
        resuming.reset(SERVER)
        _handshake(resuming, psk_server)

    _handshake(resuming, psk_server)
    cases: dict[str, Callable[[], None]] = {
        "PSK full (PSK-AES128-CCM8)": lambda: _handshake(psk_client(), psk_server),
        "PSK resumed (abbreviated)": resumed,
        "X.509 full (ECDHE-ECDSA-AES128-CCM8)": lambda: _handshake(cert_client(), cert_server),
    }
    flood_client = psk_client()
    flood_client.send(b"x", SERVER, 0.0)
    [(hello, _)] = flood_client.datagrams_to_send()
    spoofed = [0]

    def stateless_hello() -> None:
        spoofed[0] += 1
        i = spoofed[0]
        psk_server.receive_datagram(
            hello, (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1024), 0.0
        )
        psk_server.datagrams_to_send()

    cases["cookie-less ClientHello -> HelloVerifyRequest"] = stateless_hello
    for name, run in cases.items():
        count = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            run()
            count += 1
        elapsed = time.perf_counter() - start
        print(f"handshakes/s  {name:48s} {count / elapsed:10.0f}")


# --------------------------------------------------------------------- requests


def _serve(secure: bool, conn: Connection) -> None:
    from lwm2m.coap.codes import Code
    from lwm2m.coap.dtls import DtlsServer, DtlsServerConfig
    from lwm2m.coap.endpoint import Endpoint, IncomingRequest
    from lwm2m.coap.message import Message

    response = Message(Code.CONTENT, payload=b"hello world")

    async def handler(request: IncomingRequest) -> Message:
        return response

    async def main() -> None:
        security = (
            DtlsServer(DtlsServerConfig(psk_lookup={PSK_ID: PSK_KEY}.get)) if secure else None
        )
        endpoint = await Endpoint.create(handler=handler, security=security)
        conn.send(endpoint.local_address[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _load(port: int, secure: bool, clients: int, seconds: float, conn: Connection) -> None:
    from lwm2m.coap.codes import Code
    from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig
    from lwm2m.coap.endpoint import Endpoint
    from lwm2m.coap.message import Message
    from lwm2m.security.credentials import PskCredential

    request = Message(Code.GET, uri_path=("bench",))

    async def one(deadline_box: list[float], counts: list[int], index: int) -> None:
        security = (
            DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY))) if secure else None
        )
        async with await Endpoint.create(security=security) as endpoint:
            await endpoint.request(
                request, ("127.0.0.1", port), timeout=10
            )  # handshake outside the timing
            await ready.wait()
            while time.perf_counter() < deadline_box[0]:
                await endpoint.request(request, ("127.0.0.1", port), timeout=10)
                counts[index] += 1

    async def main() -> float:
        counts = [0] * clients
        deadline_box = [float("inf")]
        tasks = [asyncio.create_task(one(deadline_box, counts, i)) for i in range(clients)]
        await asyncio.sleep(0.5 if not secure else 1.0 + clients * 0.05)
        start = time.perf_counter()
        deadline_box[0] = start + seconds
        ready.set()
        await asyncio.gather(*tasks)
        return sum(counts) / (time.perf_counter() - start)

    ready = asyncio.Event()
    conn.send(asyncio.run(main()))


def _measure(secure: bool, seconds: float, clients: int) -> float:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(secure, child), daemon=True)
    server.start()
    port = parent.recv()
    load_parent, load_child = ctx.Pipe()
    loader = ctx.Process(target=_load, args=(port, secure, clients, seconds, load_child))
    loader.start()
    rate: float = load_parent.recv()
    loader.join()
    server.terminate()
    server.join()
    return rate


def request_rates(seconds: float, clients: int, rounds: int) -> dict[bool, list[float]]:
    """Requests/s per round, plain (False) and DTLS PSK (True).

    Rounds alternate plain and secure so that background load hits both alike;
    ``bench/coap_throughput.py`` imports this for its DTLS row.
    """
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for secure in (False, True):
            rates[secure].append(_measure(secure, seconds, clients))
    return rates


def bench_requests(seconds: float, clients: int, rounds: int) -> None:
    rates = request_rates(seconds, clients, rounds)
    for secure, label in ((False, "plain UDP"), (True, "DTLS PSK (CCM8)")):
        print(f"requests/s    {label:48s} {statistics.median(rates[secure]):10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=3, help="request rounds per mode (median printed)"
    )
    args = parser.parse_args()
    bench_handshakes(args.seconds)
    bench_requests(args.seconds, args.clients, args.rounds)


if __name__ == "__main__":
    main()
