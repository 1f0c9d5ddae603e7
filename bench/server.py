"""Benchmark of the LwM2M server's registration hot path (a re-registration storm).

    python bench/server.py [--seconds 5] [--store sqlite] [--million 1000000]

The load comes from ``bench/loadgen.c`` (compiled here with ``cc``): a Python
generator on the same cores would measure itself. It keeps ``--inflight``
CON requests outstanding over ``--endpoints`` distinct names and runs three
phases: Register (cycling over the names, so after the first round every
Register replaces a live registration), Update of every held location,
De-register of every held location.

Printed, each figure the median of ``--rounds``:

1. the generator's own ceiling against a trivial responder (loadgen.c itself);
2. plain CON GETs/s answered by our CoAP engine with a trivial handler;
3. Register/s, Update/s, De-register/s of ``lwm2m server`` (the real command,
   default INFO logging) on each ``--store``, p50/p99 latency, and the ratio
   Register/s / engine GET/s measured in the same run (the headline: it moves
   less with the machine than absolute rates), and the CPUs other processes
   took meanwhile (on a busy machine the durable Register, whose writer process
   needs half a CPU besides the loop, loses more than a GET);
4. with ``--million N``: N registrations with distinct payloads written to a
   SQLite file, the server's start-up time on it, its RSS per registration,
   Register latency while it holds them.

Figures are printed; nothing is asserted (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
Phases = dict[str, dict[str, float]]


def machine_line() -> str:
    """Python, cores and load average: what every bench prints first."""
    load = os.getloadavg()
    return (
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def machine_cpu_s() -> float | None:
    """CPU seconds the whole machine spent busy so far, stolen time included (Linux's
    /proc/stat); None elsewhere."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process's children that ended and were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class OthersCpu:
    """The CPUs that processes other than the measured ones took during a phase.

    The figures of this machine move with what else runs on it: the durable
    Register, whose writer process needs half a CPU besides the loop, loses
    more to a busy machine than a plain GET does. Printed next to the
    figures so that a run on a busy machine is seen as one.
    """

    def __init__(self) -> None:
        self.taken: list[float] = []

    def measure(self, ours: Callable[[], float], phase: Callable[[], T]) -> tuple[T, float]:
        """Run ``phase``; its result and the CPU seconds the process under test spent in it
        (``ours()``: that process's CPU seconds so far)."""
        machine, own, children = machine_cpu_s(), ours(), children_cpu_s()
        started = time.perf_counter()
        result = phase()
        wall = time.perf_counter() - started
        machine_after = machine_cpu_s()
        own_spent = ours() - own
        if machine is not None and machine_after is not None:
            spent = own_spent + (children_cpu_s() - children)
            self.taken.append(max(0.0, (machine_after - machine - spent) / wall))
        return result, own_spent

    def summary(self) -> str:
        """The median over the rounds and the most of one round: one busy round moves the
        median of the ratios less than it moves that round."""
        if not self.taken:
            return "?"
        return f"{statistics.median(self.taken):.2f} (at most {max(self.taken):.2f})"


#: Source ports of the open loop: a request of each every 20 ms at 12,800/s.
OPEN_SOCKETS = 256


def build_loadgen(workdir: Path) -> Path | None:
    """Compile loadgen.c; None (and says why) when there is no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        print("no C compiler (cc): the load generator bench/loadgen.c cannot run")
        return None
    out = workdir / "loadgen"
    subprocess.run([cc, "-O2", "-o", str(out), str(HERE / "loadgen.c")], check=True)
    return out


def wait_coap(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120.0
) -> float:
    """Seconds until a CON GET on ``port`` is answered (any code)."""
    start = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        mid = 1
        while time.perf_counter() - start < timeout:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
            mid += 1
            s.sendto(
                bytes((0x40, 0x01, mid >> 8 & 255, mid & 255, 0xB4)) + b"ping", ("127.0.0.1", port)
            )
            try:
                data = s.recv(1500)
            except TimeoutError:
                continue
            # Any of our MIDs: a loaded machine may answer later than the 50 ms we wait.
            if len(data) >= 4 and 2 <= int.from_bytes(data[2:4], "big") <= mid:
                return time.perf_counter() - start
    raise TimeoutError(f"nothing answers on port {port}")


def run_loadgen(
    loadgen: Path,
    mode: str,
    port: int,
    seconds: float,
    endpoints: int,
    inflight: int,
    prefix: str,
    *,
    sticky: bool = False,
    rate: float | None = None,
) -> Phases:
    """``sticky``: each name always from one lane (source port), as a real device.
    ``rate``: the requests a second of the ``open`` mode."""
    done = subprocess.run(
        [
            str(loadgen),
            mode,
            "127.0.0.1",
            str(port),
            str(seconds),
            str(endpoints),
            str(inflight),
            prefix,
            *(["sticky"] if sticky else []),
            *([] if rate is None else [str(rate)]),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    if done.stderr:  # the first unexpected answers, e.g. "deregister: answer 4.04"
        print(f"  loadgen ({mode}): {' | '.join(done.stderr.splitlines()[:5])}")
    out = done.stdout
    phases: Phases = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split())
        name = fields.pop("phase")
        phases[name] = {k: float(v) for k, v in fields.items()}
    return phases


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (the SQLite writer
    process): per request, a figure the shared load moves less."""
    return _with_children(pid, _own_cpu_s)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its live children (the SQLite writer process)."""
    return _with_children(pid, _own_rss_mb)


def _own_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _with_children(pid: int, figure: Callable[[int], float]) -> float:
    """``figure`` of ``pid`` plus that of each live descendant (one gone meanwhile counts 0)."""
    total = figure(pid)
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ValueError):
        kids = []
    for kid in kids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += _with_children(kid, figure)
    return total


ENGINE = """
import asyncio
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.loop import install_best_event_loop
from lwm2m.coap.message import Message
response = Message(Code.CONTENT, payload=b"hello", content_format=0)
async def handler(request):
    return response
async def main():
    endpoint = await Endpoint.create("127.0.0.1", 0, handler=handler)
    print(endpoint.local_address[1], flush=True)
    await asyncio.Event().wait()
install_best_event_loop()
asyncio.run(main())
"""


#: Every process the bench started: whatever fails, none of them outlives it (main()).
_children: list[subprocess.Popen[Any]] = []


def spawn(cmd: list[str], **options: Any) -> subprocess.Popen[Any]:
    proc: subprocess.Popen[Any] = subprocess.Popen(cmd, **options)
    _children.append(proc)
    return proc


def kill_children() -> None:
    for proc in _children:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _children.clear()


def start_server(store: str, data: Path, log_level: str) -> tuple[subprocess.Popen[bytes], int]:
    """The real command on a port it picks itself (a port picked here could be taken meanwhile
    by another process on a shared machine), read back from its log."""
    cmd = [sys.executable, "-m", "lwm2m", "--log-level", log_level, "server", "--store", store]
    cmd += ["--data", str(data), "--coap-port", "0", "--coaps-port", "0", "--http-port", "0"]
    cmd += ["--no-bootstrap"]
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        found = re.search(
            r"listening on coap://127\.0\.0\.1:(\d+)", (data / "server.log").read_text()
        )
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the server did not start: {(data / 'server.log').read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median(rounds: list[Phases], phase: str, key: str) -> float:
    return statistics.median(r[phase][key] for r in rounds if phase in r)


def fill_sqlite(path: Path, count: int) -> None:
    """``count`` registrations with distinct payloads, written as the server writes them."""
    import sqlite3

    from lwm2m.server.object_links import decode_links_payload
    from lwm2m.stores.codec import registration_row
    from lwm2m.stores.records import ObjectLinks, RegisteredObject, Registration
    from lwm2m.stores.sqlite import migrate_registrations
    from lwm2m.stores.sqlite_schema import REGISTRATION_UPSERT, SCHEMA

    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    migrate_registrations(conn)
    now = time.time()
    batch = []
    base = decode_links_payload(b'</>;rt="oma.lwm2m",</1/0>,</3/0>,</4/0>,</5/0>').objects
    for n in range(count):
        # Distinct per device (an instance of object 3303 numbered after it), as
        # decode_links_payload would read it; built directly, so that filling is fast.
        vendor = 30000 + n % 997
        payload = f'</>;rt="oma.lwm2m",</1/0>,</3/0>,</4/0>,</5/0>,</3303/{n}>,</{vendor}/0>'
        objects = (*base, RegisteredObject(3303, None, (n,)), RegisteredObject(vendor, None, (0,)))
        links = ObjectLinks(text=payload, objects=objects)
        reg = Registration(
            id=f"{n:010x}",
            endpoint=f"urn:dev:{n:08d}",
            address=(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 5683),
            lifetime_s=86400,
            registered_at=now,
            updated_at=now,
            lwm2m_version="1.1",
            links=links,
        )
        batch.append(registration_row(reg))
        if len(batch) == 50_000:
            conn.executemany(REGISTRATION_UPSERT, batch)
            conn.commit()
            batch.clear()
    conn.executemany(REGISTRATION_UPSERT, batch)
    conn.commit()
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", action="append", help="sqlite and/or memory (default: both)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--log-level", default="INFO", help="of the server under test")
    parser.add_argument("--million", type=int, default=0, help="registrations for the hold test")
    parser.add_argument("--hold-only", action="store_true", help="only the --million test")
    parser.add_argument(
        "--open-rate",
        type=float,
        default=0.0,
        help="after each storm, Registers at this rate a second whatever the answers (an open "
        "loop: its tail shows the server's pauses, which the storm's closed loop hides); 0: none",
    )
    args = parser.parse_args()
    if not 0 <= args.open_rate < math.inf:  # NaN too
        parser.error(f"--open-rate must be 0 (none) or requests a second, not {args.open_rate}")
    if args.million < 0 or (args.hold_only and args.million == 0):
        parser.error("--hold-only needs --million N with N > 0 (the registrations to hold)")
    stores = args.store or ["sqlite", "memory"]
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        loadgen = build_loadgen(tmp)
        if loadgen is None:
            return 1
        gen = (args.endpoints, args.inflight)
        if args.hold_only:
            hold(loadgen, tmp, args)
            return 0

        # 1. the generator's ceiling
        responder = spawn([str(loadgen), "respond", "0"], stdout=subprocess.PIPE, text=True)
        assert responder.stdout is not None
        rport = int(responder.stdout.readline().split("=")[1])
        ceiling = [
            run_loadgen(loadgen, "storm", rport, args.seconds, *gen, "c")
            for _ in range(args.rounds)
        ]
        ceiling_get = [
            run_loadgen(loadgen, "get", rport, args.seconds, *gen, "c") for _ in range(args.rounds)
        ]
        responder.kill()
        responder.wait()
        print(
            f"loadgen ceiling (trivial C responder): Register {median(ceiling, 'register', 'rate'):,.0f}/s, "
            f"Update {median(ceiling, 'update', 'rate'):,.0f}/s, "
            f"De-register {median(ceiling, 'deregister', 'rate'):,.0f}/s, "
            f"GET {median(ceiling_get, 'get', 'rate'):,.0f}/s"
        )

        for store in stores:
            results: list[Phases] = []
            engine_rates: list[float] = []
            engine_cpu: list[float] = []
            others_get, others_storm = OthersCpu(), OthersCpu()
            for r in range(args.rounds):
                # 2. our engine, plain CON GET, then 3. the server: one after the other, per round
                engine = spawn([sys.executable, "-c", ENGINE], stdout=subprocess.PIPE)
                assert engine.stdout is not None
                eport = int(engine.stdout.readline())
                wait_coap(eport, engine)
                phases, engine_spent = others_get.measure(
                    partial(cpu_s, engine.pid),
                    partial(run_loadgen, loadgen, "get", eport, args.seconds, *gen, "g"),
                )
                got = phases["get"]
                engine_cpu.append(engine_spent / got["ok"] * 1e6)
                engine_rates.append(got["rate"])
                stop(engine)
                data = tmp / f"{store}-{r}"
                data.mkdir()
                server, port = start_server(store, data, args.log_level)
                try:
                    wait_coap(port, server)
                except (TimeoutError, RuntimeError):
                    print((data / "server.log").read_text()[-2000:])
                    raise
                phases, server_spent = others_storm.measure(
                    partial(cpu_s, server.pid),
                    partial(run_loadgen, loadgen, "storm", port, args.seconds, *gen, f"s{r}"),
                )
                served = sum(phases[p]["ok"] for p in ("register", "update", "deregister"))
                phases["rss"] = {"mb": rss_mb(server.pid)}
                phases["cpu"] = {"us": server_spent / served * 1e6}
                if args.open_rate > 0:
                    phases |= run_loadgen(
                        loadgen, "open", port, args.seconds, args.endpoints, OPEN_SOCKETS,
                        f"o{r}", rate=args.open_rate,
                    )  # fmt: skip
                stop(server)
                results.append(phases)
            get_rate = statistics.median(engine_rates)
            reg = median(results, "register", "rate")
            ratios = [
                res["register"]["rate"] / g for res, g in zip(results, engine_rates, strict=True)
            ]
            print(
                f"engine: plain CON GET {get_rate:,.0f}/s, "
                f"{statistics.median(engine_cpu):.0f} us CPU per request (median of {args.rounds})"
            )
            for phase, label in (
                ("register", "Register"),
                ("update", "Update"),
                ("deregister", "De-register"),
            ):
                print(
                    f"{store}: {label} {median(results, phase, 'rate'):,.0f}/s "
                    f"p50 {median(results, phase, 'p50_us') / 1000:.1f} ms "
                    f"p99 {median(results, phase, 'p99_us') / 1000:.1f} ms "
                    f"(errors {sum(x[phase]['errors'] for x in results):.0f}, "
                    f"retransmits {sum(x[phase]['retransmits'] for x in results):.0f})"
                )
            if args.open_rate > 0:
                print(
                    f"{store}: open loop, Register at {args.open_rate:,.0f}/s after the storm: "
                    f"p50 {median(results, 'open', 'p50_us') / 1000:.1f} ms "
                    f"p99 {median(results, 'open', 'p99_us') / 1000:.1f} ms "
                    f"max {median(results, 'open', 'max_us') / 1000:.1f} ms (medians; "
                    f"lost {sum(x['open']['lost'] for x in results):.0f} of "
                    f"{sum(x['open']['sent'] for x in results):.0f})"
                )
            print(
                f"{store}: ratio Register/engine GET {statistics.median(ratios):.2f} "
                f"(Register {reg:,.0f}/s; rounds {', '.join(f'{x:.2f}' for x in ratios)}); "
                f"server RSS {median(results, 'rss', 'mb'):.0f} MB"
            )
            print(
                f"{store}: {median(results, 'cpu', 'us'):.0f} us server CPU per request "
                f"(Register, Update, De-register together); CPU ratio engine GET/registration "
                f"{statistics.median(engine_cpu) / median(results, 'cpu', 'us'):.2f}"
            )
            print(
                f"{store}: CPUs taken by other processes meanwhile, median of the rounds: "
                f"{others_get.summary()} while the engine ran, {others_storm.summary()} during "
                f"the storm, of {os.cpu_count()} (a busy machine lowers the ratio)"
            )

        if args.million:
            hold(loadgen, tmp, args)
    return 0


def hold(loadgen: Path, tmp: Path, args: argparse.Namespace) -> None:
    """N registrations in a SQLite file: start-up time, RSS per registration, latency."""
    empty = tmp / "empty"
    empty.mkdir()
    server, port = start_server("sqlite", empty, args.log_level)
    wait_coap(port)
    base = rss_mb(server.pid)
    stop(server)

    data = tmp / "million"
    data.mkdir()
    start = time.perf_counter()
    fill_sqlite(data / "lwm2m.sqlite3", args.million)
    print(f"hold: wrote {args.million:,} registrations in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    server, port = start_server("sqlite", data, args.log_level)
    first = wait_coap(port, server, timeout=600)
    wait_loaded(data / "server.log", server, timeout=900)
    elapsed = time.perf_counter() - start
    rss = rss_mb(server.pid)
    per = (rss - base) * 1024 * 1024 / args.million
    print(
        f"hold: restart with {args.million:,}: answers after {first:.1f} s, all loaded after "
        f"{elapsed:.1f} s; RSS {rss:,.0f} MB ({base:.0f} MB empty) = {per:,.0f} bytes per registration"
    )
    phases = run_loadgen(loadgen, "storm", port, args.seconds, args.endpoints, args.inflight, "h")
    rss = rss_mb(server.pid)
    stop(server)
    report("while holding", args.million, phases)
    print(f"hold: RSS after the storm {rss:,.0f} MB")

    # Again, with the storm while the registrations load.
    (data / "server.log").unlink()
    start = time.perf_counter()
    server, port = start_server("sqlite", data, args.log_level)
    first = wait_coap(port, server, timeout=600)
    phases = run_loadgen(loadgen, "storm", port, args.seconds, args.endpoints, args.inflight, "l")
    wait_loaded(data / "server.log", server, timeout=900)
    elapsed = time.perf_counter() - start
    stop(server)
    report("while loading", args.million, phases)
    print(f"hold: answers after {first:.1f} s, all loaded after {elapsed:.1f} s under the storm")


def report(when: str, count: int, phases: Phases) -> None:
    for phase in ("register", "update", "deregister"):
        p = phases[phase]
        print(
            f"hold: {when} {count:,}: {phase} {p['rate']:,.0f}/s "
            f"p50 {p['p50_us'] / 1000:.1f} ms p99 {p['p99_us'] / 1000:.1f} ms "
            f"(errors {p['errors']:.0f})"
        )


def wait_loaded(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the server logs that the stored registrations are loaded."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if "registrations loaded in" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        time.sleep(0.1)
    raise TimeoutError("registrations not loaded")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_children()
