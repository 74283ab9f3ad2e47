"""Relay bundles: store-carry-forward sync for a device with no network (DESIGN.md, section 4).

1. The offline device writes its unsent ops as one **bundle** file (:func:`write_bundle`), signed by its
   device key over the whole bundle. Fields that must be sealed are sealed at capture, so a courier who
   carries the bundle reads no private content.
2. A courier's handheld imports it into its **bag** (:class:`Bag`), checking the signature and the time to
   live, and delivers it on its next sync (:func:`deliver`, ``POST /v1/relay``). The server checks the
   signature against the origin's public key, admits the ops as that device's push, and answers with the acks
   and the ops of the device's scope after the cursor the bundle carries, **sealed to the device**: the
   device's Ed25519 key converted to X25519, so the courier cannot read the answer either.
3. The courier writes the answers for that device to a file (:meth:`Bag.export_answers`), and the device
   imports it (:func:`import_answers`).

Bundles and answers are idempotent and order-free: a duplicated, stale or replayed one changes nothing, since
ops are identified by ``(origin, seq)``, acks only ever mark ops stored, and the relay cursor only moves
forward. Each carries an expiry. Every hand-over is recorded (created, carried, delivered, answer handed to the
device, answer imported): the courier's bag keeps its side, the server keeps the events (``GET /v1/relays``).

A bundle file is JSON::

    {"caresync_bundle": 1, "type": "ops", "id": "…", "origin": "<replica id>", "public_key": "<hex>",
     "created_ms": …, "expires_ms": …, "cursor": "<relay cursor>", "receipts": [...], "ops": [...],
     "sig": "<hex Ed25519 signature over the canonical JSON of everything else>"}

An answer file holds ``{"caresync_bundle": 1, "type": "answers", "answers": [{"id", "for", "bundle",
"created_ms", "expires_ms", "sealed"}...]}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from caresync.core.gcpause import paused_gc
from caresync.errors import BundleError, CaresyncError, InvalidInputError
from caresync.store.devicelog import DeviceLog, HasDeviceLog, device_log_of
from caresync.sync._http import Link
from caresync.sync.bundles.bag import Bag
from caresync.sync.bundles.format import (
    BUNDLE_FORMAT,
    DEFAULT_TTL_HOURS,
    HOUR_MS,
    MAX_BUNDLE_BLOB_BYTES,
    MAX_BUNDLE_OPS,
    MAX_DELETED,
    MAX_HANDOFFS,
    MAX_WANTS,
    SERVER_SIG,
    CarriedBlob,
    blob_entry,
    canonical,
    carried_blobs,
    open_answer,
    read_file,
    write_file,
)
from caresync.sync.netsync import SERVER_KEY_META
from caresync.trust.blobs import CHUNK_SIZE
from caresync.trust.keys import verify_signature

__all__ = [
    "RELAY_CURSOR_META",
    "AnswerImport",
    "Delivery",
    "deliver",
    "import_answers",
    "make_bundle",
    "write_bundle",
]

#: Where a device keeps the server cursor of the answers relayed to it.
RELAY_CURSOR_META = "relay_cursor"
_RECEIPTS_META = "relay_receipts"
_BLOBS_HELD_META = "relay_blobs_held"


def _cursor_key(cursor: str) -> tuple[int, int]:
    ms, _, n = cursor.partition(".")
    try:
        return (int(ms), int(n or 0)) if cursor else (0, 0)
    except ValueError:
        return (0, 0)


# --- the offline device -----------------------------------------------------------------------------------


def make_bundle(
    holder: DeviceLog | HasDeviceLog, *, ttl_hours: int = DEFAULT_TTL_HOURS, now_ms: int | None = None
) -> dict[str, Any]:
    """A signed bundle of ``replica``'s unsent ops (up to :data:`MAX_BUNDLE_OPS`), with its relay cursor and
    the receipts of the answers it imported. Work the device keeps until it can seal it
    (:meth:`~caresync.store.devicelog.DeviceLog.held_from`) stays out. Changes nothing on the replica."""
    device = device_log_of(holder)
    if not 1 <= ttl_hours <= 24 * 90:
        raise InvalidInputError(
            "Cannot make a bundle", [("ttl_hours", "must be 1 to 2160 (90 days)")], key="bundle.bad_ttl"
        )
    now = device.clock.physical_ms() if now_ms is None else now_ms
    store = device.store
    bundle: dict[str, Any] = {
        "caresync_bundle": BUNDLE_FORMAT,
        "type": "ops",
        "id": secrets.token_hex(8),
        "origin": device.id,
        "public_key": device.device_key.public_key.hex(),
        "created_ms": now,
        "expires_ms": now + ttl_hours * HOUR_MS,
        "cursor": store.get_meta(RELAY_CURSOR_META) or "",
        "receipts": json.loads(store.get_meta(_RECEIPTS_META) or "[]"),
        "ops": store.unsent(None, limit=MAX_BUNDLE_OPS, own=device.id, held=device.held()),
    }
    blobs = _blobs_to_carry(device)
    if blobs:
        bundle["blobs"] = blobs
    wants = _blobs_wanted(device)
    if wants:
        bundle["wants"] = wants
    deleted = device.blobs.deleted()[:MAX_DELETED]
    if deleted:  # blobs deleted here: the server stops counting this device among their holders
        bundle["deleted"] = deleted
    bundle["pull"] = device.blobs.pull_mode
    bundle["sig"] = device.device_key.sign(canonical(bundle)).hex()
    return bundle


def _server_holds(device: DeviceLog) -> dict[str, list[int]]:
    """What the server's signed answers said it holds of the blobs this device sends over several bundles."""
    return {str(k): [int(n) for n in v] for k, v in json.loads(device.store.get_meta(_BLOBS_HELD_META) or "{}").items()}


def _blobs_to_carry(device: DeviceLog) -> list[dict[str, Any]]:
    """Chunks of the whole blobs of this device's own attachments the server has not confirmed, smallest blob
    first, up to :data:`MAX_BUNDLE_BLOB_BYTES` in all: a larger blob is split over several bundles, each carrying
    the chunks the server's last answer did not say it holds. The server takes them with the bundle's ops,
    checked as it checks uploads, and its answer says how far it got."""
    blobs = device.blobs
    unsent = set(blobs.unsent())
    server_has = _server_holds(device)
    out: list[dict[str, Any]] = []
    room = MAX_BUNDLE_BLOB_BYTES
    for ref in sorted(blobs.named(), key=lambda r: (r.size, r.blob)):
        if ref.blob not in unsent or not ref.op.startswith(device.id + ":"):
            continue
        unsent.discard(ref.blob)
        state = blobs.state(ref.blob)
        if state is None:
            continue
        manifest, skip = state.manifest, set(server_has.get(ref.blob, ()))
        parts: list[tuple[int, bytes]] = []
        for n in range(len(manifest.chunks)):
            if n in skip:
                continue
            if manifest.chunk_size(n) > room:
                break
            data = blobs.chunk(ref.blob, n)
            if data is None:
                break
            parts.append((n, data))
            room -= len(data)
        if parts:
            out.append(blob_entry(manifest, ref.op, parts))
        if room < CHUNK_SIZE:
            break
    return out


def _blobs_wanted(device: DeviceLog) -> list[dict[str, Any]]:
    """The blobs this device's pull mode wants and lacks, for the server to carry back in its answer: each with
    the chunks still missing here when some arrived already (an answer carries at most
    :data:`MAX_BUNDLE_BLOB_BYTES`: a large blob comes over several)."""
    blobs = device.blobs
    out: list[dict[str, Any]] = []
    for ref in blobs.wanted(blobs.pull_mode)[:MAX_WANTS]:
        entry: dict[str, Any] = {"id": ref.blob, "op": ref.op}
        if blobs.state(ref.blob) is not None:
            entry["need"] = blobs.missing(ref.blob)
        out.append(entry)
    return out


def write_bundle(
    holder: DeviceLog | HasDeviceLog, path: str | Path, *, ttl_hours: int = DEFAULT_TTL_HOURS, now_ms: int | None = None
) -> dict[str, Any]:
    """Writes :func:`make_bundle` to ``path`` (atomically: a cut-off write leaves no half file); returns it."""
    device = device_log_of(holder)
    bundle = make_bundle(device, ttl_hours=ttl_hours, now_ms=now_ms)
    write_file(Path(path), bundle)
    return bundle


def _signed_by_server(payload: dict[str, Any], server_key: bytes | None, answer_id: str) -> bool:
    """Takes the server's signature out of an opened answer; True when it is the signature of the server this
    device knows. An answer signed by another key, or altered, is refused; with no server key known (a device
    that never met the server directly), the answer's ops are applied (each is signed by its own device) but its
    acknowledgements and refusals are not believed, so the device keeps sending its work until it can tell."""
    raw = payload.pop(SERVER_SIG, None)
    if server_key is None:
        return False
    try:
        signature = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not verify_signature(server_key, canonical(payload), signature):
        raise BundleError(
            f"Answer {answer_id} is not signed by the sync server this device knows: it was altered or forged on "
            "the way. Nothing of it was applied; your unsent work stays queued.",
            key="bundle.answer_forged",
            fields={"answer": answer_id},
        )
    return True


@dataclass(frozen=True)
class AnswerImport:
    """What importing an answers file did on the device."""

    answers: int
    """Answers for this device that were applied (stale ones included: they change nothing)."""
    received: int
    """New ops applied."""
    acked: int
    """Ops of this device newly marked as stored by the server."""
    refused: int
    """Ops the server refused (kept on the device with the reason: :meth:`Replica.refusals`)."""
    skipped: list[str]
    """Why answers in the file were not used (for another device, expired)."""
    more: bool
    """The server had more for this device than one answer carries: export another bundle."""
    blob_chunks: int = 0
    """Chunks of attachments' blobs the answers carried back that were new here (each checked)."""


def import_answers(holder: DeviceLog | HasDeviceLog, path: str | Path, *, now_ms: int | None = None) -> AnswerImport:
    """Imports a file of answers a courier carried back: applies the server's ops, marks acked ops as stored,
    records refusals, moves the relay cursor forward. Idempotent: importing a file again changes nothing.

    Raises:
        BundleError: the file is not an answers file, or holds no answer for this device.
    """
    device = device_log_of(holder)
    data = read_file(path)
    if data["type"] != "answers" or not isinstance(data.get("answers"), list):
        raise BundleError(
            f"{path} is a bundle of ops for the server, not answers for a device: give it to a courier to carry.",
            key="bundle.ops_not_answers",
            fields={"path": str(path)},
        )
    now = device.clock.physical_ms() if now_ms is None else now_ms
    store = device.store
    known = store.get_meta(SERVER_KEY_META)
    server_key = bytes.fromhex(known) if known else None
    applied = answers = acked = refused = chunks = 0
    more = False
    skipped: list[str] = []
    mine = [a for a in data["answers"] if isinstance(a, dict) and a.get("for") == device.id]
    skipped += [f"answer {a.get('id')} is for device {a.get('for')}" for a in data["answers"] if a not in mine]
    for answer in mine:
        if not isinstance(answer.get("expires_ms"), int) or answer["expires_ms"] < now:
            skipped.append(f"answer {answer.get('id')} expired")
            continue
        payload = open_answer(device.device_key, str(answer.get("sealed", "")))
        trusted = _signed_by_server(payload, server_key, str(answer.get("id")))
        try:
            ops = payload["ops"]
            cursor = str(payload["cursor"])
            acks = [(str(o), int(lo), int(hi)) for o, lo, hi in payload["acked"]]
            held_blobs = [str(b) for b in payload.get("blobs", ())]
            held_parts = {str(b): [int(n) for n in ns] for b, ns in dict(payload.get("blobs_held") or {}).items()}
            carried = carried_blobs(payload, "blob_chunks")  # each chunk checked against its blob's manifest
            released = [str(b) for b in payload.get("blobs_released", ())]
            drop = [str(b) for b in payload.get("drop_blobs", ())]
            blobs_more = bool(payload.get("blobs_more"))
            refusals = [(str(r["op"]), str(r["code"]), str(r["reason"])) for r in payload["refused"]]
            answer_more = bool(payload["more"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"Answer {answer.get('id')} opened but is damaged ({exc}); nothing of it was applied.",
                key="bundle.answer_damaged",
                fields={"answer": answer.get("id"), "reason": str(exc)},
            ) from exc
        current = store.get_meta(RELAY_CURSOR_META) or ""
        newest = max(current, cursor, key=_cursor_key)
        with paused_gc(), store.write():
            result = device.apply(ops, defer_rows=True, from_server=True, meta={RELAY_CURSOR_META: newest})
            if not trusted:  # only the server's own word may stop this device from sending its work again
                acks, refusals = [], []
            acked += store.mark_sent(acks)
            if trusted:  # only the server's own word may make this device delete a blob or stop saying it did
                _note_server_holds(device, held_blobs, held_parts)
                device.blobs.told(released)
                device.blobs.drop(drop)
            chunks += _keep_carried(device, carried)
            rows = []
            for text, code, reason in refusals:
                origin, _, seq = text.partition(":")
                if origin == device.id and seq.isdigit():
                    rows.append((origin, int(seq), code, reason, now))
            store.mark_refused(rows)
            receipts = [r for r in json.loads(store.get_meta(_RECEIPTS_META) or "[]") if r["answer"] != answer["id"]]
            receipts.append({"answer": answer["id"], "bundle": answer["bundle"], "imported_ms": now})
            store.set_meta(_RECEIPTS_META, json.dumps(receipts[-50:]))
        refused += len(rows)
        applied += result.applied + result.deferred
        answers += 1
        more = more or (answer_more and newest == cursor) or blobs_more
    device.settle()
    if not answers and skipped:
        raise BundleError(
            f"{path} holds no answer this device can use: {'; '.join(skipped)}.",
            key="bundle.no_usable_answer",
            fields={"path": str(path), "skipped": "; ".join(skipped)},
        )
    return AnswerImport(answers, applied, acked, refused, skipped, more, chunks)


def _note_server_holds(device: DeviceLog, whole: list[str], parts: dict[str, list[int]]) -> None:
    """Records what the server's signed answer says it holds of the blobs this device sent in bundles: a whole
    one is marked sent (no bundle or direct sync offers it again); of one split over bundles, the chunks taken, so
    the next bundle carries the others."""
    held = _server_holds(device)
    for blob_id in whole:
        device.blobs.mark_sent(blob_id)
        held.pop(blob_id, None)
    for blob_id, numbers in parts.items():
        if device.blobs.state(blob_id) is not None:
            held[blob_id] = sorted(set(held.get(blob_id, ())) | set(numbers))
    live = device.blobs.held()
    device.store.set_meta(_BLOBS_HELD_META, json.dumps({k: v for k, v in held.items() if k in live}))


def _keep_carried(device: DeviceLog, carried: list[CarriedBlob]) -> int:
    """Keeps the blob chunks an answer carried back (already checked against their blobs' manifests) of the blobs
    this device's live attachments name; returns how many chunks were new here. Others are not kept: a chunk no
    op of this device names is no business of its."""
    if not carried:
        return 0
    named = {ref.blob for ref in device.blobs.named()}
    kept = 0
    for blob in carried:
        if blob.manifest.id not in named:
            continue
        device.blobs.declare(blob.manifest, sent=True)
        missing = set(device.blobs.missing(blob.manifest.id))
        for n, data in blob.parts:
            if n in missing:
                device.blobs.put_chunk(blob.manifest, n, data)
                kept += 1
    return kept


# --- the courier's bag ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What the server did with one carried bundle."""

    bundle: str
    origin: str
    status: str
    """``delivered`` or ``refused``."""
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    reason: str | None = None


def deliver(
    bag: Bag,
    url: str,
    *,
    token: str,
    courier: str,
    now_ms: int,
    client: httpx.Client | None = None,
    retries: int = 2,
    timeout_s: float = 60.0,
) -> list[Delivery]:
    """Delivers every bundle the bag carries to the server at ``url`` (``POST /v1/relay``, one bundle per
    request) and keeps the sealed answers; tells the server which answers were handed to their devices.

    Raises:
        SyncError: the server cannot be reached; nothing is lost, the bundles stay in the bag.
        ServerRefusedError: the server refused the courier (token).
    """
    link = Link(url, token, client, retries, 0.5, timeout_s)
    out: list[Delivery] = []
    try:
        handoffs = bag.handoffs()
        pending = bag.to_deliver(now_ms=now_ms)
        while len(handoffs) > (MAX_HANDOFFS if pending else 0):  # the server takes MAX_HANDOFFS per request
            told, handoffs = handoffs[:MAX_HANDOFFS], handoffs[MAX_HANDOFFS:]
            link.post("/v1/relay", json={"courier": courier, "bundle": None, "handoffs": told})
            bag.reported(h["answer"] for h in told)
        for item in pending:
            carried_since = item.pop("_imported_ms")
            answer = link.post(
                "/v1/relay",
                json={"courier": courier, "bundle": item, "carried_since_ms": carried_since, "handoffs": handoffs},
            )
            bag.reported(h["answer"] for h in handoffs)
            handoffs = []
            try:
                status = str(answer["status"])
                sealed = answer.get("answer")
                outcome = Delivery(
                    bundle=item["id"],
                    origin=item["origin"],
                    status=status,
                    stored=int(answer.get("stored", 0)),
                    duplicates=int(answer.get("duplicates", 0)),
                    refused=int(answer.get("refused", 0)),
                    reason=answer.get("reason"),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise CaresyncError(
                    f"The sync server at {url} sent a relay answer this handheld cannot read",
                    key="relay.unreadable_answer",
                    fields={"url": url},
                ) from exc
            answer_or_none = sealed if status == "delivered" else None
            bag.delivered(item["id"], answer_or_none, now_ms=now_ms, reason=outcome.reason, signer=item["public_key"])
            out.append(outcome)
    finally:
        link.close()
    return out
