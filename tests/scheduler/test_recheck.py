"""The rules keep holding after booking: a change to the patient's record re-checks what is booked.

Given a confirmed booking, when the record changes (a procedure reported, a medication course, the
intake), then the booking follows what the rules now say, audited with the cause, never silently.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import AppointmentStatus, AuditEvent
from clinic.services import IntakeLine, conditions_replace, medication_course_add, procedure_record_add
from core.errors import ErrorCode, InvalidTransition
from reminders.models import OutboxMessage, OutboxStatus
from scheduler.booking import Actor, appointment_book, appointment_clear, appointment_complete, appointment_reschedule
from scheduler.lifecycle import EVENT_FOR_ACTION
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory

LONDON = ZoneInfo("Europe/London")
RECEPTION = Actor("reception@test")
CLINICIAN = Actor("clinician@test", clinical=True)


def local(y, m, d, hh=10, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", timezone="Europe/London")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr A")


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic)


def book(patient, code, when, now, **kwargs):
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, **kwargs
    ).appointment


def fresh(appointment):
    appointment.refresh_from_db()
    return appointment


def test_a_procedure_reported_after_booking_flags_the_booking_it_now_breaks(patient, practitioner, now):
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)

    procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(2026, 3, 1), now=now)

    flagged = fresh(microneedling)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = flagged.review_reasons
    assert (reason["code"], reason["kind"], reason["severity"]) == ("interval_too_soon_after", "interval", "block")
    assert reason["conflicts_with"]["code"] == "botox"
    assert reason["earliest_allowed"] == local(2026, 3, 15, 0).astimezone(UTC).isoformat()  # a calendar gap
    audit = AuditEvent.objects.get(appointment=flagged, action="needs_review")
    assert audit.actor_label == "system: record re-check" and "Botulinum" in audit.reason
    assert audit.details["from"] == "confirmed"
    assert EVENT_FOR_ACTION["needs_review"] == "appointment.needs_review"


def test_a_flagged_booking_holds_its_reminders_and_tells_the_platforms(patient, practitioner, now):
    from clinic.models import ApiClient
    from reminders.defaults import care_texts_load
    from reminders.models import WebhookEndpoint

    care_texts_load()
    platform = ApiClient(name="Platform")
    platform.set_new_key()
    platform.save()
    platform.clinics.add(patient.clinic)
    WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    patient.email, patient.reminder_channels = "ada@example.com", ["email"]
    patient.save()
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    assert OutboxMessage.objects.filter(appointment=microneedling, kind="pre_care", status="pending").exists()

    procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(2026, 3, 1), now=now)

    pre_care = OutboxMessage.objects.get(appointment=microneedling, kind="pre_care")
    assert pre_care.status == OutboxStatus.HELD
    assert OutboxMessage.objects.filter(
        appointment=microneedling, channel="webhook", event="appointment.needs_review"
    ).exists()


def test_a_correction_releases_it_back_to_confirmed(patient, practitioner, now):
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    medication_course_add(patient=patient, drug_code="anticoagulant", started_on=date(2026, 2, 1), now=now)
    assert fresh(microneedling).status == AppointmentStatus.NEEDS_REVIEW

    # Recorded by mistake: the intake is corrected by ending the course before the booking... an
    # absolute contraindication while it lasts; a course that ended yesterday no longer stands.
    from clinic.models import MedicationCourse
    from clinic.services import medication_course_end

    medication_course_end(course=MedicationCourse.objects.get(patient=patient), ended_on=date(2026, 3, 1), now=now)

    released = fresh(microneedling)
    assert (released.status, released.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert AuditEvent.objects.filter(appointment=released, action="released").exists()


def test_new_reasons_for_a_booking_that_needs_review_already_are_a_new_flag_not_a_silent_edit(
    patient, practitioner, now
):
    """Domain section 6: "Nothing is changed silently: each move is audited, shown to staff and sent as a
    webhook". A booking flagged for one rule that a second change makes break another (or no longer break
    one of two) is flagged again with the reasons as they now stand."""
    from clinic.models import ApiClient
    from reminders.models import WebhookEndpoint

    platform = ApiClient(name="Platform")
    platform.set_new_key()
    platform.save()
    platform.clinics.add(patient.clinic)
    WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(2026, 3, 1), now=now)
    assert [r["code"] for r in fresh(microneedling).review_reasons] == ["interval_too_soon_after"]

    course = medication_course_add(patient=patient, drug_code="anticoagulant", started_on=date(2026, 2, 1), now=now)

    flagged = fresh(microneedling)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    assert sorted(r["kind"] for r in flagged.review_reasons) == ["contraindication", "interval"]
    second = AuditEvent.objects.filter(appointment=flagged, action="needs_review").order_by("id").last()
    assert (second.details["from"], second.details["to"]) == ("needs_review", "needs_review")
    assert len(second.details["violations"]) == 2 and "medication" in second.reason.lower()

    # One of the two corrected: still flagged, for the one left; audited again. The same record saved
    # again changes nothing and records nothing.
    from clinic.services import medication_course_end

    medication_course_end(course=course, ended_on=date(2026, 3, 1), now=now)
    still = fresh(microneedling)
    assert [r["code"] for r in still.review_reasons] == ["interval_too_soon_after"]
    flags = AuditEvent.objects.filter(appointment=still, action="needs_review")
    assert flags.count() == 3
    assert [v["rule"] for v in flags.order_by("id").last().details["violations"]] == [still.review_reasons[0]["rule"]]
    from scheduler.recheck import patient_appointments_recheck

    assert patient_appointments_recheck(patient_id=patient.pk, now=now, cause="again") == []
    assert flags.count() == 3
    hooks = OutboxMessage.objects.filter(appointment=still, event="appointment.needs_review").order_by("created_at")
    assert [len(h.payload["data"]["appointment"]["review_reasons"]) for h in hooks] == [1, 2, 1]


def test_a_new_relative_contraindication_sends_it_back_for_clearance_once(patient, practitioner, now):
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)

    conditions_replace(patient=patient, lines=[IntakeLine("eczema", "history")], now=now)

    assert fresh(microneedling).status == AppointmentStatus.PENDING_CLEARANCE
    assert AuditEvent.objects.filter(appointment=microneedling, action="clearance_requested").count() == 1
    # A clinician clears it; the same intake saved again does not undo the clearance.
    appointment_clear(appointment=microneedling, actor=CLINICIAN, now=now, reason="Settled for years")
    conditions_replace(patient=patient, lines=[IntakeLine("eczema", "history")], now=now)
    assert fresh(microneedling).status == AppointmentStatus.CONFIRMED


def test_a_clearance_recorded_by_rule_id_alone_still_holds_and_a_new_one_records_what_was_cleared(
    patient, practitioner, now
):
    """Clearances given before 5 December 2026 name the rules' ids only; since then also what was cleared
    (`condition:eczema`), which an organisation's rewording of the rule keeps (tests/qa/test_whole_care_audit_probe.py).
    An old clearance is still read by its ids."""
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    conditions_replace(patient=patient, lines=[IntakeLine("eczema", "history")], now=now)
    appointment_clear(appointment=microneedling, actor=CLINICIAN, now=now, reason="Settled for years")
    row = fresh(microneedling)
    assert row.clearance_details["keys"] == ["condition:eczema"] and len(row.clearance_details["rules"]) == 1
    row.clearance_details = {"rules": row.clearance_details["rules"]}  # as an older clearance was stored
    row.save(update_fields=["clearance_details"])

    conditions_replace(patient=patient, lines=[IntakeLine("eczema", "history")], now=now)  # re-checked

    assert fresh(microneedling).status == AppointmentStatus.CONFIRMED


def test_a_booking_waiting_for_clearance_is_confirmed_once_the_record_no_longer_asks_for_it(patient, practitioner, now):
    """docs/rules.md: 'nothing (the record was corrected) -> confirmed again (released)', from waiting for a
    clearance as from needing review; its held messages go."""
    from reminders.defaults import care_texts_load

    care_texts_load()
    conditions_replace(patient=patient, lines=[IntakeLine("eczema", "history")], now=now)
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    assert microneedling.status == AppointmentStatus.PENDING_CLEARANCE
    assert OutboxMessage.objects.filter(appointment=microneedling, status=OutboxStatus.HELD).exists()

    conditions_replace(patient=patient, lines=[], now=now)

    assert fresh(microneedling).status == AppointmentStatus.CONFIRMED
    [released] = AuditEvent.objects.filter(appointment=microneedling, action="released")
    assert (released.details["from"], released.details["to"]) == ("pending_clearance", "confirmed")
    assert not OutboxMessage.objects.filter(appointment=microneedling, status=OutboxStatus.HELD).exists()
    assert OutboxMessage.objects.filter(appointment=microneedling, kind="pre_care", status="pending").exists()


def test_only_future_active_bookings_are_touched(patient, practitioner, clinic, now):
    later = book(patient, "microneedling", local(2026, 3, 20), now)
    other = book(PatientFactory(clinic=clinic, email="x@example.com"), "microneedling", local(2026, 3, 20, 14), now)

    conditions_replace(patient=patient, lines=[IntakeLine("pregnancy", "active")], now=now + timedelta(days=30))

    # Past (relative to the change) and other patients' bookings are left alone.
    assert fresh(later).status == AppointmentStatus.CONFIRMED
    assert fresh(other).status == AppointmentStatus.CONFIRMED


@pytest.mark.parametrize(
    "recorded_at, status",
    [
        (local(2026, 3, 20, 9, 59), AppointmentStatus.PENDING_CLEARANCE),  # to come
        (local(2026, 3, 20, 10, 30), AppointmentStatus.PENDING_CLEARANCE),  # under way: learned at the chair
        (local(2026, 3, 20, 10, 59), AppointmentStatus.PENDING_CLEARANCE),  # its last minute
        (local(2026, 3, 20, 11, 0), AppointmentStatus.CONFIRMED),  # over: treated as it stood, its outcome recordable
    ],
)
def test_a_visit_under_way_is_checked_and_one_over_is_not(patient, practitioner, now, recorded_at, status):
    """A 60-minute microneedling at 10:00; the intake says pregnant (relative) at `recorded_at`: the visit waits for
    a clinician's clearance while its end is ahead, and cannot be completed as it stood."""
    visit = book(patient, "microneedling", local(2026, 3, 20), now)
    conditions_replace(patient=patient, lines=[IntakeLine("pregnancy", "active")], now=recorded_at)
    assert fresh(visit).status == status
    done = local(2026, 3, 20, 11, 5)
    if status == AppointmentStatus.CONFIRMED:
        assert appointment_complete(appointment=visit, actor=CLINICIAN, now=done).status == AppointmentStatus.COMPLETED
    else:
        with pytest.raises(InvalidTransition) as refused:
            appointment_complete(appointment=visit, actor=CLINICIAN, now=done)
        assert refused.value.code == ErrorCode.CLEARANCE_REQUIRED


def test_a_booking_that_needs_review_cannot_be_treated_but_can_be_moved_clear(patient, practitioner, now):
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(2026, 3, 1), now=now)

    with pytest.raises(InvalidTransition) as refused:
        appointment_complete(appointment=fresh(microneedling), actor=CLINICIAN, now=local(2026, 3, 10, 11))
    assert refused.value.code == ErrorCode.REVIEW_REQUIRED

    moved = appointment_reschedule(
        appointment=fresh(microneedling), start_at=local(2026, 3, 16), actor=RECEPTION, now=now
    ).appointment
    assert (moved.status, moved.review_reasons) == (AppointmentStatus.CONFIRMED, [])


def test_a_booking_that_needs_review_still_holds_its_slot(patient, practitioner, clinic, now):
    microneedling = book(patient, "microneedling", local(2026, 3, 10), now)
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(2026, 3, 1), now=now)
    assert fresh(microneedling).status == AppointmentStatus.NEEDS_REVIEW

    from scheduler.booking import UnableToBook

    with pytest.raises(UnableToBook):
        book(
            PatientFactory(clinic=clinic, email="y@example.com"),
            "botox",
            local(2026, 3, 10),
            now,
            practitioner_id=practitioner.pk,
        )


@pytest.fixture
def committed_clinic(transactional_db, catalogue):
    clinic = ClinicFactory(code="race", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr Race")
    return clinic


@pytest.mark.postgres
def test_a_history_change_racing_a_booking_never_leaves_it_confirmed_and_unsafe(committed_clinic):
    """Real concurrent transactions on PostgreSQL: whichever commits first, the end state is safe."""
    clinic = committed_clinic
    for index in range(3):
        _race_once(clinic, index)


def _race_once(clinic, index: int) -> None:
    import threading

    from django.db import close_old_connections

    patient = PatientFactory(clinic=clinic, email=f"race{index}@example.com")
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    start = threading.Barrier(2)
    outcome = {}

    def do_book():
        start.wait()
        try:
            outcome["booking"] = book(patient, "microneedling", local(2026, 3, 10), now)
        except Exception as exc:  # noqa: BLE001 - a refusal is an acceptable end
            outcome["booking"] = exc
        finally:
            close_old_connections()

    def do_report():
        start.wait()
        try:
            procedure_record_add(patient=patient, procedure_code="botox", performed_at=local(2026, 3, 1), now=now)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=do_book), threading.Thread(target=do_report)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    booked = outcome["booking"]
    if isinstance(booked, Exception):
        assert type(booked).__name__ == "UnableToBook"
    else:
        assert fresh(booked).status == AppointmentStatus.NEEDS_REVIEW
