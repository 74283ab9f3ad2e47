"""Child process for tests/test_attachments_crash.py: syncs one device file with a server until it is killed.

Usage: python blob_sync_child.py DEVICE_DB URL TOKEN

Prints ``chunk <phase> <done>`` (one ``os.write`` each) after every blob chunk the sync moved, and ``done`` at the
end. The parent kills it with SIGKILL part-way, at a random chunk.
"""

from __future__ import annotations

import os
import sys

from caresync import Replica, SyncProgress


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main() -> None:
    path, url, token = sys.argv[1], sys.argv[2], sys.argv[3]

    def progress(p: SyncProgress) -> None:
        if p.phase.startswith("blobs_"):
            say(f"chunk {p.phase} {p.done}")

    with Replica.open(path, actor="child") as replica:
        replica.sync(url, token=token, progress=progress)
    say("done")


if __name__ == "__main__":
    main()
