"""Human-readable ticket numbers that a clerk can tell a resident on the spot, even offline.

A ticket's id (``T-<origin>-<seq>``) is its identity in the op log; its *number* is for people. A device
takes numbers, in order, from blocks the sync server reserved for it (``add_block(start, count)``; a sync asks
the server for a new block, ``POST /v1/numbers``, when fewer than 20 numbers are left): short
decimal numbers such as ``1042`` that no other device was given. With no block left, the device falls back
to ``<origin>-<n>``: its own origin (unique to the device, as it is the fingerprint of the device's key)
and a counter kept on the device, so two devices can never hand out the same number, even if neither has
ever been online. The two forms cannot collide with each other either (one is digits only, the other holds
a dash).

The number is written once, in the ``ticket.create`` op's body (field ``number``); it is never edited. The
device's blocks and counter live in the replica file's meta table and advance in the same transaction as
the ticket they number, so a failed submit gives its number back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from caresync.errors import IntentError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from caresync.core.model import Ticket
    from caresync.replica import Replica

__all__ = ["NUMBER_PATTERN", "NumberBlock", "TicketNumbers", "fallback_number", "find_ticket", "is_ticket_number"]

#: What a ticket number looks like: a block number (digits) or a fallback ``<origin>-<n>``.
NUMBER_PATTERN = r"^(?:[1-9][0-9]{0,11}|[0-9a-f]{16}-[1-9][0-9]{0,11})$"
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
    """The number a device gives its ``counter``-th ticket when it has no reserved block: ``<origin>-<n>``."""
    return f"{origin}-{counter}"


def is_ticket_number(text: str) -> bool:
    """True when ``text`` has the form of a ticket number (not whether such a ticket exists)."""
    return bool(_NUMBER_RE.match(text))


class TicketNumbers:
    """This device's source of ticket numbers (``replica.numbers``).

    Blocks added with :meth:`add_block` are used first, oldest first; then the never-colliding fallback.
    """

    def __init__(self, replica: Replica) -> None:
        self._r = replica

    def _blocks(self) -> list[list[int]]:
        raw = self._r._store.get_meta(_BLOCKS_KEY)
        blocks: list[list[int]] = json.loads(raw) if raw else []
        return blocks

    def blocks(self) -> list[NumberBlock]:
        """The blocks installed on this device, with how much of each is used."""
        return [NumberBlock(start=s, count=c, used=u) for s, c, u in self._blocks()]

    def add_block(self, start: int, count: int) -> NumberBlock:
        """Installs a block of numbers the sync server reserved for this device; used before the fallback.

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
            raise InvalidInputError("Cannot add the block of ticket numbers", problems)
        with self._r._store.write():  # read and write the blocks in one transaction
            blocks = self._blocks()
            for s, c, _ in blocks:
                if start <= s + c - 1 and s <= start + count - 1:
                    raise IntentError(
                        f"The block {start}-{start + count - 1} overlaps the block {s}-{s + c - 1} this device "
                        "already holds; ask the station for a new block."
                    )
            blocks.append([start, count, 0])
            self._r._store.set_meta(_BLOCKS_KEY, json.dumps(blocks))
        return NumberBlock(start=start, count=count, used=0)

    def peek(self) -> str:
        """The number the next ticket submitted on this device will get."""
        for s, c, u in self._blocks():
            if u < c:
                return str(s + u)
        return fallback_number(self._r.id, int(self._r._store.get_meta(_LOCAL_KEY) or 0) + 1)

    def take(self) -> str:
        """Hands out the next number. Call it inside the transaction that stores the ticket (``replica.batch()``)
        so a failed submit gives it back."""
        blocks = self._blocks()
        for block in blocks:
            start, count, used = block
            if used < count:
                block[2] = used + 1
                self._r._store.set_meta(_BLOCKS_KEY, json.dumps(blocks))
                return str(start + used)
        counter = int(self._r._store.get_meta(_LOCAL_KEY) or 0) + 1
        self._r._store.set_meta(_LOCAL_KEY, str(counter))
        return fallback_number(self._r.id, counter)


def find_ticket(replica: Replica, ref: str) -> Ticket:
    """The ticket a clerk means by ``ref``: its number (what the resident was told), its id, or the end of a
    fallback number from the last four characters of the device on (``eb50-17`` for
    ``3f9a0c1d2b4eeb50-17``), when only one ticket here ends that way.

    Raises:
        NotFoundError: no ticket with that number or id on this device.
        IntentError: the end of a fallback number matches several tickets (the message lists them).
    """
    ref = ref.strip()
    if ref.startswith("T-"):
        return replica.tickets.get(ref)
    tail = _TAIL_RE.match(ref)
    if is_ticket_number(ref) or tail:
        tickets = replica.tickets.list(include_deleted=True)
        for ticket in tickets:
            if ticket.number == ref:
                return ticket
        if tail:
            found = [t for t in tickets if t.number and "-" in t.number and t.number.endswith(ref)]
            if len(found) == 1:
                return found[0]
            if found:
                numbers = ", ".join(sorted(t.number or "" for t in found))
                raise IntentError(f"{ref!r} is the end of several ticket numbers ({numbers}); give the whole number.")
    raise NotFoundError(
        f"No ticket with number or id {ref!r} on this device. Check the number on the slip, or sync to fetch it."
    )


_TAIL_RE = re.compile(r"^[0-9a-f]{4,15}-[1-9][0-9]{0,11}$")
