"""Event loop selection helpers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket

import pytest

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.dispatch_end import at_dispatch_end
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.loop import install_best_event_loop, new_event_loop, reads_datagrams_in_batches
from lwm2m.coap.message import Message

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_new_event_loop() -> None:
    plain = new_event_loop(prefer_uvloop=False)
    best = new_event_loop()
    try:
        assert type(plain).__module__.startswith("asyncio")
        assert type(best).__module__.startswith("uvloop" if HAVE_UVLOOP else "asyncio")
    finally:
        plain.close()
        best.close()


def test_install_best_event_loop() -> None:
    try:
        assert install_best_event_loop() is HAVE_UVLOOP
        loop = asyncio.new_event_loop()
        try:
            assert type(loop).__module__.startswith("uvloop" if HAVE_UVLOOP else "asyncio")
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(None)


def test_only_uvloop_is_read_in_batches() -> None:
    plain = new_event_loop(prefer_uvloop=False)
    best = new_event_loop()
    try:
        assert not reads_datagrams_in_batches(plain)
        assert reads_datagrams_in_batches(best) is HAVE_UVLOOP
    finally:
        plain.close()
        best.close()


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_a_burst_read_in_one_turn_is_answered_whole_once_each() -> None:
    """uvloop: the endpoint dispatches a turn's datagrams together. A burst of 64 CON GETs
    with one retransmitted copy among them, over a real socket: 64 answers, each to its
    own MID and token, no empty ACK for the copy (its original was not handed out yet)."""

    async def main() -> list[Message]:
        served: list[int] = []

        async def handler(request: IncomingRequest) -> Message:
            served.append(request.message.mid)
            return Message(Code.CONTENT, payload=request.message.token)

        endpoint = await Endpoint.create("127.0.0.1", 0, handler=handler)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            requests = [
                encode(Message(Code.GET, MessageType.CON, mid, b"t%d" % mid, uri_path=("x",)))
                for mid in range(100, 164)
            ]
            requests.insert(10, requests[3])  # a copy of the fourth, in the same burst
            for data in requests:
                peer.sendto(data, endpoint.local_address)
            answers: list[Message] = []
            deadline = loop.time() + 5
            while len(answers) < 64 and loop.time() < deadline:
                try:
                    answers.append(decode(peer.recv(2048)))
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # anything more would come now
            with contextlib.suppress(BlockingIOError):
                answers.append(decode(peer.recv(2048)))
            assert sorted(served) == list(range(100, 164))
            return answers
        finally:
            peer.close()
            await endpoint.close()

    loop = new_event_loop()
    try:
        answers = loop.run_until_complete(main())
    finally:
        loop.close()
    assert len(answers) == 64
    assert sorted(a.mid for a in answers) == list(range(100, 164))
    assert all(a.type == MessageType.ACK and a.code == Code.CONTENT for a in answers)
    assert all(a.payload == a.token == b"t%d" % a.mid for a in answers)


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_handlers_of_a_burst_run_inside_the_dispatch_and_its_end_precedes_the_answers() -> None:
    """uvloop: what a handler puts off to the dispatch's end (the SQLite store's batch)
    runs when the endpoint's dispatch of the turn ends, before the loop reads again:
    every handler of a real-socket burst is inside a dispatch, and each one's end-of-
    dispatch work ran before its answer reached the peer."""

    async def main() -> tuple[list[bool], list[int], int]:
        inside: list[bool] = []
        ended: list[int] = []

        def handler(request: IncomingRequest) -> Message:
            mid = request.message.mid
            inside.append(at_dispatch_end(lambda: ended.append(mid)))
            return Message(Code.CONTENT)

        endpoint = await Endpoint.create("127.0.0.1", 0, handler=handler)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        loop = asyncio.get_running_loop()
        ended_before_answer = 0
        try:
            for mid in range(200, 232):
                message = Message(Code.GET, MessageType.CON, mid, b"t", uri_path=("x",))
                peer.sendto(encode(message), endpoint.local_address)
            answered = 0
            deadline = loop.time() + 5
            while answered < 32 and loop.time() < deadline:
                try:
                    answer = decode(peer.recv(2048))
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                answered += 1
                ended_before_answer += answer.mid in ended
            return inside, sorted(ended), ended_before_answer
        finally:
            peer.close()
            await endpoint.close()

    loop = new_event_loop()
    try:
        inside, ended, ended_before_answer = loop.run_until_complete(main())
    finally:
        loop.close()
    assert inside == [True] * 32
    assert ended == list(range(200, 232))
    assert ended_before_answer == 32
