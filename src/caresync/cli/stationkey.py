"""``caresync station-key``: the station's key, made, registered and rotated on the station's own device.

``create`` makes it in this device's replica file; ``register`` sends its public half to the sync server this device
enrolled with (a station or admin device whose scope is everywhere); ``rotate`` replaces it by a new key signed by
the old one, which devices accept; ``grant`` makes, rotates and wraps the readers' keys of the grids to the devices
entitled to them (every sync of the desk does it too); ``show`` prints what this device holds and pins, and the
readers' keys it holds or granted. The rules live in :mod:`caresync.sync.stationkey`, :mod:`caresync.sync.gridkeys`
and :mod:`caresync.store.devicelog`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import Env, common_options

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = ["station_key"]


def _described(replica: Replica) -> dict[str, Any]:
    from caresync.sync import gridkeys, stationkey  # here, not at the top: keeps start-up fast
    from caresync.sync.enrolment import enrolment  # here, not at the top: keeps start-up fast

    held = replica.station_key
    log = replica.device_log
    creds = enrolment(replica)
    return {
        "device": replica.id,
        "holds_station_key": held is not None,
        "station_key": None if held is None or held.signing_public_key is None else held.signing_public_key.hex(),
        "pinned": None if replica.station_signing_key is None else replica.station_signing_key.hex(),
        "sealing_key": None if replica.station_public_key is None else replica.station_public_key.hex(),
        "rotations": max(0, len(stationkey.station_key_links(replica)) - 1),
        "problem": None if creds is None else creds.station_key_problem,
        "readers_keys": [{"role": r, "grid": g, "version": v} for r, g, v in log.readers_keys],
        "sealing_to": [{"role": k.role, "grid": k.grid, "version": k.version} for k in log.published_readers_keys],
        "granted": gridkeys.grants(replica),
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


@station_key.command("grant")
@common_options
def station_key_grant(env: Env) -> None:
    """Gives the readers' keys of the grids to the devices entitled to them (grid workers, knockers, mediators),
    and rotates a grid's key when a device left it (revoked, re-scoped, another role); each sync of this desk does
    it too."""
    from caresync.sync import stationkey  # here, not at the top: keeps start-up fast

    with env.open(writes=False) as replica:
        done = stationkey.grant_readers_keys(replica)
        info = _described(replica)
    grants = done.grants
    assert grants is not None
    info["made"] = [{"role": role, "grid": grid, "version": version} for role, grid, version in grants.made]
    info["wrapped"] = grants.wrapped
    info["problems"] = done.problems
    made = ", ".join(f"{role} {grid or env.t('skey.everywhere')} v{version}" for role, grid, version in grants.made)
    lines = [env.t("skey.granted", made=made or env.t("skey.none"), wrapped=grants.wrapped)]
    lines += [env.t("skey.grant_problem", problem=p) for p in done.problems]
    env.out(info, "\n".join(lines))


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
    held = ", ".join(
        f"{k['role']} {k['grid'] or env.t('skey.everywhere')} v{k['version']}" for k in info["readers_keys"]
    )
    lines.append(env.t("skey.readers", keys=held or env.t("skey.none")))
    for granted in info["granted"]:
        lines.append(
            env.t(
                "skey.granted_to",
                role=granted["role"],
                grid=granted["grid"] or env.t("skey.everywhere"),
                version=granted["version"],
                devices=", ".join(granted["readers"]) or env.t("skey.none"),
            )
        )
    env.out(info, "\n".join(lines))
