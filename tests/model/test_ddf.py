"""The DDF loader: our own test files, the real registry files when present, every kind of
broken file."""

from __future__ import annotations

from pathlib import Path

import pytest
from ddf_sources import BROKEN_DDF, OMA_DDF, OMA_FILES, OWN_DDF, needs_oma_ddf
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.model.ddf import (
    DdfError,
    DdfWarning,
    load_ddf_bytes,
    load_ddf_directory,
    load_ddf_file,
)
from lwm2m.model.definitions import ObjectDef
from lwm2m.model.reusable import REUSABLE
from lwm2m.model.types import Operations, ResourceType

DDF_DIR = OMA_DDF
REAL_FILES = OMA_FILES


# ------------------------------------------------------------ our own files


def _types(obj: ObjectDef) -> dict[int, ResourceType]:
    return {rid: res.type for rid, res in obj.resources.items()}


def test_own_files_load_strictly_in_file_name_order() -> None:
    objects = load_ddf_directory(OWN_DDF, strict=True)  # broken/ below is not read
    assert [(o.id, o.version) for o in objects] == [
        (3, "2.0"),
        (40000, "1.0"),
        (40000, "1.1"),
        (40001, "2.0"),
    ]
    for file in sorted(OWN_DDF.glob("*.xml")):
        (obj,) = load_ddf_file(file, strict=True)
        assert file.name.split("-")[0].removesuffix(".xml") == str(obj.id)


def test_lwm2m_1_1_file_with_every_type() -> None:
    found: list[DdfWarning] = []
    (obj,) = load_ddf_file(OWN_DDF / "40000.xml", strict=False, on_warning=found.append)
    assert found == []
    assert (obj.id, obj.name, obj.version, obj.lwm2m_version) == (
        40000,
        "Test Thermostat",
        "1.1",
        "1.1",
    )
    assert obj.urn == "urn:oma:lwm2m:ext:40000:1.1"
    assert obj.multiple and not obj.mandatory
    assert obj.description == "A heating controller, one instance per <b>zone</b>."
    T = ResourceType
    assert _types(obj) == {
        0: T.STRING,
        1: T.FLOAT,
        2: T.INTEGER,
        3: T.UNSIGNED_INTEGER,
        4: T.TIME,
        5: T.OBJLNK,
        6: T.CORELNK,
        7: T.OPAQUE,
        8: T.BOOLEAN,
        9: T.NONE,
        10: T.FLOAT,
        5700: T.FLOAT,
    }
    assert set(_types(obj).values()) == set(ResourceType)
    ops = {rid: res.operations for rid, res in obj.resources.items()}
    assert ops == {
        0: Operations.RW,
        1: Operations.RW,
        2: Operations.RW,
        3: Operations.R,
        4: Operations.R,
        5: Operations.RW,
        6: Operations.R,
        7: Operations.W,
        8: Operations.RW,
        9: Operations.E,
        10: Operations.R,
        5700: Operations.R,
    }
    assert {rid for rid, res in obj.resources.items() if res.multiple} == {5, 10}
    assert {rid for rid, res in obj.resources.items() if res.mandatory} == {0, 1, 8, 10, 5700}
    ranges = {rid: res.range for rid, res in obj.resources.items() if res.range}
    assert ranges == {0: "0..32 bytes", 1: "-40..85", 2: "0;1;2", 7: "0-255 bytes"}
    units = {rid: res.units for rid, res in obj.resources.items() if res.units}
    assert units == {1: "Cel", 3: "s", 10: "Cel", 5700: "Cel"}
    assert obj.resources[2].description == "0: off, 1: heat, 2: frost protection."
    assert obj.resources[3].name == "Heating Time"
    sensor = obj.resources[5700]
    assert (sensor.name, sensor.type, sensor.operations) == (
        REUSABLE[5700].name,
        REUSABLE[5700].type,
        REUSABLE[5700].operations,
    )


def test_lwm2m_1_0_file_with_bom_no_versions_and_old_spellings() -> None:
    (obj,) = load_ddf_file(OWN_DDF / "40000-1_0.xml", strict=True)
    assert (obj.version, obj.lwm2m_version) == ("1.0", "1.0")  # the 1.0 schema has neither
    assert obj.urn == "urn:oma:lwm2m:ext:40000"
    assert obj.multiple and not obj.mandatory  # "multiple", "optional"
    assert obj.resources[0].operations is Operations.RW  # "WR"
    key = obj.resources[2]
    assert (key.operations, key.type, key.range) == (
        Operations.NONE,
        ResourceType.OPAQUE,
        "16 bytes",
    )
    assert set(obj.resources) == {0, 1, 2}


def test_single_mandatory_object_with_x_urn() -> None:
    (obj,) = load_ddf_file(OWN_DDF / "40001.xml", strict=True)
    assert not obj.multiple and obj.mandatory
    assert (obj.version, obj.lwm2m_version, obj.urn) == ("2.0", "1.2", "urn:oma:lwm2m:x:40001:2.0")
    networks, uptime = obj.resources[0], obj.resources[1]
    assert networks.multiple and networks.mandatory and networks.type is ResourceType.STRING
    assert not uptime.multiple and not uptime.mandatory and uptime.description == ""


BROKEN = [
    ("duplicate-item.xml", 17, "object 40010: duplicate resource ID 1 (first defined on line 10)"),
    ("mismatched-urn.xml", 7, "ObjectURN 'urn:oma:lwm2m:ext:40031' does not match ObjectID 40013"),
    ("unclosed.xml", 10, "not well-formed XML: mismatched tag"),
    ("unknown-type.xml", 15, "resource 40011/0: unknown Type 'Double' (expected String, Integer"),
]


@pytest.mark.parametrize(("name", "line", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_own_file_is_refused_with_file_line_and_reason(
    name: str, line: int, message: str
) -> None:
    with pytest.raises(DdfError) as info:
        load_ddf_file(BROKEN_DDF / name)
    err = info.value
    assert (err.file, err.line) == (str(BROKEN_DDF / name), line)
    assert err.message.startswith(message)


def test_every_broken_own_file_is_checked_and_the_first_stops_a_directory_load() -> None:
    assert sorted(p.name for p in BROKEN_DDF.iterdir()) == [b[0] for b in BROKEN]
    with pytest.raises(DdfError) as info:
        load_ddf_directory(BROKEN_DDF)
    assert info.value.file == str(BROKEN_DDF / BROKEN[0][0])


# ---------------------------------------------------------------- real files


@needs_oma_ddf
def test_the_shared_files_are_there() -> None:
    assert len(REAL_FILES) >= 13


@needs_oma_ddf
@pytest.mark.parametrize("file", REAL_FILES, ids=lambda p: p.name)
def test_every_registry_file_loads_strictly(file: Path) -> None:
    objects = load_ddf_file(file, strict=True)
    assert len(objects) == 1
    obj = objects[0]
    assert file.name.split("-")[0].removesuffix(".xml") == str(obj.id)
    assert obj.name and obj.resources
    assert obj.urn.startswith("urn:oma:lwm2m:")
    if "-1_0" in file.name:
        assert obj.version == "1.0"


@needs_oma_ddf
def test_directory_load_is_sorted_and_complete() -> None:
    objects = load_ddf_directory(DDF_DIR, strict=True)
    assert len(objects) == len(REAL_FILES)
    ids_versions = {(o.id, o.version) for o in objects}
    assert {(0, "1.0"), (0, "1.2"), (3, "1.0"), (3, "1.2"), (3303, "1.1")} <= ids_versions


@needs_oma_ddf
def test_device_file_details() -> None:
    (device,) = load_ddf_file(DDF_DIR / "3.xml")
    assert (device.id, device.name, device.version, device.lwm2m_version) == (
        3,
        "Device",
        "1.2",
        "1.1",
    )
    assert device.urn == "urn:oma:lwm2m:oma:3:1.2"
    assert not device.multiple and device.mandatory
    assert device.description.startswith("This LwM2M Object provides a range of device")
    reboot = device.resources[4]
    assert (reboot.name, reboot.operations, reboot.type, reboot.mandatory) == (
        "Reboot",
        Operations.E,
        ResourceType.NONE,
        True,
    )
    battery = device.resources[9]
    assert (battery.type, battery.range, battery.units) == (ResourceType.INTEGER, "0..100", "/100")
    assert device.resources[11].multiple
    assert device.resources[22].type is ResourceType.OBJLNK


@needs_oma_ddf
def test_security_v1_0_file_with_bom_and_empty_operations() -> None:
    (security,) = load_ddf_file(DDF_DIR / "0-1_0.xml")
    assert security.version == "1.0" and security.lwm2m_version == "1.0"
    assert all(r.operations is Operations.NONE for r in security.resources.values())
    assert security.resources[0].range == "0-255 bytes"


@needs_oma_ddf
def test_server_file_unsigned_and_time_types() -> None:
    (server,) = load_ddf_file(DDF_DIR / "1.xml")
    assert server.resources[11].type is ResourceType.UNSIGNED_INTEGER
    assert server.resources[12].type is ResourceType.TIME
    assert server.resources[24].multiple


# ------------------------------------------------------------- broken inputs

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'  # line 1


def make_ddf(
    items: str | None = None,
    *,
    object_id: str = "<ObjectID>40000</ObjectID>",
    extra: str = "",
    multiple: str = "<MultipleInstances>Multiple</MultipleInstances>",
) -> bytes:
    """A DDF whose first <Item> starts on line 13."""
    if items is None:
        items = item()
    return (
        HEAD
        + "<LWM2M>\n"  # 2
        + '  <Object ObjectType="MODefinition">\n'  # 3
        + "    <Name>Test</Name>\n"  # 4
        + "    <Description1>d</Description1>\n"  # 5
        + f"    {object_id}\n"  # 6
        + "    <ObjectURN>urn:oma:lwm2m:ext:40000</ObjectURN>\n"  # 7
        + "    <LWM2MVersion>1.1</LWM2MVersion>\n"  # 8
        + f"    <ObjectVersion>1.0</ObjectVersion>{extra}\n"  # 9
        + f"    {multiple}\n"  # 10
        + "    <Mandatory>Optional</Mandatory>\n"  # 11
        + "    <Resources>\n"  # 12
        + items  # 13...
        + "    </Resources>\n"
        + "    <Description2></Description2>\n"
        + "  </Object>\n"
        + "</LWM2M>\n"
    ).encode()


def item(
    id: str = "0",
    *,
    name: str = "Value",
    ops: str = "R",
    multiple: str = "Single",
    mandatory: str = "Mandatory",
    type: str = "Integer",
    range: str = "",
) -> str:
    """One <Item>, 10 lines long."""
    return (
        f'      <Item ID="{id}">\n'
        f"        <Name>{name}</Name>\n"
        f"        <Operations>{ops}</Operations>\n"
        f"        <MultipleInstances>{multiple}</MultipleInstances>\n"
        f"        <Mandatory>{mandatory}</Mandatory>\n"
        f"        <Type>{type}</Type>\n"
        f"        <RangeEnumeration>{range}</RangeEnumeration>\n"
        "        <Units></Units>\n"
        "        <Description><![CDATA[a <b>value</b>]]></Description>\n"
        "      </Item>\n"
    )


def error_of(data: bytes, **kwargs: bool) -> DdfError:
    with pytest.raises(DdfError) as info:
        load_ddf_bytes(data, "test.xml", **kwargs)  # type: ignore[arg-type]
    return info.value


def test_the_template_itself_loads() -> None:
    (obj,) = load_ddf_bytes(
        make_ddf(item("0") + item("1", type="Unsigned Integer", ops="RW")), "t.xml"
    )
    assert obj.id == 40000 and obj.multiple and not obj.mandatory
    assert obj.resources[0].description == "a <b>value</b>"
    assert obj.resources[1].type is ResourceType.UNSIGNED_INTEGER
    assert obj.resources[1].operations is Operations.RW


def test_error_carries_file_line_and_message() -> None:
    err = error_of(make_ddf(item("0") + item("0")))
    assert err.file == "test.xml"
    assert err.line == 23  # the second <Item>
    assert "duplicate resource ID 0" in err.message
    assert "first defined on line 13" in err.message
    assert str(err).startswith("test.xml:23: ")


@pytest.mark.parametrize(
    ("data", "line", "fragment"),
    [
        (make_ddf()[:-40], 24, "not well-formed XML"),  # truncated
        (b"", 1, "not well-formed XML"),
        (b"\x00\x01garbage", 1, "not well-formed XML"),
        (b"not xml at all", 1, "not well-formed XML"),
        (HEAD.encode() + b"<LWM2M>\n<Object>\n</LWM2M>", 4, "mismatched tag"),
        (make_ddf(object_id=""), 3, "missing <ObjectID>"),
        (make_ddf(object_id="<ObjectID>abc</ObjectID>"), 6, "ObjectID 'abc'"),
        (make_ddf(object_id="<ObjectID>70000</ObjectID>"), 6, "ObjectID '70000'"),
        (make_ddf(object_id="<ObjectID>-1</ObjectID>"), 6, "not an integer 0-65535"),
        (
            make_ddf(object_id="<ObjectID>1</ObjectID><ObjectID>2</ObjectID>"),
            6,
            "more than one <ObjectID>",
        ),
        (make_ddf(object_id="<ObjectID>41000</ObjectID>"), 7, "does not match ObjectID"),
        (
            make_ddf(multiple="<MultipleInstances>Many</MultipleInstances>"),
            10,
            "expected Multiple or Single",
        ),
        (make_ddf(multiple=""), 3, "missing <MultipleInstances>"),
        (make_ddf(extra="<ObjectVersion>x</ObjectVersion>"), 9, "more than one <ObjectVersion>"),
        (make_ddf(item("0", type="Double")), 18, "unknown Type 'Double'"),
        (make_ddf(item("0", ops="RWX")), 15, "Operations 'RWX'"),
        (make_ddf(item("0", ops="X")), 15, "is not one of R, W, RW, E or empty"),
        (make_ddf(item("0", mandatory="Yes")), 17, "expected Mandatory or Optional"),
        (make_ddf(item("0", multiple="")), 16, "expected Multiple or Single"),
        (make_ddf(item("0", name="")), 14, "empty <Name>"),
        (make_ddf(item("x")), 13, "resource ID 'x'"),
        (make_ddf(item("65536")), 13, "resource ID '65536'"),
        (make_ddf(item("0").replace(' ID="0"', "")), 13, "without an ID attribute"),
        (make_ddf(item("0").replace("        <Type>Integer</Type>\n", "")), 13, "missing <Type>"),
        (make_ddf("      <Thing/>\n"), 13, "unexpected <Thing> in <Resources>"),
        (HEAD.encode() + b"<Objects/>", 2, "root element is <Objects>"),
        (HEAD.encode() + b"<LWM2M>\n</LWM2M>", 2, "defines no <Object>"),
        (HEAD.encode() + b"<LWM2M>\n<Foo/>\n</LWM2M>", 3, "unexpected <Foo> in <LWM2M>"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_input(data: bytes, line: int, fragment: str) -> None:
    """Each broken input gives one DdfError at the right line."""
    err = error_of(data)
    assert err.file == "test.xml"
    assert err.line == line, err
    assert fragment in err.message


def test_empty_object_name() -> None:
    err = error_of(make_ddf().replace(b"<Name>Test</Name>", b"<Name> </Name>"))
    assert err.line == 4 and err.message == "object 40000 has an empty <Name>"


def test_missing_resources_element() -> None:
    data = make_ddf().replace(b"    <Resources>\n", b"").replace(b"    </Resources>\n", b"")
    with pytest.raises(DdfError, match="missing <Resources>"):
        load_ddf_bytes(data, "x.xml")


def test_doctype_is_refused() -> None:
    data = HEAD.encode() + b'<!DOCTYPE LWM2M SYSTEM "LWM2M.dtd">\n<LWM2M/>'
    err = error_of(data)
    assert err.line == 2 and "DOCTYPE" in err.message


def test_billion_laughs_is_refused_before_expansion() -> None:
    data = (
        HEAD
        + "<!DOCTYPE lolz [\n"
        + ' <!ENTITY lol "lol">\n'
        + "".join(
            f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">\n'
            for i in range(10)
        )
        + "]>\n<LWM2M>&lol9;</LWM2M>\n"
    ).encode()
    err = error_of(data)
    assert "not allowed" in err.message


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    data = (
        HEAD
        + f'<!DOCTYPE LWM2M [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>\n'
        + "<LWM2M><Object><Name>&xxe;</Name></Object></LWM2M>\n"
    ).encode()
    err = error_of(data)
    assert "not allowed" in err.message
    assert "TOP SECRET" not in str(err)


def test_undeclared_entity_reference_is_an_xml_error() -> None:
    data = make_ddf(item("0", name="&foo;"))
    err = error_of(data)
    assert err.line == 14 and "undefined entity" in err.message


def test_non_bytes_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        load_ddf_bytes("<LWM2M/>", "x")  # type: ignore[arg-type]


def test_other_encodings_and_bom() -> None:
    latin = (
        make_ddf(item("0", name="Température"))
        .decode()
        .replace("UTF-8", "ISO-8859-1")
        .encode("latin-1")
    )
    (obj,) = load_ddf_bytes(latin, "latin.xml")
    assert obj.resources[0].name == "Température"
    (obj,) = load_ddf_bytes(b"\xef\xbb\xbf" + make_ddf(), "bom.xml")
    assert obj.id == 40000


def test_unknown_or_wrong_encoding() -> None:
    err = error_of(b'<?xml version="1.0" encoding="TF-8"?>\n<LWM2M/>')
    assert err.line == 1 and "encoding" in err.message
    err = error_of(b'<?xml version="1.0" encoding="UTF-16"?>\n<LWM2M/>')
    assert "encoding" in err.message or "not well-formed" in err.message


def test_defaults_for_optional_object_fields() -> None:
    data = (
        make_ddf()
        .replace(b"    <ObjectURN>urn:oma:lwm2m:ext:40000</ObjectURN>\n", b"")
        .replace(b"    <LWM2MVersion>1.1</LWM2MVersion>\n", b"")
        .replace(b"<ObjectVersion>1.0</ObjectVersion>", b"")
        .replace(b"    <Description1>d</Description1>\n", b"")
    )
    (obj,) = load_ddf_bytes(data, "x.xml")
    assert (obj.version, obj.lwm2m_version, obj.description) == ("1.0", "1.0", "")
    assert obj.urn == "urn:oma:lwm2m:ext:40000"


def test_version_taken_from_urn_when_object_version_is_missing() -> None:
    data = (
        make_ddf()
        .replace(b"urn:oma:lwm2m:ext:40000<", b"urn:oma:lwm2m:ext:40000:1.3<")
        .replace(b"<ObjectVersion>1.0</ObjectVersion>", b"")
    )
    (obj,) = load_ddf_bytes(data, "x.xml", strict=True)
    assert obj.version == "1.3"


def test_bad_version_text() -> None:
    data = make_ddf().replace(b"<LWM2MVersion>1.1<", b"<LWM2MVersion>one<")
    err = error_of(data)
    assert err.line == 8 and "MAJOR.MINOR" in err.message


def test_multiple_objects_in_one_file() -> None:
    one = make_ddf().decode()
    body = one[one.index("  <Object") : one.index("</LWM2M>")]
    data = (HEAD + "<LWM2M>\n" + body + body.replace("40000", "40001") + "</LWM2M>\n").encode()
    assert [o.id for o in load_ddf_bytes(data, "two.xml")] == [40000, 40001]


# ------------------------------------------------------------------ warnings


def collect(data: bytes) -> list[DdfWarning]:
    found: list[DdfWarning] = []
    load_ddf_bytes(data, "w.xml", on_warning=found.append)
    return found


def test_reusable_redefinition_warns_or_fails_in_strict_mode() -> None:
    data = make_ddf(item("5700", name="Sensor Value", type="String"))
    (warning,) = collect(data)
    assert warning.line == 13 and warning.file == "w.xml"
    assert "reusable resource 5700" in warning.message and "type 'String'" in warning.message
    err = error_of(data, strict=True)
    assert err.line == 13 and "reusable resource 5700" in err.message

    ops = make_ddf(item("5850", name="On/Off", type="Boolean", ops="R"))
    (warning,) = collect(ops)
    assert "operations 'R'" in warning.message


def test_reusable_with_other_multiplicity_mandatory_and_description_is_fine() -> None:
    data = make_ddf(
        item("5700", name="Sensor Value", type="Float", multiple="Multiple", mandatory="Optional")
    )
    assert collect(data) == []
    load_ddf_bytes(data, "ok.xml", strict=True)


def test_executable_with_type_and_typeless_readable_warn() -> None:
    assert "executable" in collect(make_ddf(item("0", ops="E", type="String")))[0].message
    assert "no Type" in collect(make_ddf(item("0", ops="R", type="")))[0].message
    with pytest.raises(DdfError):
        load_ddf_bytes(make_ddf(item("0", ops="E", type="String")), "x", strict=True)


def test_warnings_are_logged_without_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    load_ddf_bytes(make_ddf(item("5700", name="Sensor Value", type="String")), "log.xml")
    assert any("log.xml:13" in r.getMessage() for r in caplog.records)


def test_foreign_urn_warns() -> None:
    data = make_ddf().replace(b"urn:oma:lwm2m:ext:40000<", b"urn:example:thermostat<")
    (warning,) = collect(data)
    assert warning.line == 7
    assert warning.message == (
        "ObjectURN 'urn:example:thermostat' is not urn:oma:lwm2m:{oma|ext|x}:ID"
    )
    (obj,) = load_ddf_bytes(data, "x.xml", on_warning=lambda w: None)
    assert obj.urn == "urn:example:thermostat"


def test_urn_version_mismatch_warns() -> None:
    data = make_ddf().replace(b"urn:oma:lwm2m:ext:40000<", b"urn:oma:lwm2m:ext:40000:1.1<")
    (warning,) = collect(data)
    assert warning.line == 7 and "differs from ObjectVersion" in warning.message


# ----------------------------------------------------------------- directory


def test_directory_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(make_ddf())
    (tmp_path / "b.xml").write_bytes(make_ddf(item("0", type="Nope")))
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(DdfError) as info:
        load_ddf_directory(tmp_path)
    err = info.value
    assert err.file == str(tmp_path / "b.xml") and err.line == 18


def test_directory_reads_only_xml_sorted(tmp_path: Path) -> None:
    (tmp_path / "b.xml").write_bytes(make_ddf().replace(b"40000", b"40002"))
    (tmp_path / "a.XML").write_bytes(make_ddf().replace(b"40000", b"40001"))
    (tmp_path / "c.txt").write_bytes(b"junk")
    (tmp_path / "sub.xml").mkdir()
    assert [o.id for o in load_ddf_directory(tmp_path)] == [40001, 40002]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DdfError) as info:
        load_ddf_file(tmp_path / "nope.xml")
    err = info.value
    assert err.file.endswith("nope.xml") and "cannot read" in err.message
    with pytest.raises(DdfError, match="not a directory"):
        load_ddf_directory(tmp_path / "nope")


# ------------------------------------------------------------------- fuzzing

_VALID = make_ddf(item("0") + item("5700", name="Sensor Value", type="Float"))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_load_or_raise_ddf_error(data: bytes) -> None:
    try:
        load_ddf_bytes(data, "fuzz.xml")
    except DdfError as err:
        assert err.file == "fuzz.xml" and err.line >= 0


@given(st.integers(0, len(_VALID) - 1), st.integers(0, 20), st.binary(max_size=8))
def test_mutated_ddf_loads_or_raises_ddf_error(start: int, cut: int, insert: bytes) -> None:
    data = _VALID[:start] + insert + _VALID[start + cut :]
    try:
        load_ddf_bytes(data, "fuzz.xml", on_warning=lambda w: None)
    except DdfError as err:
        assert err.file == "fuzz.xml"
