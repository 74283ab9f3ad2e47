"""Helpers for the console's tests: a station replica, an account, and a signed-in client over the real app."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette

from caresync.console import ConsoleSettings, create_app

PASSWORD = "correct horse battery"
T = TypeVar("T")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a test's coroutine to its end on a thread of its own, so that it has an event loop to itself even when
    this thread has one running (the browser tests' Playwright keeps one for the whole session)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def settings(tmp_path: Path, **extra: Any) -> ConsoleSettings:
    """Settings for a console over ``tmp_path/station.db`` with no background sync."""
    options: dict[str, Any] = {
        "replica": tmp_path / "station.db",
        "accounts": tmp_path / "console.db",
        "actor": "desk",
        "sync_interval_s": 0,
        "lang": "en",
        "logger": logging.getLogger("caresync.console.test"),
    }
    options.update(extra)
    return ConsoleSettings(**options)


@contextmanager
def running(tmp_path: Path, **extra: Any) -> Iterator[Starlette]:
    """The console app over a replica in ``tmp_path``, closed afterwards, with account ``clerk-zhang``."""
    app = create_app(settings(tmp_path, **extra))
    app.state.console.accounts.add("clerk-zhang", PASSWORD)
    try:
        yield app
    finally:
        app.state.console.close()


def client(app: Starlette) -> httpx.AsyncClient:
    """An httpx client that talks to the app in this process (no network)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def sign_in(http: httpx.AsyncClient, user: str = "clerk-zhang", password: str = PASSWORD) -> str:
    """Signs in through the form; returns the session's CSRF token (from the page signed in to)."""
    form = await http.get("/login")
    answer = await http.post(
        "/login", data={"csrf": csrf_of(form.text), "user": user, "password": password, "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    page = await http.get("/")
    assert page.status_code == 200
    return csrf_of(page.text)
