"""Turning the web layer's values into API JSON, and request text into values.

Nodes are shown with :mod:`lwm2m.formats.jsonview` (typed JSON: numbers,
booleans, strings, base64 for opaque) so the API, the event stream and the
``lwm2m decode`` command agree on one JSON view of LwM2M data.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

from lwm2m.coap.codes import Code
from lwm2m.formats.jsonview import node_to_json
from lwm2m.formats.media import SHORT_NAMES, ContentFormat
from lwm2m.model.definitions import ObjectDef
from lwm2m.model.nodes import Node
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.security.credentials import SecurityEntry
from lwm2m.web.backend import ClientInfo, DeviceResponse, InvalidInput, LinkInfo
from lwm2m.web.param_patterns import BLANKS
from lwm2m.web.request_bodies import node_from_body

#: Leshan's default, in seconds (its ``timeout`` parameter is in seconds too).
DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 600.0


def parse_path(text: str) -> Path:
    """``3/0/1`` or ``/3/0/1`` (the REST route gives it without the slash)."""
    try:
        path = Path.parse(text if text.startswith("/") else "/" + text)
    except PathError as exc:
        raise InvalidInput(f"invalid path: {exc}") from None
    if path.is_root:
        raise InvalidInput("invalid path: an object ID is required")
    return path


def parse_paths(text: str) -> list[Path]:
    """The ``paths`` parameter of composite operations: comma-separated paths."""
    items = [p.strip(BLANKS) for p in text.split(",") if p.strip(BLANKS)]
    if not items:
        raise InvalidInput("paths: at least one path is required")
    result = []
    for item in items:
        path = parse_path(item)
        if path in result:
            raise InvalidInput(f"paths: {path} given twice")
        result.append(path)
    return result


def parse_format(text: str | None) -> ContentFormat | None:
    """``format=`` as Leshan spells it (``TLV``, ``SENML_JSON``) or ours (``senml+json``, 112)."""
    if text is None or text == "":
        return None
    # Only ASCII, only blanks stripped: the API takes what FORMAT_PATTERN says, no
    # more (str.lower and ContentFormat.parse alone would also take the Kelvin sign
    # for "k", other whitespace and non-ASCII digits).
    norm = text.strip(BLANKS).lower().replace("_", "-")
    if text.isascii() and norm == norm.strip():
        if norm in SHORT_NAMES:
            return SHORT_NAMES[norm]
        try:
            return ContentFormat.parse(norm)
        except ValueError:
            pass
    names = ", ".join(sorted(SHORT_NAMES))
    raise InvalidInput(f"format: unknown content format {text!r} (known: {names})")


def parse_timeout(value: float | None) -> float:
    """The ``timeout`` query parameter in seconds: the default when absent, bounded so a request cannot hang forever."""
    if value is None:
        return DEFAULT_TIMEOUT_S
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT_S:
        raise InvalidInput(f"timeout: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    return float(value)


def node_from_json(data: Any, path: Path, model: ModelRegistry) -> Node:
    """A request body as a node: our JSON view or Leshan's node JSON, read leniently.

    See :mod:`lwm2m.web.request_bodies`.
    """
    return node_from_body(data, path, model)


def node_json(node: Node, path: Path, model: ModelRegistry) -> Any:
    """A node in the REST JSON view (the one the UI and Leshan scripts read)."""
    return node_to_json(node, path, model)


def _iso(t: datetime.datetime) -> str:
    return t.isoformat()


def link_json(link: LinkInfo) -> dict[str, Any]:
    """A link as Leshan's ``{"url", "attributes"}``."""
    return {"url": link.url, "attributes": dict(link.attributes)}


def client_json(info: ClientInfo) -> dict[str, Any]:
    """The :class:`lwm2m.web.schemas.Client` shape (Leshan's field names)."""
    return {
        "endpoint": info.endpoint,
        "endpointType": info.endpoint_type,
        "registrationId": info.registration_id,
        "address": info.address,
        "lifetime": info.lifetime_s,
        "lwM2mVersion": info.lwm2m_version,
        "bindingMode": info.binding,
        "queuemode": info.queue_mode,
        "sleeping": info.sleeping,
        "secure": info.secure,
        "transport": info.transport,
        "smsNumber": info.sms_number,
        "rootPath": info.root_path,
        "registrationDate": _iso(info.registered_at),
        "lastUpdate": _iso(info.last_update),
        "objectLinks": [link_json(link) for link in info.links],
    }


def code_name(code: Code) -> str:
    """The CoAP code's name, Leshan's ``status`` field (``CONTENT``)."""
    return code.name


def result_json(
    response: DeviceResponse, path: Path | None, model: ModelRegistry
) -> dict[str, Any]:
    """The :class:`lwm2m.web.schemas.DeviceResult` shape."""
    body: dict[str, Any] = {
        "status": code_name(response.code),
        "code": response.code.dotted,
        "success": True,
        "valid": True,
        "failure": False,
    }
    if response.node is not None and path is not None:
        body["content"] = node_json(response.node, path, model)
    if response.composite is not None:
        body["compositeContent"] = composite_json(response.composite, model)
    if response.links is not None:
        body["objectLinks"] = [link_json(link) for link in response.links]
    if response.location is not None:
        body["location"] = response.location
    return body


def notification_json(
    endpoint: str, path: Path, node: Node | None, model: ModelRegistry
) -> dict[str, Any]:
    """The data of a NOTIFICATION event for a single-path observation."""
    return {
        "ep": endpoint,
        "kind": "single",
        "res": str(path),
        "val": None if node is None else node_json(node, path, model),
    }


def composite_json(values: Mapping[Path, Node | None], model: ModelRegistry) -> dict[str, Any]:
    """Path -> node JSON, sorted by path; a path the device did not answer is null."""
    return {
        str(p): (None if node is None else node_json(node, p, model))
        for p, node in sorted(values.items())
    }


def security_json(entry: SecurityEntry) -> dict[str, Any]:
    """A security entry without its secret (PSK keys are write-only)."""
    body: dict[str, Any] = {"endpoint": entry.endpoint, "psk": None, "x509": None}
    if entry.psk is not None:
        body["psk"] = {"identity": entry.psk.identity.decode("utf-8", "replace")}
    if entry.x509 is not None:
        body["x509"] = {
            "directTrust": entry.x509.certificate_der is not None,
            "caCount": len(entry.x509.ca_pems),
            "names": list(entry.x509.expected_names),
        }
    return body


def object_def_json(obj: ObjectDef) -> dict[str, Any]:
    """An object definition for the UI (Leshan's ``/api/objectspecs`` role)."""
    return {
        "id": obj.id,
        "name": obj.name,
        "version": obj.version,
        "multiple": obj.multiple,
        "mandatory": obj.mandatory,
        "description": obj.description,
        "resources": [
            {
                "id": r.id,
                "name": r.name,
                "operations": r.operations.value,
                "multiple": r.multiple,
                "mandatory": r.mandatory,
                "type": r.type.value,
                "range": r.range,
                "units": r.units,
                "description": r.description,
                "enumeration": list(r.enumeration),
            }
            for r in obj.resources.values()
        ],
    }
