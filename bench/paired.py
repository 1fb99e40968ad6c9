"""Whole-process timing, interleaved round by round, and the statistics of the report.

A run is timed from outside: perf_counter_ns just before the fork/exec and just
after the child is reaped with os.wait4, which also yields the child's CPU time.
Peak RSS is measured apart, in a few more runs under GNU `/usr/bin/time -f %M`:
Linux carries a process's peak RSS across exec, so a child forked from this
(much larger) Python process would report the bench's own size.  The
commands of a group run once each per round, in alternating order (A B C, then
C B A), so drift of the machine hits them alike; a ratio is computed per round
and the report gives the median of those per-round ratios with their min-max.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO


class BenchError(RuntimeError):
    """A measurement could not be made; the message says which and why."""


@dataclass(frozen=True)
class Command:
    """One command of a group.  `settle` runs, untimed, after each of its runs."""

    label: str
    argv: tuple[str, ...]
    stdin: Path | None = None
    settle: Callable[[], None] | None = None


@dataclass(frozen=True)
class Run:
    wall_ns: int
    cpu_ns: int


@dataclass(frozen=True)
class Spread:
    """Median and range of a sample."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise BenchError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values))

    def show(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


@dataclass
class Group:
    """The runs of commands timed together; runs[label][i] belongs to round i."""

    name: str
    commands: list[Command]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    rss_kib: dict[str, list[int]] = field(default_factory=dict)

    def wall_ms(self, label: str) -> list[float]:
        return [run.wall_ns / 1e6 for run in self.runs[label]]

    def cpu_ms(self, label: str) -> list[float]:
        return [run.cpu_ns / 1e6 for run in self.runs[label]]

    def rss_mib(self, label: str) -> list[float]:
        return [kib / 1024 for kib in self.rss_kib.get(label, [])]

    def ratios(self, label: str, baseline: str) -> list[float]:
        """Per-round wall-time ratios label / baseline."""
        pairs = zip(self.runs[label], self.runs[baseline], strict=True)
        return [a.wall_ns / b.wall_ns for a, b in pairs]

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "commands": {c.label: list(c.argv) for c in self.commands},
            "runs": {
                label: {
                    "wall_ns": [r.wall_ns for r in runs],
                    "cpu_ns": [r.cpu_ns for r in runs],
                    "peak_rss_kib": self.rss_kib.get(label, []),
                }
                for label, runs in self.runs.items()
            },
        }


def run_once(command: Command, env: Mapping[str, str], errors: IO[bytes]) -> Run:
    """Run `command` to completion; raises BenchError unless it exits 0."""
    errors.seek(0)
    errors.truncate()
    with open(command.stdin or os.devnull, "rb") as stdin:
        start = time.perf_counter_ns()
        proc = subprocess.Popen(
            command.argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=errors, env=dict(env)
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter_ns() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace").strip()
        raise BenchError(f"{command.label} exited {proc.returncode}: {said or '(no stderr)'}")
    return Run(wall, round((usage.ru_utime + usage.ru_stime) * 1e9))


def peak_rss_kib(command: Command, env: Mapping[str, str], runs: int, scratch: Path) -> list[int]:
    """GNU time's %M for `runs` runs of `command`; empty without /usr/bin/time."""
    gnu_time = shutil.which("time", path="/usr/bin")
    if gnu_time is None:
        return []
    out = scratch / "time.out"
    timed = replace(command, argv=(gnu_time, "-f", "%M", "-o", str(out), *command.argv))
    values = []
    with open(scratch / "rss.stderr", "w+b") as errors:
        for _ in range(runs):
            run_once(timed, env, errors)
            if command.settle is not None:
                command.settle()
            values.append(int(out.read_text().split()[-1]))
    return values


def interleave(
    name: str,
    commands: Sequence[Command],
    env: Mapping[str, str],
    *,
    runs: int,
    warmup: int,
    scratch: Path,
    rss_runs: int = 0,
) -> Group:
    """Time `commands` round by round, the first `warmup` rounds discarded.

    Then measure each command's peak RSS in `rss_runs` more runs.
    """
    group = Group(name, list(commands), {c.label: [] for c in commands})
    with open(scratch / f"{name}.stderr", "w+b") as errors:
        for round_no in range(warmup + runs):
            order = commands if round_no % 2 == 0 else list(reversed(commands))
            for command in order:
                run = run_once(command, env, errors)
                if command.settle is not None:
                    command.settle()
                if round_no >= warmup:
                    group.runs[command.label].append(run)
    for command in commands:
        group.rss_kib[command.label] = peak_rss_kib(command, env, rss_runs, scratch)
    return group
