"""The prefix of the server's environment variables, kept apart from the settings model so that the command
line's options can name them without importing pydantic and SQLAlchemy (which keeps start-up fast)."""

from __future__ import annotations

__all__ = ["ENV_PREFIX"]

#: Every setting can come from an environment variable named ``CARESYNC_`` + its name in capitals.
ENV_PREFIX = "CARESYNC_"
