"""man/gmail.1: lint-clean, renders, and documents every option and exit status.

A new option of the `gmail` click command or a new error class with its own exit status
fails here until the man page describes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gaemail.cli import gmail, help_text  # also loads every error class gmail can raise
from gaemail.command import option_names
from gaemail.errors import EX_OK, EXIT_NAMES, GaemailError

MANPAGE = Path(__file__).resolve().parent.parent / "man" / "gmail.1"
RENDER_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "MANWIDTH": "80"}


def source() -> str:
    return MANPAGE.read_text(encoding="utf-8")


def section(name: str) -> str:
    """The mdoc source of one `.Sh` section."""
    match = re.search(rf"^\.Sh {re.escape(name)}\n(.*?)(?=^\.Sh |\Z)", source(), re.M | re.S)
    assert match, f"no section {name} in {MANPAGE.name}"
    return match.group(1)


def documented_options() -> set[str]:
    """Option names that head an item of a list (`.It Fl t`, `.It Fl \\-url Ar url`)."""
    names = set()
    for line in source().splitlines():
        if line.startswith(".It "):
            names |= {"-" + m.replace("\\-", "-") for m in re.findall(r"\bFl (\S+)", line)}
    return names


def exit_codes_gmail_uses() -> set[int]:
    """EX_OK and the exit status of every concrete error class gmail can raise."""
    codes = {EX_OK}
    pending = list(GaemailError.__subclasses__())
    while pending:
        cls = pending.pop()
        codes.add(cls.exit_code)
        pending += cls.__subclasses__()
    return codes


@pytest.mark.parametrize("name", option_names(gmail))
def test_every_option_has_an_entry(name: str) -> None:
    assert name in documented_options(), f"{name} is an option of gmail but not in man/gmail.1"


def test_option_parsing_of_the_test_finds_the_known_spellings() -> None:
    # Guards the helper above: if it found nothing, every option would look missing
    # for the wrong reason, and an unrelated .It would not count.
    found = documented_options()
    assert {"-t", "-r", "-f", "-q", "--url", "--no-fix-sender"} <= found
    assert "-Z" not in found


@pytest.mark.parametrize("code", sorted(exit_codes_gmail_uses()))
def test_every_exit_status_is_documented(code: int) -> None:
    name = EXIT_NAMES[code]
    pattern = rf"^\.It {code} Pq Dv {name}$"
    assert re.search(pattern, section("EXIT STATUS"), re.M), f"{code} {name} is not documented"


@pytest.mark.parametrize("code", sorted(exit_codes_gmail_uses()))
def test_help_names_the_same_exit_statuses(code: int) -> None:
    exit_status = help_text("gmail").partition("Exit status")[2]
    assert re.search(rf"\b{code} [a-z]", exit_status), f"gmail --help does not explain {code}"


def test_every_setting_has_its_three_places() -> None:
    from gaemail.config import SPECS

    environment = section("ENVIRONMENT")
    for spec in SPECS.values():
        assert f".It Ev {spec.env}\n" in environment, spec.env
        flag = spec.flag.replace("--", "\\-", 1)
        assert f"Fl {flag}" in environment, f"{spec.env} does not name its flag {spec.flag}"
    assert "GMAIL_ENVDIR" in environment
    assert "/etc/envdir" in section("FILES")


def test_mandoc_lint_is_silent() -> None:
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        pytest.skip("mandoc not installed: apt-get install mandoc")
    result = subprocess.run(
        [mandoc, "-T", "lint", str(MANPAGE)],
        capture_output=True,
        text=True,
        env=RENDER_ENV,
        timeout=30,
        check=False,
    )
    assert (result.stdout + result.stderr) == ""
    assert result.returncode == 0


def test_man_renders_it() -> None:
    man = shutil.which("man")
    if man is None:
        pytest.skip("man not installed: apt-get install man-db")
    result = subprocess.run(
        [man, "-l", str(MANPAGE)],
        capture_output=True,
        text=True,
        env=RENDER_ENV,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{heading}$", text, re.M), heading
    assert "75 (EX_TEMPFAIL)" in text
    assert "--default-domain domain" in text
    assert ".It" not in text and "\\-" not in text  # no macro leaked as text
