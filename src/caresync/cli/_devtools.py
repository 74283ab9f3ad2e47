"""``caresync demo``, ``caresync inspect`` and ``caresync sync``: a demo of offline replicas merging, a look
inside a replica file, and a sync of this device (or of any replica file) with a server.

The CLI is thin: it parses, calls the library, renders. Every error a user can meet is a CaresyncError,
shown as one line and exit code 1, never a traceback (see ``_common.StationGroup``).
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import Env, common_options, fmt_time
from caresync.cli._json import dumps
from caresync.cli._waits import SyncTalk, wait_options
from caresync.cli.report import render_report
from caresync.errors import CaresyncError, ServerUnreachableError
from caresync.field.i18n import pick_language

if TYPE_CHECKING:
    from rich.console import Console

    from caresync.field.demo import DemoOutcome
    from caresync.replica import Replica

__all__ = ["demo", "enroll", "inspect", "sync"]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except CaresyncError as exc:
        raise click.ClickException(str(exc)) from exc


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console  # here, not at the top: keeps start-up fast

    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 140)


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to leave the replica files and the server's database (default: a new temporary folder).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Makes the run repeatable.")
@click.option("--days", type=click.IntRange(3, 28), default=7, show_default=True, help="Days to simulate.")
@click.option(
    "--residents", type=click.IntRange(10, 1_000_000), default=60, show_default=True, help="Residents in the city."
)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None, help="The report's language.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON (progress goes to stderr).")
def demo(folder: Path | None, seed: int, days: int, residents: int, lang: str | None, as_json: bool) -> None:
    """A simulated week of a neighbourhood station: eleven devices work offline and sync through a real
    caresync-server on a loopback port; prints the station's report, the conflicts settled and a proof that
    every device converged."""
    from rich.progress import Progress  # here, not at the top: keeps start-up fast

    from caresync.field.demo import DemoConfig, run_demo  # here, not at the top: keeps start-up fast

    root = folder or Path(tempfile.mkdtemp(prefix="caresync-demo-"))
    if root.exists() and any(root.glob("*.db")):
        raise click.ClickException(f"{root} already holds replica files; choose an empty folder with --dir.")
    lang = pick_language(lang)
    console = _console(stderr=as_json)
    began = time.perf_counter()
    config = DemoConfig(folder=root, seed=seed, days=days, residents=residents)
    with _errors(), Progress(console=console, transient=True) as progress:
        task = progress.add_task("caresync demo", total=days + 3)

        def step(text: str) -> None:
            progress.console.print(f"[bold]•[/bold] {text}", soft_wrap=True)
            progress.advance(task)

        try:
            outcome = run_demo(config, step=step)
        except CaresyncError:
            raise
        except Exception as exc:  # a bug: still one line, saying where to look
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise CaresyncError(
                f"The demo failed ({type(exc).__name__}: {detail}); this is a bug in caresync, please report it "
                f"with the files in {root}"
            ) from exc
    elapsed = time.perf_counter() - began
    if as_json:
        click.echo(dumps({**outcome.to_json(), "elapsed_s": round(elapsed, 2)}))
    else:
        _render_demo(console, outcome, lang, elapsed)
    if not outcome.converged:
        raise SystemExit(1)


def _render_demo(console: Console, outcome: DemoOutcome, lang: str, elapsed: float) -> None:
    """The demo's outcome as text: long lines are not cut (folders differ in length from run to run)."""
    from rich.table import Table  # here, not at the top: keeps start-up fast

    say = functools.partial(console.print, soft_wrap=True)
    station = outcome.files()["clerk-zhang"]
    say("\n[bold]What happened[/bold]")
    for line in outcome.events:
        say(f"  - {line}", markup=False)
    period = f"--from {outcome.first_day} --to {outcome.last_day}"
    say("\n[bold]The station's report[/bold]")
    say(f"(the same as: caresync --db {station} report {period})", markup=False)
    render_report(console, outcome.report, lang)
    say("\n[bold]Conflicts raised by offline work[/bold] (nothing was lost; the station decided):")
    for c in outcome.conflicts:
        say(f"  - day {c.day}, {c.label} [{c.key}]: {' / '.join(c.values)}", markup=False)
        say(f"    settled: {c.decision}", markup=False)
    if not outcome.conflicts:
        say("  (none)")
    say(
        "\n[bold]Convergence[/bold]: each device's state digest equals that of a fresh replica enrolled with the "
        "same role and grids and pulled from the server, plus the device's own ops, and the server acknowledged "
        "all its ops. The fingerprint hashes the op ids a device holds (sealed values are random, so state digests "
        "differ from run to run; op ids do not)."
    )
    table = Table()
    for col in ("device", "role", "grids", "ops", "own", "fingerprint", "converged"):
        table.add_column(col)
    for p in outcome.proofs:
        table.add_row(
            p.name,
            p.role,
            ", ".join(p.grids),
            f"{p.ops:,}",
            f"{p.own_ops:,}",
            p.fingerprint,
            "[green]yes[/green]" if p.converged else "[red]NO[/red]",
        )
    console.print(table)
    n = len(outcome.proofs)
    say(f"All {n} devices converged." if outcome.converged else "[red]NOT every device converged.[/red]")
    say(f"\n[bold]Files[/bold] (the folder: {outcome.folder})", highlight=False)
    say("  one replica per device (<device>.db); the server's database in server/; relay bundles in relay/.")
    say(f"  caresync --db {station} ticket list", markup=False)
    say(f"  caresync --db {station} conflicts list", markup=False)
    say(f"  caresync inspect {outcome.files()['kiosk-lane3']}", markup=False)
    say(f"Took {elapsed:.1f} s.", markup=False)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect(path: Path, as_json: bool) -> None:
    """What a replica file holds: its id, ops, records, conflicts and deferred ops. Reads the file only; any
    other file is refused with a line saying what it is."""
    from caresync.field.review import conflict_name  # here, not at the top: keeps start-up fast
    from caresync.replica import Replica  # here, not at the top: keeps start-up fast

    with Replica.open(path, actor="inspect", read_only=True) as replica:
        conflicts = [
            {
                "key": conflict_name(replica, c),
                "record": c.entity_id,
                "field": c.field,
                "chosen": c.chosen,
                "values": [
                    {"value": v.value, "actor": v.actor, "device": v.device, "at": v.at.isoformat()} for v in c.values
                ],
            }
            for c in replica.conflicts()
        ]
        info: dict[str, Any] = {
            "replica": replica.id,
            "ops": replica.op_count(),
            "devices": replica.version_vector(),
            "tickets": len(replica.tickets.list(include_deleted=True)),
            "residents": len(replica.residents.list(include_deleted=True)),
            "visits": len(replica.visits.list(include_deleted=True)),
            "parcels": len(replica.parcels.list(include_deleted=True)),
            "conflicts": conflicts,
            "deferred": [{"kind": k, "version": v, "count": n} for k, v, n in replica.deferred()],
            "digest": replica.state_digest(),
        }
    if as_json:
        click.echo(dumps(info))
        return
    for key in ("replica", "ops", "tickets", "residents", "visits", "parcels", "digest"):
        click.echo(f"{key}: {info[key]}")
    click.echo("devices: " + (", ".join(f"{device} ({count} ops)" for device, count in info["devices"].items()) or "-"))
    click.echo(f"conflicts: {len(info['conflicts'])}")
    for conflict in conflicts:  # values as JSON, times in this computer's zone
        values = " / ".join(
            f"{json.dumps(v['value'], ensure_ascii=False)} ({v['actor']}, {v['device'][:8]}, "
            f"{fmt_time(datetime.fromisoformat(v['at']))})"
            for v in conflict["values"]
        )
        click.echo(f"  {conflict['key']}: {values}")
    click.echo(f"deferred: {len(info['deferred'])}")
    for kind in info["deferred"]:
        click.echo(f"  {kind['count']} op(s) of kind {kind['kind']} version {kind['version']}")


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[PATH] CODE")
@click.option(
    "--server",
    "url",
    default=None,
    envvar="CARESYNC_SERVER",
    help="The sync server's address (else CARESYNC_SERVER, else the one saved by caresync init --server).",
)
@common_options
def enroll(env: Env, args: tuple[str, ...], url: str | None) -> None:
    """Enrols this device (or the replica file PATH) with a caresync server, once, with the one-time CODE the
    station printed (or the text of its QR code, which carries the server's address too); afterwards
    `caresync sync` needs no address and no token (it renews its token itself)."""
    from caresync.replica import Replica  # here, not at the top: keeps start-up fast
    from caresync.trust.codes import read_enrolment_text  # here, not at the top: keeps start-up fast

    if len(args) not in (1, 2):
        raise click.UsageError(env.t("enroll.usage"))
    code = args[-1]
    scanned = read_enrolment_text(code)
    if scanned is not None:
        url, code = url or scanned[0], scanned[1]
    url = url or env.config().get("server")
    if not url:
        raise click.UsageError(env.t("enroll.usage"))
    opened: AbstractContextManager[Replica]
    if len(args) == 1:
        opened = env.open(writes=False)
    else:
        opened = Replica.open(Path(args[0]), actor=env.actor or env.config().get("actor") or "sync")
    with opened as replica:
        found = replica.enroll(url, code)
    grids = ", ".join(g or env.t("enroll.everywhere") for g in found.grids)
    env.out(
        {"device": found.device, "role": found.role.value, "grids": list(found.grids), "url": found.server_url},
        env.t("enroll.done", device=found.device, role=found.role.value, grids=grids, url=found.server_url),
    )


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--server", "url", default=None, envvar="CARESYNC_SERVER", help="The sync server's address.")
@click.option("--token", default=None, envvar="CARESYNC_TOKEN", help="This device's token (enrolled: not needed).")
@click.option(
    "--attachments",
    "pull_mode",
    type=click.Choice(["eager", "thumbs", "lazy"]),
    default=None,
    help="Which attachments this sync and later ones fetch, kept in the file: eager (all, the default), thumbs "
    "(thumbnails only: a knocker's phone) or lazy (none until asked for).",
)
@wait_options
@common_options
def sync(
    env: Env,
    path: Path | None,
    url: str | None,
    token: str | None,
    pull_mode: str | None,
    connect_timeout: float,
    deadline: float,
) -> None:
    """Syncs this device (or the replica file PATH) with a caresync server: sends what it has not acknowledged,
    fetches the rest.

    A file enrolled with `caresync enroll` syncs with its server and renews its token by itself; otherwise give
    --server and --token. Safe to interrupt: the next run resumes where this one stopped. Ops the server refused
    stay on the device and are listed with the server's reason. Every wait is bounded (--connect-timeout,
    --deadline) and said on stderr; a server out of reach is exit code 3.
    """
    from caresync.replica import Replica  # here, not at the top: keeps start-up fast

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
    with opened as replica, SyncTalk(env.lang, as_json, ("sending", "receiving"), connect_timeout, deadline) as talk:
        server = url or getattr(replica.enrolment(), "server_url", None) or "?"
        talk.start(server)
        seen = len(replica.scope_changes())
        if pull_mode is not None:
            replica.attachments.pull_mode = pull_mode
        try:
            result = replica.sync(url, token=token, progress=talk.progress, **talk.bounds())
        except ServerUnreachableError as exc:
            from caresync.cli._names import error_text  # here, not at the top: only when there is an error

            # in Chinese the detail is the technical reason alone (the line already says the rest), else the whole
            detail = exc.fields.get("reason") if env.lang == "zh" else None
            raise ServerUnreachableError(
                env.t(
                    "sync.unreachable",
                    url=server,
                    unsent=f"{replica.unsent_count():,}",
                    detail=detail or error_text(exc, env.lang),
                )
            ) from exc
        info = {
            "replica": replica.id,
            "sent": result.pushed,
            "already_held": result.already_held,
            "received": result.pulled,
            "waiting": result.waiting,
            "unsent": result.unsent,
            "held": result.held,
            "station_key_problem": result.station_key_problem,
            "refused": [{"op": r.op, "kind": r.kind, "record": r.record, "reason": r.reason} for r in result.refused],
            "clock_offset_ms": result.clock_offset_ms,
            "scope_change": talk.scope_changed(replica, seen),
            "attachments": replica.attachments.pull_mode,
        }
    if as_json:
        click.echo(dumps(info))
        return
    line = env.t("sync.done", sent=f"{result.pushed:,}", received=f"{result.pulled:,}", unsent=f"{result.unsent:,}")
    if result.waiting:
        line += env.t("sync.waiting", n=f"{result.waiting:,}")
    click.echo(line)
    if result.held:
        click.echo(env.t("sync.held", n=f"{result.held:,}"))
    if result.station_key_problem:
        click.echo(env.t("skey.problem", problem=result.station_key_problem))
    for r in result.refused:
        click.echo(env.t("sync.refused", kind=r.kind, record=r.record, reason=r.reason))
