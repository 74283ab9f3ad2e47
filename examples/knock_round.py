"""A door-knock round: a knocker records visits offline; a no-answer becomes an early-warning request
that the station sees after the knocker syncs.

Run: python examples/knock_round.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from caresync import Replica


def main(folder: Path) -> None:
    grid = "changnan/teachers-dorm/3"
    with (
        Replica.open(folder / "station.db", actor="clerk-zhang") as station,
        Replica.open(folder / "knocker.db", actor="knocker-fang") as knocker,
    ):
        wang = station.residents.register(name="Old Wang", grid=grid, flags=["lives_alone"], knock_every_days=2)
        liu = station.residents.register(name="Grandma Liu", grid=grid, flags=["elderly"], knock_every_days=7)
        knocker.sync_with(station)

        # in the stairwell, no signal
        knocker.visits.record(resident_id=liu.id, outcome="well", note="making dumplings")
        visit = knocker.visits.record(resident_id=wang.id, outcome="no_answer", note="knocked twice, lights off")
        alert = knocker.tickets.submit(
            title="Old Wang did not answer",
            kind="early_warning",
            grid=grid,
            channel="door_knock",
            resident_id=wang.id,
            visit_id=visit.id,
            priority="green",
        )
        knocker.visits.edit(visit.id, ticket_id=alert.id)

        knocker.sync_with(station)  # back on the street
        for t in station.tickets.list(status="submitted"):
            print(f"station sees: {t.title} ({t.kind.value}, {t.priority.value}), due {t.due_at:%Y-%m-%d %H:%M}")
        for v in station.visits.list():
            print(f"visit: {v.resident_id} by {v.visitor}: {v.outcome.value}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-example-")))
