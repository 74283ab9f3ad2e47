"""The one HTTP client of caresync: the token, retries with backoff, and protocol v1's error envelope.

Every request a device makes to the sync server (sync, enrolment, token renewal, delivering relay bundles) goes
through here, so a server that cannot be reached, that is busy, or that refuses, reads the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from caresync.errors import InvalidInputError, ServerRefusedError, SyncError
from caresync.sync.wire import FORMAT, MEDIA_TYPE, decode_envelope

__all__ = ["Link", "client_for", "refusal", "request_json"]

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF_S = 30.0


def _retry_after(response: httpx.Response) -> float:
    """The wait a busy server asks for (``Retry-After`` in seconds), at most :data:`_MAX_BACKOFF_S`; else 0."""
    try:
        return min(max(float(response.headers.get("retry-after", 0)), 0.0), _MAX_BACKOFF_S)
    except ValueError:
        return 0.0  # an HTTP date, or nonsense: fall back to our own backoff


class Link:
    """One HTTP client with the token, retries and the error envelope of protocol v1."""

    def __init__(
        self,
        url: str,
        token: str,
        client: httpx.Client | None,
        retries: int,
        backoff_s: float,
        timeout_s: float,
    ) -> None:
        self.base = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": "caresync"}
        self.own_client = client is None
        self.client = client or httpx.Client(timeout=timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s

    def close(self) -> None:
        if self.own_client:
            self.client.close()

    def get(self, path: str) -> Any:
        """One GET (no retries: what it asks for can wait for the next sync)."""
        try:
            response = self.client.get(self.base + path, headers=self.headers)
        except httpx.HTTPError as exc:
            raise SyncError(f"Cannot reach the sync server at {self.base} ({type(exc).__name__}: {exc}).") from exc
        return self._answer(response)

    def post(self, path: str, *, json: Any = None, content: bytes | None = None, compact: bool = False) -> Any:
        headers = dict(self.headers)
        if content is not None:
            headers["Content-Type"] = MEDIA_TYPE
        if compact:
            headers["Accept"] = f"{MEDIA_TYPE};format={FORMAT}, application/json;q=0.5"
        url = self.base + path
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(url, json=json, content=content, headers=headers)
            except httpx.HTTPError as exc:
                if attempt == self.retries:
                    raise SyncError(
                        f"Cannot reach the sync server at {self.base} ({type(exc).__name__}: {exc}). "
                        "Your work is kept on this device; sync again when the network is back."
                    ) from exc
            else:
                if response.status_code not in _RETRY_STATUS or attempt == self.retries:
                    return self._answer(response)
                delay = max(delay, _retry_after(response))
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _answer(self, response: httpx.Response) -> Any:
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if response.is_success:
            try:
                return decode_envelope(response.content) if kind == MEDIA_TYPE else response.json()
            except (InvalidInputError, ValueError) as exc:
                raise SyncError(
                    f"The sync server at {self.base} sent an answer this device cannot read: {exc}"
                ) from exc
        raise refusal(response, self.base)


def refusal(response: httpx.Response, base: str) -> SyncError:
    """The error for a server's answer that is not a success: its error envelope's code and message, as a
    :class:`SyncError` for a server that failed (5xx, worth trying again) or a :class:`ServerRefusedError`."""
    code, message = "http_error", response.reason_phrase
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    if response.status_code >= 500:
        return SyncError(
            f"The sync server at {base} has a problem (HTTP {response.status_code}: {message}). "
            "Your work is kept on this device; try again later or tell the station."
        )
    return ServerRefusedError(
        f"The sync server refused this device: {message} (HTTP {response.status_code}, {code})",
        status=response.status_code,
        server_code=code,
    )


@contextmanager
def client_for(client: httpx.Client | None, timeout_s: float) -> Iterator[httpx.Client]:
    """The caller's client, or one of our own for the duration (closed after)."""
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout_s) as own:
        yield own


def request_json(
    http: httpx.Client, method: str, url: str, *, token: str | None = None, body: Any = None
) -> dict[str, Any]:
    """One request, its error envelope turned into our errors."""
    headers = {"User-Agent": "caresync"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = http.request(method, url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        base = url.rsplit("/v1/", 1)[0]
        raise SyncError(
            f"Cannot reach the sync server at {base} ({type(exc).__name__}: {exc}). Nothing changed on this "
            "device; try again when the network is back."
        ) from exc
    if response.is_success:
        try:
            data = response.json()
        except ValueError as exc:
            raise SyncError(f"The sync server sent an answer this device cannot read ({exc})") from exc
        if not isinstance(data, dict):
            raise SyncError("The sync server sent an answer this device cannot read (not a JSON object)")
        return data
    raise refusal(response, url.rsplit("/v1/", 1)[0])
