"""The admin endpoints: the server's devices, enrolling one (a one-time code), revoking one, changing one's
scope, for the station console. Only a station or admin device's token may use them; they do what the
``caresync-server`` admin commands do (docs/protocol.md section 12 is their contract)."""

from __future__ import annotations

from typing import Annotated, cast

from caresync.core.domain import Role
from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from .blobs import sweep as sweep_blobs
from .errors import AdminError, ApiError, ErrorCode, ErrorDetail
from .protocol import AdminDevice, AdminDevices, AdminEnrolRequest, AdminEnrolResponse, AdminScopeRequest
from .storage import Device, DeviceHealth, Storage
from .trust import _device, _errors

__all__ = ["router"]

router = APIRouter()


def _storage(request: Request) -> Storage:
    return cast(Storage, request.app.state.caresync.storage)


def _admin(found: Annotated[Device, Depends(_device)]) -> Device:
    if found.role not in (Role.STATION, Role.ADMIN):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"Device {found.name} is a {found.role.value} device; only a station or admin device manages devices.",
        )
    return found


_StorageDep = Annotated[Storage, Depends(_storage)]
_AdminDep = Annotated[Device, Depends(_admin)]
_DeviceRef = Annotated[str, Path(min_length=1, max_length=100, description="The device's id or name.")]
_AUTH = (
    (401, "No token, or an unknown or expired one (`unauthorized`, `token_expired`)."),
    (403, "The device was revoked (`revoked`), or is not a station or admin device (`forbidden`)."),
)


def _shown(device: DeviceHealth) -> AdminDevice:
    return AdminDevice(
        id=device.id,
        name=device.name,
        role=device.role,
        grids=list(device.grids),
        replica=device.replica_id,
        created_at_ms=device.created_at,
        enrolled_at_ms=device.enrolled_at,
        revoked_at_ms=device.revoked_at,
        last_sync_at_ms=device.last_sync_at,
        pending=device.pending,
        refusals=device.refusals,
        scope_version=device.scope_version,
    )


def _refused(exc: AdminError) -> ApiError:
    details: list[ErrorDetail] = [{"field": "device", "problem": str(exc)}]
    return ApiError(ErrorCode.INVALID_REQUEST, str(exc), details)


@router.get(
    "/v1/admin/devices",
    response_model=AdminDevices,
    responses=_errors(*_AUTH),
    summary="The server's devices, with their last sync",
)
def devices(storage: _StorageDep, _: _AdminDep) -> AdminDevices:
    """Every device the server knows, revoked ones included, as ``caresync-server devices`` lists them."""
    return AdminDevices(devices=[_shown(d) for d in storage.devices()], server_time_ms=storage.now_ms())


@router.post(
    "/v1/admin/devices",
    response_model=AdminEnrolResponse,
    responses=_errors(*_AUTH, (422, "The name is taken or empty, the role unknown, or a grid not a grid path.")),
    summary="Enrol a device: its one-time enrolment code",
)
async def enrol(body: AdminEnrolRequest, storage: _StorageDep, _: _AdminDep) -> AdminEnrolResponse:
    """Enrols a device and answers its one-time code, once: the server keeps only its hash."""
    try:
        issued = await run_in_threadpool(storage.issue_code, body.name, body.role, body.grids)
    except AdminError as exc:
        raise _refused(exc) from None
    return AdminEnrolResponse(device=_shown(issued.device), code=issued.code, code_expires_at_ms=issued.expires_at)


@router.post(
    "/v1/admin/devices/{device}/revoke",
    response_model=AdminDevice,
    responses=_errors(*_AUTH, (422, "No such device (`invalid_request`).")),
    summary="Revoke a device",
)
def revoke(device: _DeviceRef, storage: _StorageDep, found: _AdminDep) -> AdminDevice:
    """Revokes a device (its token stops working at once); revoking it again changes nothing."""
    if device in (found.name, str(found.id)):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"Device {found.name} cannot revoke itself.",
            [{"field": "device", "problem": "a device cannot revoke itself"}],
        )
    try:
        revoked = storage.revoke(device)
    except AdminError as exc:
        raise _refused(exc) from None
    sweep_blobs(storage, storage.settings)  # a revoked device counts as synced: blobs only it held may go
    return _shown(revoked)


@router.put(
    "/v1/admin/devices/{device}/scope",
    response_model=AdminDevice,
    responses=_errors(
        *_AUTH, (422, "No such device, an unknown role, a grid not a grid path, or the requesting device itself.")
    ),
    summary="Change a device's grids (and role)",
)
def scope(device: _DeviceRef, body: AdminScopeRequest, storage: _StorageDep, found: _AdminDep) -> AdminDevice:
    """Changes the device's scope at once; on its next sync it sends its unsent work, then removes what it may
    no longer hold. A device does not change its own (it could lock the station out of managing devices)."""
    if device in (found.name, str(found.id)):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"Device {found.name} cannot change its own role or grids; use another station device, or "
            "caresync-server scope on the server.",
            [{"field": "device", "problem": "a device cannot re-scope itself"}],
        )
    try:
        return _shown(storage.set_scope(device, grids=body.grids, role=body.role))
    except AdminError as exc:
        raise _refused(exc) from None
