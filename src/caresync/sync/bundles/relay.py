"""Relay bundles: store-carry-forward sync for a device with no network (DESIGN.md, section 4).

1. The offline device writes its unsent ops as one **bundle** file (:func:`write_bundle`), signed by its
   device key over the whole bundle. Fields that must be sealed are sealed at capture, so a courier who
   carries the bundle reads no private content.
2. A courier's handheld imports it into its **bag** (:class:`Bag`), checking the signature and the time to
   live, and delivers it on its next sync (:func:`deliver`, ``POST /v1/relay``). The server checks the
   signature against the origin's public key, admits the ops as that device's push, and answers with the acks
   and the ops of the device's scope after the cursor the bundle carries, **sealed to the device**: the
   device's Ed25519 key converted to X25519, so the courier cannot read the answer either.
3. The courier writes the answers for that device to a file (:meth:`Bag.export_answers`), and the device
   imports it (:func:`import_answers`).

Bundles and answers are idempotent and order-free: a duplicated, stale or replayed one changes nothing, since
ops are identified by ``(origin, seq)``, acks only ever mark ops stored, and the relay cursor only moves
forward. Each carries an expiry. Every hand-over is recorded (created, carried, delivered, answer handed to the
device, answer imported): the courier's bag keeps its side, the server keeps the events (``GET /v1/relays``).

A bundle file is JSON::

    {"caresync_bundle": 1, "type": "ops", "id": "…", "origin": "<replica id>", "public_key": "<hex>",
     "created_ms": …, "expires_ms": …, "cursor": "<relay cursor>", "receipts": [...], "ops": [...],
     "sig": "<hex Ed25519 signature over the canonical JSON of everything else>"}

An answer file holds ``{"caresync_bundle": 1, "type": "answers", "answers": [{"id", "for", "bundle",
"created_ms", "expires_ms", "sealed"}...]}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import nacl.exceptions
import nacl.public
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519

from caresync.core.ops import paused_gc
from caresync.errors import BundleError, CaresyncError, InvalidInputError
from caresync.sync.netsync import SERVER_KEY_META
from caresync.trust.keys import DeviceKey, origin_of, verify_signature

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_TTL_HOURS",
    "MAX_BUNDLE_OPS",
    "RELAY_CURSOR_META",
    "AnswerImport",
    "Bag",
    "CarriedBundle",
    "Delivery",
    "canonical",
    "check_bundle",
    "deliver",
    "import_answers",
    "make_bundle",
    "open_sealed",
    "read_file",
    "seal_answer",
    "write_bundle",
]

#: The bundle file format this caresync writes and reads.
BUNDLE_FORMAT = 1
#: How long a bundle or an answer stays usable by default: a week of a courier's rounds.
DEFAULT_TTL_HOURS = 7 * 24
#: At most this many ops in one bundle; the rest go in the next one (after the answer comes back).
MAX_BUNDLE_OPS = 2000
#: Where a device keeps the server cursor of the answers relayed to it.
RELAY_CURSOR_META = "relay_cursor"
#: The key of the server's signature inside an answer's sealed payload.
SERVER_SIG = "server_sig"
_RECEIPTS_META = "relay_receipts"
_HOUR = 3_600_000
_MAX_FILE_BYTES = 64 * 1024 * 1024


def canonical(value: Any) -> bytes:
    """The bytes a signature covers: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _cursor_key(cursor: str) -> tuple[int, int]:
    ms, _, n = cursor.partition(".")
    try:
        return (int(ms), int(n or 0)) if cursor else (0, 0)
    except ValueError:
        return (0, 0)


# --- the offline device -----------------------------------------------------------------------------------


def make_bundle(replica: Replica, *, ttl_hours: int = DEFAULT_TTL_HOURS, now_ms: int | None = None) -> dict[str, Any]:
    """A signed bundle of ``replica``'s unsent ops (up to :data:`MAX_BUNDLE_OPS`), with its relay cursor and
    the receipts of the answers it imported. Changes nothing on the replica."""
    if not 1 <= ttl_hours <= 24 * 90:
        raise InvalidInputError("Cannot make a bundle", [("ttl_hours", "must be 1 to 2160 (90 days)")])
    now = replica.clock.physical_ms() if now_ms is None else now_ms
    store = replica._store
    bundle: dict[str, Any] = {
        "caresync_bundle": BUNDLE_FORMAT,
        "type": "ops",
        "id": secrets.token_hex(8),
        "origin": replica.id,
        "public_key": replica.device_key.public_key.hex(),
        "created_ms": now,
        "expires_ms": now + ttl_hours * _HOUR,
        "cursor": store.get_meta(RELAY_CURSOR_META) or "",
        "receipts": json.loads(store.get_meta(_RECEIPTS_META) or "[]"),
        "ops": store.unsent(None, limit=MAX_BUNDLE_OPS, own=replica.id),
    }
    bundle["sig"] = replica.device_key.sign(canonical(bundle)).hex()
    return bundle


def write_bundle(
    replica: Replica, path: str | Path, *, ttl_hours: int = DEFAULT_TTL_HOURS, now_ms: int | None = None
) -> dict[str, Any]:
    """Writes :func:`make_bundle` to ``path`` (atomically: a cut-off write leaves no half file); returns it."""
    bundle = make_bundle(replica, ttl_hours=ttl_hours, now_ms=now_ms)
    _write_json(Path(path), bundle)
    return bundle


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(canonical(value))
        os.replace(tmp, path)
    except OSError as exc:
        raise BundleError(f"Cannot write {path}: {exc.strerror or exc}. Check the folder and free space.") from exc


def read_file(path: str | Path) -> dict[str, Any]:
    """A bundle or answers file, parsed and checked for its format (not yet for its signature).

    Raises:
        BundleError: the file is missing, too big, not JSON, or not a caresync bundle of a known format.
    """
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_FILE_BYTES:
            raise BundleError(f"{p} is larger than any caresync bundle; it is not one.")
        data = json.loads(p.read_bytes())
    except OSError as exc:
        raise BundleError(f"Cannot read {p}: {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise BundleError(f"{p} is not a caresync bundle (not JSON: the file is damaged or of another kind).") from exc
    if not isinstance(data, dict) or "caresync_bundle" not in data:
        raise BundleError(f"{p} is not a caresync bundle.")
    if data["caresync_bundle"] != BUNDLE_FORMAT:
        raise BundleError(f"{p} is a bundle of format {data['caresync_bundle']!r}; this caresync reads format 1.")
    if data.get("type") not in ("ops", "answers"):
        raise BundleError(f"{p} is a caresync file of unknown type {data.get('type')!r}.")
    return data


def check_bundle(data: Mapping[str, Any], *, now_ms: int | None = None) -> dict[str, Any]:
    """Checks an ops bundle: its fields, that its public key is its origin's, and its signature; and, when
    ``now_ms`` is given, that it has not expired. Returns it as a dict.

    Raises:
        BundleError: damaged, forged (signature or key do not match the origin), or expired.
    """
    fields = {
        "id": str,
        "origin": str,
        "public_key": str,
        "created_ms": int,
        "expires_ms": int,
        "cursor": str,
        "receipts": list,
        "ops": list,
        "sig": str,
    }
    bad = [name for name, kind in fields.items() if not isinstance(data.get(name), kind)]
    if data.get("type") != "ops" or bad:
        raise BundleError(f"This bundle is damaged (fields {', '.join(bad) or 'type'} missing or wrong).")
    bundle = dict(data)
    try:
        public_key = bytes.fromhex(bundle["public_key"])
        signature = bytes.fromhex(bundle.pop("sig"))
        owner = origin_of(public_key)
    except (ValueError, InvalidInputError):
        raise BundleError(
            f"Bundle {data['id']} is damaged: its key or signature is not hex of the right size."
        ) from None
    if owner != bundle["origin"]:
        raise BundleError(
            f"Bundle {data['id']} claims to come from device {bundle['origin']} but carries the key of device "
            f"{owner}: it was forged. Do not carry it."
        )
    if not verify_signature(public_key, canonical(bundle), signature):
        raise BundleError(
            f"Bundle {data['id']} from device {bundle['origin']} does not match its signature: it was altered after "
            "the device wrote it. Do not carry it; ask for a new one."
        )
    if now_ms is not None and bundle["expires_ms"] < now_ms:
        raise BundleError(
            f"Bundle {data['id']} from device {bundle['origin']} expired; nothing in it was lost (its ops stay on "
            "the device): ask the device for a new bundle."
        )
    bundle["sig"] = signature.hex()
    return bundle


# --- the server's answer, sealed to the device ------------------------------------------------------------


def seal_answer(
    device_public_key: bytes,
    payload: Mapping[str, Any],
    *,
    server_key: DeviceKey,
    origin: str,
    bundle_id: str,
    now_ms: int,
    ttl_hours: int = DEFAULT_TTL_HOURS,
) -> dict[str, Any]:
    """The server's answer to a bundle, signed by the server's key (so a carrier cannot forge acknowledgements,
    which would make the device stop sending work the server never got) and sealed to the device's key
    (Ed25519 converted to X25519, so the carrier cannot read it)."""
    signed = {**payload, SERVER_SIG: base64.b64encode(server_key.sign(canonical(payload))).decode("ascii")}
    x25519 = crypto_sign_ed25519_pk_to_curve25519(device_public_key)
    box = nacl.public.SealedBox(nacl.public.PublicKey(x25519))
    sealed = base64.b64encode(box.encrypt(canonical(signed))).decode("ascii")
    return {
        "id": secrets.token_hex(8),
        "for": origin,
        "bundle": bundle_id,
        "created_ms": now_ms,
        "expires_ms": now_ms + ttl_hours * _HOUR,
        "sealed": sealed,
    }


def open_sealed(key: DeviceKey, sealed: str) -> Any:
    """The payload of an answer sealed to ``key``'s device. Raises BundleError when it is not for this key."""
    secret = crypto_sign_ed25519_sk_to_curve25519(key.seed + key.public_key)
    box = nacl.public.SealedBox(nacl.public.PrivateKey(secret))
    try:
        return json.loads(box.decrypt(base64.b64decode(sealed)))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise BundleError(
            "This answer cannot be opened with this device's key: it is for another device, or damaged."
        ) from None


def _signed_by_server(payload: dict[str, Any], server_key: bytes | None, answer_id: str) -> bool:
    """Takes the server's signature out of an opened answer; True when it is the signature of the server this
    device knows. An answer signed by another key, or altered, is refused; with no server key known (a device
    that never met the server directly), the answer's ops are applied (each is signed by its own device) but its
    acknowledgements and refusals are not believed, so the device keeps sending its work until it can tell."""
    raw = payload.pop(SERVER_SIG, None)
    if server_key is None:
        return False
    try:
        signature = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not verify_signature(server_key, canonical(payload), signature):
        raise BundleError(
            f"Answer {answer_id} is not signed by the sync server this device knows: it was altered or forged on "
            "the way. Nothing of it was applied; your unsent work stays queued."
        )
    return True


@dataclass(frozen=True)
class AnswerImport:
    """What importing an answers file did on the device."""

    answers: int
    """Answers for this device that were applied (stale ones included: they change nothing)."""
    received: int
    """New ops applied."""
    acked: int
    """Ops of this device newly marked as stored by the server."""
    refused: int
    """Ops the server refused (kept on the device with the reason: :meth:`Replica.refusals`)."""
    skipped: list[str]
    """Why answers in the file were not used (for another device, expired)."""
    more: bool
    """The server had more for this device than one answer carries: export another bundle."""


def import_answers(replica: Replica, path: str | Path, *, now_ms: int | None = None) -> AnswerImport:
    """Imports a file of answers a courier carried back: applies the server's ops, marks acked ops as stored,
    records refusals, moves the relay cursor forward. Idempotent: importing a file again changes nothing.

    Raises:
        BundleError: the file is not an answers file, or holds no answer for this device.
    """
    data = read_file(path)
    if data["type"] != "answers" or not isinstance(data.get("answers"), list):
        raise BundleError(
            f"{path} is a bundle of ops for the server, not answers for a device: give it to a courier to carry."
        )
    now = replica.clock.physical_ms() if now_ms is None else now_ms
    store = replica._store
    known = store.get_meta(SERVER_KEY_META)
    server_key = bytes.fromhex(known) if known else None
    applied = answers = acked = refused = 0
    more = False
    skipped: list[str] = []
    mine = [a for a in data["answers"] if isinstance(a, dict) and a.get("for") == replica.id]
    skipped += [f"answer {a.get('id')} is for device {a.get('for')}" for a in data["answers"] if a not in mine]
    for answer in mine:
        if not isinstance(answer.get("expires_ms"), int) or answer["expires_ms"] < now:
            skipped.append(f"answer {answer.get('id')} expired")
            continue
        payload = open_sealed(replica.device_key, str(answer.get("sealed", "")))
        trusted = _signed_by_server(payload, server_key, str(answer.get("id")))
        try:
            ops = payload["ops"]
            cursor = str(payload["cursor"])
            acks = [(str(o), int(lo), int(hi)) for o, lo, hi in payload["acked"]]
            refusals = [(str(r["op"]), str(r["code"]), str(r["reason"])) for r in payload["refused"]]
            answer_more = bool(payload["more"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"Answer {answer.get('id')} opened but is damaged ({exc}); nothing of it was applied."
            ) from exc
        current = store.get_meta(RELAY_CURSOR_META) or ""
        newest = max(current, cursor, key=_cursor_key)
        with paused_gc(), store.write():
            result = replica._apply(ops, defer_rows=True, from_server=True, meta={RELAY_CURSOR_META: newest})
            if not trusted:  # only the server's own word may stop this device from sending its work again
                acks, refusals = [], []
            acked += store.mark_sent(acks)
            rows = []
            for text, code, reason in refusals:
                origin, _, seq = text.partition(":")
                if origin == replica.id and seq.isdigit():
                    rows.append((origin, int(seq), code, reason, now))
            store.mark_refused(rows)
            receipts = [r for r in json.loads(store.get_meta(_RECEIPTS_META) or "[]") if r["answer"] != answer["id"]]
            receipts.append({"answer": answer["id"], "bundle": answer["bundle"], "imported_ms": now})
            store.set_meta(_RECEIPTS_META, json.dumps(receipts[-50:]))
        refused += len(rows)
        applied += result.applied + result.deferred
        answers += 1
        more = more or (answer_more and newest == cursor)
    replica.settle()
    if not answers and skipped:
        raise BundleError(f"{path} holds no answer this device can use: {'; '.join(skipped)}.")
    return AnswerImport(answers, applied, acked, refused, skipped, more)


# --- the courier's bag ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CarriedBundle:
    """A bundle in a courier's bag, and what became of it."""

    id: str
    origin: str
    ops: int
    created_ms: int
    expires_ms: int
    imported_ms: int
    delivered_ms: int | None
    status: str
    """``carried`` (waits for the next sync), ``delivered`` (answer in the bag), ``handed_back`` (answer given
    to the device), ``refused`` (the server will not take it: ``reason`` says why), ``expired``."""
    reason: str | None
    answer_id: str | None
    exported_ms: int | None


_BAG_SCHEMA = """
CREATE TABLE IF NOT EXISTS bundles (
    id TEXT PRIMARY KEY, origin TEXT NOT NULL, ops INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL, imported_ms INTEGER NOT NULL, delivered_ms INTEGER, status TEXT NOT NULL,
    reason TEXT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY, bundle TEXT NOT NULL, origin TEXT NOT NULL, received_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL, exported_ms INTEGER, reported INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL);
"""


class Bag:
    """A courier's bag of carried bundles and answers: an SQLite file of its own beside the replica.

    It holds what the devices wrote (their private fields sealed to the station) and the server's answers
    (sealed to each device): nothing in it is readable by the courier.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.executescript(_BAG_SCHEMA)
            self._db.execute("PRAGMA secure_delete = ON")
        except sqlite3.Error as exc:
            raise BundleError(f"Cannot open the courier's bag {self.path}: {exc}") from exc

    def close(self) -> None:
        """Closes the file; calling it again does nothing."""
        self._db.close()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self, path: str | Path, *, now_ms: int) -> tuple[CarriedBundle, bool]:
        """Puts a device's bundle file in the bag after checking its signature and expiry; returns it and
        whether it is new (a bundle already in the bag is not taken twice).

        Raises:
            BundleError: not a bundle of ops, forged or altered, or expired.
        """
        data = read_file(path)
        if data["type"] != "ops":
            raise BundleError(f"{path} holds answers for a device, not a bundle to deliver: give it to the device.")
        bundle = check_bundle(data, now_ms=now_ms)
        known = self._db.execute("SELECT id FROM bundles WHERE id = ?", (bundle["id"],)).fetchone()
        if known is None:
            self._db.execute(
                "INSERT INTO bundles (id, origin, ops, created_ms, expires_ms, imported_ms, status, body) "
                "VALUES (?, ?, ?, ?, ?, ?, 'carried', ?)",
                (
                    bundle["id"],
                    bundle["origin"],
                    len(bundle["ops"]),
                    bundle["created_ms"],
                    bundle["expires_ms"],
                    now_ms,
                    canonical(bundle).decode(),
                ),
            )
        return self.get(bundle["id"]), known is None

    def get(self, bundle_id: str) -> CarriedBundle:
        """One carried bundle. Raises BundleError if the bag does not hold it."""
        found = [b for b in self.carried() if b.id == bundle_id]
        if not found:
            raise BundleError(f"The bag holds no bundle {bundle_id}; `carry list` shows what it holds.")
        return found[0]

    def carried(self) -> list[CarriedBundle]:
        """Every bundle carried, newest first, with its status."""
        rows = self._db.execute(
            "SELECT b.id, b.origin, b.ops, b.created_ms, b.expires_ms, b.imported_ms, b.delivered_ms, b.status, "
            "b.reason, a.id, a.exported_ms FROM bundles b LEFT JOIN answers a ON a.bundle = b.id "
            "ORDER BY b.imported_ms DESC, b.id"
        ).fetchall()
        out = []
        for row in rows:
            status = row[7]
            if status == "delivered" and row[10] is not None:
                status = "handed_back"
            out.append(
                CarriedBundle(
                    id=row[0],
                    origin=row[1],
                    ops=row[2],
                    created_ms=row[3],
                    expires_ms=row[4],
                    imported_ms=row[5],
                    delivered_ms=row[6],
                    status=status,
                    reason=row[8],
                    answer_id=row[9],
                    exported_ms=row[10],
                )
            )
        return out

    def to_deliver(self, *, now_ms: int) -> list[dict[str, Any]]:
        """The bundles waiting for the next sync (expired ones are marked so and left out)."""
        self._db.execute("UPDATE bundles SET status = 'expired' WHERE status = 'carried' AND expires_ms < ?", (now_ms,))
        rows = self._db.execute("SELECT body, imported_ms FROM bundles WHERE status = 'carried' ORDER BY imported_ms")
        return [{**json.loads(body), "_imported_ms": imported} for body, imported in rows]

    def delivered(self, bundle_id: str, answer: Mapping[str, Any] | None, *, now_ms: int, reason: str | None) -> None:
        """Records the server's outcome for a bundle: its sealed answer, or why it refused the bundle."""
        if answer is None:
            self._db.execute(
                "UPDATE bundles SET status = 'refused', reason = ?, delivered_ms = ? WHERE id = ?",
                (reason, now_ms, bundle_id),
            )
            return
        self._db.execute("BEGIN")
        self._db.execute(
            "UPDATE bundles SET status = 'delivered', reason = NULL, delivered_ms = ? WHERE id = ?", (now_ms, bundle_id)
        )
        self._db.execute(
            "INSERT OR IGNORE INTO answers (id, bundle, origin, received_ms, expires_ms, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (answer["id"], bundle_id, answer["for"], now_ms, answer["expires_ms"], canonical(dict(answer)).decode()),
        )
        self._db.execute("COMMIT")

    def devices_with_answers(self) -> list[str]:
        """The devices the bag holds answers for."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT origin FROM answers ORDER BY origin")]

    def export_answers(self, device: str, path: str | Path, *, now_ms: int) -> int:
        """Writes every answer carried for ``device`` (its replica id, or a unique prefix) to ``path``;
        returns how many. Answers are kept, so the file can be written again if it is lost.

        Raises:
            BundleError: the bag holds no answer for that device (or the prefix names several).
        """
        matches = [d for d in self.devices_with_answers() if d.startswith(device)]
        if len(matches) != 1:
            held = ", ".join(self.devices_with_answers()) or "none"
            raise BundleError(
                f"The bag holds {'no answer' if not matches else 'answers for several devices'} for {device!r} "
                f"(devices with answers: {held}). Sync first to fetch the answers of the bundles you carry."
            )
        rows = self._db.execute(
            "SELECT id, body FROM answers WHERE origin = ? ORDER BY received_ms", (matches[0],)
        ).fetchall()
        _write_json(
            Path(path),
            {"caresync_bundle": BUNDLE_FORMAT, "type": "answers", "answers": [json.loads(b) for _, b in rows]},
        )
        self._db.executemany(
            "UPDATE answers SET exported_ms = ?, reported = 0 WHERE id = ?", [(now_ms, i) for i, _ in rows]
        )
        return len(rows)

    def handoffs(self) -> list[dict[str, Any]]:
        """Answers handed to their device that the server has not been told about yet."""
        rows = self._db.execute(
            "SELECT id, bundle, origin, exported_ms FROM answers WHERE exported_ms IS NOT NULL AND reported = 0"
        )
        return [{"answer": a, "bundle": b, "origin": o, "exported_ms": t} for a, b, o, t in rows]

    def reported(self, answer_ids: Iterable[str]) -> None:
        """Marks hand-offs as told to the server."""
        self._db.executemany("UPDATE answers SET reported = 1 WHERE id = ?", [(i,) for i in answer_ids])

    def counts(self) -> dict[str, int]:
        """How many bundles are in each status."""
        out: dict[str, int] = {}
        for bundle in self.carried():
            out[bundle.status] = out.get(bundle.status, 0) + 1
        return out


# --- the courier delivers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What the server did with one carried bundle."""

    bundle: str
    origin: str
    status: str
    """``delivered`` or ``refused``."""
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    reason: str | None = None


def deliver(
    bag: Bag,
    url: str,
    *,
    token: str,
    courier: str,
    now_ms: int,
    client: httpx.Client | None = None,
    retries: int = 2,
    timeout_s: float = 60.0,
) -> list[Delivery]:
    """Delivers every bundle the bag carries to the server at ``url`` (``POST /v1/relay``, one bundle per
    request) and keeps the sealed answers; tells the server which answers were handed to their devices.

    Raises:
        SyncError: the server cannot be reached; nothing is lost, the bundles stay in the bag.
        ServerRefusedError: the server refused the courier (token).
    """
    from caresync.sync.netsync import _Link  # one HTTP client with retries and the error envelope of protocol v1

    link = _Link(url, token, client, retries, 0.5, timeout_s)
    out: list[Delivery] = []
    try:
        handoffs = bag.handoffs()
        pending = bag.to_deliver(now_ms=now_ms)
        if not pending and handoffs:
            link.post("/v1/relay", json={"courier": courier, "bundle": None, "handoffs": handoffs})
            bag.reported(h["answer"] for h in handoffs)
        for item in pending:
            carried_since = item.pop("_imported_ms")
            answer = link.post(
                "/v1/relay",
                json={"courier": courier, "bundle": item, "carried_since_ms": carried_since, "handoffs": handoffs},
            )
            bag.reported(h["answer"] for h in handoffs)
            handoffs = []
            try:
                status = str(answer["status"])
                sealed = answer.get("answer")
                outcome = Delivery(
                    bundle=item["id"],
                    origin=item["origin"],
                    status=status,
                    stored=int(answer.get("stored", 0)),
                    duplicates=int(answer.get("duplicates", 0)),
                    refused=int(answer.get("refused", 0)),
                    reason=answer.get("reason"),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise CaresyncError(f"The sync server at {url} sent a relay answer this handheld cannot read") from exc
            bag.delivered(item["id"], sealed if status == "delivered" else None, now_ms=now_ms, reason=outcome.reason)
            out.append(outcome)
    finally:
        link.close()
    return out
