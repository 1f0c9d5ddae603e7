"""Schemathesis against the firmware routes: no 5xx, documented answers, for generated input.

Uploads carry a version and a target checked beyond what a schema says
(printable text, resource paths), so schema-valid uploads may be refused with
400: the positive-data check is off for ``POST /api/firmware`` only.
"""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from lwm2m.server.firmware import FirmwareRepository
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import build_app

_directory = tempfile.TemporaryDirectory(prefix="lwm2m-fw-fuzz-")
_repo = FirmwareRepository(MemoryStores().documents, _directory.name, max_image_bytes=4096)
_app = build_app(None, None, count_events=False, trusted_hosts=("testserver",), firmware=_repo)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.include(tag="firmware").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_firmware_routes_conform_to_their_schema(case: schemathesis.Case) -> None:
    excluded = []
    if (case.method.upper(), case.path) == ("POST", "/api/firmware"):
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)


def teardown_module() -> None:
    _directory.cleanup()
