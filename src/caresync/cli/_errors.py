"""The one error map of caresync's programs: exit codes and the JSON error envelope, shared by ``caresync`` and
``caresync-courier`` (docs/errors.md has the table).

A program turns every failure into one line for a person and, with ``--json``, this envelope on stdout; the exit
code says what kind of failure it was, so a script can tell "try again later" from "fix the command".
"""

from __future__ import annotations

import json

from caresync.errors import CaresyncError, ServerRefusedError, SyncError

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OFFLINE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_SERVER_REFUSED",
    "EXIT_USAGE",
    "error_envelope",
    "exit_code_for",
]

#: The command did what it was asked.
EXIT_OK = 0
#: The command could not be done: a rule of the work, a record not found, bad input, a file that cannot be used.
EXIT_REFUSED = 1
#: The command was typed wrong (an unknown option, a missing argument): its help says how.
EXIT_USAGE = 2
#: The sync server could not be reached, or failed: nothing was lost; try again later.
EXIT_OFFLINE = 3
#: The sync server refused this device or its work (revoked, out of scope): ask the station.
EXIT_SERVER_REFUSED = 4
#: The person stopped the command (Ctrl-C).
EXIT_INTERRUPTED = 130


def exit_code_for(exc: CaresyncError) -> int:
    """The exit code for a library error: the server's refusal, the server out of reach, or anything else."""
    if isinstance(exc, ServerRefusedError):
        return EXIT_SERVER_REFUSED
    if isinstance(exc, SyncError):
        return EXIT_OFFLINE
    return EXIT_REFUSED


def error_envelope(code: str, message: str) -> str:
    """The JSON error envelope every program prints with ``--json``: ``{"error": {"code", "message"}}``."""
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)
