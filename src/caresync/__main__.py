"""``python -m caresync``: the caresync command."""

from caresync.cli import main

main()
