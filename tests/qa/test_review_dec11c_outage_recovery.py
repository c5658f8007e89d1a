"""Review probe dec11c: what patients receive after an outage of the reminder pipeline.

The worker and the beat stop while the desk keeps working (services, as the desk's pages call them); then the
beat's work is run again as the beat and a worker would (`dispatch_due_batches` handing each task's claims to
`outbox_send_batch`, the beat's once-a-minute runs first), at every moment a row falls due. Read back from the
outbox rows and from what the in-memory providers were handed. A London clinic (a practitioner working 07:00-22:00
every day), quiet hours 21:00-08:00, a 5-minute change grace, merges within 10 minutes. Three outages:

* a weeknight, Tuesday 3 March 22:00 to Wednesday 09:00: a visit moved twice, bookings cancelled (one booked inside
  the outage, one told before, one told by e-mail only), a visit booked and missed (no-show), one under way;
* the nights the clocks change (Saturday 28 March, Saturday 24 October), the worker restarted by the on-call in the
  small hours (03:00 BST; 01:30 BST, the first reading);
* three days, Friday 6 March 22:00 to Monday 9 March 22:00: a visit done on the Saturday, a patient turning texts
  off, the +48 h aftercare text reworded, a visit on the Tuesday morning.

Brief 4: 'no SMS between 21:00 and 08:00 local'; post-care 'anchored ... to its completion (when it is marked
done)'. docs/reminders.md "Time": 'a backlog (workers down overnight) waits for 08:00, and a reminder or pre-care
note whose appointment has already started ... is not sent at all'; "What each booking change does to the outbox";
"In reading order"; "Operations" (`reminders_status`, the admin's outbox).

Found (strict xfails; the two DEFECTs mended the same day, their tests now pass):
* DEFECT: a booking made inside the outage for a time that came before the pipeline did is confirmed after its
  time ("your appointment is booked for Wed 4 Mar, 08:30 ... Move or cancel") while the patient is in the chair
  (reminders/verdicts.py `still_wanted` drops change notices whose time has come, not the confirmation).
* DEFECT: two aftercare texts of one visit held for the morning go as one text in the order of their random ids,
  "48 hours have passed ... makeup may be used again" before "no makeup ... for 48 hours" (reminders/content.py
  `reading_order` sorts a kind by `due_at`, which the quiet-hours hold set to 08:00 for both).
* QUESTION: after three days the at-completion text ("no makeup for 48 hours") goes together with the +48 h one.
* QUESTION, decided the same day (its test now passes): `reminders_status` after the outage listed nothing of what it
  dropped as too late (counts only); it now has a section for it.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from clinic.models import AppointmentStatus, WorkingHours
from reminders import tasks as reminder_tasks
from reminders.channels import LocmemSmsBackend
from reminders.consent import patient_preferences_update
from reminders.dispatch import dispatch_due_batches, outbox_send_batch
from reminders.models import MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from scheduler import tasks as scheduler_tasks
from scheduler.booking import (
    appointment_cancel,
    appointment_check_in,
    appointment_complete,
    appointment_mark_no_show,
    appointment_reschedule,
)
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, RECEPTION, book, fresh, rows, texts, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes", "_nights")]

LONDON = ZoneInfo("Europe/London")
TWO_DAYS_ON = "{{ clinic_name }}: two days since your visit, makeup may be used again."


@pytest.fixture
def _nights(settings):
    settings.REMINDERS_SMS_QUIET_HOURS = ("21:00", "08:00")
    settings.REMINDERS_CHANGE_GRACE_MINUTES = 5
    settings.REMINDERS_MERGE_MINUTES = 10
    settings.CELERY_BROKER_URL = ""  # the beat's once-a-minute runs do their work in this process


@pytest.fixture
def site(care_texts):
    clinic = ClinicFactory(code="dec11c", name="Dusk Clinic", timezone="Europe/London")
    doctor = PractitionerFactory(clinic=clinic, name="Dr Dusk", hours=[])
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=doctor, weekday=d, start_time=time(7), end_time=time(22)) for d in range(7)
    )
    return clinic


def person(clinic, name: str, n: int):
    return PatientFactory(
        clinic=clinic,
        first_name=name,
        email=f"{name.lower()}@example.com",
        phone=f"+4477009004{n:02d}",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def w(y, m, d, hh, mm=0) -> datetime:
    """A London wall-clock time as a UTC instant (elapsed-time arithmetic on it is exact)."""
    return datetime(y, m, d, hh, mm, tzinfo=LONDON).astimezone(UTC)


def beat(moment: datetime) -> None:
    """One beat tick with a worker running its tasks at once, at `moment`."""

    def worker(claims):
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=moment)

    with time_machine.travel(moment, tick=False):
        dispatch_due_batches(now=moment, enqueue=worker)


def back_up(start: datetime, until: datetime) -> None:
    """The pipeline is back at `start`: the beat's minute runs, then a tick at every moment a row falls due."""
    with time_machine.travel(start, tick=False):
        scheduler_tasks.resume_rechecks()
        reminder_tasks.resume_template_rollouts()
    moment = start
    beat(moment)
    for _ in range(300):
        due = OutboxMessage.objects.filter(status=OutboxStatus.PENDING, due_at__lte=until).exclude(channel="webhook")
        row = due.order_by("due_at").first()
        if row is None:
            return
        moment = max(moment + timedelta(seconds=1), row.due_at)
        beat(moment)
    raise AssertionError("the dispatcher kept finding rows due")


def sent(appointment, **filters) -> list[OutboxMessage]:
    return rows(appointment, status=OutboxStatus.SENT, **filters)


def handed_over_once() -> None:
    """No provider was handed one outbox row twice."""
    ids = [sms["outbox_id"] for sms in LocmemSmsBackend.outbox] + [m.extra_headers["X-Outbox-Id"] for m in mail.outbox]
    assert len(ids) == len(set(ids)), ids


def texts_at_night() -> list:
    night = OutboxMessage.objects.filter(channel="sms", status=OutboxStatus.SENT)
    return [
        r.sent_at.astimezone(LONDON) for r in night if not time(8) <= r.sent_at.astimezone(LONDON).time() < time(21)
    ]


def status_report(moment: datetime) -> str:
    out = StringIO()
    with time_machine.travel(moment, tick=False):
        call_command("reminders_status", "--clinic", "dec11c", stdout=out)
    return out.getvalue()


# --- One night: the desk works on, the pipeline is back at 09:00 ----------------------------------------------------


def overnight(site, clock) -> dict:
    names = ["Ada", "Bea", "Cat", "Dot", "Eve", "Fay"]
    ada, bea, cat, dot, eve, fay = (person(site, name, i) for i, name in enumerate(names))
    monday = w(2026, 3, 2, 9)

    def at(*when):
        clock.move_to(w(*when))
        return w(*when)

    v = {"ada": book(ada, w(2026, 3, 4, 10), monday), "cat": book(cat, w(2026, 3, 5, 12), monday)}
    v["fay"] = book(fay, w(2026, 3, 5, 16), at(2026, 3, 3, 21, 30))  # e-mailed at once; her text held for 08:00
    back_up(monday, w(2026, 3, 3, 21, 59))
    # The pipeline stops at 22:00. A platform books overnight; the desk opens at 07:00.
    v["bea"] = book(bea, w(2026, 3, 5, 10), at(2026, 3, 3, 22, 30))
    v["dot"] = book(dot, w(2026, 3, 4, 8, 30), at(2026, 3, 3, 22, 40))
    v["eve"] = book(eve, w(2026, 3, 4, 7, 15), at(2026, 3, 3, 22, 50))
    moved = appointment_reschedule(
        appointment=v["ada"], start_at=w(2026, 3, 5, 11), actor=RECEPTION, now=at(2026, 3, 4, 7, 30)
    )
    appointment_reschedule(
        appointment=moved.appointment, start_at=w(2026, 3, 5, 14), actor=RECEPTION, now=at(2026, 3, 4, 7, 40)
    )
    appointment_mark_no_show(appointment=v["eve"], actor=CLINICIAN, now=at(2026, 3, 4, 7, 45))
    appointment_cancel(appointment=v["cat"], actor=RECEPTION, now=at(2026, 3, 4, 7, 50), reason="doctor ill")
    appointment_cancel(appointment=v["fay"], actor=RECEPTION, now=at(2026, 3, 4, 7, 52), reason="doctor ill")
    appointment_cancel(appointment=v["bea"], actor=RECEPTION, now=at(2026, 3, 4, 8), reason="booked by mistake")
    appointment_check_in(appointment=v["dot"], actor=RECEPTION, now=at(2026, 3, 4, 8, 25))
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    back_up(w(2026, 3, 4, 9), w(2026, 3, 5, 15))
    return {k: fresh(a) for k, a in v.items()}


def test_overnight_changes_are_told_once_for_the_visit_as_it_stands(site, clock):
    """Moved twice inside the outage (10:00 Wed, 11:00 Thu, 14:00 Thu): one move notice a channel at 09:00, from the
    time she was told to the time it is; reminder and pre-care once each, for 14:00; nothing names 11:00. A visit
    booked and cancelled inside the outage: nothing at all (she never heard of it). Told before (by both channels, or
    by e-mail only): the cancellation goes on each channel. Booked inside and missed: nothing after."""
    v = overnight(site, clock)
    ada, nine = v["ada"], w(2026, 3, 4, 9)
    moved = sent(ada, kind=MessageKind.RESCHEDULED)
    assert sorted((r.channel, r.sent_at) for r in moved) == [("email", nine), ("sms", nine)]
    assert [s for s in texts() if "moved to Thu 5 Mar, 14:00 (GMT) (it was Wed 4 Mar, 10:00 (GMT))" in s]
    for kind in (MessageKind.REMINDER, MessageKind.PRE_CARE):
        after = [(r.channel, r.anchor_at, r.sent_at) for r in sent(ada, kind=kind) if r.sent_at >= nine]
        assert sorted(after) == [(c, ada.start_at, w(2026, 3, 4, 14)) for c in ("email", "sms")], kind
    said = texts() + [m.body for m in mail.outbox] + [m.subject for m in mail.outbox]
    assert not [s for s in said if "11:00" in s]

    assert sent(v["bea"]) == [] and not [m for m in mail.outbox if m.to == ["bea@example.com"]]
    for who in ("cat", "fay"):
        notices = sent(v[who], kind=MessageKind.CANCELLED)
        assert sorted((r.channel, r.sent_at) for r in notices) == [("email", nine), ("sms", nine)], who
    assert sent(v["eve"]) == [] and {r.status for r in rows(v["eve"])} <= {OutboxStatus.CANCELLED, OutboxStatus.SKIPPED}
    assert texts_at_night() == []
    handed_over_once()
    count = len(texts()), len(mail.outbox)
    beat(w(2026, 3, 5, 15))  # a second beat's tick at the same moment: nothing goes twice
    assert (len(texts()), len(mail.outbox)) == count


def test_a_visit_under_way_when_the_pipeline_returns_is_not_confirmed_then(site, clock):
    """verdicts.still_wanted drops a confirmation whose visit's time has come, as it drops a change notice. (Was a
    strict-xfail DEFECT: "booked for 08:30, move or cancel" went at 09:00, the patient in the chair.)"""
    dot = overnight(site, clock)["dot"]
    assert (dot.status, dot.checked_in_at) == (AppointmentStatus.CONFIRMED, w(2026, 3, 4, 8, 25))
    assert [s for s in texts() if "is booked for Wed 4 Mar, 08:30" in s] == []
    assert sent(dot, kind=MessageKind.CONFIRMATION) == []


# --- The nights the clocks change: the on-call restarts the worker in the small hours -------------------------------


@pytest.mark.parametrize(
    ("saturday", "restart", "morning"),
    [
        ((2026, 3, 28), datetime(2026, 3, 29, 2, tzinfo=UTC), datetime(2026, 3, 29, 7, tzinfo=UTC)),  # 03:00 BST
        ((2026, 10, 24), datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 8, tzinfo=UTC)),  # 01:30 BST
    ],
    ids=["spring-forward", "fall-back"],
)
def test_a_restart_in_the_small_hours_texts_the_backlog_at_0800_on_the_new_clock(
    site, clock, saturday, restart, morning
):
    """The worker stops at 19:30. At 19:45 a visit is booked for 08:30 on the Sunday (confirmation and pre-care due
    at once); at 20:30 the 19:00 visit is marked done (aftercare due then). The worker is back at 03:00 BST (spring) or
    01:30 BST (autumn, before the clocks go back): the e-mails go then (e-mail has no quiet hours), every text at 08:00
    on the Sunday's own clock, once, before the 08:30 visit; the +48 h text counts 48 elapsed hours from 20:30."""
    ada, bea = person(site, "Ada", 1), person(site, "Bea", 2)
    week_before = w(*saturday, 9) - timedelta(days=5)
    done = book(ada, w(*saturday, 19), week_before)
    back_up(week_before, w(*saturday, 19, 29))
    clock.move_to(w(*saturday, 19, 45))
    y, m, d = saturday
    sunday = book(bea, w(y, m, d + 1, 8, 30), w(*saturday, 19, 45))
    clock.move_to(w(*saturday, 20, 30))
    done = appointment_complete(appointment=done, actor=CLINICIAN, now=w(*saturday, 20, 30))
    back_up(restart, morning + timedelta(hours=3))

    assert morning.astimezone(LONDON).time() == time(8)
    texted = [r.sent_at for a in (done, sunday) for r in sent(a, channel="sms") if r.sent_at > restart]
    assert texted == [morning] * 3, texted  # her aftercare; his confirmation and pre-care
    assert {r.sent_at for a in (done, sunday) for r in sent(a, channel="email") if r.sent_at >= restart} == {restart}
    [then] = [r for r in rows(done, kind=MessageKind.POST_CARE, channel="email") if "48h" in r.template.default_key]
    assert then.due_at == done.completed_at + timedelta(hours=48)
    assert texts_at_night() == []
    handed_over_once()


# --- Three days ------------------------------------------------------------------------------------------------------


def three_days(site, clock) -> dict:
    """Visits booked on Monday 2 March: Ada Saturday 10:00 (done at 11:20), Bea Tuesday 10 March 10:00 (texts off on
    Saturday), Dot Tuesday 09:00. The +48 h aftercare text is reworded on Saturday. Back on Monday at 22:00."""
    ada, bea, dot = person(site, "Ada", 1), person(site, "Bea", 2), person(site, "Dot", 3)
    monday = w(2026, 3, 2, 9)
    v = {
        "ada": book(ada, w(2026, 3, 7, 10), monday),
        "bea": book(bea, w(2026, 3, 10, 10), monday),
        "dot": book(dot, w(2026, 3, 10, 9), monday),
    }
    back_up(monday, w(2026, 3, 6, 21, 59))
    clock.move_to(w(2026, 3, 7, 11, 20))
    v["ada"] = appointment_complete(appointment=v["ada"], actor=CLINICIAN, now=w(2026, 3, 7, 11, 20))
    clock.move_to(w(2026, 3, 7, 12))
    patient_preferences_update(patient=bea, now=w(2026, 3, 7, 12), sms=False)
    ReminderTemplate.objects.filter(default_key="microneedling-post-care-48h").update(sms_text=TWO_DAYS_ON)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    back_up(w(2026, 3, 9, 22), w(2026, 3, 10, 12))
    return v


def test_three_days_aftercare_from_the_real_completion_opt_out_and_new_words(site, clock):
    """Ada's aftercare counts from 11:20 on Saturday (+48 h Monday 11:20, +7 days Saturday 14 March 11:20); her
    e-mails go at 22:00 on Monday, her texts at 08:00 on Tuesday, in the reworded words. Bea turned texts off: her
    texts are skipped with the reason, her e-mails go before her visit. Dot's reminder text, held for the morning of
    her visit, says "today", not "tomorrow". Nothing at night; nothing twice."""
    v = three_days(site, clock)
    ada, done = v["ada"], w(2026, 3, 7, 11, 20)
    assert ada.completed_at == done
    due = {(r.template.default_key, r.channel): r for r in rows(ada, kind=MessageKind.POST_CARE)}
    assert due[("microneedling-post-care-48h", "email")].due_at == done + timedelta(hours=48)
    assert due[("microneedling-post-care-7d", "sms")].due_at == w(2026, 3, 14, 11, 20)
    assert {r.sent_at for r in sent(ada, kind=MessageKind.POST_CARE)} == {w(2026, 3, 9, 22), w(2026, 3, 10, 8)}
    assert [r for r in sent(ada) if r.kind in (MessageKind.REMINDER, MessageKind.PRE_CARE) and r.sent_at > done] == []
    assert [s for s in texts() if "two days since your visit, makeup may be used again" in s]

    bea = v["bea"]
    assert {r.last_error for r in rows(bea, channel="sms") if r.status == OutboxStatus.SKIPPED} == {
        "the patient has not chosen SMS reminders (or replied STOP)"
    }
    assert {(r.kind, r.sent_at) for r in sent(bea, channel="email") if r.sent_at > done} == {
        (MessageKind.REMINDER, w(2026, 3, 9, 22)),
        (MessageKind.PRE_CARE, w(2026, 3, 9, 22)),
    }
    [dots] = [s for s in texts() if "Tue 10 Mar, 09:00" in s]
    assert "your appointment today, Tue 10 Mar, 09:00" in dots and "tomorrow" not in dots
    assert texts_at_night() == []
    handed_over_once()


# Harm: "Dusk Clinic: 48 hours have passed since your visit, so makeup may be used again." then, in the same text,
# "... aftercare: no face washing for 5 hours (ideally 12), no makeup ... for 48 hours". Cause: the quiet-hours hold
# (reminders/dispatch.py _send_locked, quiet_hours_verdict's new due_at) sets both rows due at 08:00; content.py
# reading_order then orders a kind by due_at and, tied, by the row's random id. uuid4 gives either order; this test
# draws the ids in descending order so that the tie is the harmful one every run (as it was before the mend).
def test_two_aftercare_texts_held_for_the_morning_read_in_their_order(site, clock, monkeypatch):
    """content.reading_order orders one kind by the moment each was planned for. (Was a strict-xfail DEFECT: in
    the order of their random ids, "makeup may be used again" read first half the time.)"""
    ids = itertools.count(1)
    monkeypatch.setattr(OutboxMessage._meta.pk, "_get_default", lambda: uuid.UUID(int=2**128 - next(ids)))
    three_days(site, clock)
    [text] = [s for s in texts() if "aftercare: no face washing" in s]
    assert text.index("no makeup, eyelids included, for 48 hours") < text.index("makeup may be used again")


@pytest.mark.xfail(
    strict=True,
    reason="QUESTION: after an outage longer than 48 hours, should the at-completion aftercare ('no makeup for 48 "
    "hours') still go, in the same text as the +48 h one that lifts it? (a START after the moment does not plan it)",
)
def test_after_three_days_the_at_completion_text_does_not_contradict_the_48h_one(site, clock):
    three_days(site, clock)
    [text] = [s for s in texts() if "makeup may be used again" in s]
    assert "no makeup" not in text


# --- What the operator is told ----------------------------------------------------------------------------------------


def missed_while_down(site, clock):
    """Ada's visit on Monday 9 March 10:00, booked the Monday before and confirmed: its reminder and pre-care note fall
    due on Sunday, inside the outage, and its time passes before the pipeline is back (the desk marks it on Tuesday)."""
    ada = person(site, "Ada", 1)
    visit = book(ada, w(2026, 3, 9, 10), w(2026, 3, 2, 9))
    back_up(w(2026, 3, 2, 9), w(2026, 3, 6, 21, 59))
    report = status_report(w(2026, 3, 9, 12))
    back_up(w(2026, 3, 9, 22), w(2026, 3, 10, 12))
    return visit, report


def test_the_status_says_the_dispatcher_is_not_running_and_the_admin_says_what_was_dropped(site, clock):
    """During the outage `reminders_status` lists the overdue rows and says the dispatcher is behind or not running;
    afterwards the admin's outbox, filtered to skipped, shows each reminder and pre-care note dropped, and why."""
    visit, during = missed_while_down(site, clock)
    assert (
        "Due, waiting for a claim: 4, the oldest due 1560 min ago (the dispatcher is behind, or not running)" in during
    )
    for kind in ("reminder", "pre_care"):
        assert f"2026-03-08 10:00 dec11c     {kind:<24} email    pending" in during, kind
    assert {(r.status, r.last_error) for r in rows(visit) if r.kind != MessageKind.CONFIRMATION} == {
        (OutboxStatus.SKIPPED, "too late: the appointment has started")
    }
    admin = Client()
    with time_machine.travel(w(2026, 3, 10, 12), tick=False):
        admin.force_login(get_user_model().objects.create_superuser("dec11c-root", "root@qa.example", "pw-for-qa-1"))
        page = admin.get(reverse("admin:reminders_outboxmessage_changelist"), {"status__exact": "skipped"})
    assert page.status_code == 200
    assert words(page).count("too late: the appointment has started") == 4


def test_after_the_outage_the_status_names_what_was_dropped_as_too_late(site, clock):
    """`reminders_status` lists, in its own section, what the send step dropped as too late within `--hours`: what
    the patients missed. (Was a strict-xfail QUESTION, decided: an operator asks it after an outage.)"""
    visit, _ = missed_while_down(site, clock)
    report = status_report(w(2026, 3, 10, 12))
    section = report.split("Dropped as too late in the last 24 h")[1].split("Clinics whose name")[0]
    assert section.count("too late: the appointment has started") == 4, section
    assert all(str(m.pk) in section for m in rows(visit) if m.status == OutboxStatus.SKIPPED)
    assert "too late" not in status_report(w(2026, 3, 11, 12)).split("Dropped as too late in the last 24 h")[1]
