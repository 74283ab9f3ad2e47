"""Library errors a user of ``caresync`` or ``caresync-courier`` can meet in the replica file, relay bundles and
the courier's bag, the station's key and attachments are said in both languages (issue 17): each raise carries a
``key`` that :data:`caresync.cli._messages.LIBRARY_ERRORS` says in Chinese and English, with the fields its
message names; under ``--lang zh`` the programs say them in Chinese."""

from __future__ import annotations

import ast
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

from caresync import errors
from caresync.cli._messages import LIBRARY_ERRORS

SRC = Path(__file__).resolve().parent.parent / "src" / "caresync"
BIN = Path(sys.executable).parent

#: The layers walked: every caresync error raised (or returned to be raised) in them carries a key
#: (``replica.py``: its attachments). ``sync/wire.py`` is left out: a device meets its errors only as the
#: keyed "answer this device cannot read" of ``sync/_http.py``.
LAYERS = [
    *sorted((SRC / "store").glob("*.py")),
    *sorted(p for p in (SRC / "sync").rglob("*.py") if p.name != "wire.py"),
    SRC / "core" / "media.py",
]
#: Raises left without a key, each said in Chinese another way (``cli._names._ZH_HEADLINES``), by file and the
#: start of the message.
SAID_ELSEWHERE = {("store/devicelog.py", "Cannot record ")}
ERRORS = {name for name in errors.__all__ if name != "envelope"}
#: Fields a catalogue text names that the program works out from the others (``cli._names._people``).
DERIVED = {"hint"}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _raises(path: Path, only_class: str | None = None) -> list[tuple[int, ast.Call]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scope: ast.AST = tree
    if only_class is not None:
        [scope] = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == only_class]
    found = []
    for node in ast.walk(scope):
        made = node.exc if isinstance(node, ast.Raise) else node.value if isinstance(node, ast.Return) else None
        if isinstance(made, ast.Call):
            func = made.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in ERRORS:
                found.append((node.lineno, made))
    return found


def _message_start(call: ast.Call) -> str:
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Constant):
        return str(first.value)
    if isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant):
        return str(first.values[0].value)
    return ""


#: Keyed so far only where a user meets them (a sealed value, the station's key offered, an altered op, an
#: attachment's bytes); their keys are checked, their other raises (a key of the wrong length, ...) not yet.
PARTLY = sorted((SRC / "trust").glob("*.py"))


def _sites(layers: list[Path] = LAYERS) -> list[tuple[str, int, ast.Call]]:
    sites = [(path.relative_to(SRC).as_posix(), line, call) for path in layers for line, call in _raises(path)]
    if layers is LAYERS:
        sites += [(f"replica.py:{line}", line, call) for line, call in _raises(SRC / "replica.py", "Attachments")]
    return sites


def test_the_walk_finds_the_raises() -> None:
    sites = _sites()
    assert len(sites) >= 100, len(sites)
    names = {type(call.func).__name__ for _, _, call in sites}
    assert names <= {"Name", "Attribute"}
    assert any(site.startswith("replica.py") for site, _, _ in sites)


def test_every_raise_in_these_layers_has_a_key_said_in_both_languages() -> None:
    missing, unknown, mismatched = [], [], []
    for site, line, call in _sites() + _sites(PARTLY):
        where = f"{site}:{line}" if ":" not in site else site
        keywords = {k.arg: k.value for k in call.keywords}
        if "key" not in keywords:
            partly = site.startswith("trust/")
            if (site.split(":")[0], _message_start(call)) not in SAID_ELSEWHERE and not partly:
                missing.append(where)
            continue
        key_node = keywords["key"]
        assert isinstance(key_node, ast.Constant), f"{where}: the key must be written out"
        key = str(key_node.value)
        if key not in LIBRARY_ERRORS.messages:
            unknown.append(f"{where} {key}")
            continue
        texts = LIBRARY_ERRORS.messages[key]
        assert set(texts) == {"zh", "en"} and all(texts.values()), key
        assert _fields(texts["zh"]) == _fields(texts["en"]), key
        fields_node = keywords.get("fields")
        given: set[str] = set()
        if isinstance(fields_node, ast.Dict):
            given = {str(k.value) for k in fields_node.keys if isinstance(k, ast.Constant)}
        if not _fields(texts["en"]) - DERIVED <= given:  # a message names only fields the raise gives
            mismatched.append(f"{where} {key}: gives {sorted(given)}, says {sorted(_fields(texts['en']))}")
    assert missing == [], "raises without a key"
    assert unknown == [], "keys not in LIBRARY_ERRORS"
    assert mismatched == [], "fields given and fields said differ"


def test_the_chinese_headlines_say_the_raises_left_without_a_key() -> None:
    from caresync.cli._names import error_text

    said = error_text(errors.InvalidInputError("Cannot record ticket create", [("title", "Field required")]), "zh")
    assert said == "无法记录这条诉求（事项：必须填写）"


def _run(program: str, home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARESYNC_HOME": str(home), "CARESYNC_LANG": "", "LANG": "C", "LC_ALL": ""}
    env.pop("CARESYNC_ACTOR", None)
    return subprocess.run(
        [str(BIN / program), *args, "--lang", "zh"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _chinese_only(line: str, *allowed: str) -> None:
    """No English words left in ``line`` beyond the names it repeats (paths, commands, ids)."""
    for word in allowed:
        line = line.replace(word, "")
    assert re.search(r"[A-Za-z]{4,}", line) is None, line
    assert re.search(r"[\u4e00-\u9fff]", line), line


@pytest.fixture
def desk(tmp_path: Path) -> Path:
    home = tmp_path / "desk"
    done = _run("caresync", home, "init", "--actor", "clerk-zhang", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return home


def test_the_programs_say_these_errors_in_chinese(desk: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a replica\n")
    (tmp_path / "other.json").write_text('{"a": 1}')
    (tmp_path / "empty.jpg").write_bytes(b"")
    made = _run("caresync", desk, "ticket", "submit", "--title", "Tap", "--kind", "repair", "--grid", "a/b",
                "--new-grid", "--json", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    number = json.loads(made.stdout)["number"]

    empty = _run("caresync", desk, "ticket", "attach", number, "empty.jpg", "--json", cwd=tmp_path)
    assert empty.returncode == 1
    error = json.loads(empty.stdout)["error"]
    assert error["message"] == "无法添加这个照片（文件：是空的）", error
    assert error["details"] == [{"field": "data", "label": "文件", "problem": "是空的"}]
    not_image = _run("caresync", desk, "ticket", "attach", number, "notes.txt", cwd=tmp_path)
    assert not_image.returncode == 1 and "无法添加这个照片（图片：不是能读取的图片）" in not_image.stderr

    assert _run("caresync", desk, "station-key", "create", cwd=tmp_path).returncode == 0
    again = _run("caresync", desk, "station-key", "create", cwd=tmp_path)
    assert again.returncode == 1 and "本设备已经持有驿站密钥" in again.stderr
    _chinese_only(again.stderr.splitlines()[-1], "caresync station-key rotate")

    for name, said in [("other.json", "other.json 不是 caresync 数据包。"), ("notes.txt", "不是 JSON")]:
        bad = _run("caresync", desk, "bundle", "import", name, cwd=tmp_path)
        assert bad.returncode == 1 and said in bad.stderr, bad.stderr
        _chinese_only(bad.stderr.splitlines()[-1], name, "caresync", "JSON")
        carried = _run("caresync-courier", tmp_path / "courier", "carry", "import", name, cwd=tmp_path)
        assert carried.returncode == 1 and said in carried.stderr, carried.stderr

    not_enrolled = _run("caresync", desk, "sync", cwd=tmp_path)
    assert not_enrolled.returncode == 3 and "本设备尚未在同步服务器登记" in not_enrolled.stderr, not_enrolled.stderr
    mistyped = _run("caresync", desk, "enroll", "ABC", "--server", "http://127.0.0.1:9", "--json", cwd=tmp_path)
    assert json.loads(mistyped.stdout)["error"]["message"] == "无法登记本设备（code：登记码有 16 个字符，这个有 3 个）"

    inspected = _run("caresync", desk, "inspect", "notes.txt", cwd=tmp_path)
    assert inspected.returncode == 1
    assert "无法读取 notes.txt：notes.txt 不是 caresync 数据文件" in inspected.stderr, inspected.stderr
    _chinese_only(inspected.stderr.splitlines()[-1], "notes.txt", "caresync", "SQLite")
    (tmp_path / "courier" / "carried.db").write_text("not a bag\n")
    bag = _run("caresync-courier", tmp_path / "courier", "carry", "list", cwd=tmp_path)
    assert bag.returncode == 1 and "无法打开邮递员的邮袋" in bag.stderr and "不是数据库文件" in bag.stderr, bag.stderr


def test_english_stays_as_it_was(desk: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a replica\n")
    env = {**os.environ, "CARESYNC_HOME": str(desk), "CARESYNC_LANG": "", "LANG": "C", "LC_ALL": ""}
    done = subprocess.run([str(BIN / "caresync"), "inspect", "notes.txt", "--lang", "en"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Cannot read notes.txt: notes.txt is not a caresync replica (not an SQLite database)." in done.stderr
    bundle = subprocess.run([str(BIN / "caresync"), "bundle", "import", "notes.txt", "--lang", "en"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "notes.txt is not a caresync bundle (not JSON: the file is damaged or of another kind)." in bundle.stderr


def _shape(node: ast.expr) -> str | None:
    """A message's literal words with each value as ``{}`` (None when it is not written out in place)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        return "".join(_shape(v) or "" if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _shape(node.left), _shape(node.right)
        return None if left is None or right is None else left + right
    return None


def test_the_english_of_each_key_is_the_message_it_replaces() -> None:
    differ = []
    for site, line, call in _sites() + _sites(PARTLY):
        key = next((k.value for k in call.keywords if k.arg == "key"), None)
        shape = _shape(call.args[0]) if call.args else None
        if not isinstance(key, ast.Constant) or shape is None:
            continue
        said = re.sub(r"\{[a-z_]+\}", "{}", LIBRARY_ERRORS.messages[str(key.value)]["en"])
        if said != shape:
            differ.append(f"{site}:{line} {key.value}: {shape!r} != {said!r}")
    assert differ == []
