"""The read side of the role table, against the real app over SQLite and PostgreSQL: for every role, which grids'
private content a device of that role can open, as the system stands (docs/security.md, "Who can read what").

The station's desk writes residents, tickets (a dispute and a repair), visits and parcels with free text in two
communities, sealed to its key; a device of every role, scoped to one area, pulls what the server sends it. No op
that leaves the server carries free text in clear (whatever the role), and the content a device can open is: every
grid of its scope for the station's and the admin's devices (they hold the station key), none for the other roles
(no readers' keys yet: they hold only the station's public key).
"""

from __future__ import annotations

from caresync import Role, StationKey
from caresync.trust.keys import is_sealed
from caresync.trust.scopes import RecordScope, may_read
from caresync.trust.sealing import unsealed_fields

from support import ReplicaFactory, Server

INSIDE = "changnan/dorm/3"
OUTSIDE = "xinan/lane-1"
DEVICE_GRIDS = ("changnan/dorm",)
SECRET = "Marker-Read-Rm5 私密"
#: Who opens the content of the records it holds, by role (readers' keys would widen the field roles' rows).
OPENS: dict[Role, bool] = {role: role in (Role.STATION, Role.ADMIN) for role in Role}


def test_every_role_opens_only_what_its_keys_open_and_nothing_leaves_the_server_in_clear(
    server: Server, make_replica: ReplicaFactory
) -> None:
    key = StationKey.generate()
    assert key.signing_public_key is not None
    server.storage.set_station_key(key.signing_public_key)
    desk = make_replica("desk")
    desk.install_station_key(key)
    records: dict[str, tuple[RecordScope, str]] = {}  # id -> (scope, a private field's value when opened)
    for grid in (INSIDE, OUTSIDE):
        resident = desk.residents.register(name=f"{SECRET} {grid}", grid=grid, address="Room 401")
        records[resident.id] = (RecordScope("resident", grid), f"{SECRET} {grid}")
        visit = desk.visits.record(resident_id=resident.id, outcome="well", note=f"{SECRET} visit")
        records[visit.id] = (RecordScope("visit", grid), f"{SECRET} visit")
        for kind in ("dispute", "repair"):
            ticket = desk.tickets.submit(title=f"{SECRET} {kind}", kind=kind, grid=grid, description="told")
            records[ticket.id] = (RecordScope("ticket", grid, kind), f"{SECRET} {kind}")
        parcel = desk.parcels.register(code=f"P-{grid.replace('/', '-')}", grid=grid, summary=f"{SECRET} parcel")
        records[parcel.id] = (RecordScope("parcel", grid), f"{SECRET} parcel")
    answer = server.push(server.enroll("desk", "station", ""), desk.id, desk.export_ops({}, limit=100_000)).json()
    assert answer["refused"] == [] and answer["stored"] > 0

    def private_value(device: object, eid: str) -> str | None:
        scope = records[eid][0]
        getter = {"resident": "residents", "visit": "visits", "ticket": "tickets", "parcel": "parcels"}[scope.type]
        record = getattr(device, getter).get(eid)
        field = {"resident": "name", "visit": "note", "ticket": "title", "parcel": "summary"}[scope.type]
        return getattr(record, field)  # type: ignore[no-any-return]

    for role in Role:
        device = make_replica(f"device-{role.value}")
        token = server.enroll(f"device-{role.value}", role.value, *DEVICE_GRIDS)
        if OPENS[role]:
            device.install_station_key(key)  # the station's own desks and its admin's machine hold the key
        else:
            device.set_station_public_key(key.public_key)
        pulled = server.pull_all(token, device.id)
        in_clear = [(op["kind"], op["eid"]) for op in pulled if unsealed_fields(op["kind"], op["body"])]
        assert in_clear == [], f"a {role.value} device received free text in clear: {in_clear[:5]}"
        assert SECRET.encode() not in repr(pulled).encode()
        device.apply_ops(pulled)
        opened: dict[str, bool] = {}
        for eid, (scope, plain) in records.items():
            if not may_read(role, DEVICE_GRIDS, scope):
                continue
            value = private_value(device, eid)
            assert value == plain or is_sealed(value), (role, eid, value)
            opened[scope.grid or ""] = opened.get(scope.grid or "", False) or value == plain
        assert opened, f"a {role.value} device holds none of the records: the check would be empty"
        held_grids = {grid for grid in opened}
        assert held_grids <= {INSIDE}, f"a {role.value} device holds records outside its grids: {held_grids}"
        assert set(opened.values()) <= {OPENS[role]}, f"{role.value}: opens {opened}, expected {OPENS[role]}"
