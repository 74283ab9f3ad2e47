"""The exceptions caresync raises, all under one root.

::

    CaresyncError
    ├── InvalidInputError        a call or an op has a field that is wrong (names the field)
    │   └── InvalidOpError       an op received from another replica fails validation
    │       └── ForgedOpError    an op's signature is missing, not its device's, or does not match
    ├── NotFoundError            no record with that id on this replica
    ├── IntentError              the action makes no sense now (closing an unresolved ticket, ...)
    ├── MergeError               two replicas disagree about an op's identity
    │   └── OpForkError          the same (origin, seq) arrived with different content
    ├── StoreError               the replica file cannot be opened, read or written
    │   └── StoreVersionError    the file was written by a newer caresync
    ├── TrustError               a signature, key or sealed value does not check out
    ├── BundleError              a relay bundle file is damaged, expired, or meant for another device
    └── SyncError                the sync server could not be reached, or answered with an error
        ├── ServerUnreachableError  no answer: no connection, or none within the timeouts
        └── ServerRefusedError   the server refused the request (token, device, batch): names why

Each error has a stable ``code`` (for programs and the JSON error envelope), the ``exit_code`` the programs end
with (docs/errors.md has the one table), and a message that names the object, the id and what to do next, in
words a courier or a station clerk can act on. An error may also carry ``key`` and ``fields``: the name of its
message and the values in it (a ticket's number, a status), so a program can say it again in the reader's
language with the names people use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BundleError",
    "CaresyncError",
    "ForgedOpError",
    "IntentError",
    "InvalidInputError",
    "InvalidOpError",
    "MergeError",
    "NotFoundError",
    "OpForkError",
    "ServerRefusedError",
    "ServerUnreachableError",
    "StoreError",
    "StoreVersionError",
    "SyncError",
    "TrustError",
    "envelope",
]


def envelope(code: str, message: str, details: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The JSON error envelope of every caresync program and of the server's API:
    ``{"error": {"code", "message", "details": [{"field", "problem"}, ...]}}``."""
    return {"error": {"code": code, "message": message, "details": [dict(d) for d in details]}}


class CaresyncError(Exception):
    """Root of every error caresync raises on purpose."""

    code: str = "caresync_error"
    #: The exit code a program ends with after this error: 1, the command could not be done.
    exit_code: int = 1

    def __init__(self, message: str, *, key: str | None = None, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The name of the message, for a program to say it in another language (None: only ``message``).
        self.key = key
        #: The values the message names (``number``, ``status``, ...), as structured data.
        self.fields: dict[str, Any] = dict(fields or {})

    def envelope_details(self) -> list[dict[str, str]]:
        """What is wrong, field by field, for the ``details`` of the JSON error envelope (empty by default)."""
        return []

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidInputError(CaresyncError):
    """Input failed validation; ``problems`` lists ``(field, what is wrong)`` pairs."""

    code = "invalid_input"

    def __init__(
        self,
        message: str,
        problems: Sequence[tuple[str, str]] = (),
        *,
        key: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.problems = list(problems)
        #: The message before the problems were added to it (a program shows the problems in its own words).
        self.headline = message
        if self.problems:
            detail = "; ".join(f"{field}: {msg}" for field, msg in self.problems)
            message = f"{message} ({detail})"
        super().__init__(message, key=key, fields=fields)

    def envelope_details(self) -> list[dict[str, str]]:
        """One ``{"field", "problem"}`` per problem."""
        return [{"field": field, "problem": problem} for field, problem in self.problems]


class InvalidOpError(InvalidInputError):
    """An op received from elsewhere is malformed; the whole batch is refused and nothing changes."""

    code = "invalid_op"


class ForgedOpError(InvalidOpError):
    """An op's signature is missing, was made by another device's key, or does not match its content."""

    code = "bad_signature"


class NotFoundError(CaresyncError):
    """No record of that kind and id exists on this replica (yet)."""

    code = "not_found"


class IntentError(CaresyncError):
    """A local action that makes no sense in the record's current state."""

    code = "invalid_action"


class MergeError(CaresyncError):
    """Replicas disagree about the identity of an op; nothing was applied."""

    code = "merge_error"


class OpForkError(MergeError):
    """Two different ops carry the same ``(origin, seq)``: a device was cloned or restored from backup."""

    code = "op_fork"


class StoreError(CaresyncError):
    """The replica file could not be opened, read or written."""

    code = "store_error"


class StoreVersionError(StoreError):
    """The replica file was written by a newer caresync than this one."""

    code = "store_version"


class SyncError(CaresyncError):
    """A sync with the server did not finish. Nothing is lost: what was done is kept, the rest waits."""

    code = "sync_failed"
    #: A program ends with 3: nothing is lost, try again later.
    exit_code = 3


class ServerUnreachableError(SyncError):
    """The sync server did not answer: no connection (no network, server down, wrong address), or no answer within
    the connect timeout or the sync's deadline. Nothing is lost; sync again when the network is back."""

    code = "server_unreachable"


class ServerRefusedError(SyncError):
    """The sync server refused a request; ``server_code`` and ``status`` are what it answered."""

    code = "server_refused"
    #: A program ends with 4: the server refused this device or its work; ask the station.
    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        status: int,
        server_code: str,
        key: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, key=key, fields=fields)
        self.status = status
        self.server_code = server_code


class TrustError(CaresyncError):
    """A signature, a key or a sealed value does not check out: forged, altered, or meant for someone else."""

    code = "trust_failed"


class BundleError(CaresyncError):
    """A relay bundle cannot be used: damaged, forged, expired, or meant for another device. Nothing changed."""

    code = "bundle_refused"
