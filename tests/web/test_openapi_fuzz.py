"""Schemathesis against ``/openapi.json``: every documented operation, generated inputs.

Stateless checks (no 5xx, documented status codes, content types and response
schemas, invalid input rejected) with a bounded number of examples per
operation. The app runs over in-memory backends with one client, ``dev-1``,
so that generated requests reach the device-operation code too.

The check that schema-valid requests are accepted is not run on the
operations whose input is validated beyond what a JSON schema says: a
security entry's PEM certificates and a bootstrap configuration (checked by
lwm2m.security.credentials and lwm2m.protocol.bootstrap_config), the rules
between attributes of Write-Attributes (pmin <= pmax, lt < gt ..., at least
one given; lwm2m.protocol.attributes), and a path given twice to a composite
operation. Each answers 400 with the reason, and every other check runs on
them. Paths and content formats carry patterns that match exactly what the
parsers take (tests/web/test_param_patterns.py), so the check does run on
every other operation with a path or a format.

``GET /api/event`` is excluded: it is an endless text/event-stream that a
request/response fuzzer cannot consume; tests/web/test_events.py covers it.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from web_fakes import FakeBootstrap, FakeDevices

from lwm2m.web.app import build_app

_devices = FakeDevices()
_devices.add("dev-1", {"/3/0/9": 87, "/3/0/14": "+01", "/3303/0/5700": 21.5, "/1/0/1": 300})
# The fuzzer's ASGI transport sends "Host: testserver".
_app = build_app(_devices, FakeBootstrap(), count_events=False, trusted_hosts=("testserver",))

schema = schemathesis.openapi.from_asgi("/openapi.json", _app)

SEMANTIC_INPUT = {
    ("PUT", "/api/security/clients"),
    ("POST", "/api/security/clients"),
    ("PUT", "/api/bootstrap/{endpoint}"),
    ("POST", "/api/bootstrap/{endpoint}"),
    ("PUT", "/api/clients/{endpoint}/{path}/attributes"),
    ("GET", "/api/clients/{endpoint}/composite"),
    ("POST", "/api/clients/{endpoint}/composite/observe"),
    ("DELETE", "/api/clients/{endpoint}/composite/observe"),
}


def test_every_operation_is_fuzzed() -> None:
    """The exclusion below removes the event stream and nothing else."""
    operations = {(op.method.upper(), op.path) for op in _operations()}
    assert ("GET", "/api/event") in operations
    fuzzed = operations - {("GET", "/api/event")}
    assert len(fuzzed) == len(operations) - 1
    assert ("PUT", "/api/clients/{endpoint}/{path}") in fuzzed
    assert ("POST", "/api/bootstrap/{endpoint}/push") in fuzzed
    assert SEMANTIC_INPUT.issubset(operations)


def _operations() -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


@schema.exclude(path="/api/event").parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    excluded = []
    if (case.method.upper(), case.path) in SEMANTIC_INPUT:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
