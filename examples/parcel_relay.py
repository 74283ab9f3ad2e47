"""A parcel's journey with a relay bundle: a courier's phone with no data plan picks up an envelope at a lane
mailbox, writes its work as a signed bundle, another courier carries the bundle to a real sync server and brings
the server's answer back.

What it shows:
- a real ``caresync-server`` process (``caresync_server.testing.ServerProcess``) over an SQLite file in the folder;
  the station and both couriers enrol with one-time codes (``issue_code`` + ``replica.enroll``);
- sealing: the station makes its key on its own device and registers its public half with the server
  (``caresync.sync.stationkey``: ``create_station_key``, ``register_station_key``; the ``caresync station-key``
  commands do the same), the couriers receive it when they enrol and pin it, and what the resident asks for is
  sealed to the station at pick-up
  (``caresync.field.courier.pickup(..., contents=...)``); neither the carrying courier nor the server can read it;
- the relay (``caresync.sync.bundles``): ``write_bundle`` on the phone with no network, ``Bag.take`` and
  ``deliver`` on the carrier's handheld, ``Bag.export_answers`` for the phone, ``import_answers`` on the phone:
  its work is acknowledged, and the answer brings what the station did meanwhile (a reply to deliver);
- the station reads the sealed contents opened (it holds the key), and the content hash taken at pick-up proves
  them intact (``caresync.field.custody.check_contents``).

The couriers' command, ``caresync-courier``, does the same with ``bundle export``, ``carry import``, ``sync``,
``carry export`` and ``bundle import`` (docs/courier.md). Needs the server installed beside the library.

Run: python examples/parcel_relay.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from caresync_server.testing import ServerProcess, issue_code

from caresync import Replica
from caresync.field import courier
from caresync.field.custody import check_contents
from caresync.sync.bundles.bag import Bag
from caresync.sync.bundles.relay import deliver, import_answers, write_bundle
from caresync.sync.enrolment import current_token
from caresync.sync.stationkey import create_station_key, register_station_key

REQUEST = "低保证明申请 / a request for a low-income certificate: Old Wang, room 302"


def _bytes_of(folder: Path, name: str) -> bytes:
    """An SQLite file and its journals, as they lie on disk."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob(name + "*")))


def main(folder: Path) -> None:
    database = f"sqlite:///{folder / 'server.db'}"
    codes = {
        "station": issue_code(database, "station-desk", role="station", grids=[""]),
        "chen": issue_code(database, "courier-chen", role="courier", grids=["changnan"]),
        "zhou": issue_code(database, "courier-zhou", role="courier", grids=["changnan"]),
    }
    server = ServerProcess(database, folder).start()
    try:
        with (
            Replica.open(folder / "station.db", actor="clerk-zhang") as station,
            Replica.open(folder / "chen.db", actor="courier-chen") as chen,
            Replica.open(folder / "zhou.db", actor="courier-zhou") as zhou,
        ):
            # the station: its key (the secret stays in the station's replica file), a mailbox in a lane
            station.enroll(server.url, codes["station"])
            create_station_key(station)
            register_station_key(station)
            station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7")
            station.sync()

            # both couriers enrol once, on the station's wifi
            chen.enroll(server.url, codes["chen"])
            zhou.enroll(server.url, codes["zhou"])
            chen.sync()

            # Chen's phone has no data plan: the pick-up stays on it, sealed, until a bundle carries it
            courier.pickup(chen, "E-1001", mailbox="MB-07", contents=REQUEST)
            bundle = write_bundle(chen, folder / "chen.bundle")
            print(f"Chen's phone wrote a bundle of {len(bundle['ops'])} signed ops; unsent: {chen.unsent_count()}")

            # meanwhile the station registers a reply for a resident of the lane
            station.parcels.register(code="R-2001", grid="changnan/lane-7", direction="to_resident")
            station.sync()

            # Zhou, who has signal, carries Chen's bundle to the server and the answer back
            now = bundle["created_ms"]
            with Bag(folder / "zhou-bag.db") as bag:
                bag.take(folder / "chen.bundle", now_ms=now)
                token = current_token(zhou) or ""
                for done in deliver(bag, server.url, token=token, courier="courier-zhou", now_ms=now):
                    print(f"Zhou delivered bundle {done.bundle}: {done.status}, {done.stored} ops stored")
                bag.export_answers(chen.id, folder / "answers-for-chen.bundle", now_ms=now)
            carried = _bytes_of(folder, "zhou-bag.db") + (folder / "answers-for-chen.bundle").read_bytes()
            print("Zhou's bag holds the request in clear:", REQUEST.encode() in carried)

            got = import_answers(chen, folder / "answers-for-chen.bundle")
            print(f"Chen imported the answer: {got.acked} ops acknowledged, {got.received} received")
            reply = chen.parcels.by_code("R-2001")
            print(f"Chen's phone: unsent {chen.unsent_count()}; to deliver: {reply.code if reply else 'nothing'}")

            # the station syncs and reads what the resident asked for (it holds the key), and checks the seal
            station.sync()
            parcel = station.parcels.by_code("E-1001")
            assert parcel is not None
            hop = parcel.hops[-1]
            print(f"station: E-1001 {hop.stage.value} by {hop.actor} at {hop.place}; it asks: {hop.contents}")
            checks = check_contents(station, parcel.id)
            print("contents intact since the pick-up:", bool(checks) and all(c.intact for c in checks))
            print(
                "the server's database holds the request in clear:", REQUEST.encode() in _bytes_of(folder, "server.db")
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-example-")))
