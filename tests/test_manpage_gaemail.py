"""man/gaemail.8: lint-clean, and every gaemail command and option is in it.

A new click command or option fails here until the man page describes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from gaemail.admin import cli

MANPAGE = Path(__file__).resolve().parent.parent / "man" / "gaemail.8"


def commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every leaf command by its full name (`queue run`)."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= commands(command, full + " ")
        else:
            found[full] = command
    return found


def documented_items() -> str:
    """The `.It` lines of the page, where commands and options have their entries."""
    lines = MANPAGE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.replace("\\-", "-") for line in lines if line.startswith(".It "))


@pytest.mark.parametrize("name", sorted(commands(cli)))
def test_every_command_has_an_entry(name: str) -> None:
    words = name.split()
    items = documented_items()
    assert re.search(rf"^\.It Cm {re.escape(words[-1])}\b", items, re.M) or re.search(
        rf"^\.It Cm {re.escape(name)}\b", items, re.M
    ), f"gaemail {name} has no .It Cm entry in man/gaemail.8"


@pytest.mark.parametrize(
    "option",
    sorted(
        {
            opt
            for command in commands(cli).values()
            for param in command.params
            for opt in getattr(param, "opts", [])
            if opt.startswith("--") and opt != "--help"
        }
    ),
)
def test_every_option_has_an_entry(option: str) -> None:
    # mdoc's Fl writes one dash itself: `.It Fl \-url` is --url.
    assert re.search(rf"\bFl {re.escape(option[1:])}\b", documented_items()), (
        f"{option} has no .It Fl entry in man/gaemail.8"
    )


def test_mandoc_lint_is_clean() -> None:
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        pytest.skip("mandoc not installed: apt-get install mandoc (scripts/setup-system)")
    result = subprocess.run(
        [mandoc, "-T", "lint", str(MANPAGE)], capture_output=True, text=True, check=False
    )
    assert (result.stdout + result.stderr) == ""
    assert result.returncode == 0
