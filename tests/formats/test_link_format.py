"""CoRE Link Format (RFC 6690) parsing/serialising and the LwM2M meanings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.formats.errors import FormatError
from lwm2m.formats.link_format import (
    PARMNAME_CHARS,
    Link,
    discover_links,
    format_links,
    link_paths,
    parse_links,
    registration_links,
    registration_objects,
)
from lwm2m.model.path import Path


def test_register_payload() -> None:
    links = parse_links('</>;rt="oma.lwm2m";ct=11543,</1/0>,</3>;ver=1.1,</3/0>')
    assert links == [
        Link("/", (("rt", "oma.lwm2m"), ("ct", "11543"))),
        Link("/1/0"),
        Link("/3", (("ver", "1.1"),)),
        Link("/3/0"),
    ]
    reg = registration_objects(links)
    assert reg.root_path == "/"
    assert reg.content_formats == {11543}
    assert reg.instances == {1: (0,), 3: (0,)}
    assert reg.versions == {3: "1.1"}
    assert reg.paths() == [Path(1, 0), Path(3, 0)]


def test_register_payload_with_alternate_root_and_ct_list() -> None:
    text = '</lwm2m>;rt="oma.lwm2m";ct="60 110 112",</lwm2m/1/0>,</lwm2m/3303>;ver=1.1;foo=bar,</lwm2m/3303/2>'
    reg = registration_objects(parse_links(text))
    assert reg.root_path == "/lwm2m"
    assert reg.content_formats == {60, 110, 112}
    assert reg.instances == {1: (0,), 3303: (2,)}
    assert reg.params[Path(3303)] == (("foo", "bar"),)
    with pytest.raises(FormatError, match="not under the root path"):
        registration_objects(parse_links('</lwm2m>;rt="oma.lwm2m",</1/0>'))


def test_root_link_without_rt_and_comma_separated_ct() -> None:
    reg = registration_objects(parse_links('</>;ct="110,112";hb,</1/0>,</3/0>'))
    assert reg.content_formats == {110, 112}
    assert reg.root_params == (("ct", "110,112"), ("hb", None))
    assert reg.paths() == [Path(1, 0), Path(3, 0)]


def test_lwm2m_1_0_register_payload_without_root_link() -> None:
    reg = registration_objects(parse_links("</1/0>,</3/0>,</5>"))
    assert reg.root_path == "/"
    assert reg.content_formats == frozenset()
    assert reg.paths() == [Path(1, 0), Path(3, 0), Path(5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("</3/0/1>", "expected </object>"),
        ("</x>", "not a decimal ID"),
        ("</3>;ver=1", "MAJOR.MINOR"),
        ("</3/0>;ver=1.0", "ver belongs on the object link"),
        ('</>;rt="oma.lwm2m";ct=abc', "ct 'abc'"),
        ("</3>,</3>", "announced twice"),
        ('</>;rt="oma.lwm2m",</a>;rt="oma.lwm2m"', "more than one"),
    ],
)
def test_bad_register_payloads(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        registration_objects(parse_links(text))


def test_registration_links_round_trip() -> None:
    text = registration_links(
        {3: [0], 1: [0, 1], 5: []}, versions={3: "1.1"}, content_formats=[112, 110]
    )
    assert text == '</>;rt="oma.lwm2m";ct="110 112",</1/0>,</1/1>,</3>;ver=1.1,</3/0>,</5>'
    reg = registration_objects(parse_links(text))
    assert reg.instances == {1: (0, 1), 3: (0,), 5: ()}
    assert registration_links({3: [0]}) == "</3/0>"


def test_quoted_strings_with_commas_semicolons_and_escapes() -> None:
    links = parse_links(r'</a>;title="x, y; \"z\" \\";rt="a b",</b>;obs;obs;k=v=w')
    assert links[0].params == (("title", 'x, y; "z" \\'), ("rt", "a b"))
    assert links[1].params == (("obs", None), ("obs", None), ("k", "v=w"))
    assert links[1].get_all("obs") == [None, None] and links[1].has("obs")
    assert parse_links(format_links(links)) == links


def test_discover_answer() -> None:
    text = discover_links(
        [
            (Path(3, 0), ()),
            (Path(3, 0, 1), (("pmin", "10"),)),
            (Path(3, 0, 7), (("dim", "3"), ("gt", "5.5"))),
        ]
    )
    assert text == "</3/0>,</3/0/1>;pmin=10,</3/0/7>;dim=3;gt=5.5"
    assert [p for p, _ in link_paths(parse_links(text))] == [
        Path(3, 0),
        Path(3, 0, 1),
        Path(3, 0, 7),
    ]


def test_bootstrap_discover_answer() -> None:
    text = '</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server:5684",</1/0>;ssid=101,</3/0>'
    links = parse_links(text)
    assert links[1].get("uri") == "coaps://server:5684"
    assert links[0].get("lwm2m") == "1.1"
    assert parse_links(format_links(links)) == links


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/3/0", "offset 0: expected '<'"),
        ("</3/0", "unterminated '<'"),
        ("</3/0>;", "offset 7: expected a parameter name"),
        ("</3/0>;a=", "empty parameter value"),
        ('</3/0>;a="x', "unterminated quoted string"),
        ("</3/0>,", "offset 7: expected '<'"),
        ("</3/0> ,</1>", "offset 6: expected ',' or ';'"),
        ("</3/0>;a=b c", "expected ',' or ';'"),
        ("</3 0>", "not allowed in a URI"),
        ("</3/0>;a*=utf-8''x", "extended"),
        ('</3/0>;a="\x01"', "control character"),
        (b"</\xff>", "invalid UTF-8"),
        ('</a>;t="\\\x00"', "offset 9: control character"),
    ],
)
def test_malformed_links(text: str | bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_links(text)


def test_control_characters_are_refused_when_writing() -> None:
    with pytest.raises(FormatError, match="control character"):
        format_links([Link("/a", (("t", "x\x00"),))])


def test_empty_document() -> None:
    assert parse_links("") == []
    assert format_links([]) == ""


_names = st.text(alphabet=sorted(PARMNAME_CHARS), min_size=1, max_size=6).map(str.lower)
_values = st.none() | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=10,
)
_targets = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='<>"'),
    max_size=12,
)
_links = st.builds(Link, _targets, st.lists(st.tuples(_names, _values), max_size=4).map(tuple))


@settings(max_examples=300, deadline=None)
@given(links=st.lists(_links, max_size=4))
def test_format_then_parse_round_trips(links: list[Link]) -> None:
    assert parse_links(format_links(links)) == links


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='<>/;,="\\ab1 ', max_size=30))
def test_arbitrary_text_parses_or_format_error(text: str) -> None:
    try:
        links = parse_links(text)
    except FormatError:
        return
    assert parse_links(format_links(links)) == links
