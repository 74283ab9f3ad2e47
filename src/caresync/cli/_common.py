"""What every station command shares: the device's folder, the replica, the language, JSON or text output,
and the one place where errors become a single line and an exit code."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from caresync.cli._errors import ProgramGroup, finish_commands
from caresync.cli._messages import MESSAGES
from caresync.core.clock import DEFAULT_MAX_FORWARD_MS
from caresync.errors import CaresyncError, InvalidInputError, StoreError
from caresync.field.i18n import pick_language

if TYPE_CHECKING:
    from rich.console import Console

    from caresync.replica import Replica

__all__ = [
    "REPLICA_FILE",
    "Env",
    "StationGroup",
    "common_options",
    "finish_station_commands",
    "global_options",
    "local_tz",
    "parse_day",
    "parse_moment",
    "parse_past_moment",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The replica file inside the device's folder (``--home``).
REPLICA_FILE = "replica.db"
CONFIG_FILE = "config.json"


def local_tz() -> Any:
    """This computer's time zone: the one dates typed by a clerk are meant in."""
    return datetime.now().astimezone().tzinfo


def fmt_time(moment: datetime | None, tz: Any = None) -> str:
    """A time as a clerk reads it, in this computer's time zone (``tz``: that zone, found once for a long list)."""
    if moment is None:
        return ""
    local = moment.astimezone(tz or local_tz())
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"


def parse_day(text: str, field: str) -> date:
    """A date typed as YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("Cannot read the date", [(field, f"{text!r} is not a date like 2026-11-29")]) from None


def parse_moment(text: str, field: str) -> datetime:
    """A time typed as YYYY-MM-DD or YYYY-MM-DDTHH:MM (this computer's zone unless one is given)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            "Cannot read the time", [(field, f"{text!r} is not a time like 2026-11-29T14:30")]
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=local_tz())


def parse_past_moment(text: str, field: str) -> datetime:
    """A time something happened (a knock, a session), typed as for :func:`parse_moment`: not later than now plus
    the clock-skew bound (:data:`~caresync.core.clock.DEFAULT_MAX_FORWARD_MS`), so a mistyped year never records
    a knock in the future, which would hide the resident from the overdue list until then."""
    value = parse_moment(text, field)
    latest = datetime.now(UTC) + timedelta(milliseconds=DEFAULT_MAX_FORWARD_MS)
    if value > latest:
        raise InvalidInputError(
            "Cannot record something that has not happened yet",
            [(field, f"{text!r} is in the future (more than {DEFAULT_MAX_FORWARD_MS // 60_000} minutes from now)")],
        )
    return value


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in this computer's time zone."""
    return datetime.combine(day, time(0, 0), tzinfo=local_tz())


def t(key: str, lang: str, /, **fields: Any) -> str:
    """A message of the station tools in ``lang``."""
    return MESSAGES(key, lang, **fields)


@dataclass
class Env:
    """One command's settings, from its options and the environment."""

    lang: str
    as_json: bool
    home: Path
    db: Path | None
    actor: str | None

    @property
    def replica_path(self) -> Path:
        """The replica file this command works on."""
        return self.db if self.db is not None else self.home / REPLICA_FILE

    def config(self) -> dict[str, Any]:
        """The device's settings saved by ``caresync init`` (empty without a folder)."""
        path = self.home / CONFIG_FILE
        if self.db is not None or not path.exists():
            return {}
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise CaresyncError(t("err.config", self.lang, path=path)) from None
        return data

    def who(self) -> str:
        """Who is working: ``--actor``, else CARESYNC_ACTOR, else the name saved by ``caresync init``."""
        actor = self.actor or os.environ.get("CARESYNC_ACTOR") or self.config().get("actor")
        if not actor:
            raise CaresyncError(t("err.no_actor", self.lang))
        return str(actor)

    @contextmanager
    def open(self, *, writes: bool = True) -> Iterator[Replica]:
        """Opens this device's replica; it must exist (``caresync init`` makes it) and be a replica, so a mistyped
        folder never starts an empty replica unnoticed and no other file (a courier's bag, a bundle) is ever
        turned into one. A command that records nothing of its own (``writes=False``: sync, bundles) needs no
        actor."""
        path = self.replica_path
        self.check_replica(path)
        try:
            actor = self.who()
        except CaresyncError:
            if writes:
                raise
            actor = "reader"
        from caresync.replica import Replica  # here, not at the top: keeps every program's start-up fast

        with Replica.open(path, actor=actor) as replica:
            yield replica

    @contextmanager
    def read(self) -> Iterator[Replica]:
        """Opens this device's replica for a command that only reads (list, show, due, report, ...): read-only,
        so the file is never changed, and no actor is needed."""
        path = self.replica_path
        self.check_replica(path)
        from caresync.replica import Replica  # here, not at the top: keeps every program's start-up fast

        with Replica.open(path, actor="reader", read_only=True) as replica:
            yield replica

    def check_replica(self, path: Path) -> None:
        """Refuses, in one line in the clerk's language, a file that is missing or is not a replica, saying what
        it is; reads the file only."""
        from caresync.store.store import identify  # here, not at the top: keeps every program's start-up fast

        found = identify(path)
        if found.kind == "missing":
            key = "err.no_db" if self.db is not None else "err.no_home"
            raise CaresyncError(t(key, self.lang, path=path, home=self.home))
        if not found.is_replica:
            said = t(_FILE_KINDS.get(found.kind, "file.unreadable"), self.lang, path=path)
            raise StoreError(f"{said} {t('file.untouched', self.lang)}")

    def t(self, key: str, /, **fields: Any) -> str:
        """A message in this command's language."""
        return t(key, self.lang, **fields)

    def console(self) -> Console:
        """Where text output goes (stdout; wide enough for tables when piped)."""
        from rich.console import Console  # here, not at the top: keeps every program's start-up fast

        return Console(width=None if sys.stdout.isatty() else 140, highlight=False, soft_wrap=False)

    def out(self, data: Any, text: Callable[[], None] | str) -> None:
        """Prints ``data`` as JSON with ``--json``, else the text (a string, or a function that prints)."""
        if self.as_json:
            from caresync.cli._json import dumps  # here, not at the top: only with --json

            click.echo(dumps(data))
        elif isinstance(text, str):
            click.echo(text)
        else:
            text()


#: The message saying what a file is, by its kind (caresync.store.store.identify), when it is not a replica.
_FILE_KINDS = {
    "folder": "file.folder",
    "unreadable": "file.unreadable",
    "empty": "file.empty",
    "not_sqlite": "file.not_sqlite",
    "bundle": "file.bundle",
    "courier_bag": "file.courier_bag",
    "server_database": "file.server_database",
    "sqlite": "file.sqlite",
}


def _default_home() -> str:
    return os.environ.get("CARESYNC_HOME") or click.get_app_dir("caresync")


def _option_decorators() -> list[Callable[[Any], Any]]:
    return [
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        click.option(
            "--lang", type=click.Choice(["zh", "en"]), default=None, help="zh or en (else CARESYNC_LANG, the locale)."
        ),
        click.option(
            "--home",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="This device's folder (else CARESYNC_HOME, else the user's caresync folder).",
        ),
        click.option(
            "--db",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Open this replica file instead.",
        ),
        click.option(
            "--actor", default=None, help="Who is working (else CARESYNC_ACTOR, else the name given to init)."
        ),
    ]


def global_options(func: F) -> F:
    """The same options on the ``caresync`` group, so they can also come first (``caresync --lang zh ticket list``);
    a command's own option wins."""
    for decorate in reversed(_option_decorators()):
        func = decorate(func)
    return func


def common_options(func: F) -> F:
    """Adds ``--json``, ``--lang``, ``--home``, ``--db`` and ``--actor`` to a command; it receives ``env``."""

    def wrapper(
        *args: Any, as_json: bool, lang: str | None, home: Path | None, db: Path | None, actor: str | None, **kw: Any
    ) -> Any:
        ctx = click.get_current_context(silent=True)
        root = ctx.find_root().params if ctx is not None else {}
        meta = ctx.meta if ctx is not None else {}
        env = Env(
            lang=pick_language(lang or meta.get(META_LANG) or root.get("lang")),
            as_json=as_json or bool(meta.get(META_JSON)) or bool(root.get("as_json")),
            home=home or root.get("home") or Path(_default_home()),
            db=db or root.get("db"),
            actor=actor or root.get("actor"),
        )
        return func(*args, env=env, **kw)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    decorated: Any = wrapper
    for decorate in reversed(_option_decorators()):
        decorated = decorate(decorated)
    return decorated  # type: ignore[no-any-return]


def fail(message: str) -> NoReturn:
    """Stops the command with a message for the clerk (exit code :data:`~caresync.cli._errors.EXIT_REFUSED`)."""
    raise CaresyncError(message)


class StationGroup(ProgramGroup):
    """The ``caresync`` group (:class:`~caresync.cli._errors.ProgramGroup`): every mistake is one line on stderr in
    the clerk's language (and the JSON envelope with ``--json``).

    CaresyncError → its message, with the exit code of the one table (cli._errors: 1, 3 for a server out of
    reach, 4 for one that refused); a usage mistake (unknown option, missing argument, bad choice)
    → exit 2 with click's explanation on one line; never a traceback.
    """

    program = "caresync"

    def error_line(self, code: str, message: str, lang: str) -> str:
        return f"{t(_ERROR_PREFIXES.get(code, 'err.prefix'), lang)}: {message}"

    def usage_line(self, detail: str, command_path: str | None, lang: str) -> str:
        see = f" ({t('err.help', lang, command=command_path)})" if command_path else ""
        return f"{t('err.usage', lang)}: {detail}{see}"

    def stopped_line(self, lang: str) -> str:
        return t("err.aborted", lang)

    def io_line(self, path: str, detail: str, lang: str) -> str:
        return t("err.io", lang, path=path, detail=detail)


#: Error codes with their own lead words in Chinese.
_ERROR_PREFIXES = {
    "invalid_input": "err.invalid_input",
    "invalid_op": "err.invalid_op",
    "not_found": "err.not_found",
    "invalid_action": "err.invalid_action",
    "merge_error": "err.merge_error",
    "op_fork": "err.op_fork",
    "store_error": "err.store_error",
    "store_version": "err.store_version",
    "sync_failed": "err.sync_failed",
    "server_unreachable": "err.server_unreachable",
    "server_refused": "err.server_refused",
    "trust_failed": "err.trust_failed",
    "bad_signature": "err.bad_signature",
    "bundle_refused": "err.bundle_refused",
}


#: Where ``--json`` and ``--lang`` given on a subgroup (``caresync ticket --json list``) are kept for the command.
META_JSON = "caresync.as_json"
META_LANG = "caresync.lang"


def finish_station_commands(group: click.Group) -> None:
    """``--json``, ``--lang`` and ``--version`` on every command of ``caresync`` (cli._errors.finish_commands)."""
    from caresync._version import __version__

    finish_commands(
        group,
        prog_name="caresync",
        version=__version__,
        on_json=lambda ctx: ctx.meta.__setitem__(META_JSON, True),
        on_lang=lambda ctx, lang: ctx.meta.__setitem__(META_LANG, lang),
    )


def now_utc() -> datetime:
    """Now, as an aware UTC time."""
    return datetime.now(UTC)


def days(n: int) -> timedelta:
    """``n`` days."""
    return timedelta(days=n)


def enum_choice(enum: Any) -> click.Choice[str]:
    """A click choice of an enum's values (kinds, channels, statuses, roles)."""
    return click.Choice([m.value for m in enum])
