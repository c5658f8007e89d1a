"""What a message says, below the reminders' models: the formatters of its dates, the context a text (and an
e-mail) renders with, the first name a text greets by, and the rendering itself.

content.py builds messages from these; longest.py renders every SMS template with them at its longest when the
template is saved (ReminderTemplate.clean), so a check and a send render the same way. Nothing here reads the
reminders' own models.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime

from django.db import DatabaseError
from django.template import Context, Engine, Template

from clinic.models import Clinic
from core.plain_text import single_line
from reminders.texts import TEXT_ENGINE, sms_fold, sms_units


class RenderError(Exception):
    """A template that cannot be rendered or would say something it must not; retrying will not help."""


# --- Dates as a patient reads them -----------------------------------------------------------------------


def _year(local: datetime, now: datetime | None) -> str:
    # The year only when it is not this year's: "Wed 2 Dec" reads faster than "Wednesday 2 December 2026".
    return "" if now is not None and now.astimezone(local.tzinfo).year == local.year else f" {local.year}"


def fmt_datetime(value: datetime, tz, *, now: datetime | None = None) -> str:
    """An appointment time as a patient reads it: "Wed 2 Dec, 11:00 (GMT)", in the clinic's zone."""
    local = value.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b}{_year(local, now)}, {local:%H:%M} ({local.tzname()})"


def fmt_day(value: datetime, tz, *, now: datetime | None = None) -> str:
    local = value.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b}{_year(local, now)}"


def _near_day(value: datetime, tz, now: datetime) -> str | None:
    """ "today", "tomorrow" or "yesterday" in the clinic's zone as seen from `now` (when the message goes), else None.

    A reminder moved out of quiet hours can go two days ahead (a 07:00 visit's day-before text leaves
    at 20:59 two evenings before), so no text may say "tomorrow" by itself; a thank-you goes when the visit is marked
    done, which may be the next morning, so none may say "today" by itself either."""
    days = (value.astimezone(tz).date() - now.astimezone(tz).date()).days
    return {0: "today", 1: "tomorrow", -1: "yesterday"}.get(days)


def fmt_day_relative(value: datetime, tz, *, now: datetime) -> str:
    """ "today", "tomorrow", "yesterday" or "on Tue 10 Mar"."""
    return _near_day(value, tz, now) or f"on {fmt_day(value, tz, now=now)}"


def fmt_datetime_relative(value: datetime, tz, *, now: datetime) -> str:
    """ "tomorrow, Tue 10 Mar, 07:00 (GMT)", or "on Tue 10 Mar, 07:00 (GMT)" further ahead."""
    near = _near_day(value, tz, now)
    return f"{near}, {fmt_datetime(value, tz, now=now)}" if near else f"on {fmt_datetime(value, tz, now=now)}"


def fmt_long_date(value: datetime, tz) -> str:
    """A date in prose ("possible from Monday 23 March 2026")."""
    local = value.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y}"


# --- What a text may say ---------------------------------------------------------------------------------


def sms_context(
    *,
    clinic: Clinic,
    clinic_name: str,
    first_name: str,
    start_at: datetime,
    end_at: datetime,
    now: datetime,
    manage_link: str,
    email_on: bool,
    previous_start: datetime | None = None,
) -> dict:
    """What a text may say (and an e-mail starts from): nothing clinical. reminders.longest renders every SMS template
    with it, as the longest text a clinic can make, when a clinic or a template is saved."""
    tz = clinic.tz
    return {
        # Names stored before control characters were refused go without them (one ESC makes a text UCS-2).
        "patient_first_name": single_line(first_name),
        "clinic_name": single_line(clinic_name),
        "clinic_phone": clinic.phone_national,
        "start_local": fmt_datetime(start_at, tz, now=now),
        "start_date": fmt_day(start_at, tz, now=now),
        "start_day_relative": fmt_day_relative(start_at, tz, now=now),
        "start_relative_local": fmt_datetime_relative(start_at, tz, now=now),
        "start_time": f"{start_at.astimezone(tz):%H:%M}",
        "end_time": f"{end_at.astimezone(tz):%H:%M}",
        "previous_start_local": fmt_datetime(previous_start, tz, now=now) if previous_start else "",
        # The patient's page for this appointment: see it, cancel or move it, set preferences.
        "manage_url": manage_link,
        # Whether this patient gets e-mail at all: an SMS-only patient's texts must carry the care themselves.
        "email_on": email_on,
    }


SMS_FIRST_NAME_MAX = 20  # what reminders.longest checks every text with (FIRST_NAME_CHECKED)


def _sms_length(text: str) -> int:
    return sms_units(sms_fold(text))[0]


def sms_first_name(first_name: str) -> str:
    """The first name a text greets the patient by: within SMS_FIRST_NAME_MAX characters as a carrier counts them
    (folded: "Þ" goes as "Th"), so that a text the checks passed for the clinic and the template (reminders.fit) is
    never too long for a patient's name. A longer one is cut after its last whole part that fits ("Anna-Maria
    Josefine Alexandra" -> "Anna-Maria Josefine", "Marie-Christine-Alexandra" -> "Marie-Christine"), else to the
    limit."""
    name = first_name.strip()
    if _sms_length(name) <= SMS_FIRST_NAME_MAX:
        return name
    cut = ""
    for part in re.finditer(r"[^\s-]+", name):
        whole = name[: part.end()]
        if _sms_length(whole) > SMS_FIRST_NAME_MAX:
            break
        cut = whole
    if not cut:  # one part too long on its own
        cut = name
        while _sms_length(cut) > SMS_FIRST_NAME_MAX:
            cut = cut[:-1]
    return cut


def recall_context(
    *, due_on: datetime, earliest: datetime | None, tz, ideal: datetime | None = None, ask_first: bool = False
) -> dict:
    """A recall's placeholders: its due date; the earliest date the rules allow when later than the day it goes,
    and the later one no warning stands against ("possible from X, ideally from Y", as the aftercare says); and
    `recall_ask_first` when no date can be given (the texts then ask the patient to talk to the clinic before
    booking: reminders.content.recall_outlook)."""
    return {
        "recall_due_date": fmt_long_date(due_on, tz),
        "recall_earliest_date": fmt_long_date(earliest, tz) if earliest else "",
        "recall_ideal_date": fmt_long_date(ideal, tz) if ideal else "",
        "recall_ask_first": ask_first,
    }


# --- Rendering -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compiled(engine: Engine, text: str) -> Template:
    """A template's text compiled once per process (a compiled Template is only read when rendered)."""
    return engine.from_string(text)


def render_template(engine: Engine, text: str, context: dict) -> str:
    """A template's text rendered with `context` (RenderError when it cannot be; a database's error propagates)."""
    try:
        # The Context, not the Engine, decides escaping when a Template is rendered directly.
        return _compiled(engine, text).render(Context(context, autoescape=engine.autoescape)).strip()
    except DatabaseError:
        raise  # the database's trouble, not the template's: the send is tried again
    except Exception as exc:
        # A template that compiles can still fail as it renders: an {% include %} (these engines have no loaders,
        # TemplateDoesNotExist), a {% for %} over a flag (TypeError). Trying again will not help.
        raise RenderError(f"template error: {exc.__class__.__name__}: {exc}") from exc


def render_sms(text: str, context: dict) -> str:
    """An SMS template rendered as it goes: folded to the GSM alphabet where it can be (texts.sms_fold)."""
    return sms_fold(render_template(TEXT_ENGINE, text, context))
