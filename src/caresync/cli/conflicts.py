"""``caresync conflicts``: the review queue: conflicts that need a decision, and settling them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import (
    Env,
    common_options,
    fmt_time,
)

if TYPE_CHECKING:
    pass

__all__ = ["conflicts"]


@click.group()
def conflicts() -> None:
    """The review queue: conflicts that need a decision, and edits made in parallel (for information)."""


@conflicts.command("list")
@click.option("--no-parallel", "no_parallel", is_flag=True, help="Only conflicts that need a decision.")
@click.option("--days", "days_back", type=click.IntRange(1, 365), default=7, show_default=True)
@common_options
def conflicts_list(env: Env, no_parallel: bool, days_back: int) -> None:
    """Every unresolved conflict with the competing values: who, on which device, when. Each is named
    NUMBER#FIELD (a ticket's number, a parcel's code), as `conflicts show` and `conflicts resolve` take it."""
    from caresync.field.review import review_queue  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        items = review_queue(replica, parallel=not no_parallel, days=days_back)
    decide = [i for i in items if i.needs_decision]

    def text() -> None:
        console = env.console()
        if not items:
            console.print(env.t("conflicts.none"), markup=False)
            return
        console.print(
            env.t("conflicts.summary", conflicts=len(decide), parallel=len(items) - len(decide)), markup=False
        )
        for item in items:
            _print_item(env, item)

    env.out({"needs_decision": len(decide), "items": [i.to_json() for i in items]}, text)


def _print_item(env: Env, item: Any) -> None:
    """One entry of the queue: its level, key and label, the competing values numbered, and how to decide."""
    from caresync.cli._names import field_label, value_words  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    console = env.console()
    head = f"[{label('level', item.level, env.lang)}] {item.key}  {item.label}"
    console.print(head, markup=False, style="bold red" if item.needs_decision else "yellow")
    for n, c in enumerate(item.changes, 1):
        shown = env.t("conflicts.shown") if c.shown and item.needs_decision else ""
        value = value_words(c.field, c.value, env.lang)
        console.print(
            f"  {n}. {field_label(c.field, env.lang)} = {value}  {c.actor} @ {c.device[:8]}  {fmt_time(c.at)} "
            f"{shown}".rstrip(),
            markup=False,
        )
    if item.needs_decision:
        hints = {"status": "conflicts.hint_status", "custody": "conflicts.hint_custody"}
        hint = hints.get(item.field or "", "conflicts.hint")
        console.print("     " + env.t(hint, key=item.key), markup=False)


@conflicts.command("show")
@click.argument("ref")
@click.argument("field", required=False)
@common_options
def conflicts_show(env: Env, ref: str, field: str | None) -> None:
    """One conflict: REF is NUMBER#FIELD as the list shows it, or the ticket's number (a parcel's code) and the
    field apart: `caresync conflicts show 1000 assignee`."""
    from caresync.field.review import find_conflict, review_queue  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        conflict = find_conflict(replica, ref, field)
        item = next(
            i
            for i in review_queue(replica, parallel=False)
            if i.entity_id == conflict.entity_id and i.field == conflict.field
        )
    env.out(item.to_json(), lambda: _print_item(env, item))


@conflicts.command("resolve")
@click.argument("ref")
@click.argument("field", required=False)
@click.option("--value", "value_text", default=None, help="The value to keep (JSON or text).")
@click.option("--pick", type=click.IntRange(1), default=None, help="Keep the N-th competing value as listed.")
@common_options
def conflicts_resolve(env: Env, ref: str, field: str | None, value_text: str | None, pick: int | None) -> None:
    """Settles one conflict with an ordinary later edit; sync carries it to everyone. REF is NUMBER#FIELD as the
    list shows it (the internal RECORD-ID#FIELD works too), or the number and the field apart:
    `caresync conflicts resolve 1000 assignee --pick 2`."""
    from caresync.field.review import (  # here, not at the top: keeps start-up fast
        conflict_name,
        find_conflict,
        parse_value,
        settle,
    )

    with env.open() as replica:
        value: Any = None
        found = find_conflict(replica, ref, field)
        if value_text is not None:  # text for a text field (a title of digits stays text), else JSON
            texts = all(isinstance(v.value, str) for v in found.values)
            value = value_text if texts else parse_value(value_text)
        before = settle(replica, ref, value=value, pick=pick, field=field)
        key = conflict_name(replica, before)
        left = len(replica.conflicts())
    env.out(
        {"resolved": key, "record": before.entity_id, "field": before.field, "left": left},
        env.t("conflicts.resolved", key=key, left=left),
    )
