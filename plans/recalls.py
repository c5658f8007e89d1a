"""Recalls: after a treatment that has a next step, one "you are due for your next ..." message.

A plan's session completed with the next one not yet booked, or a treatment with a maintenance template
(Botox every 3-4 months) completed: the patient gets one recall at the ideal date (clinic-local, through
the reminders' outbox: consent, opt-out, quiet hours and STOP as for care messages), with the earliest
date the rules allow for this patient in its text (asked again when it goes: reminders.content.recall_earliest). Booking that procedure cancels it; so does a later
treatment of it done or recorded, and a patient has one open recall per procedure (the latest treatment's),
merges included (`recalls_settle`). Subscribed to scheduler.notifications and clinic.record_changes from
PlansConfig.ready(), so it runs inside the change's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection
from django.db.models import F, Max

from clinic.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus, AuditAction, ProcedureRecord
from plans.models import PlanKind, PlanSession, PlanTemplate, Recall
from reminders.services import recall_add, recall_cancel
from scheduler import rules, selectors


@dataclass(frozen=True)
class DueRecall:
    procedure: str
    due_on: date
    earliest_on: date | None
    template: PlanTemplate
    session: PlanSession | None  # the plan's next session, when it is a plan's
    opens_on: date  # the template's minimum gap after the treatment: the message asks the rules again from here


def recall_for(*, appointment: Appointment) -> DueRecall | None:
    """The recall a completed appointment calls for, or None (no next step, or it is already booked)."""
    tz = appointment.clinic.tz
    done_on = appointment.start_at.astimezone(tz).date()
    template, session = None, None
    current = PlanSession.objects.filter(appointment=appointment).select_related("plan__template").first()
    if current is not None and current.plan.cancelled_at is not None:
        return None  # a course the patient stopped recalls nothing (a visit under way when it stopped, done since)
    if current is not None:
        session = current.plan.sessions.filter(index=current.index + 1).select_related("appointment").first()
        if session is not None:
            template = current.plan.template
    if template is None:
        template = (
            PlanTemplate.objects.for_organisation(appointment.patient.organisation_id)
            .filter(procedure_id=appointment.procedure_id, kind=PlanKind.MAINTENANCE)
            .order_by(F("organisation_id").asc(nulls_last=True), "code")  # the organisation's own first
            .first()
        )
    if template is None:
        return None
    # The procedure the course was booked as, the one just done (a maintenance template is found by it; a course's
    # template edited since books no other treatment: TreatmentPlan.procedure_made_for).
    if _later_treatments(appointment.patient_id, [appointment.procedure_id], since=appointment.start_at):
        return None  # the next one is booked already, or done (an earlier treatment marked done after it)
    opens = rules.start_of_local_day(template.min_gap.add_to(done_on), tz)
    earliest = rules.earliest_eligible_start(
        selectors.timeline_for_patient(appointment.patient_id),
        selectors.rulebook_load(appointment.patient.organisation_id),
        rules.Proposal(appointment.procedure_id, opens, appointment.area_id),
        tz,
    )
    return DueRecall(
        appointment.procedure_id,
        template.ideal_gap.add_to(done_on),
        earliest.astimezone(tz).date() if earliest else None,
        template,
        session,
        template.min_gap.add_to(done_on),
    )


def _later_treatments(patient_id, procedures, *, since: datetime) -> dict[str, datetime]:
    """The latest treatment of each of `procedures` after `since`: booked (still to come or not yet marked done),
    done here or recorded as done elsewhere. Two statements, whatever the history's size."""
    booked = (
        Appointment.objects.filter(
            patient_id=patient_id,
            procedure_id__in=procedures,
            status__in=(*ACTIVE_APPOINTMENT_STATUSES, AppointmentStatus.COMPLETED),
            start_at__gt=since,
        )
        .values("procedure_id")
        .annotate(latest=Max("start_at"))
    )
    done = (
        ProcedureRecord.objects.filter(patient_id=patient_id, procedure_id__in=procedures, performed_at__gt=since)
        .values("procedure_id")
        .annotate(latest=Max("performed_at"))
    )
    latest: dict[str, datetime] = {}
    for row in [*booked, *done]:
        latest[row["procedure_id"]] = max(row["latest"], latest.get(row["procedure_id"], row["latest"]))
    return latest


def recalls_settle(*, patient_id, now: datetime) -> int:
    """Close the patient's open recalls they no longer need; return how many.

    One open recall per procedure, the latest treatment's; and none once a later treatment of it is booked,
    done, or recorded as done elsewhere. Booking closes a recall as it happens (`recall_on_change`); this
    settles what arrives otherwise: a merge that brings two records' recalls, or the other record's booking,
    into one (clinic.record_changes, inside the change's transaction), a treatment reported done elsewhere,
    an earlier treatment marked done after a later one.
    """
    open_recalls = list(
        Recall.objects.select_for_update(of=("self",))
        .filter(patient_id=patient_id, closed_at__isnull=True)
        .select_related("after")
        .order_by("-after__start_at", "pk")
    )
    if not open_recalls:
        return 0  # the usual case: one statement
    earliest = min(recall.after.start_at for recall in open_recalls)
    later = _later_treatments(patient_id, {recall.procedure_id for recall in open_recalls}, since=earliest)
    kept, stale = set(), []
    for recall in open_recalls:  # the latest treatment's first
        acted_on = later.get(recall.procedure_id)
        if recall.procedure_id in kept or (acted_on is not None and acted_on > recall.after.start_at):
            stale.append(recall)
        else:
            kept.add(recall.procedure_id)
    if stale:
        Recall.objects.filter(pk__in=[recall.pk for recall in stale]).update(closed_at=now)
        recall_cancel(
            patient_id=patient_id,
            procedure=None,
            after=[recall.after_id for recall in stale],
            reason="a later treatment was booked or done",
        )
    return len(stale)


def recalls_withdraw(*, patient_id, sessions, now: datetime) -> int:
    """Close the open recalls for the plan sessions `sessions` (ids: "you are due for session n"), and cancel their
    unsent messages: a course cancelled (plans.services.plan_cancel). A maintenance recall after one of its
    treatments is not the course's and stays. Returns how many were closed."""
    recalls = Recall.objects.select_for_update(of=("self",)).filter(patient_id=patient_id, closed_at__isnull=True)
    rows = list(recalls.filter(session_id__in=list(sessions)))
    if not rows:
        return 0
    Recall.objects.filter(pk__in=[row.pk for row in rows]).update(closed_at=now)
    recall_cancel(
        patient_id=patient_id, procedure=None, after=[row.after_id for row in rows], reason="the course was cancelled"
    )
    return len(rows)


def recalls_on_record_changed(*, patient_id, now: datetime, cause: str) -> None:
    """clinic.record_changes subscriber."""
    recalls_settle(patient_id=patient_id, now=now)


def _close_open(*, patient_id, procedure_id, now: datetime) -> int:
    """`Recall.objects.filter(patient, procedure, open).update(closed_at=now)` as plain SQL: every booking runs
    it and it almost never finds a row, and building that queryset each time was about a twelfth of a booking's
    Python in the web workers (docs/benchmarks.md). Returns how many it closed."""
    fields = [Recall._meta.get_field(name) for name in ("closed_at", "patient", "procedure")]
    quote = connection.ops.quote_name
    closed, patient, procedure = (quote(field.column) for field in fields)
    sql = (
        f"UPDATE {quote(Recall._meta.db_table)} SET {closed} = %s"
        f" WHERE {closed} IS NULL AND {patient} = %s AND {procedure} = %s"
    )
    params = [
        field.get_db_prep_value(value, connection)
        for field, value in zip(fields, (now, patient_id, procedure_id), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def recall_on_change(*, appointment: Appointment, change: str, now: datetime, previous: dict | None = None) -> None:
    if change == AuditAction.BOOKED:
        # One statement per booking; the outbox is touched only when a recall was open (none usually is).
        if _close_open(patient_id=appointment.patient_id, procedure_id=appointment.procedure_id, now=now):
            recall_cancel(
                patient_id=appointment.patient_id, procedure=appointment.procedure_id, reason="the patient booked it"
            )
    elif change == AuditAction.COMPLETED:
        if Recall.objects.filter(after=appointment).exists():
            return  # completion happens once; a replayed call must not plan a second recall
        recall = recall_for(appointment=appointment)
        if recall is None:
            return
        Recall.objects.create(
            patient_id=appointment.patient_id,
            clinic_id=appointment.clinic_id,
            after=appointment,
            procedure_id=recall.procedure,
            template=recall.template,
            session=recall.session,
            due_on=recall.due_on,
            earliest_on=recall.earliest_on,
            created_at=now,
        )
        recall_add(
            appointment=appointment,
            due_on=recall.due_on,
            payload={
                "procedure": recall.procedure,
                "due_on": recall.due_on.isoformat(),
                "earliest_on": recall.earliest_on.isoformat() if recall.earliest_on else None,
                # The message works out the earliest date again when it goes (reminders.content.recall_earliest).
                "opens_on": recall.opens_on.isoformat(),
                "plan_template": recall.template.code,
                "plan": str(recall.session.plan_id) if recall.session else None,
                "session": recall.session.index if recall.session else None,
            },
            now=now,
        )
        # A recall still open from an earlier treatment of it is this one's now (one per procedure).
        recalls_settle(patient_id=appointment.patient_id, now=now)
