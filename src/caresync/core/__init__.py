"""The core layer: clock, domain, ids, ops, the fold and the records. Pure: no I/O, no crypto, no SQL."""
