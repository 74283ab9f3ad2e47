"""The version of caresync, in one place (the package, the programs and the wire read it)."""

__version__ = "0.1.0"
