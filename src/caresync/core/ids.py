"""Identities: of ops, of records, and the human-readable ticket numbers people use.

An op is ``(origin, seq)``: the device that made it (its key's fingerprint) and that device's own gap-free
counter. A record is named by the op that created it (``T-3f9a0c1d2b4e5f60-17``), so ids are unique without
coordination. A ticket number is what people say and type: digits from a block the server reserved for the
device, or, before it has one, a provisional number: the device id and a counter of its own.
"""

from __future__ import annotations

from caresync.core.domain import EntityType

__all__ = ["BLOCK_NUMBER_PATTERN", "ENTITY_PREFIX", "NUMBER_PATTERN", "entity_id_for", "is_provisional", "op_id"]

#: A ticket number: digits from a reserved block, or ``<device id>-<counter>`` (a provisional number).
NUMBER_PATTERN = r"^(?:[1-9][0-9]{0,11}|[0-9a-f]{16}-[1-9][0-9]{0,11})$"
#: A number from a server-reserved block: the only kind a ``ticket.number`` op may give.
BLOCK_NUMBER_PATTERN = r"^[1-9][0-9]{0,11}$"


def is_provisional(number: str | None) -> bool:
    """True for a provisional ticket number (``<device id>-<n>``), which the device replaces at its next sync."""
    return number is not None and "-" in number


ENTITY_PREFIX: dict[EntityType, str] = {
    EntityType.RESIDENT: "R",
    EntityType.WORKER: "W",
    EntityType.TICKET: "T",
    EntityType.VISIT: "V",
    EntityType.MAILBOX: "M",
    EntityType.PARCEL: "P",
}


def op_id(origin: str, seq: int) -> str:
    """The text form of an op's identity, ``origin:seq``, used in references between ops."""
    return f"{origin}:{seq}"


def entity_id_for(entity: EntityType, origin: str, seq: int) -> str:
    """The id of a record created by op ``(origin, seq)``: unique without coordination, e.g. ``T-3f9a…-17``."""
    return f"{ENTITY_PREFIX[entity]}-{origin}-{seq}"
