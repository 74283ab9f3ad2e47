"""The JSON the programs print: one time format, ISO 8601 with its offset, everywhere.

:func:`dumps` writes a command's result with every moment as ``2026-12-07T18:27:00.123000+00:00``: a ``datetime``
by its ``isoformat``, a moment kept in milliseconds since 1970 under a ``..._ms`` key as ``..._at`` (``expires_ms``
→ ``expires_at``; a ``..._at`` in milliseconds, as op bodies in a history keep them, in place), and pydantic's
``Z`` spelled ``+00:00``. Lengths of time stay numbers (``clock_offset_ms``).
Tables and lines for people show local time instead (``_common.fmt_time``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["DURATIONS", "dumps", "iso", "plain"]

#: Keys ending in ``_ms`` that hold a length of time, not a moment: they stay milliseconds.
DURATIONS = frozenset(
    {
        "clock_offset_ms",
        "offset_ms",
        "waited_ms",
        "elapsed_ms",
        "age_ms",
        "ttl_ms",
        "in_transit_ms",
        "median_ms",
        "p99_ms",
    }
)

#: A moment written with ``Z`` for UTC (pydantic's way), or with a space for the ``T``.
_Z_OR_SPACE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})$")


def iso(moment: datetime | int) -> str:
    """A moment (a ``datetime``, or milliseconds since 1970) as ISO 8601 with its offset; a naive ``datetime`` is
    taken as UTC, as the library keeps every moment."""
    if isinstance(moment, int):
        return datetime.fromtimestamp(moment / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()


def _key(key: str) -> str:
    base = key[: -len("_ms")]
    return base if base.endswith("_at") else f"{base}_at"


def plain(value: Any) -> Any:
    """``value`` as plain JSON data with every moment in the one format (see the module doc)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if key.endswith("_ms") and key not in DURATIONS and (v is None or isinstance(v, int)):
                out[_key(key)] = None if v is None else iso(int(v))
            elif key.endswith("_at") and isinstance(v, int) and not isinstance(v, bool):  # an op body's moment
                out[key] = iso(v)
            else:
                out[key] = plain(v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        if not (19 <= len(value) <= 40 and value[4:5] == "-"):  # not a moment: most strings, decided at once
            return value
        match = _Z_OR_SPACE.match(value)
        if match is None:
            return value
        offset = "+00:00" if match.group(3) == "Z" else match.group(3)
        return f"{match.group(1)}T{match.group(2)}{offset}"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json"):
        return plain(value.to_json())
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="python"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """A command's result as JSON text (UTF-8 characters kept), times in the one format."""
    return json.dumps(plain(value), ensure_ascii=False, indent=indent)
