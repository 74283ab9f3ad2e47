"""How long a device waits on the server by default: constants only, so that a program's options can show them
without importing the HTTP client (which keeps start-up fast)."""

from __future__ import annotations

__all__ = ["DEFAULT_CONNECT_TIMEOUT_S", "DEFAULT_DEADLINE_S"]

#: How long a device waits for the server to accept a connection, by default (``--connect-timeout``).
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: How long a sync may go on without any answer from the server, by default, retries and waits included
#: (``--deadline``): every answer starts it again, so a long sync that keeps moving is never cut.
DEFAULT_DEADLINE_S = 60.0
