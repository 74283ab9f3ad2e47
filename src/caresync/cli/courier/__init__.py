"""``caresync-courier``: the courier's handheld, in Simplified Chinese or English.

The command parses, calls :mod:`caresync.field.courier`, :mod:`caresync.sync.bundles.relay` and the replica,
and renders; every rule lives in the library. Its home folder (``--home``, ``CARESYNC_HOME``, default
``click.get_app_dir``) holds the replica (``courier.db``), the bag of carried bundles (``carried.db``) and the
server settings (``server.json``, readable by its owner only).

Exit codes: 0 done; 1 refused (a message says why and what to do; nothing changed); 2 a wrong command or
argument; 3 no network (everything is kept); 4 the server refused this handheld. ``--json`` prints one JSON
object on stdout, errors included (``{"error": {"code", "message"}}``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from caresync._version import __version__
from caresync.cli._errors import (
    EXIT_OFFLINE,
    EXIT_REFUSED,
    EXIT_SERVER_REFUSED,
    ProgramGroup,
    finish_commands,
)
from caresync.cli._messages import COURIER_MESSAGES as MESSAGES
from caresync.cli._waits import SyncTalk, wait_options
from caresync.core.domain import COURIER_REPORT_KINDS
from caresync.errors import CaresyncError, InvalidInputError, ServerRefusedError, SyncError
from caresync.field.i18n import pick_language
from caresync.sync.bundles.format import DEFAULT_TTL_HOURS

if TYPE_CHECKING:
    from caresync.replica import Replica
    from caresync.sync.bundles.bag import Bag

__all__ = ["MESSAGES", "cli", "main"]


class _Env:
    """What every command needs: the home folder, the language, the output mode."""

    def __init__(self, home: Path, lang: str) -> None:
        self.home = home
        self.lang = lang
        self.as_json = False

    def t(self, key: str, **fields: Any) -> str:
        return MESSAGES(key, self.lang, **fields)

    @property
    def settings_path(self) -> Path:
        return self.home / "server.json"

    def settings(self) -> dict[str, Any]:
        try:
            data = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CaresyncError(f"Cannot read {self.settings_path} ({exc}); enrol again to rewrite it.") from exc
        return data if isinstance(data, dict) else {}

    def save_settings(self, data: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a token: its owner reads it, nobody else
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, indent=1)
        os.replace(tmp, self.settings_path)

    @contextmanager
    def replica(self) -> Iterator[Replica]:
        from caresync.replica import Replica  # here, not at the top: keeps start-up fast

        self.home.mkdir(parents=True, exist_ok=True)
        name = str(self.settings().get("name") or "courier")
        with Replica.open(self.home / "courier.db", actor=name) as replica:
            yield replica

    @contextmanager
    def bag(self) -> Iterator[Bag]:
        from caresync.sync.bundles.bag import Bag  # here, not at the top: keeps start-up fast

        self.home.mkdir(parents=True, exist_ok=True)
        with Bag(self.home / "carried.db") as bag:
            yield bag

    def out(self, data: dict[str, Any], lines: Sequence[str]) -> None:
        """Prints ``data`` as JSON with ``--json``, else the lines."""
        if self.as_json:
            from caresync.cli._json import dumps  # here, not at the top: only with --json

            click.echo(dumps(data))
        else:
            for line in lines:
                click.echo(line)


class _CourierGroup(ProgramGroup):
    """The handheld's group (:class:`~caresync.cli._errors.ProgramGroup`): every failure is a short message in the
    courier's language and an exit code, never a traceback."""

    program = "caresync-courier"

    def error_message(self, exc: CaresyncError, lang: str) -> str:
        if isinstance(exc, _Failure):
            return exc.message
        return super().error_message(exc, lang)

    def error_line(self, code: str, message: str, lang: str) -> str:
        return message if code in _OWN_WORDS else MESSAGES("error", lang, detail=message)

    def usage_line(self, detail: str, command_path: str | None, lang: str) -> str:
        return MESSAGES("usage", lang, detail=detail)

    def stopped_line(self, lang: str) -> str:
        return MESSAGES("aborted", lang)

    def io_line(self, path: str, detail: str, lang: str) -> str:
        return MESSAGES("io_error", lang, path=path, detail=detail)


class _Failure(CaresyncError):
    """A failure the command already put in words (offline, server refused, a bad address)."""

    def __init__(self, code: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code


#: Codes whose message the handheld already put in full words (no "not done:" lead).
def _refusal(exc: ServerRefusedError, lang: str) -> str:
    """What the server said when it refused this handheld, for the line that already says it refused: the server's
    reason with its HTTP status and code, not the library's whole sentence again."""
    fields = exc.fields
    if exc.key == "sync.refused" and {"message", "status", "code"} <= fields.keys():
        status = f"HTTP {fields['status']}, {fields['code']}"
        return f"{fields['message']}（{status}）" if lang == "zh" else f"{fields['message']} ({status})"
    from caresync.cli._names import error_text  # here, not at the top: only when there is an error

    return error_text(exc, lang)


_OWN_WORDS = {"bad_url", "bad_key", "not_connected", "server_refused", "server_unreachable", "sync_failed"}


_pass_env = click.make_pass_decorator(_Env)


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``, ``--lang`` and ``--home`` on every command (as well as on the group), so they go after the
    command as in ``caresync``."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(_Env).as_json = True
        return value

    def set_lang(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.ensure_object(_Env).lang = pick_language(value)
        return value

    def set_home(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None:
            ctx.ensure_object(_Env).home = value
        return value

    command = click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=set_json, help="Print JSON for scripts."
    )(command)
    command = click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=set_home,
        help="The handheld's folder, after the command as before it (as in caresync).",
    )(command)
    command = click.option(
        "--lang",
        type=click.Choice(["zh", "en"]),
        expose_value=False,
        callback=set_lang,
        help="Language of messages (default: the locale).",
    )(command)
    return command


@click.group(cls=_CourierGroup)
@click.version_option(__version__, prog_name="caresync-courier")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CARESYNC_HOME",
    default=None,
    help="The handheld's folder (default: CARESYNC_HOME, else the user's app folder).",
)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None, help="Language of messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, lang: str | None, as_json: bool) -> None:
    """The courier's handheld: route, pick up, hand in, deliver, report, sync, carry bundles for devices
    that have no network. 外卖员手持端：路线、取件、交站、投递、上报、同步、代送数据包。"""

    env = _Env(home or Path(click.get_app_dir("caresync")), pick_language(lang))
    env.as_json = as_json
    ctx.obj = env


# --- enrolment --------------------------------------------------------------------------------------------


def _check_url(env: _Env, url: str) -> str:
    if not re.match(r"^https?://[^\s/]+", url):
        raise _Failure("bad_url", env.t("bad_url", url=url), EXIT_REFUSED)
    return url.rstrip("/")


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="CODE")
@click.option("--server", "server_url", default=None, envvar="CARESYNC_SERVER", help="The sync server's address.")
@click.option("--name", default=None, help="Your name or worker id, recorded on your hand-overs.")
@_common
@_pass_env
def enroll(env: _Env, args: tuple[str, ...], server_url: str | None, name: str | None) -> None:
    """Exchanges an enrolment code from the station for this handheld's credentials: enroll CODE --server URL, as
    on every device (or the text of the QR code alone, which carries the address; the older URL CODE is read too)."""
    from caresync.trust.codes import read_enrolment_text  # here, not at the top: keeps start-up fast

    if len(args) == 2:  # the older form: URL CODE
        server_url, code = server_url or args[0], args[1]
    elif len(args) == 1:
        code = args[0]
    else:
        raise click.UsageError("enroll CODE --server URL")
    scanned = read_enrolment_text(code)
    if scanned is not None:
        server_url, code = server_url or scanned[0], scanned[1]
    server_url = server_url or env.settings().get("url")
    if not server_url:
        raise click.UsageError("enroll CODE --server URL")
    url = _check_url(env, server_url)
    settings = env.settings()
    if name:
        settings["name"] = name
        env.save_settings(settings)
    with env.replica() as replica:
        replica.enroll(url, code)  # the token and the station's key are kept in the replica file
        settings.update({"url": url, "name": replica.actor})
        settings.pop("token", None)
        env.save_settings(settings)
        env.out(
            {"url": url, "name": replica.actor, "replica": replica.id},
            [env.t("enrolled", url=url, name=replica.actor, replica=replica.id)],
        )


@cli.command()
@click.argument("server_url")
@click.option("--token", required=True, envvar="CARESYNC_TOKEN", help="The device token the station printed.")
@click.option("--name", default=None, help="Your name or worker id, recorded on your hand-overs.")
@click.option(
    "--station-key",
    default=None,
    help="The station's public key (hex, as `caresync station-key show` prints it), pinned to seal requests.",
)
@_common
@_pass_env
def connect(env: _Env, server_url: str, token: str, name: str | None, station_key: str | None) -> None:
    """Sets the server and a device token by hand (until enrolment codes are available)."""
    url = _check_url(env, server_url)
    key: bytes | None = None
    if station_key is not None:
        try:
            key = bytes.fromhex(station_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise _Failure("bad_key", env.t("bad_key"), EXIT_REFUSED)
    settings = env.settings()
    settings.update({"url": url, "token": token})
    if name:
        settings["name"] = name
    env.save_settings(settings)
    with env.replica() as replica:
        if key is not None:
            try:
                replica.trust_station_key(key)
            except InvalidInputError:
                raise _Failure("bad_key", env.t("bad_key"), EXIT_REFUSED) from None
        env.out(
            {"url": url, "name": replica.actor, "replica": replica.id},
            [env.t("enrolled", url=url, name=replica.actor, replica=replica.id)],
        )


# --- the round --------------------------------------------------------------------------------------------


@cli.command()
@_common
@_pass_env
def route(env: _Env) -> None:
    """The parcels to pick up and deliver, by mailbox and building, due ones first."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        stops = courier.route(replica)
    lines: list[str] = []
    for n, stop in enumerate(stops, 1):
        due = env.t("due") if stop.due else ""
        key = {"pickup": "stop_pickup", "collect": "stop_collect"}.get(stop.action, "stop_deliver")
        lines.append(
            env.t(key, n=n, place=stop.place, name=stop.name, grid=stop.grid, count=len(stop.parcels), due=due)
        )
        lines.extend(env.t("route_parcel", code=p.code, hours=p.waited_hours) for p in stop.parcels)
    data = {"stops": [{**asdict(s), "due": s.due} for s in stops]} if env.as_json else {}  # built for JSON only
    env.out(data, lines or [env.t("route_empty")])


def _parcel_json(parcel: Any) -> dict[str, Any]:
    return {
        "id": parcel.id,
        "code": parcel.code,
        "stage": parcel.stage.value if parcel.stage else None,
        "holder": parcel.holder,
        "grid": parcel.grid,
    }


@cli.command()
@click.argument("parcel_code")
@click.option("--mailbox", default=None, help="The code on the mailbox (leave out when taking it at the station).")
@click.option("--contents", default=None, help="What the resident asks for; sealed to the station at once.")
@_common
@_pass_env
def pickup(env: _Env, parcel_code: str, mailbox: str | None, contents: str | None) -> None:
    """Takes a parcel: from a mailbox (--mailbox), or at the station to deliver it."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        parcel = courier.pickup(replica, parcel_code, mailbox=mailbox, contents=contents)
    hop = parcel.hops[-1]
    lines = [env.t("picked_up", code=parcel.code, place=mailbox) if mailbox else env.t("taken_out", code=parcel.code)]
    if hop.content_hash:
        lines.append(env.t("sealed", hash=hop.content_hash[:8]))
    env.out({**_parcel_json(parcel), "content_hash": hop.content_hash}, lines)


@cli.command()
@click.argument("parcel_code")
@_common
@_pass_env
def handover(env: _Env, parcel_code: str) -> None:
    """Hands a parcel in at the station; custody passes when the station confirms it too."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        parcel = courier.handover(replica, parcel_code)
    env.out({**_parcel_json(parcel), "awaiting_receipt": True}, [env.t("handed_in", code=parcel.code)])


@cli.command()
@click.argument("parcel_code")
@click.option("--confirm", "confirm_code", required=True, help="The resident's confirmation code from the slip.")
@click.option(
    "--photo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A photo of the parcel handed over at the door (made small and sealed on the handheld).",
)
@_common
@_pass_env
def deliver(env: _Env, parcel_code: str, confirm_code: str, photo: Path | None) -> None:
    """Hands a parcel to the resident, with the confirmation code from their slip (and a photo, if taken)."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        parcel = courier.deliver(replica, parcel_code, confirm_code=confirm_code, photo=photo)
    checked = parcel.hops[-1].code_checked if parcel.hops else False
    if checked:
        lines = [env.t("delivered_checked", code=parcel.code)]
    else:
        lines = [env.t("delivered", code=parcel.code, confirm=confirm_code)]
    if parcel.attachments:
        lines.append(env.t("photo_attached", id=parcel.attachments[-1].id))
    data = {**_parcel_json(parcel), "attachments": [a.model_dump(mode="json") for a in parcel.attachments]}
    env.out(data, lines)


@cli.command("return")
@click.argument("parcel_code")
@click.option("--reason", required=True, help="Why it comes back (nobody home, wrong address...).")
@_common
@_pass_env
def return_(env: _Env, parcel_code: str, reason: str) -> None:
    """Brings a parcel back, saying why."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        parcel = courier.return_parcel(replica, parcel_code, reason=reason)
    env.out({**_parcel_json(parcel), "reason": reason}, [env.t("returned", code=parcel.code, reason=reason)])


@cli.command()
@click.argument("kind", type=click.Choice(list(COURIER_REPORT_KINDS)))
@click.argument("text")
@click.option("--grid", required=True, help="Where: community/area/building.")
@_common
@_pass_env
def report(env: _Env, kind: str, text: str, grid: str) -> None:
    """Reports an early warning, an emergency or what residents are saying; it becomes a request."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        titles = {k: env.t(f"report_title.{k}") for k in courier.REPORT_KINDS}
        ticket = courier.report(replica, kind, text, grid=grid, titles=titles)
    number = ticket.number or ticket.id
    env.out(
        {
            "id": ticket.id,
            "number": number,
            "kind": kind,
            "grid": ticket.grid,
            "title": ticket.title,
            "due_at": ticket.due_at,
        },
        [env.t("reported", kind=label("kind", kind, env.lang), number=number, grid=ticket.grid)],
    )


# --- sync and status --------------------------------------------------------------------------------------


@cli.command()
@wait_options
@_common
@_pass_env
def sync(env: _Env, connect_timeout: float, deadline: float) -> None:
    """Sends your work and the bundles you carry, fetches what is new; without network, keeps everything. Every
    wait is bounded (--connect-timeout, --deadline) and said on stderr; a server out of reach is exit code 3."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast
    from caresync.sync import enrolment  # here, not at the top: keeps start-up fast
    from caresync.sync.bundles import relay as bundles  # here, not at the top: keeps start-up fast

    settings = env.settings()
    url, token = settings.get("url"), settings.get("token")
    with env.replica() as replica, env.bag() as bag:
        enrolled = replica.enrolment()
        if enrolled is not None and not token:
            url = enrolled.server_url
        elif not url or not token:
            raise _Failure("not_connected", env.t("not_connected"), EXIT_REFUSED)
        labels = (env.t("syncing_push"), env.t("syncing_pull"))
        try:
            seen = len(replica.scope_changes())
            with SyncTalk(env.lang, env.as_json, labels, connect_timeout, deadline) as talk:
                talk.start(str(url))
                bounds = talk.bounds()
                progress = talk.progress
                if token:
                    result = replica.sync(
                        url, token=token, progress=progress, retries=2, backoff_s=0.5, timeout_s=30, **bounds
                    )
                else:  # enrolled with a code: the replica keeps its token and renews it by itself
                    result = replica.sync(progress=progress, retries=2, backoff_s=0.5, timeout_s=30, **bounds)
                    token = enrolment.current_token(replica) or ""
                now = replica.clock.physical_ms()
                relayed = bundles.deliver(bag, url, token=token, courier=replica.actor, now_ms=now, retries=2)
        except ServerRefusedError as exc:
            detail = _refusal(exc, env.lang)
            raise _Failure("server_refused", env.t("server_refused", detail=detail), EXIT_SERVER_REFUSED) from exc
        except SyncError as exc:  # out of reach (server_unreachable), or failing (sync_failed): try again later
            carried = bag.counts().get("carried", 0)
            message = env.t("offline", url=url, unsent=replica.unsent_count(), carried=carried)
            raise _Failure(exc.code, message, EXIT_OFFLINE) from exc
        courier.record_sync(replica)
        lines = [env.t("synced", sent=result.pushed, received=result.pulled, unsent=result.unsent)]
        for d in relayed:
            if d.status == "delivered":
                lines.append(
                    env.t("relayed", bundle=d.bundle, origin=d.origin, stored=d.stored, duplicates=d.duplicates)
                )
            else:
                lines.append(env.t("relay_refused", bundle=d.bundle, origin=d.origin, reason=d.reason))
        lines.extend(env.t("refused_op", kind=r.kind, record=r.record, reason=r.reason) for r in result.refused)
        if result.held:
            lines.append(env.t("held", held=result.held))
        if result.station_key_problem:
            lines.append(env.t("station_key_refused", problem=result.station_key_problem))
        data = {
            "sent": result.pushed,
            "already_held": result.already_held,
            "received": result.pulled,
            "unsent": result.unsent,
            "held": result.held,
            "station_key_problem": result.station_key_problem,
            "waiting": result.waiting,
            "refused": [asdict(r) for r in result.refused],
            "clock_offset_ms": result.clock_offset_ms,
            "relayed": [asdict(d) for d in relayed],
            "scope_change": talk.scope_changed(replica, seen),
        }
        env.out(data, lines)


@cli.command()
@_common
@_pass_env
def status(env: _Env) -> None:
    """Unsent changes, carried bundles, last sync, clock offset, conflicts and refusals."""
    from caresync.field import courier  # here, not at the top: keeps start-up fast

    with env.replica() as replica, env.bag() as bag:
        state = courier.status(replica, bag.counts())
    none = env.t("none")
    carried = ", ".join(f"{env.t('s_' + k)} {v}" for k, v in sorted(state.carried.items())) or none
    rows = [
        ("l_device", f"{state.replica} ({state.actor})"),
        ("l_unsent", str(state.unsent)),
        ("l_carried", carried),
        ("l_last_sync", _local(state.last_sync) if state.last_sync else env.t("never")),
        ("l_offset", f"{state.clock_offset_ms / 1000:+.1f} s"),
        ("l_conflicts", str(len(state.conflicts) + len(state.custody))),
        ("l_refusals", str(len(state.refusals))),
        ("l_held", str(state.held)),
        ("l_holding", ", ".join(state.holding) or none),
    ]
    lines = [env.t("status_line", label=env.t(label), value=value) for label, value in rows]
    lines += [f"  - {c}" for c in [*state.conflicts, *state.custody]]
    lines += [f"  - {r['kind']} {r['record']}: {r['reason']}" for r in state.refusals]
    env.out(asdict(state), lines)


# --- relay bundles ----------------------------------------------------------------------------------------


@cli.group()
def carry() -> None:
    """Bundles you carry for devices that have no network."""


@carry.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_common
@_pass_env
def carry_import(env: _Env, file: Path) -> None:
    """Takes a device's bundle file into your bag (you cannot read its sealed parts)."""
    with env.replica() as replica, env.bag() as bag:
        carried, new = bag.take(file, now_ms=replica.clock.physical_ms())
    key = "carry_new" if new else "carry_dup"
    env.out({**asdict(carried), "new": new}, [env.t(key, bundle=carried.id, origin=carried.origin, ops=carried.ops)])


@carry.command("list")
@_common
@_pass_env
def carry_list(env: _Env) -> None:
    """The bundles in your bag and what became of them."""
    with env.bag() as bag:
        carried = bag.carried()
    lines = [
        env.t(
            "carry_row",
            bundle=b.id,
            origin=b.origin,
            ops=b.ops,
            status=env.t("s_" + b.status),
            reason=f" ({b.reason})" if b.reason else "",
        )
        for b in carried
    ]
    env.out({"bundles": [asdict(b) for b in carried]}, lines or [env.t("carry_empty")])


@carry.command("export")
@click.option("--for", "device", required=True, help="The device the answers are for (its id, or its start).")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_common
@_pass_env
def carry_export(env: _Env, device: str, file: Path) -> None:
    """Writes the server's answers for a device to FILE, for that device to import."""
    with env.replica() as replica, env.bag() as bag:
        count = bag.export_answers(device, file, now_ms=replica.clock.physical_ms())
    env.out(
        {"device": device, "answers": count, "file": str(file)},
        [env.t("carry_exported", n=count, device=device, file=file)],
    )


@cli.group()
def bundle() -> None:
    """When this handheld itself has no network: write your changes as a bundle, import the answers."""


@bundle.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ttl-hours", type=click.IntRange(1, 2160), default=DEFAULT_TTL_HOURS, show_default=True)
@_common
@_pass_env
def bundle_export(env: _Env, file: Path, ttl_hours: int) -> None:
    """Writes this handheld's unsent changes to FILE as one signed bundle."""
    from caresync.sync.bundles import relay as bundles  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        made = bundles.write_bundle(replica, file, ttl_hours=ttl_hours)
    until = _when(made["expires_ms"])
    env.out(
        {"bundle": made["id"], "ops": len(made["ops"]), "file": str(file), "expires_ms": made["expires_ms"]},
        [env.t("bundle_written", ops=len(made["ops"]), file=file, bundle=made["id"], until=until)],
    )


@bundle.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_common
@_pass_env
def bundle_import(env: _Env, file: Path) -> None:
    """Imports the answers a courier carried back for this handheld."""
    from caresync.sync.bundles import relay as bundles  # here, not at the top: keeps start-up fast

    with env.replica() as replica:
        got = bundles.import_answers(replica, file)
    lines = [env.t("bundle_imported", **{k: getattr(got, k) for k in ("answers", "received", "acked", "refused")})]
    if got.more:
        lines.append(env.t("bundle_more"))
    env.out(asdict(got), lines)


def _when(ms: int) -> str:
    from caresync.core.model import ms_to_datetime  # here, not at the top: keeps start-up fast

    return _local(ms_to_datetime(ms))


def _local(moment: datetime) -> str:
    """A moment as the courier reads it: this handheld's local time, with its zone."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _json_given(ctx: click.Context) -> None:
    ctx.ensure_object(_Env).as_json = True


def _lang_given(ctx: click.Context, lang: str) -> None:
    ctx.ensure_object(_Env).lang = lang


finish_commands(cli, prog_name="caresync-courier", version=__version__, on_json=_json_given, on_lang=_lang_given)


def main() -> None:
    """The ``caresync-courier`` console script."""
    cli.main(prog_name="caresync-courier")
