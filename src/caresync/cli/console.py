"""``caresync console`` starts the station console; ``caresync console-user`` makes its accounts.

The console needs its extra: ``pip install 'caresync[console]'``. It answers on 127.0.0.1 unless ``--host``
says otherwise, and then warns: anyone who can reach the address can try to sign in.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import click

from caresync.cli._common import Env, common_options
from caresync.errors import CaresyncError

__all__ = ["console", "console_user"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def accounts_path(env: Env) -> Path:
    """The console's accounts file: ``console.db`` in the device's folder (or beside ``--db``)."""
    if env.db is not None:
        return env.db.with_name(env.db.stem + ".console.db")
    return env.home / "console.db"


def is_loopback(host: str) -> bool:
    """True for an address only this computer can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _require_extra(env: Env) -> None:
    try:
        import argon2  # noqa: F401
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CaresyncError(env.t("console.no_extra", module=exc.name or "?")) from None


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="The port to answer on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to answer on. Anything but this computer's own (127.0.0.1) is refused unless given here, "
    "and warned about: put the console behind HTTPS before other computers use it.",
)
@click.option(
    "--sync-every",
    type=click.IntRange(0, 86_400),
    default=300,
    show_default=True,
    help="Seconds between background syncs with the server this desk enrolled with (0: off).",
)
@click.option(
    "--poll", type=click.IntRange(2, 3600), default=10, show_default=True, help="Seconds between page checks."
)
@click.option("--secure-cookies", is_flag=True, help="Mark cookies Secure (when an HTTPS proxy is in front).")
@common_options
def console(env: Env, port: int, host: str, sync_every: int, poll: int, secure_cookies: bool) -> None:
    """Starts the station console, a web page over this desk's replica (http://127.0.0.1:8765)."""
    _require_extra(env)
    import uvicorn

    from caresync.console import ConsoleSettings, create_app
    from caresync.console.accounts import Accounts
    from caresync.core.clock import system_time_ms

    path = env.replica_path
    if not path.exists():
        key = "err.no_db" if env.db is not None else "err.no_home"
        raise CaresyncError(env.t(key, path=path, home=env.home))
    accounts = accounts_path(env)
    if not Accounts(accounts, now_ms=system_time_ms).list():
        raise CaresyncError(env.t("console.no_accounts"))
    loopback = is_loopback(host)
    if not loopback:
        click.echo(env.t("console.exposed", host=host), err=True)
    log = logging.getLogger("caresync.console")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    actor = env.actor or env.config().get("actor") or "console"
    app = create_app(
        ConsoleSettings(
            replica=path,
            accounts=accounts,
            actor=str(actor),
            sync_interval_s=sync_every,
            poll_s=poll,
            lang=env.lang,
            allowed_hosts=list(_LOOPBACK_NAMES) if loopback else None,
            secure_cookies=secure_cookies,
            logger=log,
        )
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(env.t("console.started", url=f"http://{shown}:{port}/"), err=True)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


@click.group("console-user")
def console_user() -> None:
    """Accounts of the station console (who may sign in)."""


@console_user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@common_options
def console_user_add(env: Env, name: str, password_stdin: bool) -> None:
    """Makes an account (or sets a new password), asking for the password twice."""
    _require_extra(env)
    from caresync.console.accounts import Accounts
    from caresync.core.clock import system_time_ms

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(env.t("console.password"), hide_input=True, confirmation_prompt=True)
    made = Accounts(accounts_path(env), now_ms=system_time_ms).add(name, password)
    env.out({"name": made.name}, env.t("console.user_added", name=made.name))


@console_user.command("list")
@common_options
def console_user_list(env: Env) -> None:
    """The console's accounts."""
    _require_extra(env)
    from caresync.console.accounts import Accounts
    from caresync.core.clock import system_time_ms

    found = Accounts(accounts_path(env), now_ms=system_time_ms).list()
    env.out({"accounts": [a.name for a in found]}, "\n".join(a.name for a in found) or env.t("console.no_users"))


@console_user.command("remove")
@click.argument("name")
@common_options
def console_user_remove(env: Env, name: str) -> None:
    """Removes an account and ends its sessions."""
    _require_extra(env)
    from caresync.console.accounts import Accounts
    from caresync.core.clock import system_time_ms

    Accounts(accounts_path(env), now_ms=system_time_ms).remove(name)
    env.out({"removed": name}, env.t("console.user_removed", name=name))
