"""The names of the station's exports (:mod:`caresync.field.exports` makes them), kept apart so that a program's
options can list them without importing the exports and the records (which keeps start-up fast)."""

from __future__ import annotations

__all__ = ["EXPORTS"]

#: Every export :func:`caresync.field.exports.table` makes, by name.
EXPORTS = ("requests", "visits", "residents", "parcels", "report")
