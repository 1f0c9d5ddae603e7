"""The single `lwm2m` command.

Each subcommand lives in its own module (``add_arguments(parser)`` and
``run(args) -> int``) and is imported only when chosen, so that
``lwm2m decode`` starts without loading the web stack.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "server": (
        "lwm2m.cli.server",
        "run an LwM2M server (with bootstrap server, REST API and web UI)",
    ),
    "bootstrap": ("lwm2m.cli.bootstrap", "run a standalone LwM2M bootstrap server"),
    "client": ("lwm2m.cli.client", "run an LwM2M client, or many simulated devices"),
    "decode": ("lwm2m.cli.decode", "decode an LwM2M payload and print it as JSON"),
    "certs": ("lwm2m.cli.certs", "create a test CA, server and device certificates"),
    "firmware": (
        "lwm2m.cli.firmware",
        "add, list or delete firmware images (of a running server, or a data directory)",
    ),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lwm2m", description="OMA Lightweight M2M stack")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        parser.error(f"--log-level: unknown level {args.log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        result: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return result
