"""A stateful sweep of one organisation's patients over time, through the services (not HTTP).

Hypothesis drives random sequences of what happens to two records of one organisation with a London and a New
York clinic: bookings, moves, cancellations, completions, clearances, procedures reported as done elsewhere,
isotretinoin and anticoagulant courses begun and ended, the intake replaced, the organisation's rule book
tightened, relaxed, disabled and reverted, time passing, and the two records merged. After every step an
oracle written here from the domain brief (sections 2, 3 and 6: calendar gaps on local dates with
relativedelta, hours as elapsed time, both directions, cancelled events ignored, an ongoing course blocking
every date, block vs warn, absolute vs relative) checks that what the services left in the database holds.

The oracle keeps its own model of the record and of the rule book (written out below from the brief, not read
from fixtures/rules.json or the engine). A calendar gap between events at two clinics in different zones
compares each event's date where it happens, in its own clinic's zone (docs/rules.md; undecided until 5 December,
when the oracle asserted only what every reading agreed on). Both records live at the London clinic (a reported
day is read in the home clinic's zone), and appointments are within working hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import time_machine
from dateutil.relativedelta import relativedelta
from django.db import transaction
from django.test import TestCase as DjangoTestCase
from django.test import override_settings
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from clinic.merging import MergeConflict, patient_merge
from clinic.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus, MedicationCourse, Patient
from clinic.services import (
    IntakeLine,
    conditions_replace,
    medication_course_add,
    medication_course_end,
    procedure_record_add,
)
from core.errors import InvalidTransition
from reminders.defaults import care_texts_load
from reminders.models import MessageKind, OutboxMessage, OutboxStatus
from scheduler import defaults, rulebooks, versioned
from scheduler.booking import (
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_clear,
    appointment_complete,
    appointment_mark_no_show,
    appointment_reschedule,
)
from scheduler.models import ContraindicationRule, IntervalRule
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, LONDON, NEW_YORK, RECEPTION

# --- The oracle's rule book: domain brief sections 2, 3 and 6, written out -----------------------------------


@dataclass(frozen=True)
class Gap:
    """`later` may start no sooner than `value unit` after `earlier` (a procedure, or the end of a drug's course)."""

    earlier: str
    later: str
    value: int
    unit: str  # hours, days, weeks, months
    severity: str  # block or warn
    drug: bool = False
    active: bool = True


@dataclass(frozen=True)
class Contra:
    """A condition on the intake (any status, or active only) or a course covering the day, against a procedure."""

    procedure: str
    cause: str
    severity: str  # absolute or relative
    active_only: bool = False
    drug: bool = False
    active: bool = True


# Section 2 (sourced) and section 6 (repeats, clinic practice, warn). Keys are the shipped defaults' keys.
DEFAULT_GAPS = {
    "botox-then-microneedling": Gap("botox", "microneedling", 2, "weeks", "block"),
    "filler-then-microneedling": Gap("filler", "microneedling", 4, "weeks", "block"),
    "microneedling-then-botox": Gap("microneedling", "botox", 3, "weeks", "block"),
    "microneedling-then-filler": Gap("microneedling", "filler", 3, "weeks", "block"),
    "microneedling-then-plasma-pen-block": Gap("microneedling", "plasma_pen", 7, "days", "block"),
    "microneedling-then-plasma-pen-warn": Gap("microneedling", "plasma_pen", 10, "days", "warn"),
    "isotretinoin-then-microneedling-block": Gap("isotretinoin", "microneedling", 6, "months", "block", drug=True),
    "isotretinoin-then-microneedling-warn": Gap("isotretinoin", "microneedling", 12, "months", "warn", drug=True),
    "isotretinoin-then-filler-warn": Gap("isotretinoin", "filler", 12, "months", "warn", drug=True),
    "botox-repeat": Gap("botox", "botox", 12, "weeks", "warn"),
    "filler-repeat": Gap("filler", "filler", 2, "weeks", "warn"),
    "microneedling-repeat": Gap("microneedling", "microneedling", 4, "weeks", "warn"),
    "plasma-pen-repeat": Gap("plasma_pen", "plasma_pen", 6, "weeks", "warn"),
}

# Section 3, for the conditions and drugs this sweep records ("active ..." in the brief: active only).
DEFAULT_CONTRAS = {
    "microneedling-eczema": Contra("microneedling", "eczema", "relative"),
    "filler-eczema": Contra("filler", "eczema", "relative"),
    "microneedling-skin_infection": Contra("microneedling", "skin_infection", "absolute", active_only=True),
    "filler-skin_infection": Contra("filler", "skin_infection", "absolute", active_only=True),
    "microneedling-clotting_disorder": Contra("microneedling", "clotting_disorder", "absolute"),
    "filler-clotting_disorder": Contra("filler", "clotting_disorder", "relative"),
    "microneedling-keloid_scarring": Contra("microneedling", "keloid_scarring", "relative"),
    "filler-keloid_scarring": Contra("filler", "keloid_scarring", "relative"),
    "filler-filler_allergy": Contra("filler", "filler_allergy", "absolute"),
    "microneedling-anticoagulant": Contra("microneedling", "anticoagulant", "absolute", drug=True),
    "filler-anticoagulant": Contra("filler", "anticoagulant", "relative", drug=True),
}
CONDITIONS = sorted({c.cause for c in DEFAULT_CONTRAS.values() if not c.drug})
DRUGS = ["isotretinoin", "anticoagulant"]

# What the organisation may do to its rule book: (default key, new gap or severity, active), or "revert".
GAP_CHANGES = [
    ("botox-then-microneedling", (4, "weeks", "block"), True),  # tightened
    ("botox-then-microneedling", (1, "weeks", "block"), True),  # relaxed
    ("botox-then-microneedling", (2, "weeks", "block"), False),  # disabled
    ("botox-then-microneedling", None, None),  # back to the default
    ("microneedling-then-botox", (5, "weeks", "block"), True),
    ("microneedling-then-botox", (10, "days", "block"), True),
    ("microneedling-then-botox", None, None),
    ("filler-then-microneedling", (2, "weeks", "block"), True),
    ("filler-then-microneedling", (4, "weeks", "block"), False),
    ("filler-then-microneedling", None, None),
    ("isotretinoin-then-microneedling-block", (9, "months", "block"), True),
    ("isotretinoin-then-microneedling-block", (3, "months", "block"), True),
    ("isotretinoin-then-microneedling-block", (6, "months", "block"), False),
    ("isotretinoin-then-microneedling-block", None, None),
    ("microneedling-then-plasma-pen-warn", (10, "days", "block"), True),  # a warning made a block
    ("microneedling-then-plasma-pen-warn", None, None),
    ("botox-repeat", (12, "weeks", "block"), True),  # a repeat rule (earlier == later) made a block
    ("botox-repeat", (4, "weeks", "block"), True),
    ("botox-repeat", None, None),
]
CONTRA_CHANGES = [
    ("microneedling-eczema", "absolute", True),  # tightened
    ("microneedling-eczema", None, None),
    ("microneedling-anticoagulant", "absolute", False),  # disabled
    ("microneedling-anticoagulant", None, None),
    ("filler-clotting_disorder", "absolute", True),
    ("filler-clotting_disorder", None, None),
]
# What an organisation's override of a default rule copies from it: what the rule is about.
RULE_SUBJECT = {
    IntervalRule: ("earlier_procedure_id", "earlier_medication_id", "later_procedure_id"),
    ContraindicationRule: ("condition_id", "medication_id", "procedure_id", "applies_to", "area_specific"),
}
ADDED = "qa-botox-then-filler-48h"  # a rule of the organisation's own, in hours
ADDED_GAP = Gap("botox", "filler", 48, "hours", "block")

# --- The world ------------------------------------------------------------------------------------------------

ZONES: dict[str, tzinfo] = {"ldn": LONDON, "nyc": NEW_YORK}
DURATION = {"botox": 30, "filler": 45, "microneedling": 60, "plasma_pen": 60}  # minutes, as the catalogue ships
PROCEDURES = sorted(DURATION)
CLOCKS = [time(8, 0), time(9, 0), time(10, 0), time(13, 0), time(14, 0), time(16, 30), time(17, 0)]  # 08:00: closed
WORK_FROM, WORK_TO = time(9, 0), time(18, 0)  # the factory's hours, Monday to Saturday
CARE_KINDS = (MessageKind.CONFIRMATION, MessageKind.REMINDER, MessageKind.PRE_CARE)
HOLDING = (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.NEEDS_REVIEW)
MINUTE = timedelta(minutes=1)


def add_gap(day: date, gap: Gap) -> date:
    if gap.unit == "months":
        return day + relativedelta(months=gap.value)
    return day + timedelta(days=gap.value * (7 if gap.unit == "weeks" else 1))


def local_day(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


@dataclass(frozen=True)
class Event:
    """A procedure in a patient's timeline: done (reported or completed) or booked (active); `tz`: its clinic's."""

    ref: str
    procedure: str
    at: datetime
    tz: tzinfo


@dataclass
class Appt:
    key: str
    pk: object
    patient: str
    clinic: str
    procedure: str
    start: datetime
    end: datetime
    state: str = "active"  # active, cancelled, completed, no_show
    cleared: frozenset = frozenset()


@dataclass
class Course:
    pk: object
    patient: str
    drug: str
    started_on: date
    ended_on: date | None


@dataclass
class Verdict:
    """What the brief says of a procedure at a moment: `blocked` holds every answer some reading gives."""

    blocked: set = field(default_factory=set)
    unbounded: bool = False  # something blocks now with no end (an ongoing course, a condition)
    endless_later: bool = False  # an ongoing course that starts later will block with no end
    relative: set = field(default_factory=set)  # ids of relative contraindications that apply
    broken_possible: set = field(default_factory=set)  # ids of block rules broken in some reading
    broken_certain: set = field(default_factory=set)  # ids broken in every reading
    why: list = field(default_factory=list)

    @property
    def may_block(self) -> bool:
        return True in self.blocked

    @property
    def may_pass(self) -> bool:
        return False in self.blocked or not self.blocked


class CareMachine(RuleBasedStateMachine):
    """Two records (P1, P2) of one organisation, its London and New York clinics, and an oracle of the brief."""

    appointments = Bundle("appointments")

    def __init__(self) -> None:
        super().__init__()
        versioned.forget()  # copies of rule books kept from an earlier example's rolled-back versions
        self._atomic = transaction.atomic()
        self._atomic.__enter__()  # every example's writes are rolled back in teardown
        self.now = CLOCK  # Monday 2 March 2026, 09:00 UTC: the same date in London and New York
        organisation = OrganisationFactory(code="qa-care-chain")
        self.organisation = organisation
        self.clinics = {
            "ldn": ClinicFactory(code="qa-care-ldn", timezone="Europe/London", organisation=organisation),
            "nyc": ClinicFactory(code="qa-care-nyc", timezone="America/New_York", organisation=organisation),
        }
        for key, clinic in self.clinics.items():
            PractitionerFactory(clinic=clinic, name=f"Dr {key}")
        self.patients = {
            "P1": PatientFactory(clinic=self.clinics["ldn"], first_name="Pat"),
            "P2": PatientFactory(clinic=self.clinics["ldn"], first_name="Patricia", email="pat.two@example.com"),
        }
        self.owner = {"P1": "P1", "P2": "P2"}
        self.appts: dict[str, Appt] = {}
        self.done: list[tuple[str, Event]] = []  # (patient key, event)
        self.courses: list[Course] = []
        self.intake: dict[str, dict[str, str]] = {"P1": {}, "P2": {}}  # condition -> status
        # The rule book as the organisation has made it: overrides by default key (None: the default stands).
        self.gap_overrides: dict[str, Gap] = {}
        self.contra_overrides: dict[str, Contra] = {}
        self.added = False
        # Rule ids as the engine names them (review reasons, clearances): the defaults', then each override's.
        self.rule_ids = {
            key: str(pk)
            for model, keys in ((IntervalRule, DEFAULT_GAPS), (ContraindicationRule, DEFAULT_CONTRAS))
            for key, pk in model.objects.filter(organisation__isnull=True, default_key__in=keys).values_list(
                "default_key", "pk"
            )
        }
        assert set(self.rule_ids) == set(DEFAULT_GAPS) | set(DEFAULT_CONTRAS), "the shipped defaults' keys changed"
        self.default_ids = dict(self.rule_ids)
        self.counter = 0
        self.status_of: dict[str, str] = {}  # as the last check read them

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)
        versioned.forget()

    # --- The model ------------------------------------------------------------------------------------------

    def live(self, key: str) -> str:
        return self.owner[key]

    def patient(self, key: str) -> Patient:
        return Patient.objects.get(pk=self.patients[self.live(key)].pk)

    def today(self) -> date:
        return local_day(self.now, LONDON)  # the same date in New York at 09:00 UTC

    def gaps(self) -> dict[str, Gap]:
        found = {key: self.gap_overrides.get(key, gap) for key, gap in DEFAULT_GAPS.items()}
        if self.added:
            found[ADDED] = ADDED_GAP
        return {key: gap for key, gap in found.items() if gap.active}

    def contras(self) -> dict[str, Contra]:
        found = {key: self.contra_overrides.get(key, c) for key, c in DEFAULT_CONTRAS.items()}
        return {key: c for key, c in found.items() if c.active}

    def events(self, patient: str, ignore: str | None = None) -> list[Event]:
        """What counts: procedures done, and appointments still holding their slot (not cancelled, missed or done)."""
        found = [event for owner, event in self.done if self.live(owner) == patient]
        for appt in self.appts.values():
            if appt.state == "active" and self.live(appt.patient) == patient and appt.key != ignore:
                found.append(Event(appt.key, appt.procedure, appt.start, ZONES[appt.clinic]))
        return found

    def verdict(self, patient: str, procedure: str, start: datetime, tz: tzinfo, ignore: str | None = None) -> Verdict:
        """Brief 2 and 3 for `procedure` at `start` at a clinic in `tz`, against the patient's record."""
        out = Verdict()
        pairs: list[tuple[str, set]] = []
        day = local_day(start, tz)
        events = self.events(patient, ignore)
        courses = [c for c in self.courses if self.live(c.patient) == patient]
        for key, gap in self.gaps().items():
            if gap.severity != "block":
                continue
            if gap.drug:
                if gap.later != procedure:
                    continue
                for course in courses:
                    if course.drug != gap.earlier:
                        continue
                    if course.started_on > day:  # docs/rules.md: a course recorded for the future blocks from its start
                        out.endless_later = out.endless_later or course.ended_on is None
                        continue
                    if course.ended_on is None:
                        out.unbounded = True  # "a course that has not ended blocks every date"
                        pairs.append((key, {True}))
                    elif day < add_gap(course.ended_on, gap):
                        pairs.append((key, {True}))
                continue
            for other in events:
                if gap.later == procedure and gap.earlier == other.procedure and other.at <= start:
                    pairs.append((key, self._pair(gap, (other.at, other.tz), (start, tz))))
                if gap.earlier == procedure and gap.later == other.procedure and other.at >= start:
                    pairs.append((key, self._pair(gap, (start, tz), (other.at, other.tz))))
        conditions = self.intake[patient]
        for key, contra in self.contras().items():
            if contra.procedure != procedure:
                continue
            if contra.drug:
                out.endless_later = out.endless_later or (
                    contra.severity == "absolute"
                    and any(c.drug == contra.cause and c.ended_on is None and c.started_on > day for c in courses)
                )
                holds = [
                    c
                    for c in courses
                    if c.drug == contra.cause and c.started_on <= day and (c.ended_on is None or day <= c.ended_on)
                ]
                endless = any(c.ended_on is None for c in holds)
            else:
                status = conditions.get(contra.cause)
                holds = [status] if status and (not contra.active_only or status == "active") else []
                endless = True
            if not holds:
                continue
            if contra.severity == "absolute":
                out.unbounded = out.unbounded or endless
                pairs.append((key, {True}))
            else:
                out.relative.add(self.rule_ids[key])
        for key, answers in pairs:
            if True in answers:
                out.broken_possible.add(self.rule_ids[key])
                out.why.append(key)
            if answers == {True}:
                out.broken_certain.add(self.rule_ids[key])
        if any(True in answers for _, answers in pairs):
            out.blocked.add(True)
        if all(False in answers for _, answers in pairs):
            out.blocked.add(False)
        return out

    @staticmethod
    def _pair(gap: Gap, earlier: tuple[datetime, tzinfo], later: tuple[datetime, tzinfo]) -> set:
        """Whether `later` starts too soon after `earlier` (a set of the one answer): a calendar gap compares each
        event's date in its own clinic's zone."""
        (a, a_tz), (b, b_tz) = earlier, later
        if gap.unit == "hours":
            return {b - a < timedelta(hours=gap.value)}
        return {local_day(b, b_tz) < add_gap(local_day(a, a_tz), gap)}

    def availability(self, patient: str, clinic: str, start: datetime, end: datetime, ignore=None) -> list[str]:
        """Why the clinic's one practitioner or the patient cannot take [start, end)."""
        tz = ZONES[clinic]
        local_start, local_end = start.astimezone(tz), end.astimezone(tz)
        problems = []
        if (
            local_start.weekday() == 6
            or local_start.date() != local_end.date()
            or not (WORK_FROM <= local_start.time() and local_end.time() <= WORK_TO)
        ):
            problems.append("outside working hours")
        for appt in self.appts.values():
            if appt.state != "active" or appt.key == ignore or not (appt.start < end and start < appt.end):
                continue
            if appt.clinic == clinic:
                problems.append(f"practitioner busy with {appt.key}")
            if self.live(appt.patient) == patient:
                problems.append(f"patient busy with {appt.key}")
        return problems

    # --- Checking a refusal ----------------------------------------------------------------------------------

    def check_refusal(self, refusal: UnableToBook, verdict: Verdict, problems: list[str], ask: dict) -> None:
        """Brief 2: a refusal names what forbids it and the earliest start that would satisfy every rule.

        `ask`: the verdict's arguments (patient, procedure, start, tz, ignore), the clinic and the booking's length.
        """
        check = refusal.check
        start, tz = ask["start"], ask["tz"]
        context = (ask, verdict.why, problems)

        def at(moment: datetime) -> Verdict:
            return self.verdict(ask["patient"], ask["procedure"], moment, tz, ask.get("ignore"))

        assert check.blocking, context
        if not verdict.may_block:
            assert not check.evaluation.blocking, ([v.message for v in check.evaluation.blocking], context)
            assert check.earliest_eligible_start == start, (check.earliest_eligible_start, context)
        elif not verdict.may_pass:
            assert check.evaluation.blocking, context
        earliest = check.earliest_eligible_start
        if verdict.unbounded:
            assert earliest is None, ("an earliest start, yet something blocks for ever", earliest, context)
        elif earliest is None:
            assert verdict.endless_later, ("no earliest start, yet nothing blocks for ever", context)
        elif verdict.may_block and check.evaluation.blocking:
            assert earliest >= start, (earliest, context)
            assert at(earliest).may_pass, ("the earliest start is itself refused", earliest, at(earliest).why, context)
            assert at(earliest - MINUTE).may_block, ("a minute before the earliest start is allowed", earliest, context)
            # Every third local midnight between the start asked for and the earliest one is still too soon.
            day = local_day(start, tz) + timedelta(days=1)
            while (moment := datetime.combine(day, time.min, tzinfo=tz)) < earliest:
                assert at(moment).may_block, ("allowed before the earliest start", moment, earliest, context)
                day += timedelta(days=3)
        slot = check.next_available_slot
        if slot is not None:
            assert at(slot.start_at).may_pass, ("the next slot offered is refused", slot, at(slot.start_at).why)
            assert slot.end_at - slot.start_at == ask["length"], (slot, context)
            taken = self.availability(ask["patient"], ask["clinic"], slot.start_at, slot.end_at, ask.get("ignore"))
            assert not taken, ("the next slot offered is not free", slot, taken, context)

    def expected_status(self, verdict: Verdict, cleared: frozenset) -> str:
        return AppointmentStatus.PENDING_CLEARANCE if verdict.relative - cleared else AppointmentStatus.CONFIRMED

    def fresh(self, key: str) -> Appointment:
        return Appointment.objects.get(pk=self.appts[key].pk)

    # --- Steps: the front desk -----------------------------------------------------------------------------

    @initialize(
        target=appointments,
        lines=st.lists(
            st.tuples(st.sampled_from(CONDITIONS), st.sampled_from(["active", "history"])),
            min_size=1,
            max_size=2,
            unique_by=lambda line: line[0],
        ),
        bookings=st.lists(
            st.tuples(
                st.sampled_from(["P1", "P2"]),
                st.sampled_from(PROCEDURES),
                st.sampled_from(sorted(ZONES)),
                st.integers(1, 40),
                st.sampled_from(CLOCKS),
            ),
            min_size=2,
            max_size=4,
        ),
    )
    def a_record_with_bookings(self, lines, bookings):
        """Every run starts from some intake and a few bookings (each checked as any booking is)."""
        self.replace_intake("P1", lines)
        keys = [self.book(*booking) for booking in bookings]
        return multiple(*[key for key in keys if isinstance(key, str)])

    @rule(
        target=appointments,
        who=st.sampled_from(["P1", "P2"]),
        procedure=st.sampled_from(PROCEDURES),
        clinic=st.sampled_from(sorted(ZONES)),
        days=st.integers(1, 40),
        clock=st.sampled_from(CLOCKS),
    )
    def book(self, who, procedure, clinic, days, clock):
        start = datetime.combine(self.today() + timedelta(days=days), clock, tzinfo=ZONES[clinic])
        return self._book(who, procedure, clinic, start)

    @rule(
        target=appointments,
        near=appointments,
        who=st.sampled_from(["P1", "P2"]),
        procedure=st.sampled_from(PROCEDURES),
        clinic=st.sampled_from(sorted(ZONES)),
        days=st.integers(-25, 25),
        clock=st.sampled_from(CLOCKS),
    )
    def book_near(self, near, who, procedure, clinic, days, clock):
        """A booking some days before or after another: where the interval rules bite, both ways."""
        tz = ZONES[clinic]
        day = max(local_day(self.appts[near].start, tz) + timedelta(days=days), self.today() + timedelta(days=1))
        return self._book(who, procedure, clinic, datetime.combine(day, clock, tzinfo=tz))

    def _book(self, who, procedure, clinic, start):
        patient, tz = self.live(who), ZONES[clinic]
        end = start + timedelta(minutes=DURATION[procedure])
        verdict = self.verdict(patient, procedure, start, tz)
        problems = self.availability(patient, clinic, start, end)
        proposal = {
            "patient": patient,
            "procedure": procedure,
            "start": start,
            "tz": tz,
            "clinic": clinic,
            "length": end - start,
        }
        try:
            with transaction.atomic():
                result = appointment_book(
                    patient=self.patient(who),
                    procedure_code=procedure,
                    start_at=start,
                    actor=RECEPTION,
                    now=self.now,
                    clinic_id=self.clinics[clinic].code,
                )
        except UnableToBook as refusal:
            assert problems or verdict.may_block, ("refused, yet nothing forbids it", refusal.check.blocking, proposal)
            event("booking refused: " + ("rules" if verdict.may_block else "slot"))
            self.check_refusal(refusal, verdict, problems, proposal)
            return multiple()
        assert not problems, ("booked into a taken or closed slot", problems, proposal)
        assert verdict.may_pass, ("booked against a block rule or absolute contraindication", verdict.why, proposal)
        appointment = result.appointment
        assert appointment.status == self.expected_status(verdict, frozenset()), (appointment.status, proposal)
        event(f"booked: {appointment.status}")
        self.counter += 1
        key = f"A{self.counter}"
        self.appts[key] = Appt(key, appointment.pk, patient, clinic, procedure, start, end)
        return key

    @rule(appointment=appointments, days=st.integers(1, 40), clock=st.sampled_from(CLOCKS))
    def reschedule(self, appointment, days, clock):
        appt = self.appts[appointment]
        tz = ZONES[appt.clinic]
        start = datetime.combine(self.today() + timedelta(days=days), clock, tzinfo=tz)
        length = appt.end - appt.start
        patient = self.live(appt.patient)
        verdict = self.verdict(patient, appt.procedure, start, tz, ignore=appt.key)
        problems = self.availability(patient, appt.clinic, start, start + length, ignore=appt.key)
        proposal = {
            "patient": patient,
            "procedure": appt.procedure,
            "start": start,
            "tz": tz,
            "clinic": appt.clinic,
            "ignore": appt.key,
            "length": length,
        }
        try:
            with transaction.atomic():
                moved = appointment_reschedule(
                    appointment=self.fresh(appointment), start_at=start, actor=RECEPTION, now=self.now
                ).appointment
        except InvalidTransition:
            assert appt.state != "active", ("an active appointment could not be moved", appointment)
            return
        except UnableToBook as refusal:
            assert appt.state == "active", appointment
            assert problems or verdict.may_block, ("move refused, yet nothing forbids it", refusal.check.blocking)
            event("move refused: " + ("rules" if verdict.may_block else "slot"))
            self.check_refusal(refusal, verdict, problems, proposal)
            return
        assert appt.state == "active", ("a cancelled or completed appointment was moved", appointment)
        assert not problems, ("moved into a taken or closed slot", problems, proposal)
        assert verdict.may_pass, ("moved against a block rule or absolute contraindication", verdict.why, proposal)
        assert moved.status == self.expected_status(verdict, appt.cleared), (moved.status, proposal)
        appt.start, appt.end = start, start + length
        event(f"moved: {moved.status}")

    @rule(appointment=appointments)
    def cancel(self, appointment):
        appt = self.appts[appointment]
        try:
            with transaction.atomic():
                appointment_cancel(appointment=self.fresh(appointment), actor=RECEPTION, now=self.now, reason="qa")
        except InvalidTransition:
            assert appt.state != "active", ("an active appointment could not be cancelled", appointment)
            return
        assert appt.state == "active", ("a cancelled or completed appointment was cancelled", appointment)
        appt.state = "cancelled"

    def _among(self, pick: int, *statuses: str, started: bool | None = None) -> str | None:
        """One of the appointments in `statuses` (as last read), those that have started (or not) when asked."""
        found = [
            key
            for key, appt in sorted(self.appts.items())
            if self.status_of.get(key) in statuses and (started is None or (appt.start <= self.now) == started)
        ]
        return found[pick % len(found)] if found else None

    @rule(appointment=appointments)
    def complete(self, appointment):
        appt = self.appts[appointment]
        status = self.fresh(appointment).status
        try:
            with transaction.atomic():
                appointment_complete(appointment=self.fresh(appointment), actor=CLINICIAN, now=self.now)
        except InvalidTransition:
            assert not (appt.state == "active" and status == AppointmentStatus.CONFIRMED and appt.start <= self.now), (
                "a confirmed appointment that has started could not be completed",
                appointment,
            )
            return
        assert appt.state == "active" and status == AppointmentStatus.CONFIRMED and appt.start <= self.now, (
            "completed though not a confirmed appointment that has started",
            appointment,
            status,
        )
        appt.state = "completed"
        event("completed")
        self.done.append((appt.patient, Event(f"{appt.key}-done", appt.procedure, appt.start, ZONES[appt.clinic])))

    @precondition(lambda self: self._among(0, AppointmentStatus.CONFIRMED, started=True))
    @rule(pick=st.integers(0, 10))
    def complete_one_that_started(self, pick):
        self.complete(self._among(pick, AppointmentStatus.CONFIRMED, started=True))

    @precondition(lambda self: self._among(0, *ACTIVE_APPOINTMENT_STATUSES, started=True))
    @rule(pick=st.integers(0, 10))
    def no_show(self, pick):
        """A missed appointment counts for nothing any more (docs/rules.md, "What counts"), like a cancelled one. One
        that needs review is refused: it leaves needs_review only by being moved, cancelled or released
        (api-contract, v1 additions), and stays as it was."""
        key = self._among(pick, *ACTIVE_APPOINTMENT_STATUSES, started=True)
        status = self.fresh(key).status
        try:
            with transaction.atomic():
                appointment_mark_no_show(appointment=self.fresh(key), actor=CLINICIAN, now=self.now)
        except InvalidTransition:
            assert status == AppointmentStatus.NEEDS_REVIEW, ("a started booking could not be marked a no-show", key)
            assert self.fresh(key).status == AppointmentStatus.NEEDS_REVIEW
            event("no-show refused: needs review")
            return
        assert status != AppointmentStatus.NEEDS_REVIEW, ("a booking that needs review was marked a no-show", key)
        self.appts[key].state = "no_show"
        event("no-show")

    @precondition(lambda self: self._among(0, AppointmentStatus.PENDING_CLEARANCE))
    @rule(pick=st.integers(0, 10))
    def clear_one_pending(self, pick):
        self.clear(self._among(pick, AppointmentStatus.PENDING_CLEARANCE))

    @rule(appointment=appointments)
    def clear(self, appointment):
        appt = self.appts[appointment]
        status = self.fresh(appointment).status
        tz = ZONES[appt.clinic]
        verdict = self.verdict(self.live(appt.patient), appt.procedure, appt.start, tz, ignore=appt.key)
        try:
            with transaction.atomic():
                appointment_clear(appointment=self.fresh(appointment), actor=CLINICIAN, now=self.now, reason="qa")
        except InvalidTransition:
            assert status != AppointmentStatus.PENDING_CLEARANCE, ("pending clearance, yet not clearable", appointment)
            return
        except UnableToBook:
            assert verdict.may_block, ("clearance refused, yet nothing blocks", appointment)
            return
        assert status == AppointmentStatus.PENDING_CLEARANCE, ("cleared from", status, appointment)
        assert verdict.may_pass, ("cleared against a block rule", verdict.why, appointment)
        event("cleared")
        appt.cleared = frozenset(verdict.relative)

    # --- Steps: the record ----------------------------------------------------------------------------------

    @rule(who=st.sampled_from(["P1", "P2"]), procedure=st.sampled_from(PROCEDURES), days_ago=st.integers(0, 60))
    def report_done_elsewhere(self, who, procedure, days_ago):
        day = self.today() - timedelta(days=days_ago)
        with transaction.atomic():
            procedure_record_add(patient=self.patient(who), procedure_code=procedure, now=self.now, performed_on=day)
        # A day without a time is taken as its last minute (clinic/services.py), never later than now.
        at = min(datetime.combine(day, time(23, 59), tzinfo=LONDON), self.now.replace(second=0, microsecond=0))
        self.counter += 1
        self.done.append((self.live(who), Event(f"R{self.counter}", procedure, at.astimezone(UTC), LONDON)))

    @rule(
        who=st.sampled_from(["P1", "P2"]),
        drug=st.sampled_from(DRUGS),
        started_ago=st.integers(-30, 400),
        length=st.one_of(st.none(), st.integers(0, 300)),
    )
    def start_course(self, who, drug, started_ago, length):
        started_on = self.today() - timedelta(days=started_ago)
        ended_on = None if length is None else started_on + timedelta(days=length)
        with transaction.atomic():
            course = medication_course_add(
                patient=self.patient(who), drug_code=drug, started_on=started_on, ended_on=ended_on, now=self.now
            )
        self.courses.append(Course(course.pk, self.live(who), drug, started_on, ended_on))

    @precondition(lambda self: any(c.ended_on is None for c in self.courses))
    @rule(pick=st.integers(0, 10), offset=st.integers(-30, 30))
    def end_course(self, pick, offset):
        ongoing = [c for c in self.courses if c.ended_on is None]
        course = ongoing[pick % len(ongoing)]
        ended_on = max(course.started_on, self.today() + timedelta(days=offset))
        with transaction.atomic():
            medication_course_end(course=MedicationCourse.objects.get(pk=course.pk), ended_on=ended_on, now=self.now)
        course.ended_on = ended_on

    @rule(
        who=st.sampled_from(["P1", "P2"]),
        lines=st.lists(
            st.tuples(st.sampled_from(CONDITIONS), st.sampled_from(["active", "history"])),
            max_size=3,
            unique_by=lambda line: line[0],
        ),
    )
    def replace_intake(self, who, lines):
        with transaction.atomic():
            conditions_replace(patient=self.patient(who), lines=[IntakeLine(c, s) for c, s in lines], now=self.now)
        self.intake[self.live(who)] = dict(lines)

    @precondition(lambda self: self.owner["P2"] == "P2")
    @rule()
    def merge_records(self):
        """Brief 6: merging two records unions their history and re-checks everything booked."""
        theirs = [a for a in self.appts.values() if a.state == "active" and a.patient == "P2"]
        ours = [a for a in self.appts.values() if a.state == "active" and a.patient == "P1"]
        overlapping = any(a.start < b.end and b.start < a.end for a in theirs for b in ours)
        disputed = {c for c, s in self.intake["P2"].items() if c in self.intake["P1"] and self.intake["P1"][c] != s}
        try:
            with transaction.atomic():
                patient_merge(
                    merged=self.patient("P2"),
                    into=self.patient("P1"),
                    now=self.now,
                    actor_label="qa clinician",
                    clinical=True,
                    intake={(c, None): "active" for c in disputed},
                )
        except MergeConflict as conflict:
            assert overlapping, ("merge refused, yet nothing overlaps", conflict.conflicts)
            event("merge refused: overlapping appointments")
            return
        assert not overlapping, "two overlapping appointments merged onto one record"
        event("merged")
        self.owner["P2"] = "P1"
        self.intake["P1"] = {**self.intake["P2"], **self.intake["P1"], **dict.fromkeys(disputed, "active")}
        self.intake["P2"] = {}

    # --- Steps: the rule book and the clock ------------------------------------------------------------------

    def _save_rule(self, change):
        """Save or revert an override through the rule book service; the re-check runs after 'commit'."""
        with time_machine.travel(self.now, tick=False), DjangoTestCase.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                change()

    def _override(self, model, key, fields: dict | None) -> None:
        """The organisation's override of the default rule `key` of `model`: reverted when `fields` is None, else
        saved with `fields` (a new one copies the default's subject)."""
        default = model.objects.get(organisation__isnull=True, default_key=key)
        existing = model.objects.filter(organisation=self.organisation, replaces=default).first()
        if fields is None:
            if existing is not None:
                self._save_rule(
                    lambda: rulebooks.rule_delete(rule=existing, user=None, reason="qa: back", now=self.now)
                )
            self.rule_ids[key] = self.default_ids[key]
            return
        row = existing or model(
            organisation=self.organisation,
            replaces=default,
            source="qa organisation protocol",
            **{name: getattr(default, name) for name in RULE_SUBJECT[model]},
        )
        for name, value in fields.items():
            setattr(row, name, value)
        self._save_rule(lambda: rulebooks.rule_save(rule=row, user=None, reason="qa: change", now=self.now))
        self.rule_ids[key] = str(row.pk)

    @rule(change=st.sampled_from(GAP_CHANGES))
    def change_interval_rule(self, change):
        key, new, active = change
        if new is None:
            self._override(IntervalRule, key, None)
            self.gap_overrides.pop(key, None)
            return
        gap_value, gap_unit, severity = new
        fields = {"gap_value": gap_value, "gap_unit": gap_unit, "severity": severity, "is_active": active}
        self._override(IntervalRule, key, fields)
        base = DEFAULT_GAPS[key]
        self.gap_overrides[key] = Gap(base.earlier, base.later, *new, drug=base.drug, active=active)

    @rule(change=st.sampled_from(CONTRA_CHANGES))
    def change_contraindication(self, change):
        key, severity, active = change
        if severity is None:
            self._override(ContraindicationRule, key, None)
            self.contra_overrides.pop(key, None)
            return
        self._override(ContraindicationRule, key, {"severity": severity, "is_active": active})
        base = DEFAULT_CONTRAS[key]
        self.contra_overrides[key] = Contra(
            base.procedure, base.cause, severity, base.active_only, drug=base.drug, active=active
        )

    @rule()
    def toggle_own_hours_rule(self):
        """An organisation's own rule, in hours (elapsed time): Botox, then filler no sooner than 48 h after."""
        existing = IntervalRule.objects.filter(organisation=self.organisation, source=ADDED).first()
        if existing is not None:
            self._save_rule(lambda: rulebooks.rule_delete(rule=existing, user=None, reason="qa: off", now=self.now))
            self.added = False
            return
        row = IntervalRule(
            organisation=self.organisation,
            earlier_procedure_id="botox",
            later_procedure_id="filler",
            gap_value=48,
            gap_unit="hours",
            severity="block",
            source=ADDED,
        )
        self._save_rule(lambda: rulebooks.rule_save(rule=row, user=None, reason="qa: ours", now=self.now))
        self.added = True
        self.rule_ids[ADDED] = str(row.pk)

    @rule(days=st.integers(1, 14))
    def time_passes(self, days):
        self.now += timedelta(days=days)

    # --- What must hold after every step --------------------------------------------------------------------

    @invariant()
    def the_rules_hold_over_time(self):
        """Brief 6: every future booking still holding its slot is confirmed or pending clearance only while no
        block rule or absolute contraindication stands against it, and needs review only while one does."""
        rows = {
            a.pk: a
            for a in Appointment.objects.filter(patient__organisation=self.organisation).only(
                "pk", "status", "start_at", "end_at", "patient_id", "clinic_id", "review_reasons"
            )
        }
        assert len(rows) == len(self.appts)
        self.status_of = {key: rows[appt.pk].status for key, appt in self.appts.items()}
        for appt in self.appts.values():
            row = rows[appt.pk]
            expected = {
                "active": ACTIVE_APPOINTMENT_STATUSES,
                "cancelled": ("cancelled",),
                "completed": ("completed",),
                "no_show": ("no_show",),
            }
            assert row.status in expected[appt.state], (appt.key, row.status, appt.state)
            assert (row.start_at, row.end_at) == (appt.start, appt.end), appt.key
            assert row.patient_id == self.patients[self.live(appt.patient)].pk, appt.key
            assert row.clinic_id == self.clinics[appt.clinic].pk, appt.key
            if row.status == AppointmentStatus.NEEDS_REVIEW:
                assert row.review_reasons, (appt.key, "needs review with no reasons")
            if appt.state != "active" or appt.start <= self.now:
                continue
            verdict = self.verdict(self.live(appt.patient), appt.procedure, appt.start, ZONES[appt.clinic], appt.key)
            context = (appt.key, appt.procedure, appt.clinic, appt.start, row.status, verdict.why, row.review_reasons)
            event(
                f"future appointment checked: {row.status}" + (" (zones disagree)" if len(verdict.blocked) > 1 else "")
            )
            if row.status == AppointmentStatus.NEEDS_REVIEW:
                assert verdict.may_block, ("needs review, yet nothing blocks it: it should have been released", context)
                reasons = {reason["rule"] for reason in row.review_reasons}
                assert verdict.broken_certain <= reasons <= verdict.broken_possible, (
                    "review reasons are not the rules it breaks",
                    reasons,
                    verdict.broken_certain,
                    verdict.broken_possible,
                    context,
                )
            else:
                assert verdict.may_pass, ("still booked against a block rule or absolute contraindication", context)
                if verdict.relative - appt.cleared:
                    assert row.status == AppointmentStatus.PENDING_CLEARANCE, (
                        "a relative contraindication not cleared for, yet confirmed",
                        context,
                    )

    @invariant()
    def no_one_is_in_two_places(self):
        """A practitioner takes one appointment at a time, and so does a patient, at whichever clinic."""
        active = list(
            Appointment.objects.filter(
                patient__organisation=self.organisation, status__in=ACTIVE_APPOINTMENT_STATUSES
            ).values_list("pk", "practitioner_id", "patient_id", "start_at", "end_at")
        )
        for i, (pk_a, doctor_a, patient_a, start_a, end_a) in enumerate(active):
            for pk_b, doctor_b, patient_b, start_b, end_b in active[i + 1 :]:
                if start_a < end_b and start_b < end_a:
                    assert doctor_a != doctor_b, ("a practitioner is booked twice at once", pk_a, pk_b)
                    assert patient_a != patient_b, ("a patient is booked twice at once", pk_a, pk_b)

    @invariant()
    def care_messages_wait_for_clearance_and_review(self):
        """Brief 3 and 6: no reminder, pre-care note or confirmation of a booking pending clearance or needing
        review is in a state to be sent; once confirmed, none of its unsent ones stays held."""
        for status, kind, message_status, pk in OutboxMessage.objects.filter(
            appointment__patient__organisation=self.organisation,
            kind__in=CARE_KINDS,
            status__in=[OutboxStatus.PENDING, OutboxStatus.HELD],
        ).values_list("appointment__status", "kind", "status", "appointment_id"):
            if status in HOLDING:
                assert message_status == OutboxStatus.HELD, ("sendable while held back", status, kind, pk)
            elif status == AppointmentStatus.CONFIRMED:
                assert message_status == OutboxStatus.PENDING, ("held though confirmed", kind, pk)


MACHINE_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,  # the same sequences every run: CI is reproducible, and a failure prints its steps
    database=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


@override_settings(CELERY_BROKER_URL="")  # no broker: a rule change's re-check runs in this process
class TestCareRecordsHoldOverTime(CareMachine.TestCase, DjangoTestCase):
    """Runs the machine; each example's writes are rolled back (CareMachine's own atomic block), the shipped
    catalogue, rules and care texts are loaded once for the class. Runs on SQLite and PostgreSQL alike."""

    settings = MACHINE_SETTINGS

    @classmethod
    def setUpTestData(cls):
        defaults.catalogue_load()
        defaults.rules_load()
        care_texts_load()
