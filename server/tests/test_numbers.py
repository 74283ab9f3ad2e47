"""Blocks of ticket numbers (``POST /v1/numbers``): short numbers no two devices are ever given, on SQLite and
PostgreSQL, with several server processes' worth of concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from caresync_server.settings import Settings
from caresync_server.storage import Storage
from support import Server


def test_a_device_reserves_a_block_and_the_next_device_gets_the_next(server: Server) -> None:
    desk, phone = server.enroll("desk"), server.enroll("phone", "grid_worker", "changnan")
    first = server.client.post("/v1/numbers", json={"count": 100}, headers={"Authorization": f"Bearer {desk}"})
    second = server.client.post("/v1/numbers", json={}, headers={"Authorization": f"Bearer {phone}"})
    assert (first.status_code, first.json()) == (200, {"start": 1000, "count": 100})
    assert (second.status_code, second.json()) == (200, {"start": 1100, "count": 100})  # 100 by default
    refused = server.client.post("/v1/numbers", json={"count": 5000}, headers={"Authorization": f"Bearer {desk}"})
    anonymous = server.client.post("/v1/numbers", json={"count": 10})
    assert (refused.status_code, anonymous.status_code) == (422, 401)


def test_concurrent_reservations_never_overlap(settings: Settings) -> None:
    storages = [Storage(settings) for _ in range(4)]  # as several server processes would
    try:
        storages[0].ensure_schema(create=True)
        with ThreadPoolExecutor(8) as pool:
            blocks = list(pool.map(lambda i: storages[i % 4].reserve_numbers(7 + i % 3), range(48)))
    finally:
        for storage in storages:
            storage.close()
    numbers = [n for start, count in blocks for n in range(start, start + count)]
    assert len(numbers) == len(set(numbers)) == sum(count for _, count in blocks)
    assert min(numbers) == 1000 and max(numbers) == 1000 + len(numbers) - 1  # no gaps either
