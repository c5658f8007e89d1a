"""Clinical rules as data: minimum intervals and contraindications.

Defaults ship as fixtures citing their published sources (fixtures/rules.json,
listed in docs/rules.md; the sources in docs/sources.md); a clinic
administrator edits them in the admin. The engine in
`scheduler/rules.py` reads them through `scheduler/selectors.py`.
"""

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from clinic.models import Condition, Medication, ProcedureType


class GapUnit(models.TextChoices):
    HOURS = "hours", "hours"
    DAYS = "days", "days"
    WEEKS = "weeks", "weeks"
    MONTHS = "months", "months"


class IntervalSeverity(models.TextChoices):
    BLOCK = "block", "Block"
    WARN = "warn", "Warn"


class AreaScope(models.TextChoices):
    ANY_AREA = "any_area", "Any treatment area"
    SAME_AREA = "same_area", "Same treatment area only"


class IntervalRule(models.Model):
    """A `later` procedure may start no sooner than `gap` after an `earlier` event.

    The earlier event is a procedure or the end of a medication course.
    """

    earlier_procedure = models.ForeignKey(
        ProcedureType, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    earlier_medication = models.ForeignKey(
        Medication,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Measured from the end of the course.",
    )
    later_procedure = models.ForeignKey(ProcedureType, on_delete=models.PROTECT, related_name="+")
    gap_value = models.PositiveIntegerField()
    gap_unit = models.CharField(max_length=10, choices=GapUnit.choices)
    severity = models.CharField(max_length=10, choices=IntervalSeverity.choices, default=IntervalSeverity.BLOCK)
    scope = models.CharField(max_length=10, choices=AreaScope.choices, default=AreaScope.ANY_AREA)
    source = models.CharField(max_length=200, help_text="Where the rule comes from (reference file, guideline).")
    note = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    default_key = models.SlugField(
        max_length=80,
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text="Which shipped default this rule started as; setup never overwrites an edited rule.",
    )

    class Meta:
        ordering = ["later_procedure_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(earlier_procedure__isnull=False) & Q(earlier_medication__isnull=True))
                | (Q(earlier_procedure__isnull=True) & Q(earlier_medication__isnull=False)),
                name="interval_rule_one_earlier",
            ),
            models.CheckConstraint(condition=Q(gap_value__gte=1), name="interval_rule_positive_gap"),
        ]

    def __str__(self) -> str:
        return f"{self.earlier_label} → {self.later_procedure_id}: {self.gap_value} {self.gap_unit} ({self.severity})"

    @property
    def earlier_label(self) -> str:
        if self.earlier_procedure_id:
            return self.earlier_procedure_id
        return f"{self.earlier_medication_id} course end"

    def clean(self) -> None:
        if bool(self.earlier_procedure_id) == bool(self.earlier_medication_id):
            raise ValidationError("Give exactly one earlier event: a procedure or a medication course.")
        if self.earlier_medication_id and self.scope == AreaScope.SAME_AREA:
            raise ValidationError({"scope": "A medication course has no treatment area."})


class ContraindicationSeverity(models.TextChoices):
    ABSOLUTE = "absolute", "Absolute (refuse)"
    RELATIVE = "relative", "Relative (needs clinician clearance)"


class AppliesTo(models.TextChoices):
    ACTIVE = "active", "Active condition only"
    ACTIVE_OR_HISTORY = "any", "Active or history"


class ContraindicationRule(models.Model):
    """A condition or an ongoing medication course that stands against a procedure."""

    condition = models.ForeignKey(Condition, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    medication = models.ForeignKey(
        Medication,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Applies while a course of this drug is ongoing on the appointment's date.",
    )
    procedure = models.ForeignKey(ProcedureType, on_delete=models.PROTECT, related_name="+")
    severity = models.CharField(max_length=10, choices=ContraindicationSeverity.choices)
    applies_to = models.CharField(
        max_length=10,
        choices=AppliesTo.choices,
        default=AppliesTo.ACTIVE_OR_HISTORY,
        help_text="Which intake entries count (conditions only).",
    )
    area_specific = models.BooleanField(
        default=False, help_text="Counts only when the condition is recorded for the treated area."
    )
    source = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    default_key = models.SlugField(max_length=80, unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["procedure_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(condition__isnull=False) & Q(medication__isnull=True))
                | (Q(condition__isnull=True) & Q(medication__isnull=False)),
                name="contraindication_one_cause",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.condition_id or self.medication_id} ✕ {self.procedure_id} ({self.severity})"

    def clean(self) -> None:
        if bool(self.condition_id) == bool(self.medication_id):
            raise ValidationError("Give exactly one cause: a condition or a medication.")


class RecheckRun(models.Model):
    """A re-check of every patient a rule change may affect, done in chunks by Celery (or in-process).

    `cursor` is the last patient done, so a run a dead worker left half-way resumes where it was;
    the admin shows its progress.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cause = models.CharField(max_length=300)
    procedures = models.JSONField(default=list, help_text="The procedures whose bookings the change may affect.")
    created_at = models.DateTimeField()
    cursor = models.UUIDField(null=True, blank=True, editable=False)
    patients_done = models.PositiveIntegerField(default=0)
    appointments_changed = models.PositiveIntegerField(default=0)
    progressed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "re-check after a rule change"

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "running"
        return f"{self.cause} ({state}, {self.patients_done} patients, {self.appointments_changed} changed)"


class ConfigVersion(models.Model):
    """One row whose `value` database triggers raise on any write to the rules, the catalogue, the
    reminder templates or the webhook endpoints (migration reminders 0005): a process may keep
    those in memory keyed by it, and no edit, by any path, can leave a stale copy in use
    (scheduler/versioned.py)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.BigIntegerField(default=1)

    class Meta:
        verbose_name = "configuration version"

    def __str__(self) -> str:
        return f"configuration version {self.value}"
