"""``caresync bundle export|import``: relay bundles for a station-side device with no network.

A click group, ``bundle``, for the ``caresync`` command to register (``main.add_command(bundle)``). It parses,
calls :mod:`caresync.bundles` and renders; errors are CaresyncErrors shown as one line (exit code 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import bundles
from .errors import CaresyncError
from .model import ms_to_datetime
from .replica import Replica

__all__ = ["bundle"]


@click.group()
def bundle() -> None:
    """Relay bundles: sync a device with no network through a courier who carries a file."""


_replica_option = click.option(
    "--replica",
    "path",
    required=True,
    envvar="CARESYNC_REPLICA",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The replica file of this device (or CARESYNC_REPLICA).",
)


@bundle.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_replica_option
@click.option("--ttl-hours", type=click.IntRange(1, 2160), default=bundles.DEFAULT_TTL_HOURS, show_default=True)
@click.option("--actor", default="bundle", show_default=True, help="Who is working (recorded on local changes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(file: Path, path: Path, ttl_hours: int, actor: str, as_json: bool) -> None:
    """Writes this device's unsent ops to FILE as one bundle signed by the device key, for a courier to carry."""
    try:
        with Replica.open(path, actor=actor) as replica:
            made = bundles.write_bundle(replica, file, ttl_hours=ttl_hours)
    except CaresyncError as exc:
        raise click.ClickException(str(exc)) from exc
    info = {"bundle": made["id"], "ops": len(made["ops"]), "file": str(file), "expires_ms": made["expires_ms"]}
    if as_json:
        click.echo(json.dumps(info))
        return
    until = ms_to_datetime(made["expires_ms"]).strftime("%Y-%m-%d %H:%M UTC")
    click.echo(
        f"wrote {info['ops']} unsent op(s) to {file} (bundle {made['id']}, valid until {until}); "
        "they stay on this device until the answer comes back"
    )


@bundle.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_replica_option
@click.option("--actor", default="bundle", show_default=True, help="Who is working (recorded on local changes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_(file: Path, path: Path, actor: str, as_json: bool) -> None:
    """Imports the server's answers a courier carried back to this device (FILE from `carry export`)."""
    try:
        with Replica.open(path, actor=actor) as replica:
            got = bundles.import_answers(replica, file)
    except CaresyncError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**got.__dict__}))
        return
    click.echo(
        f"imported {got.answers} answer(s): {got.received} new op(s), {got.acked} of this device's ops stored by "
        f"the server, {got.refused} refused" + ("; the server has more: export another bundle" if got.more else "")
    )
    for reason in got.skipped:
        click.echo(f"skipped: {reason}")
