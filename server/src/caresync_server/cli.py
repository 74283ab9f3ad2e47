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
from caresync.errors import CaresyncError, envelope

from ._env import ENV_PREFIX
from ._version import __version__
from .errors import AdminError, ConfigError

if TYPE_CHECKING:
    from .storage import DeviceHealth, Storage

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


#: The command's lines in Chinese and English: ``_t(key, lang, **fields)``.
_TEXTS: dict[str, tuple[str, str]] = {
    "error": ("错误", "Error"),
    "usage": ("用法错误", "Usage error"),
    "see_help": ("用 {command} --help 查看用法", "see {command} --help"),
    "stopped": ("已停止。", "Stopped."),
    "busy_port": (
        "无法在 http://{host}:{port} 上监听：{why}。另一个程序（或另一个 caresync-server）正在使用该端口："
        "请停止它，或用 --port 换一个端口",
        "Cannot listen on http://{host}:{port}: {why}. Another program (or another caresync-server) uses that "
        "port: stop it, or choose another with --port",
    ),
    "listening": (
        "caresync-server {version}：数据库 {database}（结构版本 {schema}），正在 http://{host}:{port} 上监听，"
        "{workers} 个进程",
        "caresync-server {version}: database {database} (schema version {schema}), listening on "
        "http://{host}:{port} with {workers} process(es)",
    ),
    "db_ready": (
        "数据库已就绪：{database}（结构版本 {schema}）。",
        "Database ready: {database} (schema version {schema}).",
    ),
    "key_file": (
        "服务器密钥：{path}（权限 0600）。请与数据库分开备份：没有它，设备会拒收快递员带回的回执。",
        "Server key: {path} (mode 0600). Back it up apart from the database: without it, devices refuse the "
        "answers couriers carry back.",
    ),
    "enrolled": (
        "已登记设备 {name}（编号 {id}）：{role}，网格 {grids}。",
        "Enrolled device {name} (id {id}): {role} in {grids}.",
    ),
    "token_once": (
        "它的令牌只显示这一次（服务器只保存其哈希）：",
        "Its token, shown only this once (the server keeps only a hash of it):",
    ),
    "token_setup": (
        "在设备上设置：caresync sync --server 地址 --token 令牌，或 caresync-courier connect 地址 --token 令牌。",
        "Set it up on the device: caresync sync --server URL --token TOKEN, or caresync-courier connect URL "
        "--token TOKEN.",
    ),
    "code_once": (
        "它的一次性登记码，{until} 前有效（只显示这一次）：",
        "Its one-time enrolment code, valid until {until} (shown only this once):",
    ),
    "code_setup": (
        "在设备上：caresync enroll {code} --server {where}（服务站电脑、手机），或 caresync-courier enroll {code} "
        "--server {where}（手持终端）；也可用二维码的文字代替登记码。",
        "On the device: caresync enroll {code} --server {where} (the desk, phones), or caresync-courier enroll "
        "{code} --server {where} (handhelds); the text of the QR code may stand for the code.",
    ),
    "no_server_in_qr": (
        "（加上 --server 地址，或设置 CARESYNC_SERVER，二维码里就会带上服务器地址。）",
        "(Give --server URL, or set CARESYNC_SERVER, to put the server's address in the QR code.)",
    ),
    "scope_loss": (
        "未作改动：设备 {device} 会失去它现有 {held} 条记录中的 {lost} 条{why}。请检查网格，或加上 --yes 确认。",
        "Nothing changed: device {device} would lose {lost} of the {held} record(s) it holds now{why}. Check the "
        "grids, or give --yes to confirm.",
    ),
    "scope_no_records": ("；服务器在 {where} 没有任何记录", "; the server holds no record at all in {where}"),
    "scoped": (
        "设备 {name}（编号 {id}）现在是 {role}，网格 {grids}。",
        "Device {name} (id {id}) is now {role} in {grids}.",
    ),
    "bad_key_hex": (
        "服务站公钥是 64 个十六进制数字（0-9、a-f）。",
        "A station public key is 64 hex digits (0-9, a-f).",
    ),
    "key_set": ("已设置服务站公钥：{key}", "Station public key set: {key}"),
    "key_rotated": (
        "（已轮换 {n} 次；每次轮换都由前一个密钥签名）",
        "(rotated {n} time(s); every rotation signed by the key before it)",
    ),
    "key_legacy": ("{key}（旧版本的 X25519 密钥）", "{key} (a bare X25519 key of an earlier release)"),
    "no_key": (
        "尚未登记服务站公钥：caresync-server station-key set 十六进制公钥",
        "No station public key is registered: caresync-server station-key set HEX",
    ),
    "already_revoked": (
        "设备 {name}（编号 {id}）已于 {when} 被吊销。",
        "Device {name} (id {id}) was already revoked on {when}.",
    ),
    "revoked": (
        "已吊销设备 {name}（编号 {id}）；它的令牌不再有效。",
        "Revoked device {name} (id {id}); its token no longer works.",
    ),
    "no_devices": (
        "还没有登记任何设备：caresync-server enroll --name ... --role ... --grid ...",
        "No devices are enrolled yet: caresync-server enroll --name ... --role ... --grid ...",
    ),
    "devices": ("设备", "Devices"),
    "everywhere": ("所有网格", "everywhere"),
    "not_synced": ("尚未同步", "not synced yet"),
    "never": ("从未", "never"),
    "ago": ("{span} 前", "{span} ago"),
    "in": ("{span} 后", "in {span}"),
    "clock_ok": ("正常", "ok"),
    "behind": ("慢 {span}", "{span} behind"),
    "ahead": ("快 {span}", "{span} ahead"),
    # the server's own errors, by their key (ServerError.key), so --lang zh says them in Chinese too
    "no_device": (
        "没有名为 {device} 的设备（也没有这个编号）；`caresync-server devices` 列出所有设备。",
        "No device is named {device} (nor has that id); `caresync-server devices` lists them.",
    ),
    "name_taken": (
        "已有名为 {name} 的设备；请换一个名字（例如 {name}-2）。",
        "A device named {name} is already enrolled; choose another name (for example {name}-2).",
    ),
    "no_database": (
        "{database} 没有 caresync-server 数据库；请在正确的文件夹里运行 `caresync-server init`，"
        "或加上 --database-url。",
        "There is no caresync-server database at {database}; run `caresync-server init` in the right folder, or "
        "pass --database-url.",
    ),
    "no_tables": (
        "{database} 的数据库没有 caresync-server 的表；请运行 `caresync-server init`。",
        "The database at {database} has no caresync-server tables; run `caresync-server init`.",
    ),
}

#: The headings of the devices table.
_HEADINGS = {
    "en": (
        "id",
        "name",
        "role",
        "grids",
        "replica",
        "last sync",
        "pending",
        "oldest unsent",
        "clock",
        "refusals",
        "revoked",
    ),
    "zh": ("编号", "名称", "角色", "网格", "副本", "上次同步", "待处理", "最早未发送", "时钟", "拒收", "吊销"),
}


def _t(key: str, lang: str, /, **fields: Any) -> str:
    zh, en = _TEXTS[key]
    text = zh if lang == "zh" else en
    return text.format(**fields) if fields else text


def _language(value: str | None) -> str:
    """``zh`` or ``en``: ``value`` (``--lang``), else CARESYNC_LANG, else the locale; English by default (as the
    device programs choose it)."""
    for found in (value, os.environ.get("CARESYNC_LANG"), os.environ.get("LC_ALL"), os.environ.get("LANG")):
        if found:
            return "zh" if found.lower().startswith("zh") else "en"
    return "en"


def _language_in(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return _language(argv[i + 1])
        if arg.startswith("--lang="):
            return _language(arg.partition("=")[2])
    return _language(None)


def _message(exc: CaresyncError, lang: str) -> str:
    """A server error's message in ``lang``: said again from its key and fields when this command knows it."""
    if exc.key is not None and exc.key in _TEXTS:
        return _t(exc.key, lang, **exc.fields)
    return str(exc)


class _Commands(click.Group):
    """Every mistake is one line on stderr, as in caresync and caresync-courier (docs/errors.md): the server's
    errors ``Error: ...`` with the error's exit code, a mistyped command ``Usage error: ...`` with exit code 2, and
    with ``--json`` the envelope every program prints (:func:`caresync.errors.envelope`).

    It is not :class:`caresync.cli._errors.ProgramGroup`: the server may import only the library's pure parts
    (tests/test_layers.py), so it shares the envelope and the exit codes (``CaresyncError.exit_code``) from
    :mod:`caresync.errors` and keeps its own few lines of handling."""

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
        lang = _language_in(argv)
        try:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if exc.ctx is not None and type(exc).__name__ == "NoArgsIsHelpError":  # a group run bare: its help
                click.echo(exc.ctx.get_help())
                sys.exit(0)
            where = f" ({_t('see_help', lang, command=exc.ctx.command_path)})" if exc.ctx is not None else ""
            _say_error(as_json, "usage", _t("usage", lang), f"{exc.format_message()}{where}", [])
            sys.exit(exc.exit_code)
        except CaresyncError as exc:
            _say_error(as_json, exc.code, _t("error", lang), _message(exc, lang), exc.envelope_details())
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _say_error(as_json, "error", _t("error", lang), exc.format_message(), [])
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(_t("stopped", lang), err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)


def _dialect(command: F) -> F:
    """``--json``, ``--lang`` and ``--version`` on a command, as on every command of the three programs; the command
    receives ``as_json`` and ``lang`` (``zh``, ``en`` or None: see :func:`_merged`)."""
    command = click.version_option(__version__, prog_name="caresync-server")(command)
    command = click.option(
        "--lang",
        type=click.Choice(["zh", "en"]),
        default=None,
        help="zh or en (else CARESYNC_LANG, the locale).",
    )(command)
    return click.option("--json", "as_json", is_flag=True, help="Print the result (or the error) as JSON.")(command)


@click.group(cls=_Commands)
@_dialect
def main(as_json: bool, lang: str | None) -> None:
    """caresync-server: the sync server of caresync devices, and the station's admin commands.

    Every command works on the database named by --database-url (or CARESYNC_DATABASE_URL): by default the
    SQLite file caresync-server.db in the current folder.
    """


def _say_error(as_json: bool, code: str, lead: str, message: str, details: list[dict[str, str]]) -> None:
    """A mistake as one line on stderr and, with ``--json``, the envelope every caresync program prints on stdout:
    ``{"error": {"code", "message", "details"}}``."""
    message = " ".join(message.split())
    click.echo(f"{lead}: {message}", err=True)
    if as_json:
        click.echo(json.dumps(envelope(code, message, details), ensure_ascii=False))


def _merged(lang: str | None, as_json: bool) -> tuple[str, bool]:
    """A command's language and JSON mode: its own options, else the group's (``caresync-server --lang zh ...``)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().params if ctx is not None else {}
    return _language(lang or root.get("lang")), as_json or bool(root.get("as_json"))


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


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


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
@_dialect
def serve(
    database_url: str | None,
    database_schema: str | None,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    as_json: bool,
    lang: str | None,
) -> None:
    """Runs the sync server (creating its tables if the database has none). With --json its start-up line is one
    JSON object on stdout (and an error the envelope); the request log stays uvicorn's, on stderr."""
    from .app import create_app  # here, not at the top: keeps start-up fast
    from .settings import Settings  # here, not at the top: keeps start-up fast
    from .storage import Storage  # here, not at the top: keeps start-up fast

    language, as_json = _merged(lang, as_json)
    busy = _cannot_listen(host, port)
    if busy is not None:  # said before anything else, and never "listening"
        fields = {"host": host, "port": port, "why": busy}
        raise ConfigError(_t("busy_port", "en", **fields), key="busy_port", fields=fields)
    settings = Settings.from_env(database_url=database_url, database_schema=database_schema)
    storage = Storage(settings)
    try:
        version = storage.ensure_schema(create=True)
        storage.server_key()  # made here, once, before worker processes start; or refused: no key, no serving
    finally:
        storage.close()
    fields = {"version": __version__, "database": settings.safe_database_url(), "schema": version}
    if as_json:
        _echo_json(
            {
                "listening": f"http://{host}:{port}",
                "version": __version__,
                "database": settings.safe_database_url(),
                "schema_version": version,
                "workers": workers,
                "started_at": _iso(int(datetime.now(UTC).timestamp() * 1000)),
            }
        )
    else:
        click.echo(_t("listening", language, **fields, host=host, port=port, workers=workers))
    sys.stdout.flush()
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
@_dialect
def init(database_url: str | None, database_schema: str | None, as_json: bool, lang: str | None) -> None:
    """Creates the server's tables and its key file (does nothing if they exist; moves the key of a database from
    before key files out to the file)."""
    language, as_json = _merged(lang, as_json)
    storage = _storage(database_url, database_schema)
    try:
        version = storage.ensure_schema(create=True)
        storage.server_key()
    finally:
        storage.close()
    database, key_path = storage.settings.safe_database_url(), storage.settings.server_key_path
    if as_json:
        _echo_json({"database": database, "schema_version": version, "server_key_file": str(key_path)})
        return
    click.echo(_t("db_ready", language, database=database, schema=version))
    click.echo(_t("key_file", language, path=key_path))


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
@_dialect
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
    lang: str | None,
) -> None:
    """Enrols a device and prints its one-time enrolment code (and a QR code of it), once: the server keeps only
    a hash. With --server the QR code carries the server's address too, so scanning it is all a device needs.
    On the device: caresync enroll CODE --server URL (the desk, phones) or caresync-courier enroll CODE --server
    URL (handhelds)."""
    from caresync.trust.codes import enrolment_text  # here, not at the top: keeps start-up fast

    language, as_json = _merged(lang, as_json)
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
            _echo_json({**_device_json(device), "token": token})
            return
        click.echo(_enrolled(device, language))
        click.echo(_t("token_once", language))
        click.echo("")
        click.echo(f"    {token}")
        click.echo("")
        click.echo(_t("token_setup", language))
        return
    scanned = issued.code if server_url is None else enrolment_text(server_url, issued.code)
    if as_json:
        payload = {
            **_device_json(issued.device),
            "code": issued.code,
            "code_expires_at": _iso(issued.expires_at),
            "server": server_url,
            "qr": scanned,
        }
        _echo_json(payload)
        return
    click.echo(_enrolled(issued.device, language))
    click.echo(_t("code_once", language, until=_local(issued.expires_at)))
    click.echo("")
    click.echo(f"    {issued.code}")
    click.echo("")
    if not no_qr:
        buffer = io.StringIO()
        import segno  # here, not at the top: keeps start-up fast

        segno.make(scanned, error="m").terminal(out=buffer, compact=True, border=2)
        click.echo(buffer.getvalue())
    click.echo(_t("code_setup", language, code=issued.code, where=server_url or "URL"))
    if server_url is None:
        click.echo(_t("no_server_in_qr", language))


def _enrolled(device: DeviceHealth, lang: str) -> str:
    return _t("enrolled", lang, name=device.name, id=device.id, role=device.role, grids=_grids(device.grids, lang))


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
@_dialect
def scope(
    database_url: str | None,
    database_schema: str | None,
    device: str,
    grids: tuple[str, ...],
    role: str | None,
    confirmed: bool,
    as_json: bool,
    lang: str | None,
) -> None:
    """Changes the grids (and role) of DEVICE: the server applies it at once; on its next sync the device sends
    its unsent work, then removes the records it may no longer hold. A change that would leave the device none of
    the records it holds now (or names grids where the server holds no record at all) is refused without --yes."""
    language, as_json = _merged(lang, as_json)
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        loss = storage.scope_loss(device, grids=grids, role=role)
        if loss.empties and not confirmed:
            where = ", ".join(g or _t("everywhere", language) for g in grids)
            why = "" if loss.in_new_grids else _t("scope_no_records", language, where=where)
            fields = {"device": device, "lost": loss.lost, "held": loss.held, "why": why}
            raise AdminError(_t("scope_loss", "en", **fields), key="scope_loss", fields=fields)
        changed = storage.set_scope(device, grids=grids, role=role)
    finally:
        storage.close()
    if as_json:
        _echo_json(_device_json(changed))
        return
    click.echo(
        _t(
            "scoped",
            language,
            name=changed.name,
            id=changed.id,
            role=changed.role,
            grids=_grids(changed.grids, language),
        )
    )


@main.group("station-key")
@_dialect
def station_key(as_json: bool, lang: str | None) -> None:
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
@_dialect
def station_key_set(
    database_url: str | None,
    database_schema: str | None,
    public_key: str,
    replace: bool,
    legacy: bool,
    as_json: bool,
    lang: str | None,
) -> None:
    """Registers PUBLIC_KEY (64 hex digits, as `caresync station-key show` prints it) as the station's public key;
    devices get it when they enrol or sync, and pin it. A different key is refused unless it is a rotation the
    current key signed (`caresync station-key rotate` sends those) or --replace is given."""
    language, as_json = _merged(lang, as_json)
    try:
        raw = bytes.fromhex(public_key.strip())
    except ValueError:
        raise AdminError(_t("bad_key_hex", "en"), key="bad_key_hex") from None
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        if legacy:
            storage.set_station_public_key(raw)
        else:
            storage.set_station_key(raw, replace=replace)
    finally:
        storage.close()
    if as_json:
        _echo_json({"station_key": raw.hex(), "kind": "x25519" if legacy else "signing"})
        return
    click.echo(_t("key_set", language, key=raw.hex()))


@station_key.command("show")
@_database_options
@_dialect
def station_key_show(database_url: str | None, database_schema: str | None, as_json: bool, lang: str | None) -> None:
    """Prints the station's public key, if one is registered."""
    language, as_json = _merged(lang, as_json)
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        key, chain = storage.station_public_key(), storage.station_key_chain()
    finally:
        storage.close()
    if as_json:
        current = chain[-1].signing_key.hex() if chain else (key.hex() if key is not None else None)
        kind = "signing" if chain else ("x25519" if key is not None else None)
        _echo_json({"station_key": current, "kind": kind, "rotations": max(len(chain) - 1, 0)})
    elif chain:
        click.echo(chain[-1].signing_key.hex())
        if len(chain) > 1:
            click.echo(_t("key_rotated", language, n=len(chain) - 1))
    elif key is not None:
        click.echo(_t("key_legacy", language, key=key.hex()))
    else:
        click.echo(_t("no_key", language))


@main.command()
@_database_options
@click.argument("device")
@_dialect
def revoke(database_url: str | None, database_schema: str | None, device: str, as_json: bool, lang: str | None) -> None:
    """Revokes DEVICE (a name, or an id): its token stops working at once."""
    language, as_json = _merged(lang, as_json)
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        found = storage.device(device)
        already = found.revoked_at is not None
        revoked = found if already else storage.revoke(device)
        if not already:
            from .blobs import sweep  # a revoked device counts as synced: blobs only it held may go

            sweep(storage, storage.settings)
    finally:
        storage.close()
    if as_json:
        _echo_json({**_device_json(revoked), "already_revoked": already})
    elif already:
        click.echo(_t("already_revoked", language, name=found.name, id=found.id, when=_local(found.revoked_at)))
    else:
        click.echo(_t("revoked", language, name=revoked.name, id=revoked.id))


@main.command()
@_database_options
@_dialect
def devices(database_url: str | None, database_schema: str | None, as_json: bool, lang: str | None) -> None:
    """Lists the enrolled devices and their health: last sync, ops pending, clock offset, refusals."""
    from rich.console import Console  # here, not at the top: keeps start-up fast
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from .storage import system_time_ms  # here, not at the top: keeps start-up fast

    language, as_json = _merged(lang, as_json)
    storage = _storage(database_url, database_schema)
    try:
        storage.ensure_schema(create=False)
        found = storage.devices()
    finally:
        storage.close()
    if as_json:
        _echo_json([_device_json(d) for d in found])
        return
    if not found:
        click.echo(_t("no_devices", language))
        return
    now = system_time_ms()
    table = Table(title=_t("devices", language))
    headings = _HEADINGS[language]
    for heading in headings[:9]:
        table.add_column(heading)
    table.add_column(headings[9], justify="right")
    table.add_column(headings[10])
    for d in found:
        table.add_row(
            str(d.id),
            d.name,
            d.role,
            _grids(d.grids, language),
            d.replica_id or _t("not_synced", language),
            _ago(d.last_sync_at, now, language),
            "-" if d.pending is None else str(d.pending),
            "-" if d.oldest_unsent_ms is None else _ago(d.oldest_unsent_ms, now, language),
            _clock(d.clock_offset_ms, language),
            str(d.refusals),
            _local(d.revoked_at) if d.revoked_at is not None else "",
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: no terminal width to fit, so do not squeeze the table
        console = Console(width=200)
    console.print(table)


def _device_json(d: DeviceHealth) -> dict[str, Any]:
    """A device as JSON: times in ISO 8601 with their offset, as every caresync program writes them."""
    return {
        "id": d.id,
        "name": d.name,
        "role": d.role,
        "grids": list(d.grids),
        "replica_id": d.replica_id,
        "created_at": _iso(d.created_at),
        "revoked_at": _iso(d.revoked_at),
        "last_sync_at": _iso(d.last_sync_at),
        "pending": d.pending,
        "oldest_unsent_at": _iso(d.oldest_unsent_ms),
        "clock_offset_ms": d.clock_offset_ms,
        "refusals": d.refusals,
        "scope_version": d.scope_version,
        "token_expires_at": _iso(d.token_expires_at),
        "enrolled_at": _iso(d.enrolled_at),
    }


def _grids(grids: tuple[str, ...], lang: str = "en") -> str:
    return ", ".join(g or _t("everywhere", lang) for g in grids)


def _iso(ms: int | None) -> str | None:
    """A time for JSON: ISO 8601 with its offset (UTC, to the millisecond), the one format of the three programs."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _local(ms: int | None) -> str:
    """A time for a person: this computer's local time, to the minute, with its zone."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")


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


def _ago(ms: int | None, now: int, lang: str = "en") -> str:
    if ms is None:
        return _t("never", lang)
    return _t("ago", lang, span=_span(now - ms)) if now >= ms else _t("in", lang, span=_span(ms - now))


def _clock(offset_ms: int | None, lang: str = "en") -> str:
    """The device's clock error as the server saw it (offset = server time minus device time)."""
    if offset_ms is None:
        return "-"
    if abs(offset_ms) < 1000:
        return _t("clock_ok", lang)
    return _t("behind" if offset_ms > 0 else "ahead", lang, span=_span(offset_ms))


if __name__ == "__main__":  # python -m caresync_server.cli
    main()
