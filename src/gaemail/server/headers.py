"""One header's value as the modern email policy reads it, without its cost when it is plain.

`email.policy.default` parses a header into a token tree every time it is read,
about 50-120 us a header, which made header reading most of the proxy's work per
message.  `decoded_header(name, raw)` returns exactly `str()` of that policy's
header object.  For the values most mail carries (ASCII, no encoded words, and
for addresses `a@b`, `Name <a@b>`, `"Doe, J." <a@b>`, `a@b (comment)`) it
computes the same string directly; anything else goes to the policy itself.
tests/test_translate.py checks the two against each other.
"""

from __future__ import annotations

import re
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader

_MODERN = policy.default

# Headers the modern policy parses as structured; all others it keeps as text.
_STRUCTURED = frozenset(
    name
    for name, header_class in HeaderRegistry().registry.items()
    if not issubclass(header_class, UnstructuredHeader)
)
_ADDRESS_LISTS = frozenset({"from", "to", "cc", "bcc", "reply-to"})

# RFC 5322 atext and dot-atom-text; a display name with any of the parser's
# SPECIALS is quoted when the policy writes it back.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_SPECIALS = frozenset('()<>@,:;."[]\\')
# Quoted-string content: printable ASCII except " and \, no edge spaces.
_QTEXT = r"[!#-\[\]-~](?:[ !#-\[\]-~]*[!#-\[\]-~])?"

_MAILBOX = re.compile(
    rf"""[ \t]*(?:
        (?P<bare>{_ADDR_SPEC})(?:[ \t]*\([ !#-'*-\[\]-~\t]*\))?   # a@b, a@b (comment)
      | (?:(?P<atoms>{_ATEXT}+(?:[ \t]+{_ATEXT}+)*)             # Name Words <a@b>
         |"(?P<quoted>{_QTEXT})"                              # "Quoted, Name" <a@b>
        )?[ \t]*<(?P<angle>{_ADDR_SPEC})>
    )[ \t]*(?P<comma>,|\Z)""",
    re.VERBOSE,
)
_MESSAGE_ID = re.compile(rf"<{_ADDR_SPEC}>")


def decoded_header(name: str, raw: str) -> str:
    """str() of email.policy.default's header object for the raw header `name: raw`."""
    if raw.isascii() and "=?" not in raw:
        key = name.lower()
        fast: str | None
        if key in _ADDRESS_LISTS:
            fast = _address_list(_unfold(raw))
        elif key == "message-id":
            fast = raw if _MESSAGE_ID.fullmatch(raw) else None
        elif key not in _STRUCTURED:
            fast = _unfold(raw)  # unstructured text is kept as it is
        else:
            fast = None
        if fast is not None:
            return fast
    return str(_MODERN.header_fetch_parse(name, raw))


def _unfold(raw: str) -> str:
    # What header_fetch_parse does before parsing: every CR and LF removed.
    return raw.replace("\r", "").replace("\n", "")


def _address_list(value: str) -> str | None:
    """The policy's rendering of a list of plain mailboxes; None for anything else."""
    rendered = []
    pos = 0
    while True:
        match = _MAILBOX.match(value, pos)
        if match is None:
            return None
        bare, angle = match["bare"], match["angle"]
        if bare is not None:
            rendered.append(bare)  # a comment after a bare address is dropped
        else:
            name = match["quoted"] or " ".join((match["atoms"] or "").split())
            if not name:
                rendered.append(angle)
            elif _SPECIALS.isdisjoint(name):
                rendered.append(f"{name} <{angle}>")
            else:
                rendered.append(f'"{name}" <{angle}>')
        pos = match.end()
        if not match["comma"]:
            return ", ".join(rendered)
