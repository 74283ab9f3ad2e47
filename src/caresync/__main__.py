"""``python -m caresync``: the caresync command."""

from .cli import main

main()
