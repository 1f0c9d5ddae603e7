"""Fixtures of the bootstrap tests (helpers live in uniquely named modules)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest

sys.path.insert(0, str(FsPath(__file__).parent))

from bs_rawpeer import RawPeer, open_raw_peer


@pytest.fixture
async def raw_peer() -> AsyncIterator[RawPeer]:
    peer = await open_raw_peer()
    yield peer
    peer.close()
