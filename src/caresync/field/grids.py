"""The grids a deployment knows, as this device sees them, and the check of a grid a person typed against them.

A grid is known when a record held here lies in it or under it (residents, tickets, workers' grids, mailboxes,
parcels), or when this device is enrolled for it. A typed grid that is not known is most often a typo
(``Changnan Dorm`` for ``changnan/dorm``): :func:`check_known_grid` refuses it with the closest known grids. A new
building in a known area (its parent is known) is accepted, as a station registers buildings as residents move in;
anything newer needs the caller's explicit word (``new=True``, ``--new-grid`` on the command line).
"""

from __future__ import annotations

import difflib

from caresync.core.domain import grid_parent
from caresync.errors import InvalidInputError
from caresync.replica import Replica

__all__ = ["check_known_grid", "known_grids"]


def known_grids(replica: Replica) -> set[str]:
    """Every grid a record held here lies in, with the grids above it, and the grids this device is enrolled for
    (not the empty "everywhere")."""
    grids: set[str] = {r.grid for r in replica.residents.list()}
    grids.update(t.grid for t in replica.tickets.list())
    grids.update(m.grid for m in replica.mailboxes.list())
    grids.update(p.grid for p in replica.parcels.list())
    for worker in replica.workers.list():
        grids.update(worker.grids)
    enrolled = replica.enrolment()
    if enrolled is not None:
        grids.update(g for g in enrolled.grids if g)
    with_parents = set()
    for grid in grids:
        while grid:
            with_parents.add(grid)
            grid = grid_parent(grid) or ""
    return with_parents


def check_known_grid(replica: Replica, grid: str, *, new: bool = False, filtering: bool = False) -> str:
    """``grid`` when the deployment knows it; else an :class:`InvalidInputError` naming the closest known grids.

    Args:
        grid: what the person typed.
        new: the person says it is a new grid (``--new-grid``): any well-formed grid is accepted.
        filtering: the grid only narrows a list or a report: it must be known itself (a new building under a
            known area holds nothing yet, so a filter on it is a typo too).

    Raises:
        InvalidInputError: the grid is not known (the message lists the closest known ones, "did you mean").
    """
    known = known_grids(replica)
    if new or not known or grid in known:
        return grid
    parent = grid_parent(grid)
    if not filtering and parent is not None and parent in known:
        return grid  # a new building in a known area
    close = difflib.get_close_matches(grid, sorted(known), n=3, cutoff=0.5)
    close += [g for g in sorted(known) if g.casefold() == grid.casefold() and g not in close]
    hint = (
        f"did you mean {' or '.join(close)}?" if close else f"the grids known here are {', '.join(sorted(known)[:8])}"
    )
    advice = "" if filtering else " (if it is a new grid, say so with --new-grid)"
    raise InvalidInputError(
        f"No grid {grid!r} in this deployment{advice}",
        [("grid", hint)],
        key="grid.unknown" if filtering else "grid.unknown_new",
        fields={"grid": grid, "close": close, "known": sorted(known)[:8]},
    )
