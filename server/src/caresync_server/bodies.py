"""Reading a request body with bounded work: what any request may cost the server, whoever sends it.

Every route that reads its body itself (``/v1/push``, ``/v1/relay``) goes through :func:`read_json` or
:func:`inflate`, so that no request, however it is built, makes the server do unbounded work or answer a 5xx:

* **bytes as sent**: at most ``max_body_bytes`` (the ``_BodyLimit`` middleware of :mod:`.app` refuses more as the
  bytes stream in);
* **bytes once unpacked**: a gzipped body (``Content-Encoding: gzip``) is inflated with a cap on the output, so
  memory never holds more than ``max_body_bytes`` of unpacked content, whatever the compression ratio (a "gzip
  bomb" is refused after ``max_body_bytes``, not after it inflated whole);
* **JSON values**: at most :func:`max_values` values (containers and commas are counted before parsing, in C, so
  a body of millions of tiny values is refused before it becomes millions of Python objects);
* **JSON nesting**: the parser (pydantic-core's) refuses nesting deeper than about 200 levels;
* **numbers**: the models of :mod:`.protocol` bound every integer to 0..2**63-1 (a database BIGINT).

Each refusal is a 4xx of the one error envelope: 413 ``batch_too_large`` for sizes and counts, 400
``invalid_json`` / ``invalid_encoding`` for what cannot be read.
"""

from __future__ import annotations

import zlib
from typing import Any

from pydantic_core import from_json

from .errors import ApiError, ErrorCode

__all__ = ["VALUES_PER_OP", "inflate", "max_values", "read_json"]

#: JSON values (containers and list or object members) a push may carry per op it is allowed to carry: a
#: signed op has some 15 to 25, so this leaves room for long clear text that holds commas.
VALUES_PER_OP = 64
_CHUNK = 1 << 16


def max_values(max_batch_ops: int) -> int:
    """The most JSON values one body may hold, for a server that takes ``max_batch_ops`` ops per push."""
    return max_batch_ops * VALUES_PER_OP + 1024


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as the device meant it: gunzipped when ``encoding`` is gzip, never more than ``limit`` bytes.

    The inflater is fed in chunks and stopped as soon as its output passes ``limit``.

    Raises:
        ApiError: ``unsupported_media_type`` (an encoding other than gzip or identity), ``invalid_encoding``
            (not gzip, or cut short), ``batch_too_large`` (more than ``limit`` bytes once unpacked).
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"The server cannot read a body sent with Content-Encoding {encoding}; send it as is or gzipped.",
            [{"field": "Content-Encoding", "problem": f"{encoding} is not gzip or identity"}],
        )
    unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    size = 0
    pending = body
    try:
        while pending and not unpacker.eof:
            part = unpacker.decompress(pending, _CHUNK)
            pending = unpacker.unconsumed_tail
            size += len(part)
            if size > limit:
                raise ApiError(
                    ErrorCode.BATCH_TOO_LARGE,
                    f"The body unpacks to more than {limit} bytes; send smaller batches (see /v1/info).",
                    [{"field": "body", "problem": f"more than {limit} bytes once unpacked"}],
                )
            parts.append(part)
    except zlib.error as exc:
        raise ApiError(
            ErrorCode.INVALID_ENCODING,
            "The body is not valid gzip; nothing was stored.",
            [{"field": "body", "problem": str(exc)}],
        ) from exc
    if not unpacker.eof:
        raise ApiError(
            ErrorCode.INVALID_ENCODING,
            "The gzipped body is cut short; nothing was stored.",
            [{"field": "body", "problem": "the gzip stream ends early"}],
        )
    return b"".join(parts)


def read_json(body: bytes, *, max_values_allowed: int) -> Any:
    """The JSON value ``body`` holds, after checking that it holds at most ``max_values_allowed`` values.

    Values are counted as commas and opening brackets (those inside strings too: an upper bound, counted in C
    without parsing). Numbers ``NaN`` and ``Infinity`` are refused; the nesting is bounded by the parser.

    Raises:
        ApiError: ``batch_too_large`` (too many values) or ``invalid_json`` (not JSON, not UTF-8, nested too
            deeply).
    """
    if len(body) > max_values_allowed:  # fewer bytes than that cannot hold that many values: nothing to count
        values = body.count(b",") + body.count(b"[") + body.count(b"{")
        if values > max_values_allowed:
            raise ApiError(
                ErrorCode.BATCH_TOO_LARGE,
                f"The body holds more than {max_values_allowed} JSON values; send smaller batches (see /v1/info).",
                [{"field": "body", "problem": f"about {values} values, more than {max_values_allowed}"}],
            )
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON,
            "The body is not valid JSON; nothing was stored.",
            [{"field": "body", "problem": str(exc)[:200]}],
        ) from None
