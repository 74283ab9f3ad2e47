"""The store layer: one SQLite file per replica (schema, migrations, the store, its checkpointer), the device's
op log over it (:mod:`caresync.store.devicelog`) and ticket numbers. ``from caresync.store import Store`` keeps
working as it did when the store was one module."""

from caresync.store.store import IngestResult, Store

__all__ = ["IngestResult", "Store"]
