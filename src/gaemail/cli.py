"""`gmail`: mail(1) and sendmail in one command, exiting with sysexits codes.

This module is the only place where gmail turns errors into exit statuses.  Its
imports are the per-message cost of every cron job and PHP page that sends mail,
so it loads only the standard library's core (see bench/ and argv.py).
"""

from __future__ import annotations

import os
import socket
import sys

from gaemail import argv
from gaemail.config import Settings, calling_user
from gaemail.errors import (
    EX_OK,
    GaemailError,
    LocalIOError,
    MessageSendingFailure,
    describe_os_error,
)
from gaemail.message.compose import Defaults, Outgoing, compose_mail, prepare_message
from gaemail.message.envelope import RecipientResolver
from gaemail.queue import delivery, listing
from gaemail.queue.journal import Journal
from gaemail.queue.spool import Spool, open_spool

TYPE_CHECKING = False  # no run-time typing: see the module's docstring
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO, NoReturn, TextIO


class Environment:
    """Everything gmail touches outside itself, so tests can run main() in-process."""

    def __init__(
        self,
        stdin: BinaryIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
        program: str | None = None,
    ) -> None:
        self.stdin: BinaryIO = sys.stdin.buffer if stdin is None else stdin
        self.stdout: TextIO = sys.stdout if stdout is None else stdout
        self.stderr: TextIO = sys.stderr if stderr is None else stderr
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.program = program or os.path.basename(sys.argv[0]) or "gmail"


def main(args: list[str] | None = None, env: Environment | None = None) -> NoReturn:
    sys.exit(run(sys.argv[1:] if args is None else args, env or Environment()))


def run(args: list[str], env: Environment) -> int:
    """Run gmail and return its exit status; every error becomes one stderr line."""
    try:
        return _dispatch(argv.parse(env.program, args), env)
    except GaemailError as exc:
        env.stderr.write(f"{env.program}: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        env.stderr.write(f"{env.program}: interrupted; the message was not sent\n")
        return LocalIOError.exit_code


def _dispatch(inv: argv.Invocation, env: Environment) -> int:
    if inv.mode == "help":
        env.stdout.write(argv.help_text(env.program))
        return EX_OK
    if inv.mode == "version":
        from importlib.metadata import version

        env.stdout.write(f"gmail (gaemail) {version('gaemail')}\n")
        return EX_OK
    settings = Settings(inv.settings, env.environ)
    if inv.mode == "list":
        spool = open_spool(settings, env.environ, must_exist=True)
        env.stdout.write(listing.listing(spool))
        return EX_OK
    if inv.mode == "flush":
        return _flush(settings, env, verbose=inv.verbose)
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
        except MessageSendingFailure as exc:
            if mode == "none" or not (exc.temporary or exc.setup):
                raise
            # A setup mistake holds the message until it is fixed: it never fails it.
            ident = _enqueue(outgoing, settings, env, journal, deferred=exc)
            later = "held until the setup is fixed" if exc.setup else "for a later attempt"
            env.stderr.write(f"{env.program}: {exc}; queued as {ident} {later}\n")
            return EX_OK
        if verbose:
            env.stderr.write(
                f"{env.program}: sent {outgoing.message_id} to "
                f"{', '.join(outgoing.envelope.recipients)}\n"
            )
        if mode == "interactive":  # --no-queue leaves the queue alone
            _flush_due_in_background(settings, env, journal)
        return EX_OK
    ident = _enqueue(outgoing, settings, env, journal)
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
    deferred: MessageSendingFailure | None = None,
) -> str:
    """Queue durably; from here on the message is ours and the caller may go."""
    return delivery.enqueue(outgoing, _spool(settings, env), settings, journal, deferred)


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
        open_spool(settings, env.environ),
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
            "see `gaemail queue list --failed` and the mail log\n"
        )
    return EX_OK


def read_stdin(stream: BinaryIO) -> bytes:
    try:
        return stream.read()
    except OSError as exc:
        raise LocalIOError(f"cannot read the message: {describe_os_error(exc)}") from None


def build(
    inv: argv.Invocation, data: bytes, settings: Settings, environ: Mapping[str, str]
) -> Outgoing:
    """The message and envelope the command line and stdin describe."""
    domain = settings.mail_domain()
    resolver = RecipientResolver(settings.value("aliases"), domain.value if domain else None)
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
            to=inv.recipients,
            cc=inv.cc,
            bcc=inv.bcc,
            subject=inv.subject,
            sender=inv.sender,
            extra_headers=inv.headers,
            resolver=resolver,
            defaults=defaults,
            fix_sender=bool(inv.fix_sender),
        )
    # Exim's pipe transport hands the envelope sender over in $SENDER.
    sender = inv.sender if inv.sender is not None else environ.get("SENDER")
    return prepare_message(
        data,
        recipients=inv.recipients,
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
