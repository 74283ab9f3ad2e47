"""Library errors in the reader's language, with the names people use.

A library error carries ``key`` and ``fields`` (:class:`caresync.errors.CaresyncError`): :func:`error_text` says
it again from :data:`~caresync.cli._messages.LIBRARY_ERRORS` with a ticket's number, a status in words, a field's
label; an :class:`~caresync.errors.InvalidInputError`'s problems are said field by field (:func:`error_details`).
An error without a key keeps its own (English) words.
"""

from __future__ import annotations

import json
import re
from typing import Any

from caresync.cli._messages import LIBRARY_ERRORS, MESSAGES
from caresync.errors import CaresyncError, InvalidInputError
from caresync.field.labels import label

__all__ = ["error_details", "error_text", "field_label", "history_words", "value_words"]

#: Problems of a field, as the library (or pydantic) words them, in Chinese.
_ZH_PROBLEMS = [
    (r"^String should have at least (\d+) characters?$", "至少要有 {0} 个字"),
    (r"^String should have at most (\d+) characters?$", "最多 {0} 个字"),
    (r"^Field required$", "必须填写"),
    (r"^Input should be (.+)$", "应为 {0}"),
    (r"^must be 1 to 5, got (.+)$", "须为 1 到 5，输入的是 {0}"),
    (r"^'(.+)' is not a date like (.+)$", "{0} 不是日期（格式如 {1}）"),
    (r"^'(.+)' is not a time like (.+)$", "{0} 不是时间（格式如 {1}）"),
    (r"^'(.+)' is in the future \(more than (\d+) minutes from now\)$", "{0} 是将来的时间（比现在晚 {1} 分钟以上）"),
    (r"^did you mean (.+)\?$", "你是不是想输入 {0}？"),
    (r"^the grids known here are (.+)$", "这里已知的网格有 {0}"),
    (r"^choose 1 to (\d+)$", "请选 1 到 {0}"),
    (r"^give a value or a pick, not both$", "值和序号只能给一个"),
    (r"^write it as NUMBER#FIELD .*$", "请写成 编号#字段，或在编号后另给字段名"),
    (r"^is empty$", "是空的"),
    (r"^is not an image Pillow can read \((.+)\)$", "不是能读取的图片"),
    (r"^(\d+x\d+) pixels is too large to be a (\w+)$", "{0} 像素，太大了"),
    (r"^the file cannot be read \((.+)\)$", "文件无法读取（{0}）"),
    (r"^must be photo, signature or document, got (.+)$", "须为 photo、signature 或 document，输入的是 {0}"),
    (r"^must be 32 bytes, got (\d+)$", "须为 32 字节，输入的是 {0} 字节"),
    (
        r"^must be the id of a resident \(R-\), ticket \(T-\), visit \(V-\) or parcel \(P-\)$",
        "须为居民（R-）、诉求（T-）、敲门记录（V-）或包裹（P-）的记录号",
    ),
    (r"^must be 1 to 2160 \(90 days\)$", "须为 1 到 2160（90 天）"),
    (r"^give the server address with the token$", "请同时给出服务器地址和令牌"),
    (r"^an enrolment code has (\d+) characters, this one has (\d+)$", "登记码有 {0} 个字符，这个有 {1} 个"),
    (r"^(.+) cannot appear in an enrolment code$", "登记码里不会有 {0}"),
    (r"^a character is mistyped .*$", "有字符输错了（校验字符不符）；请与打印的登记码核对"),
    (r"^must be a whole number of 1 or more, got (.+)$", "须为大于等于 1 的整数，输入的是 {0}"),
    (r"^the block would end past (\d+)$", "编号段会超过 {0}"),
]

#: Why a file could not be used, as SQLite and the operating system word it, in Chinese.
_ZH_REASONS = [
    (r"^file is not a database$", "不是数据库文件"),
    (r"^database is locked$", "文件正被其他程序使用，请稍后再试"),
    (r"^unable to open database file$", "无法打开这个文件"),
    (r"^attempt to write a readonly database$", "文件是只读的"),
    (r"^database or disk is full$", "磁盘已满"),
    (r"^disk I/O error$", "磁盘读写出错"),
    (r"^No such file or directory$", "文件不存在"),
    (r"^Permission denied$", "没有权限"),
    (r"^Is a directory$", "这是文件夹"),
    (r"^No space left on device$", "磁盘已满"),
]

#: Headlines of errors that carry no key, in Chinese.
_ZH_HEADLINES = [
    (r"^Cannot read the date$", "无法读取日期"),
    (r"^Cannot read the time$", "无法读取时间"),
    (r"^Cannot record something that has not happened yet$", "不能记录尚未发生的事"),
    (r"^Cannot record (\w+) \S+$", "无法记录这条{0}"),
    (r"^Cannot settle (.+)$", "无法处理冲突 {0}"),
    (r"^Nothing to change on (\w+) (.+)$", "{0} {1} 没有要修改的内容"),
]


def _zh(patterns: list[tuple[str, str]], text: str, nouns: bool = False) -> str:
    for pattern, zh in patterns:
        match = re.match(pattern, text)
        if match:
            groups = [(_noun(g, "zh") if nouns else g).replace(" or ", "、") for g in match.groups()]
            return zh.format(*groups)
    return text


def _noun(noun: str, lang: str) -> str:
    key = f"noun.{noun}"
    return LIBRARY_ERRORS(key, lang) if key in LIBRARY_ERRORS else noun


def field_label(field: str, lang: str) -> str:
    """A field's label as people read it (``title`` → ``事项``; a library error's field such as ``image`` by its
    noun); option names (``--day``) stay as typed."""
    key = f"field.{field.lstrip('-').replace('-', '_')}"
    return MESSAGES(key, lang) if key in MESSAGES else _noun(field, lang)


def value_words(field: str, value: Any, lang: str) -> str:
    """A competing value as people read it: a status change as its action in words (``接单``), a text as itself
    in quotes, anything else as JSON (never a Python repr)."""
    if field == "status" and isinstance(value, str) and f"action.{value}" in LIBRARY_ERRORS:
        return LIBRARY_ERRORS(f"action.{value}", lang)
    return json.dumps(value, ensure_ascii=False)


def history_words(entry: Any, lang: str) -> str:
    """A step of a record's history in words: ``接单`` for an accept, ``set 承办人`` for an edit of the assignee."""
    action = str(entry.action)
    if f"action.{action}" in LIBRARY_ERRORS:
        return LIBRARY_ERRORS(f"action.{action}", lang)
    verb, _, field = action.partition(" ")
    if verb == "set" and field:
        return f"{'修改' if lang == 'zh' else 'set'} {field_label(field, lang)}"
    return action


def _people(fields: dict[str, Any], lang: str) -> dict[str, Any]:
    """The values of an error's fields in words: statuses, actions and nouns in ``lang``, lists joined."""
    shown = {k: (", ".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in fields.items()}
    if "status" in shown:
        shown["status"] = label("status", shown["status"], lang)
    if "action" in shown:
        action = str(shown["action"])
        shown["hint"] = LIBRARY_ERRORS(f"hint.{action}" if f"hint.{action}" in LIBRARY_ERRORS else "hint.confirm", lang)
        shown["action"] = LIBRARY_ERRORS(f"action.{action}", lang) if f"action.{action}" in LIBRARY_ERRORS else action
    for noun in ("noun", "part"):
        if noun in shown:
            shown[noun] = _noun(str(shown[noun]), lang)
    if "role" in shown:
        shown["role"] = label("role", shown["role"], lang)
    if lang == "zh" and f"file.{shown.get('kind')}" in MESSAGES and "what" in shown:
        shown["what"] = MESSAGES(f"file.{shown['kind']}", lang, path=shown.get("path", "")).rstrip("。")
    if lang == "zh" and "reason" in shown:
        shown["reason"] = _zh(_ZH_REASONS, str(shown["reason"]))
    return shown


def error_details(exc: CaresyncError, lang: str) -> list[dict[str, str]]:
    """The envelope's ``details``: per problem its ``field`` (as the library names it), its ``label`` and the
    ``problem`` in ``lang``."""
    if not isinstance(exc, InvalidInputError):
        return exc.envelope_details()
    return [
        {
            "field": field,
            "label": field_label(field, lang),
            "problem": _zh(_ZH_PROBLEMS, problem) if lang == "zh" else problem,
        }
        for field, problem in exc.problems
    ]


def error_text(exc: CaresyncError, lang: str) -> str:
    """The error's message in ``lang``, with people's names."""
    known = exc.key is not None and exc.key in LIBRARY_ERRORS
    if not known and not (isinstance(exc, InvalidInputError) and lang == "zh"):
        in_language = getattr(exc, "in_language", None)  # a courier's refusal speaks both languages
        return str(in_language(lang)) if callable(in_language) else str(exc)
    if isinstance(exc, InvalidInputError):
        if known:
            headline = LIBRARY_ERRORS(str(exc.key), lang, **_people(exc.fields, lang))
        else:
            headline = _zh(_ZH_HEADLINES, exc.headline, nouns=True)
        if not exc.problems:
            return headline
        sep, colon = ("；", "：") if lang == "zh" else ("; ", ": ")
        said = sep.join(f"{d['label']}{colon}{d['problem']}" for d in error_details(exc, lang))
        return f"{headline}（{said}）" if lang == "zh" else f"{headline} ({said})"
    return LIBRARY_ERRORS(str(exc.key), lang, **_people(exc.fields, lang))
