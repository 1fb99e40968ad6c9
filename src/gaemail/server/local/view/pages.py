"""The outbox view's read-only handlers: the pages, the message's parts, the JSON API."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from flask import Response, abort, current_app, jsonify, render_template, request, url_for

from gaemail.server.local.mime import ENVELOPE_HEADER, MESSAGE_ID_HEADER
from gaemail.server.local.view import reading

# The list page shows the newest this many; the API lists them all.
LIST_LIMIT = 500
# Images a browser may show inline from an attachment; SVG can carry script.
INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_CID = re.compile(r"""(["'(])cid:([^"')\s]+)""", re.IGNORECASE)
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def _state() -> Any:
    from gaemail.server.local.view import EXTENSION

    return current_app.extensions[EXTENSION]


def _message(name: str) -> EmailMessage:
    message = _state().outbox.message(name)
    if message is None:
        abort(404, "no such message in the outbox")
    assert isinstance(message, EmailMessage)
    return message


def listing() -> str:
    outbox = _state().outbox
    return render_template(
        "list.html",
        messages=outbox.summaries(LIST_LIMIT),
        total=len(outbox.names()),
        limit=LIST_LIMIT,
        token=_state().token,
    )


def message_page(name: str) -> str:
    message = _message(name)
    return render_template(
        "message.html",
        id=name,
        token=_state().token,
        summary=_state().outbox.summary(name),
        headers=reading.headers(message),
        envelope=reading.envelope(message),
        text=reading.body_text(message, "plain"),
        has_html=message.get_body(("html",)) is not None,
        attachments=reading.attachments(message),
        envelope_header=ENVELOPE_HEADER,
        message_id_header=MESSAGE_ID_HEADER,
    )


def message_html(name: str) -> Response:
    """The message's HTML for the sandboxed frame: cid: rewritten, links open a new tab."""
    html = reading.body_text(_message(name), "html")
    if html is None:
        abort(404, "this message has no HTML part")
    base = url_for("outbox.inline_part_get", name=name, content_id="-")[:-1]
    html = _CID.sub(lambda m: m.group(1) + base + quote(m.group(2), safe=""), html)
    # The first <base target> wins, so it goes right after <head>, else first.
    tag = '<base target="_blank">'
    found = _HEAD.search(html)
    html = html[: found.end()] + tag + html[found.end() :] if found else tag + html
    from gaemail.server.local.view import MAIL_CSP

    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MAIL_CSP
    return response


def raw_source(name: str) -> Response:
    """The file as it is, shown as text in the browser."""
    return _inert(_raw(name), "text/plain; charset=utf-8", None)


def api_raw(name: str) -> Response:
    return _inert(_raw(name), "message/rfc822", f"{name}.eml")


def _raw(name: str) -> bytes:
    data = _state().outbox.read(name)
    if data is None:
        abort(404, "no such message in the outbox")
    assert isinstance(data, bytes)
    return data


def attachment(name: str, index: int) -> Response:
    part = reading.attachment_part(_message(name), index)
    if part is None:
        abort(404, "no such attachment")
    return _part_response(part, download=True)


def inline_part(name: str, content_id: str) -> Response:
    part = reading.part_by_content_id(_message(name), content_id)
    if part is None:
        abort(404, "no part with that Content-ID")
    return _part_response(part, download=False)


def _part_response(part: EmailMessage, *, download: bool) -> Response:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    content_type = part.get_content_type()
    inline = not download and content_type in INLINE_TYPES
    filename = None if inline else (part.get_filename() or "attachment.bin")
    return _inert(data, content_type if inline else "application/octet-stream", filename)


def _inert(data: bytes, content_type: str, filename: str | None) -> Response:
    from gaemail.server.local.view import INERT_CSP

    response = Response(data, content_type=content_type)
    response.headers["Content-Security-Policy"] = INERT_CSP
    if filename is not None:
        # RFC 6266: an ASCII fallback and the exact name, percent-encoded.
        fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)
        response.headers["Content-Disposition"] = (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
        )
    return response


def api_state() -> Response:
    tag = _state().outbox.state()
    unchanged = request.if_none_match.contains(tag)
    response = Response(status=304) if unchanged else jsonify(state=tag)
    response.set_etag(tag)
    return response


def api_list() -> Response:
    return jsonify(messages=[s.as_json() for s in _state().outbox.summaries()])


def api_message(name: str) -> Response:
    message = _message(name)
    envelope = reading.envelope(message)
    return jsonify(
        id=name,
        headers=reading.headers(message),
        envelope={
            "from": reading.header_text(message, "From"),
            "recipients": list(envelope.recipients),
            "bcc": list(envelope.bcc),
            "message_id": envelope.message_id,
            "local_annotations": [ENVELOPE_HEADER, MESSAGE_ID_HEADER],
        },
        text=reading.body_text(message, "plain"),
        html=reading.body_text(message, "html"),
        attachments=[
            {
                "index": a.index,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "content_id": a.content_id,
                "url": url_for("outbox.attachment_get", name=name, index=a.index),
            }
            for a in reading.attachments(message)
        ],
    )
