"""The client's state file: bootstrap result and written values survive a restart.

Saved as JSON, atomically (temporary file, fsync, rename, fsync of the
directory), so a crash leaves either the old or the new state, never half of
one. Kept: every instance of Security (0), Server (1) and Access Control (2)
(what bootstrap or servers provisioned), and for the other objects which
instances exist and the values of their writable resources, and the
notification attributes each server wrote (Write-Attributes), only for server
accounts that still exist: attributes of a deleted account are not saved and
not restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path as FsPath
from typing import Any

from lwm2m.client.observe import AttributeStore
from lwm2m.client.store import ACCESS_CONTROL, SECURITY, SERVER, ObjectStore
from lwm2m.client.stored_values import stored_from_json, stored_to_json
from lwm2m.model.path import Path, PathError
from lwm2m.model.value_typing import ValueTypeError
from lwm2m.protocol.attributes import ALL_ATTRIBUTES, FLOAT_ATTRIBUTES, Attributes
from lwm2m.protocol.errors import LwM2MError

FORMAT = "lwm2m-client-state"
VERSION = 1
PROVISIONING_OBJECTS = frozenset({SECURITY, SERVER, ACCESS_CONTROL})


class StateFileError(ValueError):
    """A state file that is not ours or is corrupt; the message names the file."""


def snapshot(
    store: ObjectStore, *, bootstrapped: bool = False, attributes: AttributeStore | None = None
) -> dict[str, Any]:
    objects: dict[str, dict[str, dict[str, object]]] = {}
    for obj in store.objects():
        instances: dict[str, dict[str, object]] = {}
        for inst in obj:
            values: dict[str, object] = {}
            for rid, value in inst.snapshot().items():
                if obj.id in PROVISIONING_OBJECTS or inst.operations(rid).writable:
                    values[str(rid)] = stored_to_json(value)
            instances[str(inst.id)] = values
        objects[str(obj.id)] = instances
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "bootstrapped": bootstrapped,
        "objects": objects,
    }
    if attributes is not None:
        data["attributes"] = attributes_to_json(attributes, _live_ssids(store))
    return data


def _live_ssids(store: ObjectStore) -> set[int]:
    return {account.short_server_id for account in store.server_accounts()}


def attributes_to_json(attributes: AttributeStore, ssids: set[int]) -> list[dict[str, object]]:
    """``[{"ssid": 1, "path": "/3/0/9", "attributes": {"pmin": 10}}, ...]`` of live accounts."""
    return [
        {"ssid": ssid, "path": str(path), "attributes": dict(attrs.items())}
        for ssid, path, attrs in sorted(attributes.items(), key=lambda e: (e[0], str(e[1])))
        if ssid in ssids
    ]


def _attributes_from_json(entry: object) -> tuple[int, Path, Attributes]:
    if not isinstance(entry, dict):
        raise StateFileError(f"attribute entry {entry!r} is not an object")
    ssid, path_text, values = entry.get("ssid"), entry.get("path"), entry.get("attributes")
    if not isinstance(ssid, int) or isinstance(ssid, bool) or not 0 < ssid < 65535:
        raise StateFileError(f"attribute entry: bad ssid {ssid!r}")
    if not isinstance(path_text, str) or not isinstance(values, dict):
        raise StateFileError(f"attribute entry of server {ssid}: bad path or attributes")
    try:
        path = Path.parse(path_text)
    except PathError as exc:
        raise StateFileError(f"attribute entry of server {ssid}: {exc}") from None
    if path.depth < 1:
        raise StateFileError(
            f"attribute entry of server {ssid}: path {path_text!r} names no object"
        )
    checked: dict[str, int | float] = {}
    for name, value in values.items():
        if name not in ALL_ATTRIBUTES:
            raise StateFileError(f"{path_text} (server {ssid}): unknown attribute {name!r}")
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (name not in FLOAT_ATTRIBUTES and not isinstance(value, int)):
            raise StateFileError(f"{path_text} (server {ssid}): bad {name} value {value!r}")
        checked[name] = float(value) if name in FLOAT_ATTRIBUTES else value
    attrs = Attributes(**checked)  # type: ignore[arg-type]
    try:
        attrs.validate()
    except ValueError as exc:
        raise StateFileError(f"{path_text} (server {ssid}): {exc}") from None
    return ssid, path, attrs


def restore_attributes(store: ObjectStore, attributes: AttributeStore, data: dict[str, Any]) -> int:
    """Load the saved attributes of servers whose account exists; returns how many were kept.

    Call after :func:`restore` (the Server instances decide which accounts live).
    """
    entries = data.get("attributes", [])
    if not isinstance(entries, list):
        raise StateFileError("'attributes' must be a list")
    parsed = [_attributes_from_json(entry) for entry in entries]
    live = _live_ssids(store)
    kept = 0
    for ssid, path, attrs in parsed:
        if ssid in live:
            attributes.set(ssid, path, attrs)
            kept += 1
    return kept


def restore(store: ObjectStore, data: dict[str, Any]) -> bool:
    """Apply a loaded snapshot to a store built from factory defaults; returns ``bootstrapped``."""
    objects = data.get("objects")
    if not isinstance(objects, dict):
        raise StateFileError("'objects' must be an object")
    parsed: dict[int, dict[int, dict[int, object]]] = {}
    for oid_text, instances in objects.items():
        if not oid_text.isdigit() or not isinstance(instances, dict):
            raise StateFileError(f"bad object entry {oid_text!r}")
        per_instance: dict[int, dict[int, object]] = {}
        for iid_text, values in instances.items():
            if not iid_text.isdigit() or not isinstance(values, dict):
                raise StateFileError(f"bad instance entry /{oid_text}/{iid_text!r}")
            try:
                per_instance[int(iid_text)] = {
                    int(rid): stored_from_json(v) for rid, v in values.items() if rid.isdigit()
                }
            except ValueTypeError as exc:
                raise StateFileError(f"/{oid_text}/{iid_text}: {exc}") from None
        parsed[int(oid_text)] = per_instance
    for oid, instances_data in parsed.items():
        obj = store.get_object(oid)
        if oid in PROVISIONING_OBJECTS:
            obj = store.add_object(oid)
            for iid in list(obj.instances):
                store.delete_instance(oid, iid)
        if obj is None:
            continue  # the application no longer has this object
        for iid, values in instances_data.items():
            try:
                inst = obj.instances.get(iid)
                if inst is None:
                    store.create_instance(oid, iid, values)
                else:
                    for rid, value in values.items():
                        inst._values[rid] = inst.typed(rid, value)
            except LwM2MError as exc:
                raise StateFileError(f"/{oid}/{iid}: {exc.message}") from None
    return data.get("bootstrapped") is True


def load(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The saved state, or None when there is no file yet."""
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(f"{path}: not an lwm2m client state file")
    if data.get("version") != VERSION:
        raise StateFileError(f"{path}: unsupported state version {data.get('version')!r}")
    return data


def save(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write atomically: temp file in the same directory, fsync, rename, fsync the directory."""
    target = FsPath(path)
    directory = target.parent if str(target.parent) else FsPath(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
