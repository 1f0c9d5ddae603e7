"""What the SQLite store tests share."""

from __future__ import annotations

from pathlib import Path

from lwm2m.stores import open_stores


async def stored_endpoints(path: Path) -> list[str]:
    """The endpoints of the registrations the SQLite file holds, opened afresh, sorted."""
    reopened = await open_stores("sqlite", path)
    try:
        return sorted(r.endpoint for r in reopened.registrations.list())
    finally:
        await reopened.close()
