"""The courier's bag: the bundles a courier carries and the answers it brings back, in an SQLite file of its own.

The bag is not a replica: it holds other devices' signed bundles, which its courier cannot read, and the
server's answers sealed to those devices. Its file carries a schema version (``PRAGMA user_version``) like
every file caresync writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caresync.errors import BundleError
from caresync.sync.bundles.format import BUNDLE_FORMAT, canonical, check_bundle, read_file, write_file

__all__ = ["BAG_SCHEMA_VERSION", "Bag", "CarriedBundle"]

#: The bag file's schema version (``PRAGMA user_version``); a bag from a newer caresync is refused, not changed.
#: Version 2 keys bundles by id *and* signer (version 1, by id alone, let a fake shadow the genuine bundle).
BAG_SCHEMA_VERSION = 2


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
    id TEXT NOT NULL, signer TEXT NOT NULL, origin TEXT NOT NULL, ops INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL, imported_ms INTEGER NOT NULL, delivered_ms INTEGER, status TEXT NOT NULL,
    reason TEXT, body TEXT NOT NULL, PRIMARY KEY (id, signer));
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY, bundle TEXT NOT NULL, origin TEXT NOT NULL, received_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL, exported_ms INTEGER, reported INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL);
"""


_TO_VERSION_2 = (
    "BEGIN; ALTER TABLE bundles RENAME TO bundles_v1;"
    + _BAG_SCHEMA.split(";", 1)[0]
    + ";"
    + "INSERT INTO bundles SELECT id, json_extract(body, '$.public_key'), origin, ops, created_ms, expires_ms, "
    "imported_ms, delivered_ms, status, reason, body FROM bundles_v1; DROP TABLE bundles_v1; COMMIT;"
)


class Bag:
    """A courier's bag of carried bundles and answers: an SQLite file of its own beside the replica.

    It holds what the devices wrote (their private fields sealed to the station) and the server's answers
    (sealed to each device): nothing in it is readable by the courier.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise BundleError(
                f"Cannot open the courier's bag {self.path}: {exc}",
                key="bag.cannot_open",
                fields={"path": str(self.path), "reason": str(exc)},
            ) from exc
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > BAG_SCHEMA_VERSION:
                raise BundleError(
                    f"The courier's bag {self.path} was written by a newer caresync (bag version {version}); "
                    "upgrade caresync on this handheld to read it. Nothing in it was changed.",
                    key="bag.newer",
                    fields={"path": str(self.path), "version": version},
                )
            if version < 2 and self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'bundles'").fetchone():
                self._db.executescript(_TO_VERSION_2)  # a bag of versions 0 or 1 keyed its bundles by id alone
            self._db.executescript(_BAG_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {BAG_SCHEMA_VERSION}")
            self._db.execute("PRAGMA secure_delete = ON")
        except sqlite3.Error as exc:
            self._db.close()
            raise BundleError(
                f"Cannot open the courier's bag {self.path}: {exc}",
                key="bag.cannot_open",
                fields={"path": str(self.path), "reason": str(exc)},
            ) from exc
        except BundleError:
            self._db.close()
            raise

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

        Bundles are kept by id *and* signer: a bundle that reuses another's id, signed by another device, is a
        bundle of its own and never shadows the genuine one (whichever comes first); the server sorts them out.

        Raises:
            BundleError: not a bundle of ops, forged or altered, or expired.
        """
        data = read_file(path)
        if data["type"] != "ops":
            raise BundleError(
                f"{path} holds answers for a device, not a bundle to deliver: give it to the device.",
                key="bag.answers_not_bundle",
                fields={"path": str(path)},
            )
        bundle = check_bundle(data, now_ms=now_ms)
        signer = bundle["public_key"].lower()
        known = self._db.execute(
            "SELECT id FROM bundles WHERE id = ? AND signer = ?", (bundle["id"], signer)
        ).fetchone()
        if known is None:
            self._db.execute(
                "INSERT INTO bundles (id, signer, origin, ops, created_ms, expires_ms, imported_ms, status, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'carried', ?)",
                (
                    bundle["id"],
                    signer,
                    bundle["origin"],
                    len(bundle["ops"]),
                    bundle["created_ms"],
                    bundle["expires_ms"],
                    now_ms,
                    canonical(bundle).decode(),
                ),
            )
        return self.get(bundle["id"], origin=bundle["origin"]), known is None

    def get(self, bundle_id: str, *, origin: str | None = None) -> CarriedBundle:
        """One carried bundle, by its id (and its device's replica id, when two devices' bundles share the id).

        Raises:
            BundleError: the bag holds no such bundle, or several with that id and no ``origin`` tells them apart.
        """
        found = [b for b in self.carried() if b.id == bundle_id and origin in (None, b.origin)]
        if not found:
            raise BundleError(
                f"The bag holds no bundle {bundle_id}; `carry list` shows what it holds.",
                key="bag.no_bundle",
                fields={"bundle": bundle_id},
            )
        if len(found) > 1:
            devices = ", ".join(b.origin for b in found)
            raise BundleError(
                f"The bag holds several bundles {bundle_id}, from devices {devices}; name the device.",
                key="bag.several_bundles",
                fields={"bundle": bundle_id, "devices": devices},
            )
        return found[0]

    def carried(self) -> list[CarriedBundle]:
        """Every bundle carried, newest first, with its status."""
        rows = self._db.execute(
            "SELECT b.id, b.origin, b.ops, b.created_ms, b.expires_ms, b.imported_ms, b.delivered_ms, b.status, "
            "b.reason, a.id, a.exported_ms FROM bundles b "
            "LEFT JOIN answers a ON a.bundle = b.id AND a.origin = b.origin "
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

    def delivered(
        self,
        bundle_id: str,
        answer: Mapping[str, Any] | None,
        *,
        now_ms: int,
        reason: str | None,
        signer: str | None = None,
    ) -> None:
        """Records the server's outcome for a bundle (the one of that id signed by ``signer``, its public key in
        hex, when given): its sealed answer, or why it refused the bundle."""
        which = "id = ? AND signer = ?" if signer is not None else "id = ?"
        keys = (bundle_id, signer.lower()) if signer is not None else (bundle_id,)
        if answer is None:
            self._db.execute(
                f"UPDATE bundles SET status = 'refused', reason = ?, delivered_ms = ? WHERE {which}",
                (reason, now_ms, *keys),
            )
            return
        self._db.execute("BEGIN")
        self._db.execute(
            f"UPDATE bundles SET status = 'delivered', reason = NULL, delivered_ms = ? WHERE {which}", (now_ms, *keys)
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
        held = ", ".join(self.devices_with_answers()) or "none"
        if not matches:
            raise BundleError(
                f"The bag holds no answer for {device!r} (devices with answers: {held}). Sync first to fetch the "
                "answers of the bundles you carry.",
                key="bag.no_answer",
                fields={"device": repr(device), "held": held},
            )
        if len(matches) > 1:
            raise BundleError(
                f"The bag holds answers for several devices for {device!r} (devices with answers: {held}). Sync "
                "first to fetch the answers of the bundles you carry.",
                key="bag.several_answers",
                fields={"device": repr(device), "held": held},
            )
        rows = self._db.execute(
            "SELECT id, body FROM answers WHERE origin = ? ORDER BY received_ms", (matches[0],)
        ).fetchall()
        write_file(
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
