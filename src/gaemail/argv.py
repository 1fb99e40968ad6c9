"""gmail's command line: one option table, one getopt-style parser, two personalities.

sendmail's interface is a getopt string (attached values as in `-FCronDaemon`,
`-oem`, `-B8BITMIME`; clusters as in `-ti`; `--`), and the programs that call
sendmail depend on exactly that grammar, so the parser follows getopt rather than
a general CLI framework.  It is also the hot path of every message: it imports
nothing beyond the standard library's core.

Personality: *sendmail* when the program is called `sendmail` (or `mailq`), or when
any sendmail-only option is given; stdin is then a whole RFC 2822 message.
Otherwise *mail*: `gmail -s SUBJECT ADDR...` builds the message from a body.
"""

from __future__ import annotations

from gaemail.errors import UsageError

# Plain classes and no run-time typing: dataclasses and typing would double the
# start-up of every message (see bench/).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Personality = Literal["mail", "sendmail"]
    Mode = Literal["send", "list", "flush", "help", "version"]
    Arity = Literal["flag", "value", "attached"]  # attached: optional, only as -Xvalue
    Scope = Literal["both", "mail", "sendmail"]


class Option:
    """One option of the table.  `names` are short letters (`-t`) or long (`--url`)."""

    __slots__ = ("arity", "help", "ignored", "metavar", "names", "scope")

    def __init__(
        self,
        names: tuple[str, ...],
        arity: Arity,
        scope: Scope,
        help: str,
        metavar: str = "",
        ignored: bool = False,
    ) -> None:
        self.names = names
        self.arity: Arity = arity
        self.scope: Scope = scope
        self.help = help
        self.metavar = metavar
        self.ignored = ignored

    def __repr__(self) -> str:
        return f"Option({self.names!r}, {self.arity!r}, {self.scope!r})"


OPTIONS: tuple[Option, ...] = (
    # mail(1) style
    Option(("-s",), "value", "mail", "subject", "SUBJECT"),
    Option(
        ("-c",), "value", "mail", "carbon copy to ADDR (repeatable, comma lists allowed)", "ADDR"
    ),
    Option(
        ("-b",),
        "value",
        "mail",
        "blind carbon copy to ADDR (repeatable); as -bX, a "
        "sendmail mode: -bm send (default), -bp list the queue",
        "ADDR",
    ),
    Option(("-a",), "value", "mail", 'add the header line HEADER ("Name: value")', "HEADER"),
    # both
    Option(
        ("-r", "-f"),
        "value",
        "both",
        "sender address: From when the message has none, and the envelope sender",
        "ADDR",
    ),
    Option(
        ("-q",), "attached", "both", "flush the queue now (-qTIME and -qf mean the same)", "[TIME]"
    ),
    Option(("-v",), "flag", "both", "report what was sent on stderr"),
    Option(("-n",), "flag", "both", "accepted and ignored", ignored=True),
    Option(("-d",), "attached", "both", "accepted and ignored", "[X]", ignored=True),
    # sendmail style
    Option(
        ("-t",),
        "flag",
        "sendmail",
        "also take recipients from the To, Cc and Bcc headers (Bcc is removed)",
    ),
    Option(("-i",), "flag", "sendmail", "a line with a single dot does not end the message"),
    Option(
        ("-o",),
        "value",
        "sendmail",
        "sendmail option: -oi is -i, -odi/-odb/-odq choose the "
        "delivery mode; others (-oem, -oee...) are accepted and ignored",
        "OPTION",
    ),
    Option(("-F",), "value", "sendmail", "full name for a From header that gmail creates", "NAME"),
    Option(
        ("-B",),
        "value",
        "sendmail",
        "body type (7BIT, 8BITMIME): accepted and ignored",
        "TYPE",
        ignored=True,
    ),
    Option(("-N",), "value", "sendmail", "DSN notify: accepted and ignored", "DSN", ignored=True),
    Option(("-R",), "value", "sendmail", "DSN return: accepted and ignored", "RET", ignored=True),
    Option(
        ("-V",), "value", "sendmail", "envelope id: accepted and ignored", "ENVID", ignored=True
    ),
    Option(("-L",), "value", "sendmail", "syslog tag: accepted and ignored", "TAG", ignored=True),
    Option(("-O",), "value", "sendmail", "option=value: accepted and ignored", "OPT", ignored=True),
    Option(("-X",), "value", "sendmail", "traffic log: accepted and ignored", "FILE", ignored=True),
    Option(("-C",), "value", "sendmail", "config file: accepted and ignored", "FILE", ignored=True),
    Option(("-h",), "value", "sendmail", "hop count: accepted and ignored", "N", ignored=True),
    Option(
        ("-A",), "value", "sendmail", "submission mode: accepted and ignored", "X", ignored=True
    ),
    Option(("-m",), "flag", "sendmail", "me too: accepted and ignored", ignored=True),
    Option(("-G",), "flag", "sendmail", "gateway submission: accepted and ignored", ignored=True),
    Option(("-U",), "flag", "sendmail", "initial submission: accepted and ignored", ignored=True),
    # settings and meta, either personality
    Option(("--url",), "value", "both", "proxy URL (else GMAIL_PROXY_URL)", "URL"),
    Option(
        ("--secret-file",),
        "value",
        "both",
        "file whose first line is the signing secret (else GMAIL_SECRET_KEY)",
        "FILE",
    ),
    Option(
        ("--from",), "value", "both", "sender for messages without From (else GMAIL_FROM)", "ADDR"
    ),
    Option(("--aliases",), "value", "both", "aliases file (else GMAIL_ALIASES)", "FILE"),
    Option(
        ("--default-domain",),
        "value",
        "both",
        "domain for unqualified recipients (else GMAIL_DEFAULT_DOMAIN)",
        "DOMAIN",
    ),
    Option(
        ("--timeout",),
        "value",
        "both",
        "seconds to wait for the proxy (else GMAIL_TIMEOUT, 30)",
        "SECONDS",
    ),
    Option(
        ("--protocol",),
        "value",
        "both",
        "v2 (the default) or v1, for a proxy of 2010 (else GMAIL_PROTOCOL)",
        "VERSION",
    ),
    Option(
        ("--ca-file",),
        "value",
        "both",
        "certificates to trust for an https proxy URL (else GMAIL_CA_FILE)",
        "FILE",
    ),
    Option(
        ("--fix-sender",),
        "flag",
        "both",
        "if the proxy refuses the sender, send from its default sender with the original "
        "From as Reply-To (the default for sendmail style and for messages without From)",
    ),
    Option(("--no-fix-sender",), "flag", "both", "never let the proxy replace the sender"),
    Option(
        ("--queue-dir",),
        "value",
        "both",
        "queue directory (else GMAIL_QUEUE_DIR; "
        "default /var/spool/gaemail when it is root's or a shared drop box, else per user)",
        "DIR",
    ),
    Option(
        ("--no-queue",),
        "flag",
        "both",
        "deliver now and never queue: a temporary failure exits 75 (for Exim's pipe transport)",
    ),
    Option(("--help",), "flag", "both", "show this help and exit"),
    Option(("--version",), "flag", "both", "show the version and exit"),
)

_BY_NAME = {name: option for option in OPTIONS for name in option.names}
SETTING_FLAGS = {
    "--url": "url",
    "--secret-file": "secret",
    "--from": "from",
    "--aliases": "aliases",
    "--default-domain": "default_domain",
    "--timeout": "timeout",
    "--queue-dir": "queue_dir",
    "--protocol": "protocol",
    "--ca-file": "ca_file",
}
# -bX modes: m sends (the default); p lists the queue.  The rest are sendmail
# services gmail does not provide, refused by name rather than misread.
_SEND_MODES = {"m": "send", "p": "list"}
_UNPROVIDED_MODES = {
    "s": "SMTP on standard input",
    "t": "address test mode",
    "i": "alias database initialisation",
    "d": "daemon mode",
    "D": "daemon mode",
    "h": "host status",
    "H": "host status",
    "P": "queue statistics",
    "v": "address verification",
    "V": "version information",
    "a": "ARPANET mode",
}
DELIVERY_MODES = {"i": "interactive", "b": "background", "q": "queue"}


class Invocation:
    """What the command line asks for."""

    def __init__(self, program: str, personality: Personality = "mail", mode: Mode = "send"):
        self.program = program
        self.personality: Personality = personality
        self.mode: Mode = mode
        self.recipients: list[str] = []
        self.read_headers = False  # -t
        self.dot_ends = True  # without -i, a lone "." line ends the message
        self.sender: str | None = None  # -f / -r
        self.full_name: str | None = None  # -F
        self.subject: str | None = None
        self.cc: list[str] = []
        self.bcc: list[str] = []
        self.headers: list[str] = []  # -a
        self.delivery: str | None = None  # -od?: interactive, background, queue; or "none"
        self.verbose = False
        # None: on for sendmail style and for messages without From
        self.fix_sender: bool | None = None
        self.settings: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"Invocation({vars(self)!r})"


def _program_personality(program: str) -> tuple[Personality, Mode]:
    name = program.rsplit("/", 1)[-1]
    if name == "mailq":
        return "sendmail", "list"
    if name.startswith("sendmail"):
        return "sendmail", "send"
    return "mail", "send"


Found = tuple[Option, str, "str | None", bool]  # option, spelling, value, written attached


def _split_args(args: list[str]) -> tuple[list[Found], list[str]]:
    """getopt with permutation: the options found, and the operands."""
    found: list[Found] = []
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
            option = _lookup(name)
            if option.arity == "flag":
                if eq:
                    raise UsageError(f"{name} takes no value")
                found.append((option, name, None, False))
            elif eq:
                found.append((option, name, inline, True))
            elif i < len(args):
                found.append((option, name, args[i], False))
                i += 1
            else:
                raise UsageError(f"{name} needs a value")
            continue
        if len(arg) < 2 or not arg.startswith("-"):
            operands.append(arg)
            continue
        j = 1
        while j < len(arg):
            name = "-" + arg[j]
            option = _lookup(name)
            rest = arg[j + 1 :]
            if option.arity == "flag":
                found.append((option, name, None, False))
                j += 1
                continue
            if rest:
                found.append((option, name, rest, True))
            elif option.arity == "attached":
                found.append((option, name, None, False))
            elif i < len(args):
                found.append((option, name, args[i], False))
                i += 1
            else:
                raise UsageError(f"option {name} needs a value")
            break
    return found, operands


def _lookup(name: str) -> Option:
    option = _BY_NAME.get(name)
    if option is None:
        raise UsageError(f"unknown option {name}; see gmail --help")
    return option


def _is_mode(spelling: str, value: str | None, attached: bool) -> bool:
    """-bm, -bp...: a sendmail mode.  -b ADDR (or -bADDR) is mail(1)'s Bcc."""
    return spelling == "-b" and attached and value is not None and len(value) == 1


def parse(program: str, args: list[str]) -> Invocation:
    """Parse gmail's arguments, deciding the personality first."""
    personality, mode = _program_personality(program)
    found, operands = _split_args(args)
    if any(o.scope == "sendmail" or _is_mode(s, v, a) for o, s, v, a in found):
        personality = "sendmail"
    inv = Invocation(program=program, personality=personality, mode=mode)
    for option, spelling, value, attached in found:
        _apply(inv, option, spelling, value, attached)
    inv.recipients = operands
    if inv.mode == "send" and not inv.recipients and not inv.read_headers:
        if inv.personality == "mail":
            raise UsageError("no recipient given; usage: gmail [-s SUBJECT] ADDR... < body")
        raise UsageError(
            "no recipients: give addresses as arguments, or -t to read them from the "
            "message headers"
        )
    return inv


def _apply(
    inv: Invocation, option: Option, spelling: str, value: str | None, attached: bool
) -> None:
    if (
        option.scope == "mail"
        and inv.personality == "sendmail"
        and not _is_mode(spelling, value, attached)
    ):
        raise UsageError(
            f"option {spelling} belongs to the mail(1) style and cannot be combined with "
            "sendmail options; with sendmail options, put headers in the message itself"
        )
    if spelling in SETTING_FLAGS:
        inv.settings[SETTING_FLAGS[spelling]] = value
    elif option.ignored:
        pass
    elif spelling in ("-s", "-c", "-a"):
        _check_one_line(spelling, value or "")
        if spelling == "-s":
            inv.subject = value
        elif spelling == "-c":
            inv.cc.append(value or "")
        else:
            inv.headers.append(value or "")
    elif spelling == "-b":
        _apply_b(inv, value or "", attached)
    elif spelling in ("-r", "-f"):
        inv.sender = value
    elif spelling == "-F":
        inv.full_name = value
    elif spelling == "-t":
        inv.read_headers = True
    elif spelling == "-i":
        inv.dot_ends = False
    elif spelling == "-o":
        _apply_o(inv, value or "")
    elif spelling == "-q":
        inv.mode = "flush"
    elif spelling == "-v":
        inv.verbose = True
    elif spelling in ("--fix-sender", "--no-fix-sender"):
        inv.fix_sender = spelling == "--fix-sender"
    elif spelling == "--no-queue":
        inv.delivery = "none"
    elif spelling == "--help":
        inv.mode = "help"
    elif spelling == "--version":
        inv.mode = "version"


def _apply_b(inv: Invocation, value: str, attached: bool) -> None:
    if not _is_mode("-b", value, attached):
        _check_one_line("-b", value)
        inv.bcc.append(value)
        return
    if value in _SEND_MODES:
        inv.mode = "list" if _SEND_MODES[value] == "list" else inv.mode
        return
    what = _UNPROVIDED_MODES.get(value)
    if what:
        raise UsageError(f"-b{value} ({what}) is not provided by gmail")
    raise UsageError(f"unknown mode -b{value}; gmail provides -bm (send) and -bp (list queue)")


def _apply_o(inv: Invocation, value: str) -> None:
    if value == "i":
        inv.dot_ends = False
    elif value.startswith("d") and len(value) == 2:
        if value[1] not in DELIVERY_MODES:
            raise UsageError(f"unknown delivery mode -o{value}; use -odi, -odb or -odq")
        if inv.delivery != "none":  # --no-queue wins: Exim relies on it
            inv.delivery = DELIVERY_MODES[value[1]]
    # -oem, -oee, -oep, -oL... are sendmail tuning with no meaning here.


def _check_one_line(spelling: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise UsageError(f"the value of {spelling} contains a line break")


def help_text(program: str) -> str:
    """The --help text, generated from the option table."""
    lines = [
        f"usage: {program} [-s SUBJECT] [-c ADDR] [-b ADDR] [-r ADDR] [-a HEADER] ADDR... < body",
        f"       {program} [-t] [-i] [-f ADDR] [-F NAME] [sendmail options] [--] [ADDR...]"
        " < message",
        f"       {program} -q | -bp",
        "",
        "Send mail through a gaemail proxy on Google App Engine.",
        "",
        "mail(1) style builds a message from the body on stdin.  Called as sendmail, or",
        "with any sendmail-only option (-t, -i, -o..., -F, -B...), stdin is a whole",
        "RFC 2822 message and the arguments are its envelope recipients.",
        "",
    ]
    sections: list[tuple[str, Scope]] = [
        ("mail(1) options:", "mail"),
        ("options of both styles:", "both"),
        ("sendmail options:", "sendmail"),
    ]
    for title, scope in sections:
        lines.append(title)
        for option in OPTIONS:
            if option.scope != scope:
                continue
            spelling = ", ".join(option.names)
            if option.metavar:
                spelling += " " + option.metavar
            lines.append(f"  {spelling:<24} {option.help}")
        lines.append("")
    lines += [
        "Settings come from the flag, else the environment variable, else the file of",
        "that name in $GMAIL_ENVDIR (default /etc/envdir).  `gaemail config` shows them.",
        "",
        "Exit status (sysexits): 0 sent or queued, 64 usage, 65 message refused, 67 unknown",
        "local recipient, 74 cannot read the message or write the queue, 75 temporary",
        "failure (try again), 77 signature rejected, 78 configuration.  See gmail(1).",
    ]
    return "\n".join(lines) + "\n"
