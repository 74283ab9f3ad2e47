"""Sealing: which private fields of an op are sealed at capture, and sealing and opening them.

Free text about residents (names, addresses, phones, what people say) is sealed on the device that captures it,
before the op is signed, to the station's key; only structure travels in clear. The primitives (a sealed box to
an X25519 key) are in :mod:`caresync.trust.keys`.
"""

from __future__ import annotations

from typing import Any

from caresync.errors import TrustError
from caresync.trust.keys import StationKey, is_sealed, seal_value, unseal_value

__all__ = ["SEALED_FIELDS", "SEALED_SET_FIELDS", "open_sealed", "seal_body"]

#: Body keys sealed at capture, by op kind: residents' personal data, what people say, mediation content.
SEALED_FIELDS: dict[str, frozenset[str]] = {
    "resident.create": frozenset({"name", "address", "phone"}),
    "resident.note": frozenset({"text"}),
    "ticket.create": frozenset({"description"}),
    "ticket.transition": frozenset({"reason"}),
    "ticket.note": frozenset({"text"}),
    "ticket.party": frozenset({"name"}),
    "ticket.session": frozenset({"summary", "attendees"}),
    "visit.create": frozenset({"note"}),
    "visit.note": frozenset({"text"}),
    "parcel.create": frozenset({"summary"}),
    "parcel.hop": frozenset({"contents"}),
}
#: Fields whose ``<record>.set`` value is sealed, by record type.
SEALED_SET_FIELDS: dict[str, frozenset[str]] = {
    "resident": frozenset({"name", "address", "phone"}),
    "ticket": frozenset({"description"}),
    "visit": frozenset({"note"}),
    "parcel": frozenset({"summary"}),
}


def seal_body(kind: str, body: dict[str, Any], station_public_key: bytes) -> dict[str, Any]:
    """``body`` with its private values (:data:`SEALED_FIELDS`) sealed to the station; values already sealed,
    and None, are left as they are."""
    if kind.endswith(".set"):
        fields = SEALED_SET_FIELDS.get(kind[:-4], frozenset())
        keys: frozenset[str] | tuple[str, ...] = ("value",) if body.get("field") in fields else ()
    else:
        keys = SEALED_FIELDS.get(kind, frozenset())
    sealed = dict(body)
    for key in keys:
        value = body.get(key)
        if value is not None and not is_sealed(value):
            sealed[key] = seal_value(station_public_key, value)[0]
    return sealed


def open_sealed(value: Any, key: StationKey, cache: dict[str, Any]) -> Any:
    """``value`` with every sealed string inside it opened with ``key`` (nested lists and dicts too); a value
    that cannot be opened stays sealed. ``cache`` keeps opened values (opening costs about 50 µs)."""
    if type(value) is str:
        if not value.startswith("sealed:1:"):
            return value
        opened = cache.get(value, cache)
        if opened is cache:
            try:
                opened = unseal_value(key, value)[0]
            except TrustError:
                opened = value
            cache[value] = opened
        return opened
    if type(value) is list:
        return [open_sealed(item, key, cache) for item in value]
    if type(value) is dict:
        return {k: open_sealed(v, key, cache) for k, v in value.items()}
    return value
