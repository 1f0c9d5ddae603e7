"""REST request bodies, read as leniently as Eclipse Leshan's demo servers read them.

Scripts and tools written against Leshan send what Leshan accepts, so we
accept it too wherever its meaning is unambiguous, and refuse what is really
wrong with a message that names the field. The strict shapes stay the ones of
:mod:`lwm2m.formats.jsonview` (nodes), :mod:`lwm2m.security.credentials`
(security entries) and :mod:`lwm2m.protocol.bootstrap_config` (bootstrap
configurations); this module only rewrites bodies into them.

Nodes (Write, Create, Write-Composite), in our view or in Leshan's node JSON
(``kind`` ``singleResource`` / ``multiResource`` / ``resourceInstance`` /
``instance`` / ``obj``, ``values`` for multiple resources):

* an ``id`` is a JSON number or a numeric string (Jackson's ``asInt`` reads
  ``"1"`` as 1); one that names another node than the path is refused;
* Integer, Unsigned Integer, Float, Boolean and Time values are JSON numbers
  or booleans converted by the one value-typing policy
  (:func:`lwm2m.model.value_typing.coerce`: ``2.0`` is an Integer, ``0``/``1``
  a Boolean, never ``1.5`` an Integer), or strings that denote the value as a
  whole (:func:`lwm2m.model.value_typing.from_text`: ``"120"``, ``"-1.5"``,
  ``"true"``; not ``"12abc"``); a value given this way must be finite;
* String and Corelnk take strings only (a number has no single text form);
* in Leshan's shape Opaque is hex and Time epoch milliseconds (its demo UI
  sends them so); in ours Opaque is base64 and Time epoch seconds or ISO 8601;
  Objlnk is ``"3:0"`` or ``{"objectId": 3, "objectInstanceId": 0}`` in both.

The resource type comes from the model, else from the node's ``type``
(Leshan's lower-case names included).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from lwm2m.bootstrap.leshan import convert_leshan_config
from lwm2m.formats.jsonview import json_to_node
from lwm2m.formats.type_resolution import declared_type
from lwm2m.model.nodes import Node
from lwm2m.model.path import MAX_INSTANCE_ID, Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ResourceType
from lwm2m.model.value_typing import ValueTypeError, coerce, from_text
from lwm2m.protocol.bootstrap_config import BootstrapConfigError
from lwm2m.web.backend import InvalidInput


def node_from_body(data: Any, path: Path, model: ModelRegistry) -> Node:
    """The node a Write / Create / Write-Composite body gives for ``path``."""
    try:
        view = _view(data, path, model, is_leshan_node(data))
        return json_to_node(view, path, model)
    except (ValueError, TypeError) as exc:  # FormatError, ValueTypeError, _BodyError
        raise InvalidInput(f"invalid value for {path}: {exc}") from None


def create_instance_id(data: Any) -> int:
    """The instance ID a Create body asks for: ``id`` as a number or numeric string, else 0.

    Leshan's demo UI sends the ID typed in a text field, so ``"1"``; an empty
    field (``""`` or ``null``) means no ID, as no ``id`` does.
    """
    if not isinstance(data, dict):
        raise InvalidInput("Create body must be a JSON object (the new instance)")
    raw = data.get("id")
    if raw is None or raw == "":
        return 0
    try:
        ident = _ident(raw, "'id'")
    except _BodyError as exc:
        raise InvalidInput(f"Create: {exc}") from None
    if ident > MAX_INSTANCE_ID:
        raise InvalidInput(f"Create: 'id' {ident} is not an instance ID 0-{MAX_INSTANCE_ID}")
    return ident


def is_leshan_node(data: Any) -> bool:
    """Whether a body is Leshan's node JSON (its kinds, or ``values``) anywhere in its tree."""
    if not isinstance(data, dict):
        return False
    if data.get("kind") in _LESHAN_KINDS or "values" in data:
        return True
    children = data.get("resources") or data.get("instances")
    return isinstance(children, list) and any(is_leshan_node(c) for c in children)


def security_doc(body: Mapping[str, Any]) -> dict[str, Any]:
    """A security entry in the ``--security`` file format, from ours or Leshan's shapes.

    Leshan 2.x sends ``{"endpoint", "tls": {"mode": "psk", "details": {"identity",
    "key"}}}`` (``"x509"`` with empty details); Leshan 1.x ``"x509": true``.
    Its Jackson reads ``endpoint`` and ``identity`` with ``asText``, so numbers
    are taken as their decimal text.
    """
    doc = {k: v for k, v in body.items() if v is not None}
    if isinstance(doc.get("endpoint"), int) and not isinstance(doc["endpoint"], bool):
        doc["endpoint"] = str(doc["endpoint"])
    tls = doc.pop("tls", None)
    if tls is not None:
        if "psk" in doc or "x509" in doc:
            raise InvalidInput("give either 'tls' (Leshan) or 'psk'/'x509', not both")
        mode = str(tls.get("mode")).lower()
        if mode == "psk":
            details = tls.get("details")
            if not isinstance(details, dict):
                raise InvalidInput("tls.details: must be an object with identity and key")
            doc["psk"] = dict(details)
        elif mode == "x509":
            doc["x509"] = {}
        else:
            raise InvalidInput(f"tls.mode {tls.get('mode')!r} is not supported (psk, x509)")
    psk = doc.get("psk")
    if isinstance(psk, dict):
        identity = psk.get("identity")
        if isinstance(identity, int) and not isinstance(identity, bool):
            doc["psk"] = {**psk, "identity": str(identity)}
    x509 = doc.get("x509")
    if x509 is True:  # Leshan 1.x: "x509": true, trust by the server's CAs
        doc["x509"] = {}
    elif x509 is False:
        del doc["x509"]
    elif isinstance(x509, dict):
        doc["x509"] = {k: v for k, v in x509.items() if v not in (None, [], "")}
    return doc


def bootstrap_doc(endpoint: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """One client's bootstrap configuration in our ``--config`` shape, from ours or Leshan's.

    Leshan's bootstrap demo POSTs its ``BootstrapConfig`` (``servers``,
    ``security``, ``acls``, ``oscore``, ``toDelete``,
    ``autoIdForSecurityObject``); its Jackson coerces scalars, so numeric
    strings are numbers and ``"true"``/``"false"`` booleans there. Our own
    shape is returned as it is, for :mod:`lwm2m.protocol.bootstrap_config` to check.
    """
    if not looks_like_leshan_config(data):
        return dict(data)
    try:
        return convert_leshan_config(endpoint, _leshan_scalars(data, "leshan"))
    except (_BodyError, BootstrapConfigError) as exc:
        raise InvalidInput(str(exc)) from None
    except RecursionError:
        raise InvalidInput("bootstrap configuration nested too deeply") from None


def looks_like_leshan_config(data: Mapping[str, Any]) -> bool:
    """Leshan's ``BootstrapConfig`` keys only, and one that is not ours too.

    ``servers`` alone is ours when it is a list, Leshan's (by instance ID) when an object.
    """
    keys = set(data)
    if not keys or not keys <= _LESHAN_CONFIG_KEYS:
        return False
    return bool(keys - {"servers"}) or isinstance(data["servers"], dict)


# Private

_LESHAN_KINDS = {"obj", "singleResource", "multiResource", "resourceInstance"}
_KINDS = {
    1: {"object", "obj"},
    2: {"instance"},
    3: {"resource", "singleResource", "multiResource"},
    4: {"resource_instance", "resourceInstance"},
}
_NOUN = {
    ResourceType.INTEGER: "an integer",
    ResourceType.UNSIGNED_INTEGER: "an unsigned integer",
    ResourceType.FLOAT: "a finite number",
    ResourceType.BOOLEAN: "a boolean (true/false/1/0)",
    ResourceType.TIME: "a time (epoch seconds or ISO 8601)",
}
_LESHAN_CONFIG_KEYS = {
    "servers",
    "security",
    "acls",
    "oscore",
    "toDelete",
    "autoIdForSecurityObject",
    "contentFormat",
}
#: Leshan BootstrapConfig fields Jackson reads as numbers / booleans.
_LESHAN_NUMBERS = {
    "shortId",
    "lifetime",
    "defaultMinPeriod",
    "defaultMaxPeriod",
    "disableTimeout",
    "serverId",
    "clientOldOffTime",
    "bootstrapServerAccountTimeout",
    "certificateUsage",
    "objectId",
    "objectInstanceId",
    "AccessControlOwner",
}
_LESHAN_BOOLEANS = {"bootstrapServer", "notifIfDisabled", "autoIdForSecurityObject"}


class _BodyError(ValueError):
    """A body field that cannot be read; the message starts with the field."""


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _ident(raw: object, field: str) -> int:
    """An ID as Jackson's ``asInt`` reads it where that is unambiguous: 1, 1.0, "1"."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw.strip())
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise _BodyError(f"{field}: {raw!r} is not an ID (a number or a numeric string)")
    return raw


def _check_id(raw: dict[str, Any], expected: int | None, path: Path) -> None:
    if "id" not in raw or raw["id"] is None:
        return
    ident = _ident(raw["id"], "'id'")
    if ident != expected:
        raise _BodyError(f"'id' {raw['id']!r} does not match the path (it names id {ident})")


def _check_kind(raw: dict[str, Any], path: Path) -> None:
    kind = raw.get("kind")
    if kind is not None and kind not in _KINDS[path.depth]:
        raise _BodyError(f"'kind' {kind!r} does not match the path")


def _rtype(raw: dict[str, Any], path: Path, model: ModelRegistry) -> ResourceType | None:
    try:
        return declared_type(model, path, raw.get("type"))
    except ValueError as exc:
        raise _BodyError(f"'type': {exc}") from None


def _children(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = raw.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _BodyError(f"{key!r} must be a list of objects")
    return items


def _child_path(item: dict[str, Any], path: Path, field: str) -> Path:
    if item.get("id") is None:
        raise _BodyError(f"{field}: each child needs an 'id'")
    try:
        return path.child(_ident(item["id"], f"{field}.'id'"))
    except PathError as exc:
        raise _BodyError(f"{field}: {exc}") from None


def _view(raw: Any, path: Path, model: ModelRegistry, leshan: bool) -> dict[str, Any]:
    """``raw`` rewritten in the strict :mod:`lwm2m.formats.jsonview` shape."""
    if not isinstance(raw, dict):
        raise _BodyError(f"expected a JSON object, got {_json_type(raw)}")
    if path.is_root:
        raise _BodyError("a node cannot be at the root path")
    _check_kind(raw, path)
    _check_id(raw, path.ids[-1], path)
    leshan = leshan or raw.get("kind") in _LESHAN_KINDS or "values" in raw
    if path.depth <= 2:
        key = "instances" if path.depth == 1 else "resources"
        out: list[dict[str, Any]] = []
        for n, item in enumerate(_children(raw, key)):
            child = _child_path(item, path, f"{key}[{n}]")
            try:
                child_view = _view(item, child, model, leshan)
            except _BodyError as exc:
                raise _BodyError(f"{key}[{n}] ({child}): {exc}") from None
            out.append({**child_view, "id": child.ids[-1]})
        return {key: out}
    rtype = _rtype(raw, path, model)
    view: dict[str, Any] = {} if rtype is None else {"type": rtype.value}
    multi_key = "values" if "values" in raw else "instances" if "instances" in raw else None
    if path.depth == 3 and multi_key is not None:
        if "value" in raw:
            raise _BodyError(f"give either 'value' or {multi_key!r}, not both")
        values = raw[multi_key]
        if not isinstance(values, dict):
            raise _BodyError(f"{multi_key!r} must be an object of id -> value")
        instances: dict[str, Any] = {}
        for key, value in values.items():
            ri = _ident(key, f"{multi_key!r} key")
            instances[str(ri)] = _value(value, rtype, leshan, f"{multi_key!r}[{key!r}]")
        view["instances"] = instances
        return view
    if "value" not in raw:
        raise _BodyError("'value' is required")
    view["value"] = _value(raw["value"], rtype, leshan, "'value'")
    return view


def _value(raw: Any, rtype: ResourceType | None, leshan: bool, field: str) -> Any:
    """One value as the JSON view reads it (numbers typed, Opaque base64, Objlnk "o:i")."""
    if rtype is None:
        return raw
    if rtype is ResourceType.OBJLNK:
        return _objlnk(raw, field)
    if rtype is ResourceType.OPAQUE:
        if not isinstance(raw, str):
            raise _BodyError(f"{field}: Opaque is a string, got {_json_type(raw)}")
        if not leshan:
            return raw  # base64, checked by the JSON view
        try:
            return base64.b64encode(binascii.unhexlify(raw)).decode("ascii")
        except (binascii.Error, ValueError):
            raise _BodyError(f"{field}: Opaque value {raw!r} is not hex") from None
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        if not isinstance(raw, str):
            raise _BodyError(f"{field}: a {rtype.value} is a JSON string, got {_json_type(raw)}")
        return raw
    if rtype is ResourceType.TIME:
        return _time(raw, leshan, field)
    if isinstance(raw, str):
        return _from_string(raw, rtype, field)
    if isinstance(raw, bool | int | float):
        try:
            return coerce(raw, rtype, field)
        except ValueTypeError as exc:
            raise _BodyError(str(exc)) from None
    raise _BodyError(f"{field}: {_json_type(raw)} is not {_NOUN[rtype]}")


def _from_string(raw: str, rtype: ResourceType, field: str) -> Any:
    try:
        return from_text(raw, rtype)
    except ValueTypeError as exc:
        reason = str(exc)
    if reason.startswith(f"{raw!r} is not") or reason.startswith(f"{raw!r} is neither"):
        raise _BodyError(f"{field}: {raw!r} is not {_NOUN[rtype]}")
    raise _BodyError(f"{field}: {reason}")


def _time(raw: Any, leshan: bool, field: str) -> Any:
    """Time for the JSON view: epoch seconds (a number) or an ISO 8601 string."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _BodyError(f"{field}: {_json_type(raw)} is not {_NOUN[ResourceType.TIME]}")
    number: int | float | None = None
    if isinstance(raw, str):
        body = raw.strip()
        if body.lstrip("-").isascii() and body.lstrip("-").isdigit() and len(body) <= 20:
            number = int(body)
        else:
            value = _from_string(raw, ResourceType.TIME, field)
            return value.isoformat()
    else:
        number = raw
    if leshan:  # Leshan's demo sends Time as epoch milliseconds
        if isinstance(number, float) and not number.is_integer():
            raise _BodyError(f"{field}: {raw!r} is not whole epoch milliseconds")
        return int(number) / 1000
    return number


def _objlnk(raw: Any, field: str) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, dict) and set(raw) == {"objectId", "objectInstanceId"}:
        oid = _ident(raw["objectId"], f"{field}.objectId")
        iid = _ident(raw["objectInstanceId"], f"{field}.objectInstanceId")
        return f"{oid}:{iid}"
    raise _BodyError(
        f'{field}: Objlnk is \'OBJECT:INSTANCE\' or {{"objectId", "objectInstanceId"}}'
    )


def _leshan_scalars(value: Any, where: str) -> Any:
    """Leshan's BootstrapConfig with numeric strings as numbers and "true"/"false" as booleans."""
    if isinstance(value, list):
        return [_leshan_scalars(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = f"{where}.{key}"
        if key in _LESHAN_NUMBERS and isinstance(item, str):
            try:
                item = _ident(item, field) if item.strip() else None
            except _BodyError:
                raise _BodyError(f"{field}: {item!r} is not a number") from None
        elif key in _LESHAN_BOOLEANS and isinstance(item, str):
            word = item.strip().lower()
            if word not in ("true", "false"):
                raise _BodyError(f"{field}: {item!r} is not a boolean")
            item = word == "true"
        elif key in _LESHAN_BOOLEANS and isinstance(item, int) and item in (0, 1):
            item = bool(item)
        elif key == "acls" and isinstance(item, dict) and where.count(".") >= 2:
            item = {k: _rights(v, f"{field}[{k!r}]") for k, v in item.items()}
        out[key] = _leshan_scalars(item, field) if isinstance(item, dict | list) else item
    return out


def _rights(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return _ident(value, field)
        except _BodyError:
            raise _BodyError(f"{field}: {value!r} is not a number") from None
    return value
