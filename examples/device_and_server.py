"""A device syncing with a real sync server: the station desk and a grid worker's phone enrol with one-time codes,
then sync whenever they are online.

What it shows:
- a real ``caresync-server`` process (``caresync_server.testing.ServerProcess``) on a free port of 127.0.0.1,
  over an SQLite file in the folder, as ``caresync-server serve`` would run at a station;
- enrolment: the station issues a one-time code per device (``issue_code``, what ``caresync-server enroll``
  prints); each device claims it once with ``replica.enroll(url, code)``, and from then on ``replica.sync()``
  needs no address and no token;
- the station's key: made on the desk and registered with the server (``caresync.sync.stationkey``, or the
  ``caresync station-key`` commands); the phone learns it and seals residents' free text (names, titles, notes)
  to it, so the desk reads them and the server cannot;
- scope: the phone pulls only its grid's records (a request in another community never reaches it);
- work made offline on the phone reaches the station through the server;
- what the server refuses (a grid worker may not add a worker: only the station may) stays on the phone, with
  the server's reason, in ``replica.refusals()``; nothing is dropped.

Needs the server installed beside the library (``pip install -e . -e ./server``).

Run: python examples/device_and_server.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from caresync_server.testing import ServerProcess, issue_code

from caresync import Replica
from caresync.sync.stationkey import create_station_key, register_station_key


def main(folder: Path) -> None:
    database = f"sqlite:///{folder / 'server.db'}"
    desk_code = issue_code(database, "station-desk", role="station", grids=[""])  # "" = every grid
    phone_code = issue_code(database, "phone-grid-li", role="grid_worker", grids=["changnan/teachers-dorm"])
    print(f"enrolment codes: station desk {desk_code}, phone {phone_code}")

    server = ServerProcess(database, folder).start()
    try:
        with (
            Replica.open(folder / "station.db", actor="clerk-zhang") as desk,
            Replica.open(folder / "phone.db", actor="grid-li") as phone,
        ):
            desk.enroll(server.url, desk_code)
            create_station_key(desk)  # the station's key: its secret stays in the desk's replica file
            register_station_key(desk)  # devices learn its public half from the server, and pin it
            enrolled = phone.enroll(server.url, phone_code)
            print(f"phone enrolled as {enrolled.device} ({enrolled.role}, grids {list(enrolled.grids)})")

            wang = desk.residents.register(name="Old Wang", grid="changnan/teachers-dorm/3", flags=["lives_alone"])
            tank = desk.tickets.submit(
                title="Septic tank blocked", kind="repair", grid="changnan/teachers-dorm/3", resident_id=wang.id
            )
            desk.tickets.submit(title="Street lamp out", kind="repair", grid="xinhua/market")  # another community
            result = desk.sync()
            print(f"station desk: pushed {result.pushed}, pulled {result.pulled}")

            result = phone.sync()
            numbers = [t.number for t in phone.tickets.list()]  # titles are sealed to the station: the phone holds them
            print(f"phone: pulled {result.pulled}; its tickets: {numbers}")

            # on the phone, in a basement with no signal
            phone.tickets.accept(tank.id, assignee="grid-li")
            phone.tickets.resolve(tank.id, resolution="pipe cleared")
            phone.workers.add(name="Volunteer Fang", role="knocker")  # only the station may add workers
            print(f"phone, offline: {phone.unsent_count()} changes waiting")

            result = phone.sync()  # back in signal
            print(f"phone: pushed {result.pushed}, refused {len(result.refused)}, unsent {result.unsent}")
            for refusal in phone.refusals():
                print(f"refused and kept on the phone: {refusal.kind} ({refusal.code}): {refusal.reason}")

            desk.sync()
            print(f"station sees: {desk.tickets.get(tank.id).title!r} is {desk.tickets.get(tank.id).status.value}")
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-example-")))
