"""Review probe (13 December, a): the last session's change (ff6102c..HEAD) read against the paths it did not mean
to change.

Read: every commit message and the app code's diff (tests left out): working periods joined (clinic.models.
joined_periods, migration clinic 0031) beside availability, booking, FHIR Slots, the calendar and the desk's SQL
"Outside working hours"; claimed.lock_fresh re-reading the webhook endpoint; consent.is_stop_reply and
sender_patients; core.client_address beside the sign-in limiter and the API throttle; api.parsers (411, a field given
twice, BOM); texts.sms_segments / sms_fold / _PLURAL beside template save and the send paths (content.render_message,
fit.template_sms_problem); scheduler.selfservice.AdvisedAgainst beside the portal's offer and the desk's move;
frontdesk.selectors.patient_will_be_told; the admin's read-only changes (ReadOnly consent admins, Appointment and
Outbox change permission off, RecheckRun delete off, tombstones read-only) beside what an administrator must still do
(docs/organisations.md); migration clinic 0031 run on rows (0032 read: a validator and help text, no column change).
The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT).

Found:
- DEFECT: a patient registered by mistake (nothing clinical recorded) can no longer be deleted in the admin, not even
  by a superuser, once a consent record is on them: a registration with texts consented records a ContactOptIn
  (reminders.consent.staff_consent_record; an unsubscribe or STOP records a ContactOptOut), the patient's delete
  cascades to it, and the consent admins are now ReadOnly (no delete permission), so Django's delete page lists
  "contact opt ins" as objects the account may not delete and the POST answers 403. docs/organisations.md still says
  such a patient "may still be deleted"; the only way left is a shell (reminders/admin.py, ContactOptInAdmin and
  ContactOptOutAdmin through clinic.admin.ReadOnly; it was the superuser's default before 9f00359/ae26852).
  MENDED the same day: clinic.admin.PatientAdmin.get_deleted_objects lets the trails whose admins say
  `deleted_with_its_patient` (reminders/admin.py ConsentRecordAdmin) go with their patient.
- QUESTION: two touching rows of one day written past the admin (the ORM, a script) are one stretch for booking,
  availability and the admin's outside-hours warning (clinic.models.joined_periods), but the desk's "Outside working
  hours" (clinic.selectors.off_working_hours, SQL, row by row) lists a visit booking took across 13:00: two readers of
  the same rows disagree; only migration 0031 and the admin's formset keep such rows out.
- DEFECT: the desk moves a visit back to the time the patient was last told (their confirmation, sent, names it; the
  move notice still waiting is rightly cancelled): the desk is told "No message will tell the patient (they get none
  from us, or have no e-mail address or mobile number on their record): phone them." of a patient on e-mail, told
  that very time; a needless call, and a false reason on the page (frontdesk.selectors.patient_will_be_told reads
  only notices still to go; frontdesk.views.booking._moved). MENDED the same day: for a move with nothing on its
  way, patient_will_be_told asks whether the patient already holds the time (reminders.services.last_told_start).

Held (passing): migration clinic 0031 on stored rows (PostgreSQL and SQLite) joins touching and overlapping periods of
one day (a chain of three, one period inside another), keeps a lunch break, keeps another day's and another
practitioner's rows apart, and migrates back (a no-op, the join kept); a patient with no consent record is still
deleted in the admin; a time a warn-only rule advises against is neither offered on the patient's page
(patient_move_options) nor taken there (AdvisedAgainst), while the desk still moves the visit there with the warning.
Read and left untested (no defect seen): lock_fresh's endpoint columns (a deleted endpoint's SET_NULL reaches
verdicts.still_wanted as None), FHIR Schedules' bookable-only prefetch, client_address's walk of X-Forwarded-For, the
parser's repeated-name and BOM refusals, sms_segments' straddling (the template check
counts the text unfolded, never fewer parts than the send's folded count),
the plural terms (none of the shipped catalogue's plurals is an everyday word).
"""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from clinic.models import Patient, WorkingHours
from reminders.models import ContactOptIn
from scheduler.selfservice import AdvisedAgainst, patient_move_check, patient_move_options
from tests.factories import PatientFactory, ProcedureRecordFactory
from tests.helpers import _leaves, _migrate
from tests.qa.helpers import NOW, RECEPTION, book, client_for, ldn, org_rule, post

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def root():
    return client_for(get_user_model().objects.create_superuser("qa13a-root", "root@qa13a.example", "pw-qa13a-only"))


# --- The admin: a patient registered by mistake ------------------------------------------------------------------


def _admin_delete(client, patient):
    return client.post(reverse("admin:clinic_patient_delete", args=[patient.pk]), {"post": "yes"})


def test_a_patient_with_no_consent_record_is_still_deleted_in_the_admin(root, clinic):
    """The control: a record with nothing on it (made by the factory, no channel recorded) goes."""
    mistaken = PatientFactory(clinic=clinic, first_name="Typo", last_name="Bare", reminder_channels=[])
    assert not ContactOptIn.objects.filter(patient=mistaken).exists()
    response = _admin_delete(root, mistaken)
    assert response.status_code == 302
    assert not Patient.objects.filter(pk=mistaken.pk).exists()


def test_a_patient_registered_by_mistake_is_deleted_in_the_admin(root, api, clinic):
    """A patient registered by mistake could not be deleted in the admin, even by a superuser: the registration's
    ContactOptIn cascades with them and the consent admins are ReadOnly (no delete permission), so Django refused
    the delete (403). (Was a strict-xfail DEFECT, mended: clinic.admin.PatientAdmin.get_deleted_objects lets the
    trails whose admins say `deleted_with_its_patient` go with the patient; reminders/admin.py ConsentRecordAdmin.)"""
    body = {
        "first_name": "Typo",
        "last_name": "Registered",
        "email": "typo@example.com",
        "phone": "+447400123456",
        "reminder_channels": ["email", "sms"],
        "sms_consent": True,
        "clinic": clinic.code,
    }
    created = post(api, "/patients/", body)
    assert created.status_code == 201, created.content
    mistaken = Patient.objects.get(pk=created.json()["id"])
    assert ContactOptIn.objects.filter(patient=mistaken).exists()  # the registration's consent, as every one records
    response = _admin_delete(root, mistaken)
    assert response.status_code == 302, response.status_code
    assert not Patient.objects.filter(pk=mistaken.pk).exists()


# --- Migration clinic 0031 on stored rows --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_0031_joins_a_days_touching_rows_and_keeps_a_break_and_goes_back():
    old = _migrate([("clinic", "0030_reminder_channels_in_one_order")])
    organisation = old.get_model("clinic", "Organisation").objects.create(code="qa13a-org", name="QA 13a")
    place = old.get_model("clinic", "Clinic").objects.create(
        organisation=organisation, code="qa13a", name="QA 13a", timezone="Europe/London"
    )
    Practitioner = old.get_model("clinic", "Practitioner")
    ada, bea = (Practitioner.objects.create(clinic=place, name=name) for name in ("Ada 13a", "Bea 13a"))
    OldHours = old.get_model("clinic", "WorkingHours")

    def hours(who, day, start, end):
        return OldHours.objects.create(practitioner=who, weekday=day, start_time=time(*start), end_time=time(*end))

    hours(ada, 0, (9,), (13,))
    hours(ada, 0, (13,), (18,))  # touches: one stretch
    hours(ada, 1, (9,), (12,))
    hours(ada, 1, (13,), (18,))  # a lunch break: kept
    hours(ada, 2, (9,), (14,))
    hours(ada, 2, (10,), (11,))  # inside the first
    hours(ada, 2, (12,), (16,))
    hours(ada, 2, (16,), (19,))  # a chain of three with the first: 09:00-19:00
    hours(bea, 0, (13,), (18,))  # another practitioner's Monday: apart from Ada's
    hours(bea, 1, (9,), (13,))  # Bea's Tuesday: apart from her Monday

    _migrate(_leaves())

    def day(who, weekday):
        rows = WorkingHours.objects.filter(practitioner_id=who.pk, weekday=weekday).order_by("start_time")
        return [(f"{r.start_time:%H:%M}", f"{r.end_time:%H:%M}") for r in rows]

    assert day(ada, 0) == [("09:00", "18:00")]
    assert day(ada, 1) == [("09:00", "12:00"), ("13:00", "18:00")]
    assert day(ada, 2) == [("09:00", "19:00")]
    assert day(bea, 0) == [("13:00", "18:00")]
    assert day(bea, 1) == [("09:00", "13:00")]

    back = _migrate([("clinic", "0030_reminder_channels_in_one_order")])  # reversible: the join is kept
    assert back.get_model("clinic", "WorkingHours").objects.filter(practitioner_id=ada.pk).count() == 4
    _migrate(_leaves())


# --- The patient's page and the desk on a time a rule warns about ----------------------------------------------------


@pytest.fixture
def warned_visit(patient, practitioner, clock):
    """Botox done ten weeks ago, the organisation advising (warn, not block) twelve weeks between two; the next one
    booked at the desk for Monday 23 March 10:00, past the advised date (Monday 16 March, 09:00 UTC)."""
    ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=NOW - timedelta(weeks=10))
    org_rule(patient, "botox", "botox", 12, "weeks", severity="warn")
    return book(patient, ldn(2026, 3, 23), NOW, code="botox")


def test_the_patients_page_neither_offers_nor_takes_a_warned_time_and_the_desk_still_moves_there(warned_visit):
    from scheduler.booking import appointment_reschedule

    advised = NOW + timedelta(weeks=2)
    options = patient_move_options(appointment=warned_visit, now=NOW)
    assert options and all(slot.start_at >= advised for slot in options)
    warned = ldn(2026, 3, 12)  # Thursday 12 March 10:00: eligible, warned
    with pytest.raises(AdvisedAgainst):
        patient_move_check(appointment=warned_visit, start_at=warned, practitioner_id=None, now=NOW)
    moved = appointment_reschedule(appointment=warned_visit, start_at=warned, actor=RECEPTION, now=NOW)
    assert moved.appointment.start_at == warned
    assert moved.check.warnings  # the desk books it, with the warning


# --- Joined periods: the desk's SQL reading beside the in-memory one ------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="QUESTION: two touching rows of one day written past the admin (the ORM, a script, bench/setup code) are "
    "one stretch for booking, availability and the admin's warning (joined_periods), but the desk's 'Outside working "
    "hours' (clinic.selectors.off_working_hours, SQL) reads them row by row and lists a visit booking took across "
    "13:00. Recommendation: refuse touching/overlapping rows in WorkingHours.save (every path), or join in the SQL "
    "reading (an EXISTS over the day's rows covering the visit), so the two readings cannot disagree.",
)
def test_a_visit_across_two_touching_rows_is_inside_hours_for_the_desk_as_for_booking(
    patient, practitioner, clinic, clock
):
    from clinic.selectors import off_working_hours, outside_working_hours

    WorkingHours.objects.filter(practitioner=practitioner, weekday=1).delete()
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=practitioner, weekday=1, start_time=start, end_time=end)
        for start, end in ((time(9), time(13)), (time(13), time(18)))
    )
    visit = book(patient, ldn(2026, 3, 10, 12, 45), NOW, code="botox")  # 12:45-13:15: booking takes it (joined)
    assert outside_working_hours([visit], list(practitioner.working_hours.all()), clinic.tz) == []  # the admin's
    assert not off_working_hours(type(visit).objects.filter(pk=visit.pk), clinic.tz).exists()  # the desk's


# --- The desk told whether a message will tell the patient ------------------------------------------------------------


def test_a_visit_moved_back_to_the_time_the_patient_was_told_asks_nobody_to_phone(
    patient, practitioner, clock, care_texts, message_outboxes
):
    """A visit moved back to the time the patient's sent confirmation named asks nobody to phone them. (Was a
    strict-xfail DEFECT, mended: frontdesk.selectors.patient_will_be_told, a move with nothing on its way asks
    reminders.services.last_told_start.)"""
    from frontdesk.views.booking import _moved
    from reminders.dispatch import dispatch_local
    from reminders.models import MessageKind, OutboxMessage, OutboxStatus
    from tests.qa.helpers import at_moment, moved

    visit = book(patient, ldn(2026, 3, 10), NOW)
    at_moment(NOW, dispatch_local)  # the confirmation names Tuesday 10:00
    later = NOW + timedelta(hours=1)
    there = moved(visit, ldn(2026, 3, 10, 12), later)
    assert "phone them" not in _moved(there)  # held: the move notice is on its way
    back = moved(visit, ldn(2026, 3, 10), later + timedelta(minutes=2))
    assert OutboxMessage.objects.filter(
        appointment=visit, kind=MessageKind.CONFIRMATION, status=OutboxStatus.SENT
    ).exists()
    assert "phone them" not in _moved(back)
