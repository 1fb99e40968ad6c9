"""`gaemail`: the administrator's commands (serve, config, ...), built with click.

The per-message `gmail` command does not live here: it runs once per mail, so it
keeps to the standard library (see gaemail.cli).  These commands run rarely and
get click's help, validation and testing for free.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from gaemail.errors import EX_USAGE, GaemailError, exit_code_for


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gaemail")
def cli() -> None:
    """Administer gaemail: run the local proxy, inspect settings."""


@cli.command("config")
@click.option("--url", help="As gmail's --url.")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="As gmail's --secret-file.")
def config_command(url: str | None, secret_file: str | None) -> None:
    """Print each setting gmail would use, and where it comes from.

    The secret is never printed: only whether it is set, and from where.
    """
    from gaemail.config import Settings

    settings = Settings({"url": url, "secret": secret_file})
    rows = settings.report()
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        line = f"{name:<{width}}  {value}"
        click.echo(f"{line}  [{source}]" if source else line)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: click's own errors exit 64 (sysexits), ours by their code."""
    try:
        cli.main(args=argv, prog_name="gaemail", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EX_USAGE if isinstance(exc, click.UsageError) else 1)
    except GaemailError as exc:
        click.echo(f"gaemail: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    sys.exit(0)
