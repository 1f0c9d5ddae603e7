"""Register / Update / Request-Bootstrap query parameters (seed 002 Table 3, 8.2.2, 8.2.3).

The seed makes unknown parameters a 4.00 Bad Request, so parsing is strict:
every parameter is known, given once, and well formed. ``ept`` is required by
the seed but never sent by published LwM2M clients, so it is optional here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lwm2m.coap.values import value_class
from lwm2m.protocol.endpoint_name import (
    EndpointNameError,
    parse_endpoint_type,
    validate_endpoint_name,
)

DEFAULT_LIFETIME_S = 86400
DEFAULT_LWM2M_VERSION = "1.0"
SUPPORTED_LWM2M_VERSIONS = ("1.0", "1.1", "1.2")
#: LwM2M 1.0 binding modes plus the 1.1 transports (T = TCP, N = Non-IP).
_BINDING = re.compile(r"(U|UQ|S|SQ|US|UQS|[UTSN]{1,4})")


class RegistrationParamError(ValueError):
    """A bad Register/Update/Bootstrap-Request parameter (answered with 4.00)."""


@value_class
class RegisterParams:
    endpoint: str
    endpoint_type: int | None = None
    lifetime_s: int = DEFAULT_LIFETIME_S
    sms_number: str | None = None
    lwm2m_version: str = DEFAULT_LWM2M_VERSION
    binding: str = "U"
    queue_mode: bool = False

    def to_query(self) -> tuple[str, ...]:
        query: list[str] = []
        if self.endpoint_type is not None:
            query.append(f"ept={self.endpoint_type}")
        query.append(f"ep={self.endpoint}")
        query.append(f"lt={self.lifetime_s}")
        if self.sms_number is not None:
            query.append(f"sms={self.sms_number}")
        if self.lwm2m_version != DEFAULT_LWM2M_VERSION:
            query.append(f"lwm2m={self.lwm2m_version}")
        query.append(f"b={self.binding}")
        if self.queue_mode and "Q" not in self.binding:
            query.append("Q")
        return tuple(query)


@value_class
class UpdateParams:
    lifetime_s: int | None = None
    sms_number: str | None = None
    binding: str | None = None
    queue_mode: bool | None = None
    #: The seed's Update carries ep/ept again; when present they must match.
    endpoint: str | None = None
    endpoint_type: int | None = None

    def to_query(self) -> tuple[str, ...]:
        query: list[str] = []
        if self.lifetime_s is not None:
            query.append(f"lt={self.lifetime_s}")
        if self.sms_number is not None:
            query.append(f"sms={self.sms_number}")
        if self.binding is not None:
            query.append(f"b={self.binding}")
        if self.queue_mode:
            query.append("Q")
        return tuple(query)


@value_class
class BootstrapRequestParams:
    endpoint: str
    endpoint_type: int | None = None
    preferred_content_format: int | None = None

    def to_query(self) -> tuple[str, ...]:
        query: list[str] = []
        if self.endpoint_type is not None:
            query.append(f"ept={self.endpoint_type}")
        query.append(f"ep={self.endpoint}")
        if self.preferred_content_format is not None:
            query.append(f"pct={self.preferred_content_format}")
        return tuple(query)


def _split(query: Iterable[str], allowed: frozenset[str]) -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    for item in query:
        key, has_value, value = item.partition("=")
        if key not in allowed:
            raise RegistrationParamError(f"unknown parameter {key!r}")
        if key in result:
            raise RegistrationParamError(f"parameter {key!r} given twice")
        result[key] = value if has_value else None
    return result


def _value(params: dict[str, str | None], key: str) -> str | None:
    if key not in params:
        return None
    value = params[key]
    if value is None:
        raise RegistrationParamError(f"parameter {key!r} needs a value")
    return value


def _lifetime(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() else 0
    if value <= 0:
        raise RegistrationParamError(f"lt={text!r} is not a positive integer")
    if value > 0xFFFFFFFF:
        raise RegistrationParamError(f"lt={text!r} is too large")
    return value


#: Binding modes already found valid: a fleet sends the same two or three a million
#: times. Only valid ones are kept, and the pattern allows a few hundred at most.
_VALID_BINDINGS: dict[str, str] = {}


def _binding(text: str) -> str:
    known = _VALID_BINDINGS.get(text)
    if known is not None:
        return known
    if not _BINDING.fullmatch(text) or len(set(text)) != len(text):
        raise RegistrationParamError(f"b={text!r} is not a binding mode")
    _VALID_BINDINGS[text] = text
    return text


def _sms(text: str) -> str:
    if not re.fullmatch(r"\+?[0-9]{1,15}", text):
        raise RegistrationParamError(f"sms={text!r} is not an MSISDN")
    return text


def _ept(params: dict[str, str | None]) -> int | None:
    text = _value(params, "ept")
    if text is None:
        return None
    try:
        return parse_endpoint_type(text)
    except EndpointNameError as exc:
        raise RegistrationParamError(str(exc)) from None


def _endpoint(params: dict[str, str | None], ept: int | None, required: bool) -> str | None:
    ep = _value(params, "ep")
    if ep is None:
        if required:
            raise RegistrationParamError("missing mandatory parameter 'ep'")
        return None
    try:
        validate_endpoint_name(ep, ept)
    except EndpointNameError as exc:
        raise RegistrationParamError(str(exc)) from None
    return ep


_REGISTER_KEYS = frozenset({"ep", "ept", "lt", "sms", "lwm2m", "b", "Q"})
_UPDATE_KEYS = frozenset({"ep", "ept", "lt", "sms", "lwm2m", "b", "Q"})
_BOOTSTRAP_KEYS = frozenset({"ep", "ept", "pct"})


#: The parameters after ``ep`` already parsed, by their exact text: a fleet sends
#: the same ``lt``, ``lwm2m`` and ``b`` a million times, only the name differs.
#: Only tails that parsed without error are kept, at most this many.
_REGISTER_TAILS: dict[tuple[str, ...], RegisterParams] = {}
_REGISTER_TAILS_LIMIT = 1024


def parse_register_query(query: Iterable[str]) -> RegisterParams:
    """The Register's parameters, or :class:`RegistrationParamError`.

    A query whose first item is ``ep=`` and whose rest was seen before (a storm's
    Registers) is answered from that rest's parse; only the name is checked again.
    The result and every refusal are the same as a full parse.
    """
    if type(query) is tuple and query and query[0][:3] == "ep=":
        known = _REGISTER_TAILS.get(query[1:])
        if known is not None:
            endpoint = query[0][3:]
            try:
                validate_endpoint_name(endpoint, known.endpoint_type)
            except EndpointNameError as exc:
                raise RegistrationParamError(str(exc)) from None
            return RegisterParams(
                endpoint,
                known.endpoint_type,
                known.lifetime_s,
                known.sms_number,
                known.lwm2m_version,
                known.binding,
                known.queue_mode,
            )
        params = _parse_register_query(query)
        if len(_REGISTER_TAILS) < _REGISTER_TAILS_LIMIT:
            _REGISTER_TAILS[query[1:]] = params
        return params
    return _parse_register_query(query)


def _parse_register_query(query: Iterable[str]) -> RegisterParams:
    params = _split(query, _REGISTER_KEYS)
    ept = _ept(params)
    endpoint = _endpoint(params, ept, required=True)
    assert endpoint is not None
    lt_text = _value(params, "lt")
    version = _value(params, "lwm2m") or DEFAULT_LWM2M_VERSION
    if version not in SUPPORTED_LWM2M_VERSIONS:
        raise RegistrationParamError(
            f"lwm2m={version!r} is not a supported version ({', '.join(SUPPORTED_LWM2M_VERSIONS)})"
        )
    binding = _binding(_value(params, "b") or "U")
    queue_mode = "Q" in params
    if queue_mode and params["Q"] is not None:
        raise RegistrationParamError("parameter 'Q' takes no value")
    sms = _value(params, "sms")
    return RegisterParams(
        endpoint,
        ept,
        _lifetime(lt_text) if lt_text is not None else DEFAULT_LIFETIME_S,
        _sms(sms) if sms is not None else None,
        version,
        binding,
        queue_mode or "Q" in binding,
    )


def parse_update_query(query: Iterable[str]) -> UpdateParams:
    params = _split(query, _UPDATE_KEYS)
    ept = _ept(params)
    endpoint = _endpoint(params, ept, required=False)
    lt_text = _value(params, "lt")
    binding_text = _value(params, "b")
    sms = _value(params, "sms")
    if "Q" in params and params["Q"] is not None:
        raise RegistrationParamError("parameter 'Q' takes no value")
    binding = _binding(binding_text) if binding_text is not None else None
    queue: bool | None = None
    if "Q" in params or (binding is not None and "Q" in binding):
        queue = True
    elif binding is not None:
        queue = False
    return UpdateParams(
        lifetime_s=_lifetime(lt_text) if lt_text is not None else None,
        sms_number=_sms(sms) if sms is not None else None,
        binding=binding,
        queue_mode=queue,
        endpoint=endpoint,
        endpoint_type=ept,
    )


def parse_bootstrap_query(query: Iterable[str]) -> BootstrapRequestParams:
    params = _split(query, _BOOTSTRAP_KEYS)
    ept = _ept(params)
    endpoint = _endpoint(params, ept, required=True)
    assert endpoint is not None
    pct_text = _value(params, "pct")
    pct: int | None = None
    if pct_text is not None:
        if not pct_text.isascii() or not pct_text.isdigit() or int(pct_text) > 65535:
            raise RegistrationParamError(f"pct={pct_text!r} is not a content format number")
        pct = int(pct_text)
    return BootstrapRequestParams(endpoint, ept, pct)
