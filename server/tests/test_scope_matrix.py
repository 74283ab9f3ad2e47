"""The whole role table against the real app over real storage: every role, every op kind it can make through the
library, on records inside and outside its scope (its grids; for tickets also dispute or not), pushed to the
server, whose answer must be exactly what :mod:`caresync.trust.scopes` says; then every device pulls, and every op it
receives is checked against the table (nothing out of scope leaves the server), and nothing in scope is missing.

One app per database, one station's records, one device per role: no process per case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from caresync import EntityType, Replica, Role
from caresync.core.ops import KNOWN_KINDS, LOST_KIND
from caresync.trust.scopes import RecordScope, may_read, may_write

from support import ReplicaFactory, Server, keys, own_ops

INSIDE = "changnan/dorm/3"
OUTSIDE = "xinan/lane-1"
DEVICE_GRIDS = ("changnan/dorm",)

Action = Callable[[Replica], Any]


def _station_world(station: Replica) -> dict[str, tuple[str, RecordScope]]:
    """The station's records, by label: (record id, what decides its scope)."""
    world: dict[str, tuple[str, RecordScope]] = {}
    for where, grid in (("in", INSIDE), ("out", OUTSIDE)):
        resident = station.residents.register(name=f"Resident {where}", grid=grid, phone="13800000000")
        world[f"resident-{where}"] = (resident.id, RecordScope("resident", grid))
        visit = station.visits.record(resident_id=resident.id, outcome="well")
        world[f"visit-{where}"] = (visit.id, RecordScope("visit", grid))
        for kind in ("dispute", "repair"):
            ticket = station.tickets.submit(title=f"{kind} {where}", kind=kind, grid=grid)
            world[f"{kind}-{where}"] = (ticket.id, RecordScope("ticket", grid, kind))
        box = station.mailboxes.add(code=f"MB-{where}", name=f"Mailbox {where}", grid=grid)
        world[f"mailbox-{where}"] = (box.id, RecordScope("mailbox", grid))
        parcel = station.parcels.register(code=f"P-{where}", grid=grid)
        world[f"parcel-{where}"] = (parcel.id, RecordScope("parcel", grid))
    worker = station.workers.add(name="Li", role="grid_worker", grids=[INSIDE])
    world["worker"] = (worker.id, RecordScope("worker", None))
    for label in [
        label for label in world if label.split("-")[0] in ("resident", "visit", "dispute", "repair", "parcel")
    ]:
        record_id, scope = world[label]
        attached = station.attachments.add(record_id, b"a scanned form", kind="document")
        world[f"attachment-{label}"] = (attached.id, scope)  # what the detach cases remove
    return world


def _number(replica: Replica, ticket_id: str) -> None:
    log = replica.device_log
    log.emit(
        "ticket.number", ticket_id, {"number": "4242"}, actor="clerk", state=log.state(EntityType.TICKET, ticket_id)
    )


def _cases(world: dict[str, tuple[str, RecordScope]]) -> list[tuple[str, RecordScope, Action]]:
    """Every op kind the library can make, on records in scope and out of it: (kind, the record's scope before the
    op, the call that makes it). Parties and sessions exist only on disputes: the library refuses them on other
    tickets before any op is made."""

    def rid(label: str) -> str:
        return world[label][0]

    cases: list[tuple[str, RecordScope, Action]] = []
    for where, grid in (("in", INSIDE), ("out", OUTSIDE)):
        res, vis = rid(f"resident-{where}"), rid(f"visit-{where}")
        box, parcel = rid(f"mailbox-{where}"), rid(f"parcel-{where}")
        rscope = RecordScope("resident", grid)
        cases += [
            ("resident.create", rscope, lambda r, g=grid: r.residents.register(name="New", grid=g)),
            ("resident.set", rscope, lambda r, x=res: r.residents.edit(x, phone="13900000000")),
            ("resident.note", rscope, lambda r, x=res: r.residents.note(x, "lives alone")),
            (
                "visit.create",
                RecordScope("visit", grid),
                lambda r, x=res: r.visits.record(resident_id=x, outcome="well"),
            ),
            ("visit.set", RecordScope("visit", grid), lambda r, x=vis: r.visits.edit(x, outcome="no_answer")),
            ("visit.note", RecordScope("visit", grid), lambda r, x=vis: r.visits.note(x, "again tomorrow")),
            (
                "mailbox.create",
                RecordScope("mailbox", grid),
                lambda r, g=grid, w=where: r.mailboxes.add(code=f"MB-{w}-new", name="New box", grid=g),
            ),
            ("mailbox.set", RecordScope("mailbox", grid), lambda r, x=box: r.mailboxes.edit(x, name="Renamed")),
            (
                "parcel.create",
                RecordScope("parcel", grid),
                lambda r, g=grid, w=where: r.parcels.register(code=f"P-{w}-new", grid=g),
            ),
            ("parcel.set", RecordScope("parcel", grid), lambda r, x=parcel: r.parcels.edit(x, summary="Forms")),
            ("parcel.hop", RecordScope("parcel", grid), lambda r, x=parcel: r.parcels.hop(x, "picked_up")),
        ]
        for label, scope in (
            (f"resident-{where}", rscope),
            (f"visit-{where}", RecordScope("visit", grid)),
            (f"parcel-{where}", RecordScope("parcel", grid)),
            (f"dispute-{where}", RecordScope("ticket", grid, "dispute")),
            (f"repair-{where}", RecordScope("ticket", grid, "repair")),
        ):
            record = label.split("-")[0].replace("dispute", "ticket").replace("repair", "ticket")
            target, attached = rid(label), rid(f"attachment-{label}")
            cases += [
                (
                    f"{record}.attach",
                    scope,
                    lambda r, x=target: r.attachments.add(x, b"a photo, as bytes", kind="document"),
                ),
                (f"{record}.detach", scope, lambda r, x=attached: r.attachments.remove(x)),
            ]
        for kind in ("dispute", "repair"):
            ticket = rid(f"{kind}-{where}")
            tscope = RecordScope("ticket", grid, kind)
            cases += [
                (
                    "ticket.create",
                    tscope,
                    lambda r, g=grid, k=kind: r.tickets.submit(title="New", kind=k, grid=g),
                ),
                ("ticket.set", tscope, lambda r, x=ticket: r.tickets.edit(x, title="Retitled")),
                ("ticket.note", tscope, lambda r, x=ticket: r.tickets.note(x, "called")),
                ("ticket.transition", tscope, lambda r, x=ticket: r.tickets.accept(x, assignee="W-1")),
                # what a device's sync makes for its own provisionally numbered tickets (on another device's
                # ticket, as here, the server admits it by the role table and every fold ignores it)
                ("ticket.number", tscope, lambda r, x=ticket: _number(r, x)),
            ]
            if kind == "dispute":
                cases += [
                    ("ticket.party", tscope, lambda r, x=ticket: r.tickets.add_party(x, name="Neighbour Zhao")),
                    (
                        "ticket.session",
                        tscope,
                        lambda r, x=ticket: r.tickets.record_session(x, mediator="Old Hu", summary="Talked"),
                    ),
                ]
        cases.append(("resident.redact", rscope, lambda r, x=res: r.residents.redact(x, reason="moved away")))
    worker = rid("worker")
    cases += [
        ("worker.create", RecordScope("worker", None), lambda r: r.workers.add(name="Zhou", role="knocker")),
        ("worker.set", RecordScope("worker", None), lambda r, x=worker: r.workers.edit(x, phone="13700000000")),
    ]
    return cases


def test_every_role_every_kind_in_and_out_of_scope(server: Server, make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    station_token = server.enroll("station-desk", "station", "")
    world = _station_world(station)
    assert server.push(station_token, station.id, own_ops(station)).json()["refused"] == []
    cases = _cases(world)
    # every op kind of a record (a device's "op N is lost" is of none: test_nothing_taken_silently covers it)
    assert {kind for kind, _, _ in cases} == KNOWN_KINDS - {LOST_KIND}, "the matrix must cover every op kind"

    scope_of = {eid: scope for eid, scope in world.values()}  # every record's scope, for the pull check
    devices: dict[Role, tuple[Replica, str]] = {}
    stored_total = 0
    for role in Role:
        device = make_replica(f"device-{role.value}")
        device.apply_ops(station.export_ops({}, limit=100_000))  # it holds everything, so it can try everything
        token = server.enroll(f"device-{role.value}", role.value, *DEVICE_GRIDS)
        expected: dict[str, bool] = {}
        for kind, scope, action in cases:
            before = device.device_log._next_seq
            record = action(device)
            made = [op for op in own_ops(device) if op["seq"] >= before]
            assert [op["kind"] for op in made] == [kind], (role, kind, made)
            expected[f"{device.id}:{made[0]['seq']}"] = may_write(role, DEVICE_GRIDS, kind, scope)
            if kind.endswith(".create"):
                created = scope if kind != "visit.create" else RecordScope("visit", scope.grid)
                scope_of[getattr(record, "id")] = created  # noqa: B009 (records of several types)
        answer = server.push(token, device.id, own_ops(device)).json()
        refused = {item["op"]: item["code"] for item in answer["refused"]}
        assert set(refused.values()) <= {"forbidden"}, (role, answer["refused"])
        assert answer["waiting"] == []
        wrong = sorted(
            (op, "allowed" if allowed else "forbidden")
            for op, allowed in expected.items()
            if allowed == (op in refused)
        )
        assert wrong == [], f"{role.value}: the server decided otherwise than the role table for {wrong}"
        assert answer["stored"] == sum(expected.values())
        stored_total += answer["stored"]
        devices[role] = (device, token)

    everything = server.pull_all(station_token, station.id) + own_ops(station)
    by_eid = {(op["origin"], op["seq"]): op["eid"] for op in everything}
    assert len(everything) == len(own_ops(station)) + stored_total
    for role, (device, token) in devices.items():
        pulled = server.pull_all(token, device.id)
        leaked = [(op["kind"], op["eid"]) for op in pulled if not may_read(role, DEVICE_GRIDS, scope_of[op["eid"]])]
        assert leaked == [], f"a {role.value} device pulled ops outside its scope: {leaked[:5]}"
        wanted = {
            key for key, eid in by_eid.items() if key[0] != device.id and may_read(role, DEVICE_GRIDS, scope_of[eid])
        }
        assert set(keys(pulled)) == wanted, f"a {role.value} device did not get everything of its scope"
    # the couriers of the field never see a resident's or a ticket's content
    courier, courier_token = devices[Role.COURIER]
    courier_types = {op["kind"].split(".")[0] for op in server.pull_all(courier_token, courier.id)}
    assert courier_types <= {"parcel", "mailbox"}
