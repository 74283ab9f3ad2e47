"""The one HTTP client of caresync: the token, retries with backoff, and protocol v1's error envelope.

Every request a device makes to the sync server (sync, enrolment, token renewal, delivering relay bundles) goes
through here, so a server that cannot be reached, that is busy, or that refuses, reads the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from caresync.errors import InvalidInputError, ServerRefusedError, ServerUnreachableError, SyncError
from caresync.sync._defaults import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_DEADLINE_S
from caresync.sync.wire import FORMAT, MEDIA_TYPE, decode_envelope

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_DEADLINE_S",
    "Link",
    "Wait",
    "WaitCallback",
    "client_for",
    "refusal",
    "request_json",
    "timeouts",
]


@dataclass(frozen=True)
class Wait:
    """A request that found no answer, and the wait before the link tries again: for a program to show, so that a
    person never watches a silent screen."""

    attempt: int
    """The attempt that failed (1 for the first)."""
    attempts: int
    """How many attempts the link makes in all."""
    delay_s: float
    """How long it waits before the next one."""
    reason: str
    """What went wrong, in the words of the HTTP library or the server's status (``ConnectTimeout``, ``HTTP 503``)."""


#: Called before each wait between attempts.
WaitCallback = Callable[[Wait], None]


def timeouts(timeout_s: float, connect_timeout_s: float) -> httpx.Timeout:
    """The timeouts of a request: ``connect_timeout_s`` for the connection, ``timeout_s`` for each read and write."""
    return httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))


def _unreachable(base: str, exc: BaseException) -> ServerUnreachableError:
    reason = f"{type(exc).__name__}: {exc}"
    return ServerUnreachableError(
        f"Cannot reach the sync server at {base} ({reason}). Your work is kept on this device; sync again when the "
        "network is back.",
        key="sync.unreachable",
        fields={"url": base, "reason": reason},
    )


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
        *,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        deadline_s: float | None = None,
        on_wait: WaitCallback | None = None,
    ) -> None:
        """``deadline_s`` bounds how long the link goes without an answer, retries and waits included (every
        answer from the server starts it again): a request is never given longer than what is left, a retry that
        would start after it is not made, and then the link raises :class:`ServerUnreachableError` saying so.
        ``on_wait`` hears of every retry before its wait."""
        self.base = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": "caresync"}
        self.own_client = client is None
        self.client = client or httpx.Client(timeout=timeouts(timeout_s, connect_timeout_s))
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.deadline_s = deadline_s
        self._ends = None if deadline_s is None else time.monotonic() + deadline_s
        self.on_wait = on_wait

    def _left(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); past it, the error that says so."""
        if self._ends is None:
            return None
        left = self._ends - time.monotonic()
        if left <= 0:
            raise ServerUnreachableError(
                f"No answer from the sync server at {self.base} for {self.deadline_s:g} s, the sync's deadline "
                "(--deadline). Your work is kept on this device; sync again when the network is better.",
                key="sync.deadline",
                fields={"url": self.base, "seconds": f"{self.deadline_s:g}"},
            )
        return left

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, its timeouts cut to what is left before the deadline. A client the caller supplied keeps
        its own timeouts (the deadline is then checked between requests)."""
        left = self._left()
        if left is not None and self.own_client:
            kwargs["timeout"] = timeouts(min(self.timeout_s, left), min(self.connect_timeout_s, left))
        return self.client.request(method, url, **kwargs)

    def close(self) -> None:
        if self.own_client:
            self.client.close()

    def get(self, path: str) -> Any:
        """One GET (no retries: what it asks for can wait for the next sync)."""
        try:
            response = self._request("GET", self.base + path, headers=self.headers)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base, exc) from exc
        return self._answer(response)

    def post(self, path: str, *, json: Any = None, content: bytes | None = None, compact: bool = False) -> Any:
        """One POST, retried while the server is busy or out of reach; its answer decoded."""
        headers = {"Content-Type": MEDIA_TYPE} if content is not None else {}
        if compact:
            headers["Accept"] = f"{MEDIA_TYPE};format={FORMAT}, application/json;q=0.5"
        return self.request("POST", path, json=json, content=content, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        """One request, retried while the server is busy or out of reach; its answer decoded, or its bytes when
        ``raw`` (a blob's chunk)."""
        sent = {**self.headers, **(headers or {})}
        url = self.base + path
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = self._request(method, url, json=json, content=content, headers=sent)
            except httpx.HTTPError as exc:
                if attempt == self.retries:
                    raise _unreachable(self.base, exc) from exc
                reason = type(exc).__name__
            else:
                if response.status_code not in _RETRY_STATUS or attempt == self.retries:
                    if raw and response.is_success:
                        return response.content
                    return self._answer(response)
                delay = max(delay, _retry_after(response))
                reason = f"HTTP {response.status_code}"
            left = self._left()
            if left is not None and delay >= left:  # the next attempt would start past the deadline
                time.sleep(left)
                self._left()
            if self.on_wait is not None:
                self.on_wait(Wait(attempt=attempt + 1, attempts=self.retries + 1, delay_s=delay, reason=reason))
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _answer(self, response: httpx.Response) -> Any:
        if self.deadline_s is not None:  # the server answered: the wait for the next answer starts now
            self._ends = time.monotonic() + self.deadline_s
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if response.is_success:
            try:
                return decode_envelope(response.content) if kind == MEDIA_TYPE else response.json()
            except (InvalidInputError, ValueError) as exc:
                raise SyncError(
                    f"The sync server at {self.base} sent an answer this device cannot read: {exc}",
                    key="sync.unreadable_answer_at",
                    fields={"url": self.base, "reason": str(exc)},
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
            "Your work is kept on this device; try again later or tell the station.",
            key="sync.server_problem",
            fields={"url": base, "status": response.status_code, "message": message},
        )
    return ServerRefusedError(
        f"The sync server refused this device: {message} (HTTP {response.status_code}, {code})",
        status=response.status_code,
        server_code=code,
        key="sync.refused",
        fields={"message": message, "status": response.status_code, "code": code},
    )


@contextmanager
def client_for(
    client: httpx.Client | None, timeout_s: float, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
) -> Iterator[httpx.Client]:
    """The caller's client, or one of our own for the duration (closed after)."""
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeouts(timeout_s, connect_timeout_s)) as own:
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
        raise _unreachable(url.rsplit("/v1/", 1)[0], exc) from exc
    if response.status_code == 204:  # done, nothing to say (PUT /v1/station-key)
        return {}
    if response.is_success:
        try:
            data = response.json()
        except ValueError as exc:
            raise SyncError(
                f"The sync server sent an answer this device cannot read ({exc})",
                key="sync.unreadable_answer",
                fields={"reason": str(exc)},
            ) from exc
        if not isinstance(data, dict):
            raise SyncError(
                "The sync server sent an answer this device cannot read (not a JSON object)", key="sync.not_an_object"
            )
        return data
    raise refusal(response, url.rsplit("/v1/", 1)[0])
