"""Reads for the engine: the rule book and a patient's timeline.

Each loader runs a fixed number of queries whatever the size of the history,
so booking cost in queries does not grow with a patient's past.
"""

from __future__ import annotations

from functools import partial
from zoneinfo import ZoneInfo

from django.db import models
from django.db.models import F, Max, Q
from django.db.models.functions import Coalesce

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
from core import unions
from core.compiled import CompiledQuery
from core.ids import parse_uuid
from core.lookups import InLiterals
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


# The kinds of row in a patient's timeline read.
_DONE, _BOOKED, _COURSE, _CONDITION = 1, 2, 3, 4
# One layout for every kind (core.unions).
_TIMELINE_LAYOUT = {
    "t_id": models.UUIDField(),  # a history entry's, an appointment's or a medication course's id
    "t_number": models.BigIntegerField(),  # an intake line's id
    "t_code": models.CharField(),  # the procedure, drug or condition
    "t_at": models.DateTimeField(),
    "t_area": models.CharField(),
    "t_clinic": models.UUIDField(),
    "t_zone": models.CharField(),  # the zone of the clinic where a procedure was done or is booked
    "t_from": models.DateField(),
    "t_to": models.DateField(),
    "t_status": models.CharField(),
}


def _timeline_branch(queryset, kind: int, **columns):
    return unions.branch(queryset, kind, _TIMELINE_LAYOUT, **columns)


def _branches(patient_id, *, history=None, appointments=None, clinics: bool = True) -> list:
    """The timeline's four kinds of row for the patient, the history and appointments narrowed by `history`
    and `appointments` (filter arguments; None: left out), with the clinic of each event when `clinics`, and
    always the zone its calendar gaps are reckoned in: its clinic's, or for a procedure reported as done
    elsewhere the zone of the clinic that recorded it (its day was recorded in)."""
    branches = []
    if history is not None:
        where = {"t_clinic": "appointment__clinic_id"} if clinics else {}
        # A record's day: its visit's clinic's, else the clinic that recorded it (clinic 0018 filled every row
        # from before), else the home clinic's (ProcedureRecord.dating_clinic says the same).
        where["t_zone"] = Coalesce("appointment__clinic__timezone", "clinic__timezone", "patient__clinic__timezone")
        branches.append(
            _timeline_branch(
                ProcedureRecord.objects.filter(patient_id=patient_id, **history),
                _DONE,
                t_id="id",
                t_code="procedure_id",
                t_at="performed_at",
                t_area="area_id",
                **where,
            )
        )
    if appointments is not None:
        where = {"t_clinic": "clinic_id"} if clinics else {}
        where["t_zone"] = "clinic__timezone"
        branches.append(
            _timeline_branch(
                Appointment.objects.filter(
                    InLiterals(F("status"), ACTIVE_APPOINTMENT_STATUSES), patient_id=patient_id, **appointments
                ),
                _BOOKED,
                t_id="id",
                t_code="procedure_id",
                t_at="start_at",
                t_area="area_id",
                **where,
            )
        )
    branches.append(
        _timeline_branch(
            MedicationCourse.objects.filter(patient_id=patient_id),
            _COURSE,
            t_id="id",
            t_code="drug_id",
            t_from="started_on",
            t_to="ended_on",
        )
    )
    branches.append(
        _timeline_branch(
            PatientCondition.objects.filter(patient_id=patient_id),
            _CONDITION,
            t_number="id",
            t_code="condition_id",
            t_area="area_id",
            t_status="status",
        )
    )
    return branches


def _timeline_of(patient_id):
    return unions.union(_branches(patient_id, history={}, appointments={}))


# Read for every booking, check and reminder text: one statement, compiled once per connection (core.compiled).
_TIMELINE = CompiledQuery(_timeline_of)


def _timeline(rows) -> rules.Timeline:
    events, courses, conditions = [], [], []
    for kind, pk, number, code, at, area, clinic, zone, start, end, status in rows:
        if kind == _DONE or kind == _BOOKED:
            events.append(
                rules.ProcedureEvent(
                    id=str(pk),
                    procedure=code,
                    start_at=at,
                    area=area,
                    state=rules.EventState.DONE if kind == _DONE else rules.EventState.BOOKED,
                    clinic=str(clinic) if clinic else None,
                    tz=ZoneInfo(zone) if zone else None,
                )
            )
        elif kind == _COURSE:
            courses.append(rules.MedicationCourse(id=str(pk), drug=code, started_on=start, ended_on=end))
        else:
            conditions.append(rules.ConditionEntry(id=str(number), condition=code, status=status, area=area))
    return rules.Timeline(events, courses, conditions)  # which orders each kind itself


def timeline_for_patient(patient_id) -> rules.Timeline:
    """History, active appointments, medication courses and the intake, in one query (a `UNION ALL`)."""
    patient_id = parse_uuid(patient_id)
    if patient_id is None:  # not an id: nobody's
        return rules.Timeline([], [], [])
    return _timeline(_TIMELINE.rows(patient_id))


def timeline_for_window(
    patient_id, *, rulebook: rules.RuleBook, procedure: str, lo, hi, clinics: bool = False
) -> rules.Timeline:
    """What `rules.blocked_ranges` reads for `procedure` over [lo, hi]: the events of the procedures an
    interval rule relates to it (before it or after it) that fall within the rules' reach of the window,
    and the medication courses and conditions whole, in one query. A patient's long history elsewhere is
    not read. `clinics`: with each event's clinic, for a reader that names what stands in the way (a plan's
    refusal names a sister site's booking as a booking's 409 does); an availability search names nothing."""
    patient_id = parse_uuid(patient_id)
    if patient_id is None:  # not an id: nobody's
        return rules.Timeline([], [], [])
    back = [r for r in rulebook.looking_back.get(procedure, ()) if r.earlier_procedure]
    forward = list(rulebook.looking_forward.get(procedure, ()))
    codes = sorted({r.earlier_procedure for r in back} | {r.later_procedure for r in forward})
    if not codes:
        return _timeline(_NO_EVENTS.rows(patient_id))
    reach = max(r.reach for r in (*back, *forward))
    return _timeline((_WINDOW_WITH_CLINICS if clinics else _WINDOW).rows(patient_id, codes, lo - reach, hi + reach))


def _window_of(patient_id, codes, since, until, *, clinics: bool = False):
    return unions.union(
        _branches(
            patient_id,
            history={"procedure_id__in": codes, "performed_at__gte": since, "performed_at__lte": until},
            appointments={"procedure_id__in": codes, "start_at__gte": since, "start_at__lte": until},
            clinics=clinics,
        )
    )


# Read for every availability search: compiled once per connection and number of procedures (core.compiled).
_WINDOW = CompiledQuery(_window_of)
_WINDOW_WITH_CLINICS = CompiledQuery(partial(_window_of, clinics=True))
_NO_EVENTS = CompiledQuery(lambda patient_id: unions.union(_branches(patient_id)))


def patient_outlook(*, patient, now, tz=None) -> list[tuple[ProcedureType, rules.Evaluation]]:
    """For each bookable procedure: could the patient have it now, and if not, from when and why, reckoned in `tz`:
    the zone of the clinic where it would be booked (calendar gaps end at that clinic's midnight), the patient's
    home clinic's when not given."""
    timeline = timeline_for_patient(patient.pk)
    rulebook = rulebook_load(patient.organisation_id)
    start = rules.ceil_minute(now)
    tz = tz or patient.clinic.tz
    return [
        (procedure, rules.evaluate(timeline, rulebook, rules.Proposal(procedure.code, start), tz))
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
