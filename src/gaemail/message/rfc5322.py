"""email.utils' formatdate, getaddresses and formataddr, without importing email.utils
for the plain values that most messages carry.

email.utils brings urllib.parse, random, calendar and email.charset with it: a large
part of what every `gmail` process would otherwise spend on imports (see bench/).
The plain cases are answered here, each exactly as email.utils answers it
(tests/test_cli_imports.py compares them); anything else goes to email.utils.
"""

from __future__ import annotations

import re
import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# A dot-atom address, optionally followed by one plain comment: `root@host`,
# `root@host (Cron Daemon)`.  Quotes, angle brackets, groups, backslashes and
# nested or padded comments are left to email.utils.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_COMMENT = r"\(([^()\\\"\s](?:[^()\\\"\r\n]*[^()\\\"\s])?)\)"
_PLAIN = re.compile(rf"[ \t]*({_ADDRESS})(?:[ \t]+{_COMMENT})?[ \t]*")


def formatdate(timeval: float, localtime: bool = False) -> str:
    """email.utils.formatdate(timeval, localtime): an RFC 5322 date."""
    tm = time.localtime(timeval) if localtime else time.gmtime(timeval)
    offset = tm.tm_gmtoff if localtime else 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    zone = f"{sign}{hours:02d}{minutes:02d}" if localtime else "-0000"
    return (
        f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year:04d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {zone}"
    )


def getaddresses(fieldvalues: list[str]) -> list[tuple[str, str]]:
    """email.utils.getaddresses: (display name, address) for each address in the values."""
    pairs: list[tuple[str, str]] = []
    for value in fieldvalues:
        parts = value.split(",")
        matches = [_PLAIN.fullmatch(part) for part in parts]
        if not value.strip() or not all(matches):
            from email.utils import getaddresses as parse

            return parse(fieldvalues)
        pairs += [(m.group(2) or "", m.group(1)) for m in matches if m]
    return pairs


def formataddr(pair: tuple[str, str]) -> str:
    """email.utils.formataddr, loaded when a name or address is to be written."""
    from email.utils import formataddr as render

    return render(pair)
