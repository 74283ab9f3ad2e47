"""Blob transfer with the sync server: attachments' sealed bytes, apart from the ops, chunk by chunk.

A sync moves blobs after the ops (:func:`caresync.sync.netsync.sync`), because the server takes a blob only once
it holds an attach op that names it, and hands one out only to a device that may see that op's record:

- **Up**: for each whole blob the server has not confirmed, the device sends its manifest (``POST
  /v1/blobs/{id}``: size, chunk hashes, and the attach op naming it); the server answers which chunks it holds,
  and the device sends only the others (``PUT /v1/blobs/{id}/chunks/{n}``), each checked by the server against the
  manifest before it is kept. A cut (no signal, a dead battery, a killed process) loses at most the chunk in
  flight: the next sync asks again and sends only what is still missing.
- **Down**: the device wants the blobs its live attachments name, as its pull mode says (``eager`` every one,
  ``thumbs`` thumbnails only, ``lazy`` none until one is fetched). It reads the manifest (``GET /v1/blobs/{id}``),
  checks it names the blob, and fetches the chunks it lacks (``GET /v1/blobs/{id}/chunks/{n}``), each checked and
  committed on its own, so a cut download resumes where it stopped and a damaged chunk is never kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from caresync.errors import CaresyncError, ServerRefusedError
from caresync.store.blobs import BlobStore
from caresync.sync._http import Link
from caresync.trust.blobs import BlobManifest, BlobRef

__all__ = ["BlobProgress", "BlobProgressCallback", "BlobRefusal", "BlobTransfer", "download", "fetch", "upload"]

_RAW = {"Content-Type": "application/octet-stream"}


@dataclass(frozen=True)
class BlobProgress:
    """Where a blob transfer is: ``direction`` is ``"up"`` or ``"down"``; sealed bytes moved of those to move."""

    direction: str
    done: int
    total: int


BlobProgressCallback = Callable[[BlobProgress], None]


@dataclass(frozen=True)
class BlobRefusal:
    """A blob the server refused to take (over its limits): it stays on the device and is offered again."""

    blob: str
    code: str
    reason: str


@dataclass
class BlobTransfer:
    """What the blob part of one sync moved."""

    uploaded: int = 0
    """Blobs the server now holds whole."""
    downloaded: int = 0
    """Blobs now whole on this device."""
    chunks_sent: int = 0
    chunks_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    waiting: int = 0
    """Blobs that could not move now (the server lacks their op or their bytes yet); tried again next sync."""
    refused: list[BlobRefusal] = field(default_factory=list)
    """Blobs the server refused (``blob_too_large``, ``quota_exceeded``); kept here, offered again next sync."""


def upload(blobs: BlobStore, link: Link, result: BlobTransfer, progress: BlobProgressCallback | None = None) -> None:
    """Sends the server the whole blobs it has not confirmed holding, only the chunks it lacks."""
    unsent = set(blobs.unsent())
    if not unsent:
        return
    naming: dict[str, BlobRef] = {}
    for ref in blobs.named():
        if ref.blob in unsent:
            naming.setdefault(ref.blob, ref)
    dead = unsent - set(naming)
    blobs.delete(dead)  # a blob no live attachment names: the server will never want it
    todo = sorted(naming.values(), key=lambda r: (r.size, r.blob))
    total, done = sum(r.size for r in todo), 0
    for ref in todo:
        state = blobs.state(ref.blob)
        if state is None:
            continue
        manifest = state.manifest
        try:
            answer = link.request(
                "POST",
                f"/v1/blobs/{ref.blob}",
                json={"op": ref.op, "size": manifest.size, "chunks": manifest.chunks},
            )
        except ServerRefusedError as exc:
            if exc.status in (404, 409):  # the server does not hold (or no longer wants) the op yet
                result.waiting += 1
                continue
            if exc.status == 413:  # over the server's limits: the station must decide; the rest goes on
                result.refused.append(BlobRefusal(ref.blob, exc.server_code, exc.message))
                continue
            raise
        held = {int(n) for n in answer.get("held", ())}
        for n in range(len(manifest.chunks)):
            size = manifest.chunk_size(n)
            if n in held:
                done += size
                continue
            data = blobs.chunk(ref.blob, n)
            if data is None:  # cannot happen for a whole blob; a damaged file must not stop the sync
                break
            answer = link.request("PUT", f"/v1/blobs/{ref.blob}/chunks/{n}", content=data, headers=_RAW)
            result.chunks_sent += 1
            result.bytes_sent += len(data)
            done += size
            if progress is not None:
                progress(BlobProgress("up", done, total))
        if answer.get("complete"):
            blobs.mark_sent(ref.blob)
            result.uploaded += 1


def download(
    blobs: BlobStore,
    link: Link,
    mode: str,
    result: BlobTransfer,
    progress: BlobProgressCallback | None = None,
    only: Sequence[BlobRef] | None = None,
) -> None:
    """Fetches the blobs this device wants (``mode``: ``eager``, ``thumbs`` or ``lazy``; or exactly ``only``)
    and lacks, only the chunks it lacks, each checked before it is kept."""
    wanted = list(only) if only is not None else blobs.wanted(mode)
    total = sum(ref.size for ref in wanted)
    done = 0
    for ref in wanted:
        state = blobs.state(ref.blob)
        if state is None:
            try:
                answer = link.request("GET", f"/v1/blobs/{ref.blob}?op={ref.op}")
            except ServerRefusedError as exc:
                if exc.status in (404, 409):
                    result.waiting += 1
                    done += ref.size
                    continue
                raise
            try:
                manifest = BlobManifest.checked(ref.blob, int(answer["size"]), list(answer["chunks"]))
            except (CaresyncError, KeyError, TypeError, ValueError) as exc:
                raise ServerRefusedError(
                    f"The sync server offered a chunk list for blob {ref.blob[:12]}… that is not that blob's ({exc})",
                    status=200,
                    server_code="bad_manifest",
                    key="blob.bad_manifest",
                    fields={"blob": ref.blob[:12], "reason": str(exc)},
                ) from exc
            if not answer.get("complete"):
                result.waiting += 1  # its device has not finished sending it: next time
                done += ref.size
                continue
            blobs.declare(manifest, sent=True)
        else:
            manifest = state.manifest
        missing = set(blobs.missing(ref.blob))
        for n in range(len(manifest.chunks)):
            if n not in missing:
                done += manifest.chunk_size(n)
                continue
            data = link.request("GET", f"/v1/blobs/{ref.blob}/chunks/{n}?op={ref.op}", raw=True)
            blobs.put_chunk(manifest, n, data)  # checked: a damaged chunk raises TrustError and is not kept
            result.chunks_received += 1
            result.bytes_received += len(data)
            done += len(data)
            if progress is not None:
                progress(BlobProgress("down", done, total))
        result.downloaded += 1


def fetch(
    blobs: BlobStore,
    url: str,
    token: str,
    ref: BlobRef,
    *,
    client: httpx.Client | None = None,
    retries: int = 2,
    timeout_s: float = 60.0,
) -> BlobTransfer:
    """Fetches one blob from the server at ``url`` now, whatever the pull mode (a lazy device opening a picture);
    only the chunks not held yet, each checked."""
    link = Link(url, token, client, retries, 0.5, timeout_s)
    result = BlobTransfer()
    try:
        download(blobs, link, "eager", result, only=[ref])
    finally:
        link.close()
    return result
