"""Regenerates the screenshots of docs/console.md: ``python docs/_tools/console_screenshots.py``.

It runs the demo (a simulated week of one station, seed 7), opens the console over a copy of the station desk's
replica, signs in, and has Debian's Chromium (through Playwright) photograph the main pages at 1280 px, two at
400 px and one in Chinese, into docs/img/console/. It needs the dev extra, the server distribution and chromium.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from datetime import datetime, time
from pathlib import Path

from caresync_server.testing import free_port
from playwright.sync_api import Page, sync_playwright

from caresync.console import ConsoleSettings, create_app, served_in_thread
from caresync.field.demo import DemoConfig, run_demo

OUT = Path(__file__).resolve().parents[1] / "img" / "console"
PASSWORD = "screenshots only"

#: (file name, path, width, language)
SHOTS = [
    ("today", "/", 1280, "en"),
    ("intake", "/intake", 1280, "en"),
    ("requests-board", "/requests?view=board", 1280, "en"),
    ("requests-list", "/requests?all=1", 1280, "en"),
    ("request", "@request", 1280, "en"),
    ("conflicts", "/conflicts", 1280, "en"),
    ("residents", "/residents", 1280, "en"),
    ("round-sheet", "@round", 1280, "en"),
    ("mediation", "/mediation", 1280, "en"),
    ("parcels", "/parcels", 1280, "en"),
    ("reports", "/reports", 1280, "en"),
    ("exports", "/exports", 1280, "en"),
    ("today-zh", "/", 1280, "zh"),
    ("requests-phone", "/requests", 400, "en"),
    ("request-phone", "@request", 400, "zh"),
]


def _sign_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=user]", "clerk-zhang")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def main() -> int:
    executable = shutil.which("chromium")
    if executable is None:
        print("Debian's chromium is needed: apt-get install chromium", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="caresync-shots-"))
    outcome = run_demo(DemoConfig(folder=work / "demo"))
    desk = work / "desk"
    desk.mkdir()
    shutil.copy(outcome.files()["clerk-zhang"], desk / "station.db")
    evening = datetime.combine(outcome.last_day, time(18, 0)).astimezone()  # the console's "now": the week's end
    settings = ConsoleSettings(
        now_ms=lambda: int(evening.timestamp() * 1000),
        replica=desk / "station.db",
        accounts=desk / "console.db",
        actor="clerk-zhang",
        sync_interval_s=0,
        poll_s=3600,
        lang="en",
        logger=logging.getLogger("caresync.console.shots"),
    )
    app = create_app(settings)
    console = app.state.console
    console.accounts.add("clerk-zhang", PASSWORD)
    request = console.worker.call(
        lambda r: next(t.number for t in r.tickets.list() if t.kind.value == "dispute" and t.number)
    )
    knocker = console.worker.call(lambda r: r.workers.list(role="knocker")[0].name)
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with served_in_thread(app, port=free_port()) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            for name, path, width, lang in SHOTS:
                context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page = context.new_page()
                _sign_in(page, url)
                if lang == "zh":
                    page.goto(f"{url}/lang/zh?next=/")
                target = {"@request": f"/requests/{request}", "@round": f"/rounds?knocker={knocker}"}.get(path, path)
                page.goto(url + target)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=width < 1000)
                context.close()
                print(f"wrote {OUT / name}.png")
            browser.close()
        _devices_shot(outcome.server_database, work, executable, evening)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _devices_shot(server_database: Path, work: Path, executable: str, evening: datetime) -> None:
    """The Devices page: the demo's own server (its week of syncs) and a new desk enrolled with it as a station."""
    from caresync_server.testing import ServerProcess, issue_code

    from caresync import Replica

    url_db = f"sqlite:///{server_database}"
    server = ServerProcess(url_db, work).start()
    try:
        desk = work / "devices-desk"
        desk.mkdir()
        with Replica.open(desk / "station.db", actor="clerk-zhang") as station:
            station.enroll(server.url, issue_code(url_db, "console-desk", role="station", grids=[""]))
        app = create_app(
            ConsoleSettings(
                now_ms=lambda: int(evening.timestamp() * 1000),
                replica=desk / "station.db",
                accounts=desk / "console.db",
                actor="clerk-zhang",
                sync_interval_s=0,
                poll_s=3600,
                lang="en",
                logger=logging.getLogger("caresync.console.shots"),
            )
        )
        app.state.console.accounts.add("clerk-zhang", PASSWORD)
        with served_in_thread(app, port=free_port()) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            _sign_in(page, url)
            page.goto(url + "/devices")
            page.fill("#enrol-form input[name=name]", "phone-knocker-new")
            page.select_option("#enrol-form select[name=role]", "knocker")
            page.fill("#enrol-form textarea[name=grids]", "changnan/lane-1")
            page.click("#enrol-form button[type=submit]")
            page.screenshot(path=str(OUT / "devices.png"), full_page=True)
            print(f"wrote {OUT / 'devices.png'}")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
