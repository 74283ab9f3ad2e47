"""``caresync dispute``: mediation (和事佬): open a dispute, its parties, sessions and outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from caresync.cli._common import Env, common_options, enum_choice, now_utc, parse_past_moment
from caresync.cli.ticket import ticket_done, ticket_json
from caresync.core.domain import (
    Channel,
    DisputeOutcome,
)

if TYPE_CHECKING:
    pass

__all__ = ["dispute"]


def _party(text: str) -> tuple[str, str | None]:
    name, _, side = text.partition(":")
    return name.strip(), (side.strip() or None)


@click.group()
def dispute() -> None:
    """Mediation (和事佬): open a dispute, record sessions, record the outcome."""


@dispute.command("open")
@click.option("--title", required=True)
@click.option("--grid", required=True)
@click.option("--party", "parties", multiple=True, help="NAME or NAME:SIDE; repeat for each party.")
@click.option("--resident", "resident_id", default=None)
@click.option("--channel", type=enum_choice(Channel), default="walk_in", show_default=True)
@click.option("--description", default=None)
@click.option("--mediator", default=None, help="Who will mediate.")
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def dispute_open(
    env: Env,
    title: str,
    grid: str,
    parties: tuple[str, ...],
    resident_id: str | None,
    channel: str,
    description: str | None,
    mediator: str | None,
    new_grid: bool,
) -> None:
    """Opens a dispute for mediation, with its parties, in one step."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        with replica.batch():
            made = replica.tickets.submit(
                title=title,
                kind="dispute",
                grid=grid,
                channel=channel,
                resident_id=resident_id,
                description=description,
            )
            for text in parties:
                name, side = _party(text)
                replica.tickets.add_party(made.id, name=name, side=side)
            if mediator:
                replica.tickets.edit(made.id, mediator=mediator)
        fresh = replica.tickets.get(made.id)
        env.out(ticket_json(fresh, now_utc()), env.t("dispute.opened", number=fresh.number, parties=len(parties)))


@dispute.command("party")
@click.argument("ref")
@click.argument("party")
@click.option("--resident", "resident_id", default=None)
@common_options
def dispute_party(env: Env, ref: str, party: str, resident_id: str | None) -> None:
    """Adds a party (NAME or NAME:SIDE) to a dispute."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        name, side = _party(party)
        replica.tickets.add_party(found.id, name=name, side=side, resident_id=resident_id)
        ticket_done(env, replica, found, "dispute.party_added")


@dispute.command("session")
@click.argument("ref")
@click.option("--mediator", required=True)
@click.option("--summary", required=True, help="What was said and agreed.")
@click.option("--attendee", "attendees", multiple=True)
@click.option("--at", "held_at", default=None, help="When it was held (default now), e.g. 2026-11-29T14:30.")
@common_options
def dispute_session(
    env: Env, ref: str, mediator: str, summary: str, attendees: tuple[str, ...], held_at: str | None
) -> None:
    """Records a mediation session."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    when = None if held_at is None else parse_past_moment(held_at, "at")
    with env.open() as replica:
        found = find_ticket(replica, ref)
        replica.tickets.record_session(found.id, mediator=mediator, summary=summary, held_at=when, attendees=attendees)
        ticket_done(env, replica, found, "dispute.session_added")


@dispute.command("outcome")
@click.argument("ref")
@click.argument("outcome", type=enum_choice(DisputeOutcome))
@click.option("--mediator", default=None)
@click.option("--close", "close", is_flag=True, help="Also resolve and return (close) the dispute.")
@common_options
def dispute_outcome(env: Env, ref: str, outcome: str, mediator: str | None, close: bool) -> None:
    """Records how the mediation ended: settled, not_settled or referred (a dispute closes only with one)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        with replica.batch():
            replica.tickets.set_outcome(found.id, outcome, mediator=mediator)
            if close:
                if replica.tickets.get(found.id).is_open:
                    replica.tickets.resolve(found.id, resolution=outcome)
                replica.tickets.close(found.id)
        ticket_done(env, replica, found, "dispute.outcome_set")
