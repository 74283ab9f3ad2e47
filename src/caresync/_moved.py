"""The module paths caresync had before its layers (0.1.0): they keep working for one release, with a warning.

``import caresync.ops`` still gives the op module, and ``from caresync.bundles import Bag`` still finds the bag, but
each warns once (a :class:`DeprecationWarning`) and names the new path. A path whose module was split gives one
module holding the names of all its parts, as the old one had them. The old paths are removed in the release
after this one; docs/changelog.md lists where each went.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence

__all__ = ["MOVED", "install"]

#: Old module path -> the new modules that hold its names (the first is the one to import now).
MOVED: dict[str, tuple[str, ...]] = {
    "caresync.clock": ("caresync.core.clock",),
    "caresync.domain": ("caresync.core.domain",),
    "caresync.ops": ("caresync.core.ops", "caresync.core.ids", "caresync.core.gcpause"),
    "caresync.merge": ("caresync.core.merge",),
    "caresync.model": ("caresync.core.model",),
    "caresync.keys": ("caresync.trust.keys",),
    "caresync.signing": ("caresync.trust.signing", "caresync.trust.sealing", "caresync.core.ops"),
    "caresync.scopes": ("caresync.trust.scopes",),
    "caresync.schema": ("caresync.store.schema",),
    "caresync.numbers": ("caresync.store.numbers", "caresync.core.ids", "caresync.replica"),
    "caresync.wire": ("caresync.sync.wire",),
    "caresync.netsync": ("caresync.sync.netsync", "caresync.sync._http"),
    "caresync.enrolment": ("caresync.sync.enrolment", "caresync.trust.codes"),
    "caresync.bundles": ("caresync.sync.bundles.relay", "caresync.sync.bundles.bag", "caresync.sync.bundles.format"),
    "caresync.courier": ("caresync.field.courier",),
    "caresync.custody": ("caresync.field.custody",),
    "caresync.knock": ("caresync.field.knock", "caresync.core.domain"),
    "caresync.review": ("caresync.field.review",),
    "caresync.reports": ("caresync.field.reports",),
    "caresync.report_html": ("caresync.field.report_html",),
    "caresync.sla": ("caresync.field.sla",),
    "caresync.labels": ("caresync.field.labels",),
    "caresync.i18n": ("caresync.field.i18n",),
    "caresync.demo": ("caresync.field.demo",),
    "caresync.courier_cli": ("caresync.cli.courier",),
}

#: Names an old module offered under another name now (old -> new), so that old code keeps finding them.
_RENAMED = {"caresync.bundles": {"open_sealed": "open_answer"}}


def _merged(old: str, parts: Sequence[str]) -> types.ModuleType:
    modules = [importlib.import_module(name) for name in parts]
    if len(modules) == 1 and old not in _RENAMED:
        return modules[0]
    merged = types.ModuleType(old, modules[0].__doc__)
    for module in reversed(modules):  # the first part's names win
        merged.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    for was, now in _RENAMED.get(old, {}).items():
        merged.__dict__[was] = merged.__dict__[now]
    return merged


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, parts: Sequence[str]) -> None:
        self.parts = parts

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.parts[0]}; import it from there (the old path works for this release "
            "only: see docs/changelog.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _merged(spec.name, self.parts)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is the new one (or the merge of its parts)."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        parts = MOVED.get(fullname)
        if parts is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(parts))


def install() -> None:
    """Lets the old module paths be imported (once per process; calling it again does nothing)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
