"""The schema's patterns for paths and formats say yes exactly where the parsers do.

A schema stricter than the parser misleads a reader; one looser than the parser
makes a schema-following client meet 400s (the fuzzer found ``.../limit/attributes``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import example, given, settings
from hypothesis import strategies as st
from web_fakes import FakeBootstrap, FakeDevices

from lwm2m.web.app import build_app
from lwm2m.web.backend import InvalidInput
from lwm2m.web.param_patterns import (
    BLANKS,
    FORMAT_PATTERN,
    PATH_PATTERN,
    PATHS_PATTERN,
    decimal_up_to,
)
from lwm2m.web.present import parse_format, parse_path, parse_paths
from lwm2m.web.routes_stores import ADDRESS_PATTERN


def _accepts(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except InvalidInput:
        return False
    return True


def _matches(pattern: str, text: str) -> bool:
    # JSON Schema reads "$" as the end of the text, which Python spells \Z.
    return re.search(pattern.removesuffix("$") + r"\Z", text) is not None


@pytest.mark.parametrize("limit", [0, 1, 9, 10, 19, 99, 100, 255, 1000, 65534, 65535])
def test_decimal_up_to_matches_exactly_zero_to_limit(limit: int) -> None:
    group = re.compile(decimal_up_to(limit))
    top = min(limit * 10 + 10, 70_000)
    accepted = {n for n in range(top) if group.fullmatch(str(n))}
    assert accepted == set(range(limit + 1))
    assert not group.fullmatch("0" + str(limit))  # no leading zero
    assert not group.fullmatch("")


def test_decimal_up_to_refuses_a_negative_limit() -> None:
    with pytest.raises(ValueError, match="limit must be >= 0"):
        decimal_up_to(-1)


_PATHISH = st.text(alphabet="0123456789/ ,\n", max_size=30)
_EDGES = ["3", "/3/0/1", "3/0/1/2", "65535/65534/65535/65534", "65535/65535", "03", ""]


@settings(max_examples=400)
@given(st.one_of(_PATHISH, st.from_regex(PATH_PATTERN.removesuffix("$") + r"\Z"), st.text()))
@example("3/0/1/2/3")
@example("3\n")
@example("65536")
def test_path_pattern_agrees_with_parse_path(text: str) -> None:
    assert _matches(PATH_PATTERN, text) == _accepts(parse_path, text), text


@pytest.mark.parametrize("text", _EDGES)
def test_path_pattern_edges(text: str) -> None:
    assert _matches(PATH_PATTERN, text) == _accepts(parse_path, text)


def _no_repeat(text: str) -> bool:
    # parse_paths also refuses a path given twice: no regular expression says that.
    items = [p.strip(BLANKS) for p in text.split(",") if p.strip(BLANKS)]
    try:
        return len({str(parse_path(p)) for p in items}) == len(items)
    except InvalidInput:
        return True


@settings(max_examples=400)
@given(
    st.one_of(_PATHISH, st.from_regex(PATHS_PATTERN.removesuffix("$") + r"\Z"), st.text()).filter(
        _no_repeat
    )
)
@example(" 3/0/1 , ,/3/0/2,")
@example(",")
@example("3 4")
@example("3,\n4")
@example("3,\x1c4")
def test_paths_pattern_agrees_with_parse_paths(text: str) -> None:
    assert _matches(PATHS_PATTERN, text) == _accepts(parse_paths, text), text


_NAMES = ["TLV", "senml_json", "SenML+CBOR", "application/vnd.oma.lwm2m+tlv", "011542", "1542"]


@settings(max_examples=400)
@given(
    st.one_of(
        st.sampled_from(_NAMES),
        st.from_regex(FORMAT_PATTERN.removesuffix("$") + r"\Z"),
        st.text(alphabet="tlvjsonTLV_-+0123456789 ", max_size=12),
        st.text(max_size=40),
    )
)
@example(" tlv\t")
@example("\ntlv")
@example("\ufefftlv")
@example("lin\u212a")
@example("\u0661\u0661\u0665\u0664\u0662")
@example("text/plain;charset=UTF_8")
@example("11545")
@example("")
def test_format_pattern_agrees_with_parse_format(text: str) -> None:
    assert _matches(FORMAT_PATTERN, text) == _accepts(parse_format, text), repr(text)


@pytest.mark.parametrize("text", ["\ntlv", "lin\u212a", "\u0661\u0661\u0665\u0664\u0662", "tlvv"])
def test_a_format_outside_the_pattern_is_refused_with_the_known_names(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^format: unknown content format .* \(known: .*tlv"):
        parse_format(text)


@pytest.mark.parametrize("text", ["limit", "3/0/1/2/3", "65536", "3//1"])
def test_a_path_outside_the_pattern_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^invalid path: "):
        parse_path(text)


def _app() -> FastAPI:
    return build_app(FakeDevices(), FakeBootstrap(), count_events=False)


def _schema_patterns() -> list[str]:
    document = _app().openapi()
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                found.append(pattern)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


def test_no_schema_pattern_uses_a_class_whose_meaning_depends_on_the_dialect() -> None:
    """``\\s``, ``\\d``, ``\\w`` and ``\\b`` mean other characters in ECMA-262 (what a
    schema's reader applies) than in Python and in the Rust engine that validates a
    query: a schema-valid address with U+0085 was refused (found by the fuzzer)."""
    patterns = _schema_patterns()
    assert any("6553[0-5]" in p for p in patterns)  # the push address is among them
    shorthand = re.compile(r"(?<!\\)(?:\\\\)*\\[sSdDwWbB]")
    assert [p for p in patterns if shorthand.search(p)] == []


@pytest.mark.parametrize(
    "host",
    ["h\x85st", "h\xa0st", "h\x1cst", "h\ufeffst", "h\u2028st", "h\x0bst", "m\xfcnchen.de", "h"],
)
async def test_the_push_address_is_refused_exactly_where_its_pattern_says(host: str) -> None:
    """Python's reading of the pattern is every dialect's, once it has no shorthand class
    (the test above): a 400 exactly for the addresses outside it, else the unknown
    endpoint's 404."""
    address = f"{host}:69"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app()), base_url="http://127.0.0.1"
    ) as http:
        response = await http.post("/api/bootstrap/nobody/push", params={"address": address})
    expected = 404 if _matches(ADDRESS_PATTERN, address) else 400
    assert response.status_code == expected, response.text
