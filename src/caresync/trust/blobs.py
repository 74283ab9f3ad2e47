"""Sealed blobs: how an attachment's bytes are sealed on the capturing device, named, and checked chunk by chunk.

An attachment's bytes (a photo, a signature, a document) are too large for an op, so they travel and rest apart
from the log as a *blob*. On the device that captures them:

- the bytes are encrypted with a fresh random 32-byte key (XSalsa20-Poly1305, libsodium's secretbox, random
  nonce in front): the *sealed* blob. The key goes into the attach op as a private field, sealed there like any
  other private field (:func:`caresync.trust.signing.seal_body`), so whoever may read the op's private fields may
  open the blob, and no one else: couriers, relays and the server hold and carry bytes they cannot read;
- the sealed blob is cut into chunks of :data:`CHUNK_SIZE` bytes; each chunk's hash is
  ``blake2b-256(chunk)``, and the blob's *name* (its id) is ``blake2b-256`` over a context and the chunk hashes
  (a one-level hash tree). The name is computed from the sealed bytes, which a fresh key makes different every
  time, so it says nothing about a known image (no one can hash a picture they hold and look for it).

A receiver checks each chunk on its own against the chunk list, and the chunk list against the name, so a
damaged or forged chunk is refused as it arrives, and a cut transfer resumes at the first missing chunk.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import nacl.exceptions
import nacl.secret

from caresync.errors import InvalidInputError, TrustError

__all__ = [
    "BLOB_ID_PATTERN",
    "CHUNK_SIZE",
    "BlobManifest",
    "BlobRef",
    "chunk_hash",
    "chunk_hashes",
    "is_blob_id",
    "live_blobs",
    "manifest_of",
    "open_blob",
    "seal_blob",
]

#: The size of a blob chunk: the unit a transfer sends, checks and resumes by (the last chunk may be shorter).
CHUNK_SIZE = 256 * 1024
#: A blob id, as text.
BLOB_ID_PATTERN = r"^[0-9a-f]{64}$"
_BLOB_ID_RE = re.compile(BLOB_ID_PATTERN)
_CONTEXT = b"caresync-blob/1\n"
_KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE


def chunk_hash(chunk: bytes) -> str:
    """The hash that checks one chunk: ``blake2b-256`` in hex."""
    return hashlib.blake2b(chunk, digest_size=32).hexdigest()


def chunk_hashes(sealed: bytes) -> list[str]:
    """The hashes of ``sealed``'s chunks, in order (one empty chunk for empty bytes, never happens for a box)."""
    return [chunk_hash(sealed[i : i + CHUNK_SIZE]) for i in range(0, max(len(sealed), 1), CHUNK_SIZE)]


class BlobManifest:
    """What names and checks a blob: its size and its chunks' hashes. ``id`` is derived from them."""

    __slots__ = ("chunks", "id", "size")

    def __init__(self, size: int, chunks: Sequence[str]) -> None:
        expected = max(1, -(-size // CHUNK_SIZE))
        if size < 1 or len(chunks) != expected:
            raise InvalidInputError(
                "A blob's chunk list does not fit its size",
                [("chunks", f"{len(chunks)} chunk hash(es) for {size} bytes: expected {expected}")],
            )
        for n, h in enumerate(chunks):
            if not _BLOB_ID_RE.match(h):
                raise InvalidInputError("A blob's chunk list is damaged", [(f"chunks[{n}]", "is not 64 hex digits")])
        self.size = size
        self.chunks = list(chunks)
        digest = hashlib.blake2b(_CONTEXT + str(size).encode() + b"\n", digest_size=32)
        for h in self.chunks:
            digest.update(bytes.fromhex(h))
        self.id = digest.hexdigest()

    @classmethod
    def checked(cls, blob_id: str, size: int, chunks: Sequence[str]) -> BlobManifest:
        """The manifest, after checking it names ``blob_id``.

        Raises:
            TrustError: the size and chunk list are not those of ``blob_id`` (damaged or forged).
        """
        manifest = cls(size, chunks)
        if manifest.id != blob_id:
            raise TrustError(
                f"The chunk list offered for blob {blob_id[:12]}… is not that blob's: refused.",
                key="blob.chunks_not_its",
                fields={"blob": blob_id[:12]},
            )
        return manifest

    def chunk_size(self, n: int) -> int:
        """How many bytes chunk ``n`` holds."""
        if not 0 <= n < len(self.chunks):
            raise InvalidInputError(f"Blob {self.id[:12]}… has no chunk {n}", [("n", f"0 to {len(self.chunks) - 1}")])
        return min(CHUNK_SIZE, self.size - n * CHUNK_SIZE)

    def check_chunk(self, n: int, data: bytes) -> None:
        """Raises TrustError unless ``data`` is chunk ``n`` of this blob, intact."""
        if len(data) != self.chunk_size(n) or chunk_hash(data) != self.chunks[n]:
            raise TrustError(
                f"Chunk {n} of blob {self.id[:12]}… arrived damaged: refused; it is fetched again.",
                key="blob.chunk_damaged",
                fields={"n": n, "blob": self.id[:12]},
            )


def manifest_of(sealed: bytes) -> BlobManifest:
    """The manifest (and so the id) of sealed bytes held whole."""
    return BlobManifest(len(sealed), chunk_hashes(sealed))


def is_blob_id(value: object) -> bool:
    """True when ``value`` is a blob id (64 hex digits)."""
    return isinstance(value, str) and bool(_BLOB_ID_RE.match(value))


def seal_blob(plaintext: bytes, key: bytes | None = None) -> tuple[bytes, bytes]:
    """``plaintext`` sealed with ``key`` (a fresh random one by default): ``(key, sealed bytes)``."""
    key = secrets.token_bytes(_KEY_BYTES) if key is None else key
    if len(key) != _KEY_BYTES:
        raise InvalidInputError("Not a blob key", [("key", f"must be {_KEY_BYTES} bytes, got {len(key)}")])
    return key, bytes(nacl.secret.SecretBox(key).encrypt(plaintext))


def open_blob(key: bytes, sealed: bytes) -> bytes:
    """The plaintext of a sealed blob.

    Raises:
        TrustError: ``key`` is not the blob's key, or the bytes were altered.
    """
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(sealed))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        raise TrustError(
            "This attachment cannot be opened: its key does not fit, or its bytes were altered.",
            key="attachment.cannot_open",
        ) from None


class BlobRef:
    """A blob a live attachment names: the blob, its size, whether it is a thumbnail, the attach op and record."""

    __slots__ = ("blob", "eid", "op", "size", "thumb")

    def __init__(self, blob: str, size: int, thumb: bool, op: str, eid: str) -> None:
        self.blob, self.size, self.thumb, self.op, self.eid = blob, size, thumb, op, eid


def live_blobs(
    ops: Iterable[tuple[str, str, str, int, Mapping[str, Any]]],
    erased_until: Mapping[str, int],
    resident_of: Mapping[str, str],
) -> list[BlobRef]:
    """The blobs the live attachments among ``ops`` name: the one rule replicas and the server both apply.

    Args:
        ops: the attach and detach ops, as ``(op id, record id, kind, hlc, body)``.
        erased_until: per resident, the stamp of the latest erasure of their attachments (``resident.redact`` with
            the field ``attachments``).
        resident_of: per visit, ticket or parcel, the resident it is of (named when it was created): an erasure
            takes the photos of the knocks on the resident's door, and of their tickets and parcels, too.

    An attachment is live while no detach op removed it, no redaction erased its key, and no erasure of its
    resident (of the record itself, or of the resident the visit, ticket or parcel is of) came after it.
    """
    rows = list(ops)
    removed = {ref for _, _, kind, _, body in rows if kind.endswith(".detach") for ref in body.get("removes", ())}
    out = []
    for op, eid, kind, hlc, body in rows:
        if not kind.endswith(".attach") or op in removed or body.get("key") is None:
            continue
        resident = eid if kind == "resident.attach" else resident_of.get(eid)
        if resident is not None and hlc < erased_until.get(resident, -1):
            continue
        out.append(BlobRef(body["blob"], int(body["size"]), False, op, eid))
        if body.get("thumb"):
            out.append(BlobRef(body["thumb"], int(body["thumb_size"]), True, op, eid))
    return out
