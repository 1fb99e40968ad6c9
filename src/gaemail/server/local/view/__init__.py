"""The outbox view of `gaemail serve`: pages at /outbox/ and a JSON API beside them.

Registered by `gaemail serve` only, never in the app deployed to App Engine.
Protections, and why:
- Message HTML is served from its own URL into a sandboxed iframe, under a CSP
  that forbids scripts and every remote load: mail is hostile input.
- No GET changes anything (mail content can make same-origin GETs); delete and
  clear are POST with a per-process token and a same-origin check, or DELETE,
  which no other site's page can send without a preflight this view never answers.
- Nothing of a message is cached (Cache-Control: no-store); on a loopback
  address only loopback Host names are answered (DNS rebinding).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, redirect, request, url_for

from gaemail.server.local.view import pages
from gaemail.server.local.view.reading import Outbox

EXTENSION = "gaemail.outbox_view"
TOKEN_FIELD = "csrf"  # noqa: S105 - a form field name
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " frame-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
# Served on the message's own HTML: a sandbox without scripts, nothing remote.
MAIL_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none';"
    " img-src 'self' data:; style-src 'unsafe-inline'; font-src data:; form-action 'none';"
    " base-uri 'none'; frame-ancestors 'self'"
)
# Raw source and attachments: never a document that can act.
INERT_CSP = "sandbox; default-src 'none'"


class ViewState:
    """What the view's handlers share: the outbox, the token, the host rule."""

    def __init__(self, outbox: Outbox, *, loopback: bool) -> None:
        self.outbox = outbox
        self.token = secrets.token_urlsafe(24)
        self.loopback = loopback


def state() -> ViewState:
    found: ViewState = current_app.extensions[EXTENSION]
    return found


def register_outbox_view(app: Flask, outbox: str | Path, *, loopback: bool = True) -> None:
    """Serve the Maildir at `outbox` under /outbox/ on `app`."""
    app.extensions[EXTENSION] = ViewState(Outbox(outbox), loopback=loopback)
    app.register_blueprint(blueprint())


def blueprint() -> Blueprint:
    view = Blueprint(
        "outbox",
        __name__,
        url_prefix="/outbox",
        template_folder="templates",
        static_folder="static",
    )
    view.before_request(check_request)
    view.after_request(protect)
    routes: list[tuple[str, Callable[..., Any], list[str]]] = [
        ("/", pages.listing, ["GET"]),
        ("/m/<name>/", pages.message_page, ["GET"]),
        ("/m/<name>/html", pages.message_html, ["GET"]),
        ("/m/<name>/raw", pages.raw_source, ["GET"]),
        ("/m/<name>/part/<int:index>", pages.attachment, ["GET"]),
        ("/m/<name>/cid/<path:content_id>", pages.inline_part, ["GET"]),
        ("/m/<name>/delete", delete_form, ["POST"]),
        ("/clear", clear_form, ["POST"]),
        ("/api/state", pages.api_state, ["GET"]),
        ("/api/messages", pages.api_list, ["GET"]),
        ("/api/messages/<name>", pages.api_message, ["GET"]),
        ("/api/messages/<name>", api_delete, ["DELETE"]),
        ("/api/messages/<name>/raw", pages.api_raw, ["GET"]),
    ]
    for rule, func, methods in routes:
        view.add_url_rule(rule, f"{func.__name__}_{methods[0].lower()}", func, methods=methods)
    return view


def check_request() -> None:
    """Loopback Host names only on a loopback server; writes only from this origin."""
    if state().loopback and host_name(request.host) not in LOOPBACK_NAMES:
        abort(400, "the outbox view answers only loopback host names")
    if request.method in ("POST", "DELETE") and not same_origin():
        abort(403, "cross-site request refused")
    if request.method == "POST" and not secrets.compare_digest(
        request.form.get(TOKEN_FIELD, ""), state().token
    ):
        abort(403, "the form's token is missing or stale: reload the page")


def host_name(host: str) -> str:
    """The name in a Host header, without its port: '[::1]:80' -> '[::1]'."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0]


def same_origin() -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == request.host_url.rstrip("/")


def protect(response: Response) -> Response:
    """Every answer of the view: not cached, not sniffed, no referrer, framed by us only."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Content-Security-Policy", APP_CSP)
    if "frame-ancestors 'self'" not in response.headers["Content-Security-Policy"]:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def delete_form(name: str) -> Response:
    if not state().outbox.delete(name):
        abort(404)
    return redirect(url_for("outbox.listing_get"), code=303)  # type: ignore[return-value]


def clear_form() -> Response:
    state().outbox.clear()
    return redirect(url_for("outbox.listing_get"), code=303)  # type: ignore[return-value]


def api_delete(name: str) -> Response:
    if not state().outbox.delete(name):
        abort(404)
    return Response(status=204)
