"""`gaemail install-links` in-process through CliRunner: links, their repeat, --force."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from gaemail.admin import gaemail


def install(prefix: Path, *flags: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(
        gaemail, ["install-links", "--prefix", str(prefix), *flags], prog_name="gaemail"
    )
    return done.exit_code, done.stdout, done.stderr


def test_links_point_at_gmail_and_a_repeat_changes_nothing(tmp_path: Path) -> None:
    code, out, _ = install(tmp_path)
    assert code == 0
    target = os.path.realpath(tmp_path / "sendmail")
    assert os.path.basename(target) == "gmail"
    assert os.path.realpath(tmp_path / "mailq") == target
    assert out.splitlines() == [
        f"{tmp_path / 'sendmail'} -> {target}",
        f"{tmp_path / 'mailq'} -> {target}",
    ]
    code, out, _ = install(tmp_path)
    assert code == 0
    assert out.splitlines()[0] == f"{tmp_path / 'sendmail'} already points at {target}"


def test_another_mta_is_kept_unless_forced(tmp_path: Path) -> None:
    other = tmp_path / "exim4"
    other.write_text("#!/bin/sh\n")
    (tmp_path / "sendmail").symlink_to(other)
    code, _, err = install(tmp_path)
    assert code == 64
    assert err.splitlines() == [
        f"gaemail: {tmp_path / 'sendmail'} exists and points at {other}; use --force to replace it"
    ]
    assert os.path.realpath(tmp_path / "sendmail") == str(other)
    code, _, _ = install(tmp_path, "--force")
    assert code == 0
    assert os.path.basename(os.path.realpath(tmp_path / "sendmail")) == "gmail"
