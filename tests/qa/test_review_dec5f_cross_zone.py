"""Review of the uncommitted change "each procedure event carries the zone of its own clinic" (5 December).

What it probes: for a procedure at a sister site of one organisation in another zone, whether every consumer of
the engine gives one answer: booking (scheduler.booking.appointment_book / appointment_check), eligibility and the
409 over the API, availability (the 14-day search, services and API), the re-check after a record change
(scheduler.recheck), a treatment plan at the booking clinic (plans.services.plan_propose), the desk's "Not before"
(frontdesk.selectors.patient_record and the patient page), post-care "next possible" (reminders.content) and
recalls (plans.recalls.recall_for, reminders.content.recall_earliest). Zones a day apart (Auckland / Honolulu),
the DST days of Auckland, New York and London, a day reported at a New York home clinic read from London, merges
of records whose home clinics are in different zones, and the rule's message naming the sister site's clock.

Found (5 December): every consumer of the engine agrees, in every case tried, in both orders of booking, and the
re-check keeps what booking accepted; the messages name a sister site's visit in its clock with its abbreviation.
Three DEFECTs and two QUESTIONs (strict xfails then) where an event's date was still read in a zone other than the
one the rules read it in, all mended the same day (clinic 0018: each history record keeps the clinic that recorded
it, whose zone gives its day; `ProcedureRecord.dating_clinic`):
- a merge moved a reported procedure's day to the survivor's home zone (the zone was the patient's current home
  clinic's, not stored): microneedling allowed a day early, or a booking the rules accepted flagged for review;
- the desk's patient page and history page dated a reported procedure (the history page every procedure, a sister
  site's visit too) in the desk's zone, a day apart from the rules and the page's own "Not before";
- the API listed a sister site's visit in the home clinic's offset (now the offset of the clinic whose day it is);
- a visit a sister site's platform recorded over the API was read in the home clinic's zone (now the caller's
  clinic's: `clinic` in the body, else as a booking's default).
Every passing test here fails on the code before the change (checked on a copy with the diff reversed).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import (
    Appointment,
    AppointmentStatus,
    HistorySource,
    Patient,
    ProcedureRecord,
    StaffRole,
    WorkingHours,
)
from clinic.services import procedure_record_add
from frontdesk.selectors import patient_record
from plans.defaults import plan_templates_load
from plans.recalls import recall_for
from plans.services import plan_propose, plan_template_get
from reminders.content import next_possible, recall_earliest
from reminders.wording import fmt_long_date
from scheduler import rules
from scheduler.booking import Actor, appointment_book, appointment_check, appointment_recheck, appointment_slots
from scheduler.recheck import patient_appointments_recheck
from tests.api.conftest import http, new_api_client
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import LONDON, NEW_YORK, NOW, staff_client, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalogue")]

AUCKLAND = ZoneInfo("Pacific/Auckland")
HONOLULU = ZoneInfo("Pacific/Honolulu")
DESK = Actor("xz-desk@qa")
CLINICIAN = Actor("xz-clinician@qa", clinical=True)
MICRO = "Microneedling (collagen induction therapy)"
BOTOX = "Botulinum toxin injection (Botox)"


# --- World: one organisation, four sites, each practitioner working round the clock ------------------------------


def _site(code: str, zone: str, name: str, organisation=None):
    extra = {"organisation": organisation} if organisation is not None else {}
    clinic = ClinicFactory(code=code, name=name, timezone=zone, **extra)
    doctor = PractitionerFactory(clinic=clinic, name=f"Dr {name}", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(0), end_time=time(23, 59)) for d in range(7)
    )
    return clinic, doctor


@pytest.fixture
def sites():
    london = _site("xz-ldn", "Europe/London", "XZ London")
    organisation = london[0].organisation
    return {
        "london": london,
        "west": _site("xz-west", "Europe/London", "XZ West", organisation),
        "akl": _site("xz-akl", "Pacific/Auckland", "XZ Auckland", organisation),
        "hnl": _site("xz-hnl", "Pacific/Honolulu", "XZ Honolulu", organisation),
        "ny": _site("xz-ny", "America/New_York", "XZ New York", organisation),
    }


def midnight(day: date, tz) -> datetime:
    return rules.start_of_local_day(day, tz)


def check(patient, when, now, clinic, code="microneedling"):
    return appointment_check(patient=patient, procedure_code=code, start_at=when, now=now, clinic_id=clinic.code)


def blocked(patient, when, now, clinic, code="microneedling") -> bool:
    return bool(check(patient, when, now, clinic, code).evaluation.blocking)


def book(patient, when, now, clinic, code="microneedling") -> Appointment:
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=DESK, now=now, clinic_id=clinic.code
    ).appointment


def visit(patient, site, when, code="botox", status=AppointmentStatus.CONFIRMED) -> Appointment:
    """An appointment at a sister site written as it stands (no rules): booked, or completed with its record."""
    clinic, doctor = site
    appointment = AppointmentFactory(
        patient=patient,
        clinic=clinic,
        practitioner=doctor,
        procedure_id=code,
        start_at=when,
        end_at=when + timedelta(minutes=30),
        status=status,
    )
    if status == AppointmentStatus.COMPLETED:
        ProcedureRecord.objects.create(
            patient=patient, procedure_id=code, performed_at=when, source=HistorySource.CLINIC, appointment=appointment
        )
    return appointment


def messages(evaluation) -> str:
    return " | ".join(v.message for v in evaluation.blocking)


# --- 1. Every consumer, one answer: a Botox at a sister site, microneedling booked at another -------------------

# (the sister site, its Botox in its own clock, the booking site): each Botox is on a different date in the two
# zones, so the old reading (both dates in the booking clinic's zone) gives another first day.
CASES = {
    # Tue 10 Mar 07:00 NZDT = Mon 9 Mar 08:00 HST: Auckland's 10 March, first microneedling day at Honolulu 24 Mar.
    "akl-visit/hnl-booking": ("akl", datetime(2026, 3, 10, 7, tzinfo=AUCKLAND), "hnl"),
    # Mon 9 Mar 20:00 HST = Tue 10 Mar 19:00 NZDT: Honolulu's 9 March, first day at Auckland 23 Mar.
    "hnl-visit/akl-booking": ("hnl", datetime(2026, 3, 9, 20, tzinfo=HONOLULU), "akl"),
    # Sun 5 Apr 07:00 NZST, the morning Auckland's clocks went back (Sat 4 Apr 09:00 HST): first day 19 Apr.
    "akl-dst-end/hnl-booking": ("akl", datetime(2026, 4, 5, 7, tzinfo=AUCKLAND), "hnl"),
    # Sun 8 Mar 22:30 EDT, New York's first evening of summer time (Mon 9 Mar 02:30 GMT): first day in London 22 Mar.
    "ny-spring-forward/ldn-booking": ("ny", datetime(2026, 3, 8, 22, 30, tzinfo=NEW_YORK), "london"),
    # Sun 29 Mar 00:30 GMT, before London's clocks go forward (Sat 28 Mar 20:30 EDT): first day in New York 12 Apr.
    "ldn-spring-forward/ny-booking": ("london", datetime(2026, 3, 29, 0, 30, tzinfo=LONDON), "ny"),
}


@pytest.mark.parametrize("sister, botox_at, booking", CASES.values(), ids=CASES.keys())
def test_every_consumer_gives_the_first_day_the_botox_sites_date_gives(sites, sister, botox_at, booking):
    """Docs "How a gap is measured": each event's date is read in its own clinic's zone, the proposal's in the
    booking clinic's. Microneedling 2 weeks after a Botox at the sister site: the booking, its earliest start and next
    slot, the 14-day availability, the desk's "Not before", a plan at the booking site, the post-care "next possible"
    of the Botox visit, the re-check of both bookings, and the same pair booked in the other order all say the
    first day is the Botox's own date + 14, at the booking site."""
    plan_templates_load()
    clinic, _ = sites[booking]
    tz = clinic.tz
    first = botox_at.date() + timedelta(days=14)  # the Botox's date where it happens, + 2 weeks
    now = botox_at + timedelta(hours=1)
    patient = PatientFactory(clinic=sites["london"][0])
    botox = visit(patient, sites[sister], botox_at)

    # Booking / eligibility: the evening before is refused, naming the first day; the first minute is allowed.
    eve = datetime.combine(first - timedelta(days=1), time(22), tzinfo=tz)
    refused = check(patient, eve, now, clinic)
    assert refused.evaluation.blocking
    assert refused.earliest_eligible_start == midnight(first, tz)
    assert refused.next_available_slot.start_at == midnight(first, tz)
    assert not blocked(patient, midnight(first, tz), now, clinic)
    # Availability: the 14-day search from three days before offers the first day's first minute first.
    slots = appointment_slots(
        patient=patient,
        procedure_code="microneedling",
        window_start=midnight(first - timedelta(days=3), tz),
        window_end=midnight(first + timedelta(days=11), tz),
        now=now,
        limit=1,
        clinic_id=clinic.code,
    )
    assert [s.start_at for s in slots] == [midnight(first, tz)]
    # The desk of the booking site: "Not before" the first day.
    outlook = {row.procedure.code: row.check for row in patient_record(patient=patient, now=now, clinic=clinic).outlook}
    assert outlook["microneedling"].earliest_eligible_start == midnight(first, tz)
    # A microneedling course planned at the booking site from three days before: session 1 on the first day.
    template = plan_template_get("microneedling-course", organisation_id=patient.organisation_id)
    plan = plan_propose(
        patient=patient, clinic=clinic, template=template, start_at=midnight(first - timedelta(days=3), tz)
    ).plan
    assert plan.feasible and plan.sessions[0].start_at == midnight(first, tz)
    # Post-care of the Botox visit, in its own site's clock: the same calendar day.
    [micro] = [n for n in next_possible(appointment=botox, now=now) if n.code == "microneedling"]
    sister_tz = sites[sister][0].tz
    assert micro.from_date == fmt_long_date(datetime.combine(first, time(12), tzinfo=sister_tz), sister_tz)
    # Booked on the first day, both bookings pass their re-checks.
    booked = book(patient, midnight(first, tz), now, clinic)
    assert booked.status == AppointmentStatus.CONFIRMED
    assert not appointment_recheck(appointment=botox).evaluation.blocking
    assert patient_appointments_recheck(patient_id=patient.pk, now=now, cause="qa") == []

    # The other order: microneedling booked first, then the Botox is asked for at the sister site.
    sister_clinic = sites[sister][0]
    on_time, too_soon = PatientFactory(clinic=sites["london"][0]), PatientFactory(clinic=sites["london"][0])
    before = botox_at - timedelta(days=1)  # asked while the Botox is still ahead
    book(on_time, midnight(first, tz) + timedelta(hours=1), before, clinic)
    book(too_soon, eve, before, clinic)
    assert not blocked(on_time, botox_at, before, sister_clinic, code="botox")
    assert blocked(too_soon, botox_at, before, sister_clinic, code="botox")


def test_the_api_and_the_desk_page_give_the_auckland_visits_day_at_honolulu(sites):
    """The same answer over HTTP: Botox at Auckland on Tue 10 Mar 07:00 NZDT (Mon 9 Mar 08:00 HST). At Honolulu,
    eligibility and the 409 say microneedling from Tue 24 Mar 00:00 HST (-10:00), naming the visit in Auckland's
    clock; availability's first slot is then; the Honolulu desk's patient page says "Not before Tue 24 Mar 2026"."""
    london, hnl = sites["london"][0], sites["hnl"][0]
    patient = PatientFactory(clinic=london)
    visit(patient, sites["akl"], datetime(2026, 3, 10, 7, tzinfo=AUCKLAND))
    api = http(new_api_client(london, sites["akl"][0], hnl)[1])
    body = {
        "patient": str(patient.pk),
        "procedure": "microneedling",
        "start": "2026-03-23T12:00:00-10:00",
        "clinic": hnl.code,
    }
    desk = staff_client(hnl, StaffRole.RECEPTIONIST, "xz-hnl-desk")
    with time_machine.travel(NOW, tick=False):
        eligibility = api.post("/api/v1/eligibility/", body, format="json").json()
        refusal = api.post("/api/v1/appointments/", body, format="json")
        slots = api.get(
            "/api/v1/availability/",
            {"patient": str(patient.pk), "procedure": "microneedling", "clinic": hnl.code, "from": body["start"]},
        ).json()["results"]
        page = html.unescape(words(desk.get(reverse("frontdesk:patient", args=[hnl.code, patient.pk]))))
    assert refusal.status_code == 409, refusal.content
    for answer in (eligibility, refusal.json()):
        assert answer["earliest_eligible_start"] == "2026-03-24T00:00:00-10:00"
        assert answer["next_available_slot"]["start"] == "2026-03-24T00:00:00-10:00"
    assert "(booked 10 March 2026 07:00 NZDT); earliest allowed 24 March 2026." in refusal.json()["detail"]
    assert slots[0]["start"] == "2026-03-24T00:00:00-10:00"
    row = page.split("Microneedling", 1)[1][:200]
    assert "Not before Tue 24 Mar 2026" in row, row


# --- 2. The re-check after a record change ---------------------------------------------------------------------


def test_completing_a_visit_at_a_site_a_day_ahead_rechecks_the_honolulu_bookings_by_its_date(sites):
    """scheduler.recheck after a record change: the Auckland Botox (Tue 10 Mar 07:00 NZDT, Mon 9 Mar 08:00 HST) is
    completed; microneedling booked at Honolulu on Tue 24 Mar stays confirmed, and one on Mon 23 Mar 20:00 HST (booked
    before the Botox was) is flagged for review, its stored reason naming the visit in Auckland's clock."""
    london, hnl = sites["london"][0], sites["hnl"][0]
    patient = PatientFactory(clinic=london)
    other = PatientFactory(clinic=london)
    now = NOW
    ok = book(patient, datetime(2026, 3, 24, 0, 0, tzinfo=HONOLULU), now, hnl)
    early = book(other, datetime(2026, 3, 23, 20, 0, tzinfo=HONOLULU), now, hnl)
    for who in (patient, other):
        # Written as the visit stands after completion (its record), then the record's change announced.
        visit(who, sites["akl"], datetime(2026, 3, 10, 7, tzinfo=AUCKLAND), status=AppointmentStatus.COMPLETED)
        patient_appointments_recheck(patient_id=who.pk, now=datetime(2026, 3, 9, 19, tzinfo=UTC), cause="qa")
    ok.refresh_from_db()
    early.refresh_from_db()
    assert ok.status == AppointmentStatus.CONFIRMED
    assert early.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = early.review_reasons
    assert "(done 10 March 2026 07:00 NZDT); earliest allowed 24 March 2026." in reason["message"], reason


# --- 3. A reported day at a New York home clinic, read from London -----------------------------------------------


def _reported_in_new_york(sites) -> Patient:
    """A patient of the New York site reports Botox done on Sun 1 March 2026 (no time): stored as 23:59 EST, which
    is 04:59 on 2 March in London."""
    patient = PatientFactory(clinic=sites["ny"][0])
    record = procedure_record_add(patient=patient, procedure_code="botox", now=NOW, performed_on=date(2026, 3, 1))
    assert record.performed_at == datetime(2026, 3, 2, 4, 59, tzinfo=UTC)
    return patient


def test_a_day_reported_in_new_york_gives_one_first_day_at_the_london_site(sites):
    """Docs: "A procedure reported as done elsewhere keeps the date the patient gave: it is read in the zone it was
    recorded in". At London: booking, eligibility's earliest start, availability, "Not before", a plan, and the rule's
    message all say 15 March (1 March + 2 weeks), not the 16th London's reading of the instant would give."""
    plan_templates_load()
    london = sites["london"][0]
    patient = _reported_in_new_york(sites)
    refused = check(patient, datetime(2026, 3, 14, 23, 30, tzinfo=LONDON), NOW, london)
    assert refused.earliest_eligible_start == midnight(date(2026, 3, 15), LONDON)
    assert "(done 1 March 2026 23:59 EST); earliest allowed 15 March 2026." in messages(refused.evaluation)
    assert not blocked(patient, midnight(date(2026, 3, 15), LONDON), NOW, london)
    slots = appointment_slots(
        patient=patient,
        procedure_code="microneedling",
        window_start=datetime(2026, 3, 10, tzinfo=UTC),
        window_end=datetime(2026, 3, 24, tzinfo=UTC),
        now=NOW,
        limit=1,
        clinic_id=london.code,
    )
    assert [s.start_at for s in slots] == [midnight(date(2026, 3, 15), LONDON)]
    outlook = {r.procedure.code: r.check for r in patient_record(patient=patient, now=NOW, clinic=london).outlook}
    assert outlook["microneedling"].earliest_eligible_start == midnight(date(2026, 3, 15), LONDON)
    template = plan_template_get("microneedling-course", organisation_id=patient.organisation_id)
    plan = plan_propose(patient=patient, clinic=london, template=template, start_at=NOW).plan
    assert plan.feasible and plan.sessions[0].start_at == midnight(date(2026, 3, 15), LONDON)


def test_the_london_desk_dates_a_day_reported_in_new_york_as_the_rules_do(sites):
    london = sites["london"][0]
    patient = _reported_in_new_york(sites)
    desk = staff_client(london, StaffRole.RECEPTIONIST, "xz-ldn-desk")
    with time_machine.travel(NOW, tick=False):
        page = html.unescape(words(desk.get(reverse("frontdesk:patient", args=[london.code, patient.pk]))))
    assert "Not before Sun 15 Mar 2026" in page.split("Microneedling", 1)[1][:200]  # the rules: 1 March + 2 weeks
    done = page.split("Procedures done", 1)[1][:200]
    assert "1 Mar 2026" in done, done


def test_the_history_page_dates_a_sister_site_visit_as_the_patient_page_and_the_rules_do(sites):
    london = sites["london"][0]
    patient = PatientFactory(clinic=london)
    visit(patient, sites["akl"], datetime(2026, 3, 1, 7, tzinfo=AUCKLAND), status=AppointmentStatus.COMPLETED)
    refused = check(patient, datetime(2026, 3, 14, 12, tzinfo=LONDON), NOW, london)
    assert "(done 1 March 2026 07:00 NZDT); earliest allowed 15 March 2026." in messages(refused.evaluation)
    desk = staff_client(london, StaffRole.RECEPTIONIST, "xz-ldn-history")
    with time_machine.travel(NOW, tick=False):
        detail = html.unescape(words(desk.get(reverse("frontdesk:patient", args=[london.code, patient.pk]))))
        history = html.unescape(words(desk.get(reverse("frontdesk:patient_history", args=[london.code, patient.pk]))))
    assert "1 Mar 2026" in detail.split("Procedures done", 1)[1][:200]
    line = re.search(r"Botulinum toxin injection \(Botox\) · (\d+ \w+ \d{4})", history)
    assert line and line.group(1) == "1 Mar 2026", line and line.group(0)


def test_the_api_lists_a_sister_site_visit_on_the_day_the_rules_read(sites):
    london = sites["london"][0]
    patient = PatientFactory(clinic=london)
    visit(patient, sites["akl"], datetime(2026, 3, 1, 7, tzinfo=AUCKLAND), status=AppointmentStatus.COMPLETED)
    api = http(new_api_client(london, sites["akl"][0])[1])
    with time_machine.travel(NOW, tick=False):
        [row] = api.get(f"/api/v1/patients/{patient.pk}/procedures/").json()["results"]
    assert datetime.fromisoformat(row["performed_at"]) == datetime(2026, 3, 1, 7, tzinfo=AUCKLAND)  # the instant: OK
    assert row["performed_at"].startswith("2026-03-01"), row["performed_at"]


# --- 4. Merges of records whose home clinics are in different zones -------------------------------------------------


def _merge(merged: Patient, into: Patient) -> Patient:
    patient_merge(merged=merged, into=into, now=NOW, actor_label="xz clinician", clinical=True)
    return Patient.objects.select_related("clinic").get(pk=into.pk)


def test_a_merge_keeps_the_day_a_procedure_was_reported_on_unsafe_direction(sites):
    hnl = sites["hnl"][0]
    reported = PatientFactory(clinic=sites["akl"][0], first_name="Mere")
    procedure_record_add(
        patient=reported, procedure_code="botox", now=NOW, performed_on=date(2026, 3, 1), performed_time=time(8)
    )
    fourteenth = datetime(2026, 3, 14, 12, tzinfo=HONOLULU)
    assert blocked(reported, fourteenth, NOW, hnl)  # before the merge: 1 March (Auckland) + 2 weeks = 15 March
    survivor = _merge(reported, PatientFactory(clinic=sites["hnl"][0], first_name="Mary"))
    assert blocked(survivor, fourteenth, NOW, hnl), "after the merge the reported 1 March reads as 28 February"


def test_a_merge_keeps_the_day_a_procedure_was_reported_on_recheck(sites):
    london = sites["london"][0]
    reported = _reported_in_new_york(sites)
    assert not blocked(reported, datetime(2026, 3, 15, 10, tzinfo=LONDON), NOW, london)  # before the merge
    survivor = PatientFactory(clinic=london, first_name="Survivor")
    booked = book(survivor, datetime(2026, 3, 15, 10, tzinfo=LONDON), NOW, london)
    _merge(reported, survivor)
    booked.refresh_from_db()
    assert booked.status == AppointmentStatus.CONFIRMED, booked.review_reasons


def test_a_merge_keeps_a_sister_site_visits_day(sites):
    """A visit's day is its site's, whoever's record it ends up in: merging a New York home record with a Botox
    completed at Auckland (Tue 10 Mar 07:00 NZDT) into a Honolulu home record, microneedling at Honolulu is still
    refused on Mon 23 Mar and allowed from Tue 24 Mar 00:00 HST, and the survivor's booking on the 24th stays."""
    hnl = sites["hnl"][0]
    merged = PatientFactory(clinic=sites["ny"][0], first_name="Moana")
    visit(merged, sites["akl"], datetime(2026, 3, 10, 7, tzinfo=AUCKLAND), status=AppointmentStatus.COMPLETED)
    survivor = PatientFactory(clinic=hnl, first_name="Malia")
    kept = book(survivor, datetime(2026, 3, 24, 0, 0, tzinfo=HONOLULU), NOW, hnl)
    survivor = _merge(merged, survivor)
    kept.refresh_from_db()
    assert kept.status == AppointmentStatus.CONFIRMED, kept.review_reasons
    refused = check(survivor, datetime(2026, 3, 23, 23, 30, tzinfo=HONOLULU), NOW, hnl)
    assert refused.earliest_eligible_start == midnight(date(2026, 3, 24), HONOLULU), messages(refused.evaluation)


# --- 5. Post-care and recalls -----------------------------------------------------------------------------------------


def test_next_possible_after_a_honolulu_treatment_reads_the_auckland_botox_by_its_date(sites):
    """reminders.content.next_possible for a filler at Honolulu (Mon 2 Mar 10:00 HST) when the patient has Botox
    booked at Auckland on Fri 20 Mar 07:00 NZDT (Thu 19 Mar 08:00 HST): microneedling is 4 weeks after the filler (30
    Mar) and, being too close before the Botox, 2 weeks after it: from Fri 3 April (Auckland's 20 March + 14), the
    first day the Honolulu booking accepts (the old reading said Thursday 2 April)."""
    hnl, doctor = sites["hnl"]
    patient = PatientFactory(clinic=sites["london"][0])
    filler = AppointmentFactory(
        patient=patient,
        clinic=hnl,
        practitioner=doctor,
        procedure_id="filler",
        start_at=datetime(2026, 3, 2, 10, tzinfo=HONOLULU),
        end_at=datetime(2026, 3, 2, 10, 30, tzinfo=HONOLULU),
    )
    visit(patient, sites["akl"], datetime(2026, 3, 20, 7, tzinfo=AUCKLAND))
    now = datetime(2026, 3, 2, 11, tzinfo=HONOLULU)
    [micro] = [n for n in next_possible(appointment=filler, now=now) if n.code == "microneedling"]
    assert micro.from_date == "Friday 3 April 2026"
    assert blocked(patient, datetime(2026, 4, 2, 23, 30, tzinfo=HONOLULU), now, hnl)
    assert not blocked(patient, midnight(date(2026, 4, 3), HONOLULU), now, hnl)


def test_a_botox_recall_at_auckland_reads_a_honolulu_microneedling_by_its_date(sites):
    """plans.recalls.recall_for and reminders.content.recall_earliest: Botox completed at Auckland on Tue 10 Mar; the
    patient has microneedling booked at Honolulu on Mon 1 Jun 20:00 HST (Tue 2 Jun 18:00 NZST). The recall's
    earliest date is Mon 22 June (Honolulu's 1 June + 3 weeks), the first day the Auckland booking and the Auckland
    desk accept Botox (the old reading, Auckland's 2 June, said 23 June)."""
    akl = sites["akl"][0]
    patient = PatientFactory(clinic=sites["london"][0])
    done = visit(patient, sites["akl"], datetime(2026, 3, 10, 7, tzinfo=AUCKLAND), status=AppointmentStatus.COMPLETED)
    visit(patient, sites["hnl"], datetime(2026, 6, 1, 20, tzinfo=HONOLULU), code="microneedling")
    plan_templates_load()
    due = recall_for(appointment=done)
    assert due is not None and due.procedure == "botox"
    assert due.opens_on == date(2026, 6, 10)
    assert due.earliest_on == date(2026, 6, 22)
    now = datetime(2026, 6, 10, 9, tzinfo=AUCKLAND)
    again = recall_earliest(appointment=done, recall={"opens_on": "2026-06-10", "procedure": "botox"}, now=now)
    assert again == midnight(date(2026, 6, 22), AUCKLAND)
    assert blocked(patient, datetime(2026, 6, 21, 23, 30, tzinfo=AUCKLAND), now, akl, code="botox")
    assert not blocked(patient, midnight(date(2026, 6, 22), AUCKLAND), now, akl, code="botox")
    outlook = {r.procedure.code: r.check for r in patient_record(patient=patient, now=now, clinic=akl).outlook}
    assert outlook["botox"].earliest_eligible_start == midnight(date(2026, 6, 22), AUCKLAND)


# --- 6. The message text ------------------------------------------------------------------------------------------------


def test_a_rules_message_names_a_sister_site_in_its_clock_and_its_own_site_without_a_zone(sites):
    """Docs: "A rule's message names a sister site's visit in that site's clock, with its zone ...; the earliest start
    it gives is in the booking clinic's." Looking back (a Botox booked at Auckland, microneedling asked at Honolulu),
    looking forward (microneedling booked at Honolulu, Botox asked at Auckland), and a sister site in the same zone
    (West London, asked at London), which is named without a zone."""
    akl, hnl, london = sites["akl"][0], sites["hnl"][0], sites["london"][0]
    back = PatientFactory(clinic=london)
    visit(back, sites["akl"], datetime(2026, 3, 10, 7, tzinfo=AUCKLAND))
    said = messages(check(back, datetime(2026, 3, 23, 12, tzinfo=HONOLULU), NOW, hnl).evaluation)
    assert (
        f"{MICRO} must be at least 2 weeks after {BOTOX} (booked 10 March 2026 07:00 NZDT); "
        "earliest allowed 24 March 2026." in said
    ), said

    forward = PatientFactory(clinic=london)
    visit(forward, sites["hnl"], datetime(2026, 3, 23, 20, tzinfo=HONOLULU), code="microneedling")
    said = messages(check(forward, datetime(2026, 3, 10, 7, tzinfo=AUCKLAND), NOW, akl, code="botox").evaluation)
    assert f"{MICRO} is booked 23 March 2026 20:00 HST; {BOTOX} must be at least 2 weeks before it." in said, said

    same_zone = PatientFactory(clinic=london)
    visit(same_zone, sites["west"], datetime(2026, 3, 10, 10, tzinfo=LONDON))
    said = messages(check(same_zone, datetime(2026, 3, 23, 12, tzinfo=LONDON), NOW, london).evaluation)
    assert f"({'booked'} 10 March 2026 10:00); earliest allowed 24 March 2026." in said, said
    assert "GMT" not in said


def test_a_visit_recorded_by_a_sister_sites_platform_is_read_on_that_sites_day(sites):
    london, ny = sites["london"][0], sites["ny"][0]
    patient = PatientFactory(clinic=london)
    api = http(new_api_client(ny)[1])
    body = {"procedure": "botox", "performed_at": "2026-03-01T22:00:00-05:00", "source": "clinic"}
    with time_machine.travel(NOW, tick=False):
        created = api.post(f"/api/v1/patients/{patient.pk}/procedures/", body, format="json")
    assert created.status_code == 201, created.content
    booked_twin = PatientFactory(clinic=london)
    visit(booked_twin, sites["ny"], datetime(2026, 3, 1, 22, tzinfo=NEW_YORK), status=AppointmentStatus.COMPLETED)
    fifteenth = datetime(2026, 3, 15, 10, tzinfo=NEW_YORK)
    assert not blocked(booked_twin, fifteenth, NOW, ny)  # the visit as booked and completed there: 1 March + 14
    assert not blocked(patient, fifteenth, NOW, ny), messages(check(patient, fifteenth, NOW, ny).evaluation)
