"""Human-readable ticket numbers that a clerk can tell a resident on the spot, even offline, and that no two
tickets of a deployment ever share.

A ticket's id (``T-<origin>-<seq>``) is its identity in the op log; its *number* is for people. Every device,
the station's desk included, takes numbers in order from blocks the sync server reserved for it alone: a sync
asks the server for a block (``POST /v1/numbers``) when fewer than 20 numbers are left, so numbers are short
decimals such as ``1042`` that no other device was given. Blocks come only from the server: no command types
one in, since a block typed by hand is how two tickets came to share a number.

A device with no block yet (never synced, or offline after using its block) gives a *provisional* number,
``<origin>-<n>``: its own origin (the fingerprint of its key) and a counter kept on the device, so it too is
unique to the deployment, and it cannot be mistaken for a block number (it holds a dash). At its next sync the
device gets a block and gives each of its provisionally numbered tickets a short number with a
``ticket.number`` op (:meth:`~caresync.store.devicelog.DeviceLog.renumber`), which every replica folds the same
way (:mod:`caresync.core.merge`): from then on the ticket shows the short number everywhere, and the
provisional one still finds it (``Ticket.former_numbers``).

The first number is written in the ``ticket.create`` op's body (field ``number``). The device's blocks and
counter live in the replica file's meta table and advance in the same transaction as the ticket they number,
so a failed submit gives its number back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from caresync.core.ids import NUMBER_PATTERN
from caresync.errors import IntentError, InvalidInputError
from caresync.store.store import Store

__all__ = ["NumberBlock", "TicketNumbers", "fallback_number", "is_ticket_number"]

#: What a ticket number looks like: a block number (digits) or a fallback ``<origin>-<n>``.
_NUMBER_RE = re.compile(NUMBER_PATTERN)
_BLOCKS_KEY = "ticket_number_blocks"
_LOCAL_KEY = "ticket_number_local"
_MAX = 10**12 - 1


@dataclass(frozen=True)
class NumberBlock:
    """A range of ticket numbers the server reserved for this device: ``start`` to ``start + count - 1``.

    ``used`` says how many of them this device has handed out.
    """

    start: int
    count: int
    used: int

    @property
    def end(self) -> int:
        """The last number of the block."""
        return self.start + self.count - 1

    @property
    def left(self) -> int:
        """How many numbers of the block are still free."""
        return self.count - self.used


def fallback_number(origin: str, counter: int) -> str:
    """The provisional number a device gives its ``counter``-th ticket when it has no reserved block:
    ``<origin>-<n>``."""
    return f"{origin}-{counter}"


def is_ticket_number(text: str) -> bool:
    """True when ``text`` has the form of a ticket number (not whether such a ticket exists)."""
    return bool(_NUMBER_RE.match(text))


class TicketNumbers:
    """This device's source of ticket numbers (``replica.numbers``).

    Blocks added with :meth:`add_block` are used first, oldest first; then provisional numbers.
    """

    def __init__(self, store: Store, origin: str) -> None:
        self._store = store
        self._origin = origin

    def _blocks(self) -> list[list[int]]:
        raw = self._store.get_meta(_BLOCKS_KEY)
        blocks: list[list[int]] = json.loads(raw) if raw else []
        return blocks

    def blocks(self) -> list[NumberBlock]:
        """The blocks installed on this device, with how much of each is used."""
        return [NumberBlock(start=s, count=c, used=u) for s, c, u in self._blocks()]

    def add_block(self, start: int, count: int) -> NumberBlock:
        """Installs a block of numbers the sync server reserved for this device (a sync does it; the block must
        come from the server, which alone knows which numbers no other device was given).

        Args:
            start: the first number of the block (1 or more).
            count: how many numbers (1 or more).

        Raises:
            InvalidInputError: start or count is not a positive whole number.
            IntentError: the block overlaps one this device already holds (the server gave it twice).
        """
        problems = [
            (name, f"must be a whole number of 1 or more, got {value!r}")
            for name, value in (("start", start), ("count", count))
            if isinstance(value, bool) or not isinstance(value, int) or value < 1
        ]
        if not problems and start + count - 1 > _MAX:
            problems.append(("count", f"the block would end past {_MAX}"))
        if problems:
            raise InvalidInputError("Cannot add the block of ticket numbers", problems, key="numbers.bad_block")
        with self._store.write():  # read and write the blocks in one transaction
            blocks = self._blocks()
            for s, c, _ in blocks:
                if start <= s + c - 1 and s <= start + count - 1:
                    raise IntentError(
                        f"The block {start}-{start + count - 1} overlaps the block {s}-{s + c - 1} this device "
                        "already holds; ask the station for a new block.",
                        key="numbers.overlap",
                        fields={"start": start, "end": start + count - 1, "held_start": s, "held_end": s + c - 1},
                    )
            blocks.append([start, count, 0])
            self._store.set_meta(_BLOCKS_KEY, json.dumps(blocks))
        return NumberBlock(start=start, count=count, used=0)

    def peek(self) -> str:
        """The number the next ticket submitted on this device will get."""
        for s, c, u in self._blocks():
            if u < c:
                return str(s + u)
        return fallback_number(self._origin, int(self._store.get_meta(_LOCAL_KEY) or 0) + 1)

    def take(self) -> str:
        """Hands out the next number (a provisional one when no block is left). Call it inside the transaction
        that stores the ticket (``replica.batch()``) so a failed submit gives it back."""
        number = self.take_from_block()
        if number is not None:
            return number
        counter = int(self._store.get_meta(_LOCAL_KEY) or 0) + 1
        self._store.set_meta(_LOCAL_KEY, str(counter))
        return fallback_number(self._origin, counter)

    def take_from_block(self) -> str | None:
        """Hands out the next number of a block, None when no block has one left (inside a transaction)."""
        blocks = self._blocks()
        for block in blocks:
            start, count, used = block
            if used < count:
                block[2] = used + 1
                self._store.set_meta(_BLOCKS_KEY, json.dumps(blocks))
                return str(start + used)
        return None
