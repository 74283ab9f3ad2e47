"""Child process for tests/test_netsync_e2e.py: syncs one device file with a server until it is killed.

Usage: python net_sync_child.py DEVICE_DB URL TOKEN BATCH

Prints ``batch <phase> <done>`` (one ``os.write`` each, so the parent reads exactly what was reported) after
every batch the sync commits, and ``done`` at the end. The parent kills it with SIGKILL part-way.
"""

from __future__ import annotations

import os
import sys

from caresync import Replica, SyncProgress


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main() -> None:
    path, url, token, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def progress(p: SyncProgress) -> None:
        say(f"batch {p.phase} {p.done}")

    with Replica.open(path, actor="child") as replica:
        replica.sync(url, token=token, push_batch=batch, pull_batch=batch, progress=progress)
    say("done")


if __name__ == "__main__":
    main()
