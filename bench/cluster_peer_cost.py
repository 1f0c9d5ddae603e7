"""What a second cluster node costs: node a under the storm, node b idle but subscribed.

    python bench/cluster_peer_cost.py [--seconds 4] [--rounds 3]

Every node hears every change and event of the cluster, so a node that serves
no device still spends CPU on the others' traffic; that cost is what a second
node adds to the cluster's work per request. Here node a takes the storm of
``bench/loadgen.c`` (sticky lanes, straight to its port, no nginx) while node b
serves nothing; the script prints the CPU that node a, node b and redis-server
(``appendfsync always``) spent per request of node a (medians of the rounds).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import REDIS_PIDS, nodes, redis
from server import build_loadgen, cpu_s, run_loadgen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"a": [], "b": [], "redis": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        loadgen = build_loadgen(tmp)
        if loadgen is None:
            return 1
        for r in range(args.rounds):
            with redis(tmp) as url, nodes(tmp, url, 2) as (a, b):
                pids = {"a": a.proc.pid, "b": b.proc.pid, "redis": REDIS_PIDS[url]}
                before = {k: cpu_s(p) for k, p in pids.items()}
                phases = run_loadgen(
                    loadgen,
                    "storm",
                    a.coap_port,
                    args.seconds,
                    args.endpoints,
                    args.inflight,
                    f"k{r}",
                    sticky=True,
                )
                served = sum(p["ok"] for p in phases.values())
                for key, pid in pids.items():
                    figures[key].append((cpu_s(pid) - before[key]) / served * 1e6)
    cpu_a, cpu_b, cpu_redis = (statistics.median(figures[k]) for k in ("a", "b", "redis"))
    print(
        f"CPU per request of node a: node a {cpu_a:,.0f} us, idle node b {cpu_b:,.0f} us, "
        f"redis-server {cpu_redis:,.0f} us (medians of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
