"""The proxy's HTTP face: GET / answers uptime checks, POST / is v1, /v2/* is v2.

Every answer is in its protocol's own form, the framework's errors included:
v1's one-line text/plain on `/`, application/problem+json under `/v2/`, never
an HTML page.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TextIO

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from gaemail import protocol
from gaemail.protocol import v2
from gaemail.server import relay_v2
from gaemail.server.config import ServerConfig
from gaemail.server.logline import log_v1, log_v2
from gaemail.server.memory import return_large_buffers
from gaemail.server.refusals import Misconfigured, Refusal, RequestRefused, TooLarge
from gaemail.server.relay import Outcome, Relay

LOGGER_NAME = "gaemail.server"
RELAY_EXTENSION = "gaemail.relay"
RELAY_V2_EXTENSION = "gaemail.relay_v2"
UPTIME_TEXT = "gaemail proxy: POST signed messages here\n"
V2_PREFIX = "/v2/"

log = logging.getLogger(LOGGER_NAME)
_HANDLER_NAME = "gaemail.server.requests"


def create_app(
    config: ServerConfig | None = None,
    *,
    mail_service: str = "mail-api",
    clock: Callable[[], float] = time.time,
) -> Flask:
    """A new proxy app; without `config`, settings come from the environment, read now."""
    if config is None:
        config = ServerConfig.load(None, os.environ)
    return_large_buffers()
    app = Flask(__name__)
    # Werkzeug answers 413 past this size before reading the body.
    app.config["MAX_CONTENT_LENGTH"] = protocol.MAX_REQUEST_BYTES
    app.extensions[RELAY_EXTENSION] = Relay(config)
    app.extensions[RELAY_V2_EXTENSION] = relay_v2.RelayV2(
        config, clock=clock, mail_service=mail_service
    )
    app.add_url_rule("/", "uptime", uptime, methods=["GET"])
    app.add_url_rule("/", "relay", relay_request, methods=["POST"])
    app.add_url_rule(v2.SEND_PATH, "v2_send", v2_send, methods=["POST"])
    app.add_url_rule(v2.CHECK_PATH, "v2_check", v2_check, methods=["POST"])
    app.register_error_handler(HTTPException, framework_error)
    app.register_error_handler(InternalServerError, internal_error)
    return app


def uptime() -> Response:
    return Response(UPTIME_TEXT, mimetype="text/plain")


def relay_request() -> Response:
    relay: Relay = current_app.extensions[RELAY_EXTENSION]
    if not relay.config.v1_enabled:
        text = "Protocol v1 is switched off on this proxy: send with protocol v2\n"
        log_v1(log, Outcome(RequestRefused(text)), status=410)
        return Response(text, status=410, mimetype="text/plain")
    # The raw body, never request.form: Flask caps forms at 500 kB and would decode
    # 8-bit messages as UTF-8, breaking both the message and its signature.  The
    # relay reads it itself, so it holds the only copy and can let go once decoded.
    try:
        return respond(relay(read_body))
    except Refusal as refusal:
        return respond(Outcome(refusal))


def read_body() -> bytes:
    """The request body, or a Refusal when its framing is broken."""
    length = request.environ.get("CONTENT_LENGTH", "")
    if length and not length.strip().isdigit():
        # A server joins repeated Content-Length lines with commas.
        raise RequestRefused("Content-Length is malformed or appears more than once")
    try:
        if request.content_length is not None and not request.headers.get("Transfer-Encoding"):
            request.stream  # noqa: B018  werkzeug's checks (a 413 past the limit) come with it
            # One read of the known length from the server's own stream: get_data()
            # reads in pieces and joins them, and werkzeug's stream reads into a
            # bytearray and copies that out, each three times the body at its peak.
            body: bytes = request.environ["wsgi.input"].read(request.content_length)
            if len(body) != request.content_length:
                raise BadRequest()
            return body
        return request.get_data(cache=False)  # not kept: the caller owns the only copy
    except (OSError, BadRequest):  # werkzeug's chunked decoder, a peer that went away
        raise RequestRefused(
            "The request body is malformed: bad chunked framing, or it ended early"
        ) from None


def v2_send() -> Response:
    return v2_answer(lambda relay, req: relay.send(req))


def v2_check() -> Response:
    return v2_answer(lambda relay, req: relay.check(req))


def v2_answer(step: relay_v2.Step) -> Response:
    relay: relay_v2.RelayV2 = current_app.extensions[RELAY_V2_EXTENSION]
    # The specification's order: size first, then media type and encoding.
    length = request.content_length
    outcome = None
    if length is not None and length > protocol.MAX_MESSAGE_BYTES:
        outcome = relay_v2.too_large(length)
    if outcome is None:
        outcome = relay_v2.precheck(request.content_type, request.headers.get("Content-Encoding"))
    if outcome is None:
        try:
            body = read_body()
        except Refusal as refusal:
            outcome = relay_v2.Outcome(400, v2.bad_request("body_malformed", str(refusal)))
        else:
            req = relay_v2.Request(
                request.path, request.query_string, request.headers.getlist, body
            )
            del body  # req holds the only reference, to let go of once translated
            outcome = step(relay, req)
    log_v2(log, request.path, outcome)
    return v2_response(outcome)


def v2_response(outcome: relay_v2.Outcome) -> Response:
    problem = outcome.problem
    if problem is None:
        if outcome.status == protocol.OK:
            return Response(relay_v2.dumps(outcome.document), mimetype="application/json")
        if outcome.recorded_answer:  # a replayed refusal
            response = Response(
                outcome.recorded_answer, status=outcome.status, mimetype=v2.PROBLEM_TYPE
            )
        else:
            response = Response(status=outcome.status)
        if outcome.replayed:
            response.headers[v2.H_REPLAYED] = "true"
        return response
    body = v2.problem_body(problem, relay_v2.title_for(problem.status))
    response = Response(body, status=problem.status, mimetype=v2.PROBLEM_TYPE)
    if problem.retry_after is not None:
        response.headers[v2.H_RETRY_AFTER] = str(problem.retry_after)
    if problem.status == protocol.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = v2.AUTHENTICATE
    return response


def framework_error(error: HTTPException) -> ResponseReturnValue:
    """Werkzeug's own answers (404, 405, 413, 400), in the protocol of the path."""
    status = error.code or protocol.BAD_REQUEST
    if status < protocol.BAD_REQUEST:  # a routing redirect: its own answer
        return error.get_response()
    if status >= protocol.SERVER_ERROR:
        return internal_error(error)
    if status == protocol.TOO_LARGE:
        limit = protocol.MAX_REQUEST_BYTES
        text = f"The request is over the proxy's limit of {limit} bytes"
    else:
        text = f"{error.name}: {error.description or ''}".strip()
    if request.path.startswith(V2_PREFIX):
        code = "request_too_large" if status == protocol.TOO_LARGE else f"http_{status}"
        outcome = relay_v2.Outcome(status, v2.ProtocolError(status, code, text))
        log_v2(log, request.path, outcome)
        return v2_response(outcome)
    if status == protocol.TOO_LARGE:
        return respond(Outcome(TooLarge(text)))
    if request.method == "POST" and request.path == "/":
        return respond(Outcome(RequestRefused(text)))
    return Response(f"{' '.join(text.split())}\n", status=status, mimetype="text/plain")


def internal_error(error: HTTPException) -> Response:
    # Flask has logged the traceback already; the client learns only the kind.
    text = "Internal error in the proxy; its log has the details"
    if request.path.startswith(V2_PREFIX):
        problem = v2.ProtocolError(protocol.SERVER_ERROR, "internal_error", text)
        log_v2(log, request.path, relay_v2.Outcome(problem.status, problem))
        return v2_response(relay_v2.Outcome(problem.status, problem))
    return respond(Outcome(Misconfigured(text)))


def respond(outcome: Outcome) -> Response:
    """The v1 HTTP answer for `outcome`, after logging it."""
    log_v1(log, outcome)
    refusal = outcome.refusal
    if refusal is None:
        return Response(status=protocol.SENT)
    response = Response(f"{refusal}\n", status=refusal.status, mimetype="text/plain")
    response.headers[protocol.ERROR_HEADER] = refusal.kind.name
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


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
