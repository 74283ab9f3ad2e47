"""``caresync bundle export|import``: relay bundles for a station-side device with no network.

The device is chosen like for every other station command (``--home`` or ``--db``); the commands call
:mod:`caresync.sync.bundles.relay` and print in the clerk's language, or JSON with ``--json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from caresync.cli._common import Env, common_options
from caresync.sync.bundles.format import DEFAULT_TTL_HOURS

if TYPE_CHECKING:
    pass

__all__ = ["bundle"]


@click.group()
def bundle() -> None:
    """Relay bundles: sync a device with no network through a courier who carries a file."""


@bundle.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--ttl-hours",
    type=click.IntRange(1, 2160),
    default=DEFAULT_TTL_HOURS,
    show_default=True,
    help="How long the server accepts the bundle.",
)
@common_options
def export(env: Env, file: Path, ttl_hours: int) -> None:
    """Writes this device's unsent changes to FILE as one bundle signed by the device key, for a courier to
    carry; they stay on the device until the server's answer comes back."""
    from caresync.core.model import ms_to_datetime  # here, not at the top: keeps start-up fast
    from caresync.sync.bundles import relay as bundles  # here, not at the top: keeps start-up fast

    with env.open(writes=False) as replica:
        made = bundles.write_bundle(replica, file, ttl_hours=ttl_hours)
    until = ms_to_datetime(made["expires_ms"]).astimezone().strftime("%Y-%m-%d %H:%M")
    env.out(
        {"bundle": made["id"], "ops": len(made["ops"]), "file": str(file), "expires_ms": made["expires_ms"]},
        env.t("bundle.exported", n=len(made["ops"]), file=file, bundle=made["id"], until=until),
    )


@bundle.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@common_options
def import_(env: Env, file: Path) -> None:
    """Imports the server's answers a courier carried back to this device (FILE, from `carry export`)."""
    from caresync.sync.bundles import relay as bundles  # here, not at the top: keeps start-up fast

    with env.open(writes=False) as replica:
        got = bundles.import_answers(replica, file)

    def text() -> None:
        click.echo(
            env.t("bundle.imported", answers=got.answers, received=got.received, acked=got.acked, refused=got.refused)
        )
        if got.more:
            click.echo(env.t("bundle.more"))
        for reason in got.skipped:
            click.echo(env.t("bundle.skipped", reason=reason))

    env.out({**got.__dict__}, text)
