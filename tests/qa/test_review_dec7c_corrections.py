"""Review probe (7 December): corrections. Something recorded by mistake is corrected, and the product follows the
correction both ways and says so.

The promises read (domain brief section 6; the API contract, "An appointment stays safe after it is booked";
docs/rules.md "After booking: the rules keep holding"; docs/api.md "Bookings a later change made unsafe";
docs/reminders.md; docs/organisations.md "Merging"):

* whenever a patient's record changes (a reported procedure, a medication course, the intake, a merge) or the
  organisation's rules change, every future active appointment is checked again; a booking flagged by a mistake
  "leaves needs_review ... by the record being corrected (then it is re-checked and goes back to confirmed, or
  pending_clearance)";
* "Nothing is changed silently: each move is audited, shown to staff and sent as a webhook";
* held care messages are planned again when the booking is released, exactly once (never duplicated);
* a clearance covers the relative contraindications it was given for (condition:eczema), not others.

Each correction goes through the interface that can make it: the API for what it lets a platform change (a
course's end, the intake), the admin for what only it can (a reported procedure's date or kind, a course
reopened or removed), the rule-book service for a rule tightened and then reverted. The clock is the suite's
Monday, 2 March 2026, 09:00 in London (GMT).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    MedicationCourse,
    ProcedureRecord,
    StaffRole,
)
from clinic.services import IntakeLine, conditions_replace, medication_course_add, procedure_record_add
from plans.defaults import plan_templates_load
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus, WebhookEndpoint
from scheduler import rulebooks
from scheduler.booking import appointment_clear
from scheduler.models import IntervalRule, RuleBookVersion
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    API,
    CLINICIAN,
    NOW,
    admin_errors,
    admin_post,
    book,
    fresh,
    ldn,
    split,
    staff_client,
    words,
)

SYSTEM_LABEL = "system: record re-check"
DOCS = Path(django_settings.BASE_DIR) / "docs"


# --- The world ---------------------------------------------------------------------------------------------------


@pytest.fixture
def world(care_texts, settings, frozen):
    """A London clinic (Dr Ada), Pat Lee reached by e-mail and text, a clinical platform of the clinic listening to
    every event; a rule change's re-check runs in this process (no broker)."""
    settings.CELERY_BROKER_URL = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    clinic = ClinicFactory(code="cor-london", name="Correction London", timezone="Europe/London")
    dr = PractitionerFactory(clinic=clinic, name="Dr Ada")
    pat = PatientFactory(
        clinic=clinic,
        first_name="Pat",
        last_name="Lee",
        email="pat.lee@example.com",
        phone="+447911123456",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    client, key = new_api_client(clinic, name="cor-platform", clinical=True)
    WebhookEndpoint.objects.create(client=client, url="https://platform.example/hooks")
    return {"clinic": clinic, "dr": dr, "pat": pat, "api": http(key)}


def moves(appointment) -> list[tuple[str, str, str]]:
    """(action, from, to) of every re-check move of `appointment`, in order."""
    return [
        (action, details.get("from"), details.get("to"))
        for action, details in AuditEvent.objects.filter(appointment=appointment, actor_label=SYSTEM_LABEL)
        .order_by("at", "id")
        .values_list("action", "details")
    ]


def causes(appointment) -> list[str]:
    return list(
        AuditEvent.objects.filter(appointment=appointment, actor_label=SYSTEM_LABEL)
        .order_by("at", "id")
        .values_list("reason", flat=True)
    )


def events(appointment) -> list[str]:
    """The webhook events planned about `appointment`, in the order they were planned (by sequence)."""
    rows = OutboxMessage.objects.filter(appointment=appointment, channel="webhook")
    return [p["type"] for p in sorted(rows.values_list("payload", flat=True), key=lambda p: p["sequence"])]


def care(appointment, kind="pre_care") -> list[tuple[str, str]]:
    """(channel, status) of the appointment's unsent or sent rows of `kind` (cancelled and skipped left out)."""
    return sorted(
        OutboxMessage.objects.filter(appointment=appointment, kind=kind)
        .exclude(channel="webhook")
        .exclude(status__in=[OutboxStatus.CANCELLED, OutboxStatus.SKIPPED])
        .values_list("channel", "status")
    )


def mn_flagged_by_reported_botox(w, *, performed=None):
    """Microneedling booked for Tuesday 10 March 10:00, then a Botox reported (by the platform) as done on Sunday
    1 March: too soon (2 weeks), so the booking needs review. Returns (appointment, the record's id)."""
    mn = book(w["pat"], ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    response = w["api"].post(
        f"{API}/patients/{w['pat'].pk}/procedures/",
        {"procedure": "botox", "performed_at": (performed or ldn(2026, 3, 1)).isoformat(), "source": "reported"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return mn, response.json()["id"]


# --- The admin's record page, posted as the page draws it ----------------------------------------------------------


# --- A reported procedure corrected ---------------------------------------------------------------------------


def test_a_reported_botox_whose_date_is_corrected_releases_the_booking_and_says_so_once(world, admin_client):
    """Contract: needs_review is left 'by the record being corrected (then it is re-checked and goes back to
    confirmed)'; brief 6: 'each move is audited, shown to staff and sent as a webhook'. The Botox was in February,
    not yesterday: corrected in the admin, the booking is confirmed again, audited with the cause and announced
    once, and the API shows it with no reasons."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW

    response = admin_post(
        admin_client, w["pat"], edit={ProcedureRecord.objects.get(pk=record_id).pk: split(ldn(2026, 2, 1))}
    )
    assert response.status_code == 302, admin_errors(response)
    assert ProcedureRecord.objects.get(pk=record_id).performed_at == ldn(2026, 2, 1)

    row = fresh(mn)
    assert (row.status, row.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert moves(row) == [("needs_review", "confirmed", "needs_review"), ("released", "needs_review", "confirmed")]
    assert "edited in the admin" in causes(row)[-1]
    assert events(row) == ["appointment.created", "appointment.needs_review", "appointment.released"]
    shown = w["api"].get(f"{API}/appointments/{mn.pk}/").json()
    assert (shown["status"], shown["review_reasons"]) == ("confirmed", [])


def test_a_reported_botox_corrected_to_a_filler_is_flagged_again_for_the_filler_rule(world, admin_client):
    """docs/rules.md: 'other block rules than it needs review for already ... still needs_review, review_reasons
    replaced | needs_review (from and to needs_review), appointment.needs_review'. It was a filler, not a Botox: the
    booking still needs review, now for filler's 4 weeks, and staff and platforms are told the new reason."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w)
    [before] = fresh(mn).review_reasons
    assert before["conflicts_with"]["code"] == "botox"

    response = admin_post(
        admin_client, w["pat"], edit={ProcedureRecord.objects.get(pk=record_id).pk: {"procedure": "filler"}}
    )
    assert response.status_code == 302, admin_errors(response)

    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    [after] = row.review_reasons
    assert after["conflicts_with"]["code"] == "filler" and after["rule"] != before["rule"]
    assert after["earliest_allowed"].startswith("2026-03-29"), after  # 1 March + 4 weeks
    assert moves(row) == [
        ("needs_review", "confirmed", "needs_review"),
        ("needs_review", "needs_review", "needs_review"),
    ]
    assert events(row) == ["appointment.created", "appointment.needs_review", "appointment.needs_review"]
    latest = max(
        OutboxMessage.objects.filter(appointment=mn, event="appointment.needs_review").values_list(
            "payload", flat=True
        ),
        key=lambda payload: payload["sequence"],
    )
    assert [r["conflicts_with"]["code"] for r in latest["data"]["appointment"]["review_reasons"]] == ["filler"]


def test_a_reported_date_corrected_closer_flags_a_booking_it_had_spared(world, admin_client):
    """Brief 6, the other way: the Botox reported for 1 February was on 1 March. Corrected, the microneedling nine
    days later now breaks the 2-week rule: needs review, audited and announced."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w, performed=ldn(2026, 2, 1))
    assert fresh(mn).status == AppointmentStatus.CONFIRMED

    response = admin_post(
        admin_client, w["pat"], edit={ProcedureRecord.objects.get(pk=record_id).pk: split(ldn(2026, 3, 1))}
    )
    assert response.status_code == 302, admin_errors(response)
    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    assert moves(row) == [("needs_review", "confirmed", "needs_review")]
    assert events(row)[-1] == "appointment.needs_review"
    assert care(row) == [("email", "held"), ("sms", "held")]


def test_a_reported_procedures_date_corrected_to_the_future_is_refused_as_the_api_refuses_it(world, admin_client):
    """clinic.services.procedure_record_add refuses a procedure performed after now (performed_in_future); a
    correction of the same field in the admin must not store what the record's own service refuses."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w, performed=ldn(2026, 2, 1))
    refused = w["api"].post(
        f"{API}/patients/{w['pat'].pk}/procedures/",
        {"procedure": "botox", "performed_at": ldn(2027, 2, 1).isoformat(), "source": "reported"},
        format="json",
    )
    assert refused.status_code == 400

    response = admin_post(
        admin_client, w["pat"], edit={ProcedureRecord.objects.get(pk=record_id).pk: split(ldn(2027, 2, 1))}
    )
    assert response.status_code == 200  # the form again, with the error
    assert ProcedureRecord.objects.get(pk=record_id).performed_at == ldn(2026, 2, 1)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED


def test_removed_added_again_and_removed_again_ends_confirmed_with_its_care_planned_once(world, admin_client):
    """Contract: a correction releases; docs/reminders.md: unsent rows are held and released, 'never duplicated'.
    The Botox is removed (entered in error), reported again (the patient was right after all), removed again (it was
    another patient's): each move is audited and sent once, in order, and the visit keeps one pre-care note and one
    reminder per channel, planned and not held."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w)
    planned = {kind: care(mn, kind) for kind in ("pre_care", "reminder", "confirmation")}
    assert planned["pre_care"] == [("email", "held"), ("sms", "held")]

    assert admin_post(admin_client, w["pat"], delete=[ProcedureRecord.objects.get(pk=record_id).pk]).status_code == 302
    assert fresh(mn).status == AppointmentStatus.CONFIRMED
    again = procedure_record_add(patient=w["pat"], procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    assert admin_post(admin_client, w["pat"], delete=[again.pk]).status_code == 302

    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED
    assert [m[0] for m in moves(row)] == ["needs_review", "released", "needs_review", "released"]
    assert events(row) == [
        "appointment.created",
        "appointment.needs_review",
        "appointment.released",
        "appointment.needs_review",
        "appointment.released",
    ]
    sequences = sorted(
        OutboxMessage.objects.filter(appointment=mn, channel="webhook").values_list("payload__sequence", flat=True)
    )
    assert sequences == sorted(set(sequences)), sequences  # each event its own place in the order
    for kind in ("pre_care", "reminder", "confirmation"):
        assert [channel for channel, _ in care(row, kind)] == [c for c, _ in planned[kind]], kind
        assert {status for _, status in care(row, kind)} <= {"pending", "sent"}, kind


def test_a_flag_and_its_correction_before_the_confirmation_went_send_one_confirmation(world, admin_client):
    """Brief 3/4 and docs/reminders.md: nothing but notices goes while it needs review; once released, the held
    confirmation goes, once per channel, and the dispatcher run again sends nothing more."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w)
    dispatch_local(now=NOW)
    assert not OutboxMessage.objects.filter(appointment=mn, status=OutboxStatus.SENT).exclude(channel="webhook")
    assert admin_post(admin_client, w["pat"], delete=[ProcedureRecord.objects.get(pk=record_id).pk]).status_code == 302
    dispatch_local(now=NOW)
    dispatch_local(now=NOW)
    sent = OutboxMessage.objects.filter(appointment=mn, status=OutboxStatus.SENT).exclude(channel="webhook")
    assert sorted(sent.values_list("kind", "channel")) == [("confirmation", "email"), ("confirmation", "sms")]


def test_a_correction_that_changes_no_verdict_announces_nothing(world, admin_client):
    """Brief 6 asks for every move to be told, and only moves: the reported Botox's notes corrected in the admin
    (a record change, so the booking is re-checked) and the page saved as it is leave the booking flagged for the
    same reason, with no new audit entry or event; the note is kept."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w)
    before = (events(fresh(mn)), fresh(mn).review_reasons)
    response = admin_post(
        admin_client, w["pat"], edit={ProcedureRecord.objects.get(pk=record_id).pk: {"notes": "per GP"}}
    )
    assert response.status_code == 302, admin_errors(response)
    assert admin_post(admin_client, w["pat"]).status_code == 302
    assert ProcedureRecord.objects.get(pk=record_id).notes == "per GP"
    assert (events(fresh(mn)), fresh(mn).review_reasons) == before
    assert [m[0] for m in moves(fresh(mn))] == ["needs_review"]


def test_there_is_no_way_for_a_platform_to_take_back_a_procedure_it_reported(world):
    """The contract's way out of needs_review is 'the record being corrected'. A platform that reported a Botox for
    the wrong patient reads no address to correct or remove it: a DELETE is a clear 405 (not a 500), and the
    booking stays flagged until someone corrects it in the admin."""
    w = world
    mn, record_id = mn_flagged_by_reported_botox(w)
    collection = w["api"].delete(f"{API}/patients/{w['pat'].pk}/procedures/")
    assert collection.status_code == 405 and "DELETE" not in collection["Allow"]
    one = w["api"].delete(f"{API}/patients/{w['pat'].pk}/procedures/{record_id}/")
    assert one.status_code in (404, 405), one.status_code
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW


def test_the_api_docs_say_how_a_procedure_reported_in_error_is_corrected():
    text = (DOCS / "api.md").read_text()
    section = text[text.index("### Bookings a later change made unsafe") :]
    section = section[: section.index("\n### ", 5)]
    assert "procedure" in section and any(word in section for word in ("admin", "DELETE", "withdraw", "remove"))


# --- A medication course corrected -------------------------------------------------------------------------------


def test_an_isotretinoin_end_corrected_later_then_back_flags_and_releases_over_the_api(world):
    """Brief 2: microneedling 6 months after the course ends (block). The platform recorded the end as June 2025;
    the clinician corrects it to January 2026 (flagged, no earlier than July), then back to June (released). Each
    correction, sent with the course's ETag, is audited, announced and shown."""
    w = world
    api, pat = w["api"], w["pat"]
    mn = book(pat, ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    made = api.post(
        f"{API}/patients/{pat.pk}/medications/",
        {"drug": "isotretinoin", "started_on": "2025-01-01", "ended_on": "2025-06-01"},
        format="json",
    )
    assert made.status_code == 201, made.content
    course = f"{API}/patients/{pat.pk}/medications/{made.json()['id']}/"
    assert fresh(mn).status == AppointmentStatus.CONFIRMED  # 9 months: only the 12-month warning

    later = api.patch(course, {"ended_on": "2026-01-10"}, format="json", HTTP_IF_MATCH=api.get(course)["ETag"])
    assert later.status_code == 200, later.content
    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = w["api"].get(f"{API}/appointments/{mn.pk}/").json()["review_reasons"]
    assert reason["earliest_allowed"] == "2026-07-10T00:00:00+01:00", reason  # the clinic's day, in BST

    back = api.patch(course, {"ended_on": "2025-06-01"}, format="json", HTTP_IF_MATCH=later["ETag"])
    assert back.status_code == 200, back.content
    row = fresh(mn)
    assert (row.status, row.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert [m[0] for m in moves(row)] == ["needs_review", "released"]
    assert events(row)[1:] == ["appointment.needs_review", "appointment.released"]
    assert api.get(f"{API}/appointments/{mn.pk}/").json()["status"] == "confirmed"


def test_the_audit_names_a_corrected_course_as_staff_read_it(world):
    """docs/rules.md: 'Each change is audited with its cause ("history: Botulinum toxin injection (Botox) added")';
    a course recorded reads 'medication: Isotretinoin (Accutane) course recorded'. Its end corrected should name the
    drug the same way on the appointment's history, not by its catalogue code."""
    w = world
    mn = book(w["pat"], ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    course = medication_course_add(
        patient=w["pat"], drug_code="isotretinoin", started_on=date(2025, 1, 1), ended_on=date(2026, 1, 10), now=NOW
    )
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    response = w["api"].patch(
        f"{API}/patients/{w['pat'].pk}/medications/{course.pk}/", {"ended_on": "2025-06-01"}, format="json"
    )
    assert response.status_code == 200, response.content
    recorded, corrected = causes(fresh(mn))
    assert "Isotretinoin (Accutane)" in recorded
    assert "Isotretinoin (Accutane)" in corrected, corrected


def test_a_course_end_recorded_in_error_is_reopened_in_the_admin_and_holds_the_booking_with_no_date(
    world, admin_client
):
    """Brief 2: 'A course that has not ended blocks every date ...; the earliest eligible start is then unknown
    (null)'. The end was recorded by mistake (the patient is still taking it): cleared in the admin, the booking
    needs review with no earliest date; over the API the end cannot be taken back (a 400, not a 500)."""
    w = world
    mn = book(w["pat"], ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    course = medication_course_add(
        patient=w["pat"], drug_code="isotretinoin", started_on=date(2025, 1, 1), ended_on=date(2025, 6, 1), now=NOW
    )
    assert fresh(mn).status == AppointmentStatus.CONFIRMED
    reopen = w["api"].patch(f"{API}/patients/{w['pat'].pk}/medications/{course.pk}/", {"ended_on": None}, format="json")
    assert reopen.status_code == 400, reopen.content

    assert admin_post(admin_client, w["pat"], edit={course.pk: {"ended_on": ""}}).status_code == 302
    assert MedicationCourse.objects.get(pk=course.pk).ended_on is None
    row = fresh(mn)
    assert row.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = row.review_reasons
    assert reason["earliest_allowed"] is None
    assert events(row)[-1] == "appointment.needs_review"


def test_a_course_removed_over_the_api_is_a_clear_refusal_and_removed_in_the_admin_releases(world, admin_client):
    """The API lets a platform end a course, not remove one: a DELETE is a 405 naming what is allowed, never a 500.
    Removed in the admin (entered for the wrong patient), the booking it flagged is released and announced."""
    w = world
    mn = book(w["pat"], ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    course = medication_course_add(patient=w["pat"], drug_code="anticoagulant", started_on=date(2026, 2, 1), now=NOW)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    refused = w["api"].delete(f"{API}/patients/{w['pat'].pk}/medications/{course.pk}/")
    assert refused.status_code == 405 and "PATCH" in refused["Allow"]
    assert admin_post(admin_client, w["pat"], delete=[course.pk]).status_code == 302
    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED
    assert events(row)[-2:] == ["appointment.needs_review", "appointment.released"]
    assert care(row) == [("email", "pending"), ("sms", "pending")]


# --- An intake answer corrected, and clearances --------------------------------------------------------------------


def test_an_absolute_answer_corrected_to_a_relative_one_goes_to_clearance_not_confirmed(world):
    """Contract: released 'goes back to confirmed, or pending_clearance'. The intake said active skin infection
    (absolute) by mistake; corrected to eczema history (relative), the booking leaves review for clearance, its
    messages still held, with one event for each move."""
    w = world
    api, pat = w["api"], w["pat"]
    mn = book(pat, ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    conditions = f"{API}/patients/{pat.pk}/conditions/"
    assert api.put(conditions, [{"condition": "skin_infection", "status": "active"}], format="json").status_code == 200
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    assert api.put(conditions, [{"condition": "eczema", "status": "history"}], format="json").status_code == 200

    row = fresh(mn)
    assert (row.status, row.review_reasons) == (AppointmentStatus.PENDING_CLEARANCE, [])
    assert moves(row) == [
        ("needs_review", "confirmed", "needs_review"),
        ("released", "needs_review", "pending_clearance"),
    ]
    assert events(row)[1:] == ["appointment.needs_review", "appointment.released"]
    assert {status for _, status in care(row)} == {"held"}


def test_a_cleared_booking_flagged_by_a_mistake_and_corrected_comes_back_confirmed_not_to_clearance(
    world, admin_client
):
    """docs/rules.md: 'A clinician's clearance covers the relative contraindications it was given for'. Eczema
    cleared, then a Botox reported in error and removed: the booking is released to confirmed (the clearance still
    stands), its messages let go."""
    w = world
    conditions_replace(patient=w["pat"], lines=[IntakeLine("eczema", "history")], now=NOW)
    mn = book(w["pat"], ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    assert mn.status == AppointmentStatus.PENDING_CLEARANCE
    appointment_clear(appointment=fresh(mn), actor=CLINICIAN, now=NOW, reason="Eczema quiet for years")
    record = procedure_record_add(patient=w["pat"], procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    assert admin_post(admin_client, w["pat"], delete=[record.pk]).status_code == 302

    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED
    assert moves(row)[-1] == ("released", "needs_review", "confirmed")
    assert {status for _, status in care(row)} == {"pending"}


def test_a_clearance_outlives_its_cause_removed_and_added_again_but_covers_no_other_condition(world):
    """Contract: back to pending_clearance 'unless it was already cleared for those same rules'; docs/rules.md:
    a clearance is named by what it is about (condition:eczema). Eczema cleared, removed from the intake (a
    mistake), added back: nothing moves, nothing is announced. Psoriasis added: that one was never cleared, so
    the booking goes back to a clinician, once."""
    w = world
    api, pat = w["api"], w["pat"]
    conditions = f"{API}/patients/{pat.pk}/conditions/"
    eczema = [{"condition": "eczema", "status": "history"}]
    assert api.put(conditions, eczema, format="json").status_code == 200
    mn = book(pat, ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    appointment_clear(appointment=fresh(mn), actor=CLINICIAN, now=NOW, reason="Eczema quiet for years")
    after_clear = events(fresh(mn))

    assert api.put(conditions, [], format="json").status_code == 200
    assert api.put(conditions, eczema, format="json").status_code == 200
    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED and moves(row) == [] and events(row) == after_clear

    both = [*eczema, {"condition": "psoriasis", "status": "active"}]
    assert api.put(conditions, both, format="json").status_code == 200
    row = fresh(mn)
    assert row.status == AppointmentStatus.PENDING_CLEARANCE
    assert moves(row) == [("clearance_requested", "confirmed", "pending_clearance")]
    assert events(row)[-1] == "appointment.clearance_requested"


# --- A rule tightened, then reverted ---------------------------------------------------------------------------


def test_a_rule_tightened_by_mistake_and_reverted_releases_under_the_newest_version(
    world, django_capture_on_commit_callbacks
):
    """Brief 6: 'each change makes a new version of its rule book, and every decision records the version it used'.
    Botox → microneedling tightened to 4 weeks by mistake, then reverted (the override deleted: the default is back):
    the booking three weeks after a Botox is flagged under the first version and released under the next, each
    audited with its version and announced once; the API shows it confirmed."""
    w = world
    organisation = w["clinic"].organisation
    procedure_record_add(patient=w["pat"], procedure_code="botox", performed_at=ldn(2026, 2, 20), now=NOW)
    mn = book(w["pat"], ldn(2026, 3, 13), NOW, practitioner_id=w["dr"].pk)
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    rule = IntervalRule(
        organisation=organisation,
        replaces=default,
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=4,
        gap_unit=default.gap_unit,
        severity=default.severity,
        source="Typo: meant the filler rule",
    )
    with django_capture_on_commit_callbacks(execute=True):
        tightened = rulebooks.rule_save(rule=rule, user=None, reason="protocol change", now=NOW)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW
    with django_capture_on_commit_callbacks(execute=True):
        reverted = rulebooks.rule_delete(rule=rule, user=None, reason="entered by mistake", now=NOW)

    row = fresh(mn)
    assert (row.status, row.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    flagged, released = AuditEvent.objects.filter(appointment=mn, actor_label=SYSTEM_LABEL).order_by("at", "id")
    assert (flagged.action, released.action) == ("needs_review", "released")
    assert flagged.details["rulebook_version"] != released.details["rulebook_version"]
    assert RuleBookVersion.objects.filter(organisation=organisation).count() == 2
    assert tightened.pk != reverted.pk
    assert events(row)[1:] == ["appointment.needs_review", "appointment.released"]
    assert w["api"].get(f"{API}/appointments/{mn.pk}/").json()["status"] == "confirmed"


# --- A merge made by mistake ---------------------------------------------------------------------------------------


def test_a_wrong_merges_borrowed_botox_removed_from_the_survivor_releases_the_booking(world, admin_client):
    """Brief 6: a merge re-checks everything booked. Two records merged by mistake (two different Pat Lees): the
    other's Botox flags this Pat's microneedling; removing that Botox from the survivor's record (the only
    correction the product offers) releases it, audited and announced."""
    w = world
    other = PatientFactory(
        clinic=w["clinic"], first_name="Pat", last_name="Lee", email="p.lee@example.org", phone="+447911000999"
    )
    borrowed = procedure_record_add(patient=other, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    mn = book(w["pat"], ldn(2026, 3, 10), NOW, practitioner_id=w["dr"].pk)
    patient_merge(merged=other, into=w["pat"], now=NOW, actor_label="dr@qa", clinical=True)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW

    assert admin_post(admin_client, w["pat"], delete=[borrowed.pk]).status_code == 302
    row = fresh(mn)
    assert row.status == AppointmentStatus.CONFIRMED
    assert [m[0] for m in moves(row)] == ["needs_review", "released"]
    assert events(row)[-1] == "appointment.released"


def test_a_merge_made_by_mistake_cannot_be_undone_over_the_api_and_says_so_clearly(world):
    """The API answers an unknown operation on a patient as a problem, never a 500: 'unmerge' is not an address."""
    w = world
    other = PatientFactory(clinic=w["clinic"], first_name="Pat", last_name="Leigh", email="", phone="+447911000998")
    patient_merge(merged=other, into=w["pat"], now=NOW, actor_label="dr@qa", clinical=True)
    for path in (f"/patients/{w['pat'].pk}/unmerge/", f"/patients/{other.pk}/unmerge/"):
        response = w["api"].post(f"{API}{path}", {}, format="json")
        assert response.status_code in (308, 404, 405), (path, response.status_code)
        assert response["Content-Type"].startswith("application/problem+json")


def test_the_docs_say_what_to_do_about_a_merge_made_by_mistake():
    text = (DOCS / "organisations.md").read_text()
    said = r"unmerge|undo(ne)? (a|the|it|this) merge|merged? by mistake|merge cannot be (undone|reversed)|wrong(ly)? merged"
    assert re.search(said, text, re.I)


# --- What staff see ------------------------------------------------------------------------------------------------


def test_the_desk_lists_the_flagged_booking_until_the_correction_and_its_page_tells_both_moves(world, admin_client):
    """docs/frontdesk.md: Today lists 'the bookings a record change made unsafe (needs attention)'; the appointment
    page's audit trail shows 'each booking, move, clearance and re-check with the rule book version it used'."""
    w = world
    desk = staff_client(w["clinic"], StaffRole.RECEPTIONIST, "cor-reception")
    mn, record_id = mn_flagged_by_reported_botox(w)
    today = reverse("frontdesk:today", args=[w["clinic"].code])
    page = reverse("frontdesk:appointment", args=[w["clinic"].code, mn.pk])
    assert "Needs attention 1" in words(desk.get(today))

    assert admin_post(admin_client, w["pat"], delete=[ProcedureRecord.objects.get(pk=record_id).pk]).status_code == 302
    assert "No booking needs attention" in words(desk.get(today))
    shown = words(desk.get(page))
    assert "Needs review" not in shown.split("History of this appointment")[0]
    trail = shown.split("History of this appointment")[1]
    assert trail.count(SYSTEM_LABEL) == 2
    assert "Botulinum toxin injection (Botox) added" in trail and "edited in the admin" in trail


def test_a_plan_session_flagged_by_a_mistake_shows_booked_again_once_corrected(world, admin_client):
    """docs/plans.md: a session shows its booking's state. A microneedling course's first session flagged by a
    Botox reported in error, then corrected: the plan shows the session booked again, not needing review."""
    w = world
    plan_templates_load()
    made = w["api"].post(
        f"{API}/patients/{w['pat'].pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-10"},
        format="json",
    )
    assert made.status_code == 201, made.content
    plan = made.json()
    first = Appointment.objects.get(pk=plan["sessions"][0]["appointment"])
    assert first.start_at < ldn(2026, 3, 15)
    record = procedure_record_add(patient=w["pat"], procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    assert fresh(first).status == AppointmentStatus.NEEDS_REVIEW
    assert admin_post(admin_client, w["pat"], delete=[record.pk]).status_code == 302
    assert fresh(first).status == AppointmentStatus.CONFIRMED
    shown = w["api"].get(f"{API}/plans/{plan['id']}/").json()
    assert [s["status"] for s in shown["sessions"]] == ["booked"] * len(shown["sessions"])
