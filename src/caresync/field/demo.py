"""A simulated week of one neighbourhood service station, synced through a real sync server (``caresync demo``).

:func:`run_demo` builds a small city in a folder: one SQLite file per device, and a real ``caresync-server``
process on a free loopback port (its database in ``server/``). The cast is the station desk (it holds the
station's key), three grid workers, two door-knockers, three couriers, a mediator and an offline kiosk, a device
with no network whose work travels only in relay bundles a courier carries. Every device is enrolled with a
one-time code, so its token renews itself; private fields are sealed to the station's key.

Time is simulated: every device has its own :class:`~caresync.testing.FakeClock`, and the server reads its clock
from a file (:mod:`caresync_server.simulated`), so tokens, codes and clock corrections all follow the
simulated week. Devices work offline all day and sync only on some days. The same seed gives the same run:
device keys come from :func:`~caresync.testing.key_for`, choices from one seeded :class:`random.Random`.

At the end every device's convergence is proved against the server: a fresh replica enrolled with the same role
and grids pulls its scope, the device's own ops are added (a courier's outdoor report is its own work but not
in its read scope), and the two state digests must be equal (same ops, same state). State digests cover
sealed values, which are random, so what is shown is a fingerprint of the op ids each device holds:
deterministic, and equal exactly when the op sets are.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import httpx

from caresync.core.domain import HopStage, TicketStatus, in_grid
from caresync.core.model import Ticket, ms_to_datetime
from caresync.errors import CaresyncError
from caresync.field import courier
from caresync.field.custody import handover_pending
from caresync.field.knock import raise_ticket, round_of
from caresync.field.reports import StationReport, station_report
from caresync.field.review import review_queue, settle
from caresync.replica import Replica
from caresync.sync import enrolment
from caresync.sync.bundles import relay as bundles
from caresync.sync.bundles.bag import Bag
from caresync.testing import FakeClock, key_for
from caresync.trust.keys import StationKey

__all__ = [
    "COMMUNITY",
    "DemoConfig",
    "DemoOutcome",
    "DeviceProof",
    "ServerNotInstalledError",
    "SettledConflict",
    "period_bounds",
    "run_demo",
]

#: The community every grid of the demo belongs to.
COMMUNITY = "changnan"
#: The first simulated day: Monday 5 October 2026 (a fixed week in the past, so reports are repeatable).
FIRST_DAY = date(2026, 10, 5)
_HOUR = 3_600_000
_RESIDENTS_PER_AREA = 400
_KINDS = ("repair", "legal_aid", "counselling", "volunteer_help", "errand", "wish", "repair", "errand")
_DESK_CHANNELS = ("walk_in", "phone", "proxy", "wish_box", "walk_in", "phone")
_TITLES = {
    "repair": ("Leaking pipe in the stairwell", "Corridor light broken", "Door lock stuck", "Water heater fails"),
    "legal_aid": ("Question about a rental contract", "Help with an inheritance paper", "Wage arrears advice"),
    "counselling": ("Feels lonely since moving in", "Grief after losing a spouse", "Worried about a grandchild"),
    "volunteer_help": ("Carry groceries upstairs", "Accompany to the clinic", "Read letters aloud"),
    "errand": ("Pay the electricity bill", "Renew the old-age card", "Fetch medicine from the pharmacy"),
    "wish": ("Wishes for a haircut at home", "Wishes to join the calligraphy class", "Wishes for a radio repair"),
}
_MAILBOX_ASKS = (
    "Certificate for the old-age allowance",
    "Form for the medical insurance refund",
    "Application for a disability card",
    "Request for a residence certificate",
)
_SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Hu", "Zhu")
_GIVEN = ("Guilan", "Xiuying", "Jianguo", "Yumei", "Deming", "Shufen", "Guoqiang", "Lihua", "Fang", "Hong", "Wei")


class ServerNotInstalledError(CaresyncError):
    """The demo needs the sync server distribution (``caresync_server``), which is not installed."""

    code = "server_missing"


@dataclass(frozen=True)
class DemoConfig:
    """What to simulate: ``days`` of work for ``residents`` residents, from ``seed``, in ``folder``."""

    folder: Path
    seed: int = 7
    days: int = 7
    residents: int = 60


@dataclass(frozen=True)
class SettledConflict:
    """A conflict raised by work made offline, and how the station settled it."""

    day: int
    key: str
    label: str
    field: str
    values: list[str]
    """Each competing value, with who wrote it."""
    decision: str


@dataclass(frozen=True)
class DeviceProof:
    """One device's proof of convergence against the server (see the module docstring)."""

    name: str
    role: str
    grids: list[str]
    file: str
    ops: int
    own_ops: int
    unsent: int
    fingerprint: str
    """blake2b of the sorted op ids (origin:seq) the device holds: deterministic, unlike the state digest."""
    converged: bool
    """Its state digest equals a fresh replica's of the same role and grids, pulled from the server, plus its
    own ops; and the server acknowledged all of its ops."""


@dataclass
class DemoOutcome:
    """What :func:`run_demo` did and found."""

    folder: Path
    server_database: Path
    first_day: date
    last_day: date
    report: StationReport
    conflicts: list[SettledConflict]
    proofs: list[DeviceProof]
    counts: dict[str, int]
    events: list[str]

    @property
    def converged(self) -> bool:
        """True when every device's proof holds."""
        return all(p.converged for p in self.proofs)

    def files(self) -> dict[str, str]:
        """Each device's replica file."""
        return {p.name: p.file for p in self.proofs}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (deterministic for a seed, except the folder)."""
        return {
            "folder": str(self.folder),
            "server_database": str(self.server_database),
            "period": {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()},
            "report": self.report.to_json(),
            "conflicts": [c.__dict__ for c in self.conflicts],
            "devices": [p.__dict__ for p in self.proofs],
            "converged": self.converged,
            "counts": dict(self.counts),
            "events": list(self.events),
        }


# --- the cast -----------------------------------------------------------------------------------------------


@dataclass
class _Device:
    name: str
    role: str
    grids: list[str]
    area: str | None
    """The area this worker looks after (tickets there are theirs to take)."""
    online: set[int]
    replica: Replica
    clock: FakeClock
    skew_ms: int

    @property
    def actor(self) -> str:
        return self.name


@dataclass
class _Stats:
    counts: Counter[str] = field(default_factory=Counter)
    day: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n
        self.day[key] += n


def _local_zone() -> tzinfo:
    """This computer's time zone, as `caresync report` reads dates (its offset now)."""
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def _ms(day: int, hour: float) -> int:
    """Simulated time: ``day`` (1 = the first) at ``hour`` o'clock in this computer's time zone, so that the days
    of the simulation are the dates `caresync report --from --to` means here."""
    midnight = datetime.combine(FIRST_DAY + timedelta(days=day - 1), dt_time(0, 0), tzinfo=_local_zone())
    return int(midnight.timestamp() * 1000) + int(hour * _HOUR)


def _quiet_logger() -> logging.Logger:
    log = logging.getLogger("caresync.field.demo")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


# --- the server ---------------------------------------------------------------------------------------------


class _Server:
    """``caresync-server`` on loopback in a process of its own, its clock a file this simulation writes."""

    def __init__(self, folder: Path) -> None:
        if importlib.util.find_spec("caresync_server") is None:
            raise ServerNotInstalledError(
                "caresync demo runs a real sync server, and caresync_server is not installed: "
                "pip install . ./server (from a caresync checkout)"
            )
        # here, not at the top: the server is a distribution of its own that a handheld never installs
        from caresync_server.settings import Settings
        from caresync_server.storage import Storage
        from caresync_server.testing import ServerProcess

        folder.mkdir(parents=True, exist_ok=True)
        self.database = folder / "caresync-server.db"
        self.clock_file = folder / "clock"
        self.now = 0
        self.settings = Settings(database_url=f"sqlite:///{self.database}", token_lifetime_days=2)
        self.storage = Storage(self.settings, now_ms=lambda: self.now)
        self.process = ServerProcess(
            self.settings.database_url,
            folder,
            environment={"CARESYNC_TOKEN_LIFETIME_DAYS": str(self.settings.token_lifetime_days)},
            program=("caresync_server.simulated", "--clock-file", str(self.clock_file)),
        )
        self.url = self.process.url

    def set_time(self, ms: int) -> None:
        self.now = ms
        part = self.clock_file.with_name("clock.part")
        part.write_text(str(ms), encoding="ascii")
        os.replace(part, self.clock_file)

    def start(self) -> None:
        self.storage.ensure_schema(create=True)
        try:
            self.process.start()
        except RuntimeError as exc:
            raise CaresyncError(f"The demo's sync server did not start ({exc}); see {self.process.log}") from exc

    def stop(self) -> None:
        self.storage.close()
        self.process.stop()

    def issue_code(self, name: str, role: str, grids: list[str]) -> str:
        return str(self.storage.issue_code(name, role, grids).code)


# --- the simulation -----------------------------------------------------------------------------------------


class _World:
    """The simulated neighbourhood: devices, the server, the clock, the seeded choices."""

    def __init__(self, config: DemoConfig, stack: ExitStack, step: Callable[[str], None]) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.step = step
        self.stats = _Stats()
        self.events: list[str] = []
        self.conflicts: list[SettledConflict] = []
        self.folder = config.folder
        self.server = _Server(config.folder / "server")
        stack.callback(self.server.stop)
        self.stack = stack
        self.http = stack.enter_context(httpx.Client(timeout=60))  # one client: each new one reloads certificates
        self.devices: dict[str, _Device] = {}
        self.log = _quiet_logger()
        self.areas = [
            f"{COMMUNITY}/lane-{i}" for i in range(1, max(3, -(-config.residents // _RESIDENTS_PER_AREA)) + 1)
        ]
        self.now = _ms(1, 7)
        self.held: set[str] = set()  # tickets a scripted scene drives (the workers' routine leaves them alone)
        self.parcel_counter = 1000
        self.slips: dict[str, str] = {}  # parcel code -> the confirmation code on the resident's slip
        self.bag_path = config.folder / "courier-ma.bag.db"
        self.relay_dir = config.folder / "relay"
        self.relay_dir.mkdir(exist_ok=True)
        self.bundle_n = 0
        self.resident_grid: dict[str, str] = {}
        self.residents_by_area: dict[str, list[str]] = {}
        self.wang = ""
        self.wang_knocks = 0
        self.mail_tickets: dict[str, str] = {}  # parcel id -> the request it carries
        self.septic = ""
        self.noise = ""

    # clock ------------------------------------------------------------------------------------------------

    def at(self, day: int, hour: float) -> None:
        """Moves the simulated time (forward only) and every device's clock with it."""
        self.now = max(self.now, _ms(day, hour))
        self.server.set_time(self.now)
        for device in self.devices.values():
            device.clock.ms = self.now + device.skew_ms

    def note(self, day: int, text: str) -> None:
        self.events.append(f"day {day}: {text}")

    # set-up -----------------------------------------------------------------------------------------------

    def set_up(self) -> None:
        cfg = self.config
        self.server.set_time(self.now)
        self.server.start()
        station_key = StationKey(hashlib.blake2b(f"demo-{cfg.seed}-station-key".encode(), digest_size=32).digest())
        self.server.storage.set_station_public_key(station_key.public_key)
        lane1, lane2, lane3 = self.areas[:3]
        cast: list[tuple[str, str, list[str], str | None]] = [
            ("clerk-zhang", "station", [""], None),
            ("grid-li", "grid_worker", [lane1], lane1),
            ("grid-wang", "grid_worker", [lane2, f"{lane1}/b3"], lane2),  # also covers the teachers' dorm
            ("grid-zhao", "grid_worker", [lane3], lane3),
            ("knocker-fang", "knocker", [lane1, lane2], None),
            ("knocker-he", "knocker", [lane3], None),
            ("courier-chen", "courier", [COMMUNITY], lane1),
            ("courier-sun", "courier", [COMMUNITY], lane2),
            ("courier-ma", "courier", [COMMUNITY], lane3),
            ("peacemaker-hu", "mediator", [COMMUNITY], None),
            ("kiosk-lane3", "grid_worker", [lane3], lane3),
        ]
        days = range(1, cfg.days + 1)
        for name, role, grids, area in cast:
            if name == "clerk-zhang":
                online = set(days)
            elif name == "kiosk-lane3":
                online = set()  # never: its work travels in relay bundles
            else:
                online = {d for d in days if self.rng.random() < 0.6} | {1, cfg.days}
            if name in ("grid-li", "grid-wang"):
                online = (online | {3}) - {2}  # both offline on day 2: they take the same request
            if name == "knocker-fang":
                online |= {2, 3}
            if name == "peacemaker-hu":
                online |= {1, 2, 3}
            clock = FakeClock(self.now, step_ms=0)
            replica = Replica.open(
                self.folder / f"{name}.db",
                actor=name,
                now_ms=clock,
                device_key=key_for(f"demo-{cfg.seed}-{name}"),
                logger=self.log,
            )
            self.stack.callback(replica.close)
            skew = self.rng.randrange(-1500, 1500)  # phone clocks are a little off; within the server's tolerance
            self.devices[name] = _Device(name, role, grids, area, online, replica, clock, skew)
        self.at(1, 7)
        for device in self.devices.values():  # at the station, on the first morning, each device is enrolled
            code = self.server.issue_code(device.name, device.role, device.grids)
            device.replica.enroll(self.server.url, code, client=self.http)
        station = self.station  # it seals to the key it learnt at enrolment; it reads sealed fields once it holds it
        with station.batch():
            for name, role, grids, _ in cast:
                if role != "station" and name != "kiosk-lane3":
                    station.workers.add(name=name, role=role, grids=[g for g in grids if g])
            for i, area in enumerate(self.areas, 1):
                station.mailboxes.add(code=f"MB-{i:02d}", name=f"Lane {i} mailbox", grid=area)
            self._register_residents()
        station.install_station_key(station_key)
        self.stats.add("enrolled", len(self.devices))
        self.step(
            f"set-up: caresync-server on a loopback port (simulated clock); {len(self.devices)} devices enrolled "
            f"with one-time codes; station key registered; {cfg.residents:,} residents in {len(self.areas)} "
            "areas registered at the station"
        )

    def _register_residents(self) -> None:
        station = self.station
        n = self.config.residents
        for i in range(n):
            area = self.areas[i % len(self.areas)]
            building = f"{area}/b{1 + (i // len(self.areas)) % 6}"
            elderly = self.rng.random() < 0.35
            alone = elderly and self.rng.random() < 0.5
            child = not elderly and self.rng.random() < 0.08
            if i == 0:  # the teachers' dorm: Old Wang, 88, lives alone, checked every day
                building, elderly, alone = f"{area}/b3", True, True
            flags = [f for f, on in (("elderly", elderly), ("lives_alone", alone), ("left_behind_child", child)) if on]
            name = "Wang Deming" if i == 0 else f"{self.rng.choice(_SURNAMES)} {self.rng.choice(_GIVEN)}"
            made = station.residents.register(
                name=name,
                grid=building,
                address=f"{building.rsplit('/', 1)[1].upper()}-{1 + i % 30:02d}",
                phone=f"139{self.rng.randrange(10**8):08d}",
                flags=flags,
                knock_every_days=1 if i == 0 else (2 if alone else 7) if elderly or child else None,
                birth_year=1938 if i == 0 else (self.rng.randrange(1930, 1960) if elderly else None),
            )
            self.resident_grid[made.id] = building
            self.residents_by_area.setdefault(area, []).append(made.id)
            if i == 0:
                self.wang = made.id
        self.stats.add("residents", n)

    @property
    def station(self) -> Replica:
        return self.devices["clerk-zhang"].replica

    def dev(self, name: str) -> Replica:
        return self.devices[name].replica

    # syncing ----------------------------------------------------------------------------------------------

    def sync(self, name: str) -> None:
        device = self.devices[name]
        replica = device.replica
        token = enrolment.current_token(replica)
        result = replica.sync(client=self.http)
        if enrolment.current_token(replica) != token:  # the device renewed its token by itself
            self.stats.add("tokens_renewed")
        self.stats.add("syncs")
        self.stats.add("ops_pushed", result.pushed)
        if name == "courier-ma":  # she carries the kiosk's bundles: delivered on her sync, answers kept in her bag
            token = enrolment.current_token(replica) or ""
            with Bag(self.bag_path) as bag:
                for d in bundles.deliver(
                    bag, self.server.url, token=token, courier=name, now_ms=self.now, client=self.http
                ):
                    self.stats.add("bundles_delivered")
                    self.stats.add("ops_relayed", d.stored)

    def sync_round(self, day: int, names: list[str] | None = None) -> None:
        """The devices online today sync (the station last, so it sees their work at once)."""
        order = [n for n in self.devices if n != "clerk-zhang" and (names is None or n in names)]
        for name in order:
            if day in self.devices[name].online:
                self.sync(name)
        self.sync("clerk-zhang")

    # the station's desk -----------------------------------------------------------------------------------

    def submit(
        self, replica: Replica, *, kind: str, channel: str, resident: str | None, title: str, **kw: Any
    ) -> Ticket:
        grid = kw.pop("grid", None) or (self.resident_grid[resident] if resident else self.areas[0])
        ticket = replica.tickets.submit(title=title, kind=kind, channel=channel, grid=grid, resident_id=resident, **kw)
        self.stats.add("requests")
        self.stats.add(f"channel:{channel}")
        return ticket

    def intake(self, day: int) -> None:
        """Requests that reach the station today: at the desk, by phone, by proxy, from the wish box."""
        station = self.station
        per_day = max(4, min(self.config.residents // 20, 150))
        with station.batch():
            for _ in range(self.rng.randrange(per_day // 2, per_day + 1)):
                area = self.rng.choice(self.areas[:3] if self.rng.random() < 0.7 else self.areas)
                resident = self.rng.choice(self.residents_by_area[area])
                kind = self.rng.choice(_KINDS)
                channel = self.rng.choice(_DESK_CHANNELS)
                if channel == "wish_box":
                    kind = "wish"
                priority = "green" if channel == "proxy" and self.rng.random() < 0.3 else "normal"
                self.submit(
                    station,
                    kind=kind,
                    channel=channel,
                    resident=resident,
                    title=self.rng.choice(_TITLES[kind]),
                    description=f"Noted at the desk on day {day}",
                    priority=priority,
                )
        if day == 1:
            dorm = f"{self.areas[0]}/b3"
            self.septic = self.submit(
                station,
                kind="repair",
                channel="walk_in",
                resident=self.wang,
                title="Septic tank blocked, 30 households",
                grid=dorm,
                description="Teachers' dormitory: the septic tank overflows into the yard",
            ).id
            self.held.add(self.septic)
            self.noise = self.submit(
                station,
                kind="dispute",
                channel="walk_in",
                resident=None,
                title="Renovation noise at night",
                grid=f"{self.areas[1]}/b2",
            ).id
            self.note(1, "the septic tank of the teachers' dormitory (30 households) is reported at the desk")

    def desk(self, day: int) -> None:
        """The station's round at its desk: settle conflicts, raise flagged knocks, receipt hand-ins, close what
        was resolved (回单) with the resident's rating, and work the requests of areas with no grid worker."""
        station = self.station
        self._settle(day)
        self._raise_flagged(day)
        for parcel in station.parcels.list():
            first = parcel.hops[0] if parcel.hops else None
            if parcel.direction == "to_station" and parcel.id not in self.mail_tickets and first is not None:
                # the request is placed when the resident drops it in the mailbox: the station opens it as soon as
                # it sees the pick-up, and reads what the resident asks for (sealed to it; the courier cannot)
                made = self.submit(
                    station,
                    kind=self.rng.choice(("errand", "legal_aid")),
                    channel="mailbox",
                    resident=None,
                    grid=parcel.grid,
                    title=f"Mailbox paperwork, envelope {parcel.code}",
                    description=first.contents or "(no note)",
                    parcel_id=parcel.id,
                )
                self.mail_tickets[parcel.id] = made.id
                self.held.add(made.id)  # the grid worker waits for the paper to reach the station
            if handover_pending(parcel):
                courier.confirm_handover(station, parcel.code)
                self.stats.add("parcels_receipted")
                self.held.discard(self.mail_tickets.get(parcel.id, ""))
        with station.batch():
            for ticket in station.tickets.list(status="resolved"):
                if ticket.id in self.held or ticket.conflicts:
                    continue
                station.tickets.close(ticket.id)
                score = self.rng.choices((5, 4, 3, 2), weights=(70, 24, 5, 1))[0]
                station.tickets.rate(ticket.id, score=score)
                self.stats.add("closed")
                if ticket.parcel_id:  # the answer goes back to the resident's door
                    source = station.parcels.get(ticket.parcel_id)
                    self.parcel_counter += 1
                    code = f"R-{self.parcel_counter}"
                    resident = self.rng.choice(self.residents_by_area[source.grid.split("/b")[0]])
                    station.parcels.register(
                        code=code, grid=source.grid, direction="to_resident", resident_id=resident, summary="reply"
                    )
                    self.slips[code] = f"{self.rng.randrange(10**6):06d}"
                    self.stats.add("parcels_to_residents")
            own = set(self.areas[3:])
            for ticket in station.tickets.list():
                if not any(in_grid(ticket.grid, a) for a in own) or ticket.kind.value == "dispute":
                    continue
                if ticket.status is TicketStatus.SUBMITTED:
                    station.tickets.accept(ticket.id, assignee="clerk-zhang")
                    station.tickets.start(ticket.id)
                elif ticket.status is TicketStatus.IN_PROGRESS and self.rng.random() < 0.8:
                    station.tickets.resolve(ticket.id, resolution="done by the station's staff")
                    self.stats.add("resolved")

    def _settle(self, day: int) -> None:
        station = self.station
        items = [i for i in review_queue(station, parallel=False) if i.field != "custody"]
        for item in items:
            assert item.field is not None
            values = [f"{c.value!r} by {c.actor}" for c in item.changes]
            if item.field == "status":
                settle(station, item.key)
                decision = "confirmed the status shown (one transition keeps it)"
            else:
                pick = next((n for n, c in enumerate(item.changes, 1) if c.actor == "grid-li"), 1)
                settle(station, item.key, pick=pick)
                decision = f"kept {item.changes[pick - 1].value!r} (value {pick})"
            self.conflicts.append(SettledConflict(day, item.key, item.label, item.field, values, decision))
            self.stats.add("conflicts_settled")
        if items:
            self.held.discard(self.septic)
            self.note(day, f"the station settled {len(items)} conflict(s) in its review queue (review.settle)")

    def _raise_flagged(self, day: int) -> None:
        """The knock team's grids: residents flagged (two unanswered knocks, unwell, emergency) get a request."""
        station = self.station
        grids = [g for d in self.devices.values() if d.role == "knocker" for g in d.grids]
        residents = [
            r for area in dict.fromkeys(grids) for b in range(1, 7) for r in station.residents.list(grid=f"{area}/b{b}")
        ]
        at = ms_to_datetime(station.clock.physical_ms())
        knock = round_of(residents, station.visits.list(), station.tickets.list(), grids=grids, at=at)
        for entry in knock.flagged:
            if entry.open_ticket is None:
                made = raise_ticket(station, entry.resident_id)
                self.stats.add("requests")
                self.stats.add("channel:door_knock")
                self.stats.add("raised_from_knocks")
                self.note(
                    day,
                    f"{entry.name} flagged ({', '.join(entry.flags)}) → the station raised {made.number} "
                    f"({made.kind.value}, {made.priority.value} channel) in one step",
                )

    # the field --------------------------------------------------------------------------------------------

    def field_work(self, day: int) -> None:
        for name, device in self.devices.items():
            if device.role == "grid_worker" and name != "kiosk-lane3":
                self._grid_worker(day, device)
            elif device.role == "knocker":
                self._knocker(day, device)
            elif device.role == "courier":
                self._courier(day, device)
            elif device.role == "mediator":
                self._mediator(day, device)
        self._kiosk(day)

    def _grid_worker(self, day: int, device: _Device) -> None:
        replica = device.replica
        if day == 2 and self.septic and device.name in ("grid-li", "grid-wang"):
            titles = {
                "grid-li": "Septic tank blocked (teachers' dorm, 30 households)",
                "grid-wang": "Septic tank overflowing into the yard",
            }
            replica.tickets.accept(self.septic, assignee=device.name)
            replica.tickets.edit(self.septic, title=titles[device.name])
            self.note(2, f"{device.name}, offline, takes the septic-tank request and retitles it")
        assert device.area is not None
        with replica.batch():
            for ticket in replica.tickets.list():
                if ticket.id in self.held or ticket.conflicts or not in_grid(ticket.grid, device.area):
                    continue
                if ticket.kind.value == "dispute":
                    continue
                if ticket.status is TicketStatus.SUBMITTED:
                    replica.tickets.accept(ticket.id, assignee=device.name)
                    replica.tickets.start(ticket.id)
                    self.stats.add("accepted")
                    if ticket.kind.value in ("errand", "volunteer_help", "wish") and self.rng.random() < 0.5:
                        replica.tickets.resolve(ticket.id, resolution="done the same day")
                        self.stats.add("resolved")
                elif ticket.status is TicketStatus.ACCEPTED and ticket.assignee == device.name:
                    replica.tickets.start(ticket.id)
                elif (
                    ticket.status is TicketStatus.IN_PROGRESS
                    and ticket.assignee == device.name
                    and self.rng.random() < 0.75
                ):
                    if self.rng.random() < 0.3:
                        replica.tickets.note(ticket.id, "visited; the resident is satisfied")
                    replica.tickets.resolve(ticket.id, resolution="done")
                    self.stats.add("resolved")

    def _knocker(self, day: int, device: _Device) -> None:
        replica = device.replica
        at = ms_to_datetime(replica.clock.physical_ms())
        residents = replica.residents.list()
        knock = round_of(residents, replica.visits.list(), [], grids=device.grids, at=at, include_ok=True)
        quota = 12 if device.name == "knocker-fang" else 8
        # Old Wang first (checked daily), then the flagged, then the most overdue; a round fills its day with
        # those checked longest ago, due or not yet
        chosen = sorted(
            knock.entries, key=lambda e: (e.resident_id != self.wang, not e.flagged, e.due_at, e.resident_id)
        )[:quota]
        with replica.batch():
            for entry in chosen:
                if entry.resident_id == self.wang:
                    self.wang_knocks += 1
                    outcome, note = "no_answer", "knocked twice, lights off"
                    if self.wang_knocks > 2:
                        outcome, note = "well", "back from hospital, his daughter is with him"
                    elif self.wang_knocks == 2:
                        self.note(
                            day, f"{device.name}: Wang Deming (88, lives alone) did not answer two knocks in a row"
                        )
                else:
                    outcome = self.rng.choices(("well", "needs_help", "unwell", "no_answer"), weights=(85, 7, 3, 5))[0]
                    note = None
                replica.visits.record(resident_id=entry.resident_id, outcome=outcome, note=note)
                self.stats.add("knocks")

    def _courier(self, day: int, device: _Device) -> None:
        replica = device.replica
        name = device.name
        assert device.area is not None
        box = replica.mailboxes.by_code(f"MB-{self.areas.index(device.area) + 1:02d}")
        with replica.batch():
            for parcel in replica.parcels.list():
                if parcel.direction == "to_resident" and parcel.stage is None and in_grid(parcel.grid, device.area):
                    courier.pickup(replica, parcel.code)
                    courier.deliver(replica, parcel.code, confirm_code=self.slips[parcel.code])
                    self.stats.add("parcels_delivered")
                elif parcel.stage is HopStage.PICKED_UP and parcel.holder == name and day in device.online:
                    courier.handover(replica, parcel.code)  # at the station, before its evening sync
                    self.stats.add("parcels_handed_in")
            if box is not None:
                for _ in range(self.rng.choice((0, 1, 1, 2))):
                    self.parcel_counter += 1
                    courier.pickup(
                        replica, f"E-{self.parcel_counter}", mailbox=box.code, contents=self.rng.choice(_MAILBOX_ASKS)
                    )
                    self.stats.add("parcels_picked_up")
            if name == "courier-sun" and day == min(2, self.config.days):
                courier.report(
                    replica, "early_warning", "Loose tiles on the outer wall of building 2", grid=f"{device.area}/b2"
                )
                self.stats.add("requests")
                self.stats.add("channel:outdoor_report")
                self.note(day, "courier-sun reports loose tiles on a wall (outdoor report, an early warning)")

    def _mediator(self, day: int, device: _Device) -> None:
        replica = device.replica
        for ticket in replica.tickets.list(kind="dispute"):
            if ticket.status is TicketStatus.SUBMITTED:
                replica.tickets.accept(ticket.id, assignee=device.name)
                replica.tickets.add_party(ticket.id, name="Mr Chen", side="renovating")
                replica.tickets.add_party(ticket.id, name="Ms Zhou", side="downstairs")
                # no attendees: sealed, they break reading the ticket on a device without the station key
                replica.tickets.record_session(ticket.id, mediator="Teacher Hu", summary="heard both sides for an hour")
            elif ticket.status is TicketStatus.ACCEPTED:
                replica.tickets.record_session(
                    ticket.id, mediator="Teacher Hu", summary="works only 9:00-17:00 on weekdays; both agree"
                )
                replica.tickets.set_outcome(ticket.id, "settled", mediator="Teacher Hu")
                replica.tickets.resolve(ticket.id, resolution="settled by rescheduling the work")
                self.stats.add("disputes_settled")
                self.note(day, f"peacemaker-hu settles the dispute {ticket.number} after two sessions")

    def _kiosk(self, day: int) -> None:
        kiosk = self.dev("kiosk-lane3")
        lane3 = self.areas[2]
        with kiosk.batch():
            for _ in range(self.rng.choice((1, 1, 2))):
                kind = self.rng.choice(("wish", "volunteer_help", "counselling"))
                self.submit(
                    kiosk,
                    kind=kind,
                    channel="wish_box",
                    resident=None,
                    grid=f"{lane3}/b{self.rng.randrange(1, 7)}",
                    title=self.rng.choice(_TITLES[kind]),
                )
        if day in self.devices["courier-ma"].online:
            self.relay_visit(day)

    def relay_visit(self, day: int) -> bool:
        """courier-ma passes the kiosk: hands it the answers she carries, takes its new bundle. Returns whether
        the kiosk's import said the server has more for it."""
        kiosk = self.dev("kiosk-lane3")
        more = False
        with Bag(self.bag_path) as bag:
            if kiosk.id in bag.devices_with_answers():
                path = self.relay_dir / f"answers-{day}-{self.bundle_n}.json"
                bag.export_answers(kiosk.id, path, now_ms=self.now)
                imported = bundles.import_answers(kiosk, path)
                more = imported.more
                self.stats.add("answers_imported", imported.answers)
            self.bundle_n += 1
            path = self.relay_dir / f"bundle-{day}-{self.bundle_n}.json"
            bundles.write_bundle(kiosk, path)
            _, new = bag.take(path, now_ms=self.now)
            self.stats.add("bundles_carried", int(new))
        return more

    # the week ---------------------------------------------------------------------------------------------

    def run_day(self, day: int) -> None:
        self.stats.day.clear()
        self.at(day, 7.5)
        self.intake(day)  # the wish box emptied, the night's phone messages, the first walk-ins
        self.sync("clerk-zhang")
        self.at(day, 8)
        self.sync_round(day)
        self.at(day, 9)
        self.desk(day)
        self.sync("clerk-zhang")
        self.at(day, 10)
        self.field_work(day)
        self.at(day, 17)
        self.sync_round(day)
        self.at(day, 17.5)
        self.desk(day)
        self.sync("clerk-zhang")
        online = sorted(n for n, d in self.devices.items() if day in d.online and n != "clerk-zhang")
        offline = sorted(n for n, d in self.devices.items() if day not in d.online)
        s = self.stats.day
        moment = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day) + timedelta(days=day - 1)
        self.step(
            f"day {day} ({moment:%a %Y-%m-%d}): {s['requests']} requests in, {s['resolved']} resolved, "
            f"{s['closed']} closed and rated, {s['knocks']} knocks, {s['parcels_picked_up']} parcels picked up, "
            f"{s['parcels_delivered']} delivered; {len(online)} devices synced, offline: {', '.join(offline)}"
        )

    def wrap_up(self) -> None:
        """The morning after: everyone comes back online; the kiosk's last bundle goes and its answer returns."""
        day = self.config.days + 1
        self.at(day, 8)
        everyone = [n for n in self.devices if n not in ("clerk-zhang", "kiosk-lane3")]
        for name in everyone:
            self.sync(name)
        self.sync("clerk-zhang")
        self._settle(day)
        self.sync("clerk-zhang")
        for name in everyone:
            self.sync(name)
        for _ in range(10):  # the kiosk's relay round trips, until it holds its whole scope and all is acked
            self.relay_visit(day)
            self.sync("courier-ma")
            more = self.relay_visit(day)
            kiosk = self.dev("kiosk-lane3")
            if not more and kiosk.unsent_count() == 0:
                break
        self.step("the morning after: every device syncs; the kiosk's last bundle goes and its answer comes back")

    # the proof --------------------------------------------------------------------------------------------

    def prove(self) -> list[DeviceProof]:
        proofs = []
        work = self.folder / "proof"
        work.mkdir(exist_ok=True)
        try:
            for name, device in self.devices.items():
                replica = device.replica
                ops = replica.export_ops({}, limit=10**9)
                ids = sorted(f"{op['origin']}:{op['seq']}" for op in ops)
                own = [op for op in ops if op["origin"] == replica.id]
                with Replica.open(
                    work / f"{name}.db",
                    actor="verifier",
                    now_ms=FakeClock(self.now, step_ms=0),
                    device_key=key_for(f"demo-{self.config.seed}-verify-{name}"),
                    logger=self.log,
                ) as fresh:
                    code = self.server.issue_code(f"verify-{name}", device.role, device.grids)
                    fresh.enroll(self.server.url, code, client=self.http)
                    fresh.sync(client=self.http)
                    fresh.apply_ops(own)
                    same = fresh.state_digest() == replica.state_digest()
                unsent = replica.unsent_count()
                proofs.append(
                    DeviceProof(
                        name=name,
                        role=device.role,
                        grids=[g or "(everywhere)" for g in device.grids],
                        file=str(replica.path),
                        ops=len(ids),
                        own_ops=len(own),
                        unsent=unsent,
                        fingerprint=hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest(),
                        converged=same and unsent == 0,
                    )
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return proofs


def period_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The report period ``caresync report --from FIRST --to LAST`` means: midnights in this computer's time zone
    (where a clerk's dates are meant), the last day included."""
    zone = _local_zone()
    start = datetime.combine(first, dt_time(0, 0), tzinfo=zone)
    return start, datetime.combine(last + timedelta(days=1), dt_time(0, 0), tzinfo=zone)


def run_demo(config: DemoConfig, *, step: Callable[[str], None] = lambda _: None) -> DemoOutcome:
    """Runs the simulated week in ``config.folder`` (which should be empty) and proves convergence.

    Args:
        config: seed, days, residents and folder.
        step: called with one line per phase (set-up, each day, the morning after), for a progress display.

    Returns:
        The station's report for the simulated days, the conflicts settled, every device's proof, counts.

    Raises:
        ServerNotInstalledError: caresync_server is not installed.
        CaresyncError: something in the simulation failed (the message says what).
    """
    if config.days < 3:
        raise CaresyncError("The demo needs at least 3 days (--days 3) for its scenes")
    if config.residents < 10:
        raise CaresyncError("The demo needs at least 10 residents (--residents 10)")
    config.folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        world = _World(config, stack, step)
        world.set_up()
        for day in range(1, config.days + 1):
            world.run_day(day)
        world.wrap_up()
        first = FIRST_DAY
        last = FIRST_DAY + timedelta(days=config.days - 1)
        start, end = period_bounds(first, last)
        station = world.station
        # the report is made after the period ended, as `caresync report --from --to` run later makes it
        world.devices["clerk-zhang"].clock.ms = max(world.now, int(end.timestamp() * 1000) + _HOUR)
        report = station_report(station, start=start, end=end)
        proofs = world.prove()
        counts = dict(sorted(world.stats.counts.items()))
        counts["ops_at_station"] = station.op_count()
        step("proof: every device compared with a fresh replica of its role and grids pulled from the server")
        return DemoOutcome(
            folder=config.folder,
            server_database=world.server.database,
            first_day=first,
            last_day=last,
            report=report,
            conflicts=world.conflicts,
            proofs=proofs,
            counts=counts,
            events=world.events,
        )
