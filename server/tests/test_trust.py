"""Enrolment codes, device keys, expiring tokens, revocation, scope changes and the station key, against the app
over real storage (SQLite and PostgreSQL), and the admin commands that drive them."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from caresync import DeviceKey, StationKey
from caresync.core.ops import FORMAT_VERSION
from caresync.sync.enrolment import check_code, normalize_code, token_proof
from click.testing import CliRunner
from sqlalchemy import select

from caresync_server.cli import main
from caresync_server.settings import Settings
from caresync_server.storage import SCHEMA_VERSION, DeviceReport, Storage, devices, token_hash
from support import GRID, START_MS, Server, own_ops, replica

DAY = 86_400_000


def _enroll(server: Server, code: str, key: DeviceKey) -> httpx.Response:
    return server.client.post("/v1/enroll", json={"code": code, "public_key": key.public_key.hex()})


def _pull(server: Server, token: str, replica_id: str, cursor: str = "", limit: int = 1000) -> httpx.Response:
    body = {"replica": replica_id, "cursor": cursor, "limit": limit, "time_ms": START_MS, "format": FORMAT_VERSION}
    return server.client.post("/v1/pull", json=body, headers={"Authorization": f"Bearer {token}"})


def _renew(server: Server, key: DeviceKey, time_ms: int | None = None) -> httpx.Response:
    if time_ms is None:
        time_ms = server.client.get("/v1/info").json()["server_time_ms"]
    signature = key.sign(token_proof(key.origin, time_ms)).hex()
    return server.client.post("/v1/token", json={"replica": key.origin, "time_ms": time_ms, "signature": signature})


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_a_code_enrols_one_device_once_and_binds_its_key(server: Server) -> None:
    issued = server.storage.issue_code("handheld-chen", "courier", [GRID])
    assert check_code(issued.code) is None and len(issued.code) == 19  # XXXX-XXXX-XXXX-XXXX
    assert START_MS + 7 * DAY <= issued.expires_at < START_MS + 7 * DAY + 1000
    key = DeviceKey.generate()
    typed = issued.code.lower().replace("-", " ").replace("0", "o")  # as a person types it from paper
    answer = _enroll(server, typed, key)
    assert answer.status_code == 200, answer.text
    creds: dict[str, Any] = answer.json()
    assert creds["replica"] == key.origin and creds["role"] == "courier" and creds["grids"] == [GRID]
    assert creds["device"] == "handheld-chen" and creds["scope_version"] == 1
    assert abs(creds["token_expires_at_ms"] - (creds["server_time_ms"] + 30 * DAY)) < 1000
    assert creds["station_public_key"] is None
    assert server.storage.device_public_key(key.origin) == key.public_key
    assert server.storage.device_public_key("0" * 16) is None
    with server.storage.engine.connect() as conn:  # only hashes of codes and tokens are kept
        row = conn.execute(select(devices).where(devices.c.name == "handheld-chen")).one()
    assert row.token_hash == token_hash(creds["token"]) and row.code_hash is None
    assert issued.code not in str(tuple(row)) and creds["token"] not in str(tuple(row))

    assert _pull(server, creds["token"], key.origin).status_code == 200
    assert _code(_pull(server, creds["token"], "1" * 16)) == "replica_mismatch"
    again = _enroll(server, issued.code, DeviceKey.generate())
    assert (again.status_code, _code(again)) == (403, "invalid_code")  # a code works once


def test_bad_enrolments_change_nothing(server: Server) -> None:
    issued = server.storage.issue_code("phone-fang", "knocker", [GRID])
    key = DeviceKey.generate()
    raw = normalize_code(issued.code)
    typo = raw[:3] + ("A" if raw[3] != "A" else "B") + raw[4:]
    for body, status, code in (
        ({"code": typo, "public_key": key.public_key.hex()}, 422, "invalid_request"),  # the check character
        ({"code": raw[:-1], "public_key": key.public_key.hex()}, 422, "invalid_request"),
        ({"code": raw, "public_key": "ab" * 31}, 422, "invalid_request"),
        ({"code": raw}, 422, "invalid_request"),
        ({"code": 12, "public_key": key.public_key.hex()}, 422, "invalid_request"),
    ):
        answer = server.client.post("/v1/enroll", json=body)
        assert (answer.status_code, _code(answer)) == (status, code), (body, answer.text)
    garbage = server.client.post("/v1/enroll", content=b"{", headers={"Content-Type": "application/json"})
    assert (garbage.status_code, _code(garbage)) == (400, "invalid_json")
    assert server.storage.device("phone-fang").replica_id is None  # still unclaimed
    assert _enroll(server, issued.code, key).status_code == 200  # and the good code still works

    taken = server.storage.issue_code("phone-copy", "knocker", [GRID])
    copied = _enroll(server, taken.code, key)  # the same device key cannot enrol twice
    assert (copied.status_code, _code(copied)) == (403, "replica_mismatch")
    assert _enroll(server, taken.code, DeviceKey.generate()).status_code == 200

    late = server.storage.issue_code("phone-late", "knocker", [GRID])
    server.clock.advance(7 * DAY + 1)
    expired = _enroll(server, late.code, DeviceKey.generate())
    assert (expired.status_code, _code(expired)) == (403, "invalid_code") and "expired" in expired.text
    revoked = server.storage.issue_code("phone-lost", "knocker", [GRID])
    server.storage.revoke("phone-lost")
    assert _code(_enroll(server, revoked.code, DeviceKey.generate())) == "invalid_code"


def test_tokens_expire_and_only_the_device_key_renews_them(server: Server) -> None:
    key = DeviceKey.generate()
    token = _enroll(server, server.storage.issue_code("phone", "grid_worker", [GRID]).code, key).json()["token"]
    server.clock.advance(30 * DAY + 1)
    expired = _pull(server, token, key.origin)
    assert (expired.status_code, _code(expired)) == (401, "token_expired")
    assert "renews it by itself" in expired.json()["error"]["message"]

    now = server.client.get("/v1/info").json()["server_time_ms"]
    stranger = DeviceKey.generate()
    forged = server.client.post(
        "/v1/token",
        json={"replica": key.origin, "time_ms": now, "signature": stranger.sign(token_proof(key.origin, now)).hex()},
    )
    assert (forged.status_code, _code(forged)) == (401, "unauthorized")
    stale = _renew(server, key, now - 11 * 60_000)
    assert (stale.status_code, _code(stale)) == (401, "unauthorized")
    unknown = _renew(server, stranger)
    assert (unknown.status_code, _code(unknown)) == (401, "unauthorized")

    renewed = _renew(server, key, now)
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()["token"]
    assert fresh != token and renewed.json()["token_expires_at_ms"] > now + 29 * DAY
    assert _pull(server, fresh, key.origin).status_code == 200
    assert _code(_pull(server, token, key.origin)) == "unauthorized"  # the old token is gone
    replayed = _renew(server, key, now)  # the same proof again
    assert (replayed.status_code, _code(replayed)) == (401, "unauthorized")

    server.storage.revoke("phone")
    refused = _renew(server, key)
    assert (refused.status_code, _code(refused)) == (403, "revoked")
    direct = server.enroll("scripted", "station", "")  # a token enrolled without a key cannot be renewed
    other = DeviceKey.generate()
    assert _pull(server, direct, other.origin).status_code == 200
    assert _code(_renew(server, other)) == "unauthorized"


def test_revoking_cuts_off_a_device_between_two_pages_of_a_pull(server: Server, tmp_path: Path) -> None:
    station = replica(tmp_path, "station")
    try:
        for i in range(6):
            station.tickets.submit(title=f"Request {i}", kind="repair", grid=GRID)
        assert server.push(server.enroll("desk"), station.id, own_ops(station)).status_code == 200
    finally:
        station.close()
    key = DeviceKey.generate()
    token = _enroll(server, server.storage.issue_code("phone", "grid_worker", [GRID]).code, key).json()["token"]
    first = _pull(server, token, key.origin, limit=2).json()
    assert len(first["ops"]) == 2 and first["more"]
    server.storage.revoke("phone")
    second = _pull(server, token, key.origin, first["cursor"], limit=2)
    assert (second.status_code, _code(second)) == (403, "revoked")
    assert _code(server.client.get("/v1/device", headers={"Authorization": f"Bearer {token}"})) == "revoked"


def test_a_scope_change_applies_at_once_and_the_device_can_see_it(server: Server, tmp_path: Path) -> None:
    station = replica(tmp_path, "station")
    try:
        station.parcels.register(code="P-A", grid=GRID)
        station.parcels.register(code="P-B", grid="xinan/lane-1")
        assert server.push(server.enroll("desk"), station.id, own_ops(station)).status_code == 200
    finally:
        station.close()
    key = DeviceKey.generate()
    token = _enroll(server, server.storage.issue_code("courier", "courier", [GRID]).code, key).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert [op["body"]["code"] for op in _pull(server, token, key.origin).json()["ops"]] == ["P-A"]

    changed = server.storage.set_scope("courier", grids=["xinan"])
    assert changed.scope_version == 2 and changed.grids == ("xinan",)
    assert server.storage.set_scope("courier", grids=["xinan"]).scope_version == 2  # no change, no new version
    described = server.client.get("/v1/device", headers=auth).json()
    assert (described["grids"], described["scope_version"], described["role"]) == (["xinan"], 2, "courier")
    assert [op["body"]["code"] for op in _pull(server, token, key.origin).json()["ops"]] == ["P-B"]
    assert server.storage.set_scope("courier", grids=["xinan"], role="knocker").role == "knocker"
    assert _pull(server, token, key.origin).json()["ops"] == []


def test_only_a_station_registers_the_station_key_and_devices_receive_it(server: Server) -> None:
    station_key = StationKey.generate()
    courier = server.enroll("courier", "courier", GRID)
    put = server.client.request(
        "PUT",
        "/v1/station-key",
        json={"public_key": station_key.public_key.hex()},
        headers={"Authorization": f"Bearer {courier}"},
    )
    assert (put.status_code, _code(put)) == (403, "forbidden")
    assert server.storage.station_public_key() is None
    desk = server.enroll("desk", "station", "")
    auth = {"Authorization": f"Bearer {desk}"}
    assert (
        server.client.request("PUT", "/v1/station-key", json={"public_key": "zz" * 32}, headers=auth).status_code == 422
    )
    put = server.client.request(
        "PUT", "/v1/station-key", json={"public_key": station_key.public_key.hex()}, headers=auth
    )
    assert put.status_code == 204, put.text
    assert server.storage.station_public_key() == station_key.public_key
    answer = _enroll(server, server.storage.issue_code("phone", "knocker", [GRID]).code, DeviceKey.generate())
    assert answer.json()["station_public_key"] == station_key.public_key.hex()


def test_only_a_station_scoped_everywhere_registers_or_rotates_the_station_key(server: Server) -> None:
    first, second, rogue = StationKey.generate(), StationKey.generate(), StationKey.generate()
    assert first.signing_public_key and second.signing_public_key and rogue.signing_public_key

    def put(token: str, body: dict[str, str]) -> httpx.Response:
        return server.client.request("PUT", "/v1/station-key", json=body, headers={"Authorization": f"Bearer {token}"})

    local = server.enroll("community-desk", "station", "changnan")  # a station, but of one community only
    answer = put(local, {"signing_key": first.signing_public_key.hex()})
    assert (answer.status_code, _code(answer)) == (403, "forbidden") and "everywhere" in answer.text
    assert server.storage.station_key_chain() == []
    desk, admin = server.enroll("desk", "station", ""), server.enroll("it-admin", "admin", "")
    assert put(desk, {"signing_key": first.signing_public_key.hex()}).status_code == 204
    assert put(desk, {"signing_key": first.signing_public_key.hex()}).status_code == 204  # the same again: no change
    assert server.storage.station_public_key() == first.public_key  # the X25519 key, derived
    for body in (
        {"signing_key": rogue.signing_public_key.hex()},  # another key, unsigned
        {"signing_key": rogue.signing_public_key.hex(), "signature": rogue.sign_rotation(rogue).hex()},  # self-signed
        {"public_key": rogue.public_key.hex()},  # a bare key of an earlier release cannot replace it either
    ):
        refused = put(admin, body)
        assert (refused.status_code, _code(refused)) == (409, "station_key_conflict"), body
    assert [link.signing_key for link in server.storage.station_key_chain()] == [first.signing_public_key]
    handover = first.sign_rotation(second).hex()
    rotated = put(admin, {"signing_key": second.signing_public_key.hex(), "signature": handover})
    assert rotated.status_code == 204, rotated.text
    chain = server.storage.station_key_chain()
    assert [link.signing_key for link in chain] == [first.signing_public_key, second.signing_public_key]
    described = server.client.get("/v1/device", headers={"Authorization": f"Bearer {local}"}).json()
    assert described["station_public_key"] == second.public_key.hex()
    assert [link["signing_key"] for link in described["station_key_chain"]] == [
        first.signing_public_key.hex(),
        second.signing_public_key.hex(),
    ]
    bad = put(desk, {"signing_key": "00" * 31 + "01"})  # not a point: not a key
    assert (bad.status_code, _code(bad)) == (422, "invalid_request")


def _cli(settings: Settings, *args: str) -> Any:
    options = ["--database-url", settings.database_url]
    if settings.database_schema:
        options += ["--database-schema", settings.database_schema]
    command, *rest = args
    runner = CliRunner(env={"CARESYNC_SERVER_KEY_FILE": settings.server_key_file or ""})
    if command == "station-key":
        command, sub, *rest = args
        return runner.invoke(main, [command, sub, *options, *rest], catch_exceptions=False)
    return runner.invoke(main, [command, *options, *rest], catch_exceptions=False)


def test_the_admin_commands_of_trust(settings: Settings) -> None:
    assert _cli(settings, "init").exit_code == 0
    shown = _cli(settings, "enroll", "--name", "handheld-chen", "--role", "courier", "--grid", GRID)
    assert shown.exit_code == 0, shown.output
    code = shown.output.split("\n\n")[1].strip()
    assert check_code(code) is None and "valid until" in shown.output
    assert "▀" in shown.output or "█" in shown.output  # the QR code, drawn in the terminal
    as_json = json.loads(_cli(settings, "enroll", "--name", "p2", "--role", "knocker", "--grid", GRID, "--json").output)
    assert check_code(as_json["code"]) is None and as_json["code_expires_at"] > as_json["created_at"]
    no_qr = _cli(settings, "enroll", "--name", "p3", "--role", "knocker", "--grid", GRID, "--no-qr").output
    assert "▀" not in no_qr and "█" not in no_qr

    moved = _cli(settings, "scope", "handheld-chen", "--grid", "xinan/lane-1", "--grid", "xinan/lane-2")
    assert moved.exit_code == 0 and "courier in xinan/lane-1, xinan/lane-2" in moved.output
    bad = _cli(settings, "scope", "handheld-chen", "--grid", "a//b")
    assert bad.exit_code == 1 and "is not a grid path" in bad.output
    assert "No device is named ghost" in _cli(settings, "scope", "ghost", "--grid", GRID).output
    listed = json.loads(_cli(settings, "devices", "--json").output)
    assert listed[0]["scope_version"] == 2 and listed[0]["enrolled_at"] is None

    assert "No station public key" in _cli(settings, "station-key", "show").output
    first, other = StationKey.generate(), StationKey.generate()
    assert first.signing_public_key is not None and other.signing_public_key is not None
    key = first.signing_public_key.hex()
    assert _cli(settings, "station-key", "set", key).exit_code == 0
    assert _cli(settings, "station-key", "show").output.strip() == key
    wrong = _cli(settings, "station-key", "set", "abc")
    assert wrong.exit_code == 1 and "64 hex digits" in wrong.output
    unsigned = _cli(settings, "station-key", "set", other.signing_public_key.hex())  # not signed by the first
    assert unsigned.exit_code == 1 and "rotation signed by it" in unsigned.output
    assert _cli(settings, "station-key", "show").output.strip() == key
    forced = _cli(settings, "station-key", "set", other.signing_public_key.hex(), "--replace")
    assert forced.exit_code == 0
    assert _cli(settings, "station-key", "show").output.strip() == other.signing_public_key.hex()


def test_a_schema_version_1_database_is_migrated(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    storage = Storage(settings)
    storage.ensure_schema(create=True)
    _, token = storage.enroll("old-phone", "mediator", [GRID])
    desk, _ = storage.enroll("desk", "station", [""])
    station = replica(tmp_path, "station")
    try:
        station.tickets.submit(title="Noise", kind="dispute", grid=GRID)
        station.tickets.submit(title="Leak", kind="repair", grid=GRID)
        storage.push(desk.id, station.id, own_ops(station), DeviceReport(0, None, 0), START_MS)
    finally:
        station.close()
    storage.close()
    with closing(sqlite3.connect(tmp_path / "old.db")) as db:  # take it back to what version 1 wrote
        db.execute("DROP INDEX devices_by_code")
        for table, column in (
            ("devices", "public_key"),
            ("devices", "token_expires_at"),
            ("devices", "code_hash"),
            ("devices", "code_expires_at"),
            ("devices", "enrolled_at"),
            ("devices", "scope_version"),
            ("devices", "last_proof_ms"),
            ("ops", "sig"),
            ("ops", "pd"),
            ("ops", "rkind"),
            ("ops", "rkind_from"),
            ("entities", "kind"),
            ("entities", "kind_hlc"),
        ):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("DROP TABLE grid_key_wraps")  # schema version 3's tables (readers' keys)
        db.execute("DROP TABLE grid_keys")
        for table in ("blob_holders", "blob_chunks", "blobs"):  # schema version 4's (attachments' blobs)
            db.execute(f"DROP TABLE {table}")
        db.execute("DELETE FROM meta WHERE key = 'server_signing_key'")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        db.commit()
    storage = Storage(settings)
    try:
        assert storage.ensure_schema(create=False) == SCHEMA_VERSION == 4
        assert storage.ping() == 4
        assert storage.grid_keys(storage.authenticate(token)) == ([], [])  # readers' keys' tables are there, empty
        device = storage.authenticate(token)  # the old token still works, and never expires
        assert device.scope_version == 1 and device.token_expires_at is None
        page = storage.pull(device, "a" * 16, 0, 100, 0, START_MS)  # tickets got their kind: the dispute shows
        assert [json.loads(row[8])["title"] for row in page.rows] == ["Noise"]  # row: ..., body, sig
        assert storage.issue_code("new-phone", "courier", [GRID]).code
        assert len(storage.server_key().public_key) == 32  # the migration gave the server its signing key
    finally:
        storage.close()


@pytest.mark.parametrize("path", ["/v1/device", "/v1/station-key"])
def test_the_trust_endpoints_need_a_token(server: Server, path: str) -> None:
    answer = server.client.request("GET" if path == "/v1/device" else "PUT", path, json={"public_key": "00" * 32})
    assert (answer.status_code, _code(answer)) == (401, "unauthorized")


def test_a_ticket_that_stops_or_becomes_a_dispute_is_seen_by_mediators_as_it_changes(
    server: Server, tmp_path: Path
) -> None:
    station = replica(tmp_path, "station")
    desk = server.enroll("desk")
    mediator = server.enroll("mediator", "mediator", GRID)
    key = "e" * 16

    def pushed_and_pulled() -> list[tuple[str, Any]]:
        assert server.push(desk, station.id, own_ops(station)).json()["refused"] == []
        return [(op["kind"], op["body"].get("value")) for op in _pull(server, mediator, key).json()["ops"]]

    try:
        noise = station.tickets.submit(title="Noise", kind="dispute", grid=GRID)
        leak = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
        assert pushed_and_pulled() == [("ticket.create", None)]
        station.tickets.edit(noise.id, kind="repair")  # no longer a dispute: the mediator sees it stop being one
        station.tickets.edit(leak.id, kind="dispute")  # becomes one: the mediator sees that, and what follows
        station.tickets.edit(noise.id, title="Noise (repair)")
        station.tickets.edit(leak.id, title="Leak (neighbours argue)")
        cursor_free = pushed_and_pulled()
        assert cursor_free == [
            ("ticket.create", None),
            ("ticket.set", "repair"),
            ("ticket.set", "dispute"),
            ("ticket.set", "Leak (neighbours argue)"),
        ]
    finally:
        station.close()


def test_a_code_redeemed_by_several_devices_at_once_enrols_exactly_one(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from caresync_server.errors import ApiError

    def attempt(code: str) -> str:
        try:
            return server.storage.redeem_code(code, DeviceKey.generate().public_key).device.replica_id or ""
        except ApiError as exc:
            return exc.code.value

    for round_no in range(5):
        code = server.storage.issue_code(f"phone-{round_no}", "knocker", [GRID]).code
        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(attempt, [code] * 6))
        winners = [o for o in outcomes if o != "invalid_code"]
        assert len(winners) == 1, outcomes
        assert server.storage.device(f"phone-{round_no}").replica_id == winners[0]


def test_readers_keys_are_published_only_by_a_desk_scoped_everywhere_and_only_when_the_station_signed_them(
    server: Server,
) -> None:
    from caresync.trust.gridkeys import GridKey, wrap_grid_key

    station = StationKey.generate()
    desk = server.enroll("desk", "station", "")
    community = server.enroll("community-desk", "station", "changnan")
    knocker_key = DeviceKey.generate()
    code = server.storage.issue_code("knocker", "knocker", [GRID]).code
    knocker = server.storage.redeem_code(code, knocker_key.public_key).token
    key = GridKey.generate(GRID, "knocker", 1)
    published = key.publish(station)
    item = {
        "grid": GRID,
        "role": "knocker",
        "version": 1,
        "public_key": key.public_key.hex(),
        "signature": published.signature.hex(),
        "wraps": [{"replica": knocker_key.origin, "wrap": wrap_grid_key(key, knocker_key.public_key)}],
    }

    def put(token: str, *items: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return server.client.request("PUT", "/v1/grid-keys", json={"keys": list(items)}, headers=headers)

    def get(token: str) -> dict[str, Any]:
        answer = server.client.get("/v1/grid-keys", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    assert (put(desk, item).status_code, _code(put(desk, item))) == (422, "invalid_request")  # no station key yet
    assert station.signing_public_key is not None
    server.storage.set_station_key(station.signing_public_key)
    for token in (community, knocker):  # a station of one community, a knocker: not the desk
        assert (put(token, item).status_code, _code(put(token, item))) == (403, "forbidden")
    forged = GridKey.generate(GRID, "knocker", 1).publish(StationKey.generate())  # signed by another key
    bad = {**item, "public_key": forged.public_key.hex(), "signature": forged.signature.hex()}
    assert (put(desk, bad).status_code, _code(put(desk, bad))) == (422, "invalid_request")
    assert get(desk)["keys"] == []  # nothing of a refused request was stored
    done = put(desk, item)
    assert done.status_code == 200 and done.json() == {"keys": 1, "wraps": 1}
    assert put(desk, item).json() == {"keys": 0, "wraps": 1}  # again: nothing new, the wrap replaced
    other = GridKey.generate(GRID, "knocker", 1).publish(station)  # the same version, another key
    clash = {**item, "public_key": other.public_key.hex(), "signature": other.signature.hex()}
    assert (put(desk, clash).status_code, _code(put(desk, clash))) == (409, "grid_key_conflict")

    seen = get(knocker)  # the knocker gets the published key and its own wrap, and no list of readers
    assert [k["public_key"] for k in seen["keys"]] == [key.public_key.hex()] and seen["readers"] is None
    assert [w["wrap"] for w in seen["wraps"]] == [item["wraps"][0]["wrap"]]
    assert get(community)["readers"] is None and get(community)["wraps"] == []
    readers = get(desk)["readers"]  # the desk gets the entitled devices: the knocker, enrolled with its key
    assert [(r["replica"], r["role"], r["grids"], r["public_key"]) for r in readers] == [
        (knocker_key.origin, "knocker", [GRID], knocker_key.public_key.hex())
    ]
    server.storage.revoke("knocker")
    assert get(desk)["readers"] == []  # revoked: no longer entitled
