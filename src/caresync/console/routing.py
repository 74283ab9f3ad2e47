"""The console's page registry: each page module registers its handlers here with :func:`route`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.responses import Response

from caresync.replica import Replica

if TYPE_CHECKING:
    from caresync.console.context import Page

__all__ = ["ROUTES", "Handler", "route"]

Handler = Callable[["Page", Replica], Response]
ROUTES: list[tuple[str, Sequence[str], Handler]] = []


def route(path: str, *methods: str) -> Callable[[Handler], Handler]:
    """Registers a page handler for ``path`` (GET unless methods are given)."""

    def register(handler: Handler) -> Handler:
        ROUTES.append((path, methods or ("GET",), handler))
        return handler

    return register
