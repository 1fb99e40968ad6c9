"""`gaemail`: the administrator's commands (serve, config, queue, ...).

The group object `gaemail` is the console script's entry point; gaemail.exits
maps every outcome to a sysexits status, as for `gmail`.
"""

from __future__ import annotations

import sys

import click

from gaemail.admin.links import install_links_command
from gaemail.admin.newaliases import newaliases_command
from gaemail.admin.queue import queue
from gaemail.errors import EX_UNAVAILABLE
from gaemail.exits import SysexitsGroup


@click.group(cls=SysexitsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gaemail")
def gaemail() -> None:
    """Administer gaemail: run the local proxy, inspect settings."""


cli = gaemail  # the name the other engineers' modules know


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
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other than loopback (plain HTTP, a development key: warned about).",
)
@click.option(
    "--outbox",
    type=click.Path(file_okay=False),
    help="Maildir that receives sent messages.  [default: STATE_DIR/outbox]",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    help="File of signing keys, one per line.  [default: $GMAIL_SECRET_KEY, else the"
    " envdir's GMAIL_SECRET_KEY, as gmail reads it, else a development key in"
    " STATE_DIR/envdir]",
)
@click.option(
    "--default-sender",
    help="Sender for fix_sender requests, always authorized.  [default:"
    " $GMAIL_DEFAULT_SENDER, else gaemail@localhost]",
)
@click.option(
    "--authorized-sender",
    "authorized_senders",
    multiple=True,
    metavar="ADDR",
    help="A sender App Engine would accept (repeatable); '*' accepts any.  Others are"
    " refused as unauthorized, as on App Engine.",
)
@click.option(
    "--authorized-senders-file",
    type=click.Path(dir_okay=False),
    help="File of authorized senders, one per line.",
)
@click.option(
    "--daily-quota",
    type=click.IntRange(0),
    metavar="N",
    help="Recipients per quota day; past it, answer over-quota (503) as App Engine does.",
)
@click.option(
    "--quota-period",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Length of the quota day, for tests.  [default: App Engine's day, to midnight"
    " Pacific time]",
)
@click.option(
    "--fsync/--no-fsync",
    default=False,
    show_default=True,
    help="fsync each message and new/ before answering, so that acknowledged mail"
    " survives a power loss (slower).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Connections served at once; more wait their turn.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Close a connection whose request has not fully arrived in this time.",
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
    allow_remote: bool,
    outbox: str | None,
    secret_file: str | None,
    default_sender: str | None,
    authorized_senders: tuple[str, ...],
    authorized_senders_file: str | None,
    daily_quota: int | None,
    quota_period: float | None,
    fsync: bool,
    threads: int,
    request_timeout: float,
    state_dir: str | None,
    no_v1: bool,
) -> None:
    """Run the proxy locally, as strict as App Engine: mail goes to a Maildir.

    It uses the App Engine SDK's own mail stub and refuses what App Engine
    refuses: unauthorized senders (only the default sender and each
    --authorized-sender are accepted), recipients that are not addresses, NUL
    bytes, over-long header lines, and mail past --daily-quota.  The outbox is
    shown at /outbox/.  With no key configured it makes a development key and
    prints the `export GMAIL_ENVDIR=...` line that points gmail at it.  Like the
    proxy on App Engine it reads GAEMAIL_V1, GAEMAIL_LIMITS and GAEMAIL_PRINCIPALS
    from its environment (gaemail(8)).  Stop it with Ctrl-C or SIGTERM.
    """
    import os

    try:
        from gaemail.server.local.serve import ServeOptions, serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("flask", "google", "werkzeug"):
            raise
        click.echo(
            f"gaemail serve needs the server's libraries ({exc.name} is missing): "
            "pip install 'gaemail[server]'",
            err=True,
        )
        sys.exit(EX_UNAVAILABLE)

    options = ServeOptions(
        host=host,
        port=port,
        outbox=outbox,
        secret_file=secret_file,
        default_sender=default_sender,
        state_dir=state_dir,
        authorized_senders=authorized_senders,
        authorized_senders_file=authorized_senders_file,
        daily_quota=daily_quota,
        quota_period=quota_period,
        allow_remote=allow_remote,
        threads=threads,
        request_timeout=request_timeout,
        fsync=fsync,
        no_v1=no_v1,
    )
    serve(options, os.environ, sys.stdout, sys.stderr)


cli.add_command(queue)
cli.add_command(install_links_command)
cli.add_command(newaliases_command)
