"""The benchmark script runs end to end with tiny counts (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.e2e
def test_bench_runs_with_tiny_counts(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--runs=1",
            "--warmup=0",
            "--only=a,imports",
            f"--results-dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(a) cold-process send" in done.stdout
    assert "import gaemail.cli" in done.stdout
    assert "targets:" in done.stdout
    (saved,) = tmp_path.glob("bench-*.json")
    sections = json.loads(saved.read_text())["sections"]
    assert [s["key"] for s in sections] == ["a", "imports"]
