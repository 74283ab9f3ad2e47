"""Relay sync on the server: a courier delivers bundles that offline devices signed, and carries back the
answers, sealed to each device (see :mod:`caresync.sync.bundles.relay`).

* ``POST /v1/relay`` (any enrolled device may carry): checks the bundle's signature against its origin's public
  key (which must be the origin's own key: ``origin_of(public_key) == origin``) and its expiry, admits its ops
  as that device's push through the usual storage and admission code, and answers with the acks and the ops of
  that device's scope after the cursor the bundle carries, sealed to the device. A duplicated, stale or
  replayed bundle stores nothing new and is answered again.
* ``GET /v1/relays`` (station and admin devices): every bundle's hand-overs (made, carried, delivered, answer
  handed to the device, answer imported), with how long its data spent in transit.

The hand-overs are kept in a table of their own, ``relay_events``, created on first use.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from caresync.core.ops import ops_from_rows, validate_ops
from caresync.errors import BundleError, ForgedOpError, InvalidOpError, OpForkError
from caresync.sync.bundles.format import MAX_BUNDLE_BLOB_BYTES, carried_blobs, check_bundle, seal_answer
from caresync.trust.signing import verify_signed
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import BigInteger, Column, Connection, Index, Integer, MetaData, String, Table, Text, select
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool

from .admission import body_text
from .blobs import carry_back, deleted, take_carried, to_delete
from .bodies import inflate, max_values, read_json
from .deps import DeviceDep, charge_ops
from .deps import request_now as _now
from .deps import request_storage as _storage
from .errors import ApiError, DatabaseUnavailable, ErrorCode, ErrorDetail
from .protocol import BundleFields, ErrorEnvelope, Handoff, RelayRequest
from .storage import CURSOR_CLOCK_SHIFT, Device, DeviceReport, Storage, devices

__all__ = ["ANSWER_OPS", "relay_events", "router"]

#: The most ops one sealed answer carries; the device gets the rest with its next bundle.
ANSWER_OPS = 5000
_MASK = (1 << CURSOR_CLOCK_SHIFT) - 1
_JSON = "application/json"

_metadata = MetaData()
relay_events = Table(
    "relay_events",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle", String(32), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("event", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("by", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Index("relay_events_by_bundle", "bundle"),
)

router = APIRouter()
_ready_lock = threading.Lock()
_ready: weakref.WeakSet[Storage] = weakref.WeakSet()  # storages whose relay table is known to exist


_CarrierDep = DeviceDep


def _ensure_table(storage: Storage) -> None:
    if storage in _ready:
        return
    with _ready_lock, _write(storage) as conn:
        relay_events.create(conn, checkfirst=True)
        _ready.add(storage)


class _write:
    """A write transaction on the server's database, its driver errors re-raised as the server's own."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __enter__(self) -> Connection:
        try:
            self.conn = self.storage.engine.connect()
            self.conn.execution_options(caresync_write=True)
            self.tx = self.conn.begin()
        except sa_exc.OperationalError as exc:
            raise DatabaseUnavailable(f"The database does not answer ({exc.orig}); try again later.") from exc
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc_type is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.close()


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _format_cursor(cursor: int) -> str:
    return f"{cursor >> CURSOR_CLOCK_SHIFT}.{cursor & _MASK}"


def _parse_cursor(cursor: str) -> int:
    ms, dot, n = cursor.partition(".")
    if cursor and dot and ms.isascii() and ms.isdigit() and n.isascii() and n.isdigit() and len(ms) <= 15:
        return (int(ms) << CURSOR_CLOCK_SHIFT) | min(int(n), _MASK)
    return 0  # no cursor, or one this server did not give: the answer starts from the beginning


def _record(
    conn: Connection, bundle: str, origin: str, event: str, at_ms: int, by: str, *, once: bool, **detail: Any
) -> None:
    if once:
        found = conn.execute(
            select(relay_events.c.id).where(
                relay_events.c.bundle == bundle, relay_events.c.event == event, relay_events.c.by == by
            )
        ).first()
        if found is not None:
            return
    conn.execute(
        relay_events.insert().values(
            bundle=bundle, origin=origin, event=event, at_ms=int(at_ms), by=by, detail=json.dumps(detail)
        )
    )


@dataclass
class _Outcome:
    stored: int = 0
    duplicates: int = 0
    refused: list[dict[str, str]] | None = None
    waiting: int = 0
    acked: list[list[Any]] | None = None


def _admit(storage: Storage, device: Device, ops: list[dict[str, Any]], max_batch: int, now: int) -> _Outcome:
    """The bundle's ops pushed as the origin device's own push, in batches; ops left waiting ride again at the
    head of the next batch (as in netsync), so the device's own ops reach admission without holes."""
    outcome = _Outcome(refused=[], acked=[])
    assert outcome.refused is not None and outcome.acked is not None
    ordered = sorted(ops, key=lambda o: (o["hlc"], o["origin"], o["seq"]))
    carried: list[dict[str, Any]] = []
    start = 0
    report = DeviceReport(0, None, device.clock_offset_ms or 0)
    while start < len(ordered):
        room = max(1, max_batch - len(carried))
        batch = carried + ordered[start : start + room]
        start += room
        verdict = storage.push(device.id, str(device.replica_id), batch, report, now)
        outcome.stored += len(verdict.admitted)
        outcome.duplicates += verdict.duplicates
        outcome.acked.extend(list(r) for r in verdict.acked())
        outcome.refused.extend(
            {"op": f"{op['origin']}:{op['seq']}", "code": code, "reason": reason}
            for op, code, reason in verdict.refused
        )
        outcome.refused.extend(
            {"op": f"{o}:{s}", "code": code, "reason": reason} for (o, s), code, reason in verdict.repeated
        )
        waiting = {key for key, _ in verdict.waiting}
        carried = [op for op in batch if (op["origin"], op["seq"]) in waiting]
    outcome.waiting = len(carried)
    return outcome


def _refusal(code: str, reason: str, bundle_id: str | None) -> dict[str, Any]:
    return {"bundle": bundle_id, "status": "refused", "code": code, "reason": reason}


def _record_handoffs(conn: Connection, carrier: Device, handoffs: Sequence[Handoff]) -> int:
    """Records the answers a carrier says it handed to their devices; returns how many were ignored.

    A hand-off is taken only from the device that delivered the bundle (a ``delivered`` event by it) or from the
    device the bundle was for, and once per carrier: anyone else's is ignored (and counted in the answer), so no
    device can write into the station's relay log about bundles it never carried.
    """
    if not handoffs:
        return 0
    wanted = sorted({h.bundle for h in handoffs})
    delivered: set[tuple[str, str, str]] = set()
    handed: set[tuple[str, str]] = set()
    for part in _chunks(wanted):
        for bundle, origin, event, by in conn.execute(
            select(relay_events.c.bundle, relay_events.c.origin, relay_events.c.event, relay_events.c.by).where(
                relay_events.c.bundle.in_(part), relay_events.c.event.in_(["delivered", "answer_handed"])
            )
        ):
            if event == "delivered":
                delivered.add((bundle, origin, by))
            elif by == carrier.name:
                handed.add((bundle, origin))
    carriers_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for bundle, origin, by in delivered:
        carriers_of[(bundle, origin)].add(by)
    rows = []
    ignored = 0
    for h in handoffs:
        key = (h.bundle, h.origin)
        if not (carrier.name in carriers_of[key] or (carriers_of[key] and carrier.replica_id == h.origin)):
            ignored += 1
        elif key not in handed:
            handed.add(key)
            rows.append(
                {
                    "bundle": h.bundle,
                    "origin": h.origin,
                    "event": "answer_handed",
                    "at_ms": h.exported_ms,
                    "by": carrier.name,
                    "detail": json.dumps({"answer": h.answer}),
                }
            )
    if rows:
        conn.execute(relay_events.insert(), rows)
    return ignored


def _relay(storage: Storage, carrier: Device, request: RelayRequest, now: int) -> dict[str, Any]:
    _ensure_table(storage)
    with _write(storage) as conn:
        ignored = _record_handoffs(conn, carrier, request.handoffs)
    raw = request.bundle
    if raw is None:
        return {"bundle": None, "status": "recorded", "handoffs_ignored": ignored}
    answer = _deliver(storage, carrier, raw, request.carried_since_ms, now)
    answer["handoffs_ignored"] = ignored
    return answer


def _deliver(
    storage: Storage, carrier: Device, raw: dict[str, Any], carried_since: int | None, now: int
) -> dict[str, Any]:
    bundle_id = str(raw.get("id"))[:32]
    try:
        BundleFields.model_validate(raw)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        reason = f"Bundle {bundle_id} is not a bundle this server takes ({problems})."
        return _refusal("bundle_invalid", reason, bundle_id)
    if len(raw["ops"]) > storage.settings.max_batch_ops:
        return _refusal(
            "bundle_invalid",
            f"Bundle {bundle_id} carries {len(raw['ops'])} ops, more than this server takes in one request "
            f"({storage.settings.max_batch_ops}).",
            bundle_id,
        )
    try:
        bundle = check_bundle(raw, now_ms=now)
    except BundleError as exc:
        code = "bundle_expired" if "expired" in exc.message else "bundle_forged"
        return _refusal(code, exc.message, bundle_id)
    try:
        carried = carried_blobs(bundle)  # attachments' blobs, checked chunk by chunk against their names
    except BundleError as exc:
        return _refusal("bundle_invalid", exc.message, bundle_id)
    origin = bundle["origin"]
    device = storage.device_by_replica(origin)
    if device is None:
        return _refusal(
            "device_unknown",
            f"No enrolled device syncs as replica {origin}: the station must enrol that device (and it must sync "
            "once, or enrol with its key) before its bundles can be relayed.",
            bundle_id,
        )
    if device.revoked_at is not None:
        return _refusal(
            "revoked", f"The station revoked device {device.name}; its bundles are not accepted.", bundle_id
        )
    enrolled = storage.device_public_key(origin)
    if enrolled is not None and enrolled.hex() != bundle["public_key"].lower():
        return _refusal(
            "bundle_forged",
            f"Bundle {bundle_id} is signed by another key than the one device {device.name} enrolled with: it was "
            "forged. Do not carry it.",
            bundle_id,
        )
    try:
        known, deferred = validate_ops(bundle["ops"])
        for op in known:
            body_text(op["body"]).encode()
        verify_signed(known)
    except ForgedOpError as exc:
        return _refusal("bad_signature", f"Bundle {bundle_id} holds an op its device did not sign: {exc}", bundle_id)
    except OpForkError as exc:
        return _refusal("op_fork", f"Bundle {bundle_id} holds two histories of its device: {exc}", bundle_id)
    except (InvalidOpError, UnicodeEncodeError) as exc:
        return _refusal("invalid_ops", f"Bundle {bundle_id} holds ops that are not valid: {exc}", bundle_id)
    if deferred:
        return _refusal("unknown_kind", "The bundle holds op kinds this server does not know; upgrade it.", bundle_id)
    try:
        outcome = _admit(storage, device, known, storage.settings.max_batch_ops, now)
    except ApiError as exc:
        return _refusal(exc.code.value, exc.message, bundle_id)
    after = _parse_cursor(bundle["cursor"])
    page = storage.pull(device, origin, after, ANSWER_OPS, device.clock_offset_ms or 0, now)
    released = [str(b) for b in bundle.get("deleted") or ()]  # blobs the device deleted: it holds them no longer
    deleted(storage, storage.settings, device, released)
    held = take_carried(storage, device, carried, now)
    page_ops = ops_from_rows(page.rows)
    wants = [(w["id"], w["op"], w.get("need")) for w in bundle.get("wants") or ()]
    back, blobs_more = carry_back(
        storage, device, wants, page_ops, str(bundle.get("pull") or "lazy"), MAX_BUNDLE_BLOB_BYTES
    )
    payload: dict[str, Any] = {
        "bundle": bundle_id,
        "acked": outcome.acked,
        "refused": outcome.refused,
        "waiting": outcome.waiting,
        "ops": page_ops,
        "cursor": _format_cursor(page.cursor),
        "more": page.more,
        "server_time_ms": now,
    }
    whole = {c.manifest.id: len(c.manifest.chunks) for c in carried}
    if held:  # the blobs the server now holds whole, and how far it got with those split over several bundles
        payload["blobs"] = sorted(b for b, chunks in held.items() if len(chunks) == whole[b])
        payload["blobs_held"] = {b: chunks for b, chunks in held.items() if len(chunks) < whole[b]}
    if released:
        payload["blobs_released"] = released
    drop = to_delete(storage, device)
    if drop:  # blobs the device holds that no live attachment names any more: it deletes them
        payload["drop_blobs"] = drop
    if back:  # blobs carried back to the device, sealed as they rest, inside the answer sealed to it
        payload["blob_chunks"] = back
        payload["blobs_more"] = blobs_more
    answer = seal_answer(
        bytes.fromhex(bundle["public_key"]),
        payload,
        server_key=storage.server_key(),
        origin=origin,
        bundle_id=bundle_id,
        now_ms=now,
    )
    with _write(storage) as conn:
        _record(conn, bundle_id, origin, "made", bundle["created_ms"], device.name, once=True, ops=len(known))
        if carried_since is not None:
            _record(conn, bundle_id, origin, "carried", carried_since, carrier.name, once=True)
        _record(
            conn,
            bundle_id,
            origin,
            "delivered",
            now,
            carrier.name,
            once=False,
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            refused=len(outcome.refused or []),
        )
        for receipt in bundle["receipts"]:  # checked by BundleFields: a bundle id and a time each
            _record(conn, receipt["bundle"], origin, "answer_imported", receipt["imported_ms"], device.name, once=True)
    return {
        "bundle": bundle_id,
        "status": "delivered",
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "refused": len(outcome.refused or []),
        "waiting": outcome.waiting,
        "answer": answer,
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": text}
    for status, text in (
        (400, "The body is not JSON, or nested too deeply (`invalid_json`); not gzip (`invalid_encoding`)."),
        (413, "More bytes or JSON values than a request may carry (`batch_too_large`)."),
        (415, "A content encoding other than gzip (`unsupported_media_type`)."),
        (401, "No token, or a token no device has (`unauthorized`)."),
        (403, "The carrying device was revoked (`revoked`), or may not read the relay log (`forbidden`)."),
        (422, "The request's fields are not valid (`invalid_request`)."),
        (503, "The database does not answer (`unavailable`)."),
    )
}


@router.post(
    "/v1/relay",
    summary="Deliver a bundle an offline device signed; get its sealed answer",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/RelayRequest"}}},
        }
    },
)
async def relay(request: Request, carrier: _CarrierDep) -> Response:
    """Admits a carried bundle's ops as its origin device's push; answers with a sealed answer for the device."""
    settings = _storage(request).settings
    body = inflate(await request.body(), request.headers.get("content-encoding", ""), settings.max_body_bytes)
    parsed = read_json(body, max_values_allowed=max_values(settings.max_batch_ops))
    try:
        checked = RelayRequest.model_validate(parsed)
    except PydanticValidationError as exc:
        details: list[ErrorDetail] = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]} for e in exc.errors()[:20]
        ]
        raise ApiError(
            ErrorCode.INVALID_REQUEST, "The relay request's fields are not valid; nothing was stored.", details
        ) from None
    carried = checked.bundle.get("ops") if checked.bundle is not None else None
    charge_ops(request, carrier, len(carried) if isinstance(carried, list) else 0)
    answer = await run_in_threadpool(_relay, _storage(request), carrier, checked, _now(request))
    return Response(json.dumps(answer, ensure_ascii=False).encode(), media_type=_JSON)


def _relays(storage: Storage, limit: int) -> dict[str, Any]:
    _ensure_table(storage)
    with storage.engine.connect() as conn:
        rows = conn.execute(select(relay_events).order_by(relay_events.c.at_ms, relay_events.c.id)).all()
        names = {r.replica_id: r.name for r in conn.execute(select(devices.c.replica_id, devices.c.name))}
    by_bundle: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_bundle[row.bundle].append(row)
    out = []
    for bundle, events in by_bundle.items():
        first = {e.event: e.at_ms for e in reversed(events)}
        made = first.get("made")
        out.append(
            {
                "bundle": bundle,
                "origin": events[0].origin,
                "device": names.get(events[0].origin),
                "events": [
                    {"event": e.event, "at_ms": e.at_ms, "by": e.by, "detail": json.loads(e.detail)} for e in events
                ],
                "deliveries": sum(e.event == "delivered" for e in events),
                "in_transit_ms": None if made is None or "delivered" not in first else first["delivered"] - made,
                "round_trip_ms": None
                if made is None or "answer_imported" not in first
                else first["answer_imported"] - made,
            }
        )
    out.sort(key=lambda r: min(e["at_ms"] for e in r["events"]), reverse=True)
    return {"relays": out[:limit]}


@router.get("/v1/relays", summary="Every relayed bundle's hand-overs (station and admin devices)", responses=_ERRORS)
def relays(request: Request, carrier: _CarrierDep, limit: int = 200) -> Response:
    """Who carried which bundle from when to when, and how long its data spent in transit."""
    if carrier.role.value not in ("station", "admin"):
        body = {
            "error": {
                "code": "forbidden",
                "message": f"Only station and admin devices see the relay log; {carrier.name} is a "
                f"{carrier.role.value}.",
                "details": [],
            }
        }
        return Response(json.dumps(body), status_code=403, media_type=_JSON)
    data = _relays(_storage(request), max(1, min(limit, 5000)))
    return Response(json.dumps(data, ensure_ascii=False).encode(), media_type=_JSON)
