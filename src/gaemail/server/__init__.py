"""The proxy: a Flask app that sends signed messages with App Engine's Mail API.

`create_app(config)` builds it; `gaemail.server.local.create_local_app` builds it
on the SDK's local stubs, delivering into a Maildir.  Needs the `server` extra.
"""

from __future__ import annotations

from gaemail.server.app import create_app
from gaemail.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
