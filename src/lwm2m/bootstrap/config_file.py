"""``--config FILE`` of the Bootstrap Server: our configuration shape or a Leshan store.

The one place that reads a configuration file: it tells the two shapes apart
(:func:`~lwm2m.bootstrap.leshan.looks_like_leshan_store`), converts a Leshan
store, and hands the result to the validator of
:mod:`lwm2m.protocol.bootstrap_config`, naming the file in every error.
"""

from __future__ import annotations

import json
from pathlib import Path as FsPath

from lwm2m.bootstrap.leshan import convert_leshan_store, looks_like_leshan_store
from lwm2m.protocol.bootstrap_config import BootstrapConfig, BootstrapConfigError, parse_config


def load_config_file(path: str | FsPath) -> dict[str, BootstrapConfig]:
    """Read ``--config FILE``: our shape, or a Leshan bootstrap store (detected)."""
    fs_path = FsPath(path)
    try:
        text = fs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BootstrapConfigError(str(fs_path), f"cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BootstrapConfigError(
            str(fs_path), f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BootstrapConfigError(str(fs_path), "not JSON: nested too deeply") from None
    if data == {}:
        # An empty document: our shape without clients, or an empty Leshan
        # store. Both mean "nothing configured yet" (clients are added later
        # over REST), as they did before the two shapes were told apart.
        return {}
    try:
        if looks_like_leshan_store(data):
            data = convert_leshan_store(data)
        return parse_config(data, base_dir=fs_path.parent)
    except BootstrapConfigError as exc:
        raise BootstrapConfigError(
            f"{fs_path}: {exc.where}" if exc.where else str(fs_path), exc.problem
        ) from None
