"""What `mailq` and `gaemail queue list` show, and a flush's summary."""

from __future__ import annotations

import time
from collections import Counter
from typing import TextIO

from gaemail.queue.delivery import Progress
from gaemail.queue.spool import Item, Spool, age_text


def listing(spool: Spool, failed: bool = False) -> str:
    """mailq's table: id, age, size, attempts, status, sender, recipients, last error.

    Reads only each message's entry line, never the message itself.
    """
    area = "failed" if failed else "new"
    ids = spool.ids(area)
    if not ids:
        return "No failed messages.\n" if failed else "Mail queue is empty.\n"
    items: list[Item] = []
    for ident in ids:
        try:
            items.append(spool.item(ident, area))
        except (OSError, ValueError, KeyError):
            continue  # sent or moved while we listed
    at = time.time()
    lines = [f"{'ID':<28} {'Age':>5} {'Size':>8} {'Tries':>5} {'Status':<7} Sender / Recipients"]
    for item in items:
        entry = item.entry
        lines.append(
            f"{item.id:<28} {age_text(at - entry.created):>5} {entry.size:>8} "
            f"{item.state.attempts:>5} {item.state.status():<7} <{entry.envelope.sender or ''}>"
        )
        lines.append(f"{'':<58}{', '.join(entry.envelope.recipients)}")
        if item.state.last_error:
            lines.append(f"{'':<58}({item.state.last_error})")
    noun = "message" if len(items) == 1 else "messages"
    lines.append(f"-- {len(items)} {noun}{' failed' if failed else ' queued'}")
    return "\n".join(lines) + "\n"


def summary(outcomes: Counter[str]) -> str:
    total = sum(outcomes.values())
    if not total:
        return "the queue is empty"
    parts = ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items()))
    return f"{total} queued message{'s' if total != 1 else ''}: {parts}"


def terminal_progress(stream: TextIO) -> Progress | None:
    """A one-line progress counter, only when a person is watching."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write(f"\rflushing {done}/{total}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show
