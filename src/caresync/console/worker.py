"""The one thread that owns the console's replica, and the background sync it runs between pages.

A replica's SQLite connection belongs to the thread that opened it, and the station desk has one replica, so
every page's work runs here, one at a time, in the order it came: a page never sees half of another page's
change, and a sync never interleaves with a clerk's write. Between jobs, when the interval has passed and the
replica is enrolled with a server, the thread syncs; its outcome (when, what, or why it failed) is kept in
:class:`SyncStatus` for every page to show.

The ``generation`` counts the ops the replica holds: it moves whenever anything changes here or arrives by
sync, and pages poll it to refresh themselves when new work comes in.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from caresync.errors import CaresyncError
from caresync.replica import Replica

__all__ = ["ReplicaWorker", "SyncStatus"]

T = TypeVar("T")


@dataclass(frozen=True)
class SyncStatus:
    """What the background sync last did, as every page shows it."""

    interval_s: int
    enrolled: bool = False
    server: str | None = None
    running: bool = False
    last_ok_ms: int | None = None
    last_try_ms: int | None = None
    last_error: str | None = None
    pushed: int = 0
    pulled: int = 0
    unsent: int = 0
    held: int = 0
    """Changes kept on the desk, unsent, until it has a station key to seal them with."""
    key_problem: str | None = None
    """Why the desk refused the station key the server offers (see :class:`~caresync.sync.netsync.SyncResult`)."""
    next_ms: int | None = None


class ReplicaWorker:
    """Opens the replica on its own thread and runs jobs there; syncs every ``interval_s`` (0: never).

    Args:
        path: the replica file.
        actor: the replica's default actor (each page passes the signed-in clerk instead).
        interval_s: seconds between background syncs; 0 turns background sync off.
        now_ms: the wall clock the status is stamped with.
        logger: where sync failures are reported (never with record contents).
        sync: how to sync (default :meth:`Replica.sync` with the enrolment's server); tests pass their own
            client through it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        actor: str,
        interval_s: int,
        now_ms: Callable[[], int],
        logger: logging.Logger,
        sync: Callable[[Replica], Any] | None = None,
    ) -> None:
        self._path = Path(path)
        self._actor = actor
        self._now = now_ms
        self._log = logger
        self._sync = sync or (lambda replica: replica.sync())
        self._jobs: queue.Queue[tuple[Callable[[Replica], Any], Future[Any]] | None] = queue.Queue()
        self._status = SyncStatus(interval_s=interval_s)
        self._generation = 0
        self._sync_now = threading.Event()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="caresync-console-replica", daemon=True)
        self._thread.start()
        self._ready.result()  # the replica opened (or the error it raised, here)

    # --- for pages --------------------------------------------------------------------------------------------

    def submit(self, job: Callable[[Replica], T]) -> Future[T]:
        """Queues ``job(replica)``; its future holds what it returned or raised."""
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def call(self, job: Callable[[Replica], T]) -> T:
        """Runs ``job(replica)`` and waits for it (for scripts and tests; pages await :meth:`submit`)."""
        return self.submit(job).result()

    @property
    def status(self) -> SyncStatus:
        """The background sync's latest status."""
        return self._status

    @property
    def generation(self) -> int:
        """How many ops the replica held after the latest job: it changes whenever anything new is there."""
        return self._generation

    def sync_soon(self) -> None:
        """Asks for a sync as soon as the current job is done (the "sync now" button)."""
        self._sync_now.set()
        self._jobs.put(None)

    def close(self) -> None:
        """Finishes the queued jobs, closes the replica and stops the thread; calling it again does nothing."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._stop = True
            self._thread.join()

    # --- the thread -------------------------------------------------------------------------------------------

    _stop = False

    def _run(self) -> None:
        try:
            replica = Replica.open(self._path, actor=self._actor, logger=self._log)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        try:
            self._refresh(replica)
            self._status = replace(self._status, next_ms=self._now() if self._status.enrolled else None)
            self._ready.set_result(None)
            while True:
                wait = self._wait_s()
                try:
                    item = self._jobs.get(timeout=wait)
                except queue.Empty:
                    item = None
                if item is not None:
                    job, future = item
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(job(replica))
                        except BaseException as exc:
                            future.set_exception(exc)
                        self._refresh(replica)
                    continue
                if self._stop and self._jobs.empty():
                    return
                if self._due():
                    self._sync_once(replica)
        finally:
            replica.close()

    def _wait_s(self) -> float | None:
        if self._stop:
            return 0
        status = self._status
        if self._sync_now.is_set():
            return 0
        if not status.enrolled or not status.interval_s or status.next_ms is None:
            return None
        return max(0.0, (status.next_ms - self._now()) / 1000)

    def _due(self) -> bool:
        status = self._status
        if not status.enrolled:
            self._sync_now.clear()
            return False
        if self._sync_now.is_set():
            return True
        return bool(status.interval_s) and status.next_ms is not None and self._now() >= status.next_ms

    def _refresh(self, replica: Replica) -> None:
        self._generation = replica.op_count()
        found = replica.enrolment()
        if (found is not None) != self._status.enrolled:
            self._status = replace(
                self._status,
                enrolled=found is not None,
                server=None if found is None else found.server_url,
                next_ms=self._now() if found is not None else None,
            )
        self._status = replace(self._status, unsent=replica.unsent_count())

    def _sync_once(self, replica: Replica) -> None:
        self._sync_now.clear()
        started = self._now()
        self._status = replace(self._status, running=True, last_try_ms=started)
        started_clock = time.monotonic()
        try:
            result = self._sync(replica)
        except CaresyncError as exc:
            self._log.warning("background sync failed: %s", type(exc).__name__)
            self._status = replace(self._status, running=False, last_error=str(exc))
        else:
            self._status = replace(
                self._status,
                running=False,
                last_ok_ms=self._now(),
                last_error=None,
                pushed=getattr(result, "pushed", 0),
                pulled=getattr(result, "pulled", 0),
                held=getattr(result, "held", 0),
                key_problem=getattr(result, "station_key_problem", None),
            )
            self._log.info("background sync done in %.1f s", time.monotonic() - started_clock)
        interval = self._status.interval_s
        self._status = replace(self._status, next_ms=self._now() + interval * 1000 if interval else None)
        self._refresh(replica)
