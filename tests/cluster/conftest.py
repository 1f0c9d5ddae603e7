"""One cluster for the whole module: Redis (AOF), nginx (UDP stream), three nodes, 300 devices.

Starting it costs seconds, so the tests of tests/cluster/ share it and run in
file order; the destructive ones (a node killed, everything restarted, the
fleet killed) come last and leave a state the next one can start from.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_helpers import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
