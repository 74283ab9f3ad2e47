"""One-time enrolment codes and the token proof: the pure helpers the device and the server share.

A code is 15 random characters of Crockford's base32 and a check character (Luhn mod 32), printed in groups of
four and also shown as a QR code; typed back in any case, with spaces, dashes, I/L for 1 and O for 0.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "CODE_ALPHABET",
    "DELIVERY_CODE_CHECK_PATTERN",
    "ENROL_SCHEME",
    "PROOF_WINDOW_MS",
    "check_code",
    "delivery_code_check",
    "delivery_code_matches",
    "enrolment_text",
    "format_code",
    "new_code",
    "new_delivery_code",
    "normalize_code",
    "read_enrolment_text",
    "token_proof",
]

#: What the text of an enrolment QR code starts with: ``caresync:enrol?server=<url>&code=<code>``.
ENROL_SCHEME = "caresync:enrol?"

#: Crockford's base32: no I, L, O or U, so a code read aloud or typed from paper has no look-alikes.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_RANDOM = 15  # characters of randomness (75 bits), then one check character
_LOOK_ALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
#: A signed token request must carry a server time at most this far from the server's clock.
PROOF_WINDOW_MS = 10 * 60_000


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


def enrolment_text(server_url: str, code: str) -> str:
    """The text of an enrolment QR code: the server's address and the one-time code, all a device needs to enrol
    (``caresync:enrol?server=<url>&code=<code>``)."""
    return f"{ENROL_SCHEME}server={quote(server_url.rstrip('/'), safe=':/')}&code={quote(code, safe='-')}"


def read_enrolment_text(text: str) -> tuple[str, str] | None:
    """``(server_url, code)`` from the text of an enrolment QR code, or None when ``text`` is not one (a code typed
    by hand)."""
    text = text.strip()
    if not text.startswith(ENROL_SCHEME):
        return None
    fields = parse_qs(urlsplit(text).query)
    servers, codes = fields.get("server", []), fields.get("code", [])
    if len(servers) != 1 or len(codes) != 1 or not servers[0] or not codes[0]:
        return None
    return servers[0], codes[0]


#: A delivery code's check as it travels in ops and rests in files: ``<salt>:<hash>``, both hex (16-byte salt,
#: 32-byte scrypt hash). The code itself is never stored; only this.
DELIVERY_CODE_CHECK_PATTERN = r"^[0-9a-f]{32}:[0-9a-f]{64}$"
_DELIVERY_CODE_RE = re.compile(r"^[0-9A-Za-z]{4,12}$")


def _delivery_hash(code: str, salt: bytes) -> bytes:
    # scrypt (2**14, 8, 1: ~16 MiB, tens of ms) so that a check copied off a lost handheld costs real work per
    # guess; a 4-digit code still falls to a patient attacker, which is why the slip's code should be longer.
    return hashlib.scrypt(code.strip().upper().encode(), salt=salt, n=1 << 14, r=8, p=1, dklen=32)


def delivery_code_check(code: str, salt: bytes | None = None) -> str:
    """The salted hash of a resident's delivery code, as ``<salt>:<hash>`` in hex: what a parcel keeps instead of
    the code, so the code cannot be read from files or ops. Case and surrounding spaces do not matter.

    Raises:
        ValueError: the code is not 4 to 12 letters or digits.
    """
    code = code.strip()
    if not _DELIVERY_CODE_RE.match(code):
        raise ValueError("a delivery code is 4 to 12 letters or digits")
    salt = secrets.token_bytes(16) if salt is None else salt
    return f"{salt.hex()}:{_delivery_hash(code, salt).hex()}"


def delivery_code_matches(check: str, code: str) -> bool:
    """True when ``code`` is the delivery code ``check`` (from :func:`delivery_code_check`) was made from."""
    salt_hex, _, digest_hex = check.partition(":")
    if not _DELIVERY_CODE_RE.match(code.strip()):
        return False
    return hmac.compare_digest(_delivery_hash(code, bytes.fromhex(salt_hex)).hex(), digest_hex)


def new_delivery_code() -> str:
    """A fresh delivery code for a resident's slip: 6 random digits (easy to read out at the door)."""
    return f"{secrets.randbelow(10**6):06d}"
