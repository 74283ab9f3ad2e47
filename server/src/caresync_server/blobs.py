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
the chunks held in the tables ``blobs`` and ``blob_chunks`` (created on first use). Files, not the database: a
city's blobs are hundreds of gigabytes the database need not back up, copy to replicas or vacuum, and a chunk is
read or written at its place without loading the rest; PostgreSQL large objects would put them back in the
database's own backups and replication. A blob that no live attachment names any more (removed, or its resident
erased) is deleted as soon as the op that killed it is pushed (:func:`collect`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import weakref
from pathlib import Path
from typing import Annotated, Any

from caresync.core.ops import MAX_BLOB_BYTES
from caresync.errors import CaresyncError
from caresync.sync.bundles.format import CarriedBlob
from caresync.trust.blobs import CHUNK_SIZE, BlobManifest, chunk_hash, live_blobs
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, Text, func, select
from starlette.concurrency import run_in_threadpool

from .deps import DeviceDep, request_now, request_storage
from .errors import ApiError, ErrorCode
from .protocol import ErrorEnvelope
from .settings import Settings
from .storage import Device, Storage

__all__ = ["BlobManifestIn", "BlobStatus", "blob_chunks", "blobs", "collect", "router", "take_carried"]

_metadata = MetaData()
blobs = Table(
    "blobs",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunks", Text, nullable=False),  # the chunk hashes, concatenated hex
    Column("eid", Text, nullable=False),  # the record whose attach op named it
    Column("op", String(40), nullable=False),
    Column("device", Integer, nullable=False),  # the device that sent it (its quota)
    Column("held", Integer, nullable=False),
    Column("received", BigInteger, nullable=False),  # chunk bodies received, duplicates included
    Column("served", BigInteger, nullable=False),  # chunks handed out
    Column("complete", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
blob_chunks = Table(
    "blob_chunks",
    _metadata,
    Column("blob", String(64), primary_key=True),
    Column("n", Integer, primary_key=True),
)

_BLOB_ID = r"^[0-9a-f]{64}$"
_BLOB_RE = re.compile(_BLOB_ID)
_OP_RE = re.compile(r"^([0-9a-f]{16}):([1-9][0-9]{0,17})$")
_JSON = "application/json"
_OCTETS = "application/octet-stream"
_BINARY = {"type": "string", "format": "binary"}
log = logging.getLogger("caresync_server.blobs")
_ready_lock = threading.Lock()
_ready: weakref.WeakSet[Storage] = weakref.WeakSet()

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


def _ensure_tables(storage: Storage) -> None:
    if storage in _ready:
        return
    with _ready_lock, storage.transaction() as conn:
        _metadata.create_all(conn, checkfirst=True)
        _ready.add(storage)


def _checked_id(blob_id: str) -> str:
    if not _BLOB_RE.match(blob_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"{blob_id[:80]!r} is not a blob id (64 hex digits).")
    return blob_id


def _path(settings: Settings, blob_id: str, *, part: bool) -> Path:
    return Path(settings.blob_dir) / blob_id[:2] / (blob_id + (".part" if part else ""))


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


def _row(conn: Connection, blob_id: str) -> Any:
    return conn.execute(select(blobs).where(blobs.c.id == blob_id)).first()


def _status(conn: Connection, row: Any) -> BlobStatus:
    held = sorted(int(n) for (n,) in conn.execute(select(blob_chunks.c.n).where(blob_chunks.c.blob == row.id)))
    chunks = [row.chunks[i : i + 64] for i in range(0, len(row.chunks), 64)]
    return BlobStatus(id=row.id, size=int(row.size), chunks=chunks, held=held, complete=bool(row.complete))


def _offer(
    storage: Storage, settings: Settings, device: Device, blob_id: str, offer: BlobManifestIn, now: int
) -> BlobStatus:
    _ensure_tables(storage)
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
            conn.execute(
                blobs.insert().values(
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
                )
            )
            row = _row(conn, blob_id)
        return _status(conn, row)


def _manifest(row: Any) -> BlobManifest:
    return BlobManifest(int(row.size), [row.chunks[i : i + 64] for i in range(0, len(row.chunks), 64)])


def _receive(storage: Storage, settings: Settings, blob_id: str, n: int, data: bytes) -> dict[str, Any]:
    _ensure_tables(storage)
    with storage.transaction() as conn:
        row = _row(conn, blob_id)
        if row is None:
            raise ApiError(ErrorCode.UNKNOWN_BLOB, f"Offer blob {blob_id[:12]}… (POST its manifest) before its chunks.")
        manifest = _manifest(row)
        if not 0 <= n < len(manifest.chunks):
            raise ApiError(ErrorCode.NOT_FOUND, f"Blob {blob_id[:12]}… has no chunk {n}.")
        if len(data) != manifest.chunk_size(n) or chunk_hash(data) != manifest.chunks[n]:
            raise ApiError(
                ErrorCode.DAMAGED_CHUNK, f"Chunk {n} of blob {blob_id[:12]}… arrived damaged; send it again."
            )
        conn.execute(blobs.update().where(blobs.c.id == blob_id).values(received=blobs.c.received + 1))
        held = conn.execute(select(blob_chunks.c.n).where(blob_chunks.c.blob == blob_id, blob_chunks.c.n == n)).first()
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
            complete = count == len(manifest.chunks)
            conn.execute(blobs.update().where(blobs.c.id == blob_id).values(held=count, complete=int(complete)))
            if complete:
                os.replace(part, _path(settings, blob_id, part=False))
        else:
            count, complete = int(row.held), bool(row.complete)
        return {"id": blob_id, "n": n, "held": count, "complete": complete}


def _readable_row(storage: Storage, device: Device, blob_id: str, op: str) -> Any:
    _ensure_tables(storage)
    _naming_op(storage, device, op, blob_id)
    with storage.transaction() as conn:
        row = _row(conn, blob_id)
    if row is None:
        raise ApiError(ErrorCode.UNKNOWN_BLOB, f"This server does not hold blob {blob_id[:12]}… yet; try a later sync.")
    return row


def _chunk(storage: Storage, settings: Settings, device: Device, blob_id: str, n: int, op: str) -> bytes:
    row = _readable_row(storage, device, blob_id, op)
    manifest = _manifest(row)
    if not row.complete or not 0 <= n < len(manifest.chunks):
        raise ApiError(ErrorCode.UNKNOWN_BLOB, f"This server does not hold chunk {n} of blob {blob_id[:12]}… yet.")
    try:
        with open(_path(settings, blob_id, part=False), "rb") as file:
            file.seek(n * CHUNK_SIZE)
            data = file.read(manifest.chunk_size(n))
    except OSError:  # removed by a collection between the row and the file
        raise ApiError(ErrorCode.UNKNOWN_BLOB, f"This server no longer holds blob {blob_id[:12]}….") from None
    with storage.transaction() as conn:
        conn.execute(blobs.update().where(blobs.c.id == blob_id).values(served=blobs.c.served + 1))
    return data


def take_carried(storage: Storage, device: Device, carried: list[CarriedBlob], now: int) -> list[str]:
    """Stores the blobs a relay bundle of ``device`` carried, with the checks of an upload (the naming op, the
    limits, each chunk); returns the ids of those the server now holds whole. One that fails a check is left
    out: the device keeps it and offers it again."""
    held = []
    for blob in carried:
        manifest = blob.manifest
        offer = BlobManifestIn(op=blob.op, size=manifest.size, chunks=manifest.chunks)
        try:
            status = _offer(storage, storage.settings, device, manifest.id, offer, now)
            for n in range(len(manifest.chunks)):
                if n not in status.held:
                    chunk = blob.data[n * CHUNK_SIZE : (n + 1) * CHUNK_SIZE]
                    answer = _receive(storage, storage.settings, manifest.id, n, chunk)
                    status.complete = bool(answer["complete"])
        except ApiError as exc:
            log.info("a blob relayed for device %s was not taken: %s", device.name, exc.message)
            continue
        if status.complete:
            held.append(manifest.id)
    return held


def collect(storage: Storage, settings: Settings, eids: list[str]) -> int:
    """Deletes the blobs of records ``eids`` (and, for a resident, of the visits to them) that no live attachment
    names any more (:func:`caresync.trust.blobs.live_blobs`: removed, or erased); returns how many. Run after a
    push that carried a removal or an erasure."""
    if not eids:
        return 0
    _ensure_tables(storage)
    affected = set(eids)
    for eid in eids:
        if eid.startswith("R-"):
            affected.update(storage.records_of_resident(eid))
    with storage.transaction() as conn:
        rows = [
            (r.id, r.eid)
            for r in conn.execute(select(blobs.c.id, blobs.c.eid).where(blobs.c.eid.in_(sorted(affected))))
        ]
    if not rows:
        return 0
    holders = sorted({eid for _, eid in rows})
    found = storage.ops_of_kinds(holders, (".attach", ".detach"))
    resident_of = {
        eid: body.get("resident_id")
        for _, eid, kind, _, body in storage.ops_of_kinds(holders, (".create",))
        if kind == "visit.create"
    }
    residents = sorted({r for r in resident_of.values() if r} | {e for e in holders if e.startswith("R-")})
    erased: dict[str, int] = {}
    for _, eid, kind, hlc, body in storage.ops_of_kinds(residents, (".redact",)):
        if kind == "resident.redact" and "attachments" in body.get("fields", ()):
            erased[eid] = max(hlc, erased.get(eid, -1))
    live = {ref.blob for ref in live_blobs(found, erased, {k: v for k, v in resident_of.items() if v})}
    gone = [blob_id for blob_id, _ in rows if blob_id not in live]
    if not gone:
        return 0
    with storage.transaction() as conn:
        conn.execute(blob_chunks.delete().where(blob_chunks.c.blob.in_(gone)))
        conn.execute(blobs.delete().where(blobs.c.id.in_(gone)))
    for blob_id in gone:
        for part in (True, False):
            _path(settings, blob_id, part=part).unlink(missing_ok=True)
    return len(gone)


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
