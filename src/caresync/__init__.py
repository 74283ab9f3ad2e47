"""caresync: offline-first sync for community-care work.

Every device keeps its own copy of the records it may see (a :class:`Replica`), works fully offline, and
merges with any other replica deterministically: conflicts are surfaced to people, nothing is lost.
"""

import importlib as _importlib
import logging as _logging
from typing import TYPE_CHECKING, Any

from caresync import _moved
from caresync._version import __version__

if TYPE_CHECKING:  # the names below are imported on first use (module __getattr__), which keeps start-up fast
    from caresync.core.clock import HybridClock
    from caresync.core.domain import (
        Channel,
        DisputeOutcome,
        EntityType,
        HopStage,
        Priority,
        ResidentFlag,
        Role,
        TicketAction,
        TicketKind,
        TicketStatus,
        VisitOutcome,
    )
    from caresync.core.media import MediaSettings
    from caresync.core.model import (
        Attachment,
        ClockAnomaly,
        Conflict,
        ConflictValue,
        HistoryEntry,
        Hop,
        Mailbox,
        MediationSession,
        Note,
        Parcel,
        Party,
        Rating,
        Resident,
        Ticket,
        Visit,
        Worker,
    )
    from caresync.errors import (
        BundleError,
        CaresyncError,
        ForgedOpError,
        IntentError,
        InvalidInputError,
        InvalidOpError,
        MergeError,
        NotFoundError,
        OpForkError,
        ServerRefusedError,
        ServerUnreachableError,
        StoreError,
        StoreVersionError,
        SyncError,
        TrustError,
    )
    from caresync.replica import ApplyResult, Replica, SyncReport
    from caresync.sync.netsync import Refusal, SyncProgress, SyncResult
    from caresync.trust.keys import DeviceKey, StationKey

#: Where each public name lives: ``caresync.X`` imports its module the first time it is asked for, so that a
#: program that needs only the errors or the version (every ``--help``) never loads the replica and SQLAlchemy.
_WHERE: dict[str, str] = {
    "ApplyResult": "caresync.replica",
    "Attachment": "caresync.core.model",
    "BundleError": "caresync.errors",
    "CaresyncError": "caresync.errors",
    "Channel": "caresync.core.domain",
    "ClockAnomaly": "caresync.core.model",
    "Conflict": "caresync.core.model",
    "ConflictValue": "caresync.core.model",
    "DeviceKey": "caresync.trust.keys",
    "DisputeOutcome": "caresync.core.domain",
    "EntityType": "caresync.core.domain",
    "ForgedOpError": "caresync.errors",
    "HistoryEntry": "caresync.core.model",
    "Hop": "caresync.core.model",
    "HopStage": "caresync.core.domain",
    "HybridClock": "caresync.core.clock",
    "IntentError": "caresync.errors",
    "InvalidInputError": "caresync.errors",
    "InvalidOpError": "caresync.errors",
    "Mailbox": "caresync.core.model",
    "MediaSettings": "caresync.core.media",
    "MediationSession": "caresync.core.model",
    "MergeError": "caresync.errors",
    "NotFoundError": "caresync.errors",
    "Note": "caresync.core.model",
    "OpForkError": "caresync.errors",
    "Parcel": "caresync.core.model",
    "Party": "caresync.core.model",
    "Priority": "caresync.core.domain",
    "Rating": "caresync.core.model",
    "Refusal": "caresync.sync.netsync",
    "Replica": "caresync.replica",
    "Resident": "caresync.core.model",
    "ResidentFlag": "caresync.core.domain",
    "Role": "caresync.core.domain",
    "ServerRefusedError": "caresync.errors",
    "ServerUnreachableError": "caresync.errors",
    "StationKey": "caresync.trust.keys",
    "StoreError": "caresync.errors",
    "StoreVersionError": "caresync.errors",
    "SyncError": "caresync.errors",
    "SyncProgress": "caresync.sync.netsync",
    "SyncReport": "caresync.replica",
    "SyncResult": "caresync.sync.netsync",
    "Ticket": "caresync.core.model",
    "TicketAction": "caresync.core.domain",
    "TicketKind": "caresync.core.domain",
    "TicketStatus": "caresync.core.domain",
    "TrustError": "caresync.errors",
    "Visit": "caresync.core.model",
    "VisitOutcome": "caresync.core.domain",
    "Worker": "caresync.core.model",
}


def __getattr__(name: str) -> Any:
    """Imports the module of a public name the first time it is asked for (PEP 562) and keeps the name here."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'caresync' has no attribute {name!r}")
    value = getattr(_importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported public ones included."""
    return sorted(set(globals()) | set(__all__))


# A library reports through logging but never prints on its own: applications choose the handlers.
_logging.getLogger("caresync").addHandler(_logging.NullHandler())
# The module paths of caresync 0.1 keep working for one release, with a DeprecationWarning (see _moved).
_moved.install()

__all__ = [
    "ApplyResult",
    "Attachment",
    "BundleError",
    "CaresyncError",
    "Channel",
    "ClockAnomaly",
    "Conflict",
    "ConflictValue",
    "DeviceKey",
    "DisputeOutcome",
    "EntityType",
    "ForgedOpError",
    "HistoryEntry",
    "Hop",
    "HopStage",
    "HybridClock",
    "IntentError",
    "InvalidInputError",
    "InvalidOpError",
    "Mailbox",
    "MediaSettings",
    "MediationSession",
    "MergeError",
    "NotFoundError",
    "Note",
    "OpForkError",
    "Parcel",
    "Party",
    "Priority",
    "Rating",
    "Refusal",
    "Replica",
    "Resident",
    "ResidentFlag",
    "Role",
    "ServerRefusedError",
    "ServerUnreachableError",
    "StationKey",
    "StoreError",
    "StoreVersionError",
    "SyncError",
    "SyncProgress",
    "SyncReport",
    "SyncResult",
    "Ticket",
    "TicketAction",
    "TicketKind",
    "TicketStatus",
    "TrustError",
    "Visit",
    "VisitOutcome",
    "Worker",
    "__version__",
]
