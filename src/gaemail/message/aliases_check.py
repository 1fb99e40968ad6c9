"""What `newaliases` reports: the problems of an aliases file, line by line.

gmail reads the aliases file at each message, so there is no database to
rebuild; what an administrator needs from `newaliases` is to learn, before
cron's mail is lost, which entries gmail cannot use.  The resolution itself is
RecipientResolver's, so this check and a real send agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaemail.errors import GaemailError
from gaemail.message.envelope import RecipientResolver, parse_aliases

LOCAL_TARGETS = ("|", "/", ":include:")  # a local MTA's business; gmail skips them


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file; `line` is where the entry starts (1-based)."""

    line: int
    text: str


@dataclass(frozen=True)
class Report:
    """The aliases the file defines, and what is wrong with them."""

    names: tuple[str, ...]
    problems: tuple[Problem, ...]


def _entries(text: str) -> list[tuple[int, str]]:
    """Logical entries (continuation lines joined) with the line each starts on."""
    entries: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line[:1].isspace() and entries:
            start, entry = entries[-1]
            entries[-1] = (start, f"{entry} {line.strip()}")
        else:
            entries.append((number, line.strip()))
    return entries


def _cycle(name: str, aliases: dict[str, list[str]]) -> list[str] | None:
    """The chain of names that leads from `name` back to itself, if any."""
    path: list[str] = []

    def walk(current: str) -> list[str] | None:
        if current in path:
            return [*path[path.index(current) :], current]
        path.append(current)
        for target in aliases.get(current, ()):
            key = target.strip().casefold()
            if "@" in key or key.startswith(LOCAL_TARGETS) or key == current:
                continue
            if key in aliases and (found := walk(key)):
                return found
        path.pop()
        return None

    return walk(name)


def check_aliases(text: str, path: str, default_domain: str | None) -> Report:
    """Every entry of the file `path` holds, resolved as gmail would resolve it."""
    aliases = parse_aliases(text)
    resolver = RecipientResolver(path, default_domain, read_file=lambda _: text)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, entry in _entries(text):
        name, colon, targets = entry.partition(":")
        key = name.strip().casefold()
        if not colon or not key or " " in key:
            problems.append(Problem(line, f"not `name: address, ...`: {entry[:60]!r}"))
            continue
        if key in seen:
            problems.append(Problem(line, f"{key!r} again (line {seen[key]}); this one wins"))
        seen[key] = line
        if not targets.strip():
            problems.append(Problem(line, f"{key!r} has no target"))
    for key, line in seen.items():
        problems.extend(_resolution_problems(key, line, aliases, resolver))
    return Report(tuple(seen), tuple(sorted(problems, key=lambda p: p.line)))


def _resolution_problems(
    key: str, line: int, aliases: dict[str, list[str]], resolver: RecipientResolver
) -> list[Problem]:
    if not aliases.get(key):
        return []
    cycle = _cycle(key, aliases)
    if cycle:
        return [Problem(line, f"{key!r} loops: {' -> '.join(cycle)}")]
    try:
        resolver.resolve(key)
    except GaemailError as exc:
        return [Problem(line, str(exc))]
    return []
