"""Client configuration: who the device is and its factory server accounts.

The factory accounts become Security (0) and Server (1) instances at first
start and again at factory reset; bootstrap (or a state file) may replace them.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass, field

from lwm2m.coap.params import TransmissionParameters
from lwm2m.protocol.endpoint_name import (
    EndpointNameError,
    parse_endpoint_type,
    validate_endpoint_name,
)
from lwm2m.protocol.registration import SUPPORTED_LWM2M_VERSIONS

#: Security Mode resource values (Security object, resource 2).
MODE_PSK = 0
MODE_RPK = 1
MODE_CERTIFICATE = 2
MODE_NOSEC = 3


class ClientConfigError(ValueError):
    """An invalid client configuration (bad URI, name, lifetime ...)."""


def parse_server_uri(uri: str) -> tuple[str, str, int]:
    """``coap://host:port`` -> (scheme, host, port); default ports 5683/5684.

    Schemes: ``coap``, ``coaps`` (UDP, DTLS) and ``coap+tcp``, ``coaps+tcp``
    (RFC 8323: TCP, TLS).
    """
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme not in ("coap", "coaps", "coap+tcp", "coaps+tcp"):
        raise ClientConfigError(
            f"{uri!r}: server URI must be coap:// or coaps:// (UDP) or coap+tcp://, coaps+tcp://"
        )
    if not parsed.hostname:
        raise ClientConfigError(f"{uri!r}: server URI has no host")
    try:
        port = parsed.port
    except ValueError:
        raise ClientConfigError(f"{uri!r}: invalid port") from None
    return scheme, parsed.hostname, port or (5684 if scheme.startswith("coaps") else 5683)


@dataclass(frozen=True, slots=True)
class FactoryAccount:
    """One factory-configured account: an LwM2M server, or the bootstrap server."""

    uri: str
    short_server_id: int = 1
    bootstrap: bool = False
    lifetime_s: int = 300
    binding: str = "U"
    default_pmin_s: int = 0
    default_pmax_s: int | None = None
    notification_storing: bool = True
    security_mode: int = MODE_NOSEC
    psk_identity: bytes = b""
    psk_key: bytes = b""
    client_certificate: bytes = b""
    server_public_key: bytes = b""
    secret_key: bytes = b""
    #: Security resource 15 (0-3, RFC 6698); None leaves it out (see docs/security.md)
    certificate_usage: int | None = None

    def __post_init__(self) -> None:
        scheme, _, _ = parse_server_uri(self.uri)
        if not self.bootstrap and not 1 <= self.short_server_id <= 65534:
            raise ClientConfigError(f"short server ID {self.short_server_id} out of range 1-65534")
        if self.lifetime_s <= 0:
            raise ClientConfigError(f"lifetime {self.lifetime_s} must be positive")
        if self.security_mode == MODE_PSK and not (self.psk_identity and self.psk_key):
            raise ClientConfigError("PSK mode needs an identity and a key")
        if scheme.startswith("coaps") and self.security_mode == MODE_NOSEC:
            raise ClientConfigError(f"{self.uri}: {scheme}:// needs PSK or certificate credentials")
        if not scheme.startswith("coaps") and self.security_mode != MODE_NOSEC:
            raise ClientConfigError(f"{self.uri}: credentials need a coaps:// URI")
        if self.certificate_usage is not None and not 0 <= self.certificate_usage <= 3:
            raise ClientConfigError(f"certificate usage {self.certificate_usage} is not 0-3")

    def security_values(self) -> dict[int, object]:
        """Resources of the Security instance for this account."""
        values: dict[int, object] = {
            0: self.uri,
            1: self.bootstrap,
            2: self.security_mode,
            3: self.psk_identity if self.security_mode == MODE_PSK else self.client_certificate,
            4: self.server_public_key,
            5: self.psk_key if self.security_mode == MODE_PSK else self.secret_key,
            10: self.short_server_id,
            11: 0,
        }
        if self.certificate_usage is not None:
            values[15] = self.certificate_usage
        return values

    def server_values(self) -> dict[int, object]:
        """Resources of the Server instance (none for the bootstrap account)."""
        values: dict[int, object] = {
            0: self.short_server_id,
            1: self.lifetime_s,
            2: self.default_pmin_s,
            6: self.notification_storing,
            7: self.binding,
        }
        if self.default_pmax_s is not None:
            values[3] = self.default_pmax_s
        return values


@dataclass(frozen=True, slots=True)
class ClientConfig:
    endpoint: str
    servers: tuple[FactoryAccount, ...] = ()
    endpoint_type: int | None = None
    lwm2m_version: str = "1.1"
    queue_mode: bool = False
    awake_time_s: float = 93.0
    notify_confirmable: bool = False
    local_host: str = "0.0.0.0"
    local_port: int = 0
    state_file: str | None = None
    request_timeout_s: float | None = None
    #: CoAP timing (ACK_TIMEOUT, MAX_RETRANSMIT ...) of the client's sockets; the
    #: Update is scheduled so that one exchange (MAX_TRANSMIT_WAIT) fits
    transmission: TransmissionParameters = field(default_factory=TransmissionParameters)
    #: how long a device that goes away on its own (Factory Reset) waits for the
    #: answers to its De-registers: a server that is gone must not hold the reset
    #: for a whole retransmission sequence (up to MAX_TRANSMIT_WAIT, 93 s)
    deregister_timeout_s: float = 5.0
    #: factory Communication Retry Timer (Server resource 18): the wait after the
    #: first failed Register of a sequence, doubled after each further one
    retry_initial_s: float = 2.0
    #: factory Communication Sequence Delay Timer (Server resource 19): the wait
    #: after a sequence of failed Registers
    retry_max_s: float = 300.0
    #: CoAP over TCP/TLS: Ping an idle connection after this long (None: never)
    tcp_keepalive_s: float | None = 60.0
    #: a closed TCP/TLS connection is reopened after a random delay up to this
    tcp_reconnect_backoff_s: float = 2.0
    #: per server, notifications kept while it is disabled or unreachable (Server
    #: resource 6 true); when full the oldest is dropped
    stored_notifications_max: int = 64
    #: factory Communication Retry Count (Server resource 17): Register attempts in
    #: a sequence; with one sequence (resource 20 absent) the client falls back to
    #: bootstrap after this many failures in a row when it has a bootstrap account
    bootstrap_after_failures: int = 3
    manufacturer: str = "lwm2m-py"
    model_number: str = "simulated"
    serial_number: str = ""

    def __post_init__(self) -> None:
        try:
            validate_endpoint_name(self.endpoint, self.endpoint_type)
            if self.endpoint_type is not None:
                parse_endpoint_type(str(self.endpoint_type))
        except EndpointNameError as exc:
            raise ClientConfigError(str(exc)) from None
        if self.lwm2m_version not in SUPPORTED_LWM2M_VERSIONS:
            raise ClientConfigError(f"unsupported LwM2M version {self.lwm2m_version}")
        ids = [s.short_server_id for s in self.servers if not s.bootstrap]
        if len(ids) != len(set(ids)):
            raise ClientConfigError("two servers share one short server ID")
        if sum(1 for s in self.servers if s.bootstrap) > 1:
            raise ClientConfigError("at most one bootstrap server")
        if self.stored_notifications_max < 1:
            raise ClientConfigError("stored_notifications_max must be at least 1")
        if self.bootstrap_after_failures < 1:
            raise ClientConfigError("bootstrap_after_failures must be at least 1")
        if not self.deregister_timeout_s >= 0:  # also rejects NaN
            raise ClientConfigError("deregister_timeout_s must be zero or more seconds")
        if self.retry_initial_s < 0 or self.retry_max_s < 0:
            raise ClientConfigError("retry timers must not be negative")

    def retry_values(self) -> dict[int, object]:
        """Server resources 17-19 of the factory accounts (LwM2M 1.1 retry procedure)."""
        return {
            17: self.bootstrap_after_failures,
            18: math.ceil(self.retry_initial_s),
            19: math.ceil(self.retry_max_s),
        }
