"""Managing the sync server's devices from a station device: list them, enrol one (a one-time code), revoke
one, change one's scope, through the server's admin API (``/v1/admin/devices``, docs/protocol.md section 12).

Only a replica enrolled as a station or admin device may: the server refuses the others
(:class:`~caresync.errors.ServerRefusedError`). Each call uses the replica's own server address and token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from caresync.core.model import ms_to_datetime
from caresync.errors import SyncError
from caresync.store.devicelog import DeviceLog, HasDeviceLog
from caresync.sync._http import client_for, request_json
from caresync.sync.enrolment import current_token, enrolment
from caresync.trust.codes import enrolment_text

__all__ = [
    "IssuedCode",
    "ServerDevice",
    "enrol_device",
    "enrolment_payload",
    "revoke_device",
    "server_devices",
    "set_device_scope",
]


@dataclass(frozen=True)
class ServerDevice:
    """A device as the server knows it: its role and grids, and what its syncs last reported."""

    id: int
    name: str
    role: str
    grids: tuple[str, ...]
    replica: str | None
    created_at: datetime
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_sync_at: datetime | None
    pending: int | None
    refusals: int
    scope_version: int

    @property
    def revoked(self) -> bool:
        """True once the device was revoked."""
        return self.revoked_at is not None


@dataclass(frozen=True)
class IssuedCode:
    """A device just enrolled, its one-time code (shown once) and the server it redeems it at."""

    device: ServerDevice
    code: str
    expires_at: datetime
    server_url: str


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else ms_to_datetime(ms)


def _device(data: Mapping[str, Any]) -> ServerDevice:
    try:
        return ServerDevice(
            id=int(data["id"]),
            name=str(data["name"]),
            role=str(data["role"]),
            grids=tuple(str(g) for g in data["grids"]),
            replica=data.get("replica"),
            created_at=ms_to_datetime(int(data["created_at_ms"])),
            enrolled_at=_when(data.get("enrolled_at_ms")),
            revoked_at=_when(data.get("revoked_at_ms")),
            last_sync_at=_when(data.get("last_sync_at_ms")),
            pending=data.get("pending"),
            refusals=int(data.get("refusals", 0)),
            scope_version=int(data.get("scope_version", 1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncError(
            f"The sync server sent a device this caresync cannot read ({exc!r})",
            key="admin.unreadable_device",
            fields={"reason": repr(exc)},
        ) from None


def _server(holder: DeviceLog | HasDeviceLog) -> tuple[str, str]:
    found = enrolment(holder)
    token = current_token(holder)
    if found is None or token is None:
        raise SyncError(
            "This device is not enrolled with a sync server: enrol it as a station device first "
            "(replica.enroll(server_url, code)).",
            key="sync.not_enrolled_admin",
        )
    return found.server_url, token


def server_devices(
    holder: DeviceLog | HasDeviceLog, *, client: httpx.Client | None = None, timeout_s: float = 30.0
) -> list[ServerDevice]:
    """Every device the server knows, revoked ones included (``timeout_s`` bounds the wait for the server).

    Raises:
        SyncError: not enrolled, or the server cannot be reached; ServerRefusedError: not a station device.
    """
    url, token = _server(holder)
    with client_for(client, timeout_s) as http:
        data = request_json(http, "GET", f"{url}/v1/admin/devices", token=token)
    return [_device(d) for d in data.get("devices", [])]


def enrol_device(
    holder: DeviceLog | HasDeviceLog, *, name: str, role: str, grids: Iterable[str], client: httpx.Client | None = None
) -> IssuedCode:
    """Enrols a device on the server; returns its one-time code (the server keeps only a hash of it).

    Raises:
        ServerRefusedError: the name is taken, the role unknown, a grid not a grid path, or not a station device.
    """
    url, token = _server(holder)
    body = {"name": name, "role": role, "grids": list(grids)}
    with client_for(client, 30.0) as http:
        data = request_json(http, "POST", f"{url}/v1/admin/devices", token=token, body=body)
    return IssuedCode(
        device=_device(data["device"]),
        code=str(data["code"]),
        expires_at=ms_to_datetime(int(data["code_expires_at_ms"])),
        server_url=url,
    )


def revoke_device(
    holder: DeviceLog | HasDeviceLog, device: str | int, *, client: httpx.Client | None = None
) -> ServerDevice:
    """Revokes a device by its id or name (its token stops working at once)."""
    url, token = _server(holder)
    with client_for(client, 30.0) as http:
        data = request_json(http, "POST", f"{url}/v1/admin/devices/{quote(str(device), safe='')}/revoke", token=token)
    return _device(data)


def set_device_scope(
    holder: DeviceLog | HasDeviceLog,
    device: str | int,
    *,
    grids: Iterable[str],
    role: str | None = None,
    client: httpx.Client | None = None,
) -> ServerDevice:
    """Changes a device's grids (and role); it applies the change on its next sync."""
    url, token = _server(holder)
    body: dict[str, Any] = {"grids": list(grids)}
    if role:
        body["role"] = role
    with client_for(client, 30.0) as http:
        data = request_json(
            http, "PUT", f"{url}/v1/admin/devices/{quote(str(device), safe='')}/scope", token=token, body=body
        )
    return _device(data)


def enrolment_payload(issued: IssuedCode) -> str:
    """What the enrolment QR code holds: :func:`caresync.trust.codes.enrolment_text` of the server's address and
    the code (``caresync:enrol?server=<url>&code=<code>``), as ``caresync-server enroll`` prints it."""
    return enrolment_text(issued.server_url, issued.code)
