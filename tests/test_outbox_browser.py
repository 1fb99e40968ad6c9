"""The outbox view in Debian's headless Chromium, driven by Playwright: a real `gaemail serve`.

Few and fast: the pages render (layout and pixels checked against what the CSS
says), hostile HTML in a message stays inert (a loopback listener that must
receive nothing, a script canary that must never fire), and the list updates
when a message arrives.
"""

from __future__ import annotations

import http.server
import io
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gaemail.protocol import v1
from test_serve_e2e import TIMEOUT, ServeProcess, clean_env, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.debian]
__all__ = ["clean_env", "start_serve"]  # fixtures, imported to be found

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BAR_BLUE = (0x1A, 0x4D, 0x80)  # outbox.css: --bar
MAIL_RED = (0xFF, 0x00, 0x00)  # the rendered message's own inline style
PNG_1PX = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
    b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


class Listener(http.server.BaseHTTPRequestHandler):
    """A loopback 'remote' server: it only counts who asked it for anything."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Listener.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def remote() -> Iterator[str]:
    Listener.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup-system installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        # A fresh profile (--user-data-dir) per test; headless, Debian's binary.
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            accept_downloads=True,
            viewport={"width": 1000, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def outbox_server(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> tuple[str, Callable[[EmailMessage], None]]:
    """The serve URL and send(msg), which POSTs a signed message to it."""
    key_file = tmp_path / "key"
    key_file.write_text("browser-key\n")
    serve = start_serve("--secret-file", str(key_file), "--authorized-sender", "*", env=clean_env)
    url, _, _ = serve.startup(3)

    def send(msg: EmailMessage) -> None:
        import urllib.request

        body = v1.encode_request(msg.as_bytes(), b"browser-key")
        with urllib.request.urlopen(url, data=body, timeout=TIMEOUT) as answer:
            assert answer.status == 204

    return url, send


def message(subject: str, html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.com>"
    msg["To"] = "rcpt@example.org"
    msg["Bcc"] = "hidden@example.org"
    msg["Subject"] = subject
    msg.set_content(f"Text of {subject}.\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
        msg.get_payload()[1].add_related(PNG_1PX, "image", "png", cid="<dot@example.com>")
    msg.add_attachment(
        b"report bytes \x00\xff", maintype="application", subtype="pdf", filename="r.pdf"
    )
    return msg


def pixel(screenshot: bytes, x: int, y: int) -> tuple[int, int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(screenshot)) as image:
        rgb = image.convert("RGB").getpixel((x, y))
    assert isinstance(rgb, tuple)
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def near(color: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 8 for a, b in zip(color, expected, strict=True))


def test_list_and_message_render_and_download(
    outbox_server: Any, browser: Any, tmp_path: Path
) -> None:
    url, send = outbox_server
    html = (
        '<div style="background:#ff0000;height:60px">red block</div>'
        '<p>Hello <img src="cid:dot@example.com"></p>'
    )
    send(message("First"))
    send(message("Second, with HTML", html))
    page = browser.new_page()
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(url + "outbox/")
    rows = page.locator("#messages tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").nth(3).inner_text() == "Second, with HTML"
    bar = page.locator("header.bar").bounding_box()
    assert bar is not None and bar["y"] == 0 and bar["width"] == 1000
    shot = page.screenshot()
    assert near(pixel(shot, 500, 5), BAR_BLUE)
    assert near(pixel(shot, 500, int(bar["height"]) + 20), (255, 255, 255))

    rows.nth(0).locator("a").click()
    page.wait_for_load_state()
    assert page.locator("#subject").inner_text() == "Second, with HTML"
    assert "hidden@example.org" in page.locator("#recipients").inner_text()
    assert "Local annotations" in page.locator("#envelope").inner_text()
    frame_box = page.locator("#mail-frame").bounding_box()
    assert frame_box is not None and frame_box["height"] >= 400
    frame = page.frame_locator("#mail-frame")
    assert frame.locator("div").inner_text() == "red block"
    assert frame.locator("img").evaluate("img => img.naturalWidth") == 1  # the cid: image
    page.locator("#mail-frame").scroll_into_view_if_needed()
    shot = page.locator("#mail-frame").screenshot()
    assert near(pixel(shot, 30, 30), MAIL_RED)  # the mail's own inline style applies

    with page.expect_download() as download:
        page.locator("#attachments a", has_text="r.pdf").click()
    saved = tmp_path / "saved.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes() == b"report bytes \x00\xff"
    assert csp_errors == []


def test_hostile_html_runs_no_script_and_fetches_nothing(
    outbox_server: Any, browser: Any, remote: str
) -> None:
    url, send = outbox_server
    hostile = f"""<html><head>
<meta http-equiv="refresh" content="0;url={remote}/refresh">
<base href="{remote}/base/">
<link rel="stylesheet" href="{remote}/css">
<style>@import url("{remote}/import"); body {{ background: url("{remote}/bg"); }}</style>
<script>top.postMessage("canary-script", "*"); fetch("{remote}/fetch");</script>
</head><body>
<img src="{remote}/img" onerror="top.postMessage('canary-onerror', '*')">
<img src="x" onerror="top.postMessage('canary-onerror2', '*')">
<iframe src="{remote}/iframe"></iframe><object data="{remote}/object"></object>
<svg><image href="{remote}/svg"/></svg>
<form action="{remote}/form" method="post"><input name="a" autofocus></form>
<a id="link" href="{remote}/link">a link</a>
</body></html>"""
    send(message("Hostile", hostile))
    page = browser.new_page()
    # Before any document loads: the top page collects every message posted to it.
    page.add_init_script(
        "if (window === top) { window.canaries = [];"
        " addEventListener('message', e => window.canaries.push(String(e.data))); }"
    )
    page.goto(url + "outbox/")
    page.locator("#messages tbody tr a").first.click()
    page.wait_for_load_state("load")
    title = page.title()
    # The canary works: a message posted by the page itself is seen.
    page.evaluate("postMessage('control', '*')")
    page.wait_for_function("window.canaries.includes('control')", timeout=TIMEOUT * 1000)
    page.evaluate("window.canaries.length = 0")
    page.frame_locator("#mail-frame").locator("#link").wait_for()
    time.sleep(1.0)  # a refresh, a late fetch or a timer would have happened by now
    assert page.evaluate("window.canaries") == []
    assert page.frame_locator("#mail-frame").locator("#link").inner_text() == "a link"
    assert page.title() == title
    assert Listener.hits == []


def test_list_updates_when_a_message_arrives(outbox_server: Any, browser: Any) -> None:
    url, send = outbox_server
    page = browser.new_page()
    page.goto(url + "outbox/")
    assert page.locator("#messages tbody tr").count() == 0
    assert page.locator("#empty").is_visible()
    time.sleep(1.2)  # the page has its first state tag
    send(message("Arrived <b>live</b>"))
    row = page.locator("#messages tbody tr").first
    row.wait_for(timeout=TIMEOUT * 1000)
    assert row.locator("a").inner_text() == "Arrived <b>live</b>"  # text, never markup
    assert page.locator("#count").inner_text() == "1 message"
    assert not page.locator("#empty").is_visible()
