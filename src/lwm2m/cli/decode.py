"""``lwm2m decode``: decode an LwM2M payload and print it as JSON.

Examples::

    lwm2m decode --format tlv --path /3/0 --hex "C8 00 14 4F70..."
    lwm2m decode --format senml+cbor payload.bin        # composite, at the root
    lwm2m decode --format link --hex "3c2f3e3b72743d..."

Values are typed by the model (the core objects plus ``--models DIR``):
numbers, booleans, strings, base64 for Opaque, ISO 8601 for Time, ``"3:0"``
for Objlnk, with resource names. Bad input exits with status 1 and one line
``error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from lwm2m.formats import link_format, registry
from lwm2m.formats.errors import FormatError
from lwm2m.formats.jsonview import composite_to_json, node_to_json
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry

FORMAT_NAMES = (
    "text",
    "opaque",
    "tlv",
    "json",
    "senml+json",
    "senml+cbor",
    "cbor",
    "plain-cbor",
    "link",
)


def _format(text: str) -> ContentFormat:
    try:
        return ContentFormat.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown format {text!r} (use one of {', '.join(FORMAT_NAMES)} or a number)"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        "-f",
        required=True,
        type=_format,
        metavar="{" + ",".join(FORMAT_NAMES) + "}",
        help="content format of the payload (a name or a Content-Format number)",
    )
    parser.add_argument(
        "--path",
        "-p",
        default="/",
        help="the LwM2M path the payload is for (default /: a composite payload)",
    )
    parser.add_argument("--models", metavar="DIR", help="directory of extra DDF object files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hex", help="the payload in hexadecimal (spaces and colons allowed)")
    source.add_argument("file", nargs="?", help="file holding the raw payload ('-' for stdin)")


def _model(models_dir: str | None) -> ModelRegistry:
    from lwm2m.model import registry as model_registry

    factory = getattr(model_registry, "default_registry", None)
    if callable(factory):
        model: ModelRegistry = factory()
    else:
        from lwm2m.model.core_objects import DEFAULT_OBJECTS

        model = ModelRegistry(DEFAULT_OBJECTS)
    if models_dir is not None:
        model.load_directory(models_dir)
    return model


def _payload(args: argparse.Namespace) -> bytes:
    if args.hex is not None:
        cleaned = "".join(args.hex.split()).replace(":", "")
        if cleaned.lower().startswith("0x"):
            cleaned = cleaned[2:]
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            raise FormatError("--hex: not a hexadecimal string") from None
    if args.file == "-":
        return sys.stdin.buffer.read()
    with open(args.file, "rb") as fp:
        return fp.read()


def decode_to_json(
    data: bytes, fmt: ContentFormat, path: Path, model: ModelRegistry | None
) -> object:
    """The JSON document ``lwm2m decode`` prints."""
    if fmt.canonical is ContentFormat.LINK_FORMAT:
        return [
            {"target": link.target, "params": [[name, value] for name, value in link.params]}
            for link in link_format.parse_links(data)
        ]
    if path.is_root:
        return composite_to_json(registry.decode_composite(data, fmt, model), model)
    node = registry.decode(data, path, fmt, model)
    return node_to_json(node, path, model)


def run(args: argparse.Namespace) -> int:
    try:
        path = Path.parse(args.path)
        model = _model(args.models)
        data = _payload(args)
        document = decode_to_json(data, args.format, path, model)
    except (FormatError, PathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # DdfError from --models and other input errors
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
