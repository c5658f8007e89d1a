"""Contact details kept out of what travels further than the database: a log line quoting a provider's refusal
("recipient refused: {'ann@example.com': ...}", "The 'To' number +447700900123 is not a valid phone number") says
that it was refused, not to whom. The row that failed keeps the provider's words whole for staff, who see the
recipient anyway. Nor do the links that are their own credential travel in a log line: the patient's page
(/my/<token>/: it cancels and moves the visit), an unsubscribe link and a calendar feed (the URL is the secret), which
Django's request log and gunicorn's access log write with every path. Nor does what a search asked for (`?q=`,
`?search=` in a logged address): a number as the desk types it there has no `+` to be told by."""

from __future__ import annotations

import logging
import re
import socket
import urllib.parse
from functools import cache

from django.conf import settings

# An e-mail address as providers quote it (a local part, @, a domain with a dot; letters of any script, as an
# address at an internationalised domain is one a patient may give), or percent-encoded in a logged address
# (`ann%40example.com`). Every part bounded (RFC 5321's 64 and 63), so that no line makes the pattern backtrack far.
_EMAIL = re.compile(r"([\w.%+-]{1,64})(?:@|%40)([\w-]{1,63}(?:\.[\w-]{1,63}){1,16})")
# A phone number written internationally (+ and at least eight digits, spaces, dots, dashes or brackets between),
# or encoded in an address (`%2B44%207700…`, `%2B44+7700+…` as a form writes a space).
_PHONE = re.compile(r"(?:\+|%2[Bb])\d(?:[\d ().+-]|%20){6,40}\d")
# A search's words in a logged address (the desk's and the admin's `?q=`, the API's `?search=`): a name, a date of
# birth, a number as the desk types it (`07911 123456`, `0044…`, which _PHONE cannot tell from an id or a count) or
# an address. The value is masked whole, whatever it holds; it ends where the query's next parameter, the address
# or the quoted line does.
_SEARCH = re.compile(r"([?&](?:q|search)=)[^&#\s\"'<>]+")
# A path whose segment is a credential (portal.urls, reminders.urls; config.urls mounts them at my/ and reminders/):
# the page is named, its token left out. Bounded, as the patterns above.
_LINK_TOKEN = re.compile(r"(/(?:my|reminders/unsubscribe|reminders/calendar)/)[^/\s?#\"'<>]{1,400}")


@cache
def _hosts() -> frozenset[str]:
    """This machine's name (no DNS lookup): a Celery worker's node name is `celery@<host>`, no one's address."""
    return frozenset({socket.gethostname().lower()})


# The core layer reads one setting of the reminders' (the public address their Message-IDs are made at): the
# alternative, reminders registering its own exemption, would leave logs written before it is imported unmasked.
_OUTBOX_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _own(local: str, domain: str) -> bool:
    """Whether this is the Message-ID the service sets on every e-mail (`<outbox id>@<its public host>`: an id, not
    a name, at that host; a person's address there is masked) or a name at this machine's host (a Celery worker's
    `celery@<host>`): neither names a patient."""
    try:  # a process that logs before Django is set up (gunicorn's master) has no settings to read
        public = urllib.parse.urlsplit(getattr(settings, "REMINDERS_PUBLIC_BASE_URL", "") or "").hostname
    except Exception:  # noqa: BLE001 - ImproperlyConfigured, or anything a half-configured process raises
        public = None
    domain = domain.lower()
    return (domain == (public or "localhost") and bool(_OUTBOX_ID.fullmatch(local))) or domain in _hosts()


def _address_masked(found: re.Match) -> str:
    return found.group(0) if _own(found.group(1), found.group(2)) else "<e-mail address>"


def contacts_masked(text: object) -> str:
    """`text` (anything; its str()) with every e-mail address and international phone number replaced by a
    placeholder that says which it was, the token of a link that is its own credential by `<link>`, and the value of a
    search in an address (`?q=`, `?search=`) by `<search>`."""
    text = _SEARCH.sub(r"\1<search>", str(text))
    return _LINK_TOKEN.sub(r"\1<link>", _PHONE.sub("<phone number>", _EMAIL.sub(_address_masked, text)))


class ContactsMasked(logging.Filter):
    """A log record with every e-mail address and international phone number of its message and its traceback
    masked (`contacts_masked`), whichever handler writes it. On a logger, it masks what that logger logs before any
    handler sees it; on a handler, what reaches that handler from anywhere. A record whose message cannot be built
    (arguments that do not fit its format) is passed on as it is: logging reports that itself, as it always does."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a mistaken log call must not raise into its caller
            return True
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
    mask(logger)
    return logger


def mask(target: logging.Logger | logging.Handler) -> None:
    """Put the filter on a logger or a handler (once)."""
    if not any(isinstance(f, ContactsMasked) for f in target.filters):
        target.addFilter(ContactsMasked())
