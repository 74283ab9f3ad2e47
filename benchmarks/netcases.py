"""Network sync cases: a real ``caresync-server`` process on loopback, real HTTP, real files and databases.

Rows (bytes counted are the HTTP bodies as sent, i.e. compressed compact batches; headers are not counted):

* ``sync/initial``: the server holds the whole workload (pushed by the source device beforehand, not timed);
  an empty device runs ``replica.sync(url)``: pull, validate, store, fold. ops/s end to end; bytes per op.
* ``sync/incremental``: then the source edits 10 records and syncs; the device syncs again. Seconds for that
  one sync (one push of nothing and one pull: the round trip); bytes per op of the 10 ops pulled.
* ``sync/50_devices_sqlite`` and ``sync/50_devices_postgresql``: 50 devices, each holding 100 ops of its own,
  sync at once (threads in this process; two server processes over one database) and then once more to pull
  what the others pushed: ops moved (pushed + pulled) per second, the server's throughput. The PostgreSQL row
  is skipped when no server answers at 127.0.0.1:5432.
"""

from __future__ import annotations

import random
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cases import Config, Row, _check_copy, _row, _skipped, ensure_source, source_ids

if TYPE_CHECKING:
    import httpx

__all__ = ["many_devices_postgresql", "many_devices_sqlite", "sync_incremental", "sync_initial"]

DEVICES = 50
OPS_PER_DEVICE = 100
INCREMENTAL_OPS = 10
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


class _Counter:
    """Counts the HTTP body bytes a client sends and receives."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0

    def client(self) -> httpx.Client:
        import httpx

        def on_request(request: httpx.Request) -> None:
            self.sent += len(request.content)

        def on_response(response: httpx.Response) -> None:
            response.read()
            self.received += len(response.content)

        return httpx.Client(timeout=120, event_hooks={"request": [on_request], "response": [on_response]})


@contextmanager
def _server(cfg: Config, database_url: str, processes: int = 1) -> Iterator[list[str]]:
    from caresync_server.testing import ServerProcess

    servers = [ServerProcess(database_url, cfg.workdir) for _ in range(processes)]
    try:
        yield [s.start().url for s in servers]
    finally:
        for s in servers:
            s.stop()


def _enroll(database_url: str, name: str) -> str:
    from caresync_server.testing import enroll

    return enroll(database_url, name, role="station", grids=[""])


def _open(path: Path, seal: bool = False, station: bool = False) -> Any:
    from .cases import _open as open_replica

    return open_replica(path, seal, station)


def sync_initial_and_incremental(cfg: Config) -> list[Row]:
    """Both single-device rows share one loaded server."""
    url = f"sqlite:///{cfg.workdir / 'server.db'}"
    src_path = cfg.workdir / "source.db"
    shutil.copy(ensure_source(cfg), src_path)
    plan = cfg.plan()
    with _server(cfg, url) as (base,):
        src_token, dev_token = _enroll(url, "source"), _enroll(url, "device")
        with _open(src_path, cfg.seal) as src, _open(cfg.workdir / "device.db", station=cfg.seal) as dev:
            started = time.perf_counter()
            src.sync(base, token=src_token)
            push_s = time.perf_counter() - started
            counter = _Counter()
            with counter.client() as client:
                started = time.perf_counter()
                result = dev.sync(base, token=dev_token, client=client)
                initial_s = time.perf_counter() - started
            assert result.pulled == plan.ops, f"pulled {result.pulled} of {plan.ops}"
            _check_copy(dev, src, plan)
            initial = _row(
                plan.ops,
                initial_s,
                f"empty device pulls all over loopback (SQLite server); {counter.received / plan.ops:.1f} B/op "
                f"received; the source pushed them in {push_s:.1f} s ({plan.ops / push_s:,.0f} ops/s)",
                counter.received / plan.ops,
            )
            ids = source_ids(src, plan.records)
            rng = random.Random(cfg.seed)
            for i in range(INCREMENTAL_OPS):
                src.tickets.edit(ids[rng.randrange(len(ids))], title=f"Incremental edit {i}: pipe fixed on floor {i}")
            push_counter = _Counter()
            with push_counter.client() as client:
                src.sync(base, token=src_token, client=client)
            counter = _Counter()
            with counter.client() as client:
                started = time.perf_counter()
                result = dev.sync(base, token=dev_token, client=client)
                incremental_s = time.perf_counter() - started
            assert result.pulled == INCREMENTAL_OPS
            assert dev.state_digest() == src.state_digest()
            incremental = _row(
                INCREMENTAL_OPS,
                incremental_s,
                f"one sync of {INCREMENTAL_OPS} new ops: {incremental_s * 1000:.1f} ms round trip (push + pull); "
                f"pull {counter.received / INCREMENTAL_OPS:.1f} B/op, the source's push "
                f"{push_counter.sent / INCREMENTAL_OPS:.1f} B/op",
                counter.received / INCREMENTAL_OPS,
            )
    return [initial, incremental]


def sync_initial(cfg: Config) -> Row:
    """An empty device pulls the whole workload from a real server."""
    return sync_initial_and_incremental(cfg)[0]


def sync_incremental(cfg: Config) -> Row:
    """One sync of 10 new ops, after the initial one."""
    return sync_initial_and_incremental(cfg)[1]


def _many_devices(cfg: Config, database_url: str, label: str) -> Row:
    from caresync import Replica

    paths = [cfg.workdir / f"dev-{i}.db" for i in range(DEVICES)]
    with _server(cfg, database_url, processes=2) as bases:
        tokens = [_enroll(database_url, f"dev-{i}") for i in range(DEVICES)]
        for i, path in enumerate(paths):
            with Replica.open(path, actor=f"worker-{i}") as r, r.batch():
                for j in range(OPS_PER_DEVICE // 2):
                    t = r.tickets.submit(title=f"Request {i}-{j}", kind="repair", grid="changnan/dorm/3")
                    r.tickets.edit(t.id, priority="high")
        moved = [0] * DEVICES
        errors: list[BaseException] = []

        def device(i: int) -> None:
            try:
                with Replica.open(paths[i], actor=f"worker-{i}") as r:
                    for _ in range(2):
                        res = r.sync(bases[i % len(bases)], token=tokens[i])
                        moved[i] += res.pushed + res.pulled
            except BaseException as exc:  # reported in the row, the run goes on
                errors.append(exc)

        threads = [threading.Thread(target=device, args=(i,)) for i in range(DEVICES)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        with Replica.open(paths[0], actor="check") as r:
            assert r.op_count() >= OPS_PER_DEVICE
    total = sum(moved)
    return _row(
        total,
        seconds,
        f"{DEVICES} devices x {OPS_PER_DEVICE} ops, 2 syncs each, at once; 2 server processes on {label}; "
        "ops = pushed + pulled",
    )


def many_devices_sqlite(cfg: Config) -> Row:
    """50 devices against two server processes sharing one SQLite file."""
    return _many_devices(cfg, f"sqlite:///{cfg.workdir / 'many.db'}", "SQLite")


def many_devices_postgresql(cfg: Config) -> Row:
    """50 devices against two server processes sharing one PostgreSQL database."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no driver or no server: the row says so
        return _skipped(f"skipped: PostgreSQL not reachable ({type(exc).__name__})")
    name = f"caresync_bench_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return _many_devices(cfg, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "PostgreSQL")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
