"""``python -m caresync_server``: the ``caresync-server`` command."""

from .cli import main

main(prog_name="caresync-server")
