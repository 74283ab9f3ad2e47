"""The relay bundle format: the files a courier carries, their checks, and the server's sealed answers.

This is the part of relay bundles the server shares with devices (it checks bundles and seals answers); the
device side is :mod:`caresync.sync.bundles.relay` and the courier's bag :mod:`caresync.sync.bundles.bag`.

A bundle file is JSON::

    {"caresync_bundle": 1, "type": "ops", "id": "…", "origin": "<replica id>", "public_key": "<hex>",
     "created_ms": …, "expires_ms": …, "cursor": "<relay cursor>", "receipts": [...], "ops": [...],
     "sig": "<hex Ed25519 signature over the canonical JSON of everything else>"}

An answer file holds ``{"caresync_bundle": 1, "type": "answers", "answers": [{"id", "for", "bundle",
"created_ms", "expires_ms", "sealed"}...]}``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519

from caresync.errors import BundleError, CaresyncError, InvalidInputError
from caresync.trust.blobs import CHUNK_SIZE, BlobManifest, manifest_of
from caresync.trust.keys import DeviceKey, origin_of, verify_signature

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_TTL_HOURS",
    "MAX_BUNDLE_BLOB_BYTES",
    "MAX_BUNDLE_OPS",
    "MAX_DELETED",
    "MAX_HANDOFFS",
    "MAX_WANTS",
    "SERVER_SIG",
    "CarriedBlob",
    "blob_entry",
    "canonical",
    "carried_blobs",
    "check_bundle",
    "open_answer",
    "read_file",
    "seal_answer",
    "write_file",
]

#: The bundle file format this caresync writes and reads.
BUNDLE_FORMAT = 1
#: How long a bundle or an answer stays usable by default: a week of a courier's rounds.
DEFAULT_TTL_HOURS = 7 * 24
#: At most this many ops in one bundle; the rest go in the next one (after the answer comes back).
MAX_BUNDLE_OPS = 2000
#: The most hand-offs (answers given to their devices) one relay request reports; a courier with more sends them
#: in several requests.
MAX_HANDOFFS = 500
#: At most this many sealed blob bytes ride in one bundle, and in one answer (base64 in the file: 5.4 MiB, within
#: the server's default 8 MiB request). A larger blob is split by chunks over several bundles (or answers), each
#: taking up where the server's (or the device's) last word left off.
MAX_BUNDLE_BLOB_BYTES = 4 * 1024 * 1024
#: At most this many blobs a bundle asks to be carried back (``wants``); the others are asked for next time.
MAX_WANTS = 500
#: At most this many blob ids a request (or a bundle) reports deleted, and an answer tells a device to delete.
MAX_DELETED = 1000
#: The key of the server's signature inside an answer's sealed payload.
SERVER_SIG = "server_sig"
HOUR_MS = 3_600_000
_MAX_FILE_BYTES = 64 * 1024 * 1024


def canonical(value: Any) -> bytes:
    """The bytes a signature covers: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_file(path: str | Path) -> dict[str, Any]:
    """A bundle or answers file, parsed and checked for its format (not yet for its signature).

    Raises:
        BundleError: the file is missing, too big, not JSON, or not a caresync bundle of a known format.
    """
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_FILE_BYTES:
            raise BundleError(
                f"{p} is larger than any caresync bundle; it is not one.", key="bundle.too_big", fields={"path": str(p)}
            )
        data = json.loads(p.read_bytes())
    except OSError as exc:
        raise BundleError(
            f"Cannot read {p}: {exc.strerror or exc}.",
            key="bundle.cannot_read",
            fields={"path": str(p), "reason": str(exc.strerror or exc)},
        ) from exc
    except ValueError as exc:
        raise BundleError(
            f"{p} is not a caresync bundle (not JSON: the file is damaged or of another kind).",
            key="bundle.not_json",
            fields={"path": str(p)},
        ) from exc
    if not isinstance(data, dict) or "caresync_bundle" not in data:
        raise BundleError(f"{p} is not a caresync bundle.", key="bundle.not_bundle", fields={"path": str(p)})
    if data["caresync_bundle"] != BUNDLE_FORMAT:
        raise BundleError(
            f"{p} is a bundle of format {data['caresync_bundle']!r}; this caresync reads format 1.",
            key="bundle.format",
            fields={"path": str(p), "format": repr(data["caresync_bundle"])},
        )
    if data.get("type") not in ("ops", "answers"):
        raise BundleError(
            f"{p} is a caresync file of unknown type {data.get('type')!r}.",
            key="bundle.unknown_type",
            fields={"path": str(p), "type": repr(data.get("type"))},
        )
    return data


def check_bundle(data: Mapping[str, Any], *, now_ms: int | None = None) -> dict[str, Any]:
    """Checks an ops bundle: its fields, that its public key is its origin's, and its signature; and, when
    ``now_ms`` is given, that it has not expired. Returns it as a dict.

    Raises:
        BundleError: damaged, forged (signature or key do not match the origin), or expired.
    """
    fields = {
        "id": str,
        "origin": str,
        "public_key": str,
        "created_ms": int,
        "expires_ms": int,
        "cursor": str,
        "receipts": list,
        "ops": list,
        "sig": str,
    }
    bad = [name for name, kind in fields.items() if not isinstance(data.get(name), kind)]
    if data.get("type") != "ops" or bad:
        raise BundleError(
            f"This bundle is damaged (fields {', '.join(bad) or 'type'} missing or wrong).",
            key="bundle.damaged_fields",
            fields={"fields": ", ".join(bad) or "type"},
        )
    bundle = dict(data)
    try:
        public_key = bytes.fromhex(bundle["public_key"])
        signature = bytes.fromhex(bundle.pop("sig"))
        owner = origin_of(public_key)
    except (ValueError, InvalidInputError):
        raise BundleError(
            f"Bundle {data['id']} is damaged: its key or signature is not hex of the right size.",
            key="bundle.damaged_key",
            fields={"bundle": data["id"]},
        ) from None
    if owner != bundle["origin"]:
        raise BundleError(
            f"Bundle {data['id']} claims to come from device {bundle['origin']} but carries the key of device "
            f"{owner}: it was forged. Do not carry it.",
            key="bundle.forged",
            fields={"bundle": data["id"], "origin": bundle["origin"], "owner": owner},
        )
    if not verify_signature(public_key, canonical(bundle), signature):
        raise BundleError(
            f"Bundle {data['id']} from device {bundle['origin']} does not match its signature: it was altered after "
            "the device wrote it. Do not carry it; ask for a new one.",
            key="bundle.altered",
            fields={"bundle": data["id"], "origin": bundle["origin"]},
        )
    if now_ms is not None and bundle["expires_ms"] < now_ms:
        raise BundleError(
            f"Bundle {data['id']} from device {bundle['origin']} expired; nothing in it was lost (its ops stay on "
            "the device): ask the device for a new bundle.",
            key="bundle.expired",
            fields={"bundle": data["id"], "origin": bundle["origin"]},
        )
    bundle["sig"] = signature.hex()
    return bundle


@dataclass(frozen=True)
class CarriedBlob:
    """Chunks of a blob (an attachment's sealed bytes) a bundle or an answer carries: some or all of them, each
    checked against the blob's manifest, and the manifest against the blob's name."""

    manifest: BlobManifest
    op: str
    """The attach op (``origin:seq``) naming it."""
    parts: tuple[tuple[int, bytes], ...]
    """The chunks carried, as ``(number, bytes)``."""

    @property
    def size(self) -> int:
        """How many sealed bytes are carried."""
        return sum(len(data) for _, data in self.parts)


def blob_entry(manifest: BlobManifest, op: str, parts: Sequence[tuple[int, bytes]]) -> dict[str, Any]:
    """A bundle's (or an answer's) entry for chunks of a blob: its name, size and chunk hashes (so the receiver
    checks each chunk on its own), the attach op naming it, and the chunks as ``[number, base64]``."""
    return {
        "id": manifest.id,
        "op": op,
        "size": manifest.size,
        "chunks": manifest.chunks,
        "parts": [[n, base64.b64encode(data).decode("ascii")] for n, data in parts],
    }


def carried_blobs(bundle: Mapping[str, Any], member: str = "blobs") -> list[CarriedBlob]:
    """The blob chunks a bundle (or an answer's payload) carries in ``member`` (absent when there are none),
    each checked: the chunk list names the blob, and each chunk is that chunk, intact. An entry of an earlier
    release (the whole blob as ``data``) is read too.

    Raises:
        BundleError: an entry is damaged (its chunks are not the blob it names).
    """
    entries = bundle.get(member) or []
    if not isinstance(entries, list):
        raise BundleError(
            f"Bundle {bundle.get('id')} is damaged: its blobs are not a list.",
            key="bundle.blobs_not_list",
            fields={"bundle": bundle.get("id")},
        )
    out = []
    for entry in entries:
        try:
            blob_id, op, size = str(entry["id"]), str(entry["op"]), int(entry["size"])
            if "data" in entry:  # a whole blob, as bundles carried them before they carried chunks
                data = base64.b64decode(entry["data"], validate=True)
                manifest = BlobManifest.checked(blob_id, size, manifest_of(data).chunks)
                parts = tuple((n, data[n * CHUNK_SIZE : (n + 1) * CHUNK_SIZE]) for n in range(len(manifest.chunks)))
            else:
                manifest = BlobManifest.checked(blob_id, size, [str(h) for h in entry["chunks"]])
                parts = tuple((int(n), base64.b64decode(text, validate=True)) for n, text in entry["parts"])
            for n, data in parts:
                manifest.check_chunk(n, data)
        except (KeyError, TypeError, ValueError, CaresyncError) as exc:
            raise BundleError(
                f"Bundle {bundle.get('id')} carries a damaged blob ({exc}).",
                key="bundle.damaged_blob",
                fields={"bundle": bundle.get("id"), "reason": str(exc)},
            ) from None
        out.append(CarriedBlob(manifest, op, parts))
    return out


def write_file(path: Path, value: Any) -> None:
    """Writes a bundle or answers file whole or not at all (a cut leaves the old file, or none)."""
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(canonical(value))
        os.replace(tmp, path)
    except OSError as exc:
        raise BundleError(
            f"Cannot write {path}: {exc.strerror or exc}. Check the folder and free space.",
            key="bundle.cannot_write",
            fields={"path": str(path), "reason": str(exc.strerror or exc)},
        ) from exc


# --- the server's answer, sealed to the device ------------------------------------------------------------


def seal_answer(
    device_public_key: bytes,
    payload: Mapping[str, Any],
    *,
    server_key: DeviceKey,
    origin: str,
    bundle_id: str,
    now_ms: int,
    ttl_hours: int = DEFAULT_TTL_HOURS,
) -> dict[str, Any]:
    """The server's answer to a bundle, signed by the server's key (so a carrier cannot forge acknowledgements,
    which would make the device stop sending work the server never got) and sealed to the device's key
    (Ed25519 converted to X25519, so the carrier cannot read it)."""
    signed = {**payload, SERVER_SIG: base64.b64encode(server_key.sign(canonical(payload))).decode("ascii")}
    x25519 = crypto_sign_ed25519_pk_to_curve25519(device_public_key)
    box = nacl.public.SealedBox(nacl.public.PublicKey(x25519))
    sealed = base64.b64encode(box.encrypt(canonical(signed))).decode("ascii")
    return {
        "id": secrets.token_hex(8),
        "for": origin,
        "bundle": bundle_id,
        "created_ms": now_ms,
        "expires_ms": now_ms + ttl_hours * HOUR_MS,
        "sealed": sealed,
    }


def open_answer(key: DeviceKey, sealed: str) -> Any:
    """The payload of an answer sealed to ``key``'s device. Raises BundleError when it is not for this key."""
    secret = crypto_sign_ed25519_sk_to_curve25519(key.seed + key.public_key)
    box = nacl.public.SealedBox(nacl.public.PrivateKey(secret))
    try:
        return json.loads(box.decrypt(base64.b64decode(sealed)))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise BundleError(
            "This answer cannot be opened with this device's key: it is for another device, or damaged.",
            key="bundle.answer_not_ours",
        ) from None
