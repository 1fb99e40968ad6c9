"""Delivering queued messages: one attempt per claimed message, backoff, bounces."""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gaemail.errors import MessageSendingFailure
from gaemail.queue.journal import Journal
from gaemail.queue.spool import Claim, Spool, expired

SendFn = Callable[[bytes, bool], None]  # (message, fix_sender); raises MessageSendingFailure
Progress = Callable[[int, int], None]

SENT, DEFERRED, FAILED, BUSY, NOT_DUE = "sent", "deferred", "failed", "busy", "not due"


@dataclass
class Deliverer:
    """Attempts queued messages with one send function."""

    spool: Spool
    send: SendFn
    journal: Journal
    clock: Callable[[], float]

    def attempt(self, ident: str, force: bool) -> str:
        """One delivery attempt; returns what happened to the message."""
        with self.spool.claim(ident) as claim:
            if claim is None:
                return BUSY
            now = self.clock()
            if expired(claim.envelope, now):
                last = f": {claim.state.last_error}" if claim.state.last_error else ""
                return self._fail(claim, f"not delivered within 5 days{last}")
            if not force and claim.state.next_attempt > now:
                return NOT_DUE
            try:
                self.send(claim.data, claim.envelope.fix_sender)
            except MessageSendingFailure as exc:
                if not exc.temporary:
                    return self._fail(claim, str(exc))
                claim.deferred(str(exc), now)
                self.journal.record(DEFERRED, claim.id, claim.envelope, str(exc))
                return DEFERRED
            claim.sent()
            self.journal.record(SENT, claim.id, claim.envelope)
            return SENT

    def run(
        self,
        ids: Iterable[str],
        *,
        force: bool,
        jobs: int = 4,
        progress: Progress | None = None,
    ) -> Counter[str]:
        """Attempt each message, `jobs` at a time; counts of each outcome."""
        ids = list(ids)
        outcomes: Counter[str] = Counter()
        try:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                for done, outcome in enumerate(pool.map(lambda i: self.attempt(i, force), ids), 1):
                    outcomes[outcome] += 1
                    if progress:
                        progress(done, len(ids))
        finally:
            self.spool.sync()  # one fsync for every message sent
        return outcomes

    def _fail(self, claim: Claim, reason: str) -> str:
        claim.failed(reason)
        self.journal.record(FAILED, claim.id, claim.envelope, reason)
        self._bounce(claim, reason)
        return FAILED

    def _bounce(self, claim: Claim, reason: str) -> None:
        """Tell the envelope sender, through the proxy; never bounce a bounce."""
        to = claim.envelope.sender
        if not to or _is_automatic(claim.data):
            return
        try:
            self.send(bounce_message(claim, reason, self.clock()), True)
        except MessageSendingFailure as exc:
            self.journal.record("failed", claim.id, claim.envelope, f"bounce not sent: {exc}")
        else:
            self.journal.record("bounced", claim.id, claim.envelope, f"told {to}")


def _is_automatic(data: bytes) -> bool:
    head = data.partition(b"\n\n")[0].lower()
    return b"\nauto-submitted:" in b"\n" + head and b"auto-submitted: no" not in head


def bounce_message(claim: Claim, reason: str, now: float) -> bytes:
    """A plain-text delivery failure notice with the original headers quoted."""
    headers = claim.data.partition(b"\n\n")[0].decode("utf-8", "replace")
    text = (
        "Your message could not be delivered through the gaemail proxy, and gmail\n"
        "has stopped trying.\n\n"
        f"  Recipients: {', '.join(claim.envelope.recipients)}\n"
        f"  Reason:     {reason}\n"
        f"  Queue id:   {claim.id}\n\n"
        "The headers of your message follow.\n\n" + headers + "\n"
    )
    lines = [
        f"To: {claim.envelope.sender}",
        "Subject: Undelivered mail: " + _subject(headers),
        f"Date: {email.utils.formatdate(now, localtime=True)}",
        "Auto-Submitted: auto-replied",
        f"In-Reply-To: {claim.envelope.message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\n".join(lines) + "\n\n" + text).encode("utf-8")


def _subject(headers: str) -> str:
    for line in headers.splitlines():
        if line.lower().startswith("subject:"):
            return " ".join(line[8:].split())[:200] or "(no subject)"
    return "(no subject)"
