"""caresync: offline-first sync for community-care work.

Every device keeps its own copy of the records it may see (a :class:`Replica`), works fully offline, and
merges with any other replica deterministically: conflicts are surfaced to people, nothing is lost.
"""

import logging as _logging

from caresync import _moved
from caresync._version import __version__
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
