"""Several server processes over one PostgreSQL database share one blob folder: chunks of one blob arriving at
both at once (twice each, in any order) are each written once, the count comes out right, the file gets its name
only when whole, no reader is handed a torn chunk, and the bytes are the sealed blob's, whichever process serves."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import httpx
from caresync_server.testing import ServerProcess

from caresync import Replica, StationKey, SyncError
from caresync.testing import FakeClock
from caresync.trust.blobs import CHUNK_SIZE, chunk_hash
from tests.server_support import enroll, postgres_database

GRID = "changnan/teachers-dorm/3"


class _NoBlobs(httpx.HTTPTransport):
    """The device's link with its blob requests cut: its ops go, its blob stays for the test to send."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/blobs"):
            raise httpx.ConnectError("cut", request=request)
        return super().handle_request(request)


def test_two_server_processes_over_postgresql_share_one_blob_folder(tmp_path: Path) -> None:
    with postgres_database() as database:
        desk_token = enroll(database, "desk", role="station", grids=[""])
        phone_token = enroll(database, "phone", role="station", grids=[""])
        environment = {"CARESYNC_BLOB_DIR": str(tmp_path / "blobs")}
        servers = [ServerProcess(database, tmp_path, environment=environment).start() for _ in range(2)]
        key = StationKey.generate()
        try:
            desk = Replica.open(tmp_path / "desk.db", actor="desk", now_ms=FakeClock())
            desk.install_station_key(key)
            ticket = desk.tickets.submit(title="Legal aid papers", kind="legal_aid", grid=GRID)
            papers = random.Random(4).randbytes(12 * CHUNK_SIZE + 777)
            added = desk.attachments.add(ticket.id, papers, kind="document")
            with httpx.Client(transport=_NoBlobs()) as client, suppress(SyncError):
                desk.sync(servers[0].url, token=desk_token, retries=0, client=client)
            state = desk.device_log.blobs.state(added.blob)
            sealed = desk.device_log.blobs.read(added.blob)
            assert state is not None and sealed is not None
            chunks = [sealed[n * CHUNK_SIZE : (n + 1) * CHUNK_SIZE] for n in range(len(state.manifest.chunks))]
            offer = {"op": added.id, "size": state.manifest.size, "chunks": state.manifest.chunks}
            headers = {"Authorization": f"Bearer {desk_token}"}
            clients = [httpx.Client(base_url=s.url, headers=headers, timeout=60) for s in servers]
            try:
                for http in clients:
                    assert http.post(f"/v1/blobs/{added.blob}", json=offer).status_code == 200
                # every chunk twice to each process, shuffled, four at a time; readers ask for chunks meanwhile
                sends = [(http, n) for http in clients for n in range(len(chunks)) for _ in range(2)]
                random.Random(20).shuffle(sends)
                done = threading.Event()
                torn: list[int] = []

                def send(item: tuple[httpx.Client, int]) -> int:
                    http, n = item
                    raw = {"Content-Type": "application/octet-stream"}
                    return http.put(f"/v1/blobs/{added.blob}/chunks/{n}", content=chunks[n], headers=raw).status_code

                def read() -> None:
                    rng = random.Random(7)
                    while not done.is_set():
                        n = rng.randrange(len(chunks))
                        answer = rng.choice(clients).get(f"/v1/blobs/{added.blob}/chunks/{n}", params={"op": added.id})
                        if answer.status_code == 200 and chunk_hash(answer.content) != state.manifest.chunks[n]:
                            torn.append(n)

                readers = [threading.Thread(target=read) for _ in range(2)]
                for reader in readers:
                    reader.start()
                with ThreadPoolExecutor(4) as pool:
                    statuses = list(pool.map(send, sends))
                done.set()
                for reader in readers:
                    reader.join()
                assert statuses == [200] * len(sends) and torn == []
                for http in clients:
                    status = http.get(f"/v1/blobs/{added.blob}", params={"op": added.id}).json()
                    assert status["complete"] is True and status["held"] == list(range(len(chunks)))
            finally:
                for http in clients:
                    http.close()
            files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
            assert [p.name for p in files] == [added.blob]  # no .part left behind
            assert files[0].read_bytes() == sealed

            import psycopg

            with psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://")) as conn:
                row = conn.execute("SELECT held, received FROM blobs WHERE id = %s", (added.blob,)).fetchone()
                written = conn.execute("SELECT count(*) FROM blob_chunks WHERE blob = %s", (added.blob,)).fetchone()
            assert row == (len(chunks), len(sends)) and written == (len(chunks),)

            phone = Replica.open(tmp_path / "phone.db", actor="phone", now_ms=FakeClock())
            phone.install_station_key(key)
            phone.sync(servers[1].url, token=phone_token)
            assert phone.attachments.open(added.id) == papers
            again = desk.sync(servers[0].url, token=desk_token)  # offers it: the server says it is whole
            assert again.blobs.chunks_sent == 0
            assert desk.device_log.blobs.unsent() == []
            desk.close()
            phone.close()
        finally:
            for server in servers:
                server.stop()
