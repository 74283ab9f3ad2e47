"""The deterministic fold: a record's state is a pure function of its ops in ``(hlc, origin, seq)`` order.

Merge rules (DESIGN section 2):

* **Fields** are multi-value registers. A ``set`` op names the ops whose values it saw and replaced
  (``replaces``). The *frontier* of a field is every write no later write has replaced. One write in the
  frontier: that is the value. Several with different values: the field is in **conflict**; the value shown
  is the latest by HLC, and the others stay visible until an edit that saw them all replaces them.
  Conflicts are found from what each author saw, never from clocks, so a device with a wrong clock cannot
  hide anyone's work.
* **Status** changes form a chain: each transition names the transition(s) it followed. They are folded
  through the ticket state machine in HLC order; a transition that no longer fits is kept and marked not
  applied. Two transitions that followed the same one were made without seeing each other: a status
  conflict, even when the sequence the fold picked is valid. A later transition that followed both settles it.
* **Notes, parties, mediation sessions, custody hops, attachments**: grow-only collections (add wins), in HLC
  order. An attachment is removed by a ``detach`` op naming the attach ops it saw (an observed-remove set): one
  added concurrently with a removal stays.
  Custody hops also chain like status changes, so two couriers picking up one parcel offline is a conflict.
* **Ticket numbers**: a ``ticket.number`` op from the ticket's own device replaces a provisional number once;
  any other is kept in the history and changes nothing.
* **Deletion** is a tombstone (the ``deleted`` field); **redaction** erases personal fields written before it.

Only references to ops that sort earlier count; so folding all ops afresh and applying newer ops to a saved
state give the same result, which is what lets the store update rows incrementally.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from caresync.core.domain import grid_parent, hop_fits, ticket_transition
from caresync.core.ids import op_id
from caresync.core.ops import OpDict

__all__ = [
    "FOLD_VERSION",
    "State",
    "apply_op",
    "apply_sorted",
    "conflict_count",
    "conflicts_of",
    "fold",
    "new_state",
    "op_key",
    "value_of",
]

State = dict[str, Any]
#: Bumped whenever a merge rule or the state layout changes: a replica folded by other rules re-folds every
#: record from its log when it is opened, so rows never keep the old rules' results.
FOLD_VERSION = 2
# A frontier entry: [op_id, hlc, origin, seq, actor, at, value]
_ID, _HLC, _ORIGIN, _SEQ, _ACTOR, _AT, _VALUE = range(7)
_COLLECTIONS = {
    "note": "notes",
    "party": "parties",
    "session": "sessions",
    "attach": "attachments",
    "detach": "detachments",
}


def op_key(op: OpDict) -> tuple[int, str, int]:
    """The total order of ops: HLC, then origin, then seq."""
    return (op["hlc"], op["origin"], op["seq"])


def new_state(entity: str, eid: str) -> State:
    """The state of a record nothing is known about yet."""
    state: State = {"type": entity, "id": eid, "n": 0, "last": None, "created": None, "f": {}, "c": {}}
    if entity == "ticket":
        state["st"] = {"v": "submitted", "grid": None, "heads": [], "at": {}}
    elif entity == "parcel":
        state["hop"] = {"stage": None, "holder": None, "heads": []}
    return state


def _entry(op: OpDict, value: Any) -> list[Any]:
    return [op_id(op["origin"], op["seq"]), op["hlc"], op["origin"], op["seq"], op["actor"], op["at"], value]


def _write(fields: dict[str, list[list[Any]]], field: str, replaces: Iterable[str], entry: list[Any]) -> None:
    current = fields.get(field)
    if current:
        gone = set(replaces)
        kept = [e for e in current if e[_ID] not in gone] if gone else current
        kept.append(entry)
        fields[field] = kept
    else:
        fields[field] = [entry]


def _current(fields: dict[str, list[list[Any]]], field: str) -> Any:
    entries = fields.get(field)
    return entries[-1][_VALUE] if entries else None


def _head(op: OpDict, label: str, fits: bool) -> list[Any]:
    return [op_id(op["origin"], op["seq"]), op["hlc"], op["origin"], op["seq"], op["actor"], op["at"], label, fits]


def _chain(heads: list[list[Any]], follows: list[str], head: list[Any]) -> list[list[Any]]:
    gone = set(follows)
    out = [h for h in heads if h[0] not in gone]
    out.append(head)
    return out


def apply_op(state: State, op: OpDict) -> None:
    """Folds one op into ``state``. Ops must come in ``op_key`` order (the caller sorts)."""
    kind = op["kind"]
    action = kind[kind.index(".") + 1 :]
    body = op["body"]
    fields = state["f"]
    if action == "set":
        _write(fields, body["field"], body["replaces"], _entry(op, body["value"]))
    elif action == "create":
        _create(state, op)
    elif action == "transition":
        _transition(state, op, body)
    elif action == "hop":
        hop = state["hop"]
        fits = hop_fits(hop["stage"] or "", body["stage"], to_resident=_current(fields, "direction") == "to_resident")
        hop["heads"] = _chain(hop["heads"], body["follows"], _head(op, body["stage"], fits))
        hop["stage"] = body["stage"]
        hop["holder"] = op["actor"]
        _collect(state, "hops", op, body)
    elif action == "number":
        _number(state, op, body["number"])
    elif action == "redact":
        _redact(state, body["fields"])
        state.setdefault("redactions", []).append([op["hlc"], op["actor"], op["at"], body["fields"]])
    else:  # note, party, session: grow-only collections
        _collect(state, _COLLECTIONS[action], op, body)
    state["n"] += 1
    state["last"] = [op["hlc"], op["origin"], op["seq"]]


def apply_sorted(state: State, ops: Sequence[OpDict]) -> None:
    """Folds ops already in ``op_key`` order into ``state``: the same as :func:`apply_op` on each in turn.

    The bulk path (merging a batch, re-folding from the log): field writes, most of any log, are folded
    inline, without the per-op bookkeeping ``apply_op`` repeats."""
    if not ops:
        return
    fields = state["f"]
    writes = 0
    for op in ops:
        kind = op["kind"]
        if not kind.endswith(".set"):
            if kind.endswith(".create"):
                _create(state, op)
                writes += 1
            else:
                apply_op(state, op)
            continue
        writes += 1
        body = op["body"]
        field = body["field"]
        origin, seq = op["origin"], op["seq"]
        entry = [f"{origin}:{seq}", op["hlc"], origin, seq, op["actor"], op["at"], body["value"]]
        current = fields.get(field)
        if not current:
            fields[field] = [entry]
            continue
        replaces = body["replaces"]
        if replaces:
            gone = replaces if len(replaces) < 8 else set(replaces)  # a short list is searched faster than hashed
            if len(current) == 1:
                if current[0][_ID] in gone:
                    fields[field] = [entry]
                    continue
            else:
                current = [e for e in current if e[_ID] not in gone]
                fields[field] = current
        current.append(entry)
    last = ops[-1]
    state["n"] += writes  # apply_op counted the others
    state["last"] = [last["hlc"], last["origin"], last["seq"]]


def _create(state: State, op: OpDict) -> None:
    """``apply_op`` of a create op, without its ``n`` and ``last`` bookkeeping: one frontier entry per field."""
    origin, seq, hlc, actor, at = op["origin"], op["seq"], op["hlc"], op["actor"], op["at"]
    oid = f"{origin}:{seq}"
    if state["created"] is None:
        state["created"] = [oid, actor, at]
    fields = state["f"]
    ticket = state["type"] == "ticket"
    for name, value in op["body"].items():
        if name == "redacted":  # the digests a redaction kept for the signature: not a field
            continue
        if name == "grid" and ticket:
            if state["st"]["grid"] is None:
                state["st"]["grid"] = value
            continue
        entry = [oid, hlc, origin, seq, actor, at, value]
        current = fields.get(name)
        if current:
            current.append(entry)  # what _write does with nothing replaced
        else:
            fields[name] = [entry]


def _collect(state: State, name: str, op: OpDict, body: dict[str, Any]) -> None:
    if "redacted" in body:  # the digests a redaction kept for the signature are not part of the item
        body = {key: value for key, value in body.items() if key != "redacted"}
    items = state["c"].setdefault(name, [])
    items.append([op_id(op["origin"], op["seq"]), op["hlc"], op["origin"], op["seq"], op["actor"], op["at"], body])


def _transition(state: State, op: OpDict, body: dict[str, Any]) -> None:
    st = state["st"]
    action = body["action"]
    fields = state["f"]
    if action == "accept" and "assignee" in body:
        _write(fields, "assignee", body.get("assignee_replaces", ()), _entry(op, body["assignee"]))
    grid = st["grid"]
    after = ticket_transition(
        st["v"],
        action,
        has_assignee=_current(fields, "assignee") is not None,
        has_parent_grid=grid is not None and grid_parent(grid) is not None,
    )
    fits = after is not None
    if after is not None:
        if action == "escalate":
            st["grid"] = body.get("to_grid") or grid_parent(grid or "")
        elif action == "reopen":
            st["at"].pop("resolve", None)
            st["at"].pop("close", None)
        elif after != st["v"]:
            st["at"][action] = op["at"]
        st["v"] = after
    st["heads"] = _chain(st["heads"], body["follows"], _head(op, action, fits))


def _number(state: State, op: OpDict, number: str) -> None:
    """A ticket's short number replacing its provisional one. Only the ticket's own device may give it (the
    origin in the ticket's id), only while the number is provisional, and the first such op wins: a ticket is
    numbered once, so two records can never end up sharing a number through this op. The provisional number
    is kept (``former_numbers``): a resident told it on the spot still finds the ticket."""
    if op["origin"] != state["id"].split("-")[1]:
        return
    fields = state["f"]
    current = _current(fields, "number")
    if current is not None and "-" not in current:
        return
    if current is not None:
        state.setdefault("former_numbers", []).append(current)
    fields["number"] = [_entry(op, number)]


def _redact(state: State, names: Iterable[str]) -> None:
    for name in names:
        if name == "notes":
            for item in state["c"].get("notes", []):
                item[6] = {"text": None}
        elif name == "attachments":
            for item in state["c"].get("attachments", []):
                item[6] = {**item[6], "key": None, "caption": None}
        else:
            for entry in state["f"].get(name, []):
                entry[_VALUE] = None


def fold(entity: str, eid: str, ops: Iterable[OpDict]) -> State:
    """The state of record ``eid`` from all its ops, in any order."""
    state = new_state(entity, eid)
    apply_sorted(state, sorted(ops, key=op_key))
    return state


def value_of(state: State, field: str) -> Any:
    """The value a field shows: the latest write by HLC among those not replaced."""
    if field == "grid" and state["type"] == "ticket":
        return state["st"]["grid"]
    return _current(state["f"], field)


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _field_in_conflict(entries: list[list[Any]]) -> bool:
    """Writes no later write replaced, with more than one distinct value among them."""
    return len(entries) > 1 and len({_json_key(e[_VALUE]) for e in entries}) > 1


def _chain_in_conflict(heads: list[list[Any]]) -> bool:
    """Transitions (or hops) made without seeing each other, or a latest one that did not fit."""
    return len(heads) > 1 or any(not h[7] for h in heads)


def conflict_count(state: State) -> int:
    """How many unresolved conflicts a record has (cheaper than building them)."""
    count = sum(_field_in_conflict(entries) for entries in state["f"].values())
    for name in ("st", "hop"):
        chain = state.get(name)
        if chain is not None:
            count += _chain_in_conflict(chain["heads"])
    return count


def conflicts_of(state: State) -> list[dict[str, Any]]:
    """The unresolved conflicts of one record, as plain data.

    Each is ``{"field", "values": [{"value", "op", "actor", "device", "at", "applied"}...], "chosen"}``,
    where ``field`` is a field name, ``"status"`` or ``"custody"``.
    """
    out: list[dict[str, Any]] = []
    for field, entries in state["f"].items():
        if _field_in_conflict(entries):
            out.append(
                {
                    "field": field,
                    "chosen": entries[-1][_VALUE],
                    "values": [
                        {
                            "value": e[_VALUE],
                            "op": e[_ID],
                            "actor": e[_ACTOR],
                            "device": e[_ORIGIN],
                            "at": e[_AT],
                            "applied": e is entries[-1],
                        }
                        for e in entries
                    ],
                }
            )
    for name, chain, chosen in (("status", state.get("st"), "v"), ("custody", state.get("hop"), "stage")):
        if chain is None:
            continue
        heads = chain["heads"]
        if _chain_in_conflict(heads):
            out.append(
                {
                    "field": name,
                    "chosen": chain[chosen],
                    "values": [
                        {"value": h[6], "op": h[0], "actor": h[4], "device": h[2], "at": h[5], "applied": h[7]}
                        for h in heads
                    ],
                }
            )
    return out
