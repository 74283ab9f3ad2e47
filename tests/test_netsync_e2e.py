"""End to end: devices that are offline most of the time converge through a real server process, whatever the
network does: links cut after the server answered, the server killed with SIGKILL mid-sync and restarted, a
device's sync process killed with SIGKILL mid-sync. The same suite runs on SQLite and on PostgreSQL.

At the end every device holds every op anyone made (none lost, none twice: ops are keyed by identity), has
nothing left to send, and all show the same state digest.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from caresync_server.testing import ServerProcess

from caresync import Replica, SyncError
from tests.netsync_support import FlakyTransport, all_ops, describe, random_work
from tests.server_support import enroll

DEVICES = 5
ROUNDS = 6
CHILD = Path(__file__).parent / "crash_helpers" / "net_sync_child.py"


def _sync_flaky(device: Replica, server: ServerProcess, token: str, rng: random.Random) -> int:
    """One sync over a link that drops answers; small batches so there are many batch boundaries to cut at."""
    transport = FlakyTransport(rng, cut=0.25)
    # a dropped link raises SyncError: the device carries on offline and syncs later
    with httpx.Client(transport=transport, timeout=30) as client, contextlib.suppress(SyncError):
        device.sync(server.url, token=token, push_batch=7, pull_batch=11, retries=0, client=client)
    return transport.cuts


def _kill_server_mid_sync(device: Replica, server: ServerProcess, token: str, rng: random.Random) -> bool:
    """SIGKILLs the server while the device is syncing, then starts it again over the same database; returns
    whether the kill cut the sync short."""
    killer = threading.Timer(rng.uniform(0.02, 0.3), server.kill)
    killer.start()
    cut = False
    try:
        device.sync(server.url, token=token, push_batch=3, pull_batch=3, retries=0)
    except SyncError:
        cut = True
    killer.join()
    server.kill()
    server.start()
    return cut


def _kill_device_mid_sync(path: Path, server: ServerProcess, token: str, rng: random.Random) -> bool:
    """Runs a sync of the device file in a child process and SIGKILLs it after a few committed batches;
    returns whether it was killed before it finished."""
    with (path.parent / "child.log").open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), server.url, token, "4"], stdout=subprocess.PIPE, stderr=log
        )
    assert child.stdout is not None
    with child.stdout:
        batches = rng.randrange(1, 4)
        for line in child.stdout:
            if line.startswith(b"batch"):
                batches -= 1
                if batches == 0:
                    break
        child.kill()
        child.wait()
        return batches == 0 and child.returncode == -9


@pytest.mark.slow
def test_devices_converge_through_a_real_server(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(20261129)
    server = ServerProcess(database_url, tmp_path).start()
    try:
        tokens = [enroll(database_url, f"device-{i}", role="station", grids=[""]) for i in range(DEVICES)]
        paths = [tmp_path / f"device-{i}.db" for i in range(DEVICES)]
        devices = [Replica.open(p, actor=f"worker-{i}") for i, p in enumerate(paths)]
        made: set[tuple[str, int]] = set()
        killed_server = killed_device = False
        cuts = 0
        for round_no in range(ROUNDS):
            for device in devices:
                random_work(device, rng, rng.randrange(5, 30))
            for i in rng.sample(range(DEVICES), rng.randrange(2, DEVICES + 1)):
                if round_no >= 2 and not killed_server:
                    killed_server = _kill_server_mid_sync(devices[i], server, tokens[i], rng)
                elif round_no >= 3 and not killed_device:
                    devices[i].close()
                    made |= all_ops(Replica.open(paths[i], actor="check"))  # what it held before the crash
                    killed_device = _kill_device_mid_sync(paths[i], server, tokens[i], rng)
                    devices[i] = Replica.open(paths[i], actor=f"worker-{i}")
                else:
                    cuts += _sync_flaky(devices[i], server, tokens[i], rng)
            for device in devices:
                made |= all_ops(device)
        for _ in range(2):  # back online for good: everyone syncs, then once more to get the others' last ops
            for i, device in enumerate(devices):
                result = device.sync(server.url, token=tokens[i], push_batch=50, pull_batch=50)
                assert not result.refused, result.refused
        for device in devices:
            made |= all_ops(device)
        digests = {device.state_digest() for device in devices}
        assert len(digests) == 1, [describe(d) for d in devices]
        for device in devices:
            assert all_ops(device) == made
            assert device.unsent_count() == 0
            assert device.op_count() == len(made)
        assert killed_server and killed_device and cuts > 5
        for device in devices:
            device.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_a_month_offline_device_catches_up_in_bounded_batches(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url, tmp_path).start()
    try:
        busy_token = enroll(database_url, "busy", role="station", grids=[""])
        away_token = enroll(database_url, "away", role="station", grids=[""])
        with (
            Replica.open(tmp_path / "busy.db", actor="clerk") as busy,
            Replica.open(tmp_path / "away.db", actor="knocker") as away,
        ):
            rng = random.Random(7)
            random_work(away, rng, 20)
            for _ in range(10):  # a month of the station's work while the other device is away
                random_work(busy, rng, 40)
                busy.sync(server.url, token=busy_token)
            seen: list[tuple[str, int]] = []
            result = away.sync(
                server.url, token=away_token, pull_batch=25, progress=lambda p: seen.append((p.phase, p.done))
            )
            assert result.pulled == busy.op_count()
            assert sum(1 for phase, _ in seen if phase == "pull") >= busy.op_count() // 25
            busy.sync(server.url, token=busy_token)
            assert busy.state_digest() == away.state_digest()
    finally:
        server.stop()
