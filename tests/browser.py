"""The one headless-Chromium setup (Debian's package, driven by Playwright) the browser tests share;
the `browser` fixture itself is in tests/conftest.py.

No browser is downloaded: a missing /usr/bin/chromium skips the test, or fails it under
REQUIRE_SERVICES=1 (CI installs the package).
"""

import os
import threading
from pathlib import Path

from django.conf import settings

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=en-GB",
]
SHOTS = Path(settings.BASE_DIR) / "test-output" / "screenshots"


class RequestsInFlight:
    """The live server's WSGI application, counting the requests it is answering.

    A browser test can end while the page still has a request out (htmx's live check fires on a field's change, and
    the test may have asserted on the answer before it). The server's thread then reads the database inside its
    request's transaction while the test's teardown truncates every table: PostgreSQL finds a deadlock and the
    flush fails, leaving the rows for the next test. `wait_idle` lets the teardown wait for the answer first.
    """

    def __init__(self, app):
        self.app = app
        self.busy = 0
        self._idle = threading.Condition()

    def __call__(self, environ, start_response):
        with self._idle:
            self.busy += 1
        try:
            return self.app(environ, start_response)
        finally:
            with self._idle:
                self.busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self.busy == 0, timeout=timeout)

    @classmethod
    def around(cls, live_server) -> "RequestsInFlight":
        """The counter around pytest-django's (session-wide) live server, put there the first time it is asked."""
        httpd = live_server.thread.httpd
        app = httpd.get_app()
        if not isinstance(app, cls):
            app = cls(app)
            httpd.set_app(app)
        return app
