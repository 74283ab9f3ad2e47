"""Helpers for tests and benchmarks that need a real sync server: ``caresync-server serve`` in a process of its own
on loopback, which can be killed with SIGKILL like a power cut and started again over the same database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from .settings import Settings
from .storage import Storage

__all__ = ["ServerProcess", "enroll", "free_port", "issue_code", "register_station_key"]


def enroll(database_url: str, name: str, *, role: str, grids: list[str]) -> str:
    """Enrols a device in the server's database (creating its tables if needed); returns the device's token."""
    storage = Storage(Settings(database_url=database_url))
    try:
        storage.ensure_schema(create=True)
        _, token = storage.enroll(name, role, grids)
    finally:
        storage.close()
    return token


def issue_code(database_url: str, name: str, *, role: str, grids: list[str]) -> str:
    """Enrols a device that has yet to claim its credentials (creating the tables if needed); returns its one-time
    enrolment code, for ``replica.enroll(server_url, code)``."""
    storage = Storage(Settings(database_url=database_url))
    try:
        storage.ensure_schema(create=True)
        return storage.issue_code(name, role, grids).code
    finally:
        storage.close()


def register_station_key(database_url: str, public_key: bytes) -> None:
    """Registers the station's public key in the server's database (creating its tables if needed), as
    ``caresync-server station-key set`` does: devices enrolled from then on seal their free text to it."""
    storage = Storage(Settings(database_url=database_url))
    try:
        storage.ensure_schema(create=True)
        storage.set_station_public_key(public_key)
    finally:
        storage.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``caresync-server serve`` over ``database_url`` (and ``database_schema`` on PostgreSQL), on a free port.

    Its output goes to ``workdir/server-<port>.log``, which errors quote. The port stays the same across
    :meth:`kill` and :meth:`start`, so devices keep their server address.
    """

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        database_schema: str | None = None,
        environment: dict[str, str] | None = None,
        program: Sequence[str] = ("caresync_server", "serve"),
    ) -> None:
        self.workdir = workdir
        self.program = tuple(program)
        """What ``python -m`` runs; it is given ``--host``, ``--port`` and ``--log-level`` (the default is
        ``caresync-server serve``; ``caresync demo`` runs ``caresync_server.simulated`` with its clock file)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"server-{self.port}.log"
        self.env = {**os.environ, "CARESYNC_DATABASE_URL": database_url}
        self.env["CARESYNC_DATABASE_SCHEMA"] = database_schema or ""
        self.env.update(environment or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 60) -> ServerProcess:
        """Starts the process and waits until ``/healthz`` answers 200."""
        command = [sys.executable, "-m", *self.program, "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--log-level", "warning"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /healthz: {self.log.read_text()[-2000:]}")

    def memory(self) -> tuple[int, int]:
        """``(resident, peak resident)`` bytes of the server process now (Linux: ``/proc/<pid>/status``, VmRSS and
        VmHWM), to show that no request makes the server's memory grow without bound."""
        if self.proc is None:
            raise RuntimeError("the server is not running")
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, like a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """A clean stop (SIGTERM), then SIGKILL if it does not exit within 10 seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
