"""Value typing (model.value_typing), RangeEnumeration and definition checks (model.value_ranges)."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.model.core_objects import DEVICE, FIRMWARE_UPDATE, SECURITY, SERVER
from lwm2m.model.definitions import ResourceDef
from lwm2m.model.reusable import REUSABLE
from lwm2m.model.types import ObjectLink, Operations, ResourceType
from lwm2m.model.value_ranges import ValueRange, check_value, check_values, parse_range
from lwm2m.model.value_typing import (
    UINT64_MAX,
    ValueTypeError,
    check_type,
    coerce,
    from_text,
    infer_type,
    normalise,
    to_text,
)

T = ResourceType
UTC = datetime.UTC


def rdef(
    type: ResourceType, range: str = "", *, multiple: bool = False, enum: tuple[str, ...] = ()
) -> ResourceDef:
    return ResourceDef(
        99, "Thing", Operations.RW, multiple, False, type, range=range, enumeration=enum
    )


# -------------------------------------------------------------- parse_range


@pytest.mark.parametrize(
    ("text", "type", "intervals", "length"),
    [
        ("0..100", T.INTEGER, ((0, 100),), False),
        ("0-100", T.INTEGER, ((0, 100),), False),
        ("-40..85", T.INTEGER, ((-40, 85),), False),
        ("-40-85", T.INTEGER, ((-40, 85),), False),
        ("-10..-1", T.INTEGER, ((-10, -1),), False),
        ("0.0..1.5", T.FLOAT, ((0.0, 1.5),), False),
        ("5", T.INTEGER, ((5, 5),), False),
        ("0..3, 7", T.UNSIGNED_INTEGER, ((0, 3), (7, 7)), False),
        ("1..255 bytes", T.STRING, ((1, 255),), True),
        ("0-255 bytes", T.STRING, ((0, 255),), True),
        ("0..255", T.STRING, ((0, 255),), True),  # String ranges are lengths
        ("6", T.OPAQUE, ((6, 6),), True),
        ("16,32,48", T.OPAQUE, ((16, 16), (32, 32), (48, 48)), True),
        ("16,32,48 bytes", T.OPAQUE, ((16, 16), (32, 32), (48, 48)), True),
    ],
)
def test_parse_range_numeric(
    text: str, type: ResourceType, intervals: tuple[tuple[float, float], ...], length: bool
) -> None:
    spec = parse_range(text, type)
    assert spec is not None
    assert spec.intervals == intervals and spec.length is length and spec.choices == ()


def test_parse_range_string_enumeration() -> None:
    spec = parse_range("U, UQ, S, SQ", T.STRING)
    assert spec == ValueRange("U, UQ, S, SQ", choices=("U", "UQ", "S", "SQ"))


@pytest.mark.parametrize(
    ("text", "type"),
    [
        ("", T.INTEGER),
        ("The possible values of Resource are listed in 5.3.1.1", T.STRING),
        ("The possible values are those listed in the LwM2M Core Specification", T.STRING),
        ("16-32-48 bytes", T.OPAQUE),
        ("0..100", T.BOOLEAN),
        ("0..100", T.TIME),
        ("5..1", T.INTEGER),  # reversed
        ("1..2 bytes", T.INTEGER),  # length of an integer: meaningless
        ("U, 1", T.STRING),  # mixed
        ("a, , b", T.STRING),
        ("abc", T.INTEGER),
        ("1.." + "9" * 5000, T.INTEGER),
        ("x" * 2000, T.STRING),
    ],
)
def test_parse_range_free_text_is_not_enforced(text: str, type: ResourceType) -> None:
    assert parse_range(text, type) is None


@given(st.text(max_size=40), st.sampled_from(list(ResourceType)))
def test_parse_range_never_raises(text: str, type: ResourceType) -> None:
    spec = parse_range(text, type)
    assert spec is None or spec.intervals or spec.choices


# -------------------------------------------------------------- check_value


@pytest.mark.parametrize(
    ("type", "good", "bad"),
    [
        (T.STRING, ["", "x"], [b"x", 1, None]),
        (T.CORELNK, ["</3/0>"], [1]),
        (T.INTEGER, [0, -(2**63), 2**63 - 1], [True, 1.0, "1", 2**63, -(2**63) - 1]),
        (T.UNSIGNED_INTEGER, [0, UINT64_MAX], [-1, UINT64_MAX + 1, False, 1.5]),
        (T.FLOAT, [0.5, 3, -1e300], [True, "1.0", math.nan, math.inf]),
        (T.BOOLEAN, [True, False], [0, 1, "true"]),
        (T.OPAQUE, [b"", b"\x00"], ["00", bytearray(b"x")]),
        (
            T.TIME,
            [datetime.datetime(2024, 1, 1, tzinfo=UTC)],
            [0, datetime.datetime(2024, 1, 1), "2024"],
        ),
        (T.OBJLNK, [ObjectLink(3, 0)], ["3:0", (3, 0)]),
        (T.NONE, [], [None, "", 0]),
    ],
)
def test_check_type(type: ResourceType, good: list[object], bad: list[object]) -> None:
    for value in good:
        check_type(value, type)
        check_value(rdef(type), value)
    for value in bad:
        with pytest.raises(ValueError):
            check_value(rdef(type), value)


def test_check_value_messages_are_precise() -> None:
    battery = DEVICE.resources[9]
    check_value(battery, 0)
    check_value(battery, 100)
    with pytest.raises(
        ValueError, match=r"resource 9 \(Battery Level\): 101 outside the allowed value 0\.\.100"
    ):
        check_value(battery, 101)
    with pytest.raises(
        ValueError, match=r"resource 9 \(Battery Level\): expected a Integer value, got str"
    ):
        check_value(battery, "50")
    uri = FIRMWARE_UPDATE.resources[1]
    check_value(uri, "coap://x/" + "a" * 246)
    with pytest.raises(ValueError, match=r"length 256 bytes outside the allowed length 0\.\.255"):
        check_value(uri, "coap://x/" + "a" * 247)


def test_string_length_counts_utf8_bytes() -> None:
    res = rdef(T.STRING, "0..4 bytes")
    check_value(res, "abcd")
    with pytest.raises(ValueError, match="length 6 bytes"):
        check_value(res, "ééé")


def test_opaque_length_enumeration() -> None:
    keys = SECURITY.resources[8]
    for n in (16, 32, 48):
        check_value(keys, bytes(n))
    with pytest.raises(ValueError, match="length 17 bytes outside the allowed length 16, 32, 48"):
        check_value(keys, bytes(17))


def test_security_mode_and_short_server_id_ranges() -> None:
    with pytest.raises(ValueError, match=r"0\.\.4"):
        check_value(SECURITY.resources[2], 5)
    with pytest.raises(ValueError, match=r"1\.\.65534"):
        check_value(SERVER.resources[0], 0)
    check_value(SERVER.resources[0], 65534)


def test_float_range_and_int_for_float() -> None:
    res = rdef(T.FLOAT, "-1.5..1.5")
    check_value(res, 1)
    check_value(res, -1.5)
    with pytest.raises(ValueError, match="outside"):
        check_value(res, 1.51)


def test_union_of_ranges() -> None:
    res = rdef(T.INTEGER, "0..3, 7")
    for ok in (0, 3, 7):
        check_value(res, ok)
    for bad in (4, 8, -1):
        with pytest.raises(ValueError, match=r"0\.\.3, 7"):
            check_value(res, bad)


def test_large_unsigned_bounds_are_exact() -> None:
    res = rdef(T.UNSIGNED_INTEGER, f"0..{UINT64_MAX - 1}")
    check_value(res, UINT64_MAX - 1)
    with pytest.raises(ValueError, match="outside"):
        check_value(res, UINT64_MAX)


def test_string_choices_and_definition_enumeration() -> None:
    res = rdef(T.STRING, "U, UQ")
    check_value(res, "UQ")
    with pytest.raises(ValueError, match="'T' is not one of 'U', 'UQ'"):
        check_value(res, "T")
    enum = rdef(T.STRING, enum=("red", "green"))
    check_value(enum, "red")
    with pytest.raises(ValueError, match="'blue' is not one of red, green"):
        check_value(enum, "blue")


def test_free_text_range_is_not_enforced() -> None:
    check_value(rdef(T.STRING, "The possible values are listed in 5.3.1.1"), "anything")


def test_executable_has_no_value() -> None:
    with pytest.raises(ValueError, match="executable"):
        check_value(REUSABLE[5605], None)


def test_check_values_multiplicity() -> None:
    error_codes = DEVICE.resources[11]
    check_values(error_codes, {0: 0, 1: 32})
    with pytest.raises(ValueError, match="is multiple"):
        check_values(error_codes, 0)
    with pytest.raises(ValueError, match="outside"):
        check_values(error_codes, {0: 33})
    with pytest.raises(ValueError, match="is single"):
        check_values(DEVICE.resources[9], {0: 1})
    check_values(DEVICE.resources[9], 50)


# ----------------------------------------------------------- coerce_from_text


@pytest.mark.parametrize(
    ("type", "text", "value"),
    [
        (T.STRING, " keep spaces ", " keep spaces "),
        (T.CORELNK, "</3/0>", "</3/0>"),
        (T.INTEGER, "-42", -42),
        (T.INTEGER, " +7 ", 7),
        (T.INTEGER, "1_000", 1000),
        (T.UNSIGNED_INTEGER, str(UINT64_MAX), UINT64_MAX),
        (T.FLOAT, "1.5", 1.5),
        (T.FLOAT, "-2e3", -2000.0),
        (T.FLOAT, "3", 3.0),
        (T.BOOLEAN, "true", True),
        (T.BOOLEAN, "FALSE", False),
        (T.BOOLEAN, "1", True),
        (T.BOOLEAN, "0", False),
        (T.TIME, "0", datetime.datetime(1970, 1, 1, tzinfo=UTC)),
        (T.TIME, "1700000000", datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (T.TIME, "2024-01-31T12:00:00Z", datetime.datetime(2024, 1, 31, 12, tzinfo=UTC)),
        (T.TIME, "2024-01-31T14:00:00+02:00", datetime.datetime(2024, 1, 31, 12, tzinfo=UTC)),
        (T.TIME, "2024-01-31T12:00:00", datetime.datetime(2024, 1, 31, 12, tzinfo=UTC)),
        (T.OBJLNK, "3:0", ObjectLink(3, 0)),
        (T.OBJLNK, " 65535:65535 ", ObjectLink(65535, 65535)),
        (T.OPAQUE, "hex:0A0b", b"\x0a\x0b"),
        (T.OPAQUE, "0x0a 0b", b"\x0a\x0b"),
        (T.OPAQUE, "0a0b", b"\x0a\x0b"),
        (T.OPAQUE, "base64:AAEC", b"\x00\x01\x02"),
        (T.OPAQUE, "b64:AAEC", b"\x00\x01\x02"),
        (T.OPAQUE, "AAECAw==", b"\x00\x01\x02\x03"),  # not hex: base64
        (T.OPAQUE, "", b""),
    ],
)
def test_coerce_from_text(type: ResourceType, text: str, value: object) -> None:
    result = from_text(text, type)
    assert result == value
    assert builtin_type(result) is builtin_type(value)


def builtin_type(value: object) -> type:
    return type(value)


@pytest.mark.parametrize(
    ("type", "text", "fragment"),
    [
        (T.INTEGER, "1.5", "not a decimal integer"),
        (T.INTEGER, "0x10", "not a decimal integer"),
        (T.INTEGER, "", "not a decimal integer"),
        (T.INTEGER, "9" * 5000, "not a decimal integer"),
        (T.INTEGER, str(2**63), "signed 64-bit"),
        (T.UNSIGNED_INTEGER, "-1", "Unsigned Integer"),
        (T.FLOAT, "nan", "finite"),
        (T.FLOAT, "inf", "finite"),
        (T.FLOAT, "abc", "not a number"),
        (T.FLOAT, "1" * 500, "too long"),
        (T.BOOLEAN, "yes", "not a boolean"),
        (T.TIME, "yesterday", "neither epoch seconds nor an ISO-8601"),
        (T.TIME, "999999999999", "out of range"),
        (T.OBJLNK, "3/0", "OBJECT:INSTANCE"),
        (T.OBJLNK, "70000:0", "out of range"),
        (T.OPAQUE, "hex:abc", "hex digits"),
        (T.OPAQUE, "base64:@@@", "neither hex nor base64"),
        (T.OPAQUE, "zz!", "neither hex nor base64"),
        (T.NONE, "", "executable"),
    ],
)
def test_coerce_from_text_rejects(type: ResourceType, text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        from_text(text, type)


def test_coerce_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="expected text"):
        from_text(b"x", T.STRING)  # type: ignore[arg-type]


_values = st.one_of(
    st.tuples(st.just(T.STRING), st.text()),
    st.tuples(st.just(T.INTEGER), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(T.UNSIGNED_INTEGER), st.integers(0, UINT64_MAX)),
    st.tuples(st.just(T.FLOAT), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just(T.BOOLEAN), st.booleans()),
    st.tuples(st.just(T.OPAQUE), st.binary(max_size=64)),
    st.tuples(
        st.just(T.TIME),
        st.datetimes(
            min_value=datetime.datetime(1, 1, 2),
            max_value=datetime.datetime(9999, 12, 30),
            timezones=st.just(UTC),
        ),
    ),
    st.tuples(
        st.just(T.OBJLNK), st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535))
    ),
)


@given(_values)
def test_text_round_trip(case: tuple[ResourceType, object]) -> None:
    rtype, value = case
    text = to_text(value)  # type: ignore[arg-type]
    assert from_text(text, rtype) == value


@given(st.sampled_from([t for t in ResourceType if t is not T.NONE]), st.text(max_size=30))
def test_coerce_arbitrary_text_gives_a_valid_value_or_value_error(
    rtype: ResourceType, text: str
) -> None:
    try:
        value = from_text(text, rtype)
    except ValueError:
        return
    check_type(value, rtype)


# ------------------------------------------------------ the one conversion policy


@pytest.mark.parametrize(
    ("value", "type", "expected"),
    [
        (2.0, T.INTEGER, 2),  # integral float: lossless
        (-(2.0**63), T.INTEGER, -(2**63)),
        (3.0, T.UNSIGNED_INTEGER, 3),
        (3, T.FLOAT, 3.0),
        (2**53, T.FLOAT, float(2**53)),
        (1, T.BOOLEAN, True),  # TLV and Text carry Boolean as 0/1
        (0, T.BOOLEAN, False),
        (0, T.TIME, datetime.datetime(1970, 1, 1, tzinfo=UTC)),
        (1.5, T.TIME, datetime.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)),
        ("3:1", T.OBJLNK, ObjectLink(3, 1)),
        (bytearray(b"\x01"), T.OPAQUE, b"\x01"),
    ],
)
def test_lossless_conversions(value: object, type: ResourceType, expected: object) -> None:
    assert normalise(value, type) == expected
    assert coerce(value, type) == expected
    assert builtin_type(coerce(value, type)) is builtin_type(expected)


@pytest.mark.parametrize(
    ("value", "type", "fragment"),
    [
        (1.5, T.INTEGER, "not a Integer"),
        (2.0**63, T.INTEGER, "signed 64-bit"),
        (-1, T.UNSIGNED_INTEGER, r"outside 0\.\.2\^64-1"),
        (2**53 + 1, T.FLOAT, "not exactly representable"),
        (2, T.BOOLEAN, "not a Boolean"),
        (True, T.INTEGER, "not a Integer"),
        (False, T.FLOAT, "not a Float"),
        ("1", T.INTEGER, "not a Integer"),
        ("true", T.BOOLEAN, "not a Boolean"),
        (datetime.datetime(2024, 1, 1), T.TIME, "no time zone"),
        (math.inf, T.TIME, "not finite"),
        (10.0**20, T.TIME, "out of range"),
        ("3/1", T.OBJLNK, "OBJECT:INSTANCE"),
        (1, T.STRING, "not a String"),
    ],
)
def test_conversions_refused(value: object, type: ResourceType, fragment: str) -> None:
    for convert in (normalise, coerce):
        with pytest.raises(ValueTypeError, match=fragment):
            convert(value, type)


def test_non_finite_floats_are_carried_but_not_given() -> None:
    # Rule 4: a device may report NaN (IEEE 754); codecs relay it ...
    assert math.isnan(normalise(math.nan, T.FLOAT))  # type: ignore[arg-type]
    assert normalise(-math.inf, T.FLOAT) == -math.inf
    check_type(math.inf, T.FLOAT)
    # ... but a value given to a resource must be finite.
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueTypeError, match="not a finite Float"):
            coerce(bad, T.FLOAT)
        with pytest.raises(ValueError, match="finite"):
            check_value(rdef(T.FLOAT), bad)


def test_untyped_values_pass_unchanged() -> None:
    with pytest.raises(ValueTypeError, match="executable"):
        normalise(1, T.NONE)
    assert coerce(2.0, None) == 2.0 and coerce(b"x", None) == b"x"
    with pytest.raises(ValueTypeError, match="not a resource value"):
        coerce([1], None)
    assert infer_type(True) is T.BOOLEAN and infer_type(1) is T.INTEGER
    with pytest.raises(ValueTypeError, match="unsupported value type"):
        infer_type(None)
