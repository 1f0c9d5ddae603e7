"""Schemathesis against the firmware routes: no 5xx, documented answers, for generated input.

Uploads carry a version and a target checked beyond what a schema says
(printable text, resource paths), so schema-valid uploads may be refused with
400: the positive-data check is off for ``POST /api/firmware`` only.

Its negative-data check stays on wherever a violation survives the wire. A
multipart field is text: a version generated as ``null``, ``5e16`` or an
object goes out as the string ``"null"``, ``"5e+16"`` or JSON text, which is a
valid version, so 201 is right for it. What multipart can carry (a missing
``file`` or ``version``, a field given twice, a body that is no form at all)
must still be refused.
"""

from __future__ import annotations

import tempfile
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from lwm2m.server.firmware import FirmwareRepository
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import build_app

_directory = tempfile.TemporaryDirectory(prefix="lwm2m-fw-fuzz-")
_repo = FirmwareRepository(MemoryStores().documents, _directory.name, max_image_bytes=4096)
_app = build_app(None, None, count_events=False, trusted_hosts=("testserver",), firmware=_repo)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)
_REQUIRED_UPLOAD_FIELDS = ("file", "version")


def _invalid_on_the_wire(case: schemathesis.Case[Any]) -> bool:
    """Whether a negative upload form stays invalid once every field is sent as text."""
    body = case.body
    if not isinstance(body, dict):
        return True
    if any(isinstance(value, list) and len(value) > 1 for value in body.values()):
        return True
    query = case.query or {}
    return any(
        body.get(field, []) == [] and field not in query for field in _REQUIRED_UPLOAD_FIELDS
    )


@schema.include(tag="firmware").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_firmware_routes_conform_to_their_schema(case: schemathesis.Case[Any]) -> None:
    excluded = []
    if (case.method.upper(), case.path) == ("POST", "/api/firmware"):
        excluded.append(positive_data_acceptance)
        meta = case.meta
        negative_body = meta is not None and meta.is_negative_at(ParameterLocation.BODY)
        if negative_body and not _invalid_on_the_wire(case):
            excluded.append(negative_data_rejection)
    case.call_and_validate(excluded_checks=excluded)


def teardown_module() -> None:
    _directory.cleanup()
