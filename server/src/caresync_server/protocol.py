"""Protocol v1: the envelopes devices and the server exchange, as pydantic models.

These models are the contract published at ``/openapi.json`` and described in docs/protocol.md. Requests'
envelope fields are checked with them (strictly: a number must be a JSON number, a string a JSON string); the
ops inside a push are checked by :func:`caresync.core.ops.validate_ops`, the library's own rules, not by
:class:`Op`, which documents their shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from caresync.core.ops import MAX_BLOB_BYTES
from caresync.sync.bundles.format import MAX_DELETED, MAX_HANDOFFS, MAX_WANTS
from caresync.trust.blobs import CHUNK_SIZE
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from .errors import ErrorCode, ErrorDetail

__all__ = [
    "CODE_PATTERN",
    "CURSOR_PATTERN",
    "JSON_MAX_INT",
    "MAX_GRID_KEYS",
    "MAX_HANDOFFS",
    "MAX_RECEIPTS",
    "MAX_WRAPS",
    "PROTOCOL_VERSION",
    "AdminDevice",
    "AdminDevices",
    "AdminEnrolRequest",
    "AdminEnrolResponse",
    "AdminScopeRequest",
    "BundleFields",
    "CredentialsResponse",
    "DeviceResponse",
    "EnrollRequest",
    "ErrorBody",
    "ErrorEnvelope",
    "GridKeyIn",
    "GridKeyModel",
    "GridKeyReader",
    "GridKeyWrap",
    "GridKeyWrapIn",
    "GridKeysRequest",
    "GridKeysResponse",
    "GridKeysStored",
    "Handoff",
    "Health",
    "Info",
    "Limits",
    "Op",
    "PullRequest",
    "PullResponse",
    "PushRequest",
    "PushResponse",
    "Receipt",
    "Refusal",
    "RefusalCode",
    "RelayRequest",
    "StationKeyLinkModel",
    "StationKeyRequest",
    "TokenRequest",
    "Waiting",
]

#: The protocol this server speaks; its endpoints live under ``/v1``.
PROTOCOL_VERSION = 1

_MAX_INT = 2**63 - 1
#: The largest integer an envelope field takes: the largest every JSON reader holds exactly (a double's 53 bits),
#: so that the bound the OpenAPI document declares is the bound the server enforces, to the unit.
JSON_MAX_INT = 2**53 - 1


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``341.0``) is an integer, as JSON Schema's ``integer`` says."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


_INTEGRAL = BeforeValidator(_integral)
ReplicaId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
MAX_BLOB_CHUNKS = MAX_BLOB_BYTES // CHUNK_SIZE + 1
BlobIdText = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: A pull cursor as this server writes it (``<ms>.<n>``), or empty for the start; a cursor past the end of the
#: log is the end of the log.
CURSOR_PATTERN = r"^([0-9]{1,15}\.[0-9]{1,7})?$"
#: An enrolment code as typed: 16 Crockford base32 characters (``U`` is not one), with any dashes and spaces.
CODE_PATTERN = r"^[ -]{0,8}([0-9A-TV-Za-tv-z][ -]{0,8}){16}$"
#: An integer member of a request: a JSON number with no fraction, 0 to :data:`JSON_MAX_INT`.
Millis = Annotated[int, Field(ge=0, le=JSON_MAX_INT), _INTEGRAL]
Count = Annotated[int, Field(ge=0, le=JSON_MAX_INT), _INTEGRAL]
RefusalCode = Literal["forbidden", "depends_on_refused", "origin_revoked", "wrong_record"]

_REQUEST = ConfigDict(strict=True, extra="ignore")  # unknown members are ignored: newer clients may add some


def _present_or_absent(schema: dict[str, Any]) -> None:
    """``sig`` and ``pd`` are left out when absent, never ``null``."""
    for name in ("sig", "pd"):
        prop = schema["properties"][name]
        prop.update(next(part for part in prop.pop("anyOf") if part.get("type") != "null"))
        prop.pop("default", None)


class Op(BaseModel):
    """An op as it travels: see the library's docs/concepts.md (section 1) for every kind and body. The server
    checks each op with the library's own rules (``caresync.core.ops.validate_ops``: the body of each kind) and its
    signature (``caresync.trust.signing``), which no schema can say: an op that passes this schema may still be
    refused (`invalid_ops`, `bad_signature`, `unknown_kind`)."""

    model_config = ConfigDict(json_schema_extra=_present_or_absent)

    v: int = Field(ge=1, description="The op format version (1 to 4; a newer one is kept for a newer server).")
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}\.[a-z_]{1,32}$")] = Field(
        description="`<record type>.<action>`, for example `ticket.set`.", examples=["ticket.set"]
    )
    origin: ReplicaId = Field(description="The replica (device) that made the op.")
    seq: int = Field(ge=1, lt=2**62, description="That replica's gap-free counter: (origin, seq) is the op's identity.")
    hlc: int = Field(ge=0, lt=2**63, description="Hybrid-logical-clock stamp: wall milliseconds << 20 | a counter.")
    eid: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")] = Field(
        description="The record the op is about, for example `T-<origin>-<seq>`."
    )
    actor: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(description="Who made the change.")
    at: int = Field(ge=0, le=_MAX_INT, description="When, by the device's corrected wall clock (ms since 1970).")
    body: dict[str, Any] = Field(description="The kind's body.")
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{128}$")] | None = Field(
        None, description="Base64 of the device's public key (32 bytes) and its Ed25519 signature (64 bytes)."
    )
    pd: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = Field(
        None, description="The link to the device's previous op (seq - 1), hex; absent for seq 1."
    )


class PushRequest(BaseModel):
    """``POST /v1/push``: a batch of ops from the device's outbox (its own, and others' it relays)."""

    model_config = _REQUEST

    replica: ReplicaId = Field(description="The pushing device's replica id; bound to its token on first use.")
    time_ms: Millis = Field(description="The device's wall clock now (uncorrected), for its clock offset.")
    pending: Count = Field(0, description="Ops the device still holds unsent after this batch.")
    oldest_unsent_ms: Millis | None = Field(None, description="When the oldest of those was made, if any.")
    ops: list[Op] = Field(description="The ops, at most `max_batch_ops` (see `/v1/info`).")


class Refusal(BaseModel):
    """An op the server will never store; the same answer comes each time it is pushed again."""

    op: str = Field(description="`origin:seq`")
    code: RefusalCode
    reason: str = Field(description="What the person who made it can do about it.")


class Waiting(BaseModel):
    """An op the server cannot place yet; the device keeps it and sends it again later."""

    op: str = Field(description="`origin:seq`")
    reason: str


class PushResponse(BaseModel):
    """What the server did with a pushed batch."""

    stored: int = Field(description="Ops stored by this push.")
    duplicates: int = Field(description="Ops the server already held, identical.")
    acked: list[tuple[str, int, int]] = Field(
        description="`[origin, lo, hi]`: seq ranges of the batch now held or refused by the server; "
        "the device may mark them sent."
    )
    refused: list[Refusal]
    waiting: list[Waiting]
    server_time_ms: int
    clock_offset_ms: int = Field(description="Server time minus the device's `time_ms`.")


class PullRequest(BaseModel):
    """``POST /v1/pull``: the next ops of the device's scope after ``cursor``."""

    model_config = _REQUEST

    replica: ReplicaId
    cursor: Annotated[str, StringConstraints(max_length=40)] = Field(
        "",
        description="The cursor of the previous answer; empty for the start (another is `400 invalid_cursor`).",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    )
    limit: Annotated[int, Field(ge=1, le=JSON_MAX_INT), _INTEGRAL] = Field(
        1000, description="The most ops wanted; the server answers with at most `max_pull_limit`."
    )
    time_ms: Millis = Field(description="The device's wall clock now (uncorrected).")
    deleted: Annotated[list[BlobIdText], Field(max_length=MAX_DELETED)] = Field(
        default_factory=list,
        description="Blobs the device deleted (and committed) since it last said so: it holds them no longer.",
    )
    format: Annotated[int, Field(ge=1, le=JSON_MAX_INT), _INTEGRAL] = Field(
        3,
        description=(
            "The newest op format the device reads and checks. Ops of a newer format are left out of the answer "
            "(a device of format 4 or older cannot check the signature of a format 5 op; format 4 ops are sent to "
            "any device, which keeps those it cannot read deferred); absent, 3. A device that starts "
            "to send a higher value pulls again from the start once, to get what was left out."
        ),
    )


class PullResponse(BaseModel):
    """The next ops of the device's scope, in cursor order."""

    ops: list[Op]
    cursor: str = Field(description="Opaque; send it with the next pull once these ops are stored.")
    more: bool = Field(description="True when more ops may follow: pull again with the new cursor.")
    server_time_ms: int
    clock_offset_ms: int
    drop_blobs: list[str] | None = Field(
        None,
        description="Present when the device holds blobs no live attachment names any more (removed, or their "
        "resident erased, which the device may not see): it deletes them, and says so in `deleted`.",
    )


class Health(BaseModel):
    """``GET /healthz`` when the server can serve."""

    status: Literal["ok"]
    version: str
    database: Literal["sqlite", "postgresql"]
    schema_version: int


class Limits(BaseModel):
    """What one request may carry."""

    max_batch_ops: int
    max_body_bytes: int
    max_pull_limit: int
    max_blob_bytes: int = Field(description="The largest blob (one sealed attachment) the server takes.")
    max_device_blob_bytes: int = Field(description="The blob bytes one device may have on the server.")


class Info(BaseModel):
    """``GET /v1/info``: who this server is and what it accepts."""

    server: Literal["caresync-server"]
    version: str
    protocol_version: int
    media_types: list[str] = Field(description="The forms op batches may travel in.")
    limits: Limits
    server_time_ms: int = Field(description="The server's clock: what a device signs to renew its token.")
    server_public_key: str = Field(
        description="Hex Ed25519 key that signs the answers couriers carry back to devices (relay answers)."
    )


HexKey = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class EnrollRequest(BaseModel):
    """``POST /v1/enroll``: a one-time enrolment code and the device's Ed25519 public key."""

    model_config = _REQUEST

    code: Annotated[str, StringConstraints(pattern=CODE_PATTERN)] = Field(
        description="The code `caresync-server enroll` printed: 16 characters of Crockford base32 (dashes, spaces "
        "and case do not matter; the last is a check character)."
    )
    public_key: HexKey = Field(description="The device's Ed25519 public key, 64 hex digits.")


class TokenRequest(BaseModel):
    """``POST /v1/token``: a new token for a device that proves itself with its device key."""

    model_config = _REQUEST

    replica: ReplicaId
    time_ms: Millis = Field(description="A server time at most 10 minutes old (from `GET /v1/info`).")
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{128}$")] = Field(
        description="Ed25519 signature, hex, of `caresync token v1\\n<replica>\\n<time_ms>`."
    )


class StationKeyRequest(BaseModel):
    """``PUT /v1/station-key``: the station's public key (the server never sees the secret).

    ``signing_key`` is the station's Ed25519 public key, its identity (the X25519 key devices seal to is derived
    from it); ``signature`` is the current key's signature handing over to it, for a rotation. A request with only
    ``public_key`` (a bare X25519 key of an earlier release) registers it when no key is registered yet."""

    model_config = _REQUEST

    public_key: HexKey | None = None
    signing_key: HexKey | None = None
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{128}$")] | None = None


_SEGMENT = r"[^/\s](?:[^/]{0,62}[^/\s])?"
#: A key grid: a grid path (one to three segments, as :func:`caresync.core.domain.check_grid` says), or ``""``.
GridKeyGrid = Annotated[str, StringConstraints(max_length=300, pattern=f"^$|^{_SEGMENT}(?:/{_SEGMENT}){{0,2}}$")]
#: The roles that read with readers' keys.
ReaderRole = Literal["grid_worker", "knocker", "mediator"]
#: The most readers' keys one ``PUT /v1/grid-keys`` carries, and wraps per key.
MAX_GRID_KEYS = 200
MAX_WRAPS = 2000


class GridKeyWrapIn(BaseModel):
    """One readers' key's secret wrapped (sealed) to one device's key."""

    model_config = _REQUEST

    replica: ReplicaId = Field(description="The device (replica id) it is wrapped to.")
    wrap: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]+={0,2}$", max_length=1000)] = Field(
        description="Base64 sealed box to the device's X25519 key (converted from its Ed25519 device key)."
    )


class GridKeyIn(BaseModel):
    """One version of a key grid's readers' key, as the station's desk publishes it."""

    model_config = _REQUEST

    grid: GridKeyGrid = Field(description='The key grid; `""` is everywhere.')
    role: ReaderRole = Field(description="The role whose devices read with it in that grid.")
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    public_key: HexKey = Field(description="Hex X25519 public key.")
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{128}$")] = Field(
        description="Hex Ed25519 signature by the registered station key of `caresync grid-key v1\\n` + role + "
        "`\\n` + grid + `\\n` + version + `\\n` + public key (the 32 bytes)."
    )
    wraps: list[GridKeyWrapIn] = Field(default_factory=list, max_length=MAX_WRAPS)


class GridKeysRequest(BaseModel):
    """``PUT /v1/grid-keys``: readers' keys the station's desk publishes, with their wraps."""

    model_config = _REQUEST

    keys: list[GridKeyIn] = Field(min_length=1, max_length=MAX_GRID_KEYS)


class GridKeysStored(BaseModel):
    """What ``PUT /v1/grid-keys`` stored."""

    keys: int = Field(description="Keys new to the server.")
    wraps: int = Field(description="Wraps stored (added or replaced).")


class GridKeyModel(BaseModel):
    """A published readers' key: public half and the station key's signature."""

    grid: str
    role: str
    version: int
    public_key: str = Field(description="Hex X25519 public key.")
    signature: str = Field(description="Hex Ed25519 signature (see `PUT /v1/grid-keys`).")
    signing_key: str = Field(description="Hex Ed25519 station key that signed it.")


class GridKeyWrap(BaseModel):
    """A wrap addressed to the asking device."""

    grid: str
    role: str
    version: int
    wrap: str = Field(description="Base64 sealed box to the asking device's key.")


class GridKeyReader(BaseModel):
    """A device entitled to readers' keys (listed to the station's desk only)."""

    replica: str
    role: str
    grids: list[str]
    public_key: str = Field(description="Hex Ed25519 device key it enrolled with.")


class GridKeysResponse(BaseModel):
    """``GET /v1/grid-keys``: every published readers' key, the asking device's wraps, and, for a station or admin
    device scoped everywhere, the devices entitled to readers' keys (null for every other device)."""

    keys: list[GridKeyModel]
    wraps: list[GridKeyWrap]
    readers: list[GridKeyReader] | None


class StationKeyLinkModel(BaseModel):
    """One station key in the chain: its Ed25519 public key, and the previous key's signature handing over to it."""

    signing_key: str = Field(description="Hex Ed25519 public key.")
    signature: str | None = Field(description="Hex; null for the first key.")


#: The most answer receipts a bundle may carry (a device keeps its last 50).
MAX_RECEIPTS = 200
BundleId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
AnswerId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]


class Handoff(BaseModel):
    """An answer the carrier handed to its device (from the bag)."""

    model_config = _REQUEST

    answer: AnswerId = Field(description="The answer's id.")
    bundle: BundleId = Field(description="The bundle the answer answers.")
    origin: ReplicaId = Field(description="The device the bundle came from, and the answer is for.")
    exported_ms: Millis = Field(description="When the carrier handed it over (its clock).")


class RelayRequest(BaseModel):
    """``POST /v1/relay``: one carried bundle (or none), and the answers the carrier handed to devices."""

    model_config = _REQUEST

    courier: Annotated[str, StringConstraints(max_length=200)] = Field("", description="The carrier's name.")
    bundle: dict[str, Any] | None = Field(
        None,
        description="A bundle file's object, as the device signed it. The server checks it (fields, signature, "
        "expiry, its ops) and answers a bundle it will not take with `status: refused` and a reason.",
    )
    carried_since_ms: Millis | None = Field(None, description="When the carrier took the bundle (its clock).")
    handoffs: Annotated[list[Handoff], Field(max_length=MAX_HANDOFFS)] = Field(
        default_factory=list,
        description="Answers handed to their devices. Taken only from the device that delivered the bundle or "
        "the device it is for; others are ignored (counted in `handoffs_ignored`).",
    )


class Receipt(BaseModel):
    """A device's note that it imported an answer (carried in its next bundle)."""

    model_config = ConfigDict(strict=True, extra="allow")

    bundle: BundleId
    imported_ms: Millis


class WantedBlob(BaseModel):
    """A blob an offline device wants carried back in its answer: the attach op naming it, and the chunks it
    lacks (all of them when ``need`` is absent)."""

    model_config = ConfigDict(strict=True, extra="allow")

    id: BlobIdText
    op: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}:[1-9][0-9]{0,17}$")]
    need: Annotated[list[Annotated[int, Field(ge=0, le=MAX_BLOB_CHUNKS)]], Field(max_length=MAX_BLOB_CHUNKS)] | None = (
        None
    )


class BundleFields(BaseModel):
    """The fields of a relayed bundle the server stores or compares, with their bounds (the rest is checked by
    :func:`caresync.bundles.check_bundle` and the ops by the library's validation)."""

    model_config = ConfigDict(strict=True, extra="allow")

    id: BundleId
    origin: ReplicaId
    created_ms: Millis
    expires_ms: Millis
    cursor: Annotated[str, StringConstraints(max_length=40)]
    receipts: Annotated[list[Receipt], Field(max_length=MAX_RECEIPTS)]
    ops: list[dict[str, Any]]
    wants: Annotated[list[WantedBlob], Field(max_length=MAX_WANTS)] = Field(default_factory=list)
    deleted: Annotated[list[BlobIdText], Field(max_length=MAX_DELETED)] = Field(default_factory=list)
    pull: Literal["eager", "thumbs", "lazy"] = "lazy"


class NumberBlockRequest(BaseModel):
    """``POST /v1/numbers``: how many ticket numbers the device wants reserved for it."""

    model_config = _REQUEST

    count: Annotated[int, Field(ge=1, le=1000), _INTEGRAL] = 100


class NumberBlockResponse(BaseModel):
    """A block of ticket numbers reserved for the asking device alone: ``start`` to ``start + count - 1``."""

    start: int
    count: int


class DeviceResponse(BaseModel):
    """``GET /v1/device``: the device the token belongs to, and its scope now."""

    device: str
    role: str
    grids: list[str]
    replica: str | None = Field(description="The replica id the device is bound to.")
    scope_version: int = Field(description="Raised whenever the station changes the device's role or grids.")
    token_expires_at_ms: int | None
    station_public_key: str | None = Field(description="Hex X25519 key devices seal to; null until registered.")
    station_key_chain: list[StationKeyLinkModel] = Field(
        default_factory=list,
        description="The station's keys, oldest first, each after the first signed by the one before: a device "
        "takes a new key only through this chain from the key it pinned first.",
    )
    server_public_key: str = Field(description="Hex Ed25519 key that signs relay answers (see `GET /v1/info`).")
    server_time_ms: int


class CredentialsResponse(DeviceResponse):
    """A device's credentials: ``POST /v1/enroll`` and ``POST /v1/token`` answer them."""

    token: str = Field(description="The device token; the server keeps only its SHA-256.")


_SEGMENT = r"[^/\s](?:[^/]{0,62}[^/\s])?"
#: A grid path (one to three segments of 1 to 64 characters, none starting or ending with a space), or "" for
#: everywhere: what ``caresync.core.domain.check_grid`` takes.
GridPath = Annotated[str, StringConstraints(max_length=200, pattern=rf"^(?:{_SEGMENT}(?:/{_SEGMENT}){{0,2}})?$")]
#: A device's name: 1 to 100 characters, no control character, not only spaces.
DeviceName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*$")
]
RoleName = Literal["courier", "knocker", "grid_worker", "mediator", "station", "admin"]


class AdminDevice(BaseModel):
    """A device as the station manages it (``/v1/admin/devices``)."""

    id: int
    name: str
    role: str
    grids: list[str] = Field(description='The grids it works in; `[""]` is everywhere.')
    replica: str | None = Field(description="The replica id it is bound to (null until it first syncs or enrols).")
    created_at_ms: int
    enrolled_at_ms: int | None = Field(description="When it redeemed its enrolment code.")
    revoked_at_ms: int | None
    last_sync_at_ms: int | None
    pending: int | None = Field(description="Ops it reported still unsent at its last push.")
    refusals: int = Field(description="Ops of it the server refused.")
    scope_version: int


class AdminDevices(BaseModel):
    """``GET /v1/admin/devices``: every device, revoked ones included."""

    devices: list[AdminDevice]
    server_time_ms: int


class AdminEnrolRequest(BaseModel):
    """``POST /v1/admin/devices``: a device to enrol."""

    model_config = _REQUEST

    name: DeviceName = Field(description="Unique among the server's devices (a name taken is `422`).")
    role: RoleName = Field(description="courier, knocker, grid_worker, mediator, station or admin.")
    grids: list[GridPath] = Field(min_length=1, max_length=100, description='Its grids; `[""]` for everywhere.')


class AdminEnrolResponse(BaseModel):
    """The enrolled device and its one-time code, shown once (the server keeps only a hash)."""

    device: AdminDevice
    code: str
    code_expires_at_ms: int


class AdminScopeRequest(BaseModel):
    """``PUT /v1/admin/devices/{device}/scope``: the device's grids (and role) from now on."""

    model_config = _REQUEST

    grids: list[GridPath] = Field(min_length=1, max_length=100)
    role: RoleName | None = Field(None, description="A new role; the current one when left out.")


class ErrorBody(BaseModel):
    """What went wrong, in words a station clerk can act on."""

    code: ErrorCode
    message: str
    details: list[ErrorDetail]


class ErrorEnvelope(BaseModel):
    """Every error answer, from every endpoint."""

    error: ErrorBody
