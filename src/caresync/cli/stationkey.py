"""``caresync station-key``: the station's key, made, registered and rotated on the station's own device.

``create`` makes it in this device's replica file; ``register`` sends its public half to the sync server this device
enrolled with (a station or admin device whose scope is everywhere); ``rotate`` replaces it by a new key signed by
the old one, which devices accept; ``show`` prints what this device holds and pins. The rules live in
:mod:`caresync.sync.stationkey` and :mod:`caresync.store.devicelog`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import Env, common_options

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = ["station_key"]


def _described(replica: Replica) -> dict[str, Any]:
    from caresync.sync import stationkey  # here, not at the top: keeps start-up fast
    from caresync.sync.enrolment import enrolment  # here, not at the top: keeps start-up fast

    held = replica.station_key
    creds = enrolment(replica)
    return {
        "device": replica.id,
        "holds_station_key": held is not None,
        "station_key": None if held is None or held.signing_public_key is None else held.signing_public_key.hex(),
        "pinned": None if replica.station_signing_key is None else replica.station_signing_key.hex(),
        "sealing_key": None if replica.station_public_key is None else replica.station_public_key.hex(),
        "rotations": max(0, len(stationkey.station_key_links(replica)) - 1),
        "problem": None if creds is None else creds.station_key_problem,
    }


@click.group("station-key")
def station_key() -> None:
    """The station's key: what devices seal residents' private details to, pinned on every device."""


@station_key.command("create")
@common_options
def station_key_create(env: Env) -> None:
    """Makes the station's key on this device (the secret never leaves its replica file)."""
    from caresync.sync import stationkey  # here, not at the top: keeps start-up fast

    with env.open(writes=False) as replica:
        key = stationkey.create_station_key(replica)
        assert key.signing_public_key is not None
        env.out(_described(replica), env.t("skey.created", key=key.signing_public_key.hex()))


@station_key.command("register")
@common_options
def station_key_register(env: Env) -> None:
    """Sends the station's public key to the sync server this device enrolled with; devices learn it and pin it."""
    from caresync.sync import stationkey  # here, not at the top: keeps start-up fast

    with env.open(writes=False) as replica:
        link = stationkey.register_station_key(replica)
        env.out(_described(replica), env.t("skey.registered", key=link.signing_key.hex()))


@station_key.command("rotate")
@common_options
def station_key_rotate(env: Env) -> None:
    """Replaces the station's key by a new one signed by the old one, and registers it; the old one still opens
    what was sealed to it."""
    from caresync.sync import stationkey  # here, not at the top: keeps start-up fast

    with env.open(writes=False) as replica:
        key = stationkey.rotate_station_key(replica)
        assert key.signing_public_key is not None
        env.out(_described(replica), env.t("skey.rotated", key=key.signing_public_key.hex()))


@station_key.command("show")
@common_options
def station_key_show(env: Env) -> None:
    """Prints the station key this device holds or pins, and any key offer it refused."""
    with env.read() as replica:
        info = _described(replica)
    lines = [env.t("skey.held" if info["holds_station_key"] else "skey.not_held", key=info["station_key"])]
    lines.append(env.t("skey.pinned", key=info["pinned"] or info["sealing_key"] or env.t("skey.none")))
    if info["problem"]:
        lines.append(env.t("skey.problem", problem=info["problem"]))
    env.out(info, "\n".join(lines))
