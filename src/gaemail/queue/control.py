"""An administrator's changes to queued messages: hold, release, retry, delete.

Each takes the message's lock first, so nothing changes under a delivery in
progress: a message being sent right now is reported busy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from gaemail.errors import LocalIOError
from gaemail.queue.spool import Claim, Spool


def _change(spool: Spool, ident: str, area: str, act: Callable[[Claim], None]) -> None:
    with spool.claim(ident, area) as claim:
        if claim is None:
            where = "failed" if area == "failed" else "queued"
            if spool.ids(area).count(ident):
                raise LocalIOError(f"message {ident} is being delivered right now; try again")
            raise LocalIOError(f"no {where} message {ident}")
        act(claim)


def hold(spool: Spool, ident: str) -> None:
    """Keep the message in the queue, unattempted, until it is released."""
    _change(spool, ident, "new", lambda c: c.update(dataclasses.replace(c.state, held=True)))


def release(spool: Spool, ident: str) -> None:
    """Let a held message go again, due now."""
    _change(
        spool,
        ident,
        "new",
        lambda c: c.update(dataclasses.replace(c.state, held=False, next_attempt=0.0)),
    )


def retry(spool: Spool, ident: str) -> str:
    """Make a message due now: from failed/ back into the queue, or a deferred one at once.

    Returns the area it was found in.
    """
    area = "failed" if ident in spool.ids("failed") else "new"
    _change(spool, ident, area, Claim.requeue)
    return area


def delete(spool: Spool, ident: str, area: str = "new") -> None:
    """Remove a message without sending it."""
    _change(spool, ident, area, lambda c: spool.delete(c.id, c.area))
