"""What the local stub refuses that the SDK's stub lets through, as App Engine refuses it.

The SDK's MailServiceStub checks attachment names and the request size and
nothing else.  The service itself also refuses unauthorized senders, recipients
that are not addresses, NUL bytes and header lines longer than RFC 5322 allows,
and answers over-quota once the day's quota is spent.  Each check here raises
what the service raises, so `mail.send()` turns it into the same exception
(InvalidSenderError, BadRequestError, OverQuotaError) and the proxy answers as
it would on App Engine.  Where the service's rule is not documented, the rule
here is the stricter reading; the README lists which those are.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import getaddresses, parseaddr
from typing import Any

from google.appengine.api import mail_service_pb2
from google.appengine.runtime import apiproxy_errors

ANY_SENDER = "*"
# RFC 5322 section 2.1.1: a line is at most 998 characters, CRLF excluded.
MAX_LINE = 998
# The Mail API's daily quotas reset at midnight Pacific time.
QUOTA_TIMEZONE = "America/Los_Angeles"

_ERRORS = mail_service_pb2.MailServiceError
# local@domain, the domain made of dot-separated labels, with at least one dot:
# "root", "a" and "root@localhost" are not addresses mail can be sent to.
_LABEL = r"(?!-)[A-Za-z0-9\u0080-\U0010ffff-]{1,63}(?<!-)"
_ADDRESS = re.compile(rf"[^@\s\"(),:;<>\[\\\]]+@{_LABEL}(?:\.{_LABEL})+")


def bad_request(reason: str) -> apiproxy_errors.ApplicationError:
    """What the service answers for a message it will not send (mail.BadRequestError)."""
    return apiproxy_errors.ApplicationError(_ERRORS.BAD_REQUEST, reason)


@dataclass(frozen=True)
class Senders:
    """The authorized senders: configured addresses, and '*' for any sender."""

    addresses: frozenset[str]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Senders:
        return cls(frozenset(entry.strip().lower() for entry in entries if entry.strip()))

    @property
    def any(self) -> bool:
        return ANY_SENDER in self.addresses

    def check(self, sender: str) -> None:
        """Raise UNAUTHORIZED_SENDER (mail.InvalidSenderError) for any other sender."""
        if self.any:
            return
        address = parseaddr(sender)[1].lower()
        if address not in self.addresses:
            raise apiproxy_errors.ApplicationError(
                _ERRORS.UNAUTHORIZED_SENDER, f"Unauthorized sender {address or sender!r}"
            )


def bare_address(entry: str) -> str | None:
    """The one address in a To/Cc/Bcc entry ('a@b.example' or 'Name <a@b.example>'), or None."""
    text = entry.strip()
    if _ADDRESS.fullmatch(text):
        return text  # the common case, without the parser
    parsed = getaddresses([entry])
    if len(parsed) != 1 or not _ADDRESS.fullmatch(parsed[0][1]):
        return None
    return parsed[0][1]


def check_addresses(request: Any) -> None:
    """Every To, Cc and Bcc entry must be one address: local@domain."""
    for field in ("To", "Cc", "Bcc"):
        for entry in getattr(request, field):
            if bare_address(entry) is None:
                raise bad_request(f"Invalid {field} address {entry!r}: not local@domain")


def check_no_nul(request: Any) -> None:
    """No NUL byte in any header or body text (attachments are binary and may have them)."""
    texts = [request.Sender, request.ReplyTo, request.Subject, *request.To, *request.Cc]
    texts += [*request.Bcc, request.TextBody, request.HtmlBody, request.AmpHtmlBody]
    texts += [f"{header.name}{header.value}" for header in request.Header]
    if any("\0" in text for text in texts):
        raise bad_request("The message contains a NUL byte")


def check_header_lines(data: bytes) -> None:
    """No header line of the message as written may be longer than MAX_LINE."""
    end = data.find(b"\n\n")
    head = data if end < 0 else data[:end]
    for line in head.split(b"\n"):
        if len(line.rstrip(b"\r")) > MAX_LINE:
            name = line.split(b":", 1)[0][:40].decode("ascii", "replace")
            raise bad_request(
                f"The {name} header has a line of {len(line)} characters that cannot be"
                f" folded; at most {MAX_LINE} are allowed"
            )


def pacific_day(now: float) -> int:
    """The number of the Mail API's quota day at `now`: days since the epoch, Pacific."""
    try:
        from zoneinfo import ZoneInfo

        zone: Any = ZoneInfo(QUOTA_TIMEZONE)
    except (ImportError, KeyError, OSError):
        zone = timezone(timedelta(hours=-8))  # no tz database: Pacific standard time
    return datetime.fromtimestamp(now, zone).date().toordinal()


class DailyQuota:
    """Recipients the app may still send to in this quota period; shared by threads.

    Each recipient counts, as App Engine counts recipients emailed.  A message
    with more recipients than are left is refused whole and uses nothing.  The
    period is App Engine's Pacific day, or `period` seconds counted from the
    first message (for tests: a day that ends when they want).
    """

    def __init__(
        self,
        limit: int,
        *,
        period: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._period = period
        self._start: float | None = None
        self._lock = threading.Lock()
        self._day = self._current_day() if period is None else 0
        self._used = 0

    def _current_day(self) -> int:
        now = self._clock()
        if self._period is None:
            return pacific_day(now)
        if self._start is None:
            self._start = now
        return int((now - self._start) // self._period)

    def take(self, recipients: int) -> None:
        """Spend `recipients`, or raise OverQuotaError when fewer are left."""
        with self._lock:
            day = self._current_day()
            if day != self._day:
                self._day, self._used = day, 0
            if self._used + recipients > self.limit:
                raise apiproxy_errors.OverQuotaError(
                    f"The daily quota of {self.limit} recipients is used up"
                )
            self._used += recipients

    def give_back(self, recipients: int) -> None:
        """Return what take() spent for a message that was not sent after all."""
        with self._lock:
            self._used = max(0, self._used - recipients)


@dataclass(frozen=True)
class LocalRules:
    """The checks the local stub applies on top of the SDK's; by default any sender passes."""

    senders: Senders = Senders(frozenset({ANY_SENDER}))
    strict: bool = True  # addresses, NUL bytes, header lines
    quota: DailyQuota | None = None

    def check_request(self, request: Any) -> None:
        """The checks on the request itself, before it is written out."""
        self.senders.check(request.Sender)
        if self.strict:
            check_addresses(request)
            check_no_nul(request)
