"""The envelope, and recipients: qualifying bare names, expanding aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gaemail.errors import ConfigurationError, NoSuchUserError, describe_os_error

if TYPE_CHECKING:
    from gaemail.protocol import v2


@dataclass(frozen=True)
class Envelope:
    """Who the message goes to, whatever its headers say, and who sent it."""

    recipients: tuple[str, ...]
    sender: str | None = None

    def wire(self) -> v2.Envelope:
        """The envelope as protocol v2 signs it; no sender is the null sender."""
        from gaemail.protocol import v2  # only where mail is sent, not where it is queued

        return v2.Envelope(self.sender or v2.NULL_SENDER, self.recipients)


def unique_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """The addresses in order, keeping the first spelling of each and dropping repeats."""
    seen: set[str] = set()
    kept: list[str] = []
    for address in addresses:
        key = address_key(address)
        if key not in seen:
            seen.add(key)
            kept.append(address)
    return tuple(kept)


def address_key(address: str) -> str:
    """What makes two spellings the same mailbox, for duplicate and envelope checks."""
    return address.casefold()


def parse_aliases(text: str) -> dict[str, list[str]]:
    """An /etc/aliases file: `name: target, target`, # comments, indented continuations."""
    entries: dict[str, list[str]] = {}
    logical: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line[:1].isspace() and logical:
            logical[-1] += " " + line.strip()
        else:
            logical.append(line.strip())
    for entry in logical:
        name, colon, targets = entry.partition(":")
        if not colon or not name.strip():
            continue
        found = (t.strip() for t in _split_targets(targets))
        entries[name.strip().casefold()] = [
            t.strip('"') if t.startswith('"') else t for t in found if t
        ]
    return entries


def _split_targets(targets: str) -> list[str]:
    """Split on commas outside double quotes (a quoted "|command, arg" is one target)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in targets:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


class RecipientResolver:
    """Turns what callers write (`root`, `a@x,b@y`) into deliverable addresses.

    A name with no domain is looked up in the aliases, recursively; failing that it
    gets the default domain.  Aliases load on first need, so a message whose
    recipients all have domains never reads the file.
    """

    MAX_DEPTH = 10

    def __init__(
        self,
        aliases_path: str | None,
        default_domain: str | None,
        read_file: Callable[[str], str] | None = None,
    ) -> None:
        self._aliases_path = aliases_path
        self._default_domain = default_domain.strip().lstrip("@") if default_domain else None
        self._read_file = read_file or _read_text
        self._aliases: dict[str, list[str]] | None = None

    def resolve(self, address: str, depth: int = 0) -> list[str]:
        if "@" in address:
            return [address]
        name = address.strip().casefold()
        targets = self._lookup(name)
        if targets is not None and depth < self.MAX_DEPTH:
            resolved: list[str] = []
            for target in targets:
                if target.startswith(("|", "/", ":include:")):
                    continue  # pipes, files and includes are a local MTA's business
                if target.casefold() == name:
                    resolved += self._qualify(address)
                else:
                    resolved += self.resolve(target, depth + 1)
            if resolved:
                return resolved
            raise NoSuchUserError(
                f"alias {address!r} in {self._aliases_path} names no address gmail can deliver to"
            )
        return self._qualify(address)

    def qualify_sender(self, address: str | None) -> str | None:
        """A sender address with a domain, or None: senders are never alias-expanded."""
        if not address or address.strip() in ("", "<>"):
            return None
        address = address.strip()
        if "@" in address:
            return address
        return f"{address}@{self._default_domain}" if self._default_domain else None

    def _qualify(self, address: str) -> list[str]:
        if self._default_domain:
            return [f"{address.strip()}@{self._default_domain}"]
        raise NoSuchUserError(
            f"recipient {address!r} has no domain, and this host has no mail domain: set "
            "GMAIL_DEFAULT_DOMAIN or write it to /etc/mailname, or map the name in an "
            "aliases file named by GMAIL_ALIASES"
        )

    def _lookup(self, name: str) -> list[str] | None:
        if self._aliases_path is None:
            return None
        if self._aliases is None:
            self._aliases = parse_aliases(self._read_file(self._aliases_path))
        return self._aliases.get(name)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read aliases {describe_os_error(exc)}") from None
