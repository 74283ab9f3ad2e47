"""What every console page shares: the settings, the running console (accounts, the replica's thread,
templates, flashes) and a page's request context (:class:`Page`), with the helpers they need."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from caresync.console.accounts import Accounts, Session
from caresync.console.messages import MESSAGES
from caresync.console.worker import ReplicaWorker, SyncStatus
from caresync.core.clock import system_time_ms
from caresync.core.model import Ticket
from caresync.field.i18n import LANGUAGES
from caresync.field.knock import FLAG_REASONS, raised_title
from caresync.field.labels import label
from caresync.replica import Replica

__all__ = [
    "HERE",
    "LANG_COOKIE",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Console",
    "ConsoleSettings",
    "Page",
    "here_of",
    "lang_of",
    "safe_next",
]

HERE = Path(__file__).parent
SESSION_COOKIE = "caresync_console"
LOGIN_COOKIE = "caresync_console_login"
LANG_COOKIE = "caresync_console_lang"


@dataclass
class ConsoleSettings:
    """How one console runs.

    Args:
        replica: the station desk's replica file.
        accounts: the console's accounts file (``console.db`` beside the replica).
        actor: the replica's default actor (every change is made as the signed-in clerk).
        sync_interval_s: seconds between background syncs with the enrolled server (0: off).
        poll_s: how often pages ask whether something new arrived.
        session_idle_s, session_lifetime_s: when sessions end.
        lang: the language before anyone picks one.
        allowed_hosts: Host headers answered (None: any); a console on loopback answers only loopback names,
            so a web page elsewhere cannot reach it through a DNS name that points here.
        secure_cookies: mark cookies Secure (behind an HTTPS reverse proxy).
        tz: the station's time zone, in which times are shown (default: this computer's).
    """

    replica: Path
    accounts: Path
    actor: str = "console"
    sync_interval_s: int = 300
    poll_s: int = 10
    session_idle_s: int = 30 * 60
    session_lifetime_s: int = 12 * 3600
    lang: str = "zh"
    allowed_hosts: list[str] | None = None
    secure_cookies: bool = False
    tz: tzinfo | None = None
    now_ms: Callable[[], int] = system_time_ms
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("caresync.console"))
    sync: Callable[[Replica], Any] | None = None


@dataclass
class Page:
    """What a handler gets about its request: who, in which language, what was sent, and how to answer."""

    request: Request
    session: Session
    lang: str
    form: Mapping[str, str]
    form_lists: Mapping[str, list[str]]
    console: Console
    replica: Replica | None = None
    """The replica, while a handler runs on its thread (templates read through it: :meth:`title_of`)."""

    def title_of(self, ticket: Ticket) -> str:
        """A request's title as the reader reads it: one raised from a knock round is rebuilt from its structure in
        the page's language, with the resident's name when the station's key opens it
        (:func:`caresync.field.knock.raised_title`); any other request shows its title."""
        if self.replica is None:
            return ticket.title
        titles = {reason: self.t(f"raised.{reason}") for reason in FLAG_REASONS}
        return raised_title(self.replica, ticket, titles) or ticket.title

    @property
    def user(self) -> str:
        """The signed-in clerk: every change is recorded as theirs."""
        return self.session.user

    @property
    def query(self) -> Mapping[str, str]:
        """The query string's values."""
        return self.request.query_params

    @property
    def params(self) -> Mapping[str, Any]:
        """The path's parameters."""
        return self.request.path_params

    def now(self) -> datetime:
        """Now, as an aware UTC time."""
        return datetime.fromtimestamp(self.console.settings.now_ms() / 1000, UTC)

    def t(self, key: str, /, **fields: Any) -> str:
        """A console message in this page's language."""
        return MESSAGES(key, self.lang, **fields)

    def flash(self, message: str, kind: str = "ok") -> None:
        """A message shown once, on the next page this browser opens."""
        self.console.flashes.setdefault(self.session.csrf, []).append((kind, message))

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """The page from ``template``, with everything every page shows."""
        return self.console.render(self.request, template, status=status, page=self, **context)

    def redirect(self, path: str, **query: Any) -> RedirectResponse:
        """Back to a page of the console (303: a form's answer)."""
        target = safe_next(path) + (
            "?" + urlencode({k: v for k, v in query.items() if v not in (None, "")}) if query else ""
        )
        return RedirectResponse(target, status_code=303)


class Console:
    """The running console: settings, accounts, the replica's thread, templates, flashes."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.log = settings.logger
        self.accounts = Accounts(
            settings.accounts,
            now_ms=settings.now_ms,
            idle_ms=settings.session_idle_s * 1000,
            lifetime_ms=settings.session_lifetime_s * 1000,
        )
        self.worker = ReplicaWorker(
            settings.replica,
            actor=settings.actor,
            interval_s=settings.sync_interval_s,
            now_ms=settings.now_ms,
            logger=settings.logger,
            sync=settings.sync,
        )
        self.flashes: dict[str, list[tuple[str, str]]] = {}
        self.cache: dict[str, Any] = {}
        """What pages keep between requests (the server's device list for the Today page, a minute at most)."""
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals["label"] = label
        self.templates.globals["known"] = MESSAGES  # ``key in known``: a message exists for it
        self.templates.filters["local"] = self.local_time
        self.templates.filters["pct"] = _pct

    def close(self) -> None:
        """Stops the replica's thread and closes the replica."""
        self.worker.close()

    def local_time(self, moment: datetime | int | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        """A time as the station reads it (its own zone)."""
        if moment is None:
            return ""
        if isinstance(moment, int):
            moment = datetime.fromtimestamp(moment / 1000, UTC)
        return moment.astimezone(self.settings.tz).strftime(fmt)

    def render(self, request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        """Renders a template with the language, the sync status, the session's flashes and CSRF token."""
        page: Page | None = context.get("page")
        lang = page.lang if page is not None else lang_of(request, self.settings.lang)
        flashes = self.flashes.pop(page.session.csrf, []) if page is not None else []
        html = self.templates.get_template(template).render(
            t=lambda key, **f: MESSAGES(key, lang, **f),
            lang=lang,
            other_lang="en" if lang == "zh" else "zh",
            path=request.url.path,
            here=here_of(request),
            sync=self.worker.status,
            sync_text=self.sync_text(self.worker.status, lang),
            generation=self.worker.generation,
            poll_s=self.settings.poll_s,
            flashes=flashes,
            csrf=page.session.csrf if page is not None else "",
            user=page.user if page is not None else None,
            title_of=page.title_of if page is not None else (lambda ticket: ticket.title),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def sync_text(self, status: SyncStatus, lang: str) -> str:
        """The sync status line every page shows."""

        def t(key: str, **f: Any) -> str:
            return MESSAGES(key, lang, **f)

        if not status.enrolled:
            return t("sync.not_enrolled")
        every = status.interval_s
        if not every:
            parts = [t("sync.off")]
        elif every % 60:
            parts = [t("sync.every_s", seconds=every)]
        else:
            parts = [t("sync.every", minutes=every // 60)]
        if status.running:
            parts.append(t("sync.running"))
        elif status.last_error:
            parts.append(t("sync.failed", error=status.last_error))
        parts.append(
            t("sync.last_ok", time=self.local_time(status.last_ok_ms)) if status.last_ok_ms else t("sync.never")
        )
        if status.unsent:
            parts.append(t("sync.unsent", n=status.unsent))
        if status.held:
            parts.append(t("sync.held", n=status.held))
        if status.key_problem:
            parts.append(t("sync.key_problem", problem=status.key_problem))
        return " · ".join(parts)


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def lang_of(request: Request, default: str) -> str:
    """The language the browser chose (its cookie), else ``default``."""
    lang = request.cookies.get(LANG_COOKIE, default)
    return lang if lang in LANGUAGES else default


def here_of(request: Request) -> str:
    """This page's path with its query (for "back here" after switching the language)."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(target: str | None) -> str:
    """A path inside the console to go back to; anything else (another site, ``//host``) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
