"""Shared by the network sync tests: random offline work for a device, and a link that drops."""

from __future__ import annotations

import random
from typing import Any

import httpx

from caresync import CaresyncError, Replica

GRIDS = ["changnan/dorm/3", "changnan/dorm/4", "xishan/lane-2/7"]


def random_work(replica: Replica, rng: random.Random, steps: int) -> int:
    """Does ``steps`` random pieces of work a station device might do offline; returns how many ops it made.

    Picks among the records the replica already holds (its own and synced ones), so devices edit each
    other's tickets and clash. Actions that make no sense for a record's status are skipped.
    """
    before = replica.unsent_count()
    tickets = [t.id for t in replica.tickets.list()]
    residents = [r.id for r in replica.residents.list()]
    parcels = [p.id for p in replica.parcels.list()]
    for _ in range(steps):
        action = rng.choice(
            ["submit", "submit", "title", "priority", "accept", "resolve", "note", "resident", "visit", "parcel", "hop"]
        )
        try:
            if action == "submit" or not tickets:
                grid = rng.choice(GRIDS)
                tickets.append(
                    replica.tickets.submit(title=f"Request {rng.randrange(10**6)}", kind="repair", grid=grid).id
                )
            elif action == "title":
                replica.tickets.edit(rng.choice(tickets), title=f"Retitled {rng.randrange(10**6)}")
            elif action == "priority":
                replica.tickets.edit(rng.choice(tickets), priority=rng.choice(["low", "normal", "high"]))
            elif action == "accept":
                replica.tickets.accept(rng.choice(tickets), assignee=f"worker-{rng.randrange(3)}")
            elif action == "resolve":
                replica.tickets.resolve(rng.choice(tickets), resolution="fixed")
            elif action == "note":
                replica.tickets.note(rng.choice(tickets), f"called back {rng.randrange(100)}")
            elif action == "resident" or not residents:
                residents.append(
                    replica.residents.register(name=f"Resident {rng.randrange(1000)}", grid=rng.choice(GRIDS)).id
                )
            elif action == "visit":
                replica.visits.record(resident_id=rng.choice(residents), outcome=rng.choice(["well", "no_answer"]))
            elif action == "parcel" or not parcels:
                parcels.append(replica.parcels.register(code=f"P{rng.randrange(10**6)}", grid=rng.choice(GRIDS)).id)
            else:
                replica.parcels.hop(rng.choice(parcels), rng.choice(["dropped", "picked_up", "at_station"]))
        except CaresyncError:
            continue  # e.g. resolving a ticket nobody accepted: the device refuses it locally, nothing is made
    return replica.unsent_count() - before


class FlakyTransport(httpx.BaseTransport):
    """A real HTTP transport whose link drops: after the server answered a request, with probability ``cut``,
    the answer is lost on the way back (raises ``httpx.ReadError``), as when a phone leaves coverage.

    The request did reach the server and was processed, which is the hard case: the device must not assume
    either outcome. Nothing about the server or the client is simulated."""

    def __init__(self, rng: random.Random, cut: float, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.rng = rng
        self.cut = cut
        self.cuts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.rng.random() < self.cut:
            response.read()
            response.close()
            self.cuts += 1
            raise httpx.ReadError("link dropped (test)", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def all_ops(replica: Replica) -> set[tuple[str, int]]:
    """Every op identity the replica holds."""
    return {(o, s) for o, s in replica.device_log.store.sql("SELECT origin, seq FROM ops")}


def describe(replica: Replica) -> dict[str, Any]:
    """What a failing test prints about a device."""
    return {"id": replica.id, "ops": replica.op_count(), "unsent": replica.unsent_count()}
