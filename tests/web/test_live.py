"""The REST API and event stream against a real LwM2M server with a real ``lwm2m`` client."""

from __future__ import annotations

import asyncio

from web_fakes import Live, SseReader


async def test_client_appears_and_reads_writes_observes(live: Live) -> None:
    async with live.http.stream("GET", "/api/event") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = SseReader(stream.aiter_lines())
        device = await live.add_client("dev-live")
        reg = await events.wait_for("REGISTRATION", endpoint="dev-live")
        assert reg["lwM2mVersion"] == "1.1"

        clients = (await live.http.get("/api/clients")).json()
        assert [c["endpoint"] for c in clients] == ["dev-live"]
        assert {"url": "/3/0", "attributes": {}} in clients[0]["objectLinks"]

        # Read: typed value, CoAP code, model name and unit.
        device.instance(3).set(9, 77)
        read = await live.http.get("/api/clients/dev-live/3/0/9")
        assert read.status_code == 200
        body = read.json()
        assert (body["status"], body["code"]) == ("CONTENT", "2.05")
        assert body["content"]["value"] == 77
        assert body["content"]["units"] == "%"

        # Write then read back through the device.
        write = await live.http.put("/api/clients/dev-live/3/0/14", json={"value": "+03"})
        assert write.status_code == 200 and write.json()["code"] == "2.04"
        assert device.instance(3).get(14) == "+03"
        assert (await live.http.get("/api/clients/dev-live/3/0/14")).json()["content"][
            "value"
        ] == "+03"

        # Observe, change the value on the device, see the NOTIFICATION on the stream.
        observe = await live.http.post("/api/clients/dev-live/3/0/9/observe")
        assert observe.status_code == 200 and observe.json()["content"]["value"] == 77
        device.instance(3).set(9, 55)
        note = await events.wait_for("NOTIFICATION", ep="dev-live", res="/3/0/9")
        assert note["kind"] == "single" and note["val"]["value"] == 55
        cancel = await live.http.delete("/api/clients/dev-live/3/0/9/observe")
        assert cancel.json() == {"cancelled": 1}

        # Send (POST /dp) from the device shows up as a SEND event.
        await device.send(["/3/0/9", "/3/0/14"])
        sent = await events.wait_for("SEND", ep="dev-live")
        assert sent["val"]["/3/0/9"]["value"] == 55
        assert sent["val"]["/3/0/14"]["value"] == "+03"

        metrics = (await live.http.get("/metrics")).text
        assert "lwm2m_registrations 1" in metrics
        assert 'lwm2m_requests_total{operation="observe",result="success"} 1' in metrics
        assert "lwm2m_notifications_total 1" in metrics
        assert 'lwm2m_events_total{kind="SEND"} 1' in metrics


async def test_device_errors_and_bad_input(live: Live) -> None:
    async with live.http.stream("GET", "/api/event?ep=dev-err") as stream:
        events = SseReader(stream.aiter_lines())
        await live.add_client("dev-err")
        await events.wait_for("REGISTRATION", endpoint="dev-err")
    # 4.04 from the device (no object 9) -> 502 carrying the CoAP code.
    missing = await live.http.get("/api/clients/dev-err/9/0/0")
    assert missing.status_code == 502
    assert missing.json()["code"] == "4.04"
    # Read-only resource -> 4.05 from the device.
    readonly = await live.http.put("/api/clients/dev-err/3/0/9", json={"value": 1})
    assert readonly.status_code == 502 and readonly.json()["code"] == "4.05"
    # Type checked against the model before sending.
    wrong = await live.http.put("/api/clients/dev-err/1/0/1", json={"value": "long"})
    assert wrong.status_code == 400
    assert (await live.http.get("/api/clients/nobody/3/0/9")).status_code == 404
    # Execute and Discover.
    assert (await live.http.post("/api/clients/dev-err/3/0/12")).json()["code"] == "2.04"
    links = (await live.http.get("/api/clients/dev-err/3/0/discover")).json()["objectLinks"]
    assert {"url": "/3/0/9", "attributes": {}} in links


async def test_composite_read_and_observe_on_real_client(live: Live) -> None:
    async with live.http.stream("GET", "/api/event") as stream:
        events = SseReader(stream.aiter_lines())
        device = await live.add_client("dev-comp")
        await events.wait_for("REGISTRATION", endpoint="dev-comp")
        resp = await live.http.get("/api/clients/dev-comp/composite?paths=/3/0/0,/3/0/9")
        assert resp.status_code == 200, resp.text
        content = resp.json()["compositeContent"]
        assert content["/3/0/0"]["value"] == "lwm2m-py"
        assert isinstance(content["/3/0/9"]["value"], int)

        url = "/api/clients/dev-comp/composite/observe?paths=/3/0/9,/3/0/14"
        resp = await live.http.post(url)
        assert resp.status_code == 200, resp.text
        device.instance(3).set(9, 33)
        note = await events.wait_for("NOTIFICATION", ep="dev-comp", kind="composite")
        assert note["paths"] == ["/3/0/9", "/3/0/14"]
        assert note["val"]["/3/0/9"]["value"] == 33
        assert (await live.http.delete(url)).json() == {"cancelled": 1}


async def test_deregistration_event_and_404(live: Live) -> None:
    async with live.http.stream("GET", "/api/event") as stream:
        events = SseReader(stream.aiter_lines())
        device = await live.add_client("dev-bye")
        await events.wait_for("REGISTRATION", endpoint="dev-bye")
        await device.stop()
        gone = await events.wait_for("DEREGISTRATION", endpoint="dev-bye")
        assert gone["expired"] is False
    assert (await live.http.get("/api/clients/dev-bye")).status_code == 404


async def test_security_store_on_real_server(live: Live) -> None:
    entry = {"endpoint": "dev-psk", "psk": {"identity": "dev-psk-id", "key": "0a0b0c0d"}}
    assert (await live.http.put("/api/security/clients", json=entry)).status_code == 200
    stored = live.server.stores.security.get("dev-psk")
    assert stored is not None and stored.psk.key == bytes.fromhex("0a0b0c0d")
    clash = {"endpoint": "dev-other", "psk": {"identity": "dev-psk-id", "key": "01"}}
    resp = await live.http.put("/api/security/clients", json=clash)
    assert resp.status_code == 400
    assert (await live.http.delete("/api/security/clients/dev-psk")).status_code == 204
    assert live.server.stores.security.get("dev-psk") is None


async def test_bootstrap_config_validation_and_push_failure(live: Live) -> None:
    bad = {"servers": [{"short_server_id": 0, "uri": "coap://127.0.0.1:5683"}]}
    resp = await live.http.put("/api/bootstrap/dev-bs", json=bad)
    assert resp.status_code == 400
    assert "short_server_id" in resp.json()["message"]
    good = {
        "servers": [
            {
                "short_server_id": 101,
                "uri": "coaps://127.0.0.1:5684",
                "security": {"mode": "psk", "identity": "dev-bs", "key": "00112233"},
            }
        ]
    }
    resp = await live.http.put("/api/bootstrap/dev-bs", json=good)
    assert resp.status_code == 200, resp.text
    shown = (await live.http.get("/api/bootstrap/dev-bs")).json()
    assert shown["servers"][0]["security"]["key"] == "<hidden>"
    # Saving what the UI showed keeps the stored key.
    assert (await live.http.put("/api/bootstrap/dev-bs", json=shown)).status_code == 200
    raw = live.bootstrap.configs.get("dev-bs").to_json()
    assert raw["servers"][0]["security"]["key"] == "00112233"
    # Nobody listens at this address: the session fails without an answer.
    async with live.http.stream("GET", "/api/event?ep=dev-bs") as stream:
        events = SseReader(stream.aiter_lines())
        sock = await _dead_udp_port()
        resp = await live.http.post(f"/api/bootstrap/dev-bs/push?address=127.0.0.1:{sock}")
        assert resp.status_code in (502, 504), resp.text
        assert resp.json()["message"]
        failed = await events.wait_for("BOOTSTRAP_FAILED", ep="dev-bs")
        assert failed["reason"] in ("timeout", "transport")
    sessions = (await live.http.get("/api/bootstrap/sessions?ep=dev-bs")).json()
    assert sessions[0]["status"] == "failed"


async def _dead_udp_port() -> int:
    """A UDP port with no listener (bound then closed)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = int(transport.get_extra_info("sockname")[1])
    transport.close()
    return port


async def test_sleeping_client_queues_requests_until_it_wakes(live: Live) -> None:
    async with live.http.stream("GET", "/api/event?ep=dev-q") as stream:
        events = SseReader(stream.aiter_lines())
        device = await live.add_client("dev-q", queue_mode=True)
        await events.wait_for("REGISTRATION", endpoint="dev-q")
        reg = live.server.get_registration("dev-q")
        device.sleep()
        live.server.queue.sleep_now(reg.id)
        await events.wait_for("SLEEPING", ep="dev-q")
        info = (await live.http.get("/api/clients/dev-q")).json()
        assert info["queuemode"] is True and info["sleeping"] is True

        # Not awake within the timeout: 504 saying why.
        resp = await live.http.get("/api/clients/dev-q/3/0/9?timeout=0.3")
        assert resp.status_code == 504
        assert "asleep" in resp.json()["message"]

        # A request waits in the queue and goes out when the client wakes up.
        pending = asyncio.create_task(live.http.get("/api/clients/dev-q/3/0/9?timeout=10"))
        async with asyncio.timeout(10):
            while live.server.queue.queued(reg.id) == 0:
                await asyncio.sleep(0)
        device.instance(3).set(9, 12)
        device.wake()
        await events.wait_for("AWAKE", ep="dev-q")
        resp = await pending
        assert resp.status_code == 200
        assert resp.json()["content"]["value"] == 12


async def test_coaplog_events_for_the_asked_client_only(live: Live) -> None:
    device = await live.add_client("dev-log")
    await live.add_client("dev-quiet")
    device.instance(3).set(9, 42)
    async with live.http.stream("GET", "/api/event?ep=dev-log") as stream:
        events = SseReader(stream.aiter_lines())
        await events.next_comment()  # the stream is open (and the tracer installed)
        assert (await live.http.get("/api/clients/dev-quiet/3/0/1")).status_code == 200
        assert (await live.http.get("/api/clients/dev-log/3/0/9")).status_code == 200
        request = await events.wait_for("COAPLOG", incoming=False, code="GET")
        response = await events.wait_for("COAPLOG", incoming=True, mId=request["mId"])
    assert request["ep"] == "dev-log" and request["type"] == "CON"
    assert request["options"].startswith('Uri-Path: "3", "0", "9"')
    assert isinstance(request["timestamp"], int) and request["token"]
    assert response["type"] == "ACK" and response["code"] == "2.05"
    assert response["codeName"] == "CONTENT" and response["token"] == request["token"]
    assert response["payload"]  # a TLV/CBOR body shows as hex, a text one as text
    # The read of dev-quiet went out first: had it been logged, it would be the first GET.
