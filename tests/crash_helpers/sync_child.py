"""Child process for tests/test_crash.py: syncs a destination replica from a source until it is killed.

Usage: python sync_child.py SRC DST BATCH_SIZE [STALL_AT]

Opens SRC and DST (creating DST) with ``Replica.open``, prints ``started <dst replica id>`` and runs
``dst.sync_with(src, batch_size=BATCH_SIZE)``; prints ``done <ops received>`` if it is not killed first.

Nothing in the library's behaviour is changed. The script wraps the destination store's SQLite connection
in a pass-through that *reports* the statements it forwards, and so the transaction boundaries, on stdout,
so the parent knows where the child was when it was killed:

    begin          after ``BEGIN IMMEDIATE`` ran (a write transaction is open)
    insert-ops N   just before the ``INSERT INTO ops`` of N ops runs
    committing     just before ``COMMIT`` runs
    commit         after ``COMMIT`` returned

Every line is written with one ``os.write`` on the unbuffered stdout pipe, so what the parent reads after
the kill is exactly what the child had reported. With STALL_AT = k > 0 the child pauses (sleeps) inside its
k-th sync transaction right after the ops were inserted and before the records are materialised, and prints
``stalled``: a crash point the parent can hit deterministically. The pause only delays; it changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import Any

from caresync import Replica


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main() -> None:
    src_path, dst_path, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stall_at = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    transactions = 0

    class Watched:
        """Forwards every call to the real connection; reports transaction boundaries and op inserts."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self._db = db

        def execute(self, statement: str, params: Any = ()) -> Any:
            nonlocal transactions
            if statement == "COMMIT":
                say("committing")
            result = self._db.execute(statement, params)
            if statement.startswith("BEGIN"):
                transactions += 1
                say("begin")
            elif statement == "COMMIT":
                say("commit")
            return result

        def executemany(self, statement: str, rows: Any) -> Any:
            inserting = statement.startswith("INSERT INTO ops")
            if inserting:
                say(f"insert-ops {len(rows)}")
            result = self._db.executemany(statement, rows)
            if inserting and transactions == stall_at:
                say("stalled")
                time.sleep(600)
            return result

        def __getattr__(self, name: str) -> Any:
            return getattr(self._db, name)

    with Replica.open(src_path, actor="crash-src") as src, Replica.open(dst_path, actor="crash-dst") as dst:
        dst.device_log.store._db = Watched(dst.device_log.store._db)  # type: ignore[assignment]
        say(f"started {dst.id}")
        report = dst.sync_with(src, batch_size=batch_size)
        say(f"done {report.received}")


if __name__ == "__main__":
    main()
