"""The replica's blobs: sealed attachment bytes, kept beside the op log in the same SQLite file.

Two tables (schema version 7): ``blobs`` holds each blob's manifest (its size and chunk hashes, which name it:
:mod:`caresync.trust.blobs`), how many of its chunks are held, and whether the sync server holds it all;
``blob_chunks`` holds the chunks, one row per :data:`~caresync.trust.blobs.CHUNK_SIZE` bytes.

Why a table and not a folder of files: a blob lands in the same transaction as the attach op that names it (a
crash leaves both or neither, never an op naming bytes the device lost); the replica stays one file to back up,
copy or hand to a new phone; a download cut in the middle keeps every chunk it committed (the next sync fetches
only the others, each checked before it is kept); and the scrub of the write-ahead log after a redaction covers
blob rows too. A chunk per row keeps memory flat: only :meth:`BlobStore.read` holds a whole blob.

Which blobs a replica should hold is read from its log: the attach ops no detach removed and no redaction
erased (:meth:`BlobStore.named`); a blob no such op names is collected (:meth:`BlobStore.collect`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic_core import from_json

from caresync.errors import InvalidInputError
from caresync.store.store import Store
from caresync.trust.blobs import CHUNK_SIZE, BlobManifest, BlobRef, live_blobs, manifest_of

__all__ = ["PULL_MODES", "BlobState", "BlobStore"]

#: Which blobs a sync fetches: every one this device may hold, thumbnails only (a knocker's phone), or none until
#: one is fetched.
PULL_MODES = ("eager", "thumbs", "lazy")
_PULL_MODE_META = "blob_pull_mode"
_DELETED_META = "blobs_deleted"  # deleted here, held by the server: not yet told it (it counts this device a holder)
_GONE_META = "blobs_gone"  # the server said no live attachment names them: never fetched again

_REFS = (
    "SELECT origin, seq, eid, kind, hlc, body FROM ops "
    "WHERE (kind GLOB '*.attach' OR kind GLOB '*.detach') AND known = 1"
)
_RESIDENT_LINKED = ("visit.attach", "ticket.attach", "parcel.attach")
_ERASURES = "SELECT eid, hlc, body FROM ops WHERE kind = 'resident.redact' AND known = 1"


class BlobState:
    """What a replica holds of one blob."""

    __slots__ = ("held", "manifest", "sent")

    def __init__(self, manifest: BlobManifest, held: int, sent: bool) -> None:
        self.manifest = manifest
        self.held = held
        """How many chunks are held."""
        self.sent = sent
        """True once the sync server said it holds the whole blob."""

    @property
    def complete(self) -> bool:
        """True when every chunk is held."""
        return self.held == len(self.manifest.chunks)


class BlobStore:
    """The blobs of one replica file (see the module doc). Writes join the caller's transaction, if any."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def pull_mode(self) -> str:
        """This device's pull mode (:data:`PULL_MODES`), kept in the replica file; ``eager`` unless set."""
        return self._store.get_meta(_PULL_MODE_META) or "eager"

    def set_pull_mode(self, mode: str) -> None:
        """Sets the pull mode. Raises InvalidInputError for a mode not in :data:`PULL_MODES`."""
        if mode not in PULL_MODES:
            raise InvalidInputError(
                "Cannot set the pull mode",
                [("pull_mode", f"one of {', '.join(PULL_MODES)}, not {mode!r}")],
                key="store.pull_mode",
            )
        self._store.set_meta(_PULL_MODE_META, mode)

    def put(self, sealed: bytes, *, sent: bool = False) -> BlobManifest:
        """Keeps a whole sealed blob; returns its manifest."""
        manifest = manifest_of(sealed)
        with self._store.write():
            self.declare(manifest, sent=sent)
            for n in range(len(manifest.chunks)):
                self._store.sql(
                    "INSERT OR IGNORE INTO blob_chunks (id, n, data) VALUES (?, ?, ?)",
                    (manifest.id, n, sealed[n * CHUNK_SIZE : (n + 1) * CHUNK_SIZE]),
                )
            self._recount(manifest.id)
        return manifest

    def declare(self, manifest: BlobManifest, *, sent: bool = False) -> None:
        """Records a blob this replica will hold (its chunks come with :meth:`put_chunk`)."""
        if manifest.id in self._listed(_DELETED_META):  # held again: the server must go on counting this device
            self._unlist(_DELETED_META, [manifest.id])
        self._store.sql(
            "INSERT INTO blobs (id, size, chunks, held, sent) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT (id) DO UPDATE SET sent = max(sent, excluded.sent)",
            (manifest.id, manifest.size, "".join(manifest.chunks), int(sent)),
        )

    def _recount(self, blob_id: str) -> None:
        self._store.sql(
            "UPDATE blobs SET held = (SELECT count(*) FROM blob_chunks WHERE id = ?) WHERE id = ?", (blob_id, blob_id)
        )

    def state(self, blob_id: str) -> BlobState | None:
        """What is held of ``blob_id``, or None when nothing is."""
        rows = self._store.sql("SELECT size, chunks, held, sent FROM blobs WHERE id = ?", (blob_id,))
        if not rows:
            return None
        size, chunks, held, sent = rows[0]
        hashes = [chunks[i : i + 64] for i in range(0, len(chunks), 64)]
        return BlobState(BlobManifest(size, hashes), held, bool(sent))

    def put_chunk(self, manifest: BlobManifest, n: int, data: bytes) -> None:
        """Keeps chunk ``n`` of a declared blob, after checking it (TrustError when it is damaged)."""
        manifest.check_chunk(n, data)
        with self._store.write():
            self._store.sql("INSERT OR IGNORE INTO blob_chunks (id, n, data) VALUES (?, ?, ?)", (manifest.id, n, data))
            self._recount(manifest.id)

    def missing(self, blob_id: str) -> list[int]:
        """The chunk numbers of a declared blob not held yet."""
        state = self.state(blob_id)
        if state is None:
            return []
        held = {n for (n,) in self._store.sql("SELECT n FROM blob_chunks WHERE id = ?", (blob_id,))}
        return [n for n in range(len(state.manifest.chunks)) if n not in held]

    def chunk(self, blob_id: str, n: int) -> bytes | None:
        """Chunk ``n`` of a blob, or None when it is not held."""
        rows = self._store.sql("SELECT data FROM blob_chunks WHERE id = ? AND n = ?", (blob_id, n))
        return bytes(rows[0][0]) if rows else None

    def read(self, blob_id: str) -> bytes | None:
        """A whole blob, each chunk checked again; None when it is not complete here."""
        state = self.state(blob_id)
        if state is None or not state.complete:
            return None
        parts = [
            bytes(d) for (d,) in self._store.sql("SELECT data FROM blob_chunks WHERE id = ? ORDER BY n", (blob_id,))
        ]
        for n, part in enumerate(parts):
            state.manifest.check_chunk(n, part)
        return b"".join(parts)

    def mark_sent(self, blob_id: str) -> None:
        """Remembers that the sync server holds the whole blob."""
        self._store.sql("UPDATE blobs SET sent = 1 WHERE id = ?", (blob_id,))

    def unsent(self) -> list[str]:
        """Complete blobs the sync server has not confirmed holding, smallest first."""
        rows = self._store.sql("SELECT id, chunks, held FROM blobs WHERE sent = 0 ORDER BY size, id")
        return [blob_id for blob_id, chunks, held in rows if held * 64 == len(chunks)]

    def held(self) -> set[str]:
        """Every blob with a row here (complete or not)."""
        return {blob_id for (blob_id,) in self._store.sql("SELECT id FROM blobs")}

    def named(self) -> list[BlobRef]:
        """The blobs the live attachments of this replica's records name (full pictures and thumbnails), by the
        rule of :func:`caresync.trust.blobs.live_blobs`."""
        rows = [
            (f"{origin}:{seq}", eid, kind, hlc, from_json(body))
            for origin, seq, eid, kind, hlc, body in self._store.sql(_REFS)
        ]
        erased: dict[str, int] = {}
        for eid, hlc, body in self._store.sql(_ERASURES):
            if "attachments" in from_json(body)["fields"]:
                erased[eid] = max(hlc, erased.get(eid, -1))
        resident_of: dict[str, str] = {}
        records = sorted({eid for _, eid, kind, _, _ in rows if kind in _RESIDENT_LINKED})
        if erased and records:  # an erasure takes the photos of the resident's knocks, tickets and parcels too
            for start in range(0, len(records), 500):
                part = records[start : start + 500]
                marks = ",".join("?" * len(part))
                for eid, body in self._store.sql(
                    "SELECT eid, body FROM ops WHERE kind IN ('visit.create', 'ticket.create', 'parcel.create') "
                    f"AND eid IN ({marks})",
                    part,
                ):
                    resident = from_json(body).get("resident_id")
                    if resident:
                        resident_of[eid] = resident
        return live_blobs(rows, erased, resident_of)

    def delete(self, blob_ids: Iterable[str]) -> int:
        """Deletes blobs and their chunks; returns how many there were. Those the sync server holds are listed
        for the next sync to tell it (:meth:`deleted`): it keeps a blob no attachment names until every device
        that held it says it deleted it."""
        ids = sorted(set(blob_ids))
        if not ids:
            return 0
        with self._store.write():
            told = []
            for blob_id in ids:
                if self._store.sql("SELECT sent FROM blobs WHERE id = ? AND sent = 1", (blob_id,)):
                    told.append(blob_id)
                self._store.sql("DELETE FROM blob_chunks WHERE id = ?", (blob_id,))
                self._store.sql("DELETE FROM blobs WHERE id = ?", (blob_id,))
            if told:
                self._list(_DELETED_META, told)
        return len(ids)

    def drop(self, blob_ids: Iterable[str]) -> int:
        """Deletes the blobs the sync server says no live attachment names any more (a removal or an erasure this
        device may not see: a courier's handheld never sees a resident's erasure), and never fetches them again.
        Only blobs the server holds are deleted: a blob this device made and has not sent stays. Returns how
        many were deleted."""
        ids = sorted(set(blob_ids))
        if not ids:
            return 0
        with self._store.write():
            mine = {b for b in ids if self._store.sql("SELECT 1 FROM blobs WHERE id = ? AND sent = 0", (b,))}
            self._list(_GONE_META, [b for b in ids if b not in mine])
            here = [b for b in ids if b not in mine and b in self.held()]
            self.delete(here)
            if here:
                self._store.scrub_after()  # often an erasure: the chunks must not linger in the write-ahead log
        return len(here)

    def deleted(self) -> list[str]:
        """The blobs deleted here that the sync server has not yet been told of, oldest first."""
        return self._listed(_DELETED_META)

    def told(self, blob_ids: Iterable[str]) -> None:
        """Remembers that the sync server was told these blobs were deleted here."""
        self._unlist(_DELETED_META, blob_ids)

    def _listed(self, key: str) -> list[str]:
        return [str(b) for b in from_json(self._store.get_meta(key) or "[]")]

    def _list(self, key: str, blob_ids: Iterable[str]) -> None:
        listed = self._listed(key)
        have = set(listed)
        for blob_id in blob_ids:
            if blob_id not in have:
                have.add(blob_id)
                listed.append(blob_id)
        self._store.set_meta(key, json.dumps(listed))

    def _unlist(self, key: str, blob_ids: Iterable[str]) -> None:
        drop = set(blob_ids)
        listed = self._listed(key)
        if drop & set(listed):
            self._store.set_meta(key, json.dumps([b for b in listed if b not in drop]))

    def wanted(self, mode: str = "eager") -> list[BlobRef]:
        """The blobs live attachments name that are not whole here: every one (``eager``), thumbnails only
        (``thumbs``) or none (``lazy``); one entry per blob."""
        if mode == "lazy":
            return []
        gone = set(self._listed(_GONE_META))
        complete = gone | {
            blob_id
            for blob_id, chunks, held in self._store.sql("SELECT id, chunks, held FROM blobs")
            if held * 64 == len(chunks)
        }
        seen: set[str] = set()
        out = []
        for ref in self.named():
            if ref.blob in complete or ref.blob in seen or (mode == "thumbs" and not ref.thumb):
                continue
            seen.add(ref.blob)
            out.append(ref)
        return out

    def copy_from(self, other: BlobStore, blob_id: str) -> int:
        """Copies the chunks of ``blob_id`` this store lacks from ``other`` (a replica in the same process),
        each checked against the blob's manifest; returns how many chunks were copied."""
        source = other.state(blob_id)
        if source is None:
            return 0
        manifest = BlobManifest.checked(blob_id, source.manifest.size, source.manifest.chunks)
        self.declare(manifest)
        copied = 0
        for n in self.missing(blob_id):
            data = other.chunk(blob_id, n)
            if data is not None:
                self.put_chunk(manifest, n, data)
                copied += 1
        return copied

    def collect(self) -> int:
        """Deletes every blob no live attachment names; returns how many."""
        live = {ref.blob for ref in self.named()}
        return self.delete(self.held() - live)
