"""The one error map of caresync's programs: exit codes, the JSON error envelope, and :class:`ProgramGroup`, the
command group ``caresync`` and ``caresync-courier`` both run under (docs/errors.md has the table).

A program turns every failure into one line for a person on stderr and, with ``--json``, the envelope
``{"error": {"code", "message", "details"}}`` on stdout (:func:`caresync.errors.envelope`, the server's API answers
with the same one); the exit code says what kind of failure it was, so a script can tell "try again later" from
"fix the command". :func:`finish_commands` gives every command of a program ``--json``, ``--lang`` and
``--version``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import click

from caresync.errors import CaresyncError, envelope
from caresync.field.i18n import language_in_argv, pick_language

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OFFLINE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_SERVER_REFUSED",
    "EXIT_USAGE",
    "ProgramGroup",
    "error_envelope",
    "exit_code_for",
    "finish_commands",
    "walk_commands",
]

#: The command did what it was asked.
EXIT_OK = 0
#: The command could not be done: a rule of the work, a record not found, bad input, a file that cannot be used.
EXIT_REFUSED = 1
#: The command was typed wrong (an unknown option, a missing argument): its help says how.
EXIT_USAGE = 2
#: The sync server could not be reached, or failed: nothing was lost; try again later.
EXIT_OFFLINE = 3
#: The sync server refused this device or its work (revoked, out of scope): ask the station.
EXIT_SERVER_REFUSED = 4
#: The person stopped the command (Ctrl-C).
EXIT_INTERRUPTED = 130


def exit_code_for(exc: CaresyncError) -> int:
    """The exit code for a library error (its ``exit_code``): the server's refusal 4, the server out of reach 3,
    anything else 1."""
    return int(getattr(exc, "exit_code", EXIT_REFUSED))


def error_envelope(code: str, message: str, details: Sequence[dict[str, str]] = ()) -> str:
    """The JSON error envelope every program prints with ``--json``:
    ``{"error": {"code", "message", "details": [{"field", "problem"}, ...]}}``."""
    return json.dumps(envelope(code, message, details), ensure_ascii=False)


#: click's usage messages in Chinese (click writes them in English).
_ZH_USAGE = [
    (r"^No such command '(.+?)'\.$", "没有这个命令：{0}。"),
    (r"^Missing argument '(.+)'\.$", "缺少参数 {0}。"),
    (r"^Missing option '(.+)'\.$", "缺少选项 {0}。"),
    (r"^No such option: (.+)$", "没有这个选项：{0}。"),
    (r"^No such option '(.+?)'\.$", "没有这个选项：{0}。"),
    (r"^Invalid value for '(.+?)': '(.+)' is not one of (.+)\.$", "{1} 不是可选值（{2}）。"),
    (r"^Invalid value for '(.+?)': (.+)$", "{0} 的取值无效：{1}"),
    (r"^Option '(.+)' requires an argument\.$", "选项 {0} 需要一个值。"),
    (r"^Got unexpected extra arguments? \((.+)\)$", "多余的参数：{0}。"),
]


def usage_detail(message: str, lang: str) -> str:
    """click's explanation of a usage mistake, in ``lang`` (its "did you mean" kept)."""
    guess = re.search(r"\s*Did you mean '?(.+?)'?\?$", message)
    if guess and lang == "zh":
        return usage_detail(message[: guess.start()], lang) + f"你是不是想输入 {guess.group(1)}？"
    if guess:
        return message
    if lang == "zh":
        for pattern, text in _ZH_USAGE:
            match = re.match(pattern, message)
            if match:
                return text.format(*match.groups())
    return message if message.endswith((".", "。")) else message + "."


#: What click raises for a group run without a command (click 8.2 and later); its message is the help text.
_NO_ARGS: type[Exception] = getattr(click.exceptions, "NoArgsIsHelpError", click.exceptions.NoSuchOption)


class ProgramGroup(click.Group):
    """The command group of a caresync program: every failure is one line on stderr in the reader's language,
    the JSON envelope on stdout with ``--json``, and an exit code of the one table; never a traceback.

    A program says its own words through the hooks :meth:`error_line` (a library error), :meth:`usage_line` (a
    mistyped command) and :meth:`stopped_line` (Ctrl-C); the handling, the envelope and the codes are the same.
    """

    #: The program's name, as typed.
    program = "caresync"

    def error_message(self, exc: CaresyncError, lang: str) -> str:
        """The error's message in ``lang`` with the names people use (:func:`caresync.cli._names.error_text`)."""
        from caresync.cli._names import error_text  # here, not at the top: only when there is an error

        return error_text(exc, lang)

    def error_details(self, exc: CaresyncError, lang: str) -> list[dict[str, str]]:
        """The ``details`` of the envelope, in ``lang`` (:func:`caresync.cli._names.error_details`)."""
        from caresync.cli._names import error_details  # here, not at the top: only when there is an error

        return error_details(exc, lang)

    def error_line(self, code: str, message: str, lang: str) -> str:
        """The one line a person reads on stderr for an error of ``code``."""
        return f"Error: {message}"

    def usage_line(self, detail: str, command_path: str | None, lang: str) -> str:
        """The one line for a mistyped command."""
        see = f" (see {command_path} --help)" if command_path else ""
        return f"Usage error: {detail}{see}"

    def stopped_line(self, lang: str) -> str:
        """What is said when the person presses Ctrl-C."""
        return "Stopped."

    def io_line(self, path: str, detail: str, lang: str) -> str:
        """A file or folder the program could not use."""
        return f"Error: cannot use {path}: {detail}."

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        lang = language_in_argv(argv)
        as_json = "--json" in argv
        try:
            code = super().main(argv, prog_name or self.program, complete_var, False, **extra)
        except click.UsageError as exc:
            if isinstance(exc, _NO_ARGS) and exc.ctx is not None:  # a group run bare: its help, not an error
                click.echo(exc.ctx.get_help())
                sys.exit(EXIT_OK)
            detail = usage_detail(exc.format_message(), lang)
            path = exc.ctx.command_path if exc.ctx is not None else None
            _fail(as_json, "usage", self.usage_line(detail, path, lang), detail, [], EXIT_USAGE)
        except click.exceptions.Abort:
            _fail(as_json, "aborted", self.stopped_line(lang), self.stopped_line(lang), [], EXIT_INTERRUPTED)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            message = exc.format_message()
            _fail(as_json, "error", self.error_line("error", message, lang), message, [], exc.exit_code)
        except CaresyncError as exc:
            message = self.error_message(exc, lang)
            line = self.error_line(exc.code, message, lang)
            _fail(as_json, exc.code, line, message, self.error_details(exc, lang), exit_code_for(exc))
        except OSError as exc:
            path, detail = str(exc.filename or "?"), exc.strerror or str(exc)
            line = self.io_line(path, detail, lang)
            _fail(as_json, "io_error", line, line, [{"field": "path", "problem": detail}], EXIT_REFUSED)
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else EXIT_OK)
        return code


def _fail(as_json: bool, code: str, line: str, message: str, details: list[dict[str, str]], exit_code: int) -> NoReturn:
    click.echo(" ".join(line.split()), err=True)
    if as_json:
        click.echo(error_envelope(code, " ".join(message.split()), details))
    sys.exit(exit_code)


def walk_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and subgroup under ``group``, with its path of names (the group itself first, path ``()``)."""
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from walk_commands(command, (*path, name))
        else:
            yield (*path, name), command


def finish_commands(
    group: click.Group,
    *,
    prog_name: str,
    version: str,
    on_json: Callable[[click.Context], None],
    on_lang: Callable[[click.Context, str], None],
) -> None:
    """Gives every command under ``group`` (the group and its subgroups too) ``--json``, ``--lang`` and
    ``--version`` where it has none of its own, so each is accepted after any verb: ``on_json`` and ``on_lang`` are
    told when one is given."""

    def json_given(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            on_json(ctx)
        return value

    def lang_given(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            on_lang(ctx, pick_language(value))
        return value

    for _path, command in walk_commands(group):
        names = {opt for param in command.params for opt in getattr(param, "opts", ())}
        if "--json" not in names:
            command.params.append(
                click.Option(
                    ["--json", "json_given"],
                    is_flag=True,
                    expose_value=False,
                    callback=json_given,
                    help="Print the result (or the error) as JSON.",
                )
            )
        if "--lang" not in names:
            command.params.append(
                click.Option(
                    ["--lang", "lang_given"],
                    type=click.Choice(["zh", "en"]),
                    expose_value=False,
                    callback=lang_given,
                    help="zh or en (else CARESYNC_LANG, the locale).",
                )
            )
        if "--version" not in names:
            click.version_option(version, prog_name=prog_name)(command)
