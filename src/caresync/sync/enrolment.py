"""Enrolment, tokens and scope changes, on the device (docs/security.md).

* **Enrolment.** The station issues a one-time code (``caresync-server enroll``: grouped base32 with a check
  character, also shown as a QR code). :func:`enroll` exchanges it once, with the device's Ed25519 public key,
  for the device's credentials; they are kept in the replica's meta table (:data:`META_KEYS`), beside the key.
* **Tokens** expire. :func:`sync` renews the token before it expires, and after it has expired the device proves
  itself by signing a fresh server time with its device key (``POST /v1/token``): no unsent work is lost, and a
  revoked device cannot renew.
* **Scope changes.** Every sync first asks the server for the device's role and grids (``GET /v1/device``). When
  they changed, the sync pushes what the device has not sent, then purges the records the device may no longer
  hold (by the role table of :mod:`caresync.trust.scopes`) with their ops, keeps every record with work the server has
  not acknowledged, and logs what it did (:func:`scope_changes`). A wider scope pulls again from the start, so
  the device gets the history of what it may now hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from caresync.core.domain import Role
from caresync.core.model import ms_to_datetime
from caresync.errors import InvalidInputError, ServerRefusedError, SyncError, TrustError
from caresync.store.devicelog import SEALING_REQUIRED_META, STATION_SIGNING_META, DeviceLog, HasDeviceLog, device_log_of
from caresync.sync import netsync
from caresync.sync._http import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_DEADLINE_S, client_for, request_json
from caresync.sync.netsync import SERVER_KEY_META, STATION_REFUSED_META, SyncResult, learn_station_key
from caresync.trust.codes import check_code, normalize_code, token_proof
from caresync.trust.scopes import covers

__all__ = [
    "META_KEYS",
    "RENEW_BEFORE_MS",
    "Enrolment",
    "ScopeChange",
    "current_token",
    "enroll",
    "enrolment",
    "renew_token",
    "scope_changes",
    "sync",
]

#: :func:`sync` renews a token that expires within this time (or within a third of its lifetime, if shorter).
RENEW_BEFORE_MS = 7 * 86_400_000

#: The replica meta keys this module keeps the device's credentials and scope in.
META_KEYS = {
    "server_url": "the sync server this device enrolled with",
    "server_device": "the device's name on that server",
    "server_token": "its current token",
    "server_token_expires_ms": "when that token expires",
    "server_token_issued_ms": "when the server issued it (by the server's clock)",
    "server_role": "its role",
    "server_grids": "its grids (JSON list)",
    "server_scope_version": "the version of its role and grids last applied",
    "station_public_key": "the station's X25519 public key, hex (what private content is sealed to)",
    "station_signing_key": "the station's Ed25519 public key, hex: its identity, pinned on first sight",
    "station_key_refused": "the last station key offer this device refused, and why (JSON)",
    "server_public_key": "the server's Ed25519 public key, hex (what signs the answers couriers carry back)",
    "scope_changes": "the log of scope changes (JSON list)",
    "scope_purge_pending": "set while records outside the scope are kept for their unsent work",
}


# --- credentials -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """This device's credentials with its sync server, as kept in the replica (the token itself is not shown)."""

    server_url: str
    device: str
    role: Role
    grids: tuple[str, ...]
    token_expires_at: datetime
    scope_version: int
    station_public_key: bytes | None
    station_signing_key: bytes | None = None
    """The station's Ed25519 public key this device pinned (its identity)."""
    station_key_problem: str | None = None
    """Why the device refused the station key its server offers last (another key, with no rotation signed by the
    pinned one), or None."""


@dataclass(frozen=True)
class ScopeChange:
    """One change of this device's scope, and what the device did about it."""

    at: datetime
    role_before: str
    role_after: str
    grids_before: tuple[str, ...]
    grids_after: tuple[str, ...]
    purged: dict[str, int] = field(default_factory=dict)
    """Records removed from this device, by record type."""
    kept: list[str] = field(default_factory=list)
    """Records outside the new scope kept because they hold work the server has not acknowledged yet."""


def enrolment(holder: DeviceLog | HasDeviceLog) -> Enrolment | None:
    """The device's stored credentials, or None when it never enrolled with a code."""
    device = device_log_of(holder)
    meta = _meta(device)
    if "server_url" not in meta or "server_token" not in meta:
        return None
    station, signing = meta.get("station_public_key"), meta.get(STATION_SIGNING_META)
    refused = meta.get(STATION_REFUSED_META)
    return Enrolment(
        server_url=meta["server_url"],
        device=meta.get("server_device", ""),
        role=Role(meta["server_role"]),
        grids=tuple(json.loads(meta["server_grids"])),
        token_expires_at=ms_to_datetime(int(meta["server_token_expires_ms"])),
        scope_version=int(meta["server_scope_version"]),
        station_public_key=bytes.fromhex(station) if station else None,
        station_signing_key=bytes.fromhex(signing) if signing else None,
        station_key_problem=json.loads(refused)["reason"] if refused else None,
    )


def scope_changes(holder: DeviceLog | HasDeviceLog) -> list[ScopeChange]:
    """Every scope change this device applied, oldest first."""
    device = device_log_of(holder)
    raw = device.store.get_meta("scope_changes")
    out = []
    for item in json.loads(raw) if raw else []:
        out.append(
            ScopeChange(
                at=ms_to_datetime(item["at"]),
                role_before=item["role_before"],
                role_after=item["role_after"],
                grids_before=tuple(item["grids_before"]),
                grids_after=tuple(item["grids_after"]),
                purged=dict(item["purged"]),
                kept=list(item["kept"]),
            )
        )
    return out


def _meta(device: DeviceLog) -> dict[str, str]:
    return device.meta(*META_KEYS)


def _save(device: DeviceLog, answer: Mapping[str, Any], server_url: str | None = None) -> None:
    """Keeps the credentials of an enrol or token answer (one transaction)."""
    try:
        values = {
            "server_device": str(answer["device"]),
            "server_token": str(answer["token"]),
            "server_token_expires_ms": str(int(answer["token_expires_at_ms"])),
            "server_token_issued_ms": str(int(answer["server_time_ms"])),
            "server_role": Role(answer["role"]).value,
            "server_grids": json.dumps([str(g) for g in answer["grids"]], ensure_ascii=False),
        }
        server = answer.get("server_public_key")
        if server is not None and len(bytes.fromhex(str(server))) == 32:
            values[SERVER_KEY_META] = bytes.fromhex(str(server)).hex()
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncError(
            f"The sync server sent credentials this device cannot read ({exc}); try again.",
            key="enrol.unreadable_credentials",
            fields={"reason": str(exc)},
        ) from exc
    store = device.store
    with store.write():
        if server_url is not None:
            store.set_meta("server_url", server_url)
            store.set_meta("server_scope_version", str(int(answer.get("scope_version", 1))))
            store.set_meta(SEALING_REQUIRED_META, "1")  # from now on, free text leaves this device sealed or not at all
        for key, value in values.items():
            store.set_meta(key, value)
    learn_station_key(device, answer)


# --- enrolment and tokens ----------------------------------------------------------------------------------------


def enroll(
    holder: DeviceLog | HasDeviceLog, server_url: str, code: str, *, client: httpx.Client | None = None
) -> Enrolment:
    """Exchanges a one-time enrolment code for this device's credentials and keeps them in the replica.

    Raises:
        InvalidInputError: the code is mistyped (nothing was sent).
        TrustError: this replica file's id is not its device key's origin (a file from before device keys).
        ServerRefusedError: the server refused the code (used, expired, revoked) or the key.
        SyncError: the server could not be reached.
    """
    device = device_log_of(holder)
    problem = check_code(code)
    if problem is not None:
        raise InvalidInputError("Cannot enrol this device", [("code", problem)], key="enrol.cannot")
    key = device.device_key  # DeviceLog.open makes the replica's id its key's fingerprint, old files included
    base = server_url.rstrip("/")
    with client_for(client, 30.0) as http:
        answer = request_json(
            http, "POST", base + "/v1/enroll", body={"code": normalize_code(code), "public_key": key.public_key.hex()}
        )
    if answer.get("replica") != device.id:
        raise TrustError(
            f"The sync server bound this device to replica {answer.get('replica')}, not {device.id}.",
            key="enrol.wrong_replica",
            fields={"replica": str(answer.get("replica")), "device": device.id},
        )
    _save(device, answer, base)
    found = enrolment(device)
    assert found is not None
    return found


def renew_token(holder: DeviceLog | HasDeviceLog, *, client: httpx.Client | None = None) -> Enrolment:
    """Gets a new token by signing a fresh server time with the device key; works after the old one expired.

    Raises:
        SyncError: the device is not enrolled, or the server could not be reached.
        ServerRefusedError: the server refused (the device was revoked, or its key is not the enrolled one).
    """
    device = device_log_of(holder)
    creds = _require(device)
    key = device.device_key
    assert key is not None
    with client_for(client, 30.0) as http:
        info = request_json(http, "GET", creds.server_url + "/v1/info")
        server_time = info.get("server_time_ms")
        if type(server_time) is not int:
            raise SyncError(
                f"The sync server at {creds.server_url} is too old to renew tokens; ask the station.",
                key="enrol.server_too_old",
                fields={"url": creds.server_url},
            )
        proof = key.sign(token_proof(device.id, server_time))
        answer = request_json(
            http,
            "POST",
            creds.server_url + "/v1/token",
            body={"replica": device.id, "time_ms": server_time, "signature": proof.hex()},
        )
    _save(device, answer)
    found = enrolment(device)
    assert found is not None
    return found


def _require(device: DeviceLog) -> Enrolment:
    creds = enrolment(device)
    if creds is None:
        raise SyncError(
            "This device is not enrolled with a sync server: ask the station for an enrolment code, then "
            "replica.enroll(server_url, code).",
            key="sync.not_enrolled",
        )
    return creds


def sync(
    holder: DeviceLog | HasDeviceLog,
    *,
    client: httpx.Client | None = None,
    timeout_s: float = 60.0,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    deadline_s: float | None = DEFAULT_DEADLINE_S,
    **options: Any,
) -> SyncResult:
    """Syncs with the server this device enrolled with, using and renewing its stored token, and applies a
    change of its scope (see the module doc). ``options`` are those of :func:`caresync.sync.netsync.sync`.

    Raises:
        SyncError: not enrolled, or the server could not be reached; ServerRefusedError: the server refused the
            device (revoked, for one).
    """
    device = device_log_of(holder)
    creds = _require(device)
    options.update(timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, deadline_s=deadline_s)
    first_wait = timeout_s if deadline_s is None else min(timeout_s, deadline_s)  # the token and scope requests
    with client_for(client, first_wait, connect_timeout_s) as http:
        if _renewal_due(device):
            creds = renew_token(device, client=http)
        try:
            info = request_json(http, "GET", creds.server_url + "/v1/device", token=_token(device))
        except ServerRefusedError as exc:
            if exc.server_code != "token_expired":
                raise
            creds = renew_token(device, client=http)
            info = request_json(http, "GET", creds.server_url + "/v1/device", token=_token(device))
        if not device.sealing_required:  # enrolled before this rule: it holds from now on too
            device.store.set_meta(SEALING_REQUIRED_META, "1")
        station_problem = learn_station_key(device, info)
        change = _scope_of(info, creds)
        if change is not None and _widens(creds, change):
            with device.store.write():  # pull everything again: the device gets what it may now hold
                device.forget_meta(prefix="sync_cursor ")
        try:
            result = netsync.sync(
                device, creds.server_url, token=_token(device), client=http, ask_device=False, **options
            )
        except ServerRefusedError as exc:
            if exc.server_code != "token_expired":  # it expired mid-sync: renew, and carry on where it stopped
                raise
            renew_token(device, client=http)
            result = netsync.sync(
                device, creds.server_url, token=_token(device), client=http, ask_device=False, **options
            )
        if change is not None:  # pushed first; now drop what the device may no longer hold
            _apply_scope_change(device, creds, *change)
        elif device.store.get_meta("scope_purge_pending"):  # records kept last time for their unsent work
            _apply_scope_change(device, creds, creds.role, creds.grids, creds.scope_version)
    result.station_key_problem = station_problem
    return result


def _renewal_due(device: DeviceLog) -> bool:
    """True when the token expires, by this device's clock, within :data:`RENEW_BEFORE_MS` or a third of its
    lifetime, whichever is shorter (a token that has expired already is renewed when the server says so)."""
    store = device.store
    expires = int(store.get_meta("server_token_expires_ms") or 0)
    issued = int(store.get_meta("server_token_issued_ms") or expires)
    return expires - device.clock.physical_ms() < min(RENEW_BEFORE_MS, (expires - issued) // 3)


def _token(device: DeviceLog) -> str:
    token = current_token(device)
    assert token is not None
    return token


def current_token(holder: DeviceLog | HasDeviceLog) -> str | None:
    """The device token an enrolled replica holds now (renewed by :func:`sync`), for a request of its own, such
    as delivering the relay bundles a courier carries; None when it never enrolled with a code."""
    device = device_log_of(holder)
    return device.store.get_meta("server_token")


def _scope_of(info: Mapping[str, Any], creds: Enrolment) -> tuple[Role, tuple[str, ...], int] | None:
    """The device's scope from a ``GET /v1/device`` answer when it differs from the one applied last, else None."""
    try:
        role, grids, version = Role(info["role"]), tuple(str(g) for g in info["grids"]), int(info["scope_version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncError(
            f"The sync server sent a device description this device cannot read ({exc})",
            key="enrol.unreadable_device",
            fields={"reason": str(exc)},
        ) from exc
    if version == creds.scope_version and role == creds.role and grids == creds.grids:
        return None
    return role, grids, version


def _widens(creds: Enrolment, change: tuple[Role, tuple[str, ...], int]) -> bool:
    role, grids, _ = change
    return role != creds.role or not all(covers(creds.grids, g) for g in grids)


def _apply_scope_change(device: DeviceLog, creds: Enrolment, role: Role, grids: tuple[str, ...], version: int) -> None:
    purged, kept = device.purge_out_of_scope(role, grids)
    store = device.store
    if (role, grids) == (creds.role, creds.grids) and not purged and kept:
        return  # a follow-up purge that freed nothing yet: nothing to log
    raw = store.get_meta("scope_changes")
    log = json.loads(raw) if raw else []
    log.append(
        {
            "at": device.clock.physical_ms(),
            "role_before": creds.role.value,
            "role_after": role.value,
            "grids_before": list(creds.grids),
            "grids_after": list(grids),
            "purged": purged,
            "kept": kept,
        }
    )
    with store.write():
        if kept:
            store.set_meta("scope_purge_pending", "1")
        else:
            device.forget_meta(key="scope_purge_pending")
        store.set_meta("scope_changes", json.dumps(log, ensure_ascii=False))
        store.set_meta("server_role", role.value)
        store.set_meta("server_grids", json.dumps(list(grids), ensure_ascii=False))
        store.set_meta("server_scope_version", str(version))
    if purged or kept:
        device.logger.info(
            "scope changed to %s in %s: removed %s; kept %d record(s) with unsent work",
            role.value,
            ", ".join(g or "everywhere" for g in grids),
            purged,
            len(kept),
        )
