"""The console's staff accounts and sign-in sessions, in a small SQLite file of their own beside the replica.

Passwords are kept only as argon2id hashes (``argon2-cffi``). A session is a random token the browser holds in
an HttpOnly cookie; the file keeps only the token's SHA-256, so a copy of the file opens no session. A session
ends after ``idle`` without a request, or ``lifetime`` after sign-in, whichever comes first. Each session has
its own random CSRF token that every form of the console carries.

The accounts file is separate from the replica on purpose: accounts are the desk's, not records that sync.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from caresync.errors import InvalidInputError, NotFoundError, StoreError

__all__ = ["Account", "Accounts", "Session"]

_SCHEMA_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{1,64}$")
_MIN_PASSWORD = 10


@dataclass(frozen=True)
class Account:
    """A member of the station's staff who may sign in to the console."""

    name: str
    created_ms: int


@dataclass(frozen=True)
class Session:
    """A signed-in browser: whose it is, its CSRF token, and when it ends."""

    user: str
    csrf: str
    created_ms: int
    seen_ms: int
    expires_ms: int


class Accounts:
    """The accounts file (``console.db``). Each call opens its own short connection, so any thread may use it.

    Args:
        path: the SQLite file (created on first use).
        now_ms: the clock (tests pass their own).
        idle_ms: a session unused this long ends.
        lifetime_ms: a session ends this long after sign-in, used or not.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        now_ms: Callable[[], int],
        idle_ms: int = 30 * 60_000,
        lifetime_ms: int = 12 * 3_600_000,
    ) -> None:
        self.path = Path(path)
        self._now = now_ms
        self.idle_ms = idle_ms
        self.lifetime_ms = lifetime_ms
        self._hasher = PasswordHasher()
        self._dummy = self._hasher.hash(secrets.token_hex(16))  # verified against for unknown names: same cost
        with self._db() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StoreError(f"The console accounts file {self.path} is from a newer caresync; upgrade caresync.")
            db.execute(
                "CREATE TABLE IF NOT EXISTS accounts "
                "(name TEXT PRIMARY KEY, hash TEXT NOT NULL, created INTEGER NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "csrf TEXT NOT NULL, created INTEGER NOT NULL, seen INTEGER NOT NULL)"
            )
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the console accounts file {self.path}: {exc}") from exc
        try:
            self.path.chmod(0o600)  # password hashes: readable by the station's own user only
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"Cannot use the console accounts file {self.path}: {exc}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # --- accounts ---------------------------------------------------------------------------------------------

    def add(self, name: str, password: str) -> Account:
        """Makes an account (or sets a new password for an existing one).

        Raises:
            InvalidInputError: the name is not 1-64 letters, digits, ``_.-`` or Chinese characters, or the
                password is shorter than 10 characters.
        """
        problems = []
        if not _NAME_RE.match(name):
            problems.append(("name", "1 to 64 letters, digits, '_', '.', '-' or Chinese characters"))
        if len(password) < _MIN_PASSWORD:
            problems.append(("password", f"at least {_MIN_PASSWORD} characters"))
        if problems:
            raise InvalidInputError("Cannot make the console account", problems)
        hashed = self._hasher.hash(password)
        now = self._now()
        with self._db() as db:
            db.execute(
                "INSERT INTO accounts (name, hash, created) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET hash = excluded.hash",
                (name, hashed, now),
            )
            db.execute("DELETE FROM sessions WHERE name = ?", (name,))  # a new password ends old sessions
            created = db.execute("SELECT created FROM accounts WHERE name = ?", (name,)).fetchone()[0]
        return Account(name=name, created_ms=created)

    def remove(self, name: str) -> None:
        """Removes an account and ends its sessions. Raises NotFoundError if there is none."""
        with self._db() as db:
            if db.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"No console account {name!r}; list them with caresync console-user list.")
            db.execute("DELETE FROM sessions WHERE name = ?", (name,))

    def list(self) -> list[Account]:
        """Every account, by name."""
        with self._db() as db:
            rows = db.execute("SELECT name, created FROM accounts ORDER BY name").fetchall()
        return [Account(name=n, created_ms=c) for n, c in rows]

    def check(self, name: str, password: str) -> bool:
        """True when ``password`` is ``name``'s. Takes the same time for an unknown name (no name probing)."""
        with self._db() as db:
            row = db.execute("SELECT hash FROM accounts WHERE name = ?", (name,)).fetchone()
        try:
            self._hasher.verify(row[0] if row else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if row and self._hasher.check_needs_rehash(row[0]):
            self.add(name, password)
        return row is not None

    # --- sessions ---------------------------------------------------------------------------------------------

    def open_session(self, name: str) -> str:
        """Starts a session for ``name``; returns its token (for the cookie; only its hash is kept)."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        with self._db() as db:
            db.execute(
                "DELETE FROM sessions WHERE seen < ? OR created < ?", (now - self.idle_ms, now - self.lifetime_ms)
            )
            db.execute(
                "INSERT INTO sessions (token_hash, name, csrf, created, seen) VALUES (?, ?, ?, ?, ?)",
                (_hash(token), name, secrets.token_urlsafe(32), now, now),
            )
        return token

    def session(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of ``token`` (None: unknown, ended, or its account removed); ``touch`` marks it used."""
        if not token:
            return None
        now = self._now()
        with self._db() as db:
            row = db.execute(
                "SELECT s.name, s.csrf, s.created, s.seen FROM sessions s JOIN accounts a ON a.name = s.name "
                "WHERE s.token_hash = ?",
                (_hash(token),),
            ).fetchone()
            if row is None:
                return None
            name, csrf, created, seen = row
            expires = min(seen + self.idle_ms, created + self.lifetime_ms)
            if now >= expires:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash(token),))
                return None
            if touch:
                seen = now
                db.execute("UPDATE sessions SET seen = ? WHERE token_hash = ?", (now, _hash(token)))
        return Session(
            user=name,
            csrf=csrf,
            created_ms=created,
            seen_ms=seen,
            expires_ms=min(seen + self.idle_ms, created + self.lifetime_ms),
        )

    def close_session(self, token: str | None) -> None:
        """Ends a session (signing out)."""
        if token:
            with self._db() as db:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash(token),))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
