"""Helpers for testing programs built on caresync: a controllable wall clock, and keys to sign ops made by hand."""

from __future__ import annotations

import hashlib
from typing import Any

from caresync.trust.keys import DeviceKey
from caresync.trust.signing import chain_link, sign_op

__all__ = ["FakeClock", "key_for", "sign"]

#: 2026-11-29T00:00:00Z, a fixed start so tests read the same every run.
DEFAULT_START_MS = 1_796_083_200_000


class FakeClock:
    """A wall clock tests move by hand; pass it as ``Replica.open(..., now_ms=clock)``.

    Each reading advances it by ``step_ms`` (default 1 ms) so consecutive ops get distinct wall times.
    """

    def __init__(self, start_ms: int = DEFAULT_START_MS, *, step_ms: int = 1) -> None:
        self.ms = start_ms
        self.step_ms = step_ms

    def __call__(self) -> int:
        now = self.ms
        self.ms += self.step_ms
        return now

    def advance(self, ms: int) -> None:
        """Moves the clock forward (or back, with a negative ``ms``)."""
        self.ms += ms


def key_for(name: str) -> DeviceKey:
    """The same device key for the same ``name`` every run (its ``origin`` is the device id ops must carry)."""
    return DeviceKey(hashlib.blake2b(name.encode(), digest_size=32, person=b"caresync-test").digest())


_LINKS: dict[tuple[str, int], bytes] = {}  # the link of the op of each (origin, seq) this helper signed last


def sign(op: dict[str, Any], key: DeviceKey) -> dict[str, Any]:
    """Signs an op made by hand with ``key`` (its ``origin`` must be ``key.origin``); returns it.

    The op is chained (see :mod:`caresync.trust.signing`) to the op of seq - 1 this helper signed last for the same
    device, or else to the ``pd`` the op carries (nothing for seq 1): sign a device's ops in seq order, and
    sign again the ops after one you change."""
    prev = _LINKS.get((key.origin, op["seq"] - 1)) if op["seq"] > 1 else None
    sign_op(op, key, prev)
    _LINKS[(key.origin, op["seq"])] = chain_link(op)
    return op
