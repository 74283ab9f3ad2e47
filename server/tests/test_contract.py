"""The published contract: the OpenAPI spec describes every endpoint and model, and the docs cover every error
code, refusal code, setting and command."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, get_args

from caresync.sync.wire import MEDIA_TYPE

from caresync_server.app import create_app
from caresync_server.cli import main
from caresync_server.errors import STATUS, ErrorCode
from caresync_server.protocol import RefusalCode
from caresync_server.settings import Settings
from support import Client

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _spec(tmp_path: Path) -> dict[str, Any]:
    client = Client(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'spec.db'}")))
    try:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        spec: dict[str, Any] = response.json()
        return spec
    finally:
        client.close()


def test_the_openapi_spec_describes_every_endpoint_and_model(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    trust = {"/v1/enroll", "/v1/token", "/v1/device", "/v1/station-key", "/v1/grid-keys", "/v1/numbers"}
    relay = {"/v1/relay", "/v1/relays"}
    admin = {"/v1/admin/devices", "/v1/admin/devices/{device}/revoke", "/v1/admin/devices/{device}/scope"}
    blobs = {"/v1/blobs/{blob_id}", "/v1/blobs/{blob_id}/chunks/{n}"}
    assert set(spec["paths"]) == {"/v1/push", "/v1/pull", "/healthz", "/v1/info"} | trust | relay | admin | blobs
    schemas = spec["components"]["schemas"]
    for model in (
        "PushRequest",
        "PushResponse",
        "PullRequest",
        "PullResponse",
        "Op",
        "ErrorEnvelope",
        "Info",
        "EnrollRequest",
        "TokenRequest",
        "CredentialsResponse",
        "DeviceResponse",
        "NumberBlockRequest",
        "NumberBlockResponse",
        "AdminDevice",
        "AdminDevices",
        "AdminEnrolRequest",
        "AdminEnrolResponse",
        "AdminScopeRequest",
        "GridKeysRequest",
        "GridKeysResponse",
        "GridKeysStored",
    ):
        assert model in schemas, model
    assert "HTTPValidationError" not in schemas  # every error is the one envelope

    push = spec["paths"]["/v1/push"]["post"]
    assert set(push["requestBody"]["content"]) == {"application/json", MEDIA_TYPE}
    assert push["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PushRequest"}
    assert push["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PushResponse")
    for status in ("400", "401", "403", "409", "413", "415", "422", "503"):
        assert push["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    pull = spec["paths"]["/v1/pull"]["post"]
    assert set(pull["responses"]["200"]["content"]) == {"application/json", MEDIA_TYPE}
    assert push["security"] == pull["security"] == [{"HTTPBearer": []}]
    assert spec["paths"]["/v1/relay"]["post"]["security"] == spec["paths"]["/v1/relays"]["get"]["security"]
    assert spec["paths"]["/v1/relays"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"] and "security" not in spec["paths"]["/v1/info"]["get"]
    for path in ("/v1/enroll", "/v1/token"):
        assert "security" not in spec["paths"][path]["post"]
    assert spec["paths"]["/v1/device"]["get"]["security"] == [{"HTTPBearer": []}]
    for method in ("get", "put"):  # readers' keys: with a device token
        assert spec["paths"]["/v1/grid-keys"][method]["security"] == [{"HTTPBearer": []}]
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', str(spec).replace("'", '"'))
    assert set(refs) <= set(schemas), "a reference to a schema the spec does not hold"


def test_the_protocol_page_explains_every_code() -> None:
    page = (DOCS / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"`{code.value}`" in page, f"docs/protocol.md does not explain the error code {code.value}"
        assert f"| {STATUS[code]} |" in page or f"{STATUS[code]}" in page
    for refusal in get_args(RefusalCode):
        assert f"`{refusal}`" in page, f"docs/protocol.md does not explain the refusal code {refusal}"
    for endpoint in (
        "POST /v1/push",
        "POST /v1/pull",
        "GET /healthz",
        "GET /v1/info",
        "POST /v1/enroll",
        "POST /v1/token",
        "GET /v1/device",
        "PUT /v1/station-key",
        "GET /v1/grid-keys",
        "PUT /v1/grid-keys",
        "POST /v1/numbers",
        "POST /v1/relay",
        "GET /v1/relays",
        "POST /v1/blobs/{id}",
        "PUT /v1/blobs/{id}/chunks/{n}",
        "GET /v1/blobs/{id}",
    ):
        assert endpoint in page


def test_the_server_page_documents_every_command_and_setting() -> None:
    page = (DOCS / "server.md").read_text()
    for command in main.commands:
        assert f"caresync-server {command}" in page, f"docs/server.md does not show caresync-server {command}"
    for setting in Settings.model_fields:
        assert f"CARESYNC_{setting.upper()}" in page, f"docs/server.md does not document {setting}"


def test_every_public_name_exists() -> None:
    for name in (
        "",
        ".admission",
        ".app",
        ".cli",
        ".errors",
        ".protocol",
        ".roles",
        ".settings",
        ".storage",
        ".testing",
        ".trust",
    ):
        module = importlib.import_module(f"caresync_server{name}")
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"caresync_server{name}.__all__ names what it does not define: {missing}"
