"""`gaemail`: the administrator's commands (serve, config, ...), built with click.

The per-message `gmail` command does not live here: it runs once per mail, so it
keeps to the standard library (see gaemail.cli).  These commands run rarely and
get click's help, validation and testing for free.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from gaemail.admin.queue import queue
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


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--outbox",
    type=click.Path(file_okay=False),
    help="Maildir that receives sent messages.  [default: STATE_DIR/outbox]",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    help="File of signing keys, one per line.  [default: $GMAIL_SECRET_KEY, else a"
    " development key in STATE_DIR/envdir]",
)
@click.option(
    "--default-sender",
    help="Sender for fix_sender requests.  [default: $GMAIL_DEFAULT_SENDER, else "
    "gaemail@localhost]",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Where the outbox and development key live.  [default: $XDG_STATE_HOME/gaemail"
    " or ~/.local/state/gaemail]",
)
@click.option(
    "--no-v1",
    "no_v1",
    is_flag=True,
    help="Switch protocol v1 (POST /) off: only v2 is served.  [default: on, unless"
    " $GAEMAIL_V1 is off]",
)
def serve_command(
    host: str,
    port: int,
    outbox: str | None,
    secret_file: str | None,
    default_sender: str | None,
    state_dir: str | None,
    no_v1: bool,
) -> None:
    """Run the proxy locally: messages go to a Maildir instead of App Engine.

    It uses the App Engine SDK's own mail stub, so messages are checked as the
    Mail API checks them.  With no key configured it makes a development key
    and prints the `export GMAIL_ENVDIR=...` line that points gmail at it.
    Stop it with Ctrl-C or SIGTERM.
    """
    import os

    from gaemail.server.local.serve import ServeOptions, serve

    options = ServeOptions(host, port, outbox, secret_file, default_sender, state_dir, no_v1)
    serve(options, os.environ, sys.stdout, sys.stderr)


@cli.command("install-links")
@click.option("--prefix", default="/usr/sbin", show_default=True, help="Where the links go.")
@click.option("--force", is_flag=True, help="Replace an existing sendmail (another MTA's).")
def install_links_command(prefix: str, force: bool) -> None:
    """Make `sendmail` and `mailq` links to gmail, so every program finds it."""
    import os
    import shutil

    target = shutil.which("gmail") or os.path.join(os.path.dirname(sys.argv[0]), "gmail")
    target = os.path.realpath(target)
    for name in ("sendmail", "mailq"):
        link = os.path.join(prefix, name)
        if os.path.lexists(link):
            if os.path.realpath(link) == target:
                click.echo(f"{link} already points at {target}")
                continue
            if not force:
                raise click.UsageError(
                    f"{link} exists and points at {os.path.realpath(link)}; "
                    "use --force to replace it"
                )
            os.unlink(link)
        os.symlink(target, link)
        click.echo(f"{link} -> {target}")


cli.add_command(queue)


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
