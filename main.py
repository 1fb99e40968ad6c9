"""App Engine entry point: `gunicorn main:app` serves the proxy with the Mail API.

Unlike the package's modules, this file does its work on import, because that
is how gunicorn asks for the app.  Settings are read here, once: after
wrap_wsgi_app every request sees a snapshot of os.environ instead (GAEMAIL_V1=off
switches v1 off).  Timeouts are app.yaml's: gunicorn's --timeout, the front end's
request limit, the SDK's 60 s deadline per Mail API call.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The package is uploaded as source (see .gcloudignore), not installed by pip.
sys.path.insert(0, os.path.join(HERE, "src"))

from google.appengine.api import wrap_wsgi_app  # noqa: E402

from gaemail.server import ServerConfig, create_app  # noqa: E402
from gaemail.server.app import log_requests_to  # noqa: E402

app = create_app(ServerConfig.load(HERE, os.environ))
app.wsgi_app = wrap_wsgi_app(app.wsgi_app)  # type: ignore[method-assign]
log_requests_to(sys.stderr)
