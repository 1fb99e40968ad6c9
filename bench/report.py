"""The report's pieces: sections, aligned tables, and verdicts against the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from paired import Group, Spread


@dataclass(frozen=True)
class Verdict:
    """One target: `value` is a median-of-ratios spread, `met` compares its median."""

    target: str
    value: Spread
    met: bool

    def line(self) -> str:
        return f"{'MET ' if self.met else 'MISS'}  {self.target}: {self.value.show()}"


def at_most(target: str, value: Spread, limit: float) -> Verdict:
    return Verdict(target, value, value.median <= limit)


def at_least(target: str, value: Spread, limit: float) -> Verdict:
    return Verdict(target, value, value.median >= limit)


@dataclass
class Section:
    """What one part of the bench prints, judges and saves."""

    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)

    def render(self) -> list[str]:
        out = [f"({self.key}) {self.title}", *(f"  {line}" for line in self.lines)]
        out += [f"  {verdict.line()}" for verdict in self.verdicts]
        return out


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], text: Sequence[int] = (0,)
) -> list[str]:
    """Columns padded to their widest cell: those in `text` left-aligned, numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.ljust(width) if i in text else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [line(header), *(line(row) for row in rows)]


def group_table(group: Group, baselines: Sequence[tuple[str, str]]) -> list[str]:
    """Wall ms, CPU ms and peak RSS of each command, with ratios to each (label, name)."""
    header = ["command", "wall ms", "CPU ms", "RSS MiB", *(f"x {name}" for _, name in baselines)]
    rows = []
    for command in group.commands:
        label = command.label
        rss = group.rss_mib(label)
        ratios = [
            "-" if label == base else Spread.of(group.ratios(label, base)).show()
            for base, _ in baselines
        ]
        rows.append(
            [
                label,
                Spread.of(group.wall_ms(label)).show(1),
                f"{Spread.of(group.cpu_ms(label)).median:.1f}",
                f"{Spread.of(rss).median:.1f}" if rss else "n/a",
                *ratios,
            ]
        )
    return table(header, rows)
