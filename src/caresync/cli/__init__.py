"""The ``caresync`` command for station staff, grid workers, door-knockers and mediators.

``init`` sets up a device; ``ticket``, ``resident``, ``worker``, ``mailbox``, ``parcel``, ``visit``, ``dispute``,
``conflicts`` and ``report`` are the station's daily work; ``sync`` exchanges changes with the server; ``demo``
and ``inspect`` show what a replica holds. Every command takes ``--json``, ``--lang zh|en``, ``--home DIR`` (or
``CARESYNC_HOME``) and ``--db FILE``. The commands are thin: they parse, call the library and render.
"""

from __future__ import annotations

import click

from caresync._version import __version__
from caresync.cli._common import StationGroup, finish_station_commands, global_options
from caresync.cli._devtools import demo, enroll, inspect, sync
from caresync.cli.bundle import bundle
from caresync.cli.conflicts import conflicts
from caresync.cli.console import console, console_user
from caresync.cli.dispute import dispute
from caresync.cli.export import export
from caresync.cli.init import init
from caresync.cli.parcels import mailbox, parcel
from caresync.cli.report import report
from caresync.cli.resident import resident
from caresync.cli.stationkey import station_key
from caresync.cli.ticket import ticket
from caresync.cli.visit import visit
from caresync.cli.worker import worker

__all__ = ["main"]


@click.group(cls=StationGroup)
@click.version_option(__version__, prog_name="caresync")
@global_options
def main(**_: object) -> None:
    """caresync: offline-first records for neighbourhood service stations.

    The options can come before the command too (``caresync --lang zh ticket list``); a command's own win.
    """


for _command in (
    init,
    ticket,
    resident,
    worker,
    mailbox,
    parcel,
    visit,
    dispute,
    conflicts,
    report,
    enroll,
    sync,
    station_key,
    bundle,
    demo,
    inspect,
    console,
    console_user,
    export,
):
    main.add_command(_command)

finish_station_commands(main)
