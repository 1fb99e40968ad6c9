"""Import-time anatomy and peak RSS of gmail's start-up, so regressions show by name.

`python -X importtime` is run on `import gaemail.cli` (what the `gmail` entry
point loads before main() runs) and on a whole synchronous send (which also
imports what main() loads lazily).  Each module's figures are the median over a
few runs; modules the bare interpreter already imports at start-up are left out.
importtime inflates every figure a little: compare them with each other.
"""

from __future__ import annotations

import statistics
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latency import sendmail_sync_flags
from paired import BenchError
from report import Section, table
from workbench import MESSAGE, Workbench

TOP = 15


@dataclass(frozen=True)
class Imported:
    """One module's line of -X importtime, in ms."""

    name: str
    depth: int
    self_ms: float
    cumulative_ms: float


def parse_importtime(text: str) -> list[Imported]:
    """The modules of -X importtime's output, in its order (children before parents)."""
    modules = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, column = line[len("import time:") :].split("|", 2)
        column = column[1:]  # the space after the bar
        name = column.lstrip(" ")
        depth = (len(column) - len(name)) // 2
        modules.append(Imported(name, depth, int(self_us) / 1000, int(cumulative_us) / 1000))
    return modules


def preorder(modules: list[Imported]) -> list[Imported]:
    """importtime lists a module after what it imported; this puts it before them."""
    pending: dict[int, list[tuple[Imported, list[Any]]]] = defaultdict(list)
    for module in modules:
        children = pending.pop(module.depth + 1, [])
        pending[module.depth].append((module, children))
    ordered: list[Imported] = []

    def walk(nodes: list[tuple[Imported, list[Any]]]) -> None:
        for module, children in nodes:
            ordered.append(module)
            walk(children)

    for depth in sorted(pending):
        walk(pending[depth])
    return ordered


def importers(modules: list[Imported]) -> dict[str, str]:
    """Who imported each module: the first later module one level up."""
    found: dict[str, str] = {}
    waiting: dict[int, list[str]] = defaultdict(list)
    for module in modules:
        for child in waiting.pop(module.depth + 1, []):
            found[child] = module.name
        waiting[module.depth].append(module.name)
    return found


def median_imports(runs: Sequence[list[Imported]]) -> list[Imported]:
    """Each module at its median figures, in first-run order."""
    selfs: dict[str, list[float]] = defaultdict(list)
    cumulatives: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for m in run:
            selfs[m.name].append(m.self_ms)
            cumulatives[m.name].append(m.cumulative_ms)
    return [
        Imported(
            m.name,
            m.depth,
            statistics.median(selfs[m.name]),
            statistics.median(cumulatives[m.name]),
        )
        for m in runs[0]
    ]


def importtime(bench: Workbench, argv: Sequence[str], stdin: Path | None = None) -> list[Imported]:
    runs = []
    for _ in range(bench.counts.anatomy_runs):
        with open(stdin or "/dev/null", "rb") as source:
            done = subprocess.run(
                [str(bench.python), "-X", "importtime", *argv],
                stdin=source,
                capture_output=True,
                text=True,
                env=bench.client_env(),
                check=False,
            )
        if done.returncode != 0:
            raise BenchError(f"importtime of {' '.join(argv)} exited {done.returncode}")
        runs.append(parse_importtime(done.stderr))
    return median_imports(runs)


def startup_anatomy(bench: Workbench) -> Section:
    startup = {m.name for m in importtime(bench, ["-c", "pass"])}
    cli = [m for m in importtime(bench, ["-c", "import gaemail.cli"]) if m.name not in startup]
    send_flags = sendmail_sync_flags(bench)
    send = importtime(bench, [str(bench.gmail), *send_flags], MESSAGE)
    baseline = importtime(bench, bench.stdlib_client("-t", "-i")[1:], MESSAGE)
    lazy = [m for m in send if m.name not in startup | {m.name for m in cli}]
    section = Section("imports", "start-up anatomy: python -X importtime, cumulative ms")
    section.lines.append(
        f"import gaemail.cli: {_total(cli):.1f} ms over the bare interpreter, {len(cli)} modules;"
        f" top {TOP} by cumulative time:"
    )
    section.lines += _import_table(cli)
    section.lines += [
        "",
        f"imported later, by gmail {' '.join(send_flags)} < msg.eml (the console script and"
        f" main()'s lazy imports): {_total(lazy):.1f} ms, {len(lazy)} modules:",
    ]
    section.lines += _import_table(lazy)
    section.lines += ["", *_only_in_gmail(send, baseline, startup, " ".join(send_flags))]
    section.lines += ["", "peak RSS: the RSS MiB columns above (GNU time %M, median of a few runs)"]
    section.data = {
        "import_gaemail_cli": [asdict(m) for m in cli],
        "lazy_on_send": [asdict(m) for m in lazy],
        "gmail_send": [asdict(m) for m in send],
        "stdlib_client_send": [asdict(m) for m in baseline],
    }
    return section


def _total(modules: list[Imported]) -> float:
    return sum(m.cumulative_ms for m in modules if m.depth == 0)


def _only_in_gmail(
    send: list[Imported], baseline: list[Imported], startup: set[str], flags: str
) -> list[str]:
    """Modules a gmail send imports and the stdlib client does not, by self time."""
    theirs = {m.name for m in baseline} | startup
    ours = [m for m in send if m.name not in startup]
    extra = [m for m in ours if m.name not in theirs]
    by = importers(send)

    def self_ms(modules: list[Imported]) -> float:
        return sum(m.self_ms for m in modules)

    theirs_total = self_ms([m for m in baseline if m.name not in startup])
    lines = [
        f"whole sends, summed self times: gmail {flags} {self_ms(ours):.1f} ms in {len(ours)}"
        f" modules; stdlib_client -t -i {theirs_total:.1f} ms.  Only gmail imports"
        f" {len(extra)} modules, {self_ms(extra):.1f} ms; the top {TOP}:",
    ]
    top = sorted(extra, key=lambda m: m.self_ms, reverse=True)[:TOP]
    rows = [[m.name, f"{m.self_ms:.1f}", by.get(m.name, "(top level)")] for m in top]
    return lines + table(["module", "self ms", "imported by"], rows, text=(0, 2))


def _import_table(modules: list[Imported]) -> list[str]:
    """The TOP modules by cumulative time, each under the module that imported it."""
    top = {m.name for m in sorted(modules, key=lambda m: m.cumulative_ms, reverse=True)[:TOP]}
    rows = [
        ["  " * m.depth + m.name, f"{m.cumulative_ms:.1f}", f"{m.self_ms:.1f}"]
        for m in preorder(modules)
        if m.name in top
    ]
    return table(["module (indented under its importer)", "cum ms", "self ms"], rows)
