"""Pausing the cyclic garbage collector around one bulk step: the op log's batches hold no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pauses the cyclic garbage collector for one bulk step (validating or storing a batch of ops).

    A batch allocates hundreds of thousands of dicts and lists that all stay alive until the step ends and
    form no cycles; every collection the allocations trigger would walk all of them again, which costs more
    than the step's own work. Reference counting still frees everything as usual; the collector resumes
    afterwards (it is left alone when the caller had disabled it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
