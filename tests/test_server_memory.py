"""The proxy's process hands large freed buffers back to the system (gaemail.server.memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# In a fresh process: a freed 32 MB block raises glibc's threshold unless it is fixed,
# and then a freed 16 MB block stays resident.
PROGRAM = textwrap.dedent("""
    import sys
    from gaemail.server.memory import return_large_buffers

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    if sys.argv[1] == "fixed" and not return_large_buffers():
        sys.exit(3)
    block = bytes(32_000_000)
    del block
    before = rss()
    block = b"x" * 16_000_000
    copy = block + b"y"
    del block, copy
    print(rss() - before)
""")


def _retained_kib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60
    )
    if done.returncode == 3:
        pytest.skip("no glibc mallopt here")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_a_freed_large_buffer_is_returned_once_the_threshold_is_fixed() -> None:
    assert _retained_kib("dynamic") > 16_000  # what the proxy would keep without it
    assert _retained_kib("fixed") < 2_000


def test_the_app_fixes_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    from gaemail.server import ServerConfig, app

    calls: list[bool] = []
    monkeypatch.setattr(app, "return_large_buffers", lambda: calls.append(True) or True)
    app.create_app(ServerConfig(keys=(b"k",)))
    assert calls == [True]
