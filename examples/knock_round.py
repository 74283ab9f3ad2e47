"""A door-knock round: a knocker of the "one-metre ding-dong" team records visits offline; a door nobody
answers becomes an early-warning request on the green channel, which the station sees once the knocker's phone
syncs with the station desk (in one process here, with ``sync_with``; through a server it is ``replica.sync()``,
as in device_and_server.py).

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
            who = station.residents.get(v.resident_id).name
            request = v.ticket_id or "no request"
            print(f"visit: {who} by {v.visitor} at {v.visited_at:%H:%M}: {v.outcome.value} ({request})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-example-")))
