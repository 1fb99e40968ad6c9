"""The baseline: the v1 client anyone could write with the standard library alone.

It reads a message on stdin, signs it (base64 of HMAC-SHA1 with GMAIL_SECRET_KEY)
and POSTs it with urllib.request to GMAIL_PROXY_URL.  Sendmail-style arguments
(-t -i -f ADDR ...) are ignored and stdin goes out as it is.  Mail-style
arguments (-s SUBJECT ADDR...) make stdin the body of a plain-text message from
GMAIL_FROM.  Exits 0 when the proxy answers 200 or 204, else 75 (EX_TEMPFAIL).

gaemail's `gmail` is measured against this script: it does the same POST, so
whatever gmail takes beyond it is the price of its features and its imports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate, make_msgid

EX_TEMPFAIL = 75


def mail_style(body: bytes, args: list[str]) -> bytes:
    """A minimal RFC 2822 message around `body` for `-s SUBJECT ADDR...`."""
    subject = args[args.index("-s") + 1]
    recipients = [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] != "-s"]
    sender = os.environ.get("GMAIL_FROM") or f"{os.environ.get('LOGNAME', 'root')}@localhost"
    headers = (
        f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
        f"Date: {formatdate(localtime=True)}\r\n"
        f"Message-ID: {make_msgid(domain=socket.gethostname())}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return headers.encode("utf-8") + body


def encode_form(msg: bytes, secret: bytes) -> bytes:
    """The v1 form body: msg and its base64 HMAC-SHA1 signature."""
    signature = base64.b64encode(hmac.new(secret, msg, hashlib.sha1).digest())
    return urllib.parse.urlencode({"msg": msg, "signature": signature}).encode("ascii")


def main(args: list[str]) -> int:
    msg = sys.stdin.buffer.read()
    if "-s" in args:
        msg = mail_style(msg, args)
    body = encode_form(msg, os.environ["GMAIL_SECRET_KEY"].encode("utf-8"))
    request = urllib.request.Request(os.environ["GMAIL_PROXY_URL"], data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"stdlib_client: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    if status in (200, 204):
        return 0
    print(f"stdlib_client: the proxy answered HTTP {status}", file=sys.stderr)
    return EX_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
