"""Refusals an operator can see: refused Registers, Request Bootstraps, failed DTLS handshakes.

A device that never shows up was usually refused: a wrong name in its
certificate, a name held by another device, NoSec where credentials exist, a
wrong PSK. The peer learns why (a 4.xx diagnostic, a TLS alert); without this
module the operator learns nothing. The roles report each refusal here, and
:class:`RefusalLog`

- logs it once at WARNING with endpoint, source address, identity and reason,
  rate-limited per reason (:mod:`lwm2m.protocol.log_limit`) with a periodic
  "N more refusals not logged" summary line;
- counts it per reason, a small fixed set of label values per kind
  (:data:`REASONS`), for ``/metrics``;
- remembers the last few refusals per endpoint name (an LRU of names, so a
  flood of invented names cannot grow memory) and the last refusals that name
  no endpoint (failed handshakes, requests without ``ep``), for the REST API
  and the web UI.

The roles know nothing of the web layer: it reads a :class:`RefusalLog`
through :meth:`RefusalLog.counts`, :meth:`RefusalLog.endpoints` and
:meth:`RefusalLog.unnamed`.

Levels: each refusal WARNING (while its reason's bucket has tokens), the
summary WARNING; nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lwm2m.coap.peer import Address, PeerIdentity
from lwm2m.protocol.log_limit import LogLimiter

logger = logging.getLogger(__name__)


class RefusalKind(enum.Enum):
    """What was refused; each kind has its own metric."""

    REGISTER = "register"
    BOOTSTRAP = "bootstrap"
    DTLS_HANDSHAKE = "dtls_handshake"


#: The reason label values of each kind, with what they mean to an operator.
REASONS: Mapping[RefusalKind, Mapping[str, str]] = {
    RefusalKind.REGISTER: {
        "bad_request": "malformed Register (parameters or payload)",
        "unknown_endpoint": "unknown endpoint (only endpoints in the security store may register)",
        "security_required": "endpoint has credentials but registered without DTLS",
        "psk_identity_mismatch": "PSK identity does not belong to this endpoint name",
        "x509_name_mismatch": "certificate CN does not match the endpoint name",
        "certificate_untrusted": "certificate not trusted for this endpoint",
        "forbidden": "forbidden",
        "conflict": "name held by another client",
    },
    RefusalKind.BOOTSTRAP: {
        "bad_request": "malformed Request Bootstrap",
        "unknown_endpoint": "no bootstrap configuration for this endpoint",
        "security_required": "endpoint has credentials but asked without DTLS",
        "identity_mismatch": "DTLS identity does not belong to this endpoint name",
        "busy": "a bootstrap session for this endpoint is already running",
    },
    RefusalKind.DTLS_HANDSHAKE: {
        "unknown_psk_identity": "unknown or revoked PSK identity",
        "certificate_rejected": "client certificate rejected",
        "unknown_identity": "resumed session of an unknown identity",
        "timeout": "handshake timed out",
        "replaced": "handshake abandoned for a new one from the same address",
        "handshake_error": "handshake failed (wrong key, no common cipher suite, bad record)",
    },
}

#: What the LwM2M server's listeners refuse, and the bootstrap server's.
SERVER_REFUSALS = (RefusalKind.REGISTER, RefusalKind.DTLS_HANDSHAKE)
BOOTSTRAP_REFUSALS = (RefusalKind.BOOTSTRAP, RefusalKind.DTLS_HANDSHAKE)

#: Longest endpoint name kept or logged (the CoAP Uri-Query option holds 255 bytes).
MAX_NAME_LENGTH = 255
#: Longest diagnostic kept or logged.
MAX_MESSAGE_LENGTH = 300

_VERBS = {
    RefusalKind.REGISTER: "registration refused",
    RefusalKind.BOOTSTRAP: "bootstrap request refused",
    RefusalKind.DTLS_HANDSHAKE: "DTLS handshake failed",
}


def printable(text: str, limit: int) -> str:
    """``text`` safe for one log line: control characters escaped, cut at ``limit``."""
    cleaned = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def describe_identity(identity: PeerIdentity | None) -> str | None:
    """``psk:<identity>`` or ``x509:<subject>`` (None on plain UDP): who the peer proved to be."""
    if identity is None:
        return None
    if identity.certificate_der is not None:
        try:
            # Imported here: the X.509 stack (cryptography) is only needed with DTLS.
            from lwm2m.security.x509 import describe, load_certificate

            return "x509:" + printable(describe(load_certificate(identity.certificate_der)), 200)
        except Exception:
            return "x509:<unreadable certificate>"
    if identity.psk_identity is not None:
        return "psk:" + printable(identity.psk_identity.decode("utf-8", "backslashreplace"), 200)
    return None


def format_address(address: Address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal as remembered, logged and served by the REST API."""

    kind: RefusalKind
    #: One of ``REASONS[kind]`` (a metric label value).
    reason: str
    #: What the peer was told (a 4.xx diagnostic) or why the handshake failed.
    message: str
    address: Address
    #: Wall-clock seconds.
    time: float
    #: Which listener refused: ``server`` or ``bootstrap``.
    service: str
    endpoint: str | None = None
    #: :func:`describe_identity` of the peer.
    identity: str | None = None
    #: The CoAP code answered (``4.09``); None for a handshake.
    code: str | None = None

    @property
    def summary(self) -> str:
        """The reason in words (the text the web UI shows)."""
        return REASONS[self.kind][self.reason]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "reason": self.reason,
            "summary": self.summary,
            "message": self.message,
            "address": format_address(self.address),
            "time": self.time,
            "service": self.service,
            "endpoint": self.endpoint,
            "identity": self.identity,
            "code": self.code,
        }


@dataclass(slots=True)
class EndpointRefusals:
    """The refusals remembered for one endpoint name."""

    #: Refusals of this name since it entered the memory (may exceed ``len(recent)``).
    count: int = 0
    #: The last few, oldest first.
    recent: deque[Refusal] = field(default_factory=deque)

    @property
    def last(self) -> Refusal:
        return self.recent[-1]


class RefusalLog:
    """Counts, remembers and logs (rate-limited) the refusals of one listener (``service``)."""

    def __init__(
        self,
        service: str,
        kinds: tuple[RefusalKind, ...],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        limiter: LogLimiter | None = None,
        max_endpoints: int = 1000,
        per_endpoint: int = 5,
        max_unnamed: int = 100,
    ) -> None:
        self.service = service
        #: What this listener can refuse (the metric families it reports).
        self.kinds = kinds
        self._clock = clock
        self._monotonic = monotonic
        self._limiter = limiter if limiter is not None else LogLimiter()
        self._max_endpoints = max_endpoints
        self._per_endpoint = per_endpoint
        self._counts: dict[tuple[RefusalKind, str], int] = {
            (kind, reason): 0 for kind in kinds for reason in REASONS[kind]
        }
        self._endpoints: OrderedDict[str, EndpointRefusals] = OrderedDict()
        self._unnamed: deque[Refusal] = deque(maxlen=max_unnamed)
        self._timer: asyncio.TimerHandle | None = None

    def record(
        self,
        kind: RefusalKind,
        reason: str,
        message: str,
        address: Address,
        *,
        endpoint: str | None = None,
        identity: PeerIdentity | None = None,
        code: str | None = None,
    ) -> Refusal:
        """Count, remember and (unless rate-limited) log one refusal."""
        if kind not in self.kinds or reason not in REASONS[kind]:
            raise ValueError(f"{kind.value}/{reason} is not a refusal of {self.service}")
        refusal = Refusal(
            kind=kind,
            reason=reason,
            message=printable(message, MAX_MESSAGE_LENGTH),
            address=(address[0], address[1]),
            time=self._clock(),
            service=self.service,
            endpoint=None if endpoint is None else printable(endpoint, MAX_NAME_LENGTH),
            identity=describe_identity(identity),
            code=code,
        )
        self._counts[(kind, reason)] += 1
        self._remember(refusal)
        now = self._monotonic()
        self._log_summary(now)
        if self._limiter.allow(f"{kind.value}/{reason}", now):
            self._log(refusal)
        else:
            self._arm_summary_timer()
        return refusal

    def counts(self) -> Mapping[tuple[RefusalKind, str], int]:
        """Refusals so far per (kind, reason) of :attr:`kinds`; every label value is present."""
        return dict(self._counts)

    def endpoints(self) -> list[tuple[str, EndpointRefusals]]:
        """Remembered endpoint names, most recently refused first."""
        return [(name, entry) for name, entry in reversed(self._endpoints.items())]

    def get(self, endpoint: str) -> EndpointRefusals | None:
        return self._endpoints.get(endpoint)

    def unnamed(self) -> list[Refusal]:
        """The last refusals that name no endpoint (failed handshakes ...), newest first."""
        return list(reversed(self._unnamed))

    def close(self) -> None:
        """Log what is still pending in a summary (the server stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._log_summary(self._monotonic(), force=True)

    # Private

    def _remember(self, refusal: Refusal) -> None:
        if refusal.endpoint is None:
            self._unnamed.append(refusal)
            return
        entry = self._endpoints.get(refusal.endpoint)
        if entry is None:
            entry = EndpointRefusals(recent=deque(maxlen=self._per_endpoint))
            self._endpoints[refusal.endpoint] = entry
            while len(self._endpoints) > self._max_endpoints:
                self._endpoints.popitem(last=False)
        else:
            self._endpoints.move_to_end(refusal.endpoint)
        entry.count += 1
        entry.recent.append(refusal)

    def _log(self, refusal: Refusal) -> None:
        answered = f"{refusal.code} " if refusal.code else ""
        # A handshake has no endpoint name yet, and no identity it proved. Names are
        # already escaped by printable(): quoted as they are, not repr()'d again.
        name = "-" if refusal.endpoint is None else f"'{refusal.endpoint}'"
        who = (
            ""
            if refusal.kind is RefusalKind.DTLS_HANDSHAKE
            else f" ep={name} identity={refusal.identity or 'none'}"
        )
        logger.warning(
            "%s:%s from %s reason=%s (%s%s) [%s]",
            _VERBS[refusal.kind],
            who,
            format_address(refusal.address),
            refusal.reason,
            answered,
            refusal.message,
            refusal.service,
            extra={"refusal": refusal},
        )

    def _log_summary(self, now: float, *, force: bool = False) -> None:
        counts = self._limiter.take_summary(now, force=force)
        if not counts:
            return
        total = sum(counts.values())
        detail = ", ".join(f"{key}: {n}" for key, n in sorted(counts.items()))
        logger.warning(
            "%d more refusals not logged (rate limit) [%s]: %s",
            total,
            self.service,
            detail,
            extra={"suppressed": counts},
        )

    def _arm_summary_timer(self) -> None:
        """A burst followed by silence still gets its summary, once the interval is over."""
        if self._timer is not None:
            return
        due = self._limiter.summary_due_at()
        if due is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next record() logs it
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                max(0.0, due - self._monotonic()), self._summary_timer_fired
            )

    def _summary_timer_fired(self) -> None:
        self._timer = None
        self._log_summary(self._monotonic())
        if self._limiter.pending:
            self._arm_summary_timer()
