"""Mailbox and parcel commands for the station: ``mailbox add|list`` and
``parcel register|list|show|receipt|code|hop|return|anomalies``.

They sit on the library's mailboxes and parcels (:mod:`caresync.replica`), the custody chain
(:mod:`caresync.field.custody`) and the courier's rules (:mod:`caresync.field.courier`): receipting a courier's
hand-in is the station's half of the two-sided hand-over, and a delivery code is kept only as a salted hash, so a
new one is shown once, for the resident's slip, and never again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import Env, common_options, enum_choice, fmt_time
from caresync.core.domain import HopStage

if TYPE_CHECKING:
    from caresync.core.model import Mailbox, Parcel
    from caresync.field.custody import ContentCheck, CustodyStep
    from caresync.replica import Replica

__all__ = ["mailbox", "parcel"]


#: ``--new-grid``: the grid is new to the deployment (:func:`caresync.field.grids.check_known_grid`).
_NEW_GRID = click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)


def _mailbox_json(box: Mailbox) -> dict[str, Any]:
    return {"id": box.id, "code": box.code, "name": box.name, "grid": box.grid, "location": box.location}


def _parcel_json(parcel: Parcel) -> dict[str, Any]:
    from caresync.field.custody import handover_pending  # here, not at the top: keeps start-up fast

    return {
        "id": parcel.id,
        "code": parcel.code,
        "grid": parcel.grid,
        "direction": parcel.direction,
        "stage": parcel.stage.value if parcel.stage is not None else None,
        "holder": parcel.holder,
        "resident_id": parcel.resident_id,
        "mailbox_id": parcel.mailbox_id,
        "awaiting_receipt": handover_pending(parcel),
        "delivery_code_set": parcel.delivery_code_check is not None,
    }


def _step_json(step: CustodyStep, opened: dict[str, ContentCheck]) -> dict[str, Any]:
    check = opened.get(step.op)
    return {
        "stage": step.stage.value,
        "role": step.role,
        "who": step.who,
        "device": step.device,
        "at": step.when.isoformat(),
        "place": step.where,
        "confirmed_by": step.confirmed_by,
        "sealed_contents": step.sealed_contents,
        **({"contents": check.text, "contents_intact": check.intact} if check is not None else {}),
    }


#: What each custody anomaly (:func:`caresync.field.custody.anomalies`) is called, as a message key.
_ANOMALY_LABELS = {
    "picked_up_twice": "parcel.anomaly.picked_up_twice",
    "delivered_not_handed_in": "parcel.anomaly.delivered_not_handed_in",
    "self_receipted": "parcel.anomaly.self_receipted",
    "custody_conflict": "parcel.anomaly.custody_conflict",
    "duplicate_code": "parcel.anomaly.duplicate_code",
}


def _stage(parcel: Parcel) -> str:
    return parcel.stage.value if parcel.stage is not None else "registered"


@click.group()
def mailbox() -> None:
    """Neighbourhood mailboxes residents drop their paperwork in."""


@mailbox.command("add")
@click.argument("code")
@click.option("--name", required=True, help="What people call it (the lane, the building).")
@click.option("--grid", required=True, help="The grid it stands in.")
@click.option("--location", default=None, help="Where exactly, for a courier new to the round.")
@_NEW_GRID
@common_options
def mailbox_add(env: Env, code: str, name: str, grid: str, location: str | None, new_grid: bool) -> None:
    """Adds a mailbox by the code painted on it (MB-07)."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        made = replica.mailboxes.add(code=code, name=name, grid=grid, location=location)
    env.out(_mailbox_json(made), env.t("mailbox.added", code=made.code, name=made.name, grid=made.grid))


@mailbox.command("list")
@click.option("--grid", default=None, help="Only the mailboxes in this grid.")
@common_options
def mailbox_list(env: Env, grid: str | None) -> None:
    """The mailboxes, by code."""
    with env.read() as replica:
        found = sorted(replica.mailboxes.list(grid=grid), key=lambda m: m.code)

    def text() -> None:
        if not found:
            click.echo(env.t("mailbox.none"))
        for box in found:
            click.echo(f"{box.code}  {box.name}  {box.grid}  {box.location or ''}".rstrip())

    env.out({"mailboxes": [_mailbox_json(m) for m in found]}, text)


@click.group()
def parcel() -> None:
    """Parcels carried between mailboxes, the station and residents' doors, with their chain of custody."""


@parcel.command("register")
@click.argument("code")
@click.option("--grid", required=True, help="The resident's grid (building).")
@click.option(
    "--to-resident", is_flag=True, help="It goes from the station to a resident's door (else it comes in to us)."
)
@click.option("--resident", "resident_id", default=None, help="The resident's record id.")
@click.option("--mailbox", "mailbox_code", default=None, help="The mailbox it was dropped in (its code).")
@click.option("--summary", default=None, help="What it is, in a few words (kept private).")
@click.option("--delivery-code", default=None, help="The code on the resident's slip (only its hash is kept).")
@click.option("--new-code", is_flag=True, help="Make a delivery code for the slip and print it once.")
@_NEW_GRID
@common_options
def parcel_register(
    env: Env,
    code: str,
    grid: str,
    to_resident: bool,
    resident_id: str | None,
    mailbox_code: str | None,
    summary: str | None,
    delivery_code: str | None,
    new_code: bool,
    new_grid: bool,
) -> None:
    """Registers a parcel by the code on its envelope."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.trust.codes import new_delivery_code  # here, not at the top: keeps start-up fast

    if new_code and delivery_code is not None:
        raise click.UsageError("--new-code and --delivery-code: give one of them")
    slip = new_delivery_code() if new_code else delivery_code
    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        box_id = None
        if mailbox_code is not None:
            box_id = find_mailbox(replica, mailbox_code).id
        made = replica.parcels.register(
            code=code,
            grid=grid,
            direction="to_resident" if to_resident else "to_station",
            resident_id=resident_id,
            mailbox_id=box_id,
            summary=summary,
            delivery_code=slip,
        )
    lines = [env.t("parcel.registered", code=made.code, grid=made.grid)]
    if new_code:
        lines.append(env.t("parcel.code_new", code=made.code, delivery=slip))
    env.out({**_parcel_json(made), **({"delivery_code": slip} if new_code else {})}, "\n".join(lines))


def find_mailbox(replica: Replica, code: str) -> Mailbox:
    """The mailbox with this code. Raises CourierError ``no_mailbox``."""
    from caresync.field.courier import CourierError  # here, not at the top: keeps start-up fast

    box: Mailbox | None = replica.mailboxes.by_code(code)
    if box is None:
        raise CourierError("no_mailbox", mailbox=code)
    return box


@parcel.command("list")
@click.option("--stage", type=enum_choice(HopStage), default=None)
@click.option("--holder", default=None, help="Only the parcels this person holds.")
@click.option("--grid", default=None)
@common_options
def parcel_list(env: Env, stage: str | None, holder: str | None, grid: str | None) -> None:
    """Parcels, those waiting for the station's receipt first."""
    from caresync.field.custody import handover_pending  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = replica.parcels.list(stage=stage, holder=holder, grid=grid)
    found.sort(key=lambda p: (not handover_pending(p), p.code))

    def text() -> None:
        if not found:
            click.echo(env.t("parcel.none"))
        for p in found:
            line = f"{p.code}  {p.grid}  {_stage(p)}  {p.holder or '-'}"
            if handover_pending(p):
                line += "  " + env.t("parcel.awaiting")
            click.echo(line)

    env.out({"parcels": [_parcel_json(p) for p in found]}, text)


@parcel.command("show")
@click.argument("code")
@common_options
def parcel_show(env: Env, code: str) -> None:
    """One parcel with its chain of custody, hand-ins paired with the station's receipts."""
    from caresync.field.courier import find_parcel  # here, not at the top: keeps start-up fast
    from caresync.field.custody import chain, check_contents  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = find_parcel(replica, code)
        # the station opens what residents asked for (sealed to its key at the pickup) and checks it is intact
        opened = {c.op: c for c in check_contents(replica, found.id)} if replica.station_key is not None else {}
    steps = chain(found)

    def text() -> None:
        code_state = env.t("parcel.has_code" if found.delivery_code_check else "parcel.no_code")
        click.echo(
            env.t("parcel.head", code=found.code, grid=found.grid, stage=_stage(found), holder=found.holder or "-")
        )
        click.echo(f"  {found.direction}  {code_state}")
        for step in steps:
            line = f"  {fmt_time(step.when)}  {step.stage.value}  {step.who} ({step.device[-4:]})  {step.where or ''}"
            if step.role == "claim":
                line += "  " + (
                    env.t("parcel.receipted_by", who=step.confirmed_by)
                    if step.confirmed_by
                    else env.t("parcel.awaiting")
                )
            click.echo(line.rstrip())
            check = opened.get(step.op)
            if check is not None:
                shown = check.text if check.intact else env.t("parcel.contents_broken")
                click.echo("    " + env.t("parcel.contents", text=shown))

    env.out({**_parcel_json(found), "custody": [_step_json(s, opened) for s in steps]}, text)


@parcel.command("receipt")
@click.argument("code")
@common_options
def parcel_receipt(env: Env, code: str) -> None:
    """Confirms a courier's hand-in at the station, so custody passes to the station."""
    from caresync.field.courier import confirm_handover, find_parcel  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        claimant = find_parcel(replica, code).holder
        done = confirm_handover(replica, code, actor=env.who())
    env.out(_parcel_json(done), env.t("parcel.receipted", code=done.code, holder=claimant or "-"))


@parcel.command("code")
@click.argument("code")
@click.option("--set", "given", default=None, help="Use this code (from a slip already printed) instead of a new one.")
@common_options
def parcel_code(env: Env, code: str, given: str | None) -> None:
    """Sets a parcel's delivery code: a new one, printed once for the resident's slip, or the one given."""
    from caresync.field.courier import find_parcel  # here, not at the top: keeps start-up fast
    from caresync.trust.codes import new_delivery_code  # here, not at the top: keeps start-up fast

    slip = new_delivery_code() if given is None else given
    with env.open() as replica:
        found = find_parcel(replica, code)
        had = found.delivery_code_check is not None
        done = replica.parcels.set_delivery_code(found.id, slip, actor=env.who())
    lines = [
        env.t("parcel.code_new", code=done.code, delivery=slip)
        if given is None
        else env.t("parcel.code_set", code=done.code)
    ]
    if had:
        lines.append(env.t("parcel.code_replaced"))
    env.out({**_parcel_json(done), **({"delivery_code": slip} if given is None else {})}, "\n".join(lines))


@parcel.command("hop")
@click.argument("code")
@click.argument("stage", type=enum_choice(HopStage))
@click.option("--place", default=None, help="Where it happened (a mailbox code, station, a building).")
@click.option("--reason", default=None, help="Why (needed for returned).")
@click.option("--confirm", "confirm_code", default=None, help="For delivered: the code on the resident's slip.")
@click.option(
    "--anyway", is_flag=True, help="Record a hop that does not follow the last one (it is listed in anomalies)."
)
@common_options
def parcel_hop(
    env: Env, code: str, stage: str, place: str | None, reason: str | None, confirm_code: str | None, anyway: bool
) -> None:
    """Records a hand-over the station made or saw: a clerk taking a parcel to a door (out_for_delivery, then
    delivered --confirm CODE), a resident's envelope dropped at the desk, a hop a courier could not record."""
    from caresync.field.courier import record_hop  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        done = record_hop(
            replica, code, stage, place=place, reason=reason, confirm_code=confirm_code, anyway=anyway, actor=env.who()
        )
    env.out(_parcel_json(done), env.t("parcel.hop", code=done.code, stage=_stage(done), who=done.holder or "-"))


@parcel.command("return")
@click.argument("code")
@click.option("--reason", required=True, help="Why it comes back (nobody home, wrong address, refused).")
@common_options
def parcel_return(env: Env, code: str, reason: str) -> None:
    """Records that a parcel came back to the station undelivered, saying why."""
    from caresync.field.courier import record_hop  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        done = record_hop(replica, code, HopStage.RETURNED, place="station", reason=reason, actor=env.who())
    env.out(_parcel_json(done), env.t("parcel.returned", code=done.code))


@parcel.command("anomalies")
@common_options
def parcel_anomalies(env: Env) -> None:
    """Parcels whose hand-overs do not add up: picked up twice, delivered but never receipted at the station,
    receipted on the courier's own device, hops made without seeing each other, one envelope code twice."""
    from caresync.field.custody import anomalies  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = anomalies(replica)

    def text() -> None:
        if not found:
            click.echo(env.t("parcel.no_anomalies"))
        for a in found:
            click.echo(
                f"{a.parcel_code}  {env.t(_ANOMALY_LABELS.get(a.code, 'parcel.anomaly.custody_conflict'))}  {a.message}"
            )

    data = [
        {"parcel_id": a.parcel_id, "parcel": a.parcel_code, "code": a.code, "message": a.message, "ops": a.ops}
        for a in found
    ]
    env.out({"anomalies": data}, text)
