"""(d) second half: one `gmail -q` flushing N queued messages, against N synchronous sends.

The N messages are queued first with `gmail -t -i -odq` (untimed, several at a
time).  The flush is one whole process, timed from outside.  N separate sends
are not run in full: a sample of `gmail -t -i --no-queue` runs is timed and N
times its mean is the loop's time, since the loop's processes run one after
another and nothing else would differ.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from latency import wait_drained
from paired import BenchError, Command, Run, Spread, interleave, run_once
from proxy import outbox_count
from report import Section, at_least
from workbench import MESSAGE, Workbench


def enqueue(bench: Workbench, count: int) -> float:
    """Queue `count` copies of msg.eml with -odq; returns the seconds it took."""
    command = Command("gmail -t -i -odq", (str(bench.gmail), "-t", "-i", "-odq"), MESSAGE)
    env = bench.client_env()

    def one(_: int) -> Run:
        with tempfile.TemporaryFile() as errors:
            return run_once(command, env, errors)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(one, range(count)))
    queued = len(list((bench.queue_dir / "new").iterdir()))
    if queued != count:
        raise BenchError(f"queued {count} messages but {queued} are in the queue")
    return time.perf_counter() - start


def flush(bench: Workbench) -> tuple[Run, float | None]:
    """Time one `gmail -q`, check that it emptied the queue; its run and peak RSS in MiB.

    GNU time wraps the flush when it is there: a millisecond on a run of seconds.
    """
    gnu_time = shutil.which("time", path="/usr/bin")
    rss_file = bench.scratch / "flush.rss"
    wrapper = (gnu_time, "-f", "%M", "-o", str(rss_file)) if gnu_time else ()
    command = Command("gmail -q", (*wrapper, str(bench.gmail), "-q"))
    with open(bench.scratch / "flush.stderr", "w+b") as errors:
        run = run_once(command, bench.client_env(), errors)
    wait_drained(bench, timeout=0)
    rss = int(rss_file.read_text().split()[-1]) / 1024 if gnu_time else None
    return run, rss


def process_cpu_ms(pid: int | None) -> float | None:
    """User + system CPU ms of a running process so far, from /proc; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    # After the command's ")": state is field 3, utime 14 and stime 15 (proc(5)).
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


SYNC = "gmail -t -i --no-queue"


def flush_vs_sync(bench: Workbench) -> Section:
    count = bench.counts.flush_messages
    wait_drained(bench)
    before = outbox_count(bench)
    enqueue_s = enqueue(bench, count)
    server_pid = bench.proxy.pid if bench.proxy else None
    server_before = process_cpu_ms(server_pid)
    flushed, flush_rss = flush(bench)
    server_after = process_cpu_ms(server_pid)
    after = outbox_count(bench)
    if before is not None and after is not None and after - before != count:
        raise BenchError(f"flushed {count} messages but the outbox got {after - before}")
    sample = sync_sample(bench)
    flush_ms = flushed.wall_ns / 1e6
    loop_ms = count * statistics.fmean(sample)
    speedup = Spread(
        loop_ms / flush_ms, count * min(sample) / flush_ms, count * max(sample) / flush_ms
    )
    cpu_ms = flushed.cpu_ns / 1e6
    section = Section("d", f"queue: one gmail -q flushing {count:,} queued messages")
    section.lines += [
        f"queued first with gmail -t -i -odq, untimed: {enqueue_s:.1f} s for {count:,} processes",
        f"gmail -q, whole process: {flush_ms:,.0f} ms = {count / flush_ms * 1e3:,.0f} messages/s;"
        f" {cpu_ms:,.0f} ms CPU ({cpu_ms / count:.2f} ms per message); peak RSS {_mib(flush_rss)}",
        _server_line(server_before, server_after, count),
        f"{count:,} separate {SYNC}: {loop_ms:,.0f} ms, extrapolated as {count:,} x the mean"
        f" of {len(sample)} timed runs ({Spread.of(sample).show(1)} ms each)",
        "speedup = extrapolated loop / flush; its range uses the sample's min and max",
    ]
    target = f"gmail -q >= 20x faster than {count:,} sync sends"
    section.verdicts.append(at_least(target, speedup, 20))
    section.data = {
        "messages": count,
        "enqueue_s": enqueue_s,
        "flush": {"wall_ns": flushed.wall_ns, "cpu_ns": flushed.cpu_ns, "peak_rss_mib": flush_rss},
        "server_cpu_ms": (
            None if server_before is None or server_after is None else server_after - server_before
        ),
        "sync_sample_wall_ms": sample,
        "extrapolated_loop_ms": loop_ms,
        "speedup": speedup.median,
        "outbox_before_after": [before, after],
    }
    return section


def sync_sample(bench: Workbench) -> list[float]:
    """Wall ms of --runs synchronous sends, after the warm-up runs."""
    sync = Command(SYNC, (str(bench.gmail), "-t", "-i", "--no-queue"), MESSAGE)
    counts = bench.counts
    group = interleave(
        "sync-sample",
        [sync],
        bench.client_env(),
        runs=counts.runs,
        warmup=counts.warmup,
        scratch=bench.scratch,
    )
    return group.wall_ms(sync.label)


def _server_line(before: float | None, after: float | None, count: int) -> str:
    if before is None or after is None:
        return "the proxy's CPU time: n/a (no /proc entry for it)"
    cpu_ms = after - before
    return (
        f"the proxy (gaemail serve) during the flush: {cpu_ms:,.0f} ms CPU"
        f" ({cpu_ms / count:.2f} ms per message)"
    )


def _mib(value: float | None) -> str:
    return "n/a (no /usr/bin/time)" if value is None else f"{value:.1f} MiB"
