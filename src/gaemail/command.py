"""The click command class behind `gmail`: pre-tokenized parsing and help by style.

argv.py declares the options; this class runs `argv.pretokenize` before click
parses, keeps click's per-run extras off gmail's path, and writes the help in
sections (mail(1), both styles, sendmail, settings), wrapped to 80 columns off a
terminal.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from gaemail import exits
from gaemail.argv import GmailOption, Scope, pretokenize
from gaemail.errors import UsageError

USAGE = (
    "{p} [-s SUBJECT] [-c ADDR] [-b ADDR] [-r ADDR] [-a HEADER] ADDR...",
    "{p} [-ti] [-f ADDR] [-F NAME] [-oX] [options] [--] [ADDR...]",
    "{p} -q | -bp [--failed]",
)
DESCRIPTION = (
    "Send mail through a gaemail proxy on Google App Engine.",
    "",
    "mail(1) style builds a message from the body on stdin.  Called as sendmail, or",
    "with any sendmail-only option (-t, -i, -o..., -F, -B...), stdin is a whole",
    "RFC 2822 message and the arguments are its envelope recipients.",
)
SECTIONS: tuple[tuple[str, Scope], ...] = (
    ("mail(1) options", "mail"),
    ("options of both styles", "both"),
    ("sendmail options", "sendmail"),
    ("settings", "setting"),
)
EPILOG = (
    "Settings come from the flag, else the environment variable, else the file of",
    "that name in $GMAIL_ENVDIR (default /etc/envdir).  `gaemail config` shows them.",
    'Shell completion: eval "$(_GMAIL_COMPLETE=bash_source gmail)" (see gmail(1)).',
    "",
    "Exit status (sysexits): 0 sent or queued, 64 usage, 65 message refused,",
    "67 unknown local recipient, 74 cannot read the message or write the queue,",
    "75 temporary failure or internal error (try again), 77 signature rejected,",
    "78 configuration.  No error exits 1.  See gmail(1).",
)
HELP_WIDTH = 80  # off a terminal; on one, click's own (the terminal, at most 80)


class GmailCommand(exits.SysexitsCommand):
    """The click command `gmail`: pre-tokenized arguments, help in sections by style."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        if "terminal_width" not in extra and not _on_terminal():
            extra["terminal_width"] = HELP_WIDTH
        return super().make_context(info_name, args, parent, **extra)

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        _short_options_first(parser)
        return parser

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        # Our own --help: click's asks gettext for its text on every run, and
        # gettext loads locale and looks for catalogues -- per message.
        return HELP_OPTION

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            words = pretokenize(self.get_params(ctx), args)
        except UsageError:
            if not ctx.resilient_parsing:  # shell completion reads what it can
                raise
            words = args
        return super().parse_args(ctx, words)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        program = ctx.command_path
        lines = [line.format(p=program) for line in USAGE]
        formatter.write(f"usage: {lines[0]}\n")
        for line in lines[1:]:
            formatter.write(f"       {line}\n")

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for line in DESCRIPTION:
            formatter.write(f"{line}\n" if line else "\n")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, scope in SECTIONS:
            rows = [
                record
                for param in self.get_params(ctx)
                if isinstance(param, click.Option)
                and _scope_of(param) == scope
                and (record := param.get_help_record(ctx))
            ]
            with formatter.section(title):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for line in EPILOG:
            formatter.write(f"{line}\n" if line else "\n")


def _show_help(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


HELP_OPTION = click.Option(
    ["--help"],
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_help,
    help="show this help and exit",
)


def option_names(command: click.Command) -> list[str]:
    """Every spelling a person may write, the help option's included."""
    ctx = click.Context(command)
    return [
        name
        for param in command.get_params(ctx)
        if isinstance(param, click.Option) and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    ]


# Built once, with its message: no "did you mean" list and no gettext to consult.
_NOT_LONG = click.NoSuchOption("-", message="not a long option")


def _short_options_first(parser: Any) -> None:
    """Let click's parser take `-t` for a short option without first failing it as a long one.

    click tries every option word as a long option first, and its failure builds a
    "did you mean" list with difflib -- for every `-t` and `-i` of every message.
    pretokenize has already checked each word, so the failure needs no list.
    Where a click version parses otherwise, the parser is left as it is.
    """
    match_long = getattr(parser, "_match_long_opt", None)
    long_options = getattr(parser, "_long_opt", None)
    if match_long is None or not isinstance(long_options, dict):
        return

    def match(opt: str, explicit_value: str | None, state: object) -> None:
        if opt not in long_options:
            raise _NOT_LONG
        match_long(opt, explicit_value, state)

    setattr(parser, "_match_long_opt", match)  # noqa: B010 - an instance's method


def _scope_of(param: click.Parameter) -> Scope:
    return param.scope if isinstance(param, GmailOption) else "both"


def _on_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
