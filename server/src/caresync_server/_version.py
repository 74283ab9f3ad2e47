"""The version of caresync-server (one place; the package and the app report it)."""

__version__ = "0.1.0"
