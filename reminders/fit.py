"""Will the texts go? Each SMS template rendered as the longest texts it can make, checked when a clinic or a
template is saved, not found when a text is due.

A text that does not fit SMS_MAX_SEGMENTS as rendered, that cannot be rendered, or that names a treatment (a clinic
called "The Botox Bar") fails for good when it is due (content.render_message): the patient hears nothing, and
staff find out from the outbox. Three checks:

- a template on its own (`longest.template_own_problem`, ReminderTemplate.clean, so the shipped texts' loading
  too): its length as rendered for a stand-in clinic (a short name, no phone), not as written (the placeholders,
  and both branches of an `{% if %}`, are not what goes);
- a template against the clinics (`template_sms_problem`, the admin's template form): rendered for the clinics
  whose names for texts, phone numbers and zones' abbreviations can make the longest texts, naming the clinic it
  would not go for;
- a clinic's name for texts (`Clinic.display_sms_name`: its `sms_name`, else its name) against every active
  template (`clinic_sms_problems`, subscribed to clinic's seam clinic.setting_checks; `reminders_status` lists the
  clinics saved before it): too long (its name, number or zone's abbreviation), or naming a treatment. A template
  that fails for the stand-in is the template's own problem, never held against a clinic.

The texts are rendered as reminders.longest renders them: at their longest (its module says how).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.core.exceptions import ValidationError

from clinic.models import Clinic, validate_timezone
from reminders import longest
from reminders.models import ReminderTemplate
from reminders.texts import SMS_MAX_SEGMENTS, sms_fold, sms_segments, sms_units
from reminders.wording import RenderError
from scheduler import versioned


def _zone_known(clinic: Clinic) -> bool:
    try:
        validate_timezone(clinic.timezone)
    except (ValidationError, TypeError):
        return False  # the time zone's own validation says so
    return True


def _active_sms_templates() -> list[ReminderTemplate]:
    return list(ReminderTemplate.objects.filter(is_active=True).exclude(sms_text="").only("name", "sms_text"))


def _clinic_problems(clinic: Clinic, templates: list[ReminderTemplate]) -> dict[str, list[str]]:
    if not _zone_known(clinic) or not clinic.display_sms_name:
        return {}
    name = clinic.display_sms_name
    found = []
    for template in templates:
        problem = longest.problem(template.sms_text, clinic, name)
        # What fails for the stand-in too (a short name, no number, UTC) is the template's own problem.
        if problem and not longest.problem(template.sms_text, longest.stand_in(), longest.NEUTRAL_NAME, words=False):
            found.append(f"“{template.name}”: {problem}")
    if not found:
        return {}
    more = f" And {len(found) - 2} more." if len(found) > 2 else ""
    return {
        "sms_name" if clinic.sms_name.strip() else "name": [
            f"Texts name the clinic (and some its phone number and local time): named “{name}”, these texts would not "
            f"go: {' '.join(found[:2])}{more} Give the clinic a shorter name for texts (SMS name), without the name "
            "of a treatment or drug."
        ]
    }


def clinic_sms_problems(clinic: Clinic) -> dict[str, list[str]]:
    """What stops a text to this clinic's patients going, by the field that mends it (`sms_name`, or `name` when
    the clinic has no name for texts)."""
    with versioned.snapshot():  # the catalogue's names for the words check: read once, not once a render
        return _clinic_problems(clinic, _active_sms_templates())


def clinics_sms_problems(clinics: Iterable[Clinic]) -> Iterator[tuple[Clinic, dict[str, list[str]]]]:
    """`clinic_sms_problems` of each clinic whose name stops a text (the templates read once)."""
    with versioned.snapshot():
        templates = _active_sms_templates()
        for clinic in clinics:
            problems = _clinic_problems(clinic, templates)
            if problems:
                yield clinic, problems


def templates_own_problems() -> Iterator[tuple[ReminderTemplate, str]]:
    """Active SMS templates that would not go whatever clinic sends them (saved before their check)."""
    with versioned.snapshot():
        for template in _active_sms_templates():
            problem = longest.problem(template.sms_text, longest.stand_in(), longest.NEUTRAL_NAME, words=False)
            if problem:
                yield template, problem


def _zone_shape(clinic: Clinic) -> tuple[int, ...]:
    """How long the clinic's zone's abbreviation is at each moment the check renders: zones alike in that make
    texts of the same length."""
    tz = clinic.tz
    moments = [start.replace(tzinfo=tz) for start, _ in longest.MOMENTS] + [longest.PREVIOUS.replace(tzinfo=tz)]
    return tuple(len(moment.tzname() or "") for moment in moments)


def _frontier(points: list[tuple[int, int, Clinic]]) -> list[Clinic]:
    """The clinics no other clinic outdoes in both a name's length and a number's: a text grows with each (however
    often it names them), so its longest render is one of theirs."""
    kept, best_phone = [], -1
    for _, phone, clinic in sorted(points, key=lambda p: (-p[0], -p[1])):
        if phone > best_phone:
            kept.append(clinic)
            best_phone = phone
    return kept


def _longest_named(clinics: Iterable[Clinic]) -> list[Clinic]:
    """The clinics whose texts can be the longest: for each shape of zone, those that no other outdoes in both the
    name for texts (counted in the GSM alphabet, folded as a text is, among the names that fold into it; and in
    UTF-16 units, as it counts in a text that goes as UCS-2) and the phone number."""
    groups: dict[tuple, list[tuple[int, int, Clinic]]] = {}
    for clinic in clinics:
        if not _zone_known(clinic):
            continue
        name, phone = clinic.display_sms_name, len(clinic.phone_national)
        shape = _zone_shape(clinic)
        units, encoding = sms_units(sms_fold(name))
        if encoding == "GSM-7":
            groups.setdefault((shape, "GSM-7"), []).append((units, phone, clinic))
        groups.setdefault((shape, "UCS-2"), []).append((len(name.encode("utf-16-le")) // 2, phone, clinic))
    picked = (clinic for points in groups.values() for clinic in _frontier(points))
    return list({clinic.pk: clinic for clinic in picked}.values())


def template_sms_problem(text: str) -> str:
    """Why `text` (an SMS template) would be too long for some clinic's patients, or '' (their names' words are
    the clinics' own check)."""
    clinics = _longest_named(Clinic.objects.only("name", "sms_name", "phone", "timezone"))
    try:
        for clinic in clinics:
            for sms in longest.renders(text, clinic, clinic.display_sms_name):
                segments, encoding = sms_segments(sms)
                if segments > SMS_MAX_SEGMENTS:
                    return (
                        f"For the patients of {clinic.name} (texts name it “{clinic.display_sms_name}”) this text, with "
                        f"a first name of {len(longest.FIRST_NAME_CHECKED)} characters and the longest dates, takes {segments} "
                        f"segments ({encoding}); at most {SMS_MAX_SEGMENTS} go. Shorten it, or give that clinic a "
                        "shorter name for texts (SMS name)."
                    )
    except RenderError as exc:
        return f"It cannot be rendered ({exc})."
    return ""
