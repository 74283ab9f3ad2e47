"""``python -m caresync_server.simulated``: the sync server with a simulated clock, for simulations that move
time through days (``caresync demo``).

It is the same app as ``caresync-server serve`` (``create_app``), on one process and loopback, except that its
wall clock is read from a file the simulation writes (milliseconds since the epoch, as text): tokens expire,
enrolment codes run out and device clocks are corrected against simulated time, so a week of work can run in
seconds and the same run gives the same result every time. Never use it for a real station.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from .app import create_app
from .settings import Settings
from .storage import Storage

__all__ = ["file_clock", "main"]


def file_clock(path: Path) -> Callable[[], int]:
    """A wall clock that reads the simulated time (ms, as text) from ``path`` at every call."""

    def now_ms() -> int:
        return int(path.read_text(encoding="ascii").strip())

    return now_ms


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the server on ``--host``/``--port`` over ``CARESYNC_DATABASE_URL``, its clock read from ``--clock-file``."""
    parser = argparse.ArgumentParser(prog="python -m caresync_server.simulated", description=__doc__)
    parser.add_argument("--clock-file", type=Path, required=True, help="A file holding the simulated time in ms.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    clock = file_clock(args.clock_file)
    storage = Storage(settings, now_ms=clock)
    try:
        storage.ensure_schema(create=True)
    finally:
        storage.close()
    uvicorn.run(create_app(settings, now_ms=clock), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
