"""The one headless-Chromium setup (Debian's package, driven by Playwright) the browser tests share;
the `browser` fixture itself is in tests/conftest.py.

No browser is downloaded: a missing /usr/bin/chromium skips the test, or fails it under
REQUIRE_SERVICES=1 (CI installs the package).
"""

import os
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
