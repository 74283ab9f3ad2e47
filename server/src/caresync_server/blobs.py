"""Attachments' blobs on the server: sealed bytes it keeps and hands on but cannot read, chunk by chunk.

A blob is named by a hash of its sealed chunks' hashes (:mod:`caresync.trust.blobs`), so the server checks every
chunk it receives against the blob's manifest, and the manifest against the name, without any key.

* ``POST /v1/blobs/{id}`` (the manifest: ``op``, ``size``, ``chunks``): the server takes a blob only when it holds
  the attach op ``op`` that names it (size included), made by the device or on a record the device may see; the
  blob must fit :attr:`Settings.max_blob_bytes` and the device's blobs :attr:`Settings.max_device_blob_bytes`
  (413 ``blob_too_large`` / ``quota_exceeded``). Answers the chunks it holds: the device sends only the others.
* ``PUT /v1/blobs/{id}/chunks/{n}``: one chunk, checked (422 ``damaged_chunk``), written at its place in the blob's
  file and recorded in the same step; a chunk the server already holds is not written again (and counted, so a
  test can prove nothing was sent twice). The last one makes the blob whole.
* ``GET /v1/blobs/{id}?op=`` and ``GET /v1/blobs/{id}/chunks/{n}?op=``: the manifest, and one chunk, for a device
  that may see the attach op ``op`` naming the blob.

Blobs rest on disk under :attr:`Settings.blob_dir` (``<id[:2]>/<id>``, ``.part`` until whole), their manifests and
the chunks held in the tables ``blobs`` and ``blob_chunks`` (defined in :mod:`caresync_server.storage`, made by
``caresync-server init`` and migrated with the server's schema, version 4 on). Files, not the database: a
city's blobs are hundreds of gigabytes the database need not back up, copy to replicas or vacuum, and a chunk is
read or written at its place without loading the rest; PostgreSQL large objects would put them back in the
database's own backups and replication.

A blob that no live attachment names any more (removed, or its resident erased) is marked dropped when the op that
killed it is pushed (:func:`collect`), and deleted once no device holds it: the table ``blob_holders`` lists the
devices that sent it or were handed a chunk of it; a device stops holding it when it says it deleted it
(:func:`deleted`) or is revoked (:func:`sweep`); answers tell a holder to delete it (:func:`to_delete`).

Several server processes may share the folder (and the database): chunks are written and recorded under a lock on
the blob's row, a whole blob is renamed from ``.part`` only after the database says it is whole, and each chunk is
checked against the manifest as it is read (:func:`_receive`, :func:`_publish`, :func:`_read_chunk`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from caresync.core.domain import EntityType
from caresync.core.ids import ENTITY_PREFIX
from caresync.core.ops import MAX_BLOB_BYTES
from caresync.errors import CaresyncError
from caresync.sync.bundles.format import MAX_DELETED, CarriedBlob, blob_entry
from caresync.trust.blobs import CHUNK_SIZE, BlobManifest, chunk_hash, live_blobs
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from starlette.concurrency import run_in_threadpool

from .deps import DeviceDep, request_now, request_storage
from .errors import ApiError, ErrorCode
from .protocol import ErrorEnvelope
from .settings import Settings
from .storage import Device, Storage, blob_chunks, blob_holders, blobs, devices, ops

__all__ = [
    "BlobManifestIn",
    "BlobStatus",
    "blob_chunks",
    "blob_holders",
    "blobs",
    "carry_back",
    "collect",
    "deleted",
    "router",
    "sweep",
    "take_carried",
    "to_delete",
]

_BLOB_ID = r"^[0-9a-f]{64}$"
_BLOB_RE = re.compile(_BLOB_ID)
_OP_RE = re.compile(r"^([0-9a-f]{16}):([1-9][0-9]{0,17})$")
_JSON = "application/json"
_OCTETS = "application/octet-stream"
_BINARY = {"type": "string", "format": "binary"}
log = logging.getLogger("caresync_server.blobs")
_RESIDENT_PREFIX = ENTITY_PREFIX[EntityType.RESIDENT] + "-"
_RESIDENT_LINKED = ("visit.create", "ticket.create", "parcel.create")

router = APIRouter()


class BlobManifestIn(BaseModel):
    """What a device offers before it sends a blob: the attach op naming it, its size and its chunk hashes."""

    model_config = ConfigDict(extra="forbid")

    op: Annotated[str, Field(pattern=_OP_RE.pattern)]
    size: Annotated[int, Field(ge=1, le=MAX_BLOB_BYTES)]
    chunks: Annotated[
        list[Annotated[str, Field(pattern=_BLOB_ID)]], Field(min_length=1, max_length=MAX_BLOB_BYTES // CHUNK_SIZE)
    ]


class BlobStatus(BaseModel):
    """What the server holds of a blob."""

    id: str
    size: int
    chunks: list[str]
    held: list[int]
    """The chunk numbers held."""
    complete: bool


def _settings(request: Request) -> Settings:
    return request_storage(request).settings


def _checked_id(blob_id: str) -> str:
    if not _BLOB_RE.match(blob_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"{blob_id[:80]!r} is not a blob id (64 hex digits).")
    return blob_id


def _path(settings: Settings, blob_id: str, *, part: bool) -> Path:
    return Path(settings.blob_dir) / blob_id[:2] / (blob_id + (".part" if part else ""))


def _records_blobs(storage: Storage, eids: Sequence[str]) -> tuple[set[str], dict[str, str]]:
    """The blobs the live attachments of records ``eids`` name (:func:`caresync.trust.blobs.live_blobs`), and the
    resident each record is of (a resident is its own; a visit, a ticket or a parcel names theirs when created)."""
    records = sorted(set(eids))
    rows = storage.ops_of_kinds(records, (".attach", ".detach", ".create"))
    found = [row for row in rows if not row[2].endswith(".create")]
    resident_of = {
        eid: str(body["resident_id"])
        for _, eid, kind, _, body in rows
        if kind in _RESIDENT_LINKED and body.get("resident_id")
    }
    resident_of.update({eid: eid for eid in records if eid.startswith(_RESIDENT_PREFIX)})
    residents = sorted(set(resident_of.values()))
    erased: dict[str, int] = {}
    for _, eid, kind, hlc, body in storage.ops_of_kinds(residents, (".redact",)):
        if kind == "resident.redact" and "attachments" in body.get("fields", ()):
            erased[eid] = max(hlc, erased.get(eid, -1))
    others = {eid: resident for eid, resident in resident_of.items() if eid != resident}
    return {ref.blob for ref in live_blobs(found, erased, others)}, resident_of


def _naming_op(storage: Storage, device: Device, op: str, blob_id: str) -> tuple[str, int]:
    """The record and size the attach op ``op`` gives blob ``blob_id``, when ``device`` may see that op."""
    match = _OP_RE.match(op)
    found = storage.visible_op(device, match.group(1), int(match.group(2))) if match else None
    if found is not None:
        eid, kind, body = found
        if kind.endswith(".attach") and body.get("key") is not None:
            if body.get("blob") == blob_id:
                return eid, int(body["size"])
            if body.get("thumb") == blob_id:
                return eid, int(body["thumb_size"])
    raise ApiError(
        ErrorCode.UNKNOWN_BLOB,
        f"This server holds no attach op {op[:40]} naming blob {blob_id[:12]}… that this device may see: push the "
        "op first (it may be waiting), or the attachment was removed.",
    )


def _row(conn: Connection, blob_id: str, *, lock: bool = False) -> Any:
    query = select(blobs).where(blobs.c.id == blob_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def _hold(conn: Connection, blob_id: str, device: int) -> None:
    """Records that ``device`` holds (some of) blob ``blob_id``: the server keeps the blob, once no live
    attachment names it, until the device says it deleted its copy (:func:`deleted`)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(blob_holders).values(blob=blob_id, device=device).on_conflict_do_nothing())


def _status(conn: Connection, row: Any) -> BlobStatus:
    held = sorted(int(n) for (n,) in conn.execute(select(blob_chunks.c.n).where(blob_chunks.c.blob == row.id)))
    chunks = [row.chunks[i : i + 64] for i in range(0, len(row.chunks), 64)]
    return BlobStatus(id=row.id, size=int(row.size), chunks=chunks, held=held, complete=bool(row.complete))


def _gone(blob_id: str) -> ApiError:
    return ApiError(
        ErrorCode.UNKNOWN_BLOB,
        f"No live attachment names blob {blob_id[:12]}… any more (it was removed, or its resident erased): "
        "this server does not keep it.",
    )


def _offer(
    storage: Storage, settings: Settings, device: Device, blob_id: str, offer: BlobManifestIn, now: int
) -> BlobStatus:
    if offer.size > settings.max_blob_bytes:
        raise ApiError(
            ErrorCode.BLOB_TOO_LARGE,
            f"Blob {blob_id[:12]}… is {offer.size} bytes; this server takes blobs up to {settings.max_blob_bytes}.",
        )
    try:
        manifest = BlobManifest.checked(blob_id, offer.size, offer.chunks)
    except CaresyncError as exc:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"The manifest offered is not blob {blob_id[:12]}…'s: {exc}"
        ) from None
    eid, size = _naming_op(storage, device, offer.op, blob_id)
    if size != manifest.size:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"Op {offer.op} gives blob {blob_id[:12]}… {size} bytes, not {manifest.size}."
        )
    live, resident_of = _records_blobs(storage, [eid])
    if blob_id not in live:  # a device that has not seen the removal yet offers it: it would never be collected
        raise _gone(blob_id)
    with storage.transaction() as conn:
        row = _row(conn, blob_id)
        if row is None:
            used = conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0)).where(blobs.c.device == device.id))
            total = int(used.scalar_one()) + manifest.size
            if total > settings.max_device_blob_bytes:
                raise ApiError(
                    ErrorCode.QUOTA_EXCEEDED,
                    f"This device's blobs would take {total} bytes on the server, over its limit of "
                    f"{settings.max_device_blob_bytes}. Ask the station.",
                )
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(  # another server process may offer the same blob at the same moment: one row wins
                insert(blobs)
                .values(
                    id=blob_id,
                    size=manifest.size,
                    chunks="".join(manifest.chunks),
                    eid=eid,
                    op=offer.op,
                    device=device.id,
                    held=0,
                    received=0,
                    served=0,
                    complete=0,
                    created_at=now,
                    resident=resident_of.get(eid),
                )
                .on_conflict_do_nothing()
            )
            row = _row(conn, blob_id)
        if row.dropped is not None:
            raise _gone(blob_id)
        _hold(conn, blob_id, device.id)
        return _status(conn, row)


def _manifest(row: Any) -> BlobManifest:
    return BlobManifest(int(row.size), [row.chunks[i : i + 64] for i in range(0, len(row.chunks), 64)])


def _publish(settings: Settings, blob_id: str) -> bool:
    """Renames a whole blob's ``.part`` file to its name (atomic: a reader sees no file or the whole one); True
    when the blob's file is there. Any process may do it: the one that wrote the last chunk, or a reader that finds
    a blob the database calls whole still under its ``.part`` name (a crash between the two, or a power cut that
    lost the rename: so the folder need not be synced after it; every chunk's bytes were)."""
    final = _path(settings, blob_id, part=False)
    try:
        os.replace(_path(settings, blob_id, part=True), final)
    except FileNotFoundError:
        return final.exists()  # published by another process, or deleted
    return True


def _receive(storage: Storage, settings: Settings, blob_id: str, n: int, data: bytes) -> dict[str, Any]:
    """Keeps chunk ``n`` of an offered blob. Several server processes may receive chunks of one blob at once
    (two devices sending it, a retry landing on another process): the blob's row is locked while a chunk is
    written at its place in the ``.part`` file and recorded, so a chunk is written once and the count is right;
    the whole file gets its name only after the database says it is whole."""
    with storage.transaction() as conn:
        row = _row(conn, blob_id, lock=True)
        if row is None:
            raise ApiError(ErrorCode.UNKNOWN_BLOB, f"Offer blob {blob_id[:12]}… (POST its manifest) before its chunks.")
        if row.dropped is not None:
            raise _gone(blob_id)
        manifest = _manifest(row)
        if not 0 <= n < len(manifest.chunks):
            raise ApiError(ErrorCode.NOT_FOUND, f"Blob {blob_id[:12]}… has no chunk {n}.")
        if len(data) != manifest.chunk_size(n) or chunk_hash(data) != manifest.chunks[n]:
            raise ApiError(
                ErrorCode.DAMAGED_CHUNK, f"Chunk {n} of blob {blob_id[:12]}… arrived damaged; send it again."
            )
        conn.execute(blobs.update().where(blobs.c.id == blob_id).values(received=blobs.c.received + 1))
        held = conn.execute(select(blob_chunks.c.n).where(blob_chunks.c.blob == blob_id, blob_chunks.c.n == n)).first()
        finished = False
        if held is None and not row.complete:
            part = _path(settings, blob_id, part=True)
            part.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data, n * CHUNK_SIZE)
                os.fsync(fd)  # on disk before the database says it is held
            finally:
                os.close(fd)
            conn.execute(blob_chunks.insert().values(blob=blob_id, n=n))
            count = int(row.held) + 1
            finished = complete = count == len(manifest.chunks)
            conn.execute(blobs.update().where(blobs.c.id == blob_id).values(held=count, complete=int(complete)))
        else:
            count, complete = int(row.held), bool(row.complete)
    if finished:
        _publish(settings, blob_id)
    return {"id": blob_id, "n": n, "held": count, "complete": complete}


def _readable_row(storage: Storage, device: Device, blob_id: str, op: str) -> Any:
    _naming_op(storage, device, op, blob_id)
    with storage.transaction() as conn:
        row = _row(conn, blob_id)
    if row is None:
        raise ApiError(ErrorCode.UNKNOWN_BLOB, f"This server does not hold blob {blob_id[:12]}… yet; try a later sync.")
    if row.dropped is not None:
        raise _gone(blob_id)
    return row


def _read_chunk(settings: Settings, row: Any, n: int) -> bytes:
    """Chunk ``n`` of a whole blob from its file, checked against the blob's manifest before it is handed out."""
    manifest = _manifest(row)
    if not row.complete or not 0 <= n < len(manifest.chunks):
        raise ApiError(ErrorCode.UNKNOWN_BLOB, f"This server does not hold chunk {n} of blob {row.id[:12]}… yet.")
    for attempt in (0, 1):
        try:
            with open(_path(settings, row.id, part=False), "rb") as file:
                file.seek(n * CHUNK_SIZE)
                data = file.read(manifest.chunk_size(n))
            break
        except FileNotFoundError:
            if attempt or not _publish(settings, row.id):  # whole in the database, not renamed yet: rename it
                raise ApiError(ErrorCode.UNKNOWN_BLOB, f"This server no longer holds blob {row.id[:12]}….") from None
    if len(data) != manifest.chunk_size(n) or chunk_hash(data) != manifest.chunks[n]:
        log.error("chunk %s of blob %s is damaged in %s: restore it from a backup", n, row.id, settings.blob_dir)
        raise ApiError(ErrorCode.UNKNOWN_BLOB, f"Chunk {n} of blob {row.id[:12]}… is damaged on this server.")
    return data


def _chunk(storage: Storage, settings: Settings, device: Device, blob_id: str, n: int, op: str) -> bytes:
    row = _readable_row(storage, device, blob_id, op)
    data = _read_chunk(settings, row, n)
    with storage.transaction() as conn:
        conn.execute(blobs.update().where(blobs.c.id == blob_id).values(served=blobs.c.served + 1))
        _hold(conn, blob_id, device.id)
    return data


def take_carried(storage: Storage, device: Device, carried: list[CarriedBlob], now: int) -> dict[str, list[int]]:
    """Stores the blobs (or the runs of their chunks) a relay bundle of ``device`` carried, with the checks of an
    upload (the naming op, liveness, the limits, each chunk); returns, per blob taken, the chunks the server now
    holds (all of them once it is whole). One that fails a check is left out: the device offers it again."""
    held: dict[str, list[int]] = {}
    for blob in carried:
        manifest = blob.manifest
        offer = BlobManifestIn(op=blob.op, size=manifest.size, chunks=manifest.chunks)
        try:
            status = _offer(storage, storage.settings, device, manifest.id, offer, now)
            have = set(status.held)
            for n, chunk in blob.parts:
                if n not in have:
                    _receive(storage, storage.settings, manifest.id, n, chunk)
                    have.add(n)
        except ApiError as exc:
            log.info("a blob relayed for device %s was not taken: %s", device.name, exc.message)
            continue
        held[manifest.id] = sorted(have)
    return held


def carry_back(
    storage: Storage,
    device: Device,
    wants: Sequence[tuple[str, str, Sequence[int] | None]],
    page: Sequence[dict[str, Any]],
    pull: str,
    budget: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The blob chunks a relay answer carries back to an offline device, up to ``budget`` sealed bytes: first
    those its bundle asked for (``wants``: blob, attach op, the chunks it lacks or None for all), then those of the
    live attachments among the answer's own ops (``page``) its pull mode (``pull``) wants. Each goes only to a
    device that may see the attach op naming it, only once the server holds it whole and still keeps it, each
    chunk checked; the device becomes one of its holders. Returns the entries
    (:func:`caresync.sync.bundles.format.blob_entry`) and whether more were wanted than fit."""
    asked: list[tuple[str, str, Sequence[int] | None]] = list(wants)
    if pull != "lazy":
        attached = [op for op in page if op["kind"].endswith(".attach") and op["body"].get("key") is not None]
        live, _ = _records_blobs(storage, [a["eid"] for a in attached]) if attached else (set(), {})
        for attach in attached:
            body, name = attach["body"], f"{attach['origin']}:{attach['seq']}"
            for blob_id, thumb in ((body["blob"], False), (body.get("thumb"), True)):
                if blob_id in live and (thumb or pull == "eager"):
                    asked.append((blob_id, name, None))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    more = False
    for blob_id, op, need in asked:
        if blob_id in seen:
            continue
        seen.add(blob_id)
        try:
            row = _readable_row(storage, device, blob_id, op)
        except ApiError:
            continue  # not this device's to see, not here yet, or dropped: a later answer, or never
        if not row.complete:
            continue
        manifest = _manifest(row)
        numbers = (
            range(len(manifest.chunks)) if need is None else sorted({n for n in need if 0 <= n < len(manifest.chunks)})
        )
        parts: list[tuple[int, bytes]] = []
        for n in numbers:
            if manifest.chunk_size(n) > budget:
                more = True
                break
            try:
                parts.append((n, _read_chunk(storage.settings, row, n)))
            except ApiError:
                break
            budget -= manifest.chunk_size(n)
        if parts:
            out.append(blob_entry(manifest, op, parts))
            with storage.transaction() as conn:
                conn.execute(blobs.update().where(blobs.c.id == blob_id).values(served=blobs.c.served + len(parts)))
                _hold(conn, blob_id, device.id)
        if more:
            break
    return out, more


def collect(storage: Storage, settings: Settings, eids: list[str], pusher: Device | None = None) -> int:
    """Marks dropped the blobs of records ``eids`` (and, for a resident, of their visits, tickets and parcels)
    that no live attachment names any more (:func:`caresync.trust.blobs.live_blobs`: removed, or erased), at the
    op cursor the server has reached; then deletes those no device holds any more (:func:`sweep`). Run after
    a push that carried a removal or an erasure; ``pusher`` holds the op that dropped them, so no longer counts as
    a holder. Returns how many blobs were deleted."""
    if not eids:
        return 0
    residents = sorted(e for e in eids if e.startswith(_RESIDENT_PREFIX))
    with storage.transaction() as conn:
        rows = [
            (r.id, r.eid)
            for r in conn.execute(
                select(blobs.c.id, blobs.c.eid).where(
                    (blobs.c.eid.in_(sorted(set(eids)))) | (blobs.c.resident.in_(residents)),
                    blobs.c.dropped.is_(None),
                )
            )
        ]
    if not rows:
        return sweep(storage, settings)
    live, _ = _records_blobs(storage, sorted({eid for _, eid in rows}))
    gone = sorted(blob_id for blob_id, _ in rows if blob_id not in live)
    if gone:
        with storage.transaction() as conn:
            top = int(conn.execute(select(func.coalesce(func.max(ops.c.cursor), 0))).scalar_one())
            conn.execute(blobs.update().where(blobs.c.id.in_(gone), blobs.c.dropped.is_(None)).values(dropped=top))
            if pusher is not None:
                conn.execute(
                    blob_holders.delete().where(blob_holders.c.blob.in_(gone), blob_holders.c.device == pusher.id)
                )
    return sweep(storage, settings)


def sweep(storage: Storage, settings: Settings) -> int:
    """Deletes, from the database and the folder, the dropped blobs no device holds any more (a revoked device
    holds nothing); returns how many."""
    holding = exists().where(
        blob_holders.c.blob == blobs.c.id, devices.c.id == blob_holders.c.device, devices.c.revoked_at.is_(None)
    )
    with storage.transaction() as conn:
        gone = sorted(str(r) for (r,) in conn.execute(select(blobs.c.id).where(blobs.c.dropped.is_not(None), ~holding)))
        if gone:
            conn.execute(blob_chunks.delete().where(blob_chunks.c.blob.in_(gone)))
            conn.execute(blob_holders.delete().where(blob_holders.c.blob.in_(gone)))
            conn.execute(blobs.delete().where(blobs.c.id.in_(gone)))
    for blob_id in gone:
        for part in (True, False):
            _path(settings, blob_id, part=part).unlink(missing_ok=True)
    return len(gone)


def to_delete(storage: Storage, device: Device) -> list[str]:
    """The dropped blobs ``device`` still holds, for the answer to its pull (or relayed bundle) to tell it to
    delete. This reaches the devices that never see the op that dropped a blob: a courier's handheld holds a
    parcel's photo, but never sees the erasure of the parcel's resident. A pull with none reads once."""
    query = (
        select(blob_holders.c.blob)
        .join(blobs, blobs.c.id == blob_holders.c.blob)
        .where(blob_holders.c.device == device.id, blobs.c.dropped.is_not(None))
        .order_by(blob_holders.c.blob)
        .limit(MAX_DELETED)
    )
    with storage.engine.connect() as conn:
        return [str(b) for (b,) in conn.execute(query)]


def deleted(storage: Storage, settings: Settings, device: Device, blob_ids: Sequence[str]) -> int:
    """Takes a device's word that it deleted ``blob_ids`` (and committed it: it says so in its next request): it
    holds them no longer, and a dropped blob no device holds any more is deleted (:func:`sweep`). Returns how
    many blobs were deleted. A device saying so of a blob it still holds harms only itself."""
    if not blob_ids:
        return 0
    with storage.transaction() as conn:
        gone = conn.execute(
            blob_holders.delete().where(
                blob_holders.c.device == device.id, blob_holders.c.blob.in_(sorted(set(blob_ids)))
            )
        ).rowcount
    return sweep(storage, settings) if gone else 0


# --- routes --------------------------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (401, 403, 404, 413, 422, 503)
}


@router.post(
    "/v1/blobs/{blob_id}",
    response_model=BlobStatus,
    responses=_ERRORS,
    summary="Offer a blob (an attachment's sealed bytes): its manifest; answers the chunks held",
)
async def offer_blob(blob_id: str, offer: BlobManifestIn, request: Request, device: DeviceDep) -> BlobStatus:
    """Takes a blob's manifest when an attach op the device may see names it; answers what is held already."""
    return await run_in_threadpool(
        _offer, request_storage(request), _settings(request), device, _checked_id(blob_id), offer, request_now(request)
    )


@router.put(
    "/v1/blobs/{blob_id}/chunks/{n}",
    responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {_OCTETS: {"schema": _BINARY}}}},
    summary="Send one chunk of an offered blob",
)
async def put_chunk(blob_id: str, n: int, request: Request, device: DeviceDep) -> Response:
    """Checks chunk ``n`` against the blob's manifest and keeps it; answers how many chunks are held."""
    del device  # authenticated; the blob was offered by a device that may see its op
    data = await request.body()
    if len(data) > CHUNK_SIZE:
        raise ApiError(ErrorCode.BATCH_TOO_LARGE, f"A chunk is at most {CHUNK_SIZE} bytes.")
    answer = await run_in_threadpool(
        _receive, request_storage(request), _settings(request), _checked_id(blob_id), n, data
    )
    return Response(_json(answer), media_type=_JSON)


@router.get("/v1/blobs/{blob_id}", response_model=BlobStatus, responses=_ERRORS, summary="A blob's manifest")
async def get_blob(
    blob_id: str, request: Request, device: DeviceDep, op: Annotated[str, Query(max_length=40)]
) -> BlobStatus:
    """The manifest and the chunks held, for a device that may see the attach op ``op`` naming the blob."""

    def status() -> BlobStatus:
        storage = request_storage(request)
        row = _readable_row(storage, device, _checked_id(blob_id), op)
        with storage.transaction() as conn:
            return _status(conn, row)

    return await run_in_threadpool(status)


@router.get(
    "/v1/blobs/{blob_id}/chunks/{n}",
    responses={200: {"content": {_OCTETS: {"schema": _BINARY}}}, **_ERRORS},
    summary="One chunk of a whole blob",
)
async def get_chunk(
    blob_id: str, n: int, request: Request, device: DeviceDep, op: Annotated[str, Query(max_length=40)]
) -> Response:
    """Chunk ``n`` of a blob the server holds whole, for a device that may see the attach op ``op``."""
    data = await run_in_threadpool(
        _chunk, request_storage(request), _settings(request), device, _checked_id(blob_id), n, op
    )
    return Response(data, media_type=_OCTETS)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
