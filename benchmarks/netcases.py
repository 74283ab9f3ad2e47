"""Network sync cases: a real ``caresync-server`` process on loopback, real HTTP, real files and databases.

Rows (bytes counted are the HTTP bodies as sent, i.e. compressed compact batches; headers are not counted):

* ``sync/initial``: the server holds the whole workload (pushed by the source device beforehand, not timed);
  an empty device runs ``replica.sync(url)``: pull, validate, store, fold. ops/s end to end; bytes per op.
* ``sync/incremental``: then the source edits 10 records and syncs; the device syncs again. Seconds for that
  one sync (one push of nothing and one pull: the round trip); bytes per op of the 10 ops pulled.
* ``sync/push``: the source device pushes the whole workload to an empty server; ops/s and bytes per op sent.
* ``sync/50_devices_sqlite`` and ``sync/50_devices_postgresql``: 50 devices, each holding 100 ops of its own,
  sync at once (threads in this process; two server processes over one database) and then once more to pull
  what the others pushed: ops moved (pushed + pulled) per second, the server's throughput, and the median and
  99th percentile of one sync and of one request. The PostgreSQL row is skipped when no server answers at
  127.0.0.1:5432.

Rows that run a server add its peak RSS (``VmHWM``) to their notes.
"""

from __future__ import annotations

import random
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cases import Config, Row, _check_copy, _row, _skipped, ensure_source, in_child, percentile, source_ids

if TYPE_CHECKING:
    import httpx
    from caresync_server.testing import ServerProcess

__all__ = [
    "blobs_photos",
    "many_devices_postgresql",
    "many_devices_sqlite",
    "sync_incremental",
    "sync_initial",
    "sync_push",
]

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
def _server(cfg: Config, database_url: str, processes: int = 1) -> Iterator[list[ServerProcess]]:
    from caresync_server.testing import ServerProcess

    servers = [ServerProcess(database_url, cfg.workdir) for _ in range(processes)]
    try:
        yield [s.start() for s in servers]
    finally:
        for s in servers:
            s.stop()


def peak_rss_mib(server: ServerProcess) -> float | None:
    """The peak RSS of a running server process (``VmHWM``), in MiB; None where /proc does not tell."""
    try:
        status = Path(f"/proc/{server.proc.pid if server.proc else 0}/status").read_text()
    except OSError:
        return None
    kib = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(kib[0]) / 1024 if kib else None


def _rss_note(server: ServerProcess) -> str:
    peak = peak_rss_mib(server)
    return "" if peak is None else f"; server peak RSS {peak:.0f} MiB"


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
    with _server(cfg, url) as (server,):
        base = server.url
        src_token, dev_token = _enroll(url, "source"), _enroll(url, "device")
        started = time.perf_counter()
        in_child(push_all, src_path, base, src_token, cfg.seal)  # its memory is not the pull's
        push_s = time.perf_counter() - started
        with _open(src_path, cfg.seal) as src, _open(cfg.workdir / "device.db", station=cfg.seal) as dev:
            counter = _Counter()
            with counter.client() as client:
                started = time.perf_counter()
                result = dev.sync(base, token=dev_token, client=client)
                initial_s = time.perf_counter() - started
            held = src.op_count()  # the workload, and the ticket-number ops its first sync added
            assert result.pulled == held >= plan.ops, f"pulled {result.pulled} of {held}"
            _check_copy(dev, src, plan)
            initial = _row(
                held,
                initial_s,
                f"empty device pulls all over loopback (SQLite server): the workload and {held - plan.ops:,} "
                f"ticket-number ops; {counter.received / held:.1f} B/op received; the source pushed them in "
                f"{push_s:.1f} s{_rss_note(server)}",
                counter.received / held,
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


def push_all(path: Path, url: str, token: str, seal: bool) -> None:
    """The replica at ``path`` pushes everything it holds to the server at ``url``, syncing again until every
    ticket has its short number (a sync numbers as many provisionally numbered tickets as its block of numbers
    allows, 1,000 at most): what the device pushes later is then only new work."""
    with _open(path, seal) as replica:
        while True:
            result = replica.sync(url, token=token)
            assert result.unsent == 0 and not result.refused, result
            if result.pushed == 0 or not replica.device_log.provisional_tickets():  # done, or no progress
                break


def sync_push(cfg: Config) -> Row:
    """The source device pushes the whole workload to an empty server (a real process over SQLite)."""
    url = f"sqlite:///{cfg.workdir / 'server.db'}"
    src_path = cfg.workdir / "source.db"
    shutil.copy(ensure_source(cfg), src_path)
    plan = cfg.plan()
    with _server(cfg, url) as (server,):
        token = _enroll(url, "source")
        with _open(src_path, cfg.seal) as src:
            counter = _Counter()
            with counter.client() as client:
                started = time.perf_counter()
                result = src.sync(server.url, token=token, client=client)
                seconds = time.perf_counter() - started
            pushed = src.op_count()  # the workload, and the ticket-number ops the sync added before pushing
            assert result.pushed == pushed >= plan.ops, f"pushed {result.pushed} of {pushed}"
            assert result.unsent == 0 and not result.refused, result
        notes = (
            f"one device pushes all over loopback (SQLite server), {cfg.records:,} records (and "
            f"{pushed - plan.ops:,} ticket-number ops its sync adds); {counter.sent / pushed:.1f} B/op "
            f"sent{_rss_note(server)}"
        )
    return _row(pushed, seconds, notes, counter.sent / pushed)


def sync_initial(cfg: Config) -> Row:
    """An empty device pulls the whole workload from a real server."""
    return sync_initial_and_incremental(cfg)[0]


def sync_incremental(cfg: Config) -> Row:
    """One sync of 10 new ops, after the initial one."""
    return sync_initial_and_incremental(cfg)[1]


def _many_devices(cfg: Config, database_url: str, label: str) -> Row:
    from caresync import Replica

    devices = min(DEVICES, max(4, cfg.ops // 20))  # a tiny run (the test) has fewer devices, with fewer ops
    per_device = max(2, min(OPS_PER_DEVICE, cfg.ops // devices))
    paths = [cfg.workdir / f"dev-{i}.db" for i in range(devices)]
    with _server(cfg, database_url, processes=2) as servers:
        bases = [s.url for s in servers]
        tokens = [_enroll(database_url, f"dev-{i}") for i in range(devices)]
        for i, path in enumerate(paths):
            with Replica.open(path, actor=f"worker-{i}") as r, r.batch():
                for j in range(per_device // 2):
                    ticket = r.tickets.submit(title=f"Request {i}-{j}", kind="repair", grid="changnan/dorm/3")
                    r.tickets.edit(ticket.id, priority="high")
        moved = [0] * devices
        latencies: list[float] = []  # of every sync, seconds (list.append is atomic)
        requests: list[float] = []  # of every HTTP request, from sending it to having read the answer
        errors: list[BaseException] = []

        def device(i: int) -> None:
            try:
                with Replica.open(paths[i], actor=f"worker-{i}") as r, _timed_client(requests) as client:
                    for _ in range(2):
                        started = time.perf_counter()
                        res = r.sync(bases[i % len(bases)], token=tokens[i], client=client)
                        latencies.append(time.perf_counter() - started)
                        moved[i] += res.pushed + res.pulled
            except BaseException as exc:  # reported in the row, the run goes on
                errors.append(exc)

        threads = [threading.Thread(target=device, args=(i,)) for i in range(devices)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        with Replica.open(paths[0], actor="check") as r:
            assert r.op_count() >= per_device
        peaks = [peak_rss_mib(s) for s in servers]
    assert len(latencies) == 2 * devices, f"{len(latencies)} syncs finished of {2 * devices}"
    median, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    request_p99 = percentile(requests, 0.99) * 1000
    server_rss = ", ".join(f"{p:.0f}" for p in peaks if p is not None)
    rss_note = f"; servers' peak RSS {server_rss} MiB" if server_rss else ""
    row = _row(
        sum(moved),
        seconds,
        f"{devices} devices x {per_device} ops, 2 syncs each, at once; 2 server processes on {label}; "
        f"ops = pushed + pulled; one sync: median {median:.0f} ms, p99 {p99:.0f} ms, no error; one request "
        f"({len(requests)}): p99 {request_p99:.0f} ms{rss_note}",
    )
    row.update(median_ms=median, p99_ms=p99, request_p99_ms=request_p99)
    return row


def _timed_client(times: list[float]) -> httpx.Client:
    """An HTTP client that adds to ``times`` how long each request took, from sending it to its answer read (the
    devices are threads of one process: that includes waiting for the interpreter lock)."""
    import httpx

    def on_request(request: httpx.Request) -> None:
        request.extensions["sent_at"] = time.perf_counter()

    def on_response(response: httpx.Response) -> None:
        response.read()
        times.append(time.perf_counter() - response.request.extensions["sent_at"])

    return httpx.Client(timeout=120, event_hooks={"request": [on_request], "response": [on_response]})


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


PHOTOS = 100
PHOTO_BYTES = 2 * 1024 * 1024


def make_photos(path: Path, count: int, seed: int) -> None:
    """A station replica holding ``count`` attachments of :data:`PHOTO_BYTES` each (a phone's photos as they were
    taken: random bytes, which neither compress nor shrink), on one ticket."""
    rng = random.Random(seed)
    with _open(path, station=True) as replica:
        ticket = replica.tickets.submit(title="Photos of the flooded basement", kind="repair", grid="changnan/dorm/3")
        for _ in range(count):
            replica.attachments.add(ticket.id, rng.randbytes(PHOTO_BYTES), kind="document")


class _Cut(Exception):
    """Raised from the progress callback to cut a download half-way, as a lost signal would."""


def blobs_photos(cfg: Config) -> Row:
    """One device uploads 100 photos of 2 MB (attachments' blobs) to a real server over loopback; another, empty,
    downloads them, its link cut half-way and the download resumed. Throughput both ways, and what resuming cost.
    A small workload (``--ops`` under 10,000, the test) moves 3 photos."""
    count = PHOTOS if cfg.ops >= 10_000 else 3
    url = f"sqlite:///{cfg.workdir / 'server.db'}"
    src_path = cfg.workdir / "photos.db"
    in_child(make_photos, src_path, count, cfg.seed)  # building them is not what this row measures
    from caresync_server.testing import ServerProcess

    server = ServerProcess(url, cfg.workdir, environment={"CARESYNC_BLOB_DIR": str(cfg.workdir / "blobs")}).start()
    try:
        up_token, down_token = _enroll(url, "camera"), _enroll(url, "desk")
        with _open(src_path, station=True) as src, _open(cfg.workdir / "desk.db", station=True) as desk:
            started = time.perf_counter()
            up = src.sync(server.url, token=up_token)
            up_s = time.perf_counter() - started
            assert up.blobs.uploaded == count and not up.blobs.refused, up.blobs
            total = up.blobs.bytes_sent
            half = total // 2

            def cut(progress: Any) -> None:
                if progress.phase == "blobs_down" and progress.done >= half:
                    raise _Cut

            started = time.perf_counter()
            with suppress(_Cut):
                desk.sync(server.url, token=down_token, progress=cut)
            blobs = desk.device_log.blobs
            kept = sum(state.held for state in (blobs.state(b) for b in blobs.held()) if state is not None)
            down = desk.sync(server.url, token=down_token)
            down_s = time.perf_counter() - started
            chunks = up.blobs.chunks_sent
            again_chunks = kept + down.blobs.chunks_received - chunks  # fetched twice because of the cut
            assert 0 < kept < chunks and again_chunks == 0, (kept, down.blobs.chunks_received, chunks)
            ticket = src.tickets.list()[0]
            sample = src.attachments.list(ticket.id)[-1]
            assert desk.attachments.open(sample.id) == src.attachments.open(sample.id)
            again = desk.sync(server.url, token=down_token)
            assert (again.blobs.chunks_sent, again.blobs.chunks_received) == (0, 0)
        mib = total / (1024 * 1024)
        notes = (
            f"{count} photos of 2 MiB over loopback (SQLite server): up {mib / up_s:.1f} MiB/s; down, cut at half "
            f"then resumed, {mib / down_s:.1f} MiB/s; the resume fetched {down.blobs.chunks_received} of {chunks} "
            f"chunks ({kept} kept from before the cut, {again_chunks} fetched twice){_rss_note(server)}"
        )
        return _row(count, up_s + down_s, notes, total / count)
    finally:
        server.stop()
