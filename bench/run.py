"""gaemail's benchmark: `make bench`, or `.venv/bin/python bench/run.py [--quick] [--runs N]`.

Method (see bench/README.md and shared/reference/perf-anchors.md):

- Whole processes are timed from outside, fork/exec to reap (perf_counter_ns
  around Popen + os.wait4), with the environment cron gives a job; every command
  uses the venv's interpreter, never the pyenv shim.
- Commands compared with each other run interleaved, one of each per round in
  alternating order, after warm-up rounds.  A ratio is the median of the
  per-round ratios, shown with their min-max; absolute times drift more than
  ratios on a shared machine, so trust the ratios.
- Everything listens on 127.0.0.1 only; every server the bench starts is stopped
  by its process id when the bench ends, however it ends.

It prints one report and writes the raw numbers to bench/results/*.json.  A
missed target is reported, not an error: the exit status is 1 only when a
measurement could not be made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import anatomy
import latency
import proxy
import queue_flush
import throughput
from paired import BenchError
from report import Section
from workbench import BENCH_DIR, QUICK, ROOT, Counts, Features, Workbench

SECTIONS = ("a", "b", "c", "d", "imports")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--runs", type=int, help="timed rounds per latency group (default 30)")
    parser.add_argument("--warmup", type=int, help="discarded rounds first (default 2)")
    parser.add_argument("--wrk-seconds", type=int, help="seconds per wrk run (default 3)")
    parser.add_argument("--wrk-rounds", type=int, help="wrk runs per endpoint (default 3)")
    parser.add_argument("--flush-messages", type=int, help="messages to flush (default 1000)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}"
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args(argv)


def counts_from(options: argparse.Namespace) -> Counts:
    counts = QUICK if options.quick else Counts()
    given = {
        "runs": options.runs,
        "warmup": options.warmup,
        "wrk_seconds": options.wrk_seconds,
        "wrk_rounds": options.wrk_rounds,
        "flush_messages": options.flush_messages,
    }
    return replace(counts, **{k: v for k, v in given.items() if v is not None})


def plan(
    bench: Workbench, only: set[str], stack: contextlib.ExitStack
) -> list[tuple[str, Callable[[], Section]]]:
    """The sections to run, in order; starts the servers they share."""
    steps: list[tuple[str, Callable[[], Section]]] = []
    if only & {"a", "c", "d", "imports"}:
        stack.callback(proxy.start_proxy(bench).stop)
    smtp_port = 0
    if only & {"c", "d"}:
        sink, smtp_port = proxy.start_smtp_sink(bench)
        stack.callback(sink.stop)
    steps += [
        ("a", lambda: latency.synchronous(bench)),
        ("c", lambda: latency.against_msmtp(bench, smtp_port)),
    ]
    if bench.features.queue:
        steps += [
            ("d", lambda: latency.background(bench, smtp_port)),
            ("d", lambda: queue_flush.flush_vs_sync(bench)),
        ]
    steps += [
        ("b", lambda: throughput.server_throughput(bench)),
        ("imports", lambda: anatomy.startup_anatomy(bench)),
    ]
    return [(key, step) for key, step in steps if key in only]


def measure(bench: Workbench, only: set[str]) -> tuple[list[Section], list[str]]:
    sections: list[Section] = []
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        try:
            steps = plan(bench, only, stack)
        except BenchError as exc:
            return [], [f"the servers could not start: {exc}"]
        if "d" in only and not bench.features.queue:
            failures.append("(d) not measured: this gmail has no queue (--no-queue, --queue-dir)")
        for key, step in steps:
            print(f"bench: running ({key}) ...", file=sys.stderr, flush=True)
            try:
                sections.append(step())
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                failures.append(f"({key}) could not be measured: {exc}")
    return sections, failures


def header(bench: Workbench, elapsed: float) -> list[str]:
    counts = bench.counts
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"gaemail bench  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {git_revision()}",
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load {load}; "
        f"CPython {platform.python_version()} ({bench.python}); took {elapsed:.0f} s",
        f"counts: {counts.runs} timed rounds after {counts.warmup} warm-up; wrk "
        f"{counts.wrk_rounds}x{counts.wrk_seconds}s; flush {counts.flush_messages} messages",
        f"proxy for (a) (c) (d): {bench.proxy.kind if bench.proxy else 'none'}",
        "cells: median (min-max); ratios: median of per-round ratios (min-max); "
        "F = the venv's python -c pass",
    ]


def summary(sections: list[Section], failures: list[str]) -> list[str]:
    lines = ["targets:"]
    lines += [f"  ({s.key}) {v.line()}" for s in sections for v in s.verdicts]
    lines += [f"  {failure}" for failure in failures]
    return lines


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = " (src/ has uncommitted changes)" if git("status", "--porcelain", "--", "src") else ""
    return f"git {git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def save(options: argparse.Namespace, bench: Workbench, sections: list[Section]) -> Path:
    results_dir: Path = options.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {
        "revision": git_revision(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "counts": asdict(bench.counts),
        "features": asdict(bench.features),
        "proxy": bench.proxy.kind if bench.proxy else None,
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "data": s.data,
                "verdicts": [asdict(v) for v in s.verdicts],
            }
            for s in sections
        ],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    only = set(options.only.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="gaemail-bench-"))
    bench = Workbench(scratch, counts_from(options), Features.probe())
    started = time.monotonic()
    try:
        sections, failures = measure(bench, only)
    finally:
        if options.keep:
            print(f"bench: scratch kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    lines = header(bench, time.monotonic() - started)
    for section in sections:
        lines += ["", *section.render()]
    lines += ["", *summary(sections, failures)]
    saved = save(options, bench, sections)
    lines.append(f"raw numbers: {saved.relative_to(ROOT) if saved.is_relative_to(ROOT) else saved}")
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
