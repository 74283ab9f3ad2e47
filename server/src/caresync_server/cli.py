"""The ``caresync-server`` command: run the server, and the station's admin commands.

Each command builds the settings, calls one storage method, and renders the result. Every error a user can
meet is a :class:`~caresync_server.errors.ServerError`, shown as one line with exit code 1, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from caresync.core.domain import Role

from ._env import ENV_PREFIX
from ._version import __version__
from .errors import AdminError, ConfigError, ServerError

if TYPE_CHECKING:
    from .storage import DeviceHealth, Storage

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


class _Commands(click.Group):
    """Every mistake is one line on stderr, as in caresync and caresync-courier (docs/errors.md): the server's
    errors ``Error: ...`` with exit code 1, a mistyped command ``Usage error: ...`` with exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServerError as exc:
            raise click.ClickException(str(exc)) from exc

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        try:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if exc.ctx is not None and type(exc).__name__ == "NoArgsIsHelpError":  # a group run bare: its help
                click.echo(exc.ctx.get_help())
                sys.exit(0)
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            _say_error(as_json, "usage", "Usage error", f"{exc.format_message()}{where}")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            code = getattr(exc.__cause__, "code", "error")  # a ServerError's own code, as in docs/errors.md
            _say_error(as_json, str(code), "Error", exc.format_message())
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Stopped.", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="caresync-server")
def main() -> None:
    """caresync-server: the sync server of caresync devices, and the station's admin commands.

    Every command works on the database named by --database-url (or CARESYNC_DATABASE_URL): by default the
    SQLite file caresync-server.db in the current folder.
    """


def _say_error(as_json: bool, code: str, lead: str, message: str) -> None:
    """A mistake as one line on stderr and, with ``--json``, the envelope every caresync program prints on stdout:
    ``{"error": {"code", "message"}}``."""
    message = " ".join(message.split())
    click.echo(f"{lead}: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False))


def _database_options(command: F) -> F:
    command = click.option(
        "--database-schema",
        envvar=ENV_PREFIX + "DATABASE_SCHEMA",
        show_envvar=True,
        help="PostgreSQL only: keep the server's tables in this schema.",
    )(command)
    command = click.option(
        "--database-url",
        envvar=ENV_PREFIX + "DATABASE_URL",
        show_envvar=True,
        help="sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/dbname "
        "[default: sqlite:///caresync-server.db].",
    )(command)
    return command


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` now (None: it can), found by binding it for a moment as
    uvicorn will."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _storage(database_url: str | None, database_schema: str | None) -> Storage:
    from .settings import Settings  # here, not at the top: keeps start-up fast
    from .storage import Storage  # here, not at the top: keeps start-up fast

    return Storage(Settings.from_env(database_url=database_url, database_schema=database_schema))


@main.command()
@_database_options
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8000, type=click.IntRange(1, 65535), show_default=True, help="The port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), show_default=True, help="Server processes to run.")
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    show_default=True,
)
def serve(
    database_url: str | None, database_schema: str | None, host: str, port: int, workers: int, log_level: str
) -> None:
    """Runs the sync server (creating its tables if the database has none)."""
    from .app import create_app  # here, not at the top: keeps start-up fast
    from .settings import Settings  # here, not at the top: keeps start-up fast
    from .storage import Storage  # here, not at the top: keeps start-up fast

    busy = _cannot_listen(host, port)
    if busy is not None:  # said before anything else, and never "listening"
        raise ConfigError(
            f"Cannot listen on http://{host}:{port}: {busy}. Another program (or another caresync-server) uses "
            "that port: stop it, or choose another with --port"
        )
    settings = Settings.from_env(database_url=database_url, database_schema=database_schema)
    storage = Storage(settings)
    try:
        version = storage.ensure_schema(create=True)
        storage.server_key()  # made here, once, before worker processes start; or refused: no key, no serving
    finally:
        storage.close()
    click.echo(
        f"caresync-server {__version__}: database {settings.safe_database_url()} (schema version {version}), "
        f"listening on http://{host}:{port} with {workers} process(es)"
    )
    import uvicorn  # here, not at the top: keeps start-up fast

    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
        return
    # Worker processes build their own app: they read the settings from the environment they inherit.
    for name, value in settings.model_dump().items():
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    uvicorn.run(
        "caresync_server.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level
    )


@main.command()
@_database_options
def init(database_url: str | None, database_schema: str | None) -> None:
    """Creates the server's tables and its key file (does nothing if they exist; moves the key of a database from
    before key files out to the file)."""
    storage = _storage(database_url, database_schema)
    try:
        version = storage.ensure_schema(create=True)
        storage.server_key()
    finally:
        storage.close()
    click.echo(f"Database ready: {storage.settings.safe_database_url()} (schema version {version}).")
    click.echo(
        f"Server key: {storage.settings.server_key_path} (mode 0600). Back it up apart from the database: "
        "without it, devices refuse the answers couriers carry back."
    )


@main.command()
@_database_options
@click.option("--name", required=True, help="A name the station will recognise, for example phone-grid-li.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]), help="What the device does.")
@click.option(
    "--grid",
    "grids",
    required=True,
    multiple=True,
    help='A grid the device works in (repeat for several); "" for everywhere.',
)
@click.option(
    "--token",
    "direct",
    is_flag=True,
    help="Issue a device token straight away instead of an enrolment code (scripts, tests).",
)
@click.option(
    "--server",
    "server_url",
    default=None,
    envvar="CARESYNC_SERVER",
    help="The address devices reach this server at (else CARESYNC_SERVER): the QR code carries it with the code.",
)
@click.option("--no-qr", is_flag=True, help="Do not draw the code as a QR code.")
@click.option("--json", "as_json", is_flag=True, help="Print the device and its code (or token) as JSON.")
def enroll(
    database_url: str | None,
    database_schema: str | None,
    name: str,
    role: str,
    grids: tuple[str, ...],
    direct: bool,
    server_url: str | None,
    no_qr: bool,
    as_json: bool,
) -> None:
    """Enrols a device and prints its one-time enrolment code (and a QR code of it), once: the server keeps only
    a hash. With --server the QR code carries the server's address too, so scanning it is all a device needs.
    On the device: caresync enroll CODE --server URL (the desk, phones) or caresync-courier enroll CODE --server
    URL (handhelds)."""
    from caresync.trust.codes import enrolment_text  # here, not at the top: keeps start-up fast

    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        if direct:
            device, token = storage.enroll(name, role, grids)
        else:
            issued = storage.issue_code(name, role, grids)
    finally:
        storage.close()
    if direct:
        if as_json:
            click.echo(json.dumps({**_device_json(device), "token": token}, ensure_ascii=False))
            return
        click.echo(f"Enrolled device {device.name} (id {device.id}): {device.role} in {_grids(device.grids)}.")
        click.echo("Its token, shown only this once (the server keeps only a hash of it):")
        click.echo("")
        click.echo(f"    {token}")
        click.echo("")
        click.echo(
            "Set it up on the device: caresync sync --server URL --token TOKEN, or caresync-courier connect URL "
            "--token TOKEN."
        )
        return
    scanned = issued.code if server_url is None else enrolment_text(server_url, issued.code)
    if as_json:
        payload = {
            **_device_json(issued.device),
            "code": issued.code,
            "code_expires_at_ms": issued.expires_at,
            "server": server_url,
            "qr": scanned,
        }
        click.echo(json.dumps(payload, ensure_ascii=False))
        return
    device = issued.device
    click.echo(f"Enrolled device {device.name} (id {device.id}): {device.role} in {_grids(device.grids)}.")
    click.echo(f"Its one-time enrolment code, valid until {_date(issued.expires_at)} (shown only this once):")
    click.echo("")
    click.echo(f"    {issued.code}")
    click.echo("")
    if not no_qr:
        buffer = io.StringIO()
        import segno  # here, not at the top: keeps start-up fast

        segno.make(scanned, error="m").terminal(out=buffer, compact=True, border=2)
        click.echo(buffer.getvalue())
    where = server_url or "URL"
    click.echo(
        f"On the device: caresync enroll {issued.code} --server {where} (the desk, phones), or caresync-courier "
        f"enroll {issued.code} --server {where} (handhelds); the text of the QR code may stand for the code."
    )
    if server_url is None:
        click.echo("(Give --server URL, or set CARESYNC_SERVER, to put the server's address in the QR code.)")


@main.command()
@_database_options
@click.argument("device")
@click.option(
    "--grid",
    "grids",
    required=True,
    multiple=True,
    help='The grids the device works in from now on (repeat for several); "" for everywhere.',
)
@click.option("--role", type=click.Choice([r.value for r in Role]), help="A new role for the device.")
@click.option(
    "--yes",
    "confirmed",
    is_flag=True,
    help="Confirm a change that leaves the device none of the records it holds now, or names grids without a "
    "single record.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the device as JSON.")
def scope(
    database_url: str | None,
    database_schema: str | None,
    device: str,
    grids: tuple[str, ...],
    role: str | None,
    confirmed: bool,
    as_json: bool,
) -> None:
    """Changes the grids (and role) of DEVICE: the server applies it at once; on its next sync the device sends
    its unsent work, then removes the records it may no longer hold. A change that would leave the device none of
    the records it holds now (or names grids where the server holds no record at all) is refused without --yes."""
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        loss = storage.scope_loss(device, grids=grids, role=role)
        if loss.empties and not confirmed:
            where = ", ".join(g or "everywhere" for g in grids)
            why = "" if loss.in_new_grids else f"; the server holds no record at all in {where}"
            raise AdminError(
                f"Nothing changed: device {device} would lose {loss.lost} of the {loss.held} record(s) it holds "
                f"now{why}. Check the grids, or give --yes to confirm."
            )
        changed = storage.set_scope(device, grids=grids, role=role)
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps(_device_json(changed), ensure_ascii=False))
        return
    click.echo(f"Device {changed.name} (id {changed.id}) is now {changed.role} in {_grids(changed.grids)}.")


@main.group("station-key")
def station_key() -> None:
    """The station's public key, which devices pin and seal private content to (the secret stays on the station)."""


@station_key.command("set")
@_database_options
@click.argument("public_key")
@click.option(
    "--replace",
    is_flag=True,
    help="Register it even though another key is registered and did not sign it (devices that pinned the old key "
    "refuse it: re-enrol them).",
)
@click.option(
    "--x25519", "legacy", is_flag=True, help="PUBLIC_KEY is a bare X25519 key of an earlier release (no rotation)."
)
def station_key_set(
    database_url: str | None, database_schema: str | None, public_key: str, replace: bool, legacy: bool
) -> None:
    """Registers PUBLIC_KEY (64 hex digits, as `caresync station-key show` prints it) as the station's public key;
    devices get it when they enrol or sync, and pin it. A different key is refused unless it is a rotation the
    current key signed (`caresync station-key rotate` sends those) or --replace is given."""
    try:
        raw = bytes.fromhex(public_key.strip())
    except ValueError:
        raise click.ClickException("A station public key is 64 hex digits (0-9, a-f).") from None
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        if legacy:
            storage.set_station_public_key(raw)
        else:
            storage.set_station_key(raw, replace=replace)
    finally:
        storage.close()
    click.echo(f"Station public key set: {raw.hex()}")


@station_key.command("show")
@_database_options
def station_key_show(database_url: str | None, database_schema: str | None) -> None:
    """Prints the station's public key, if one is registered."""
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        key, chain = storage.station_public_key(), storage.station_key_chain()
    finally:
        storage.close()
    if chain:
        click.echo(chain[-1].signing_key.hex())
        if len(chain) > 1:
            click.echo(f"(rotated {len(chain) - 1} time(s); every rotation signed by the key before it)")
    elif key is not None:
        click.echo(f"{key.hex()} (a bare X25519 key of an earlier release)")
    else:
        click.echo("No station public key is registered: caresync-server station-key set HEX")


@main.command()
@_database_options
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="Print the device as JSON.")
def revoke(database_url: str | None, database_schema: str | None, device: str, as_json: bool) -> None:
    """Revokes DEVICE (a name, or an id): its token stops working at once."""
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        found = storage.device(device)
        already = found.revoked_at is not None
        revoked = found if already else storage.revoke(device)
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps({**_device_json(revoked), "already_revoked": already}, ensure_ascii=False))
    elif already:
        click.echo(f"Device {found.name} (id {found.id}) was already revoked on {_date(found.revoked_at)}.")
    else:
        click.echo(f"Revoked device {revoked.name} (id {revoked.id}); its token no longer works.")


@main.command()
@_database_options
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def devices(database_url: str | None, database_schema: str | None, as_json: bool) -> None:
    """Lists the enrolled devices and their health: last sync, ops pending, clock offset, refusals."""
    from rich.console import Console  # here, not at the top: keeps start-up fast
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from .storage import system_time_ms  # here, not at the top: keeps start-up fast

    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        found = storage.devices()
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps([_device_json(d) for d in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("No devices are enrolled yet: caresync-server enroll --name ... --role ... --grid ...")
        return
    now = system_time_ms()
    table = Table(title="Devices")
    for heading in ("id", "name", "role", "grids", "replica", "last sync", "pending", "oldest unsent", "clock"):
        table.add_column(heading)
    table.add_column("refusals", justify="right")
    table.add_column("revoked")
    for d in found:
        table.add_row(
            str(d.id),
            d.name,
            d.role,
            _grids(d.grids),
            d.replica_id or "not synced yet",
            _ago(d.last_sync_at, now),
            "-" if d.pending is None else str(d.pending),
            "-" if d.oldest_unsent_ms is None else _ago(d.oldest_unsent_ms, now),
            _clock(d.clock_offset_ms),
            str(d.refusals),
            _date(d.revoked_at) if d.revoked_at is not None else "",
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: no terminal width to fit, so do not squeeze the table
        console = Console(width=200)
    console.print(table)


def _device_json(d: DeviceHealth) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "role": d.role,
        "grids": list(d.grids),
        "replica_id": d.replica_id,
        "created_at_ms": d.created_at,
        "revoked_at_ms": d.revoked_at,
        "last_sync_at_ms": d.last_sync_at,
        "pending": d.pending,
        "oldest_unsent_ms": d.oldest_unsent_ms,
        "clock_offset_ms": d.clock_offset_ms,
        "refusals": d.refusals,
        "scope_version": d.scope_version,
        "token_expires_at_ms": d.token_expires_at,
        "enrolled_at_ms": d.enrolled_at,
    }


def _grids(grids: tuple[str, ...]) -> str:
    return ", ".join(g or "everywhere" for g in grids)


def _date(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(ms: int) -> str:
    """A length of time in the unit that reads best."""
    ms = abs(ms)
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min"
    if ms < 86_400_000:
        return f"{ms / 3_600_000:.1f} h"
    return f"{ms / 86_400_000:.1f} d"


def _ago(ms: int | None, now: int) -> str:
    if ms is None:
        return "never"
    return f"{_span(now - ms)} ago" if now >= ms else f"in {_span(ms - now)}"


def _clock(offset_ms: int | None) -> str:
    """The device's clock error as the server saw it (offset = server time minus device time)."""
    if offset_ms is None:
        return "-"
    if abs(offset_ms) < 1000:
        return "ok"
    return f"{_span(offset_ms)} {'behind' if offset_ms > 0 else 'ahead'}"


if __name__ == "__main__":  # python -m caresync_server.cli
    main()
