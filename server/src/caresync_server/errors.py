"""The errors the server raises on purpose, under the library's root :class:`caresync.CaresyncError`.

::

    CaresyncError                 (caresync)
    └── ServerError
        ├── ConfigError           a setting or option is not valid (names it)
        ├── DatabaseError         the database cannot be used
        │   ├── DatabaseUnavailable   it does not answer (down, wrong address, locked too long)
        │   └── DatabaseNotReady      it has no caresync-server tables, or a newer server's
        ├── AdminError            an admin command cannot do what was asked (unknown device, name taken)
        └── ApiError              a request is refused: an HTTP status, a stable code, the JSON error envelope

Every :class:`ApiError` reaches the device as ``{"error": {"code": ..., "message": ..., "details": [...]}}``;
:class:`ErrorCode` lists every code with its HTTP status, and docs/protocol.md says what each one means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, NotRequired

from caresync.errors import CaresyncError
from typing_extensions import TypedDict

__all__ = [
    "STATUS",
    "AdminError",
    "ApiError",
    "ConfigError",
    "DatabaseError",
    "DatabaseNotReady",
    "DatabaseUnavailable",
    "ErrorCode",
    "ErrorDetail",
    "ServerError",
]


class ErrorCode(StrEnum):
    """Every code an error envelope can carry."""

    INVALID_JSON = "invalid_json"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_CURSOR = "invalid_cursor"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"
    INVALID_CODE = "invalid_code"
    FORBIDDEN = "forbidden"
    REVOKED = "revoked"
    REPLICA_MISMATCH = "replica_mismatch"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    OP_FORK = "op_fork"
    SEQ_GAP = "seq_gap"
    BATCH_TOO_LARGE = "batch_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_REQUEST = "invalid_request"
    INVALID_OPS = "invalid_ops"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_BLOB = "unknown_blob"
    BLOB_TOO_LARGE = "blob_too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    DAMAGED_CHUNK = "damaged_chunk"
    UNSEALED_FIELD = "unsealed_field"
    STATION_KEY_CONFLICT = "station_key_conflict"
    GRID_KEY_CONFLICT = "grid_key_conflict"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"


#: The HTTP status each code is answered with.
STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_ENCODING: 400,
    ErrorCode.INVALID_CURSOR: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INVALID_CODE: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.REVOKED: 403,
    ErrorCode.REPLICA_MISMATCH: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.OP_FORK: 409,
    ErrorCode.SEQ_GAP: 409,
    ErrorCode.BATCH_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.INVALID_OPS: 422,
    ErrorCode.BAD_SIGNATURE: 422,
    ErrorCode.UNKNOWN_KIND: 422,
    ErrorCode.UNKNOWN_BLOB: 404,
    ErrorCode.BLOB_TOO_LARGE: 413,
    ErrorCode.QUOTA_EXCEEDED: 413,
    ErrorCode.DAMAGED_CHUNK: 422,
    ErrorCode.UNSEALED_FIELD: 422,
    ErrorCode.STATION_KEY_CONFLICT: 409,
    ErrorCode.GRID_KEY_CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}


class ErrorDetail(TypedDict):
    """One problem of a refused request: where (``field``) and what is wrong (``problem``).

    ``op`` names the op (``origin:seq``) when the problem is one op's; ``expected_seq`` is the seq the server
    expects next from the device after a ``seq_gap``.
    """

    field: str
    problem: str
    op: NotRequired[str]
    expected_seq: NotRequired[int]


class ServerError(CaresyncError):
    """Root of every error the server raises on purpose."""

    code: str = "server_error"


class ConfigError(ServerError):
    """A setting or a command-line option is not valid; ``problems`` lists ``(name, what is wrong)``."""

    code = "invalid_config"

    def __init__(
        self,
        message: str,
        problems: Sequence[tuple[str, str]] = (),
        *,
        key: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.problems = list(problems)
        if self.problems:
            message = f"{message} ({'; '.join(f'{name}: {msg}' for name, msg in self.problems)})"
        super().__init__(message, key=key, fields=fields)

    def envelope_details(self) -> list[dict[str, str]]:
        """One ``{"field", "problem"}`` per setting that is wrong."""
        return [{"field": name, "problem": problem} for name, problem in self.problems]


class DatabaseError(ServerError):
    """The server's database cannot be used."""

    code = "database_error"


class DatabaseUnavailable(DatabaseError):
    """The database does not answer (it is down, the address is wrong, or it stayed locked too long)."""

    code = "database_unavailable"


class DatabaseNotReady(DatabaseError):
    """The database has no caresync-server tables yet, or tables written by a newer caresync-server."""

    code = "database_not_ready"


class AdminError(ServerError):
    """An admin command cannot do what was asked: no such device, a name already taken, a wrong role."""

    code = "admin_error"


class ApiError(ServerError):
    """A refused request, answered with ``STATUS[code]`` and the JSON error envelope."""

    code: ErrorCode

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: Sequence[ErrorDetail] = (),
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS[code]
        self.details = list(details)
        self.headers = headers or {}

    def envelope_details(self) -> list[dict[str, str]]:
        """The details of the refusal, as the envelope carries them."""
        return [{k: str(v) for k, v in d.items()} for d in self.details]

    def envelope(self) -> dict[str, object]:
        """The JSON body of the answer."""
        return {"error": {"code": self.code.value, "message": self.message, "details": self.details}}
