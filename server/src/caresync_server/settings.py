"""The server's settings: one explicit, immutable object, built by the CLI (or a test) and passed to the app.

Nothing reads the environment by itself: :meth:`Settings.from_env` does, once, when a program asks it to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ._env import ENV_PREFIX
from .errors import ConfigError

__all__ = ["DEFAULT_DATABASE_URL", "DEFAULT_KEY_FILE", "ENV_PREFIX", "Settings"]

#: An SQLite file in the folder the server is started from: one station, no set-up.
DEFAULT_DATABASE_URL = "sqlite:///caresync-server.db"
#: The server's key file with PostgreSQL, in the folder the server is started from (see ``server_key_file``).
DEFAULT_KEY_FILE = "caresync-server.key"

SchemaName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


class Settings(BaseModel):
    """How the server stores its data and how much it accepts in one request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = DEFAULT_DATABASE_URL
    """``sqlite:///path/to/file.db`` or ``postgresql+psycopg://user@host:5432/dbname``."""
    database_schema: SchemaName | None = None
    """PostgreSQL only: keep the server's tables in this schema (created if missing) instead of ``public``."""
    max_batch_ops: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    """The most ops one push may carry."""
    max_body_bytes: Annotated[int, Field(ge=4096, le=1 << 30)] = 8 * 1024 * 1024
    """The largest request body accepted, as sent (compressed, for the compact form)."""
    max_pull_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """The most ops one pull answers with, whatever the device asks for."""
    token_lifetime_days: Annotated[float, Field(gt=0, le=3650)] = 30
    """How long a device token works; devices renew theirs before it expires (or after, with their key)."""
    code_lifetime_days: Annotated[float, Field(gt=0, le=365)] = 7
    """How long a one-time enrolment code can be redeemed."""
    blob_dir: str = "caresync-blobs"
    """The folder the attachments' sealed blobs are kept in (created if missing); relative to where the server runs.
    Several server processes share one folder (a shared disk)."""
    max_blob_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 64 * 1024 * 1024
    """The largest blob (sealed attachment) the server takes; larger ones are answered 413 ``blob_too_large``."""
    max_device_blob_bytes: Annotated[int, Field(ge=1024, le=1 << 44)] = 4 * 1024 * 1024 * 1024
    """The most blob bytes one device may have stored; more is answered 413 ``quota_exceeded``."""
    device_requests_per_hour: Annotated[int, Field(ge=1, le=1 << 40)] = 36_000
    """The most requests one device may send in an hour (ten a second on average); more is answered 429
    ``rate_limited`` with ``Retry-After``. Counted per server process."""
    device_bytes_per_hour: Annotated[int, Field(ge=4096, le=1 << 50)] = 8 * 1024 * 1024 * 1024
    """The most request-body bytes (as sent, by ``Content-Length``) one device may send in an hour; a body sent
    without a length counts as ``max_body_bytes``. More is answered 429 ``rate_limited``."""
    device_ops_per_hour: Annotated[int, Field(ge=1, le=1 << 40)] = 1_000_000
    """The most ops one device may push or relay in an hour; more is answered 429 ``rate_limited``."""
    server_key_file: str | None = None
    """The file holding the server's signing key (mode 0600; ``caresync-server init`` creates it). By default
    beside an SQLite database, named after it (``caresync-server.key``), and ``caresync-server.key`` in the working
    folder with PostgreSQL. Back it up apart from the database (docs/deployment.md)."""

    @property
    def server_key_path(self) -> Path:
        """Where the server's signing key is: :attr:`server_key_file`, or its default."""
        if self.server_key_file:
            return Path(self.server_key_file)
        if self.dialect == "sqlite":
            return Path(make_url(self.database_url).database or "caresync-server.db").with_suffix(".key")
        return Path(DEFAULT_KEY_FILE)

    @property
    def token_lifetime_ms(self) -> int:
        """:attr:`token_lifetime_days` in milliseconds."""
        return int(self.token_lifetime_days * 86_400_000)

    @property
    def code_lifetime_ms(self) -> int:
        """:attr:`code_lifetime_days` in milliseconds."""
        return int(self.code_lifetime_days * 86_400_000)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        for plain in ("postgres://", "postgresql://"):
            if url.startswith(plain):  # a libpq address as people copy it: use the psycopg 3 driver
                url = "postgresql+psycopg://" + url[len(plain) :]
        known = url.startswith("postgresql+psycopg://") or (
            url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:")
        )
        if known:
            try:
                make_url(url).port  # noqa: B018  (parses the address: a port that is not a number fails here)
            except (ArgumentError, ValueError) as exc:
                raise ValueError(f"this is not a database address ({exc})") from None
            return url
        raise ValueError(
            "the server stores its data in an SQLite file (sqlite:///path/to/file.db) or in PostgreSQL "
            "(postgresql+psycopg://user@host:5432/dbname)"
        )

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CARESYNC_*`` environment variables, then ``overrides`` (those that are not None).

        Raises:
            ConfigError: a value is not valid (the message names the variable or option).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except PydanticValidationError as exc:
            problems = [
                (ENV_PREFIX + str(e["loc"][0]).upper() if e["loc"] else "settings", e["msg"])
                for e in exc.errors(include_url=False)
            ]
            raise ConfigError("The server's settings are not valid", problems) from exc

    def safe_database_url(self) -> str:
        """The database address without its password, for messages and logs."""
        return make_url(self.database_url).render_as_string(hide_password=True)
