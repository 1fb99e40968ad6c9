"""The proxy's one log line per request: what was asked, by which key, and what came of it.

Every value that came from a client is escaped (control characters, including
CR and LF, become \\xNN, so no message can forge a line) and cut to a length, so
a 1 MB Message-ID costs the log a few hundred bytes.  Never the message, a
signature or a key: a key is named by its id.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from gaemail import protocol

if TYPE_CHECKING:
    from gaemail.server.relay import Outcome
    from gaemail.server.relay_v2 import Outcome as OutcomeV2

MAX_VALUE = 200
MAX_REASON = 300
MAX_DOMAINS = 10
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def clean(value: object, limit: int = MAX_VALUE) -> str:
    """`value` as one safe word of a log line: escaped, cut to `limit` characters."""
    text = str(value)
    cut = len(text) > limit
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:limit])
    return text + "..." if cut else text


def _domains(domains: tuple[str, ...]) -> str:
    shown = ",".join(clean(d, 80) for d in domains[:MAX_DOMAINS])
    more = len(domains) - MAX_DOMAINS
    return (shown + f",+{more}" if more > 0 else shown) or "-"


def _level(status: int) -> int:
    if status in (protocol.UNAVAILABLE, protocol.TOO_MANY_REQUESTS):
        return logging.WARNING
    if status >= protocol.SERVER_ERROR:
        return logging.ERROR
    return logging.INFO


def log_v1(log: logging.Logger, outcome: Outcome, *, status: int | None = None) -> None:
    """The line for a v1 request."""
    refusal = outcome.refusal
    status = status or outcome.status
    facts = (
        f"message-id={clean(outcome.message_id or '-')} recipients={outcome.recipients}"
        f" domains={_domains(outcome.domains)} protocol=v1 key={outcome.key_id or '-'}"
    )
    if refusal is None:
        log.info("sent %d %s", status, facts)
        return
    log.log(
        _level(status),
        "refused %d kind=%s %s reason=%s",
        status,
        refusal.kind.name,
        facts,
        clean(str(refusal), MAX_REASON),
    )


def log_v2(log: logging.Logger, path: str, outcome: OutcomeV2) -> None:
    """The line for a v2 request."""
    domains = tuple(sorted({r.rpartition("@")[2].lower() for r in outcome.recipients}))
    facts = (
        f"recipients={len(outcome.recipients)} domains={_domains(domains)}"
        f" protocol=v2 key={outcome.key_id or '-'} path={clean(path, 40)}"
    )
    problem = outcome.problem
    if problem is None:
        what = "replayed" if outcome.replayed else ("checked" if outcome.status == 200 else "sent")
        log.info("%s %d %s", what, outcome.status, facts)
        return
    log.log(
        _level(problem.status),
        "refused %d code=%s %s reason=%s",
        problem.status,
        problem.code,
        facts,
        clean(str(problem), MAX_REASON),
    )
