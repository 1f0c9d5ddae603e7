"""``lwm2m decode`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path as FsPath

import cbor2
import pytest

from lwm2m.cli import main

DEVICE_HEX = (
    "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65 "
    "86 06 41 00 01 41 01 05 C4 0D 51 82 42 8F"
)

DDF = """<?xml version="1.0" encoding="utf-8"?>
<LWM2M>
  <Object ObjectType="MODefinition">
    <Name>Test Meter</Name>
    <Description1>test</Description1>
    <ObjectID>32000</ObjectID>
    <ObjectURN>urn:oma:lwm2m:ext:32000</ObjectURN>
    <LWM2MVersion>1.1</LWM2MVersion>
    <ObjectVersion>1.0</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="1">
        <Name>Reading</Name>
        <Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory>
        <Type>Float</Type>
        <RangeEnumeration></RangeEnumeration>
        <Units>kWh</Units>
        <Description>reading</Description>
      </Item>
    </Resources>
    <Description2></Description2>
  </Object>
</LWM2M>
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    rc = main(["decode", *argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else out), err


def test_tlv_instance_from_hex(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc, _ = _run(capsys, "--format", "tlv", "--path", "/3/0", "--hex", DEVICE_HEX)
    assert rc == 0
    assert isinstance(doc, dict) and doc["name"] == "Device"
    resources = {r["id"]: r for r in doc["resources"]}
    assert (
        resources[0]["name"] == "Manufacturer" and resources[0]["value"] == "Open Mobile Alliance"
    )
    assert resources[6]["instances"] == {"0": 1, "1": 5}
    assert resources[13]["value"] == "2013-05-02T10:40:15Z"


def test_legacy_number_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc, _ = _run(capsys, "--format", "1542", "--path", "/3/0/9", "--hex", "C1 09 64")
    assert rc == 0 and isinstance(doc, dict) and doc["value"] == 100
    rc, doc, _ = _run(capsys, "-f", "text", "-p", "/3/0/9", "--hex", "313030")
    assert rc == 0 and isinstance(doc, dict) and doc["value"] == 100 and doc["type"] == "Integer"


def test_composite_from_file(capsys: pytest.CaptureFixture[str], tmp_path: FsPath) -> None:
    payload = tmp_path / "send.cbor"
    payload.write_bytes(cbor2.dumps([{-2: "/3/0/", 0: "9", 2: 80}, {0: "6/0", 2: 1}]))
    rc, doc, _ = _run(capsys, "--format", "senml+cbor", str(payload))
    assert rc == 0 and isinstance(doc, dict)
    assert doc["/3/0/9"]["value"] == 80
    assert doc["/3/0/6"]["instances"] == {"0": 1}


def test_link_format(capsys: pytest.CaptureFixture[str]) -> None:
    text = '</>;rt="oma.lwm2m";ct=11543,</1/0>'
    rc, doc, _ = _run(capsys, "--format", "link", "--hex", text.encode().hex())
    assert rc == 0
    assert doc == [
        {"target": "/", "params": [["rt", "oma.lwm2m"], ["ct", "11543"]]},
        {"target": "/1/0", "params": []},
    ]


def test_models_directory(capsys: pytest.CaptureFixture[str], tmp_path: FsPath) -> None:
    (tmp_path / "32000.xml").write_text(DDF)
    rc, doc, err = _run(
        capsys,
        "-f",
        "tlv",
        "-p",
        "/32000/0/1",
        "--models",
        str(tmp_path),
        "--hex",
        "C4 01 3FC00000",
    )
    assert rc == 0, err
    assert isinstance(doc, dict) and doc["name"] == "Reading" and doc["value"] == 1.5
    assert doc["units"] == "kWh"
    # without the model the value is opaque bytes (base64)
    rc, doc, _ = _run(capsys, "-f", "tlv", "-p", "/32000/0/1", "--hex", "C4 01 3FC00000")
    assert rc == 0 and isinstance(doc, dict) and doc["value"] == "P8AAAA=="


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["-f", "tlv", "-p", "/3/0", "--hex", "C8 00 15 4F"],
            "error: byte 0: TLV value of 21 bytes",
        ),
        (["-f", "tlv", "-p", "/3/x", "--hex", "00"], "error: '/3/x'"),
        (["-f", "tlv", "-p", "/3/0", "--hex", "zz"], "error: --hex: not a hexadecimal"),
        (["-f", "senml+json", "--hex", "5b7b7d5d"], "error: record 0"),
        (
            ["-f", "tlv", "--hex", "00"],
            "error: content format 11542 (LWM2M_TLV) cannot carry a composite",
        ),
        (["-f", "text", "-p", "/3/0/9", "/nonexistent/file"], "error: /nonexistent/file"),
        (["-f", "tlv", "-p", "/3/0", "--models", "/nonexistent/dir", "--hex", "00"], "error:"),
    ],
)
def test_bad_input_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, out, err = _run(capsys, *argv)
    assert rc == 1
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_unknown_format_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["decode", "--format", "xml", "--hex", "00"])
    assert excinfo.value.code == 2
    assert "unknown format 'xml'" in capsys.readouterr().err
