"""`gaemail queue ...`: look at, change, flush and set up the local queue."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable

import click

from gaemail.config import Settings
from gaemail.errors import LocalIOError, describe_os_error
from gaemail.queue import control, daemon, delivery, listing
from gaemail.queue.journal import Journal
from gaemail.queue.spool import SUBDIRS, TRIGGER, Spool, age_text, open_spool


def _settings(
    queue_dir: str | None,
    url: str | None = None,
    secret_file: str | None = None,
    retry: str | None = None,
    max_age: str | None = None,
) -> Settings:
    flags = {"queue_dir": queue_dir, "url": url, "secret": secret_file}
    return Settings({**flags, "retry": retry, "max_age": max_age})


def _spool(queue_dir: str | None) -> Spool:
    return open_spool(_settings(queue_dir), os.environ, must_exist=True)


queue_dir_option = click.option(
    "--queue-dir", help="Queue directory (else GMAIL_QUEUE_DIR, else the default)."
)
failed_option = click.option("--failed", is_flag=True, help="The failed area instead.")


@click.group("queue")
def queue() -> None:
    """The local queue: list, show, hold, release, retry, delete, flush, run, init."""


@queue.command("list")
@queue_dir_option
@failed_option
def list_command(queue_dir: str | None, failed: bool) -> None:
    """List queued messages (what mailq shows), or the failed ones."""
    click.echo(listing.listing(_spool(queue_dir), failed), nl=False)


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
    entry = item.entry
    click.echo(f"Queue-Id: {item.id}")
    click.echo(f"Message-Id: {entry.message_id}")
    click.echo(f"Sender: <{entry.envelope.sender or ''}>")
    click.echo(f"Recipients: {', '.join(entry.envelope.recipients)}")
    click.echo(
        f"Age: {age_text(time.time() - entry.created)}  Size: {entry.size}  "
        f"Attempts: {item.state.attempts}  Status: {item.state.status()}"
    )
    if item.state.last_error:
        click.echo(f"Last-Error: {item.state.last_error}")
    click.echo("")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def _each(idents: tuple[str, ...], every: bool, spool: Spool, area: str) -> list[str]:
    if every and idents:
        raise click.UsageError("give message ids or --all, not both")
    if not every and not idents:
        raise click.UsageError("give the ids of the messages, or --all")
    return spool.ids(area) if every else list(idents)


all_option = click.option("--all", "every", is_flag=True, help="Every message of the area.")


@queue.command("delete")
@click.argument("ident", nargs=-1)
@all_option
@queue_dir_option
@failed_option
def delete_command(
    ident: tuple[str, ...], every: bool, queue_dir: str | None, failed: bool
) -> None:
    """Remove messages from the queue (or from the failed area) without sending them."""
    spool = _spool(queue_dir)
    area = "failed" if failed else "new"
    for one in _each(ident, every, spool, area):
        control.delete(spool, one, area)
        click.echo(f"deleted {one}")


def _changing(name: str, act: Callable[[Spool, str], None], done: str, doc: str) -> None:
    """`gaemail queue NAME ID...|--all`: `act` on each queued message, saying `done ID`."""

    @queue.command(name, help=doc)
    @click.argument("ident", nargs=-1)
    @all_option
    @queue_dir_option
    def command(ident: tuple[str, ...], every: bool, queue_dir: str | None) -> None:
        spool = _spool(queue_dir)
        for one in _each(ident, every, spool, "new"):
            act(spool, one)
            click.echo(f"{done} {one}")


_changing("hold", control.hold, "held", "Keep messages in the queue, unattempted, until released.")
_changing("release", control.release, "released", "Let held messages go again, due at once.")


@queue.command("retry")
@click.argument("ident", nargs=-1)
@all_option
@queue_dir_option
@failed_option
def retry_command(ident: tuple[str, ...], every: bool, queue_dir: str | None, failed: bool) -> None:
    """Make messages due now; from the failed area (--failed, or a failed id) back into the queue.

    The deliverer sends them at its next round (`gaemail queue flush` sends them at once).
    """
    spool = _spool(queue_dir)
    for one in _each(ident, every, spool, "failed" if failed else "new"):
        area = control.retry(spool, one)
        click.echo(f"requeued {one}" + (" from the failed area" if area == "failed" else ""))
    spool.wake()


def _flush(settings: Settings, *, force: bool, jobs: int, quiet: bool) -> None:
    outcomes = delivery.flush(
        open_spool(settings, os.environ),
        settings,
        Journal("gaemail", os.environ, sys.stderr),
        force=force,
        jobs=jobs,
        progress=listing.terminal_progress(sys.stderr),
    )
    if not quiet or sys.stderr.isatty():
        click.echo(listing.summary(outcomes), err=True)
    elif outcomes.get(delivery.FAILED):
        click.echo(
            f"{outcomes[delivery.FAILED]} message(s) failed for good; "
            "see `gaemail queue list --failed`",
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
        click.option(
            "--max-age", help="Give up on a message after this long (else GMAIL_MAX_AGE, 5d)."
        ),
        click.option("--retry", help="Retry schedule FIRST,MAX (else GMAIL_RETRY, 1m,1h)."),
        click.option("--secret-file", help="As gmail's --secret-file."),
        click.option("--url", help="As gmail's --url."),
        queue_dir_option,
    ):
        f = option(f)
    return f


@queue.command("flush")
@flush_options
def flush_command(
    queue_dir: str | None,
    url: str | None,
    secret_file: str | None,
    retry: str | None,
    max_age: str | None,
    jobs: int,
) -> None:
    """Attempt every queued message now, ignoring backoff (like gmail -q).

    A manual flush does not push the retry schedule further out.
    """
    settings = _settings(queue_dir, url, secret_file, retry, max_age)
    _flush(settings, force=True, jobs=jobs, quiet=False)


@queue.command("run")
@flush_options
@click.option(
    "--daemon",
    "daemon_mode",
    is_flag=True,
    help="Keep running: send new mail as it arrives and retry on the schedule (until SIGTERM).",
)
def run_command(
    queue_dir: str | None,
    url: str | None,
    secret_file: str | None,
    retry: str | None,
    max_age: str | None,
    jobs: int,
    daemon_mode: bool,
) -> None:
    """Attempt the messages that are due: what the deliverer service runs.

    With --daemon it keeps running, reading the settings afresh for every round.
    """
    settings = functools.partial(_settings, queue_dir, url, secret_file, retry, max_age)
    if not daemon_mode:
        _flush(settings(), force=False, jobs=jobs, quiet=True)
        return
    spool = open_spool(settings(), os.environ, must_exist=True)
    daemon.run(spool, settings, Journal("gaemail", os.environ, sys.stderr), jobs=jobs)


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
    inherit the deliverer's group); state/ and failed/ belong to the deliverer;
    the trigger FIFO that wakes the deliverer daemon is writable by all.
    """
    import grp
    import pwd

    spool = open_spool(_settings(queue_dir), os.environ)
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
        trigger = spool.dir(TRIGGER)
        if not spool.is_trigger():
            os.mkfifo(trigger)
        os.chown(trigger, account.pw_uid, account.pw_gid)
        os.chmod(trigger, 0o622)  # noqa: S103 - every sender may wake the deliverer; it alone reads
    except OSError as exc:
        raise LocalIOError(f"cannot set up the queue: {describe_os_error(exc)}") from None
    click.echo(f"queue ready at {spool.path} (deliverer {owner}, group {group})")
