"""The documentation tells the truth about the code: every public function, class and method has a docstring,
every module is in the API reference (or named internal here), every command of the three CLIs is in the
generated CLI reference and the README, every page is in the site's navigation, and the site builds."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import caresync

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGENERATE = "python docs/_tools/cli_reference.py"

# Modules of caresync that are not part of the public API reference, and why. A new module must be added either
# to the reference (a page in docs/reference/, a link in docs/python-api.md, a line in mkdocs.yml) or here.
INTERNAL = {
    "core.ops": "the op envelope and kinds; described in concepts.md, used through Replica",
    "core.merge": "the fold; described in concepts.md, used through Replica",
    "core.gcpause": "pausing the garbage collector around bulk steps",
    "store.store": "the SQLite store behind the device's op log",
    "store.schema": "the store's tables and migrations",
    "sync.wire": "the compact wire form of protocol.md",
    "field.i18n": "message catalogues of the programs",
    "field.labels": "the words the station's commands show for statuses, kinds and outcomes, in zh and en",
    "cli": "the caresync and caresync-courier commands: documented in docs/cli.md",
    "console": "the station console, a web app: documented in docs/console.md",
}

# Commands the README lists that the installed program does not have yet. Each entry is a bug: fix the program
# (or the README), then remove the entry.
KNOWN_MISSING_COMMANDS: set[tuple[str, str]] = set()


def _cli_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_cli_reference", DOCS / "_tools" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_modules() -> dict[str, Path]:
    """Every module documented by a ``::: module`` line of docs/reference/, with its page."""
    found = {}
    for page in sorted((DOCS / "reference").glob("*.md")):
        for name in re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M):
            found[name] = page
    return found


def _undocumented(owner: str, obj: Any) -> list[str]:
    """``owner`` and its public methods and properties that have no docstring of their own."""
    missing = []
    own_doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not (own_doc or "").strip() or own_doc == "An enumeration.":
        missing.append(owner)
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            function = member.__func__ if isinstance(member, staticmethod | classmethod) else member
            function = function.fget if isinstance(function, property) else function
            if inspect.isfunction(function) and not (function.__doc__ or "").strip():
                missing.append(f"{owner}.{attr}")
    return missing


_MARKER = re.compile(r"^(<{7}|={7}|>{7})( |$)", flags=re.M)


def test_no_file_holds_a_merge_conflict_marker() -> None:
    """A rebase resolved by hand once left ``<<<<<<<`` blocks in four docs pages; git itself does not refuse them."""
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    )
    text_files = [ROOT / name for name in tracked if name.endswith((".md", ".py", ".toml", ".yml", ".html", ".cfg"))]
    marked = [
        str(path.relative_to(ROOT))
        for path in text_files
        if path.is_file() and _MARKER.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not marked, f"merge-conflict markers left in: {marked}"


def test_public_api_has_docstrings() -> None:
    modules = ["caresync", *_reference_modules()]
    missing = []
    for name in modules:
        module = importlib.import_module(name)
        assert (module.__doc__ or "").strip(), f"module {name} has no docstring"
        assert hasattr(module, "__all__"), f"{name} has no __all__: say what its public API is"
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                missing += _undocumented(f"{name}.{attr}", obj)
    assert missing == [], f"public API without a docstring (Args/Returns/Raises, see STYLE.md): {missing}"


def test_the_reference_covers_the_server_and_every_public_caresync_module() -> None:
    documented = _reference_modules()
    assert {"caresync_server.app", "caresync_server.settings", "caresync_server.testing"} <= set(documented)
    submodules = {
        m.name.removeprefix("caresync.")
        for m in pkgutil.walk_packages(caresync.__path__, "caresync.")
        if not m.ispkg and not any(part.startswith("_") for part in m.name.split("."))
    } | {"cli", "console"}
    neither = sorted(
        m
        for m in submodules
        if f"caresync.{m}" not in documented and m not in INTERNAL and m.split(".")[0] not in ("cli", "console")
    )
    assert neither == [], (
        f"modules {neither}: for each, add a page docs/reference/<page>.md (`::: caresync.<module>`), a link "
        "in docs/python-api.md and a nav line in mkdocs.yml, or name the module in INTERNAL in tests/test_docs.py"
    )
    assert sorted(m for m in INTERNAL if m not in submodules) == [], "INTERNAL names a module that is gone"
    api_page = (DOCS / "python-api.md").read_text(encoding="utf-8")
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for module, page in documented.items():
        link = f"reference/{page.name}"
        assert f"({link})" in api_page, f"docs/python-api.md does not link {link} ({module})"
        assert f": {link}" in nav, f"mkdocs.yml's nav lacks {link} ({module})"


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_tools" not in p.parts)
    outside = [p for p in pages if not re.search(rf":\s+{re.escape(p)}\s*$", nav, flags=re.M)]
    assert outside == [], f"add {outside} to the nav in mkdocs.yml"


def test_the_cli_reference_is_current() -> None:
    generated = _cli_reference().render()
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == generated, f"docs/cli.md is stale: run `{REGENERATE}` and commit it"


def test_every_command_is_in_the_cli_reference() -> None:
    reference = _cli_reference()
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [
        " ".join(path)
        for program in reference.PROGRAMS
        for path in reference.commands(program)
        if f"`{' '.join(path)}`\n" not in text
    ]
    assert missing == [], f"{missing} are missing from docs/cli.md: run `{REGENERATE}`"


def _readme_commands() -> dict[str, set[str]]:
    """The commands named in the README's Commands section, by program.

    Each bullet belongs to the program its first code span starts with; a code span in it names a command either
    as ``program command ...`` or, in a program's own bullet, as ``command ...``.
    """
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n(?=- )", section)
    named: dict[str, set[str]] = {}
    for bullet in bullets:
        spans = re.findall(r"`([^`]+)`", bullet)
        if not spans or not spans[0].startswith("caresync"):
            continue
        program = spans[0].split()[0]
        for span in spans:
            words = span.split()
            if words[0].startswith("caresync") and len(words) > 1:
                named.setdefault(words[0], set()).add(words[1])
            elif not words[0].startswith("caresync"):
                named.setdefault(program, set()).add(words[0])
    return named


def test_the_readme_names_every_top_level_command() -> None:
    reference = _cli_reference()
    named = _readme_commands()
    missing = [
        " ".join(path)
        for program in reference.PROGRAMS
        for path in reference.commands(program)
        if len(path) == 2 and path[1] not in named.get(program, set())
    ]
    assert missing == [], f"README.md's Commands section does not mention {missing}"


def test_the_readme_names_no_command_that_does_not_exist() -> None:
    reference = _cli_reference()
    named = _readme_commands()
    assert set(named) == set(reference.PROGRAMS)
    real = {
        (program, path[1]) for program in reference.PROGRAMS for path in reference.commands(program) if len(path) == 2
    }
    claimed = {
        (program, word) for program, words in named.items() for word in words if re.fullmatch(r"[a-z][a-z-]*", word)
    }
    assert claimed - real == KNOWN_MISSING_COMMANDS, (
        "README.md names commands the programs do not have (or KNOWN_MISSING_COMMANDS lists one that now exists)"
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    for plugin in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(plugin, reason="the docs extra is not installed: pip install -e '.[docs]'")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "reference" / "replica" / "index.html").read_text(encoding="utf-8").count("Replica.sync") > 0


def _python_blocks() -> list[tuple[str, str]]:
    """Every ```python block of the README and docs/, with where it is; blocks that talk to a server at an
    address (``http``) are left out: examples/device_and_server.py runs that path for real."""
    blocks = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for n, block in enumerate(re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S), start=1):
            if "http" not in block:
                blocks.append((f"{page.relative_to(ROOT)}#{n}", block))
    return blocks


@pytest.mark.parametrize(("where", "code"), _python_blocks(), ids=[w for w, _ in _python_blocks()])
def test_python_snippets_in_the_docs_run(where: str, code: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, f"the snippet {where} fails:\n{done.stderr}"
