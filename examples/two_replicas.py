"""Two replicas merging in one process: a station desk and a grid worker's phone edit the same request
offline, merge, see the conflict, and settle it with an ordinary edit.

Run: python examples/two_replicas.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from caresync import Replica


def main(folder: Path) -> None:
    with (
        Replica.open(folder / "station.db", actor="clerk-zhang") as station,
        Replica.open(folder / "phone.db", actor="grid-li") as phone,
    ):
        wang = station.residents.register(
            name="Old Wang", grid="changnan/teachers-dorm/3", flags=["lives_alone", "elderly"], knock_every_days=2
        )
        ticket = station.tickets.submit(
            title="Septic tank blocked", kind="repair", grid="changnan/teachers-dorm/3", resident_id=wang.id
        )
        phone.sync_with(station)  # both now hold the resident and the ticket

        station.tickets.edit(ticket.id, title="Septic tank blocked, 30 households")  # offline ...
        phone.tickets.edit(ticket.id, title="Septic tank overflowing")  # ... at the same time
        phone.tickets.accept(ticket.id, assignee="grid-li")
        station.sync_with(phone)

        for conflict in station.conflicts():
            print("conflict:", conflict.describe())
            station.resolve(conflict, "Septic tank blocked (30 households)")  # a later edit that saw both
        phone.sync_with(station)

        final = phone.tickets.get(ticket.id)
        print(f"{final.id}: {final.title!r}, {final.status.value}, assigned to {final.assignee}")
        print("same state on both:", phone.state_digest() == station.state_digest())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-example-")))
