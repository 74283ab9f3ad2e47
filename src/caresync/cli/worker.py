"""``caresync worker``: grid workers, knockers, mediators and couriers, with their grids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import Env, common_options, enum_choice
from caresync.core.domain import (
    Role,
)

if TYPE_CHECKING:
    from caresync.core.model import Worker

__all__ = ["worker"]


def _worker_json(w: Worker) -> dict[str, Any]:
    return w.model_dump(mode="json", exclude={"history"})


@click.group()
def worker() -> None:
    """Grid workers, knockers, mediators and couriers, with the grids they look after."""


@worker.command("add")
@click.option("--name", required=True)
@click.option("--role", type=enum_choice(Role), required=True)
@click.option("--grid", "grids", multiple=True, help="A grid they look after; repeat for several.")
@click.option("--phone", default=None)
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def worker_add(env: Env, name: str, role: str, grids: tuple[str, ...], phone: str | None, new_grid: bool) -> None:
    """Adds a worker."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grids = tuple(check_known_grid(replica, g, new=new_grid) for g in grids)
        made = replica.workers.add(name=name, role=role, grids=grids, phone=phone)
        env.out(_worker_json(made), env.t("worker.added", name=made.name, id=made.id))


@worker.command("list")
@click.option("--role", type=enum_choice(Role), default=None)
@common_options
def worker_list(env: Env, role: str | None) -> None:
    """Workers, optionally of one role."""
    with env.read() as replica:
        found = replica.workers.list(role=role)

    def text() -> None:
        for w in found:
            click.echo(f"{w.id}  {w.name}  {w.role.value}  {', '.join(w.grids)}")

    env.out({"workers": [_worker_json(w) for w in found]}, text)
