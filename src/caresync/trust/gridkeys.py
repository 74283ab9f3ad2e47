"""Readers' keys: one X25519 key pair per key grid and reading role, so the field devices entitled to a grid read
what their role reads there, and nobody else (docs/security.md, "Readers' keys").

- A :class:`GridKey` is made on the station's desk (the device that holds the station key), per *key grid* (a grid
  some reading device is scoped to), *role* (grid worker, knocker or mediator: each reads other records, by the
  role table) and *version* (a new version replaces it when a reader leaves).
- Its public half is published signed by the station's Ed25519 key (:func:`grid_key_message`,
  :class:`PublishedGridKey`): a device takes a readers' key only with the signature of the station key it pinned,
  so a sync server cannot slip in a key of its own and read what devices seal next.
- Its secret reaches each entitled device *wrapped*: sealed to the device's X25519 key (converted from its Ed25519
  device key, as relay answers are), with the grid, role and version inside, so a server that moves a wrap to another
  grid is caught (:func:`wrap_grid_key`, :func:`unwrap_grid_key`). The server only ever holds wraps.
- Writers seal a record's private fields to the station and to the newest version of every published key whose
  role may read the record in the key's grid (:func:`readers_for`, by :func:`caresync.trust.scopes.may_read`), in
  one ``sealed:2:`` value (:func:`caresync.trust.keys.seal_to`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519

from caresync.core.domain import Role
from caresync.errors import TrustError
from caresync.trust.keys import DeviceKey, StationKey, verify_signature
from caresync.trust.scopes import RecordScope, may_read

__all__ = [
    "READER_ROLES",
    "GridKey",
    "PublishedGridKey",
    "grid_key_message",
    "newest_keys",
    "readers_for",
    "unwrap_grid_key",
    "wrap_grid_key",
]


#: The roles that read residents' private details in their grids with readers' keys (the station and admins read
#: with the station key; couriers read none).
READER_ROLES = (Role.GRID_WORKER.value, Role.KNOCKER.value, Role.MEDIATOR.value)


def grid_key_message(grid: str, role: str, version: int, public_key: bytes) -> bytes:
    """What the station's key signs to publish a readers' key."""
    head = f"caresync grid-key v1\n{role}\n{grid}\n{int(version)}\n".encode()
    return head + bytes(public_key)


def _check_role(role: str) -> str:
    if role not in READER_ROLES:
        raise TrustError(f"Readers' keys are for {', '.join(READER_ROLES)}, not {role!r}.")
    return role


class GridKey:
    """One version of a key grid's readers' key: an X25519 key pair. Keep the secret on the desk and, wrapped, on
    the devices entitled to the grid."""

    __slots__ = ("_box", "_key", "grid", "public_key", "role", "version")

    def __init__(self, grid: str, role: str, version: int, secret: bytes) -> None:
        if len(secret) != 32:
            raise TrustError(f"A readers' key is 32 bytes, not {len(secret)}.")
        self.grid = grid
        self.role = _check_role(role)
        self.version = int(version)
        self._key = nacl.public.PrivateKey(bytes(secret))
        self._box = nacl.public.SealedBox(self._key)
        self.public_key: bytes = bytes(self._key.public_key)

    @classmethod
    def generate(cls, grid: str, role: str, version: int) -> GridKey:
        """A new random key for the readers of ``role`` in ``grid``, version ``version``."""
        return cls(grid, role, version, bytes(nacl.public.PrivateKey.generate()))

    @property
    def secret(self) -> bytes:
        """The 32 secret bytes."""
        return bytes(self._key)

    def open_box(self, sealed: bytes) -> bytes:
        """The plaintext of a sealed box to this key (see :class:`caresync.trust.keys.OpeningKey`)."""
        return bytes(self._box.decrypt(sealed))

    def publish(self, station: StationKey) -> PublishedGridKey:
        """Its public half, signed by the station's key.

        Raises:
            TrustError: the station key is one of an earlier release, which cannot sign.
        """
        if station.signing_public_key is None:
            raise TrustError("A station key of an earlier release cannot sign readers' keys; rotate it first.")
        signer = nacl.signing.SigningKey(station.secret)
        message = grid_key_message(self.grid, self.role, self.version, self.public_key)
        signature = bytes(signer.sign(message).signature)
        return PublishedGridKey(
            self.grid, self.role, self.version, self.public_key, signature, station.signing_public_key
        )

    def __repr__(self) -> str:
        return f"GridKey(grid={self.grid!r}, role={self.role!r}, version={self.version})"


@dataclass(frozen=True)
class PublishedGridKey:
    """A readers' key as the server serves it: its grid, role, version, X25519 public key, and the signature of the
    station key (``signing_key``, Ed25519) over :func:`grid_key_message`."""

    grid: str
    role: str
    version: int
    public_key: bytes
    signature: bytes
    signing_key: bytes

    def signed_by(self, station_signing_key: bytes | None) -> bool:
        """True when ``station_signing_key`` (the key a device pinned) signed this key."""
        return (
            station_signing_key is not None
            and self.signing_key == bytes(station_signing_key)
            and verify_signature(
                self.signing_key,
                grid_key_message(self.grid, self.role, self.version, self.public_key),
                self.signature,
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The protocol's form (hex)."""
        return {
            "grid": self.grid,
            "role": self.role,
            "version": self.version,
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
            "signing_key": self.signing_key.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> PublishedGridKey:
        """From the protocol's form. Raises TrustError when malformed."""
        try:
            key = cls(
                str(value["grid"]),
                _check_role(str(value["role"])),
                int(value["version"]),
                bytes.fromhex(str(value["public_key"])),
                bytes.fromhex(str(value["signature"])),
                bytes.fromhex(str(value["signing_key"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrustError(f"A published readers' key is malformed ({exc}).") from None
        if len(key.public_key) != 32 or len(key.signature) != 64 or len(key.signing_key) != 32 or key.version < 1:
            raise TrustError("A published readers' key is malformed (wrong lengths or version).")
        return key


def newest_keys(published: Iterable[PublishedGridKey]) -> dict[tuple[str, str], PublishedGridKey]:
    """The newest version of each published readers' key, by ``(role, grid)``."""
    newest: dict[tuple[str, str], PublishedGridKey] = {}
    for key in published:
        at = (key.role, key.grid)
        if at not in newest or key.version > newest[at].version:
            newest[at] = key
    return newest


def readers_for(newest: Mapping[tuple[str, str], PublishedGridKey], records: Iterable[RecordScope]) -> list[bytes]:
    """The X25519 keys a private value of a record is sealed to, besides the station's: the newest key of every
    ``(role, grid)`` whose role may read the record (as it is, or as it was before the op: a move, a change of
    kind) in that grid, by the role table; in ``(role, grid)`` order."""
    scopes = list(records)
    return [newest[at].public_key for at in sorted(newest) if any(may_read(at[0], [at[1]], s) for s in scopes)]


def _x25519_public(device_public_key: bytes) -> bytes:
    try:
        return bytes(crypto_sign_ed25519_pk_to_curve25519(bytes(device_public_key)))
    except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, nacl.exceptions.ValueError, TypeError):
        raise TrustError("Not a device's Ed25519 public key: cannot wrap a readers' key to it.") from None


def wrap_grid_key(key: GridKey, device_public_key: bytes) -> str:
    """``key``'s secret sealed to one device (its Ed25519 public key, converted to X25519), with its grid, role and
    version inside: base64 text the server keeps and hands to that device only."""
    payload = json.dumps(
        {"grid": key.grid, "role": key.role, "version": key.version, "secret": key.secret.hex()}
    ).encode()
    box = nacl.public.SealedBox(nacl.public.PublicKey(_x25519_public(device_public_key)))
    return base64.b64encode(bytes(box.encrypt(payload))).decode("ascii")


def unwrap_grid_key(device_key: DeviceKey, wrap: str, published: Sequence[PublishedGridKey]) -> GridKey:
    """The readers' key inside a wrap for this device, checked against the published key of its grid and version
    (whose signature the caller checked): a wrap that holds another key, or names another grid, is refused.

    Raises:
        TrustError: not for this device, damaged, or not the key the station published.
    """
    device_secret = crypto_sign_ed25519_sk_to_curve25519(device_key.seed + device_key.public_key)
    try:
        payload = json.loads(
            nacl.public.SealedBox(nacl.public.PrivateKey(device_secret)).decrypt(base64.b64decode(wrap))
        )
        secret = bytes.fromhex(str(payload["secret"]))
        key = GridKey(str(payload["grid"]), str(payload["role"]), int(payload["version"]), secret)
    except (nacl.exceptions.CryptoError, binascii.Error, ValueError, KeyError, TypeError):
        raise TrustError(
            "A readers' key wrap cannot be opened with this device's key: not for it, or damaged.",
            key="grid_keys.wrap_not_ours",
        ) from None
    match = [p for p in published if (p.grid, p.role, p.version) == (key.grid, key.role, key.version)]
    if not match or match[0].public_key != key.public_key:
        raise TrustError(
            f"A readers' key wrap for the {key.role}s of {key.grid or 'everywhere'}, version {key.version}, holds a "
            "key the station did not publish: refused.",
            key="grid_keys.wrap_unpublished",
            fields={"role": key.role, "grid": key.grid or "everywhere", "version": key.version},
        )
    return key
