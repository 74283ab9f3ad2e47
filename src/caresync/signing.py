"""Signed ops and sealed fields: how an op proves who made it, and how private content stays private.

**Signatures.** Every op carries ``sig``: base64 of its maker's Ed25519 public key (32 bytes) followed by the
signature (64 bytes) of :func:`signing_message`. The key proves itself: its fingerprint must be the op's
``origin`` (:func:`caresync.keys.origin_of`), so no one can sign in another device's name, and no key
registry has to be trusted. The message covers the envelope and, for each body key, a digest of its value,
so that a redaction can erase a value and keep its digest (in the body's ``redacted`` map): the signature
still checks, and the erased value cannot be recovered from it when it was sealed (sealed text is random).

**Sealing.** The private fields of :data:`SEALED_FIELDS` are sealed to the station's X25519 public key on the
device that captures them, before the op is signed: logs, the server and relays hold ciphertext only, and
only a device holding the station's secret (:class:`caresync.keys.StationKey`) reads them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from pydantic_core import to_json

from .errors import ForgedOpError, TrustError
from .keys import DeviceKey, StationKey, is_sealed, origin_of, seal_value, unseal_value

__all__ = [
    "SEALED_FIELDS",
    "SEALED_SET_FIELDS",
    "field_digest",
    "open_sealed",
    "seal_body",
    "sign_op",
    "signer_of",
    "signing_message",
    "verify_ops",
]

_CONTEXT = b"caresync-op-signature/1\n"
_PARALLEL_FROM = 512  # ops in a batch from which signatures are checked on two threads (libsodium frees the GIL)
_SCALARS = (str, int, bool, type(None))

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


def field_digest(value: Any) -> str:
    """The digest a signature covers for one body value: blake2b-128 of its canonical JSON, in hex."""
    if type(value) in _SCALARS:
        canonical = to_json(value)
    else:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def signing_message(op: Mapping[str, Any]) -> bytes:
    """The bytes an op's signature covers: its envelope, then each body key with the digest of its value (or,
    for a value a redaction erased, the digest it kept)."""
    body = op["body"]
    redacted = body.get("redacted") if type(body) is dict else None
    digests = []
    for key in sorted(body):
        value = body[key]
        if redacted is not None:
            if key == "redacted":
                continue
            if value is None and key in redacted:
                digests.append((key, redacted[key]))
                continue
        digests.append((key, field_digest(value)))
    envelope = [op["v"], op["kind"], op["origin"], op["seq"], op["hlc"], op["eid"], op["actor"], op["at"], digests]
    return _CONTEXT + to_json(envelope)


def sign_op(op: dict[str, Any], key: DeviceKey) -> dict[str, Any]:
    """Sets ``op["sig"]`` (the op must be ``key``'s: its origin is the key's fingerprint); returns the op."""
    if op["origin"] != key.origin:
        raise TrustError(f"Device {key.origin} cannot sign an op of device {op['origin']}.")
    op["sig"] = base64.b64encode(key.public_key + key.sign(signing_message(op))).decode("ascii")
    return op


def signer_of(op: Mapping[str, Any]) -> str | None:
    """The hex public key that signed ``op`` (None for an op written before signing existed)."""
    sig = op.get("sig")
    return base64.b64decode(sig)[:32].hex() if sig else None


def _forged(op: Mapping[str, Any], why: str) -> ForgedOpError:
    label = f"op {op.get('origin', '?')}:{op.get('seq', '?')} ({op.get('kind', '?')})"
    return ForgedOpError(
        "Refused a change that is not what its device signed: it was altered on the way, or forged. Nothing from "
        "this batch was applied; tell the station which device or bundle it came from",
        [(label, why)],
    )


def _check(ops: Sequence[Mapping[str, Any]], start: int, owners: dict[bytes, str]) -> tuple[int, str] | None:
    for i, op in enumerate(ops, start):
        try:
            raw = base64.b64decode(op["sig"], validate=True)
        except (binascii.Error, KeyError, TypeError, ValueError):
            return i, "has no readable signature"
        public_key = raw[:32]
        owner = owners.get(public_key)
        if owner is None:
            owner = owners[public_key] = origin_of(public_key) if len(public_key) == 32 else ""
        if owner != op["origin"]:
            return i, "is signed by a key that is not its device's"
        try:
            crypto_sign_open(raw[32:] + signing_message(op), public_key)
        except (BadSignatureError, ValueError):
            return i, "has a signature that does not match its content"
    return None


def verify_ops(ops: Sequence[Mapping[str, Any]]) -> None:
    """Checks every op's signature (ops already validated, so every field is present).

    Raises:
        ForgedOpError: naming the first op whose signature is missing, not its device's, or does not match.
    """
    if len(ops) < _PARALLEL_FROM:
        found = _check(ops, 0, {})
    else:
        half = len(ops) // 2
        with ThreadPoolExecutor(2) as pool:
            parts = pool.map(lambda part: _check(ops[part[0] : part[1]], part[0], {}), [(0, half), (half, len(ops))])
            found = next((f for f in parts if f is not None), None)
    if found is not None:
        index, why = found
        raise _forged(ops[index], why)


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
