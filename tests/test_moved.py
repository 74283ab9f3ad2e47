"""The module paths of caresync 0.1.0 keep working for one release, each with a DeprecationWarning naming the
new path (caresync._moved)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from caresync._moved import MOVED


def test_every_old_path_imports_with_a_warning_that_names_the_new_one() -> None:
    """In a fresh process (an old path is imported once per process, and warns then)."""
    code = (
        "import warnings, importlib, json\n"
        "from caresync._moved import MOVED\n"
        "out = {}\n"
        "for old in MOVED:\n"
        "    with warnings.catch_warnings(record=True) as seen:\n"
        "        warnings.simplefilter('always')\n"
        "        importlib.import_module(old)\n"
        "    out[old] = [str(w.message) for w in seen if w.category is DeprecationWarning]\n"
        "print(json.dumps(out))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    wrong = {old: said for old, said in out.items() if not any(f"{old} moved to {MOVED[old][0]}" in s for s in said)}
    assert out.keys() == MOVED.keys() and not wrong


def test_a_split_module_offers_every_name_it_had() -> None:
    with pytest.warns(DeprecationWarning):
        bundles = importlib.import_module("caresync.bundles")
    from caresync.sync.bundles import bag, format, relay

    assert bundles.Bag is bag.Bag and bundles.check_bundle is format.check_bundle
    assert bundles.write_bundle is relay.write_bundle and bundles.open_sealed is format.open_answer
    with pytest.warns(DeprecationWarning):
        ops = importlib.import_module("caresync.ops")
    from caresync.core import gcpause, ids

    assert ops.op_id is ids.op_id and ops.paused_gc is gcpause.paused_gc
