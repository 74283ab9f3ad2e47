"""``caresync demo``, ``caresync inspect`` and ``caresync sync``: a demo of offline replicas merging, a look
inside a replica file, and a sync of this device (or of any replica file) with a server.

The CLI is thin: it parses, calls the library, renders. Every error a user can meet is a CaresyncError,
shown as one line and exit code 1, never a traceback (see ``_common.StationGroup``).
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..errors import CaresyncError
from ..netsync import SyncProgress
from ..replica import Replica
from ..testing import FakeClock
from ._common import Env, common_options

__all__ = ["demo", "enroll", "inspect", "sync"]

HOUR = 3_600_000


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except CaresyncError as exc:
        raise click.ClickException(str(exc)) from exc


def _demo_world(root: Path, seed: int, step: Callable[[str], None]) -> dict[str, Any]:
    """A day in one neighbourhood: five devices work offline, then sync pairwise. Returns what happened."""
    rng = random.Random(seed)
    start = 1_796_083_200_000 + rng.randrange(0, 30) * 86_400_000
    devices = {
        "station": ("clerk-zhang", 0),
        "grid-li": ("grid-li", 2_000),
        "grid-wang": ("grid-wang", -1_500),
        "knocker-fang": ("knocker-fang", 3 * 86_400_000),  # this phone's clock is three days ahead
        "courier-chen": ("courier-chen", 500),
    }
    clocks = {name: FakeClock(start + skew, step_ms=1) for name, (_, skew) in devices.items()}
    with ExitStack() as stack:
        r = {
            name: stack.enter_context(Replica.open(root / f"{name}.db", actor=actor, now_ms=clocks[name]))
            for name, (actor, _) in devices.items()
        }
        station = r["station"]
        step("station registers residents, a mailbox and the morning's requests")
        grid = "changnan/teachers-dorm/3"
        wang = station.residents.register(
            name="Old Wang", grid=grid, flags=["lives_alone", "elderly"], knock_every_days=2, birth_year=1938
        )
        liu = station.residents.register(name="Grandma Liu", grid=grid, flags=["elderly"], knock_every_days=7)
        box = station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7")
        tank = station.tickets.submit(
            title="Septic tank blocked, 30 households", kind="repair", grid=grid, resident_id=liu.id
        )
        noise = station.tickets.submit(title="Renovation noise at night", kind="dispute", grid=grid)
        parcel = station.parcels.register(
            code="P-0417", grid="changnan/lane-7", mailbox_id=box.id, summary="pension form"
        )
        station.parcels.hop(parcel.id, "dropped", place="MB-07")
        for name, replica in r.items():
            if name != "station":
                replica.sync_with(station)

        step("everyone works offline: two grid workers take the same request")
        r["grid-li"].tickets.accept(tank.id, assignee="grid-li")
        r["grid-wang"].tickets.accept(tank.id, assignee="grid-wang")
        r["grid-wang"].tickets.note(tank.id, "called the sanitation team")
        r["grid-li"].tickets.edit(tank.id, title="Septic tank blocked (teachers' dorm, 30 households)")
        r["grid-wang"].tickets.edit(tank.id, title="Septic tank overflowing")
        r["knocker-fang"].visits.record(resident_id=wang.id, outcome="no_answer", note="knocked twice")
        r["knocker-fang"].visits.record(resident_id=liu.id, outcome="well")
        r["courier-chen"].parcels.hop(parcel.id, "picked_up", place="MB-07")
        station.tickets.add_party(noise.id, name="Mr Chen", side="renovating")
        station.tickets.add_party(noise.id, name="Ms Zhou", side="downstairs")
        station.tickets.accept(noise.id, assignee="peacemaker-hu")
        for clock in clocks.values():
            clock.advance(4 * HOUR)

        step("back online: devices sync in pairs, in any order")
        names = list(r)
        pairs = [(a, b) for a in names for b in names if a < b]
        rng.shuffle(pairs)
        for a, b in pairs:
            r[a].sync_with(r[b])
        raised = [c.describe() for c in station.conflicts()]

        step("the station settles the conflicts with ordinary edits, and the work goes on")
        for conflict in station.conflicts():
            station.resolve(conflict, "grid-li" if conflict.field == "assignee" else None)
        station.tickets.start(tank.id, actor="grid-li")
        station.tickets.resolve(tank.id, resolution="pipe cleared", actor="grid-li")
        station.tickets.close(tank.id)
        station.tickets.rate(tank.id, score=5, comment="fixed within two days")
        station.tickets.record_session(noise.id, mediator="Teacher Hu", summary="works 9:00-17:00 only")
        station.tickets.set_outcome(noise.id, "settled", mediator="Teacher Hu")
        station.tickets.resolve(noise.id)
        station.tickets.close(noise.id)
        r["courier-chen"].sync_with(station)
        r["courier-chen"].parcels.hop(parcel.id, "handed_in", place="station")
        for name in names[1:]:
            r[name].sync_with(station)
        for name in names[1:]:
            r[name].sync_with(station)

        tickets = station.tickets.list(include_deleted=True)
        return {
            "folder": str(root),
            "devices": {
                name: {"file": str(rep.path), "id": rep.id, "ops": rep.op_count(), "digest": rep.state_digest()}
                for name, rep in r.items()
            },
            "conflicts_raised": raised,
            "conflicts_left": [c.describe() for c in station.conflicts()],
            "tickets": [
                {
                    "id": t.id,
                    "title": t.title,
                    "status": t.status.value,
                    "assignee": t.assignee,
                    "rating": t.rating.score if t.rating else None,
                }
                for t in tickets
            ],
            "clock_anomalies": [
                {"device": a.device, "hours_ahead": round(a.ahead_ms / HOUR, 1)} for a in station.clock_anomalies()
            ],
            "visits": len(station.visits.list()),
            "parcel_stage": station.parcels.get(parcel.id).stage,
        }


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to leave the replica files (default: a new temporary folder).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Makes the run repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def demo(folder: Path | None, seed: int, as_json: bool) -> None:
    """Five offline devices record a day's work, conflict, sync and converge (SQLite files, no server)."""
    root = folder or Path(tempfile.mkdtemp(prefix="caresync-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.glob("*.db")):
        raise click.ClickException(f"{root} already holds replica files; choose an empty folder with --dir.")
    console = Console(stderr=as_json)
    with _errors(), Progress(console=console, transient=True) as progress:
        task = progress.add_task("demo", total=4)

        def step(text: str) -> None:
            progress.console.print(f"[bold]•[/bold] {text}")
            progress.advance(task)

        outcome = _demo_world(root, seed, step)
    if as_json:
        click.echo(json.dumps(outcome, ensure_ascii=False, indent=2, default=str))
        return
    console.print("\n[bold]Conflicts raised while offline[/bold] (nothing was lost; people decide):")
    for line in outcome["conflicts_raised"]:
        console.print(f"  - {line}")
    console.print(f"Conflicts left after the station's edits: {len(outcome['conflicts_left'])}")
    for a in outcome["clock_anomalies"]:
        console.print(f"Clock warning: device {a['device']} stamps ops {a['hours_ahead']} hours ahead")
    table = Table(title="Tickets at the station")
    for col in ("id", "title", "status", "assignee", "rating"):
        table.add_column(col)
    for t in outcome["tickets"]:
        table.add_row(t["id"], t["title"], t["status"], str(t["assignee"]), str(t["rating"] or ""))
    console.print(table)
    devices = Table(title="Every device holds the same ops and state")
    for col in ("device", "ops", "state digest", "file"):
        devices.add_column(col)
    for name, d in outcome["devices"].items():
        devices.add_row(name, str(d["ops"]), d["digest"][:16], d["file"])
    console.print(devices)
    same = len({d["digest"] for d in outcome["devices"].values()}) == 1
    console.print("[green]converged[/green]" if same else "[red]NOT converged[/red]")
    console.print(f"Explore the files with: caresync inspect {root}/station.db")
    if not same:
        raise SystemExit(1)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect(path: Path, as_json: bool) -> None:
    """What a replica file holds: its id, ops, records, conflicts and deferred ops."""
    with _errors(), Replica.open(path, actor="inspect") as replica:
        info = {
            "replica": replica.id,
            "ops": replica.op_count(),
            "devices": replica.version_vector(),
            "tickets": len(replica.tickets.list(include_deleted=True)),
            "residents": len(replica.residents.list(include_deleted=True)),
            "visits": len(replica.visits.list(include_deleted=True)),
            "parcels": len(replica.parcels.list(include_deleted=True)),
            "conflicts": [c.describe() for c in replica.conflicts()],
            "deferred": [{"kind": k, "version": v, "count": n} for k, v, n in replica.deferred()],
            "digest": replica.state_digest(),
        }
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    for key, value in info.items():
        click.echo(f"{key}: {value}")


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[PATH] CODE")
@click.option("--server", "url", required=True, envvar="CARESYNC_SERVER", help="The sync server's address.")
@common_options
def enroll(env: Env, args: tuple[str, ...], url: str) -> None:
    """Enrols this device (or the replica file PATH) with a caresync server, once, with the one-time CODE the
    station printed; afterwards `caresync sync` needs no address and no token (it renews its token itself)."""
    if len(args) not in (1, 2):
        raise click.UsageError(env.t("enroll.usage"))
    opened: AbstractContextManager[Replica]
    if len(args) == 1:
        opened = env.open(writes=False)
    else:
        opened = Replica.open(Path(args[0]), actor=env.actor or env.config().get("actor") or "sync")
    with _errors(), opened as replica:
        found = replica.enroll(url, args[-1])
    grids = ", ".join(g or env.t("enroll.everywhere") for g in found.grids)
    env.out(
        {"device": found.device, "role": found.role.value, "grids": list(found.grids), "url": found.server_url},
        env.t("enroll.done", device=found.device, role=found.role.value, grids=grids, url=found.server_url),
    )


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--server", "url", default=None, envvar="CARESYNC_SERVER", help="The sync server's address.")
@click.option("--token", default=None, envvar="CARESYNC_TOKEN", help="This device's token (enrolled: not needed).")
@common_options
def sync(env: Env, path: Path | None, url: str | None, token: str | None) -> None:
    """Syncs this device (or the replica file PATH) with a caresync server: sends what it has not acknowledged,
    fetches the rest.

    A file enrolled with `caresync enroll` syncs with its server and renews its token by itself; otherwise give
    --server and --token. Safe to interrupt: the next run resumes where this one stopped. Ops the server refused
    stay on the device and are listed with the server's reason.
    """
    if token is not None:
        url = url or env.config().get("server")
        if not url:
            raise CaresyncError(env.t("err.no_server"))
    as_json = env.as_json
    opened: AbstractContextManager[Replica]
    if path is None:
        opened = env.open(writes=False)  # a sync records nothing of its own: no actor needed
    else:
        actor = env.actor or env.config().get("actor") or "sync"
        opened = Replica.open(path, actor=actor)
    console = Console(stderr=True, quiet=as_json)
    with _errors(), opened as replica, Progress(console=console, transient=True) as bars:
        tasks: dict[str, Any] = {}

        def progress(p: SyncProgress) -> None:
            label = "sending" if p.phase == "push" else "receiving"
            if p.phase not in tasks:
                tasks[p.phase] = bars.add_task(label, total=p.total)
            bars.update(tasks[p.phase], completed=p.done, description=f"{label} ({p.done:,} ops)")

        result = replica.sync(url, token=token, progress=progress)
        info = {
            "replica": replica.id,
            "sent": result.pushed,
            "already_held": result.already_held,
            "received": result.pulled,
            "waiting": result.waiting,
            "unsent": result.unsent,
            "refused": [{"op": r.op, "kind": r.kind, "record": r.record, "reason": r.reason} for r in result.refused],
            "clock_offset_ms": result.clock_offset_ms,
        }
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    line = env.t("sync.done", sent=f"{result.pushed:,}", received=f"{result.pulled:,}", unsent=f"{result.unsent:,}")
    if result.waiting:
        line += env.t("sync.waiting", n=f"{result.waiting:,}")
    click.echo(line)
    for r in result.refused:
        click.echo(env.t("sync.refused", kind=r.kind, record=r.record, reason=r.reason))
