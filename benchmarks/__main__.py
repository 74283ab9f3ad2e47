"""``python -m benchmarks``: runs every case in its own process and prints one table.

Options: ``--ops N`` (default 100000), ``--records N`` (default 10000), ``--json FILE``, ``--only NAME[,NAME]``
(case names or groups such as ``caresync_merge``; the floor row always runs, the ratios need it), ``--seed``,
``--seal`` (devices seal private fields to a station key, to measure what sealing costs), ``--big`` (also the
``@4x`` rows: push and initial sync at four times the workload, for peak RSS as the op count grows).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .cases import FLOOR, Case, Row, select

_ROOT = Path(__file__).resolve().parent.parent
_TIMEOUT_S = 1800


def run_case(case: Case, args: argparse.Namespace, scratch: Path) -> Row:
    """Runs one case in a fresh interpreter (``python -m benchmarks._worker``) and returns its row."""
    workdir = scratch / case.name.replace("/", "-")
    out = workdir.with_suffix(".json")
    command = [
        sys.executable,
        "-m",
        "benchmarks._worker",
        case.name,
        f"--ops={args.ops}",
        f"--records={args.records}",
        f"--seed={args.seed}",
        *(["--seal"] if args.seal else []),
        f"--workdir={workdir}",
        f"--cache={scratch / 'cache'}",
        f"--out={out}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return _error(f"timed out after {_TIMEOUT_S} s")
    if proc.returncode != 0 or not out.exists():
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return _error(lines[-1] if lines else f"worker exited with {proc.returncode}", proc.stderr)
    row: Row = json.loads(out.read_text())
    shutil.rmtree(workdir, ignore_errors=True)  # keep the disk use of a run bounded
    return row


def _error(message: str, detail: str = "") -> Row:
    return {
        "status": "error",
        "ops": None,
        "seconds": None,
        "bytes_per_op": None,
        "peak_rss_mib": None,
        "notes": f"error: {message}",
        "detail": detail,
    }


def add_rates(rows: dict[str, Row]) -> None:
    """Adds ops/s to every timed row and ``vs_floor``: how many times the floor's ops/s exceeds the row's; for a
    row that measures size (``size``), how many times the floor's bytes per op its own are."""
    for row in rows.values():
        ok = row["status"] == "ok" and row["seconds"]
        row["ops_per_s"] = row["ops"] / row["seconds"] if ok else None
    floor = rows.get(FLOOR, {}).get("ops_per_s")
    floor_bytes = rows.get(FLOOR, {}).get("bytes_per_op")
    for row in rows.values():
        row["vs_floor"] = floor / row["ops_per_s"] if floor and row["ops_per_s"] else None
        if row.get("size") and row["status"] == "ok" and floor_bytes and row["bytes_per_op"]:
            row["vs_floor"] = row["bytes_per_op"] / floor_bytes


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def render(rows: dict[str, Row], title: str) -> Table:
    """The results as a rich table."""
    table = Table(title=title, title_justify="left")
    table.add_column("workload", no_wrap=True)
    for column in ("ops", "seconds", "ops/s", "x floor", "bytes/op", "peak RSS MiB"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold")
    for name, row in rows.items():
        style = {"error": "red", "skipped": "dim"}.get(row["status"])
        ratio = row["vs_floor"]
        table.add_row(
            name,
            _num(row["ops"], ","),
            _num(row["seconds"], ".3f"),
            _num(row["ops_per_s"], ",.0f"),
            "" if ratio is None else f"{ratio:,.1f}x",
            _num(row["bytes_per_op"], ".1f"),
            _num(row["peak_rss_mib"], ".1f") if row["status"] == "ok" else "",
            row["notes"],
            style=style,
        )
    return table


def environment() -> dict[str, Any]:
    """Where the numbers come from."""

    def dist(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    spec = importlib.util.find_spec("caresync")
    return {
        "caresync_source": caresync_source(spec.origin if spec else None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "caresync": dist("caresync"),
        "loro": dist("loro"),
        "pycrdt": dist("pycrdt"),
    }


def _load() -> float | None:
    """The 1-minute load average (other work on the machine skews every row), where the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def caresync_source(origin: str | None) -> str:
    """Which caresync the workers import: its directory, and the git commit (noting uncommitted changes)."""
    if origin is None:
        return "caresync not importable"
    package = Path(origin).parent
    try:
        git = ["git", "-C", str(package)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return str(package)
    state = " + uncommitted changes" if dirty.stdout.strip() else ""
    return f"{package} @ {commit.stdout.strip()}{state}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 1 if any case failed."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Runs each benchmark case in its own process; prints one table."
    )
    parser.add_argument("--ops", type=int, default=100_000, help="field ops in the workload (default 100000)")
    parser.add_argument("--records", type=int, default=10_000, help="records they touch (default 10000)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these cases or groups (the floor always runs)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the workload (default 1)")
    parser.add_argument(
        "--seal", action="store_true", help="write the workload from devices that seal private fields to a station"
    )
    parser.add_argument(
        "--big",
        action="store_true",
        help="also run the @4x rows (push and initial sync at four times the workload: peak RSS as it grows)",
    )
    args = parser.parse_args(argv)
    if args.ops < 1 or args.records < 1:
        parser.error("--ops and --records must be at least 1")
    try:
        cases = select(args.only, args.big)
    except ValueError as exc:
        parser.error(str(exc))

    width = shutil.get_terminal_size((160, 24)).columns
    out, log = Console(width=width), Console(stderr=True, width=width)
    env = environment()
    rows: dict[str, Row] = {}
    load_start = _load()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="caresync-bench-") as tmp:
        for i, case in enumerate(cases, start=1):
            t0 = time.perf_counter()
            log.print(f"[{i}/{len(cases)}] {case.name} ...", end=" ", highlight=False)
            rows[case.name] = run_case(case, args, Path(tmp))
            log.print(f"{rows[case.name]['status']} ({time.perf_counter() - t0:.1f} s)", highlight=False)
    total = time.perf_counter() - started
    env["load_average"] = {"start": load_start, "end": _load()}
    add_rates(rows)

    title = (
        f"caresync benchmarks: {args.ops:,} ops over {min(args.records, args.ops):,} records (seed {args.seed}"
        f"{'; private fields sealed' if args.seal else ''}); "
        f"Python {env['python']}, SQLite {env['sqlite']}, {env['cpus']} CPUs, "
        f"1-min load average {load_start} at start; total {total:.0f} s\n"
        f"caresync: {env['caresync_source']}"
    )
    out.print(render(rows, title))
    for name, row in rows.items():
        if row.get("detail"):
            log.print(f"{name} failed:", style="red", highlight=False, markup=False)
            log.print(row["detail"], highlight=False, markup=False)
    if args.json:
        params = {
            "ops": args.ops,
            "records": args.records,
            "seed": args.seed,
            "only": args.only,
            "seal": args.seal,
            "big": args.big,
        }
        payload = {"params": params, "environment": env, "total_seconds": total, "results": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(row["status"] == "error" for row in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
