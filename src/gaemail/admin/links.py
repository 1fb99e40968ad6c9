"""`gaemail install-links`: put gmail where programs look for sendmail, and take it back.

Programs find the MTA under four names: cron and PHP run /usr/sbin/sendmail,
older software /usr/lib/sendmail, users type mailq and newaliases.  Whatever
was there (another MTA's link or program) is kept beside it as
NAME.gaemail-orig, renamed rather than copied so that `--undo` restores
exactly it: a symlink stays a symlink, a program keeps its modes.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

import click

from gaemail.errors import LocalIOError, describe_os_error

ORIGINAL_SUFFIX = ".gaemail-orig"


@dataclass(frozen=True)
class Link:
    """One sendmail path and the program of ours it should lead to."""

    path: str
    target: str

    @property
    def original(self) -> str:
        return self.path + ORIGINAL_SUFFIX

    def is_ours(self) -> bool:
        return os.path.lexists(self.path) and os.path.realpath(self.path) == self.target


def our_programs() -> dict[str, str]:
    """gmail and newaliases of this installation, by their real paths."""
    here = os.path.dirname(os.path.realpath(sys.argv[0]))
    found = {}
    for name in ("gmail", "newaliases"):
        sibling = os.path.join(here, name)
        path = sibling if os.path.exists(sibling) else shutil.which(name)
        if path is None:
            raise LocalIOError(f"cannot find the {name} program next to {sys.argv[0]}")
        found[name] = os.path.realpath(path)
    return found


def sendmail_links(prefix: str, programs: dict[str, str]) -> list[Link]:
    """The four paths under `prefix` (/usr: the ones every program knows)."""
    gmail, newaliases = programs["gmail"], programs["newaliases"]
    return [
        Link(os.path.join(prefix, "sbin", "sendmail"), gmail),
        Link(os.path.join(prefix, "lib", "sendmail"), gmail),
        Link(os.path.join(prefix, "bin", "mailq"), gmail),
        Link(os.path.join(prefix, "bin", "newaliases"), newaliases),
    ]


def _replace_with_symlink(path: str, target: str) -> None:
    """Point `path` at `target` in one rename, so no caller finds it missing."""
    temporary = f"{path}.gaemail-new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, path)


def install(links: list[Link], force: bool) -> list[str]:
    """Make the links; without `force`, change nothing if another MTA's are there."""
    taken = [link for link in links if os.path.lexists(link.path) and not link.is_ours()]
    if taken and not force:
        names = ", ".join(f"{link.path} -> {os.path.realpath(link.path)}" for link in taken)
        raise click.UsageError(
            f"{names} exist; use --force to replace them (kept as *{ORIGINAL_SUFFIX})"
        )
    stale = [link.original for link in taken if os.path.lexists(link.original)]
    if stale:
        raise LocalIOError(
            f"{', '.join(stale)} already exist from an earlier install-links: "
            "run --undo first, or remove them"
        )
    lines = []
    for link in links:
        if link.is_ours():
            lines.append(f"{link.path} already points at {link.target}")
            continue
        os.makedirs(os.path.dirname(link.path), exist_ok=True)
        if os.path.lexists(link.path):
            os.rename(link.path, link.original)
            lines.append(f"{link.path}: kept what was there as {link.original}")
        _replace_with_symlink(link.path, link.target)
        lines.append(f"{link.path} -> {link.target}")
    return lines


def undo(links: list[Link]) -> list[str]:
    """Remove our links and put back what they replaced; leave anyone else's alone."""
    lines = []
    for link in links:
        if not link.is_ours():
            state = "not gaemail's" if os.path.lexists(link.path) else "absent"
            lines.append(f"{link.path}: {state}, left as it is")
            continue
        if os.path.lexists(link.original):
            os.replace(link.original, link.path)
            lines.append(f"{link.path}: restored what was there before")
        else:
            os.unlink(link.path)
            lines.append(f"{link.path}: removed (nothing was there before)")
    return lines


@click.command("install-links")
@click.option(
    "--prefix",
    default="/usr",
    show_default=True,
    help="The links are PREFIX/sbin/sendmail, PREFIX/lib/sendmail, PREFIX/bin/mailq"
    " and PREFIX/bin/newaliases.",
)
@click.option("--force", is_flag=True, help="Replace another MTA's programs (kept beside them).")
@click.option(
    "--undo", "undo_links", is_flag=True, help="Remove the links, restoring what was there."
)
def install_links_command(prefix: str, force: bool, undo_links: bool) -> None:
    """Make sendmail, mailq and newaliases lead to gmail, so every program finds it.

    What was there is renamed to NAME.gaemail-orig; --undo puts it back.  The
    Debian package ships these paths itself: this is for pipx installs.
    """
    links = sendmail_links(prefix, our_programs())
    try:
        lines = undo(links) if undo_links else install(links, force)
    except LocalIOError:
        raise
    except OSError as exc:
        raise LocalIOError(f"cannot change the links: {describe_os_error(exc)}") from None
    for line in lines:
        click.echo(line)
