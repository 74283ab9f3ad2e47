"""A parcel's chain of custody: dropped in a lane mailbox, picked up by a courier, handed in at the station,
and what the station sees when two couriers both picked it up offline.

Run: python examples/parcel_journey.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from caresync import Replica


def main(folder: Path) -> None:
    with (
        Replica.open(folder / "station.db", actor="clerk-zhang") as station,
        Replica.open(folder / "courier-a.db", actor="courier-chen") as a,
        Replica.open(folder / "courier-b.db", actor="courier-zhou") as b,
    ):
        box = station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7")
        parcel = station.parcels.register(code="P-0417", grid="changnan/lane-7", mailbox_id=box.id)
        station.parcels.hop(parcel.id, "dropped", place="MB-07")
        a.sync_with(station)
        b.sync_with(station)

        a.parcels.hop(parcel.id, "picked_up", place="MB-07")  # both couriers, offline
        b.parcels.hop(parcel.id, "picked_up", place="MB-07")
        station.sync_with(a)
        station.sync_with(b)
        for conflict in station.parcels.get(parcel.id).conflicts:
            print("to review:", conflict.describe())

        a.sync_with(station)
        a.parcels.hop(parcel.id, "handed_in", place="station")  # the next hand-over settles it
        station.sync_with(a)
        got = station.parcels.get(parcel.id)
        for hop in got.hops:
            print(f"{hop.at:%H:%M:%S} {hop.stage.value:<10} by {hop.actor} at {hop.place}")
        print("open custody conflicts:", len(got.conflicts))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-example-")))
