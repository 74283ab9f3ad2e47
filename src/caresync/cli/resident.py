"""``caresync resident``: the residents the station serves, and how often to knock on their door."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import Env, common_options, enum_choice, fmt_time
from caresync.core.domain import (
    ResidentFlag,
    in_grid,
)
from caresync.errors import InvalidInputError

if TYPE_CHECKING:
    from caresync.core.model import Resident

__all__ = ["resident", "resident_json"]


def resident_json(resident: Resident) -> dict[str, Any]:
    """A resident as JSON (without the change history)."""
    return resident.model_dump(mode="json", exclude={"history"})


@click.group()
def resident() -> None:
    """Residents the station serves, and how often to knock on their door."""


_RESIDENT_OPTIONS = [
    click.option("--address", default=None),
    click.option("--phone", default=None),
    click.option("--flag", "flags", multiple=True, type=enum_choice(ResidentFlag), help="Repeat for several."),
    click.option(
        "--knock-every", "knock_every", type=click.IntRange(1, 365), default=None, help="Days between knocks."
    ),
    click.option("--birth-year", type=int, default=None),
]


def _resident_options(func: Any) -> Any:
    for option in reversed(_RESIDENT_OPTIONS):
        func = option(func)
    return func


@resident.command("add")
@click.option("--name", required=True)
@click.option("--grid", required=True, help="community/area/building")
@_resident_options
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def resident_add(
    env: Env,
    name: str,
    grid: str,
    address: str | None,
    phone: str | None,
    flags: tuple[str, ...],
    knock_every: int | None,
    birth_year: int | None,
    new_grid: bool,
) -> None:
    """Registers a resident in a grid."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        made = replica.residents.register(
            name=name,
            grid=grid,
            address=address,
            phone=phone,
            flags=flags,
            knock_every_days=knock_every,
            birth_year=birth_year,
        )
        env.out(resident_json(made), env.t("resident.added", name=made.name, id=made.id))


@resident.command("list")
@click.option("--grid", default=None, help="Only this grid and the grids in it.")
@common_options
def resident_list(env: Env, grid: str | None) -> None:
    """Residents, by grid. Reads only what it shows of each resident (`resident show` gives one whole)."""
    from caresync.cli._table import table_text  # here, not at the top: keeps start-up fast
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        if grid is not None:
            check_known_grid(replica, grid, filtering=True)
        found = [r for r in replica.residents.summaries() if grid is None or in_grid(r.grid, grid)]
    found.sort(key=lambda r: (r.grid, r.name or "", r.id))

    def text() -> None:
        flags = {f: label("resident", f, env.lang) for r in found for f in r.flags}
        rows = [
            [
                r.id,
                r.name or "",
                r.grid,
                r.address or "",
                ", ".join(flags[f] for f in r.flags),
                str(r.knock_every_days or ""),
            ]
            for r in found
        ]
        headings = [env.t("field." + col) for col in ("id", "name", "grid", "address", "flags", "knock_every")]
        click.echo(table_text(env.t("resident.list_title", n=len(found)), headings, rows))

    if env.as_json:
        env.out({"residents": [r.to_json() for r in found]}, text)
    else:
        text()


@resident.command("show")
@click.argument("resident_id")
@common_options
def resident_show(env: Env, resident_id: str) -> None:
    """One resident, with their recent knocks and requests: RESIDENT_ID is their id, or their name when only one
    resident here has it."""
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast
    from caresync.replica import find_resident  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = find_resident(replica, resident_id)
        resident_id = found.id
        visits = replica.visits.list(resident_id=resident_id)[:10]
        tickets = replica.tickets.list(resident_id=resident_id)
        data = {
            **resident_json(found),
            "visits": [v.model_dump(mode="json", exclude={"history"}) for v in visits],
            "tickets": [{"number": t.number, "id": t.id, "title": t.title, "status": t.status.value} for t in tickets],
        }

    def text() -> None:
        console = env.console()
        for key, value in (
            ("id", found.id),
            ("name", found.name or ""),
            ("grid", found.grid),
            ("address", found.address or ""),
            ("phone", found.phone or ""),
            ("flags", ", ".join(label("resident", f, env.lang) for f in found.flags)),
            ("knock_every", found.knock_every_days or ""),
            ("birth_year", found.birth_year or ""),
        ):
            console.print(f"{env.t('field.' + key)}: {value}", markup=False)
        for v in visits:
            line = f"  {fmt_time(v.visited_at)} {v.visitor}: {label('visit', v.outcome, env.lang)} {v.note or ''}"
            console.print(line, markup=False)
        for t in tickets:
            console.print(f"  {t.number or t.id} {t.title} ({label('status', t.status, env.lang)})", markup=False)

    env.out(data, text)


@resident.command("edit")
@click.argument("resident_id")
@click.option("--name", default=None)
@click.option("--grid", default=None)
@_resident_options
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def resident_edit(
    env: Env,
    resident_id: str,
    name: str | None,
    grid: str | None,
    address: str | None,
    phone: str | None,
    flags: tuple[str, ...],
    knock_every: int | None,
    birth_year: int | None,
    new_grid: bool,
) -> None:
    """Changes a resident's details (only the options given; --flag replaces the flags)."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    changes: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", name),
            ("grid", grid),
            ("address", address),
            ("phone", phone),
            ("knock_every_days", knock_every),
            ("birth_year", birth_year),
        )
        if v is not None
    }
    if flags:
        changes["flags"] = list(flags)
    if not changes:
        raise InvalidInputError(env.t("resident.nothing"), [("options", "--name, --grid, --address, ...")])
    with env.open() as replica:
        if grid is not None:
            grid = check_known_grid(replica, grid, new=new_grid)
        from caresync.replica import find_resident  # here, not at the top: keeps start-up fast

        edited = replica.residents.edit(find_resident(replica, resident_id).id, **changes)
        env.out(resident_json(edited), env.t("resident.edited", name=edited.name, fields=", ".join(changes)))
