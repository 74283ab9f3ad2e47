"""The station's ``caresync`` commands, in both languages, through click's CliRunner and the installed script.

Each command is run with ``--json`` and its output parsed; a few text outputs are checked for the language.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from caresync import Replica
from caresync.cli import main
from caresync.testing import DEFAULT_START_MS
from tests.station_data import build_week

GRID = "changnan/dorm/3"
Run = Callable[..., Any]


@pytest.fixture(params=["zh", "en"])
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _invoke(home: Path, args: list[str], lang: str) -> Result:
    env = {"CARESYNC_HOME": str(home), "CARESYNC_LANG": "", "LANG": "C", "LC_ALL": "", "CARESYNC_ACTOR": ""}
    return CliRunner(env=env).invoke(main, [*args, "--lang", lang])


@pytest.fixture
def run(home: Path, lang: str) -> Run:
    """Runs a command with --json in the test's language; returns the parsed output (exit code 0 asserted)."""

    def call(*args: str) -> Any:
        result = _invoke(home, [*args, "--json"], lang)
        assert result.exit_code == 0, (args, result.output)
        return json.loads(result.stdout)

    _invoke(home, ["init", "--actor", "clerk-zhang"], lang)
    return call


def test_init_then_a_ticket_from_order_to_return(run: Run, home: Path, lang: str) -> None:
    assert (home / "replica.db").exists()
    numbers = run("ticket", "numbers")
    assert numbers["blocks"] == [] and numbers["next"].endswith("-1")  # never synced: provisional numbers
    wang = run("resident", "add", "--name", "Old Wang", "--grid", GRID, "--knock-every", "2")
    t = run("ticket", "submit", "--title", "Septic tank", "--kind", "repair", "--grid", GRID, "--resident", wang["id"])
    n = t["number"]
    assert (t["number_provisional"], t["status"], t["overdue"]) == (True, "submitted", False)
    assert run("ticket", "numbers")["provisional"] == [{"number": n, "id": t["id"]}]
    assert run("ticket", "accept", n, "--assignee", "grid-li")["assignee"] == "grid-li"
    assert run("ticket", "start", n)["status"] == "in_progress"
    assert run("ticket", "note", n, "called the sanitation team")["notes"][0]["text"] == "called the sanitation team"
    assert run("ticket", "resolve", n, "--resolution", "pipe cleared")["status"] == "resolved"
    closed = run("ticket", "close", n)
    assert closed["status"] == "closed" and closed["closed_at"]
    assert run("ticket", "rate", n, "5", "--comment", "fast")["rating"] == {"score": 5, "comment": "fast"}
    assert run("ticket", "reopen", t["id"], "--reason", "leaking again")["status"] == "accepted"
    other = run("ticket", "submit", "--title", "Bench", "--kind", "repair", "--grid", GRID)
    assert run("ticket", "escalate", other["number"])["grid"] == "changnan/dorm"
    assert run("ticket", "cancel", other["number"], "--reason", "duplicate")["status"] == "cancelled"
    with Replica.open(home / "replica.db", actor="courier-chen") as desk:
        parcel = desk.parcels.register(code="P-0417", grid=GRID)
    carried = run("ticket", "submit", "--title", "Form", "--kind", "errand", "--grid", GRID, "--parcel", "P-0417")
    assert carried["parcel_id"] == parcel.id
    run("ticket", "cancel", carried["number"], "--reason", "test")
    nowhere = _invoke(
        home, ["ticket", "submit", "--title", "F", "--kind", "errand", "--grid", GRID, "--parcel", "X9"], lang
    )
    assert nowhere.exit_code == 1 and "X9" in nowhere.stderr
    late = run("ticket", "submit", "--title", "Smoke", "--kind", "emergency", "--grid", GRID)
    listed = run("ticket", "list")["tickets"]
    assert [x["number"] for x in listed] == [late["number"], n]  # open only; soonest due (emergency: 2 h) first
    assert late["number"] == n[:-1] + "4"
    assert len(run("ticket", "list", "--all")["tickets"]) == 4
    shown = run("ticket", "show", n)
    assert [h["kind"] for h in shown["history"]][:2] == ["ticket.create", "ticket.transition"]
    text = _invoke(home, ["ticket", "show", n], lang).stdout
    assert ("已接单" if lang == "zh" else "accepted") in text
    submitted = _invoke(home, ["ticket", "submit", "--title", "x", "--kind", "wish", "--grid", GRID], lang).stdout
    assert ("临时编号" if lang == "zh" else "provisional number") in submitted and n[:-1] + "5" in submitted


def test_no_block_of_ticket_numbers_can_be_typed_in(home: Path, lang: str) -> None:
    """Blocks come only from the server: a hand-typed block is how the desk's 1000 met a phone's 1000."""
    _invoke(home, ["init", "--actor", "clerk-zhang"], lang)
    typed = _invoke(home, ["ticket", "numbers", "--add-block", "1000", "500"], lang)
    assert typed.exit_code == 2 and "--add-block" in typed.stderr


def test_residents_add_list_show_edit(run: Run, home: Path, lang: str) -> None:
    liu = run("resident", "add", "--name", "Grandma Liu", "--grid", GRID, "--flag", "elderly", "--flag", "lives_alone")
    assert liu["flags"] == ["elderly", "lives_alone"] and liu["knock_every_days"] is None
    run("resident", "add", "--name", "Mr Chen", "--grid", "changnan/lane-7")
    assert [r["name"] for r in run("resident", "list", "--grid", "changnan/dorm")["residents"]] == ["Grandma Liu"]
    edited = run("resident", "edit", liu["id"], "--knock-every", "3", "--phone", "138 0000 0000")
    assert (edited["knock_every_days"], edited["phone"]) == (3, "138 0000 0000")
    shown = run("resident", "show", liu["id"])
    assert shown["knock_every_days"] == 3 and shown["visits"] == [] and shown["tickets"] == []
    listed = _invoke(home, ["resident", "list"], lang).stdout
    assert ("居民 2 人" if lang == "zh" else "2 residents") in listed
    first = CliRunner(env={"CARESYNC_LANG": ""}).invoke(main, ["--home", str(home), "--lang", lang, "resident", "list"])
    assert first.stdout == listed  # the options may come before the command
    both = CliRunner().invoke(main, ["--json", "--home", str(home), "resident", "list", "--grid", "changnan/lane-7"])
    assert [r["name"] for r in json.loads(both.stdout)["residents"]] == ["Mr Chen"]


def test_knock_round_record_due_and_raise(run: Run, home: Path, lang: str) -> None:
    run("worker", "add", "--name", "knocker-fang", "--role", "knocker", "--grid", GRID)
    assert [w["name"] for w in run("worker", "list", "--role", "knocker")["workers"]] == ["knocker-fang"]
    wang = run("resident", "add", "--name", "Old Wang", "--grid", GRID, "--knock-every", "2")
    run("resident", "add", "--name", "Auntie Zhou", "--grid", "changnan/lane-7", "--knock-every", "1")
    first = run("visit", "record", wang["id"], "--outcome", "no_answer", "--visitor", "knocker-fang")
    assert first["flags"] == []
    second = run("visit", "record", wang["id"], "--outcome", "no_answer", "--note", "lights off")
    assert second["flags"] == ["no_answer_twice"]
    assert len(run("visit", "list", "--resident", wang["id"])["visits"]) == 2
    later = "2099-01-01T09:00"
    due = run("visit", "due", "--knocker", "knocker-fang", "--at", later)
    assert [e["resident_id"] for e in due["flagged"]] == [wang["id"]] and due["by_building"] == {}
    everyone = run("visit", "due", "--at", later)
    assert list(everyone["by_building"]) == ["changnan/lane-7"] and everyone["overdue"] == 2
    text = _invoke(home, ["visit", "due", "--at", later], lang).stdout
    assert ("需立即关注" if lang == "zh" else "Needs attention now") in text
    ticket = run("visit", "raise", wang["id"])
    assert (ticket["kind"], ticket["channel"], ticket["visit_id"]) == ("early_warning", "door_knock", second["id"])
    assert ticket["title"] == (  # built from structure (the resident's id and grid), never the name
        f"居民 {wang['id']}（{GRID}）连续两次敲门无人应答"
        if lang == "zh"
        else f"Resident {wang['id']} ({GRID}) did not answer two knocks in a row"
    )
    assert run("visit", "due", "--at", later)["flagged"][0]["open_ticket"] == ticket["number"]


def test_a_dispute_from_intake_to_outcome(run: Run, home: Path, lang: str) -> None:
    d = run("dispute", "open", "--title", "Renovation noise", "--grid", GRID, "--party", "Mr Chen:renovating")
    assert d["kind"] == "dispute" and [p["name"] for p in d["parties"]] == ["Mr Chen"]
    run("dispute", "party", d["number"], "Ms Zhou:downstairs")
    run("dispute", "session", d["number"], "--mediator", "Teacher Hu", "--summary", "works 9-17 only")
    run("ticket", "resolve", d["number"])
    refused = _invoke(home, ["ticket", "close", d["number"]], lang)
    assert refused.exit_code == 1  # the library's close rule, in the clerk's language
    assert ("调解结果" if lang == "zh" else "mediation outcome") in refused.stderr
    done = run("dispute", "outcome", d["number"], "settled", "--mediator", "Teacher Hu", "--close")
    assert (done["status"], done["outcome"], done["mediator"]) == ("closed", "settled", "Teacher Hu")
    assert len(done["sessions"]) == 1 and [p["side"] for p in done["parties"]] == ["renovating", "downstairs"]


def test_the_review_queue_and_one_command_to_settle(run: Run, home: Path, tmp_path: Path, lang: str) -> None:
    t = run("ticket", "submit", "--title", "Septic tank", "--kind", "repair", "--grid", GRID)
    with (
        Replica.open(home / "replica.db", actor="clerk-zhang") as desk,
        Replica.open(tmp_path / "phone.db", actor="grid-li") as phone,
    ):
        phone.sync_with(desk)
        desk.tickets.edit(t["id"], title="Septic tank blocked")
        phone.tickets.edit(t["id"], title="Septic tank overflowing")
        phone.tickets.edit(t["id"], priority="high")
        desk.sync_with(phone)
    queue = run("conflicts", "list")
    assert queue["needs_decision"] == 1
    [conflict] = [i for i in queue["items"] if i["needs_decision"]]
    assert conflict["key"] == f"{t['number']}#title"
    assert {(c["value"], c["actor"]) for c in conflict["changes"]} == {
        ("Septic tank blocked", "clerk-zhang"),
        ("Septic tank overflowing", "grid-li"),
    }
    text = _invoke(home, ["conflicts", "list"], lang).stdout
    assert ("需要决定" if lang == "zh" else "needs a decision") in text
    done = run("conflicts", "resolve", conflict["key"], "--value", "2024")  # digits, but a title is text
    assert done["left"] == 0
    assert run("ticket", "show", t["id"])["title"] == "2024"
    assert run("conflicts", "list", "--no-parallel")["items"] == []


def test_report_json_table_and_html(home: Path, tmp_path: Path, lang: str) -> None:
    start = DEFAULT_START_MS - 61 * 86_400_000  # 2026-10-01, well before now: nothing depends on today
    station, _, _ = build_week(tmp_path / "week.db", start)
    station.close()
    args = ["report", "--db", str(tmp_path / "week.db"), "--from", "2026-09-30", "--to", "2026-10-10"]
    result = _invoke(home, [*args, "--json"], lang)  # reading needs no actor
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tickets_received"], data["tickets_resolved"], data["visits"]) == (7, 4, 3)
    assert data["satisfaction_rate"] == pytest.approx(2 / 3) and data["median_hours_to_resolve"] == pytest.approx(20)
    assert data["resolved_within_48h_rate"] == pytest.approx(0.75) and data["mediation_success_rate"] == 0.5
    assert data["residents_overdue"] == 4 and data["tickets_overdue"] == 2  # as of the end of 10 October
    assert data["by_channel"]["walk_in"] == 4 and data["courier_transit_hours"] == pytest.approx(9)
    table = _invoke(home, [*args, "--actor", "head"], lang).stdout
    assert ("满意率" if lang == "zh" else "Satisfaction") in table and "66.7%" in table
    page = tmp_path / "wall.html"
    written = _invoke(home, [*args, "--actor", "head", "--html", str(page)], lang)
    assert written.exit_code == 0 and str(page) in written.stdout

    class Svg(HTMLParser):
        count = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.count += tag == "svg"

    parser = Svg()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.count == 8 and "66.7%" in page.read_text(encoding="utf-8")


def test_mistakes_are_one_line_and_change_nothing(run: Run, home: Path, lang: str) -> None:
    before = (home / "replica.db").stat().st_size, run("ticket", "list", "--all")
    missing = _invoke(home, ["ticket", "show", "4242"], lang)
    assert missing.exit_code == 1 and len(missing.stderr.strip().splitlines()) == 1 and "4242" in missing.stderr
    assert missing.stderr.startswith("错误" if lang == "zh" else "Error")
    bad = _invoke(home, ["ticket", "submit", "--title", "x", "--kind", "repair", "--grid", "a//b", "--json"], lang)
    assert bad.exit_code == 1 and "grid" in bad.stderr and "Traceback" not in bad.output
    assert json.loads(bad.stdout)["error"]["code"] == "invalid_input"
    usage = _invoke(home, ["ticket", "rate", "1000", "9"], lang)
    assert usage.exit_code == 2 and len(usage.stderr.strip().splitlines()) == 1
    assert usage.stderr.startswith("用法错误" if lang == "zh" else "Usage error")
    assert run("ticket", "list", "--all") == before[1]
    bare = CliRunner(env={"CARESYNC_HOME": str(home), "CARESYNC_LANG": lang}).invoke(main, ["ticket"])
    assert bare.exit_code == 0 and "submit" in bare.stdout and bare.stderr == ""
    nowhere = _invoke(home / "typo", ["ticket", "list"], lang)
    assert nowhere.exit_code == 1 and "caresync init" in nowhere.stderr
    assert not (home / "typo").exists()


def _script() -> str:
    exe = Path(sys.executable).parent / "caresync"
    if not exe.exists():
        pytest.skip("the caresync script is not installed next to this Python")
    return str(exe)


@pytest.mark.slow
def test_the_installed_script_in_both_languages(tmp_path: Path) -> None:
    exe = _script()
    env = {"CARESYNC_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "LANG": "zh_CN.UTF-8"}

    def sh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)

    assert sh("init", "--actor", "clerk-zhang").returncode == 0
    made = sh("ticket", "submit", "--title", "Tap", "--kind", "repair", "--grid", GRID)
    assert made.returncode == 0 and "请告知居民" in made.stdout  # Chinese from the locale
    english = json.loads(sh("ticket", "list", "--json", "--lang", "en").stdout)
    number = english["tickets"][0]["number"]
    assert sh("ticket", "accept", number, "--assignee", "grid-li", "--lang", "en").stdout.startswith(f"Ticket {number}")
    wrong = sh("ticket", "close", number)
    assert wrong.returncode == 1 and wrong.stderr.startswith("错误") and "Traceback" not in wrong.stderr
    report = json.loads(sh("report", "--json").stdout)
    assert report["tickets_received"] == 1 and report["tickets_resolved"] == 0
    assert sh("conflicts", "list", "--json").returncode == 0
    liu = json.loads(sh("resident", "add", "--name", "Liu", "--grid", GRID, "--knock-every", "1", "--json").stdout)
    assert "姓名: Liu" in sh("resident", "show", liu["id"]).stdout
    assert json.loads(sh("visit", "due", "--json", "--at", "2099-01-01").stdout)["overdue"] == 1
    opened = sh("dispute", "open", "--title", "Noise", "--grid", GRID, "--party", "Chen", "--lang", "en")
    assert opened.returncode == 0 and opened.stdout.startswith("Dispute opened: number")
    unknown = sh("ticket", "fly")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_devices_sync_through_a_real_server_from_their_folders(tmp_path: Path) -> None:
    from caresync_server.testing import ServerProcess

    from tests.server_support import enroll

    database = f"sqlite:///{tmp_path / 'server.db'}"
    tokens = {
        "desk": enroll(database, "desk", role="station", grids=[""]),
        "phone": enroll(database, "phone", role="grid_worker", grids=["changnan"]),
    }
    server = ServerProcess(database, tmp_path).start()
    try:

        def on(device: str, lang: str, *args: str) -> Result:
            env = {"CARESYNC_HOME": str(tmp_path / device), "CARESYNC_TOKEN": tokens[device], "CARESYNC_LANG": lang}
            return CliRunner(env=env).invoke(main, list(args))

        assert on("desk", "en", "init", "--actor", "clerk-zhang", "--server", server.url).exit_code == 0
        assert on("phone", "zh", "init", "--actor", "grid-li", "--server", server.url).exit_code == 0
        made = json.loads(
            on("desk", "en", "ticket", "submit", "--title", "Tap", "--kind", "repair", "--grid", GRID, "--json").stdout
        )
        sent = on("desk", "en", "sync")
        # the ticket, and the short number the first block gave it in place of its provisional one
        assert made["number_provisional"] and sent.exit_code == 0 and sent.stdout.startswith("sent 2, received 0")
        got = on("phone", "zh", "sync", "--json")
        assert got.exit_code == 0 and json.loads(got.stdout)["received"] >= 1
        taken = on("phone", "zh", "ticket", "accept", made["number"], "--assignee", "grid-li")  # the number told
        assert taken.stdout.startswith("诉求 1000：已接单")
        assert on("phone", "zh", "sync").stdout.startswith("已发送 1")
        assert on("desk", "en", "sync").exit_code == 0
        shown = json.loads(on("desk", "en", "ticket", "show", made["number"], "--json").stdout)
        assert (shown["status"], shown["assignee"], shown["number"]) == ("accepted", "grid-li", "1000")
        assert shown["former_numbers"] == [made["number"]]
    finally:
        server.stop()
