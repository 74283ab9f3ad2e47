"""caresync-server: the sync server devices push their ops to and pull their scope from."""

__version__ = "0.1.0"
