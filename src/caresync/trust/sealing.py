"""Sealing: which private fields of an op are sealed at capture, and sealing and opening them.

Free text (residents' names, addresses and phones, titles, what people say, reasons, comments, parties,
summaries) is sealed on the device that captures it, before the op is signed, to the station's key (and to the
readers' keys of the record's grid, :mod:`caresync.trust.gridkeys`); only
structure travels in clear (ids, kinds, statuses, grids, times, scores, outcomes, codes). The primitives (a sealed
box to an X25519 key) are in :mod:`caresync.trust.keys`.

The one sealing API, for the library and for anything built on it (attachments, other programs):

- :func:`sealed_paths` says which values of an op's body must be sealed (:data:`SEALED_FIELDS`,
  :data:`SEALED_SET_FIELDS`, :data:`SEALED_NESTED`);
- :func:`seal_body` seals them (on the capturing device, before the op is signed);
- :func:`unsealed_fields` names those still in clear: a device with no station key keeps such an op unsent, and
  the server refuses it (``422 unsealed_field``) once the deployment has a station key;
- :func:`open_sealed` opens what a key opens, for reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from caresync.errors import TrustError
from caresync.trust.keys import SEALED_PREFIXES, OpeningKey, StationKey, is_sealed, seal_value, unseal_value

__all__ = [
    "SEALED_FIELDS",
    "SEALED_NESTED",
    "SEALED_SET_FIELDS",
    "open_sealed",
    "seal_body",
    "sealed_paths",
    "unsealed_fields",
]

#: Body keys sealed at capture, by op kind: residents' personal data, titles, what people say, reasons, parties,
#: mediation content.
SEALED_FIELDS: dict[str, frozenset[str]] = {
    "resident.create": frozenset({"name", "address", "phone"}),
    "resident.note": frozenset({"text"}),
    "resident.redact": frozenset({"reason"}),
    "ticket.create": frozenset({"title", "description"}),
    "ticket.transition": frozenset({"reason"}),
    "ticket.note": frozenset({"text"}),
    "ticket.party": frozenset({"name", "side"}),
    "ticket.session": frozenset({"summary", "attendees"}),
    "visit.create": frozenset({"note"}),
    "visit.note": frozenset({"text"}),
    "parcel.create": frozenset({"summary"}),
    "parcel.hop": frozenset({"contents", "reason"}),
    # an attachment's blob key (whoever opens it opens the picture) and its caption
    **{f"{record}.attach": frozenset({"key", "caption"}) for record in ("resident", "ticket", "visit", "parcel")},
}
#: Fields whose ``<record>.set`` value is sealed whole, by record type.
SEALED_SET_FIELDS: dict[str, frozenset[str]] = {
    "resident": frozenset({"name", "address", "phone"}),
    "ticket": frozenset({"title", "description"}),
    "visit": frozenset({"note"}),
    "parcel": frozenset({"summary"}),
}
#: Fields whose ``<record>.set`` value is structure holding free text: only the keys named here are sealed inside
#: it (a rating's score stays in clear for the station's figures; its comment is sealed).
SEALED_NESTED: dict[str, dict[str, frozenset[str]]] = {
    "ticket": {"rating": frozenset({"comment"})},
}


def sealed_paths(kind: str, body: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The places in an op's body that hold free text and must be sealed: each a path of keys (``("name",)``,
    ``("value",)``, ``("value", "comment")``), whether or not a value is there."""
    if kind.endswith(".set"):
        record, field = kind[:-4], body.get("field")
        if field in SEALED_SET_FIELDS.get(record, frozenset()):
            return [("value",)]
        nested = SEALED_NESTED.get(record, {}).get(str(field))
        return [("value", key) for key in sorted(nested)] if nested else []
    return [(key,) for key in sorted(SEALED_FIELDS.get(kind, frozenset()))]


def _value_at(body: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = body
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
    return value


def _clear(value: Any) -> bool:
    """True when ``value`` holds text that is not sealed (a list of names counts when any item is in clear)."""
    if type(value) is list:
        return any(_clear(item) for item in value)
    return value is not None and not is_sealed(value)


def unsealed_fields(kind: str, body: Mapping[str, Any]) -> list[str]:
    """The fields of an op's body that must be sealed and hold a value in clear, as dotted paths
    (``"title"``, ``"value.comment"``); empty when everything private is sealed (or absent, or erased)."""
    return [".".join(path) for path in sealed_paths(kind, body) if _clear(_value_at(body, path))]


def seal_body(kind: str, body: dict[str, Any], station_public_key: bytes | Sequence[bytes]) -> dict[str, Any]:
    """``body`` with its private values (:func:`sealed_paths`) sealed to the station (its X25519 key), or to the
    station and the readers' keys of the record's grid (a list, the station's first: ``sealed:2:``); values
    already sealed, and None, are left as they are. A list (a session's attendees) is sealed whole."""
    sealed = dict(body)
    for path in sealed_paths(kind, body):
        value = _value_at(body, path)
        if not _clear(value):
            continue
        if len(path) == 1:
            sealed[path[0]] = seal_value(station_public_key, value)[0]
        else:  # a value inside structure (a rating's comment): copy the structure, seal the one value
            outer = dict(sealed[path[0]])
            outer[path[1]] = seal_value(station_public_key, value)[0]
            sealed[path[0]] = outer
    return sealed


def open_sealed(value: Any, key: OpeningKey | Sequence[OpeningKey], cache: dict[str, Any]) -> Any:
    """``value`` with every sealed string inside it opened with ``key`` (or the first of several keys that opens
    it: a station keeps the keys it rotated away from, a reader every version of its grids' readers' keys), nested
    lists and dicts too; a value that cannot be opened stays sealed. ``cache`` keeps opened values (opening costs
    about 50 µs)."""
    keys: tuple[OpeningKey, ...] = (
        (key,) if isinstance(key, StationKey) or not isinstance(key, Sequence) else tuple(key)
    )
    return _open(value, keys, cache)


def _open(value: Any, keys: tuple[OpeningKey, ...], cache: dict[str, Any]) -> Any:
    if type(value) is str:
        if not value.startswith(SEALED_PREFIXES):
            return value
        opened = cache.get(value, cache)
        if opened is cache:
            opened = value
            for key in keys:
                try:
                    opened = unseal_value(key, value)[0]
                    break
                except TrustError:
                    continue
            cache[value] = opened
        return opened
    if type(value) is list:
        return [_open(item, keys, cache) for item in value]
    if type(value) is dict:
        return {k: _open(v, keys, cache) for k, v in value.items()}
    return value
