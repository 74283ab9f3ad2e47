"""caresync-server: the sync server devices push their ops to and pull their scope from.

``create_app(settings)`` builds the ASGI app; ``caresync-server`` (:mod:`caresync_server.cli`) runs it and
manages devices. See docs/server.md, docs/protocol.md and docs/deployment.md.
"""

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # imported on first use (module __getattr__): the admin commands never load the web app
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]

_WHERE = {"Settings": ".settings", "create_app": ".app"}


def __getattr__(name: str) -> Any:
    """Imports the module of a public name the first time it is asked for (PEP 562), which keeps start-up fast."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'caresync_server' has no attribute {name!r}")
    value = getattr(_importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported public ones included."""
    return sorted(set(globals()) | set(__all__))
