"""What the patient receives and can do: an outside probe of issue 16 ("What the patient receives: messages
that are right, private and let them act"), docs/reminders.md and docs/portal.md.

Each test quotes the promise it checks. Messages are read as the patient gets them: e-mail from Django's
locmem outbox, texts from the in-memory SMS backend, both sent by the real dispatcher (`dispatch_local`).
The clock is the shared test clock (Monday 2 March 2026, 09:00 London) unless a test travels.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils.http import int_to_base36

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, Patient
from reminders.consent import unsubscribe_url
from reminders.dispatch import dispatch_local
from reminders.links import manage_token
from reminders.models import ContactOptOut, MessageKind, OutboxMessage, OutboxStatus
from reminders.texts import clinical_terms_in, sms_segments
from scheduler.booking import (
    appointment_cancel,
    appointment_complete,
    appointment_reschedule,
)
from scheduler.selfservice import patient_move_options
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.helpers import olivia_on_email_and_sms
from tests.qa.helpers import (
    CLINICIAN,
    LONDON,
    RECEPTION,
    book,
    fresh_appointment,
    ldn,
    nyc,
    portal_page,
    rows,
    send_all_until,
    texts,
    words,
)

# E-mail and texts are caught for every test (tests/qa/conftest.py); `told`, `frozen` and `care_texts` come from there.
pytestmark = pytest.mark.usefixtures("message_outboxes")


@pytest.fixture
def clinic(care_texts):
    return ClinicFactory(code="qa-bloom", name="Bloom Clinic", timezone="Europe/London", phone="+442079460958")


@pytest.fixture
def practitioner(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Amelia Hart")


@pytest.fixture
def patient(clinic):
    return olivia_on_email_and_sms(clinic, last_name="Example")  # PatientFactory's last name, as this probe had it


# --- Times as the patient reads them: the clinic's zone, across clock changes ------------------------------------


def test_messages_name_the_clinics_summer_time_after_the_clocks_go_forward(patient, practitioner, frozen):
    """docs/reminders.md: times read as "Wed 2 Dec, 11:00 (GMT)", "Due times are computed in the clinic's
    zone"; `days` offsets "keep the local wall-clock time across DST". Booked in GMT (2 March) for Tuesday
    31 March 10:00, after London moved to BST on 29 March."""
    appointment = book(patient, ldn(2026, 3, 31, 10), frozen)
    dispatch_local(now=frozen)

    [sms] = texts()
    assert "Tue 31 Mar, 10:00 (BST)" in sms
    [email] = mail.outbox
    assert "Tue 31 Mar, 10:00 (BST)" in email.body
    [reminder_email] = rows(appointment, kind=MessageKind.REMINDER, channel="email")
    # one day before at the same wall-clock time: Monday 30 March 10:00 BST = 09:00 UTC
    assert reminder_email.due_at == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)
    # pre-care is 24 h of elapsed time: also 09:00 UTC (both sides of the change are BST)
    [pre_care_email] = rows(appointment, kind=MessageKind.PRE_CARE, channel="email")
    assert pre_care_email.due_at == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)


def test_a_new_york_clinic_reminds_at_the_same_wall_clock_time_across_the_us_change(care_texts, frozen):
    """docs/reminders.md: "`days` keep the local wall-clock time across DST"; SMS quiet hours are clinic-local.
    US clocks go forward on Sunday 8 March 2026; a visit on Monday 9 March 10:00 EDT (14:00 UTC) is reminded
    on Sunday 8 March at 10:00 EDT (14:00 UTC), not 15:00 UTC, and the texts say EDT."""
    clinic = ClinicFactory(code="qa-hudson", name="Hudson Skin", timezone="America/New_York")
    PractitionerFactory(clinic=clinic, name="Dr Maya Chen")
    patient = PatientFactory(clinic=clinic, phone="+12125550100", reminder_channels=["email", "sms"], sms_consent=True)
    appointment = book(patient, nyc(2026, 3, 9, 10), frozen, code="botox")

    reminders = rows(appointment, kind=MessageKind.REMINDER)
    assert {r.channel for r in reminders} == {"email", "sms"}
    assert {r.due_at for r in reminders} == {datetime(2026, 3, 8, 14, 0, tzinfo=UTC)}
    send_all_until(datetime(2026, 3, 8, 14, 0, tzinfo=UTC), start=datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    reminder_texts = [t for t in texts() if "reminder" in t]
    assert len(reminder_texts) == 1 and "Mon 9 Mar, 10:00 (EDT)" in reminder_texts[0]


def test_post_care_a_week_later_keeps_the_wall_clock_and_48_hours_is_elapsed(patient, practitioner, frozen):
    """docs/reminders.md: "`minutes`/`hours` are elapsed time; `days` keep the local wall-clock time across DST
    ("7 days after 15:00" is 15:00)". Completed Friday 27 March 15:00 GMT; London moves to BST on the 29th:
    +48 h is Sunday 29 March 15:00 UTC (16:00 BST); +7 days is Friday 3 April 15:00 BST (14:00 UTC)."""
    appointment = book(patient, ldn(2026, 3, 27, 14), frozen)
    completed_at = ldn(2026, 3, 27, 15)
    appointment_complete(appointment=fresh_appointment(appointment), actor=CLINICIAN, now=completed_at)

    post = {r.template.default_key: r for r in rows(appointment, kind=MessageKind.POST_CARE, channel="email")}
    assert post["microneedling-post-care-48h"].due_at == datetime(2026, 3, 29, 15, 0, tzinfo=UTC)
    assert post["microneedling-post-care-7d"].due_at == datetime(2026, 4, 3, 14, 0, tzinfo=UTC)


def test_the_day_before_reminder_keeps_its_wall_clock_when_the_clocks_go_back(patient, practitioner, frozen):
    """docs/reminders.md: "`days` keep the local wall-clock time across DST"; pre-care "24 h before" is elapsed
    time. London goes back to GMT on Sunday 25 October 2026: for Monday 26 October 10:00 GMT (10:00 UTC) the
    reminder is Sunday 10:00 GMT (10:00 UTC), the 24-hour pre-care also 10:00 UTC, and texts say GMT."""
    appointment = book(patient, ldn(2026, 10, 26, 10), frozen)
    dispatch_local(now=frozen)

    [reminder] = rows(appointment, kind=MessageKind.REMINDER, channel="email")
    assert reminder.due_at == datetime(2026, 10, 25, 10, 0, tzinfo=UTC)
    [pre_care] = rows(appointment, kind=MessageKind.PRE_CARE, channel="email")
    assert pre_care.due_at == datetime(2026, 10, 25, 10, 0, tzinfo=UTC)
    assert "Mon 26 Oct, 10:00 (GMT)" in texts()[0]


# --- Quiet hours: clinic-local, in both directions -----------------------------------------------------------------


def test_a_text_booked_late_in_the_evening_waits_for_8am_clinic_time_across_the_us_change(care_texts):
    """docs/reminders.md: "No SMS between 21:00 and 08:00 local ... Post-care and notices move later to 08:00.
    E-mail has no quiet hours." Booked Saturday 7 March 22:30 EST in New York; the clocks go forward that night:
    the confirmation text is due Sunday 8 March 08:00 EDT = 12:00 UTC, the e-mail at once."""
    clinic = ClinicFactory(code="qa-hudson2", name="Hudson Skin", timezone="America/New_York")
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic, phone="+12125550100", reminder_channels=["email", "sms"], sms_consent=True)
    booked_at = nyc(2026, 3, 7, 22, 30)
    with time_machine.travel(booked_at, tick=False):
        appointment = book(patient, nyc(2026, 3, 20, 11), booked_at, code="botox")
    by_channel = {r.channel: r for r in rows(appointment, kind=MessageKind.CONFIRMATION)}
    assert by_channel["email"].due_at == booked_at
    assert by_channel["sms"].due_at == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)

    # The dispatcher running through the night sends the e-mail only; the text goes at 08:00 EDT.
    send_all_until(datetime(2026, 3, 8, 11, 59, tzinfo=UTC), start=booked_at, step=timedelta(hours=1))
    assert len(mail.outbox) == 1 and texts() == []
    send_all_until(datetime(2026, 3, 8, 12, 0, tzinfo=UTC), start=datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    assert len(texts()) == 1 and "Fri 20 Mar, 11:00 (EDT)" in texts()[0]


def test_a_backlog_is_judged_by_the_clinics_night_not_the_servers(care_texts, frozen):
    """docs/reminders.md: "Quiet hours are checked again when an SMS is sent ... a backlog claimed at night
    waits". 08:00 UTC is 03:00 in New York: a New York patient's due text must wait; the e-mail goes."""
    clinic = ClinicFactory(code="qa-hudson3", name="Hudson Skin", timezone="America/New_York")
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic, phone="+12125550100", reminder_channels=["email", "sms"], sms_consent=True)
    appointment = book(patient, nyc(2026, 3, 20, 11), frozen, code="botox")
    night = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 03:00 EST

    with time_machine.travel(night, tick=False):
        dispatch_local(now=night)

    assert len(mail.outbox) == 1 and texts() == []
    [sms] = rows(appointment, kind=MessageKind.CONFIRMATION, channel="sms")
    assert sms.status == OutboxStatus.PENDING and sms.due_at == nyc(2026, 3, 3, 8)


def test_pre_care_text_moves_earlier_never_later_and_is_skipped_when_no_moment_is_left(settings, patient, frozen):
    """docs/reminders.md: "a message that warns about something ahead (pre-care, reminder) moves earlier to
    20:59, never later; if that moment has passed it goes at 08:00, and only if that is still before the
    appointment (else it is recorded as skipped with the reason)". With quiet hours 21:00-09:30, pre-care
    24 h before a 09:00 visit falls in them."""
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "09:30")
    PractitionerFactory(clinic=patient.clinic)
    planned = book(patient, ldn(2026, 3, 10, 9), frozen)
    [pre_sms] = rows(planned, kind=MessageKind.PRE_CARE, channel="sms")
    [pre_email] = rows(planned, kind=MessageKind.PRE_CARE, channel="email")
    assert pre_sms.due_at == ldn(2026, 3, 8, 20, 59)  # earlier, before the night began
    assert pre_email.due_at == ldn(2026, 3, 9, 9)  # e-mail has no quiet hours

    # Booked at 22:00 for 09:00 tomorrow: no moment outside the night is left before the visit.
    late = ldn(2026, 3, 11, 22)
    other = PatientFactory(clinic=patient.clinic, phone="+447700900124", reminder_channels=["email", "sms"])
    Patient.objects.filter(pk=other.pk).update(sms_consent=True)
    with time_machine.travel(late, tick=False):
        tight = book(Patient.objects.get(pk=other.pk), ldn(2026, 3, 12, 9), late, code="botox")
    [tight_sms] = rows(tight, kind=MessageKind.PRE_CARE, channel="sms")
    assert tight_sms.status == OutboxStatus.SKIPPED and "quiet hours" in tight_sms.last_error
    [tight_email] = rows(tight, kind=MessageKind.PRE_CARE, channel="email")
    assert tight_email.status == OutboxStatus.PENDING and tight_email.due_at <= late + timedelta(minutes=1)


# --- Privacy: nothing clinical by SMS, and the care still reaches an SMS-only patient ------------------------------


def test_no_text_names_the_treatment_practitioner_or_area_through_a_whole_visit(patient, practitioner, frozen):
    """Issue 16 item 7 and docs/reminders.md: "SMS rendering gets no procedure, area or practitioner"; subjects
    "name the clinic, not the treatment". Book, move (the patient heard the first time), pre-care, complete."""
    appointment = book(patient, ldn(2026, 3, 10), frozen, area_code="face")
    dispatch_local(now=frozen)
    later = CLOCK + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        appointment_reschedule(
            appointment=fresh_appointment(appointment), start_at=ldn(2026, 3, 11), actor=RECEPTION, now=later
        )
    send_all_until(ldn(2026, 3, 11, 9), start=later, step=timedelta(hours=3))
    appointment_complete(appointment=fresh_appointment(appointment), actor=CLINICIAN, now=ldn(2026, 3, 11, 11))
    send_all_until(ldn(2026, 3, 18, 12), start=ldn(2026, 3, 11, 11), step=timedelta(hours=6))

    sent = texts()
    assert len(sent) >= 5  # confirmation, move notice, reminder/pre-care, aftercare (at least)
    for body in sent:
        assert clinical_terms_in(body) == [], body
        assert "Hart" not in body and "Amelia" not in body  # no practitioner
        assert "Face" not in body  # the area's name (the aftercare's own "wash your face" is the template's)
    for email in mail.outbox:
        assert clinical_terms_in(email.subject) == [], email.subject
    assert any("Microneedling" in email.body for email in mail.outbox)  # the body says the treatment


def test_an_sms_only_patient_of_a_clinic_with_an_accented_name_gets_the_care_instructions(care_texts, frozen):
    """Issue 16, bug 2: "Care instructions that matter clinically (stop retinoids 24 h before, sun) must reach
    the patient on a channel they have, within two SMS segments where possible"; docs/reminders.md: "An
    SMS-only patient's pre-care text carries the instructions themselves". A clinic named "Clínica Bella"
    (or "Dr Smith’s Skin Clinic", with a typographic apostrophe) makes every text UCS-2 (67 units a segment)."""
    clinic = ClinicFactory(code="qa-clinica", name="Clínica Bella", timezone="Europe/London")
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(
        clinic=clinic, email="", phone="+447700900999", reminder_channels=["sms"], sms_consent=True
    )
    appointment = book(patient, ldn(2026, 3, 10), frozen)

    send_all_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9), step=timedelta(hours=1))

    [pre_care] = rows(appointment, kind=MessageKind.PRE_CARE, channel="sms")
    assert pre_care.status == OutboxStatus.SENT, pre_care.last_error
    care = [body for body in texts() if "vitamin A" in body]
    assert len(care) == 1
    segments, encoding = sms_segments(care[0])  # the day-before reminder and the care text, sent as one
    assert encoding == "GSM-7" and segments <= 3, (len(care[0]), care[0])
    assert "Clinica Bella" in care[0]  # the look-alike, in the GSM alphabet (reminders.texts.sms_fold)


def test_a_patient_who_unsubscribed_from_email_gets_the_instructions_by_text(client, patient, practitioner, frozen):
    """Issue 16, bug 2: "A patient without e-mail (or who unsubscribed from it)" must get the care instructions
    on a channel they have; docs/reminders.md: texts are "rendered when sent", and "Opt-outs ... take effect
    for messages already planned". The patient unsubscribes (one click) after booking, before the pre-care."""
    book(patient, ldn(2026, 3, 10), frozen)
    dispatch_local(now=frozen)
    token = unsubscribe_url(patient_id=patient.pk).rstrip("/").rsplit("/", 1)[-1]

    assert client.get(reverse("reminders:unsubscribe", args=[token])).status_code == 200
    assert Patient.objects.get(pk=patient.pk).reminder_channels == ["email", "sms"]  # a GET only asks
    done = client.post(reverse("reminders:unsubscribe", args=[token]), {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    mail.outbox.clear()
    send_all_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9), step=timedelta(hours=1))

    assert mail.outbox == []  # nothing more by e-mail
    # The reminder and the pre-care may go as one text (docs: "one SMS instead of two"): read each part.
    parts = [part for body in texts() for part in body.split("\n\n")]
    care = [part for part in parts if "prepare" in part]
    assert len(care) == 1
    assert "no vitamin A creams" in care[0] and "Our e-mail says" not in care[0]
    assert clinical_terms_in(care[0]) == [] and sms_segments(care[0])[0] <= 2


# --- The patient's page: acting on their appointment ------------------------------------------------------------------


def offered_on(appointment, day: int) -> tuple:
    """The first time offered on the page on `day` March, as the form value the page posts."""
    slot = next(s for s in patient_move_options(appointment=appointment, now=CLOCK) if s.start_at.day == day)
    return slot, f"{slot.start_at.astimezone(UTC):%Y%m%dT%H%MZ}_{slot.practitioner_id}"


def test_a_move_from_the_page_replans_every_message_once_and_tells_the_new_time(client, told, patient, frozen):
    """docs/reminders.md, "rescheduled": "unsent reminders move (the same rows, never duplicated) ... a change
    notice goes after a grace period"; docs/portal.md: the patient's move goes through "the front desk's
    services, with the patient as the actor"; issue 16: "the last message they get about an appointment must
    be true"."""
    before = {(r.kind, r.channel): r.pk for r in rows(told, status=OutboxStatus.PENDING)}
    slot, key = offered_on(told, 5)

    response = client.post(portal_page(told, "move_confirm"), {"slot": key})

    assert response.status_code == 303
    moved = fresh_appointment(told)
    assert moved.start_at == slot.start_at
    pending = rows(told, status=OutboxStatus.PENDING)
    for kind in (MessageKind.REMINDER, MessageKind.PRE_CARE):
        for channel in ("email", "sms"):
            [row] = [r for r in pending if (r.kind, r.channel) == (kind, channel)]
            assert row.pk == before[(kind, channel)]  # the same row, moved
            assert row.anchor_at == slot.start_at
    notices = [r for r in pending if r.kind == MessageKind.RESCHEDULED]
    assert sorted(r.channel for r in notices) == ["email", "sms"]
    assert all(r.due_at == CLOCK + timedelta(minutes=5) for r in notices)
    event = AuditEvent.objects.filter(appointment=told, action=AuditAction.RESCHEDULED).get()
    assert event.actor_label == f"patient {patient.pk}"

    send_all_until(slot.start_at - timedelta(minutes=1), start=CLOCK + timedelta(minutes=6), step=timedelta(hours=2))

    when = f"{slot.start_at.astimezone(LONDON):%a} 5 Mar, {slot.start_at.astimezone(LONDON):%H:%M} (GMT)"
    sent = texts()
    assert "it was Tue 10 Mar, 10:00 (GMT)" in sent[0] and when in sent[0]
    assert len([t for t in sent if "moved" in t]) == 1
    assert all("10 Mar" not in t for t in sent[1:]) and when in sent[-1]
    assert len(mail.outbox) == len({m.subject for m in mail.outbox})  # nothing twice


def test_moving_into_the_pre_care_window_sends_the_care_at_once_for_the_new_time(client, told, frozen):
    """docs/reminders.md: pre-care goes "at once if the booking is already inside its window" (send_if_late);
    after a move "what would go at once waits out the grace period"; issue 16: "Every message a patient receives
    must carry the appointment's time as it stands when sent". The patient moves Tuesday 10 March to Tuesday
    3 March 09:00, exactly 24 hours ahead (the earliest the page allows): pre-care and reminder are due at once."""
    slot = patient_move_options(appointment=told, now=CLOCK)[0]
    key = f"{slot.start_at.astimezone(UTC):%Y%m%dT%H%MZ}_{slot.practitioner_id}"
    assert slot.start_at == ldn(2026, 3, 3, 9)  # exactly 24 hours ahead: the first time offered
    assert client.post(portal_page(told, "move_confirm"), {"slot": key}).status_code == 303

    # Both are due now (24 hours / one day before): they wait out the grace period with the move notice.
    for kind in (MessageKind.REMINDER, MessageKind.PRE_CARE, MessageKind.RESCHEDULED):
        [row] = rows(told, kind=kind, channel="sms", status=OutboxStatus.PENDING)
        assert row.due_at == CLOCK + timedelta(minutes=5), kind
    send_all_until(slot.start_at - timedelta(minutes=1), start=CLOCK + timedelta(minutes=6), step=timedelta(hours=1))

    new_time = f"Tue 3 Mar, {slot.start_at.astimezone(LONDON):%H:%M} (GMT)"
    parts = [part for body in texts() for part in body.split("\n\n")]
    care = [part for part in parts if "your appointment is Tue" in part and "sun" in part]
    assert len(care) == 1 and new_time in care[0]
    assert not any("10 Mar" in part for part in parts if "moved" not in part)
    [pre_care_email] = rows(told, kind=MessageKind.PRE_CARE, channel="email")
    assert pre_care_email.status == OutboxStatus.SENT and pre_care_email.sent_at >= CLOCK + timedelta(minutes=5)


def test_a_cancel_from_the_page_stops_everything_and_sends_one_notice_per_channel(client, told, frozen):
    """docs/reminders.md, "cancelled": "unsent rows cancelled; a cancellation notice only if the patient had been
    told of the booking"; "a cancellation carries a calendar file with METHOD:CANCEL for the same UID"."""
    response = client.post(portal_page(told, "cancel"), {"reason": "Away"})
    assert response.status_code == 303

    send_all_until(ldn(2026, 3, 10, 12), start=CLOCK, step=timedelta(hours=4))

    assert len(texts()) == 1 and "is cancelled" in texts()[0] and "Tue 10 Mar, 10:00 (GMT)" in texts()[0]
    [email] = mail.outbox
    [attachment] = email.attachments
    ics = attachment.get_payload(decode=True).decode()
    assert "METHOD:CANCEL" in ics and f"UID:appointment-{told.pk}@clinic-scheduling" in ics
    assert not rows(told, status__in=[OutboxStatus.PENDING, OutboxStatus.HELD])


def test_a_booking_cancelled_before_the_patient_heard_of_it_sends_them_nothing(patient, practitioner, frozen):
    """docs/reminders.md: "cancelled | unsent rows cancelled; a cancellation notice only if the patient had been
    told of the booking"."""
    appointment = book(patient, ldn(2026, 3, 10), frozen)
    appointment_cancel(appointment=fresh_appointment(appointment), actor=RECEPTION, now=frozen)

    send_all_until(ldn(2026, 3, 10, 12), start=CLOCK, step=timedelta(hours=6))

    assert mail.outbox == [] and texts() == []
    assert not rows(appointment, kind=MessageKind.CANCELLED)


def test_a_visit_at_another_clinic_of_the_organisation_can_be_moved_from_the_page(client, care_texts, frozen):
    """docs/portal.md: "Times offered (patient_move_options): appointment_slots with the appointment itself left
    out, so every slot passes every rule for this patient and is free for the practitioner ... with the
    patient's own practitioner when free"; domain.md 6: "Clinics of one organisation share each patient"."""
    organisation = OrganisationFactory(code="qa-group")
    home = ClinicFactory(code="qa-group-home", name="Group Home", organisation=organisation)
    west = ClinicFactory(code="qa-group-west", name="Group West", organisation=organisation)
    PractitionerFactory(clinic=home, name="Dr Home")
    at_west = PractitionerFactory(clinic=west, name="Dr West")
    patient = PatientFactory(clinic=home, reminder_channels=["email"])
    appointment = book(patient, ldn(2026, 3, 10), frozen, practitioner_id=at_west.pk)
    assert appointment.clinic_id == west.pk

    options = patient_move_options(appointment=fresh_appointment(appointment), now=frozen)
    assert options and {slot.practitioner_id for slot in options} == {str(at_west.pk)}
    key = f"{options[0].start_at.astimezone(UTC):%Y%m%dT%H%MZ}_{options[0].practitioner_id}"
    response = client.post(portal_page(appointment, "move_confirm"), {"slot": key})
    assert response.status_code == 303, words(response)
    assert fresh_appointment(appointment).start_at == options[0].start_at


def test_the_move_page_offers_clinic_local_hours_across_the_clock_change(client, patient, practitioner):
    """docs/portal.md: "The times offered, grouped by the clinic's local day"; practitioners work 09:00-18:00 local
    time. Around Sunday 29 March (London to BST) the first time offered on Monday 30 March is 09:00 BST
    (08:00 UTC), and no time outside 09:00-18:00 London is offered on either side of the change."""
    now = ldn(2026, 3, 20, 9)
    with time_machine.travel(now, tick=False):
        appointment = book(patient, ldn(2026, 4, 8), now)
        response = client.get(portal_page(appointment, "move"))
    assert response.status_code == 200
    values = re.findall(r'name="slot" value="(\d{8}T\d{4}Z)_', response.content.decode())
    starts = [datetime.strptime(v, "%Y%m%dT%H%MZ").replace(tzinfo=UTC) for v in values]
    assert starts
    assert min(s for s in starts if s.astimezone(LONDON).day == 30) == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    for start in starts:
        local = start.astimezone(LONDON)
        assert 9 <= local.hour and local + timedelta(hours=1) <= local.replace(hour=18, minute=0), local
    assert "Monday 30 March" in words(response)


def test_the_confirm_step_writes_nothing(client, told):
    """docs/portal.md: "GET shows from → to and checks it is still possible (writing nothing)"."""
    _, key = offered_on(told, 5)
    outbox, audit = OutboxMessage.objects.count(), AuditEvent.objects.count()

    response = client.get(portal_page(told, "move_confirm"), {"slot": key})

    assert response.status_code == 200
    assert (OutboxMessage.objects.count(), AuditEvent.objects.count()) == (outbox, audit)
    assert fresh_appointment(told).start_at == ldn(2026, 3, 10)


def test_a_longer_cancellation_window_is_kept_to_the_minute(client, told, clinic):
    """docs/portal.md: "Clinic.cancellation_window_hours (default 24): once start - now is less than that, the
    patient can neither cancel nor move online (409; the message names the clinic and its number). Exactly 24
    hours before is still allowed. A new time inside the window is refused the same way"."""
    clinic.cancellation_window_hours = 48
    clinic.save()
    told = fresh_appointment(told)
    with time_machine.travel(told.start_at - timedelta(hours=48) + timedelta(minutes=1), tick=False):
        too_late = client.post(portal_page(told, "cancel"))
    assert too_late.status_code == 409
    assert "less than 48 hours" in words(too_late) and "020 7946 0958" in words(too_late)
    assert fresh_appointment(told).status == AppointmentStatus.CONFIRMED

    edge = told.start_at - timedelta(hours=48)
    with time_machine.travel(edge, tick=False):
        soon = f"{(edge + timedelta(hours=47)).astimezone(UTC):%Y%m%dT%H%MZ}_{told.practitioner_id}"
        inside = client.post(portal_page(told, "move_confirm"), {"slot": soon})
        assert inside.status_code == 409 and "less than 48 hours away" in words(inside)
        assert fresh_appointment(told).start_at == ldn(2026, 3, 10)
        exactly = client.post(portal_page(told, "cancel"))
    assert exactly.status_code == 303
    assert fresh_appointment(told).status == AppointmentStatus.CANCELLED


@pytest.mark.parametrize(
    "status", [AppointmentStatus.CANCELLED, AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW]
)
def test_an_appointment_that_is_over_cannot_be_moved_or_cancelled(client, told, status):
    """docs/portal.md: "A cancelled, completed or missed appointment is refused in the patient's words ...
    409, the appointment page with the message"."""
    _, key = offered_on(told, 5)
    Appointment.objects.filter(pk=told.pk).update(status=status)
    expected = {
        AppointmentStatus.CANCELLED: "This appointment is already cancelled.",
        AppointmentStatus.COMPLETED: "This appointment has already taken place.",
        AppointmentStatus.NO_SHOW: "This appointment has already passed.",
    }[status]

    for response in (
        client.post(portal_page(told, "cancel")),
        client.post(portal_page(told, "move_confirm"), {"slot": key}),
        client.get(portal_page(told, "move_confirm"), {"slot": key}),
        client.get(portal_page(told, "move")),
    ):
        assert response.status_code == 409
        assert expected in words(response)
    current = fresh_appointment(told)
    assert (current.status, current.start_at) == (status, ldn(2026, 3, 10))
    assert not AuditEvent.objects.filter(appointment=told, action=AuditAction.RESCHEDULED).exists()


def test_once_the_time_has_come_nothing_changes_even_with_no_window(client, told, clinic):
    """docs/portal.md: "so is any change once the appointment's time has come (with a message that says so, even
    with a window of 0)"."""
    clinic.cancellation_window_hours = 0
    clinic.save()
    with time_machine.travel(told.start_at, tick=False):
        response = client.post(portal_page(told, "cancel"))
    assert response.status_code == 409
    assert "The time of this appointment has come" in words(response)
    assert fresh_appointment(told).status == AppointmentStatus.CONFIRMED


# --- Links that must not work -----------------------------------------------------------------------------------------


def test_a_link_with_its_expiry_pushed_back_does_not_work(client, told):
    """docs/portal.md: "the link is signed (... salted, expiring a week after the appointment ends)"; "damaged,
    forged or another link's token: 400 'This link does not work', naming no clinic, patient or appointment";
    "expired link: 410"."""
    good = manage_token(told)
    pk, expiry, mac = good.split(".")
    pushed = f"{pk}.{int_to_base36(int(expiry, 36) + 365 * 86400)}.{mac}"  # one year on, the old signature
    in_hex = f"{pk}.{int(expiry, 36) + 365 * 86400:x}.{mac}"
    after_expiry = told.end_at + timedelta(days=8)
    with time_machine.travel(after_expiry, tick=False):
        assert client.get(f"/my/{good}/").status_code == 410
        for token in (pushed, in_hex):
            response = client.get(f"/my/{token}/")
            assert response.status_code == 400
            assert "This link does not work" in words(response) and "Bloom" not in words(response)
            assert client.post(f"/my/{token}/cancel/").status_code == 400
    assert fresh_appointment(told).status == AppointmentStatus.CONFIRMED


def test_the_link_in_the_confirmation_still_works_after_the_clinic_moves_the_visit_later(client, told, frozen):
    """docs/portal.md: "the link is signed (reminders/links.py: manage_url, salted, expiring a week after the
    appointment ends)"; the expired page itself says "Links to your appointment page work until a week after
    the appointment". The clinic moves the 10 March visit to 12 May; on 20 March the link the patient got in
    the confirmation ("To see, move or cancel it") must still open the page of their coming appointment."""
    link = portal_page(told)
    appointment_reschedule(appointment=fresh_appointment(told), start_at=ldn(2026, 5, 12), actor=RECEPTION, now=frozen)

    with time_machine.travel(ldn(2026, 3, 20), tick=False):
        response = client.get(link)

    assert response.status_code == 200, words(response)[:120]
    assert "Tuesday 12 May 2026" in words(response)


def test_a_link_stops_a_week_after_the_visit_the_clinic_moved_earlier(client, told, frozen):
    """The other way round: the 10 March visit moved to 5 March; the link works until a week after 5 March, not
    until a week after 10 March (reminders/links.py: the appointment's end as it stands)."""
    link = portal_page(told)
    appointment_reschedule(appointment=fresh_appointment(told), start_at=ldn(2026, 3, 5), actor=RECEPTION, now=frozen)
    end = fresh_appointment(told).end_at

    with time_machine.travel(end + timedelta(days=7) - timedelta(minutes=1), tick=False):
        assert client.get(link).status_code == 200
    with time_machine.travel(end + timedelta(days=7), tick=False):
        response = client.get(link)
    assert response.status_code == 410 and "This link has expired" in words(response)


def test_another_organisations_link_acts_only_on_its_own_appointment(client, told, patient, care_texts, frozen):
    """docs/portal.md: "nothing on these pages takes an appointment or patient id from the request, and one
    appointment's link cannot act on another"; api-contract: "Anything of another organisation is a 404"."""
    elsewhere = ClinicFactory(code="qa-elsewhere", name="Elsewhere Skin")
    PractitionerFactory(clinic=elsewhere)
    stranger = PatientFactory(clinic=elsewhere, first_name="Nora", reminder_channels=["email"])
    theirs = book(stranger, ldn(2026, 3, 12), frozen, code="botox")
    smuggled = {"appointment": str(told.pk), "patient": str(patient.pk), "token": manage_token(told)}

    cancelled = client.post(portal_page(theirs, "cancel"), smuggled)
    prefs = client.post(portal_page(theirs, "preferences"), {**smuggled, "care": "", "reminders": "on"})
    shown = words(client.get(portal_page(theirs)))

    assert cancelled.status_code == prefs.status_code == 303
    assert fresh_appointment(theirs).status == AppointmentStatus.CANCELLED
    assert fresh_appointment(told).status == AppointmentStatus.CONFIRMED
    assert Patient.objects.get(pk=patient.pk).muted_topics == []
    assert Patient.objects.get(pk=patient.pk).reminder_channels == ["email", "sms"]
    assert "Olivia" not in shown and "Bloom" not in shown and "Tuesday 10 March" not in shown


@pytest.mark.parametrize(
    "token",
    [
        "x" * 5000,
        "é.é.é",
        "..",
        "0" * 32 + ".zzzzzzzzzzzzzzzzzzzzzzzzzzzz.AAAAAAAAAAAAAAAA",
        "%00",
        "a.b.c.d",
    ],
)
def test_odd_tokens_are_a_400_never_a_500(client, token):
    """docs/portal.md, "Errors: never a 500": "damaged, forged or another link's token ... 400"."""
    for response in (client.get(f"/my/{token}/"), client.post(f"/my/{token}/preferences/", {"email": "on"})):
        assert response.status_code == 400
        assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "I can\x00not come"),
        ("slot", "20260305T1000Z_\x00"),
        ("slot", "20270229T1000Z_{own}"),  # 29 February of a year that has none
        ("slot", "20260305T1000Z_" + "9" * 90),
        ("slot", "20260305T2460Z_{own}"),
    ],
)
def test_bad_form_values_are_a_clear_400_and_change_nothing(client, told, field, value):
    """docs/portal.md: "unreadable slot, unknown practitioner, reason over 500 characters ... 400, the same page
    with the message next to the field"; "Errors: never a 500"."""
    value = value.format(own=told.practitioner_id)
    url = portal_page(told, "cancel") if field == "reason" else portal_page(told, "move_confirm")

    response = client.post(url, {field: value})

    assert response.status_code == 400, words(response)
    current = fresh_appointment(told)
    assert (current.status, current.start_at) == (AppointmentStatus.CONFIRMED, ldn(2026, 3, 10))


def test_every_answer_is_uncached_and_unindexed(client, told):
    """docs/portal.md: "Every answer carries Cache-Control: no-store; pages are noindex and send no referrer to
    other sites (same-origin ...)"."""
    expired = manage_token(told)
    answers = [
        client.get(portal_page(told)),
        client.get(portal_page(told, "move_confirm"), {"slot": "nonsense"}),
        client.post(portal_page(told, "cancel"), {"reason": "x" * 501}),  # 400
        client.get(portal_page(told, "preferences")),  # 303
    ]
    with time_machine.travel(told.end_at + timedelta(days=7), tick=False):
        answers.append(client.get(f"/my/{expired}/"))
    assert [a.status_code for a in answers] == [200, 400, 400, 303, 410]
    for answer in answers:
        assert "no-store" in answer["Cache-Control"], answer.status_code
        if answer.status_code != 303:
            html = answer.content.decode()
            assert 'name="robots" content="noindex' in html
            assert 'name="referrer" content="same-origin"' in html


# --- Choosing what to receive -----------------------------------------------------------------------------------------


def test_muting_care_stops_care_but_not_reminders_or_change_notices(client, told, frozen):
    """docs/portal.md: "Care instructions, reminders | unticked kinds go into Patient.muted_topics"; "Booking
    confirmations and change notices are not optional. The send step checks consent again, so a change applies
    to messages already planned"."""
    response = client.post(portal_page(told, "preferences"), {"email": "on", "sms": "on", "reminders": "on"})
    assert response.status_code == 303
    later = CLOCK + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        appointment_reschedule(
            appointment=fresh_appointment(told), start_at=ldn(2026, 3, 11), actor=RECEPTION, now=later
        )

    send_all_until(ldn(2026, 3, 11, 9), start=later, step=timedelta(hours=2))

    kinds = {(r.kind, r.channel): r.status for r in rows(told)}
    assert kinds[(MessageKind.RESCHEDULED, "email")] == OutboxStatus.SENT
    assert kinds[(MessageKind.RESCHEDULED, "sms")] == OutboxStatus.SENT
    assert kinds[(MessageKind.REMINDER, "email")] == OutboxStatus.SENT
    assert kinds[(MessageKind.REMINDER, "sms")] == OutboxStatus.SENT
    assert not any(r.status == OutboxStatus.SENT for r in rows(told, kind=MessageKind.PRE_CARE))
    assert not any("prepare" in t.lower() for t in texts())
    assert not any("Preparing" in m.subject for m in mail.outbox)


def test_switching_texts_off_on_the_page_stops_planned_texts_and_email_goes_on(client, told, patient):
    """docs/portal.md: "E-mail or SMS off | removed from Patient.reminder_channels (SMS also clears sms_consent) |
    ContactOptOut, via patient_page"; docs/reminders.md: "consent is checked again when sending (an opt-out in
    between marks the row skipped)"."""
    response = client.post(portal_page(told, "preferences"), {"email": "on", "care": "on", "reminders": "on"})
    assert response.status_code == 303
    current = Patient.objects.get(pk=patient.pk)
    assert (current.reminder_channels, current.sms_consent) == (["email"], False)
    assert ContactOptOut.objects.filter(patient=patient, channel="sms", via="patient_page").count() == 1

    send_all_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9), step=timedelta(hours=1))

    assert texts() == []
    assert {r.status for r in rows(told, channel="sms", kind__in=[MessageKind.REMINDER, MessageKind.PRE_CARE])} == {
        OutboxStatus.SKIPPED
    }
    assert len(mail.outbox) >= 1  # the reminder and pre-care by e-mail (possibly merged)


def test_a_stop_reply_ends_texts_for_that_number_only(client, settings, told, patient, clinic, frozen):
    """docs/reminders.md, "Inbound SMS": "the URL must carry ?token=$SMS_INBOUND_TOKEN. A reply of STOP ... turns
    SMS off for every patient with that number"; a wrong token is refused and changes nothing."""
    settings.SMS_INBOUND_TOKEN = "qa-inbound-secret"
    neighbour = PatientFactory(clinic=clinic, phone="+447700900555", reminder_channels=["email", "sms"])
    Patient.objects.filter(pk=neighbour.pk).update(sms_consent=True)
    url = reverse("reminders:sms_inbound")

    forged = client.post(url + "?token=wrong", {"From": patient.phone, "Body": "STOP"})
    no_sender = client.post(url + "?token=qa-inbound-secret", {"Body": "STOP"})
    assert (forged.status_code, no_sender.status_code) == (403, 400)
    assert Patient.objects.get(pk=patient.pk).sms_consent is True

    stop = client.post(url + "?token=qa-inbound-secret", {"From": patient.phone, "Body": " stop! "})
    assert stop.status_code == 200
    assert Patient.objects.get(pk=patient.pk).sms_consent is False
    assert Patient.objects.get(pk=neighbour.pk).sms_consent is True
    send_all_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9), step=timedelta(hours=1))
    assert texts() == [] and len(mail.outbox) >= 1
