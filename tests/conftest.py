"""Shared fixtures: replicas in a temporary folder with controllable clocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from caresync import Replica
from caresync.testing import FakeClock

ReplicaFactory = Callable[..., Replica]


@pytest.fixture
def make_replica(tmp_path: Path) -> Iterator[ReplicaFactory]:
    """Opens replicas named by the test; each gets its own FakeClock unless one is passed; all are closed."""
    opened: list[Replica] = []

    def factory(name: str, *, actor: str | None = None, clock: FakeClock | None = None, **kwargs: object) -> Replica:
        replica = Replica.open(tmp_path / f"{name}.db", actor=actor or name, now_ms=clock or FakeClock(), **kwargs)
        opened.append(replica)
        return replica

    yield factory
    for replica in opened:
        replica.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A server database for one test, once on SQLite (a file in the test's folder) and once on a fresh PostgreSQL
    database (skipped when PostgreSQL is not reachable)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
    else:
        from tests.server_support import postgres_database

        with postgres_database() as url:
            yield url
