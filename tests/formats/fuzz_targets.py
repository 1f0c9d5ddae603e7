"""Fuzz targets, one per decoder: any input must decode or raise FormatError.

Run one under atheris (optional, not a dependency)::

    python tests/formats/fuzz_targets.py tlv [corpus_dir]

``tests/formats/test_fuzz_targets.py`` runs every target over a
hypothesis-generated corpus in the normal test run.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

from lwm2m.formats import link_format, registry
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat as CF
from lwm2m.model.core_objects import DEFAULT_OBJECTS
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry

MODEL = ModelRegistry(DEFAULT_OBJECTS)

#: paths each node decoder is tried at: object, instance, resources and instances,
#: known (Device, typed) and unknown (untyped) objects
PATHS = (Path(3), Path(3, 0), Path(3, 0, 13), Path(3, 0, 7), Path(3, 0, 7, 0), Path(4242, 0))


def _node_target(fmt: CF) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        for path in PATHS:
            with contextlib.suppress(FormatError):
                registry.decode(data, path, fmt, MODEL)
        if fmt in registry.COMPOSITE_FORMATS or fmt is CF.LWM2M_JSON:
            with contextlib.suppress(FormatError):
                registry.decode_composite(data, fmt, MODEL)
        if fmt in registry.COMPOSITE_FORMATS:
            with contextlib.suppress(FormatError):
                registry.decode_paths(data, fmt)

    return target


def link_target(data: bytes) -> None:
    try:
        links = link_format.parse_links(data)
    except FormatError:
        return
    with contextlib.suppress(FormatError):
        link_format.registration_objects(links)
    with contextlib.suppress(FormatError):
        link_format.link_paths(links)
    # anything we parse must serialise and parse back to the same links
    assert link_format.parse_links(link_format.format_links(links)) == links


TARGETS: dict[str, Callable[[bytes], None]] = {
    "text": _node_target(CF.TEXT),
    "opaque": _node_target(CF.OCTET_STREAM),
    "tlv": _node_target(CF.LWM2M_TLV),
    "json": _node_target(CF.LWM2M_JSON),
    "senml+json": _node_target(CF.SENML_JSON),
    "senml+cbor": _node_target(CF.SENML_CBOR),
    "cbor": _node_target(CF.LWM2M_CBOR),
    "plain-cbor": _node_target(CF.CBOR),
    "link": link_target,
}


def main(argv: list[str]) -> None:  # pragma: no cover - needs atheris
    import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]

    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [atheris options]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv)
