"""Per-device hourly limits: how many requests, bytes and ops one enrolled device may send the server in an hour.

The bounds of :mod:`.bodies` cap what one request may cost; these cap what one device may cost over time, so that
a device stuck in a loop (or stolen and scripted) cannot hold the server or crowd out the station's syncs. Each
device has a window of an hour that starts at its first request; a request that would take it over a limit is
refused with ``429 rate_limited`` and ``Retry-After`` (the seconds until its window ends), and changes nothing.

The counts are kept in the memory of each server process (a device's requests are counted by the process that
serves them): with ``--workers N`` a device may send up to N times as much. They start again when the server
restarts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import ApiError, ErrorCode

__all__ = ["HOUR_MS", "DeviceLimits"]

#: The length of a device's window.
HOUR_MS = 3_600_000


@dataclass
class _Window:
    start_ms: int
    requests: int = 0
    bytes: int = 0
    ops: int = 0


class DeviceLimits:
    """The hourly counts of the devices one server process has served, and the checks against the settings."""

    def __init__(self, *, requests_per_hour: int, bytes_per_hour: int, ops_per_hour: int) -> None:
        self._limits = {"requests": requests_per_hour, "bytes": bytes_per_hour, "ops": ops_per_hour}
        self._windows: dict[int, _Window] = {}
        self._lock = threading.Lock()

    def charge_request(self, device_id: int, body_bytes: int, now_ms: int) -> None:
        """Counts one request of ``body_bytes`` bytes from device ``device_id``.

        Raises:
            ApiError: ``rate_limited``: it would pass the device's requests or bytes for the hour (not counted).
        """
        self._charge(device_id, now_ms, requests=1, bytes=body_bytes)

    def charge_ops(self, device_id: int, ops: int, now_ms: int) -> None:
        """Counts ``ops`` ops a device sends (pushed or relayed), before they are stored.

        Raises:
            ApiError: ``rate_limited``: they would pass the device's ops for the hour (not counted).
        """
        self._charge(device_id, now_ms, ops=ops)

    def _charge(self, device_id: int, now_ms: int, **amounts: int) -> None:
        with self._lock:
            window = self._windows.get(device_id)
            if window is None or now_ms - window.start_ms >= HOUR_MS or now_ms < window.start_ms:
                window = self._windows[device_id] = _Window(now_ms)
            over = [
                (name, getattr(window, name) + amount)
                for name, amount in amounts.items()
                if getattr(window, name) + amount > self._limits[name]
            ]
            if not over:
                for name, amount in amounts.items():
                    setattr(window, name, getattr(window, name) + amount)
                return
            wait_s = max(1, -(-(window.start_ms + HOUR_MS - now_ms) // 1000))
        name, total = over[0]
        raise ApiError(
            ErrorCode.RATE_LIMITED,
            f"This device has sent too much in the last hour ({name}: {total} would pass the limit of "
            f"{self._limits[name]} an hour); nothing of this request was stored. Try again in {wait_s} s; the station "
            "can raise the limit (CARESYNC_DEVICE_" + name.upper() + "_PER_HOUR).",
            [{"field": name, "problem": f"{total} in the hour, more than {self._limits[name]}"}],
            headers={"Retry-After": str(wait_s)},
        )
