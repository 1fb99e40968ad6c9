"""`gaemail install-links` in-process through CliRunner: links, their repeat, --force, --undo.

tests/test_links.py runs the installed command; this drives the click command itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from gaemail.admin import gaemail

PATHS = ("sbin/sendmail", "lib/sendmail", "bin/mailq", "bin/newaliases")


def install(prefix: Path, *flags: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(
        gaemail, ["install-links", "--prefix", str(prefix), *flags], prog_name="gaemail"
    )
    return done.exit_code, done.stdout, done.stderr


def test_links_point_at_gmail_and_a_repeat_changes_nothing(tmp_path: Path) -> None:
    code, out, _ = install(tmp_path)
    assert code == 0
    target = os.path.realpath(tmp_path / "sbin" / "sendmail")
    assert os.path.basename(target) == "gmail"
    assert {os.path.realpath(tmp_path / p) for p in PATHS[:3]} == {target}
    assert os.path.basename(os.path.realpath(tmp_path / "bin" / "newaliases")) == "newaliases"
    assert out.splitlines()[0] == f"{tmp_path / 'sbin' / 'sendmail'} -> {target}"
    code, out, _ = install(tmp_path)
    assert code == 0
    assert out.splitlines()[0] == f"{tmp_path / 'sbin' / 'sendmail'} already points at {target}"


def test_another_mta_is_kept_unless_forced_and_undo_restores_it(tmp_path: Path) -> None:
    other = tmp_path / "exim4"
    other.write_text("#!/bin/sh\n")
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "sendmail").symlink_to(other)
    code, _, err = install(tmp_path)
    assert code == 64
    (line,) = err.splitlines()
    assert line.startswith(f"gaemail: {tmp_path / 'sbin' / 'sendmail'} -> {other} exist")
    assert os.path.realpath(tmp_path / "sbin" / "sendmail") == str(other)
    assert not (tmp_path / "bin").exists()  # nothing changed
    code, _, _ = install(tmp_path, "--force")
    assert code == 0
    assert os.path.basename(os.path.realpath(tmp_path / "sbin" / "sendmail")) == "gmail"
    code, _, _ = install(tmp_path, "--undo")
    assert code == 0
    assert os.path.realpath(tmp_path / "sbin" / "sendmail") == str(other)
    assert not os.path.lexists(tmp_path / "bin" / "mailq")
