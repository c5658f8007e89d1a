"""Treatment plans: course templates (clinic practice, as data), a patient's plan and its sessions.

A template says how a course runs (procedure, number of sessions, the minimum, ideal and maximum gap
between them); a plan is one patient's course, each session an ordinary appointment once booked, so
every rule, reminder and webhook applies to it. Placing the sessions is `plans/planner.py`'s job.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from clinic.models import Appointment, Clinic, Organisation, Patient, Practitioner, ProcedureType, TreatmentArea
from plans import planner


class PlanGapUnit(models.TextChoices):
    DAYS = "days", "days"
    WEEKS = "weeks", "weeks"
    MONTHS = "months", "months"


class PlanKind(models.TextChoices):
    COURSE = "course", "Course (a fixed number of sessions)"
    MAINTENANCE = "maintenance", "Maintenance (repeats; every completed treatment plans a recall)"


class PlanTemplateQuerySet(models.QuerySet):
    def for_organisation(self, organisation_id) -> PlanTemplateQuerySet:
        """The active templates an organisation's patients get: its own, and the defaults it has not replaced."""
        own = self.filter(organisation_id=organisation_id, is_active=True)
        return self.filter(is_active=True).filter(
            Q(organisation_id=organisation_id) | (Q(organisation__isnull=True) & ~Q(code__in=own.values("code")))
        )


class PlanTemplate(models.Model):
    """How a course runs. Shipped defaults are clinic practice, not from the sources (docs/plans.md)."""

    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="plan_templates",
        help_text="Empty: a default every organisation starts from. An organisation's template of the same code "
        "replaces the default for its patients.",
    )
    code = models.SlugField(max_length=80)
    name = models.CharField(max_length=200)
    procedure = models.ForeignKey(ProcedureType, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=PlanKind.choices, default=PlanKind.COURSE)
    sessions = models.PositiveSmallIntegerField(help_text=f"1 to {planner.MAX_SESSIONS}.")
    min_gap_value = models.PositiveIntegerField()
    min_gap_unit = models.CharField(max_length=10, choices=PlanGapUnit.choices)
    ideal_gap_value = models.PositiveIntegerField()
    ideal_gap_unit = models.CharField(max_length=10, choices=PlanGapUnit.choices)
    max_gap_value = models.PositiveIntegerField()
    max_gap_unit = models.CharField(max_length=10, choices=PlanGapUnit.choices)
    area = models.ForeignKey(
        TreatmentArea,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The treatment area of every session, when the course has one.",
    )
    source = models.CharField(
        max_length=200,
        default="Clinic practice (not from the published sources)",
        help_text="Where the template comes from.",
    )
    note = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    default_key = models.SlugField(
        max_length=80,
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text="Which shipped default this template started as; setup never overwrites an edited one.",
    )

    objects = PlanTemplateQuerySet.as_manager()

    class Meta:
        ordering = ["name", "code"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "code"], name="plan_template_code_per_organisation"),
            models.UniqueConstraint(
                fields=["code"], condition=Q(organisation__isnull=True), name="plan_template_code_of_defaults"
            ),
            models.CheckConstraint(
                condition=Q(sessions__gte=1) & Q(sessions__lte=planner.MAX_SESSIONS), name="plan_template_sessions"
            ),
            models.CheckConstraint(
                condition=Q(min_gap_unit__in=PlanGapUnit.values)
                & Q(ideal_gap_unit__in=PlanGapUnit.values)
                & Q(max_gap_unit__in=PlanGapUnit.values),
                name="plan_template_gap_units",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def min_gap(self) -> planner.Gap:
        return planner.Gap(self.min_gap_value, self.min_gap_unit)

    @property
    def ideal_gap(self) -> planner.Gap:
        return planner.Gap(self.ideal_gap_value, self.ideal_gap_unit)

    @property
    def max_gap(self) -> planner.Gap:
        return planner.Gap(self.max_gap_value, self.max_gap_unit)

    def clean(self) -> None:
        """A course the planner can place, each problem on the form field it is about (the planner names a gap,
        or a gap's `value` or `unit`). A value or unit left empty is its field's own "required" error. A template
        plans already use keeps its procedure, organisation and kind (`_in_use_refusal`)."""
        self._in_use_refusal()
        names = ("min_gap", "ideal_gap", "max_gap")
        parts = [getattr(self, f"{name}_{part}") for name in names for part in ("value", "unit")]
        if self.sessions is None or any(part in (None, "") for part in parts):
            return
        gaps = {}
        for name in names:
            try:
                gaps[name] = planner.Gap(getattr(self, f"{name}_value"), getattr(self, f"{name}_unit"))
            except planner.PlanInputError as error:
                raise ValidationError({f"{name}_{error.field}": error.message}) from error
        try:
            planner.check_course_shape(sessions=self.sessions, **gaps)
        except planner.PlanInputError as error:
            field = f"{error.field}_value" if error.field in names else error.field
            raise ValidationError({field: error.message}) from error

    # What a template plans already use may not change (docs/plans.md, "A template in use"): its courses were booked
    # as that treatment, for that organisation's patients, and are read as that kind (a course's "Session 2 of 3", a
    # maintenance's recalls). A template that said otherwise would have the desk read, and re-plans and recalls
    # follow, a course the patients never chose, or one run by another tenant's template. Each: its column, and
    # where a new template for the change would differ.
    _KEPT_IN_USE = {
        "procedure": ("procedure_id", "for the other procedure"),
        "organisation": ("organisation_id", "in the other organisation"),
        "kind": ("kind", "of the other kind"),
    }

    def _in_use_refusal(self) -> None:
        """Refuse a change of a field of `_KEPT_IN_USE` on a template some plan was made from, on that field (the
        admin's form shows it there), saying how many plans use it and to make a new template. As deleting a
        template in use is refused, a course of another procedure, organisation or kind is a new template (this one
        switched off if it is no longer offered). One read of the stored row; the plans are counted only when a
        kept field changes."""
        if self.pk is None:
            return
        columns = [column for column, _ in self._KEPT_IN_USE.values()]
        stored = PlanTemplate.objects.filter(pk=self.pk).values(*columns).first()
        if stored is None:
            return
        changed = [
            field
            for field, (column, _) in self._KEPT_IN_USE.items()
            # An empty procedure or kind is its field's own "required" error, not a change to refuse.
            if getattr(self, column) != stored[column] and (field == "organisation" or getattr(self, column))
        ]
        in_use = TreatmentPlan.objects.filter(template_id=self.pk).count() if changed else 0
        if not in_use:
            return
        errors = {}
        for field in changed:
            column, other = self._KEPT_IN_USE[field]
            errors[field] = (
                f"{in_use} treatment plan(s) use this template, {_as_stored(field, stored[column])}: its {field} "
                f"cannot change. Make a new template {other} (and untick Is active here if this course is no longer "
                "offered)."
            )
        raise ValidationError(errors)


def _as_stored(field: str, value) -> str:
    """How a refusal names what a template in use is (`PlanTemplate._in_use_refusal`): "booked as microneedling",
    "as a default every organisation starts from", "as a template of Demo Aesthetics", "as a course"."""
    if field == "procedure":
        return f"booked as {value}"
    if field == "organisation":
        if value is None:
            return "as a default every organisation starts from"
        return f"as a template of {Organisation.objects.filter(pk=value).values_list('name', flat=True).first()}"
    return f"as a {value}"


class TreatmentPlan(models.Model):
    """One patient's course, planned from a template at a clinic."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="plans")
    template = models.ForeignKey(PlanTemplate, on_delete=models.PROTECT, related_name="plans")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="plans")
    area = models.ForeignKey(TreatmentArea, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    rulebook_version = models.CharField(
        max_length=40,
        blank=True,
        default="",
        help_text="The organisation's rule book version the sessions were last placed and checked by "
        "(booked or re-planned); empty for plans from before it was recorded.",
    )
    # What the plan was made with (docs/plans.md, "Re-plan"): a re-plan keeps them unless it names its own. Empty
    # (also for plans from before they were recorded): any practitioner, any day, any time.
    practitioner = models.ForeignKey(
        Practitioner,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Every session with this practitioner; empty: any who does the procedure.",
    )
    weekdays = models.JSONField(default=list, blank=True, help_text="Preferred weekdays, 0 = Monday; empty: any.")
    times_of_day = models.JSONField(
        default=list, blank=True, help_text="morning, afternoon or evening (clinic-local); empty: any."
    )

    # A course the patient stopped (plans.services.plan_cancel): its bookings still to come were cancelled with it,
    # no session of it is due any more and none is re-planned or recalled.
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.TextField(blank=True)
    cancelled_by = models.CharField(max_length=200, blank=True)  # who: the actor's label (a course may hold no booking)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["patient", "created_at"])]

    def __str__(self) -> str:
        return f"{self.template} for {self.patient}"

    def procedure_made_for(self, sessions: list[PlanSession]) -> ProcedureType:
        """The procedure the course was made for: the one its sessions were booked as (the first session, in order,
        that holds or held an appointment, cancelled ones too), so a template edited since books no other treatment
        into it (the admin refuses that edit of a template in use; a write around the admin is met here too). The
        template's only for a plan none of whose sessions holds a booking any more. `sessions`: all the plan's, read
        with their appointments and the appointments' procedures (a re-plan reads them anyway)."""
        for session in sorted(sessions, key=lambda s: s.index):
            if session.appointment is not None:
                return session.appointment.procedure
        return self.template.procedure


class PlanSession(models.Model):
    """A session of a plan: its window (local dates) and, once booked, its appointment."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(TreatmentPlan, on_delete=models.CASCADE, related_name="sessions")
    index = models.PositiveSmallIntegerField(help_text="1 for the first session.")
    appointment = models.OneToOneField(
        Appointment, null=True, blank=True, on_delete=models.SET_NULL, related_name="plan_session"
    )
    earliest_on = models.DateField()
    ideal_on = models.DateField()
    latest_on = models.DateField()
    placed_on = models.DateField(
        null=True,
        blank=True,
        help_text="The local date the plan (or the re-plan that last placed it) put the session on: the next "
        "session's window is measured afresh only once this session's booking has moved off it. Empty for "
        "sessions placed before it was recorded.",
    )

    class Meta:
        ordering = ["plan", "index"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "index"], name="plan_session_unique_index"),
            models.CheckConstraint(
                condition=Q(earliest_on__lte=F("ideal_on")) & Q(ideal_on__lte=F("latest_on")),
                name="plan_session_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"Session {self.index} of {self.plan}"

    @property
    def window(self) -> planner.Window:
        return planner.Window(self.earliest_on, self.ideal_on, self.latest_on)


class Recall(models.Model):
    """A patient due for the next treatment of a course or a maintenance template (plans.recalls).

    The desk sees every recall (Today); the patient is told through the outbox on the channels they
    consented to. Booking the procedure closes it (`closed_at`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="recalls")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="recalls")
    after = models.OneToOneField(
        Appointment, on_delete=models.CASCADE, related_name="recall", help_text="The completed treatment."
    )
    procedure = models.ForeignKey(ProcedureType, on_delete=models.PROTECT, related_name="+")
    template = models.ForeignKey(PlanTemplate, on_delete=models.PROTECT, related_name="recalls")
    session = models.ForeignKey(PlanSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    due_on = models.DateField(help_text="The ideal date (clinic-local).")
    earliest_on = models.DateField(null=True, blank=True, help_text="The earliest date the rules allowed then.")
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When the patient booked it.")

    class Meta:
        ordering = ["due_on", "id"]
        indexes = [models.Index(fields=["clinic", "closed_at", "due_on"])]

    def __str__(self) -> str:
        return f"{self.patient} due for {self.procedure_id} on {self.due_on}"
