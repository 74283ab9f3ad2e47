"""The compact wire form: every envelope comes back exactly, and damaged bytes are refused with a clear error."""

from __future__ import annotations

import base64
import json
import math
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caresync import InvalidInputError
from caresync.sync import wire
from caresync.sync.wire import FORMATS, MAX_DECODED_BYTES, decode_envelope, encode_envelope
from caresync.testing import key_for, sign
from caresync.trust.signing import signature_needed, verify_ops
from tests.property.test_fuzz_ops import VALID, json_scalars

# Values JSON can carry: the fuzz strategy also makes infinities, which a batch refuses (see below).
json_values_finite = st.recursive(
    json_scalars.filter(lambda v: not (isinstance(v, float) and math.isinf(v))),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)

hex16 = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


@st.composite
def op_like(draw: st.DrawFn) -> dict[str, Any]:
    """Op-shaped dicts with ids and references in the forms the codec shortens, and in other forms."""
    origin = draw(st.sampled_from(["0" * 16, draw(hex16)]))  # a shared origin makes runs of seqs
    other = draw(st.sampled_from([origin, draw(hex16)]))
    eid = draw(
        st.one_of(
            st.builds(lambda p, o, n: f"{p}-{o}-{n}", st.sampled_from("TRVPMW"), st.just(other), st.integers(1, 10**9)),
            st.text(min_size=1, max_size=20),
        )
    )
    ref = st.one_of(
        st.builds(lambda o, n: f"{o}:{n}", st.sampled_from([origin, other]), st.integers(1, 10**9)), st.text()
    )
    body = draw(
        st.one_of(
            st.fixed_dictionaries(
                {"field": st.text(max_size=10), "value": json_values_finite, "replaces": st.lists(ref, max_size=3)}
            ),
            st.dictionaries(st.text(max_size=8), json_values_finite, max_size=4),
        )
    )
    sig = draw(st.one_of(st.none(), st.binary(min_size=96, max_size=96).map(lambda b: base64.b64encode(b).decode())))
    pd = draw(st.one_of(st.none(), st.binary(min_size=16, max_size=16).map(bytes.hex)))
    return {
        **({} if sig is None else {"sig": sig}),
        **({} if pd is None else {"pd": pd}),
        "v": draw(st.integers(1, 3)),
        "kind": draw(st.sampled_from(["ticket.set", "resident.set", "ticket.note", "visit.create", "x.y"])),
        "origin": origin,
        "seq": draw(st.one_of(st.integers(1, 4), st.integers(1, 2**62 - 1))),
        "hlc": draw(st.integers(0, 2**63 - 1)),
        "eid": eid,
        "actor": draw(st.text(min_size=1, max_size=10)),
        "at": draw(st.integers(0, 2**45)),
        "body": body,
    }


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(op_like(), max_size=12),
    extra=st.dictionaries(st.sampled_from(["cursor", "more", "time_ms"]), json_values_finite),
)
def test_round_trip_is_exact(ops: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    envelope = {**extra, "ops": ops}
    for fmt in FORMATS:
        assert decode_envelope(encode_envelope(envelope, fmt)) == {**extra, "ops": _as_sent(ops)}


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_a_number_json_cannot_carry_is_refused_both_ways(number: float) -> None:
    with pytest.raises(InvalidInputError, match="JSON cannot carry"):
        encode_envelope({"ops": [], "time_ms": number})
    text = json.dumps({"ops": [0], "time_ms": number}).encode()  # Python writes Infinity and NaN; JSON has neither
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, wire._DICT_1)
    data = encode_envelope({"ops": []})[:4] + packer.compress(text) + packer.flush()
    with pytest.raises(InvalidInputError, match="not JSON"):
        decode_envelope(data)
    # the words inside a string are only text
    assert decode_envelope(encode_envelope({"ops": [], "cursor": "NaN Infinity"}))["cursor"] == "NaN Infinity"


def _as_sent(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ops as they come out of the compact form: without the links a receiver derives (an op's ``pd`` when
    the op before it in the batch from the same device is its predecessor)."""
    last: dict[str, int] = {}
    out = []
    for op in ops:
        before = last.get(op["origin"])
        last[op["origin"]] = op["seq"]
        out.append({k: v for k, v in op.items() if k != "pd" or before != op["seq"] - 1})
    return out


def test_real_ops_round_trip_and_shrink() -> None:
    envelope = {"ops": VALID, "cursor": "17", "more": False}
    data = encode_envelope(envelope)
    decoded = decode_envelope(data)
    assert all("pd" not in op for op in decoded["ops"])  # one run from its first op: every link is derived
    verify_ops(decoded["ops"])  # which derives them
    assert decoded == envelope
    assert len(data) < len(zlib.compress(json.dumps(envelope).encode(), 9))


def test_links_travel_only_where_the_receiver_cannot_derive_them() -> None:
    assert all(("pd" in op) == (op["seq"] > 1) for op in VALID)
    unlinked = [{k: v for k, v in op.items() if k != "pd"} for op in VALID]
    assert len(encode_envelope({"ops": VALID})) == len(encode_envelope({"ops": unlinked}))  # none travels
    # a pull filtered by scope: no op follows its predecessor, each carries its 16-byte link, and verifies
    every_other = VALID[1::2]
    data = encode_envelope({"ops": every_other})
    assert data.endswith(b"".join(bytes.fromhex(op["pd"]) for op in every_other))
    decoded = decode_envelope(data)["ops"]
    assert decoded == every_other
    verify_ops(decoded)
    # a batch that starts after ops the receiver holds carries its first link, and only that one
    tail = VALID[3:]
    decoded = decode_envelope(encode_envelope({"ops": tail}))["ops"]
    assert [op["seq"] for op in decoded if "pd" in op] == [tail[0]["seq"]]
    verify_ops(decoded)
    assert decoded == tail
    # reordered: a link travels wherever the op before it in the batch is not its predecessor
    backwards = tail[::-1]
    decoded = decode_envelope(encode_envelope({"ops": backwards}))["ops"]
    assert decoded == backwards
    verify_ops(decoded)


def test_link_positions_that_do_not_fit_are_refused() -> None:
    from caresync.sync import wire

    columns = wire._columns(VALID[1::2])
    for links in ([0, 0], [len(VALID)], [-1], ["0"], {}):
        with pytest.raises(InvalidInputError, match="damaged"):
            decode_envelope(_by_hand(columns, wire._pack({**columns, "links": links}, 2), 2))


def _by_hand(columns: dict[str, Any], packed: list[Any], fmt: int) -> bytes:
    """A compact batch of ``packed`` columns put together as the encoder would (to damage one column)."""
    from caresync.sync import wire

    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, wire._DICT_1)
    data = b"CS" + bytes((fmt, 1)) + packer.compress(json.dumps({"ops": packed}).encode()) + packer.flush()
    return data + b"".join(columns["keys"]) + columns["signatures"] + columns["link_bytes"]


def test_envelope_without_ops() -> None:
    assert decode_envelope(encode_envelope({"stored": 3})) == {"stored": 3}
    assert decode_envelope(encode_envelope({"ops": []})) == {"ops": []}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_bytes_are_refused_or_decoded_never_crash(data: st.DataObject) -> None:
    good = bytearray(encode_envelope({"ops": VALID, "cursor": "5"}))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(good) - 1))
        good[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    try:
        decode_envelope(bytes(good[:cut]))
    except InvalidInputError as exc:
        assert exc.problems  # names what is wrong


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not a caresync batch"),
        (b'{"ops": []}', "not a caresync batch"),
        (b"CS\x04\x01xx", "newer caresync"),
        (b"CS\x01\x01xx", "older caresync"),
        (b"CS\x02\x01" + b"\x00garbage", "damaged"),
    ],
)
def test_foreign_or_newer_bytes_name_the_problem(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        decode_envelope(data)


def test_columns_that_disagree_are_refused() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = json.dumps({"ops": {"n": 2, "v": 1, "origins": ["a" * 16], "kind": {"t": ["ticket.note"], "i": [0]}}})
    data = b"CS\x02\x01" + packer.compress(body.encode()) + packer.flush()
    with pytest.raises(InvalidInputError, match="damaged"):
        decode_envelope(data)


def test_a_batch_that_inflates_too_far_is_refused() -> None:
    from caresync.sync import wire

    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, wire._DICT_1)
    bomb = b"CS\x02\x01" + packer.compress(b" " * (MAX_DECODED_BYTES + 10)) + packer.flush()
    assert len(bomb) < MAX_DECODED_BYTES // 100
    with pytest.raises(InvalidInputError, match="too large"):
        decode_envelope(bomb)


def test_signatures_travel_as_raw_bytes_and_come_back_exact() -> None:
    envelope = {"ops": VALID}
    assert all("sig" in op for op in VALID)
    data = encode_envelope(envelope)
    decoded = decode_envelope(data)
    verify_ops(decoded["ops"])
    assert decoded == envelope
    # a signature does not compress: each op adds its 64 bytes after the compressed part, each key 32 once
    keys = {op["sig"][:43] for op in VALID}
    assert data.endswith(base64.b64decode(VALID[-1]["sig"])[32:])
    assert len(data) > 64 * len(VALID) + 32 * len(keys)


def test_an_op_signed_by_another_key_than_its_devices_travels_as_it_is() -> None:
    other = key_for("someone else")
    forged = {**VALID[1], "sig": base64.b64encode(other.public_key + bytes(64)).decode()}
    mixed = [VALID[0], forged, {k: v for k, v in VALID[2].items() if k != "sig"}, *VALID[3:]]
    assert decode_envelope(encode_envelope({"ops": mixed})) == {"ops": _as_sent(mixed)}


def test_signature_bytes_that_do_not_match_the_ops_are_refused() -> None:
    data = encode_envelope({"ops": VALID})
    for damaged in (data[:-1], data + b"\x00", data[:-64]):
        with pytest.raises(InvalidInputError, match="damaged") as info:
            decode_envelope(damaged)
        assert "signatures" in str(info.value)
    with pytest.raises(InvalidInputError, match="no ops"):
        decode_envelope(encode_envelope({"cursor": "1"}) + b"\x00" * 64)


def _unsigned_inside(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ops as a pull answer sends them: a signature only where no later op of its run follows."""
    needed = signature_needed([(op["origin"], op["seq"], op["v"]) for op in ops])
    return [op if keep else {k: v for k, v in op.items() if k != "sig"} for op, keep in zip(ops, needed, strict=True)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_ops_without_their_signature_travel_in_every_format(fmt: int) -> None:
    key = key_for("runs")
    ops = [sign({**VALID[0], "v": 2, "origin": key.origin, "seq": seq, "hlc": seq << 20}, key) for seq in range(1, 41)]
    sparse = _unsigned_inside(ops)
    assert sum("sig" in op for op in sparse) == 1
    data = encode_envelope({"ops": sparse}, fmt)
    assert data[2] == fmt
    back = decode_envelope(data)["ops"]
    assert [op.get("sig") for op in back] == [op.get("sig") for op in sparse]
    verify_ops(back)  # one signature checks the run
    if fmt == 3:  # the positions of the unsigned ops are differences there: a long run costs a few bytes
        assert len(data) < len(encode_envelope({"ops": sparse}, 2)) - 40


@pytest.mark.parametrize("unsigned", [[0, 0], [1, 0], [5, 99], [-1], ["1"]])
def test_unsigned_positions_that_do_not_fit_are_refused(unsigned: list[Any]) -> None:
    from caresync.sync import wire

    columns = wire._columns(VALID[1::2])
    packed = wire._pack(columns, 3)
    packed[15] = unsigned
    with pytest.raises(InvalidInputError, match="damaged"):
        decode_envelope(_by_hand(columns, packed, 3))


def test_ids_that_only_look_like_the_short_forms_travel_as_they_are() -> None:
    origin = "0123456789abcdef"
    op = {
        **VALID[0],
        "origin": origin,
        "eid": f"T-{origin}-5\n",
        "body": {"field": "title", "value": "x", "replaces": [f"{origin}:3\n"]},
        "kind": "ticket.set",
    }
    op.pop("sig", None)
    op.pop("pd", None)
    back = decode_envelope(encode_envelope({"ops": [op]}))["ops"][0]
    assert back["eid"] == op["eid"] and back["body"] == op["body"]
