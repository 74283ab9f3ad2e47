"""Who may do what, on the server: the library's one role table (:mod:`caresync.trust.scopes`), expanded.

The table itself lives in the library so that devices apply the same rules when they purge what they may no
longer hold; this module only expands it into the sets the server's checks use. A rule may restrict a role to
records of one ``kind`` (a mediator's tickets are disputes): :data:`KIND_ONLY` lists those restrictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from caresync.core.domain import Role
from caresync.trust.scopes import EVERYWHERE, GLOBAL_TYPES, ROLE_TABLE, covers, rule_for

__all__ = [
    "EVERYWHERE",
    "GLOBAL_TYPES",
    "KIND_ONLY",
    "PERMISSIONS",
    "ROLE_TABLE",
    "Permissions",
    "covers",
    "rule_for",
]


@dataclass(frozen=True)
class Permissions:
    """What one role may do, expanded from :data:`ROLE_TABLE`."""

    writes: frozenset[str]
    """Op kinds."""
    reads: frozenset[str]
    """Record types."""


#: The table, expanded against the op kinds and record types this caresync knows.
PERMISSIONS: Mapping[Role, Permissions] = {
    role: Permissions(
        writes=frozenset(kind for rule in rules for kind in rule.actions()),
        reads=frozenset(rule.record for rule in rules if rule.read),
    )
    for role, rules in ROLE_TABLE.items()
}
#: Per role, the record types it may only hold or change when their ``kind`` is the one given.
KIND_ONLY: Mapping[Role, Mapping[str, str]] = {
    role: {rule.record: rule.kind for rule in rules if rule.kind is not None} for role, rules in ROLE_TABLE.items()
}
