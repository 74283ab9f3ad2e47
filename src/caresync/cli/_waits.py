"""What both programs say while a sync waits on the network, and the two options that bound the wait.

``--connect-timeout`` and ``--deadline`` (``CARESYNC_CONNECT_TIMEOUT``, ``CARESYNC_DEADLINE``) are the same on
``caresync sync`` and ``caresync-courier sync``; :class:`SyncTalk` shows the progress as a bar on a terminal and
as one line per step on stderr anywhere else (a log, a pipe, a service), each retry with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from caresync.cli._messages import MESSAGES
from caresync.sync._defaults import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_DEADLINE_S

if TYPE_CHECKING:
    from caresync.replica import Replica
    from caresync.sync.netsync import SyncProgress, Wait

__all__ = ["SyncTalk", "wait_options"]

F = TypeVar("F", bound=Callable[..., Any])


def wait_options(command: F) -> F:
    """Adds ``--connect-timeout`` and ``--deadline`` to a sync command (it receives ``connect_timeout`` and
    ``deadline``, in seconds)."""
    command = click.option(
        "--deadline",
        type=click.FloatRange(min=1),
        default=DEFAULT_DEADLINE_S,
        envvar="CARESYNC_DEADLINE",
        show_default=True,
        help="Seconds the sync may go without any answer from the server, retries included (else CARESYNC_DEADLINE).",
    )(command)
    command = click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_CONNECT_TIMEOUT_S,
        envvar="CARESYNC_CONNECT_TIMEOUT",
        show_default=True,
        help="Seconds to wait for the server to accept a connection (else CARESYNC_CONNECT_TIMEOUT).",
    )(command)
    return command


class SyncTalk:
    """What a sync says on stderr: a bar on a terminal, else one line per step and per retry; nothing with
    ``--json`` (a program reads the outcome; stderr keeps the error line). Use it as a context manager."""

    def __init__(self, lang: str, as_json: bool, labels: tuple[str, str], connect_timeout: float, deadline: float):
        self.lang = lang
        self.as_json = as_json
        self.labels = labels
        self.connect_timeout = connect_timeout
        self.deadline = deadline
        from rich.console import Console  # here, not at the top: keeps every program's start-up fast
        from rich.progress import Progress  # here, not at the top: keeps start-up fast

        console = Console(stderr=True, quiet=as_json)
        self.lines = not console.is_terminal
        self.bars = Progress(console=console, transient=True, disable=self.lines)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> SyncTalk:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(None, None, None)

    def bounds(self) -> dict[str, Any]:
        """The keyword arguments of ``Replica.sync`` that bound its waits and report its retries."""
        return {"connect_timeout_s": self.connect_timeout, "deadline_s": self.deadline, "on_wait": self.waiting}

    def say(self, key: str, **fields: Any) -> None:
        if not self.as_json:
            click.echo(MESSAGES(key, self.lang, **fields), err=True)

    def start(self, url: str) -> None:
        """The first line: which server, and how long the sync will wait."""
        self.say("sync.contacting", url=url, connect=f"{self.connect_timeout:g}", deadline=f"{self.deadline:g}")

    def progress(self, p: SyncProgress) -> None:
        """A batch went or came."""
        if self.lines:
            key = "sync.progress_push" if p.phase == "push" else "sync.progress_pull"
            self.say(key, done=f"{p.done:,}", total=f"{p.total or p.done:,}")
            return
        label = self.labels[0] if p.phase == "push" else self.labels[1]
        if p.phase not in self._tasks:
            self._tasks[p.phase] = self.bars.add_task(label, total=p.total)
        self.bars.update(self._tasks[p.phase], completed=p.done, description=f"{label} ({p.done:,})")

    def scope_changed(self, replica: Replica, seen: int) -> dict[str, Any] | None:
        """After a sync: when it applied a new scope change (the station changed this device's grids or role), say
        so in plain words, and whether the device now holds nothing at all; returns it for ``--json`` (None when
        nothing changed). ``seen`` is how many scope changes the device had applied before the sync."""
        changes = replica.scope_changes()
        if len(changes) <= seen:
            return None
        change = changes[-1]
        held = sum(
            len(records)
            for records in (
                replica.residents.list(),
                replica.tickets.list(),
                replica.visits.list(),
                replica.parcels.list(),
                replica.mailboxes.list(),
            )
        )
        everywhere = MESSAGES("enroll.everywhere", self.lang)
        self.say(
            "sync.scope_changed",
            before=", ".join(g or everywhere for g in change.grids_before) or "-",
            after=", ".join(g or everywhere for g in change.grids_after) or "-",
            role=change.role_after,
            removed=sum(change.purged.values()),
            kept=len(change.kept),
        )
        if held == 0:
            self.say("sync.scope_empty")
        return {
            "grids_before": list(change.grids_before),
            "grids_after": list(change.grids_after),
            "role": change.role_after,
            "removed": change.purged,
            "kept": change.kept,
            "holds_nothing": held == 0,
        }

    def waiting(self, w: Wait) -> None:
        """A request found no answer: say why, and how long until the next try."""
        self.say("sync.retry", reason=w.reason, attempt=w.attempt, attempts=w.attempts, delay=f"{w.delay_s:g}")
