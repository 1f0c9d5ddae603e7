"""GET /api/clients paging, search, filters and sort, and GET /api/stats, against a real server."""

from __future__ import annotations

import asyncio
import time

import pytest
from web_fakes import Live

from lwm2m.stores.records import Registration

NOW = time.time()


async def fill(live: Live, n: int) -> None:
    """Registrations straight into the server's store: fast, and what a restart would load."""
    for i in range(n):
        await live.server.stores.registrations.add(
            Registration(
                id=f"r{i}",
                endpoint=f"dev-{i:04d}",
                address=(f"10.0.{i % 4}.{i % 250}", 5683),
                lifetime_s=86400 + i,  # none expires during the test
                registered_at=NOW - i * 10,
                updated_at=NOW - i % 300 * 5,
                lwm2m_version="1.1" if i % 2 else "1.0",
                binding="UQ" if i % 3 == 0 else "U",
                queue_mode=i % 3 == 0,
            )
        )


async def test_without_parameters_the_answer_stays_leshans_array(live: Live) -> None:
    await fill(live, 5)
    answer = (await live.http.get("/api/clients")).json()
    assert [c["endpoint"] for c in answer] == [f"dev-{i:04d}" for i in range(5)]


async def test_pages_search_filters_and_sort(live: Live) -> None:
    await fill(live, 300)
    page = (await live.http.get("/api/clients", params={"limit": 10, "offset": 20})).json()
    assert (page["total"], page["offset"], page["limit"]) == (300, 20, 10)
    assert [c["endpoint"] for c in page["items"]] == [f"dev-{i:04d}" for i in range(20, 30)]
    found = (await live.http.get("/api/clients", params={"q": "DEV-012"})).json()
    assert found["total"] == 10
    by_address = (
        await live.http.get("/api/clients", params={"q": "10.0.3.", "limit": 1000})
    ).json()
    assert {c["address"].split(":")[0].rsplit(".", 1)[0] for c in by_address["items"]} == {"10.0.3"}
    assert by_address["total"] == 75
    uq = (await live.http.get("/api/clients", params={"binding": "UQ", "lwm2m": "1.0"})).json()
    assert uq["total"] == 50 and all(c["bindingMode"] == "UQ" for c in uq["items"])
    queued = (await live.http.get("/api/clients", params={"queuemode": "true", "limit": 0})).json()
    assert (queued["total"], queued["items"]) == (100, [])
    # Registered from a restart's point of view: nothing heard yet, so every queue-mode client sleeps.
    asleep = (await live.http.get("/api/clients", params={"sleeping": "true"})).json()
    assert asleep["total"] == 100 and all(c["sleeping"] for c in asleep["items"])
    awake = (await live.http.get("/api/clients", params={"sleeping": "false", "limit": 0})).json()
    assert awake["total"] == 200
    plain = (await live.http.get("/api/clients", params={"secure": "false", "limit": 0})).json()
    assert plain["total"] == 300
    recent = (
        await live.http.get("/api/clients", params={"registeredAfter": NOW - 95, "limit": 50})
    ).json()
    assert recent["total"] == 10
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 100.5))
    older = (await live.http.get("/api/clients", params={"updatedBefore": iso, "limit": 0})).json()
    assert older["total"] == 300 - 21
    newest = (await live.http.get("/api/clients", params={"sort": "-lifetime", "limit": 2})).json()
    assert [c["endpoint"] for c in newest["items"]] == ["dev-0299", "dev-0298"]
    oldest = (
        await live.http.get("/api/clients", params={"sort": "registrationDate", "limit": 1})
    ).json()
    assert oldest["items"][0]["endpoint"] == "dev-0299"
    last = (await live.http.get("/api/clients", params={"sort": "-endpoint", "offset": 299})).json()
    assert [c["endpoint"] for c in last["items"]] == ["dev-0000"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "-1"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-5"}, "offset"),
        ({"sort": "bogus"}, "sort"),
        ({"sort": "-"}, "sort"),
        ({"registeredAfter": "yesterday"}, "registeredAfter"),
        ({"updatedBefore": "2026-13-45T99:00:00"}, "updatedBefore"),
        ({"registeredBefore": "nan"}, "registeredBefore"),
        ({"queuemode": "maybe"}, "queuemode"),
        ({"sleeping": ""}, "sleeping"),
        ({"secure": "2"}, "secure"),
        ({"binding": ""}, "binding"),
        ({"q": "a\nb"}, "q"),
        ({"q": "x" * 201}, "q"),
    ],
)
async def test_bad_parameters_are_a_clear_400(
    live: Live, params: dict[str, str], named: str
) -> None:
    response = await live.http.get("/api/clients", params=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]


async def test_stats_count_the_fleet(live: Live) -> None:
    await fill(live, 90)
    stats = (await live.http.get("/api/stats")).json()
    assert stats["registrations"] == 90
    assert stats["bindings"] == {"U": 60, "UQ": 30}
    assert stats["lwm2mVersions"] == {"1.0": 45, "1.1": 45}
    assert stats["states"] == {"awake": 60, "sleeping": 30, "queueMode": 30, "secure": 0}
    minutes = stats["registrationsPerMinute"]
    assert len(minutes) == 60 and sum(m["count"] for m in minutes) == 90
    assert stats["refusalsTotal"] == 0
    assert len(stats["refusalsPerMinute"]) == 60
    # A real client claiming a name another address holds is refused (4.09).
    await live.add_client("dev-0001")
    async with asyncio.timeout(20):
        while (await live.http.get("/api/stats")).json()["refusalsTotal"] == 0:
            await asyncio.sleep(0.05)  # polling an HTTP answer: no event to await here
    after = (await live.http.get("/api/stats")).json()
    assert after["registrations"] == 90
    assert 1 <= sum(m["count"] for m in after["refusalsPerMinute"]) <= after["refusalsTotal"]
