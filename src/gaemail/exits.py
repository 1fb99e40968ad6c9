"""One exit mapping for `gmail` and `gaemail`: every outcome becomes a sysexits status.

A GaemailError exits with its own code and its one-line message.  Anything else is
a bug: one line on stderr, the traceback in the mail log, and exit 75
(EX_TEMPFAIL), so that a caller such as Exim keeps the message and tries again --
or 0 when the message was already safe (queued durably or sent), because a
retry would then send it twice.  Nothing exits 1: Exim bounces on 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import click

from gaemail.errors import EX_IOERR, EX_OK, EX_TEMPFAIL, EX_USAGE, GaemailError
from gaemail.queue.journal import Journal

ERROR_SEVERITY = 3  # syslog's "err"
# click >= 8.2 raises this for a group called without a command; older click exits.
_NO_ARGS_IS_HELP: type[Exception] = getattr(
    click.exceptions, "NoArgsIsHelpError", click.exceptions.Exit
)


class MessageSafe(Exception):
    """An error that came after the message was queued or sent: the caller may go."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@contextlib.contextmanager
def message_is_safe(what: str) -> Iterator[None]:
    """From here on a failure must not make the caller send the message again."""
    try:
        yield
    except MessageSafe:
        raise
    except BaseException as exc:
        if isinstance(exc, (SystemExit, GeneratorExit)):
            raise
        raise MessageSafe(what) from exc


def one_line(text: str) -> str:
    return " ".join(text.split())


def exit_status(exc: BaseException, program: str) -> int:
    """Report `exc` as gaemail reports every error, and return its exit status."""
    if isinstance(exc, click.exceptions.Exit):  # --help, --version: 0
        code = int(exc.exit_code)
        return EX_USAGE if code in (1, 2) else code  # click's failure codes, in sysexits
    if isinstance(exc, MessageSafe):
        cause = exc.__cause__ or exc
        if not isinstance(cause, (KeyboardInterrupt, click.Abort)):
            _log_unexpected(cause, program)
        _say(program, f"{_describe(cause)}; the message is safe ({exc.what})")
        return EX_OK
    if isinstance(exc, GaemailError):
        _say(program, str(exc))
        return exc.exit_code
    if isinstance(exc, _NO_ARGS_IS_HELP) and isinstance(exc, click.ClickException):
        # `gaemail` alone: its help, as click shows it
        _write(exc.format_message() + "\n")
        return EX_USAGE
    if isinstance(exc, click.ClickException):  # usage errors and bad parameters
        _say(program, exc.format_message())
        return EX_USAGE
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        _say(program, "interrupted; nothing was sent")
        return EX_IOERR
    if isinstance(exc, BrokenPipeError):  # `mailq | head`: the reader went away
        return EX_IOERR
    _log_unexpected(exc, program)
    _say(program, f"{_describe(exc)}; the traceback is in the mail log; try again")
    return EX_TEMPFAIL


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GaemailError):
        return str(exc)
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        return "interrupted"
    text = one_line(str(exc))
    return f"internal error: {type(exc).__name__}" + (f": {text}" if text else "")


def _say(program: str, text: str) -> None:
    _write(f"{program}: {one_line(text)}\n")


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr closed: the exit status still tells the caller


def _log_unexpected(exc: BaseException, program: str) -> None:
    """The traceback as one mail-log line (one datagram: a slow syslog gets one)."""
    import traceback  # only a bug pays for it

    lines = [line.strip() for line in traceback.format_exception(exc) for line in line.splitlines()]
    Journal(program, os.environ).write(ERROR_SEVERITY, "unexpected error: " + " | ".join(lines))


class SysexitsCommand(click.Command):
    """A click command whose main() exits only through exit_status().

    Run as the program (no `args`), it ends the process as soon as its output is
    flushed: interpreter teardown, freeing every module click brought along, is a
    measurable share of a one-message process (bench/), and gmail needs none of it
    -- the queue's files are synced and closed where they are written, and its
    threads are joined.  With `args`, as CliRunner calls it, it raises SystemExit.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        code = run_main(self, args, prog_name, complete_var, extra)
        if args is None:
            leave(code)
        sys.exit(code)


class SysexitsGroup(click.Group):
    """A click group whose main() exits only through exit_status()."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        sys.exit(run_main(self, args, prog_name, complete_var, extra))


def run_main(
    command: click.Command,
    args: Sequence[str] | None,
    prog_name: str | None,
    complete_var: str | None,
    extra: dict[str, Any],
) -> int:
    """click's Command.main, with our exit mapping in place of click's: the status."""
    arguments = sys.argv[1:] if args is None else list(args)
    program = prog_name or os.path.basename(sys.argv[0]) or str(command.name)
    _complete_shell(command, program, complete_var, extra)
    return run(lambda: _invoke(command, program, arguments, extra), program)


def leave(code: int) -> NoReturn:
    """Flush stdout and stderr, then end the process with `code` at once."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: the reader is gone
            code = code or EX_IOERR
    os._exit(code)


def run(body: Callable[[], int | None], program: str) -> int:
    """body's status (None is 0), or the status of what it raised."""
    try:
        return body() or EX_OK
    except SystemExit:
        raise
    except BaseException as exc:
        return exit_status(exc, program)


def _invoke(command: click.Command, program: str, args: list[str], extra: dict[str, Any]) -> int:
    with command.make_context(program, args, **extra) as ctx:
        result = command.invoke(ctx)
    return result if isinstance(result, int) else EX_OK


def _complete_shell(
    command: click.Command, program: str, complete_var: str | None, extra: dict[str, Any]
) -> None:
    """click's shell completion: `_GMAIL_COMPLETE=bash_source gmail` prints the script."""
    variable = complete_var or f"_{program}_COMPLETE".replace("-", "_").replace(".", "_").upper()
    instruction = os.environ.get(variable)
    if not instruction:
        return
    from click.shell_completion import shell_complete

    sys.exit(shell_complete(command, extra, program, variable, instruction))
