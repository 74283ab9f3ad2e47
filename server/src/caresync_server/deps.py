"""The request dependencies the routers outside :mod:`.app` share: the app's storage, its clock, and the device a
bearer token names (401 ``unauthorized`` without one)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError, ErrorCode
from .storage import Device, Storage

__all__ = ["DeviceDep", "request_device", "request_now", "request_storage"]

_bearer = HTTPBearer(auto_error=False, description="The device's token.")


def request_storage(request: Request) -> Storage:
    """The storage of the app serving ``request``."""
    return cast(Storage, request.app.state.caresync.storage)


def request_now(request: Request) -> int:
    """The app's clock, in milliseconds."""
    return int(request.app.state.caresync.now_ms())


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
    return request_storage(request).authenticate(credentials.credentials)


DeviceDep = Annotated[Device, Depends(request_device)]
