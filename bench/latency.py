"""Cold-process send latency: gmail against the stdlib client, msmtp and the bare interpreter.

Sections (a) synchronous sends, mail- and sendmail-style; (c) the sendmail path
against msmtp to a local SMTP sink; and (d) gmail -odb, whose caller-visible time
ends when the message is durably queued and a detached child takes over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from paired import BenchError, Command, Group, Spread, interleave
from report import Section, at_most, group_table
from workbench import MESSAGE, Workbench

SUBJECT = "Cron <root@web1> nightly-backup"
RECIPIENT = "ops@example.com"
MAIL_SHOWN = "-s SUBJECT ADDR"
SETTLE_TIMEOUT = 30.0


def sendmail_sync_flags(bench: Workbench) -> tuple[str, ...]:
    """-t -i, delivering before exit: --no-queue once gmail queues by default."""
    return ("-t", "-i", "--no-queue") if bench.features.queue else ("-t", "-i")


def _gmail(
    bench: Workbench,
    flags: tuple[str, ...],
    stdin: Path,
    settle: Callable[[], None] | None = None,
    shown: str | None = None,
) -> Command:
    label = "gmail " + (shown or " ".join(flags))
    return Command(label, (str(bench.gmail), *flags), stdin, settle)


def _stdlib(
    bench: Workbench, flags: tuple[str, ...], stdin: Path, shown: str | None = None
) -> Command:
    label = "stdlib_client " + (shown or " ".join(flags))
    return Command(label, bench.stdlib_client(*flags), stdin)


def _floor(bench: Workbench, stdin: Path) -> Command:
    return Command("python -c pass", bench.floor(), stdin)


def _msmtp(bench: Workbench, port: int) -> Command:
    if bench.msmtp is None:
        raise BenchError("msmtp is not installed (scripts/setup-system installs it)")
    argv = (bench.msmtp, "--host=127.0.0.1", f"--port={port}", "-f", "a@example.com")
    return Command("msmtp -f a@ b@", (*argv, "b@example.com"), MESSAGE)


def _time(bench: Workbench, name: str, commands: list[Command]) -> Group:
    counts = bench.counts
    return interleave(
        name,
        commands,
        bench.client_env(),
        runs=counts.runs,
        warmup=counts.warmup,
        scratch=bench.scratch,
        rss_runs=counts.rss_runs,
    )


def synchronous(bench: Workbench) -> Section:
    """(a): mail-style and sendmail-style gmail, each against the stdlib client and F."""
    mail_flags = ("-s", SUBJECT, RECIPIENT)
    mail = _time(
        bench,
        "mail-style",
        [
            _gmail(bench, mail_flags, bench.body, shown=MAIL_SHOWN),
            _stdlib(bench, mail_flags, bench.body, shown=MAIL_SHOWN),
            _floor(bench, bench.body),
        ],
    )
    sync = sendmail_sync_flags(bench)
    sendmail = _time(
        bench,
        "sendmail-style",
        [
            _gmail(bench, sync, MESSAGE),
            _stdlib(bench, ("-t", "-i"), MESSAGE),
            _floor(bench, MESSAGE),
        ],
    )
    section = Section("a", "cold-process send, synchronous: whole process, fork/exec to reap")
    section.lines += [f"mail-style: gmail -s SUBJECT {RECIPIENT} < body ({_size(bench.body)})"]
    section.lines += group_table(mail, _baselines(mail))
    section.lines += ["", f"sendmail-style: gmail {' '.join(sync)} < msg.eml ({_size(MESSAGE)})"]
    section.lines += group_table(sendmail, _baselines(sendmail))
    for group in (mail, sendmail):
        gmail, stdlib = group.commands[0].label, group.commands[1].label
        ratio = Spread.of(group.ratios(gmail, stdlib))
        section.verdicts.append(at_most(f"{gmail} <= 1.5x stdlib client", ratio, 1.5))
    section.data = {"groups": [mail.as_json(), sendmail.as_json()]}
    return section


def _baselines(group: Group) -> list[tuple[str, str]]:
    names = {"stdlib_client": "stdlib", "msmtp": "msmtp", "python": "F"}
    return [
        (c.label, name)
        for c in group.commands
        for prefix, name in names.items()
        if c.label.startswith(prefix)
    ]


def against_msmtp(bench: Workbench, smtp_port: int) -> Section:
    """(c): the synchronous sendmail path against msmtp, a separate interleaved group."""
    sync = sendmail_sync_flags(bench)
    group = _time(
        bench,
        "sendmail-vs-msmtp",
        [
            _gmail(bench, sync, MESSAGE),
            _stdlib(bench, ("-t", "-i"), MESSAGE),
            _msmtp(bench, smtp_port),
            _floor(bench, MESSAGE),
        ],
    )
    section = Section("c", "sendmail path against msmtp (SMTP to bench/smtp_sink.py on loopback)")
    section.lines += group_table(group, _baselines(group))
    msmtp = group.commands[2].label
    cpu = Spread.of(group.cpu_ms(msmtp)).median
    wall = Spread.of(group.wall_ms(msmtp)).median
    section.lines.append(
        f"msmtp uses {cpu:.1f} ms of CPU in {wall:.1f} ms of wall time: the rest is waiting"
        " (it writes DATA line by line with Nagle on; see perf-anchors.md)"
    )
    gmail, stdlib = group.commands[0].label, group.commands[1].label
    ratio = Spread.of(group.ratios(gmail, stdlib))
    section.verdicts.append(at_most(f"{gmail} <= 1.5x stdlib client", ratio, 1.5))
    section.data = {"groups": [group.as_json()]}
    return section


def background(bench: Workbench, smtp_port: int) -> Section:
    """(d) first half: what the caller of gmail -odb waits for, against the same peers."""
    group = _time(
        bench,
        "odb",
        [
            _gmail(bench, ("-t", "-i", "-odb"), MESSAGE, settle=lambda: wait_drained(bench)),
            _stdlib(bench, ("-t", "-i"), MESSAGE),
            _msmtp(bench, smtp_port),
            _floor(bench, MESSAGE),
        ],
    )
    section = Section("d", "queue: gmail -odb (queue durably, deliver from a detached child)")
    section.lines += group_table(group, _baselines(group))
    section.lines.append(
        "caller-visible time only; after each -odb run the bench waits, untimed, until the"
        " child has delivered (queue empty), so it never overlaps the next run"
    )
    gmail, stdlib = group.commands[0].label, group.commands[1].label
    ratio = Spread.of(group.ratios(gmail, stdlib))
    section.verdicts.append(at_most(f"{gmail} <= 1.0x stdlib client", ratio, 1.0))
    section.data = {"groups": [group.as_json()]}
    return section


def wait_drained(bench: Workbench, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until gmail's queue holds nothing waiting; raise if anything failed."""
    deadline = time.monotonic() + timeout
    while True:
        failed = _entries(bench.queue_dir / "failed")
        if failed:
            raise BenchError(f"{len(failed)} queued message(s) failed; see {bench.queue_dir}")
        if not _entries(bench.queue_dir / "new") and not _entries(bench.queue_dir / "tmp"):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the queue in {bench.queue_dir} did not drain in {timeout:.0f}s")
        time.sleep(0.002)


def _entries(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir()]
    except FileNotFoundError:
        return []


def _size(path: Path) -> str:
    return f"{path.stat().st_size:,} bytes"
