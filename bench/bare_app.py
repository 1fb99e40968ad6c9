"""Minimal Flask endpoints: the yardsticks for the proxy's throughput under gunicorn.

POST /        answers 204 without reading the body: Flask and gunicorn alone.
POST /verify  reads the body and checks its v1 signature with gaemail.protocol,
              then answers 204 (400 when it does not verify): the protocol's share.

Run as `gunicorn ... 'bare_app:create_app()'`; the key is GMAIL_SECRET_KEY, read
when the app is built.
"""

from __future__ import annotations

import os

from flask import Flask, Response, request

from gaemail.protocol import v1


def create_app() -> Flask:
    keys = (os.environ["GMAIL_SECRET_KEY"].encode("utf-8"),)
    app = Flask(__name__)

    @app.post("/")
    def bare() -> Response:
        return Response(status=204)

    @app.post("/verify")
    def verify() -> Response:
        signed = v1.decode_request(request.get_data())
        ok = v1.verify(keys, signed.msg, signed.signature)
        return Response(status=204 if ok else 400)

    return app
