"""Encode/decode rates of every structured LwM2M format, next to raw cbor2/json.

    python bench/formats.py [--repeat N]

Two payloads: the Device object instance (/3/0, the TS example values) and a
Temperature object with 100 instances (/3303). For each format the table
shows operations per second (median of the repeats) for encode and decode,
and the raw baseline: ``json`` for the JSON formats and ``cbor2`` for the
CBOR formats and TLV, dumping/loading the same payload as plain Python data
(what the codec must produce or consume before validation and typing).
The ratio is our time divided by the baseline's. Timing only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import statistics
import timeit
from collections.abc import Callable

import cbor2

from lwm2m.formats import registry
from lwm2m.formats.media import ContentFormat as CF
from lwm2m.model.core_objects import DEFAULT_OBJECTS
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ResourceType as T

MODEL = ModelRegistry(DEFAULT_OBJECTS)

DEVICE = ObjectInstance.of(
    0,
    [
        Resource.single(0, "Open Mobile Alliance", T.STRING),
        Resource.single(1, "Lightweight M2M Client", T.STRING),
        Resource.single(2, "345000123", T.STRING),
        Resource.single(3, "1.0", T.STRING),
        Resource.multiple(6, {0: 1, 1: 5}, T.INTEGER),
        Resource.multiple(7, {0: 3800, 1: 5000}, T.INTEGER),
        Resource.multiple(8, {0: 125, 1: 900}, T.INTEGER),
        Resource.single(9, 100, T.INTEGER),
        Resource.single(10, 15, T.INTEGER),
        Resource.multiple(11, {0: 0}, T.INTEGER),
        Resource.single(13, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), T.TIME),
        Resource.single(14, "+02:00", T.STRING),
        Resource.single(16, "U", T.STRING),
    ],
)

TEMPERATURES = LwM2MObject.of(
    3303,
    [
        ObjectInstance.of(
            i,
            [
                Resource.single(5700, 20.0 + i / 8, T.FLOAT),
                Resource.single(5701, "Cel", T.STRING),
                Resource.single(5601, -10.5, T.FLOAT),
            ],
        )
        for i in range(100)
    ],
)

FORMATS = [CF.LWM2M_TLV, CF.LWM2M_JSON, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR]


def _median_rate(func: Callable[[], object], repeat: int) -> float:
    """Median operations per second over ``repeat`` runs of an auto-sized loop."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    times = timer.repeat(repeat=repeat, number=number)
    return number / statistics.median(times)


def _baseline(
    fmt: CF, node: Node, path: Path, payload: bytes
) -> tuple[str, Callable[[], object], Callable[[], object]]:
    if fmt in (CF.LWM2M_JSON, CF.SENML_JSON):
        data = json.loads(payload)
        return "json", lambda: json.dumps(data, separators=(",", ":")), lambda: json.loads(payload)
    if fmt is CF.LWM2M_TLV:
        # no TLV library to compare with: cbor2 on the equivalent LwM2M CBOR payload
        payload = registry.encode(node, path, CF.LWM2M_CBOR, MODEL)
    data = cbor2.loads(payload)
    return "cbor2", lambda: cbor2.dumps(data), lambda: cbor2.loads(payload)


def bench(name: str, node: Node, path: Path, repeat: int) -> None:
    print(f"\n{name} ({path})")
    header = (
        f"{'format':<12} {'bytes':>6} {'encode/s':>10} {'decode/s':>10} "
        f"{'raw':>6} {'raw enc/s':>10} {'raw dec/s':>10} {'enc x':>6} {'dec x':>6}"
    )
    print(header)
    print("-" * len(header))
    for fmt in FORMATS:
        payload = registry.encode(node, path, fmt, MODEL)
        assert registry.decode(payload, path, fmt, MODEL) == node
        enc = _median_rate(functools.partial(registry.encode, node, path, fmt, MODEL), repeat)
        dec = _median_rate(functools.partial(registry.decode, payload, path, fmt, MODEL), repeat)
        raw_name, raw_enc_f, raw_dec_f = _baseline(fmt, node, path, payload)
        raw_enc = _median_rate(raw_enc_f, repeat)
        raw_dec = _median_rate(raw_dec_f, repeat)
        print(
            f"{fmt.name:<12} {len(payload):>6} {enc:>10,.0f} {dec:>10,.0f} "
            f"{raw_name:>6} {raw_enc:>10,.0f} {raw_dec:>10,.0f} "
            f"{raw_enc / enc:>6.1f} {raw_dec / dec:>6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per figure (median)")
    args = parser.parse_args()
    print("rates are operations per second, median of", args.repeat, "runs;")
    print("'enc x'/'dec x' = how many times slower than the raw library on the same data")
    bench("Device object instance", DEVICE, Path(3, 0), args.repeat)
    bench("Temperature object, 100 instances", TEMPERATURES, Path(3303), args.repeat)


if __name__ == "__main__":
    main()
