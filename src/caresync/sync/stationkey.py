"""The station's key, on the station's own device: made, registered with the sync server, rotated.

The station's key (:class:`~caresync.trust.keys.StationKey`) is made on a station device and never leaves it; the
server only ever holds its public half. Devices pin the first station key they learn and take a new one only as a
rotation signed by the old one (:func:`~caresync.trust.keys.follow_station_chain`), so a station that changes its
key hands over with a signature:

1. :func:`create_station_key`: a new key, kept in this device's replica file (it reads and seals with it);
2. :func:`register_station_key`: ``PUT /v1/station-key`` with this device's token; the server takes it from a
   station or admin device whose scope is everywhere, the first time as it is, later only as a signed rotation;
3. :func:`rotate_station_key`: a new key, signed by the current one, kept beside it (the old key still opens what
   was sealed to it), then registered. Devices switch to it at their next sync; values sealed before stay sealed
   to the old key.

The device keeps the chain of its keys' public halves (``station_key_links``) so that a registration cut off by
the network is sent again, signature included, by :func:`register_station_key`.

4. :func:`grant_readers_keys`: the readers' keys of the grids (:mod:`caresync.sync.gridkeys`), made, rotated and
   wrapped to the devices entitled to them now, without waiting for the desk's next sync.
"""

from __future__ import annotations

import json

import httpx

from caresync.errors import SyncError, TrustError
from caresync.store.devicelog import DeviceLog, HasDeviceLog, device_log_of
from caresync.sync._http import DEFAULT_CONNECT_TIMEOUT_S, Link, client_for, request_json
from caresync.sync.enrolment import current_token, enrolment
from caresync.sync.gridkeys import GridKeySync, grant_grid_keys, learn_from
from caresync.trust.keys import StationKey, StationKeyLink

__all__ = [
    "LINKS_META",
    "create_station_key",
    "grant_readers_keys",
    "register_station_key",
    "rotate_station_key",
    "station_key_links",
]

#: Where a station device keeps the public halves of its keys, oldest first, each with its handing-over signature.
LINKS_META = "station_key_links"


def station_key_links(holder: DeviceLog | HasDeviceLog) -> list[StationKeyLink]:
    """The keys this station device made, oldest first (empty on a device that made none)."""
    device = device_log_of(holder)
    return [StationKeyLink.from_json(item) for item in json.loads(device.store.get_meta(LINKS_META) or "[]")]


def create_station_key(holder: DeviceLog | HasDeviceLog) -> StationKey:
    """Makes the station's key on this device and keeps it in the replica file: from now on this device seals
    to it and reads what is sealed to it. Register it with :func:`register_station_key`.

    Raises:
        TrustError: this device already holds a station key (rotate it instead), or keeps another station's key.
    """
    device = device_log_of(holder)
    if device.station_key is not None:
        raise TrustError(
            "This device already holds the station's key: rotate it (caresync station-key rotate).",
            key="station_key.already_held",
        )
    key = StationKey.generate()
    assert key.signing_public_key is not None
    pinned = device.station_signing_key
    if pinned is not None or device.station_public_key is not None:
        raise TrustError(
            "This device keeps the station key of its server: the station's key is made once, on the station's "
            "own device; to change it, rotate it there.",
            key="station_key.server_kept",
        )
    device.install_station_key(key)
    device.store.set_meta(LINKS_META, json.dumps([StationKeyLink(key.signing_public_key).to_json()]))
    return key


def register_station_key(
    holder: DeviceLog | HasDeviceLog, *, client: httpx.Client | None = None, timeout_s: float = 30.0
) -> StationKeyLink:
    """Sends this device's newest station key to its sync server (``PUT /v1/station-key``), with the signature of
    the key before it when it is a rotation. Sending it again changes nothing.

    Raises:
        TrustError: this device made no station key. SyncError: not enrolled, or the server could not be
            reached. ServerRefusedError: the server refused (``forbidden``: not a station or admin device scoped
            everywhere; ``station_key_conflict``: another key is registered and did not sign this one).
    """
    device = device_log_of(holder)
    links = station_key_links(device)
    if not links:
        raise TrustError("This device made no station key: caresync station-key create.", key="station_key.none_made")
    creds = enrolment(device)
    token = current_token(device)
    if creds is None or token is None:
        raise SyncError(
            "This device is not enrolled with a sync server: enrol it as a station device first.",
            key="sync.not_enrolled_station",
        )
    newest = links[-1]
    body = {"signing_key": newest.signing_key.hex()}
    if newest.signature is not None:
        body["signature"] = newest.signature.hex()
    with client_for(client, timeout_s) as http:
        request_json(http, "PUT", creds.server_url + "/v1/station-key", token=token, body=body)
    return newest


def rotate_station_key(
    holder: DeviceLog | HasDeviceLog, *, client: httpx.Client | None = None, timeout_s: float = 30.0
) -> StationKey:
    """Replaces the station's key by a new one signed by the current one: kept on this device first (the old
    key stays, to open what was sealed to it), then registered with the server (:func:`register_station_key`;
    if that is cut off, run it again). Devices take the new key at their next sync; a lost or leaked old key
    then opens nothing written afterwards.

    Raises:
        TrustError: this device holds no station key, or one of an earlier release (which cannot sign).
        SyncError, ServerRefusedError: as :func:`register_station_key`; the new key is kept on this device.
    """
    device = device_log_of(holder)
    old = device.station_key
    if old is None:
        raise TrustError(
            "This device holds no station key to rotate: caresync station-key create.", key="station_key.none_to_rotate"
        )
    new = StationKey.generate()
    signature = old.sign_rotation(new)
    assert new.signing_public_key is not None
    links = station_key_links(device) or ([StationKeyLink(old.signing_public_key)] if old.signing_public_key else [])
    links.append(StationKeyLink(new.signing_public_key, signature))
    with device.store.write():
        device.install_station_key(new)
        device.store.set_meta(LINKS_META, json.dumps([link.to_json() for link in links]))
    register_station_key(device, client=client, timeout_s=timeout_s)
    return new


def grant_readers_keys(
    holder: DeviceLog | HasDeviceLog,
    *,
    client: httpx.Client | None = None,
    timeout_s: float = 30.0,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> GridKeySync:
    """``caresync station-key grant``: the desk grants the readers' keys now (made, rotated after a revocation or
    a scope change, wrapped to every entitled device, published), with its stored credentials, without a whole
    sync; every sync of the desk does the same (:func:`caresync.sync.gridkeys.sync_grid_keys`).

    Raises:
        SyncError: not enrolled. TrustError: this device holds no station signing key. ServerRefusedError: the
            server refused (``forbidden``: not a station or admin device scoped everywhere).
    """
    device = device_log_of(holder)
    creds, token = enrolment(device), current_token(device)
    if creds is None or token is None:
        raise SyncError(
            "This device is not enrolled with a sync server: enrol it as a station device first.",
            key="sync.not_enrolled_station",
        )
    station = device.station_key
    if station is None or station.signing_public_key is None:
        raise TrustError(
            "Only the station's desk, holding the station's signing key, grants readers' keys.",
            key="station_key.not_desk",
        )
    link = Link(creds.server_url, token, client, 3, 0.5, timeout_s, connect_timeout_s=connect_timeout_s)
    try:
        result = GridKeySync(grants=grant_grid_keys(device, link))
        learn_from(device, link.get("/v1/grid-keys"), result)
    finally:
        link.close()
    return result
