"""The proxy's HTTP face: GET / answers uptime checks, POST / is the v1 interface."""

from __future__ import annotations

import logging
import os
from typing import TextIO

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import InternalServerError, RequestEntityTooLarge

from gaemail import protocol
from gaemail.server.config import ServerConfig
from gaemail.server.refusals import Misconfigured, TooLarge
from gaemail.server.relay import Outcome, Relay

LOGGER_NAME = "gaemail.server"
RELAY_EXTENSION = "gaemail.relay"
UPTIME_TEXT = "gaemail proxy: POST signed messages here\n"

log = logging.getLogger(LOGGER_NAME)
_HANDLER_NAME = "gaemail.server.requests"


def create_app(config: ServerConfig | None = None) -> Flask:
    """A new proxy app; without `config`, settings come from the environment, read now."""
    if config is None:
        config = ServerConfig.load(None, os.environ)
    app = Flask(__name__)
    # Werkzeug answers 413 past this size before reading the body.
    app.config["MAX_CONTENT_LENGTH"] = protocol.MAX_REQUEST_BYTES
    app.extensions[RELAY_EXTENSION] = Relay(config)
    app.add_url_rule("/", "uptime", uptime, methods=["GET"])
    app.add_url_rule("/", "relay", relay_request, methods=["POST"])
    app.register_error_handler(RequestEntityTooLarge, request_too_large)
    app.register_error_handler(InternalServerError, internal_error)
    return app


def uptime() -> Response:
    return Response(UPTIME_TEXT, mimetype="text/plain")


def relay_request() -> Response:
    relay: Relay = current_app.extensions[RELAY_EXTENSION]
    # The raw body, never request.form: Flask caps forms at 500 kB and would decode
    # 8-bit messages as UTF-8, breaking both the message and its signature.
    return respond(relay(request.get_data()))


def request_too_large(error: RequestEntityTooLarge) -> Response:
    limit = protocol.MAX_REQUEST_BYTES
    return respond(Outcome(TooLarge(f"The request is over the proxy's limit of {limit} bytes")))


def internal_error(error: InternalServerError) -> Response:
    # Flask has logged the traceback already; the client learns only the kind.
    return respond(Outcome(Misconfigured("Internal error in the proxy; its log has the details")))


def respond(outcome: Outcome) -> Response:
    """The HTTP answer for `outcome`, after logging it."""
    log_outcome(outcome)
    refusal = outcome.refusal
    if refusal is None:
        return Response(status=protocol.SENT)
    response = Response(f"{refusal}\n", status=refusal.status, mimetype="text/plain")
    response.headers[protocol.ERROR_HEADER] = refusal.kind.name
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def log_outcome(outcome: Outcome) -> None:
    """One line per request; never the message, the signature or a key."""
    facts = f"message-id={outcome.message_id or '-'} recipients={outcome.recipients}"
    refusal = outcome.refusal
    if refusal is None:
        log.info("sent %d %s", outcome.status, facts)
        return
    level = logging.INFO
    if refusal.status == protocol.UNAVAILABLE:
        level = logging.WARNING
    elif refusal.status >= protocol.SERVER_ERROR:
        level = logging.ERROR
    reason = str(refusal)
    log.log(
        level, "refused %d kind=%s %s reason=%r", refusal.status, refusal.kind.name, facts, reason
    )


def log_requests_to(stream: TextIO) -> None:
    """Show the proxy's one line per request on `stream`, instead of any earlier stream."""
    for old in [h for h in log.handlers if h.get_name() == _HANDLER_NAME]:
        log.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # The SDK's module-level logging.info() calls give the root logger a handler
    # of its own, which would print every line a second time.
    log.propagate = False
