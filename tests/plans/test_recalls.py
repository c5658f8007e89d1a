"""Recalls: one "you are due for your next ..." at the ideal date after a plan session or a maintenance
treatment completes, through the outbox (consent, quiet hours, STOP), cancelled when the patient books."""

from datetime import UTC, datetime, timedelta

import pytest

from clinic.models import MessageTopic
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, Recall
from plans.services import plan_book
from reminders.content import render_message
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import appointment_cancel, appointment_complete
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.conftest import CLINICIAN, LONDON, NEW_YORK, RECEPTION, book

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def recall_templates(care_texts):
    plan_templates_load()


def _recalls(patient, **filters):
    return OutboxMessage.objects.filter(appointment__patient=patient, kind=MessageKind.RECALL, **filters).order_by(
        "channel"
    )


def _complete(appointment):
    return appointment_complete(appointment=appointment, actor=CLINICIAN, now=appointment.start_at + timedelta(hours=1))


@pytest.mark.parametrize(
    ("zone", "treated", "due_utc"),
    [
        # Winter to summer time: 14 weeks after 3 March is 9 June, at 10:00 local either way.
        ("Europe/London", datetime(2026, 3, 3, 11, tzinfo=LONDON), datetime(2026, 6, 9, 9, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 3, 11, tzinfo=NEW_YORK), datetime(2026, 6, 9, 14, tzinfo=UTC)),
        # Summer to winter time: 14 weeks after 8 September is 15 December.
        ("Europe/London", datetime(2026, 9, 8, 11, tzinfo=LONDON), datetime(2026, 12, 15, 10, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 9, 8, 11, tzinfo=NEW_YORK), datetime(2026, 12, 15, 15, tzinfo=UTC)),
    ],
)
def test_a_maintenance_treatment_is_recalled_at_the_ideal_date_clinic_local_across_dst(zone, treated, due_utc):
    clinic = ClinicFactory(code=f"c-{zone[-4:]}", timezone=zone)
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True)
    _complete(book(patient, "botox", treated, NOW))
    recalls = list(_recalls(patient))
    assert [(r.channel, r.due_at, r.status) for r in recalls] == [
        (Channel.EMAIL, due_utc, OutboxStatus.PENDING),
        (Channel.SMS, due_utc, OutboxStatus.PENDING),
    ]
    # Botox again: 3 months at the earliest (the template's minimum; no sourced rule is stricter).
    assert recalls[0].payload["earliest_on"] == (treated.date().replace(month=treated.month + 3)).isoformat()


def test_the_recall_names_the_dates_and_the_treatment_only_by_email(patient, practitioner):
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    email, sms = _recalls(patient)
    text = render_message(message=email, now=email.due_at).text
    assert "You are due for your next Botulinum toxin injection (Botox) around Tuesday 9 June 2026." in text
    # Possible from 3 June: on 9 June, when it goes, no second date (a past one would confuse).
    assert "earliest date" not in text and "3 June" not in text
    body = render_message(message=sms, now=sms.due_at).sms
    assert "due for your next treatment around Tuesday 9 June 2026. Call us" in body
    assert "Botox" not in body and "Reply STOP" in body


def test_the_recall_names_the_earliest_date_as_the_record_is_when_it_goes(patient, practitioner):
    """A microneedling booked for 5 June after the recall was planned (Botox possible again from 3 June, due
    9 June) puts Botox off until 3 weeks after it: the message, going on 9 June, says 26 June, not 3 June
    (found by tests/qa/test_merge_harm_probe.py, where a merge did the same)."""
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    email, sms = _recalls(patient)
    assert email.payload["earliest_on"] == "2026-06-03"  # as planned
    book(patient, "microneedling", datetime(2026, 6, 5, 11, tzinfo=LONDON), NOW)

    text = render_message(message=email, now=email.due_at).text
    body = render_message(message=sms, now=sms.due_at).sms

    assert "The earliest date that is right for you is Friday 26 June 2026." in text
    assert "(possible from Friday 26 June 2026)" in body
    assert "3 June" not in text + body


def test_a_plan_session_recalls_the_next_one_unless_it_is_booked(patient, practitioner):
    course = PlanTemplate.objects.get(code="microneedling-course")
    plan = plan_book(
        patient=patient,
        clinic=patient.clinic,
        template=course,
        start_at=datetime(2026, 3, 9, 0, tzinfo=UTC),
        actor=RECEPTION,
        now=NOW,
    )
    first, second, _ = plan.sessions.order_by("index")
    _complete(first.appointment)
    assert not _recalls(patient).exists()  # session 2 is booked
    appointment_cancel(appointment=second.appointment, actor=RECEPTION, now=NOW)
    # Session 2 no longer booked; session 3 still is (a later microneedling): no recall either.
    assert not _recalls(patient).exists()


def test_a_plan_session_with_the_next_one_unbooked_is_recalled_at_the_ideal_gap(patient, practitioner):
    course = PlanTemplate.objects.get(code="plasma-pen-course")
    plan = plan_book(
        patient=patient,
        clinic=patient.clinic,
        template=course,
        start_at=datetime(2026, 3, 9, 0, tzinfo=UTC),
        actor=RECEPTION,
        now=NOW,
    )
    first, second = plan.sessions.order_by("index")
    appointment_cancel(appointment=second.appointment, actor=RECEPTION, now=NOW)
    _complete(first.appointment)
    email = _recalls(patient).first()
    assert email.payload["plan"] == str(plan.pk) and email.payload["session"] == 2
    assert email.payload["due_on"] == "2026-05-04"  # 8 weeks after 9 March
    assert email.payload["earliest_on"] == "2026-04-20"  # 6 weeks


def test_booking_the_treatment_cancels_the_recall(patient, practitioner):
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    assert Recall.objects.get(patient=patient).closed_at is None
    book(patient, "botox", datetime(2026, 6, 10, 11, tzinfo=LONDON), NOW)
    assert set(_recalls(patient).values_list("status", flat=True)) == {OutboxStatus.CANCELLED}
    assert Recall.objects.get(patient=patient).closed_at == NOW


def test_booking_another_treatment_leaves_the_recall(patient, practitioner):
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    book(patient, "filler", datetime(2026, 3, 20, 11, tzinfo=LONDON), NOW)
    assert set(_recalls(patient).values_list("status", flat=True)) == {OutboxStatus.PENDING}


def test_booking_closes_only_this_patients_open_recall(patient, clinic, practitioner):
    other = PatientFactory(clinic=clinic, reminder_channels=["email"])
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    _complete(book(other, "botox", datetime(2026, 3, 3, 14, tzinfo=LONDON), NOW))
    book(patient, "botox", datetime(2026, 6, 10, 11, tzinfo=LONDON), NOW)
    assert Recall.objects.get(patient=patient).closed_at == NOW
    assert Recall.objects.get(patient=other).closed_at is None
    assert set(_recalls(other).values_list("status", flat=True)) == {OutboxStatus.PENDING}


def test_a_treatment_recorded_as_done_elsewhere_since_closes_the_recall(patient, practitioner):
    """The patient had their Botox at another practice: "you are due for your next Botox" would be wrong."""
    from clinic.services import procedure_record_add

    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    later = NOW + timedelta(days=40)
    # Before the treatment, or another procedure: the recall stands.
    procedure_record_add(
        patient=patient, procedure_code="botox", performed_at=datetime(2026, 2, 1, tzinfo=UTC), now=NOW
    )
    procedure_record_add(
        patient=patient, procedure_code="filler", performed_at=datetime(2026, 4, 1, tzinfo=UTC), now=later
    )
    assert Recall.objects.get(patient=patient).closed_at is None
    assert set(_recalls(patient).values_list("status", flat=True)) == {OutboxStatus.PENDING}

    procedure_record_add(
        patient=patient, procedure_code="botox", performed_at=datetime(2026, 4, 1, tzinfo=UTC), now=later
    )

    assert Recall.objects.get(patient=patient).closed_at == later
    assert set(_recalls(patient).values_list("status", flat=True)) == {OutboxStatus.CANCELLED}


def test_settling_recalls_reads_the_same_statements_whatever_the_history(
    patient, practitioner, django_assert_num_queries
):
    from clinic.models import ProcedureRecord
    from plans.recalls import recalls_settle

    with django_assert_num_queries(1):  # no open recall: one read
        assert recalls_settle(patient_id=patient.pk, now=NOW) == 0
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    ProcedureRecord.objects.bulk_create(
        ProcedureRecord(
            patient=patient, procedure_id="filler", performed_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=i)
        )
        for i in range(30)
    )
    with django_assert_num_queries(3):  # the open recalls, the later bookings, the later records
        assert recalls_settle(patient_id=patient.pk, now=NOW) == 0


def test_consent_and_opt_outs_cover_recalls(clinic, practitioner):
    email_only = PatientFactory(clinic=clinic, reminder_channels=["email"], sms_consent=False)
    muted = PatientFactory(clinic=clinic, reminder_channels=["email", "sms"], sms_consent=True)
    muted.muted_topics = [MessageTopic.REMINDERS]
    muted.save(update_fields=["muted_topics"])
    for who, hour in ((email_only, 11), (muted, 14)):
        _complete(book(who, "botox", datetime(2026, 3, 3, hour, tzinfo=LONDON), NOW))
    assert list(_recalls(email_only).values_list("channel", flat=True)) == [Channel.EMAIL]
    assert not _recalls(muted).exists()
    # The desk still sees both as due (Today), whatever the patient chose to receive.
    assert Recall.objects.filter(patient__in=[email_only, muted], closed_at=None).count() == 2


def test_quiet_hours_move_an_sms_recall_later(patient, practitioner, settings):
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "11:15")  # a clinic that texts only from 11:15
    _complete(book(patient, "botox", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    sms = _recalls(patient, channel=Channel.SMS).get()
    assert sms.due_at.astimezone(LONDON) == datetime(2026, 6, 9, 11, 15, tzinfo=LONDON)


def test_no_recall_after_a_treatment_without_a_next_step(patient, practitioner):
    _complete(book(patient, "filler", datetime(2026, 3, 3, 11, tzinfo=LONDON), NOW))
    assert not _recalls(patient).exists()
    assert not Recall.objects.filter(patient=patient).exists()
