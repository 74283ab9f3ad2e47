"""Test support: the server app in-process behind a synchronous httpx client, devices that make real ops with the
caresync library, and a free PostgreSQL schema per test."""

from __future__ import annotations

import functools
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from caresync import Replica
from caresync.core.ops import FORMAT_VERSION
from caresync.sync.wire import MEDIA_TYPE, decode_envelope, encode_envelope
from caresync.testing import FakeClock
from sqlalchemy import create_engine, text

from caresync_server.app import create_app
from caresync_server.settings import Settings
from caresync_server.storage import Storage
from caresync_server.testing import ServerProcess, enroll

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The ``make_replica`` fixture: ``make_replica(name, start_ms=...)`` opens a device's replica file.
ReplicaFactory = Callable[..., Replica]
GRID = "changnan/dorm/3"
START_MS = 1_796_083_200_000


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers at 127.0.0.1:5432, else why not."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return None
    except OSError as exc:
        return f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc})"


@contextmanager
def postgres_schema() -> Iterator[Settings]:
    """Settings over a fresh PostgreSQL schema, dropped afterwards."""
    reason = postgres_reachable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"cs_test_{uuid.uuid4().hex[:12]}"
    folder = tempfile.TemporaryDirectory(prefix="caresync-key-")
    try:
        key_file = str(Path(folder.name) / "server.key")
        yield Settings(database_url=PG_URL, database_schema=schema, server_key_file=key_file)
    finally:
        folder.cleanup()
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


class Client:
    """httpx over the ASGI app, driven from synchronous tests through an anyio portal (no sockets)."""

    def __init__(self, app: Any) -> None:
        self._stack = ExitStack()
        self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._stack.close()


class Server:
    """The app over real storage, a clock for the server, and short-hands for the protocol's two calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = FakeClock(START_MS)
        self.storage = Storage(settings, now_ms=self.clock)
        self.storage.ensure_schema(create=True)
        self.app = create_app(settings, now_ms=self.clock)
        self.client = Client(self.app)

    def close(self) -> None:
        self.client.close()
        self.app.state.caresync.storage.close()
        self.storage.close()

    def enroll(self, name: str, role: str = "station", *grids: str) -> str:
        _, token = self.storage.enroll(name, role, grids or ("",))
        return token

    def counts(self) -> dict[str, int]:
        return self.storage.counts()

    def push(
        self,
        token: str,
        replica: str,
        ops: list[dict[str, Any]],
        *,
        compact: bool = False,
        time_ms: int = START_MS,
        **extra: Any,
    ) -> httpx.Response:
        envelope = {"replica": replica, "time_ms": time_ms, "ops": ops, **extra}
        headers = {"Authorization": f"Bearer {token}"}
        if compact:
            headers["Content-Type"] = MEDIA_TYPE
            return self.client.post("/v1/push", content=encode_envelope(envelope), headers=headers)
        return self.client.post("/v1/push", json=envelope, headers=headers)

    def pull(
        self, token: str, replica: str, cursor: str = "", *, limit: int = 1000, compact: bool = False
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if compact:
            headers["Accept"] = MEDIA_TYPE
        body = {"replica": replica, "cursor": cursor, "limit": limit, "time_ms": START_MS, "format": FORMAT_VERSION}
        response = self.client.post("/v1/pull", json=body, headers=headers)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = decode_envelope(response.content) if compact else response.json()
        return answer

    def pull_all(self, token: str, replica: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Everything the device may see, following the cursor to the end."""
        ops: list[dict[str, Any]] = []
        cursor = ""
        while True:
            answer = self.pull(token, replica, cursor, limit=limit)
            ops.extend(answer["ops"])
            cursor = answer["cursor"]
            if not answer["more"]:
                return ops


def replica(tmp_path: Path, name: str, *, start_ms: int = START_MS) -> Replica:
    """A device's replica file, with a fake clock starting at the server's time (or ``start_ms``)."""
    return Replica.open(tmp_path / f"{name}.db", actor=name, now_ms=FakeClock(start_ms))


def own_ops(device: Replica) -> list[dict[str, Any]]:
    """The ops the device made itself, in seq order."""
    return [op for op in device.export_ops({}, limit=1_000_000) if op["origin"] == device.id]


def keys(ops: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(op["origin"], op["seq"]) for op in ops]


class Live:
    """A real server process over SQLite, with a station, a courier and a grid worker enrolled."""

    def __init__(self, workdir: Path) -> None:
        url = f"sqlite:///{workdir / 'server.db'}"
        self.tokens = {
            "station": enroll(url, "station", role="station", grids=[""]),
            "courier": enroll(url, "courier-zhao", role="courier", grids=[""]),
            "other": enroll(url, "courier-qian", role="courier", grids=[""]),
            "worker": enroll(url, "phone-grid-li", role="grid_worker", grids=[GRID]),
        }
        self.process = ServerProcess(url, workdir).start()
        self.http = httpx.Client(base_url=self.process.url, timeout=60)

    def post(self, path: str, who: str = "station", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        return self.http.post(path, headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()
        self.process.stop()
