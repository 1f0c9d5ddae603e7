"""The LwM2M Bootstrap Server (docs/bootstrap.md).

``BootstrapServer`` (configs CRUD, session history, ``push``, events) is the
API the ``lwm2m bootstrap`` command, the ``lwm2m server`` command and the
REST layer use.
"""

from lwm2m.bootstrap.config_file import load_config_file
from lwm2m.bootstrap.events import (
    BootstrapEvent,
    BootstrapEventBus,
    BootstrapRejected,
    FailureReason,
    Operation,
    SessionAnswer,
    SessionFailed,
    SessionFinished,
    SessionMode,
    SessionRequest,
    SessionStarted,
)
from lwm2m.bootstrap.history import SessionRecord, SessionStatus, Step
from lwm2m.bootstrap.server import BootstrapServer, format_address, parse_address
from lwm2m.protocol.bootstrap_config import BootstrapConfig, BootstrapConfigError, parse_config
from lwm2m.protocol.events import EventBus

__all__ = [
    "BootstrapConfig",
    "BootstrapConfigError",
    "BootstrapEvent",
    "BootstrapEventBus",
    "BootstrapRejected",
    "BootstrapServer",
    "EventBus",
    "FailureReason",
    "Operation",
    "SessionAnswer",
    "SessionFailed",
    "SessionFinished",
    "SessionMode",
    "SessionRecord",
    "SessionRequest",
    "SessionStarted",
    "SessionStatus",
    "Step",
    "format_address",
    "load_config_file",
    "parse_address",
    "parse_config",
]
