"""The HTTP app: ``create_app(settings)`` builds it; the routes are thin, the rules live in
:mod:`caresync_server.admission` and :mod:`caresync_server.storage`.

Every error, from every endpoint, is answered with one JSON envelope (:class:`~.protocol.ErrorEnvelope`); the
handlers that turn exceptions into it are all in this module. Bad input is a 4xx, never a 5xx.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, cast

from caresync.core.gcpause import paused_gc
from caresync.core.ops import FORMAT_VERSION, OpDict, ops_from_rows, validate_ops
from caresync.errors import ForgedOpError, InvalidInputError, InvalidOpError, OpForkError
from caresync.sync.wire import FORMATS, MEDIA_TYPE, decode_envelope, encode_envelope
from caresync.trust.signing import verify_signed
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._version import __version__
from .admin import router as admin_router
from .admission import Verdict, body_text
from .blobs import collect as collect_blobs
from .blobs import deleted as deleted_blobs
from .blobs import router as blobs_router
from .blobs import to_delete
from .bodies import inflate, max_values, read_json
from .deps import charge_ops, charge_request
from .errors import STATUS, ApiError, ConfigError, DatabaseError, ErrorCode, ErrorDetail
from .limits import DeviceLimits
from .protocol import (
    PROTOCOL_VERSION,
    ErrorEnvelope,
    Health,
    Info,
    Limits,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    RelayRequest,
)
from .relay import router as relay_router
from .settings import Settings
from .storage import CURSOR_CLOCK_SHIFT, Device, DeviceReport, PullPage, Storage, check_replica, system_time_ms
from .trust import router as trust_router

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("caresync_server")

_JSON = "application/json"
_MAX_INT = 2**63 - 1
_CURSOR_MASK = (1 << CURSOR_CLOCK_SHIFT) - 1
_RETRY_AFTER = {"Retry-After": "5"}
_DESCRIPTION = """\
The caresync sync server, protocol v1. Devices push the ops they made (and ops they relay) and pull the ops
of their scope, following a cursor. See docs/protocol.md in the caresync repository for the full contract:
cursor semantics, idempotence, acknowledged ranges, waiting and refused ops, clock offsets, every error code.

Op batches travel as JSON or in the compact form `application/x-caresync-batch` (defined by `caresync.sync.wire`).
Every request except `/healthz` and `/v1/info` carries `Authorization: Bearer <device token>`.
"""


#: Pushes that may wait for their turn at the database at once, per process. Pushes take turns anyway (see
#: docs/protocol.md, section 5); bounding the queue here keeps pooled connections free for pulls.
PUSHES_IN_LINE = 2


@dataclass(frozen=True)
class _Context:
    settings: Settings
    storage: Storage
    now_ms: Callable[[], int]
    pushes: asyncio.Semaphore
    decoding: asyncio.Semaphore
    """Push bodies being decoded at once: each may briefly hold some 20 times its size as Python objects."""
    limits: DeviceLimits
    """Each device's requests, bytes and ops in its current hour (:mod:`.limits`)."""


def create_app(settings: Settings, *, now_ms: Callable[[], int] = system_time_ms) -> FastAPI:
    """The sync server as an ASGI app.

    The database is not touched until the app starts (its lifespan creates the tables if they are missing)
    or serves a request, so an app over a database that is down still starts, and ``/healthz`` says so.

    Args:
        settings: the database and the limits.
        now_ms: the server's wall clock (tests pass their own).
    """
    storage = Storage(settings, now_ms=now_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(storage.ensure_schema, create=True)
        except DatabaseError as exc:
            log.warning("starting without a usable database: %s", exc)
        yield
        storage.close()

    app = FastAPI(
        title="caresync sync server",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    limits = DeviceLimits(
        requests_per_hour=settings.device_requests_per_hour,
        bytes_per_hour=settings.device_bytes_per_hour,
        ops_per_hour=settings.device_ops_per_hour,
    )
    app.state.caresync = _Context(
        settings, storage, now_ms, asyncio.Semaphore(PUSHES_IN_LINE), asyncio.Semaphore(PUSHES_IN_LINE), limits
    )
    app.include_router(_router)
    app.include_router(trust_router)
    app.include_router(relay_router)  # relay bundles (issue 5)
    app.include_router(admin_router)  # the station console's device management (issue 18)
    app.include_router(blobs_router)  # attachments' blobs (issue 20)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DatabaseError, _database_error)
    app.add_exception_handler(ConfigError, _config_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
    return app


def app_from_env() -> FastAPI:
    """The app with settings from ``CARESYNC_*`` variables: the factory ``caresync-server serve --workers N``
    gives uvicorn, whose worker processes build their own app."""
    return create_app(Settings.from_env())


# --- dependencies --------------------------------------------------------------------------------------------


def _context(request: Request) -> _Context:
    return cast(_Context, request.app.state.caresync)


_bearer = HTTPBearer(auto_error=False, description="The device token `caresync-server enroll` printed.")
_ContextDep = Annotated[_Context, Depends(_context)]


def _device(
    request: Request, ctx: _ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Device:
    if credentials is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "This request carries no device token (Authorization: Bearer <token>). Ask the station to enrol the "
            "device and use the token it prints.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    device = ctx.storage.authenticate(credentials.credentials)
    charge_request(request, device)
    return device


_DeviceDep = Annotated[Device, Depends(_device)]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorEnvelope, "description": _STATUS_TEXT[status]} for status in statuses}


_STATUS_TEXT = {
    400: "Malformed body (`invalid_json`, `invalid_encoding`) or cursor (`invalid_cursor`).",
    401: "No token, or a token no device has (`unauthorized`).",
    403: "The device was revoked (`revoked`), or the token belongs to another replica (`replica_mismatch`).",
    409: "The batch reuses an op's identity (`op_fork`) or skips the device's next seq (`seq_gap`).",
    413: "Too many ops or too many bytes (`batch_too_large`).",
    415: "A content type or encoding the server does not read (`unsupported_media_type`).",
    422: "Envelope fields wrong (`invalid_request`), ops invalid (`invalid_ops`) or of a kind this server "
    "does not know (`unknown_kind`).",
    503: "The database does not answer (`unavailable`); try again later.",
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}

_router = APIRouter()


# --- routes --------------------------------------------------------------------------------------------------


@_router.post(
    "/v1/push",
    response_model=PushResponse,
    responses=_errors(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/PushRequest"}}, MEDIA_TYPE: _BINARY},
        }
    },
    summary="Push a batch of ops",
)
async def push(request: Request, ctx: _ContextDep, device: _DeviceDep) -> Response:
    """Stores the ops of a batch (idempotent by `(origin, seq)`); answers what became of each."""
    body = await request.body()
    now = ctx.now_ms()
    async with ctx.decoding:
        replica, ops, report = await run_in_threadpool(_read_push, ctx, device, request.headers, body, now)
    charge_ops(request, device, len(ops))
    async with ctx.pushes:
        verdict = await run_in_threadpool(ctx.storage.push, device.id, replica, ops, report, now)
    killed = sorted({op["eid"] for op in ops if op["kind"].endswith(".detach") or op["kind"] == "resident.redact"})
    if killed:  # attachments removed or erased: their blobs go once every device that held them has the op
        await run_in_threadpool(collect_blobs, ctx.storage, ctx.settings, killed, device)
    answer = json.dumps(_push_answer(verdict, now, report.clock_offset_ms), ensure_ascii=False).encode()
    return Response(answer, media_type=_JSON)


@_router.post(
    "/v1/pull",
    response_model=PullResponse,
    responses={200: {"content": {MEDIA_TYPE: _BINARY}}, **_errors(400, 401, 403, 413, 415, 422, 503)},
    summary="Pull the next ops of the device's scope",
)
def pull(body: PullRequest, request: Request, ctx: _ContextDep, device: _DeviceDep) -> Response:
    """The ops after `cursor` the device may see, in cursor order; compact when `Accept` names the compact form."""
    after = _parse_cursor(body.cursor)
    now = ctx.now_ms()
    offset = now - body.time_ms
    limit = min(body.limit, ctx.settings.max_pull_limit)
    # a page is some 10,000 rows, op dicts and columns, alive until it is encoded and forming no cycles: cyclic
    # collections in the middle would walk them (and the whole app) again and again for nothing
    with paused_gc():
        page = ctx.storage.pull(device, body.replica, after, limit, offset, now, op_format=body.format)
        deleted_blobs(ctx.storage, ctx.settings, device, body.deleted)  # it holds those no longer
        drop = to_delete(ctx.storage, device)  # blobs it holds that no live attachment names: delete them
        fmt = _compact_format(request.headers.get("accept", ""))
        if fmt is not None:
            envelope = {
                "ops": ops_from_rows(page.rows),
                "cursor": _format_cursor(page.cursor),
                "more": page.more,
                "server_time_ms": now,
                "clock_offset_ms": offset,
            }
            if drop:
                envelope["drop_blobs"] = drop
            return Response(encode_envelope(envelope, fmt), media_type=MEDIA_TYPE)
        return _json_answer(_pull_json(page, now, offset, drop), request)


@_router.get(
    "/healthz",
    response_model=Health,
    responses=_errors(503),
    summary="Whether the server can serve",
)
def healthz(ctx: _ContextDep) -> Health:
    """200 when the database answers and has this server's tables, and the server has its key; 503 otherwise."""
    version = ctx.storage.ping()
    ctx.storage.server_key()
    return Health(status="ok", version=__version__, database=ctx.settings.dialect, schema_version=version)


@_router.get("/v1/info", response_model=Info, summary="The server, its protocol and its limits")
def info(ctx: _ContextDep) -> Info:
    """Needs no token."""
    return Info(
        server="caresync-server",
        version=__version__,
        protocol_version=PROTOCOL_VERSION,
        media_types=[_JSON, MEDIA_TYPE],
        limits=Limits(
            max_batch_ops=ctx.settings.max_batch_ops,
            max_body_bytes=ctx.settings.max_body_bytes,
            max_pull_limit=ctx.settings.max_pull_limit,
            max_blob_bytes=ctx.settings.max_blob_bytes,
            max_device_blob_bytes=ctx.settings.max_device_blob_bytes,
        ),
        server_time_ms=ctx.now_ms(),
        server_public_key=ctx.storage.server_key().public_key.hex(),
    )


# --- push ----------------------------------------------------------------------------------------------------


def _read_push(
    ctx: _Context, device: Device, headers: Mapping[str, str], body: bytes, now: int
) -> tuple[str, list[OpDict], DeviceReport]:
    """Decodes and checks a push body: its replica, its validated ops, and what the device reports."""
    with paused_gc():  # thousands of op dicts alive until checked, forming no cycles (see the pull route)
        return _read_push_unpaused(ctx, device, headers, body, now)


def _read_push_unpaused(
    ctx: _Context, device: Device, headers: Mapping[str, str], body: bytes, now: int
) -> tuple[str, list[OpDict], DeviceReport]:
    envelope = _decode(headers.get("content-type", ""), headers.get("content-encoding", ""), body, ctx.settings)
    request, raw_ops = _push_request(envelope)
    check_replica(device, request.replica)  # before the ops are looked at; checked again when storing
    if len(raw_ops) > ctx.settings.max_batch_ops:
        raise ApiError(
            ErrorCode.BATCH_TOO_LARGE,
            f"A push may carry at most {ctx.settings.max_batch_ops} ops; this one carries {len(raw_ops)}. Send "
            "them in smaller batches.",
            [{"field": "ops", "problem": f"{len(raw_ops)} ops, more than {ctx.settings.max_batch_ops}"}],
        )
    ops = _validated(raw_ops)
    return request.replica, ops, DeviceReport(request.pending, request.oldest_unsent_ms, now - request.time_ms)


def _decode(content_type: str, encoding: str, body: bytes, settings: Settings) -> Any:
    """The envelope a push body holds, as plain Python values (read with bounded work: see :mod:`.bodies`)."""
    body = inflate(body, encoding, settings.max_body_bytes)
    media = content_type.split(";", 1)[0].strip().lower()
    if media == MEDIA_TYPE:
        allowed = max_values(settings.max_batch_ops)
        try:
            return decode_envelope(body, max_bytes=settings.max_body_bytes, max_values=allowed)
        except InvalidInputError as exc:
            if [field for field, _ in exc.problems] == ["values"]:  # the bound of a plain JSON body, and its answer
                raise ApiError(
                    ErrorCode.BATCH_TOO_LARGE,
                    f"The batch holds more than {allowed} JSON values; send smaller batches (see /v1/info).",
                    [{"field": "body", "problem": problem} for _, problem in exc.problems],
                ) from exc
            raise ApiError(
                ErrorCode.INVALID_ENCODING,
                f"The batch cannot be read: {exc.message}. Nothing was stored.",
                [{"field": field, "problem": problem} for field, problem in exc.problems],
            ) from exc
    if media in ("", _JSON) or media.endswith("+json"):
        return read_json(body, max_values_allowed=max_values(settings.max_batch_ops))
    raise ApiError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"The server reads batches as {_JSON} or {MEDIA_TYPE}, not {media}.",
        [{"field": "Content-Type", "problem": f"{media} is not {_JSON} or {MEDIA_TYPE}"}],
    )


def _push_request(envelope: Any) -> tuple[PushRequest, list[Any]]:
    """The envelope's fields, checked, and its ops as sent (they are checked by validate_ops)."""
    if not isinstance(envelope, dict):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "A push must be a JSON object with replica, time_ms and ops.",
            [{"field": "body", "problem": f"got {type(envelope).__name__}"}],
        )
    problems: list[ErrorDetail] = []
    raw_ops = envelope.get("ops")
    if not isinstance(raw_ops, list):
        problems.append({"field": "ops", "problem": "must be a list of ops" if "ops" in envelope else "missing"})
    try:
        request = PushRequest.model_validate({**envelope, "ops": []})
    except PydanticValidationError as exc:
        problems.extend(_pydantic_details(exc))
        request = None
    if problems or request is None or not isinstance(raw_ops, list):
        raise ApiError(ErrorCode.INVALID_REQUEST, _invalid_message(problems), problems)
    return request, raw_ops


def _validated(raw_ops: list[Any]) -> list[OpDict]:
    try:
        known, deferred = validate_ops(raw_ops)
    except InvalidOpError as exc:
        raise ApiError(
            ErrorCode.INVALID_OPS,
            f"{exc.message}; nothing of the batch was stored. The device that made these ops runs broken "
            "software or was tampered with.",
            [{"field": field, "problem": problem} for field, problem in exc.problems],
        ) from exc
    if deferred:
        kinds = sorted({f"{op['kind']} v{op['v']}" for op in deferred})
        raise ApiError(
            ErrorCode.UNKNOWN_KIND,
            f"This server does not know the op kinds {', '.join(kinds)} (it reads op format {FORMAT_VERSION}): the "
            "device runs a newer caresync. Upgrade the server; the device keeps the ops until then.",
            [
                {
                    "field": "kind",
                    "problem": f"{op['kind']} v{op['v']} is not known",
                    "op": f"{op['origin']}:{op['seq']}",
                }
                for op in deferred[:10]
            ],
        )
    problems: list[ErrorDetail] = []
    for i, op in enumerate(known):
        label = f"op #{i} ({op['kind']} {op['origin']}:{op['seq']})"
        if op["at"] > _MAX_INT:
            problems.append({"field": f"{label} at", "problem": "is beyond any date"})
        if "\x00" in op["actor"]:
            problems.append({"field": f"{label} actor", "problem": "holds a NUL character"})
        try:
            op["actor"].encode()
            body_text(op["body"]).encode()
        except UnicodeEncodeError:
            problems.append({"field": label, "problem": "holds text that is not valid Unicode"})
        if len(problems) >= 10:
            break
    if problems:
        raise ApiError(
            ErrorCode.INVALID_OPS,
            "Refused a batch of ops; nothing of it was stored.",
            problems,
        )
    try:
        # verify_ops, which also fills in the pd links the batch left out (they are stored with the ops), then each
        # op's own signature: every signature kept here may be sent on alone (a pull filtered by scope)
        verify_signed(known)
    except ForgedOpError as exc:
        raise ApiError(
            ErrorCode.BAD_SIGNATURE,
            exc.message,
            [{"field": field, "problem": problem} for field, problem in exc.problems],
        ) from exc
    except OpForkError as exc:  # two signed ops claim one place in the device's chain
        raise ApiError(
            ErrorCode.OP_FORK,
            exc.message,
            [
                {
                    "field": "ops",
                    "problem": "a signed op follows another op of that identity",
                    "op": getattr(exc, "op", ""),
                }
            ],
        ) from exc
    return known


def _push_answer(verdict: Verdict, now: int, offset: int) -> dict[str, Any]:
    refused = [
        {"op": f"{op['origin']}:{op['seq']}", "code": code, "reason": reason} for op, code, reason in verdict.refused
    ]
    refused += [
        {"op": f"{origin}:{seq}", "code": code, "reason": reason} for (origin, seq), code, reason in verdict.repeated
    ]
    return {
        "stored": len(verdict.admitted),
        "duplicates": verdict.duplicates,
        "acked": [list(r) for r in verdict.acked()],
        "refused": refused,
        "waiting": [{"op": f"{origin}:{seq}", "reason": reason} for (origin, seq), reason in verdict.waiting],
        "server_time_ms": now,
        "clock_offset_ms": offset,
    }


# --- pull ----------------------------------------------------------------------------------------------------


def _format_cursor(cursor: int) -> str:
    """A cursor as ``<ms>.<n>``: cursors are drawn from the server's clock in ms times 2**20 (see storage), so this
    reads as when the op committed; and in a pull answer its digits repeat those of ``server_time_ms``, which the
    compact form then compresses away."""
    return f"{cursor >> CURSOR_CLOCK_SHIFT}.{cursor & _CURSOR_MASK}"


def _parse_cursor(cursor: str) -> int:
    if cursor == "":
        return 0
    ms, dot, n = cursor.partition(".")
    if dot and ms.isascii() and ms.isdigit() and n.isascii() and n.isdigit() and len(ms) <= 15 and len(n) <= 7:
        # a cursor past any this server gives (the pattern allows it) is the end of the log: nothing after it
        return min((int(ms) << CURSOR_CLOCK_SHIFT) + int(n), _MAX_INT)
    raise ApiError(
        ErrorCode.INVALID_CURSOR,
        "The cursor is not one this server gave; send the cursor of the last pull answer, or an empty one to "
        "start over.",
        [{"field": "cursor", "problem": f"{cursor[:40]!r} is not a cursor of this server"}],
    )


def _compact_format(accept: str) -> int | None:
    """The compact format to answer in: None when the Accept header does not name the compact form, else the
    newest of the formats it lists (``application/x-caresync-batch;format=3``) that this server writes; 2 when
    it lists none (devices from before format 3)."""
    if not _accepts(accept, MEDIA_TYPE):
        return None
    listed = {int(value) for params in _entries(accept, MEDIA_TYPE) if (value := params.get("format", "")).isdigit()}
    usable = listed & set(FORMATS)
    return max(usable) if usable else 2


def _accepts(accept: str, media: str) -> bool:
    """True when an Accept header names ``media`` with a quality above zero (its first entry for it decides)."""
    entries = _entries(accept, media)
    if not entries:
        return False
    quality = entries[0].get("q")
    if quality is None:
        return True
    try:
        return float(quality) > 0
    except ValueError:
        return False


def _entries(accept: str, media: str) -> list[dict[str, str]]:
    """The parameters (names lower-cased, values stripped) of each entry of an Accept header naming ``media``."""
    found = []
    for part in accept.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name.lower() == media:
            pairs = (param.partition("=") for param in params)
            found.append({key.strip().lower(): value.strip() for key, _, value in pairs})
    return found


def _pull_json(page: PullPage, now: int, offset: int, drop: list[str]) -> bytes:
    """The JSON answer, with each stored body spliced in as it is (it is stored as canonical JSON text)."""
    parts = []
    for origin, seq, hlc, eid, kind, v, actor, at, body, sig, pd in page.rows:
        # origin, eid, kind, sig and pd passed validation: hex, [A-Za-z0-9._:-], a known kind, base64 and hex,
        # nothing to escape
        signed = (f',"sig":"{sig}"' if sig is not None else "") + (f',"pd":"{pd}"' if pd is not None else "")
        parts.append(
            f'{{"v":{v},"kind":"{kind}","origin":"{origin}","seq":{seq},"hlc":{hlc},"eid":"{eid}",'
            f'"actor":{json.dumps(actor, ensure_ascii=False)},"at":{at},"body":{body}{signed}}}'
        )
    more = "true" if page.more else "false"
    dropped = f',"drop_blobs":{json.dumps(drop)}' if drop else ""
    return (
        f'{{"ops":[{",".join(parts)}],"cursor":"{_format_cursor(page.cursor)}","more":{more},'
        f'"server_time_ms":{now},"clock_offset_ms":{offset}{dropped}}}'
    ).encode()


def _json_answer(data: bytes, request: Request) -> Response:
    """A JSON answer, gzipped when the client accepts it and it is worth it."""
    if len(data) > 1024 and _accepts(request.headers.get("accept-encoding", ""), "gzip"):
        return Response(
            gzip.compress(data, compresslevel=5),
            media_type=_JSON,
            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return Response(data, media_type=_JSON, headers={"Vary": "Accept-Encoding"})


# --- errors --------------------------------------------------------------------------------------------------


def _envelope(status: int, code: ErrorCode, message: str, details: list[ErrorDetail], **headers: str) -> Response:
    body = {"error": {"code": code.value, "message": message, "details": details}}
    # ASCII-escaped: a message may quote what the request sent, which may not even be valid Unicode
    return Response(json.dumps(body), status_code=status, headers=headers or None, media_type=_JSON)


def _pydantic_details(exc: PydanticValidationError | RequestValidationError) -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        details.append({"field": ".".join(loc) or "body", "problem": str(error.get("msg", "is not valid"))})
    return details[:20]


def _invalid_message(details: list[ErrorDetail]) -> str:
    named = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:3])
    return f"The request's fields are not valid ({named}); nothing was stored."


async def _api_error(_request: Request, exc: Exception) -> Response:
    error = cast(ApiError, exc)
    return _envelope(error.status, error.code, error.message, error.details, **error.headers)


async def _database_error(_request: Request, exc: Exception) -> Response:
    log.error("database error: %s", exc)
    return _envelope(503, ErrorCode.UNAVAILABLE, str(exc), [], **_RETRY_AFTER)


async def _config_error(_request: Request, exc: Exception) -> Response:
    log.error("the server is not set up right: %s", exc)
    return _envelope(503, ErrorCode.UNAVAILABLE, f"The server is not set up right: {exc}", [], **_RETRY_AFTER)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    error = cast(RequestValidationError, exc)
    if any(e.get("type") == "json_invalid" for e in error.errors()):
        return _envelope(
            400,
            ErrorCode.INVALID_JSON,
            "The body is not valid JSON; nothing was done.",
            [{"field": "body", "problem": "not valid JSON"}],
        )
    if any(tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes) for e in error.errors()):
        return _envelope(  # a body FastAPI did not read as JSON: it came with another content type
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Send this request as {_JSON}.",
            [{"field": "Content-Type", "problem": f"must be {_JSON}"}],
        )
    details = _pydantic_details(error)
    return _envelope(422, ErrorCode.INVALID_REQUEST, _invalid_message(details), details)


async def _http_error(request: Request, exc: Exception) -> Response:
    error = cast(StarletteHTTPException, exc)
    headers = dict(error.headers or {})
    if error.status_code == 404:
        message = f"There is no {request.url.path} on this server; /openapi.json lists the endpoints."
        return _envelope(404, ErrorCode.NOT_FOUND, message, [], **headers)
    if error.status_code == 405:
        allowed = _allowed_methods(request) or next((v for k, v in headers.items() if k.lower() == "allow"), "-")
        headers = {**{k: v for k, v in headers.items() if k.lower() != "allow"}, "Allow": allowed}
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})."
        return _envelope(405, ErrorCode.METHOD_NOT_ALLOWED, message, [], **headers)
    if error.status_code == 413:
        return _envelope(413, ErrorCode.BATCH_TOO_LARGE, str(error.detail), [], **headers)
    if error.status_code == 400:  # FastAPI could not parse a JSON body (nested too deeply, for one)
        details: list[ErrorDetail] = [{"field": "body", "problem": str(error.detail)}]
        return _envelope(400, ErrorCode.INVALID_JSON, "The body is not valid JSON; nothing was done.", details)
    code = ErrorCode.INVALID_REQUEST if error.status_code < 500 else ErrorCode.INTERNAL
    return _envelope(error.status_code, code, str(error.detail), [], **headers)


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document gives this path (Starlette names only the first route's when two routes
    share a path with different methods, as ``GET`` and ``PUT /v1/grid-keys`` do)."""
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    for template, operations in paths.items():
        if re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), request.url.path):
            return ", ".join(sorted(method.upper() for method in operations if method in _HTTP_METHODS))
    return ""


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path, exc_info=exc)
    return _envelope(
        STATUS[ErrorCode.INTERNAL],
        ErrorCode.INTERNAL,
        "The server failed on this request; nothing of it was stored. Tell the station; the device keeps its "
        "work and can sync again.",
        [],
    )


class _BodyLimit:
    """Refuses request bodies over ``max_bytes``: by their Content-Length at once, or as they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"A request may carry at most {self.max_bytes} bytes; send fewer ops per batch (see /v1/info)."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = _envelope(413, ErrorCode.BATCH_TOO_LARGE, self._message(), [])
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the push and relay request bodies (their routes read them themselves: a push may be
    compact, either may be gzipped), and the 429 every route that takes a device token may answer."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (PushRequest, RelayRequest):  # the bodies the routes read themselves
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = body
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.get("responses", {})
            if operation.get("security"):  # a device token: counted against its hourly limits (see .limits)
                responses.setdefault("429", _RATE_LIMITED)
    return schema


_RATE_LIMITED = {
    "description": "The device sent more requests, bytes or ops in the last hour than the server takes "
    "(`rate_limited`); `Retry-After` says in how many seconds it may again.",
    "headers": {
        "Retry-After": {"description": "Seconds until the device may send again.", "schema": {"type": "integer"}}
    },
    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
}
