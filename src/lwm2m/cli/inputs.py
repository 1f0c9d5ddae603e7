"""Files named by the server commands' options, read the same way by each.

``lwm2m server`` and ``lwm2m bootstrap`` both take ``--models DIR`` and
``--security FILE``; a bad one must fail the same way in both (one line
naming the option, exit status 2), not as a traceback in one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lwm2m.model.registry import ModelRegistry
    from lwm2m.stores import Stores


class ConfigurationError(Exception):
    """A bad command-line option or input file (the command exits with 2)."""


def load_models(directory: str | None) -> ModelRegistry:
    """The built-in object definitions plus those of ``--models DIR``."""
    from lwm2m.model.registry import default_registry

    model = default_registry()
    if directory:
        try:
            model.load_directory(directory)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"--models {directory}: {exc}") from None
    return model


async def load_security(path: str | None, stores: Stores) -> None:
    """Put the credentials of ``--security FILE`` into the security store."""
    if not path:
        return
    from lwm2m.security.credentials import SecurityConfigError, load_security_file

    try:
        entries = load_security_file(path)
    except SecurityConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    for entry in entries:
        await stores.security.put(entry)
