"""The public surface: one curated __all__, documented, every method in docs/python-api.md."""

from __future__ import annotations

import inspect
from pathlib import Path

import caresync
from caresync import replica as replica_module

DOCS = Path(__file__).parent.parent / "docs"


def test_all_is_sorted_and_importable() -> None:
    names = [n for n in caresync.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in caresync.__all__:
        assert hasattr(caresync, name), name


def test_public_names_and_methods_have_docstrings() -> None:
    missing = []
    for name in caresync.__all__:
        obj = getattr(caresync, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not inspect.getdoc(obj):
                missing.append(name)
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member) and not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_every_replica_and_collection_method_is_in_the_api_docs() -> None:
    text = (DOCS / "python-api.md").read_text(encoding="utf-8")
    classes = [
        replica_module.Replica,
        replica_module.Tickets,
        replica_module.Residents,
        replica_module.Visits,
        replica_module.Mailboxes,
        replica_module.Parcels,
        replica_module.Workers,
        replica_module.Attachments,
    ]
    missing = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member) and f"{name}(" not in text and f"`{name}`" not in text
    ]
    assert missing == []


def test_every_error_is_in_the_errors_page() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    errors = [n for n in caresync.__all__ if n.endswith("Error")]
    assert [e for e in errors if f"`{e}`" not in text] == []
    assert [e for e in errors if f"`{getattr(caresync, e).code}`" not in text] == []


def test_readme_starts_with_the_two_commands() -> None:
    lines = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0].endswith("caresync demo") and "pip install '.[console]' ./server" in block[0]
    assert block[1].endswith("pytest") and "[dev]" in block[1]
