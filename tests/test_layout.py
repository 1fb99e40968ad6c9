"""The architecture, checked: which room may import which, and what `gmail` loads.

Rooms, bottom to top: the shared core (errors, protocol, config, transport), the
message, the queue, and the commands on top; the server stands beside them and
shares only the protocol and the errors.  An arrow never runs upward.
"""

from __future__ import annotations

import ast
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "gaemail"

CORE = "core"
ROOMS = {
    # module prefix -> room
    "gaemail.errors": CORE,
    "gaemail.protocol": CORE,
    "gaemail.config": CORE,
    "gaemail.transport": CORE,
    "gaemail.proxy_env": CORE,
    "gaemail.message": "message",
    "gaemail.queue": "queue",
    "gaemail.server": "server",
}
COMMANDS = "commands"  # every other module: cli, admin, api, django...
MAY_IMPORT = {
    CORE: {CORE},
    "message": {CORE, "message"},
    "queue": {CORE, "message", "queue"},
    "server": {"server", CORE},  # of the core, only SERVER_SHARES
    COMMANDS: {CORE, "message", "queue", "server", COMMANDS},
}
# What the server may use of the shared core: the wire protocol and the errors.
SERVER_SHARES = ("gaemail.errors", "gaemail.protocol")


def room_of(module: str) -> str:
    for prefix, room in ROOMS.items():
        if module == prefix or module.startswith(prefix + "."):
            return room
    return COMMANDS


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def gaemail_imports(path: Path) -> Iterator[str]:
    """Every gaemail module `path` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from gaemail import protocol` imports the module gaemail.protocol.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if name == "gaemail" or name.startswith("gaemail."):
                yield name


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def known(name: str) -> bool:
    """Whether `name` is a module or package of gaemail (not an attribute)."""
    relative = Path(*name.split("."))
    return (SRC / relative).is_dir() or (SRC / relative).with_suffix(".py").is_file()


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_no_module_imports_a_room_above_its_own(path: Path) -> None:
    importer = module_name(path)
    if importer == "gaemail":
        return  # the public facade: its names load lazily from the rooms
    room = room_of(importer)
    for name in gaemail_imports(path):
        if not known(name) or name == "gaemail":
            continue
        target = room_of(name)
        assert target in MAY_IMPORT[room], f"{importer} ({room}) imports {name} ({target})"
        if room == "server" and target != "server":
            assert name.startswith(SERVER_SHARES), f"{importer} imports {name}"


def test_the_server_shares_only_the_protocol_and_the_errors() -> None:
    for path in modules():
        importer = module_name(path)
        if room_of(importer) != "server":
            continue
        for name in gaemail_imports(path):
            if known(name) and name != "gaemail":
                assert name.startswith(("gaemail.server", *SERVER_SHARES)), (importer, name)


def test_the_queue_never_imports_a_command() -> None:
    for path in modules():
        if room_of(module_name(path)) in ("queue", "message", CORE):
            for name in gaemail_imports(path):
                assert room_of(name) != COMMANDS or name == "gaemail", (path, name)


def _loaded(code: str, env: dict[str, str] | None = None) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_the_server_loads_no_other_gaemail_module() -> None:
    loaded = _loaded("import gaemail.server, gaemail.server.local")
    ours = {m for m in loaded if m == "gaemail" or m.startswith("gaemail.")}
    strays = {
        m for m in ours if m != "gaemail" and not m.startswith(("gaemail.server", *SERVER_SHARES))
    }
    assert not strays
    assert "gaemail.server.app" in ours


class _Accepting(http.server.BaseHTTPRequestHandler):
    """Answers every POST as a proxy that sent the message."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def accepting_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_gmail_sending_a_message_loads_no_httpx_flask_or_sdk(
    accepting_url: str, tmp_path: Path
) -> None:
    gmail = Path(sys.executable).parent / "gmail"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GMAIL_")},
        "GMAIL_PROXY_URL": accepting_url,
        "GMAIL_SECRET_KEY": "k",
        "GMAIL_ENVDIR": str(tmp_path / "none"),
        "GMAIL_QUEUE_DIR": str(tmp_path / "queue"),
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    result = subprocess.run(
        [str(gmail), "-t", "-i", "--no-queue"],
        input=b"From: a@example.com\nTo: b@example.org\nSubject: s\n\nbody\n",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "gaemail" in imported  # the probe saw gmail's own imports
    assert not imported & {"httpx", "httpcore", "flask", "werkzeug", "google"}


# What the repository's top level holds; a run's leftovers (a Maildir a bench made
# in the working directory, say) must not be committed beside it.
TOP_LEVEL = {
    ".ci", ".gcloudignore", ".gitignore", "Makefile", "README.md", "app.yaml", "bench",
    "contrib", "exim", "main.py", "man", "packaging", "pyproject.toml", "requirements.txt",
    "scripts", "src", "tests",
}  # fmt: skip


def test_the_repository_tracks_only_the_projects_own_top_level_entries() -> None:
    root = SRC.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    tracked = {name.split("/", 1)[0] for name in listed.split("\0") if name}
    assert tracked - TOP_LEVEL == set(), "unexpected files in the repository"
    maildir_files = [n for n in listed.split("\0") if "/new/" in n or "/cur/" in n]
    assert maildir_files == []
