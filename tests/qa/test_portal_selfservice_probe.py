"""The patient's own pages, probed from outside at their edges: docs/portal.md (see, cancel, move, message choices,
calendar link), scheduler/selfservice.py, portal/, and the links in messages (docs/reminders.md).

tests/qa/test_patient_messages_probe.py already covers the basic move/cancel messages, the 48-hour window to the
minute, statuses that are over, expiry pushed back, another organisation's link, odd tokens, muting care, SMS off
and STOP. This file goes for the edges: the window across clock changes and zones, a self-move against every rule
a desk booking obeys, links after the desk or a merge changed things, what the patient/platforms/desk get after a
self-service change, re-subscribing, and privacy. Everything through Django's test client.

The clock is the shared test clock (Monday 2 March 2026, 09:00 London = UTC) unless a test travels.

Written by a QA pass on 3 December; three findings failed then and pass since: times offered for a booking longer
than the catalogue's were refused on confirming (slots are now of the booking's own length), a refused move named
the patient's condition or medicine (a contraindication now asks them to call), and a move sent twice was recorded
and announced twice (a move to where the booking already is changes nothing).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import (
    ApiClient,
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    Patient,
    TimeOff,
)
from clinic.services import IntakeLine, conditions_replace, medication_course_add, procedure_record_add
from reminders.dispatch import dispatch_local
from reminders.models import (
    ContactOptIn,
    ContactOptOut,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
    WebhookEndpoint,
)
from scheduler.booking import appointment_cancel, appointment_complete, appointment_reschedule
from scheduler.selfservice import patient_move_check, patient_move_options
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.helpers import portal_patient, portal_practitioner  # noqa: F401 - fixtures
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


def key(start: datetime, practitioner_id) -> str:
    """A time as the move page posts it (portal.forms.slot_key): its UTC start and the practitioner."""
    return f"{start.astimezone(UTC):%Y%m%dT%H%MZ}_{practitioner_id}"


def offered_starts(response) -> list[datetime]:
    values = re.findall(r'name="slot" value="(\d{8}T\d{4}Z)_', response.content.decode())
    return [datetime.strptime(v, "%Y%m%dT%H%MZ").replace(tzinfo=UTC) for v in values]


def can_change(response) -> bool:
    """The appointment page offers Move and Cancel (docs/portal.md: until the cancellation window begins)."""
    html = response.content.decode()
    return "Move appointment" in html and "Cancel appointment" in html


def hooks(appointment) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(appointment=appointment, channel="webhook").order_by("created_at"))


def move_audits(appointment) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(appointment=appointment, action=AuditAction.RESCHEDULED).order_by("at"))


@pytest.fixture
def organisation(db):
    return OrganisationFactory(code="qa-portal-org")


@pytest.fixture
def clinic(care_texts, organisation):
    return ClinicFactory(
        code="qa-portal-bloom",
        name="Bloom Clinic",
        timezone="Europe/London",
        phone="+442079460958",
        organisation=organisation,
    )


@pytest.fixture
def west(clinic, organisation):
    """Another clinic of the same organisation (one record per patient, domain.md 6)."""
    return ClinicFactory(
        code="qa-portal-west",
        name="Bloom West",
        timezone="Europe/London",
        phone="+442079460999",
        organisation=organisation,
    )


@pytest.fixture
def platform(clinic):
    """A booking platform granted the clinic, with a webhook endpoint for every event."""
    client = ApiClient(name="QA portal platform")
    client.set_new_key()
    client.save()
    client.clinics.add(clinic)
    return WebhookEndpoint.objects.create(client=client, url="https://platform.example/hooks")


# --- The cancellation window at its edges: clock changes, zones ------------------------------------------------------

# (clinic zone, appointment start, window hours, the deadline as the patient's page must state it in local time)
# docs/portal.md: "once start - now is less than that [cancellation_window_hours], the patient can neither cancel nor
# move online ... Exactly 24 hours before is still allowed." `start - now` is elapsed time, so across a clock change
# the deadline's wall-clock time differs from the appointment's by the hour the clocks moved.
WINDOW_CASES = {
    # London to BST on Sunday 29 March: Monday 30 March 10:00 BST (09:00 UTC), 48 h before = Sat 28 March 09:00 GMT.
    "london-spring": ("Europe/London", ldn(2026, 3, 30, 10), 48, "Saturday 28 March at 09:00 London time (GMT)"),
    # London back to GMT on Sunday 25 October: Monday 26 October 10:00 GMT, 48 h before = Sat 24 October 11:00 BST.
    "london-autumn": ("Europe/London", ldn(2026, 10, 26, 10), 48, "Saturday 24 October at 11:00 London time (BST)"),
    # New York to EDT on Sunday 8 March: Monday 9 March 10:00 EDT (14:00 UTC), 24 h before = Sun 8 March 10:00 EDT.
    "new-york-spring": (
        "America/New_York",
        nyc(2026, 3, 9, 10),
        24,
        "Sunday 8 March at 10:00 New York time (EDT)",
    ),
    # New York back to EST on Sunday 1 November: Monday 2 November 10:00 EST, 48 h before = Sat 31 October 11:00 EDT.
    "new-york-autumn": (
        "America/New_York",
        nyc(2026, 11, 2, 10),
        48,
        "Saturday 31 October at 11:00 New York time (EDT)",
    ),
}


@pytest.mark.parametrize("case", list(WINDOW_CASES))
def test_the_window_is_elapsed_hours_to_the_minute_across_each_clock_change(client, care_texts, case):
    """docs/portal.md: "Window. Clinic.cancellation_window_hours (default 24): once start - now is less than that,
    the patient can neither cancel nor move online (outside_cancellation_window, 409) ... Exactly 24 hours before is
    still allowed"; the page shows "Move and Cancel until the cancellation window begins, then 'call us on ...'".
    A minute inside, at, and a minute outside the deadline, around each 2026 clock change in London and New York;
    the page's "until ..." names the same moment in the clinic's wall time."""
    zone, start, hours, until_text = WINDOW_CASES[case]
    clinic = ClinicFactory(
        code=f"qa-win-{case}", name="Edge Clinic", timezone=zone, phone="+442079460958", cancellation_window_hours=hours
    )
    PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic, reminder_channels=["email"])
    appointment = book(patient, start, CLOCK, code="botox")
    deadline = start.astimezone(UTC) - timedelta(hours=hours)  # elapsed hours (aware arithmetic is wall-clock)

    with time_machine.travel(deadline - timedelta(minutes=1), tick=False):
        before = client.get(portal_page(appointment))
    with time_machine.travel(deadline + timedelta(minutes=1), tick=False):
        after = client.get(portal_page(appointment))
        refused = client.post(portal_page(appointment, "cancel"))
        move_refused = client.get(portal_page(appointment, "move"))

    assert before.status_code == 200 and can_change(before), words(before)[:600]
    assert f"You can move or cancel it here until {until_text}." in words(before)
    assert after.status_code == 200 and not can_change(after)
    assert f"less than {hours} hours" in words(after) and "Call us on" in words(after)
    assert refused.status_code == 409 and move_refused.status_code == 409
    assert fresh_appointment(appointment).status == AppointmentStatus.CONFIRMED

    with time_machine.travel(deadline, tick=False):
        at_edge = client.get(portal_page(appointment))
        cancelled = client.post(portal_page(appointment, "cancel"))
    assert can_change(at_edge)
    assert cancelled.status_code == 303
    assert fresh_appointment(appointment).status == AppointmentStatus.CANCELLED


@pytest.mark.parametrize(
    ("zone", "now", "appointment_start", "first_allowed"),
    [
        # 48 h from Saturday 28 March 09:00 GMT is Monday 30 March 09:00 UTC = 10:00 BST (not 09:00 BST).
        ("Europe/London", ldn(2026, 3, 28, 9), ldn(2026, 4, 1, 10), ldn(2026, 3, 30, 10)),
        # 48 h from Saturday 24 October 12:00 BST is Monday 26 October 11:00 UTC = 11:00 GMT (not 12:00).
        ("Europe/London", ldn(2026, 10, 24, 12), ldn(2026, 10, 28, 10), ldn(2026, 10, 26, 11)),
        # 48 h from Saturday 7 March 09:00 EST is Monday 9 March 14:00 UTC = 10:00 EDT.
        ("America/New_York", nyc(2026, 3, 7, 9), nyc(2026, 3, 11, 10), nyc(2026, 3, 9, 10)),
        # 48 h from Saturday 31 October 12:00 EDT is Monday 2 November 16:00 UTC = 11:00 EST.
        ("America/New_York", nyc(2026, 10, 31, 12), nyc(2026, 11, 4, 10), nyc(2026, 11, 2, 11)),
    ],
    ids=["london-spring", "london-autumn", "new-york-spring", "new-york-autumn"],
)
def test_a_new_time_at_the_window_edge_across_a_clock_change(
    client, care_texts, zone, now, appointment_start, first_allowed
):
    """docs/portal.md: "A new time inside the window is refused the same way"; "Times offered: ... none inside the
    window". With a 48-hour window the first time offered after a clock change is the first one at least 48 elapsed
    hours away; 15 minutes earlier is refused (409, the times page), the first allowed one is taken (303)."""
    clinic = ClinicFactory(code=f"qa-edge-{now:%m%d}", name="Edge Clinic", timezone=zone, cancellation_window_hours=48)
    practitioner = PractitionerFactory(clinic=clinic)
    patient = PatientFactory(clinic=clinic, reminder_channels=["email"])
    with time_machine.travel(now, tick=False):
        appointment = book(patient, appointment_start, now, code="botox")
        listed = client.get(portal_page(appointment, "move"))
        too_soon = client.post(
            portal_page(appointment, "move_confirm"),
            {"slot": key(first_allowed - timedelta(minutes=15), practitioner.pk)},
        )
        taken = client.post(portal_page(appointment, "move_confirm"), {"slot": key(first_allowed, practitioner.pk)})

    assert listed.status_code == 200
    assert min(offered_starts(listed)) == first_allowed.astimezone(UTC)
    assert too_soon.status_code == 409 and "less than 48 hours away" in words(too_soon)
    assert taken.status_code == 303, words(taken)[:300]
    assert fresh_appointment(appointment).start_at == first_allowed


def test_the_window_and_zone_are_the_appointments_clinics_not_the_patients_home(client, care_texts, organisation):
    """docs/portal.md: the page shows "date and time in the clinic's zone with the zone named"; the window is
    `Clinic.cancellation_window_hours` and its refusal "names the clinic and its number". A patient registered at a
    London clinic books at the organisation's New York clinic (domain.md 6: one record per patient): the New York
    clinic's 48-hour window and zone apply, and its name and number are given, not the home clinic's."""
    home = ClinicFactory(
        code="qa-zone-home",
        name="Home London",
        timezone="Europe/London",
        phone="+442079460958",
        organisation=organisation,
        cancellation_window_hours=24,
    )
    hudson = ClinicFactory(
        code="qa-zone-ny",
        name="Hudson Skin",
        timezone="America/New_York",
        phone="+12125550147",
        organisation=organisation,
        cancellation_window_hours=48,
    )
    PractitionerFactory(clinic=home)
    at_hudson = PractitionerFactory(clinic=hudson, name="Dr Maya Chen")
    patient = PatientFactory(clinic=home, reminder_channels=["email"])
    appointment = book(patient, nyc(2026, 3, 10, 10), CLOCK, code="botox", practitioner_id=at_hudson.pk)
    with time_machine.travel(CLOCK, tick=False):
        dispatch_local(now=CLOCK)  # the confirmation: the patient has heard of 10 March

    with time_machine.travel(appointment.start_at.astimezone(UTC) - timedelta(hours=30), tick=False):
        shown = client.get(portal_page(appointment))
        refused = client.post(portal_page(appointment, "cancel"))

    assert "10:00–10:30 New York time (EDT)" in words(shown)
    assert not can_change(shown)
    assert refused.status_code == 409
    assert "less than 48 hours" in words(refused)
    assert "Please call Hudson Skin on (212) 555-0147." in words(refused)

    # Moved from the page a week ahead: the move notice names New York time, as the page did.
    with time_machine.travel(CLOCK, tick=False):
        moved = client.post(portal_page(appointment, "move_confirm"), {"slot": key(nyc(2026, 3, 16, 11), at_hudson.pk)})
    assert moved.status_code == 303
    send_all_until(CLOCK + timedelta(minutes=20), start=CLOCK, step=timedelta(minutes=10))
    [notice] = [m for m in mail.outbox if "moved" in m.subject.lower()]
    assert "Mon 16 Mar, 11:00 (EDT)" in notice.body and "Tue 10 Mar, 10:00 (EDT)" in notice.body


# --- A self-move obeys every rule a desk booking obeys -------------------------------------------------------------


def test_a_move_too_close_to_a_reported_botox_is_refused_with_why_and_what_works(client, told, patient, frozen):
    """domain.md 2: botox -> microneedling at least 2 weeks; "Every refusal says which rule, which event it conflicts
    with, and the earliest start that would satisfy every rule"; docs/portal.md: "every slot passes every rule for
    this patient"; "slot taken, or breaking a rule: 409, the times page with the refusal". A Botox done elsewhere on
    20 February (reported after booking) makes microneedling possible from 6 March."""
    procedure_record_add(patient=patient, procedure_code="botox", now=frozen, performed_at=ldn(2026, 2, 20, 11))
    listed = client.get(portal_page(told, "move"))
    starts = offered_starts(listed)
    assert starts and min(starts).astimezone(LONDON).date() == date(2026, 3, 6)

    refused = client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 5, 10), told.practitioner_id)})

    assert refused.status_code == 409
    said = words(refused)
    assert "Sorry, that time is not possible" in said and "Botox" in said and "6 March 2026" in said
    assert "Choose a new time" in said and offered_starts(refused)  # what works, on the same page
    assert fresh_appointment(told).start_at == ldn(2026, 3, 10)
    assert move_audits(told) == []


def test_a_move_is_checked_forward_against_a_booking_at_another_clinic(client, told, patient, west, frozen):
    """domain.md 2: a rule "is checked in both directions: ... booking `earlier` looks forward at booked `later`
    events that it would make too close"; domain.md 6: "a Botox done at one site counts at every other".
    Microneedling -> Botox needs 3 weeks; a Botox booked at the West clinic for 26 March leaves microneedling
    possible until 5 March only: the page offers nothing later, and a direct request for 10 March is refused."""
    PractitionerFactory(clinic=west, name="Dr West")
    moved_early = appointment_reschedule(appointment=told, start_at=ldn(2026, 3, 4, 10), actor=RECEPTION, now=frozen)
    told = fresh_appointment(moved_early.appointment)
    book(patient, ldn(2026, 3, 26, 10), frozen, code="botox", clinic_id=west.pk)

    starts = offered_starts(client.get(portal_page(told, "move")))
    assert starts and max(starts).astimezone(LONDON).date() <= date(2026, 3, 5)

    refused = client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 10, 10), told.practitioner_id)})
    assert refused.status_code == 409 and "Sorry, that time is not possible" in words(refused)
    assert fresh_appointment(told).start_at == ldn(2026, 3, 4, 10)


def test_a_move_onto_the_patients_own_booking_at_another_clinic_is_refused(client, patient, practitioner, west, frozen):
    """docs/portal.md: times offered are "free for the practitioner and the patient"; README: exclusion constraints
    "forbid overlapping active appointments ... for one patient". A Botox at Bloom and a filler (no interval rule
    between them) at the West clinic on Thursday 5 March 11:00-11:45: no time overlapping it is offered for the Botox,
    and asking for 11:15 directly is refused, nothing moves."""
    PractitionerFactory(clinic=west, name="Dr West")
    botox = book(patient, ldn(2026, 3, 12, 10), frozen, code="botox")
    book(patient, ldn(2026, 3, 5, 11), frozen, code="filler", clinic_id=west.pk)

    starts = [s.astimezone(LONDON) for s in offered_starts(client.get(portal_page(botox, "move")))]
    on_the_day = [s for s in starts if s.date() == date(2026, 3, 5)]
    assert on_the_day, "other times on 5 March are free"
    assert all(s + timedelta(minutes=30) <= ldn(2026, 3, 5, 11) or s >= ldn(2026, 3, 5, 11, 45) for s in on_the_day)

    refused = client.post(
        portal_page(botox, "move_confirm"), {"slot": key(ldn(2026, 3, 5, 11, 15), botox.practitioner_id)}
    )
    assert refused.status_code == 409
    assert fresh_appointment(botox).start_at == ldn(2026, 3, 12, 10)


def test_time_off_is_never_offered_and_another_practitioner_is_named_instead(
    client, told, clinic, practitioner, frozen
):
    """docs/portal.md: "one per start time, with the patient's own practitioner when free"; availability: time off.
    Dr Hart is off all of Thursday 5 March; Dr Bell works then: times that day are offered with Dr Bell (named on
    the button), and asking for Dr Hart that day directly is refused as not available."""
    TimeOff.objects.create(practitioner=practitioner, start_at=ldn(2026, 3, 5, 0), end_at=ldn(2026, 3, 6, 0))
    bell = PractitionerFactory(clinic=clinic, name="Dr Bell")

    listed = client.get(portal_page(told, "move"))
    html = listed.content.decode()
    thursday = re.findall(r'value="20260305T\d{4}Z_([0-9a-f-]+)"', html)
    friday = re.findall(r'value="20260306T\d{4}Z_([0-9a-f-]+)"', html)
    assert thursday and set(thursday) == {str(bell.pk)}
    assert friday and set(friday) == {str(practitioner.pk)}  # own practitioner when free

    refused = client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 5, 10), practitioner.pk)})
    assert refused.status_code == 409 and "not available" in words(refused)
    assert fresh_appointment(told).start_at == ldn(2026, 3, 10)


def test_every_time_offered_for_a_longer_booking_can_be_confirmed(client, patient, practitioner, clinic, frozen):
    """docs/portal.md: "Times offered (patient_move_options): ... every slot passes every rule for this patient and is
    free for the practitioner and the patient". The desk booked a 90-minute microneedling (the catalogue says 60); a
    move keeps the booking's own length. Dr Hart has another patient at 11:00 on Thursday 5 March: a 10:00 start fits
    60 minutes but not 90, so it must not be offered (the patient would pick it and be told it is not free)."""
    appointment = book(patient, ldn(2026, 3, 10, 10), frozen, end_at=ldn(2026, 3, 10, 11, 30))
    book(PatientFactory(clinic=clinic), ldn(2026, 3, 5, 11), frozen, code="botox", practitioner_id=practitioner.pk)

    options = [
        s
        for s in patient_move_options(appointment=fresh_appointment(appointment), now=frozen)
        if s.start_at.astimezone(LONDON).date() == date(2026, 3, 5)
    ]
    refusals = []
    for slot in options:
        try:
            patient_move_check(
                appointment=fresh_appointment(appointment),
                start_at=slot.start_at,
                practitioner_id=slot.practitioner_id,
                now=frozen,
            )
        except Exception as error:  # noqa: BLE001 - the probe lists every offered time that is then refused
            refusals.append((slot.start_at.astimezone(LONDON).strftime("%H:%M"), type(error).__name__))
    assert refusals == []


def hold_for(patient, via: str, now) -> None:
    """A clotting disorder (intake) or an ongoing anticoagulant course: absolute for microneedling (domain.md 3)."""
    if via == "condition":
        conditions_replace(patient=patient, lines=[IntakeLine("clotting_disorder", "active")], now=now)
    else:
        medication_course_add(patient=patient, drug_code="anticoagulant", started_on=date(2026, 2, 1), now=now)


@pytest.mark.parametrize("via", ["condition", "medication"])
def test_an_absolute_contraindication_on_hold_offers_no_time_and_moves_nothing(client, told, patient, frozen, via):
    """domain.md 6: what now meets an absolute contraindication "becomes needs_review"; docs/portal.md: "One on hold
    for review ... says so, and may be moved: the move re-checks everything"; the page shows the date and time, "short
    treatment name, practitioner, clinic". A clotting disorder (or an ongoing anticoagulant course) recorded after
    booking rules microneedling out on every date: the page says it is on hold without naming the condition or the
    medicine, offers no time (call us), and a time asked for directly is refused, nothing changes."""
    hold_for(patient, via, frozen)
    assert fresh_appointment(told).status == AppointmentStatus.NEEDS_REVIEW

    shown = words(client.get(portal_page(told)))
    listed = client.get(portal_page(told, "move"))
    refused = client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 12, 10), told.practitioner_id)})

    assert "On hold: the clinic needs to check this booking with you" in shown
    assert offered_starts(listed) == [] and "Please call us on 020 7946 0958" in words(listed)
    assert refused.status_code == 409
    assert (
        fresh_appointment(told).start_at == ldn(2026, 3, 10)
        and fresh_appointment(told).status == AppointmentStatus.NEEDS_REVIEW
    )
    assert move_audits(told) == []
    for said in (shown, words(listed)):
        assert "lotting" not in said and "nticoagulant" not in said and "contraindication" not in said


@pytest.mark.parametrize("via", ["condition", "medication"])
def test_a_refused_move_does_not_name_the_patients_condition_or_medicine(client, told, patient, frozen, via):
    """docs/portal.md lists what the pages show: date and time, "short treatment name, practitioner, clinic"; the
    refusal for "breaking a rule" is "the times page with the refusal"; portal/views.py `_refusal`: "The refusal in a
    patient's words: a rule's own message names only their own treatments"; docs/reminders.md: "Private on a lock
    screen" (the link travels by SMS). Asking for a time directly while an absolute contraindication stands must not
    put the intake line or the medicine, in staff wording, on the page."""
    hold_for(patient, via, frozen)

    refused = client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 12, 10), told.practitioner_id)})

    said = words(refused)
    assert refused.status_code == 409
    assert "lotting" not in said and "nticoagulant" not in said and "contraindication" not in said, said


def test_a_move_into_a_relative_contraindication_is_held_and_said_everywhere(
    client, patient, practitioner, platform, frozen
):
    """domain.md 3: relative = "held as pending clearance until a clinician records a clearance ... and no reminders
    go out before that"; docs/portal.md: "if the new time needs a clinician's clearance ..., the booking is pending
    clearance and the page says a clinician will check it"; docs/reminders.md: "booked as pending_clearance: all of
    the above held"; the webhook carries the new status. An anticoagulant course from 15 to 20 March is a relative
    contraindication for filler: a filler on 10 March is confirmed; the patient moves it to 16 March."""
    medication_course_add(
        patient=patient, drug_code="anticoagulant", started_on=date(2026, 3, 15), ended_on=date(2026, 3, 20), now=frozen
    )
    filler = book(patient, ldn(2026, 3, 10), frozen, code="filler")
    assert filler.status == AppointmentStatus.CONFIRMED
    dispatch_local(now=frozen)

    moved = client.post(
        portal_page(filler, "move_confirm"), {"slot": key(ldn(2026, 3, 16, 10), practitioner.pk)}, follow=True
    )

    assert "A clinician will check it before it is confirmed" in words(moved)
    current = fresh_appointment(filler)
    assert (current.start_at, current.status) == (ldn(2026, 3, 16, 10), AppointmentStatus.PENDING_CLEARANCE)
    planned = rows(filler, kind__in=[MessageKind.REMINDER, MessageKind.PRE_CARE])
    assert planned and all(r.status == OutboxStatus.HELD for r in planned), [(r.kind, r.status) for r in planned]
    [hook] = [h for h in hooks(filler) if h.payload["type"] == "appointment.rescheduled"]
    assert hook.payload["data"]["appointment"]["status"] == "pending_clearance"
    [event] = move_audits(filler)
    assert event.actor_label == f"patient {patient.pk}" and event.details["to"]["status"] == "pending_clearance"


def test_a_move_stays_at_its_clinic_even_with_a_colleague_of_the_organisation(client, told, west, frozen):
    """docs/portal.md: "nothing on these pages takes an appointment or patient id from the request"; scheduler:
    "a move stays at its clinic, as staff's does"; "unknown practitioner ... 400, the same page with the message".
    A forged slot naming a practitioner of the organisation's West clinic is refused and nothing moves."""
    colleague = PractitionerFactory(clinic=west, name="Dr West")

    response = client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 12, 10), colleague.pk)})

    assert response.status_code == 400 and "There is no such practitioner at this clinic." in words(response)
    current = fresh_appointment(told)
    assert (current.start_at, current.practitioner_id, current.clinic_id) == (
        ldn(2026, 3, 10),
        told.practitioner_id,
        told.clinic_id,
    )


# --- Links after the desk, a merge, or the patient changed things ------------------------------------------------------


def test_a_double_submitted_move_tells_the_patient_once(client, told, frozen):
    """docs/portal.md: "Every POST ... answers with a 303 to a page (a reload repeats nothing)"; docs/reminders.md: "a
    change notice goes after a grace period". A patient taps "Yes, move it" twice (or the browser resends the form):
    the appointment is at the new time and the patient gets one move notice per channel."""
    slot = key(ldn(2026, 3, 5, 10), told.practitioner_id)
    first = client.post(portal_page(told, "move_confirm"), {"slot": slot})
    second = client.post(portal_page(told, "move_confirm"), {"slot": slot})

    assert first.status_code == 303 and second.status_code in (303, 409)
    assert fresh_appointment(told).start_at == ldn(2026, 3, 5, 10)
    send_all_until(CLOCK + timedelta(minutes=30), start=CLOCK + timedelta(minutes=6), step=timedelta(minutes=10))
    assert len([t for t in texts() if "moved" in t]) == 1
    assert len([m for m in mail.outbox if "moved" in m.subject]) == 1


def test_a_double_submitted_move_is_one_change_for_the_desk_and_the_platforms(client, told, platform, frozen):
    """docs/portal.md: "Every POST ... answers with a 303 to a page (a reload repeats nothing)"; domain.md 6: "Nothing
    is changed silently: each move is audited, shown to staff and sent as a webhook" (one move, one entry, one event).
    The same move posted twice is one change: one audit entry, one `appointment.rescheduled` webhook."""
    slot = key(ldn(2026, 3, 5, 10), told.practitioner_id)
    client.post(portal_page(told, "move_confirm"), {"slot": slot})
    client.post(portal_page(told, "move_confirm"), {"slot": slot})

    events = [h.payload["type"] for h in hooks(told)].count("appointment.rescheduled")
    audits = [(e.details["from"]["start_at"], e.details["to"]["start_at"]) for e in move_audits(told)]
    assert (events, len(audits)) == (1, 1), (events, audits)


def test_a_link_for_a_visit_the_desk_cancelled_offers_nothing_but_keeps_the_message_choices(client, told, frozen):
    """docs/portal.md: "A cancelled, completed or missed appointment is refused in the patient's words"; "Messages
    from us" are on the page. The desk cancels; the patient's link from the confirmation shows it cancelled with no
    Move or Cancel and no call-us box, and still saves their message choices (switching texts off)."""
    appointment_cancel(appointment=told, actor=RECEPTION, now=frozen, reason="Clinic closed")
    shown = client.get(portal_page(told))

    assert shown.status_code == 200 and "Cancelled" in words(shown) and not can_change(shown)
    assert "Clinic closed" not in words(shown)  # the desk's reason is the desk's
    saved = client.post(portal_page(told, "preferences"), {"email": "on", "care": "on", "reminders": "on"})
    assert saved.status_code == 303
    assert Patient.objects.get(pk=told.patient_id).reminder_channels == ["email"]


def test_a_link_for_a_completed_visit_still_gets_a_calendar_link(client, told, frozen):
    """docs/portal.md, "A calendar link": "Get a calendar link" on the page gives "a private iCalendar feed of all
    their appointments"; docs/reminders.md: post-care messages carry the page link after the visit. A link from the
    week after a completed visit still gives the calendar link (the link expires a week after the visit)."""
    appointment_complete(appointment=told, actor=CLINICIAN, now=ldn(2026, 3, 10, 11))
    with time_machine.travel(ldn(2026, 3, 12, 9), tick=False):
        shown = client.get(portal_page(told))
        asked = client.post(portal_page(told, "calendar"), follow=True)
    assert "Completed" in words(shown) and not can_change(shown)
    found = re.search(r"https://clinic\.example/reminders/calendar/[^\s<\"]+\.ics", asked.content.decode())
    assert found, words(asked)[:400]
    feed = client.get(found.group(0).removeprefix("https://clinic.example"))
    assert feed.status_code == 200 and f"UID:appointment-{told.pk}@" in feed.content.decode()


def test_a_link_of_a_record_merged_away_acts_for_the_survivor(client, told, patient, clinic, frozen):
    """docs/organisations.md: on a merge "appointments ... move to the survivor"; "nothing can be booked, recorded or
    edited on" the tombstone; "an unsubscribe link from before the merge opts out the survivor"; docs/portal.md: the
    audit trail says `patient <patient id>`. Olivia's confirmation link was sent from her duplicate record; after
    the merge it opens her appointment, and cancelling or choosing messages through it acts on the surviving
    record, under the survivor's id, never on the tombstone."""
    survivor = PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        email="olivia@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    patient_merge(merged=patient, into=survivor, now=frozen, actor_label="clinician@qa", clinical=True)
    assert Patient.objects.get(pk=patient.pk).merged_into_id == survivor.pk

    shown = client.get(portal_page(told))
    prefs = client.post(portal_page(told, "preferences"), {"email": "on", "sms": "on", "reminders": "on"})
    cancelled = client.post(portal_page(told, "cancel"), {"reason": "duplicate"})

    assert shown.status_code == 200 and can_change(shown)
    assert prefs.status_code == 303 and cancelled.status_code == 303
    assert Patient.objects.get(pk=survivor.pk).muted_topics == ["care"]
    assert Patient.objects.get(pk=patient.pk).muted_topics in ([], None)
    [event] = AuditEvent.objects.filter(appointment=told, action=AuditAction.CANCELLED)
    assert event.actor_label == f"patient {survivor.pk}"


def test_a_link_from_before_a_merge_shows_the_hold_the_merge_put_on_it(client, told, patient, clinic, frozen):
    """docs/organisations.md: "the survivor's future booked appointments are re-checked ...: e.g. microneedling booked
    on one record three days after a Botox on the other becomes needs_review"; docs/portal.md: "One on hold for review
    ... says so, and may be moved: the move re-checks everything". After the merge the old link shows the hold, and
    the times offered respect the survivor's Botox of 1 March (microneedling from 15 March, a Sunday)."""
    survivor = PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Bennett",
        email="o.bennett@example.com",
        reminder_channels=["email"],
    )
    procedure_record_add(patient=survivor, procedure_code="botox", now=frozen, performed_at=ldn(2026, 3, 1, 12))
    patient_merge(merged=patient, into=survivor, now=frozen, actor_label="clinician@qa", clinical=True)
    assert fresh_appointment(told).status == AppointmentStatus.NEEDS_REVIEW

    shown = words(client.get(portal_page(told)))
    starts = offered_starts(client.get(portal_page(told, "move")))
    assert "On hold" in shown
    # 1 March + 2 weeks = Sunday 15 March, when the clinic is closed: the first time is Monday 16 March, 09:00
    assert starts and min(starts) == ldn(2026, 3, 16, 9)
    moved = client.post(portal_page(told, "move_confirm"), {"slot": key(min(starts), told.practitioner_id)})
    assert moved.status_code == 303
    assert fresh_appointment(told).status == AppointmentStatus.CONFIRMED


def test_a_link_never_acts_on_the_appointment_named_in_the_request(client, told, patient, clinic, practitioner, frozen):
    """docs/portal.md: "nothing on these pages takes an appointment or patient id from the request, and one
    appointment's link cannot act on another". A patient of the same clinic with a valid link of their own sends the
    other patient's appointment id in the query and the form: only their own appointment is touched."""
    other = PatientFactory(clinic=clinic, first_name="Nora", reminder_channels=["email"])
    theirs = book(other, ldn(2026, 3, 12), frozen, code="botox")
    smuggle = {
        "appointment": str(told.pk),
        "appointment_id": str(told.pk),
        "patient": str(patient.pk),
        "id": str(told.pk),
    }

    listed = client.get(portal_page(theirs, "move"), smuggle)
    moved = client.post(
        portal_page(theirs, "move_confirm") + f"?appointment={told.pk}",
        {**smuggle, "slot": key(ldn(2026, 3, 13, 10), theirs.practitioner_id)},
    )
    cancelled = client.post(portal_page(theirs, "cancel") + f"?appointment={told.pk}", smuggle)

    assert listed.status_code == 200 and "Olivia" not in words(listed) and "Microneedling" not in words(listed)
    assert moved.status_code == 303 and cancelled.status_code == 303
    assert fresh_appointment(theirs).status == AppointmentStatus.CANCELLED
    assert (fresh_appointment(told).status, fresh_appointment(told).start_at) == (
        AppointmentStatus.CONFIRMED,
        ldn(2026, 3, 10),
    )


def test_a_link_stops_working_when_the_secret_key_is_rotated(client, told, settings):
    """docs/portal.md: "Rotating DJANGO_SECRET_KEY invalidates every link" (and "Errors: never a 500": a damaged or
    forged link is a 400 "This link does not work", naming no clinic, patient or appointment)."""
    link = portal_page(told)
    settings.SECRET_KEY = "rotated-" + "k" * 50
    response = client.get(link)
    assert response.status_code == 400
    assert "This link does not work" in words(response) and "Bloom" not in words(response)


# --- What the patient hears, what platforms and the desk get -------------------------------------------------------------


def test_a_self_move_after_a_desk_move_in_the_grace_period_sends_one_notice_from_what_they_heard(client, told, frozen):
    """docs/reminders.md: "a change notice goes after a grace period ... moves within it collapse into one notice";
    "the move notice runs from the time the patient last heard to the time now". The desk moves 10 March to 11 March
    at 09:00; at 09:02 the patient (who heard only of 10 March) moves it to 12 March from the confirmation's link:
    one move notice per channel, "it was Tue 10 Mar", now Thu 12 Mar; nothing about 11 March."""
    appointment_reschedule(appointment=told, start_at=ldn(2026, 3, 11), actor=RECEPTION, now=frozen)
    later = CLOCK + timedelta(minutes=2)
    with time_machine.travel(later, tick=False):
        moved = client.post(
            portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 12, 10), told.practitioner_id)}
        )
    assert moved.status_code == 303

    send_all_until(CLOCK + timedelta(hours=1), start=later, step=timedelta(minutes=3))

    moved_texts = [t for t in texts() if "moved" in t]
    assert len(moved_texts) == 1, texts()
    assert "Thu 12 Mar, 10:00 (GMT)" in moved_texts[0] and "it was Tue 10 Mar, 10:00 (GMT)" in moved_texts[0]
    assert not any("11 Mar" in t for t in texts())
    assert len([m for m in mail.outbox if "moved" in m.subject.lower()]) == 1


def test_a_self_move_then_self_cancel_in_the_grace_period_sends_only_the_cancellation(client, told, frozen):
    """docs/reminders.md: "moves within it collapse into one notice"; "cancelled: unsent rows cancelled; a
    cancellation notice only if the patient had been told of the booking"; issue 16: "the last message they get about
    an appointment must be true". The patient moves, then a minute later cancels: no move notice, one cancellation
    per channel."""
    client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 12, 10), told.practitioner_id)})
    with time_machine.travel(CLOCK + timedelta(minutes=1), tick=False):
        assert client.post(fresh_page(told, "cancel")).status_code == 303

    send_all_until(ldn(2026, 3, 12, 12), start=CLOCK + timedelta(minutes=1), step=timedelta(hours=3))

    assert [t for t in texts() if "moved" in t] == []
    assert len([t for t in texts() if "cancelled" in t]) == 1, texts()
    assert len(mail.outbox) == 1 and "cancel" in mail.outbox[0].subject.lower()


def fresh_page(appointment, name="manage") -> str:
    return portal_page(fresh_appointment(appointment), name)


def test_platforms_hear_each_self_service_change_once_with_the_clinics_offset(client, told, platform, patient, frozen):
    """docs/portal.md: "every interval rule, contraindication, lock, reminder and webhook applies exactly as for
    staff"; docs/reminders.md, webhooks: `appointment.rescheduled` "(with previous)", `appointment.cancelled`;
    "times in the clinic's offset". The patient moves 10 March (GMT) to 31 March (BST), then cancels: exactly one
    rescheduled event (start +01:00, previous +00:00) and one cancelled event, each audited as the patient."""
    with time_machine.travel(CLOCK, tick=False):
        assert (
            client.post(
                portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 31, 10), told.practitioner_id)}
            ).status_code
            == 303
        )
        assert client.post(fresh_page(told, "cancel")).status_code == 303

    types = [h.payload["type"] for h in hooks(told)]
    assert types.count("appointment.rescheduled") == 1 and types.count("appointment.cancelled") == 1, types
    [moved] = [h for h in hooks(told) if h.payload["type"] == "appointment.rescheduled"]
    assert moved.payload["data"]["appointment"]["start"] == "2026-03-31T10:00:00+01:00"
    assert moved.payload["data"]["previous"]["start"] == "2026-03-10T10:00:00+00:00"
    labels = set(
        AuditEvent.objects.filter(
            appointment=told, action__in=[AuditAction.RESCHEDULED, AuditAction.CANCELLED]
        ).values_list("actor_label", flat=True)
    )
    assert labels == {f"patient {patient.pk}"}


def test_the_audit_names_the_patient_and_keeps_their_cancel_note(client, told, patient, frozen):
    """docs/portal.md: GET cancel asks for "an optional note for the clinic"; "the audit trail says `patient <patient
    id>`". The cancellation is audited as the patient, with the note they left (what the desk's history lists)."""
    client.post(portal_page(told, "cancel"), {"reason": "Flight moved, sorry"})
    current = fresh_appointment(told)
    assert current.cancel_reason == "Flight moved, sorry"
    [event] = AuditEvent.objects.filter(appointment=told, action=AuditAction.CANCELLED)
    assert (event.actor_label, event.reason) == (f"patient {patient.pk}", "Flight moved, sorry")


def test_the_calendar_link_follows_the_patients_own_move_and_cancel(client, told, frozen):
    """docs/portal.md, "A calendar link": "it follows every move and cancellation (one UID per appointment, a rising
    SEQUENCE)"; docs/reminders.md: "a cancelled one stays as STATUS:CANCELLED". The patient asks for the link, moves
    the visit to Tuesday 31 March (BST) from the page, then cancels it: the same entry moves, then turns cancelled."""
    asked = client.post(portal_page(told, "calendar"), follow=True)
    url = re.search(r"https://clinic\.example(/reminders/calendar/[^\s<\"]+\.ics)", asked.content.decode()).group(1)

    def entry() -> dict:
        ics = client.get(url).content.decode().replace("\r\n ", "")
        [event] = re.findall(r"BEGIN:VEVENT.*?END:VEVENT", ics, flags=re.S)
        fields = dict(line.split(":", 1) for line in event.splitlines() if ":" in line)
        return {k.split(";")[0]: v for k, v in fields.items()}

    first = entry()
    client.post(portal_page(told, "move_confirm"), {"slot": key(ldn(2026, 3, 31, 10), told.practitioner_id)})
    moved = entry()
    client.post(fresh_page(told, "cancel"))
    cancelled = entry()

    assert first["UID"] == moved["UID"] == cancelled["UID"]
    assert first["DTSTART"].endswith("20260310T100000") and moved["DTSTART"].endswith("20260331T100000")
    assert int(first["SEQUENCE"]) < int(moved["SEQUENCE"]) < int(cancelled["SEQUENCE"])
    assert cancelled["STATUS"] == "CANCELLED"


# --- Message choices -------------------------------------------------------------------------------------------------


def test_texts_off_then_back_on_before_the_reminder_sends_it_once(client, told, patient):
    """docs/portal.md: "SMS back on | only with the consent box ticked; sets sms_consent | ContactOptIn with the
    wording ticked"; "a channel ... switched (back) on plans the reminders and care instructions of the patient's
    coming appointments that no row stands for yet". Off, then on again before the day-before reminder: the
    reminder and pre-care go by text once each (no duplicate rows)."""
    off = client.post(portal_page(told, "preferences"), {"email": "on", "care": "on", "reminders": "on"})
    on = client.post(
        portal_page(told, "preferences"),
        {"email": "on", "sms": "on", "sms_consent": "on", "care": "on", "reminders": "on"},
    )
    assert off.status_code == on.status_code == 303
    current = Patient.objects.get(pk=patient.pk)
    assert (current.reminder_channels, current.sms_consent) == (["email", "sms"], True)
    assert ContactOptOut.objects.filter(patient=patient, channel="sms").count() == 1
    assert ContactOptIn.objects.filter(patient=patient, channel="sms").count() == 1

    for kind in (MessageKind.REMINDER, MessageKind.PRE_CARE):
        assert len(rows(told, kind=kind, channel="sms")) == 1, kind
    send_all_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9), step=timedelta(hours=1))
    parts = [part for body in texts() for part in body.split("\n\n")]
    assert len([p for p in parts if "reminder" in p]) == 1, texts()


def test_care_switched_back_on_plans_care_for_a_booking_made_while_it_was_off(client, told, patient, frozen):
    """docs/portal.md: "a channel or kind switched (back) on plans the reminders and care instructions of the
    patient's coming appointments that no row stands for yet"; docs/reminders.md: "once". Care off; the desk books a
    second microneedling for 24 March; care back on: its pre-care is planned and sent, once per channel."""
    client.post(portal_page(told, "preferences"), {"email": "on", "sms": "on", "reminders": "on"})
    second = book(patient, ldn(2026, 3, 24), frozen)
    before = len(rows(second, kind=MessageKind.PRE_CARE))
    client.post(portal_page(told, "preferences"), {"email": "on", "sms": "on", "care": "on", "reminders": "on"})

    pre = rows(second, kind=MessageKind.PRE_CARE, status=OutboxStatus.PENDING)
    assert sorted(r.channel for r in pre) == ["email", "sms"], (before, [(r.channel, r.status) for r in rows(second)])
    assert len(rows(told, kind=MessageKind.PRE_CARE, channel="sms")) == 1  # the first booking's row was not doubled


def test_stop_by_text_shows_on_the_page_and_the_page_can_turn_texts_back_on(client, settings, told, patient, frozen):
    """docs/reminders.md: "A reply of STOP ... turns SMS off"; docs/portal.md: the page shows *Messages from us*, and
    "SMS back on | only with the consent box ticked". After STOP the page shows texts off and asks for the tick;
    without it nothing changes (400, the message by the field); with it texts are on and the next reminder goes by
    text; a second STOP turns them off again."""
    settings.SMS_INBOUND_TOKEN = "qa-portal-inbound"
    inbound = reverse("reminders:sms_inbound") + "?token=qa-portal-inbound"
    assert client.post(inbound, {"From": patient.phone, "Body": "STOP"}).status_code == 200

    html = client.get(portal_page(told)).content.decode()
    assert re.search(r'<input type="checkbox" name="sms"(?![^>]*checked)[^>]*>', html)
    assert 'name="sms_consent"' in html
    untick = client.post(
        portal_page(told, "preferences"), {"email": "on", "sms": "on", "care": "on", "reminders": "on"}
    )
    assert untick.status_code == 400 and "tick the box" in words(untick)
    assert Patient.objects.get(pk=patient.pk).sms_consent is False

    ticked = client.post(
        portal_page(told, "preferences"),
        {"email": "on", "sms": "on", "sms_consent": "on", "care": "on", "reminders": "on"},
    )
    assert ticked.status_code == 303 and Patient.objects.get(pk=patient.pk).sms_consent is True
    assert ContactOptOut.objects.filter(patient=patient, channel="sms", via="sms_stop").count() == 1
    send_all_until(ldn(2026, 3, 9, 11), start=ldn(2026, 3, 9, 9), step=timedelta(hours=1))
    assert any("reminder" in t for t in texts())

    assert client.post(inbound, {"From": patient.phone, "Body": "Stop"}).status_code == 200
    assert Patient.objects.get(pk=patient.pk).sms_consent is False
    assert ContactOptOut.objects.filter(patient=patient, channel="sms", via="sms_stop").count() == 2


def test_saving_unchanged_choices_says_so_and_records_nothing(client, told, patient):
    """docs/portal.md: POST preferences "Saves Messages from us"; reminders/consent: "Saving what is already set
    records nothing". The page says "Nothing to change" and no opt-in or opt-out is recorded."""
    response = client.post(
        portal_page(told, "preferences"), {"email": "on", "sms": "on", "care": "on", "reminders": "on"}, follow=True
    )
    assert "Nothing to change" in words(response)
    assert not ContactOptOut.objects.filter(patient=patient).exists()
    assert not ContactOptIn.objects.filter(patient=patient).exists()


# --- Privacy: nothing of the clinical record beyond what docs/portal.md lists ----------------------------------------


def test_the_pages_show_nothing_of_the_record_beyond_the_appointment(client, patient, practitioner, frozen):
    """docs/portal.md: the page shows "date and time in the clinic's zone ..., short treatment name, practitioner,
    clinic"; docs/reminders.md: "Private on a lock screen". A patient with an intake (eczema history), a reported
    Botox, a treatment area and a desk note for the visit: none of it, nor their name or full contact details, is on
    the appointment, move, cancel or confirm pages."""
    from clinic.services import appointment_notes_set

    conditions_replace(patient=patient, lines=[IntakeLine("psoriasis", "history")], now=frozen)
    procedure_record_add(patient=patient, procedure_code="plasma_pen", now=frozen, performed_at=ldn(2025, 12, 1, 12))
    appointment = book(patient, ldn(2026, 3, 10), frozen, code="filler", area_code="decolletage")
    if appointment.status != AppointmentStatus.CONFIRMED:
        Appointment.objects.filter(pk=appointment.pk).update(status=AppointmentStatus.CONFIRMED)
    appointment_notes_set(appointment=appointment, notes="Needs interpreter; anxious about needles")

    answers = [
        client.get(portal_page(appointment)),
        client.get(portal_page(appointment, "move")),
        client.get(portal_page(appointment, "cancel")),
        client.get(portal_page(appointment, "move_confirm"), {"slot": key(ldn(2026, 3, 12, 10), practitioner.pk)}),
    ]
    for answer in answers:
        assert answer.status_code == 200
        said = words(answer)
        for secret in (
            "soriasis",
            "Plasma",
            "colletage",
            "interpreter",
            "needles",
            "Olivia",
            "Bennett",
            "olivia@example.com",
            "7700900123",
            "900 123",
        ):
            assert secret not in said, (secret, answer.request["PATH_INFO"])
