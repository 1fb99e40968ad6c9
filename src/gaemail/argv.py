"""gmail's command line: its click options, and the pre-tokenizer sendmail's grammar needs.

The options are declared once, here, as click options; help, the man page test
and shell completion are read off them.  Programs that call sendmail depend on
getopt's grammar, and click parses most of it as getopt does (clusters as in
`-ti`, values attached as in `-FCronDaemon` and `-oem`, `--`, options after
operands).  Three things it cannot express, so `pretokenize` rewrites them
before click sees the arguments:

- `-q[TIME]` and `-d[X]`: optional values, attached only (`-q a@x` is a flush
  and an operand);
- sendmail's modes `-bX` (one letter attached: `-bp`) beside mail(1)'s
  `-b ADDR` (`-b p`, `-bADDR`).

Personality: *sendmail* when the program is called `sendmail` (or `mailq`), or when
any sendmail-only option is given; stdin is then a whole RFC 2822 message.
Otherwise *mail*: `gmail -s SUBJECT ADDR...` builds the message from a body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import click
from click.core import ParameterSource

from gaemail.errors import UsageError

Personality = Literal["mail", "sendmail"]
Mode = Literal["send", "list", "flush", "verify", "version"]
Scope = Literal["mail", "both", "sendmail", "setting"]
Arity = Literal["flag", "value", "attached"]  # attached: optional, only as -Xvalue
Delivery = Literal["interactive", "background", "queue", "none"]

MODE_OPTION = "--sendmail-mode"  # what `pretokenize` makes of -bX
DELIVERY_MODES: dict[str, Delivery] = {"i": "interactive", "b": "background", "q": "queue"}
# -bX modes: m sends (the default); p lists the queue.  The rest are sendmail
# services gmail does not provide, refused by name rather than misread.
UNPROVIDED_MODES = {
    "s": "SMTP on standard input",
    "t": "address test mode",
    "i": "alias database initialisation",
    "d": "daemon mode",
    "D": "daemon mode",
    "h": "host status",
    "H": "host status",
    "P": "queue statistics",
    "V": "version information",
    "a": "ARPANET mode",
}


class GmailOption(click.Option):
    """A click option that knows its style, and whether gmail ignores it.

    `attached` names the optional value of `-q[TIME]` and `-d[X]`, which
    `pretokenize` takes off before click parses.
    """

    def __init__(
        self,
        decls: Sequence[str],
        *,
        scope: Scope,
        ignored: bool = False,
        attached: str = "",
        **attrs: Any,
    ) -> None:
        if ignored:
            attrs["help"] = (attrs.get("help") or "") + ": accepted and ignored"
        super().__init__(decls, **attrs)
        self.scope: Scope = scope
        self.ignored = ignored
        self.attached = attached

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None or not self.attached:
            return record
        return f"{self.opts[0]}[{self.attached}]", record[1]


def _complete_file(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """The shell completes a file name (click.Path would say so too, but asks gettext
    for its words on every run)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


def _complete_directory(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="dir")]


def _flag(decls: Sequence[str], scope: Scope, help: str, **attrs: Any) -> GmailOption:
    return GmailOption(decls, scope=scope, is_flag=True, help=help, **attrs)


def _value(
    decls: Sequence[str], scope: Scope, metavar: str, help: str, **attrs: Any
) -> GmailOption:
    return GmailOption(decls, scope=scope, metavar=metavar, help=help, **attrs)


def _ignored(letter: str, metavar: str, what: str) -> GmailOption:
    name = f"ignored_{letter}"
    if metavar:
        return _value([f"-{letter}", name], "sendmail", metavar, what, ignored=True, multiple=True)
    return _flag([f"-{letter}", name], "sendmail", what, ignored=True)


OPTIONS: tuple[click.Parameter, ...] = (
    # mail(1) style
    _value(["-s", "subject"], "mail", "SUBJECT", "subject"),
    _value(
        ["-c", "cc"],
        "mail",
        "ADDR",
        "carbon copy to ADDR (repeatable, comma lists allowed)",
        multiple=True,
    ),
    _value(
        ["-b", "bcc"],
        "mail",
        "ADDR",
        "blind carbon copy to ADDR (repeatable); as -bX, a sendmail mode: "
        "-bm send (default), -bp list the queue, -bv ADDR... verify addresses",
        multiple=True,
    ),
    _value(
        ["-a", "headers"],
        "mail",
        "HEADER",
        'add the header line HEADER ("Name: value")',
        multiple=True,
    ),
    # both
    _value(
        ["-r", "-f", "sender"],
        "both",
        "ADDR",
        "sender address: From when the message has none, and the envelope sender",
    ),
    _flag(
        ["-q", "flush"],
        "both",
        "flush the queue now (-qTIME and -qf mean the same)",
        attached="TIME",
    ),
    _flag(["-v", "verbose"], "both", "report what was sent on stderr"),
    _flag(["-n", "ignored_n"], "both", "no aliasing", ignored=True),
    _flag(["-d", "ignored_d"], "both", "debugging", ignored=True, attached="X"),
    # sendmail style
    _flag(
        ["-t", "read_headers"],
        "sendmail",
        "also take recipients from the To, Cc and Bcc headers (Bcc is removed)",
    ),
    _flag(["-i", "dot_is_data"], "sendmail", "a line with a single dot does not end the message"),
    _value(
        ["-o", "sendmail_options"],
        "sendmail",
        "OPTION",
        "sendmail option: -oi is -i, -odi/-odb/-odq choose the delivery mode; "
        "others (-oem, -oee...) are accepted and ignored",
        multiple=True,
    ),
    _value(
        ["-F", "full_name"], "sendmail", "NAME", "full name for a From header that gmail creates"
    ),
    _ignored("B", "TYPE", "body type (7BIT, 8BITMIME)"),
    _ignored("N", "DSN", "DSN notify"),
    _ignored("R", "RET", "DSN return"),
    _ignored("V", "ENVID", "envelope id"),
    _ignored("L", "TAG", "syslog tag"),
    _ignored("O", "OPT", "option=value"),
    _ignored("X", "FILE", "traffic log"),
    _ignored("C", "FILE", "config file"),
    _ignored("h", "N", "hop count (for help, use --help)"),
    _ignored("A", "X", "submission mode"),
    _ignored("m", "", "me too"),
    _ignored("G", "", "gateway submission"),
    _ignored("U", "", "initial submission"),
    # -bX, as pretokenize spells it: not for people, who write -bp
    GmailOption([MODE_OPTION, "sendmail_modes"], scope="sendmail", multiple=True, hidden=True),
    # settings and meta, either personality
    _value(["--url", "url"], "setting", "URL", "proxy URL (else GMAIL_PROXY_URL)"),
    _value(
        ["--secret-file", "secret"],
        "setting",
        "FILE",
        "file whose first line is the signing secret (else GMAIL_SECRET_KEY)",
        shell_complete=_complete_file,
    ),
    _value(
        ["--from", "from_"], "setting", "ADDR", "sender for messages without From (else GMAIL_FROM)"
    ),
    _value(
        ["--aliases", "aliases"],
        "setting",
        "FILE",
        "aliases file (else GMAIL_ALIASES)",
        shell_complete=_complete_file,
    ),
    _value(
        ["--default-domain", "default_domain"],
        "setting",
        "DOMAIN",
        "domain for unqualified recipients (else GMAIL_DEFAULT_DOMAIN)",
    ),
    _value(
        ["--timeout", "timeout"],
        "setting",
        "SECONDS",
        "seconds to wait for the proxy (else GMAIL_TIMEOUT, 30)",
    ),
    _value(
        ["--queue-dir", "queue_dir"],
        "setting",
        "DIR",
        "queue directory (else GMAIL_QUEUE_DIR; default /var/spool/gaemail when it is "
        "root's or a shared drop box, else per user)",
        shell_complete=_complete_directory,
    ),
    _value(
        ["--protocol", "protocol"],
        "setting",
        "VERSION",
        "v2 (the default) or v1, for a proxy of 2010 (else GMAIL_PROTOCOL)",
    ),
    _value(
        ["--ca-file", "ca_file"],
        "setting",
        "FILE",
        "certificates to trust for an https proxy URL (else GMAIL_CA_FILE)",
        shell_complete=_complete_file,
    ),
    _flag(
        ["--fix-sender/--no-fix-sender", "fix_sender"],
        "setting",
        "whether the proxy may send from its default sender, with the original From as "
        "Reply-To, when it refuses the sender (default: yes for sendmail style and for "
        "messages without From)",
        default=None,
    ),
    _flag(
        ["--no-queue", "no_queue"],
        "setting",
        "deliver now and never queue: a temporary failure exits 75 (for Exim's pipe transport)",
    ),
    _flag(["--failed", "failed"], "both", "with -bp or mailq: list the failed messages instead"),
    _flag(["--version", "version"], "both", "show the version and exit"),
    click.Argument(["recipients"], nargs=-1, metavar="[ADDR]..."),
)

# The settings flags by the key of gaemail.config's SPECS.
SETTING_KEYS = {
    "url": "url",
    "secret": "secret",
    "from_": "from",
    "aliases": "aliases",
    "default_domain": "default_domain",
    "timeout": "timeout",
    "queue_dir": "queue_dir",
    "protocol": "protocol",
    "ca_file": "ca_file",
}


@dataclass(frozen=True)
class Invocation:
    """What the command line asks for."""

    program: str
    personality: Personality = "mail"
    mode: Mode = "send"
    recipients: tuple[str, ...] = ()
    read_headers: bool = False  # -t
    dot_ends: bool = True  # without -i, a lone "." line ends the message
    sender: str | None = None  # -f / -r
    full_name: str | None = None  # -F
    subject: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # -a
    delivery: Delivery | None = None  # -od?, or "none" for --no-queue
    verbose: bool = False
    fix_sender: bool | None = None  # None: on for sendmail style and messages without From
    failed: bool = False  # --failed: the failed area of the queue
    settings: dict[str, str | None] = field(default_factory=dict)


def pretokenize(params: Sequence[click.Parameter], args: Sequence[str]) -> list[str]:
    """Walk `args` getopt-style; return them as click reads them, operands last after `--`.

    Each option becomes its own word (its value the next), `-q[TIME]` and
    `-d[X]` lose their value, and `-bX` becomes `--sendmail-mode X`.
    """
    if list(args) == ["-h"]:  # sendmail's hop count, but a person asking for help
        raise UsageError("-h is sendmail's hop count and needs a value; for help, use --help")
    arity = _arities(params)
    words: list[str] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            name, eq, inline = arg.partition("=")
            kind = _lookup(arity, name)
            if kind == "flag":
                if eq:
                    raise UsageError(f"{name} takes no value")
                words.append(name)
            elif eq:
                words += [name, inline]
            elif i < len(args):
                words += [name, args[i]]
                i += 1
            else:
                raise UsageError(f"{name} needs a value")
            continue
        if len(arg) < 2 or not arg.startswith("-"):
            operands.append(arg)
            continue
        i = _cluster(arity, arg, args, i, words)
    return [*words, "--", *operands]


def _cluster(
    arity: dict[str, Arity], arg: str, args: Sequence[str], i: int, words: list[str]
) -> int:
    """One `-abc` word into `words`; returns the index of the next unread argument."""
    j = 1
    while j < len(arg):
        name = "-" + arg[j]
        kind = _lookup(arity, name)
        rest = arg[j + 1 :]
        if kind == "flag":
            words.append(name)
            j += 1
            continue
        if kind == "attached":
            words.append(name)
        elif name == "-b" and len(rest) == 1:
            words += [MODE_OPTION, rest]
        elif rest:
            words += [name, rest]
        elif i < len(args):
            words += [name, args[i]]
            i += 1
        else:
            raise UsageError(f"option {name} needs a value")
        break
    return i


def _arities(params: Sequence[click.Parameter]) -> dict[str, Arity]:
    found: dict[str, Arity] = {}
    for param in params:
        if not isinstance(param, click.Option):
            continue
        kind: Arity = "flag" if param.is_flag or param.count else "value"
        if isinstance(param, GmailOption) and param.attached:
            kind = "attached"
        for name in (*param.opts, *param.secondary_opts):
            found[name] = kind
    return found


def _lookup(arity: dict[str, Arity], name: str) -> Arity:
    kind = arity.get(name)
    if kind is None or name == MODE_OPTION:
        raise UsageError(f"unknown option {name}; see gmail --help")
    return kind


def program_personality(program: str) -> tuple[Personality, Mode]:
    name = program.rsplit("/", 1)[-1]
    if name == "mailq":
        return "sendmail", "list"
    if name.startswith("sendmail"):
        return "sendmail", "send"
    return "mail", "send"


def invocation(ctx: click.Context) -> Invocation:
    """The Invocation that click's parse of the pre-tokenized arguments describes."""
    program = ctx.info_name or "gmail"
    p = ctx.params
    given = [
        param
        for param in ctx.command.params
        if isinstance(param, GmailOption)
        and param.name
        and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ]
    personality, mode = program_personality(program)
    if any(param.scope == "sendmail" for param in given):
        personality = "sendmail"
    mail_only = [param for param in given if param.scope == "mail"]
    if personality == "sendmail" and mail_only:
        raise UsageError(
            f"option {mail_only[0].opts[0]} belongs to the mail(1) style and cannot be "
            "combined with sendmail options; with sendmail options, put headers in the "
            "message itself"
        )
    for spelling in ("subject", "cc", "bcc", "headers"):
        _check_one_line(spelling, p[spelling])
    mode = _mode(mode, p)
    dot_ends, delivery = _sendmail_options(p)
    recipients = tuple(p["recipients"])
    read_headers = bool(p["read_headers"])
    if mode == "verify" and not recipients:
        raise UsageError("-bv needs the addresses to verify: gmail -bv ADDR...")
    if mode == "send" and not recipients and not read_headers:
        if personality == "mail":
            raise UsageError("no recipient given; usage: gmail [-s SUBJECT] ADDR... < body")
        raise UsageError(
            "no recipients: give addresses as arguments, or -t to read them from the "
            "message headers"
        )
    if p["failed"] and mode != "list":
        raise UsageError("--failed goes with -bp or mailq: it lists the failed messages")
    return Invocation(
        program=program,
        personality=personality,
        mode=mode,
        recipients=recipients,
        read_headers=read_headers,
        dot_ends=dot_ends,
        sender=p["sender"],
        full_name=p["full_name"],
        subject=p["subject"],
        cc=tuple(p["cc"]),
        bcc=tuple(p["bcc"]),
        headers=tuple(p["headers"]),
        delivery="none" if p["no_queue"] else delivery,
        verbose=bool(p["verbose"]),
        fix_sender=p["fix_sender"],
        failed=bool(p["failed"]),
        settings={key: p[name] for name, key in SETTING_KEYS.items() if p[name] is not None},
    )


def _mode(mode: Mode, p: dict[str, Any]) -> Mode:
    for letter in p["sendmail_modes"]:
        if letter == "p":
            mode = "list"
        elif letter == "v":
            mode = "verify"
        elif letter != "m":
            what = UNPROVIDED_MODES.get(letter)
            if what:
                raise UsageError(f"-b{letter} ({what}) is not provided by gmail")
            raise UsageError(
                f"unknown mode -b{letter}; gmail provides -bm (send), -bp (list the queue)"
                " and -bv (verify addresses)"
            )
    if p["flush"]:
        mode = "flush"
    if p["version"]:
        mode = "version"
    return mode


def _sendmail_options(p: dict[str, Any]) -> tuple[bool, Delivery | None]:
    """-i and the -o options, in order: whether a lone dot ends the message, and -od?."""
    dot_ends = not p["dot_is_data"]
    delivery: Delivery | None = None
    for value in p["sendmail_options"]:
        if value == "i":
            dot_ends = False
        elif value.startswith("d") and len(value) == 2:
            if value[1] not in DELIVERY_MODES:
                raise UsageError(f"unknown delivery mode -o{value}; use -odi, -odb or -odq")
            delivery = DELIVERY_MODES[value[1]]
        # -oem, -oee, -oep, -oL... are sendmail tuning with no meaning here.
    return dot_ends, delivery


_SPELLINGS = {"subject": "-s", "cc": "-c", "bcc": "-b", "headers": "-a"}


def _check_one_line(name: str, value: str | Sequence[str] | None) -> None:
    values = [value] if isinstance(value, str) else list(value or ())
    if any("\n" in v or "\r" in v for v in values):
        raise UsageError(f"the value of {_SPELLINGS[name]} contains a line break")
