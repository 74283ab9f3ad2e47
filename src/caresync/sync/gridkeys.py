"""Readers' keys over the network: the station's desk makes, wraps, rotates and publishes them; every device
fetches the published keys and its own wraps at every sync (docs/security.md, "Readers' keys").

- :func:`sync_grid_keys` runs at every sync, after the push and the pull (:func:`caresync.sync.netsync.sync`),
  whatever the order of set-up: ``GET /v1/grid-keys`` answers the keys the station published (public halves,
  signed by the station key) and the wraps addressed to this device; the device checks and keeps them
  (:meth:`~caresync.store.devicelog.DeviceLog.learn_grid_keys`). On the desk (a device holding the station's
  signing key) it first grants (:func:`grant_grid_keys`).
- :func:`grant_grid_keys`: the server lists, to a station or admin device scoped everywhere, the devices entitled to
  read (grid workers, knockers and mediators, not revoked, enrolled with a device key). Each grid of theirs, with
  their role, is a *key grid*. For each, the desk makes version 1 when there is none; makes a new version when a
  device that held the current one is no longer entitled to it (revoked, re-scoped, another role) or the station
  key was rotated; wraps every version to every entitled device that lacks it; and publishes what changed
  (``PUT /v1/grid-keys``).
  It remembers its grants in its replica file (``grid_key_grants``), so a publication cut off by the network is
  sent again at the next sync. A new version's number comes after the newest the server holds; a version another
  desk published first with another key (two station PCs granting at once) is numbered again, after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from caresync.errors import ServerRefusedError, SyncError, TrustError
from caresync.store.devicelog import DeviceLog, HasDeviceLog, device_log_of
from caresync.sync._http import Link
from caresync.trust.gridkeys import READER_ROLES, GridKey, PublishedGridKey, wrap_grid_key
from caresync.trust.keys import StationKey

__all__ = [
    "GRANTS_META",
    "Grants",
    "GridKeySync",
    "grant_grid_keys",
    "grants",
    "learn_from",
    "sync_grid_keys",
]

#: Where the desk keeps the readers' keys it made: per key grid (``role:grid``), every version (secret, signature,
#: and the wrap of it made for each device), JSON.
GRANTS_META = "grid_key_grants"
#: Keys per ``PUT /v1/grid-keys`` request.
_PUT_KEYS = 100


@dataclass
class Grants:
    """What one :func:`grant_grid_keys` did."""

    made: list[tuple[str, str, int]] = field(default_factory=list)
    """New versions made, ``(role, grid, version)``: a first key, or a rotation."""
    wrapped: int = 0
    """Wraps made (one version of one key grid for one device)."""
    published: int = 0
    """Keys sent to the server (new ones, and those with new wraps)."""
    readers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """Per key grid ``(role, grid)``, the devices (replica ids) entitled to it now."""


@dataclass
class GridKeySync:
    """What the readers' keys step of a sync did."""

    learned: int = 0
    """Readers' keys this device holds now that it did not before."""
    grants: Grants | None = None
    """On the desk: what it granted (None elsewhere)."""
    problems: list[str] = field(default_factory=list)
    """What was refused (a key the station did not sign, a wrap for another key) or could not be done."""


def _state(device: DeviceLog) -> dict[str, list[dict[str, Any]]]:
    raw = device.store.get_meta(GRANTS_META)
    return dict(json.loads(raw)) if raw else {}


def _split(at: str) -> tuple[str, str]:
    role, _, grid = at.partition(":")
    return role, grid


def grants(holder: DeviceLog | HasDeviceLog) -> list[dict[str, Any]]:
    """The desk's readers' keys: per role and key grid, the newest version and the devices it is wrapped to (for
    ``caresync station-key show``; empty on a device that granted none)."""
    out: list[dict[str, Any]] = []
    for at, versions in sorted(_state(device_log_of(holder)).items()):
        role, grid = _split(at)
        newest = versions[-1]
        out.append(
            {
                "role": role,
                "grid": grid,
                "version": newest["version"],
                "readers": sorted(newest["readers"]),
                "sent": newest["sent"],
            }
        )
    return out


def _readers(answer: Mapping[str, Any]) -> dict[str, dict[str, bytes]]:
    """Per key grid (``role:grid``), the entitled devices' replica ids and Ed25519 public keys, from a
    ``GET /v1/grid-keys`` answer to the desk."""
    by_grid: dict[str, dict[str, bytes]] = {}
    try:
        for item in answer.get("readers") or []:
            role = str(item["role"])
            if role not in READER_ROLES:
                continue  # the server lists only readers; a desk checks anyway
            key = bytes.fromhex(str(item["public_key"]))
            for grid in item["grids"]:
                by_grid.setdefault(f"{role}:{grid}", {})[str(item["replica"])] = key
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncError(
            f"The sync server listed readers this device cannot read ({exc}).",
            key="grid_keys.unreadable_readers",
            fields={"reason": str(exc)},
        ) from exc
    return by_grid


def grant_grid_keys(holder: DeviceLog | HasDeviceLog, link: Link, answer: Mapping[str, Any] | None = None) -> Grants:
    """On the desk: makes, rotates, wraps and publishes the readers' keys (see the module doc). ``answer`` is a
    ``GET /v1/grid-keys`` answer already fetched (asked when None).

    Raises:
        TrustError: this device holds no station key, or one of an earlier release (which cannot sign).
        ServerRefusedError: the server refused (``forbidden``: not a station or admin device scoped everywhere).
        SyncError, ServerUnreachableError: as any request.
    """
    device = device_log_of(holder)
    station = device.station_key
    if station is None or station.signing_public_key is None:
        raise TrustError(
            "Only the station's desk, holding its signing key, grants readers' keys.", key="grid_keys.not_desk"
        )
    if answer is None:
        answer = link.get("/v1/grid-keys")
    if answer.get("readers") is None:
        raise ServerRefusedError(
            "The sync server lists readers only to a station or admin device whose scope is everywhere.",
            status=403,
            server_code="forbidden",
            key="grid_keys.readers_forbidden",
        )
    entitled = _readers(answer)
    on_server = _published(answer)
    state = _state(device)
    done = Grants(readers={_split(at): sorted(devices) for at, devices in entitled.items()})
    signer = station.signing_public_key.hex()
    for at in sorted(set(entitled) | set(state)):
        role, grid = _split(at)
        now = entitled.get(at, {})
        versions = state.setdefault(at, [])
        published_here = on_server.get(at, {})
        for version in versions:  # another desk published this version first, with its own key: take the next one
            taken = published_here.get(version["version"])
            if not version["sent"] and taken is not None and taken != _public_of(grid, role, version):
                newest = max([*published_here, *(v["version"] for v in versions)])
                version.update(_signed(GridKey(grid, role, newest + 1, bytes.fromhex(version["secret"])), station))
                version["readers"] = {}  # wrapped again below: a wrap names its version
        versions.sort(key=lambda v: int(v["version"]))
        current = versions[-1] if versions else None
        if current is None and not now:
            continue
        if current is None or set(current["readers"]) - set(now) or current["signing_key"] != signer:
            number = max([0, *published_here, *(v["version"] for v in versions)]) + 1
            key = GridKey.generate(grid, role, number)
            versions.append({"secret": key.secret.hex(), "readers": {}, "sent": False, **_signed(key, station)})
            done.made.append((role, grid, key.version))
        for version in versions:  # every version to every entitled device: it reads what was sealed before too
            key = GridKey(grid, role, version["version"], bytes.fromhex(version["secret"]))
            for replica, public in now.items():
                if replica not in version["readers"]:
                    version["readers"][replica] = wrap_grid_key(key, public)
                    version["sent"] = False
                    done.wrapped += 1
    device.set_meta(GRANTS_META, json.dumps(state))  # kept before sending: a cut-off publication is sent again
    unsent = [(at, v) for at, versions in sorted(state.items()) for v in versions if not v["sent"]]
    for start in range(0, len(unsent), _PUT_KEYS):
        part = unsent[start : start + _PUT_KEYS]
        body = {"keys": [_put_item(at, v) for at, v in part]}
        link.request("PUT", "/v1/grid-keys", json=body)
        for _, version in part:
            version["sent"] = True
        device.set_meta(GRANTS_META, json.dumps(state))
        done.published += len(part)
    if done.made:
        device.logger.info(
            "readers' keys made: %s",
            ", ".join(f"{role} {grid or 'everywhere'} v{version}" for role, grid, version in done.made),
        )
    return done


def _published(answer: Mapping[str, Any]) -> dict[str, dict[int, str]]:
    """Per key grid (``role:grid``), the versions the server holds and their public keys (hex)."""
    out: dict[str, dict[int, str]] = {}
    for item in answer.get("keys") or []:
        try:
            out.setdefault(f"{item['role']}:{item['grid']}", {})[int(item["version"])] = str(item["public_key"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SyncError(
                f"The sync server listed readers' keys this device cannot read ({exc}).",
                key="grid_keys.unreadable_keys",
                fields={"reason": str(exc)},
            ) from exc
    return out


def _public_of(grid: str, role: str, version: Mapping[str, Any]) -> str:
    return GridKey(grid, role, version["version"], bytes.fromhex(version["secret"])).public_key.hex()


def _signed(key: GridKey, station: StationKey) -> dict[str, Any]:
    """A version's number and the station's signature over it, as the desk keeps them."""
    published = key.publish(station)
    assert station.signing_public_key is not None
    return {
        "version": key.version,
        "signature": published.signature.hex(),
        "signing_key": station.signing_public_key.hex(),
    }


def _put_item(at: str, version: Mapping[str, Any]) -> dict[str, Any]:
    role, grid = _split(at)
    key = GridKey(grid, role, version["version"], bytes.fromhex(version["secret"]))
    return {
        "grid": grid,
        "role": role,
        "version": version["version"],
        "public_key": key.public_key.hex(),
        "signature": version["signature"],
        "wraps": [{"replica": replica, "wrap": wrap} for replica, wrap in sorted(version["readers"].items())],
    }


def learn_from(device: DeviceLog, answer: Mapping[str, Any], result: GridKeySync) -> None:
    """Takes the published keys and wraps of a ``GET /v1/grid-keys`` answer into ``result``."""
    try:
        published = [PublishedGridKey.from_json(item) for item in answer.get("keys") or []]
        wraps = [str(item["wrap"]) for item in answer.get("wraps") or []]
    except (TrustError, KeyError, TypeError) as exc:
        result.problems.append(f"the sync server sent readers' keys this device cannot read ({exc})")
        return
    learned, problems = device.learn_grid_keys(published, wraps)
    result.learned += learned
    result.problems.extend(problems)


def sync_grid_keys(holder: DeviceLog | HasDeviceLog, link: Link) -> GridKeySync:
    """The readers' keys step of a sync (see the module doc): on the desk, grant; on every device, fetch the
    published keys and this device's wraps. A server without readers' keys (an older one) is passed over; a
    refusal to grant is kept in the result, and the sync goes on."""
    device = device_log_of(holder)
    result = GridKeySync()
    try:  # with its device key: a device enrolled with a direct token has none on the server until it says so
        answer = link.get(f"/v1/grid-keys?public_key={device.device_key.public_key.hex()}")
    except ServerRefusedError as exc:
        if exc.status in (404, 405):  # a server of an earlier release: no readers' keys there
            return result
        raise
    if not isinstance(answer, dict):
        result.problems.append("the sync server answered GET /v1/grid-keys with something this device cannot read")
        return result
    station = device.station_key
    if station is not None and station.signing_public_key is not None and answer.get("readers") is not None:
        try:
            result.grants = grant_grid_keys(device, link, answer)
        except (ServerRefusedError, TrustError) as exc:
            result.problems.append(f"readers' keys not granted: {exc}")
        else:
            if result.grants.published:
                answer = link.get("/v1/grid-keys")
    learn_from(device, answer, result)
    for problem in result.problems:
        device.logger.warning("readers' keys: %s", problem)
    return result
