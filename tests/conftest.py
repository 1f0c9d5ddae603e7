"""Fixtures shared by the test packages: a real redis-server for the Redis store and the cluster."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from redis_helpers import RedisServer


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running :class:`RedisServer`; skipped when the binary or redis-py is absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="redis-py is not installed (pip install 'lwm2m[redis]')")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a private redis-server (see :class:`RedisServer`)."""
    return redis_server.url
