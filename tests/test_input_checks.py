"""Input is checked where people type it: a knock or a session in the future beyond the clock-skew bound is
refused (it would hide a resident from the overdue list), the same worker is not added twice, and a returned
request is rated once (a second rating is refused, showing the first)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from caresync import IntentError
from caresync.cli import main
from tests.conftest import ReplicaFactory

GRID = "changnan/dorm/3"
Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    runner = CliRunner(env={"CARESYNC_HOME": str(tmp_path / "desk"), "CARESYNC_LANG": "en"})
    assert runner.invoke(main, ["init", "--actor", "clerk-zhang"]).exit_code == 0

    def call(*args: str) -> Result:
        return runner.invoke(main, list(args))

    return call


def test_a_knock_or_a_session_in_the_future_is_refused(run: Run) -> None:
    invoke = run
    liu = json.loads(invoke("resident", "add", "--name", "Grandma Liu", "--grid", GRID, "--json").stdout)
    future = invoke("visit", "record", liu["id"], "--outcome", "well", "--at", "2099-12-01")
    assert future.exit_code == 1 and "in the future" in future.stderr and "2099-12-01" in future.stderr
    listed = json.loads(invoke("visit", "list", "--json").stdout)
    assert listed["visits"] == []  # nothing recorded
    assert invoke("visit", "record", liu["id"], "--outcome", "well", "--at", "2020-01-01").exit_code == 0
    due = json.loads(invoke("visit", "due", "--at", "2099-01-01", "--json").stdout)
    assert due is not None  # a query time in the future is fine: only what happened is checked
    dispute = json.loads(
        invoke("dispute", "open", "--title", "Noise", "--grid", GRID, "--party", "Zhao", "--json").stdout
    )
    session = invoke(
        "dispute", "session", dispute["id"], "--mediator", "Old Hu", "--summary", "talked", "--at", "2099-01-01"
    )
    assert session.exit_code == 1 and "in the future" in session.stderr


def test_the_same_worker_is_not_added_twice(make_replica: ReplicaFactory) -> None:
    desk = make_replica("desk")
    li = desk.workers.add(name="Li Hua", role="grid_worker", grids=[GRID])
    with pytest.raises(IntentError, match=li.id):
        desk.workers.add(name=" li hua ", role="grid_worker", grids=["changnan"])
    desk.workers.add(name="Li Hua", role="knocker", grids=[GRID])  # the same person in another role is another job
    assert len(desk.workers.list()) == 2


def test_a_returned_request_is_rated_once_per_return(make_replica: ReplicaFactory) -> None:
    desk = make_replica("desk")
    t = desk.tickets.submit(title="Septic tank", kind="repair", grid=GRID)
    desk.tickets.accept(t.id, assignee="W-1")
    desk.tickets.resolve(t.id, resolution="cleared")
    desk.tickets.close(t.id)
    desk.tickets.rate(t.id, score=5)
    with pytest.raises(IntentError, match="already rated 5/5"):
        desk.tickets.rate(t.id, score=1)
    rating = desk.tickets.get(t.id).rating
    assert rating is not None and rating.score == 5
    desk.tickets.reopen(t.id, reason="leaking again")
    desk.tickets.resolve(t.id, resolution="pipe replaced")
    desk.tickets.close(t.id)
    again = desk.tickets.rate(t.id, score=4).rating  # a new return, a new rating
    assert again is not None and again.score == 4


def test_a_grid_nobody_uses_is_refused_with_the_closest_known_ones(run: Run) -> None:
    assert run("resident", "add", "--name", "Grandma Liu", "--grid", GRID).exit_code == 0
    typo = run("ticket", "submit", "--title", "Leak", "--kind", "repair", "--grid", "Changnan Dorm")
    assert typo.exit_code == 1 and "did you mean" in typo.stderr and "changnan/dorm" in typo.stderr
    assert "--new-grid" in typo.stderr
    assert json.loads(run("ticket", "list", "--all", "--json").stdout)["tickets"] == []  # nothing recorded
    building = run("ticket", "submit", "--title", "Leak", "--kind", "repair", "--grid", "changnan/dorm/4", "--json")
    assert building.exit_code == 0  # a new building in a known area
    elsewhere = run("resident", "add", "--name", "Mr Ma", "--grid", "xinan/lane-1")
    assert elsewhere.exit_code == 1 and "xinan/lane-1" in elsewhere.stderr
    assert run("resident", "add", "--name", "Mr Ma", "--grid", "xinan/lane-1", "--new-grid").exit_code == 0
    filtered = run("ticket", "list", "--grid", "changnan/drom")
    assert filtered.exit_code == 1 and "did you mean changnan/dorm" in filtered.stderr
    assert run("report", "--grid", "xinan").exit_code == 0


def test_show_says_how_a_request_was_solved_and_inspect_reads_as_lines(run: Run, tmp_path: Path) -> None:
    made = json.loads(run("ticket", "submit", "--title", "Leak", "--kind", "repair", "--grid", GRID, "--json").stdout)
    run("ticket", "accept", made["id"], "--assignee", "W-1")
    assert json.loads(run("ticket", "show", made["id"], "--json").stdout)["resolution"] is None
    run("ticket", "resolve", made["id"], "--resolution", "pipe cleared")
    assert json.loads(run("ticket", "show", made["id"], "--json").stdout)["resolution"] == "pipe cleared"
    assert "resolution: pipe cleared" in run("ticket", "show", made["id"]).stdout
    inspected = run("inspect", str(tmp_path / "desk" / "replica.db")).stdout
    assert "tickets: 1" in inspected and "{" not in inspected and "conflicts: 0" in inspected
