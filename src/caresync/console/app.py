"""The console's web app: sign-in, sessions, CSRF, language, rendering, and the pages' plumbing.

Every page is a plain function ``handler(page, replica) -> Response`` that runs on the replica's own thread
(:class:`~caresync.console.worker.ReplicaWorker`); this module wraps it in what every page needs, in one place:

- nothing but the sign-in page (and the stylesheet) answers without a live session;
- every POST carries the session's CSRF token in the form (``csrf``), or it is refused with 403 and nothing
  changes; the sign-in form carries a token tied to a cookie of its own (double submit);
- cookies are HttpOnly and SameSite=Strict; answers say ``no-store`` and a Content-Security-Policy that lets
  nothing but the console's own files run;
- the access log names the route (``/requests/{number}``), never a query string or a form field, so nothing
  a clerk types about a resident reaches a log;
- templates escape everything they show (Jinja2 autoescaping).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caresync.console import devices, exports, pages, parcels, people, reports
from caresync.console.context import (
    HERE,
    LANG_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Console,
    ConsoleSettings,
    Page,
    here_of,
    lang_of,
    safe_next,
)
from caresync.console.routing import ROUTES, Handler
from caresync.errors import CaresyncError, NotFoundError
from caresync.field.i18n import LANGUAGES
from caresync.replica import Replica

__all__ = ["ConsoleSettings", "create_app", "served_in_thread"]

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

#: Every page module registers its pages when imported (see :mod:`caresync.console.routing`).
PAGE_MODULES = (pages, people, parcels, reports, exports, devices)


def _cookie(response: Response, settings: ConsoleSettings, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        path="/",
    )


def page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wraps a handler: a live session or the sign-in page; the CSRF token on a POST; the replica's thread."""

    async def endpoint(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        session = await asyncio.to_thread(console.accounts.session, token)
        if session is None:
            if request.method == "GET":
                return RedirectResponse("/login?" + urlencode({"next": here_of(request)}), status_code=303)
            return console.render(request, "refused.html", status=403, message_key="login.expired")
        form: FormData | None = None
        if request.method == "POST":
            form = await request.form()
            sent = form.get("csrf")
            if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
                console.log.warning("refused a form without its CSRF token on %s", _route(request))
                return console.render(request, "refused.html", status=403, message_key="csrf.refused")
        values = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
        lists = {k: [v for v in (form.getlist(k) if form else []) if isinstance(v, str)] for k in values}
        ctx = Page(
            request=request,
            session=session,
            lang=lang_of(request, console.settings.lang),
            form=values,
            form_lists=lists,
            console=console,
        )

        def run(replica: Replica) -> Response:
            ctx.replica = replica  # templates read raised requests' titles through it, on this thread
            try:
                return handler(ctx, replica)
            except NotFoundError as exc:
                return ctx.render("error.html", status=404, message=str(exc))
            except CaresyncError as exc:
                if request.method == "POST":  # back to the page the form was on, saying why nothing was done
                    ctx.flash(ctx.t("common.refused", message=str(exc)), "error")
                    parent = request.url.path.rsplit("/", 1)[0]  # the page the action belongs to
                    return ctx.redirect(safe_next(values.get("back") or parent))
                return ctx.render("error.html", status=400, message=str(exc))

        return await asyncio.wrap_future(console.worker.submit(run))

    return endpoint


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "?"))


class _Guard:
    """Security headers on every answer, and an access log with the route only (no query, no form)."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def guarded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, guarded)
        finally:
            route = scope.get("route")
            self.console.log.info(
                "%s %s %s %.0f ms",
                scope["method"],
                getattr(route, "path", "(no route)"),
                status,
                (time.monotonic() - started) * 1000,
            )


def create_app(settings: ConsoleSettings) -> Starlette:
    """The console as an ASGI app. It opens the replica at once; ``app.state.console.close()`` (or the app's
    shutdown) closes it."""

    console = Console(settings)

    async def login_form(request: Request) -> Response:
        if await asyncio.to_thread(console.accounts.session, request.cookies.get(SESSION_COOKIE), touch=False):
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        return _login_page(request, error=None)

    def _login_page(request: Request, *, error: str | None, status: int = 200) -> Response:
        # one token per browser until it signs in: another tab (or the favicon's redirect) must not void the form
        login_token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = console.render(
            request,
            "login.html",
            status=status,
            login_csrf=login_token,
            next=safe_next(request.query_params.get("next")),
            error=error,
        )
        _cookie(response, settings, LOGIN_COOKIE, login_token, max_age=3600)
        return response

    async def login(request: Request) -> Response:
        form = await request.form()
        sent, cookie = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
        if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent, cookie):
            console.log.warning("refused a sign-in form without its CSRF token")
            return console.render(request, "refused.html", status=403, message_key="csrf.refused")
        name, password = form.get("user"), form.get("password")
        ok = isinstance(name, str) and isinstance(password, str)
        ok = ok and await asyncio.to_thread(console.accounts.check, str(name), str(password))
        if not ok:
            console.log.warning("a sign-in failed")
            return _login_page(request, error="login.failed", status=401)
        token = await asyncio.to_thread(console.accounts.open_session, str(name))
        console.log.info("a clerk signed in")
        next_path = form.get("next")
        response = RedirectResponse(safe_next(next_path if isinstance(next_path, str) else None), status_code=303)
        _cookie(response, settings, SESSION_COOKIE, token, max_age=settings.session_lifetime_s)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        session = await asyncio.to_thread(console.accounts.session, token, touch=False)
        form = await request.form()
        sent = form.get("csrf")
        if session is None or not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
            return console.render(request, "refused.html", status=403, message_key="csrf.refused")
        await asyncio.to_thread(console.accounts.close_session, token)
        console.flashes.pop(session.csrf, None)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def switch_language(request: Request) -> Response:
        lang = request.path_params["lang"]
        response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        if lang in LANGUAGES:
            _cookie(response, settings, LANG_COOKIE, lang, max_age=365 * 86400)
        return response

    async def state(request: Request) -> Response:
        session = await asyncio.to_thread(console.accounts.session, request.cookies.get(SESSION_COOKIE), touch=False)
        if session is None:
            return JSONResponse({"signed_in": False}, status_code=401)
        status = console.worker.status
        lang = lang_of(request, settings.lang)
        return JSONResponse(
            {"signed_in": True, "generation": console.worker.generation, "sync": console.sync_text(status, lang)}
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        session = await asyncio.to_thread(console.accounts.session, request.cookies.get(SESSION_COOKIE), touch=False)
        if session is None:  # without a session, nothing but the sign-in page: not even which pages exist
            return RedirectResponse("/login", status_code=303)
        shown = Page(request, session, lang_of(request, settings.lang), {}, {}, console)  # with the navigation
        return shown.render("error.html", status=404, message=shown.t("common.not_found"))

    routes: list[BaseRoute] = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang/{lang}", switch_language, methods=["GET"]),
        Route("/_state", state, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    for path, methods, handler in ROUTES:
        routes.append(Route(path, page(console, handler), methods=list(methods)))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            console.close()

    middleware = [Middleware(_Guard, console=console)]
    if settings.allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={404: not_found})
    app.state.console = console
    return app


@contextmanager
def served_in_thread(app: Starlette, *, host: str = "127.0.0.1", port: int) -> Iterator[str]:
    """Serves ``app`` with uvicorn on a thread of this process until the block ends; yields its address.

    For programs that embed the console (and for its tests and the screenshot script); ``caresync console``
    runs uvicorn in the foreground instead. The app's replica is closed when the block ends.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="caresync-console-http", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise CaresyncError(f"The console could not start on {host}:{port} (is the port taken?)")
        threading.Event().wait(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join()
        app.state.console.close()
