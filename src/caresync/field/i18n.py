"""Messages in Simplified Chinese and English for the command-line tools.

Each tool keeps its own catalogue ``{key: {"en": ..., "zh": ...}}``; :func:`pick_language` chooses the
language from ``--lang``, then ``CARESYNC_LANG``, then the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LANGUAGES", "Catalog", "language_in_argv", "pick_language"]

LANGUAGES = ("zh", "en")


def pick_language(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``"zh"`` or ``"en"``: ``explicit`` if given, else ``CARESYNC_LANG``, else the locale; English by default."""
    env = os.environ if environ is None else environ
    for value in (explicit, env.get("CARESYNC_LANG"), env.get("LC_ALL"), env.get("LC_MESSAGES"), env.get("LANG")):
        if value:
            low = value.lower()
            if low.startswith("zh"):
                return "zh"
            if low.startswith("en") or low in ("c", "posix") or explicit:
                return "en"
    return "en"


def language_in_argv(argv: Sequence[str]) -> str:
    """The language a command line asks for (``--lang X`` or ``--lang=X`` anywhere in it), else as
    :func:`pick_language` finds it: for reporting errors before the options are parsed."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return pick_language(argv[i + 1])
        if arg.startswith("--lang="):
            return pick_language(arg.partition("=")[2])
    return pick_language()


class Catalog:
    """A tool's messages. ``catalog(key, lang, **fields)`` gives the text in ``lang``, formatted with ``fields``."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        missing = [k for k, texts in messages.items() if set(texts) != set(LANGUAGES)]
        if missing:
            raise ValueError(f"messages without both zh and en: {', '.join(sorted(missing))}")
        self.messages = messages

    def __call__(self, key: str, lang: str, /, **fields: Any) -> str:
        text = self.messages[key][lang if lang in LANGUAGES else "en"]
        return text.format(**fields) if fields else text

    def __contains__(self, key: str) -> bool:
        return key in self.messages
