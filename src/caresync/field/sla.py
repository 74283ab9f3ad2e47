"""Service-level times of requests: when each is due, which are overdue, and the order a clerk works them in.

A ticket's due time is set when it is submitted (``Replica.open(due_hours=...)``: 48 hours by default, 2 for
an emergency, 24 for an early warning) and can be edited. An open ticket past its due time is *overdue*.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from caresync.core.model import Ticket

__all__ = ["is_overdue", "overdue_by", "sla_sorted"]


def is_overdue(ticket: Ticket, now: datetime) -> bool:
    """True when ``ticket`` is still open and its due time has passed."""
    return ticket.is_open and ticket.due_at < now


def overdue_by(ticket: Ticket, now: datetime) -> timedelta | None:
    """How long an open ticket is past due, or None when it is not overdue."""
    return now - ticket.due_at if is_overdue(ticket, now) else None


def sla_sorted(tickets: Iterable[Ticket], now: datetime) -> list[Ticket]:
    """Overdue tickets first (longest overdue first), then the rest, soonest due first."""
    return sorted(tickets, key=lambda t: (not is_overdue(t, now), t.due_at, t.id))
