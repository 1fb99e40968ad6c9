"""`gmail`: mail(1) and sendmail in one command, exiting with sysexits codes.

`gmail` is the click command object below (the console script's entry point);
argv.py declares its options and exits.py turns every outcome into its exit status.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

import click

from gaemail import argv, exits
from gaemail.command import HELP_WIDTH, GmailCommand
from gaemail.config import Settings, calling_user
from gaemail.errors import (
    EX_OK,
    ConfigurationError,
    GaemailError,
    LocalIOError,
    MessageSendingFailure,
    NoSuchUserError,
    describe_os_error,
)
from gaemail.message.compose import Defaults, Outgoing, compose_mail, prepare_message
from gaemail.message.envelope import RecipientResolver
from gaemail.queue import delivery, listing
from gaemail.queue.journal import Journal
from gaemail.queue.spool import Entry, Spool, open_spool


@dataclass(frozen=True)
class Environment:
    """Everything gmail touches outside itself, read when the command runs."""

    program: str
    stdin: BinaryIO = field(default_factory=lambda: sys.stdin.buffer)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def _run(**_params: object) -> int:
    """The command's body: click has parsed; argv.invocation reads what it found."""
    inv = argv.invocation(click.get_current_context())
    return dispatch(inv, Environment(inv.program))


gmail = GmailCommand(
    "gmail",
    params=list(argv.OPTIONS),
    callback=_run,
    context_settings={"help_option_names": ["--help"]},
    help="Send mail through a gaemail proxy on Google App Engine.",
)


def parse(program: str, args: list[str]) -> argv.Invocation:
    """What `program args` asks for, parsed as the command parses it."""
    with gmail.make_context(program, list(args)) as ctx:
        return argv.invocation(ctx)


def help_text(program: str = "gmail") -> str:
    """gmail --help, as it is printed off a terminal."""
    with gmail.make_context(program, [], terminal_width=HELP_WIDTH) as ctx:
        return gmail.get_help(ctx) + "\n"


def dispatch(inv: argv.Invocation, env: Environment) -> int:
    if inv.mode == "version":
        from importlib.metadata import version

        env.stdout.write(f"gmail (gaemail) {version('gaemail')}\n")
        return EX_OK
    settings = Settings(inv.settings, env.environ)
    if inv.mode == "list":
        spool = open_spool(settings, env.environ, must_exist=True)
        env.stdout.write(listing.listing(spool, inv.failed))
        return EX_OK
    if inv.mode == "flush":
        return _flush(settings, env, verbose=inv.verbose)
    if inv.mode == "verify":
        return verify(inv.recipients, settings, env)
    outgoing = build(inv, read_stdin(env.stdin), settings, env.environ)
    return _deliver(outgoing, delivery_mode(inv), settings, env, verbose=inv.verbose)


def delivery_mode(inv: argv.Invocation) -> str:
    """-od? or --no-queue as given; else background for sendmail style, else interactive."""
    if inv.delivery:
        return inv.delivery
    return "background" if inv.personality == "sendmail" else "interactive"


def _deliver(
    outgoing: Outgoing, mode: str, settings: Settings, env: Environment, verbose: bool
) -> int:
    journal = Journal(env.program, env.environ, env.stderr)
    if mode in ("none", "interactive"):
        try:
            send_now(outgoing, settings)
        except (MessageSendingFailure, ConfigurationError) as exc:
            if mode == "none" or not delivery.may_wait(exc):
                # The caller keeps the message (Exim defers or bounces it): one line.
                status = "deferred" if delivery.may_wait(exc) else "failed"
                journal.record(status, "-", Entry.of(outgoing, time.time()), str(exc))
                raise
            # A setup mistake holds the message until it is fixed: it never fails it.
            ident = _enqueue(outgoing, settings, env, journal, deferred=exc)
            setup = delivery.is_setup_problem(exc)
            later = "held until the setup is fixed" if setup else "for a later attempt"
            with exits.message_is_safe(f"queued as {ident}"):
                env.stderr.write(f"{env.program}: {exc}; queued as {ident} {later}\n")
            return EX_OK
        with exits.message_is_safe(f"sent as {outgoing.message_id}"):
            journal.record("sent", "-", Entry.of(outgoing, time.time()))
            if verbose:
                env.stderr.write(
                    f"{env.program}: sent {outgoing.message_id} to "
                    f"{', '.join(outgoing.envelope.recipients)}\n"
                )
            if mode == "interactive":  # --no-queue leaves the queue alone
                _flush_due_in_background(settings, env, journal)
        return EX_OK
    ident = _enqueue(outgoing, settings, env, journal)
    with exits.message_is_safe(f"queued as {ident}"):
        if mode == "background" and delivery.can_deliver(settings) and delivery.detach():
            try:
                delivery.deliver_in_background(_spool(settings, env), settings, journal, ident)
            finally:
                os._exit(EX_OK)
        if verbose:
            env.stderr.write(f"{env.program}: queued {outgoing.message_id} as {ident}\n")
    return EX_OK


def _spool(settings: Settings, env: Environment) -> Spool:
    return open_spool(settings, env.environ)


def _enqueue(
    outgoing: Outgoing,
    settings: Settings,
    env: Environment,
    journal: Journal,
    deferred: GaemailError | None = None,
) -> str:
    """Queue durably; from here on the message is ours and the caller may go."""
    spool = _spool(settings, env)
    clock = time.time()
    ident = spool.enqueue(outgoing, clock)
    with exits.message_is_safe(f"queued as {ident}"):
        delivery.note_queued(spool, ident, outgoing, clock, settings, journal, deferred)
    return ident


def _flush_due_in_background(settings: Settings, env: Environment, journal: Journal) -> None:
    """After a successful send the proxy is up: try what waits in the queue."""
    spool = _spool(settings, env)
    if spool.can_list() and spool.ids() and delivery.detach():
        try:
            delivery.deliver_in_background(spool, settings, journal)
        finally:
            os._exit(EX_OK)


def _flush(settings: Settings, env: Environment, verbose: bool) -> int:
    """gmail -q: attempt everything now, ignoring backoff, like exim -qf."""
    outcomes = delivery.flush(
        _spool(settings, env),
        settings,
        Journal(env.program, env.environ, env.stderr),
        force=True,
        progress=listing.terminal_progress(env.stderr),
    )
    if verbose or env.stderr.isatty():
        env.stderr.write(f"{env.program}: {listing.summary(outcomes)}\n")
    elif outcomes.get("failed"):
        env.stderr.write(
            f"{env.program}: {outcomes['failed']} message(s) failed for good; "
            "see mailq --failed and the mail log\n"
        )
    return EX_OK


def verify(addresses: tuple[str, ...], settings: Settings, env: Environment) -> int:
    """gmail -bv: what each address becomes (aliases, the mail domain); 67 if one cannot."""
    resolver = _resolver(settings)
    failed = []
    for address in addresses:
        try:
            targets = resolver.resolve(address.strip())
        except NoSuchUserError as exc:
            failed.append(address)
            env.stdout.write(f"{address}... cannot be delivered: {exc}\n")
            continue
        env.stdout.write(f"{address}... deliverable: {', '.join(targets)}\n")
    if failed:
        raise NoSuchUserError(f"cannot deliver to {', '.join(failed)}")
    return EX_OK


def _resolver(settings: Settings) -> RecipientResolver:
    domain = settings.mail_domain()
    return RecipientResolver(settings.value("aliases"), domain.value if domain else None)


def read_stdin(stream: BinaryIO) -> bytes:
    try:
        return stream.read()
    except OSError as exc:
        raise LocalIOError(f"cannot read the message: {describe_os_error(exc)}") from None


def build(
    inv: argv.Invocation, data: bytes, settings: Settings, environ: Mapping[str, str]
) -> Outgoing:
    """The message and envelope the command line and stdin describe."""
    resolver = _resolver(settings)
    user, user_name = calling_user()
    defaults = Defaults(
        sender=settings.value("from"),
        hostname=socket.gethostname(),
        user=user,
        user_name=user_name,
    )
    if inv.personality == "mail":
        return compose_mail(
            data,
            to=list(inv.recipients),
            cc=list(inv.cc),
            bcc=list(inv.bcc),
            subject=inv.subject,
            sender=inv.sender,
            extra_headers=list(inv.headers),
            resolver=resolver,
            defaults=defaults,
            fix_sender=bool(inv.fix_sender),
        )
    # Exim's pipe transport hands the envelope sender over in $SENDER.
    sender = inv.sender if inv.sender is not None else environ.get("SENDER")
    return prepare_message(
        data,
        recipients=list(inv.recipients),
        read_headers=inv.read_headers,
        dot_ends=inv.dot_ends,
        sender=sender,
        full_name=inv.full_name,
        resolver=resolver,
        defaults=defaults,
        # Cron's "root", PHP's "www-data@host": programs that call sendmail rarely
        # write a sender App Engine accepts, and a refusal would lose their mail.
        fix_sender=inv.fix_sender is not False,
    )


def send_now(outgoing: Outgoing, settings: Settings) -> None:
    """Sign and POST the message; returns only when the proxy accepted it."""
    delivery.one_shot_sender(settings)(outgoing.data, outgoing.envelope, outgoing.fix_sender)
