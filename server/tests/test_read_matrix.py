"""The read side of the role table, against a real server process over SQLite and PostgreSQL: for every role, which
grids' private content a device of that role can open (docs/security.md, "Who can read what").

Every device is enrolled with a code (so it has a device key the desk can wrap readers' keys to): a device of every
role scoped to one area (``changnan/dorm``), and readers of every reading role in another community (``xinan``),
so that readers' keys exist for both. The desk makes the station key, grants readers' keys at its sync, and writes
residents, tickets (a dispute and a repair), visits and parcels with free text in a building of each. Then:

1. every device syncs: no op the server sends it carries free text in clear, and of what it holds it opens exactly
   what its role reads in its grids (the station's and the admin's devices hold the station key: everything);
2. every device is then handed every op the desk wrote, both grids, all record types, past the server's scope
   filter (as a copy of another device's file would hand them): it still opens only what its role may read in its
   own grids. Readers' keys are per grid *and* role: a mediator opens a dispute of its grid, not a resident's name
   there; a knocker opens residents and visits of its grid, not a ticket; nobody but the station opens a parcel's
   summary or anything of the other community.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from caresync import Replica, Role, SyncResult
from caresync.sync import stationkey
from caresync.trust.gridkeys import READER_ROLES
from caresync.trust.keys import is_sealed
from caresync.trust.scopes import RecordScope, may_read
from caresync.trust.sealing import unsealed_fields

from caresync_server.settings import Settings
from caresync_server.storage import Storage
from caresync_server.testing import ServerProcess

INSIDE = "changnan/dorm/3"
OUTSIDE = "xinan/lane-1"
DEVICE_GRIDS = ("changnan/dorm",)
SECRET = "Marker-Read-Rm5 私密"
_GETTER = {"resident": "residents", "visit": "visits", "ticket": "tickets", "parcel": "parcels"}
_FIELD = {"resident": "name", "visit": "note", "ticket": "title", "parcel": "summary"}


def _opens(role: Role, scope: RecordScope) -> bool:
    """Whether a device of ``role`` in :data:`DEVICE_GRIDS` opens a record's private fields: the station's and the
    admin's devices hold the station key; a reading role opens what its role reads in its grids."""
    if role in (Role.STATION, Role.ADMIN):
        return True
    return role.value in READER_ROLES and may_read(role, DEVICE_GRIDS, scope)


def _private(device: Replica, eid: str, scope: RecordScope) -> str:
    value: str = getattr(getattr(device, _GETTER[scope.type]).get(eid), _FIELD[scope.type])
    return value


def test_every_role_opens_only_what_its_role_reads_in_its_grids(settings: Settings, tmp_path: Path) -> None:
    storage = Storage(settings)
    storage.ensure_schema(create=True)
    try:
        codes = {"desk": storage.issue_code("desk", "station", [""]).code}
        for role in Role:
            if role is not Role.KNOCKER:
                codes[role.value] = storage.issue_code(f"device-{role.value}", role.value, list(DEVICE_GRIDS)).code
        # the knocker is enrolled with a direct token (as `caresync init --server` with CARESYNC_TOKEN): the server
        # learns its device key from its first sync, and it gets readers' keys like the others
        _, knocker_token = storage.enroll("device-knocker", "knocker", list(DEVICE_GRIDS))
        for role in READER_ROLES:  # readers in the other community, so that readers' keys exist there too
            codes[f"xinan-{role}"] = storage.issue_code(f"xinan-{role}", role, ["xinan"]).code
    finally:
        storage.close()
    key_file = {"CARESYNC_SERVER_KEY_FILE": settings.server_key_file} if settings.server_key_file else {}
    server = ServerProcess(
        settings.database_url, tmp_path, database_schema=settings.database_schema, environment=key_file
    ).start()
    try:
        with contextlib.ExitStack() as stack:
            names = [*codes, Role.KNOCKER.value]
            devices = {name: stack.enter_context(Replica.open(tmp_path / f"{name}.db", actor=name)) for name in names}
            for name, code in codes.items():
                devices[name].enroll(server.url, code)

            def sync(name: str) -> SyncResult:
                if name == Role.KNOCKER.value:
                    return devices[name].sync(server.url, token=knocker_token)
                return devices[name].sync()

            desk = devices["desk"]
            stationkey.create_station_key(desk)
            stationkey.register_station_key(desk)
            key = desk.station_key
            assert key is not None
            for role in (Role.STATION, Role.ADMIN):  # the station's own desks and its admin's machine
                devices[role.value].install_station_key(key)
            for name in devices:
                if name != "desk":
                    sync(name)  # bound to its replica and key: the desk can wrap readers' keys to it
            granted = desk.sync().grid_keys.grants
            assert granted is not None and len(granted.made) == 2 * len(READER_ROLES)

            records: dict[str, tuple[RecordScope, str]] = {}  # id -> (scope, a private field's value when opened)
            for grid in (INSIDE, OUTSIDE):
                resident = desk.residents.register(name=f"{SECRET} {grid}", grid=grid, address="Room 401")
                records[resident.id] = (RecordScope("resident", grid), f"{SECRET} {grid}")
                visit = desk.visits.record(resident_id=resident.id, outcome="well", note=f"{SECRET} visit")
                records[visit.id] = (RecordScope("visit", grid), f"{SECRET} visit")
                for kind in ("dispute", "repair"):
                    ticket = desk.tickets.submit(title=f"{SECRET} {kind}", kind=kind, grid=grid, description="told")
                    records[ticket.id] = (RecordScope("ticket", grid, kind), f"{SECRET} {kind}")
                parcel = desk.parcels.register(code=f"P-{grid.replace('/', '-')}", grid=grid, summary=f"{SECRET} p")
                records[parcel.id] = (RecordScope("parcel", grid), f"{SECRET} p")
            assert desk.sync().pushed > 0
            everything = desk.export_ops({}, limit=100_000)
            assert not [op for op in everything if unsealed_fields(op["kind"], op["body"])]

            for role in Role:
                device = devices[role.value]
                sync(role.value)
                pulled = device.export_ops({}, limit=100_000)
                assert SECRET.encode() not in repr(pulled).encode()
                held = {eid: records[eid] for eid in {op["eid"] for op in pulled} & set(records)}
                assert held, f"a {role.value} device holds none of the records: the check would be empty"
                assert {scope.grid for scope, _ in held.values()} == {INSIDE}, f"{role.value} holds another grid"
                for eid, (scope, plain) in held.items():  # 1. what the server sent it
                    value = _private(device, eid, scope)
                    assert value == plain if _opens(role, scope) else is_sealed(value), (role, scope, value)

                device.apply_ops(everything)  # 2. every op, past the server's scope filter
                opened = {}
                for eid, (scope, plain) in records.items():
                    value = _private(device, eid, scope)
                    assert value == plain or is_sealed(value), (role, eid, value)
                    opened[(scope.type, scope.grid, scope.kind)] = value == plain
                expected = {(s.type, s.grid, s.kind): _opens(role, s) for s, _ in records.values()}
                assert opened == expected, f"{role.value}: opens {opened}, expected {expected}"
                if role.value in READER_ROLES:  # it opens something, and nothing of the other community
                    assert any(opened.values()) and not any(v for (_, g, _), v in opened.items() if g == OUTSIDE)
    finally:
        server.stop()
