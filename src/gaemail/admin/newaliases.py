"""`newaliases` (and `gaemail newaliases`): check the aliases file gmail reads.

sendmail's newaliases rebuilds a database; gmail reads the file itself at each
message, so here it checks the file instead and says what gmail would refuse.
Exit 0 when every entry is usable, 65 (EX_DATAERR) with one line per problem,
78 when the file named by the settings cannot be read.
"""

from __future__ import annotations

import os
import sys

import click

from gaemail.config import Settings
from gaemail.errors import EX_CONFIG, EX_DATAERR, EX_OK, describe_os_error
from gaemail.exits import SysexitsCommand
from gaemail.message.aliases_check import check_aliases

SYSTEM_ALIASES = "/etc/aliases"


def run(aliases: str | None) -> int:
    """Check the aliases file and print the outcome; return the exit status."""
    settings = Settings({"aliases": aliases})
    path = settings.value("aliases")
    named = path is not None
    if path is None:
        path = SYSTEM_ALIASES
        if not os.path.exists(path):
            click.echo("newaliases: no aliases file (GMAIL_ALIASES is not set); nothing to check")
            return EX_OK
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        click.echo(f"newaliases: cannot read {describe_os_error(exc)}", err=True)
        return EX_CONFIG
    domain = settings.mail_domain()
    report = check_aliases(text, path, domain.value if domain else None)
    for problem in report.problems:
        click.echo(f"newaliases: {path}:{problem.line}: {problem.text}", err=True)
    if not named:
        click.echo(
            f"newaliases: gmail does not read {path} until GMAIL_ALIASES names it (in /etc/envdir)",
            err=True,
        )
    if report.problems:
        return EX_DATAERR
    click.echo(
        f"newaliases: {path}: {len(report.names)} aliases, no problems "
        "(gmail reads the file at each message: nothing to rebuild)"
    )
    return EX_OK


@click.command(
    "newaliases", cls=SysexitsCommand, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option("--aliases", help="The aliases file (else GMAIL_ALIASES, else /etc/aliases).")
def newaliases_command(aliases: str | None) -> None:
    """Check the aliases file gmail reads and report the entries it cannot use."""
    status = run(aliases)
    if status:
        sys.exit(status)


# The `newaliases` program: sendmail's name, this check; exits as gmail and gaemail do.
main = newaliases_command
