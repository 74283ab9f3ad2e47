"""``caresync init``: sets up this device's folder, its replica file and who works on it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from caresync.cli._common import CONFIG_FILE, Env, common_options
from caresync.errors import CaresyncError

if TYPE_CHECKING:
    pass

__all__ = ["init"]


@click.command()
@click.option("--server", "server", default=None, help="The sync server's address, saved for caresync sync.")
@common_options
def init(env: Env, server: str | None) -> None:
    """Sets up this device: its folder, its replica file and who works on it (--actor)."""
    from caresync.replica import Replica  # here, not at the top: keeps start-up fast

    path = env.replica_path
    existed = path.exists()
    if existed:
        env.check_replica(path)  # init makes a new replica, never one out of another file
    actor = env.actor or env.config().get("actor")
    if not actor:
        raise CaresyncError(env.t("err.init_actor"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with Replica.open(path, actor=actor) as replica:
        info = {
            "home": str(env.home),
            "replica": str(path),
            "device": replica.id,
            "actor": actor,
            "created": not existed,
        }
    if env.db is None:
        config = env.config()
        config["actor"] = actor
        if server:
            config["server"] = server
        (env.home / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        info["server"] = config.get("server")
    key = "init.created" if not existed else "init.exists"
    env.out(info, env.t(key, path=path, device=info["device"], actor=actor))
