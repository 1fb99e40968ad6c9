"""Reading an address header strictly: every address readable, or the header refused.

`getaddresses` skips what it cannot read, so `To: good@example.org, a@b@c` used
to go to good@ alone.  Here the decoded header is split into its items (commas
outside quotes, comments and angle brackets; groups opened by ":" and closed by
";"), each item must be exactly one address with a plain domain (or a bare
local name, as cron writes "root"), and the refusal names every item that is not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.utils import formataddr, getaddresses

from gaemail.server.refusals import MessageRefused

_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_LOCAL = re.compile(r"""[^\s@"()<>,;:\\\[\]\x00-\x1f\x7f]+|"(?:[^"\\\r\n]|\\.)*\"""")
_SHOWN = 60  # characters of an unreadable item quoted in a refusal
_SHOWN_ITEMS = 5


def split_items(value: str) -> list[str]:
    """The address items of a decoded address list, groups flattened."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    comment = angle = 0
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or comment):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            comment += 1
        elif char == ")" and comment:
            comment -= 1
        elif comment:
            pass
        elif char == '"':
            quoted = True
        elif char == "<":
            angle += 1
        elif char == ">" and angle:
            angle -= 1
        elif not angle and char in ",;":
            items.append("".join(current))
            current = []
            continue
        elif not angle and char == ":":
            current = []  # a group's display name: its members follow
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def read_addresses(header: str, raw_values: list[str], decode: Callable[[str], str]) -> list[str]:
    """Each address of every `header` field, formatted on its own; refuses any unreadable.

    Items are split on the raw text and decoded one by one (`decode` raises
    MessageRefused), so a refusal quotes what the client wrote.  The SDK splits a
    string of addresses at every comma, so a display name such as "Doe, John"
    must reach it as one list item.
    """
    addresses: list[str] = []
    unreadable: list[str] = []
    for raw in raw_values:
        for item in split_items(raw.replace("\r", "").replace("\n", "")):
            try:
                address = _read_one(decode(item), header, item)
            except MessageRefused as refusal:
                if "ASCII" in str(refusal):
                    raise
                address = None
            if address is None:
                unreadable.append(item)
            else:
                addresses.append(address)
    if unreadable:
        shown = ", ".join(repr(item[:_SHOWN]) for item in unreadable[:_SHOWN_ITEMS])
        more = len(unreadable) - _SHOWN_ITEMS
        tail = f" and {more} more" if more > 0 else ""
        raise MessageRefused(f"{header}: cannot read the address {shown}{tail}")
    return addresses


def _read_one(item: str, _header: str, written: str) -> str | None:
    pairs = getaddresses([item])
    if len(pairs) != 1:
        return None
    name, addr = pairs[0]
    if not addr.isascii():
        raise MessageRefused(
            f"{_header}: the Mail API takes ASCII addresses only ({addr[:_SHOWN]!r})"
        )
    local, at, domain = addr.rpartition("@")
    if not at:
        # A bare local name (cron's "root"): readable; the Mail API judges it, as in 2010.
        return formataddr((name, addr)) if _LOCAL.fullmatch(addr) else None
    if not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return None
    if local.startswith('"') and local not in written:
        return None  # "Name a@b" without brackets: the parser made up a quoted local part
    return formataddr((name, addr))
