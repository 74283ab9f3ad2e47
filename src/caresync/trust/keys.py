"""Device keys, signatures and sealed values: the cryptography caresync's trust model stands on (PyNaCl).

- Every device has an Ed25519 :class:`DeviceKey`. Its *origin* (the replica id that every op it makes
  carries) is derived from the public key, ``blake2b(public_key, 8 bytes)`` in hex, so a public key proves
  itself: anyone can check that a key belongs to an origin, and no server can substitute another.
- Private content is *sealed* to the station's X25519 public key (libsodium sealed boxes): only a holder of
  the :class:`StationKey` secret reads it. A sealed value travels and is stored as text
  ``sealed:1:<base64>``, so it fits wherever a string does.
- Sealed to several readers at once (the station and the readers' keys of the record's grid,
  :mod:`caresync.trust.gridkeys`), it is ``sealed:2:<base64>``: a random data key seals the value, and the data key
  is sealed to each reader's X25519 key, tagged with 8 bytes of that key's hash (:func:`seal_to`).
- The station's key is an Ed25519 key too: its public half (:attr:`StationKey.signing_public_key`) is the
  station's identity, which devices pin on first sight, and the X25519 key they seal to is derived from it (as
  libsodium converts keys; :func:`sealing_key_of`). A new station key is accepted only with a rotation signed by
  the old one (:meth:`StationKey.sign_rotation`, :func:`follow_station_chain`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils
from nacl.bindings import (
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_open,
)

from caresync.errors import InvalidInputError, TrustError

__all__ = [
    "MAX_READERS",
    "SEALED_PREFIX",
    "SEALED_PREFIXES",
    "DeviceKey",
    "OpeningKey",
    "StationKey",
    "StationKeyLink",
    "content_hash",
    "follow_station_chain",
    "is_sealed",
    "key_tag",
    "origin_of",
    "rotation_message",
    "seal",
    "seal_to",
    "seal_value",
    "sealing_key_of",
    "unseal",
    "unseal_value",
    "verify_signature",
]

SEALED_PREFIX = "sealed:1:"
#: The two forms of a sealed value: to the station alone (``sealed:1:``), and to several readers (``sealed:2:``).
SEALED_PREFIXES = ("sealed:1:", "sealed:2:")
_SEALED_RE = re.compile(r"^sealed:[12]:[A-Za-z0-9+/]+={0,2}$")
#: The most readers a ``sealed:2:`` value is sealed to (the station and every readers' key above a building).
MAX_READERS = 16
_TAG = 8  # bytes of a reader key's hash that name its slot
_SLOT = _TAG + 32 + 48  # a tag, then the 32-byte data key in a sealed box (an ephemeral key and a MAC: 48 bytes)


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


def sealing_key_of(signing_public_key: bytes) -> bytes:
    """The X25519 public key devices seal to, derived from a station's Ed25519 public key (its identity).

    Raises:
        InvalidInputError: not an Ed25519 public key.
    """
    try:
        return bytes(crypto_sign_ed25519_pk_to_curve25519(bytes(signing_public_key)))
    except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, nacl.exceptions.ValueError, TypeError):
        raise InvalidInputError(
            "Not a station public key",
            [("public_key", "must be the station's 32-byte Ed25519 public key")],
            key="trust.not_station_public_key",
        ) from None


def rotation_message(old_signing_key: bytes, new_signing_key: bytes) -> bytes:
    """What the old station key signs to hand over to a new one."""
    return b"caresync station-key rotation v1\n" + bytes(old_signing_key) + bytes(new_signing_key)


class StationKey:
    """The station's key: an Ed25519 key (its identity, which signs a rotation to a new key) and the X25519 key
    pair derived from it, which devices seal private content to. Keep ``secret`` on station devices.

    ``StationKey(seed)`` makes it from a 32-byte Ed25519 seed; :meth:`from_x25519` loads a station key of an
    earlier release (a bare X25519 key pair: it opens and seals, but cannot sign a rotation).
    """

    __slots__ = ("_box", "_key", "_signer", "public_key", "signing_public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise InvalidInputError("Not a station key", [("secret", f"must be 32 bytes, got {len(seed)}")])
        signer = nacl.signing.SigningKey(seed)
        verify = bytes(signer.verify_key)
        self._setup(crypto_sign_ed25519_sk_to_curve25519(bytes(seed) + verify), signer)

    def _setup(self, x25519_secret: bytes, signer: nacl.signing.SigningKey | None) -> None:
        self._signer = signer
        self._key = nacl.public.PrivateKey(x25519_secret)
        self._box = nacl.public.SealedBox(self._key)
        self.public_key: bytes = bytes(self._key.public_key)
        """The X25519 public key devices seal to."""
        self.signing_public_key: bytes | None = None if signer is None else bytes(signer.verify_key)
        """The Ed25519 public key: the station's identity, pinned by devices (None for a key of an earlier
        release)."""

    @classmethod
    def from_x25519(cls, secret: bytes) -> StationKey:
        """A station key of an earlier release: a bare X25519 key pair (it cannot sign a rotation)."""
        if len(secret) != 32:
            raise InvalidInputError("Not a station key", [("secret", f"must be 32 bytes, got {len(secret)}")])
        key = cls.__new__(cls)
        key._setup(bytes(secret), None)
        return key

    @classmethod
    def generate(cls) -> StationKey:
        """A new random key."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def secret(self) -> bytes:
        """The 32 secret bytes: the Ed25519 seed (the X25519 secret for a key of an earlier release)."""
        return bytes(self._signer) if self._signer is not None else bytes(self._key)

    @property
    def legacy(self) -> bool:
        """True for a bare X25519 key of an earlier release, which cannot sign."""
        return self._signer is None

    def sign_rotation(self, new: StationKey) -> bytes:
        """This key's signature handing over to ``new`` (:func:`rotation_message`); devices that pinned this key
        accept ``new`` with it.

        Raises:
            TrustError: either key is a bare X25519 key of an earlier release.
        """
        if self._signer is None or new.signing_public_key is None:
            raise TrustError("A station key of an earlier release cannot sign a rotation; enrol the devices again.")
        assert self.signing_public_key is not None
        return bytes(self._signer.sign(rotation_message(self.signing_public_key, new.signing_public_key)).signature)

    def unseal(self, value: str) -> bytes:
        """The plaintext of a sealed value. Raises TrustError when it was not sealed to this key or was altered."""
        return unseal(self, value)

    def open_box(self, sealed: bytes) -> bytes:
        """The plaintext of a sealed box to this key (see :class:`OpeningKey`)."""
        return bytes(self._box.decrypt(sealed))

    def __repr__(self) -> str:
        return f"StationKey(public_key={self.public_key.hex()[:16]}…)"


@dataclass(frozen=True)
class StationKeyLink:
    """One station key in the chain a server keeps: its Ed25519 public key, and the previous key's signature
    handing over to it (None for the first)."""

    signing_key: bytes
    signature: bytes | None = None

    @property
    def public_key(self) -> bytes:
        """The X25519 key devices seal to under this station key."""
        return sealing_key_of(self.signing_key)

    def to_json(self) -> dict[str, str | None]:
        """The link as the protocol carries it (hex)."""
        return {
            "signing_key": self.signing_key.hex(),
            "signature": None if self.signature is None else self.signature.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> StationKeyLink:
        """A link from its protocol form. Raises TrustError when it is malformed."""
        try:
            signing = bytes.fromhex(str(value["signing_key"]))
            signature = value.get("signature")
            link = cls(signing, None if signature is None else bytes.fromhex(str(signature)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TrustError(f"A station key link is malformed ({exc}).") from None
        if len(signing) != 32 or (link.signature is not None and len(link.signature) != 64):
            raise TrustError("A station key link is malformed (wrong key or signature length).")
        return link


def follow_station_chain(
    pinned_signing: bytes | None, pinned_sealing: bytes | None, chain: list[StationKeyLink]
) -> StationKeyLink | None:
    """The newest station key a device may take from a server's chain, given the key it pinned first.

    A device with no key pinned takes the newest (trust on first sight). A device that pinned a key takes a newer
    one only through rotations, each signed by the key before it, starting at its own pinned key (known by its
    Ed25519 key, or, for a device that pinned only the X25519 key of a signing key, by that). Returns None when the
    chain is empty.

    Raises:
        TrustError: the chain does not lead from the pinned key to its newest key by valid signatures (the message
            says what was offered); the device keeps its pinned key.
    """
    if not chain:
        return None
    start = 0
    if pinned_signing is not None or pinned_sealing is not None:
        found = [
            i
            for i, link in enumerate(chain)
            if link.signing_key == pinned_signing or (pinned_signing is None and link.public_key == pinned_sealing)
        ]
        if not found:
            pinned = (pinned_signing or pinned_sealing or b"").hex()
            raise TrustError(
                f"The sync server offers station key {chain[-1].signing_key.hex()}, and no rotation signed by the "
                f"station key this device learned first ({pinned}) leads to it: it was not made by the station. "
                "This device keeps sealing to the key it has; ask the station.",
                key="station_key.not_from_station",
                fields={"offered": chain[-1].signing_key.hex(), "kept": pinned},
            )
        start = found[-1]
    for before, after in zip(chain[start:], chain[start + 1 :], strict=False):
        message = rotation_message(before.signing_key, after.signing_key)
        if after.signature is None or not verify_signature(before.signing_key, message, after.signature):
            raise TrustError(
                f"The sync server offers station key {after.signing_key.hex()} as a rotation of "
                f"{before.signing_key.hex()}, but the old key did not sign it: refused. This device keeps sealing to "
                "the key it has; ask the station.",
                key="station_key.rotation_unsigned",
                fields={"offered": after.signing_key.hex(), "before": before.signing_key.hex()},
            )
    return chain[-1]


def seal(public_key: bytes, plaintext: bytes) -> str:
    """``plaintext`` sealed to an X25519 public key, as ``sealed:1:<base64>`` text."""
    try:
        box = nacl.public.SealedBox(nacl.public.PublicKey(public_key))
    except (nacl.exceptions.TypeError, nacl.exceptions.ValueError) as exc:
        raise InvalidInputError(
            "Not a station public key", [("public_key", str(exc))], key="trust.not_station_public_key"
        ) from None
    return SEALED_PREFIX + base64.b64encode(box.encrypt(plaintext)).decode("ascii")


def key_tag(public_key: bytes) -> bytes:
    """The 8 bytes that name a reader's slot in a ``sealed:2:`` value: a hash of its X25519 public key."""
    return hashlib.blake2b(bytes(public_key), digest_size=_TAG).digest()


def seal_to(public_keys: Sequence[bytes], plaintext: bytes) -> str:
    """``plaintext`` sealed so that any one of several X25519 keys opens it, as ``sealed:2:<base64>`` text.

    A fresh random data key seals the plaintext (XSalsa20-Poly1305); the data key is sealed to each key (a sealed
    box) in a slot named by :func:`key_tag`. Layout: one byte, the number of slots; the slots (tag, then sealed
    data key: 88 bytes each); then the secret box (nonce, MAC, ciphertext). With one key, use :func:`seal`.

    Raises:
        InvalidInputError: no key, more than :data:`MAX_READERS`, or one that is not an X25519 public key.
    """
    keys = list(dict.fromkeys(bytes(k) for k in public_keys))  # each reader once, in the order given
    if not 1 <= len(keys) <= MAX_READERS:
        raise InvalidInputError("Cannot seal", [("readers", f"must be 1 to {MAX_READERS} keys, got {len(keys)}")])
    data_key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    out = bytearray([len(keys)])
    for public in keys:
        try:
            box = nacl.public.SealedBox(nacl.public.PublicKey(public))
        except (nacl.exceptions.TypeError, nacl.exceptions.ValueError) as exc:
            raise InvalidInputError("Not a reader's public key", [("public_key", str(exc))]) from None
        out += key_tag(public) + bytes(box.encrypt(data_key))
    out += bytes(nacl.secret.SecretBox(data_key).encrypt(plaintext))
    return SEALED_PREFIXES[1] + base64.b64encode(bytes(out)).decode("ascii")


def is_sealed(value: Any) -> bool:
    """True when ``value`` is a sealed value (text starting ``sealed:1:`` or ``sealed:2:``)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIXES)


class OpeningKey(Protocol):
    """What opens sealed values: an X25519 key pair (a :class:`StationKey`, or a readers' key,
    :class:`caresync.trust.gridkeys.GridKey`)."""

    @property
    def public_key(self) -> bytes:
        """The X25519 public key values are sealed to."""
        ...

    def open_box(self, sealed: bytes) -> bytes:
        """The plaintext of a sealed box to this key; raises nacl's CryptoError when it is not for it."""
        ...


def unseal(key: OpeningKey, value: str) -> bytes:
    """The plaintext of a sealed value (either form); raises TrustError when it cannot be opened with ``key``."""
    if not _SEALED_RE.match(value):
        raise TrustError(
            "This sealed value is damaged: it is not sealed:1:<base64> or sealed:2:<base64>.",
            key="trust.sealed_damaged",
        )
    try:
        raw = base64.b64decode(value[len(SEALED_PREFIX) :])
        if value.startswith(SEALED_PREFIX):
            return key.open_box(raw)
        count, tag = raw[0], key_tag(key.public_key)
        for start in range(1, 1 + count * _SLOT, _SLOT):
            if raw[start : start + _TAG] == tag:
                data_key = key.open_box(raw[start + _TAG : start + _SLOT])
                return bytes(nacl.secret.SecretBox(data_key).decrypt(raw[1 + count * _SLOT :]))
    except (nacl.exceptions.CryptoError, binascii.Error, ValueError, IndexError):
        pass
    raise TrustError(
        "This sealed value cannot be opened with this key: it was sealed to another station or to other readers, "
        "or altered.",
        key="trust.sealed_not_ours",
    ) from None


def content_hash(value: Any, salt: bytes) -> str:
    """The hash that proves a sealed value intact: blake2b over the salt and the value's canonical JSON, in hex.

    The salt lives only inside the sealed box, so the hash, which travels in clear, reveals nothing about a
    short value such as a phone number (it cannot be guessed and checked)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(salt + canonical, digest_size=16).hexdigest()


def seal_value(public_key: bytes | Sequence[bytes], value: Any) -> tuple[str, str]:
    """A JSON value sealed to the station, with a fresh salt inside: ``(sealed text, content hash)``.

    ``public_key`` is the station's X25519 key (``sealed:1:``), or a list of readers' keys, the station's first:
    with more than one, the value is sealed so any of them opens it (``sealed:2:``, :func:`seal_to`)."""
    salt = secrets.token_bytes(16)
    payload = json.dumps({"n": salt.hex(), "v": value}, separators=(",", ":"), ensure_ascii=False).encode()
    keys = [bytes(public_key)] if isinstance(public_key, bytes | bytearray) else [bytes(k) for k in public_key]
    sealed = seal(keys[0], payload) if len(set(keys)) == 1 else seal_to(keys, payload)
    return sealed, content_hash(value, salt)


def unseal_value(key: OpeningKey, sealed: str) -> tuple[Any, str]:
    """The value inside a :func:`seal_value` and its content hash (compare it with the one taken at capture)."""
    try:
        payload = json.loads(unseal(key, sealed))
        salt = bytes.fromhex(payload["n"])
        value = payload["v"]
    except (ValueError, KeyError, TypeError):
        raise TrustError(
            "This sealed value opened but holds no caresync value: it was made by another program.",
            key="trust.sealed_not_caresync",
        ) from None
    return value, content_hash(value, salt)
