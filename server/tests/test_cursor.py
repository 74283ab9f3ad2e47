"""The cursor under concurrency.

The cursor trap of DESIGN section 4: if a push transaction could commit a lower cursor after another one
committed a higher cursor that a puller already read past, that puller would skip the lower one forever. The
server closes it by serialising the transactions that draw cursors (see docs/protocol.md). Two tests: that a push
waits for the push transaction in flight (on both databases; deterministic), and a property test on PostgreSQL
with several real server processes, concurrent pushers from distinct devices, and pullers paging with small
limits: at the end every puller holds every op exactly once.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from caresync.core.ops import FORMAT_VERSION
from sqlalchemy import text

from caresync_server.settings import Settings
from caresync_server.storage import Storage
from caresync_server.testing import ServerProcess
from support import GRID, START_MS, ReplicaFactory, Server, own_ops, postgres_schema, replica

SERVERS = 3
PULLERS = 4
#: (devices, ops each, batch sizes, pause between batches in seconds). Large batches keep the cursors they drew
#: uncommitted the longest; small ones, pushed often, are the commits that could land in front of them.
PUSHERS = [
    (5, 900, (100, 300), (0.1, 0.5)),
    (6, 120, (1, 4), (0.0, 0.005)),
]


@contextmanager
def _push_in_flight(server: Server) -> Iterator[None]:
    """Holds what a push transaction holds from before it draws cursors until it commits."""
    if server.settings.dialect == "postgresql":
        with server.storage.engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": server.storage.ops_lock_key})
            yield
        return
    path = server.settings.database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_push_waits_for_the_push_in_flight_and_pulls_do_not(server: Server, make_replica: ReplicaFactory) -> None:
    device = make_replica("station")
    token, reader = server.enroll("station"), server.enroll("reader")
    device.tickets.submit(title="Leak", kind="repair", grid=GRID)
    server.pull(reader, "a" * 16)  # bound, its health just recorded: its next pulls only read
    answers: list[int] = []
    pusher = threading.Thread(target=lambda: answers.append(server.push(token, device.id, own_ops(device)).status_code))
    with _push_in_flight(server):
        pusher.start()
        pusher.join(0.5)
        assert pusher.is_alive(), "a push drew cursors while another push transaction was in flight"
        assert server.pull(reader, "a" * 16)["ops"] == []  # readers are not held up
    pusher.join(30)
    assert answers == [200]
    assert len(server.pull(reader, "a" * 16)["ops"]) == 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Settings, list[str]]]:
    with postgres_schema() as settings:
        storage = Storage(settings)
        storage.ensure_schema(create=True)
        storage.close()
        servers = [
            ServerProcess(settings.database_url, tmp_path, database_schema=settings.database_schema)
            for _ in range(SERVERS)
        ]
        try:
            for server in servers:
                server.start()
            yield settings, [s.url for s in servers]
        finally:
            for server in servers:
                server.stop()


def _device_ops(tmp_path: Path, name: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """A device's day of work: requests and edits, as the library makes them."""
    device = replica(tmp_path, name)
    with device.batch():
        tickets: list[str] = []
        while device.op_count() < count:
            if not tickets or rng.random() < 0.3:
                tickets.append(device.tickets.submit(title=f"{name} request", kind="repair", grid=GRID).id)
            else:
                device.tickets.edit(rng.choice(tickets), title=f"{name} edit {rng.random():.6f}")
    ops = own_ops(device)
    device.close()
    return ops


@pytest.mark.slow
def test_every_puller_gets_every_op_exactly_once(cluster: tuple[Settings, list[str]], tmp_path: Path) -> None:
    settings, urls = cluster
    rng = random.Random(7)
    storage = Storage(settings)
    pushers = []
    for devices, count, sizes, pauses in PUSHERS:
        for _ in range(devices):
            name = f"pusher-{len(pushers)}"
            _, token = storage.enroll(name, "station", [""])
            pushers.append((token, _device_ops(tmp_path, name, count, rng), sizes, pauses))
    pullers = [storage.enroll(f"puller-{i}", "admin", [""])[1] for i in range(PULLERS)]
    storage.close()
    expected = {(op["origin"], op["seq"]) for _, ops, _, _ in pushers for op in ops}
    pushing = threading.Event()
    pushing.set()
    failures: list[str] = []

    def push(
        token: str, ops: list[dict[str, Any]], sizes: tuple[int, int], pauses: tuple[float, float], seed: int
    ) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=60) as client:
            done = 0
            while done < len(ops):
                time.sleep(rng.uniform(*pauses))
                batch = ops[done : done + rng.randint(*sizes)]
                envelope = {"replica": batch[0]["origin"], "time_ms": START_MS, "ops": batch}
                answer = client.post(
                    rng.choice(urls) + "/v1/push", json=envelope, headers={"Authorization": f"Bearer {token}"}
                )
                if answer.status_code != 200 or answer.json()["stored"] != len(batch):
                    failures.append(f"push: {answer.status_code} {answer.text[:300]}")
                    return
                done += len(batch)

    def pull(token: str, replica_id: str, seed: int, got: list[tuple[str, int]]) -> None:
        rng = random.Random(seed)
        cursor = ""
        with httpx.Client(timeout=60) as client:
            while True:
                still_pushing = pushing.is_set()  # read before pulling: a drain after the last push sees it all
                body = {
                    "replica": replica_id,
                    "cursor": cursor,
                    "limit": rng.randint(1, 50),
                    "time_ms": START_MS,
                    "format": FORMAT_VERSION,
                }
                answer = client.post(
                    rng.choice(urls) + "/v1/pull", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                if answer.status_code != 200:
                    failures.append(f"pull: {answer.status_code} {answer.text[:300]}")
                    return
                page = answer.json()
                got.extend((op["origin"], op["seq"]) for op in page["ops"])
                cursor = page["cursor"]
                if not still_pushing and not page["more"]:
                    return

    pulled: list[list[tuple[str, int]]] = [[] for _ in range(PULLERS)]
    pull_threads = [
        threading.Thread(target=pull, args=(token, f"{i + 1:016x}", i, pulled[i])) for i, token in enumerate(pullers)
    ]
    push_threads = [threading.Thread(target=push, args=(*pusher, 100 + i)) for i, pusher in enumerate(pushers)]
    for thread in pull_threads + push_threads:
        thread.start()
    for thread in push_threads:
        thread.join()
    pushing.clear()
    for thread in pull_threads:
        thread.join()

    assert failures == []
    for got in pulled:
        assert len(got) == len(set(got)), "an op was pulled twice"
        missing = expected - set(got)
        assert not missing, f"{len(missing)} of {len(expected)} ops were skipped by a puller"
