"""The station console in a real browser (Debian's Chromium through Playwright), as a clerk uses it."""

from __future__ import annotations

from typing import Any

import pytest

from caresync import Replica

from .conftest import RunningConsole, sign_in


def test_without_sign_in_only_the_sign_in_page_shows(page: Any, served: RunningConsole) -> None:
    for path in ("/", "/requests", "/intake", "/residents", "/exports", "/devices", "/reports"):
        page.goto(served.url + path)
        assert page.url.startswith(served.url + "/login")
        assert page.locator("input[name=password]").count() == 1
        assert page.locator("nav").count() == 0
    answer = page.request.post(served.url + "/intake", form={"title": "x", "grid": "c/a/b"})
    assert answer.status == 403


def test_a_form_posted_without_its_csrf_token_is_refused(page: Any, served: RunningConsole) -> None:
    sign_in(page, served)
    page.goto(served.url + "/intake")
    page.fill("input[name=title]", "Broken window")
    page.fill("input[name=grid]", "c/a/b")
    page.evaluate("document.querySelector('#intake-form input[name=csrf]').remove()")
    page.click("#intake-form button[type=submit]")
    assert "security code" in page.content()
    assert served.call(lambda r: len(r.tickets.list())) == 0


def test_intake_to_rating_by_clicks(page: Any, served: RunningConsole) -> None:
    served.call(lambda r: r.residents.register(name="Old Wang", grid="changnan/dorm/3"))
    sign_in(page, served)
    page.click("nav >> text=Intake")
    page.click("#intake-form button[type=submit]")  # nothing typed: the page itself refuses (required fields)
    assert page.url.endswith("/intake") and served.call(lambda r: r.tickets.list()) == []
    page.fill("input[name=title]", "Septic tank blocked")
    page.fill("#find-form input[name=q]", "Wang")
    page.press("#find-form input[name=q]", "Enter")  # Enter in the search box searches, it does not register
    page.click("text=Choose: Old Wang")
    assert page.locator("#chosen-resident").inner_text() == "Old Wang"
    assert page.input_value("input[name=title]") == "Septic tank blocked"  # kept across the search
    assert page.input_value("input[name=grid]") == "changnan/dorm/3"  # the resident's grid
    assert served.call(lambda r: r.tickets.list()) == []
    page.select_option("select[name=kind]", "repair")
    page.select_option("select[name=channel]", "phone")
    page.fill("textarea[name=description]", "30 households affected")
    page.click("#intake-form button[type=submit]")
    assert "Registered as number" in page.content()
    number = page.url.rsplit("/", 1)[1]
    assert page.locator("#ticket-status").inner_text() == "submitted"
    page.fill("#ticket-actions input[name=assignee]", "grid-li")
    page.click("#ticket-actions button[value=accept]")
    assert page.locator("#ticket-status").inner_text() == "accepted"
    assert page.locator("#ticket-assignee").inner_text() == "grid-li"
    for button, status in (("Start", "in progress"), ("Resolve", "resolved"), ("Return to resident", "closed")):
        page.click(f"#ticket-actions button:text-is('{button}')")
        assert page.locator("#ticket-status").inner_text() == status
    page.select_option("#rate-form select[name=score]", "5")
    page.fill("#rate-form input[name=comment]", "fast")
    page.click("#rate-form button")
    assert page.locator("#ticket-rating").inner_text() == "5/5 fast"
    history = page.locator("#ticket-history").inner_text()
    for step in ("request placed", "accepted", "started", "resolved", "returned to the resident", "changed rating"):
        assert step in history
    ticket = served.call(lambda r: r.tickets.list()[0])
    assert ticket.number == number and ticket.status.value == "closed" and ticket.rating.score == 5
    assert "clerk-zhang" in history  # every change is the signed-in clerk's


def test_a_conflict_two_devices_made_is_settled_in_place(page: Any, served: RunningConsole) -> None:
    tmp = served.tmp_path
    with Replica.open(tmp / "a.db", actor="grid-li") as a, Replica.open(tmp / "b.db", actor="grid-wu") as b:
        made = a.tickets.submit(title="Leaking roof", kind="repair", grid="c/a/b")
        b.sync_with(a)
        a.tickets.edit(made.id, title="Leaking roof, flat 301")
        b.tickets.edit(made.id, title="Leaking roof, flat 302")
        served.call(lambda r: (r.sync_with(a), r.sync_with(b)))
    sign_in(page, served)
    number = made.number
    page.goto(f"{served.url}/requests/{number}")
    box = page.locator("#ticket-conflicts")
    assert "flat 301" in box.inner_text() and "flat 302" in box.inner_text()
    box.locator("tr", has_text="flat 302").locator("button").click()
    assert page.locator("#ticket-conflicts").count() == 0
    assert "Leaking roof, flat 302" in page.locator(".lead").inner_text()
    assert served.call(lambda r: r.conflicts()) == []


def test_switch_to_chinese_and_back_on_every_page(page: Any, served: RunningConsole) -> None:
    sign_in(page, served)
    page.goto(served.url + "/requests")
    page.click("#lang-switch")
    assert page.url == served.url + "/requests"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert "诉求" in page.locator("h1").inner_text()
    links = page.locator("nav a")
    for i in range(links.count()):  # every page of the navigation speaks Chinese, switch included
        page.locator("nav a").nth(i).click()
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert any("\u4e00" <= c <= "\u9fff" for c in page.locator("h1").inner_text()), page.url
        assert page.locator("#lang-switch").inner_text() == "English"
    page.click("nav >> text=登记诉求")
    assert "登记诉求" in page.locator("h1").inner_text()
    page.click("#lang-switch")
    assert page.locator("h1").inner_text() == "Take a request"


def test_pages_fit_a_400_pixel_phone(browser: Any, served: RunningConsole) -> None:
    served.call(
        lambda r: r.tickets.submit(
            title="A long request title that has to wrap on a phone", kind="repair", grid="changnan/teachers-dorm/3"
        )
    )
    context = browser.new_context(viewport={"width": 400, "height": 800})
    phone = context.new_page()
    try:
        sign_in(phone, served)
        for path in (
            "/",
            "/intake",
            "/requests",
            "/requests?view=board",
            "/conflicts",
            "/residents",
            "/rounds?all=1",
            "/mediation",
            "/parcels",
            "/reports",
            "/devices",
            "/exports",
        ):
            phone.goto(served.url + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, f"{path} is {width} px wide at 400 px"
    finally:
        context.close()


def test_a_page_refreshes_itself_when_new_work_arrives(page: Any, served: RunningConsole) -> None:
    sign_in(page, served)
    page.goto(served.url + "/requests")
    assert "Arrived while looking" not in page.content()
    served.call(lambda r: r.tickets.submit(title="Arrived while looking", kind="repair", grid="c/a/b"))
    page.wait_for_selector("text=Arrived while looking", timeout=30_000)


def test_record_a_knock_and_raise_a_request_from_it(page: Any, served: RunningConsole) -> None:
    resident = served.call(
        lambda r: r.residents.register(
            name="Granny Li", grid="changnan/dorm/3", knock_every_days=2, flags=["elderly", "lives_alone"]
        )
    )
    served.call(lambda r: r.workers.add(name="knocker-wu", role="knocker", grids=["changnan/dorm"]))
    sign_in(page, served)
    page.click("nav >> text=Residents")
    page.click("text=Granny Li")
    page.select_option("#visit-form select[name=outcome]", "needs_help")
    page.fill("#visit-form input[name=visitor]", "knocker-wu")
    page.fill("#visit-form textarea[name=note]", "kitchen tap broken")
    page.click("#visit-form button[type=submit]")
    assert "Knock recorded." in page.content()
    row = page.locator("#visits tbody tr").first
    assert "knocker-wu" in row.inner_text() and "needs help" in row.inner_text()
    row.locator("select[name=kind]").select_option("repair")
    row.locator("input[name=title]").fill("Fix kitchen tap")
    row.locator("button").click()
    assert "raised from the knock" in page.content()
    assert page.locator(".lead").inner_text() == "Fix kitchen tap"
    facts = page.locator("dl.facts").first.inner_text()
    assert "door-knock" in facts and "Granny Li" in facts and "Raised from a knock" in facts
    visit = served.call(lambda r: r.visits.list(resident_id=resident.id)[0])
    ticket = served.call(lambda r: r.tickets.list()[0])
    assert visit.ticket_id == ticket.id and ticket.visit_id == visit.id and ticket.channel.value == "door_knock"
    page.goto(f"{served.url}/rounds?knocker=knocker-wu")
    assert "Round sheet for knocker-wu" in page.content()


def test_download_each_export_and_open_it(page: Any, served: RunningConsole, tmp_path: Any) -> None:
    import csv
    import json

    from openpyxl import load_workbook

    def seed(r: Replica) -> None:
        who = r.residents.register(name="Old Wang", grid="c/a/b", address="Lane 3 No. 5", knock_every_days=3)
        r.visits.record(resident_id=who.id, outcome="well", visitor="wu")
        t = r.tickets.submit(
            title="Septic tank blocked", kind="repair", grid="c/a/b", resident_id=who.id, description="private words"
        )
        r.tickets.accept(t.id, assignee="grid-li")
        box = r.mailboxes.add(code="MB-1", name="Lane 3 box", grid="c/a")
        parcel = r.parcels.register(code="P-77", grid="c/a/b", mailbox_id=box.id)
        r.parcels.hop(parcel.id, "dropped", place="MB-1")

    served.call(seed)
    sign_in(page, served)
    page.goto(served.url + "/exports")
    links = page.locator("#exports a")
    names = [links.nth(i).inner_text() for i in range(links.count())]
    assert len(names) == 11
    opened: dict[str, Any] = {}
    for name in names:
        page.goto(served.url + "/exports")  # a fresh page for each: Chromium holds back a page's eleventh download
        with page.expect_download() as info:
            page.click(f"#exports a:text-is('{name}')")
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        if name.endswith(".csv"):
            with path.open(encoding="utf-8-sig", newline="") as f:
                opened[name] = list(csv.reader(f))
        elif name.endswith(".xlsx"):
            sheet = load_workbook(path).active
            opened[name] = [[c.value for c in row] for row in sheet.iter_rows()]
        else:
            opened[name] = json.loads(path.read_text(encoding="utf-8"))
    assert opened["requests.csv"][0][0] == "Number" and opened["requests.csv"][1][1] == "Septic tank blocked"
    assert opened["requests.xlsx"][1][1] == "Septic tank blocked"
    assert any("Old Wang" in row for row in opened["residents.csv"])
    assert any("Lane 3 No. 5" in row for row in opened["residents.xlsx"])
    assert any("well" in row for row in opened["visits.csv"])
    assert opened["parcels.xlsx"][1][0] == "P-77"
    assert ["Requests received", "1"] in opened["report.csv"]
    [request] = opened["open311.json"]
    assert request["service_code"] == "repair" and request["status"] == "open"
    flat = json.dumps(opened["open311.json"])
    assert "Septic" not in flat and "private words" not in flat and "Old Wang" not in flat


def test_enrol_a_device_and_read_its_qr_code_back(browser: Any, tmp_path: Any) -> None:
    import io

    zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp reads the QR code back (the dev extra)")
    from caresync_server.testing import ServerProcess, issue_code
    from PIL import Image

    from caresync.trust.codes import read_enrolment_text

    from .conftest import serving

    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = ServerProcess(db, tmp_path).start()
    try:
        with Replica.open(tmp_path / "station.db", actor="desk") as station:
            station.enroll(server.url, issue_code(db, "station-desk", role="station", grids=[""]))
        with serving(tmp_path) as running:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            try:
                sign_in(page, running)
                page.click("nav >> text=Devices")
                page.fill("#enrol-form input[name=name]", "phone-knocker-wu")
                page.select_option("#enrol-form select[name=role]", "knocker")
                page.fill("#enrol-form textarea[name=grids]", "changnan/dorm")
                page.click("#enrol-form button[type=submit]")
                code = page.locator("#enrol-code").inner_text()
                png = page.locator("#enrol-qr").screenshot()
                [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
                assert found.text == f"caresync:enrol?server={server.url}&code={code}"
                assert read_enrolment_text(found.text) == (server.url, code)  # what the programs read
                assert "phone-knocker-wu" in page.locator("#device-list").inner_text()
            finally:
                context.close()
        with Replica.open(tmp_path / "phone.db", actor="wu") as phone:
            assert phone.enroll(server.url, code).role.value == "knocker"
    finally:
        server.stop()
