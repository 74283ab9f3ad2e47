"""The server's signing key, in a file of its own (never in the database, so never in a database backup).

The key signs the answers couriers carry back to offline devices: whoever holds it can make a device believe the
server stored work it never got. So it lives in a file readable by the server's user only (mode 0600), which
``caresync-server init`` creates and docs/deployment.md says how to back up, apart from the database. The file
holds the key's 32-byte seed as 64 hex digits and a newline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from caresync.errors import InvalidInputError
from caresync.trust.keys import DeviceKey

from .errors import ConfigError

__all__ = ["create_key_file", "read_key_file", "write_key_file"]


def read_key_file(path: Path) -> DeviceKey:
    """The key a key file holds.

    Raises:
        ConfigError: the file cannot be read, others than its owner may read it, or it holds no key.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the server's key file {path} ({exc}).") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"The server's key file {path} can be read by others than its owner (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}` and start the server again."
        )
    try:
        return DeviceKey(bytes.fromhex(text))
    except (ValueError, InvalidInputError) as exc:
        raise ConfigError(f"The server's key file {path} does not hold a key (64 hex digits).") from exc


def write_key_file(path: Path, key: DeviceKey) -> DeviceKey:
    """Writes ``key`` to a new key file at ``path`` (mode 0600), atomically and only if there is none: when
    another server process wrote one first, that one is returned instead.

    Raises:
        ConfigError: the folder cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(key.seed.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if the file exists: two processes never write two keys
        except FileExistsError:
            return read_key_file(path)
    except OSError as exc:
        raise ConfigError(f"Cannot write the server's key file {path} ({exc}).") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return key


def create_key_file(path: Path) -> DeviceKey:
    """A new key, in a new key file at ``path`` (see :func:`write_key_file`)."""
    return write_key_file(path, DeviceKey.generate())
