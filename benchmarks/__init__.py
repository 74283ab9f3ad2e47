"""Benchmarks for caresync: local writes, merge and out-of-order arrival, against a plain-SQLite floor and
against loro and pycrdt. Run ``python -m benchmarks`` from the repository root (see README.md)."""
