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


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("case", "status", "answer"),
    [
        ("v1:nesting-5000-deep", 400, "more than 1000 MIME parts"),
        ("v2:subject-52631-encoded-words", 400, "message_refused"),
        ("v1:cc-499-named-and-150-words", 204, ""),
    ],
)
def test_hostile_bench_runs_a_case_as_gaemail_serve(case: str, status: int, answer: str) -> None:
    # The figures are the bench's to judge; here only that it runs and what it was answered.
    hostile = BENCH.parent / "hostile.py"
    done = subprocess.run(
        [sys.executable, str(hostile), "--case", case],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["case"], result["status"]) == (case, status)
    assert answer in result["answer"]
    assert result["bytes"] > 0
