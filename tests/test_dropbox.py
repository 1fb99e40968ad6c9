"""A shared queue made by `gaemail queue init`: users hand mail in without the secret.

`nobody` queues into the drop box; it can neither list nor read the queue nor read
the secret.  The deliverer (root here) flushes, and each message arrives once.  A
user who may read the secret sends at once, and finding the queue unlistable is
not an error for it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_support import (
    GAEMAIL,
    GMAIL,
    Account,
    Server,
    caller_environ,
    check_account_can_run_gmail,
    queued,
    run,
    running_server,
    sendmail_link,
    write_envdir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.debian]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("dropbox")) as s:
        yield s


def message(tag: str) -> bytes:
    return textwrap.dedent(
        f"""\
        From: root (Cron Daemon)
        To: ops@example.com
        Subject: Cron <nobody@host> echo {tag}

        {tag}
        """
    ).encode()


def make_drop_box(public: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a shared queue and running gmail as nobody need root")
    spool = public / "spool"
    result = run(
        [str(GAEMAIL), "queue", "init", "--queue-dir", str(spool), "--user", "root"],
        dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return spool


def delivered_tags(server: Server, tags: list[str]) -> list[str]:
    found = [d.subject.rsplit(" ", 1)[-1] for d in server.delivered()]
    return sorted(t for t in found if t in tags)


def test_nobody_queues_without_the_secret_and_the_deliverer_sends(
    server: Server, public: Path
) -> None:
    nobody = Account.nobody()
    spool = make_drop_box(public)
    paths = write_envdir(public / "envdir", server, Account.current(), GMAIL_QUEUE_DIR=str(spool))
    secret = paths["envdir"] / "GMAIL_SECRET_KEY"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640 and secret.stat().st_gid == 0
    env = caller_environ(paths["envdir"])
    check_account_can_run_gmail(nobody, env)
    sendmail = sendmail_link(public)

    tags = [f"t{uuid.uuid4().hex[:12]}" for _ in range(3)]
    for tag in tags:  # sendmail style: background delivery, which nobody cannot do
        result = run(nobody.command([str(sendmail), "-t", "-i"]), env, message(tag))
        assert (result.returncode, result.stderr) == (0, b"")
    ids = queued(spool)
    assert len(ids) == 3
    for ident in ids:
        info = (spool / "new" / ident).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
            nobody.uid,
            0,
            0o640,
        )
    listing = run(nobody.command([str(GMAIL), "-bp"]), env)
    assert listing.returncode == 74
    assert b"cannot list the queue" in listing.stderr
    assert delivered_tags(server, tags) == []

    flushed = run([str(GMAIL), "-q"], env)  # the deliverer: root reads the secret
    assert (flushed.returncode, flushed.stderr) == (0, b"")
    assert queued(spool) == []
    assert delivered_tags(server, tags) == sorted(tags)


def test_a_user_with_the_secret_sends_at_once_beside_a_drop_box(
    server: Server, public: Path
) -> None:
    nobody = Account.nobody()
    spool = make_drop_box(public)
    paths = write_envdir(public / "envdir", server, nobody, GMAIL_QUEUE_DIR=str(spool))
    env = caller_environ(paths["envdir"])
    check_account_can_run_gmail(nobody, env)
    waiting = f"t{uuid.uuid4().hex[:12]}"
    result = run(nobody.command([str(GMAIL), "-t", "-i", "-odq"]), env, message(waiting))
    assert result.returncode == 0, result.stderr

    # Interactive: sent now; after a send gmail flushes what it can see, and a
    # drop box shows it nothing, which must not turn the success into an error.
    now = f"t{uuid.uuid4().hex[:12]}"
    result = run(nobody.command([str(GMAIL), "-s", f"echo {now}", "ops@example.com"]), env, b"hi\n")
    assert (result.returncode, result.stderr) == (0, b"")
    assert delivered_tags(server, [now, waiting]) == [now]
    assert len(queued(spool)) == 1  # the -odq message waits for the deliverer

    subprocess.run([str(GMAIL), "-q"], env=env, timeout=30, check=True)
    assert delivered_tags(server, [now, waiting]) == sorted([now, waiting])
