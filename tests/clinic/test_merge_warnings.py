"""The warnings a merge brings together (clinic/merging.py, found by scheduler/recheck.py): warn-level rules the
survivor's future active appointments now break against an event of the other record. They change no status, so
the merge record keeps them (`details["warnings"]`), the API's merge answer carries them and the front desk shows
them; those of one record alone, of past or cancelled appointments, and of events that do not interact are not
the merge's. The merge's queries do not grow with the history."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import AppointmentStatus, StaffMembership, StaffRole
from scheduler.booking import Actor, appointment_book, appointment_cancel
from tests.api.conftest import http, new_api_client
from tests.conftest import CLOCK
from tests.factories import (
    ClinicFactory,
    MedicationCourseFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
NOW = CLOCK  # Monday 2 March 2026, 09:00 in London (GMT)
RECEPTION = Actor("reception@test")


def local(y, m, d, hh=10):
    return datetime(y, m, d, hh, tzinfo=LONDON)


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


@pytest.fixture
def west(clinic):
    return ClinicFactory(code="west", name="West Clinic", timezone="Europe/London", organisation=clinic.organisation)


@pytest.fixture
def practitioners(clinic, west):
    return {"london": PractitionerFactory(clinic=clinic, name="Dr A"), "west": PractitionerFactory(clinic=west)}


@pytest.fixture
def survivor(clinic):
    return PatientFactory(clinic=clinic, first_name="Olivia", last_name="Bennett", date_of_birth=date(1985, 6, 18))


@pytest.fixture
def duplicate(west):
    return PatientFactory(clinic=west, first_name="Olivia", last_name="Benett", date_of_birth=date(1985, 6, 18))


def book(patient, code, start_at, practitioner, now=NOW):
    return appointment_book(
        patient=patient,
        procedure_code=code,
        start_at=start_at,
        actor=RECEPTION,
        now=now,
        practitioner_id=practitioner.pk,
    ).appointment


def merge(duplicate, survivor, now=NOW):
    return patient_merge(merged=duplicate, into=survivor, now=now, actor_label="dr@test", clinical=True)


def botox_on_each_record(survivor, duplicate, practitioners, day=20):
    """Botox booked twice three weeks apart (12 weeks advised, a warn rule): London on 20 March at 10:00 on the
    survivor, West on 10 April at 14:00 (BST) on the duplicate. (Two on one day warn both ways on each booking,
    a same-date reading: tests/qa/test_merge_harm_probe.py holds that case.)"""
    return (
        book(survivor, "botox", local(2026, 3, day, 10), practitioners["london"]),
        book(duplicate, "botox", local(2026, 4, day - 10, 14), practitioners["west"]),
    )


def test_a_botox_on_each_record_on_one_day_is_recorded_with_the_merge_and_changes_no_status(
    survivor, duplicate, practitioners
):
    london, west = botox_on_each_record(survivor, duplicate, practitioners)

    record = merge(duplicate, survivor)

    warnings = record.details["warnings"]
    # Each booking breaks the 12-week repeat rule against the other: the later looks back, the earlier forward.
    assert [(w["appointment"], w["conflicts_with"]["id"]) for w in warnings] == [
        (str(london.pk), str(west.pk)),
        (str(west.pk), str(london.pk)),
    ]
    assert {(w["severity"], w["kind"], w["conflicts_with"]["code"]) for w in warnings} == {
        ("warn", "interval", "botox")
    }
    assert [w["code"] for w in warnings] == ["interval_too_close_before", "interval_too_soon_after"]
    assert all(w["rule"] and "12 weeks" in w["message"] for w in warnings), warnings
    for appointment in (london, west):
        appointment.refresh_from_db()
        assert appointment.status == AppointmentStatus.CONFIRMED  # warn never blocks


def test_a_course_on_the_other_record_warns_the_survivors_filler(survivor, duplicate, practitioners):
    """isotretinoin course end → filler, 12 months, warn (domain 2): the history of one record, the booking of the
    other."""
    MedicationCourseFactory(
        patient=duplicate, drug_id="isotretinoin", started_on=date(2025, 6, 1), ended_on=date(2026, 1, 15)
    )
    filler = book(survivor, "filler", local(2026, 4, 20), practitioners["london"])

    [warning] = merge(duplicate, survivor).details["warnings"]

    assert (warning["appointment"], warning["severity"]) == (str(filler.pk), "warn")
    assert (warning["conflicts_with"]["kind"], warning["conflicts_with"]["code"]) == (
        "medication_course",
        "isotretinoin",
    )


def test_the_api_answer_carries_the_warnings_in_the_clinics_offset(clinic, survivor, duplicate, practitioners):
    london, west = botox_on_each_record(survivor, duplicate, practitioners)
    api = http(new_api_client(clinic, name="clinical-platform", clinical=True)[1])

    with time_machine.travel(NOW, tick=False):
        response = api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(survivor.pk)
    assert [(w["appointment"], w["severity"], w["conflicts_with"]["id"]) for w in body["warnings"]] == [
        (str(london.pk), "warn", str(west.pk)),
        (str(west.pk), "warn", str(london.pk)),
    ]
    # In the clinic's offset, as every API time: GMT in March, BST in April.
    assert body["warnings"][0]["conflicts_with"]["at"] == "2026-04-10T14:00:00+01:00"
    assert body["warnings"][1]["conflicts_with"]["at"] == "2026-03-20T10:00:00+00:00"
    assert {"code", "rule", "message", "kind", "source", "earliest_allowed"} <= set(body["warnings"][0])


def test_the_desk_shows_the_warnings_on_the_survivors_page(clinic, survivor, duplicate, practitioners):
    botox_on_each_record(survivor, duplicate, practitioners)
    user = get_user_model().objects.create_user(username="dr", password="pw-for-tests-only-123")
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.CLINICIAN)
    desk = Client()
    desk.force_login(user)

    with time_machine.travel(NOW, tick=False):
        response = desk.post(
            reverse("frontdesk:patient_merge", args=[clinic.code, duplicate.pk]),
            {"into": str(survivor.pk)},
            follow=True,
        )

    assert response.status_code == 200
    page = response.content.decode()
    assert "merged into this record" in page
    assert page.count("message--warning") == 2, page
    assert "Check Botulinum toxin injection (Botox), Fri 20 Mar 2026, 10:00 at London Clinic" in page
    assert "Check Botulinum toxin injection (Botox), Fri 10 Apr 2026, 14:00 at West Clinic" in page


def test_events_that_do_not_interact_give_no_warning(survivor, duplicate, practitioners):
    book(survivor, "botox", local(2026, 3, 20, 10), practitioners["london"])
    book(duplicate, "filler", local(2026, 3, 20, 14), practitioners["west"])  # no rule between Botox and filler

    assert merge(duplicate, survivor).details["warnings"] == []


def test_a_warning_one_record_had_on_its_own_is_not_the_merges(survivor, duplicate, practitioners):
    """Shown to the receptionist when the second Botox was booked on the same record: not brought by the merge."""
    book(survivor, "botox", local(2026, 3, 20, 10), practitioners["london"])
    second = appointment_book(
        patient=survivor,
        procedure_code="botox",
        start_at=local(2026, 4, 20, 10),
        actor=RECEPTION,
        now=NOW,
        practitioner_id=practitioners["london"].pk,
    )
    assert second.check.warnings  # it warned when booked

    assert merge(duplicate, survivor).details["warnings"] == []


def test_past_and_cancelled_appointments_give_no_warning(survivor, duplicate, practitioners):
    # Booked last week for last Friday and never closed: in the past at the merge.
    last_week = datetime(2026, 2, 23, 9, tzinfo=UTC)
    with time_machine.travel(last_week, tick=False):
        book(survivor, "botox", local(2026, 2, 27, 10), practitioners["london"], now=last_week)
        book(duplicate, "botox", local(2026, 2, 27, 14), practitioners["west"], now=last_week)
    # A future pair of which one was cancelled.
    cancelled = book(survivor, "filler", local(2026, 4, 20, 10), practitioners["london"])
    appointment_cancel(appointment=cancelled, actor=RECEPTION, now=NOW)
    book(duplicate, "filler", local(2026, 4, 20, 14), practitioners["west"])

    assert merge(duplicate, survivor).details["warnings"] == []


def test_the_merges_queries_do_not_grow_with_the_history(clinic, west, practitioners, django_assert_max_num_queries):
    def pair(history_size: int, day: int):
        survivor = PatientFactory(clinic=clinic)
        duplicate = PatientFactory(clinic=west)
        for patient in (survivor, duplicate):
            ProcedureRecordFactory.create_batch(
                history_size, patient=patient, procedure_id="botox", performed_at=datetime(2020, 1, 1, tzinfo=UTC)
            )
        botox_on_each_record(survivor, duplicate, practitioners, day)
        return survivor, duplicate

    merge(*reversed(pair(1, 16)))  # the caches (rule book, catalogue) warm, as in a running service
    survivor, duplicate = pair(1, 17)
    with CaptureQueriesContext(connection) as small:
        assert len(merge(duplicate, survivor).details["warnings"]) == 2
    survivor, duplicate = pair(60, 18)

    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(merge(duplicate, survivor).details["warnings"]) == 2
