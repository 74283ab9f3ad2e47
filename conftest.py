"""For every test of the repository (tests/ and server/tests/): ``--soak`` for the long runs, and a working folder
of the run's own.

Programs write beside themselves what they are not told to put elsewhere (a PostgreSQL server's key file goes in
its working folder); tests that start them must never leave such a file, a secret among them, in the checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _a_working_folder_of_its_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(before)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="also run the long soak and fuzz runs (marked soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``soak`` are skipped, saying why, unless ``--soak`` is given."""
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="long soak run: pass --soak to run it")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
