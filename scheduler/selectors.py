"""Reads for the engine: the rule book and a patient's timeline.

Each loader runs a fixed number of queries whatever the size of the history,
so booking cost in queries does not grow with a patient's past.
"""

from __future__ import annotations

from django.db.models import IntegerField, Max, Q, Value

from clinic.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    Condition,
    Medication,
    MedicationCourse,
    PatientCondition,
    ProcedureRecord,
    ProcedureType,
    TreatmentArea,
)
from core.compiled import CompiledQuery
from core.ids import parse_uuid
from scheduler import rules, versioned
from scheduler.models import AppliesTo, AreaScope, ContraindicationRule, IntervalRule, RuleBookVersion


def catalogue_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for model in (ProcedureType, Medication, Condition, TreatmentArea):
        names.update(model.objects.values_list("code", "name"))
    return names


def rulebook_load(organisation_id) -> rules.RuleBook:
    """The organisation's effective rule book (the defaults with its own rules applied) and its version,
    kept per process under the configuration version, which every rule or version write raises."""
    return versioned.cached(f"rulebook:{organisation_id}", lambda: _rulebook_from_database(organisation_id))


def rulebook_version(organisation_id) -> str:
    """`d<defaults version>.o<the organisation's own version>`; 1 is each as shipped (docs/rules.md)."""
    numbers = dict(
        RuleBookVersion.objects.filter(Q(organisation__isnull=True) | Q(organisation_id=organisation_id))
        .values_list("organisation_id")
        .annotate(Max("number"))
    )
    return f"d{numbers.get(None, 1)}.o{numbers.get(organisation_id, 1) if organisation_id else 1}"


def effective_rules(model, organisation_id) -> list:
    """The rows of `model` in force for the organisation: its own active rows, and the active defaults
    none of its rows stands in for. Ordered as the model orders them."""
    rows = list(
        model.objects.filter(Q(organisation__isnull=True) | Q(organisation_id=organisation_id)).select_related(
            "replaces"
        )
    )
    shadowed = {r.replaces_id for r in rows if r.organisation_id is not None and r.replaces_id}
    return [r for r in rows if r.is_active and r.pk not in shadowed]


def _rulebook_from_database(organisation_id) -> rules.RuleBook:
    intervals = [
        rules.IntervalRule(
            id=str(r.id),
            later_procedure=r.later_procedure_id,
            gap_value=r.gap_value,
            gap_unit=r.gap_unit,
            severity=r.severity,
            earlier_procedure=r.earlier_procedure_id,
            earlier_medication=r.earlier_medication_id,
            same_area_only=r.scope == AreaScope.SAME_AREA,
            source=r.source,
        )
        for r in effective_rules(IntervalRule, organisation_id)
    ]
    contraindications = [
        rules.ContraindicationRule(
            id=str(r.id),
            procedure=r.procedure_id,
            severity=r.severity,
            condition=r.condition_id,
            medication=r.medication_id,
            active_only=r.applies_to == AppliesTo.ACTIVE,
            area_specific=r.area_specific,
            source=r.source,
        )
        for r in effective_rules(ContraindicationRule, organisation_id)
    ]
    return rules.RuleBook(intervals, contraindications, catalogue_names(), version=rulebook_version(organisation_id))


_DONE, _BOOKED = 1, 2


def _events_of(patient_id):
    history = (
        ProcedureRecord.objects.filter(patient_id=patient_id)
        .order_by()  # no ORDER BY inside a compound statement (SQLite refuses it)
        .annotate(event_state=Value(_DONE, output_field=IntegerField()))
        .values_list("id", "procedure_id", "performed_at", "area_id", "appointment__clinic_id", "event_state")
    )
    appointments = (
        Appointment.objects.filter(patient_id=patient_id, status__in=ACTIVE_APPOINTMENT_STATUSES)
        .order_by()
        .annotate(event_state=Value(_BOOKED, output_field=IntegerField()))
        .values_list("id", "procedure_id", "start_at", "area_id", "clinic_id", "event_state")
    )
    return history.union(appointments, all=True)


# Read for every booking, check and reminder text: compiled once per connection (core.compiled).
_EVENTS = CompiledQuery(_events_of)
_COURSES = CompiledQuery(
    lambda patient_id: MedicationCourse.objects.filter(patient_id=patient_id).values_list(
        "id", "drug_id", "started_on", "ended_on"
    )
)
_CONDITIONS = CompiledQuery(
    lambda patient_id: PatientCondition.objects.filter(patient_id=patient_id).values_list(
        "id", "condition_id", "status", "area_id"
    )
)


def timeline_for_patient(patient_id) -> rules.Timeline:
    """History, active appointments, medication courses and the intake, in three queries (the history and
    the appointments in one `UNION ALL`)."""
    patient_id = parse_uuid(patient_id)
    if patient_id is None:  # not an id: nobody's
        return rules.Timeline([], [], [])
    events = [
        rules.ProcedureEvent(
            id=str(pk),
            procedure=code,
            start_at=at,
            area=area,
            state=rules.EventState.DONE if state == _DONE else rules.EventState.BOOKED,
            clinic=str(clinic) if clinic else None,
        )
        for pk, code, at, area, clinic, state in _EVENTS.rows(patient_id)
    ]
    courses = [
        rules.MedicationCourse(id=str(pk), drug=drug, started_on=start, ended_on=end)
        for pk, drug, start, end in _COURSES.rows(patient_id)
    ]
    conditions = [
        rules.ConditionEntry(id=str(pk), condition=code, status=status, area=area)
        for pk, code, status, area in _CONDITIONS.rows(patient_id)
    ]
    return rules.Timeline(events, courses, conditions)


def timeline_for_window(patient_id, *, rulebook: rules.RuleBook, procedure: str, lo, hi) -> rules.Timeline:
    """What `rules.blocked_ranges` reads for `procedure` over [lo, hi]: the events of the procedures an
    interval rule relates to it (before it or after it) that fall within the rules' reach of the window,
    and the medication courses and conditions whole. A patient's long history elsewhere is not read."""
    back = [r for r in rulebook.looking_back.get(procedure, ()) if r.earlier_procedure]
    forward = list(rulebook.looking_forward.get(procedure, ()))
    codes = {r.earlier_procedure for r in back} | {r.later_procedure for r in forward}
    events: list[rules.ProcedureEvent] = []
    if codes:
        reach = max(r.reach for r in (*back, *forward))
        since, until = lo - reach, hi + reach
        events = [
            rules.ProcedureEvent(id=str(pk), procedure=code, start_at=at, area=area, state=rules.EventState.DONE)
            for pk, code, at, area in ProcedureRecord.objects.filter(
                patient_id=patient_id, procedure_id__in=codes, performed_at__gte=since, performed_at__lte=until
            ).values_list("id", "procedure_id", "performed_at", "area_id")
        ] + [
            rules.ProcedureEvent(id=str(pk), procedure=code, start_at=at, area=area, state=rules.EventState.BOOKED)
            for pk, code, at, area in Appointment.objects.filter(
                patient_id=patient_id,
                status__in=ACTIVE_APPOINTMENT_STATUSES,
                procedure_id__in=codes,
                start_at__gte=since,
                start_at__lte=until,
            ).values_list("id", "procedure_id", "start_at", "area_id")
        ]
    courses = [
        rules.MedicationCourse(id=str(pk), drug=drug, started_on=start, ended_on=end)
        for pk, drug, start, end in MedicationCourse.objects.filter(patient_id=patient_id).values_list(
            "id", "drug_id", "started_on", "ended_on"
        )
    ]
    conditions = [
        rules.ConditionEntry(id=str(pk), condition=code, status=status, area=area)
        for pk, code, status, area in PatientCondition.objects.filter(patient_id=patient_id).values_list(
            "id", "condition_id", "status", "area_id"
        )
    ]
    return rules.Timeline(events, courses, conditions)


def patient_outlook(*, patient, now) -> list[tuple[ProcedureType, rules.Evaluation]]:
    """For each bookable procedure: could the patient have it now, and if not, from when and why."""
    timeline = timeline_for_patient(patient.pk)
    rulebook = rulebook_load(patient.organisation_id)
    start = rules.ceil_minute(now)
    return [
        (procedure, rules.evaluate(timeline, rulebook, rules.Proposal(procedure.code, start), patient.clinic.tz))
        for procedure in ProcedureType.objects.filter(bookable=True)
    ]


def rulebook_overview(organisation_id) -> dict:
    """What the front desk shows of an organisation's rule book: each rule in force (its kind, whose it is,
    its basis and source, the default it stands in for), the defaults it switched off, and the versions."""

    def describe(rows, model):
        disabled = list(
            model.objects.filter(organisation_id=organisation_id, is_active=False).select_related("replaces")
        )
        return [{"rule": r, "own": r.organisation_id is not None, "changes": r.replaces} for r in rows], disabled

    intervals, intervals_off = describe(effective_rules(IntervalRule, organisation_id), IntervalRule)
    contraindications, contraindications_off = describe(
        effective_rules(ContraindicationRule, organisation_id), ContraindicationRule
    )
    versions = RuleBookVersion.objects.filter(
        Q(organisation__isnull=True) | Q(organisation_id=organisation_id)
    ).select_related("created_by", "organisation")
    return {
        "version": rulebook_version(organisation_id),
        "intervals": intervals,
        "contraindications": contraindications,
        "disabled": intervals_off + contraindications_off,
        "versions": list(versions[:50]),
    }
