"""The App Engine deployment: app.yaml, requirements.txt, .gcloudignore and main.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.appengine.api import appinfo

REPO = Path(__file__).resolve().parent.parent
# The parser accepts any pythonNN; these are runtimes App Engine offers for this code.
SUPPORTED_RUNTIMES = {"python311", "python312", "python313", "python314"}
SUBPROCESS_TIMEOUT = 60


def app_yaml_problems(text: str) -> list[str]:
    """What is wrong with an app.yaml, beyond what the SDK's own parser rejects."""
    info = appinfo.LoadSingleAppInfo(text)
    problems = []
    if info.runtime not in SUPPORTED_RUNTIMES:
        problems.append(f"runtime {info.runtime} is not one of {sorted(SUPPORTED_RUNTIMES)}")
    if info.app_engine_apis is not True:
        problems.append("app_engine_apis must be true for the Mail API")
    entrypoint = info.entrypoint or ""
    for needed in ("gunicorn", "main:app", ":$PORT"):
        if needed not in entrypoint:
            problems.append(f"entrypoint lacks {needed}")
    return problems


def test_app_yaml_passes_the_sdk_parser_and_our_checks() -> None:
    assert app_yaml_problems((REPO / "app.yaml").read_text()) == []


def test_app_yaml_uses_threaded_gunicorn_workers() -> None:
    entrypoint = appinfo.LoadSingleAppInfo((REPO / "app.yaml").read_text()).entrypoint
    assert "gthread" in entrypoint


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("runtime: python312", "runtime: python99"), "runtime python99"),
        (("app_engine_apis: true", "app_engine_apis: false"), "app_engine_apis"),
        (("main:app", "wsgi:application"), "main:app"),
    ],
)
def test_our_checks_catch_what_the_parser_lets_through(
    change: tuple[str, str], problem: str
) -> None:
    text = (REPO / "app.yaml").read_text()
    assert change[0] in text
    problems = app_yaml_problems(text.replace(*change))
    assert any(problem in p for p in problems), problems


def test_requirements_match_the_server_extra() -> None:
    tomllib = pytest.importorskip("tomllib")
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lines = (REPO / "requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert sorted(requirements) == sorted(extra["server"])


def test_gcloudignore_uploads_only_what_the_proxy_needs(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed; it evaluates the ignore patterns here")
    # gcloud reads .gcloudignore with git's pattern rules.
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True, timeout=SUBPROCESS_TIMEOUT)
    shutil.copy(REPO / ".gcloudignore", tmp_path / ".gitignore")
    uploaded = [
        "app.yaml",
        "main.py",
        "requirements.txt",
        "GMAIL_SECRET_KEY",
        "src/gaemail/__init__.py",
        "src/gaemail/errors.py",
        "src/gaemail/protocol/__init__.py",
        "src/gaemail/protocol/v1.py",
        "src/gaemail/server/app.py",
    ]
    left_out = [
        "tests/test_appyaml.py",
        ".venv/bin/python",
        "bench/x.py",
        "README.md",
        "pyproject.toml",
        "src/gaemail.egg-info/PKG-INFO",
        "src/gaemail/__pycache__/x.cpython-311.pyc",
        # The client and the commands stay on the clients.
        "src/gaemail/cli.py",
        "src/gaemail/api.py",
        "src/gaemail/config.py",
        "src/gaemail/admin/__init__.py",
        "src/gaemail/queue/spool.py",
        "src/gaemail/message/compose.py",
        "src/gaemail/server/local/serve.py",
    ]
    result = subprocess.run(
        [git, "-C", str(tmp_path), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(uploaded + left_out),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert sorted(result.stdout.split()) == sorted(left_out)


# main.py under testbed, in a child process: wrap_wsgi_app patches threading and
# replaces os.environ for the whole process, which would leak into other tests.
MAIN_PROBE = textwrap.dedent(
    """
    import json, os, sys
    repo_src = sys.argv[1]
    # Only what is uploaded may be importable: drop the editable install's path.
    sys.path[:] = [p for p in sys.path if os.path.realpath(p) != repo_src]
    sys.path.insert(0, os.getcwd())
    from google.appengine.ext import testbed

    bed = testbed.Testbed()
    bed.activate()
    bed.init_mail_stub()
    bed.init_memcache_stub()
    import main
    import gaemail
    from gaemail.protocol import v1

    client = main.app.test_client()
    got = client.get("/")
    msg = b"From: s@example.com\\nTo: t@example.org\\nSubject: deployed\\n\\nx\\n"
    body = v1.encode_request(msg, b"deploy-key")
    posted = client.post("/", data=body, content_type=v1.CONTENT_TYPE)
    stub = bed.get_stub(testbed.MAIL_SERVICE_NAME)
    print(json.dumps({
        "wrapper_module": main.app.wsgi_app.__module__,
        "package": gaemail.__file__,
        "get": got.status_code,
        "post": posted.status_code,
        "sent": [m.subject for m in stub.get_sent_messages()],
    }))
    bed.deactivate()
    """
)


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """The files gcloud uploads (those .gcloudignore keeps), copied to a fresh directory."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed; it evaluates the ignore patterns here")
    rules = tmp_path / "rules"
    subprocess.run([git, "init", "-q", str(rules)], check=True, timeout=SUBPROCESS_TIMEOUT)
    shutil.copy(REPO / ".gcloudignore", rules / ".gitignore")
    sources = [
        str(p.relative_to(REPO))
        for p in [REPO / "main.py", *(REPO / "src" / "gaemail").rglob("*.py")]
        if "__pycache__" not in p.parts
    ]
    ignored = subprocess.run(
        [git, "-C", str(rules), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(sources),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    ).stdout.split()
    target = tmp_path / "upload"
    for name in sorted(set(sources) - set(ignored)):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, target / name)
    assert (target / "src" / "gaemail" / "server" / "app.py").is_file()
    assert not (target / "src" / "gaemail" / "cli.py").exists()
    return target


def _probe_main(upload: Path, env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", MAIN_PROBE, os.path.realpath(REPO / "src")],
        cwd=upload,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    probe: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return probe


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GMAIL_", "GAE_"))}


def test_main_wraps_the_app_and_sends_through_the_mail_api(upload: Path) -> None:
    probe = _probe_main(upload, {**_clean_env(), "GMAIL_SECRET_KEY": "deploy-key"})
    assert probe["wrapper_module"] == "google.appengine.runtime.middlewares"
    assert str(probe["package"]).startswith(str(upload / "src"))
    assert (probe["get"], probe["post"], probe["sent"]) == (200, 204, ["deployed"])


def test_main_reads_the_key_file_beside_it(upload: Path) -> None:
    (upload / "GMAIL_SECRET_KEY").write_text("# rotating\nnewer-key\ndeploy-key\n")
    probe = _probe_main(upload, _clean_env())
    assert (probe["post"], probe["sent"]) == (204, ["deployed"])


def test_main_without_a_key_refuses_to_start(upload: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", MAIN_PROBE, os.path.realpath(REPO / "src")],
        cwd=upload,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode != 0
    assert "no signing key configured" in result.stderr
