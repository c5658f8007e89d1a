"""Reads for the front-desk pages, each starting from the tenancy selectors in clinic/.

A page calls one of these and gets everything it shows; local days are
turned into UTC ranges here, in the clinic's zone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import QuerySet

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    Clinic,
    MedicationCourse,
    Patient,
    PatientCondition,
    Practitioner,
    ProcedureRecord,
    ProcedureType,
)
from clinic.selectors import appointments_in, clinics_for_user, patients_in
from frontdesk.checks import rules_only
from reminders.models import OutboxMessage, OutboxStatus
from reminders.selectors import patient_messages
from scheduler import rules
from scheduler.booking import BookingCheck
from scheduler.selectors import patient_outlook


def clinic_for_user(user, code: str) -> Clinic | None:
    return clinics_for_user(user).filter(code=code).first()


def patient_for_user(user, clinic: Clinic, patient_id) -> Patient | None:
    return patients_in(clinics_for_user(user).filter(pk=clinic.pk)).filter(pk=patient_id).first()


def appointment_for_user(user, clinic: Clinic, appointment_id) -> Appointment | None:
    return appointments_in(clinics_for_user(user).filter(pk=clinic.pk)).filter(pk=appointment_id).first()


def local_day_range(day: date, tz) -> tuple[datetime, datetime]:
    return rules.start_of_local_day(day, tz), rules.start_of_local_day(day + timedelta(days=1), tz)


@dataclass
class ScheduleColumn:
    heading: str
    day: date | None
    practitioner: Practitioner | None
    appointments: list[Appointment] = field(default_factory=list)


def schedule_columns(*, user, clinic: Clinic, days: list[date], practitioner_id=None,
                     include_cancelled: bool = False) -> list[ScheduleColumn]:
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
            columns.setdefault(appointment.practitioner_id, ScheduleColumn(
                appointment.practitioner.name, days[0], appointment.practitioner)).appointments.append(appointment)
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
    return list(appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
                .filter(start_at__gte=start, start_at__lt=end)
                .exclude(status=AppointmentStatus.CANCELLED).order_by("start_at"))


def pending_clearance(*, user, clinic: Clinic) -> QuerySet[Appointment]:
    """Every booking still waiting for a clinician, however old: it stays in the queue until it
    is cleared, moved, cancelled or marked a no-show, so none is forgotten."""
    return (appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
            .filter(status=AppointmentStatus.PENDING_CLEARANCE).order_by("start_at"))


def needs_attention(*, user, clinic: Clinic) -> QuerySet[Appointment]:
    """Bookings a later change to the patient's record (or the rules) made unsafe: they stay here until
    they are moved, cancelled or the record is corrected (scheduler/recheck.py)."""
    return (appointments_in(clinics_for_user(user).filter(pk=clinic.pk))
            .filter(status=AppointmentStatus.NEEDS_REVIEW).order_by("start_at"))


@dataclass(frozen=True)
class OutlookRow:
    """One bookable procedure and scheduler.booking's verdict on it from now, on the rules alone."""

    procedure: ProcedureType
    check: BookingCheck


@dataclass
class PatientRecord:
    patient: Patient
    outlook: list[OutlookRow]
    booked: list[Appointment]
    other_appointments: list[Appointment]
    procedures: list[ProcedureRecord]
    courses: list[MedicationCourse]
    conditions: list[PatientCondition]


def patient_record(*, patient: Patient, now: datetime) -> PatientRecord:
    appointments = list(Appointment.objects.filter(patient=patient)
                        .select_related("procedure", "practitioner", "area").order_by("start_at"))
    return PatientRecord(
        patient=patient,
        outlook=[OutlookRow(p, rules_only(evaluation=e, duration=timedelta(minutes=p.duration_minutes),
                                          tz=patient.clinic.tz))
                 for p, e in patient_outlook(patient=patient, now=now)],
        booked=[a for a in appointments if a.status in ACTIVE_APPOINTMENT_STATUSES],
        other_appointments=[a for a in reversed(appointments)
                            if a.status in (AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW)],
        procedures=list(ProcedureRecord.objects.filter(patient=patient).select_related("procedure", "area")),
        courses=list(MedicationCourse.objects.filter(patient=patient).select_related("drug")),
        conditions=list(PatientCondition.objects.filter(patient=patient).select_related("condition", "area")),
    )


def patient_appointments_by_id(patient: Patient) -> dict[str, Appointment]:
    """For naming the appointment a rule conflicts with."""
    return {str(a.pk): a for a in Appointment.objects.filter(patient=patient).select_related("procedure")}


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
    def replaced(self) -> bool:
        return (self.message.status == OutboxStatus.CANCELLED
                and self.message.last_error.lower().startswith(SUPERSEDED))

    @property
    def status_label(self) -> str:
        return "Replaced" if self.replaced else self.message.get_status_display()

    @property
    def note(self) -> str:
        if self.replaced:
            return "Replaced by a newer copy (the appointment changed), which is listed on its own."
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
    return [ReminderGroup(key, label, [ReminderRow(m) for m in rows if m.status in statuses])
            for key, label, statuses in REMINDER_GROUPS]
