"""The role table (caresync.trust.scopes): its answers for each role, and docs/security.md, which prints it."""

from __future__ import annotations

from pathlib import Path

from caresync import Role
from caresync.trust.scopes import RecordScope, may_read, may_write, role_table_markdown

SECURITY = Path(__file__).parent.parent / "docs" / "security.md"
DORM = ("changnan/dorm",)


def test_docs_security_prints_the_role_table_as_the_code_has_it() -> None:
    page = SECURITY.read_text(encoding="utf-8")
    assert role_table_markdown() in page, (
        "docs/security.md is stale: paste the output of python -c "
        "'from caresync.trust.scopes import role_table_markdown; print(role_table_markdown())' "
        "into its section Roles and scopes"
    )


def test_what_each_field_role_may_hold() -> None:
    dispute = RecordScope("ticket", "changnan/dorm/3", "dispute")
    repair = RecordScope("ticket", "changnan/dorm/3", "repair")
    resident = RecordScope("resident", "changnan/dorm/3")
    parcel = RecordScope("parcel", "changnan/dorm/3")
    assert may_read(Role.MEDIATOR, DORM, dispute) and not may_read(Role.MEDIATOR, DORM, repair)
    assert not may_read(Role.MEDIATOR, DORM, resident)
    assert not may_read(Role.MEDIATOR, ("xinan",), dispute)
    assert may_read(Role.COURIER, DORM, parcel) and not may_read(Role.COURIER, DORM, resident)
    assert not may_read(Role.COURIER, DORM, dispute) and not may_read(Role.COURIER, DORM, repair)
    assert may_read(Role.KNOCKER, DORM, RecordScope("visit", "changnan/dorm/3"))
    assert not may_read(Role.KNOCKER, DORM, repair) and may_write(Role.KNOCKER, DORM, "ticket.create", repair)
    assert may_read(Role.GRID_WORKER, ("xinan",), RecordScope("worker", None))  # workers belong to no grid
    assert not may_write(Role.GRID_WORKER, DORM, "resident.redact", resident)
    assert may_write(Role.STATION, DORM, "resident.redact", resident)
    assert not may_read(Role.ADMIN, DORM, RecordScope("ticket", "changnan/dormitory", "repair"))
    assert may_read(Role.ADMIN, ("",), RecordScope("ticket", "anywhere", "repair"))
    assert not may_read(Role.COURIER, DORM, RecordScope("parcel", None))  # a record of unknown place is not held
