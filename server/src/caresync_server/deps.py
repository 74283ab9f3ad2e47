"""The request dependencies the routers share: the app's storage, its clock, and the device a bearer token names
(401 ``unauthorized`` without one), counted against its hourly limits (:mod:`.limits`; 429 ``rate_limited``)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError, ErrorCode
from .limits import DeviceLimits
from .storage import Device, Storage

__all__ = ["DeviceDep", "charge_ops", "charge_request", "request_device", "request_now", "request_storage"]

_bearer = HTTPBearer(auto_error=False, description="The device's token.")


def request_storage(request: Request) -> Storage:
    """The storage of the app serving ``request``."""
    return cast(Storage, request.app.state.caresync.storage)


def request_now(request: Request) -> int:
    """The app's clock, in milliseconds."""
    return int(request.app.state.caresync.now_ms())


def _limits(request: Request) -> DeviceLimits:
    return cast(DeviceLimits, request.app.state.caresync.limits)


def charge_request(request: Request, device: Device) -> None:
    """Counts the request against its device's hourly requests and bytes: its body's ``Content-Length`` (a body sent
    without one counts as ``max_body_bytes``, the most it can be).

    Raises:
        ApiError: ``rate_limited`` (429, with ``Retry-After``).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        size = int(declared)
    elif request.headers.get("transfer-encoding") is None and request.method in ("GET", "HEAD", "DELETE"):
        size = 0
    else:
        size = cast(int, request.app.state.caresync.settings.max_body_bytes)
    _limits(request).charge_request(device.id, size, request_now(request))


def charge_ops(request: Request, device: Device, count: int) -> None:
    """Counts ``count`` ops the device sends (a push's, a relayed bundle's) against its hourly ops.

    Raises:
        ApiError: ``rate_limited`` (429, with ``Retry-After``).
    """
    _limits(request).charge_ops(device.id, count, request_now(request))


def request_device(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Device:
    """The device the request's bearer token belongs to."""
    if credentials is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "This request carries no device token (Authorization: Bearer <token>).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    device = request_storage(request).authenticate(credentials.credentials)
    charge_request(request, device)
    return device


DeviceDep = Annotated[Device, Depends(request_device)]
