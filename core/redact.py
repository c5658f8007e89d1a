"""Contact details kept out of what travels further than the database: a log line quoting a provider's refusal
("recipient refused: {'ann@example.com': ...}", "The 'To' number +447700900123 is not a valid phone number") says
that it was refused, not to whom. The row that failed keeps the provider's words whole for staff, who see the
recipient anyway."""

from __future__ import annotations

import logging
import re

# An e-mail address as providers quote it (local part, @, a domain with a dot).
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A phone number written internationally (+ and at least eight digits, spaces, dots, dashes or brackets between).
_PHONE = re.compile(r"\+\d[\d ().-]{6,}\d")


def contacts_masked(text: object) -> str:
    """`text` (anything; its str()) with every e-mail address and international phone number replaced by a
    placeholder that says which it was."""
    return _PHONE.sub("<phone number>", _EMAIL.sub("<e-mail address>", str(text)))


class ContactsMasked(logging.Filter):
    """A log record with every e-mail address and international phone number of its message and its traceback
    masked (`contacts_masked`), whichever handler writes it. On a logger, it masks what that logger logs before any
    handler sees it; on a handler, what reaches that handler from anywhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = contacts_masked(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = contacts_masked(record.exc_text)
        return True


def masked_logger(name: str) -> logging.Logger:
    """The logger `name`, its records' contacts masked (a module whose logs may quote a provider's words about a
    recipient)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ContactsMasked) for f in logger.filters):
        logger.addFilter(ContactsMasked())
    return logger
