"""The Devices page: the server's devices with their last sync, role and grids; enrol one (a QR code on screen
holding the server's address and the one-time code), revoke one, change one's scope. Every action goes
through the server's admin API with this desk's own token (:mod:`caresync.admin`)."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

from starlette.responses import Response

from caresync.console.context import Page
from caresync.console.routing import route
from caresync.core.domain import Role
from caresync.errors import CaresyncError
from caresync.replica import Replica
from caresync.sync.admin import (
    ServerDevice,
    enrol_device,
    enrolment_payload,
    revoke_device,
    server_devices,
    set_device_scope,
)

__all__ = ["qr_data_uri", "stale"]

_STALE = timedelta(days=2)
_CACHE = timedelta(minutes=1)  # the Today page asks the server at most this often


def stale(page: Page, replica: Replica) -> list[ServerDevice] | None:
    """Devices (not revoked) that have not synced for two days or more; None when this desk cannot ask its
    server (not enrolled, offline, or not allowed)."""
    if replica.enrolment() is None:
        return None
    now = page.now()
    cache = page.console.cache
    fetched = cache.get("devices")
    if fetched is None or now - fetched[0] > _CACHE:
        try:
            fetched = (now, server_devices(replica, timeout_s=5.0))
        except CaresyncError:
            fetched = (now, None)
        cache["devices"] = fetched
    found = fetched[1]
    if found is None:
        return None
    return [d for d in found if not d.revoked and (d.last_sync_at is None or now - d.last_sync_at >= _STALE)]


def qr_data_uri(text: str) -> str:
    """``text`` as a QR code, an SVG image in a data: URI (the page's security policy allows no other source)."""
    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="svg", scale=6, border=2, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _page(page: Page, replica: Replica, *, issued: object = None, status: int = 200) -> Response:
    error = None
    found: list[ServerDevice] = []
    if replica.enrolment() is not None:
        try:
            found = server_devices(replica)
        except CaresyncError as exc:
            error = str(exc)
    return page.render(
        "devices.html",
        status=status,
        enrolled=replica.enrolment(),
        devices=found,
        error=error,
        issued=issued,
        roles=list(Role),
        now=page.now(),
    )


@route("/devices")
def devices(page: Page, replica: Replica) -> Response:
    """The server's devices, and the form to enrol one."""
    return _page(page, replica)


def _grids(text: str) -> list[str]:
    grids = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    return grids or [""]


@route("/devices/enrol", "POST")
def enrol(page: Page, replica: Replica) -> Response:
    """Enrols a device; the page shows its one-time code and a QR code of it, once."""
    issued = enrol_device(
        replica,
        name=page.form.get("name", "").strip(),
        role=page.form.get("role", ""),
        grids=_grids(page.form.get("grids", "")),
    )
    page.console.cache.pop("devices", None)
    payload = enrolment_payload(issued)
    page.console.log.info("a device was enrolled from the console")
    return _page(page, replica, issued={"code": issued, "payload": payload, "qr": qr_data_uri(payload)})


@route("/devices/{device}/revoke", "POST")
def revoke(page: Page, replica: Replica) -> Response:
    """Revokes a device."""
    page.console.cache.pop("devices", None)
    revoke_device(replica, str(page.params["device"]))
    page.flash(page.t("devices.done"))
    return page.redirect("/devices")


@route("/devices/{device}/scope", "POST")
def scope(page: Page, replica: Replica) -> Response:
    """Changes a device's grids and role."""
    page.console.cache.pop("devices", None)
    set_device_scope(
        replica,
        str(page.params["device"]),
        grids=_grids(page.form.get("grids", "")),
        role=page.form.get("role") or None,
    )
    page.flash(page.t("devices.done"))
    return page.redirect("/devices")
