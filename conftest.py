"""For every test of the repository (tests/ and server/tests/): the run works in a folder of its own.

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
