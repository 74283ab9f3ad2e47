"""Runs one benchmark case in this (fresh) process and reports its row, with this process's peak RSS.

Usage: ``python -m benchmarks._worker NAME --ops N --records R --seed S --workdir DIR --cache DIR [--out FILE]``.
The row is written as JSON to ``--out`` (or printed). Profile one case with, for example::

    python -m cProfile -s cumtime -m benchmarks._worker caresync_merge/apply_ops --workdir /tmp/w --cache /tmp/c
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

from .cases import CASES, Config, Row


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(name: str, cfg: Config) -> Row:
    """Runs case ``name`` and adds the peak RSS to its row."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    cfg.cache.mkdir(parents=True, exist_ok=True)
    row = CASES[name].run(cfg)
    row["peak_rss_mib"] = peak_rss_mib()
    return row


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._worker", description=__doc__)
    parser.add_argument("name", choices=sorted(CASES))
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seal", action="store_true", help="devices seal private fields to a station key")
    parser.add_argument("--workdir", type=Path, required=True, help="scratch directory for this case")
    parser.add_argument("--cache", type=Path, required=True, help="directory shared by the cases of one run")
    parser.add_argument("--out", type=Path, help="write the row here as JSON (default: print it)")
    args = parser.parse_args(argv)
    cfg = Config(
        ops=args.ops, records=args.records, seed=args.seed, workdir=args.workdir, cache=args.cache, seal=args.seal
    )
    row = run(args.name, cfg)
    text = json.dumps(row)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
