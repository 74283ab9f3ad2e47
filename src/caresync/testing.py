"""Helpers for testing programs built on caresync: a controllable wall clock."""

from __future__ import annotations

__all__ = ["FakeClock"]

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
