"""Review probe (7 December, g): one patient's inbox over a year.

The other probes look at one message, one row or one change at a time. A patient sees none of that: she sees her
inbox, every e-mail and text that reached her, in the order they came. This probe lives Pat Lee's year at the London
clinic (Europe/London: GMT, then BST from 29 March to 25 October 2026) with the clock moving from event to event
(time_machine, stopped), the dispatcher run in this process at every moment a row falls due (as beat would), and each
message that goes stamped with the moment it went. Each test is a slice of the year: a microneedling course booked as
a plan across the spring clock change, a session moved by the desk and one cancelled and re-planned, sessions marked
done late in the evening, a recall, a Botox done at the sister site West and reported, an isotretinoin course, a rule
book tightened by the organisation, texts switched off by STOP and on again by START, a new phone number, a merge
with a duplicate record, and the autumn clock change.

The inbox is then read as the patient reads it, and held to what docs/reminders.md and docs/plans.md promise: no text
between 21:00 and 08:00 London time; no message twice; nothing about a visit's time after it was moved or cancelled
but the notice itself; no pre-care or reminder once the visit started or while it is held for review; no recall after
the next session was booked; "you may have X again from DATE" as the rule book in force and the history then say;
every visit she was told of either happened or was cancelled or moved with a notice; every time in a text read in the
clinic's zone, with the right GMT/BST; nothing to an old number, nothing by text while she had texts off. What the API
says of each visit (its start and status) and the desk's appointment page (its time, and every message it lists as
sent, with its time) are compared with the inbox.

Found (strict xfails): with an isotretinoin course ongoing, the microneedling aftercare names filler "possible from"
a day with no "ideally from" nor "ask the clinic", the never-lapsing warning dropped (DEFECT); a visit marked done
the next morning is thanked for "your visit today" (QUESTION, decided 7 December: the thank-you says the visit's
day as seen when it goes, "yesterday"). Everything else held on PostgreSQL and SQLite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import Appointment, StaffRole
from clinic.services import medication_course_add
from reminders.channels import LocmemSmsBackend
from reminders.consent import sms_reply
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage
from scheduler import rulebooks
from scheduler.models import IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import PatientFactory, PractitionerFactory
from tests.qa.helpers import API, ldn, staff_client, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes")]

LONDON = ZoneInfo("Europe/London")
PHONE = "+447911123456"
NEW_PHONE = "+447400123456"
START = ldn(2026, 3, 2, 9)  # the suite's Monday, 09:00 GMT
ACTIVE = {"confirmed", "pending_clearance"}
TIMED = {"confirmation", "reminder", "pre_care", "rescheduled"}  # kinds that tell the patient a visit's time
# "Tue 10 Mar, 10:00 (GMT)" as the texts and e-mails write a visit's time
WHEN = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{1,2}) (\w{3}), (\d{2}):(\d{2}) \((GMT|BST)\)")
MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


# --- The year: a clock, the dispatcher, and the inbox --------------------------------------------------------------


@dataclass
class Sent:
    seq: int
    at: datetime
    channel: str
    to: str
    subject: str
    body: str
    kind: str
    appointment_id: str
    told_start: str | None

    def __str__(self):
        return f"{self.at.astimezone(LONDON):%a %d %b %H:%M %Z} {self.channel} {self.kind} {self.body[:150]!r}"


@dataclass
class Year:
    traveller: object
    api: object
    clinical: object
    now: datetime = START
    seq: int = 0
    inbox: list[Sent] = field(default_factory=list)
    states: list[tuple[int, datetime, dict]] = field(default_factory=list)  # (seq, moment, {appointment: (start, st)})
    sms_off: list[tuple[int, int | None]] = field(default_factory=list)  # (from seq, to seq) texts switched off
    phones: list[tuple[int, str]] = field(default_factory=list)  # (from seq, the number she has)
    _mail: int = 0
    _sms: int = 0

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def go(self, moment: datetime) -> datetime:
        """Deliver everything that falls due before (and at) `moment`, each at its own time; then stop the clock there."""
        assert moment >= self.now, (moment, self.now)
        last = None
        for _ in range(3000):
            due = (
                OutboxMessage.objects.filter(status="pending", due_at__lte=moment)
                .exclude(channel="webhook")
                .order_by("due_at")
                .values_list("due_at", flat=True)
                .first()
            )
            if due is None:
                break
            step = max(due, self.now)
            if last is not None and step <= last:
                step = last + timedelta(seconds=30)  # a row waiting for its predecessor: let the clock move on
                if step > moment:
                    break
            last = step
            self.traveller.move_to(step)
            self.now = step
            dispatch_local(now=step)
            self.collect(step)
        else:  # pragma: no cover
            raise AssertionError("the dispatcher never caught up")
        self.traveller.move_to(moment)
        self.now = moment
        return moment

    def collect(self, moment: datetime) -> None:
        for message in mail.outbox[self._mail :]:
            self._add(
                moment, "email", message.to[0], message.subject, message.body, message.extra_headers["X-Outbox-Id"]
            )
        self._mail = len(mail.outbox)
        for sms in LocmemSmsBackend.outbox[self._sms :]:
            self._add(moment, "sms", sms["to"], "", sms["body"], sms["outbox_id"])
        self._sms = len(LocmemSmsBackend.outbox)

    def _add(self, moment, channel, to, subject, body, outbox_id) -> None:
        """One entry per row the message carried (several due together go as one message, sharing its provider id)."""
        row = OutboxMessage.objects.get(pk=outbox_id)
        carried = (
            OutboxMessage.objects.filter(provider_id=row.provider_id, channel=row.channel) if row.provider_id else []
        )
        seq = self.tick()
        for each in sorted(carried or [row], key=lambda r: (r.pk != row.pk, r.due_at)):
            self.inbox.append(
                Sent(
                    seq, moment, channel, to, subject, body, each.kind, str(each.appointment_id),
                    each.payload.get("told_start"),
                )
            )  # fmt: skip

    def snap(self, *patients) -> None:
        """What the visits are now, as the database holds them (after an action)."""
        state = {
            str(a.pk): (a.start_at, a.status)
            for a in Appointment.objects.filter(patient__in=[p.pk for p in patients]).only("start_at", "status")
        }
        self.states.append((self.tick(), self.now, state))

    def state_at(self, seq: int, appointment_id: str):
        found = None
        for at_seq, _, state in self.states:
            if at_seq > seq:
                break
            found = state.get(appointment_id, found)
        return found

    # --- actions through the API (a platform's key for London and West, and a clinician's) ---

    def post(self, client, path, body, status):
        response = client.post(f"{API}{path}", body, format="json")
        assert response.status_code == status, (path, response.status_code, response.content[:1500])
        return response.json()

    def get(self, path):
        response = self.api.get(f"{API}{path}")
        assert response.status_code == 200, response.content[:800]
        return response.json()


def iso(moment: datetime) -> str:
    return moment.isoformat()


def local(moment) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(LONDON)


@pytest.fixture
def world(platform_ready, clinic, west, practitioner):
    """Pat Lee at the London clinic, reached by e-mail and text; a platform key and a clinician's for London and West."""
    pat = PatientFactory(
        clinic=clinic,
        first_name="Pat",
        last_name="Lee",
        email="pat@example.com",
        phone=PHONE,
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    PractitionerFactory(clinic=west, name="Dr West")
    with time_machine.travel(START, tick=False) as traveller:
        year = Year(
            traveller=traveller,
            api=http(new_api_client(clinic, west, name="inbox-platform")[1]),
            clinical=http(new_api_client(clinic, west, name="inbox-clinical", clinical=True)[1]),
        )
        year.pat, year.clinic, year.west, year.ada = pat, clinic, west, practitioner
        year.phones.append((0, PHONE))
        yield year


# --- Reading the inbox ---------------------------------------------------------------------------------------------


def quiet_hour_texts(y: Year) -> list[str]:
    return [str(s) for s in y.inbox if s.channel == "sms" and not (8 <= local(s.at).hour < 21)]


def duplicates(y: Year) -> list[str]:
    seen, twice = set(), []
    for s in y.inbox:
        key = (s.appointment_id, s.kind, s.channel, s.subject, s.body)
        if key in seen:
            twice.append(str(s))
        seen.add(key)
    return twice


def stale(y: Year) -> list[str]:
    """Messages naming a visit's time that was not the visit's time when they went, or going once it started or
    while it was held, or a cancellation notice for a visit not cancelled."""
    wrong = []
    for s in y.inbox:
        state = y.state_at(s.seq, s.appointment_id)
        if state is None:
            continue
        start, status = state
        if s.kind in TIMED:
            if status not in ACTIVE:
                wrong.append(f"{s} -- the visit was {status}")
            elif s.told_start and datetime.fromisoformat(s.told_start) != start:
                wrong.append(f"{s} -- told {s.told_start}, the visit was at {start.isoformat()}")
            elif s.kind in {"reminder", "pre_care"} and s.at >= start:
                wrong.append(f"{s} -- after the visit started")
        if s.kind == "cancelled" and status != "cancelled":
            wrong.append(f"{s} -- the visit was {status}")
    return wrong


def misread_times(y: Year) -> list[str]:
    """Every 'Tue 10 Mar, 10:00 (GMT)' in a text or e-mail must be a London wall time with London's abbreviation."""
    wrong = []
    for s in y.inbox:
        for _, day, month, hh, mm, abbr in WHEN.findall(s.body):
            year = s.at.year + (1 if MONTHS[month] < s.at.month - 6 else 0)
            moment = datetime(year, MONTHS[month], int(day), int(hh), int(mm), tzinfo=LONDON)
            if moment.tzname() != abbr:
                wrong.append(f"{s} -- {day} {month} {hh}:{mm} is {moment.tzname()} in London, not {abbr}")
    return wrong


def texts_while_off(y: Year) -> list[str]:
    return [
        str(s)
        for s in y.inbox
        if s.channel == "sms" and any(a < s.seq and (b is None or s.seq < b) for a, b in y.sms_off)
    ]


def texts_to_old_numbers(y: Year) -> list[str]:
    wrong = []
    for s in y.inbox:
        if s.channel != "sms":
            continue
        number = [n for at_seq, n in y.phones if at_seq < s.seq][-1]
        if s.to != number:
            wrong.append(f"{s} -- to {s.to}, her number was {number}")
    return wrong


def untold_fates(y: Year) -> list[str]:
    """Every visit the inbox named a time for either happened, or its cancellation or last move was told."""
    wrong = []
    for appointment_id in {s.appointment_id for s in y.inbox if s.kind in TIMED}:
        a = Appointment.objects.get(pk=appointment_id)
        about = [s for s in y.inbox if s.appointment_id == appointment_id]
        if a.status == "completed":
            continue
        if a.status == "cancelled":
            if not any(s.kind == "cancelled" for s in about):
                wrong.append(f"{appointment_id}: cancelled, never told; last word {about[-1]}")
            continue
        last_timed = [s for s in about if s.kind in TIMED and s.told_start]
        if last_timed and datetime.fromisoformat(last_timed[-1].told_start) != a.start_at:
            wrong.append(f"{appointment_id}: now {a.start_at}, last told {last_timed[-1]}")
    return wrong


def said(moment: datetime) -> str:
    """A visit's time as the texts and e-mails write it: "Mon 6 Apr, 09:00 (BST)"."""
    moment = local(moment)
    return f"{moment:%a} {moment.day} {moment:%b}, {moment:%H:%M} ({moment.tzname()})"


def unnamed_visits(y: Year) -> list[str]:
    """A message about a visit's time (or its cancellation) names that visit's time, in London's clock."""
    wrong = []
    for s in y.inbox:
        state = y.state_at(s.seq, s.appointment_id)
        if state is None or s.kind not in TIMED | {"cancelled"}:
            continue
        if said(state[0]) not in s.body:
            wrong.append(f"{s} -- does not name {said(state[0])}")
    return wrong


def everything_coherent(y: Year) -> dict[str, list[str]]:
    found = {
        "names": unnamed_visits(y),
        "quiet hours": quiet_hour_texts(y),
        "twice": duplicates(y),
        "stale": stale(y),
        "zone": misread_times(y),
        "while off": texts_while_off(y),
        "old number": texts_to_old_numbers(y),
        "untold": untold_fates(y),
    }
    return {k: v for k, v in found.items() if v}


def about(y: Year, appointment_id: str, *kinds: str, channel: str | None = None) -> list[Sent]:
    return [
        s
        for s in y.inbox
        if s.appointment_id == appointment_id and (not kinds or s.kind in kinds) and channel in (None, s.channel)
    ]


def show(y: Year) -> str:
    return "\n".join(str(s) for s in y.inbox)


def desk_page(y: Year, appointment_id: str) -> str:
    """The appointment's page at the desk of the clinic it is at."""
    clinic = Appointment.objects.select_related("clinic").get(pk=appointment_id).clinic
    desks = y.__dict__.setdefault("desks", {})
    if clinic.pk not in desks:
        desks[clinic.pk] = staff_client(clinic, StaffRole.RECEPTIONIST, f"desk-inbox-{clinic.code}")
    response = desks[clinic.pk].get(reverse("frontdesk:appointment", args=[clinic.code, appointment_id]))
    assert response.status_code == 200
    return words(response)


def desk_agrees(y: Year, appointment_id: str) -> None:
    """The desk's appointment page lists as sent exactly the inbox's messages about the visit, each at its time."""
    page = desk_page(y, appointment_id)
    mine = about(y, appointment_id)
    assert f"Sent {len(mine)} " in page, (len(mine), page[:3000])
    for s in mine:
        assert f"Sent {local(s.at):%a} {local(s.at).day} {local(s.at):%b %Y, %H:%M}" in page, (str(s), page[:3000])


# --- Slices of the year ---------------------------------------------------------------------------------------------


def plan_course(y: Year, start_from: str) -> dict:
    body = {"template": "microneedling-course", "start_from": start_from, "clinic": str(y.clinic.pk)}
    plan = y.post(y.api, f"/patients/{y.pat.pk}/plans/", body, 201)
    y.snap(y.pat)
    return plan


def complete(y: Year, appointment_id: str, moment: datetime) -> dict:
    y.go(moment)
    done = y.post(y.clinical, f"/appointments/{appointment_id}/complete/", {}, 200)
    y.snap(y.pat)
    return done


def test_spring_course_across_the_clock_change_reads_true(world):
    """March to May: the course planned from 9 March (session 1 in GMT, the rest in BST), session 2 moved by the desk
    a week ahead of it, every session marked done late in the evening. Her inbox is coherent throughout."""
    y = world
    plan = plan_course(y, "2026-03-09")
    s1, s2, s3 = (s["appointment"] for s in plan["sessions"])
    starts = [local(s["start"]) for s in plan["sessions"]]
    assert starts[0].tzname() == "GMT" and starts[1].tzname() == "BST", starts

    # Session 1, done and marked at 21:30 (the clinician's notes at the end of the day).
    complete(y, s1, starts[0].replace(hour=21, minute=30))
    # A week before session 2 the desk moves it two days later, same time.
    y.go(starts[1] - timedelta(days=7))
    moved_to = starts[1] + timedelta(days=2)
    y.post(y.api, f"/appointments/{s2}/reschedule/", {"start": iso(moved_to)}, 201)
    y.snap(y.pat)
    complete(y, s2, moved_to.replace(hour=22, minute=15))
    s3_start = local(y.get(f"/appointments/{s3}/")["start"])
    complete(y, s3, s3_start.replace(hour=19, minute=50))
    y.go(s3_start + timedelta(days=10))

    assert everything_coherent(y) == {}, show(y)
    # Each session's booking was confirmed on both channels (the three e-mails due together go as one).
    for session in (s1, s2, s3):
        assert sorted(s.channel for s in about(y, session, "confirmation")) == ["email", "sms"], show(y)
    # The move was told on both channels, once, from the old time to the new.
    notices = about(y, s2, "rescheduled")
    assert sorted(n.channel for n in notices) == ["email", "sms"], show(y)
    assert all("(BST)" in n.body for n in notices)
    # Aftercare at completion for an evening finish: the e-mail at once, the text at 08:00 the next morning.
    for session, finished in ((s1, starts[0].replace(hour=21, minute=30)), (s2, moved_to.replace(hour=22, minute=15))):
        first = [s for s in about(y, session, "post_care") if s.at < finished + timedelta(hours=13)]
        assert {s.channel for s in first} == {"email", "sms"}, show(y)
        text = next(s for s in first if s.channel == "sms")
        assert local(text.at) == (finished + timedelta(days=1)).replace(hour=8, minute=0), str(text)
    # What the API says of each visit agrees with the inbox's last word on it.
    for session in (s1, s2, s3):
        body = y.get(f"/appointments/{session}/")
        assert body["status"] == "completed"
        told = [s for s in about(y, session) if s.kind in TIMED]
        assert datetime.fromisoformat(told[-1].told_start) == datetime.fromisoformat(body["start"]), show(y)
        desk_agrees(y, session)


def long_date(moment: datetime) -> str:
    moment = local(moment)
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def engine_says(y: Year, code: str) -> str:
    """The first day the API's eligibility answer allows `code` for her, asked now ("" when none can be given)."""
    body = y.post(y.api, "/eligibility/", {"patient": str(y.pat.pk), "procedure": code, "start": iso(y.now)}, 200)
    if body["eligible"]:
        return long_date(y.now)
    return long_date(body["earliest_eligible_start"]) if body["earliest_eligible_start"] else ""


def possible_from(message: Sent) -> dict[str, tuple[str, str]]:
    """The post-care e-mail's "When you may have other treatments again" lines: {name: (from, ideally from)}."""
    found = {}
    for name, rest in re.findall(r"^- ([^:\n]+): (.+)$", message.body, re.M):
        if "possible from" in rest:
            first, _, ideal = rest.removeprefix("possible from ").partition(", ideally from ")
            found[name] = (first, ideal)
    return found


def book(y: Year, code: str, start: datetime, clinic=None) -> str:
    body = {"patient": str(y.pat.pk), "procedure": code, "start": iso(start), "area": "face"}
    if clinic is not None:
        body["clinic"] = str(clinic.pk)
    made = y.post(y.api, "/appointments/", body, 201)
    y.snap(y.pat)
    return made["id"]


def cancel(y: Year, appointment_id: str, reason="The patient called") -> None:
    y.post(y.api, f"/appointments/{appointment_id}/cancel/", {"reason": reason}, 200)
    y.snap(y.pat)


def move(y: Year, appointment_id: str, start: datetime) -> None:
    y.post(y.api, f"/appointments/{appointment_id}/reschedule/", {"start": iso(start)}, 201)
    y.snap(y.pat)


BOTOX = "Botulinum toxin injection (Botox)"


def test_session_cancelled_then_replanned_before_its_recall_leaves_no_recall_and_no_stale_word(world):
    """March-May: the day before session 1 she cancels session 2; session 1 is done (a recall for session 2 is
    planned, as the next session has no booking); eleven days later the course is re-planned from session 2. Her
    inbox: session 2's old date named only by its confirmation and its cancellation; no recall, as she booked first;
    the re-planned sessions each confirmed or moved with a notice; the plan the API gives agrees."""
    y = world
    plan = plan_course(y, "2026-03-09")
    s1, s2, s3 = (s["appointment"] for s in plan["sessions"])
    first = local(plan["sessions"][0]["start"])
    y.go(first - timedelta(hours=22))
    cancel(y, s2)
    complete(y, s1, first.replace(hour=17, minute=40))
    y.go(first + timedelta(days=11))
    replanned = y.post(y.api, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": iso(y.now)}, 200)
    y.snap(y.pat)
    new2 = replanned["sessions"][1]["appointment"]
    assert new2 != s2
    for session in replanned["sessions"][1:]:
        complete(y, session["appointment"], local(session["start"]).replace(hour=18, minute=5))
    y.go(y.now + timedelta(days=8))

    assert everything_coherent(y) == {}, show(y)
    assert not [s for s in y.inbox if s.kind == "recall"], show(y)
    assert [s.kind for s in about(y, s2, channel="email")] == ["confirmation", "cancelled"], show(y)
    assert about(y, new2, "confirmation"), show(y)
    sessions = y.get(f"/plans/{plan['id']}/")["sessions"]
    assert [s["status"] for s in sessions] == ["completed", "completed", "completed"], sessions


def test_recall_at_ten_local_names_the_earliest_day_of_the_rule_book_then(world):
    """March-July: Botox done in March (a maintenance recall 14 weeks on, 10:00 London in June, BST); microneedling
    done on 10 June (its aftercare names Botox from three weeks on); on 12 June the organisation tightens
    "microneedling then Botox" to five weeks. The recall goes at 10:00 BST and names the earliest day as the
    tightened rule book gives it; the aftercare said the day the rule book then gave. Both agree with the API's
    eligibility answer at the moment each went."""
    y = world
    botox = book(y, "botox", ldn(2026, 3, 10, 10))
    complete(y, botox, ldn(2026, 3, 10, 10, 40))
    needling = book(y, "microneedling", ldn(2026, 6, 10, 11))
    complete(y, needling, ldn(2026, 6, 10, 12, 30))
    y.go(ldn(2026, 6, 10, 12, 31))
    [aftercare] = about(y, needling, "post_care", channel="email")
    said_then = possible_from(aftercare)[BOTOX][0]
    assert said_then == engine_says(y, "botox") == "Wednesday 1 July 2026", show(y)

    y.go(ldn(2026, 6, 12, 9))
    default = IntervalRule.objects.get(
        organisation=None, earlier_procedure_id="microneedling", later_procedure_id="botox", severity="block"
    )
    tightened = IntervalRule(
        organisation=y.pat.organisation,
        replaces=default,
        earlier_procedure_id="microneedling",
        later_procedure_id="botox",
        gap_value=5,
        gap_unit="weeks",
        severity="block",
        source="Organisation protocol",
    )
    rulebooks.rule_save(rule=tightened, user=None, reason="Longer wait after needling", now=y.now)
    y.go(ldn(2026, 6, 16, 9, 59))
    engine_now = engine_says(y, "botox")
    y.go(ldn(2026, 7, 1, 12))
    recall = about(y, botox, "recall")
    assert sorted(s.channel for s in recall) == ["email", "sms"], show(y)
    assert all(local(s.at) == ldn(2026, 6, 16, 10) for s in recall), show(y)
    assert engine_now == "Wednesday 15 July 2026"
    text = next(s for s in recall if s.channel == "sms")
    assert f"(possible from {engine_now})" in text.body, text.body
    assert everything_coherent(y) == {}, show(y)


def test_botox_reported_from_west_and_isotretinoin_hold_later_sessions_and_the_desk_tells_her(world):
    """June-August: a course from 1 June; session 1 done; on 20 June a Botox done at West on 19 June is reported
    (session 2, ten days later, now needs review: its reminders held); the desk moves session 2 clear of it; on
    10 July an isotretinoin course started 8 July is recorded (session 3 needs review), and the desk cancels it. Her
    inbox: nothing naming session 2's old day after the report but the move notice; no reminder or pre-care for a
    held visit; session 3's cancellation told; session 2's aftercare names Botox from three weeks on and ideally from
    twelve weeks after the reported one, as the engine says then."""
    y = world
    plan = plan_course(y, "2026-06-01")
    s1, s2, s3 = (s["appointment"] for s in plan["sessions"])
    starts = [local(s["start"]) for s in plan["sessions"]]
    complete(y, s1, starts[0].replace(hour=17, minute=10))
    y.go(ldn(2026, 6, 20, 11))
    y.post(
        y.api,
        f"/patients/{y.pat.pk}/procedures/",
        {"procedure": "botox", "performed_at": iso(ldn(2026, 6, 19, 15)), "clinic": str(y.west.pk)},
        201,
    )
    y.snap(y.pat)
    assert y.get(f"/appointments/{s2}/")["status"] == "needs_review"
    y.go(starts[1] - timedelta(days=3))
    held = y.get(f"/appointments/{s2}/")["reminders"]
    assert not [r for r in held if r["status"] == "pending" and r["kind"] in ("reminder", "pre_care")], held
    moved_to = ldn(2026, 7, 6, starts[1].hour, starts[1].minute)
    move(y, s2, moved_to)
    assert y.get(f"/appointments/{s2}/")["status"] == "confirmed"
    complete(y, s2, moved_to.replace(hour=18, minute=20))
    y.go(y.now + timedelta(minutes=1))
    [aftercare] = about(y, s2, "post_care", channel="email")
    assert possible_from(aftercare)[BOTOX] == (engine_says(y, "botox"), "Friday 11 September 2026"), aftercare.body

    y.go(ldn(2026, 7, 10, 12))
    medication_course_add(patient=y.pat, drug_code="isotretinoin", started_on=date(2026, 7, 8), now=y.now)
    y.snap(y.pat)
    assert y.get(f"/appointments/{s3}/")["status"] == "needs_review"
    y.go(ldn(2026, 7, 20, 10))
    cancel(y, s3, "On isotretinoin: the course is paused")
    y.go(ldn(2026, 8, 10, 10))

    assert everything_coherent(y) == {}, show(y)
    assert [s.kind for s in about(y, s3, channel="email")] == ["confirmation", "cancelled"], show(y)
    assert not [s for s in about(y, s2, "reminder", "pre_care") if s.told_start != iso(moved_to.astimezone(UTC))], show(
        y
    )


def texts_off(y: Year, number: str, word: str) -> None:
    assert sms_reply(from_number=number, body=word, now=y.now) == 1
    if word == "STOP":
        y.sms_off.append((y.tick(), None))
    else:
        y.sms_off[-1] = (y.sms_off[-1][0], y.tick())


def test_stop_on_the_morning_of_a_visit_start_the_next_day_and_a_new_number(world):
    """July-September: microneedling on Mon 3 August; she replies STOP at 08:30 that morning and START at noon the
    next day; on 6 August her number changes (the platform's PATCH); a Botox is booked for September. Her inbox:
    no text while texts were off, the at-completion aftercare by e-mail only, the +48 h and +7 days texts after START
    (docs/reminders.md, AFTERCARE_REACH), nothing to the old number after the change, and a STOP sent later from the
    old number changes nothing for her."""
    y = world
    y.go(ldn(2026, 7, 20, 11))
    visit = book(y, "microneedling", ldn(2026, 8, 3, 10))
    y.go(ldn(2026, 8, 3, 8, 30))
    texts_off(y, PHONE, "STOP")
    complete(y, visit, ldn(2026, 8, 3, 11, 15))
    y.go(ldn(2026, 8, 4, 12))
    texts_off(y, PHONE, "START")
    y.go(ldn(2026, 8, 6, 15))
    response = y.api.patch(f"{API}/patients/{y.pat.pk}/", {"phone": NEW_PHONE}, format="json")
    assert response.status_code == 200, response.content
    y.phones.append((y.tick(), NEW_PHONE))
    botox = book(y, "botox", ldn(2026, 9, 1, 10))
    y.go(ldn(2026, 8, 20, 12))
    assert sms_reply(from_number=PHONE, body="STOP", now=y.now) == 0
    y.go(ldn(2026, 9, 10, 12))

    assert everything_coherent(y) == {}, show(y)
    aftercare = about(y, visit, "post_care")
    assert [s.channel for s in aftercare if s.at < ldn(2026, 8, 4, 12)] == ["email"], show(y)
    later_texts = [s for s in aftercare if s.channel == "sms"]
    assert [local(s.at) for s in later_texts] == [ldn(2026, 8, 5, 11, 15), ldn(2026, 8, 10, 11, 15)], show(y)
    assert [s.to for s in later_texts] == [PHONE, NEW_PHONE], show(y)  # the number she has when each goes
    told = about(y, botox, "confirmation", "reminder", channel="sms")
    assert [s.kind for s in told] == ["confirmation", "reminder"] and {s.to for s in told} == {NEW_PHONE}, show(y)


def test_a_duplicate_record_merged_in_brings_its_visit_and_the_stricter_consent(world):
    """August-October: a second record of the same woman ("Patricia Lee", her work e-mail, texts off) has a Botox
    booked at West for 14 September, confirmed to that e-mail. Pat's own microneedling is booked for 21 September.
    On 1 September a clinician merges the duplicate into Pat: the merged consent keeps texts off, the microneedling
    (a week after the Botox) now needs review, and the desk moves it to 28 September. Her inbox: no text after the
    merge, the Botox reminder once (to Pat's address, the survivor's), nothing for the held visit, the move told by
    e-mail, the merged-away record's address used for nothing after the merge."""
    y = world
    y.go(ldn(2026, 8, 10, 11))
    twin = PatientFactory(
        clinic=y.clinic,
        first_name="Patricia",
        last_name="Lee",
        email="patricia.lee@work.example",
        phone=PHONE,
        reminder_channels=["email"],
        sms_consent=False,
    )
    made = y.post(
        y.api,
        "/appointments/",
        {"patient": str(twin.pk), "procedure": "botox", "start": iso(ldn(2026, 9, 14, 10)), "clinic": str(y.west.pk)},
        201,
    )
    twin_botox = made["id"]
    needling = book(y, "microneedling", ldn(2026, 9, 21, 11))
    y.snap(y.pat, twin)
    y.go(ldn(2026, 9, 1, 9, 30))
    patient_merge(merged=twin, into=y.pat, now=y.now, actor_label="Dr Ada", clinical=True)
    y.sms_off.append((y.tick(), None))
    y.snap(y.pat)
    assert y.get(f"/appointments/{needling}/")["status"] == "needs_review"
    y.go(ldn(2026, 9, 2, 10))
    move(y, needling, ldn(2026, 9, 28, 11))
    assert y.get(f"/appointments/{needling}/")["status"] == "confirmed"
    y.go(ldn(2026, 10, 5, 10))

    assert everything_coherent(y) == {}, show(y)
    merged_at = ldn(2026, 9, 1, 9, 30)
    assert not [s for s in y.inbox if s.at > merged_at and s.to == "patricia.lee@work.example"], show(y)
    assert [(s.kind, s.to) for s in about(y, twin_botox, "reminder")] == [("reminder", "pat@example.com")], show(y)
    assert [s.channel for s in about(y, needling, "rescheduled")] == ["email"], show(y)
    desk_agrees(y, needling)
    desk_agrees(y, twin_botox)


def test_autumn_clock_change_visit_recall_and_what_the_desk_shows(world):
    """July-November: a Botox done on 20 July (its recall falls on Mon 26 October, the day after the clocks go
    back); microneedling booked in BST for Fri 23 October and moved by the desk to Mon 26 October 09:00 GMT. Her
    inbox: the move notice from "(BST)" to "(GMT)", the day-before reminder on Sunday 25 October at 09:00 GMT, the
    recall at 10:00 GMT naming the earliest Botox day the engine gives then; the desk's appointment page and the
    API show the same local time as the last message."""
    y = world
    y.go(ldn(2026, 7, 20, 9))
    botox = book(y, "botox", ldn(2026, 7, 20, 10))
    complete(y, botox, ldn(2026, 7, 20, 10, 35))
    y.go(ldn(2026, 10, 1, 10))
    needling = book(y, "microneedling", ldn(2026, 10, 23, 9))
    y.go(ldn(2026, 10, 9, 16))
    move(y, needling, ldn(2026, 10, 26, 9))
    y.go(ldn(2026, 10, 26, 8, 50))
    engine_then = engine_says(y, "botox")
    y.go(ldn(2026, 10, 26, 10, 30))
    complete(y, needling, ldn(2026, 10, 26, 10, 40))
    y.go(ldn(2026, 11, 5, 12))

    assert everything_coherent(y) == {}, show(y)
    [notice] = about(y, needling, "rescheduled", channel="sms")
    assert "Mon 26 Oct, 09:00 (GMT)" in notice.body and "Fri 23 Oct, 09:00 (BST)" in notice.body, notice.body
    reminders = about(y, needling, "reminder")
    assert {local(s.at) for s in reminders} == {ldn(2026, 10, 25, 9)}, show(y)
    recall = about(y, botox, "recall")
    assert sorted(s.channel for s in recall) == ["email", "sms"], show(y)
    assert {local(s.at) for s in recall} == {ldn(2026, 10, 26, 10)}, show(y)
    assert local(recall[0].at).tzname() == "GMT"
    sms = next(s for s in recall if s.channel == "sms")
    assert engine_then == "Monday 16 November 2026"
    assert f"(possible from {engine_then})" in sms.body, (engine_then, sms.body)

    body = y.get(f"/appointments/{needling}/")
    assert local(body["start"]) == ldn(2026, 10, 26, 9) and body["start"].endswith("+00:00"), body
    page = desk_page(y, needling)
    assert "When Monday 26 October 2026, 09:00–10:00 (Europe/London)" in page, page[:800]
    desk_agrees(y, needling)
    desk_agrees(y, botox)


def autumn_course_then_isotretinoin(y: Year) -> tuple[dict, list[str]]:
    """A course from 7 September, session 1 done that afternoon, an isotretinoin course started 10 September recorded
    that day (sessions 2 and 3, still booked, now need review)."""
    y.go(ldn(2026, 9, 1, 10))
    plan = plan_course(y, "2026-09-07")
    sessions = [s["appointment"] for s in plan["sessions"]]
    first = local(plan["sessions"][0]["start"])
    complete(y, sessions[0], first.replace(hour=16, minute=30))
    y.go(ldn(2026, 9, 10, 12))
    medication_course_add(patient=y.pat, drug_code="isotretinoin", started_on=date(2026, 9, 10), now=y.now)
    y.snap(y.pat)
    assert {y.get(f"/appointments/{s}/")["status"] for s in sessions[1:]} == {"needs_review"}
    return plan, sessions


def test_isotretinoin_then_the_course_cancelled_whole_tells_each_visit(world):
    """September-November: isotretinoin recorded mid-course (sessions 2 and 3 need review); on 25 September the desk
    cancels the course whole. Her inbox: each held session's cancellation told on both channels, naming its own day,
    and no reminder or pre-care for either."""
    y = world
    plan, (_, s2, s3) = autumn_course_then_isotretinoin(y)
    y.go(ldn(2026, 9, 25, 11))
    y.post(y.api, f"/plans/{plan['id']}/cancel/", {"reason": "Isotretinoin started"}, 200)
    y.snap(y.pat)
    y.go(ldn(2026, 11, 20, 10))

    assert everything_coherent(y) == {}, show(y)
    for session in (s2, s3):
        assert sorted(s.channel for s in about(y, session, "cancelled")) == ["email", "sms"], show(y)
        assert not about(y, session, "reminder", "pre_care"), show(y)


def test_aftercare_during_an_isotretinoin_course_keeps_the_fillers_warning(world):
    """The week-on aftercare of session 1, sent after the isotretinoin course was recorded, names filler either with
    an 'ideally from' or as 'please ask the clinic': with warnings as blocks no day can be given (the course has no
    end yet), which is later than any day, not the same as none."""
    y = world
    _, (s1, _, _) = autumn_course_then_isotretinoin(y)
    y.go(ldn(2026, 9, 20, 10))
    week_on = [s for s in about(y, s1, "post_care", channel="email") if s.at > ldn(2026, 9, 10, 12)]
    assert len(week_on) == 1, show(y)
    assert "Dermal filler" in week_on[0].body, week_on[0].body
    filler = possible_from(week_on[0]).get("Dermal filler (e.g. hyaluronic acid, Juvederm)")
    assert filler is None or filler[1], week_on[0].body
    assert re.search(r"^- Dermal filler[^:\n]*: please ask the clinic before booking$", week_on[0].body, re.M)


def test_two_records_each_with_a_botox_recall_merged_leave_her_one_recall(world):
    """May-October: Pat's Botox done on 1 June; her duplicate record's Botox done on 15 June at West (each plans a
    recall, 14 weeks on: 7 and 21 September). On 1 August the duplicate is merged into Pat. Her inbox holds one
    recall, the later treatment's, at 10:00 London time."""
    y = world
    y.go(ldn(2026, 5, 20, 10))
    twin = PatientFactory(
        clinic=y.clinic,
        first_name="Patricia",
        last_name="Lee",
        email="patricia.lee@work.example",
        phone=PHONE,
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    own = book(y, "botox", ldn(2026, 6, 1, 10))
    other = y.post(
        y.api,
        "/appointments/",
        {"patient": str(twin.pk), "procedure": "botox", "start": iso(ldn(2026, 6, 15, 10)), "clinic": str(y.west.pk)},
        201,
    )["id"]
    y.snap(y.pat, twin)
    complete(y, own, ldn(2026, 6, 1, 10, 30))
    y.go(ldn(2026, 6, 15, 10, 30))
    y.post(y.clinical, f"/appointments/{other}/complete/", {}, 200)
    y.snap(y.pat, twin)
    y.go(ldn(2026, 8, 1, 9))
    patient_merge(merged=twin, into=y.pat, now=y.now, actor_label="Dr Ada", clinical=True)
    y.snap(y.pat)
    y.go(ldn(2026, 10, 1, 10))

    assert everything_coherent(y) == {}, show(y)
    recalls = [s for s in y.inbox if s.kind == "recall"]
    assert sorted((s.appointment_id, s.channel) for s in recalls) == [(other, "email"), (other, "sms")], show(y)
    assert {local(s.at) for s in recalls} == {ldn(2026, 9, 21, 10)}, show(y)


def test_the_nights_the_clocks_change_keep_texts_out_of_the_small_hours(world):
    """March and October: a Botox on Sat 28 March (GMT) marked done at 21:30, its aftercare text held to 08:00 on the
    Sunday the clocks go forward (07:00 UTC); a microneedling booked at 21:40 on Sat 24 October (BST) for Monday
    26 October 09:00 (GMT), and a microneedling done on Sat 24 October marked at 21:40 BST: its texts at 08:00 GMT on
    the Sunday, its +7 days text (Sat 31 October 21:40 GMT) held to 08:00 on 1 November. No text between 21:00 and
    08:00 London time all year."""
    y = world
    botox = book(y, "botox", ldn(2026, 3, 28, 17))
    complete(y, botox, ldn(2026, 3, 28, 21, 30))
    y.go(ldn(2026, 4, 2, 12))
    [text] = about(y, botox, "post_care", channel="sms")
    assert text.at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC), str(text)

    y.go(ldn(2026, 10, 10, 10))
    needling = book(y, "microneedling", ldn(2026, 10, 24, 16))
    complete(y, needling, ldn(2026, 10, 24, 21, 40))
    y.go(ldn(2026, 10, 24, 21, 45))
    booked_late = book(y, "plasma_pen", ldn(2026, 11, 2, 9))
    y.go(ldn(2026, 11, 10, 12))

    assert everything_coherent(y) == {}, show(y)
    texts = about(y, needling, "post_care", channel="sms")
    assert [local(s.at) for s in texts][0] == ldn(2026, 10, 25, 8), show(y)
    assert local(texts[-1].at) == ldn(2026, 11, 1, 8), show(y)
    [confirmed] = about(y, booked_late, "confirmation", channel="sms")
    assert local(confirmed.at) == ldn(2026, 10, 25, 8), str(confirmed)


def test_moves_on_the_eve_of_a_visit_read_true(world):
    """May: a Botox on Tue 12 May 10:00; its day-before reminder goes on Monday at 10:00. At 15:00 the desk moves it to
    Wednesday, at 15:02 back to Tuesday (inside the change grace: no notice, and no second reminder, as she was told
    this very time); at 16:00 it moves to Thu 14 May 10:00 for good. Her inbox: one move notice, from Tuesday to
    Thursday; the reminder again on Wednesday for Thursday; nothing naming Wednesday."""
    y = world
    y.go(ldn(2026, 5, 1, 10))
    botox = book(y, "botox", ldn(2026, 5, 12, 10))
    y.go(ldn(2026, 5, 11, 15))
    move(y, botox, ldn(2026, 5, 13, 10))
    y.go(ldn(2026, 5, 11, 15, 2))
    move(y, botox, ldn(2026, 5, 12, 10))
    y.go(ldn(2026, 5, 11, 16))
    move(y, botox, ldn(2026, 5, 14, 10))
    y.go(ldn(2026, 5, 20, 10))

    assert everything_coherent(y) == {}, show(y)
    notices = about(y, botox, "rescheduled", channel="sms")
    assert len(notices) == 1 and "Thu 14 May, 10:00 (BST)" in notices[0].body, show(y)
    assert "Tue 12 May, 10:00 (BST)" in notices[0].body, notices[0].body
    assert not [s for s in y.inbox if "Wed 13 May" in s.body], show(y)
    reminders = about(y, botox, "reminder", channel="sms")
    assert [local(s.at) for s in reminders] == [ldn(2026, 5, 11, 10), ldn(2026, 5, 13, 10)], show(y)
    desk_agrees(y, botox)


def test_aftercare_of_a_visit_marked_done_the_next_morning_does_not_say_today(world):
    """A visit marked done the next morning (the clinician's notes at 08:45 the day after) sends the at-completion
    aftercare then (its moment is the marking, docs/reminders.md), which thanks her for her visit yesterday, not
    today: the shipped texts say the visit's day as seen when they go (reminders 0025). (Was a strict-xfail
    QUESTION.)"""
    y = world
    y.go(ldn(2026, 6, 1, 10))
    needling = book(y, "microneedling", ldn(2026, 6, 8, 17))
    complete(y, needling, ldn(2026, 6, 9, 8, 45))
    y.go(ldn(2026, 6, 9, 9))
    [aftercare] = about(y, needling, "post_care", channel="email")
    assert local(aftercare.at).date() == date(2026, 6, 9)
    assert "your visit today" not in aftercare.body, aftercare.body
    assert "Thank you for your visit yesterday." in aftercare.body, aftercare.body


def test_the_inbox_readers_catch_what_they_look_for():
    """The readers above are not vacuous: a made-up inbox with a text at 22:00, the same text twice, a BST that is
    GMT, a text while texts were off and one to the old number is caught by each."""
    y = Year(traveller=None, api=None, clinical=None)
    y.phones = [(0, PHONE), (3, NEW_PHONE)]
    y.sms_off = [(4, 6)]
    body = "London Clinic: your appointment is booked for Mon 26 Oct, 09:00 (BST)."
    y.inbox = [
        Sent(1, ldn(2026, 10, 1, 22), "sms", PHONE, "", body, "confirmation", "a", None),
        Sent(2, ldn(2026, 10, 2, 10), "sms", PHONE, "", body, "confirmation", "a", None),
        Sent(5, ldn(2026, 10, 3, 10), "sms", PHONE, "", "London Clinic aftercare.", "post_care", "a", None),
    ]
    assert len(quiet_hour_texts(y)) == 1
    assert len(duplicates(y)) == 1
    assert len(misread_times(y)) == 2
    assert len(texts_while_off(y)) == 1
    assert len(texts_to_old_numbers(y)) == 1
