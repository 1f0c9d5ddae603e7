"""``lwm2m client``: one interactive device, or ``--count N`` simulated devices."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from lwm2m.cli.shutdown import (
    StopSignals,
    add_stop_timeout_argument,
    check_stop_timeout,
    disarm_watchdog,
)
from lwm2m.client.bootstrap import options as bootstrap_options
from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import MODE_PSK, ClientConfig, ClientConfigError, FactoryAccount
from lwm2m.client.ddf_objects import add_generic_objects
from lwm2m.client.state import StateFileError
from lwm2m.coap.params import TransmissionParameters
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.model.definitions import ObjectDef
from lwm2m.model.registry import ModelRegistry, default_registry

if TYPE_CHECKING:
    from lwm2m.client.simulator import Simulator

logger = logging.getLogger(__name__)

#: Exit status when the stop could not de-register every registered device in time.
EXIT_NOT_DEREGISTERED = 3

_RFC_TIMING = TransmissionParameters()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", "-e", required=True, help="endpoint client name (ep)")
    parser.add_argument(
        "--server",
        "-s",
        action="append",
        default=[],
        metavar="URI",
        help="LwM2M server URI (coap://host:port, coaps://, coap+tcp://, coaps+tcp://);"
        " repeat for several servers",
    )
    parser.add_argument(
        "--lifetime",
        "-l",
        type=int,
        default=300,
        metavar="S",
        help="registration lifetime in seconds (default 300)",
    )
    parser.add_argument(
        "--ept",
        type=int,
        default=None,
        metavar="N",
        help="endpoint client name type (seed 6.2.1: 1 OUI-PC-SN, 2 URN, 65-255 vendor)",
    )
    parser.add_argument(
        "--bootstrap", "-b", metavar="URI", help="bootstrap server URI (coap[s][+tcp]://)"
    )
    parser.add_argument("--queue", "-q", action="store_true", help="queue mode (binding UQ)")
    parser.add_argument(
        "--awake-time",
        type=float,
        default=93.0,
        metavar="S",
        help="queue mode: seconds awake after the last exchange",
    )
    parser.add_argument("--models", metavar="DIR", help="directory of DDF files to load")
    parser.add_argument("--state", metavar="FILE", help="state file (kept across restarts)")
    parser.add_argument("--psk-identity", metavar="ID", help="PSK identity (coaps servers)")
    parser.add_argument("--psk-key", metavar="HEX", help="PSK key in hex")
    parser.add_argument(
        "--lwm2m-version", default="1.1", choices=("1.0", "1.1"), help="LwM2M version to announce"
    )
    parser.add_argument(
        "--con", action="store_true", help="send notifications as CON (default NON)"
    )
    parser.add_argument(
        "--stored-notifications",
        type=int,
        default=64,
        metavar="N",
        help="notifications kept per server while it is disabled or unreachable (default 64)",
    )
    parser.add_argument(
        "--no-notification-storing",
        action="store_true",
        help="factory value false for Server resource 6: drop notifications while offline",
    )
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=_RFC_TIMING.ack_timeout_s,
        metavar="S",
        help="CoAP ACK_TIMEOUT in seconds (default 2; larger for slow links such as NB-IoT)",
    )
    parser.add_argument(
        "--max-retransmit",
        type=int,
        default=_RFC_TIMING.max_retransmit,
        metavar="N",
        help="CoAP MAX_RETRANSMIT: retransmissions of a CON message (default 4)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="local address to bind (default 0.0.0.0)")
    parser.add_argument(
        "--count",
        "-n",
        type=int,
        default=1,
        metavar="N",
        help="simulate N devices (endpoint names get a numeric suffix)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        metavar="R",
        help="--count: devices started per second (default 500)",
    )
    parser.add_argument(
        "--fw-download-rate",
        type=float,
        metavar="BYTES_PER_S",
        help="simulated firmware download speed per device (default: network speed)",
    )
    parser.add_argument(
        "--fw-fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of devices whose firmware updates fail with Update Result 8 "
        "(chosen from --fw-seed and the endpoint name, so predictable)",
    )
    parser.add_argument(
        "--fw-seed", type=int, default=0, metavar="N", help="seed of --fw-fail-rate (default 0)"
    )
    parser.add_argument("--no-console", action="store_true", help="do not read commands from stdin")
    # A fleet's stop is paced by the server's answers, not bounded: no watchdog (_run_many).
    add_stop_timeout_argument(
        parser, "wait for De-register answers (also on Factory Reset)", watchdog=False
    )
    # The client-side bootstrap: --factory FILE, --smartcard FILE, ...
    bootstrap_options.add_arguments(parser)


def _transmission(args: argparse.Namespace) -> TransmissionParameters:
    """RFC 7252 4.8 timing from ``--ack-timeout`` / ``--max-retransmit``.

    Checked here as well as in :class:`TransmissionParameters` so that the error
    names the option, and so that ``inf``/``nan`` (which pass ``> 0`` tests
    unevenly) never reach the retransmission timer.
    """
    if not (math.isfinite(args.ack_timeout) and args.ack_timeout > 0):
        raise ClientConfigError("--ack-timeout must be a positive number of seconds")
    if args.max_retransmit < 0:
        raise ClientConfigError("--max-retransmit must be 0 or more")
    return TransmissionParameters(
        ack_timeout_s=args.ack_timeout, max_retransmit=args.max_retransmit
    )


def build_config(args: argparse.Namespace) -> ClientConfig:
    psk_identity = (args.psk_identity or "").encode()
    try:
        psk_key = bytes.fromhex(args.psk_key) if args.psk_key else b""
    except ValueError:
        raise ClientConfigError("--psk-key must be hexadecimal") from None
    servers: list[FactoryAccount] = []
    for index, uri in enumerate(args.server):
        secure = uri.lower().startswith(("coaps://", "coaps+tcp://"))
        # LwM2M 1.1 binding T for a coap+tcp:// or coaps+tcp:// server
        binding = ("T" if "+tcp://" in uri.lower() else "U") + ("Q" if args.queue else "")
        servers.append(
            FactoryAccount(
                uri,
                short_server_id=index + 1,
                lifetime_s=args.lifetime,
                binding=binding,
                notification_storing=not args.no_notification_storing,
                security_mode=MODE_PSK if secure else 3,
                psk_identity=psk_identity if secure else b"",
                psk_key=psk_key if secure else b"",
            )
        )
    if args.bootstrap:
        secure = args.bootstrap.lower().startswith(("coaps://", "coaps+tcp://"))
        servers.append(
            FactoryAccount(
                args.bootstrap,
                short_server_id=0,
                bootstrap=True,
                security_mode=MODE_PSK if secure else 3,
                psk_identity=psk_identity if secure else b"",
                psk_key=psk_key if secure else b"",
            )
        )
    return ClientConfig(
        endpoint=args.endpoint,
        servers=tuple(servers),
        endpoint_type=args.ept,
        lwm2m_version=args.lwm2m_version,
        queue_mode=args.queue,
        awake_time_s=args.awake_time,
        notify_confirmable=args.con,
        local_host=args.host,
        state_file=args.state,
        stored_notifications_max=args.stored_notifications,
        transmission=_transmission(args),
        deregister_timeout_s=args.stop_timeout,
    )


def run(args: argparse.Namespace) -> int:
    problem = check_stop_timeout(args.stop_timeout)
    if problem is not None:
        print(f"lwm2m client: {problem}", file=sys.stderr)
        return 2
    try:
        config = build_config(args)
    except ClientConfigError as exc:
        print(f"lwm2m client: {exc}", file=sys.stderr)
        return 2
    if args.count < 1:
        print("lwm2m client: --count must be at least 1", file=sys.stderr)
        return 2
    if not 0.0 <= args.fw_fail_rate <= 1.0:
        print("lwm2m client: --fw-fail-rate must be between 0 and 1", file=sys.stderr)
        return 2
    if args.count > 1 and args.state:
        print("lwm2m client: --state is for a single device (not with --count)", file=sys.stderr)
        return 2
    registry = default_registry()
    model_objects: list[ObjectDef] = []
    if args.models:
        try:
            model_objects = registry.load_directory(args.models)
        except Exception as exc:  # DdfError, OSError: reported, not a traceback
            print(f"lwm2m client: --models: {exc}", file=sys.stderr)
            return 2
    args.model_objects = model_objects
    try:
        if args.count == 1:
            return asyncio.run(_run_single(config, registry, args))
        return asyncio.run(_run_many(config, registry, args))
    except (StateFileError, ClientConfigError) as exc:
        print(f"lwm2m client: {exc}", file=sys.stderr)
        return 1
    finally:
        disarm_watchdog()


def _stopped(deregistered: int, registered: int, devices: int) -> int:
    """The last line a stopping command prints, and its exit status."""
    print(
        f"stopped: de-registered {deregistered} of {registered} registered devices "
        f"({devices} device{'s' if devices != 1 else ''})",
        file=sys.stderr,
    )
    return 0 if deregistered == registered else EXIT_NOT_DEREGISTERED


def _apply_options(client: LwM2MClient, args: argparse.Namespace) -> None:
    # Objects of --models DIR are served with default values (instance 0).
    add_generic_objects(client.store, getattr(args, "model_objects", ()))
    _simulate_firmware(client, args)
    bootstrap_options.apply(client, args)


def _simulate_firmware(client: LwM2MClient, args: argparse.Namespace) -> None:
    """--fw-download-rate / --fw-fail-rate on the device's Firmware Update object."""
    from lwm2m.client.objects.firmware import AcceptingInstaller, FirmwareUpdate, update_fails

    firmware = client.instance(5, 0)
    if not isinstance(firmware, FirmwareUpdate):
        return
    rate = getattr(args, "fw_download_rate", None)
    firmware.download_rate_bps = rate if rate is not None and rate > 0 else None
    fail_rate = getattr(args, "fw_fail_rate", 0.0) or 0.0
    fails = update_fails(getattr(args, "fw_seed", 0), client.endpoint_name, fail_rate)
    firmware.installer = AcceptingInstaller(fail_updates=fails)


async def _run_single(
    config: ClientConfig,
    registry: ModelRegistry,
    args: argparse.Namespace,
) -> int:
    from lwm2m.cli.console import Console

    signals = StopSignals("client", stop_timeout_s=args.stop_timeout)
    signals.install()
    client = LwM2MClient(config, registry=registry)
    _apply_options(client, args)
    await client.start()
    console = Console(client, signals.requested.set)
    interactive = not args.no_console and console.attach()
    if interactive and sys.stdin.isatty():
        console.say(f"{config.endpoint}: type 'help' for commands")
    try:
        await signals.requested.wait()
    finally:
        console.detach()
        registered = int(client.registered_anywhere())
        confirmed = await client.stop(timeout_s=args.stop_timeout)
    return _stopped(int(confirmed and registered == 1), registered, 1)


async def _run_many(
    config: ClientConfig,
    registry: ModelRegistry,
    args: argparse.Namespace,
) -> int:
    from lwm2m.client.simulator import Simulator

    signals = StopSignals("client")
    signals.install()
    simulator = Simulator(
        config,
        args.count,
        registry=registry,
        rate_per_s=args.rate,
        customize=lambda c: _apply_options(c, args),
    )
    progress = asyncio.ensure_future(report_progress(simulator, signals.requested))
    starting = asyncio.ensure_future(simulator.start())
    await signals.requested.wait()
    await cancel_and_wait([starting])
    await progress
    print(simulator.summary().line(), file=sys.stderr)
    print(
        f"de-registering (at most {args.stop_timeout:g} s without an answer) ...", file=sys.stderr
    )
    await simulator.stop(timeout_s=args.stop_timeout, release=False)
    status = _stopped(simulator.deregistered(), simulator.registered_at_stop(), args.count)
    # Simulated devices keep no state (--state is refused with --count), so nothing is
    # left to save: the process leaves now and the OS closes the fleet's sockets. An
    # orderly close of every device and the interpreter's final collection would cost
    # seconds at 10,000 devices, past the stop's deadline.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


async def report_progress(
    simulator: Simulator, stop: asyncio.Event, out: TextIO = sys.stderr, interval_s: float = 1.0
) -> None:
    """A live summary line (rewritten in place on a terminal, one line per 10 s otherwise)."""
    tty = out.isatty()
    last_plain = 0.0
    while not stop.is_set():
        line = simulator.summary().line()
        if tty:
            out.write("\r\x1b[K" + line)
            out.flush()
        elif time.monotonic() - last_plain >= 10.0:
            out.write(line + "\n")
            out.flush()
            last_plain = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    if tty:
        out.write("\n")
