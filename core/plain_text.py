"""Text people type, kept fit for the formats it goes out in.

A name goes into e-mail headers (a line break there is a header of its own, or the send fails for good), calendar
files (RFC 5545 allows no control character), texts (one escape character makes a text UCS-2, three times the
segments) and FHIR strings (nothing below U+0020 but tab, CR and LF). So the fields typed on one line (names, an
e-mail address) refuse every control character, and those typed on several lines (a reason, an address) every one
but tab, CR and LF (`validate_single_line`, `validate_lines`: model validators, so the API, the desk and the admin
all refuse them, naming the field). What was stored before was made fit once (migration clinic 0027), and is made
fit again where it goes out, whatever a write past the checks left (`single_line`, `without_controls`: e-mail headers,
calendar files, texts, every FHIR string). Format characters (right-to-left marks, joiners) and U+2028 are letters' business, kept.

Below all of that, a text a database can store at all: no NUL (PostgreSQL refuses it in text) and no lone surrogate
(not Unicode; no UTF-8 encodes it). `storable_problem` says why not (a request body's 400, api.parsers), `storable`
whether (a provider's event names no address or message id to record, reminders.views), `storable_text` keeps
what can be kept (a provider's words on why an e-mail failed, reminders.channels), and `text_argument` refuses a
management command's argument with the same words (a name typed in a terminal that is not UTF-8).
"""

from __future__ import annotations

import argparse
import re

from django.core.exceptions import ValidationError

NUL_MESSAGE = "Text must not contain the NUL character (U+0000)."
SURROGATE_MESSAGE = "Text must be valid Unicode (this has a lone surrogate)."

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")


def validate_single_line(value: str) -> None:
    if isinstance(value, str) and _CONTROLS.search(value):
        raise ValidationError(
            "Line breaks, tabs and other control characters cannot be part of this: type it on one line.",
            code="control_character",
        )


def validate_lines(value: str) -> None:
    if isinstance(value, str) and _CONTROLS_BUT_LINES.search(value):
        raise ValidationError(
            "Control characters (other than line breaks and tabs) cannot be part of this.", code="control_character"
        )


def single_line(value: str) -> str:
    """`value` on one line: each run of control characters (line breaks included) a space."""
    return _CONTROLS.sub(" ", value or "").strip()


def without_controls(value: str) -> str:
    """`value` without the control characters no format takes (tab, CR and LF kept)."""
    return _CONTROLS_BUT_LINES.sub("", value or "")


def storable_problem(value: str) -> str | None:
    """Why no database can store `value` as text (a NUL, a lone surrogate), or None when one can."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def storable(value: object) -> bool:
    """Whether `value` can be stored as it is: anything not a text can (its own field says what it takes)."""
    return not isinstance(value, str) or storable_problem(value) is None


def storable_text(value: object) -> str:
    """`value` as a text a database stores: a NUL left out, a lone surrogate as "?"."""
    return str(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def text_argument(value: str) -> str:
    """A management command's text argument (`type=text_argument`): one a database cannot take is refused as a bad
    number is, naming the argument, not a driver's traceback at the first look-up. A terminal in another encoding
    than UTF-8 gives Python a lone surrogate for each byte it cannot decode."""
    problem = storable_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem} Was it typed in another encoding than UTF-8?")
    return value
