"""The station commands' messages: both languages say the same things, and every message is used."""

from __future__ import annotations

import re
import string
from pathlib import Path

import caresync.cli
from caresync.cli._messages import MESSAGES
from caresync.field.labels import DOMAIN_LABELS

CLI = Path(caresync.cli.__file__).parent


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_take_the_same_fields() -> None:
    for catalog in (MESSAGES, DOMAIN_LABELS):
        for key, texts in catalog.messages.items():
            assert _fields(texts["zh"]) == _fields(texts["en"]), key


def test_every_message_is_used_by_a_command() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in CLI.glob("*.py") if p.name != "_messages.py")
    literals = set(re.findall(r"[\"']([a-z_.0-9]+)[\"']", source))
    unused = [
        key
        for key in MESSAGES.messages
        if key not in literals and not (key.startswith("field.") and key.removeprefix("field.") in literals)
    ]
    assert unused == []


def test_every_station_command_is_in_the_guides() -> None:
    import click

    from caresync.cli import main

    docs = Path(__file__).parent.parent / "docs"
    text = "\n".join((docs / name).read_text(encoding="utf-8") for name in ("station.md", "knock-team.md"))
    missing = []
    for name, command in main.commands.items():
        subs = command.commands if isinstance(command, click.Group) else {"": command}
        for sub in subs:
            if not re.search(rf"caresync {name}\b[^`\n]*{re.escape(sub)}", text):
                missing.append(f"{name} {sub}".strip())
    assert missing == []


def test_every_error_code_has_its_chinese_lead_words() -> None:
    import caresync
    from caresync.cli._common import _ERROR_PREFIXES

    codes = {getattr(caresync, n).code for n in caresync.__all__ if n.endswith("Error")} - {"caresync_error"}
    assert codes == set(_ERROR_PREFIXES)
