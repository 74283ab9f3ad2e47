"""The benchmark suite runs, end to end, on a tiny workload: every row it is asked for comes back "ok" and its
own correctness checks (counts, sampled values) passed. Timings here mean nothing; `python -m benchmarks` at the
defaults is where figures come from (benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = "floor_checked,caresync_merge,caresync_refold,sync/initial,sync/incremental"


def test_the_benchmark_rows_run_and_check_their_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--ops", "300", "--records", "30", "--only", ROWS, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    expected = {
        "floor_insert",
        "floor_checked",
        "caresync_merge/sync_with",
        "caresync_merge/apply_ops",
        "caresync_refold/late",
        "caresync_refold/newer",
        "sync/initial",
        "sync/incremental",
    }
    assert set(rows) == expected
    assert all(row["status"] == "ok" for row in rows.values()), rows
    assert rows["floor_checked"]["ops"] == rows["caresync_merge/apply_ops"]["ops"] == 300
