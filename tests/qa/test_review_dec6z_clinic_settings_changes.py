"""Review probe: administrators change a clinic's settings while things are booked.

What an administrator can change over bookings already made, and where: a clinic's time zone (the clinic admin,
`clinic.admin.ClinicAdmin`), a practitioner's working hours, whether they are active and at which site (the
practitioner admin, which says on saving when hours or time off no longer hold a booking still to come), and, for the
platform's operators, a procedure's duration and whether it is bookable (the shared catalogue). Bookings keep their
stored instants (UTC); the clinic's zone says how they are shown and when their messages go (docs/reminders.md,
"Time": due times in the clinic's zone, no SMS at night, a pre-care note moves earlier, never later).

Asked of each change: what do the desk's pages (Today, the calendar and its feed) and the API show afterwards, are
the hours no longer worked still offered, are the patient's texts still kept out of the night and ahead of what they
warn about, can the visit still be moved or cancelled by the desk and by the patient, and is anything dropped or
changed without anyone being told (the domain brief: nothing is changed silently). A 500 anywhere is a defect.

The suite's clock is Monday 2 March 2026, 09:00 UTC (London on GMT; New York on EST until Sunday 8 March, then EDT).
The visit is Tuesday 10 March 2026, 11:00 London (11:00 UTC), with Dr Ada, who works Monday to Saturday 09:00-18:00.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client
from django.urls import reverse

from clinic.models import AppointmentStatus, Clinic, Practitioner, ProcedureType, StaffRole
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler.booking import appointment_reschedule, appointment_slots
from tests.admin_forms import clinic_form
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    API,
    RECEPTION,
    book,
    fresh_appointment,
    ldn,
    portal_page,
    rows,
    staff_client,
    texts,
    words,
)

# E-mail and texts are caught for every test (tests/qa/conftest.py).
pytestmark = pytest.mark.usefixtures("message_outboxes")

VISIT = ldn(2026, 3, 10, 11)  # Tuesday 11:00 GMT = 11:00 UTC; 07:00 in New York (EDT from 8 March)
PROCEDURES = ["botox", "filler", "microneedling", "plasma_pen"]


@pytest.fixture
def clinic(care_texts):
    """A London clinic with the shipped care texts (overrides the API's `clinic`)."""
    return ClinicFactory(code="qa-settings", name="Settings Clinic", timezone="Europe/London", phone="+442079460958")


@pytest.fixture
def sister(clinic):
    """A second site of the clinic's organisation."""
    return ClinicFactory(
        code="qa-settings-west", name="Settings West", timezone="Europe/London", organisation=clinic.organisation
    )


@pytest.fixture
def ada(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Ada Hart")


@pytest.fixture
def bob(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Bob Stone")


@pytest.fixture
def patient(clinic):
    """Olivia, on e-mail and SMS."""
    return PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        last_name="Reed",
        email="olivia@example.com",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def booked(patient, ada, frozen):
    """Microneedling with Dr Ada, Tuesday 10 March 11:00 London; its confirmation sent (e-mail and text)."""
    appointment = book(patient, VISIT, frozen, practitioner_id=ada.pk)
    dispatch_local(now=frozen)
    assert len(mail.outbox) == 1 and len(texts()) == 1
    assert "11:00" in texts()[0]
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    return fresh_appointment(appointment)


@pytest.fixture
def desk(clinic):
    return staff_client(clinic, StaffRole.RECEPTIONIST, "settings-desk")


def save_clinic(admin_client, clinic: Clinic, **changes) -> list[str]:
    """Save the clinic's admin form with `changes`; the messages the admin showed."""
    response = admin_client.post(
        reverse("admin:clinic_clinic_change", args=[clinic.pk]), clinic_form(clinic, **changes), follow=True
    )
    assert response.status_code == 200, response.content[:600]
    errors = response.context and response.context.get("errors")
    assert not errors, errors
    return [str(m) for m in get_messages(response.wsgi_request)]


def move_to_new_york(admin_client, clinic: Clinic) -> list[str]:
    """The site was set up in London's zone; it is in New York: the administrator corrects zone and country."""
    said = save_clinic(admin_client, clinic, timezone="America/New_York", country="US")
    assert Clinic.objects.get(pk=clinic.pk).timezone == "America/New_York"
    return said


def save_practitioner(admin_client, practitioner: Practitioner, *, clinic=None, active=True, hours=None) -> list[str]:
    """Save the practitioner's admin form (their procedures kept; `hours` replace theirs, else kept as they are);
    the messages the admin showed."""
    current = list(practitioner.working_hours.all())
    kept = [(h.weekday, f"{h.start_time:%H:%M}", f"{h.end_time:%H:%M}") for h in current]
    new = hours if hours is not None else []
    data = {
        "clinic": str((clinic or practitioner.clinic).pk),
        "name": practitioner.name,
        "procedures": [p.pk for p in practitioner.procedures.all()],
        "working_hours-TOTAL_FORMS": str(len(current) + len(new)),
        "working_hours-INITIAL_FORMS": str(len(current)),
        "time_off-TOTAL_FORMS": "0",
        "time_off-INITIAL_FORMS": "0",
    }
    if active:
        data["is_active"] = "on"
    for n, period in enumerate(current):
        weekday, start, end = kept[n]
        data |= {
            f"working_hours-{n}-id": str(period.pk),
            f"working_hours-{n}-practitioner": str(practitioner.pk),
            f"working_hours-{n}-weekday": str(weekday),
            f"working_hours-{n}-start_time": start,
            f"working_hours-{n}-end_time": end,
        }
        if hours is not None:
            data[f"working_hours-{n}-DELETE"] = "on"
    for m, (weekday, start, end) in enumerate(new, start=len(current)):
        data |= {
            f"working_hours-{m}-practitioner": str(practitioner.pk),
            f"working_hours-{m}-weekday": str(weekday),
            f"working_hours-{m}-start_time": start,
            f"working_hours-{m}-end_time": end,
        }
    response = admin_client.post(reverse("admin:clinic_practitioner_change", args=[practitioner.pk]), data, follow=True)
    assert response.status_code == 200, response.content[:600]
    errors = response.context and response.context.get("errors")
    assert not errors, errors
    return [str(m) for m in get_messages(response.wsgi_request)]


def desk_page(client, name: str, *args, **query):
    response = client.get(reverse(f"frontdesk:{name}", args=args), query)
    assert response.status_code == 200, (response.status_code, response.content[:600])
    return response


def sms_rows(appointment, kind) -> list[OutboxMessage]:
    return rows(appointment, kind=kind, channel="sms")


def run_dispatcher(start: datetime, end: datetime, step=timedelta(minutes=15)) -> dict[str, datetime]:
    """The dispatcher every `step` from `start` to `end`; each text sent, by its first words, with when it went."""
    went: dict[str, datetime] = {}
    moment = start
    while moment <= end:
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        for sms in LocmemSmsBackend.outbox:
            went.setdefault(sms["body"], moment)
        moment += step
    return went


# --- The clinic's time zone changed after bookings and their messages were planned ---------------------------


def test_a_zone_change_over_booked_visits_is_said_in_the_admin(admin_client, clinic, booked):
    said = move_to_new_york(admin_client, clinic)
    assert [m for m in said if "appointment" in m.lower() and ("07:00" in m or "time" in m.lower())], said


def test_after_a_zone_change_the_desk_reads_every_booked_visit_in_the_new_zone(
    admin_client, clinic, booked, desk, frozen
):
    """The stored instant is kept and shown in the new zone everywhere: the calendar feed, the appointment's page and
    the API say 07:00 New York time (EDT) for the 11:00 UTC visit; none answers a 500."""
    move_to_new_york(admin_client, clinic)
    feed = desk_page(desk, "calendar_events", clinic.code, start="2026-03-10", end="2026-03-11")
    body = feed.json()
    assert body["timeZone"] == "America/New_York"
    assert [e["start"] for e in body["events"]] == ["2026-03-10T07:00:00-04:00"]
    page = words(desk_page(desk, "appointment", clinic.code, booked.pk))
    assert "07:00" in page and "11:00" not in page
    calendar = words(desk_page(desk, "calendar", clinic.code, date="2026-03-10"))
    assert "Olivia Reed" in calendar and "America/New_York" in calendar
    api = http(new_api_client(clinic, name="settings-platform")[1])
    answer = api.get(f"{API}/appointments/{booked.pk}/")
    assert answer.status_code == 200 and answer.json()["start"] == "2026-03-10T07:00:00-04:00"


def test_after_a_zone_change_today_lists_the_visits_the_hours_no_longer_hold(admin_client, clinic, booked, desk):
    """Working hours are wall-clock times in the clinic's zone: 09:00-18:00 in New York no longer holds a visit at
    07:00 there. The desk's Today lists it under "Outside working hours" (docs/frontdesk.md), so it is not lost."""
    move_to_new_york(admin_client, clinic)
    with time_machine.travel(datetime(2026, 3, 2, 14, tzinfo=UTC), tick=False):
        page = words(desk_page(desk, "today", clinic.code))
    assert "Outside working hours 1" in page, page[:2000]
    assert "Olivia Reed" in page


def test_after_a_zone_change_availability_offers_the_hours_of_the_new_zone(admin_client, clinic, patient, ada, frozen):
    """Slots are offered in the practitioner's hours read in the clinic's zone as it is now: Wednesday's first free
    time is 09:00 New York (13:00 UTC), not 09:00 London."""
    move_to_new_york(admin_client, clinic)
    api = http(new_api_client(clinic, name="settings-platform")[1])
    answer = api.get(
        f"{API}/availability/",
        {
            "patient": str(patient.pk),
            "procedure": "botox",
            "from": "2026-03-11T00:00:00-04:00",
            "to": "2026-03-11T23:59:00-04:00",
        },
    )
    assert answer.status_code == 200, answer.content[:600]
    starts = [slot["start"] for slot in answer.json()["results"]]
    assert starts and starts[0] == "2026-03-11T09:00:00-04:00", starts[:3]


def test_after_a_zone_change_no_text_goes_in_the_new_zones_night(admin_client, clinic, booked):
    """Quiet hours are the clinic's as it is now (checked when a text is sent): the day-before reminder planned for
    11:00 London (07:00 New York) does not go at 07:00 in New York; the e-mail, which has no quiet hours, does."""
    move_to_new_york(admin_client, clinic)
    reminder = sms_rows(booked, MessageKind.REMINDER)
    assert len(reminder) == 1
    went = run_dispatcher(datetime(2026, 3, 9, 0, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC))
    new_york = ZoneInfo("America/New_York")
    for body, at in went.items():
        local = at.astimezone(new_york).time()
        assert not (local.hour >= 21 or local.hour < 8), (body, at.astimezone(new_york))
    assert any("reminder" in m.subject.lower() for m in mail.outbox)


def test_after_a_zone_change_a_pre_care_text_still_goes_before_its_moment(admin_client, clinic, booked):
    """Mended (reminders.services.outbox_clinic_settings_saved): the texts still to go are planned again in the new
    zone, so this one goes at 20:59 the evening before (the dispatcher's passes here fall on the 59th minute, as
    beat's every minute would)."""
    move_to_new_york(admin_client, clinic)
    pre_care = sms_rows(booked, MessageKind.PRE_CARE)
    assert len(pre_care) == 1
    moment = booked.start_at - timedelta(hours=24)  # Monday 9 March 11:00 UTC, 07:00 in New York
    run_dispatcher(datetime(2026, 3, 8, 20, 59, tzinfo=UTC), datetime(2026, 3, 9, 14, tzinfo=UTC))
    sent = OutboxMessage.objects.get(pk=pre_care[0].pk)
    assert sent.status == OutboxStatus.SENT
    assert sent.sent_at <= moment, f"sent {sent.sent_at:%a %H:%M} UTC, after its moment {moment:%a %H:%M} UTC"


@pytest.mark.xfail(
    strict=True,
    reason="KNOWN, left for the product (docs/reminders.md, the closing note): a corrected clinic zone keeps each "
    "booking's instant, so the patient told '11:00' is reminded of '07:00' with no change notice between; the admin "
    "now names those visits for staff to tell the patients or move them (whether the wall time was meant is not "
    "known to the service).",
)
def test_after_a_zone_change_the_patient_is_not_reminded_of_another_time_than_they_were_told(
    admin_client, clinic, booked
):
    move_to_new_york(admin_client, clinic)
    run_dispatcher(datetime(2026, 3, 8, 20, tzinfo=UTC), datetime(2026, 3, 9, 23, tzinfo=UTC), step=timedelta(hours=1))
    reminders = [body for body in texts() if "reminder of your appointment" in body]
    assert reminders, texts()
    notices = OutboxMessage.objects.filter(appointment=booked, kind=MessageKind.RESCHEDULED).exclude(channel="webhook")
    assert "11:00" in reminders[0] or notices.exists(), reminders[0]


# --- A practitioner's working hours shrunk over a booking -------------------------------------------------


def test_hours_shrunk_over_a_booking_keep_it_booked_flag_it_and_stop_offering_those_hours(
    admin_client, clinic, booked, ada, desk, patient, frozen
):
    """Tuesdays cut to 12:00-18:00 under the 11:00 visit: the admin says so naming it, the visit stays confirmed with
    its reminders still planned (nothing silently dropped), Today lists it, and 11:00 is no longer offered."""
    tuesday_short = [(d, "09:00", "18:00") for d in range(6) if d != 1] + [(1, "12:00", "18:00")]
    said = save_practitioner(admin_client, ada, hours=tuesday_short)
    assert [m for m in said if "Dr Ada Hart has 1 booked appointment still to come outside" in m], said
    assert "Tue 10 Mar 2026, 11:00" in " ".join(said)
    visit = fresh_appointment(booked)
    assert visit.status == AppointmentStatus.CONFIRMED
    assert sms_rows(visit, MessageKind.REMINDER)[0].status == OutboxStatus.PENDING
    assert "Outside working hours 1" in words(desk_page(desk, "today", clinic.code))
    slots = appointment_slots(
        patient=PatientFactory(clinic=clinic, first_name="Nina", last_name="Cole"),
        procedure_code="botox",
        window_start=ldn(2026, 3, 10, 0),
        window_end=ldn(2026, 3, 10, 23),
        now=frozen,
        practitioner_id=ada.pk,
    )
    assert slots and min(s.start_at for s in slots) == ldn(2026, 3, 10, 12)


# --- A practitioner deactivated with visits still to come ------------------------------------------------


def test_switching_off_a_practitioner_with_visits_to_come_is_said_in_the_admin(admin_client, ada, booked):
    said = save_practitioner(admin_client, ada, active=False)
    assert not Practitioner.objects.get(pk=ada.pk).is_active
    assert [m for m in said if "Dr Ada Hart" in m and "booked" in m], said


def test_today_lists_visits_whose_practitioner_is_no_longer_active(admin_client, clinic, ada, booked, desk):
    save_practitioner(admin_client, ada, active=False)
    page = words(desk_page(desk, "today", clinic.code))
    assert "Olivia Reed" in page and "no longer" in page.lower(), page[:2000]


def test_a_practitioner_switched_off_is_no_longer_offered_but_their_visits_stay_shown(
    admin_client, clinic, ada, bob, booked, desk, patient, frozen
):
    """Their visit stays booked and on the calendar under "No longer active" with no booking link; availability
    offers only Dr Bob; the feed lists Dr Ada as an inactive resource for her event."""
    save_practitioner(admin_client, ada, active=False)
    assert fresh_appointment(booked).status == AppointmentStatus.CONFIRMED
    calendar = desk_page(desk, "calendar", clinic.code, date="2026-03-10")
    text = words(calendar)
    assert "No longer active" in text and "Olivia Reed" in text
    assert f"?practitioner={ada.pk}&amp;start_at=" not in calendar.content.decode()
    feed = desk_page(desk, "calendar_events", clinic.code, start="2026-03-10", end="2026-03-11").json()
    assert {r["id"]: r["active"] for r in feed["resources"]}[str(ada.pk)] is False
    slots = appointment_slots(
        patient=PatientFactory(clinic=clinic, first_name="Nina", last_name="Cole"),
        procedure_code="botox",
        window_start=ldn(2026, 3, 11, 0),
        window_end=ldn(2026, 3, 11, 23),
        now=frozen,
    )
    assert slots and {s.practitioner_id for s in slots} == {str(bob.pk)}


def test_the_desk_moves_such_a_visit_to_a_colleague(admin_client, clinic, ada, bob, booked, desk, frozen):
    """The move page opens (no 500) and, with Dr Bob chosen, checks the move; the visit moves to him at the same
    time."""
    save_practitioner(admin_client, ada, active=False)
    kept = desk.get(
        reverse("frontdesk:reschedule", args=[clinic.code, booked.pk]), {"date": "2026-03-11", "time": "11:00"}
    )
    assert kept.status_code == 200, kept.status_code
    assert "Dr Bob Stone" in words(kept)  # offered as a choice
    to_bob = desk.get(
        reverse("frontdesk:reschedule", args=[clinic.code, booked.pk]),
        {"date": "2026-03-10", "time": "11:00", "practitioner": str(bob.pk)},
    )
    assert to_bob.status_code == 200, to_bob.content[:600]
    moved = appointment_reschedule(
        appointment=booked, start_at=VISIT, practitioner_id=bob.pk, actor=RECEPTION, now=frozen
    ).appointment
    assert moved.practitioner_id == bob.pk and moved.start_at == VISIT


def test_moving_a_visit_of_a_practitioner_switched_off_says_why_in_words_that_fit(
    admin_client, clinic, ada, booked, desk
):
    save_practitioner(admin_client, ada, active=False)
    page = words(
        desk.get(
            reverse("frontdesk:reschedule", args=[clinic.code, booked.pk]), {"date": "2026-03-11", "time": "11:00"}
        )
    )
    api = http(new_api_client(clinic, name="settings-platform")[1])
    answer = api.post(
        f"{API}/appointments/{booked.pk}/reschedule/", {"start": "2026-03-11T11:00:00+00:00"}, format="json"
    )
    assert answer.status_code in (400, 409)
    for said in (page, answer.json()["detail"]):
        assert "no such practitioner" not in said.lower(), said[-400:]


def test_a_platform_moving_such_a_visit_naming_nobody_is_refused_and_may_name_a_colleague(
    admin_client, clinic, ada, bob, booked
):
    """A platform's move naming no practitioner keeps the appointment's own (docs/api.md); theirs no longer works:
    the answer is a problem (never a 500), and naming Dr Bob moves it."""
    save_practitioner(admin_client, ada, active=False)
    api = http(new_api_client(clinic, name="settings-platform")[1])
    path = f"{API}/appointments/{booked.pk}/reschedule/"
    refused = api.post(path, {"start": "2026-03-11T11:00:00+00:00"}, format="json")
    assert refused.status_code in (400, 409), refused.content[:600]
    assert refused["Content-Type"].startswith("application/problem+json")
    moved = api.post(path, {"start": "2026-03-11T11:00:00+00:00", "practitioner": str(bob.pk)}, format="json")
    assert moved.status_code in (200, 201), moved.content[:600]
    assert moved.json()["practitioner"] == str(bob.pk)


def test_the_patient_may_still_move_their_visit_when_its_practitioner_left(admin_client, ada, bob, booked, frozen):
    """The patient's own move page (from their messages) opens and offers the colleague's times; no 500."""
    save_practitioner(admin_client, ada, active=False)
    with time_machine.travel(frozen, tick=False):
        page = Client().get(portal_page(booked, "move"))
    assert page.status_code == 200, page.content[:600]
    assert "Dr Bob Stone" in words(page)


# --- A practitioner moved to a sister site with visits still to come -------------------------------------


def test_a_practitioner_moved_to_another_site_is_not_bookable_at_the_old_one(
    admin_client, clinic, sister, ada, booked, desk
):
    said = save_practitioner(admin_client, ada, clinic=sister)
    assert Practitioner.objects.get(pk=ada.pk).clinic_id == sister.pk
    calendar = desk_page(desk, "calendar", clinic.code, date="2026-03-10")
    assert "Olivia Reed" in words(calendar)  # the visit is still shown
    assert f"?practitioner={ada.pk}&amp;start_at=" not in calendar.content.decode()
    assert [m for m in said if "booked" in m], said


def test_the_old_site_can_still_move_or_cancel_a_visit_of_a_practitioner_who_moved(
    admin_client, clinic, sister, ada, bob, booked, desk, frozen
):
    """After Dr Ada moved to the sister site, the old site's desk opens the visit and its move page (no 500) and moves
    it to Dr Bob there; the visit never silently changes site."""
    save_practitioner(admin_client, ada, clinic=sister)
    assert desk.get(reverse("frontdesk:appointment", args=[clinic.code, booked.pk])).status_code == 200
    page = desk.get(
        reverse("frontdesk:reschedule", args=[clinic.code, booked.pk]), {"date": "2026-03-11", "time": "11:00"}
    )
    assert page.status_code in (200, 400, 409), page.status_code
    moved = appointment_reschedule(
        appointment=booked, start_at=VISIT, practitioner_id=bob.pk, actor=RECEPTION, now=frozen
    ).appointment
    assert moved.practitioner_id == bob.pk and moved.clinic_id == clinic.pk


def test_a_practitioner_moved_to_another_site_is_not_offered_there_over_their_old_sites_visits(
    admin_client, clinic, sister, ada, booked, frozen
):
    """Their calendar follows them: at the sister site, Dr Ada is not offered at 11:00 on Tuesday, when she still has
    Olivia's visit at the old site (no double booking across sites)."""
    save_practitioner(admin_client, ada, clinic=sister)
    other = PatientFactory(clinic=clinic, first_name="Nina", last_name="Cole")
    slots = appointment_slots(
        patient=other,
        procedure_code="botox",
        window_start=ldn(2026, 3, 10, 10),
        window_end=ldn(2026, 3, 10, 13),
        now=frozen,
        practitioner_id=ada.pk,
        clinic_id=sister.pk,
    )
    starts = {s.start_at for s in slots}
    assert ldn(2026, 3, 10, 10) in starts and ldn(2026, 3, 10, 12) in starts
    assert not starts & {ldn(2026, 3, 10, 11), ldn(2026, 3, 10, 11, 30)}


# --- The shared catalogue changed: a procedure's duration, whether it is bookable ------------------------


def test_a_longer_duration_keeps_booked_visits_and_no_new_booking_overlaps_them(patient, ada, clinic, frozen):
    """Botox lengthened from 30 to 60 minutes: the visit booked before keeps its own end (nothing moved), new bookings
    take the new length, and none overlaps another for Dr Ada."""
    first = book(patient, ldn(2026, 3, 10, 10), frozen, code="botox", practitioner_id=ada.pk)
    assert first.end_at - first.start_at == timedelta(minutes=30)
    ProcedureType.objects.filter(code="botox").update(duration_minutes=60)
    other = PatientFactory(clinic=clinic, first_name="Nina", last_name="Cole")
    assert fresh_appointment(first).end_at == ldn(2026, 3, 10, 10, 30)
    second = book(other, ldn(2026, 3, 10, 9), frozen + timedelta(seconds=1), code="botox", practitioner_id=ada.pk)
    assert second.end_at == ldn(2026, 3, 10, 10)
    slots = appointment_slots(
        patient=other,
        procedure_code="botox",
        window_start=ldn(2026, 3, 10, 9),
        window_end=ldn(2026, 3, 10, 12),
        now=frozen,
        practitioner_id=ada.pk,
    )
    assert ldn(2026, 3, 10, 10) not in {s.start_at for s in slots}
    assert min(s.start_at for s in slots) == ldn(2026, 3, 10, 10, 30)


def test_a_procedure_switched_off_leaves_its_bookings_shown_and_cancellable(patient, ada, clinic, booked, desk, frozen):
    """The platform's operators switch microneedling off (not bookable): the visit booked before stays, its pages
    open (no 500), the patient's own page opens and the desk can still cancel it."""
    ProcedureType.objects.filter(code="microneedling").update(bookable=False)
    assert desk.get(reverse("frontdesk:appointment", args=[clinic.code, booked.pk])).status_code == 200
    assert desk.get(reverse("frontdesk:patient", args=[clinic.code, patient.pk])).status_code == 200
    move = desk.get(
        reverse("frontdesk:reschedule", args=[clinic.code, booked.pk]), {"date": "2026-03-11", "time": "11:00"}
    )
    assert move.status_code in (200, 400, 409), move.status_code
    patient_page = Client().get(portal_page(booked, "move"))
    assert patient_page.status_code < 500, patient_page.status_code
    cancelled = desk.post(reverse("frontdesk:cancel", args=[clinic.code, booked.pk]), {"reason": "Treatment withdrawn"})
    assert cancelled.status_code in (200, 302), cancelled.content[:600]
    assert fresh_appointment(booked).status == AppointmentStatus.CANCELLED
