"""The treatment plan endpoints (docs/plans.md): templates, propose or book a course, follow it, re-plan.

Thin like the other views: shape in, one call into plans.services or plans.selectors, shape out. Scope is
the caller's (api.access): another clinic's patient or plan is a 404. A refusal names the session.
"""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from api import schema as docs
from api.fields import (
    AwareDateTimeField,
    CodeField,
    IdField,
    InputSerializer,
    OffsetDateTimeField,
    StrictBooleanField,
    StrictDateField,
)
from api.idempotency import idempotent
from api.problems import (
    PROBLEM_CONTENT_TYPE,
    check_data,
    instance_of,
    local_iso,
    problem,
    problem_response,
    violation_data,
)
from api.serializers import CancelIn, ProblemOut, RefusalProblemOut, StrictIntegerField, ViolationOut
from api.views import ApiView, _created, _input
from clinic.models import AppointmentStatus
from core.errors import InvalidInput
from core.ids import parse_uuid
from plans import planner, selectors, services
from plans.models import PlanGapUnit, PlanKind, PlanTemplate, TreatmentPlan

# --- Shapes ----------------------------------------------------------------------------------------


class GapOut(serializers.Serializer):
    value = serializers.IntegerField()
    unit = serializers.ChoiceField(choices=PlanGapUnit.choices)


def _gap(gap: planner.Gap) -> dict:
    return {"value": gap.value, "unit": gap.unit}


class PlanTemplateOut(serializers.Serializer):
    code = serializers.CharField()
    organisation = serializers.CharField(
        source="organisation_id", allow_null=True, help_text="Null: a default every organisation starts from."
    )
    name = serializers.CharField()
    procedure = serializers.CharField(source="procedure_id")
    kind = serializers.ChoiceField(choices=PlanKind.choices)
    sessions = serializers.IntegerField()
    min_gap = serializers.SerializerMethodField()
    ideal_gap = serializers.SerializerMethodField()
    max_gap = serializers.SerializerMethodField()
    area = serializers.CharField(source="area_id", allow_null=True)
    source = serializers.CharField(help_text="Clinic practice: not from the published sources.")

    def get_min_gap(self, template) -> GapOut:
        return _gap(template.min_gap)

    def get_ideal_gap(self, template) -> GapOut:
        return _gap(template.ideal_gap)

    def get_max_gap(self, template) -> GapOut:
        return _gap(template.max_gap)


def _weekdays_field(help_text: str) -> serializers.ListField:
    """Preferred weekdays, as a plan and a re-plan take them."""
    return serializers.ListField(
        child=StrictIntegerField(min_value=0, max_value=6), required=False, max_length=7, help_text=help_text
    )


def _times_of_day_field(help_text: str) -> serializers.ListField:
    """Preferred times of day, as a plan and a re-plan take them."""
    return serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(planner.TIMES_OF_DAY)),
        required=False,
        max_length=3,
        help_text=help_text,
    )


class ChosenSessionIn(InputSerializer):
    start = AwareDateTimeField(help_text="As the dry run proposed it.")
    practitioner = IdField(required=False, allow_null=True)


class PlanCreateIn(InputSerializer):
    template = CodeField(max_length=80, help_text="A plan template's code (GET plan-templates).")
    start_from = StrictDateField(help_text="The first day the first session may fall on (clinic-local).")
    clinic = IdField(
        required=False,
        allow_null=True,
        help_text="Where the sessions take place (id or code), as for a booking. Left out: the practitioner's, "
        "else the patient's home clinic.",
    )
    practitioner = IdField(required=False, allow_null=True, help_text="Every session with this practitioner.")
    area = CodeField(required=False, allow_null=True, help_text="Left out: the template's area, if any.")
    sessions = StrictIntegerField(
        required=False, min_value=1, max_value=planner.MAX_SESSIONS, help_text="Left out: the template's."
    )
    weekdays = _weekdays_field("Preferred weekdays, 0 = Monday. Left out: any.")
    times_of_day = _times_of_day_field(
        "morning (before 12:00), afternoon (12:00-17:00), evening (from 17:00). Left out: any."
    )
    dry_run = StrictBooleanField(required=False, default=False, help_text="true: propose, book nothing.")
    proposal = ChosenSessionIn(
        many=True,
        required=False,
        max_length=planner.MAX_SESSIONS,
        help_text="Book exactly these sessions (a dry run's): each is re-checked, and if one is no longer "
        "possible nothing is booked. Left out: the course is planned and booked in one step.",
    )


class ReplanIn(InputSerializer):
    from_session = StrictIntegerField(min_value=1, max_value=planner.MAX_SESSIONS)
    start = AwareDateTimeField(
        help_text="Not before this: the moved session takes the day nearest its ideal gap after the session kept "
        "before it, on or after `start` (the first possible slot from `start` once that ideal day has passed, or "
        "when its window has)."
    )
    practitioner = IdField(
        required=False,
        allow_null=True,
        help_text="Every re-planned session with this practitioner (null: any). Left out: the plan's own.",
    )
    weekdays = _weekdays_field("Preferred weekdays, 0 = Monday (empty: any). Left out: the plan's own.")
    times_of_day = _times_of_day_field("morning, afternoon, evening (empty: any). Left out: the plan's own.")
    dry_run = StrictBooleanField(required=False, default=False)


class WindowOut(serializers.Serializer):
    earliest = serializers.DateField()
    ideal = serializers.DateField()
    latest = serializers.DateField()


class ProposedSessionOut(serializers.Serializer):
    index = serializers.IntegerField()
    start = OffsetDateTimeField()
    end = OffsetDateTimeField()
    practitioner = serializers.CharField()
    practitioner_name = serializers.CharField()
    window = WindowOut()
    why = serializers.CharField(help_text="Why the session lands where it does.")
    warnings = ViolationOut(many=True)
    needs_clearance = ViolationOut(many=True, help_text="Relative contraindications: booked pending clearance.")
    rulebook_version = serializers.CharField(
        help_text="The version of the organisation's rule book the session was placed and checked by (the "
        "proposal's: every session of it is checked against the same rule book)."
    )


class ObstacleOut(serializers.Serializer):
    session = serializers.IntegerField()
    window = WindowOut()
    violations = ViolationOut(many=True)
    earliest_eligible_start = OffsetDateTimeField(
        allow_null=True,
        help_text="The earliest start from the window's first day that every interval rule allows (as the 409's); "
        "null where no date can.",
    )


class ProposalOut(serializers.Serializer):
    feasible = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True, help_text="When not feasible: which session, and what stops it.")
    obstacle = ObstacleOut(allow_null=True)
    sessions = ProposedSessionOut(many=True)
    rulebook_version = serializers.CharField(
        help_text="The version of the organisation's rule book the sessions were placed by."
    )


class PlanSessionOut(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["booked", "completed", "cancelled", "due", "overdue", "missed"])
    appointment = serializers.CharField(allow_null=True)
    appointment_status = serializers.ChoiceField(
        choices=AppointmentStatus.values,
        allow_null=True,
        help_text="The status of the session's appointment, if it has one: a `booked` session whose booking waits "
        "for clearance or needs review since a rule or record change says so here (it may not go ahead as booked).",
    )
    start = OffsetDateTimeField(allow_null=True)
    practitioner = serializers.CharField(allow_null=True)
    window = WindowOut(
        help_text="The session's window as the course stands: measured by the course's gaps from the previous "
        "session's booking where that one moved since the plan placed them (docs/plans.md)."
    )
    rulebook_version = serializers.CharField(
        allow_null=True,
        help_text="The version of the organisation's rule book the session's booking was checked against when it "
        "was booked or last moved (a re-plan, a reschedule): a session moved after a rule change carries the newer "
        "version. Null when the session holds no booking (due, overdue, missed, cancelled) or was booked before "
        "versions were recorded.",
    )
    warnings = ViolationOut(
        many=True,
        required=False,
        help_text="Only in the 201 that booked the plan: what the rules warn of the session, as its booking's answer "
        "says (a booking's `warnings`), so the same course booked twice hears the repeat-interval warnings.",
    )


class PlanOut(serializers.Serializer):
    id = serializers.CharField()
    template = serializers.CharField()
    patient = serializers.CharField()
    clinic = serializers.CharField()
    area = serializers.CharField(allow_null=True)
    created = OffsetDateTimeField()
    sessions = PlanSessionOut(many=True)
    rulebook_version = serializers.CharField(
        allow_null=True,
        help_text="The version of the organisation's rule book the sessions were last placed and checked by "
        "(booked or re-planned); null for a plan from before it was recorded.",
    )
    cancelled_at = OffsetDateTimeField(
        allow_null=True,
        help_text="When the course was cancelled (POST plans/{id}/cancel/): its bookings still to come were "
        "cancelled with it and every session that did not happen reads `cancelled`; null while it runs.",
    )
    cancel_reason = serializers.CharField(
        help_text="Why it was cancelled, as given (may be empty); empty for an API client without the clinician's "
        "right (written words may say something of the patient's health)."
    )


class PlanRefusalProblemOut(RefusalProblemOut):
    """plan_refused (a session cannot be booked: the booking refusal's fields) or plan_infeasible."""

    session = serializers.IntegerField(help_text="The first session that cannot be booked or placed.")
    window = WindowOut(required=False)


def _window(window: planner.Window) -> dict:
    return {
        "earliest": window.earliest.isoformat(),
        "ideal": window.ideal.isoformat(),
        "latest": window.latest.isoformat(),
    }


def _violations(violations, tz) -> list[dict]:
    return [violation_data(v, tz) for v in violations]


def proposal_data(proposal: services.Proposal) -> dict:
    tz, plan = proposal.request.tz, proposal.plan
    obstacle = plan.obstacle
    return {
        "feasible": plan.feasible,
        "reason": obstacle.message if obstacle else None,
        "obstacle": None
        if obstacle is None
        else {
            "session": obstacle.index,
            "window": _window(obstacle.window),
            "violations": _violations(services.obstacle_violations(obstacle), tz),
            "earliest_eligible_start": local_iso(obstacle.earliest, tz),
        },
        "sessions": [
            {
                "index": s.index,
                "start": local_iso(s.start_at, tz),
                "end": local_iso(s.end_at, tz),
                "practitioner": s.practitioner_id,
                "practitioner_name": s.practitioner_name,
                "window": _window(s.window),
                "why": s.why,
                "warnings": _violations(s.warnings, tz),
                "needs_clearance": _violations(s.needs_clearance, tz),
                "rulebook_version": proposal.rulebook_version,
            }
            for s in plan.sessions
        ],
        "rulebook_version": proposal.rulebook_version,
    }


def plan_data(plan: TreatmentPlan, today, checks: dict | None = None, *, reason_shown: bool) -> dict:
    """The plan; with `checks` (the plan just booked: each session's booking check by index) each session also
    carries its booking's `warnings`, in a booking answer's shape. `reason_shown` False (a caller who does not read
    written reasons: api.access.Caller.reads_reasons): `cancel_reason` is empty."""
    tz = plan.clinic.tz
    sessions = []
    for view in selectors.plan_sessions(plan, today):
        appointment = view.session.appointment
        session = {
            "index": view.session.index,
            "status": view.status,
            "appointment": str(appointment.pk) if appointment else None,
            # A booked session's booking may be held (needs review, pending clearance): said beside `status`.
            "appointment_status": appointment.status if appointment else None,
            "start": local_iso(appointment.start_at, tz) if appointment else None,
            "practitioner": str(appointment.practitioner_id) if appointment else None,
            "window": _window(view.window),
            "rulebook_version": view.rulebook_version,
        }
        if checks is not None:
            session["warnings"] = check_data(checks[view.session.index], tz)["warnings"]
        sessions.append(session)
    return {
        "id": str(plan.pk),
        "template": plan.template.code,
        "patient": str(plan.patient_id),
        "clinic": str(plan.clinic_id),
        "area": plan.area_id,
        "created": local_iso(plan.created_at, tz),
        "sessions": sessions,
        "rulebook_version": plan.rulebook_version or None,
        "cancelled_at": local_iso(plan.cancelled_at, tz) if plan.cancelled_at else None,
        "cancel_reason": plan.cancel_reason if reason_shown else "",
    }


def _refusal(request, error) -> Response:
    """A plan refused: the session that cannot be booked (with the booking's own refusal) or placed."""
    if isinstance(error, services.UnableToBookSession):
        extra = {"session": error.index, **check_data(error.check, error.check.tz)}
    else:
        tz = error.tz
        extra = {
            "session": error.obstacle.index,
            "window": _window(error.obstacle.window),
            "violations": _violations(error.violations, tz),
            "warnings": [],
            "earliest_eligible_start": local_iso(error.obstacle.earliest, tz),
            "next_available_slot": None,
            "rulebook_version": error.rulebook_version,
        }
    body = problem(
        409, code=error.code, title="Plan refused", detail=error.message, instance=instance_of(request), **extra
    )
    return problem_response(body)


def _responses(status: int, serializer, *, refusal: bool, idempotent: bool = True) -> dict:
    out = docs.responses(status, serializer, bad_request=True, idempotent=idempotent, body=True)
    if refusal:
        out[(409, PROBLEM_CONTENT_TYPE)] = OpenApiResponse(
            PlanRefusalProblemOut,
            description="plan_refused: a session cannot be booked (nothing is booked); plan_infeasible: no "
            "arrangement fits; plan_session_not_replannable; or a request with this Idempotency-Key is still "
            "being processed.",
        )
    return out


# --- Views -----------------------------------------------------------------------------------------


class PlanTemplateListApi(ApiView):
    serializer_class = PlanTemplateOut

    def get_queryset(self):
        # The defaults, and the templates of the organisations in scope (each replacing a default of its code
        # for its own patients).
        organisations = self.caller.organisations()
        return (
            PlanTemplate.objects.filter(is_active=True)
            .filter(Q(organisation__isnull=True) | Q(organisation__in=organisations))
            .order_by("name", "code", "organisation_id")
        )

    @extend_schema(
        tags=["treatment plans"],
        operation_id="plan_templates_list",
        summary="Course templates (clinic practice)",
        responses=docs.responses(200, PlanTemplateOut, many=True, bad_request=True),
    )
    def get(self, request):
        return self.page(self.get_queryset(), PlanTemplateOut)


class PatientPlansApi(ApiView):
    serializer_class = PlanOut

    @extend_schema(
        tags=["treatment plans"],
        operation_id="patients_plans_list",
        summary="The patient's plans at your clinics, newest first, each with its sessions' status",
        responses=docs.responses(200, PlanOut, many=True, bad_request=True),
    )
    def get(self, request, patient_id):
        patient = self.patient_from_url()
        rows = selectors.plans_with_sessions(selectors.plans_in(self.clinics()).filter(patient=patient))
        now, reads = timezone.now(), self.caller.reads_reasons
        return self.page(
            rows.order_by("-created_at", "-pk"),
            data=lambda plan: plan_data(plan, now.astimezone(plan.clinic.tz).date(), reason_shown=reads),
        )

    @extend_schema(
        tags=["treatment plans"],
        operation_id="patients_plans_create",
        summary="Propose (dry_run) or book a whole course, all sessions or none",
        request=PlanCreateIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        responses={**_responses(201, PlanOut, refusal=True), 200: ProposalOut},
    )
    @idempotent
    def post(self, request, patient_id):
        patient = self.patient_from_url()
        data = _input(PlanCreateIn, request)
        clinic = self.booking_clinic(data, patient)
        now = timezone.now()
        template = services.plan_template_get(data["template"], organisation_id=patient.organisation_id)
        start_at = services.start_of(data["start_from"], clinic.tz, now)
        options = {
            "practitioner_id": data.get("practitioner"),
            "area_code": data.get("area"),
            "sessions": data.get("sessions"),
            "weekdays": frozenset(data.get("weekdays") or ()),
            "times_of_day": frozenset(data.get("times_of_day") or ()),
        }
        if data["dry_run"]:
            if "proposal" in data:
                raise InvalidInput("invalid_plan", "A dry run proposes; leave `proposal` out.", field="proposal")
            return Response(
                proposal_data(
                    services.plan_propose(
                        patient=patient, clinic=clinic, template=template, start_at=start_at, **options
                    )
                )
            )
        chosen = [(row["start"], row.get("practitioner")) for row in data["proposal"]] if "proposal" in data else None
        try:
            booked = services.plan_book_checked(
                patient=patient,
                clinic=clinic,
                template=template,
                start_at=start_at,
                actor=self.caller.actor(clinic.pk),
                now=now,
                chosen=chosen,
                **options,
            )
        except (services.UnableToBookSession, services.UnableToPlan) as refused:
            return _refusal(request, refused)
        today = now.astimezone(clinic.tz).date()
        plan = booked.plan
        return _created(
            plan_data(plan, today, booked.checks, reason_shown=self.caller.reads_reasons),
            reverse("api:plan-detail", args=[plan.pk]),
        )


class _PlanApi(ApiView):
    def plan_from_url(self) -> TreatmentPlan:
        return services.plan_get(plans=selectors.plans_in(self.clinics()), plan_id=parse_uuid(self.kwargs["plan_id"]))


class PlanDetailApi(_PlanApi):
    serializer_class = PlanOut

    @extend_schema(
        tags=["treatment plans"],
        operation_id="plans_retrieve",
        summary="A plan, with each session's status",
        responses=docs.responses(200, PlanOut),
    )
    def get(self, request, plan_id):
        plan = self.plan_from_url()
        return Response(
            plan_data(plan, timezone.now().astimezone(plan.clinic.tz).date(), reason_shown=self.caller.reads_reasons)
        )


class PlanReplanApi(_PlanApi):
    serializer_class = PlanOut

    @extend_schema(
        tags=["treatment plans"],
        operation_id="plans_replan",
        summary="Re-plan from a session: dry_run proposes (200, a proposal); otherwise applied (200, the plan)",
        request=ReplanIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        responses=_responses(
            200,
            PolymorphicProxySerializer(
                component_name="ReplanOut", serializers=[PlanOut, ProposalOut], resource_type_field_name=None
            ),
            refusal=True,
        ),
    )
    @idempotent
    def post(self, request, plan_id):
        plan = self.plan_from_url()
        data = _input(ReplanIn, request)
        now = timezone.now()
        start = services.start_of(data["start"], plan.clinic.tz, now, field="start")
        # Only what the re-plan names of its own; the rest is what the plan was made with.
        named = {"practitioner": "practitioner_id", "weekdays": "weekdays", "times_of_day": "times_of_day"}
        preferences = {name: data[field] for field, name in named.items() if field in data}
        if data["dry_run"]:
            proposal = services.plan_replan_propose(
                plan=plan, from_index=data["from_session"], start_at=start, now=now, **preferences
            )
            return Response(proposal_data(proposal))
        try:
            plan = services.plan_replan(
                plan=plan,
                from_index=data["from_session"],
                start_at=start,
                actor=self.caller.actor(plan.clinic_id),
                now=now,
                **preferences,
            )
        except (services.UnableToBookSession, services.UnableToPlan) as refused:
            return _refusal(request, refused)
        return Response(plan_data(plan, now.astimezone(plan.clinic.tz).date(), reason_shown=self.caller.reads_reasons))


class PlanCancelApi(_PlanApi):
    serializer_class = PlanOut

    @extend_schema(
        tags=["treatment plans"],
        operation_id="plans_cancel",
        summary="Cancel the course: its bookings still to come are cancelled with it, in one transaction",
        request=CancelIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        responses={
            **docs.responses(200, PlanOut, bad_request=True, idempotent=True, body=True),
            (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemOut,
                description="plan_cancelled: the course was cancelled already; plan_finished: every session of it "
                "is done; or a request with this Idempotency-Key is still being processed.",
            ),
        },
    )
    @idempotent
    def post(self, request, plan_id):
        plan = self.plan_from_url()
        data = _input(CancelIn, request)
        now = timezone.now()
        plan = services.plan_cancel(
            plan=plan, actor=self.caller.actor(plan.clinic_id), now=now, reason=data.get("reason", "")
        )
        return Response(plan_data(plan, now.astimezone(plan.clinic.tz).date(), reason_shown=self.caller.reads_reasons))
