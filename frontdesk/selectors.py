"""Reads for the front-desk pages, each starting from the tenancy selectors in clinic/.

A page calls one of these and gets everything it shows; local days are
turned into UTC ranges here, in the clinic's zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    Clinic,
    HistorySource,
    MedicationCourse,
    MergeWarningCheck,
    Patient,
    PatientCondition,
    Practitioner,
    ProcedureRecord,
    ProcedureType,
    TimeOff,
    WorkingHours,
)
from clinic.selectors import appointments_in, clinics_for_user, in_time_off, off_working_hours, patients_in
from core.timeutils import wall_clock, wall_moment, wall_span
from frontdesk.checks import rules_only
from plans.models import PlanKind, PlanSession
from reminders.content import NextPossible, next_possible, render_message
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from reminders.selectors import (
    patient_messages,
    stopped_by_an_operator,
    undelivered_patient_messages,
    will_reach_too_late,
)
from reminders.services import last_told_start
from reminders.wording import RenderError
from scheduler import rules
from scheduler.booking import BookingCheck
from scheduler.recheck import merge_warnings_standing
from scheduler.selectors import patient_outlook


def clinic_for_user(user, code: str) -> Clinic | None:
    return clinics_for_user(user).filter(code=code).first()


def patient_for_user(user, clinic: Clinic, patient_id) -> Patient | None:
    return patients_in(clinics_for_user(user).filter(pk=clinic.pk)).filter(pk=patient_id).first()


def appointment_for_user(user, clinic: Clinic, appointment_id) -> Appointment | None:
    return appointments_in(clinics_for_user(user).filter(pk=clinic.pk)).filter(pk=appointment_id).first()


def practitioner_for_user(user, clinic: Clinic, practitioner_id) -> Practitioner | None:
    if not practitioner_id or not clinics_for_user(user).filter(pk=clinic.pk).exists():
        return None
    try:
        return Practitioner.objects.filter(clinic=clinic, is_active=True, pk=practitioner_id).first()
    except (ValueError, ValidationError):  # not a UUID
        return None


def local_day_range(day: date, tz) -> tuple[datetime, datetime]:
    return rules.start_of_local_day(day, tz), rules.start_of_local_day(day + timedelta(days=1), tz)


@dataclass
class ScheduleColumn:
    heading: str
    day: date | None
    practitioner: Practitioner | None
    appointments: list[Appointment] = field(default_factory=list)


def schedule_columns(
    *, user, clinic: Clinic, days: list[date], practitioner_id=None, include_cancelled: bool = False
) -> list[ScheduleColumn]:
    """One column per practitioner for a single day, or one per day for a week."""
    start, _ = local_day_range(days[0], clinic.tz)
    _, end = local_day_range(days[-1], clinic.tz)
    query = appointments_in(clinics_for_user(user).filter(pk=clinic.pk)).filter(start_at__gte=start, start_at__lt=end)
    practitioners = Practitioner.objects.filter(clinic=clinic, is_active=True)
    if practitioner_id:
        query = query.filter(practitioner_id=practitioner_id)
        practitioners = practitioners.filter(pk=practitioner_id)
    if not include_cancelled:
        query = query.exclude(status=AppointmentStatus.CANCELLED)
    appointments = list(query.order_by("start_at", "practitioner__name"))
    if len(days) == 1:
        columns = {p.pk: ScheduleColumn(p.name, days[0], p) for p in practitioners}
        for appointment in appointments:
            columns.setdefault(
                appointment.practitioner_id,
                ScheduleColumn(appointment.practitioner.name, days[0], appointment.practitioner),
            ).appointments.append(appointment)
        return list(columns.values())
    by_day = {day: ScheduleColumn(f"{day:%a} {day.day} {day:%b}", day, None) for day in days}
    for appointment in appointments:
        day = appointment.start_at.astimezone(clinic.tz).date()
        if day in by_day:
            by_day[day].appointments.append(appointment)
    return list(by_day.values())


def arrivals(*, user, clinic: Clinic, day: date) -> list[Appointment]:
    """The day's patients in order of arrival, cancelled ones left out."""
    start, end = local_day_range(day, clinic.tz)
    return list(
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(start_at__gte=start, start_at__lt=end)
        .exclude(status=AppointmentStatus.CANCELLED)
        .order_by("start_at")
    )


def pending_clearance(*, user, clinic: Clinic) -> QuerySet[Appointment]:
    """Every booking still waiting for a clinician, however old: it stays in the queue until it
    is cleared, moved, cancelled or marked a no-show, so none is forgotten."""
    return (
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(status=AppointmentStatus.PENDING_CLEARANCE)
        .order_by("start_at")
    )


def needs_attention(*, user, clinic: Clinic) -> QuerySet[Appointment]:
    """Bookings a later change to the patient's record (or the rules) made unsafe: they stay here until
    they are moved, cancelled or the record is corrected (scheduler/recheck.py)."""
    return (
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(status=AppointmentStatus.NEEDS_REVIEW)
        .order_by("start_at")
    )


# No visit lasts a day: a bound on the start lets the clinic's (clinic, start_at) index find the bookings still to
# come, where the end alone would read every booking the clinic ever had.
LONGEST_VISIT = timedelta(days=1)


def still_to_come(now: datetime) -> Q:
    """Active bookings not over yet (under way or to come)."""
    return Q(status__in=ACTIVE_APPOINTMENT_STATUSES, start_at__gt=now - LONGEST_VISIT, end_at__gt=now)


# How far back the desk is shown visits still waiting for an outcome (awaiting_outcome).
OUTCOME_LOOKBACK = timedelta(days=90)
OUTCOME_SHOWN = 50


def awaiting_outcome(*, user, clinic: Clinic, now: datetime) -> list[Appointment]:
    """Confirmed visits of the last OUTCOME_LOOKBACK that are over and that nobody marked completed or a no-show:
    the patient's aftercare starts only when a clinician marks the treatment done (domain brief 4), and a plan
    shows the session `booked` until then. Oldest first, at most OUTCOME_SHOWN (and one more, to say there are
    more). One statement."""
    return list(
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(status=AppointmentStatus.CONFIRMED, start_at__gte=now - OUTCOME_LOOKBACK, end_at__lte=now)
        .order_by("start_at")[: OUTCOME_SHOWN + 1]
    )


def booked_while_away(*, user, clinic: Clinic, now: datetime) -> list[Appointment]:
    """Bookings still to come whose practitioner has since been given time off over them (a holiday or sick
    leave entered after the bookings): the patient would come to nobody. They stay here until they are moved
    or cancelled, or the time off is changed; each carries `away` (the time off's reason). A booking whose
    practitioner no longer works here (`practitioner_gone`) is left out: "Practitioner no longer here" lists it, and
    a time off given to them since is another site's (perhaps another organisation's), never read here. One
    statement."""
    return list(
        in_time_off(
            appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
            .filter(still_to_come(now))
            .exclude(practitioner_gone())
        ).order_by("start_at")
    )


def booked_off_hours(*, user, clinic: Clinic, now: datetime) -> list[Appointment]:
    """Bookings still to come that their practitioner's working hours no longer hold (hours changed after the
    bookings were made): the patient would come when nobody is in. They stay here until they are moved or
    cancelled, or the hours are changed back. A booking whose practitioner no longer works here
    (`practitioner_gone`) is left out: "Practitioner no longer here" lists it (their hours are another site's now).
    One statement."""
    return list(
        off_working_hours(
            appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
            .filter(still_to_come(now))
            .exclude(practitioner_gone()),
            clinic.tz,
        ).order_by("start_at")
    )


# What the desk reads beside a practitioner shown at a clinic only for visits booked with them there before: they
# were switched off, or moved to another clinic (`Practitioner.clinic`) since.
NO_LONGER_ACTIVE = "No longer active"
AT_ANOTHER_SITE = "Works at another site now"


def not_here(practitioner: Practitioner, clinic: Clinic) -> str | None:
    """Why `practitioner` takes no bookings at `clinic` (NO_LONGER_ACTIVE, or AT_ANOTHER_SITE: their clinic is
    another now), or None when they work there. From the row already read: no query."""
    if not practitioner.is_active:
        return NO_LONGER_ACTIVE
    if practitioner.clinic_id != clinic.pk:
        return AT_ANOTHER_SITE
    return None


def practitioner_gone() -> Q:
    """Appointments whose practitioner no longer works at the appointment's clinic: switched off, or moved to another
    clinic since (`not_here` in SQL)."""
    return Q(practitioner__is_active=False) | ~Q(practitioner__clinic_id=F("clinic_id"))


def booked_with_practitioner_gone(*, user, clinic: Clinic, now: datetime) -> list[Appointment]:
    """Bookings still to come whose practitioner no longer works at the booking's clinic: switched off, or moved to
    another clinic, since the bookings were made (the bookings stay as they are): the patient would come to nobody.
    They stay here until they are moved to a colleague or cancelled (or the practitioner is back); listed here only,
    never also under "Practitioner away" or "Outside working hours" (one list says what to do). One statement."""
    return list(
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(still_to_come(now))
        .filter(practitioner_gone())
        .order_by("start_at")
    )


def undelivered(*, user, clinic: Clinic, now: datetime) -> list[Appointment]:
    """Bookings still to come with a message to the patient that did not reach them (refused, out of attempts, or
    reported undelivered by the provider) and that nothing made up for, bookings cancelled before their time
    whose cancellation notice did not reach them (the patient would come for nothing), and visits done whose
    aftercare did not reach them (a texts-only patient without the first days' instructions), while their aftercare
    lasts: until the moment of the visit's last aftercare message (its +7 days text in the shipped set; read from
    the visit's own aftercare rows, whatever the templates say). The desk phones the patient, or corrects the number
    and sends it again. They stay here until that time is past (the visit's, or its last aftercare's) or the message
    goes. Each carries `undelivered`, those messages as ReminderRows in the order they were due (for a cancelled
    booking its cancellation notice only, for a visit done its aftercare only). Two statements, however many."""
    failed = undelivered_patient_messages()
    cancelled_unheard = Q(status=AppointmentStatus.CANCELLED, start_at__gt=now) & Q(
        Exists(failed.filter(appointment_id=OuterRef("pk"), kind=MessageKind.CANCELLED))
    )
    aftercare_to_come = OutboxMessage.objects.filter(
        appointment_id=OuterRef("pk"), kind=MessageKind.POST_CARE, due_at__gt=now
    ).exclude(status__in=(OutboxStatus.CANCELLED, OutboxStatus.SKIPPED))
    aftercare_unheard = (
        Q(status=AppointmentStatus.COMPLETED)
        & Q(Exists(failed.filter(appointment_id=OuterRef("pk"), kind=MessageKind.POST_CARE)))
        & Q(Exists(aftercare_to_come))
    )
    appointments = (
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(
            (still_to_come(now) & Q(Exists(failed.filter(appointment_id=OuterRef("pk")))))
            | cancelled_unheard
            | aftercare_unheard
        )
        .prefetch_related(
            Prefetch(
                "outbox_messages",
                queryset=failed.select_related("template").order_by("due_at", "id"),
                to_attr="failed_messages",
            )
        )
        .order_by("start_at")
    )
    found = list(appointments)
    only = {AppointmentStatus.CANCELLED: MessageKind.CANCELLED, AppointmentStatus.COMPLETED: MessageKind.POST_CARE}
    for appointment in found:
        kind = only.get(appointment.status)
        appointment.undelivered = [
            ReminderRow(message) for message in appointment.failed_messages if kind is None or message.kind == kind
        ]
    return found


@dataclass(frozen=True)
class OutlookRow:
    """One bookable procedure and scheduler.booking's verdict on it from now, on the rules alone."""

    procedure: ProcedureType
    check: BookingCheck


@dataclass(frozen=True)
class MergeWarning:
    """A warn-level rule a merge of records brought together (clinic.merging: the merge record's warnings), for a
    booking still to come; `check` when staff marked it checked in these words (clinic.merging.merge_warning_check),
    `earlier_checks` those of what the rules said of it before (other words: this one is new to them)."""

    appointment: Appointment
    message: str
    merged_at: datetime
    merge_id: UUID | None = None  # the merge that warned of it, which a check names
    check: MergeWarningCheck | None = None
    earlier_checks: tuple[MergeWarningCheck, ...] = ()


class MergeWarnings(list):
    """The standing warnings of the merges into a record, in order: those still to check (the page's banner) and those
    staff checked (listed quietly below it, so the record of who decided stays in sight)."""

    @property
    def to_check(self) -> list[MergeWarning]:
        return [w for w in self if w.check is None]

    @property
    def checked(self) -> list[MergeWarning]:
        return [w for w in self if w.check is not None]


@dataclass
class PatientRecord:
    patient: Patient
    outlook: list[OutlookRow]
    booked: list[Appointment]
    other_appointments: list[Appointment]
    procedures: list[ProcedureRecord]
    courses: list[MedicationCourse]
    conditions: list[PatientCondition]
    merge_warnings: list[MergeWarning]


def merge_warnings(patient: Patient, appointments: list[Appointment], now: datetime) -> MergeWarnings:
    """The warnings of the merges into this record that still stand (scheduler.recheck.merge_warnings_standing). A
    desk merge shows them once as it is made and an API merge answers them; here staff find them while the rules
    still say them, each with the check that covers it (the same merge, booking and words), if any. One statement
    for all their checks, however many, and none when nothing stands."""
    standing = merge_warnings_standing(patient=patient, appointments=appointments, now=now)
    if not standing:
        return MergeWarnings()
    checks: dict[tuple, list[MergeWarningCheck]] = {}  # (merge id, booking id) -> its checks, oldest first
    for check in MergeWarningCheck.objects.filter(merge_id__in={merge_id for *_, merge_id in standing}).order_by(
        "checked_at"
    ):
        checks.setdefault((check.merge_id, check.appointment_id), []).append(check)
    found = MergeWarnings()
    for appointment, message, merged_at, merge_id in standing:
        its = checks.get((merge_id, appointment.pk), [])
        found.append(
            MergeWarning(
                appointment,
                message,
                merged_at,
                merge_id=merge_id,
                check=next((c for c in its if c.message == message), None),
                earlier_checks=tuple(c for c in its if c.message != message),
            )
        )
    return found


def patient_record(*, patient: Patient, now: datetime, clinic: Clinic | None = None) -> PatientRecord:
    """What the desk of `clinic` (the patient's home clinic when not given) shows of a patient: the earliest dates
    are reckoned where that desk would book them, as its booking page reckons them."""
    tz = (clinic or patient.clinic).tz
    appointments = list(
        Appointment.objects.filter(patient=patient)
        .select_related("procedure", "practitioner", "area", "clinic")
        .order_by("start_at")
    )
    for appointment in appointments:  # every card names its patient: this one, already read
        appointment.patient = patient
    return PatientRecord(
        patient=patient,
        outlook=[
            OutlookRow(p, rules_only(evaluation=e, duration=timedelta(minutes=p.duration_minutes), tz=tz))
            for p, e in patient_outlook(patient=patient, now=now, tz=tz)
        ],
        booked=[a for a in appointments if a.status in ACTIVE_APPOINTMENT_STATUSES],
        other_appointments=[
            a for a in reversed(appointments) if a.status in (AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW)
        ],
        procedures=list(
            ProcedureRecord.objects.filter(patient=patient).select_related(
                "procedure", "area", "appointment__clinic", "clinic", "patient__clinic"
            )
        ),
        courses=list(MedicationCourse.objects.filter(patient=patient).select_related("drug")),
        conditions=list(PatientCondition.objects.filter(patient=patient).select_related("condition", "area")),
        merge_warnings=merge_warnings(patient, appointments, now),
    )


def patient_appointments_by_id(patient: Patient) -> dict[str, Appointment]:
    """For naming the appointment a rule conflicts with."""
    return {str(a.pk): a for a in Appointment.objects.filter(patient=patient).select_related("procedure", "clinic")}


REMINDER_GROUPS = (
    ("due", "Due", (OutboxStatus.HELD, OutboxStatus.PENDING, OutboxStatus.SENDING)),
    ("sent", "Sent", (OutboxStatus.SENT,)),
    ("failed", "Failed", (OutboxStatus.FAILED,)),
    ("not_sent", "Not sent", (OutboxStatus.CANCELLED, OutboxStatus.SKIPPED)),
)


# A message cancelled because a newer copy took its place (dispatch writes "superseded: ..." or
# "superseded by a newer copy") is routine, not a failure.
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class ReminderRow:
    """One message as the desk reads it: its name once, what became of it, and why in plain words."""

    message: OutboxMessage

    @property
    def name(self) -> str:
        # The template's name says what it is ("Booking confirmation (every procedure)"); the kind only
        # stands in when there is no template.
        template = self.message.template
        return template.name if template else self.message.get_kind_display()

    @property
    def went_at(self) -> datetime | None:
        """When it was handed to the provider, while that is what became of it (sent, or reported undelivered since);
        None for one waiting to go again after a failure, which shows when it is due instead."""
        went = self.message.status in (OutboxStatus.SENT, OutboxStatus.FAILED)
        return self.message.sent_at if went else None

    @property
    def replaced(self) -> bool:
        return self.message.status == OutboxStatus.CANCELLED and self.message.last_error.lower().startswith(SUPERSEDED)

    @property
    def status_label(self) -> str:
        return "Replaced" if self.replaced else self.message.get_status_display()

    @property
    def note(self) -> str:
        if self.replaced:
            return "Replaced by a newer copy (the appointment changed), which is listed on its own."
        if stopped_by_an_operator(self.message):
            return (
                f"Stopped by an operator ({wall_moment(self.message.updated_at)}): it did not go, so the patient has "
                "not heard of this. Phone them."
            )
        if will_reach_too_late(self.message):
            due = timezone.localtime(self.message.due_at)
            return (
                f"Cannot go before {wall_clock(due)} (no texts at night), after the visit's time: it will not reach "
                "the patient in time. Phone them."
            )
        return self.message.last_error

    @property
    def note_is_error(self) -> bool:
        """A delivery that failed or is being retried; a cancelled or skipped message only says why."""
        return self.message.status in (OutboxStatus.FAILED, OutboxStatus.PENDING, OutboxStatus.SENDING)


@dataclass
class ReminderGroup:
    key: str
    label: str
    messages: list[ReminderRow]


def appointment_reminders(appointment: Appointment) -> list[ReminderGroup]:
    """The patient's messages for this appointment from the reminders outbox, grouped by what became of them."""
    rows = list(patient_messages(appointment.pk))
    return [
        ReminderGroup(key, label, [ReminderRow(m) for m in rows if m.status in statuses])
        for key, label, statuses in REMINDER_GROUPS
    ]


# --- The calendar grid -----------------------------------------------------------------------

SLOT_MINUTES = 15
DEFAULT_DAY = (time(8), time(19))
PRACTITIONER_COLOURS = 8  # shown when nobody works that day and nothing is booked


@dataclass
class GridCell:
    """One practitioner's quarter hour: an appointment starting there (spanning `rows`), covered by
    one above it, or empty (inside working hours or not, or time off)."""

    kind: str  # "appt", "covered", "free"
    starts_at: datetime
    practitioner: Practitioner
    colour: int  # the practitioner's colour, cal-p0 to cal-p7 in frontdesk.css
    appointment: Appointment | None = None
    extra: list[Appointment] = field(default_factory=list)  # overlapping ones (no exclusion constraint on SQLite)
    rows: int = 1
    working: bool = False
    time_off: str | None = None
    local_day: date | None = None  # the clinic's day and time of `starts_at`, ready for the page
    # Its key in the column: the wall time, with the zone's abbreviation on a repeated time's second reading
    # ("01:15 GMT" after "01:15" on the night the clocks go back); `label` is what a person reads ("01:15 BST").
    local_time: str = ""
    label: str = ""
    skipped: bool = False  # a local time the clocks skip (spring forward): no such time to book
    bookable: bool = True  # False in the column of a practitioner who no longer works here (shown for their visits),
    # and where they are booked at another site (`elsewhere`)
    gone: str | None = None  # then why (`not_here`): "No longer active", "Works at another site now"
    elsewhere: bool = False  # the practitioner is booked at another clinic then (nothing more of that booking is read)


@dataclass
class GridRow:
    starts_at: datetime
    label: str
    on_the_hour: bool
    now: bool
    cells: list[GridCell]


@dataclass(frozen=True)
class GridColumn:
    heading: str
    practitioner: Practitioner
    day: date
    gone: str | None = None  # why they take no bookings here (`not_here`), shown under the heading


@dataclass
class DayGrid:
    """A day (a column per practitioner) or one practitioner's week (a column per day)."""

    day: date
    columns: list[GridColumn]
    rows: list[GridRow]
    total: int


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


# A quarter hour's key in a grid's rows: its local minute of the day and which reading of it (fold 1: the second
# time the clocks show it, after they go back).
Reading = tuple[int, int]


def _quarter_hours(on: date, first: int, last: int, tz) -> dict[Reading, tuple[datetime, str]]:
    """The quarter hours of `on` from local minute `first` to `last` (24:00: the next day's start), stepped as
    instants (each with its `wall_clock`): a day the clocks go back has its repeated hour twice, a day they go
    forward has no skipped one."""
    begin = datetime.combine(on, time(first // 60, first % 60), tzinfo=tz).astimezone(UTC)
    if last >= 24 * 60:
        stop = rules.start_of_local_day(on + timedelta(days=1), tz)
    else:
        stop = datetime.combine(on, time(last // 60, last % 60), tzinfo=tz).astimezone(UTC)
    readings: dict[Reading, tuple[datetime, str]] = {}
    instant = begin
    while instant < stop:
        local = instant.astimezone(tz)
        readings[(_minutes(local.time()), local.fold)] = (instant, wall_clock(local))
        instant += timedelta(minutes=SLOT_MINUTES)
    return readings


def _merged(orders: list[list[Reading]]) -> list[Reading]:
    """The rows of several days' quarter hours, each day's in its own order: a week's rows are every day's,
    with the fall-back Sunday's repeated hour after the first reading of it and the spring Sunday's skipped
    hour kept for the other days."""
    merged: list[Reading] = []
    for order in dict.fromkeys(tuple(o) for o in orders):  # most days are alike
        position = 0
        for key in order:
            if key in merged:
                position = merged.index(key) + 1
            else:
                merged.insert(position, key)
                position += 1
    return merged


def _course_session(appointment: Appointment) -> str:
    """'Session 2 of 5 · <course>' for a course's booked session, else "" (`plan_session` selected with it, and
    `course_size`, the plan's own number of sessions, annotated: `with_course_size`; a plan may be booked with more
    or fewer sessions than its template's, and a template edited since)."""
    session = getattr(appointment, "plan_session", None)  # a reverse one-to-one: absent when not a session
    if session is None:
        return ""
    template = session.plan.template
    size = getattr(appointment, "course_size", None)
    of = f" of {size}" if template.kind == PlanKind.COURSE and size else ""
    return f"Session {session.index}{of} · {template.name}"


def with_course_size(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """`course_size`: how many sessions the plan of each (a course's session) has, in the same statement."""
    sessions = PlanSession.objects.filter(plan_id=OuterRef("plan_session__plan_id")).order_by()
    return appointments.annotate(
        course_size=Subquery(sessions.values("plan_id").annotate(n=Count("pk")).values("n")[:1])
    )


# What a calendar card says beside the appointment: the course session it is, in the same statement.
CARD_RELATED = ("patient", "procedure", "area", "practitioner", "plan_session__plan__template")


def _card_notes(appointments: list[Appointment], offs: dict, clinic: Clinic) -> None:
    """Give each of `appointments` `course` (its course session, or "") and `away` (the reason of a time off of
    its practitioner over a live visit, entered after it was booked, "Time off" when none was given; else None),
    as Today's 'Practitioner away' says it: never for a visit whose practitioner no longer works at `clinic`
    (`not_here`; their time off is another site's, perhaps another organisation's). From rows already read: no
    query."""
    for appointment in appointments:
        appointment.course = _course_session(appointment)
        off = None
        if appointment.status in ACTIVE_APPOINTMENT_STATUSES and not_here(appointment.practitioner, clinic) is None:
            off = next(
                (
                    o
                    for o in offs.get(appointment.practitioner_id, ())
                    if o.start_at < appointment.end_at and o.end_at > appointment.start_at
                ),
                None,
            )
        appointment.away = (off.reason or "Time off") if off else None


def _with_inactive(practitioners: list[Practitioner], appointments: list[Appointment]) -> list[Practitioner]:
    """`practitioners` (the clinic's active ones), then those who no longer work there (no longer active, or moved to
    another clinic since) and still have one of `appointments`, by name: their visits are shown (and printed) under
    their name, marked as such (`not_here`), never bookable."""
    shown = {p.pk for p in practitioners}
    gone = {a.practitioner_id: a.practitioner for a in appointments if a.practitioner_id not in shown}
    return practitioners + sorted(gone.values(), key=lambda p: p.name)


def booked_elsewhere(practitioner_ids: list, clinic: Clinic, start: datetime, end: datetime) -> dict:
    """{practitioner id: [(start, end)]}: the live bookings of these practitioners at clinics other than `clinic`
    overlapping [start, end) (visits booked with them at a site they have left, whichever organisation's). Their
    times only: never the patient, the procedure or the clinic. One statement."""
    busy: dict = {}
    rows = (
        Appointment.objects.filter(
            practitioner_id__in=practitioner_ids,
            status__in=ACTIVE_APPOINTMENT_STATUSES,
            start_at__gt=start - LONGEST_VISIT,
            start_at__lt=end,
            end_at__gt=start,
        )
        .exclude(clinic_id=clinic.pk)
        .values_list("practitioner_id", "start_at", "end_at")
    )
    for practitioner_id, starts, ends in rows:
        busy.setdefault(practitioner_id, []).append((starts, ends))
    return busy


def day_grid(
    *,
    user,
    clinic: Clinic,
    day: date,
    now: datetime,
    practitioner_id=None,
    include_cancelled: bool = False,
    week: bool = False,
) -> DayGrid:
    """The calendar as a table, a row per quarter hour of clinic time: the day with a column per
    practitioner, or (`week`, with a practitioner) that practitioner's Monday-to-Sunday week. Each
    cell knows whether it is in working hours, in time off, or taken (and for how many rows).

    A practitioner no longer active, or moved to another clinic since (`not_here`), has a column only for visits
    still on the day, with no bookable cell (and none of their hours or time off, now another site's, is read).
    A quarter hour a practitioner of the clinic spends on a live booking at another clinic (one booked with them
    there before they moved here) is `elsewhere`, not bookable: its times only are read, in one statement for the
    day or week however many practitioners and bookings.
    Cancelled visits (`include_cancelled`) are placed after the live ones and only in the rows those leave
    free: a cancelled card never covers, hides or lists a live visit (it is listed in a live card instead)."""
    tz = clinic.tz
    days = [day - timedelta(days=day.weekday()) + timedelta(days=n) for n in range(7)] if week else [day]
    start, end = local_day_range(days[0], tz)[0], local_day_range(days[-1], tz)[1]
    practitioners = Practitioner.objects.filter(clinic=clinic, is_active=True).order_by("name")
    query = (
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(start_at__gte=start, start_at__lt=end)
        .select_related(*CARD_RELATED)
    )
    query = with_course_size(query)
    if practitioner_id:
        practitioners = practitioners.filter(pk=practitioner_id)
        query = query.filter(practitioner_id=practitioner_id)
    if not include_cancelled:
        query = query.exclude(status=AppointmentStatus.CANCELLED)
    appointments = list(query.order_by("start_at"))
    practitioners = _with_inactive(list(practitioners), appointments)
    gone = {p.pk: not_here(p, clinic) for p in practitioners}
    if week:
        columns = [GridColumn(f"{d:%a} {d.day} {d:%b}", p, d, gone[p.pk]) for p in practitioners[:1] for d in days]
    else:
        columns = [GridColumn(p.name, p, day, gone[p.pk]) for p in practitioners]
    ids = [p.pk for p in practitioners if gone[p.pk] is None]  # those working here: the others' are not ours
    hours: dict = {}
    offs: dict = {}
    busy: dict = {}
    if ids:
        for wh in WorkingHours.objects.filter(practitioner_id__in=ids, weekday__in={d.weekday() for d in days}):
            hours.setdefault((wh.practitioner_id, wh.weekday), []).append(
                (_minutes(wh.start_time), _minutes(wh.end_time))
            )
        for off in TimeOff.objects.filter(practitioner_id__in=ids, start_at__lt=end, end_at__gt=start).order_by(
            "start_at"
        ):
            offs.setdefault(off.practitioner_id, []).append(off)
        busy = booked_elsewhere(ids, clinic, start, end)
    _card_notes(appointments, offs, clinic)

    local = [(timezone.localtime(a.start_at, tz), timezone.localtime(a.end_at, tz)) for a in appointments]
    for appointment in appointments:
        appointment.wall = wall_span(appointment.start_at, appointment.end_at, tz)
        appointment.wall_start = wall_clock(timezone.localtime(appointment.start_at, tz))
    first = min(
        [s for spans in hours.values() for s, _ in spans]
        + [_minutes(s.time()) for s, _ in local]
        + [_minutes(DEFAULT_DAY[0])]
    )
    last = max(
        [e for spans in hours.values() for _, e in spans]
        + [_minutes(e.time()) if e.date() == s.date() else 24 * 60 for s, e in local]
        + [_minutes(DEFAULT_DAY[1])]
    )
    first, last = first // 60 * 60, min(24 * 60, -(-last // 60) * 60)
    # Rows by instants, not wall times: on the night the clocks go back 01:00-01:59 has rows twice (BST, then
    # GMT), and a visit takes the rows of its real quarter hours. In a week, a day without one of the rows (the
    # hour the clocks skip, or the other days' second reading of the repeated hour) has no such time there.
    readings = {on: _quarter_hours(on, first, last, tz) for on in days}
    # Every wall time of the span has its row too: the hour the clocks skip is shown, hatched "No such time", on
    # its own day as in a week (the desk sees where the hour went; nothing is offered there).
    wall = [(minute, 0) for minute in range(first, last, SLOT_MINUTES)]
    keys = _merged([list(r) for r in readings.values()] + [wall])

    def at(on: date, key: Reading) -> datetime:
        found = readings[on].get(key)
        if found is not None:
            return found[0]
        minute = key[0]  # no such time that day: the instant only keys time off, nothing is offered there
        return datetime.combine(on, time(minute // 60, minute % 60), tzinfo=tz).astimezone(UTC)

    # A row's time: "01:15 BST" on every day of a week with the night the clocks go back, as on that night.
    row_label = {
        key: max(
            (readings[on][key][1] for on in days if key in readings[on]),
            key=len,
            default=f"{key[0] // 60:02d}:{key[0] % 60:02d}",
        )
        for key in keys
    }
    quarter = timedelta(minutes=SLOT_MINUTES)
    colour = {p.pk: n % PRACTITIONER_COLOURS for n, p in enumerate(practitioners)}
    cells_by_column: list[list[GridCell]] = []
    for column in columns:
        p, on = column.practitioner, column.day
        spans = hours.get((p.pk, on.weekday()), ())
        cells = []
        for key in keys:
            minute, fold = key
            starts_at = at(on, key)
            skipped = key not in readings[on]
            label = row_label[key] if skipped else readings[on][key][1]
            # Any part of the quarter hour: time off from 10:10 leaves nothing bookable at 10:00.
            off = next(
                (o for o in offs.get(p.pk, ()) if o.start_at < starts_at + quarter and starts_at < o.end_at), None
            )
            away = any(s < starts_at + quarter and starts_at < e for s, e in busy.get(p.pk, ()))
            cells.append(
                GridCell(
                    "free",
                    starts_at,
                    p,
                    colour[p.pk],
                    working=column.gone is None and any(a <= minute < b for a, b in spans),
                    time_off=(off.reason or "Time off") if off else None,
                    local_day=on,
                    local_time=label if fold else f"{minute // 60:02d}:{minute % 60:02d}",
                    label=label,
                    skipped=skipped,
                    bookable=column.gone is None and not away,
                    gone=column.gone,
                    elsewhere=away,
                )
            )
        cells_by_column.append(cells)
    real_rows = [[k for k, c in enumerate(cells) if not c.skipped] for cells in cells_by_column]
    index = {(c.practitioner.pk, c.day): n for n, c in enumerate(columns)}
    placed = 0
    # Live visits first, so that a cancelled one shown never takes the rows of a live one booked in its place.
    order = sorted(
        zip(appointments, local, strict=True), key=lambda pair: pair[0].status == AppointmentStatus.CANCELLED
    )
    for appointment, (local_start, _) in order:
        n = index.get((appointment.practitioner_id, local_start.date()))
        if n is None:
            continue
        placed += 1
        cells = cells_by_column[n]
        # The quarter hour it starts in, and every row up to its end, by instants (never by wall clock).
        real = real_rows[n]
        row = next((k for k in reversed(real) if cells[k].starts_at <= appointment.start_at), 0)
        ends = next((k for k in real if k > row and cells[k].starts_at >= appointment.end_at), len(cells))
        rows = max(1, ends - row)
        cell = cells[row]
        if cell.kind == "covered":  # overlaps one above: list it with that one
            owner = next(c for c in reversed(cells[:row]) if c.kind == "appt")
            owner.extra.append(appointment)
            continue
        if cell.kind == "appt":
            cell.extra.append(appointment)
            continue
        if appointment.status == AppointmentStatus.CANCELLED:  # only down to the next card placed
            rows = next((k for k in range(1, rows) if cells[row + k].kind != "free"), rows)
        cell.kind, cell.appointment, cell.rows = "appt", appointment, rows
        for below in cells[row + 1 : row + cell.rows]:
            if below.kind == "appt":  # an earlier-placed overlap: fold it in
                cell.extra.append(below.appointment)
                cell.extra.extend(below.extra)
            below.kind = "covered"
    today = timezone.localdate(now, timezone=tz)
    rows = []
    for n, key in enumerate(keys):
        rows.append(
            GridRow(
                starts_at=at(days[0], key),
                label=row_label[key],
                on_the_hour=key[0] % 60 == 0,
                now=today in readings and key in readings[today] and at(today, key) <= now < at(today, key) + quarter,
                cells=[column[n] for column in cells_by_column],
            )
        )
    return DayGrid(day=day, columns=columns, rows=rows, total=placed)


@dataclass(frozen=True)
class CalendarEvent:
    appointment: Appointment

    def as_json(self, tz) -> dict:
        a = self.appointment
        course = _course_session(a)
        return {
            "id": str(a.pk),
            "resourceId": str(a.practitioner_id),
            "start": timezone.localtime(a.start_at, tz).isoformat(),
            "end": timezone.localtime(a.end_at, tz).isoformat(),
            "title": " · ".join(filter(None, [str(a.patient), a.procedure.display_short, course])),
            "status": a.status,
            "statusLabel": a.get_status_display(),
            "patient": str(a.patient),
            "procedure": a.procedure.display_short,
            "practitioner": a.practitioner.name,
            "course": course,
        }


def calendar_feed(*, user, clinic: Clinic, start: datetime, end: datetime) -> dict:
    """Appointments overlapping [start, end) and the practitioners, for a calendar component: the active ones,
    then any who no longer work here (no longer active, or moved to another clinic since: `not_here`) with an event
    in the range (`active: false`: nothing is booked with them here), so every event has its resource."""
    appointments = list(
        with_course_size(
            appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
            .filter(start_at__lt=end, end_at__gt=start)
            .exclude(status=AppointmentStatus.CANCELLED)
            .select_related("patient", "procedure", "practitioner", "plan_session__plan__template")
        ).order_by("start_at")
    )
    practitioners = _with_inactive(
        list(Practitioner.objects.filter(clinic=clinic, is_active=True).order_by("name")), appointments
    )
    return {
        "timeZone": clinic.timezone,
        "resources": [{"id": str(p.pk), "title": p.name, "active": not_here(p, clinic) is None} for p in practitioners],
        "events": [CalendarEvent(a).as_json(clinic.tz) for a in appointments],
    }


@dataclass
class DaySheet:
    practitioner: Practitioner
    appointments: list[Appointment]
    gone: str | None = None  # why they take no bookings here (`not_here`), beside their name


def day_sheets(*, user, clinic: Clinic, day: date, practitioner_id=None) -> list[DaySheet]:
    """A printable list per practitioner for one day, cancelled ones left out: a page per active practitioner,
    then one per practitioner who no longer works here (no longer active, or moved to another clinic since) who
    still has visits that day (the patients are still coming)."""
    start, end = local_day_range(day, clinic.tz)
    practitioners = Practitioner.objects.filter(clinic=clinic, is_active=True).order_by("name")
    query = (
        appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
        .filter(start_at__gte=start, start_at__lt=end)
        .exclude(status=AppointmentStatus.CANCELLED)
        .select_related("patient", "procedure", "area", "practitioner")
        .order_by("start_at")
    )
    if practitioner_id:
        practitioners = practitioners.filter(pk=practitioner_id)
        query = query.filter(practitioner_id=practitioner_id)
    appointments = list(query)
    return [
        DaySheet(p, [a for a in appointments if a.practitioner_id == p.pk], not_here(p, clinic))
        for p in _with_inactive(list(practitioners), appointments)
    ]


@dataclass(frozen=True)
class AftercareText:
    name: str
    subject: str
    text: str


@dataclass
class Aftercare:
    texts: list[AftercareText]
    next_possible: list[NextPossible]


def aftercare(*, appointment: Appointment, now: datetime) -> Aftercare:
    """What a patient takes home after a treatment: the post-care texts the reminders would send for it
    (rendered the same way, by reminders.content) and when each later procedure is possible again."""
    templates = (
        ReminderTemplate.objects.filter(kind=MessageKind.POST_CARE, is_active=True)
        .filter(Q(procedure__isnull=True) | Q(procedure_id=appointment.procedure_id))
        .order_by("id")
    )
    texts = []
    for template in templates:
        # An unsaved row: rendered, never queued.
        message = OutboxMessage(
            appointment=appointment,
            template=template,
            kind=MessageKind.POST_CARE,
            channel=Channel.EMAIL,
            due_at=now,
            anchor_at=now,
            created_at=now,
        )
        try:
            rendered = render_message(message=message, now=now)
        except RenderError:
            continue  # a broken template is the outbox's problem to report, not the sheet's
        texts.append(AftercareText(template.name, rendered.subject, _body(rendered.text)))
    return Aftercare(texts=texts, next_possible=next_possible(appointment=appointment, now=now))


def _body(text: str) -> str:
    """The template's own text: the e-mail footer (contacts, unsubscribe) follows the "--" signature line."""
    body, separator, _ = text.rpartition("\n--\n")
    return (body if separator else text).strip()


# How recent a booking (or a line of the medical history) must be for a form of the same to be its second sending (a
# double click, a page resent after a slow answer, the back button), not another of the same that someone wants.
SENT_TWICE_WITHIN = timedelta(minutes=10)


def booking_already_made(
    *, patient, clinic, procedure_code: str, area_code, start_at: datetime, now: datetime, practitioner_id=None
):
    """The patient's active appointment at `clinic` of that procedure and area at exactly that start (with that
    practitioner, when one is named), booked in the last SENT_TWICE_WITHIN, or None: what a booking form sent twice
    finds, its first sending having booked it."""
    same = Appointment.objects.filter(
        patient=patient,
        clinic=clinic,
        procedure_id=procedure_code,
        area_id=area_code or None,
        start_at=start_at,
        status__in=ACTIVE_APPOINTMENT_STATUSES,
        created_at__gte=now - SENT_TWICE_WITHIN,
    ).select_related("practitioner", "procedure")
    if practitioner_id:
        same = same.filter(practitioner_id=practitioner_id)
    return same.order_by("created_at").first()


def course_already_added(
    *, patient, drug_code: str, started_on: date, ended_on: date | None, notes: str, now: datetime
) -> MedicationCourse | None:
    """The patient's course of that drug with those dates and notes recorded in the last SENT_TWICE_WITHIN, or None:
    what a medication form sent twice (a double click, the back button) finds, its first sending having added it. A
    second course left ongoing would keep its contraindication after the first is ended."""
    return (
        MedicationCourse.objects.filter(
            patient=patient,
            drug_id=drug_code,
            started_on=started_on,
            ended_on=ended_on,
            notes=notes,
            created_at__gte=now - SENT_TWICE_WITHIN,
        )
        .select_related("drug")
        .order_by("created_at")
        .first()
    )


def procedure_already_recorded(
    *,
    patient,
    procedure_code: str,
    area_code,
    performed_on: date,
    performed_time: time | None,
    notes: str,
    clinic: Clinic,
    now: datetime,
) -> ProcedureRecord | None:
    """The patient's reported procedure of that kind and area, on that day of `clinic` (the site whose day it keeps)
    and at that time when one is given, with those notes, recorded in the last SENT_TWICE_WITHIN, or None: what a
    procedure-done-elsewhere form sent twice finds, its first sending having recorded it."""
    start, end = local_day_range(performed_on, clinic.tz)
    rows = (
        ProcedureRecord.objects.filter(
            patient=patient,
            procedure_id=procedure_code,
            area_id=area_code or None,
            clinic=clinic,
            source=HistorySource.REPORTED,
            appointment__isnull=True,
            notes=notes,
            performed_at__gte=start,
            performed_at__lt=end,
            created_at__gte=now - SENT_TWICE_WITHIN,
        )
        .select_related("procedure")
        .order_by("created_at")
    )
    for row in rows:
        at = timezone.localtime(row.performed_at, clinic.tz)
        if performed_time is None or (at.hour, at.minute) == (performed_time.hour, performed_time.minute):
            return row
    return None


# Said after a cancel or a move when no message will tell the patient: the desk phones them.
NOBODY_TELLS_THEM = (
    "No message will tell the patient (they get none from us, or have no e-mail address or mobile number on their "
    "record): phone them."
)


def patient_will_be_told(appointment: Appointment, kind: str) -> bool:
    """Whether a message of `kind` (a cancellation or move notice) about `appointment` is on its way to the patient by
    e-mail or text, planned on a channel they have and not yet sent or dropped; for a move, a confirmation not yet
    sent counts too (it names the new time, and no notice is planned beside it). False when they get no messages from
    us (unsubscribed, texts stopped, no address or number): the desk is asked to phone them. For a move, True also
    when nothing is on its way because the patient already holds the time (moved back to the time they were last
    told: its notice is dropped, reminders.services.last_told_start). One statement, two for a move with nothing on
    its way."""
    kinds = [kind, MessageKind.CONFIRMATION] if kind == MessageKind.RESCHEDULED else [kind]
    on_its_way = (
        OutboxMessage.objects.filter(
            appointment_id=appointment.pk,
            kind__in=kinds,
            status__in=(OutboxStatus.PENDING, OutboxStatus.HELD, OutboxStatus.SENDING),
        )
        .exclude(channel=Channel.WEBHOOK)
        .exists()
    )
    if on_its_way or kind != MessageKind.RESCHEDULED:
        return on_its_way
    return last_told_start(appointment) == appointment.start_at
