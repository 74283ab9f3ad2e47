"""Device keys, signatures and sealed values: the cryptography caresync's trust model stands on (PyNaCl).

- Every device has an Ed25519 :class:`DeviceKey`. Its *origin* (the replica id that every op it makes
  carries) is derived from the public key, ``blake2b(public_key, 8 bytes)`` in hex, so a public key proves
  itself: anyone can check that a key belongs to an origin, and no server can substitute another.
- Private content is *sealed* to the station's X25519 public key (libsodium sealed boxes): only a holder of
  the :class:`StationKey` secret reads it. A sealed value travels and is stored as text
  ``sealed:1:<base64>``, so it fits wherever a string does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing
from nacl.bindings import crypto_sign_open

from caresync.errors import InvalidInputError, TrustError

__all__ = [
    "SEALED_PREFIX",
    "DeviceKey",
    "StationKey",
    "content_hash",
    "is_sealed",
    "origin_of",
    "seal",
    "seal_value",
    "unseal",
    "unseal_value",
    "verify_signature",
]

SEALED_PREFIX = "sealed:1:"
_SEALED_RE = re.compile(r"^sealed:1:[A-Za-z0-9+/]+={0,2}$")


def origin_of(public_key: bytes) -> str:
    """The origin (replica id, 16 hex digits) that belongs to an Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidInputError("Not a device key", [("public_key", f"must be 32 bytes, got {len(public_key)}")])
    return hashlib.blake2b(public_key, digest_size=8).hexdigest()


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


class DeviceKey:
    """A device's Ed25519 signing key. Keep ``seed`` secret: it is the device's identity."""

    __slots__ = ("_key", "origin", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise InvalidInputError("Not a device key", [("seed", f"must be 32 bytes, got {len(seed)}")])
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)
        self.origin: str = origin_of(self.public_key)

    @classmethod
    def generate(cls) -> DeviceKey:
        """A new random key."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        """The 32 secret bytes the key is made from."""
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return f"DeviceKey(origin={self.origin!r})"


class StationKey:
    """The station's X25519 key pair: what devices seal private content to. Keep ``secret`` on station devices."""

    __slots__ = ("_box", "_key", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise InvalidInputError("Not a station key", [("secret", f"must be 32 bytes, got {len(secret)}")])
        self._key = nacl.public.PrivateKey(secret)
        self._box = nacl.public.SealedBox(self._key)
        self.public_key: bytes = bytes(self._key.public_key)

    @classmethod
    def generate(cls) -> StationKey:
        """A new random key pair."""
        return cls(bytes(nacl.public.PrivateKey.generate()))

    @property
    def secret(self) -> bytes:
        """The 32 secret bytes."""
        return bytes(self._key)

    def unseal(self, value: str) -> bytes:
        """The plaintext of a sealed value. Raises TrustError when it was not sealed to this key or was altered."""
        return unseal(self, value)

    def __repr__(self) -> str:
        return f"StationKey(public_key={self.public_key.hex()[:16]}…)"


def seal(public_key: bytes, plaintext: bytes) -> str:
    """``plaintext`` sealed to an X25519 public key, as ``sealed:1:<base64>`` text."""
    try:
        box = nacl.public.SealedBox(nacl.public.PublicKey(public_key))
    except (nacl.exceptions.TypeError, nacl.exceptions.ValueError) as exc:
        raise InvalidInputError("Not a station public key", [("public_key", str(exc))]) from None
    return SEALED_PREFIX + base64.b64encode(box.encrypt(plaintext)).decode("ascii")


def is_sealed(value: Any) -> bool:
    """True when ``value`` is a sealed value (text starting ``sealed:1:``)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def unseal(key: StationKey, value: str) -> bytes:
    """The plaintext of a sealed value; raises TrustError when it cannot be opened with ``key``."""
    if not _SEALED_RE.match(value):
        raise TrustError("This sealed value is damaged: it is not sealed:1:<base64>.")
    try:
        return bytes(key._box.decrypt(base64.b64decode(value[len(SEALED_PREFIX) :])))
    except (nacl.exceptions.CryptoError, binascii.Error, ValueError):
        raise TrustError(
            "This sealed value cannot be opened with this station key: it was sealed to another station, or altered."
        ) from None


def content_hash(value: Any, salt: bytes) -> str:
    """The hash that proves a sealed value intact: blake2b over the salt and the value's canonical JSON, in hex.

    The salt lives only inside the sealed box, so the hash, which travels in clear, reveals nothing about a
    short value such as a phone number (it cannot be guessed and checked)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(salt + canonical, digest_size=16).hexdigest()


def seal_value(public_key: bytes, value: Any) -> tuple[str, str]:
    """A JSON value sealed to the station, with a fresh salt inside: ``(sealed text, content hash)``."""
    salt = secrets.token_bytes(16)
    payload = json.dumps({"n": salt.hex(), "v": value}, separators=(",", ":"), ensure_ascii=False).encode()
    return seal(public_key, payload), content_hash(value, salt)


def unseal_value(key: StationKey, sealed: str) -> tuple[Any, str]:
    """The value inside a :func:`seal_value` and its content hash (compare it with the one taken at capture)."""
    try:
        payload = json.loads(unseal(key, sealed))
        salt = bytes.fromhex(payload["n"])
        value = payload["v"]
    except (ValueError, KeyError, TypeError):
        raise TrustError(
            "This sealed value opened but holds no caresync value: it was made by another program."
        ) from None
    return value, content_hash(value, salt)
