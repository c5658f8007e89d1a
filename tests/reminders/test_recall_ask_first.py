"""A recall the rules refuse on every date asks the patient to talk to the clinic first (review dec13c's DEFECT),
and one a warning holds back says "possible from X, ideally from Y" (dec13c's QUESTION, decided as recommended).

reminders.content.recall_outlook tells "no date can be given" (the engine finds no earliest start for the recalled
procedure: a course not ended, an absolute contraindication; or, asked with warnings as blocks, none either) from
"possible today": the first sets `recall_ask_first`, and the shipped `recall-due` texts (fixtures/plan_templates.json)
then still say the patient is due but ask them to talk to the clinic before booking, naming no medication or
condition, instead of inviting a booking. A later day no warning stands against is `recall_ideal_date`. With neither,
the texts say what they said before (reminders 0026 brought unedited templates over).
"""

from __future__ import annotations

import importlib
import json
from datetime import date

import pytest

from clinic.services import medication_course_add
from reminders import longest
from reminders.content import RecallOutlook, recall_earliest, recall_outlook
from reminders.models import ReminderTemplate
from reminders.texts import TEXT_ENGINE, sms_text_problem
from reminders.wording import recall_context, render_template
from tests.reminders.conftest import LONDON, book, london

STEP = importlib.import_module("reminders.migrations.0026_recall_asks_first_when_no_date")
NOW = london(2026, 3, 2, 9)
ASK = "Please talk to us before booking: we need to check something in your record with you first."


def _shipped() -> dict:
    from plans.defaults import SHIPPED

    return json.loads(SHIPPED.read_text(encoding="utf-8"))["recall_message"]


def _texts(row: dict) -> dict[str, str]:
    return {
        f: "\n".join(row[f]) if isinstance(row[f], list) else row[f]
        for f in ("email_subject", "email_text", "sms_text")
    }


def _context(*, ask_first: bool, earliest, ideal=None) -> dict:
    context = {
        "clinic_name": "Bloom Clinic",
        "clinic_phone": "020 7946 0000",
        "patient_first_name": "Ada",
        "recall_procedure_name": "Microneedling",
    }
    context.update(
        recall_context(due_on=london(2026, 4, 6, 12), earliest=earliest, ideal=ideal, tz=LONDON, ask_first=ask_first)
    )
    return context


@pytest.mark.django_db
@pytest.mark.parametrize("drug", ["isotretinoin", "anticoagulant"])
def test_no_earliest_start_asks_first_and_possible_today_does_not(patient, practitioner, drug):
    """Microneedling done Monday 9 March; a recall for the next one opening 6 April. With nothing against it, it is
    possible the day the recall goes (no date, no asking); with an isotretinoin course not ended, or an
    anticoagulant (absolute), the engine gives no date at all: `ask_first`. `recall_earliest` keeps answering None
    for both (its callers read a date only)."""
    done = book(patient, "microneedling", london(2026, 3, 9, 10), NOW)
    recall = {"opens_on": "2026-04-06", "procedure": "microneedling"}
    goes = london(2026, 4, 6, 10)
    assert recall_outlook(appointment=done, recall=recall, now=goes).ask_first is False
    assert recall_earliest(appointment=done, recall=recall, now=goes) is None
    medication_course_add(patient=patient, drug_code=drug, started_on=date(2026, 3, 12), now=NOW)
    outlook = recall_outlook(appointment=done, recall=recall, now=goes)
    assert outlook.ask_first is True and outlook.earliest is None
    assert recall_earliest(appointment=done, recall=recall, now=goes) is None


@pytest.mark.django_db
@pytest.mark.parametrize("recall", [{"opens_on": "2026-04-06"}, {"opens_on": "2026-04-06", "procedure": ""}, {}])
def test_a_recall_naming_no_procedure_gives_no_date_and_does_not_ask_first(
    patient, practitioner, django_assert_num_queries, recall
):
    """A recall whose payload names no procedure (nothing to ask the rules about) says what the texts said before:
    no date and no asking first, even where a course not ended would make the engine give none (which asks first
    when the procedure is named), and it reads nothing to find that out."""
    done = book(patient, "microneedling", london(2026, 3, 9, 10), NOW)
    medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2026, 3, 12), now=NOW)
    goes = london(2026, 4, 6, 10)
    named = recall_outlook(appointment=done, recall={**recall, "procedure": "microneedling"}, now=goes)
    assert named == RecallOutlook(ask_first=True)
    with django_assert_num_queries(0):
        assert recall_outlook(appointment=done, recall=recall, now=goes) == RecallOutlook()


@pytest.mark.django_db
def test_a_warning_against_every_date_asks_first_and_one_that_ends_gives_the_ideal_date(patient, practitioner):
    """Isotretinoin -> filler is a warning only (12 months, [000]): while the course runs it stands against every
    date, so, as the aftercare's list does, no date is given and the patient is asked first. Once the course ended
    (31 March), microneedling is possible from 30 September 2026 (6-month block) and ideally from 31 March 2027."""
    done = book(patient, "microneedling", london(2026, 3, 9, 10), NOW)
    goes = london(2026, 4, 6, 10)
    filler = {"opens_on": "2026-04-06", "procedure": "filler"}
    assert recall_outlook(appointment=done, recall=filler, now=goes) == RecallOutlook()
    course = medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2026, 3, 12), now=NOW)
    assert recall_outlook(appointment=done, recall=filler, now=goes) == RecallOutlook(ask_first=True)
    course.ended_on = date(2026, 3, 31)
    course.save(update_fields=["ended_on"])
    needling = recall_outlook(
        appointment=done, recall={"opens_on": "2026-04-06", "procedure": "microneedling"}, now=goes
    )
    assert not needling.ask_first
    assert needling.earliest.astimezone(LONDON).date() == date(2026, 9, 30)
    assert needling.ideal.astimezone(LONDON).date() == date(2027, 3, 31)
    later = recall_outlook(appointment=done, recall=filler, now=london(2026, 10, 1, 10))  # possible now, ideally
    assert later.earliest is None and later.ideal.astimezone(LONDON).date() == date(2027, 3, 31)


@pytest.mark.django_db
def test_the_shipped_recall_texts_say_possible_from_and_ideally_from(catalogue):
    """As the aftercare's list: "possible from X, ideally from Y"; "possible now" when the first is the day it goes."""
    texts = _texts(_shipped())
    both = _context(ask_first=False, earliest=london(2026, 9, 30, 0), ideal=london(2027, 3, 31, 0))
    email = render_template(TEXT_ENGINE, texts["email_text"], both)
    sms = render_template(TEXT_ENGINE, texts["sms_text"], both)
    assert "It is possible from Wednesday 30 September 2026, ideally from Wednesday 31 March 2027." in email
    assert "(possible from Wednesday 30 September 2026, ideally from Wednesday 31 March 2027). Call us" in sms
    assert "right for you" not in email and not sms_text_problem(sms)
    now_only = _context(ask_first=False, earliest=None, ideal=london(2027, 3, 31, 0))
    assert "It is possible now, ideally from Wednesday 31 March 2027." in render_template(
        TEXT_ENGINE, texts["email_text"], now_only
    )
    assert "(possible now, ideally from Wednesday 31 March 2027)" in render_template(
        TEXT_ENGINE, texts["sms_text"], now_only
    )


@pytest.mark.django_db
def test_the_shipped_recall_texts_ask_first_without_inviting_a_booking_or_naming_anything(catalogue):
    """With `recall_ask_first` the e-mail and the text say the patient is due, ask them to talk to the clinic first,
    and carry no "to book" and no earliest date; the text passes the SMS checks (words and length) as rendered."""
    texts = _texts(_shipped())
    asked = {f: render_template(TEXT_ENGINE, t, _context(ask_first=True, earliest=None)) for f, t in texts.items()}
    assert "book" not in asked["email_subject"].lower()
    for field in ("email_text", "sms_text"):
        assert ASK in asked[field] and "due for your next" in asked[field], field
        assert "to book" not in asked[field] and "earliest" not in asked[field] and "possible from" not in asked[field]
    assert "Microneedling" not in asked["sms_text"] and not sms_text_problem(asked["sms_text"])
    renders = list(longest.renders(texts["sms_text"], longest.stand_in(), longest.NEUTRAL_NAME))
    assert any(ASK in text for text in renders)  # the asking branch is among the renders the length check reads


def test_without_asking_first_the_shipped_recall_texts_say_what_they_said_before():
    """Reminders 0026 replaced the shipped wording: without the flag and an ideal date (a date, or none because it
    is possible that day), each field renders as the wording before it did."""
    texts = _texts(_shipped())
    before = {field: old for key, field, old, new in STEP.CHANGES}
    assert {key for key, *_ in STEP.CHANGES} == {"recall-due"} and set(before) == set(texts)
    for earliest in (None, london(2026, 4, 20, 0)):
        context = _context(ask_first=False, earliest=earliest)
        for field, text in texts.items():
            assert render_template(TEXT_ENGINE, text, context) == render_template(TEXT_ENGINE, before[field], context)


@pytest.mark.django_db
def test_the_shipped_recall_template_passes_its_own_check(catalogue):
    """ReminderTemplate.clean: the words as written and the longest renders (reminders.longest, both branches of
    `recall_ask_first`) within the SMS limits."""
    texts = _texts(_shipped())
    template = ReminderTemplate(
        default_key="recall-due-check",
        name="check",
        kind="recall",
        anchor="completion",
        offset_value=0,
        offset_unit="days",
        send_if_late=True,
        origin="clinic",
        source="check",
        **texts,
    )
    template.full_clean(exclude=["default_key"])
    assert not longest.template_own_problem(texts["sms_text"])
