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
import secrets
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from caresync.core.domain import EntityType, Role
from caresync.core.model import ms_to_datetime
from caresync.errors import InvalidInputError, ServerRefusedError, SyncError, TrustError
from caresync.sync.netsync import SERVER_KEY_META, refusal
from caresync.trust.scopes import RecordScope, covers, may_read

if TYPE_CHECKING:
    from caresync.replica import Replica
    from caresync.sync.netsync import SyncResult

__all__ = [
    "CODE_ALPHABET",
    "META_KEYS",
    "PROOF_WINDOW_MS",
    "RENEW_BEFORE_MS",
    "Enrolment",
    "ScopeChange",
    "check_code",
    "current_token",
    "enroll",
    "enrolment",
    "format_code",
    "new_code",
    "normalize_code",
    "purge_out_of_scope",
    "renew_token",
    "scope_changes",
    "sync",
    "token_proof",
]

#: Crockford's base32: no I, L, O or U, so a code read aloud or typed from paper has no look-alikes.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_RANDOM = 15  # characters of randomness (75 bits), then one check character
_LOOK_ALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
#: A signed token request must carry a server time at most this far from the server's clock.
PROOF_WINDOW_MS = 10 * 60_000
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
    "server_public_key": "the server's Ed25519 public key, hex (what signs the answers couriers carry back)",
    "scope_changes": "the log of scope changes (JSON list)",
    "scope_purge_pending": "set while records outside the scope are kept for their unsent work",
}


# --- codes ---------------------------------------------------------------------------------------------------


def _luhn(values: list[int]) -> int:
    """Luhn mod 32: the check value that catches any one mistyped character, and every swap of two neighbours
    except 0 with Z."""
    n = len(CODE_ALPHABET)
    total, factor = 0, 2
    for value in reversed(values):
        addend = factor * value
        total += addend // n + addend % n
        factor = 1 if factor == 2 else 2
    return (n - total % n) % n


def format_code(raw: str) -> str:
    """A normalized code grouped by four, as printed: ``K7QM-3XHD-9PRA-B2TW``."""
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def new_code() -> str:
    """A fresh one-time enrolment code, grouped for reading: 15 random base32 characters and a check character."""
    values = [secrets.randbelow(len(CODE_ALPHABET)) for _ in range(_CODE_RANDOM)]
    values.append(_luhn(values))
    return format_code("".join(CODE_ALPHABET[v] for v in values))


def normalize_code(code: str) -> str:
    """A code as typed (any case, spaces or dashes, I/L for 1 and O for 0) in its canonical form."""
    return "".join(ch for ch in code.upper() if ch not in " -\t").translate(_LOOK_ALIKES)


def check_code(code: str) -> str | None:
    """What is wrong with a typed code (too short, a character that is not in codes, a typo), or None."""
    raw = normalize_code(code)
    if len(raw) != _CODE_RANDOM + 1:
        return f"an enrolment code has {_CODE_RANDOM + 1} characters, this one has {len(raw)}"
    bad = sorted({ch for ch in raw if ch not in CODE_ALPHABET})
    if bad:
        return f"{', '.join(bad)} cannot appear in an enrolment code"
    values = [CODE_ALPHABET.index(ch) for ch in raw]
    if _luhn(values[:-1]) != values[-1]:
        return "a character is mistyped (the check character does not match); compare it with the printed code"
    return None


def token_proof(replica: str, time_ms: int) -> bytes:
    """What a device signs to get a new token: its replica id and a recent server time."""
    return f"caresync token v1\n{replica}\n{time_ms}".encode()


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


def enrolment(replica: Replica) -> Enrolment | None:
    """The device's stored credentials, or None when it never enrolled with a code."""
    meta = _meta(replica)
    if "server_url" not in meta or "server_token" not in meta:
        return None
    station = meta.get("station_public_key")
    return Enrolment(
        server_url=meta["server_url"],
        device=meta.get("server_device", ""),
        role=Role(meta["server_role"]),
        grids=tuple(json.loads(meta["server_grids"])),
        token_expires_at=ms_to_datetime(int(meta["server_token_expires_ms"])),
        scope_version=int(meta["server_scope_version"]),
        station_public_key=bytes.fromhex(station) if station else None,
    )


def scope_changes(replica: Replica) -> list[ScopeChange]:
    """Every scope change this device applied, oldest first."""
    raw = replica._store.get_meta("scope_changes")
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


def _meta(replica: Replica) -> dict[str, str]:
    marks = ",".join("?" * len(META_KEYS))
    return {k: v for k, v in replica._store.sql(f"SELECT key, value FROM meta WHERE key IN ({marks})", list(META_KEYS))}


def _save(replica: Replica, answer: Mapping[str, Any], server_url: str | None = None) -> None:
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
        station = answer.get("station_public_key")
        if station is not None:
            values["station_public_key"] = bytes.fromhex(str(station)).hex()
        server = answer.get("server_public_key")
        if server is not None and len(bytes.fromhex(str(server))) == 32:
            values[SERVER_KEY_META] = bytes.fromhex(str(server)).hex()
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncError(f"The sync server sent credentials this device cannot read ({exc}); try again.") from exc
    store = replica._store
    with store.write():
        if server_url is not None:
            store.set_meta("server_url", server_url)
            store.set_meta("server_scope_version", str(int(answer.get("scope_version", 1))))
        for key, value in values.items():
            store.set_meta(key, value)
    if "station_public_key" in values:  # from the next change on, private fields are sealed to it
        replica._station_public_key = bytes.fromhex(values["station_public_key"])


# --- HTTP --------------------------------------------------------------------------------------------------------


@contextmanager
def _http(client: httpx.Client | None, timeout_s: float) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout_s) as own:
        yield own


def _call(http: httpx.Client, method: str, url: str, *, token: str | None = None, body: Any = None) -> dict[str, Any]:
    """One request, its error envelope turned into our errors."""
    headers = {"User-Agent": "caresync"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = http.request(method, url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        base = url.rsplit("/v1/", 1)[0]
        raise SyncError(
            f"Cannot reach the sync server at {base} ({type(exc).__name__}: {exc}). Nothing changed on this "
            "device; try again when the network is back."
        ) from exc
    if response.is_success:
        try:
            data = response.json()
        except ValueError as exc:
            raise SyncError(f"The sync server sent an answer this device cannot read ({exc})") from exc
        if not isinstance(data, dict):
            raise SyncError("The sync server sent an answer this device cannot read (not a JSON object)")
        return data
    raise refusal(response, url.rsplit("/v1/", 1)[0])


# --- enrolment and tokens ----------------------------------------------------------------------------------------


def enroll(replica: Replica, server_url: str, code: str, *, client: httpx.Client | None = None) -> Enrolment:
    """Exchanges a one-time enrolment code for this device's credentials and keeps them in the replica.

    Raises:
        InvalidInputError: the code is mistyped (nothing was sent).
        TrustError: this replica file's id is not its device key's origin (a file from before device keys).
        ServerRefusedError: the server refused the code (used, expired, revoked) or the key.
        SyncError: the server could not be reached.
    """
    problem = check_code(code)
    if problem is not None:
        raise InvalidInputError("Cannot enrol this device", [("code", problem)])
    key = replica.device_key  # Replica.open makes the replica's id its key's fingerprint, old files included
    base = server_url.rstrip("/")
    with _http(client, 30.0) as http:
        answer = _call(
            http, "POST", base + "/v1/enroll", body={"code": normalize_code(code), "public_key": key.public_key.hex()}
        )
    if answer.get("replica") != replica.id:
        raise TrustError(f"The sync server bound this device to replica {answer.get('replica')}, not {replica.id}.")
    _save(replica, answer, base)
    found = enrolment(replica)
    assert found is not None
    return found


def renew_token(replica: Replica, *, client: httpx.Client | None = None) -> Enrolment:
    """Gets a new token by signing a fresh server time with the device key; works after the old one expired.

    Raises:
        SyncError: the device is not enrolled, or the server could not be reached.
        ServerRefusedError: the server refused (the device was revoked, or its key is not the enrolled one).
    """
    creds = _require(replica)
    key = replica.device_key
    assert key is not None
    with _http(client, 30.0) as http:
        info = _call(http, "GET", creds.server_url + "/v1/info")
        server_time = info.get("server_time_ms")
        if type(server_time) is not int:
            raise SyncError(f"The sync server at {creds.server_url} is too old to renew tokens; ask the station.")
        proof = key.sign(token_proof(replica.id, server_time))
        answer = _call(
            http,
            "POST",
            creds.server_url + "/v1/token",
            body={"replica": replica.id, "time_ms": server_time, "signature": proof.hex()},
        )
    _save(replica, answer)
    found = enrolment(replica)
    assert found is not None
    return found


def _require(replica: Replica) -> Enrolment:
    creds = enrolment(replica)
    if creds is None:
        raise SyncError(
            "This device is not enrolled with a sync server: ask the station for an enrolment code, then "
            "replica.enroll(server_url, code)."
        )
    return creds


def sync(
    replica: Replica,
    *,
    client: httpx.Client | None = None,
    timeout_s: float = 60.0,
    **options: Any,
) -> SyncResult:
    """Syncs with the server this device enrolled with, using and renewing its stored token, and applies a
    change of its scope (see the module doc). ``options`` are those of :func:`caresync.sync.netsync.sync`.

    Raises:
        SyncError: not enrolled, or the server could not be reached; ServerRefusedError: the server refused the
            device (revoked, for one).
    """
    from caresync.sync import netsync

    creds = _require(replica)
    with _http(client, timeout_s) as http:
        if _renewal_due(replica):
            creds = renew_token(replica, client=http)
        try:
            info = _call(http, "GET", creds.server_url + "/v1/device", token=_token(replica))
        except ServerRefusedError as exc:
            if exc.server_code != "token_expired":
                raise
            creds = renew_token(replica, client=http)
            info = _call(http, "GET", creds.server_url + "/v1/device", token=_token(replica))
        change = _scope_of(info, creds)
        if change is not None and _widens(creds, change):
            with replica._store.write():  # pull everything again: the device gets what it may now hold
                replica._store.sql("DELETE FROM meta WHERE key LIKE 'sync_cursor %'")
        try:
            result = netsync.sync(replica, creds.server_url, token=_token(replica), client=http, **options)
        except ServerRefusedError as exc:
            if exc.server_code != "token_expired":  # it expired mid-sync: renew, and carry on where it stopped
                raise
            renew_token(replica, client=http)
            result = netsync.sync(replica, creds.server_url, token=_token(replica), client=http, **options)
        if change is not None:  # pushed first; now drop what the device may no longer hold
            _apply_scope_change(replica, creds, *change)
        elif replica._store.get_meta("scope_purge_pending"):  # records kept last time for their unsent work
            _apply_scope_change(replica, creds, creds.role, creds.grids, creds.scope_version)
    return result


def _renewal_due(replica: Replica) -> bool:
    """True when the token expires, by this device's clock, within :data:`RENEW_BEFORE_MS` or a third of its
    lifetime, whichever is shorter (a token that has expired already is renewed when the server says so)."""
    store = replica._store
    expires = int(store.get_meta("server_token_expires_ms") or 0)
    issued = int(store.get_meta("server_token_issued_ms") or expires)
    return expires - replica.clock.physical_ms() < min(RENEW_BEFORE_MS, (expires - issued) // 3)


def _token(replica: Replica) -> str:
    token = current_token(replica)
    assert token is not None
    return token


def current_token(replica: Replica) -> str | None:
    """The device token an enrolled replica holds now (renewed by :func:`sync`), for a request of its own, such
    as delivering the relay bundles a courier carries; None when it never enrolled with a code."""
    return replica._store.get_meta("server_token")


def _scope_of(info: Mapping[str, Any], creds: Enrolment) -> tuple[Role, tuple[str, ...], int] | None:
    """The device's scope from a ``GET /v1/device`` answer when it differs from the one applied last, else None."""
    try:
        role, grids, version = Role(info["role"]), tuple(str(g) for g in info["grids"]), int(info["scope_version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SyncError(f"The sync server sent a device description this device cannot read ({exc})") from exc
    if version == creds.scope_version and role == creds.role and grids == creds.grids:
        return None
    return role, grids, version


def _widens(creds: Enrolment, change: tuple[Role, tuple[str, ...], int]) -> bool:
    role, grids, _ = change
    return role != creds.role or not all(covers(creds.grids, g) for g in grids)


def _apply_scope_change(replica: Replica, creds: Enrolment, role: Role, grids: tuple[str, ...], version: int) -> None:
    purged, kept = purge_out_of_scope(replica, role, grids)
    store = replica._store
    if (role, grids) == (creds.role, creds.grids) and not purged and kept:
        return  # a follow-up purge that freed nothing yet: nothing to log
    raw = store.get_meta("scope_changes")
    log = json.loads(raw) if raw else []
    log.append(
        {
            "at": replica.clock.physical_ms(),
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
            store.sql("DELETE FROM meta WHERE key = 'scope_purge_pending'")
        store.set_meta("scope_changes", json.dumps(log, ensure_ascii=False))
        store.set_meta("server_role", role.value)
        store.set_meta("server_grids", json.dumps(list(grids), ensure_ascii=False))
        store.set_meta("server_scope_version", str(version))
    if purged or kept:
        replica.log.info(
            "scope changed to %s in %s: removed %s; kept %d record(s) with unsent work",
            role.value,
            ", ".join(g or "everywhere" for g in grids),
            purged,
            len(kept),
        )


# --- purging -----------------------------------------------------------------------------------------------------

_COLUMNS = {
    "resident": "id, grid, NULL, NULL",
    "worker": "id, NULL, NULL, NULL",
    "ticket": "id, grid, kind, NULL",
    "visit": "id, NULL, NULL, resident_id",
    "mailbox": "id, grid, NULL, NULL",
    "parcel": "id, grid, NULL, NULL",
}


def purge_out_of_scope(replica: Replica, role: Role | str, grids: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """Removes the records a device of ``role`` in ``grids`` may not hold, with their ops, in one transaction.

    A record with an op the server has not acknowledged (unsent, waiting, refused) is kept: it is someone's work.
    The replica's own op counter is left as it is, so its next op never reuses an old identity.

    Returns:
        ``(removed records by type, ids of the records kept for their unsent work)``.
    """
    from caresync.store.schema import ENTITY_TABLES

    store = replica._store
    store.settle()
    residents = {rid: grid for rid, grid in store.sql("SELECT id, grid FROM residents")}
    out: dict[str, list[str]] = defaultdict(list)
    for entity in EntityType:
        table = ENTITY_TABLES[entity.value].__tablename__
        for rid, grid, kind, resident in store.sql(f"SELECT {_COLUMNS[entity.value]} FROM {table}"):
            if entity is EntityType.VISIT:
                grid = residents.get(resident)
            visible = (grid is not None or entity.value == "worker") and may_read(
                role, grids, RecordScope(entity.value, grid, kind)
            )
            if not visible:
                out[entity.value].append(rid)
    unsent = {eid for (eid,) in store.sql("SELECT DISTINCT eid FROM ops WHERE sent != 1")}
    kept = sorted(eid for eids in out.values() for eid in eids if eid in unsent)
    purged: dict[str, int] = {}
    with store.write():
        for entity_name, eids in out.items():
            gone = [eid for eid in eids if eid not in unsent]
            if not gone:
                continue
            purged[entity_name] = len(gone)
            table = ENTITY_TABLES[entity_name].__tablename__
            for start in range(0, len(gone), 500):
                part = gone[start : start + 500]
                marks = ",".join("?" * len(part))
                removed = store.sql(
                    f"SELECT origin, COUNT(*), MIN(seq) FROM ops WHERE eid IN ({marks}) GROUP BY origin", part
                )
                store.sql(f"DELETE FROM ops WHERE eid IN ({marks})", part)
                store.sql(f"DELETE FROM {table} WHERE id IN ({marks})", part)
                store.sql(f"DELETE FROM pending WHERE entity = ? AND id IN ({marks})", [entity_name, *part])
                for origin, count, lowest in removed:
                    if origin == replica.id:  # keep contig: the next local op must follow the last one ever made
                        store.sql("UPDATE origins SET held = held - ? WHERE origin = ?", (count, origin))
                    else:
                        store.sql(
                            "UPDATE origins SET held = held - ?, contig = MIN(contig, ?) WHERE origin = ?",
                            (count, lowest - 1, origin),
                        )
    return purged, kept
