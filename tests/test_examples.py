"""Every script in examples/ runs, as a user would run it, and says what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
PROMISES = {
    "two_replicas.py": "same state on both: True",
    "knock_round.py": "station sees: Old Wang did not answer",
    "parcel_journey.py": "open custody conflicts: 0",
}


def test_every_example_is_checked() -> None:
    assert {p.name for p in EXAMPLES} == set(PROMISES)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert PROMISES[script.name] in done.stdout
    assert "Traceback" not in done.stderr
