"""The Django 6.1 leg, run by test_django6.py under another Python: MAILERS and OPTIONS.

argv: PROXY_URL TAG.  gmail's secret comes from GMAIL_ENVDIR.  Sends through
`mail.mailers.default` and `send_mail`, checks InvalidMailer for an unknown
option, and prints one JSON line of what it saw; the outbox is checked by the
caller.  Any warning is an error: the backend must not lean on what 6.1 deprecates.
"""

from __future__ import annotations

import json
import sys
import warnings
from email.message import MIMEPart

warnings.simplefilter("error")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

url, tag = sys.argv[1], sys.argv[2]
settings.configure(
    MAILERS={
        "default": {"BACKEND": "gaemail.django.EmailBackend", "OPTIONS": {"proxy_url": url}},
        "typo": {"BACKEND": "gaemail.django.EmailBackend", "OPTIONS": {"proxy_ulr": url}},
    },
    DEFAULT_FROM_EMAIL="app@example.com",
    ADMINS=["admin@example.com"],
    INSTALLED_APPS=["gaemail.django.GaemailConfig"],
)
django.setup()

from django.core import mail  # noqa: E402

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

seen: dict[str, object] = {"django": django.get_version()}
seen["send_mail"] = mail.send_mail(f"plain {tag} ☃", "Grüße\n", None, ["to@example.org"])
message = mail.EmailMultiAlternatives(
    f"rich {tag}", "text\n", to=["to@example.org"], bcc=["audit@example.com"]
)
message.attach_alternative('<img src="cid:logo@example">', "text/html")
message.attach("data.bin", bytes(range(256)), "application/octet-stream")
image = MIMEPart()
image.set_content(
    PNG, maintype="image", subtype="png", disposition="inline", filename="logo.png",
    cid="<logo@example>",
)  # fmt: skip
message.attach(image)
with mail.mailers.default as connection:
    seen["mailer"] = connection.send_messages([message])
seen["message_id"] = message.gaemail_message_id
try:
    mail.mailers["typo"]
except mail.InvalidMailer as exc:
    seen["typo"] = str(exc)
from django.core import checks  # noqa: E402

seen["checks"] = [m.id for m in checks.run_checks()]
print(json.dumps(seen))
