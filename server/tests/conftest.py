"""Fixtures: every fast test runs against real storage, once on SQLite and once on PostgreSQL (a fresh schema
per test; skipped, with the reason, when PostgreSQL does not answer at 127.0.0.1:5432)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from caresync import Replica

from caresync_server.settings import Settings
from support import START_MS, ReplicaFactory, Server, postgres_schema, replica


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite:///{tmp_path / 'server.db'}")
    else:
        with postgres_schema() as pg:
            yield pg


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    s = Server(settings)
    yield s
    s.close()


@pytest.fixture
def make_replica(tmp_path: Path) -> Iterator[ReplicaFactory]:
    """Opens devices' replica files in the test's folder (see support.replica); closes them all afterwards."""
    opened: list[Replica] = []

    def make(name: str, *, start_ms: int = START_MS) -> Replica:
        opened.append(replica(tmp_path, name, start_ms=start_ms))
        return opened[-1]

    yield make
    for device in opened:
        device.close()
