"""A template's SMS text rendered as the longest texts it can make, and what stops those going whatever clinic
sends them (`template_own_problem`, ReminderTemplate.clean, so the shipped texts' loading too): its length as rendered
for a stand-in clinic (a short name, no phone), not as written (the placeholders, and both branches of an `{% if %}`,
are not what goes). fit.py holds the checks against the clinics, with these renders.

What no template decides is taken at its longest: a first name of len(FIRST_NAME_CHECKED) characters (a text greets a
patient by at most that much of theirs, wording.sms_first_name); the longest dates the formatters write (a Wednesday
in September with "tomorrow, ..." or "yesterday, ..." or with its year; both on New Year's Eve); each optional value (the
patient's link, a move notice's earlier time, a recall's earliest and ideal dates and its asking first) present and
absent, so that every `{% if %}` branch is rendered; an e-mail patient and a texts-only one. Below the reminders'
models: nothing here reads them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta

from clinic.models import Appointment, Clinic
from reminders.links import manage_url
from reminders.texts import sms_length_problem, sms_text_problem
from reminders.wording import RenderError, recall_context, render_sms, sms_context
from scheduler import versioned

FIRST_NAME_CHECKED = "Maximiliana-Josefine"  # 20 characters: the longest a text greets anyone by (wording.py)
# (the visit, how long before it the text goes): a Wednesday in September has the longest day and month names; the
# day before says "tomorrow, ...", a year before names the year, and New Year's Eve says both. A thank-you goes after
# its visit (marked done the next morning): the day after says "yesterday, ..." (longer than "tomorrow"), and the
# day after New Year's Eve "yesterday" with the year.
MOMENTS = (
    (datetime(2027, 9, 29, 10, 30), timedelta(days=1)),
    (datetime(2027, 9, 29, 10, 30), timedelta(days=400)),
    (datetime(2028, 1, 1, 10, 30), timedelta(days=1)),
    (datetime(2027, 9, 29, 10, 30), timedelta(days=-1)),
    (datetime(2027, 12, 31, 10, 30), timedelta(days=-1)),
)
PREVIOUS = datetime(2029, 9, 26, 10, 30)  # a move notice's earlier time: a Wednesday, in a year no `now` is in
# Each rendered present and absent (empty; a flag such as a recall's `recall_ask_first`: true and false).
OPTIONAL = ("manage_url", "previous_start_local", "recall_earliest_date", "recall_ideal_date", "recall_ask_first")
NEUTRAL_NAME = "Clinic"  # a name that cannot be what makes a text fail


def stand_in() -> Clinic:
    """A clinic that adds as little as one can: for a template's own check, and when there are no clinics yet."""
    return Clinic(name=NEUTRAL_NAME, timezone="UTC", phone="")


def contexts(clinic: Clinic, clinic_name: str, *, naming: str | None = None) -> Iterator[dict]:
    """Each context a text is checked with. `naming`: the text to be rendered; an optional value it does not name
    is left present only (whether it is there or not cannot change what a template that never names it says, and
    the product of all five is 32 renders where most texts name one or two)."""
    varied = [key for key in OPTIONAL if naming is None or key in naming]
    tz = clinic.tz
    for (start_local, before), email_on in itertools.product(MOMENTS, (False, True)):
        start = start_local.replace(tzinfo=tz)
        end = start + timedelta(hours=1)
        full = sms_context(
            clinic=clinic,
            clinic_name=clinic_name,
            first_name=FIRST_NAME_CHECKED,
            start_at=start,
            end_at=end,
            now=start - before,
            manage_link=manage_url(Appointment(clinic=clinic, start_at=start, end_at=end)),  # unsaved: its length
            email_on=email_on,
            previous_start=PREVIOUS.replace(tzinfo=tz),
        )
        full.update(recall_context(due_on=start, earliest=start, ideal=start, tz=tz, ask_first=True))
        for absent in itertools.product((False, True), repeat=len(varied)):
            gone = [key for key, out in zip(varied, absent, strict=True) if out]
            yield {**full, **{key: False if isinstance(full[key], bool) else "" for key in gone}}


def renders(text: str, clinic: Clinic, clinic_name: str) -> Iterator[str]:
    """Every text `text` makes for this clinic's patients, as it goes (RenderError if it cannot render)."""
    for context in contexts(clinic, clinic_name, naming=text):
        yield render_sms(text, context)


def problem(text: str, clinic: Clinic, clinic_name: str, *, words: bool = True) -> str:
    """Why `text` would not go for this clinic's patients, or '' (`words`: also the words a render puts in it)."""
    check = sms_text_problem if words else sms_length_problem
    try:
        return next((found for found in map(check, renders(text, clinic, clinic_name)) if found), "")
    except RenderError as exc:
        return f"It cannot be rendered ({exc})."


def template_own_problem(text: str) -> str:
    """Why `text` (an SMS template) would not go whatever clinic sends it, or ''."""
    with versioned.snapshot():
        return problem(text, stand_in(), NEUTRAL_NAME, words=False)
