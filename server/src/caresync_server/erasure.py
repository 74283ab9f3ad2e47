"""Erasure on the server: a ``resident.redact`` op erases personal fields from the bodies of that resident's ops
written before it (by clock order), on the server as on every replica (the library's docs/concepts.md,
section 3). Pure functions; the storage layer applies them to stored ops and to ops that arrive late.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["REDACTABLE_KINDS", "erase"]

#: The op kinds whose bodies a redaction rewrites (so their bodies are not compared to tell duplicates).
REDACTABLE_KINDS: frozenset[str] = frozenset({"resident.create", "resident.set", "resident.note"})


def erase(kind: str, body: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The body of a ``kind`` op with the redacted ``fields`` set to None (``notes`` erases note texts)."""
    names = set(fields)
    if kind == "resident.create":
        return {key: (None if key in names else value) for key, value in body.items()}
    if kind == "resident.set" and body.get("field") in names:
        return {**body, "value": None}
    if kind == "resident.note" and "notes" in names:
        return {**body, "text": None}
    return body
