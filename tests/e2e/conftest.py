"""Fixtures for the browser tests: one Chromium (Debian's) for the whole session, and a console served by
uvicorn on a loopback port in this process, over a replica in the test's folder."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytest.importorskip("uvicorn", reason="the console extra is not installed")

from caresync_server.testing import free_port  # noqa: E402

from caresync.console import ConsoleSettings, create_app, served_in_thread  # noqa: E402

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; the tests skip where it is absent, except in CI, where they fail."""
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed here (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class RunningConsole:
    """A console answering at ``url``; ``console`` is the app's state (its worker runs replica jobs)."""

    url: str
    console: Any
    tmp_path: Path

    def call(self, job: Any) -> Any:
        """Runs ``job(replica)`` on the console's replica thread."""
        return self.console.worker.call(job)


@contextmanager
def serving(tmp_path: Path) -> Iterator[RunningConsole]:
    """The console on a free loopback port over ``tmp_path/station.db``, with account ``clerk-zhang``."""
    settings = ConsoleSettings(
        replica=tmp_path / "station.db",
        accounts=tmp_path / "console.db",
        actor="desk",
        sync_interval_s=0,
        poll_s=2,
        lang="en",
        allowed_hosts=["127.0.0.1", "localhost"],
        logger=logging.getLogger("caresync.console.e2e"),
    )
    app = create_app(settings)
    app.state.console.accounts.add("clerk-zhang", PASSWORD)
    with served_in_thread(app, port=free_port()) as url:
        yield RunningConsole(url=url, console=app.state.console, tmp_path=tmp_path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningConsole]:
    """The console over a new, empty station replica."""
    with serving(tmp_path) as running:
        yield running


@pytest.fixture
def page(browser: Any, served: RunningConsole) -> Iterator[Any]:
    """A fresh browser context (no cookies) at 1280 px, with downloads allowed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="en-GB")
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def sign_in(page: Any, served: RunningConsole, user: str = "clerk-zhang") -> None:
    """Signs in through the form, as a clerk would."""
    page.goto(served.url + "/")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(served.url + "/")
