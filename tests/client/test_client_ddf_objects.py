"""Objects known only from DDF files are served with stored values."""

from __future__ import annotations

from pathlib import Path as FsPath

from client_harness import MakeClient

from lwm2m.client.ddf_objects import add_generic_objects, default_values
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.model.registry import default_registry

DDF = """<?xml version="1.0" encoding="UTF-8"?>
<LWM2M>
  <Object ObjectType="MODefinition">
    <Name>Widget</Name>
    <Description1>A test object</Description1>
    <ObjectID>32769</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:32769</ObjectURN>
    <LWM2MVersion>1.0</LWM2MVersion>
    <ObjectVersion>1.0</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="0"><Name>Level</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory><Type>Integer</Type><RangeEnumeration></RangeEnumeration><Units></Units><Description>level</Description></Item>
      <Item ID="1"><Name>Label</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Optional</Mandatory><Type>String</Type><RangeEnumeration></RangeEnumeration><Units></Units><Description>label</Description></Item>
      <Item ID="2"><Name>Kick</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Optional</Mandatory><Type></Type><RangeEnumeration></RangeEnumeration><Units></Units><Description>kick</Description></Item>
      <Item ID="3"><Name>Tags</Name><Operations>RW</Operations><MultipleInstances>Multiple</MultipleInstances>
        <Mandatory>Mandatory</Mandatory><Type>Float</Type><RangeEnumeration></RangeEnumeration><Units></Units><Description>tags</Description></Item>
    </Resources>
    <Description2></Description2>
  </Object>
</LWM2M>
"""


async def test_ddf_object_served_with_defaults(make_client: MakeClient, tmp_path: FsPath) -> None:
    (tmp_path / "widget.xml").write_text(DDF)
    registry = default_registry()
    objects = registry.load_directory(tmp_path)
    assert default_values(objects[0]) == {0: 0, 1: "", 3: {0: 0.0}}
    h = await make_client()
    h.client.store.registry.add(objects[0])  # the harness shares one registry
    assert add_generic_objects(h.client.store, objects) == [32769]
    assert add_generic_objects(h.client.store, objects) == []  # already there
    msg, addr = await h.server.next_request()  # Update announcing </32769/0>
    assert b"</32769/0>" in msg.payload
    h.server.reply(msg, addr, Code.CHANGED)
    ask = h.server.request
    assert (
        await ask(Message(Code.PUT, uri_path=("32769", "0", "0"), payload=b"7"), h.address)
    ).code == Code.CHANGED
    assert (await ask(Message(Code.GET, uri_path=("32769", "0", "0")), h.address)).payload == b"7"
    assert (
        await ask(Message(Code.PUT, uri_path=("32769", "0", "1"), payload=b"x"), h.address)
    ).code == Code.METHOD_NOT_ALLOWED
    assert (
        await ask(Message(Code.POST, uri_path=("32769", "0", "2")), h.address)
    ).code == Code.CHANGED
