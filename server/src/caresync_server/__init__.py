"""caresync-server: the sync server devices push their ops to and pull their scope from.

``create_app(settings)`` builds the ASGI app; ``caresync-server`` (:mod:`caresync_server.cli`) runs it and
manages devices. See docs/server.md, docs/protocol.md and docs/deployment.md.
"""

from ._version import __version__
from .app import create_app
from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
