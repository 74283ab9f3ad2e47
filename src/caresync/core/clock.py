"""Hybrid logical clock (HLC): one total order of ops that respects causality, whatever the wall clocks say.

A stamp is packed in one integer: ``wall_ms << 20 | counter``. Comparing two packed stamps compares wall
time first and the logical counter second; the origin replica (and its seq) break the remaining ties, so
``(hlc, origin, seq)`` is a total order every replica agrees on. Adding one to a stamp bumps the counter and,
if the counter is full, carries into the wall time, so a stamp never overflows.

Clock trouble is bounded, not trusted:

* ``max_forward_ms`` caps how far the stamps a replica *observes* can push its own clock beyond its physical
  time. A phone whose clock is three days ahead cannot drag everyone it syncs with three days into the future.
* Causality where the merge needs it is kept by a *floor*: an op made on a record is always stamped after
  every op already known for that record (:meth:`HybridClock.tick` takes the floor), however wrong clocks are.
* ``offset_ms`` corrects a device's wall clock (the sync server tells each device its offset).

Times people read (when a visit happened, when a ticket is due) are ordinary fields, never HLC stamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = [
    "COUNTER_BITS",
    "DEFAULT_MAX_FORWARD_MS",
    "HybridClock",
    "format_hlc",
    "hlc_counter",
    "hlc_wall_ms",
    "pack_hlc",
    "system_time_ms",
]

COUNTER_BITS = 20
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
#: How far ahead of this device's own (corrected) clock an observed stamp may push it: ten minutes.
DEFAULT_MAX_FORWARD_MS = 10 * 60 * 1000


def system_time_ms() -> int:
    """The machine's wall clock in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def pack_hlc(wall_ms: int, counter: int = 0) -> int:
    """Packs a wall time (ms) and a logical counter into one sortable integer stamp."""
    if wall_ms < 0 or not 0 <= counter <= _COUNTER_MASK:
        raise ValueError(f"HLC parts out of range: wall_ms={wall_ms}, counter={counter}")
    return (wall_ms << COUNTER_BITS) | counter


def hlc_wall_ms(stamp: int) -> int:
    """The wall-time part of a packed stamp, in ms since the epoch."""
    return stamp >> COUNTER_BITS


def hlc_counter(stamp: int) -> int:
    """The logical-counter part of a packed stamp."""
    return stamp & _COUNTER_MASK


def format_hlc(stamp: int) -> str:
    """A readable form of a stamp, e.g. ``2026-11-29T05:07:57.123Z+3``."""
    wall = datetime.fromtimestamp(hlc_wall_ms(stamp) / 1000, tz=UTC)
    return f"{wall.strftime('%Y-%m-%dT%H:%M:%S')}.{wall.microsecond // 1000:03d}Z+{hlc_counter(stamp)}"


class HybridClock:
    """A replica's hybrid logical clock.

    Args:
        now_ms: the wall-clock source (injected so tests can run a device days ahead or years behind).
        offset_ms: correction added to ``now_ms()``; set it when a server reports this device's skew.
        max_forward_ms: how far beyond physical time an observed stamp may move this clock.
        last: the highest stamp this clock has issued or adopted (restored when a replica reopens).
    """

    def __init__(
        self,
        now_ms: Callable[[], int] = system_time_ms,
        *,
        offset_ms: int = 0,
        max_forward_ms: int = DEFAULT_MAX_FORWARD_MS,
        last: int = 0,
    ) -> None:
        if max_forward_ms < 0:
            raise ValueError("max_forward_ms must be >= 0")
        self._now_ms = now_ms
        self.offset_ms = offset_ms
        self.max_forward_ms = max_forward_ms
        self._last = last

    @property
    def last(self) -> int:
        """The highest stamp issued or adopted so far."""
        return self._last

    def physical_ms(self) -> int:
        """This device's corrected wall time in ms: what people's times (``at``) are taken from."""
        return self._now_ms() + self.offset_ms

    def _cap(self, physical: int) -> int:
        return pack_hlc(max(physical + self.max_forward_ms, 0), _COUNTER_MASK)

    def tick(self, floor: int = 0) -> int:
        """Issues a new stamp, greater than every stamp this clock issued or adopted, and than ``floor``.

        ``floor`` is the highest stamp known for the record the op is about, so an op always sorts after
        everything its author could see on that record, even when that came from a clock far ahead. A floor
        more than ``max_forward_ms`` ahead stamps this one op after it but does not move the clock itself.
        """
        physical = max(self.physical_ms(), 0)
        base = max(pack_hlc(physical), self._last + 1)
        stamp = max(base, floor + 1)
        self._last = base if stamp > self._cap(physical) else stamp
        return stamp

    def correct(self, offset_ms: int) -> None:
        """Sets the wall-clock correction, and lets the clock fall back to the corrected time.

        A device that ran ahead stops stamping its new ops in the future at once; its earlier ops keep their
        stamps, and the per-record floor still puts anything made after seeing them after them.
        """
        self.offset_ms = offset_ms
        self._last = min(self._last, self._cap(max(self.physical_ms(), 0)))

    def observe(self, stamp: int) -> bool:
        """Takes in a stamp seen on another replica's op.

        Returns:
            True when the stamp lies more than ``max_forward_ms`` ahead of this device's time (the sender's
            clock, or this one, is wrong): the clock moved only up to the bound, and the caller records it.
        """
        cap = self._cap(max(self.physical_ms(), 0))
        self._last = max(self._last, min(stamp, cap))
        return stamp > cap

    def ahead_ms(self, stamp: int) -> int:
        """How far (ms) a stamp lies ahead of this device's corrected wall time (negative: behind)."""
        return hlc_wall_ms(stamp) - self.physical_ms()
