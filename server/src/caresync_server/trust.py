"""The trust endpoints: enrolment with a one-time code, token renewal signed with the device key, the device's
own description (its scope now), and the station's public key. docs/protocol.md section 11 is their contract;
docs/security.md says why they are built this way."""

from __future__ import annotations

from typing import Annotated, Any, cast

from caresync.core.domain import Role
from caresync.errors import InvalidInputError
from caresync.trust.codes import check_code
from caresync.trust.keys import sealing_key_of
from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .deps import charge_request
from .errors import AdminError, ApiError, ErrorCode, ErrorDetail
from .protocol import (
    CredentialsResponse,
    DeviceResponse,
    EnrollRequest,
    ErrorEnvelope,
    GridKeysRequest,
    GridKeysResponse,
    GridKeysStored,
    NumberBlockRequest,
    NumberBlockResponse,
    StationKeyRequest,
    TokenRequest,
)
from .roles import EVERYWHERE
from .storage import Credentials, Device, Storage

__all__ = ["router"]

router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="The device token.")


def _storage(request: Request) -> Storage:
    return cast(Storage, request.app.state.caresync.storage)


_StorageDep = Annotated[Storage, Depends(_storage)]


def _device(
    request: Request,
    storage: _StorageDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Device:
    if credentials is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "This request carries no device token (Authorization: Bearer <token>). Enrol the device with the code "
            "the station gives you.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    device = storage.authenticate(credentials.credentials)
    charge_request(request, device)
    return device


_COMMON = {
    400: "The body is not valid JSON (`invalid_json`).",
    422: "A field is not valid (`invalid_request`).",
    503: "The database does not answer (`unavailable`); try again later.",
}


def _errors(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    described = {**_COMMON, **dict(codes)}
    return {status: {"model": ErrorEnvelope, "description": text} for status, text in sorted(described.items())}


def _described(storage: Storage, device: Device, now: int) -> dict[str, Any]:
    station = storage.station_public_key()
    chain = storage.station_key_chain()
    return {
        "device": device.name,
        "role": device.role.value,
        "grids": list(device.grids),
        "replica": device.replica_id,
        "scope_version": device.scope_version,
        "token_expires_at_ms": device.token_expires_at,
        "station_public_key": None if station is None else station.hex(),
        "station_key_chain": [link.to_json() for link in chain],
        "server_public_key": storage.server_key().public_key.hex(),
        "server_time_ms": now,
    }


def _credentials(storage: Storage, creds: Credentials) -> CredentialsResponse:
    body = _described(storage, creds.device, storage.now_ms())
    body["token_expires_at_ms"] = creds.token_expires_at
    return CredentialsResponse(token=creds.token, **body)


@router.post(
    "/v1/enroll",
    response_model=CredentialsResponse,
    responses=_errors(
        (
            403,
            "The code is unknown, used, expired or revoked (`invalid_code`), or the key is another device's "
            "(`replica_mismatch`).",
        ),
        (422, "The code is mistyped, or a field is not valid (`invalid_request`)."),
    ),
    summary="Exchange a one-time enrolment code for the device's credentials",
)
async def enroll(body: EnrollRequest, storage: _StorageDep) -> CredentialsResponse:
    """Binds the device to the origin of its public key and answers its token, once."""
    problem = check_code(body.code)
    if problem is not None:
        details: list[ErrorDetail] = [{"field": "code", "problem": problem}]
        raise ApiError(ErrorCode.INVALID_REQUEST, f"The enrolment code is not valid: {problem}.", details)
    creds = await run_in_threadpool(storage.redeem_code, body.code, bytes.fromhex(body.public_key))
    return await run_in_threadpool(_credentials, storage, creds)


@router.post(
    "/v1/token",
    response_model=CredentialsResponse,
    responses=_errors(
        (401, "Unknown device, no device key, a bad signature, or a stale or replayed proof (`unauthorized`)."),
        (403, "The device was revoked (`revoked`)."),
    ),
    summary="Renew a device token with a signature of the device key",
)
async def token(body: TokenRequest, storage: _StorageDep) -> CredentialsResponse:
    """A new token (the old one stops working), for a device that signs a recent server time."""
    creds = await run_in_threadpool(storage.renew_token, body.replica, body.time_ms, bytes.fromhex(body.signature))
    return await run_in_threadpool(_credentials, storage, creds)


@router.get(
    "/v1/device",
    response_model=DeviceResponse,
    responses=_errors(
        (401, "No token, an unknown one (`unauthorized`) or an expired one (`token_expired`)."),
        (403, "The device was revoked (`revoked`)."),
    ),
    summary="The device this token belongs to, and its scope now",
)
def device(storage: _StorageDep, found: Annotated[Device, Depends(_device)]) -> DeviceResponse:
    """Devices ask this first on every sync, to notice when the station changed their role or grids."""
    return DeviceResponse(**_described(storage, found, storage.now_ms()))


@router.put(
    "/v1/station-key",
    status_code=204,
    responses=_errors(
        (
            403,
            "Only a station or admin device whose scope is everywhere registers or rotates the station key "
            "(`forbidden`).",
        ),
        (401, "No token, or an unknown or expired one."),
        (
            409,
            "Another station key is registered, and this one is not a rotation signed by it (`station_key_conflict`).",
        ),
    ),
    summary="Register the station's public key, or rotate it with a signature of the current one",
)
def station_key(body: StationKeyRequest, storage: _StorageDep, found: Annotated[Device, Depends(_device)]) -> None:
    """A station or admin device scoped everywhere registers the key devices seal private content to: the first
    one as it is, a later one only with the current key's signature handing over to it (devices check the same
    signature: they keep the key they learned first otherwise)."""
    _require_desk(found, "registers or rotates the station key")
    try:
        if body.signing_key is not None:
            try:
                sealing_key_of(bytes.fromhex(body.signing_key))
            except InvalidInputError:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    "signing_key is not an Ed25519 public key.",
                    [{"field": "signing_key", "problem": "not an Ed25519 public key"}],
                ) from None
            signature = None if body.signature is None else bytes.fromhex(body.signature)
            storage.set_station_key(bytes.fromhex(body.signing_key), signature)
        elif body.public_key is not None:
            legacy = bytes.fromhex(body.public_key)
            if storage.station_key_chain() or storage.station_public_key() not in (None, legacy):
                raise AdminError("A station key is registered; a bare X25519 key cannot replace it.")
            storage.set_station_public_key(legacy)
        else:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                "Give the station's signing_key (and a signature to rotate).",
                [{"field": "signing_key", "problem": "missing"}],
            )
    except AdminError as exc:
        raise ApiError(ErrorCode.STATION_KEY_CONFLICT, str(exc)) from None


def _is_desk(device: Device) -> bool:
    """True for a station or admin device whose scope is everywhere: the only ones that manage the station's keys."""
    return device.role in (Role.STATION, Role.ADMIN) and EVERYWHERE in device.grids


def _require_desk(device: Device, what: str) -> None:
    if not _is_desk(device):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"Device {device.name} is a {device.role.value} device in {', '.join(device.grids) or 'no grid'}; only a "
            f"station or admin device whose scope is everywhere {what}.",
        )


@router.get(
    "/v1/grid-keys",
    response_model=GridKeysResponse,
    responses=_errors(
        (401, "No token, or an unknown or expired one."),
        (
            403,
            "The device was revoked (`revoked`), or `public_key` names a replica that syncs as another device "
            "(`replica_mismatch`).",
        ),
        (422, "`public_key` is not the key of the replica this device syncs (`invalid_request`)."),
    ),
    summary="The readers' keys the station published, and this device's wraps",
)
def get_grid_keys(
    storage: _StorageDep,
    found: Annotated[Device, Depends(_device)],
    public_key: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9a-fA-F]{64}$",
            description="The asking device's Ed25519 public key (hex): bound to a device enrolled with a direct "
            "token, which has none, when it is the key of the replica the device syncs; ignored once one is bound.",
        ),
    ] = None,
) -> GridKeysResponse:
    """Every device asks this at every sync: the published readers' keys (public halves, signed by the station
    key: a device takes only those its pinned station key signed) and the wraps of their secrets made for this
    device. A station or admin device scoped everywhere (the station's desk) also gets the devices entitled to
    readers' keys, to wrap the keys to them and to rotate a key when one of them leaves."""
    if public_key is not None and not found.has_key:
        found = storage.bind_device_key(found, bytes.fromhex(public_key))
    keys, wraps = storage.grid_keys(found)
    readers = storage.grid_key_readers() if _is_desk(found) else None
    return GridKeysResponse.model_validate({"keys": keys, "wraps": wraps, "readers": readers})


@router.put(
    "/v1/grid-keys",
    response_model=GridKeysStored,
    responses=_errors(
        (401, "No token, or an unknown or expired one."),
        (403, "Only a station or admin device whose scope is everywhere publishes readers' keys (`forbidden`)."),
        (409, "That version of that key grid holds another key (`grid_key_conflict`)."),
        (
            422,
            "A field is not valid, a grid is not a grid path, no station key is registered, or a new key is not "
            "signed by the registered station key (`invalid_request`).",
        ),
    ),
    summary="Publish readers' keys, with their secrets wrapped to the devices entitled to them",
)
def put_grid_keys(
    body: GridKeysRequest, storage: _StorageDep, found: Annotated[Device, Depends(_device)]
) -> GridKeysStored:
    """The station's desk publishes readers' keys: each key new to the server is signed by the registered station
    key; wraps are added, or replace the wrap of the same key for the same device. The server holds public halves
    and wraps only, never a readers' key."""
    _require_desk(found, "publishes readers' keys")
    keys, wraps = storage.publish_grid_keys([item.model_dump() for item in body.keys])
    return GridKeysStored(keys=keys, wraps=wraps)


@router.post(
    "/v1/numbers",
    response_model=NumberBlockResponse,
    responses=_errors((401, "No token, or an unknown or expired one."), (403, "The device was revoked (`revoked`).")),
    summary="Reserve a block of ticket numbers for this device",
)
def numbers(
    body: NumberBlockRequest, storage: _StorageDep, found: Annotated[Device, Depends(_device)]
) -> NumberBlockResponse:
    """Short ticket numbers (from 1000) that this device alone hands out, even offline; a device asks for a new
    block when its blocks run low."""
    start, count = storage.reserve_numbers(body.count)
    return NumberBlockResponse(start=start, count=count)
