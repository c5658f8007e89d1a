"""Will the texts go? Each active SMS template rendered for a clinic as the longest text it can make, checked when
a clinic or a template is saved.

A text that does not fit SMS_MAX_SEGMENTS as rendered, or that names a treatment (a clinic called "The Botox
Bar"), fails for good when it is due (content.render_message): the patient hears nothing, and staff find out from
the outbox. Every text names the clinic, so the check runs from both sides:

- a clinic's name for texts (`Clinic.display_sms_name`: its `sms_name`, else its name) against every active
  template (`clinic_sms_problems`, subscribed to clinic's seam, clinic.setting_checks); a template that fails with
  any clinic's name is left to the template's own check, so a clinic is only ever told about its own name;
- a template against the clinics whose names make the longest texts (`template_sms_problem`,
  ReminderTemplate.clean): its length, not the words in a clinic's name, which that clinic's check reports.

What the clinic does not decide is taken at its longest plausible: a first name of len(FIRST_NAME_CHECKED)
characters, the longest dates the formatters write (a Wednesday in September; with the year, or "tomorrow, ...";
a move notice's earlier time), both the e-mail patient's text and the texts-only one (`email_on`). A patient
with a longer first name can still make a text too long; that one fails visibly, in the outbox.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from clinic.models import Appointment, Clinic
from reminders import content
from reminders.links import manage_url
from reminders.models import ReminderTemplate
from reminders.texts import SMS_MAX_SEGMENTS, sms_fold, sms_segments, sms_text_problem, sms_units

FIRST_NAME_CHECKED = "Maximiliana-Josefine"  # 20 characters: a long first name, not the longest there is
_START = datetime(2027, 9, 29, 10, 30)  # a Wednesday in September: the longest day and month names
_PREVIOUS = datetime(2028, 9, 27, 10, 30)  # a move notice's earlier time, in another year than either `now`
_BEFORE = (timedelta(days=1), timedelta(days=400))  # sent the day before ("tomorrow, ..."), or a year ahead
NEUTRAL_NAME = "Clinic"  # a name that cannot be what makes a text fail


def _contexts(clinic: Clinic, clinic_name: str) -> Iterator[dict]:
    tz = clinic.tz
    start = _START.replace(tzinfo=tz)
    end = start + timedelta(hours=1)
    link = manage_url(Appointment(clinic=clinic, start_at=start, end_at=end))  # unsaved: its link's length
    for before in _BEFORE:
        for email_on in (False, True):
            context = content.sms_context(
                clinic=clinic,
                clinic_name=clinic_name,
                first_name=FIRST_NAME_CHECKED,
                start_at=start,
                end_at=end,
                now=start - before,
                manage_link=link,
                email_on=email_on,
                previous_start=_PREVIOUS.replace(tzinfo=tz),
            )
            context.update(content.recall_context(due_on=start, earliest=start, tz=tz))
            yield context


def _renders(text: str, clinic: Clinic, clinic_name: str) -> Iterator[str]:
    for context in _contexts(clinic, clinic_name):
        try:
            yield content.render_sms(text, context)
        except content.RenderError:
            return  # a template that does not render is the template's check's to report (texts.template_problem)


def _problem(text: str, clinic: Clinic, clinic_name: str) -> str:
    return next((p for p in map(sms_text_problem, _renders(text, clinic, clinic_name)) if p), "")


def _zone_known(clinic: Clinic) -> bool:
    try:
        zoneinfo.ZoneInfo(clinic.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return False  # the time zone's own validation says so
    return True


def clinic_sms_problems(clinic: Clinic) -> dict[str, list[str]]:
    """What stops a text to this clinic's patients going, by the field that mends it (`sms_name`, or `name` when
    the clinic has no name for texts)."""
    if not _zone_known(clinic) or not clinic.display_sms_name:
        return {}
    name = clinic.display_sms_name
    found = []
    for template in ReminderTemplate.objects.filter(is_active=True).exclude(sms_text="").only("name", "sms_text"):
        problem = _problem(template.sms_text, clinic, name)
        if problem and not _problem(template.sms_text, clinic, NEUTRAL_NAME):
            found.append(f"“{template.name}”: {problem}")
    if not found:
        return {}
    more = f" And {len(found) - 2} more." if len(found) > 2 else ""
    return {
        "sms_name" if clinic.sms_name.strip() else "name": [
            f"Every text names the clinic, and named “{name}” these texts would not go: {' '.join(found[:2])}{more} "
            "Give the clinic a shorter name for texts (SMS name), without the name of a treatment or drug."
        ]
    }


def _longest_named(clinics: Iterable[Clinic]) -> list[Clinic]:
    """The clinics whose names make the longest texts: the longest in the GSM alphabet (folded, as a text is), and
    the longest counted in UTF-16 units (a name that sends the whole text as UCS-2, or a text that is already)."""
    longest: dict[str, tuple[int, Clinic]] = {}
    for clinic in clinics:
        if not _zone_known(clinic):
            continue
        name, extra = clinic.display_sms_name, len(clinic.phone_national)
        units, encoding = sms_units(sms_fold(name))
        if encoding == "GSM-7" and units + extra > longest.get("GSM-7", (-1,))[0]:
            longest["GSM-7"] = (units + extra, clinic)
        utf16 = len(name.encode("utf-16-le")) // 2 + extra
        if utf16 > longest.get("UCS-2", (-1,))[0]:
            longest["UCS-2"] = (utf16, clinic)
    return list({clinic.pk: clinic for _, clinic in longest.values()}.values())


def template_sms_problem(text: str) -> str:
    """Why `text` (an SMS template) would be too long for a clinic's patients, or ''."""
    clinics = Clinic.objects.only("name", "sms_name", "phone", "timezone")
    for clinic in _longest_named(clinics):
        for sms in _renders(text, clinic, clinic.display_sms_name):
            segments, encoding = sms_segments(sms)
            if segments > SMS_MAX_SEGMENTS:
                return (
                    f"For the patients of {clinic.name} (texts name it “{clinic.display_sms_name}”) this text, with a "
                    f"first name of {len(FIRST_NAME_CHECKED)} characters and the longest dates, takes {segments} "
                    f"segments ({encoding}); at most {SMS_MAX_SEGMENTS} go. Shorten it, or give that clinic a "
                    "shorter name for texts (SMS name)."
                )
    return ""
