"""The outbox view and its JSON API, in-process: what it shows, and what it refuses."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server.local import create_local_app
from gaemail.server.local.view import APP_CSP, MAIL_CSP, register_outbox_view

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from gaemail.server import ServerConfig

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
def view(server_config: ServerConfig, tmp_path: Path) -> FlaskClient:
    app = create_local_app(server_config, tmp_path / "box")
    register_outbox_view(app, tmp_path / "box")
    return app.test_client()


def send(client: FlaskClient, msg: EmailMessage) -> None:
    body = v1.encode_request(msg.as_bytes(), b"current-key")
    assert client.post("/", data=body).status_code == protocol.SENT


def rich_message(subject: str = "Grüße, a report") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.com>"
    msg["To"] = "To One <one@example.org>"
    msg["Cc"] = "cc@example.org"
    msg["Bcc"] = "hidden@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = "<rich-1@example.com>"
    msg.set_content("The text part.\n")
    msg.add_alternative('<p>HTML <img src="cid:logo@example.com"></p>', subtype="html")
    msg.add_attachment(
        PNG, maintype="image", subtype="png", filename="logo.png", cid="<logo@example.com>"
    )
    msg.add_attachment(
        b"%PDF-1.4 bytes \xff\x00", maintype="application", subtype="pdf", filename="r.pdf"
    )
    return msg


def only_id(client: FlaskClient) -> str:
    (item,) = client.get("/outbox/api/messages").get_json()["messages"]
    found: str = item["id"]
    return found


def test_list_is_newest_first_with_the_columns(
    view: FlaskClient, plain_message: EmailMessage
) -> None:
    send(view, plain_message)
    send(view, rich_message())
    items = view.get("/outbox/api/messages").get_json()["messages"]
    assert [m["subject"] for m in items] == ["Grüße, a report", "Test message"]
    first = items[0]
    assert first["from"] == "Sender <sender@example.com>"
    assert first["to"] == "To One <one@example.org>"
    assert first["attachments"] == 2
    assert first["size"] > 0
    assert first["date"]
    page = view.get("/outbox/").get_data(as_text=True)
    assert page.index("Grüße, a report") < page.index("Test message")


def test_message_api_has_envelope_headers_bodies_and_attachments(view: FlaskClient) -> None:
    send(view, rich_message())
    detail = view.get(f"/outbox/api/messages/{only_id(view)}").get_json()
    envelope = detail["envelope"]
    assert envelope["recipients"] == ["one@example.org", "cc@example.org", "hidden@example.org"]
    assert envelope["bcc"] == ["hidden@example.org"]
    assert envelope["message_id"] == "<rich-1@example.com>"
    names = {h["name"]: h for h in detail["headers"]}
    assert "Bcc" not in names
    assert names["X-Envelope-To"]["local"] is True
    assert names["X-Gaemail-Message-Id"]["local"] is True
    assert names["Subject"]["local"] is False
    assert detail["text"] == "The text part.\n"
    assert "<p>HTML" in detail["html"]
    logo, pdf = detail["attachments"]
    assert (logo["filename"], logo["content_type"], logo["content_id"]) == (
        "logo.png",
        "image/png",
        "logo@example.com",
    )
    download = view.get(pdf["url"])
    assert download.data == b"%PDF-1.4 bytes \xff\x00"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["Content-Type"] == "application/octet-stream"


def test_message_page_labels_the_local_annotations(view: FlaskClient) -> None:
    send(view, rich_message())
    page = view.get(f"/outbox/m/{only_id(view)}/").get_data(as_text=True)
    assert "Local annotations" in page
    assert "App Engine does not send them" in page
    assert page.count("local annotation, not sent by App Engine") == 2
    assert "Bcc: envelope only" in page
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "style=" not in page  # the app's CSP allows no inline style


def test_message_html_is_served_under_the_mail_csp_with_cid_rewritten(view: FlaskClient) -> None:
    send(view, rich_message())
    name = only_id(view)
    answer = view.get(f"/outbox/m/{name}/html")
    assert answer.headers["Content-Security-Policy"] == MAIL_CSP
    html = answer.get_data(as_text=True)
    assert html.startswith('<base target="_blank">')
    src = re.search(r'src="([^"]+)"', html)
    assert src is not None
    assert src.group(1) == f"/outbox/m/{name}/cid/logo%40example.com"
    image = view.get(src.group(1))
    assert image.data == PNG
    assert image.headers["Content-Type"] == "image/png"
    assert view.get(f"/outbox/m/{name}/").headers["Content-Security-Policy"] == APP_CSP


def test_raw_source_is_the_file_and_inert(view: FlaskClient, tmp_path: Path) -> None:
    send(view, rich_message())
    name = only_id(view)
    (path,) = (tmp_path / "box" / "new").iterdir()
    for url in (f"/outbox/api/messages/{name}/raw", f"/outbox/m/{name}/raw"):
        answer = view.get(url)
        assert answer.data == path.read_bytes()
        assert answer.headers["Content-Security-Policy"].startswith("sandbox")
        assert answer.headers["Cache-Control"] == "no-store"


def test_nothing_of_a_message_is_cached(view: FlaskClient) -> None:
    send(view, rich_message())
    name = only_id(view)
    for url in ("/outbox/", f"/outbox/m/{name}/", "/outbox/api/messages", f"/outbox/m/{name}/html"):
        answer = view.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_delete_needs_the_token_and_the_same_origin(view: FlaskClient) -> None:
    send(view, rich_message())
    name = only_id(view)
    page = view.get("/outbox/").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    assert view.post(f"/outbox/m/{name}/delete").status_code == 403
    assert view.post(f"/outbox/m/{name}/delete", data={"csrf": "guess"}).status_code == 403
    cross = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    answer = view.post(f"/outbox/m/{name}/delete", data={"csrf": token.group(1)}, headers=cross)
    assert answer.status_code == 403
    assert view.delete(f"/outbox/api/messages/{name}", headers=cross).status_code == 403
    assert len(view.get("/outbox/api/messages").get_json()["messages"]) == 1
    answer = view.post(f"/outbox/m/{name}/delete", data={"csrf": token.group(1)})
    assert answer.status_code == 303
    assert view.get("/outbox/api/messages").get_json()["messages"] == []


def test_api_delete_and_clear(view: FlaskClient, plain_message: EmailMessage) -> None:
    for n in range(3):
        plain_message.replace_header("Message-ID", f"<clear-{n}@example.com>")
        send(view, plain_message)
    first = view.get("/outbox/api/messages").get_json()["messages"][0]["id"]
    assert view.delete(f"/outbox/api/messages/{first}").status_code == 204
    assert view.delete(f"/outbox/api/messages/{first}").status_code == 404
    assert len(view.get("/outbox/api/messages").get_json()["messages"]) == 2
    token = re.search(r'name="csrf" value="([^"]+)"', view.get("/outbox/").get_data(as_text=True))
    assert token is not None
    assert view.post("/outbox/clear", data={"csrf": token.group(1)}).status_code == 303
    assert view.get("/outbox/api/messages").get_json()["messages"] == []


def test_foreign_host_names_and_bad_ids_are_refused(view: FlaskClient) -> None:
    assert view.get("/outbox/", headers={"Host": "evil.example"}).status_code == 400
    assert view.get("/outbox/", headers={"Host": "localhost:8025"}).status_code == 200
    assert view.get("/outbox/", headers={"Host": "[::1]:8025"}).status_code == 200
    for name in ("..", ".hidden", "nope", "%2e%2e%2fetc"):
        assert view.get(f"/outbox/api/messages/{name}").status_code == 404, name


def test_state_tag_answers_304_until_mail_arrives(
    view: FlaskClient, plain_message: EmailMessage
) -> None:
    first = view.get("/outbox/api/state")
    etag = first.headers["ETag"]
    assert view.get("/outbox/api/state", headers={"If-None-Match": etag}).status_code == 304
    send(view, plain_message)
    assert view.get("/outbox/api/state", headers={"If-None-Match": etag}).status_code == 200


def test_the_list_page_shows_the_newest_and_says_so(
    view: FlaskClient, plain_message: EmailMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gaemail.server.local.view import pages

    monkeypatch.setattr(pages, "LIST_LIMIT", 2)
    for n in range(3):
        plain_message.replace_header("Message-ID", f"<limit-{n}@example.com>")
        plain_message.replace_header("Subject", f"number {n}")
        send(view, plain_message)
    page = view.get("/outbox/").get_data(as_text=True)
    assert page.count("<tr data-id=") == 2
    assert "number 2" in page and "number 0" not in page
    assert "The newest 2 of 3 messages are shown" in page
    assert len(view.get("/outbox/api/messages").get_json()["messages"]) == 3
