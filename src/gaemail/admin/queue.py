"""`gaemail queue ...`: look at, flush and set up the local queue."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from gaemail.config import Settings
from gaemail.errors import LocalIOError, describe_os_error
from gaemail.queue import operations as queueing
from gaemail.queue.journal import Journal
from gaemail.queue.spool import SUBDIRS, Spool, age_text, now


def _settings(
    queue_dir: str | None, url: str | None = None, secret_file: str | None = None
) -> Settings:
    return Settings({"queue_dir": queue_dir, "url": url, "secret": secret_file})


def _spool(queue_dir: str | None) -> Spool:
    return queueing.open_spool(_settings(queue_dir), os.environ)


queue_dir_option = click.option(
    "--queue-dir", help="Queue directory (else GMAIL_QUEUE_DIR, else the default)."
)
failed_option = click.option("--failed", is_flag=True, help="The failed area instead.")


@click.group("queue")
def queue() -> None:
    """The local queue: list, show, delete, flush, run, init."""


@queue.command("list")
@queue_dir_option
@failed_option
def list_command(queue_dir: str | None, failed: bool) -> None:
    """List queued messages (what mailq shows)."""
    click.echo(queueing.listing(_spool(queue_dir), failed), nl=False)


@queue.command("show")
@click.argument("ident")
@queue_dir_option
@failed_option
def show_command(ident: str, queue_dir: str | None, failed: bool) -> None:
    """Print one message's envelope, state and text."""
    spool = _spool(queue_dir)
    area = "failed" if failed else "new"
    try:
        item = spool.item(ident, area)
        data = spool.read(ident, area)[1]
    except FileNotFoundError:
        raise LocalIOError(f"no {'failed' if failed else 'queued'} message {ident}") from None
    env = item.envelope
    click.echo(f"Queue-Id: {item.id}")
    click.echo(f"Message-Id: {env.message_id}")
    click.echo(f"Sender: <{env.sender or ''}>")
    click.echo(f"Recipients: {', '.join(env.recipients)}")
    click.echo(
        f"Age: {age_text(now() - env.created)}  Size: {env.size}  Attempts: {item.state.attempts}"
    )
    if item.state.last_error:
        click.echo(f"Last-Error: {item.state.last_error}")
    click.echo("")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


@queue.command("delete")
@click.argument("ident", nargs=-1, required=True)
@queue_dir_option
@failed_option
def delete_command(ident: tuple[str, ...], queue_dir: str | None, failed: bool) -> None:
    """Remove messages from the queue without sending them."""
    spool = _spool(queue_dir)
    for one in ident:
        try:
            spool.delete(one, "failed" if failed else "new")
        except FileNotFoundError:
            raise LocalIOError(f"no {'failed' if failed else 'queued'} message {one}") from None
        click.echo(f"deleted {one}")


def _flush(
    queue_dir: str | None,
    url: str | None,
    secret_file: str | None,
    *,
    force: bool,
    jobs: int,
    quiet: bool,
) -> None:
    settings = _settings(queue_dir, url, secret_file)
    outcomes = queueing.flush(
        queueing.open_spool(settings, os.environ),
        settings,
        Journal("gaemail", os.environ),
        force=force,
        jobs=jobs,
        progress=queueing.terminal_progress(sys.stderr),
    )
    if not quiet or sys.stderr.isatty():
        click.echo(queueing.summary(outcomes), err=True)
    elif outcomes.get("failed"):
        click.echo(
            f"{outcomes['failed']} message(s) failed for good; see `gaemail queue list --failed`",
            err=True,
        )


def flush_options(f: Callable[..., None]) -> Callable[..., None]:
    for option in (
        click.option(
            "--jobs",
            default=4,
            show_default=True,
            type=click.IntRange(1, 32),
            help="Messages in flight at once.",
        ),
        click.option("--secret-file", help="As gmail's --secret-file."),
        click.option("--url", help="As gmail's --url."),
        queue_dir_option,
    ):
        f = option(f)
    return f


@queue.command("flush")
@flush_options
def flush_command(
    queue_dir: str | None, url: str | None, secret_file: str | None, jobs: int
) -> None:
    """Attempt every queued message now, ignoring backoff (like gmail -q)."""
    _flush(queue_dir, url, secret_file, force=True, jobs=jobs, quiet=False)


@queue.command("run")
@flush_options
def run_command(queue_dir: str | None, url: str | None, secret_file: str | None, jobs: int) -> None:
    """Attempt the messages that are due: what the deliverer service runs."""
    _flush(queue_dir, url, secret_file, force=False, jobs=jobs, quiet=True)


@queue.command("init")
@queue_dir_option
@click.option(
    "--user",
    "owner",
    default="gaemail",
    show_default=True,
    help="The deliverer account: it alone reads the secret and sends.",
)
def init_command(queue_dir: str | None, owner: str) -> None:
    """Create a queue every local user can drop mail into (run as root).

    tmp/ and new/ become mode 3733 (anyone may add, nobody may list, files
    inherit the deliverer's group); state/ and failed/ belong to the deliverer.
    """
    import grp
    import pwd

    spool = _spool(queue_dir)
    try:
        account = pwd.getpwnam(owner)
    except KeyError:
        raise click.UsageError(
            f"no user {owner!r}: create it first (adduser --system --group {owner})"
        ) from None
    group = grp.getgrgid(account.pw_gid).gr_name
    modes = {"tmp": 0o3733, "new": 0o3733, "state": 0o2770, "failed": 0o2770}
    try:
        os.makedirs(spool.path, exist_ok=True)
        os.chown(spool.path, account.pw_uid, account.pw_gid)
        os.chmod(spool.path, 0o755)  # noqa: S103 - every sender must reach the drop box
        for name in SUBDIRS:
            path = spool.dir(name)
            os.makedirs(path, exist_ok=True)
            os.chown(path, account.pw_uid, account.pw_gid)
            os.chmod(path, modes[name])
    except OSError as exc:
        raise LocalIOError(f"cannot set up the queue: {describe_os_error(exc)}") from None
    click.echo(f"queue ready at {spool.path} (deliverer {owner}, group {group})")
