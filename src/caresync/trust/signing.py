"""Signed ops and sealed fields: how an op proves who made it, and how private content stays private.

**Signatures.** Every op carries ``sig``: base64 of its maker's Ed25519 public key (32 bytes) followed by the
signature (64 bytes) of :func:`signing_message`. The key proves itself: its fingerprint must be the op's
``origin`` (:func:`caresync.trust.keys.origin_of`), so no one can sign in another device's name, and no key
registry has to be trusted. The message covers the envelope and the body (:func:`signing_message`); for the
op kinds a redaction may rewrite it covers a digest of each body value instead, so that a redaction can erase a
value and keep its digest (in the body's ``redacted`` map): the signature still checks, and the erased value
cannot be recovered from it when it was sealed (sealed text is random).

**The chain.** The message also covers ``prev``, the *link* of the device's previous op (seq - 1; 16 zero
bytes for seq 1), and every op with seq > 1 carries that link as ``pd`` (32 hex digits). An op's link is
``blake2b-128(signing_message(op, prev))`` for format 2 ops (:func:`chain_link`; format 1 links also covered the
key and the signature), so a valid signature on the last op of a run of consecutive seqs pins the content of every
op before it: :func:`verify_ops` checks one Ed25519 signature per run (plus the key fingerprint of every signature
present), and ops inside a run may travel without theirs (pull answers leave them out, see
:func:`signature_needed`). Their own signatures, when present, are not pinned: the server checks each one
before it keeps it (:func:`verify_each`), and a replica checks those of other devices' ops before it sends them
on to the server (:func:`failing_signatures`). When a run fails, the signatures present are checked one by one
to name the forged op. A receiver derives ``pd`` for an op whose predecessor is in the same batch (the compact
wire form leaves it out there, see :mod:`caresync.sync.wire`) and stores it, so it can send the op on without its
predecessor (a pull filtered by scope, an op the server refused). Redaction keeps links valid: it never touches
``sig``, and the body digests the message covers survive it.

**Sealing.** The private fields of :data:`SEALED_FIELDS` are sealed to the station's X25519 public key on the
device that captures them, before the op is signed: logs, the server and relays hold ciphertext only, and
only a device holding the station's secret (:class:`caresync.trust.keys.StationKey`) reads them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from pydantic_core import to_json

from caresync.core.ops import LOST_KIND, REDACTABLE_KINDS, TEXT_FORMAT, TEXT_KINDS, field_digest
from caresync.errors import ForgedOpError, OpForkError, TrustError
from caresync.trust.keys import DeviceKey, origin_of

__all__ = [
    "ZERO_LINK",
    "chain_link",
    "content_digests",
    "failing_signatures",
    "linkable",
    "sign_linked",
    "sign_op",
    "signature_needed",
    "signing_message",
    "verify_each",
    "verify_ops",
    "verify_signed",
]

_CONTEXT = b"caresync-op-signature/2\n"  # format 1 ops: per-field digests of every body
_CONTEXT_V2 = b"caresync-op-signature/3\n"  # format 2 ops: the body itself, but for the redactable kinds
_CONTEXT_V5 = b"caresync-op-signature/5\n"  # format 5 ops of the text kinds: a digest per value (per rating key)
_PARALLEL_FROM = 256  # runs in a batch from which signatures are checked on two threads (libsodium frees the GIL)
#: The link before a device's first op (seq 1).
ZERO_LINK = bytes(16)
_SCALARS = (str, int, bool, type(None))
_NESTED = (dict, list)


def _canonical(value: Any) -> Any:
    """``value`` with the keys of every dict in it sorted, so that its JSON is the same bytes wherever it is made
    (a body's keys come in the order its maker, or the wire decoder, happened to insert them)."""
    kind = type(value)
    if kind is dict:
        return {key: _canonical(value[key]) for key in sorted(value)}
    if kind is list and any(type(item) in _NESTED for item in value):
        return [_canonical(item) for item in value]
    return value


def signing_message(op: Mapping[str, Any], prev: bytes) -> bytes:
    """The bytes an op's signature covers: ``prev`` (the link of the device's previous op, :data:`ZERO_LINK` for
    seq 1), its envelope, and its body.

    Ops of format 2 and later carry their body itself (keys sorted at every level), in one JSON array with the
    envelope, except the kinds a redaction may rewrite (:data:`REDACTABLE_KINDS`): those carry, for each body
    key, the digest of its value (or, for a value a redaction erased, the digest it kept), so a signature
    still checks after an erasure. Format 1 ops carry digests for every kind. Format 5 ops of the kinds that
    carry tickets' and visits' free text (:data:`~caresync.core.ops.TEXT_KINDS`) carry digests too, a structured
    value (a rating) one digest per key, so that a redaction can erase a rating's comment and keep its score.
    A replica of format 4 or older cannot check a format 5 op of those kinds (it computes the format 2 message):
    the server does not send it such ops (docs/protocol.md, "Op formats").
    """
    body = op["body"]
    kind = op["kind"]
    v = op["v"]
    if v >= TEXT_FORMAT and kind in TEXT_KINDS:
        return _CONTEXT_V5 + prev + to_json(_digest_envelope(op, nested=True))
    if v >= 2 and kind not in REDACTABLE_KINDS:
        if type(body) is dict:  # the common case: values are scalars, or lists of scalars (op references)
            flat = True
            for value in body.values():
                kind_of = type(value)
                if kind_of is dict or (kind_of is list and any(type(item) in _NESTED for item in value)):
                    flat = False
                    break
            ordered = {key: body[key] for key in sorted(body)} if flat else _canonical(body)
        else:
            ordered = _canonical(body)
        envelope = [op["v"], kind, op["origin"], op["seq"], op["hlc"], op["eid"], op["actor"], op["at"], ordered]
        return _CONTEXT_V2 + prev + to_json(envelope)
    return _CONTEXT + prev + to_json(_digest_envelope(op, nested=False))


def content_digests(kind: str, v: int, body: Mapping[str, Any]) -> str:
    """What an op's body says, the same before and after a redaction erased values from it: the digest per value
    its signature covers (erased values by the digest they kept), as JSON. Two ops with one identity are the same
    op when these agree (the body of an op a redaction may rewrite cannot be compared as it is)."""
    nested = v >= TEXT_FORMAT and kind in TEXT_KINDS
    op = {"v": v, "kind": kind, "origin": "", "seq": 0, "hlc": 0, "eid": "", "actor": "", "at": 0, "body": body}
    return to_json(_digest_envelope(op, nested=nested)[-1]).decode()


def _digest_envelope(op: Mapping[str, Any], *, nested: bool) -> list[Any]:
    """The envelope with a digest per body value: an erased value (None, its key in the body's ``redacted``)
    stands for the digest it kept. With ``nested``, a dict value stands for its keys' digests, each erasable alone
    (kept in ``redacted`` as ``key.subkey``)."""
    body = op["body"]
    redacted = body.get("redacted") if type(body) is dict else None
    digests: list[Any] = []
    for key in sorted(body):
        value = body[key]
        if redacted is not None and key == "redacted":
            continue
        if nested and type(value) is dict:
            parts = [(sub, _digest(f"{key}.{sub}", value[sub], redacted)) for sub in sorted(value)]
            digests.append((key, parts))
        else:
            digests.append((key, _digest(key, value, redacted)))
    return [op["v"], op["kind"], op["origin"], op["seq"], op["hlc"], op["eid"], op["actor"], op["at"], digests]


def _digest(key: str, value: Any, redacted: Mapping[str, str] | None) -> str:
    """A body value's digest, or the one a redaction kept for it (only for a value it erased, which is None)."""
    if value is None and redacted is not None and key in redacted:
        return redacted[key]
    return field_digest(value)


def _declared(op: Mapping[str, Any]) -> bytes | None:
    """The link a device's "op N is lost" statement (:data:`~caresync.core.ops.LOST_KIND`, format 5) declares
    for itself: the lost op's, which the device's next op signed. Its signature covers it, and the op before it
    (its ``pd``), so the chain runs on through it; the lost op's content is pinned by nothing any more."""
    if op["kind"] != LOST_KIND or op["v"] < TEXT_FORMAT:
        return None
    body = op["body"]
    link = body.get("link") if type(body) is dict else None
    try:
        return bytes.fromhex(link) if type(link) is str and len(link) == 32 else None
    except ValueError:
        return None


def _prev_of(op: Mapping[str, Any]) -> bytes:
    """The link an op names for its predecessor: :data:`ZERO_LINK` for seq 1, else its ``pd``."""
    if op["seq"] == 1:
        return ZERO_LINK
    pd = op.get("pd")
    if pd is None:
        raise TrustError(f"Op {op['origin']}:{op['seq']} does not carry the link to the op before it (pd).")
    return bytes.fromhex(pd)


def sign_op(op: dict[str, Any], key: DeviceKey, prev: bytes | None = None) -> dict[str, Any]:
    """Sets ``op["sig"]`` (the op must be ``key``'s: its origin is the key's fingerprint), and ``op["pd"]`` to
    ``prev``, the link of the device's op before it (:func:`chain_link`; by default the op's own ``pd``, or
    :data:`ZERO_LINK` for seq 1); returns the op."""
    sign_linked(op, key, prev)
    return op


def sign_linked(op: dict[str, Any], key: DeviceKey, prev: bytes | None = None) -> bytes:
    """:func:`sign_op`, returning the op's own link (:func:`chain_link`) for the device's next op."""
    if op["origin"] != key.origin:
        raise TrustError(f"Device {key.origin} cannot sign an op of device {op['origin']}.")
    if prev is None:
        prev = _prev_of(op)
    if op["seq"] == 1:
        if prev != ZERO_LINK:
            raise TrustError("A device's first op (seq 1) links to nothing: prev must be ZERO_LINK.")
        op.pop("pd", None)
    else:
        op["pd"] = prev.hex()
    message = signing_message(op, prev)
    raw = key.public_key + key.sign(message)
    op["sig"] = base64.b64encode(raw).decode("ascii")
    return _declared(op) or hashlib.blake2b(message if op["v"] >= 2 else message + raw, digest_size=16).digest()


def chain_link(op: Mapping[str, Any], prev: bytes | None = None) -> bytes:
    """The link of an op, which the device's next op commits to: blake2b-128 of its signing message (format 2 and
    later; the op needs no signature for it), or of its message, public key and signature (format 1, which
    must be signed). ``prev`` defaults to the link the op names (its ``pd``; zeros for seq 1)."""
    declared = _declared(op)
    if declared is not None:
        return declared
    if prev is None:
        prev = _prev_of(op)
    message = signing_message(op, prev)
    if op["v"] >= 2:
        return hashlib.blake2b(message, digest_size=16).digest()
    return hashlib.blake2b(message + base64.b64decode(op["sig"]), digest_size=16).digest()


def linkable(op: Mapping[str, Any]) -> bool:
    """Whether :func:`chain_link` can be computed for ``op``: it names its predecessor (or is its device's
    first), and it is of format 2 or later or signed (ops from before signing and chaining have no link)."""
    return (op["seq"] == 1 or bool(op.get("pd"))) and (op["v"] >= 2 or bool(op.get("sig")))


def signature_needed(keys: Sequence[tuple[str, int, int]], kinds: Sequence[str] | None = None) -> list[bool]:
    """For the ``(origin, seq, v)`` of each op of a batch (of kinds ``kinds``), whether its signature must travel
    with it: a format 2 op whose successor (seq + 1, same device, format 2 or later) is in the batch too is pinned
    by the link the successor signs, so the receiver checks the signature at the end of the run instead
    (:func:`verify_ops`). Pull answers leave the others out. A lost-op statement always keeps its own: the link
    it stands for is declared, so its successor's signature does not pin it."""
    later = {(origin, seq) for origin, seq, v in keys if v >= 2}
    needed = [v < 2 or (origin, seq + 1) not in later for origin, seq, v in keys]
    if kinds is not None:
        needed = [keep or kind == LOST_KIND for keep, kind in zip(needed, kinds, strict=True)]
    return needed


def verify_each(ops: Sequence[Mapping[str, Any]]) -> None:
    """Checks every op's own signature against the link it names. The server does, for what devices push, before
    it keeps them: it sends any of them on alone, where a pull filtered by scope breaks a run, and the receiver
    then checks that signature. Call after :func:`verify_ops`, which fills in the links a batch leaves out.

    Raises:
        ForgedOpError: naming the first op whose signature is missing, unreadable, not its device's, or does
            not match.
    """
    if len(ops) >= _PARALLEL_FROM:
        half = len(ops) // 2
        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(_first_bad, [ops[:half], ops[half:]]))
        found = next((f for f in parts if f is not None), None)
    else:
        found = _first_bad(ops)
    if found is not None:
        raise _forged(*found)


def failing_signatures(ops: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ops whose own signature does not check (missing, unreadable, not their device's, not matching): a
    replica keeps the signatures of ops inside a run unchecked (the run's last one pins their content), and
    checks those of other devices' ops with this before it sends them to the server, which checks each."""
    if len(ops) < _PARALLEL_FROM:
        return _all_bad(ops)
    half = len(ops) // 2
    with ThreadPoolExecutor(2) as pool:  # libsodium frees the interpreter lock while it checks
        return [op for part in pool.map(_all_bad, [ops[:half], ops[half:]]) for op in part]


def _all_bad(ops: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [op for op in ops if _first_bad([op]) is not None]


def _first_bad(ops: Sequence[Mapping[str, Any]]) -> _Found | None:
    owners: dict[bytes, str] = {}
    for op in ops:
        raw = _raw_sig(op)
        if raw is None:
            return op, "has no readable signature" if op.get("sig") else "travelled without its signature"
        if _owner(raw[:32], owners) != op["origin"]:
            return op, "is signed by a key that is not its device's"
        prev = _first_prev(op)
        if type(prev) is not bytes:
            return prev  # type: ignore[return-value]
        if not _signed(raw, signing_message(op, prev)):
            return op, _NO_MATCH
    return None


def _forged(op: Mapping[str, Any], why: str) -> ForgedOpError:
    label = f"op {op.get('origin', '?')}:{op.get('seq', '?')} ({op.get('kind', '?')})"
    return ForgedOpError(
        "Refused a change that is not what its device signed: it was altered on the way, or forged. Nothing from "
        "this batch was applied; tell the station which device or bundle it came from",
        [(label, why)],
        key="trust.altered",
    )


_Found = tuple[Mapping[str, Any], str]
_Messages = dict[int, tuple[bytes | None, bytes]]  # id(op) -> its signature (None without one) and signing message
_NO_MATCH = "has a signature that does not match its content"
_NO_MATCH_RUN = (
    "has a signature that does not match its content or that of an op before it in the batch that travelled "
    "without its own signature"
)
_UNLINKED = (
    "is not the op that the next op of its device in the batch follows, and has no signature of its own: one of "
    "them was altered"
)
_UNCHECKABLE = (
    "cannot be checked: it travelled without its signature, and no later op of its device in the batch carries one"
)


def _raw_sig(op: Mapping[str, Any]) -> bytes | None:
    try:
        raw = binascii.a2b_base64(op["sig"], strict_mode=True)
    except (binascii.Error, KeyError, TypeError, ValueError):
        return None
    return raw if len(raw) == 96 else None


def _owner(public_key: bytes, owners: dict[bytes, str]) -> str:
    owner = owners.get(public_key)
    if owner is None:
        owner = owners[public_key] = origin_of(public_key)
    return owner


def _runs(ops: Sequence[Mapping[str, Any]]) -> tuple[list[list[Mapping[str, Any]]], list[Mapping[str, Any]]]:
    """The batch's maximal runs of consecutive seqs of one device, in seq order, and the ops that repeat an
    ``(origin, seq)`` already in the batch."""
    by_origin: dict[str, dict[int, Mapping[str, Any]]] = {}
    repeats: list[Mapping[str, Any]] = []
    for op in ops:
        items = by_origin.get(op["origin"])
        if items is None:
            items = by_origin[op["origin"]] = {}
        seq = op["seq"]
        if seq in items:
            repeats.append(op)
        else:
            items[seq] = op
    runs: list[list[Mapping[str, Any]]] = []
    for items in by_origin.values():
        run: list[Mapping[str, Any]] = []
        last = -1
        for seq in sorted(items):
            if seq != last + 1 and run:
                runs.append(run)
                run = []
            run.append(items[seq])
            last = seq
        runs.append(run)
    return runs, repeats


def _first_prev(op: Mapping[str, Any]) -> bytes | _Found:
    """The link the first op of a run starts from, or why it has none."""
    pd = op.get("pd")
    if op["seq"] == 1:
        return ZERO_LINK if pd is None else (op, "links to an op before its device's first")
    if pd is None:
        return op, "cannot be checked: it lacks the link to the op before it (pd), and that op is not in the batch"
    return bytes.fromhex(pd)


def _signed(raw: bytes, message: bytes) -> bool:
    try:
        crypto_sign_open(raw[32:] + message, raw[:32])
    except (BadSignatureError, ValueError):
        return False
    return True


def _check_run(
    run: list[Mapping[str, Any]],
    owners: dict[bytes, str],
    unchecked: list[Mapping[str, Any]] | None,
    messages: _Messages | None = None,
) -> _Found | OpForkError | None:
    """Checks one run: every link, the key fingerprint of every signature present, and the signature of the
    last signed op only (its link pins the content of every op before it; for format 1 ops, their signatures
    too). Fills in ``pd`` where the batch left it out (it is derived from the run).

    Ops after the run's last signature are vouched for by nothing in the batch: they are added to
    ``unchecked`` (the caller leaves them out) or, when it is None, named as uncheckable. An op whose ``pd``
    names another predecessor than the op before it in the run starts a new part, checked the same way: if
    every part is signed, the device signed two histories (a fork); if not, the op whose own signature fails
    is named (an altered ``pd`` fails its op's signature, which covers it).

    With ``messages``, each op's signature (None without one) and signing message go in it, keyed by ``id(op)``,
    for :class:`SignatureChecks` to check each signature without building its message again."""
    first = run[0]
    prev = _first_prev(first)
    if type(prev) is not bytes:
        return prev  # type: ignore[return-value]
    start = 0
    fork: OpForkError | None = None
    signed: tuple[int, bytes, bytes] | None = None  # the part's last signed op: index, signature, message
    blake2b = hashlib.blake2b
    origin = first["origin"]  # a run is one device's
    key: bytes | None = None

    def close(end: int, broken: bool) -> _Found | None:
        """Checks the part run[start:end] by its last signature; what follows that signature is unchecked: an
        error at a break of the chain (``broken``: the op after the part does not follow its last op, which
        nothing vouches for) or without ``unchecked`` to put it in."""
        last = start - 1
        if signed is not None:
            last, raw, message = signed
            if not _signed(raw, message):
                return _name_forged(run[start : last + 1])
        if last < end - 1:
            if broken:
                return run[end - 1], _UNLINKED
            if unchecked is None:
                return run[end - 1], _UNCHECKABLE
            unchecked.extend(run[last + 1 : end])
        return None

    for i, op in enumerate(run):
        sig: bytes | None = None
        if op.get("sig") is not None:
            sig = _raw_sig(op)
            if sig is None:
                return op, "has no readable signature"
            if sig[:32] != key:
                if _owner(sig[:32], owners) != origin:
                    return op, "is signed by a key that is not its device's"
                key = sig[:32]
        elif op["v"] < 2:
            return op, "has no readable signature"  # a format 1 link covers the signature
        elif _declared(op) is not None:
            return op, "states that an op is lost and travelled without its signature, which nothing else pins"
        if i:
            pd = op.get("pd")
            link = prev.hex()
            if pd is None:
                op["pd"] = link  # type: ignore[index]
            elif pd != link:
                found = close(i, True)
                if found is not None:
                    return found
                if signed is not None and signed[0] == i - 1:  # both sides signed: two histories
                    fork = fork or _fork(run[i - 1], op)
                start, prev, signed = i, bytes.fromhex(pd), None
        message = signing_message(op, prev)
        if messages is not None:
            messages[id(op)] = (sig, message)
        if sig is not None:
            signed = (i, sig, message)
            prev = _declared(op) or blake2b(message if op["v"] >= 2 else message + sig, digest_size=16).digest()
        else:
            prev = _declared(op) or blake2b(message, digest_size=16).digest()
    return close(len(run), False) or fork


class _LinkFork(OpForkError):
    """An op of the batch follows another op than the one of that identity in the batch; ``op`` names it."""

    def __init__(self, message: str, op: str) -> None:
        super().__init__(message)
        self.op = op


def _fork(held: Mapping[str, Any], op: Mapping[str, Any]) -> OpForkError:
    return _LinkFork(
        f"Two different ops both claim to be op {held['origin']}:{held['seq']}: op {op['origin']}:{op['seq']}, "
        f"signed by the same device, follows another one than the one in this batch. The device {op['origin']} "
        "was probably restored from a backup or copied to another phone; stop using that copy and ask the station "
        "to re-enrol it. Nothing from this batch was applied.",
        f"{held['origin']}:{held['seq']}",
    )


def _name_forged(run: list[Mapping[str, Any]]) -> _Found:
    """The first op of a failed run whose own signature does not check (each op against the link before it),
    or its last op when every signature present checks (then an op without its own signature was altered)."""
    prev = _first_prev(run[0])
    assert type(prev) is bytes  # _check_run returned earlier otherwise
    for op in run:
        raw = _raw_sig(op) if op.get("sig") is not None else None
        message = signing_message(op, prev)
        if raw is not None and not _signed(raw, message):
            return op, _NO_MATCH
        prev = (
            _declared(op)
            or hashlib.blake2b(message if raw is None or op["v"] >= 2 else message + raw, digest_size=16).digest()
        )
    return run[-1], _NO_MATCH_RUN


def _check_runs(
    runs: Sequence[list[Mapping[str, Any]]],
    unchecked: list[Mapping[str, Any]] | None,
    messages: _Messages | None = None,
) -> _Found | OpForkError | None:
    """The first forged op of the runs; else the first fork; else None."""
    owners: dict[bytes, str] = {}
    fork: OpForkError | None = None
    for run in runs:
        found = _check_run(run, owners, unchecked, messages)
        if isinstance(found, OpForkError):
            fork = fork or found
        elif found is not None:
            return found
    return fork


def _check_repeats(
    repeats: Sequence[Mapping[str, Any]], ops: Sequence[Mapping[str, Any]], messages: _Messages | None = None
) -> _Found | OpForkError | None:
    """Ops that repeat an identity in the batch are checked one by one (rare: a resent op); one without its
    own signature is the same op as the one kept (the store compares them), so it is not checked again."""
    kept = {(op["origin"], op["seq"]): op for op in reversed(ops)}
    owners: dict[bytes, str] = {}
    for op in repeats:
        if "pd" not in op and op["seq"] > 1 and "pd" in kept[(op["origin"], op["seq"])]:
            op["pd"] = kept[(op["origin"], op["seq"])]["pd"]  # type: ignore[index]
        found = _check_run([op], owners, [], messages)
        if found is not None:
            return found
    return None


def verify_ops(ops: Sequence[Mapping[str, Any]], *, partial: bool = False) -> list[Mapping[str, Any]]:
    """Checks the ops' signatures and links (ops already validated, so every field is present), and fills in
    the ``pd`` of each op whose predecessor is in the batch when it lacks one.

    The batch is split by device into runs of consecutive seqs; each run's ops are linked in order and only
    the last op's signature is checked (see the module doc): format 2 ops before it may come without theirs.
    The first op of a run needs its ``pd`` unless its seq is 1: a caller that holds its predecessor fills it in
    first (:meth:`caresync.store.store.Store.ingest`).

    Ops at the end of a run that came without their signature are vouched for by nothing in the batch. With
    ``partial`` they are returned, for the caller to leave out (a lossy link between replicas dropped the op
    that closes their run; they come again with it); otherwise they are refused like a forgery (a server's
    pull answer always closes its runs, and what a device pushes is signed op by op). Returns the ops left
    out (none without ``partial``).

    Raises:
        ForgedOpError: naming an op whose signature does not match or is not its device's, a format 1 op
            without one, an op whose link was altered, one that cannot be checked because its link is missing,
            or (without ``partial``) one that nothing in the batch vouches for.
        OpForkError: every op is signed, but one names another predecessor than the op of that identity in
            the batch: its device signed two histories.
    """
    return _verify(ops, partial, None)


def _verify(ops: Sequence[Mapping[str, Any]], partial: bool, messages: _Messages | None) -> list[Mapping[str, Any]]:
    runs, repeats = _runs(ops)
    unchecked: list[Mapping[str, Any]] | None = [] if partial else None
    if len(runs) < _PARALLEL_FROM:
        found = _check_runs(runs, unchecked, messages)
    else:
        half = len(runs) // 2
        halves: list[list[Mapping[str, Any]] | None] = [[], []] if partial else [None, None]
        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(_check_runs, [runs[:half], runs[half:]], halves, [messages, messages]))
        forged = [f for f in parts if f is not None and not isinstance(f, OpForkError)]
        found = forged[0] if forged else next((f for f in parts if f is not None), None)
        if unchecked is not None:
            unchecked = [op for half_ops in halves for op in half_ops or ()]
    if (found is None or isinstance(found, OpForkError)) and repeats:
        found = _check_repeats(repeats, ops, messages) or found
    if isinstance(found, OpForkError):
        raise found
    if found is not None:
        raise _forged(*found)
    return unchecked or []


def verify_signed(ops: Sequence[Mapping[str, Any]]) -> None:
    """:func:`verify_ops` (without ``partial``), then :func:`verify_each`, reusing the signing message each op's
    link was made from: building the messages is most of the work that holds the interpreter lock, and
    :func:`verify_each` built them all again. The server checks what devices push and relay with it. Each op's own
    signature is checked on two threads from :data:`_PARALLEL_FROM` ops (libsodium frees the lock).

    Raises:
        ForgedOpError, OpForkError: as :func:`verify_ops`; then ForgedOpError as :func:`verify_each`, naming the
            first op (in batch order) that travelled without its signature or whose signature does not match.
    """
    messages: _Messages = {}
    _verify(ops, False, messages)
    pairs = [(op, *messages[id(op)]) for op in ops]
    if len(pairs) < _PARALLEL_FROM:
        found = _first_unsigned(pairs)
    else:
        half = len(pairs) // 2
        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(_first_unsigned, [pairs[:half], pairs[half:]]))
        found = next((f for f in parts if f is not None), None)
    if found is not None:
        raise _forged(*found)


def _first_unsigned(pairs: Sequence[tuple[Mapping[str, Any], bytes | None, bytes]]) -> _Found | None:
    for op, raw, message in pairs:
        if raw is None:
            return op, "travelled without its signature"
        if not _signed(raw, message):
            return op, _NO_MATCH
    return None
