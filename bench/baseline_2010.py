"""The original appengine-mailer handler (2010), as a yardstick for the proxy's request rate.

What its one handler did: read the form fields msg and signature, check the
signature (base64 of HMAC-SHA1 with the shared key), let the SDK parse the
message (`EmailMessage(mime_message=...)`), optionally replace the sender, and
send.  Here it runs on Flask, on the SDK's own stock MailServiceStub: the same
stub the gaemail app subclasses.  No Maildir, no queue-safe deduplication, no
checks beyond the SDK's: the baseline, not a model.

Run as `gunicorn ... 'baseline_2010:create_app()'`; the key is GMAIL_SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from flask import Flask, Response, request
from google.appengine.api import apiproxy_stub_map, mail, mail_stub


def create_app() -> Flask:
    key = os.environ["GMAIL_SECRET_KEY"].encode("utf-8")
    default_sender = os.environ.get("GMAIL_DEFAULT_SENDER", "app@example.appspotmail.com")
    apiproxy_stub_map.apiproxy.ReplaceStub("mail", mail_stub.MailServiceStub())
    app = Flask(__name__)

    @app.post("/")
    def send_mail() -> Response:
        msg = request.form.get("msg")
        signature = request.form.get("signature")
        if not msg:
            return Response("No message found", status=400)
        if not signature:
            return Response("No signature found", status=400)
        digest = hmac.new(key, msg.encode("utf-8"), hashlib.sha1).digest()
        if signature != base64.b64encode(digest).decode("ascii"):
            return Response("Signature doesn't match", status=400)
        message = mail.EmailMessage(mime_message=msg)
        if request.form.get("fix_sender"):
            message.sender = default_sender
        message.send()
        return Response(status=204)

    return app
