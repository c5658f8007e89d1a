"""Settings for the test suite: the real settings (config/settings.py), run in local mode.

Local mode allows the embedded secret key and leaves HTTPS-only cookies and required
staff 2FA off by default; tests that check production behaviour turn each on
themselves or load config.settings in a subprocess with a production environment.
The flag is set in the environment, so servers and workers the tests start inherit it.
"""

import os

os.environ.setdefault("DJANGO_LOCAL", "1")

from config.settings import *  # noqa: E402,F401,F403

# Tests never run collectstatic: WhiteNoise finds static files in the apps (as Django's test server does)
# instead of warning about an empty STATIC_ROOT.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
# ...and looks each one up when it is asked for (as it does under DEBUG), instead of listing every app's static
# files when the middleware is built: a test client builds the middleware anew, so every test paid that listing
# (about 220 files, 34 ms a client measured on a slow machine of this kind). Served the same either way
# (tests/test_settings.py).
WHITENOISE_AUTOREFRESH = True

# Passwords hashed with the fastest hasher (Django's advice for test suites): PBKDF2's million iterations cost
# a staff user's creation and every sign-in about 0.3 s each. Production keeps Django's default hashers
# (config/settings.py sets none); no test depends on which algorithm a hash uses.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# PostgreSQL: the test process's connections commit without waiting for the disk (`synchronous_commit=off`; a commit
# is visible to every other connection at once, as before: only a crash of PostgreSQL itself could lose the last
# few, which no test makes). The suite commits many thousands of times (the transactional tests write in
# autocommit and empty every table after each; each test database is migrated). Three transactional files ran 104 s
# against 87 s, but the whole PostgreSQL run did not move measurably (7 December 2026): a small gain at most.
# Production, and the servers and workers the tests start (config.settings), keep it on.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405 (from config.settings)
    _options = DATABASES["default"].setdefault("OPTIONS", {})  # noqa: F405
    _options["options"] = f"{_options.get('options', '')} -c synchronous_commit=off".strip()
