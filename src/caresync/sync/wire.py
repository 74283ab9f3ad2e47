"""The compact wire form of a sync envelope: ops stored by column, then deflated with a preset dictionary.

A sync envelope is a JSON object whose ``"ops"`` member is a list of ops (see :mod:`caresync.core.ops`), with any
other members beside it (cursor, clock, counts). Sent as plain JSON and deflated, an op costs about 21 bytes on
the wire in a large batch, because every op repeats its keys, its device id and two large clock values. The
compact form (media type :data:`MEDIA_TYPE`) keeps the same envelope but turns the ops into columns:

* ``origins``: the batch's device ids, once each; everywhere else a device is its index in this list, including
  inside record ids and op references (``<device>:<seq>`` travels as ``[index, seq]``, or as the seq alone for
  the first device);
* ``eid``: record ids ``T-<device>-<seq>`` as three columns, the letter (an index into a table), the device
  (an index into ``origins``) and the seq; an id of any other form is listed in ``raw`` by position;
* ``kind``, ``actor``: a table of the distinct values and one small index per op;
* ``seq`` and the wall-clock half of ``hlc`` (``hw``): differences from the previous op, mostly 0 or 1 in a
  batch sorted by origin and seq; ``hc``: the counter half of ``hlc``; ``at``: its difference from ``hw``;
* ``v``: one number when every op has the same version;
* ``set``: the bodies of ``<record>.set`` ops (by far the most common) as three columns, field, value and
  replaced ops; ``body``: every other body as it is, ``null`` where the ``set`` columns hold it.

* signatures (``sig``, see :mod:`caresync.trust.signing`): the signers' public keys once each, and per op an index
  into them (left out when it is the op's device index, as it always is for honest ops); the keys and the
  64-byte signatures themselves travel as raw bytes after the compressed part, since they do not compress.
* links (``pd``, see :mod:`caresync.trust.signing`): only where the receiver cannot derive it, that is where the
  op before it in the batch from the same device is not its predecessor (seq - 1): after a gap, at the start
  of a batch, in a pull filtered by scope. ``links`` lists those ops' positions as differences from the
  previous one (mostly 1, or none at all); the 16-byte links travel raw after the signatures. A decoded op
  lacks ``pd`` where it was left out: :func:`caresync.trust.signing.verify_ops` derives it from its predecessor.

The columns travel as one positional list, without keys (see ``_pack``): ``[n, v, kind, origin, seq, hw, hc,
eid, actor, at, body, set, origins, keys, key, unsigned, links]``, where a table column with one value is just
``[table]``, an all-zero column is ``[]``, ``body`` is ``[]`` when every body is in ``set``, ``keys`` is the
number of public keys, ``key`` is ``[]`` when every op is signed by its device's key, and ``unsigned`` lists the
ops without a signature (inside a run, whose last signature pins them: see :mod:`caresync.trust.signing`), as
differences of positions in format 3 and as positions in format 2; an empty batch is ``[0]``. That JSON is
compressed with raw deflate and a preset dictionary of the words every batch uses (kinds, field names, body
keys, the column skeleton), so even a batch of ten ops compresses well: framing is most of a small batch.
Layout: ``b"CS"``, a format byte (3; format 2 is read too), a compression byte (1 = raw deflate with
dictionary 1), the deflate stream, then the public keys (32 bytes each), the signatures of the signed ops in
order (64 bytes each), and the links that travel (16 bytes each).
Decoding checks
every column and refuses anything else with :class:`~caresync.errors.InvalidInputError`; the ops it returns
still go through :func:`caresync.core.ops.validate_ops` like any others.

The dictionary belongs to format 1 and never changes: a different dictionary is a new format byte.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Mapping, Sequence
from itertools import accumulate, filterfalse, islice
from operator import sub
from typing import Any

from pydantic_core import from_json, to_json

from caresync.errors import InvalidInputError

__all__ = ["FORMAT", "FORMATS", "MAX_DECODED_BYTES", "MEDIA_TYPE", "decode_envelope", "encode_envelope"]

#: The HTTP media type of the compact form.
MEDIA_TYPE = "application/x-caresync-batch"
#: A compact envelope may not inflate to more than this (protects a server from a "zip bomb").
MAX_DECODED_BYTES = 64 * 1024 * 1024

_MAGIC = b"CS"
#: The format this library writes by default; it reads every format in :data:`FORMATS`.
FORMAT = 3
#: Formats this library reads: 2, and 3, which lists the ops without a signature as differences of positions.
FORMATS = (2, 3)
_KEY = 32
_SIG = 64
_LINK = 16
_DEFLATE_DICT_1 = 1
_HLC_SHIFT = 20
_HLC_MASK = (1 << _HLC_SHIFT) - 1
_EID_RE = re.compile(r"([A-Z])-([0-9a-f]{16})-([1-9][0-9]{0,17})")  # used with fullmatch: "$" would let "\n" in
_REF_RE = re.compile(r"([0-9a-f]{16}):([1-9][0-9]{0,17})")

# Words every batch uses, most common last (deflate finds late bytes with the shortest distances).
# Frozen for format 1: never edit this string; a new dictionary needs a new compression byte.
_DICT_1 = (
    b'"attendees":["mediator":"held_at":"summary":"side":"party""session""confirm_code":"place":"stage":'
    b'"dropped""picked_up""at_station""out_for_delivery""delivered""returned""direction":"to_station"'
    b'"to_resident""mailbox_id":"parcel_id":"code":"location":"visitor":"visited_at":"outcome":"well"'
    b'"needs_help""unwell""no_answer""hospitalised""emergency""moved""ticket_id":"knock_every_days":'
    b'"birth_year":"flags":["lives_alone""elderly""left_behind_child""address":"phone":"name":"role":'
    b'"grids":["courier""knocker""grid_worker""mediator""station""admin""fields":["reason":"to_grid":'
    b'"assignee_replaces":["action":"accept""start""resolve""close""cancel""escalate""reopen""confirm"'
    b'"rating":{"score":"comment":"deleted":true"deleted":false"channel":"walk_in""wish_box""mailbox"'
    b'"door_knock""outdoor_report""phone""proxy""kind":"repair""dispute""legal_aid""counselling"'
    b'"volunteer_help""errand""wish""early_warning""sentiment""other""due_at":"resident_id":"visit_id":'
    b'"text":"grid":"priority":"low""normal""high""green""description":"title":'
    b'"resident.create""resident.set""resident.note""resident.redact""worker.create""worker.set"'
    b'"visit.create""visit.set""visit.note""mailbox.create""mailbox.set""parcel.create""parcel.set"'
    b'"parcel.hop""ticket.create""ticket.transition""ticket.note""ticket.party""ticket.session"'
    b'"follows":["ticket.set""assignee""field":"title","value":"field":"description","value":'
    b'"field":"priority","value":"replaces":["},{"field":"value":null"replaces":[]}'
    b'{"ops":[0],"ops":[1,1,[["ticket.create"]],[],[1],[0],[0],[["T"],[],[],[1]],[["'
    b'{"ops":[10,1,[["ticket.set"]],[],[1,1,1,1,1,1,1,1,1],[0,0,0,0,0,0,0,0,0],[0,1,2,3,4,5,6,7,8,9],[["T"],[],[],['
    b'],[["station"]],[],[],[[["title","priority","description"],[0,0,0,0,0,0,0,0,0,0]],["'
    b'"],[['
    b"],["
    b']]],["'
    b'"]],"cursor":"'
    b'","more":false,"server_time_ms":'
    b',"clock_offset_ms":0}'
)


def _dictionary(values: Sequence[Any]) -> dict[str, list[Any]]:
    table: dict[Any, int] = {}
    index = [table.setdefault(value, len(table)) for value in values]
    return {"t": list(table), "i": index}


def _deltas(values: list[int]) -> list[int]:
    return list(map(sub, values, [0, *values[:-1]]))


class _Origins:
    """The batch's device ids, so that ids of records and of ops can name them by a small index."""

    def __init__(self) -> None:
        self.table: dict[str, int] = {}

    def index(self, origin: str) -> int:
        return self.table.setdefault(origin, len(self.table))

    def indexes(self, origins: Sequence[str]) -> list[int]:
        """:meth:`index` of each."""
        table = self.table
        return [table.setdefault(origin, len(table)) for origin in origins]

    def eids(self, eids: Sequence[str]) -> dict[str, Any]:
        """Record ids ``T-<origin>-<seq>`` as three columns (letter index, origin index, seq); ids of any other
        form are listed in ``raw`` by position, with zeros in the columns."""
        letters: dict[str, int] = {}
        table = self.table
        p, o, n = [], [], []
        raw_at, raw = [], []
        fullmatch = _EID_RE.fullmatch
        for position, eid in enumerate(eids):
            match = fullmatch(eid)
            if match is None:
                p.append(0)
                o.append(0)
                n.append(0)
                raw_at.append(position)
                raw.append(eid)
            else:
                letter, origin, number = match.groups()
                p.append(letters.setdefault(letter, len(letters)))
                o.append(table.setdefault(origin, len(table)))
                n.append(int(number))
        out: dict[str, Any] = {"t": list(letters), "p": p, "o": o, "n": n}
        if raw:
            out["raw"] = {"i": raw_at, "v": raw}
        return out

    def ref(self, ref: str) -> Any:
        """An op reference ``<origin>:<seq>`` as the seq alone when the origin is the batch's first device (the
        common case: a device replacing its own or the first sender's write), else ``[origin index, seq]``."""
        match = _REF_RE.fullmatch(ref)
        if match is None:
            return ref
        index = self.index(match[1])
        return int(match[2]) if index == 0 else [index, int(match[2])]


def _is_plain_set(kind: str, body: Any) -> bool:
    """Whether an op's body travels in the ``set`` columns: a ``<record>.set`` body of exactly ``field`` (text),
    ``value`` and ``replaces`` (a list of text)."""
    if not kind.endswith(".set") or type(body) is not dict or len(body) != 3:
        return False
    replaces = body.get("replaces")
    return (
        type(body.get("field")) is str
        and type(replaces) is list
        and "value" in body
        and (not replaces or (len(replaces) == 1 and type(replaces[0]) is str) or all(type(r) is str for r in replaces))
    )


def _columns(ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    origins = _Origins()
    try:
        versions = [op["v"] for op in ops]
        hlcs = [op["hlc"] for op in ops]
        origin_index = origins.indexes([op["origin"] for op in ops])
        eids = origins.eids([op["eid"] for op in ops])
        bodies = [op["body"] for op in ops]
        kinds = [op["kind"] for op in ops]
        set_bodies = []
        for i, (kind, body) in enumerate(zip(kinds, bodies, strict=True)):
            if _is_plain_set(kind, body):
                set_bodies.append(body)
                bodies[i] = None
        walls = [h >> _HLC_SHIFT for h in hlcs]
        columns: dict[str, Any] = {
            "n": len(ops),
            "v": versions[0] if len(set(versions)) == 1 else versions,
            "kind": _dictionary(kinds),
            "origin": origin_index,
            "seq": _deltas([op["seq"] for op in ops]),
            "hw": _deltas(walls),
            "hc": [h & _HLC_MASK for h in hlcs],
            "eid": eids,
            "actor": _dictionary([op["actor"] for op in ops]),
            "at": list(map(sub, [op["at"] for op in ops], walls)),
            "body": bodies,
            "set": {
                "field": _dictionary([b["field"] for b in set_bodies]),
                "value": [b["value"] for b in set_bodies],
                "replaces": [[origins.ref(r) for r in b["replaces"]] for b in set_bodies],
            },
        }
        keys, key_index, unsigned, signatures = _signatures(ops, origin_index)
        links, link_bytes = _links(ops)
    except (KeyError, TypeError, AttributeError, ValueError, binascii.Error) as exc:
        raise InvalidInputError(
            "Cannot encode a batch: an op lacks a field or has a wrong type", [("ops", str(exc))]
        ) from exc
    columns["origins"] = list(origins.table)
    columns["keys"] = keys
    columns["key"] = [] if key_index == origin_index else key_index
    columns["unsigned"] = unsigned
    columns["signatures"] = signatures
    columns["links"] = links
    columns["link_bytes"] = link_bytes
    return columns


def _links(ops: Sequence[Mapping[str, Any]]) -> tuple[list[int], bytes]:
    """The positions (as differences) and bytes of the ``pd`` links the receiver cannot derive: those of ops
    whose previous op in the batch from the same device is not their predecessor."""
    last: dict[str, int] = {}
    positions: list[int] = []
    raw = bytearray()
    before = 0
    for i, op in enumerate(ops):
        origin, seq = op["origin"], op["seq"]
        previous = last.get(origin)
        last[origin] = seq
        pd = op.get("pd")
        if pd is None or previous == seq - 1:
            continue
        link = bytes.fromhex(pd)
        if len(link) != _LINK:
            raise ValueError(f"op #{i}: a link (pd) must be {_LINK} bytes, got {len(link)}")
        positions.append(i - before)
        before = i
        raw += link
    return positions, bytes(raw)


def _signatures(
    ops: Sequence[Mapping[str, Any]], origin_index: list[int]
) -> tuple[list[bytes], list[int], list[int], bytes]:
    """Splits each op's ``sig`` into its public key (numbered in order of first use, so an honest batch numbers
    them like its devices) and its signature."""
    keys: dict[bytes, int] = {}
    key_index: list[int] = []
    unsigned: list[int] = []
    signatures = bytearray()
    for i, op in enumerate(ops):
        sig = op.get("sig")
        if sig is None:
            unsigned.append(i)
            key_index.append(origin_index[i])
            continue
        raw = base64.b64decode(sig, validate=True)
        if len(raw) != _KEY + _SIG:
            raise ValueError(f"op #{i}: a signature must be {_KEY + _SIG} bytes, got {len(raw)}")
        key_index.append(keys.setdefault(raw[:_KEY], len(keys)))
        signatures += raw[_KEY:]
    return list(keys), key_index, unsigned, bytes(signatures)


def _packed_table(column: dict[str, list[Any]]) -> list[Any]:
    """A table column as ``[table]`` when it has one value (every index is 0), else ``[table, indexes]``."""
    return [column["t"]] if len(column["t"]) == 1 else [column["t"], column["i"]]


def _packed_zeros(values: list[int]) -> list[int]:
    """A column that is mostly all zeros: ``[]`` when it is."""
    return values if any(values) else []


def _pack(columns: dict[str, Any], fmt: int) -> list[Any]:
    """The columns as one positional list (no keys), leaving out what is implied: indexes into one-value
    tables, all-zero columns, bodies that all travel in the ``set`` columns. Format 3 lists the unsigned ops'
    positions as differences (format 2 as they are)."""
    unsigned = columns["unsigned"]
    if fmt >= 3:
        unsigned = [b - a for a, b in zip([0, *unsigned], unsigned, strict=False)]
    eid = columns["eid"]
    packed_eid = [eid["t"], _packed_zeros(eid["p"]), _packed_zeros(eid["o"]), eid["n"]]
    if "raw" in eid:
        packed_eid += [eid["raw"]["i"], eid["raw"]["v"]]
    sets = columns["set"]
    return [
        columns["n"],
        columns["v"],
        _packed_table(columns["kind"]),
        _packed_zeros(columns["origin"]),
        columns["seq"],
        columns["hw"],
        columns["hc"],
        packed_eid,
        _packed_table(columns["actor"]),
        _packed_zeros(columns["at"]),
        [] if all(body is None for body in columns["body"]) else columns["body"],
        [_packed_table(sets["field"]), sets["value"], sets["replaces"]],
        columns["origins"],
        len(columns["keys"]),
        columns["key"],
        unsigned,
        columns["links"],
    ]


def _unpacked_table(packed: Any, n: int, name: str) -> dict[str, Any]:
    if not isinstance(packed, list) or len(packed) not in (1, 2) or not isinstance(packed[0], list):
        raise _damaged(name, "is not a table of values with indexes")
    return {"t": packed[0], "i": packed[1] if len(packed) == 2 else [0] * n}


def _unpacked_zeros(packed: Any, n: int) -> Any:
    return [0] * n if packed == [] else packed


def _unpack(packed: Any) -> dict[str, Any]:
    """The columns of :func:`_pack`, with what it left out put back (its shape is checked here, its values by
    the decoder)."""
    if not isinstance(packed, list) or len(packed) != 17 or type(packed[0]) is not int or packed[0] < 0:
        raise _damaged("ops", "the op columns are not 17 columns with their count first")
    n, v, kind, origin, seq, hw, hc, eid, actor, at, body, sets, origins, keys, key, unsigned, links = packed
    if not isinstance(eid, list) or len(eid) not in (4, 6):
        raise _damaged("eid", "is not a set of record id columns")
    if not isinstance(sets, list) or len(sets) != 3 or not isinstance(sets[1], list):
        raise _damaged("set", "is not a set of columns")
    count = len(sets[1])
    unpacked_eid: dict[str, Any] = {
        "t": eid[0],
        "p": _unpacked_zeros(eid[1], n),
        "o": _unpacked_zeros(eid[2], n),
        "n": eid[3],
    }
    if len(eid) == 6:
        unpacked_eid["raw"] = {"i": eid[4], "v": eid[5]}
    return {
        "n": n,
        "v": v,
        "kind": _unpacked_table(kind, n, "kind"),
        "origin": _unpacked_zeros(origin, n),
        "seq": seq,
        "hw": hw,
        "hc": hc,
        "eid": unpacked_eid,
        "actor": _unpacked_table(actor, n, "actor"),
        "at": _unpacked_zeros(at, n),
        "body": [None] * n if body == [] else body,
        "set": {"field": _unpacked_table(sets[0], count, "set.field"), "value": sets[1], "replaces": sets[2]},
        "origins": origins,
        "keys": keys,
        "key": key,
        "unsigned": unsigned,
        "links": links,
    }


def _strict_json(text: bytes) -> bool:
    """Whether ``text`` parses as JSON without infinities or NaN (which :func:`decode_envelope` refuses): the
    words may also stand inside strings, so only a parse tells."""
    try:
        from_json(text, allow_inf_nan=False)
    except ValueError:
        return False
    return True


def encode_envelope(envelope: Mapping[str, Any], fmt: int = FORMAT) -> bytes:
    """The compact form of ``envelope`` (its ``"ops"``, if any, by column), in format ``fmt`` (one of
    :data:`FORMATS`: a server answers a device in the newest format it says it reads).

    Raises:
        InvalidInputError: the envelope holds an infinite or NaN number, which JSON cannot carry and
            :func:`decode_envelope` refuses.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt} is not one of {FORMATS}")
    plain = {key: value for key, value in envelope.items() if key != "ops"}
    ops = envelope.get("ops")
    trailer = b""
    if ops is not None:
        if ops:
            columns = _columns(ops)
            plain["ops"] = _pack(columns, fmt)
            trailer = b"".join(columns["keys"]) + columns["signatures"] + columns["link_bytes"]
        else:
            plain["ops"] = [0]
    text = to_json(plain)
    if (b"Infinity" in text or b"NaN" in text) and not _strict_json(text):
        raise InvalidInputError(
            "A batch holds a number JSON cannot carry", [("body", "infinity or NaN is not a JSON number")]
        )
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _DICT_1)
    data = packer.compress(text) + packer.flush()
    return _MAGIC + bytes((fmt, _DEFLATE_DICT_1)) + data + trailer


def decode_envelope(
    data: bytes, *, max_bytes: int = MAX_DECODED_BYTES, max_values: int | None = None
) -> dict[str, Any]:
    """The envelope a compact form holds, ``"ops"`` as a list of op dicts.

    Args:
        data: the compact form.
        max_bytes: the most bytes its content may inflate to (a server passes its own, smaller, limit).
        max_values: the most JSON values its content may hold, counted as commas and opening brackets before it
            is parsed (as a server counts a plain JSON body): a small batch of millions of tiny values is refused
            before it becomes millions of Python objects. None: not counted.

    Raises:
        InvalidInputError: the bytes are not a compact envelope of a format this library reads, are damaged,
            inflate beyond ``max_bytes``, hold more than ``max_values`` values (the problem is named
            ``values``), or their columns do not agree.
    """
    if len(data) < 4 or data[:2] != _MAGIC:
        raise InvalidInputError("This is not a caresync batch", [("body", "it does not start with the CS marker")])
    if data[2] == 1:
        raise InvalidInputError(
            "This batch was written by an older caresync, from before ops were signed; upgrade the device that sent it",
            [("body", "format 1; this caresync reads formats 2 and 3")],
        )
    fmt = data[2]
    if fmt not in FORMATS or data[3] != _DEFLATE_DICT_1:
        raise InvalidInputError(
            "This batch was written by a newer caresync; upgrade to read it",
            [("body", f"format {fmt}, compression {data[3]}; this caresync reads formats 2 and 3, compression 1")],
        )
    unpacker = zlib.decompressobj(-15, zdict=_DICT_1)
    try:
        text = unpacker.decompress(data[4:], max_bytes + 1)
        if len(text) > max_bytes or unpacker.unconsumed_tail:
            raise InvalidInputError("A batch is too large once unpacked", [("body", f"more than {max_bytes} bytes")])
    except zlib.error as exc:
        raise InvalidInputError("A batch is damaged and cannot be unpacked", [("body", str(exc))]) from exc
    if not unpacker.eof:
        raise InvalidInputError("A batch is cut short", [("body", "the compressed stream ends early")])
    if max_values is not None and len(text) > max_values:
        values = text.count(b",") + text.count(b"[") + text.count(b"{")
        if values > max_values:
            raise InvalidInputError(
                "A batch holds too many values", [("values", f"about {values}, more than {max_values}")]
            )
    try:
        plain = from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidInputError("A batch is damaged: its content is not JSON", [("body", str(exc))]) from exc
    if not isinstance(plain, dict):
        raise InvalidInputError("A batch must hold a JSON object", [("body", f"got {type(plain).__name__}")])
    if "ops" in plain:
        packed = plain["ops"]
        plain["ops"] = [] if packed == [0] else _ops_from_columns(_unpack(packed), unpacker.unused_data, fmt)
    elif unpacker.unused_data:
        raise _damaged("signatures", "bytes follow a batch that has no ops")
    return plain


def _damaged(name: str, what: str) -> InvalidInputError:
    return InvalidInputError("A batch is damaged", [(f"ops.{name}", what)])


def _expect_list(values: Any, n: int, name: str) -> list[Any]:
    if not isinstance(values, list) or len(values) != n:
        raise _damaged(name, f"is not a list of {n} values")
    return values


def _ints(column: Any, n: int, name: str) -> list[int]:
    """A column of ``n`` integers (checked for the whole column at once: booleans and floats are refused)."""
    values = _expect_list(column, n, name)
    if values and set(map(type, values)) != {int}:
        raise _damaged(name, "holds a value that is not an integer")
    return values


def _undelta(column: Any, n: int, name: str) -> list[int]:
    return list(accumulate(_ints(column, n, name)))


def _indexes(column: Any, n: int, size: int, name: str) -> list[int]:
    index = _ints(column, n, name)
    if index and (min(index) < 0 or max(index) >= size):
        raise _damaged(name, "an index points outside its table")
    return index


def _undictionary(column: Any, n: int, name: str) -> list[Any]:
    if not isinstance(column, dict) or not isinstance(column.get("t"), list):
        raise _damaged(name, "is not a table of values with indexes")
    table = column["t"]
    return list(map(table.__getitem__, _indexes(column.get("i"), n, len(table), name)))


def _origin_at(origins: list[str], index: Any, name: str) -> str:
    if type(index) is not int or not 0 <= index < len(origins):
        raise _damaged(name, "names a device that is not in its table")
    return origins[index]


def _eids_from(column: Any, n: int, origins: list[str]) -> list[Any]:
    if not isinstance(column, dict) or not isinstance(column.get("t"), list):
        raise _damaged("eid", "is not a set of record id columns")
    letters = column["t"]
    if letters and set(map(type, letters)) != {str}:
        raise _damaged("eid", "its letters are not text")
    p = _indexes(column.get("p"), n, max(len(letters), 1), "eid.p")
    o = _indexes(column.get("o"), n, max(len(origins), 1), "eid.o")
    numbers = _ints(column.get("n"), n, "eid.n")
    raw = column.get("raw", {"i": [], "v": []})
    if not isinstance(raw, dict):
        raise _damaged("eid.raw", "is not a list of positions and ids")
    raw_values = _expect_list(raw.get("v"), len(raw.get("i") or []), "eid.raw")
    raw_at = _indexes(raw.get("i"), len(raw_values), n, "eid.raw")
    exceptions = dict(zip(raw_at, raw_values, strict=True))
    if len(exceptions) == n:
        return [exceptions[i] for i in range(n)]
    if not letters or not origins:
        raise _damaged("eid", "names a letter or a device that is not in its table")
    if len(letters) == 1:  # one record type (the usual batch): each id is one of a few prefixes and its number
        heads = [f"{letters[0]}-{origin}-" for origin in origins]
        eids = [f"{heads[oi]}{ni}" for oi, ni in zip(o, numbers, strict=True)]
    else:
        eids = [f"{letters[pi]}-{origins[oi]}-{ni}" for pi, oi, ni in zip(p, o, numbers, strict=True)]
    for i, eid in exceptions.items():
        eids[i] = eid
    return eids


def _ref_from(origins: list[str], item: Any) -> Any:
    if type(item) is int:
        return f"{_origin_at(origins, 0, 'set')}:{item}"
    if type(item) is list:
        if len(item) != 2 or type(item[1]) is not int:
            raise _damaged("set", "an op reference is not [device, seq]")
        return f"{_origin_at(origins, item[0], 'set')}:{item[1]}"
    return item


def _set_bodies(columns: Any, origins: list[str], count: int) -> list[dict[str, Any]]:
    if not isinstance(columns, dict):
        raise _damaged("set", "is not a set of columns")
    fields = _undictionary(columns.get("field"), count, "set.field")
    values = _expect_list(columns.get("value"), count, "set.value")
    replaces = _expect_list(columns.get("replaces"), count, "set.replaces")
    if replaces and set(map(type, replaces)) != {list}:
        raise _damaged("set.replaces", "holds a value that is not a list")
    if not origins:  # every reference must be text: _ref_from refuses the others
        return [
            {"field": field, "value": value, "replaces": [_ref_from(origins, r) for r in refs]}
            for field, value, refs in zip(fields, values, replaces, strict=True)
        ]
    first = f"{origins[0]}:"  # a bare seq names an op of the first device (see _Origins.ref)
    return [
        {
            "field": field,
            "value": value,
            "replaces": (
                [f"{first}{refs[0]}"]  # the usual write replaces one op of the first device: no inner loop
                if len(refs) == 1 and type(refs[0]) is int
                else [f"{first}{r}" if type(r) is int else _ref_from(origins, r) for r in refs]
            ),
        }
        for field, value, refs in zip(fields, values, replaces, strict=True)
    ]


def _positions(column: Any, name: str) -> list[int]:
    """Increasing op positions from their differences (the first from 0): integers, the first at least 0, the
    others at least 1 (checked for the whole column at once)."""
    if not isinstance(column, list) or (column and (set(map(type, column)) != {int} or min(column) < 0)):
        raise _damaged(name, "is not a list of op positions")
    if len(column) > 1 and min(islice(column, 1, None)) < 1:
        raise _damaged(name, "is not a list of increasing op positions")
    return list(accumulate(column))


def _links_from(columns: dict[str, Any], n: int) -> list[int]:
    """The positions of the ops whose link travels, increasing."""
    positions = _positions(columns.get("links"), "links")
    if positions and positions[-1] >= n:
        raise _damaged("links", "is not a list of increasing op positions")
    return positions


def _signatures_from(
    columns: dict[str, Any], n: int, origins: list[str], trailer: bytes, linked: int, fmt: int
) -> list[tuple[int, str]]:
    """The signed ops' positions and ``sig`` values, in order (in a pull answer most ops are unsigned)."""
    count = columns.get("keys")
    if type(count) is not int or not 0 <= count <= n:
        raise _damaged("keys", "is not a count of public keys")
    unsigned = columns.get("unsigned")
    if fmt >= 3:
        unsigned = _positions(unsigned, "unsigned")
    elif not isinstance(unsigned, list) or (unsigned and (set(map(type, unsigned)) != {int} or min(unsigned) < 0)):
        raise _damaged("unsigned", "is not a list of op positions")
    if unsigned and max(unsigned) >= n:
        raise _damaged("unsigned", "names an op the batch does not hold")
    unsigned_set = set(unsigned)
    if len(trailer) != count * _KEY + (n - len(unsigned_set)) * _SIG + linked * _LINK:
        raise _damaged("signatures", "the keys and signatures after the columns do not match the ops")
    keys = [trailer[i * _KEY : (i + 1) * _KEY] for i in range(count)]
    key = columns.get("key")
    key_index = _ints(columns.get("origin") if key == [] else key, n, "key")
    out: list[tuple[int, str]] = []
    at = count * _KEY
    for i in filterfalse(unsigned_set.__contains__, range(n)):
        if not 0 <= key_index[i] < count:
            raise _damaged("key", "names a public key the batch does not hold")
        out.append((i, base64.b64encode(keys[key_index[i]] + trailer[at : at + _SIG]).decode("ascii")))
        at += _SIG
    return out


def _ops_from_columns(columns: Any, trailer: bytes = b"", fmt: int = FORMAT) -> list[dict[str, Any]]:
    if not isinstance(columns, dict) or type(columns.get("n")) is not int or columns["n"] < 0:
        raise _damaged("n", "the op columns lack their count")
    n = columns["n"]
    if n == 0:
        return []
    versions = columns.get("v")
    versions = _ints(versions, n, "v") if isinstance(versions, list) else [versions] * n
    origins = columns.get("origins")
    if not isinstance(origins, list) or (origins and set(map(type, origins)) != {str}):
        raise _damaged("origins", "is not a list of device ids")
    kinds = _undictionary(columns.get("kind"), n, "kind")
    op_origins = list(map(origins.__getitem__, _indexes(columns.get("origin"), n, len(origins), "origin")))
    seqs = _undelta(columns.get("seq"), n, "seq")
    walls = _undelta(columns.get("hw"), n, "hw")
    counters = _ints(columns.get("hc"), n, "hc")
    if min(counters) < 0 or max(counters) > _HLC_MASK:
        raise _damaged("hc", "a clock counter is out of range")
    hlcs = [(wall << _HLC_SHIFT) | counter for wall, counter in zip(walls, counters, strict=True)]
    ats = [wall + at for wall, at in zip(walls, _ints(columns.get("at"), n, "at"), strict=True)]
    eids = _eids_from(columns.get("eid"), n, origins)
    actors = _undictionary(columns.get("actor"), n, "actor")
    bodies = _expect_list(columns.get("body"), n, "body")
    set_count = bodies.count(None)
    if set_count:
        set_bodies = iter(_set_bodies(columns.get("set"), origins, set_count))
        bodies = [next(set_bodies) if body is None else body for body in bodies]
    linked = _links_from(columns, n)
    signed = _signatures_from(columns, n, origins, trailer, len(linked), fmt)
    ops = [
        {"v": v, "kind": k, "origin": o, "seq": s, "hlc": h, "eid": e, "actor": a, "at": t, "body": b}
        for v, k, o, s, h, e, a, t, b in zip(
            versions, kinds, op_origins, seqs, hlcs, eids, actors, ats, bodies, strict=True
        )
    ]
    for i, sig in signed:
        ops[i]["sig"] = sig
    at = len(trailer) - len(linked) * _LINK
    for i in linked:
        ops[i]["pd"] = trailer[at : at + _LINK].hex()
        at += _LINK
    return ops
