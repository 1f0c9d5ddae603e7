"""``GET /api/cluster`` and the cluster's metrics: the nodes sharing this server's store.

Without a shared store (SQLite, memory) the answer is this node alone, so the web UI
and scripts read one shape either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter

from lwm2m.stores.base import StoreError
from lwm2m.web.backend import ClusterNode, ClusterView
from lwm2m.web.errors import STORE_ERRORS, ApiError
from lwm2m.web.metrics import Gauge
from lwm2m.web.schemas import Cluster, ErrorBody


async def read_nodes(cluster: ClusterView) -> Sequence[ClusterNode]:
    """The registry's nodes; Redis out of reach is a 503, not a 500."""
    try:
        return await cluster.nodes()
    except StoreError as exc:
        raise ApiError(503, f"cluster registry unavailable: {exc}") from None


def cluster_json(cluster: ClusterView, nodes: Sequence[ClusterNode], now: float) -> dict[str, Any]:
    """The :class:`lwm2m.web.schemas.Cluster` shape."""
    return {
        "node": cluster.node_id,
        "shared": cluster.shared,
        "nodes": [
            {
                "id": n.id,
                "alive": n.alive,
                "self": n.id == cluster.node_id,
                "http": n.http,
                "coap": n.coap,
                "started": n.started,
                "heartbeat": n.heartbeat,
                "heartbeatAge": None
                if n.heartbeat is None
                else round(max(0.0, now - n.heartbeat), 3),
                "owned": n.owned,
            }
            for n in nodes
        ],
    }


def cluster_gauges(nodes: Sequence[ClusterNode], now: float) -> list[Gauge]:
    """``lwm2m_cluster_nodes{state}``, ``..._owned_registrations{node}``, ``..._heartbeat_age_seconds{node}``."""
    alive = sum(1 for n in nodes if n.alive)
    return [
        Gauge(
            "lwm2m_cluster_nodes",
            "Server nodes known to the cluster registry, by state.",
            [({"state": "alive"}, alive), ({"state": "gone"}, len(nodes) - alive)],
        ),
        Gauge(
            "lwm2m_cluster_owned_registrations",
            "Registrations each node owns (it received their last Register or Update).",
            [({"node": n.id}, n.owned) for n in nodes if n.owned is not None],
        ),
        Gauge(
            "lwm2m_cluster_heartbeat_age_seconds",
            "Seconds since each node's last heartbeat.",
            [
                ({"node": n.id}, round(max(0.0, now - n.heartbeat), 3))
                for n in nodes
                if n.heartbeat is not None
            ],
        ),
    ]


def build_cluster_router(cluster: ClusterView, clock: Callable[[], float] = time.time) -> APIRouter:
    """``GET /api/cluster``."""
    router = APIRouter(prefix="/api/cluster", tags=["server"])

    @router.get(
        "",
        response_model=Cluster,
        summary="The server nodes sharing this store",
        description="This node's id and every node of the cluster registry, alive or gone, "
        "with its addresses, start time, heartbeat age and the registrations it owns. "
        "Without a shared (Redis) store: this node alone.",
        responses={
            **STORE_ERRORS,
            503: {
                "model": ErrorBody,
                "description": "The cluster registry (Redis) is out of reach.",
            },
        },
    )
    async def cluster_state() -> dict[str, Any]:
        nodes = await read_nodes(cluster)
        return cluster_json(cluster, nodes, clock())

    return router
