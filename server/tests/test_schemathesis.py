"""The OpenAPI document is the protocol's contract (issue 16): schemathesis, a schema-driven tester nobody here
wrote, runs against a real server process with a real station token and every check on (no 5xx, status codes
and response bodies as documented, schema-valid requests accepted, schema-invalid ones refused), over every route
of the protocol. The few refusals that rest on what no schema can say (signatures, an enrolment code's check
character) are listed, with the status the document gives them, in ``contract/schemathesis.toml``. The run in CI
is small; ``pytest --soak`` runs a long one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from caresync.core.domain import Role

from caresync_server.protocol import RoleName
from caresync_server.testing import ServerProcess, enroll

CONFIG = Path(__file__).parent / "contract" / "schemathesis.toml"
#: Every route of the protocol, the station's device management under /v1/admin included (the token is a station
#: device's, which may use them). The blob routes are bounded and fuzzed by test_fuzz_routes.py.
ROUTES = (
    r"^/(v1/(push|pull|relay|relays|enroll|token|device|numbers|info|station-key|grid-keys|admin/devices.*)|healthz)$"
)


def _schemathesis(tmp_path: Path, examples: int) -> None:
    pytest.importorskip("schemathesis")
    url = f"sqlite:///{tmp_path / 'server.db'}"
    token = enroll(url, "station-desk", role="station", grids=[""])
    server = ServerProcess(url, tmp_path).start()
    try:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "--config-file",
                str(CONFIG),
                "run",
                server.url + "/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--include-path-regex",
                ROUTES,
                "--max-examples",
                str(examples),
                "--seed",
                "16",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failures" not in done.stdout.split("Test cases:")[-1], done.stdout[-3000:]


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    assert set(get_args(RoleName)) == {role.value for role in Role}  # the document's roles are the library's
    _schemathesis(tmp_path, 25)


@pytest.mark.soak
def test_schemathesis_finds_nothing_soak(tmp_path: Path) -> None:
    _schemathesis(tmp_path, 1000)
