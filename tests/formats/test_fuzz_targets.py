"""Run every fuzz target over a hypothesis corpus: valid payloads, mutated and random."""

from __future__ import annotations

import pytest
from format_models import MODEL
from format_strategies import node_and_path
from fuzz_targets import TARGETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.formats import registry
from lwm2m.formats.media import ContentFormat as CF

_FORMATS = {
    "text": CF.TEXT,
    "opaque": CF.OCTET_STREAM,
    "tlv": CF.LWM2M_TLV,
    "json": CF.LWM2M_JSON,
    "senml+json": CF.SENML_JSON,
    "senml+cbor": CF.SENML_CBOR,
    "cbor": CF.LWM2M_CBOR,
    "plain-cbor": CF.CBOR,
}


@st.composite
def corpus_entry(draw: st.DrawFn, name: str) -> bytes:
    """A valid payload of the target's format, often mutated; or plain random bytes."""
    if name == "link":
        base = draw(
            st.sampled_from(
                [
                    b'</>;rt="oma.lwm2m";ct="110 112",</1/0>,</3>;ver=1.1,</3/0>',
                    b'</3/0/1>;pmin=10;dim=3,</0/0>;ssid=1;uri="coap://[::1]:5683"',
                    b'</a>;title="x, \\"y\\"";obs',
                ]
            )
        )
    elif draw(st.booleans()):
        node, path = draw(node_and_path(single_value=name in ("text", "opaque", "plain-cbor")))
        try:
            base = registry.encode(node, path, _FORMATS[name], MODEL)
        except ValueError:
            base = b""
    else:
        return draw(st.binary(max_size=80))
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_target(name: str, data: st.DataObject) -> None:
    TARGETS[name](data.draw(corpus_entry(name)))


def test_targets_cover_every_node_format() -> None:
    assert set(_FORMATS.values()) == set(registry.CODECS)
    assert "link" in TARGETS
