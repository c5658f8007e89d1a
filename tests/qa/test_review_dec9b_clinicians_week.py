"""Review probe (9 December, b): a clinician's week.

One organisation with a London site and a New York site (Dr Hart and Dr Lowe in London, Dr Nyx in New York), Pat
Lee at home in London on e-mail and text, a clinical booking platform of both sites, the London desk's clinician
and receptionist and the New York desk's clinician. The clock is stopped at the suite's Monday (2 March 2026, 09:00 in London, GMT) and moved from
event to event as the week (and, for the clock changes, the year) goes: Europe/London goes to BST on 29 March 2026
and back on 25 October 2026. Everything is done as a clinician would do it: through the services, the REST API and
the desk's pages (completion, no-show, check-in, notes, clearance, a procedure reported at the desk, Today, the
patient's page, the history page, the plan page), never by writing rows.

What is held to the domain brief (sections 2 to 6) and docs/rules.md, docs/plans.md, docs/reminders.md and
docs/frontdesk.md, with every expected date worked out here (zoneinfo and dateutil, never the product's helpers):

* a contraindication learned after booking (pregnancy, an isotretinoin course begun, an anticoagulant begun and
  ended, an allergy after a filler reaction, a tattoo on the neck) moves every future visit (at either site), plan
  session and queued message of the patient as its severity says: relative back to clearance, absolute or block to
  needs review, warn and the procedures (or areas) the rule is not about left alone, cancelled visits ignored; a
  course counts from its first day, not before; its end re-dates the reason and releases what it no longer covers;
  a clearance releases the late pre-care and drops a day-before reminder whose time passed; a record corrected
  releases the rest, each message planned once;
* a visit marked a no-show, cancelled late, or completed after midnight (and across both clock changes): only the
  completed one enters the history, on the visit's local date; its aftercare runs from the completion, texts out of
  quiet hours (the site's own night, New York's across its own change too), "+48 h" elapsed, "+7 days" on the wall
  clock; its recall is due at the ideal gap after the visit's date, 10:00 local;
* the same patient at two sites in different zones the same week: each event read on its own site's date, the
  earliest start taking every rule both ways at once, and the London aftercare, the New York desk and the API
  giving one date;
* the same procedure twice on one day: two history lines, one recall (the later one's), the warn-only repeat rule;
* a course whose first session is moved earlier or later and marked done: the next session's window and recall
  follow the day it happened;
* history entered after the fact between two booked visits (or two sessions of a course): the later visit flagged
  with the date it could move to, a cancelled booking ignored, and a move (or a re-plan, inside the session's
  window) to that date releasing it with its messages re-timed.

Found (strict xfails):
* QUESTION, decided 7 December (its test now passes: the re-check covers a visit under way): a contraindication
  recorded once the visit's time has come (the patient checked in, the intake taken at the chair) was not checked
  against that visit: the re-check looked at future visits only
  (scheduler.recheck.patient_appointments_recheck, `start_at__gt=now`), so it is completed as confirmed, a
  relative one without a clearance and an absolute one all the same;
* QUESTION: an outcome recorded in error cannot be corrected (a completion of a patient who did not come, a
  no-show of one who came late): both are final in scheduler.lifecycle.TRANSITIONS;
* QUESTION: completion takes no clinical note; a reaction written on the visit stays in the London desk's visit
  notes and is not in the history the sister site reads;
* DEFECT, mended the same day: the admin could remove the history line a completion wrote
  (clinic.admin.ProcedureRecordInline); the visit then still read completed over the API and its Botox recall still
  went, while the rules forgot the treatment (a microneedling 8 days after it allowed). Now refused, and its
  treatment, time, area and source are shown, not editable (clinic.forms.ProcedureRecordsFormSet).

Everything else held, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace

import pytest
from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
    WorkingHours,
)
from plans.defaults import plan_templates_load
from plans.models import Recall
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, OutboxStatus, WebhookEndpoint
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import API, LONDON, NEW_YORK, admin_errors, admin_post, book, fresh, ldn, texts, words

SYSTEM = "system: record re-check"


# --- The world ---------------------------------------------------------------------------------------------------


@pytest.fixture
def wk(care_texts, settings, clock):
    """The organisation, its two sites, Pat Lee, the platform and the desks' users (see the module's docstring)."""
    settings.CELERY_BROKER_URL = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    plan_templates_load()
    london = ClinicFactory(code="wk-london", name="Week London", timezone="Europe/London")
    newyork = ClinicFactory(
        code="wk-newyork", name="Week New York", timezone="America/New_York", organisation=london.organisation
    )
    hart = PractitionerFactory(clinic=london, name="Dr Hart")
    lowe = PractitionerFactory(clinic=london, name="Dr Lowe")
    nyx = PractitionerFactory(clinic=newyork, name="Dr Nyx", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=nyx, weekday=d, start_time=time(9), end_time=time(21)) for d in range(7)
    )
    pat = patient(london, "Pat", "Lee")
    platform, key = new_api_client(london, newyork, name="wk-platform", clinical=True)
    WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    users = {}
    for clinic, role in (
        (london, StaffRole.CLINICIAN),
        (london, StaffRole.RECEPTIONIST),
        (newyork, StaffRole.CLINICIAN),
    ):
        user = get_user_model().objects.create_user(username=f"wk-{clinic.code}-{role}", password="pw-for-qa-only-123")
        StaffMembership.objects.create(user=user, clinic=clinic, role=role)
        users[(clinic.code, role)] = user
    return SimpleNamespace(
        london=london, newyork=newyork, hart=hart, lowe=lowe, nyx=nyx, pat=pat, api=http(key), users=users, clock=clock
    )


def patient(clinic, first, last):
    return PatientFactory(
        clinic=clinic,
        first_name=first,
        last_name=last,
        email=f"{first.lower()}.{last.lower()}@example.com",
        phone="+447911123456",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def desk(w, role=StaffRole.CLINICIAN, site="wk-london") -> Client:
    """The desk signed in now (a session lasts 10 hours, and the clock moves)."""
    client = Client()
    client.force_login(w.users[(site, role)])
    return client


def page(w, name, site="wk-london", role=StaffRole.CLINICIAN, **kwargs):
    response = desk(w, role, site).get(reverse(f"frontdesk:{name}", kwargs={"clinic_code": site, **kwargs}))
    assert response.status_code == 200, response.status_code
    return words(response)


def desk_post(w, name, appointment, data=None, role=StaffRole.CLINICIAN):
    url = reverse(f"frontdesk:{name}", kwargs={"clinic_code": "wk-london", "appointment_id": appointment.pk})
    return desk(w, role).post(url, data or {})


def now() -> datetime:
    return timezone.now()


def api_ok(response, status=200) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:1500])
    return response.json()


def api_post(w, path, body=None, status=200) -> dict:
    return api_ok(w.api.post(f"{API}{path}", body or {}, format="json"), status)


def eligible(w, code, start: datetime, clinic=None, who=None) -> dict:
    body = {"patient": str((who or w.pat).pk), "procedure": code, "start": start.isoformat()}
    if clinic is not None:
        body["clinic"] = str(clinic.pk)
    return api_post(w, "/eligibility/", body)


def course(w, start_from="2026-03-10") -> tuple[dict, list[Appointment]]:
    """A microneedling course of three booked over the API with Dr Hart; the plan and its appointments in order."""
    plan = api_post(
        w,
        f"/patients/{w.pat.pk}/plans/",
        {"template": "microneedling-course", "start_from": start_from, "practitioner": str(w.hart.pk)},
        201,
    )
    ids = [s["appointment"] for s in sorted(plan["sessions"], key=lambda s: s["index"])]
    return plan, [Appointment.objects.get(pk=i) for i in ids]


def plan_sessions(w, plan) -> list[dict]:
    return sorted(api_ok(w.api.get(f"{API}/plans/{plan['id']}/"))["sessions"], key=lambda s: s["index"])


def statuses(*appointments) -> list[str]:
    return [fresh(a).status for a in appointments]


def unsent(appointment, *kinds) -> set[str]:
    """The statuses of the appointment's patient messages (of `kinds`, else all) still to go: held or pending."""
    found = OutboxMessage.objects.filter(appointment=appointment, status__in=[OutboxStatus.HELD, OutboxStatus.PENDING])
    if kinds:
        found = found.filter(kind__in=kinds)
    return set(found.exclude(channel="webhook").values_list("status", flat=True))


def care_rows(appointment, kind) -> dict[tuple[str, int], tuple[str, datetime]]:
    """{(channel, offset in the template's unit): (status, due)} of the appointment's rows of `kind`."""
    return {
        (m.channel, m.template.offset_value if m.template else 0): (m.status, m.due_at)
        for m in OutboxMessage.objects.filter(appointment=appointment, kind=kind)
        .exclude(channel="webhook")
        .select_related("template")
    }


def hooks(appointment) -> list[str]:
    rows = OutboxMessage.objects.filter(appointment=appointment, channel="webhook")
    return [p["type"] for p in sorted(rows.values_list("payload", flat=True), key=lambda p: p["sequence"])]


def system_moves(appointment) -> list[tuple[str, str, str]]:
    return [
        (action, d.get("from"), d.get("to"))
        for action, d in AuditEvent.objects.filter(appointment=appointment, actor_label=SYSTEM)
        .order_by("at", "id")
        .values_list("action", "details")
    ]


def put_intake(w, lines) -> None:
    api_ok(w.api.put(f"{API}/patients/{w.pat.pk}/conditions/", lines, format="json"))


def deliver(until: datetime, *, step=timedelta(minutes=30)) -> None:
    """Run the dispatcher every `step` from now to `until`, the clock moved along, as beat would. The platform's
    webhooks are taken as delivered first (this probe reads them from the outbox, not over HTTP)."""
    moment = now()
    while True:
        OutboxMessage.objects.filter(channel="webhook", status=OutboxStatus.PENDING).update(status=OutboxStatus.SENT)
        dispatch_local(now=moment)
        if moment >= until:
            return
        moment = min(moment + step, until)


def long_day(day: date) -> str:
    """'Saturday 18 April 2026', as the care texts write a date."""
    return f"{day:%A} {day.day} {day:%B %Y}"


def local_midnight(day: date, tz) -> str:
    return datetime.combine(day, time(0), tzinfo=tz).isoformat()


# --- A contraindication learned after booking -----------------------------------------------------------------


def test_pregnancy_learned_after_booking_sends_every_microneedling_and_filler_back_to_clearance_not_the_botox(wk):
    """Relative (sections 3 and 6): every future microneedling (the three sessions of a course) and filler, at
    either site, goes back to clearance, its messages held, each desk's Today listing its own; Botox has no
    contraindication and a cancelled filler is ignored. Each visit is cleared on its own: a clearance after the
    day-before reminder's time sends the late pre-care at once and drops the reminder. The pregnancy recorded as
    history (active only counts) releases the others."""
    plan, sessions = course(wk)
    botox = book(wk.pat, ldn(2026, 5, 26), now(), code="botox", practitioner_id=wk.hart.pk)
    filler = book(wk.pat, ldn(2026, 6, 2), now(), code="filler", practitioner_id=wk.hart.pk)
    ny_filler = book(wk.pat, datetime(2026, 6, 9, 10, tzinfo=NEW_YORK), now(), code="filler", practitioner_id=wk.nyx.pk)
    dropped = book(wk.pat, ldn(2026, 6, 16), now(), code="filler", practitioner_id=wk.hart.pk)
    api_post(wk, f"/appointments/{dropped.pk}/cancel/", {"reason": "One filler is enough"})
    deliver(ldn(2026, 3, 2, 9, 30))
    put_intake(wk, [{"condition": "pregnancy", "status": "active"}])

    held = [*sessions, filler, ny_filler]
    assert statuses(*held) == [AppointmentStatus.PENDING_CLEARANCE] * 5
    assert statuses(botox, dropped) == [AppointmentStatus.CONFIRMED, AppointmentStatus.CANCELLED]
    assert system_moves(dropped) == []
    for a in held:
        assert system_moves(a) == [("clearance_requested", "confirmed", "pending_clearance")]
        assert hooks(a)[-1] == "appointment.clearance_requested"
        assert unsent(a, "pre_care", "reminder") == {OutboxStatus.HELD}
    assert system_moves(botox) == [] and hooks(botox) == ["appointment.created"]
    assert unsent(botox, "pre_care", "reminder") == {OutboxStatus.PENDING}
    assert [(s["status"], s["appointment_status"]) for s in plan_sessions(wk, plan)] == [
        ("booked", "pending_clearance")
    ] * 3
    shown = page(wk, "patient", patient_id=wk.pat.pk)
    for when in ("Tue 10 Mar 2026, 09:00–10:00", "Tue 7 Apr 2026, 09:00–10:00", "Tue 5 May 2026, 09:00–10:00"):
        assert f"{when} Pat Lee Microneedling Dr Hart ! Pending clearance" in shown
    assert "Tue 26 May 2026, 10:00–10:30 Pat Lee Botox Dr Hart ✓ Confirmed" in shown
    assert "Waiting for clearance 4" in page(wk, "today")
    assert "Waiting for clearance 1" in page(wk, "today", site="wk-newyork")

    # Monday 9 March noon: the first session's day-before reminder (09:00) and 24 h pre-care (09:00) were held.
    wk.clock.move_to(ldn(2026, 3, 9, 12))
    before = len(mail.outbox)
    deliver(now())
    assert len(mail.outbox) == before, [m.subject for m in mail.outbox[before:]]
    response = desk_post(wk, "clear", sessions[0], {"reason": "Obstetrician's letter: cleared for a face session."})
    assert response.status_code == 302, response.status_code
    assert statuses(*sessions) == ["confirmed", "pending_clearance", "pending_clearance"]
    first = care_rows(sessions[0], "pre_care")
    assert {status for status, _ in first.values()} == {OutboxStatus.PENDING}
    assert all(due <= now() + timedelta(minutes=10) for _, due in first.values()), first
    assert unsent(sessions[0], "reminder") == set()
    assert unsent(sessions[1], "pre_care", "reminder") == {OutboxStatus.HELD}

    # No longer pregnant: what only the pregnancy held is released, its messages planned again once.
    put_intake(wk, [{"condition": "pregnancy", "status": "history"}])
    assert statuses(*held, botox) == [AppointmentStatus.CONFIRMED] * 6
    for a in [*sessions[1:], filler, ny_filler]:
        assert system_moves(a)[-1] == ("released", "pending_clearance", "confirmed")
        rows = OutboxMessage.objects.filter(appointment=a, kind__in=["pre_care", "reminder"]).exclude(channel="webhook")
        assert set(rows.values_list("status", flat=True)) == {OutboxStatus.PENDING}
        assert rows.count() == 4, list(rows.values_list("kind", "channel", "status"))
    assert len(system_moves(sessions[0])) == 1  # cleared by the clinician, not released again


def test_an_isotretinoin_course_begun_after_booking_holds_the_sessions_from_its_first_day_and_its_end_re_dates_them(
    wk,
):
    """Block, from the course's first day (docs/rules.md): a session before it stays confirmed, the later ones need
    review with no date while it is ongoing; a filler (warn only) is left alone. The end recorded re-dates the reason
    (6 months after, by calendar months) and flags them again; the re-plan's obstacle names the same date."""
    plan, sessions = course(wk)
    filler = book(wk.pat, ldn(2026, 6, 2), now(), code="filler", practitioner_id=wk.hart.pk)
    started, ended = date(2026, 3, 20), date(2026, 4, 30)
    iso = api_post(
        wk, f"/patients/{wk.pat.pk}/medications/", {"drug": "isotretinoin", "started_on": started.isoformat()}, 201
    )

    assert statuses(*sessions, filler) == ["confirmed", "needs_review", "needs_review", "confirmed"]
    for a in sessions[1:]:
        [reason] = fresh(a).review_reasons
        assert (reason["code"], reason["severity"], reason["earliest_allowed"]) == (
            "interval_course_ongoing",
            "block",
            None,
        )
        assert unsent(a) == {OutboxStatus.HELD}
    assert unsent(sessions[0]) == unsent(filler) == {OutboxStatus.PENDING}
    assert eligible(wk, "microneedling", ldn(2026, 3, 19, 10))["eligible"] is True
    refused = eligible(wk, "microneedling", ldn(2026, 3, 20, 10))
    assert refused["eligible"] is False and refused["earliest_eligible_start"] is None

    api_ok(
        wk.api.patch(
            f"{API}/patients/{wk.pat.pk}/medications/{iso['id']}/", {"ended_on": ended.isoformat()}, format="json"
        )
    )
    allowed_from = ended + relativedelta(months=6)
    assert statuses(*sessions, filler) == ["confirmed", "needs_review", "needs_review", "confirmed"]
    for a in sessions[1:]:
        [reason] = fresh(a).review_reasons
        assert reason["code"] == "interval_too_soon_after_course"
        assert datetime.fromisoformat(reason["earliest_allowed"]) == datetime.combine(allowed_from, time(0), LONDON)
        assert [m for m, *_ in system_moves(a)] == ["needs_review", "needs_review"]
        assert hooks(a).count("appointment.needs_review") == 2
    assert [s["appointment_status"] for s in plan_sessions(wk, plan)] == ["confirmed", "needs_review", "needs_review"]
    dry = api_post(wk, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": now().isoformat(), "dry_run": True})
    assert dry["feasible"] is False
    assert datetime.fromisoformat(dry["obstacle"]["earliest_eligible_start"]) == datetime.combine(
        allowed_from, time(0), LONDON
    )
    shown = page(wk, "patient", patient_id=wk.pat.pk)
    assert "Tue 7 Apr 2026, 09:00–10:00 Pat Lee Microneedling Dr Hart" in shown
    assert shown.count("Needs review") >= 2


def test_an_anticoagulant_begun_after_booking_is_absolute_for_microneedling_relative_for_filler_and_its_end_frees(wk):
    """Section 3: an ongoing anticoagulant course is absolute for microneedling (needs review), relative for filler
    (clearance), nothing for Botox. Its end recorded frees the filler after it (released, messages planned again
    once) and not the microneedling on a day it covered."""
    mn = book(wk.pat, ldn(2026, 3, 10), now(), practitioner_id=wk.hart.pk)
    filler = book(wk.pat, ldn(2026, 3, 31), now(), code="filler", practitioner_id=wk.hart.pk)
    botox = book(wk.pat, ldn(2026, 3, 31, 14), now(), code="botox", practitioner_id=wk.hart.pk)
    course_ = api_post(
        wk, f"/patients/{wk.pat.pk}/medications/", {"drug": "anticoagulant", "started_on": "2026-03-02"}, 201
    )
    assert statuses(mn, filler, botox) == ["needs_review", "pending_clearance", "confirmed"]
    assert [r["severity"] for r in fresh(mn).review_reasons] == ["absolute"]
    assert unsent(mn) == unsent(filler) == {OutboxStatus.HELD}

    api_ok(
        wk.api.patch(
            f"{API}/patients/{wk.pat.pk}/medications/{course_['id']}/", {"ended_on": "2026-03-20"}, format="json"
        )
    )
    assert statuses(mn, filler, botox) == ["needs_review", "confirmed", "confirmed"]
    assert hooks(filler) == ["appointment.created", "appointment.clearance_requested", "appointment.released"]
    assert system_moves(botox) == []
    rows = OutboxMessage.objects.filter(appointment=filler).exclude(channel="webhook")
    assert set(rows.values_list("status", flat=True)) == {OutboxStatus.PENDING}
    assert rows.count() == len(set(rows.values_list("kind", "channel", "template"))), "a message planned twice"
    assert unsent(mn) == {OutboxStatus.HELD}


def test_a_filler_reaction_recorded_as_an_allergy_holds_the_top_up_and_leaves_the_treatment_done(wk):
    """A reaction after a filler: the clinician marks the visit done and notes it at the desk, then records an
    allergy to a filler component (absolute for filler). The top-up booked for two weeks later needs review; the
    Botox booked that week is no filler and stays; the completed visit and its aftercare go on; a new filler is
    refused with no date."""
    filler = book(wk.pat, ldn(2026, 3, 2, 11), now(), code="filler", practitioner_id=wk.hart.pk)
    top_up = book(wk.pat, ldn(2026, 3, 16), now(), code="filler", practitioner_id=wk.hart.pk)
    botox = book(wk.pat, ldn(2026, 3, 9), now(), code="botox", practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 11, 50))
    assert desk_post(wk, "complete", filler).status_code == 302
    note = "Swelling and hives 20 minutes after; reaction to the filler suspected."
    assert desk_post(wk, "notes", filler, {"notes": note}).status_code == 302
    put_intake(wk, [{"condition": "filler_allergy", "status": "active"}])

    assert statuses(filler, top_up, botox) == ["completed", "needs_review", "confirmed"]
    [reason] = fresh(top_up).review_reasons
    assert (reason["kind"], reason["severity"], reason["conflicts_with"]["code"]) == (
        "contraindication",
        "absolute",
        "filler_allergy",
    )
    assert unsent(filler, "post_care") == {OutboxStatus.PENDING}
    assert unsent(top_up) == {OutboxStatus.HELD} and unsent(botox) == {OutboxStatus.PENDING}
    refused = wk.api.post(
        f"{API}/appointments/",
        {"patient": str(wk.pat.pk), "procedure": "filler", "start": ldn(2026, 4, 20).isoformat()},
        format="json",
    )
    assert refused.status_code == 409 and refused.json()["earliest_eligible_start"] is None
    # The note is for the staff: never in what the patient receives.
    deliver(ldn(2026, 3, 2, 12, 30))
    assert mail.outbox and not any("hives" in m.body for m in mail.outbox)
    assert not any("hives" in t for t in texts())


@pytest.mark.xfail(
    strict=True,
    reason="QUESTION: completion takes no clinical note; a reaction written on the visit stays in the London desk's "
    "visit notes (Appointment.notes, 'for the staff', any receptionist may rewrite them) and is not in the patient's "
    "history (ProcedureRecord.notes stays empty), which the sister site reads (domain brief 6: one record per "
    "patient).",
)
def test_a_reaction_noted_on_a_completed_visit_is_in_the_history_the_sister_site_reads(wk):
    filler = book(wk.pat, ldn(2026, 3, 2, 11), now(), code="filler", practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 11, 50))
    assert desk_post(wk, "complete", filler).status_code == 302
    assert desk_post(wk, "notes", filler, {"notes": "Hives 20 minutes after the filler."}).status_code == 302
    history = page(wk, "patient_history", site="wk-newyork", patient_id=wk.pat.pk)
    assert "Dermal filler (e.g. hyaluronic acid, Juvederm) · 2 Mar 2026" in history
    assert "Hives" in history


@pytest.mark.parametrize("learned", ["pregnancy", "anticoagulant"])
def test_a_contraindication_learned_at_the_chair_stops_the_treatment_being_recorded_unchecked(wk, learned):
    """The re-check covers a visit under way (its end not passed, scheduler.recheck): an anticoagulant (absolute for
    microneedling) flags it for review, a pregnancy (relative) sends it back for a clinician's clearance; either way
    it cannot be completed as it stood. (Was a strict-xfail QUESTION, decided for the patient's safety.)"""
    mn = book(wk.pat, ldn(2026, 3, 2, 10), now(), practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 9, 55))
    assert desk_post(wk, "check_in", mn).status_code == 302
    wk.clock.move_to(ldn(2026, 3, 2, 10, 5))
    if learned == "pregnancy":
        put_intake(wk, [{"condition": "pregnancy", "status": "active"}])
    else:
        api_post(wk, f"/patients/{wk.pat.pk}/medications/", {"drug": "anticoagulant", "started_on": "2026-02-20"}, 201)
    wk.clock.move_to(ldn(2026, 3, 2, 11, 5))
    response = wk.api.post(f"{API}/appointments/{mn.pk}/complete/", {}, format="json")
    assert response.status_code == 409, (response.status_code, fresh(mn).status)
    expected = (
        ("pending_clearance", "clearance_required") if learned == "pregnancy" else ("needs_review", "review_required")
    )
    assert (fresh(mn).status, response.json()["code"]) == expected


# --- Three endings of one evening ---------------------------------------------------------------------------------


def test_a_no_show_a_late_cancellation_and_a_completion_after_midnight_end_differently(wk):
    """Three Botox visits on Tuesday evening 3 March: Pat does not come (no-show), Noor cancels 15 minutes before,
    Cass is treated and marked done at 00:30 on Wednesday. Only Cass's enters the history, on 3 March; a
    microneedling 13 days later is refused for her alone; her aftercare runs from 00:30 (the text at 08:00), her
    recall is due 14 weeks after 3 March at 10:00; Noor hears of the cancellation; nobody's reminders are left."""
    noor, cass = patient(wk.london, "Noor", "Shah"), patient(wk.london, "Cass", "Byrne")
    visits = {
        "pat": book(wk.pat, ldn(2026, 3, 3, 17), now(), code="botox", practitioner_id=wk.hart.pk),
        "noor": book(noor, ldn(2026, 3, 3, 17), now(), code="botox", practitioner_id=wk.lowe.pk),
        "cass": book(cass, ldn(2026, 3, 3, 17, 30), now(), code="botox", practitioner_id=wk.hart.pk),
    }
    wk.clock.move_to(ldn(2026, 3, 3, 16, 40))
    deliver(now())
    api_post(wk, f"/appointments/{visits['noor'].pk}/cancel/", {"reason": "Stuck at work"})
    mail.outbox.clear()
    deliver(ldn(2026, 3, 3, 16, 50))
    assert [m.to for m in mail.outbox] == [[noor.email]] and "cancelled" in mail.outbox[0].subject.lower()

    wk.clock.move_to(ldn(2026, 3, 3, 18, 5))
    shown = page(wk, "today")
    assert "Visits with no outcome yet 2" in shown and "Pat Lee" in shown and "Cass Byrne" in shown
    assert desk_post(wk, "no_show", visits["pat"]).status_code == 302
    wk.clock.move_to(datetime(2026, 3, 4, 0, 30, tzinfo=UTC))
    assert desk_post(wk, "complete", visits["cass"]).status_code == 302
    assert "Visits with no outcome yet" not in page(wk, "today")

    assert statuses(*visits.values()) == ["no_show", "cancelled", "completed"]
    assert [hooks(a)[-1] for a in visits.values()] == [
        "appointment.no_show",
        "appointment.cancelled",
        "appointment.completed",
    ]
    records = ProcedureRecord.objects.filter(patient__in=[wk.pat, noor, cass])
    assert list(records.values_list("patient_id", "performed_at")) == [(cass.pk, ldn(2026, 3, 3, 17, 30))]
    day13, day14 = ldn(2026, 3, 16, 10), ldn(2026, 3, 17, 10)
    for who in (wk.pat, noor):
        assert eligible(wk, "microneedling", day13, who=who)["eligible"] is True
    refused = eligible(wk, "microneedling", day13, who=cass)
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == local_midnight(date(2026, 3, 3) + timedelta(weeks=2), LONDON)
    assert eligible(wk, "microneedling", day14, who=cass)["eligible"] is True
    for a in visits.values():
        assert unsent(a, "pre_care", "reminder") == set()
    assert unsent(visits["pat"]) == unsent(visits["noor"]) == set()
    after = care_rows(visits["cass"], "post_care")
    assert after[("email", 0)] == (OutboxStatus.PENDING, now())
    assert after[("sms", 0)] == (OutboxStatus.PENDING, datetime(2026, 3, 4, 8, 0, tzinfo=LONDON))
    [recall] = Recall.objects.filter(patient__in=[wk.pat, noor, cass])
    due = date(2026, 3, 3) + timedelta(weeks=14)
    assert (recall.patient_id, recall.due_on) == (cass.pk, due)
    assert {m.due_at for m in OutboxMessage.objects.filter(kind="recall")} == {datetime.combine(due, time(10), LONDON)}


# --- Completed after midnight on the nights the clocks change -----------------------------------------------------


def test_a_saturday_evening_microneedling_marked_done_after_midnight_as_the_clocks_go_forward(wk):
    """Saturday 28 March 17:00 GMT, marked done at 00:30 GMT on Sunday 29 March (01:00 becomes 02:00 BST). The
    history keeps 28 March; the aftercare runs from 00:30: e-mails at once, +48 h elapsed and +7 days at 00:30 on
    the wall clock (BST), texts moved out of the night to 08:00 BST; the next treatments are dated from 28 March
    and the API refuses Botox on 17 April and allows it on 18 April."""
    mn = book(wk.pat, ldn(2026, 3, 28, 17), now(), practitioner_id=wk.hart.pk)
    done = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    wk.clock.move_to(done)
    api_post(wk, f"/appointments/{mn.pk}/complete/")
    history = api_ok(wk.api.get(f"{API}/patients/{wk.pat.pk}/procedures/"))["results"]
    assert [h["performed_at"] for h in history] == ["2026-03-28T17:00:00+00:00"]

    done_local = done.astimezone(LONDON)
    week_later = datetime.combine(done_local.date() + timedelta(days=7), done_local.time(), LONDON)
    assert care_rows(mn, "post_care") == {
        ("email", 0): ("pending", done),
        ("sms", 0): ("pending", datetime(2026, 3, 29, 8, tzinfo=LONDON)),
        ("email", 48): ("pending", done + timedelta(hours=48)),
        ("sms", 48): ("pending", datetime(2026, 3, 31, 8, tzinfo=LONDON)),
        ("email", 7): ("pending", week_later),
        ("sms", 7): ("pending", datetime(2026, 4, 5, 8, tzinfo=LONDON)),
    }
    assert week_later.astimezone(UTC) == datetime(2026, 4, 4, 23, 30, tzinfo=UTC)

    mail.outbox.clear()
    deliver(datetime(2026, 3, 29, 7, 30, tzinfo=UTC))
    [aftercare] = mail.outbox
    visit_day = date(2026, 3, 28)
    botox_from = visit_day + timedelta(weeks=3)
    assert f"- Botulinum toxin injection (Botox): possible from {long_day(botox_from)}" in aftercare.body
    assert (
        f"- Plasma pen (fibroblast) treatment: possible from {long_day(visit_day + timedelta(days=7))}, ideally from "
        f"{long_day(visit_day + timedelta(days=10))}" in aftercare.body
    )
    sent = OutboxMessage.objects.get(appointment=mn, kind="post_care", channel="sms", status=OutboxStatus.SENT)
    assert sent.sent_at.astimezone(LONDON).hour == 8
    refused = eligible(wk, "botox", ldn(2026, 4, 17, 17))
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == local_midnight(botox_from, LONDON)
    assert eligible(wk, "botox", ldn(2026, 4, 18, 9))["eligible"] is True


def test_a_saturday_evening_botox_marked_done_in_the_hour_the_clocks_repeat_is_recalled_from_its_own_day(wk):
    """Saturday 24 October 17:30 BST, marked done at 01:30 GMT on Sunday 25 October (the second 01:30). The recall is
    due 14 weeks after 24 October at 10:00 GMT, opening 3 months after it; the aftercare text waits for 08:00 GMT; a
    microneedling is refused on 6 November and allowed from 7 November."""
    wk.clock.move_to(datetime(2026, 10, 19, 9, tzinfo=UTC))
    botox = book(wk.pat, ldn(2026, 10, 24, 17, 30), now(), code="botox", practitioner_id=wk.hart.pk)
    done = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    wk.clock.move_to(done)
    api_post(wk, f"/appointments/{botox.pk}/complete/")

    visit_day = date(2026, 10, 24)
    due = visit_day + timedelta(weeks=14)
    [recall] = Recall.objects.filter(patient=wk.pat)
    assert (recall.due_on, recall.earliest_on) == (due, visit_day + relativedelta(months=3))
    assert {m.due_at for m in OutboxMessage.objects.filter(appointment=botox, kind="recall")} == {
        datetime.combine(due, time(10), LONDON)
    }
    after = care_rows(botox, "post_care")
    assert after[("email", 0)] == ("pending", done)
    assert after[("sms", 0)] == ("pending", datetime(2026, 10, 25, 8, tzinfo=LONDON))
    refused = eligible(wk, "microneedling", ldn(2026, 11, 6, 9))
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == local_midnight(visit_day + timedelta(weeks=2), LONDON)
    assert eligible(wk, "microneedling", ldn(2026, 11, 7, 9))["eligible"] is True


# --- Two sites, two zones, one week --------------------------------------------------------------------------------


def test_a_course_in_london_and_a_botox_in_new_york_the_same_week_give_one_date_everywhere(wk):
    """Session 1 of a course done in London on Monday 2 March; on Friday the New York site asks for Botox on
    23 March (3 weeks after 2 March): refused, too close before session 2 on 30 March (2 weeks, the other direction).
    The earliest start takes every rule at once: after session 3 (27 April) + 3 weeks = 18 May, New York's midnight.
    The London aftercare, the New York desk and the API all say 18 May; the Botox booked there is reminded in New
    York's daytime."""
    plan, sessions = course(wk, "2026-03-02")
    days = [s.start_at.astimezone(LONDON).date() for s in sessions]
    assert days == [date(2026, 3, 2), date(2026, 3, 30), date(2026, 4, 27)]
    wk.clock.move_to(ldn(2026, 3, 2, 10, 30))
    api_post(wk, f"/appointments/{sessions[0].pk}/complete/")
    mail.outbox.clear()
    deliver(ldn(2026, 3, 2, 11))
    first_botox = days[2] + timedelta(weeks=3)
    [aftercare] = [m for m in mail.outbox if "Aftercare" in m.subject]
    assert f"- Botulinum toxin injection (Botox): possible from {long_day(first_botox)}" in aftercare.body

    wk.clock.move_to(ldn(2026, 3, 6, 12))
    refused = eligible(wk, "botox", datetime(2026, 3, 23, 9, tzinfo=NEW_YORK), clinic=wk.newyork)
    assert refused["eligible"] is False
    [violation] = refused["violations"]
    assert violation["code"] == "interval_too_close_before"
    assert violation["conflicts_with"]["id"] == str(sessions[1].pk)
    assert "30 March 2026 09:00 BST" in violation["message"]
    assert refused["earliest_eligible_start"] == local_midnight(first_botox, NEW_YORK)
    assert "Botulinum toxin injection (Botox) ✕ Not before Mon 18 May 2026" in page(
        wk, "patient", site="wk-newyork", patient_id=wk.pat.pk
    )
    ny_botox = api_post(
        wk,
        "/appointments/",
        {
            "patient": str(wk.pat.pk),
            "procedure": "botox",
            "start": datetime.combine(first_botox, time(9), NEW_YORK).isoformat(),
            "clinic": str(wk.newyork.pk),
        },
        201,
    )
    texts_due = OutboxMessage.objects.filter(
        appointment_id=ny_botox["id"], channel="sms", kind__in=["reminder", "pre_care"]
    )
    assert texts_due.count() == 2
    for row in texts_due:
        assert time(8) <= row.due_at.astimezone(NEW_YORK).time() < time(21), row.due_at.astimezone(NEW_YORK)


# --- The same procedure twice on one day -----------------------------------------------------------------------------


def test_the_same_botox_twice_on_one_day_is_two_history_lines_a_warning_and_one_recall(wk):
    """A Botox at 09:30 done at 10:00 (its recall planned), a touch-up booked for 15:00 the same day (the repeat
    rule is a warning only; booking it closes the first recall) and done at 15:30: two history lines on 2 March, one
    open recall from that day, microneedling refused on day 13 and allowed on day 14."""
    first = book(wk.pat, ldn(2026, 3, 2, 9, 30), now(), code="botox", practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 10))
    api_post(wk, f"/appointments/{first.pk}/complete/")
    assert Recall.objects.filter(patient=wk.pat, closed_at__isnull=True).count() == 1
    touch_up = api_post(
        wk,
        "/appointments/",
        {"patient": str(wk.pat.pk), "procedure": "botox", "start": ldn(2026, 3, 2, 15).isoformat()},
        201,
    )
    # One local date: 0 days apart whichever came first, so the repeat rule warns both ways (docs/rules.md).
    assert {w["code"] for w in touch_up["warnings"]} == {"interval_too_soon_after", "interval_too_close_before"}
    assert {w["severity"] for w in touch_up["warnings"]} == {"warn"}
    assert touch_up["status"] == "confirmed"
    assert Recall.objects.filter(patient=wk.pat, closed_at__isnull=True).count() == 0
    assert unsent(first, "recall") == set()
    wk.clock.move_to(ldn(2026, 3, 2, 15, 30))
    api_post(wk, f"/appointments/{touch_up['id']}/complete/")

    history = ProcedureRecord.objects.filter(patient=wk.pat).order_by("performed_at")
    assert list(history.values_list("procedure_id", "performed_at")) == [
        ("botox", ldn(2026, 3, 2, 9, 30)),
        ("botox", ldn(2026, 3, 2, 15)),
    ]
    [recall] = Recall.objects.filter(patient=wk.pat, closed_at__isnull=True)
    assert (str(recall.after_id), recall.due_on) == (touch_up["id"], date(2026, 3, 2) + timedelta(weeks=14))
    assert eligible(wk, "microneedling", ldn(2026, 3, 15, 17))["eligible"] is False
    assert eligible(wk, "microneedling", ldn(2026, 3, 16, 9))["eligible"] is True


# --- A course whose session happens earlier or later than planned ----------------------------------------------------


@pytest.mark.parametrize(
    "moved_to, done_at",
    [
        (ldn(2026, 3, 13, 17), datetime(2026, 3, 14, 0, 20, tzinfo=UTC)),  # later, marked done after midnight
        (ldn(2026, 3, 9, 10), ldn(2026, 3, 9, 11)),  # earlier
    ],
    ids=["later", "earlier"],
)
def test_a_session_moved_and_done_measures_the_next_window_and_recall_from_its_day(wk, moved_to, done_at):
    """Session 1 placed on 10 March is moved (the move warns of session 2 when it comes closer than 4 weeks before
    it), sessions 2 and 3 are then cancelled, session 1 is marked done: session 2's window is 4-6 weeks after the day session
    1 happened (not the completion's day), its recall due on the ideal day at 10:00, and a re-plan puts it there."""
    plan, sessions = course(wk)
    moved = api_post(wk, f"/appointments/{sessions[0].pk}/reschedule/", {"start": moved_to.isoformat()}, 201)
    came_closer = moved_to.date() > date(2026, 3, 10)
    assert bool([w for w in moved["warnings"] if w["code"] == "interval_too_close_before"]) is came_closer
    for later in sessions[1:]:  # a later session still booked would make a recall moot (docs/plans.md)
        api_post(wk, f"/appointments/{later.pk}/cancel/", {"reason": "Rebook after session 1"})
    wk.clock.move_to(done_at)
    api_post(wk, f"/appointments/{sessions[0].pk}/complete/")

    day = moved_to.date()
    earliest, latest = day + timedelta(weeks=4), day + timedelta(weeks=6)
    one, two, _ = plan_sessions(wk, plan)
    assert one["status"] == "completed"
    assert (two["status"], two["window"]) == (
        "cancelled",
        {"earliest": earliest.isoformat(), "ideal": earliest.isoformat(), "latest": latest.isoformat()},
    )
    assert f"{earliest.day} {earliest:%b} – {latest.day} {latest:%b %Y} (ideal {earliest.day} {earliest:%b})" in page(
        wk, "plan", plan_id=plan["id"]
    )
    [recall] = Recall.objects.filter(patient=wk.pat, closed_at__isnull=True)
    assert recall.due_on == earliest
    assert {m.due_at for m in OutboxMessage.objects.filter(kind="recall", appointment=sessions[0])} == {
        datetime.combine(earliest, time(10), LONDON)
    }
    dry = api_post(wk, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": now().isoformat(), "dry_run": True})
    assert dry["feasible"] is True
    assert datetime.fromisoformat(dry["sessions"][0]["start"]).astimezone(LONDON).date() == earliest


# --- An outcome recorded in error -------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="QUESTION: an outcome recorded in error cannot be corrected: a completion of a patient who did not come "
    "cannot be made a no-show, nor a no-show of a patient who came late a completion (both final in "
    "scheduler.lifecycle.TRANSITIONS; 409 not_no_show / not_completable), and the docs name no other way.",
)
@pytest.mark.parametrize("recorded, corrected", [("complete", "no-show"), ("no-show", "complete")])
def test_an_outcome_recorded_in_error_can_be_corrected(wk, recorded, corrected):
    botox = book(wk.pat, ldn(2026, 3, 2, 10), now(), code="botox", practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 10, 40))
    api_post(wk, f"/appointments/{botox.pk}/{recorded}/")
    response = wk.api.post(f"{API}/appointments/{botox.pk}/{corrected}/", {}, format="json")
    assert response.status_code == 200, response.json().get("code")


def test_a_completed_visit_whose_history_line_is_removed_in_the_admin_is_not_left_completed_and_forgotten(
    wk, admin_client
):
    """The admin may not remove the history line a completion wrote, nor change its treatment or time (it is the
    visit's outcome, clinic.forms.ProcedureRecordsFormSet); its notes may change. Removed, the visit read completed
    and its recall stayed open while the rules forgot the Botox (a microneedling 8 days later allowed). (Was a
    strict-xfail DEFECT.)"""
    botox = book(wk.pat, ldn(2026, 3, 2, 10), now(), code="botox", practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 10, 40))
    api_post(wk, f"/appointments/{botox.pk}/complete/")
    line = ProcedureRecord.objects.get(appointment=botox)
    refused = admin_post(admin_client, wk.pat, delete=(line.pk,))
    assert refused.status_code == 200, refused.status_code
    assert "cannot be removed here" in admin_errors(refused), admin_errors(refused)
    moved = admin_post(admin_client, wk.pat, edit={line.pk: {"procedure": "filler", "notes": "Mild swelling"}})
    assert moved.status_code == 302, admin_errors(moved)
    line.refresh_from_db()
    assert (line.procedure_id, line.performed_at, line.notes) == ("botox", botox.start_at, "Mild swelling")
    assert eligible(wk, "microneedling", ldn(2026, 3, 10))["eligible"] is False
    assert api_ok(wk.api.get(f"{API}/appointments/{botox.pk}/"))["status"] == "completed"
    assert Recall.objects.filter(after=botox, closed_at__isnull=True).exists()


# --- History entered after the fact between two booked visits ----------------------------------------------------------


def test_a_botox_reported_after_the_fact_between_two_visits_flags_the_later_one_with_its_date(wk):
    """Monday: a Botox booked for Wednesday is cancelled (she will have it elsewhere), a microneedling is done, and a
    second microneedling (17 March) and a plasma pen (30 March) are booked; the cancelled Botox stands in the way of
    neither. Friday: the desk records the Botox done elsewhere on Wednesday 4 March (no time: the end of that day).
    The 17 March visit needs review, naming the Botox and 18 March; the plasma pen (no rule with Botox) is left; a
    move to 18 March releases it and its messages go at the new times."""
    cancelled = book(wk.pat, ldn(2026, 3, 4), now(), code="botox", practitioner_id=wk.hart.pk)
    api_post(wk, f"/appointments/{cancelled.pk}/cancel/", {"reason": "Having it elsewhere"})
    done = book(wk.pat, ldn(2026, 3, 2, 9, 30), now(), practitioner_id=wk.hart.pk)
    later = book(wk.pat, ldn(2026, 3, 17), now(), practitioner_id=wk.hart.pk)
    pen = book(wk.pat, ldn(2026, 3, 30), now(), code="plasma_pen", practitioner_id=wk.hart.pk)
    wk.clock.move_to(ldn(2026, 3, 2, 10, 35))
    assert desk_post(wk, "complete", done).status_code == 302

    wk.clock.move_to(ldn(2026, 3, 6, 11))
    url = reverse("frontdesk:procedure_add", kwargs={"clinic_code": "wk-london", "patient_id": wk.pat.pk})
    response = desk(wk, StaffRole.RECEPTIONIST).post(
        url, {"record-procedure": "botox", "record-performed_on": "2026-03-04", "record-notes": "Elsewhere"}
    )
    assert response.status_code == 302, response.status_code
    [reported] = ProcedureRecord.objects.filter(patient=wk.pat, procedure_id="botox")
    assert reported.performed_at == ldn(2026, 3, 4, 23, 59)

    assert statuses(done, later, pen, cancelled) == ["completed", "needs_review", "confirmed", "cancelled"]
    [reason] = fresh(later).review_reasons
    allowed = date(2026, 3, 4) + timedelta(weeks=2)
    assert reason["conflicts_with"]["id"] == str(reported.pk)
    assert datetime.fromisoformat(reason["earliest_allowed"]) == datetime.combine(allowed, time(0), LONDON)
    assert unsent(later, "pre_care", "reminder") == {OutboxStatus.HELD}
    shown = page(wk, "patient", patient_id=wk.pat.pk)
    assert re.search(r"Tue 17 Mar 2026, 10:00–11:00 Pat Lee Microneedling Dr Hart \S* ?Needs review", shown), shown
    assert not Recall.objects.filter(patient=wk.pat).exists()

    new_start = datetime.combine(allowed, time(10), LONDON)
    moved = api_post(wk, f"/appointments/{later.pk}/reschedule/", {"start": new_start.isoformat()}, 201)
    assert moved["status"] == "confirmed"
    pre = care_rows(later, "pre_care")
    assert {status for status, _ in pre.values()} == {OutboxStatus.PENDING}
    assert {due for _, due in pre.values()} == {new_start - timedelta(hours=24)}
    assert statuses(pen) == ["confirmed"]


def test_a_botox_reported_between_two_sessions_of_a_course_is_answered_by_a_replan_inside_the_window(wk):
    """Session 1 done on 10 March; on 2 April a Botox done elsewhere the day before (1 April 15:00) is recorded over
    the API: session 2 (7 April) needs review with 15 April; the desk's plan page says so; a re-plan from session 2
    puts it on 15 April, still inside its window (7-21 April, from session 1), and session 3 the ideal 4 weeks after
    it; applied, session 2 is confirmed again, its pre-care and reminder re-timed to the new day."""
    plan, sessions = course(wk)
    wk.clock.move_to(ldn(2026, 3, 10, 10, 30))
    api_post(wk, f"/appointments/{sessions[0].pk}/complete/")
    wk.clock.move_to(ldn(2026, 4, 2, 10))
    reported = api_post(
        wk,
        f"/patients/{wk.pat.pk}/procedures/",
        {"procedure": "botox", "performed_at": ldn(2026, 4, 1, 15).isoformat()},
        201,
    )
    assert statuses(*sessions) == ["completed", "needs_review", "confirmed"]
    [reason] = fresh(sessions[1]).review_reasons
    second = date(2026, 4, 1) + timedelta(weeks=2)
    assert reason["conflicts_with"]["id"] == reported["id"]
    assert datetime.fromisoformat(reason["earliest_allowed"]) == datetime.combine(second, time(0), LONDON)
    assert "Tue 7 Apr 2026, 09:00 · Dr Hart 7 Apr – 21 Apr 2026 (ideal 7 Apr) Booked Needs review" in page(
        wk, "plan", plan_id=plan["id"]
    )

    replanned = api_post(wk, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": now().isoformat()})
    by_index = {s["index"]: s for s in replanned["sessions"]}
    starts = {i: datetime.fromisoformat(by_index[i]["start"]).astimezone(LONDON).date() for i in (2, 3)}
    assert starts == {2: second, 3: second + timedelta(weeks=4)}
    assert by_index[2]["window"] == {"earliest": "2026-04-07", "ideal": "2026-04-07", "latest": "2026-04-21"}
    assert statuses(*sessions) == ["completed", "confirmed", "confirmed"]
    assert hooks(sessions[1])[-1] == "appointment.rescheduled"
    start = fresh(sessions[1]).start_at
    rows = care_rows(sessions[1], "pre_care") | care_rows(sessions[1], "reminder")
    assert {status for status, _ in rows.values()} == {OutboxStatus.PENDING}
    assert {due for _, due in rows.values()} == {start - timedelta(hours=24)}
    assert len(rows) == 4


def test_a_tattoo_recorded_on_the_neck_holds_the_neck_and_the_unspecified_visit_not_the_face(wk):
    """Area-specific (section 3, "in the treatment area"): a tattoo recorded on the neck after booking sends the neck
    microneedling back to clearance and, the safer reading, the one with no area; the face is left alone."""
    face = book(wk.pat, ldn(2026, 3, 10), now(), practitioner_id=wk.hart.pk, area_code="face")
    neck = book(wk.pat, ldn(2026, 4, 7), now(), practitioner_id=wk.hart.pk, area_code="neck")
    unknown = book(wk.pat, ldn(2026, 5, 5), now(), practitioner_id=wk.hart.pk)
    put_intake(wk, [{"condition": "tattoo_in_area", "status": "active", "area": "neck"}])
    assert statuses(face, neck, unknown) == ["confirmed", "pending_clearance", "pending_clearance"]
    assert unsent(face) == {OutboxStatus.PENDING} and unsent(neck) == unsent(unknown) == {OutboxStatus.HELD}


def test_a_london_patients_evening_visit_in_new_york_keeps_new_yorks_clock_across_its_change(wk):
    """Pat, at home in London, is treated in New York on Saturday 7 March at 19:45 EST and marked done at 20:45 EST,
    the night before New York's clocks go forward: her aftercare's "+48 h" is elapsed time (21:45 EDT on Monday), so
    its text waits for 08:00 New York time; "+7 days" keeps 20:45 on the wall clock (EDT); nothing goes by text in New
    York's night, whatever London's clock says."""
    wk.clock.move_to(datetime(2026, 3, 6, 15, tzinfo=UTC))
    visit = api_post(
        wk,
        "/appointments/",
        {
            "patient": str(wk.pat.pk),
            "procedure": "microneedling",
            "start": datetime(2026, 3, 7, 19, 45, tzinfo=NEW_YORK).isoformat(),
            "clinic": str(wk.newyork.pk),
        },
        201,
    )
    done = datetime(2026, 3, 7, 20, 45, tzinfo=NEW_YORK).astimezone(UTC)  # elapsed time is counted in UTC
    wk.clock.move_to(done)
    api_post(wk, f"/appointments/{visit['id']}/complete/")
    rows = care_rows(Appointment.objects.get(pk=visit["id"]), "post_care")
    assert rows == {
        ("email", 0): ("pending", done),
        ("sms", 0): ("pending", done),
        ("email", 48): ("pending", done + timedelta(hours=48)),
        ("sms", 48): ("pending", datetime(2026, 3, 10, 8, tzinfo=NEW_YORK)),
        ("email", 7): ("pending", datetime(2026, 3, 14, 20, 45, tzinfo=NEW_YORK)),
        ("sms", 7): ("pending", datetime(2026, 3, 14, 20, 45, tzinfo=NEW_YORK)),
    }
    assert (done + timedelta(hours=48)).astimezone(NEW_YORK).time() == time(21, 45)  # in New York's night
