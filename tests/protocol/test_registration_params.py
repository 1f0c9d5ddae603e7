import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.protocol.attributes import (
    AttributeError_,
    Attributes,
    parse_attribute_query,
)
from lwm2m.protocol.endpoint_name import (
    EndpointNameError,
    parse_endpoint_type,
    validate_endpoint_name,
)
from lwm2m.protocol.registration import (
    DEFAULT_LIFETIME_S,
    RegistrationParamError,
    parse_bootstrap_query,
    parse_register_query,
    parse_update_query,
)


def test_register_defaults_and_round_trip() -> None:
    params = parse_register_query(["ep=dev-1"])
    assert params.endpoint == "dev-1"
    assert params.endpoint_type is None
    assert params.lifetime_s == DEFAULT_LIFETIME_S
    assert params.lwm2m_version == "1.0"
    assert not params.queue_mode
    full = parse_register_query(
        ["ept=2", "ep=IMEI:490154203237518", "lt=300", "sms=+4912345", "lwm2m=1.1", "b=U", "Q"]
    )
    assert full.endpoint_type == 2 and full.queue_mode and full.lifetime_s == 300
    assert parse_register_query(full.to_query()) == full


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ([], "missing mandatory parameter 'ep'"),
        (["ep="], "ep is empty"),
        (["ep=" + "x" * 64], "64 bytes long"),
        (["ep=a", "foo=1"], "unknown parameter 'foo'"),
        (["ep=a", "lt=0"], "not a positive integer"),
        (["ep=a", "lt=-5"], "not a positive integer"),
        (["ep=a", "lt=abc"], "not a positive integer"),
        (["ep=a", "ep=b"], "given twice"),
        (["ep=a", "ept=3"], "reserved"),
        (["ep=a", "ept=64"], "reserved"),
        (["ep=a", "ept=256"], "out of range"),
        (["ep=a", "ept=x"], "not a decimal"),
        (["ep=a", "ept=2"], "not a URN"),
        (["ep=IMEI:1234", "ept=2"], "not a valid IMEI URN"),
        (["ep=a", "ept=1"], "not OUI-PC-SerialNumber"),
        (["ep=a", "lwm2m=9.9"], "not a supported version"),
        (["ep=a", "b=X"], "not a binding mode"),
        (["ep=a", "Q=1"], "takes no value"),
        (["ep=a", "sms=abc"], "not an MSISDN"),
    ],
)
def test_register_rejects(query: list[str], message: str) -> None:
    with pytest.raises(RegistrationParamError, match=message):
        parse_register_query(query)


def _outcome(query: tuple[str, ...] | list[str]) -> object:
    try:
        return parse_register_query(query)
    except RegistrationParamError as exc:
        return ("refused", str(exc))


_NAMES = st.sampled_from(
    ["a", "dev-1", "", "x" * 64, "IMEI:490154203237518", "00D09E-Router-12345", "bad\x01"]
)
_TAIL_ITEMS = st.sampled_from(
    [
        "lt=300",
        "lt=0",
        "lwm2m=1.1",
        "lwm2m=9.9",
        "b=UQ",
        "b=X",
        "Q",
        "Q=1",
        "sms=+4912345",
        "ept=1",
        "ept=2",
        "ept=3",
        "ept=65",
        "ep=other",
        "foo=1",
        "lt",
    ]
)


@given(tail=st.lists(_TAIL_ITEMS, max_size=4).map(tuple), first=_NAMES, second=_NAMES)
def test_register_query_with_a_tail_seen_before_parses_as_a_new_one(
    tail: tuple[str, ...], first: str, second: str
) -> None:
    """A storm's Registers differ only in ``ep``: the second query with the same rest
    (answered from the first one's parse) gives what a full parse gives, refusals
    included, whatever the first one gave."""
    _outcome((f"ep={first}", *tail))
    query = (f"ep={second}", *tail)
    assert _outcome(query) == _outcome(list(query))  # a list takes the full parse


@pytest.mark.parametrize(
    ("tail", "first", "second", "message"),
    [
        (("ept=2",), "IMEI:490154203237518", "a", "not a URN"),
        (("ept=1", "lt=60"), "00D09E-Router-12345", "IMEI:490154203237518", "OUI-PC"),
        (("lt=300",), "a", "", "ep is empty"),
        (("lt=300", "b=UQ"), "a", "x" * 64, "64 bytes long"),
        (("lwm2m=1.1",), "a", "bad\x01", "control characters"),
    ],
)
def test_register_query_with_a_tail_seen_before_still_checks_the_name(
    tail: tuple[str, ...], first: str, second: str, message: str
) -> None:
    parse_register_query((f"ep={first}", *tail))
    with pytest.raises(RegistrationParamError, match=message):
        parse_register_query((f"ep={second}", *tail))


@pytest.mark.parametrize(
    ("ept", "name"),
    [
        (1, "00D09E-Router-12345"),
        (1, "00d09e-12345"),
        (2, "IMEI:490154203237518"),
        (2, "ESN:8F3A2B1C"),
        (2, "MEID:A0000000002329"),
        (2, "UUID:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
        (2, "urn:imei:490154203237518"),
        (2, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
        (2, "urn:esn:8F3A2B1C"),
        (2, "urn:meid:A0000000002329"),
        (2, "urn:dev:mac:0024befffe804ff1"),
        (65, "anything goes for vendors"),
        (255, "x"),
        (None, "plain-name"),
    ],
)
def test_valid_names(ept: int | None, name: str) -> None:
    validate_endpoint_name(name, ept)


@pytest.mark.parametrize(
    ("ept", "name"),
    [
        (1, "00D09-12345"),
        (1, "00D09E"),
        (1, "00D09E-a-b-c"),
        (2, "IMEI:49015420323751"),
        (2, "IMEI:4901542032375188"),
        (2, "ESN:8F3A2B1"),
        (2, "MEID:A00000000023"),
        (2, "UUID:f81d4fae7dec11d0a76500a0c91e6bf6"),
        (2, "urn:imei:12"),
        (2, "urn:x"),
        (None, "bad\x00name"),
    ],
)
def test_invalid_names(ept: int | None, name: str) -> None:
    with pytest.raises(EndpointNameError):
        validate_endpoint_name(name, ept)


def test_endpoint_type_ranges() -> None:
    assert parse_endpoint_type("1") == 1
    assert parse_endpoint_type("2") == 2
    assert parse_endpoint_type("65") == 65
    for bad in ("0", "3", "64", "256", "01", "", "-1"):
        with pytest.raises(EndpointNameError):
            parse_endpoint_type(bad)


def test_update_and_bootstrap_queries() -> None:
    update = parse_update_query(["lt=60", "b=UQ"])
    assert update.lifetime_s == 60 and update.binding == "UQ" and update.queue_mode is True
    assert parse_update_query([]).lifetime_s is None
    with pytest.raises(RegistrationParamError, match="unknown parameter"):
        parse_update_query(["zz=1"])
    bs = parse_bootstrap_query(["ept=2", "ep=IMEI:490154203237518"])
    assert bs.endpoint_type == 2
    with pytest.raises(RegistrationParamError, match="missing mandatory"):
        parse_bootstrap_query(["ept=2"])


def test_attributes_parse_apply_inherit_validate() -> None:
    update = parse_attribute_query(["pmin=10", "pmax=60", "gt=30.5", "lt"])
    assert dict(update.set) == {"pmin": 10, "pmax": 60, "gt": 30.5}
    assert update.remove == ("lt",)
    attrs = Attributes(lt=5.0).apply(update)
    assert attrs == Attributes(pmin=10, pmax=60, gt=30.5)
    assert Attributes(pmin=1).inherit(attrs) == Attributes(pmin=1, pmax=60, gt=30.5)
    assert attrs.to_query() == ("pmin=10", "pmax=60", "gt=30.5")
    with pytest.raises(AttributeError_, match="pmax"):
        Attributes(pmin=10, pmax=5).validate()
    with pytest.raises(AttributeError_, match="lt"):
        Attributes(lt=10, gt=5).validate()
    with pytest.raises(AttributeError_, match="2\\*st"):
        Attributes(lt=1, gt=5, st=3).validate()
    for bad in (["foo=1"], ["pmin=-1"], ["gt=x"], ["gt=nan"], ["pmin=1", "pmin=2"]):
        with pytest.raises(AttributeError_):
            parse_attribute_query(bad)
