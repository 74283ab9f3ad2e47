"""The role table and grid scopes (pure: no server needed)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from caresync import EntityType, Role
from caresync.core.ops import KNOWN_KINDS, LOST_KIND

from caresync_server.roles import EVERYWHERE, KIND_ONLY, PERMISSIONS, ROLE_TABLE, covers

TYPES = {t.value for t in EntityType}


def test_every_role_has_permissions_made_of_known_kinds_and_types() -> None:
    assert set(PERMISSIONS) == set(Role)
    for permissions in PERMISSIONS.values():
        assert permissions.writes <= KNOWN_KINDS and permissions.reads <= TYPES
        assert permissions.reads, "a role that reads nothing could not sync"


def test_every_pattern_of_the_table_names_something() -> None:
    for rules in ROLE_TABLE.values():
        assert len({rule.record for rule in rules}) == len(rules), "one rule per record type"
        for rule in rules:
            assert rule.record in TYPES
            for pattern in rule.write:
                assert any(fnmatchcase(kind, f"{rule.record}.{pattern.lstrip('!')}") for kind in KNOWN_KINDS), pattern


def test_the_mediator_holds_disputes_only() -> None:
    assert KIND_ONLY[Role.MEDIATOR] == {"ticket": "dispute"}
    assert all(not only for role, only in KIND_ONLY.items() if role is not Role.MEDIATOR)
    assert PERMISSIONS[Role.MEDIATOR].reads == {"ticket"}


def test_the_station_only_kinds() -> None:
    for kind in ("worker.create", "resident.redact"):
        assert {role for role, p in PERMISSIONS.items() if kind in p.writes} == {Role.STATION, Role.ADMIN}
    # every kind of a record (a device's "op N is lost" is any device's own, outside the role table)
    assert PERMISSIONS[Role.STATION].writes == KNOWN_KINDS - {LOST_KIND} and PERMISSIONS[Role.STATION].reads == TYPES


def test_the_field_roles() -> None:
    assert PERMISSIONS[Role.KNOCKER].writes == {
        "visit.create",
        "visit.set",
        "visit.note",
        "visit.attach",  # a photo of what the knocker found (issue 20)
        "visit.detach",
        "resident.note",
        "ticket.create",
        "ticket.note",
        "ticket.number",
    }
    # a courier reports what it sees outdoors (ticket.create) without holding tickets, and numbers its reports
    assert PERMISSIONS[Role.COURIER].writes == {k for k in KNOWN_KINDS if k.startswith("parcel.")} | {
        "ticket.create",
        "ticket.number",
    }
    assert PERMISSIONS[Role.COURIER].reads == {"parcel", "mailbox"}
    assert PERMISSIONS[Role.MEDIATOR].writes == {k for k in KNOWN_KINDS if k.startswith("ticket.")}
    assert PERMISSIONS[Role.KNOCKER].reads == {"resident", "visit"}
    grid_worker = PERMISSIONS[Role.GRID_WORKER]
    assert "resident.set" in grid_worker.writes and "resident.redact" not in grid_worker.writes
    assert "worker" in grid_worker.reads and not any(k.startswith("worker.") for k in grid_worker.writes)


def test_a_grid_covers_itself_and_what_lies_under_it() -> None:
    assert covers(["changnan/dorm"], "changnan/dorm")
    assert covers(["changnan/dorm"], "changnan/dorm/3")
    assert not covers(["changnan/dorm"], "changnan/dormitory")
    assert not covers(["changnan/dorm"], "changnan")
    assert covers(["xinan", "changnan/dorm/3"], "changnan/dorm/3")
    assert covers([EVERYWHERE], "anything/at/all")
    assert not covers([], "changnan")
