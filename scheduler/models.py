"""Clinical rules as data: minimum intervals and contraindications, and the versions of each rule book.

Defaults ship as fixtures citing their published sources, plus a few marked clinic-practice defaults
(fixtures/rules.json, listed in docs/rules.md; the sources in docs/sources.md): rows with no
organisation, which only superusers (or a release) change. An organisation's rule book is the defaults
with its own rows applied: a row of the organisation that `replaces` a default shadows it (tightened,
relaxed or disabled), one that replaces nothing adds a rule. Every change makes a `RuleBookVersion`.
The engine in `scheduler/rules.py` reads them through `scheduler/selectors.py`.
"""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from clinic.models import Condition, Medication, Organisation, ProcedureType
from scheduler.rules import MAX_GAP_VALUE, MAX_GAP_YEARS


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


class RuleBasis(models.TextChoices):
    SOURCED = "sourced", "Sourced (cites a published source)"
    PRACTICE = "practice", "Clinic practice (not from the sources)"


class OrganisationRule(models.Model):
    """What both kinds of rule share: whose rule it is, which default it shadows, why it was made."""

    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: a default every organisation starts from (superusers only).",
    )
    replaces = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="overrides",
        limit_choices_to={"organisation__isnull": True},
        help_text="The default this organisation's rule stands in for (tightened, relaxed or disabled); "
        "empty: a rule the organisation adds.",
    )
    reason = models.TextField(blank=True, help_text="Why the organisation changed or added the rule.")

    class Meta:
        abstract = True

    # What names the pair a rule is about; an override keeps its default's (a longer or shorter gap, another
    # severity, switched off), or it would quietly drop the default and add another rule in its place.
    PAIR_FIELDS: tuple[str, ...] = ()

    def clean(self) -> None:
        errors = {}
        if self.replaces_id and self.organisation_id is None:
            errors["replaces"] = "Only an organisation's rule stands in for a default."
        elif self.replaces_id and self.replaces.organisation_id is not None:
            errors["replaces"] = "A rule can stand in only for a default (a rule with no organisation)."
        elif self.replaces_id:
            differ = [
                name for name in self.PAIR_FIELDS if getattr(self, f"{name}_id") != getattr(self.replaces, f"{name}_id")
            ]
            if differ:
                errors["replaces"] = (
                    f"A rule standing in for “{self.replaces}” is about the same pair: change its gap, severity or "
                    f"switch it off, but not its {', '.join(name.replace('_', ' ') for name in differ)}. "
                    "For another pair, add a rule of its own."
                )
        if (
            self.replaces_id
            and self.organisation_id
            and "replaces" not in errors
            and type(self)
            ._base_manager.filter(organisation_id=self.organisation_id, replaces_id=self.replaces_id)
            .exclude(pk=self.pk)
            .exists()
        ):
            errors["replaces"] = (
                f"This organisation already has a rule standing in for “{self.replaces}”: change that one (one per "
                "default)."
            )
        if self.organisation_id is None and self.pk is not None:
            errors.update(self._pair_move_refusal())
        if errors:
            raise ValidationError(errors)

    def _pair_move_refusal(self) -> dict:
        """A default whose pair would change while an organisation's rule stands in for it: refused, on the fields
        that change (the override would go on shadowing a default about another pair, and the organisation lose the
        new rule without a word). Another pair is a new default."""
        stored = (
            type(self)._base_manager.filter(pk=self.pk).values(*(f"{name}_id" for name in self.PAIR_FIELDS)).first()
        )
        if stored is None:
            return {}
        moved = [name for name in self.PAIR_FIELDS if stored[f"{name}_id"] != getattr(self, f"{name}_id")]
        if not moved:
            return {}
        standing = sorted(
            str(name)
            for name in type(self)
            ._base_manager.filter(replaces_id=self.pk)
            .values_list("organisation__name", flat=True)
        )
        if not standing:
            return {}
        said = (
            f"{', '.join(standing)} {'has a rule' if len(standing) == 1 else 'have rules'} standing in for this default: "
            "it keeps its pair. For another pair, add a new default."
        )
        return {name: said for name in moved}


class IntervalRule(OrganisationRule):
    """A `later` procedure may start no sooner than `gap` after an `earlier` event.

    The earlier event is a procedure or the end of a medication course.
    """

    PAIR_FIELDS = ("earlier_procedure", "earlier_medication", "later_procedure")

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
    later_procedure = models.ForeignKey(
        ProcedureType,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The same procedure as the earlier one: a rule for repeats.",
    )
    gap_value = models.PositiveIntegerField()
    gap_unit = models.CharField(max_length=10, choices=GapUnit.choices)
    severity = models.CharField(max_length=10, choices=IntervalSeverity.choices, default=IntervalSeverity.BLOCK)
    scope = models.CharField(max_length=10, choices=AreaScope.choices, default=AreaScope.ANY_AREA)
    source = models.CharField(max_length=200, help_text="Where the rule comes from (reference file, guideline).")
    basis = models.CharField(max_length=10, choices=RuleBasis.choices, default=RuleBasis.SOURCED)
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
            models.UniqueConstraint(
                fields=["organisation", "replaces"],
                condition=Q(replaces__isnull=False),
                name="interval_rule_one_override_per_default",
                violation_error_message="This organisation already has a rule standing in for that default.",
            ),
            models.CheckConstraint(
                condition=(Q(earlier_procedure__isnull=False) & Q(earlier_medication__isnull=True))
                | (Q(earlier_procedure__isnull=True) & Q(earlier_medication__isnull=False)),
                name="interval_rule_one_earlier",
                violation_error_message="Give exactly one earlier event: a procedure or a medication course.",
            ),
            models.CheckConstraint(condition=Q(gap_value__gte=1), name="interval_rule_positive_gap"),
            models.CheckConstraint(
                condition=Q(
                    *(Q(gap_unit=unit, gap_value__lte=most) for unit, most in MAX_GAP_VALUE.items()),
                    _connector=Q.OR,
                ),
                name="interval_rule_gap_at_most_ten_years",
                violation_error_message=f"A gap is at most {MAX_GAP_YEARS} years.",
            ),
            # scheduler.rules refuses any other value (every check of the procedure failed): held for every write.
            models.CheckConstraint(
                condition=Q(severity__in=IntervalSeverity.values),
                name="interval_rule_severity_known",
                violation_error_message="A severity is block or warn.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.earlier_label} → {self.later_procedure_id}: {self.gap_value} {self.gap_unit} ({self.severity})"

    @property
    def earlier_label(self) -> str:
        if self.earlier_procedure_id:
            return self.earlier_procedure_id
        return f"{self.earlier_medication_id} course end"

    @property
    def is_repeat(self) -> bool:
        return self.earlier_procedure_id is not None and self.earlier_procedure_id == self.later_procedure_id

    def clean(self) -> None:
        super().clean()
        if self.gap_unit and self.gap_unit not in GapUnit.values:
            raise ValidationError({"gap_unit": f"Unknown unit {self.gap_unit!r}: use hours, days, weeks or months."})
        if self.gap_value is not None and self.gap_value < 1:
            raise ValidationError({"gap_value": "A gap must be at least 1 (never zero or negative)."})
        if (
            self.gap_value is not None
            and self.gap_unit in MAX_GAP_VALUE
            and self.gap_value > MAX_GAP_VALUE[self.gap_unit]
        ):
            most = MAX_GAP_VALUE[self.gap_unit]
            raise ValidationError({"gap_value": f"A gap is at most {MAX_GAP_YEARS} years ({most} {self.gap_unit})."})
        if self.earlier_medication_id and self.earlier_procedure_id is None and self.scope == AreaScope.SAME_AREA:
            raise ValidationError({"scope": "A medication course has no treatment area."})
        if self.earlier_procedure_id and self.earlier_procedure_id == self.later_procedure_id:
            # Domain brief 2: the sources give no rule for repeats of a procedure, so a repeat rule is clinic practice
            # whatever the form said (its "Sourced" is the form's default), and every page marks it so.
            self.basis = RuleBasis.PRACTICE


class ContraindicationSeverity(models.TextChoices):
    ABSOLUTE = "absolute", "Absolute (refuse)"
    RELATIVE = "relative", "Relative (needs clinician clearance)"


class AppliesTo(models.TextChoices):
    ACTIVE = "active", "Active condition only"
    ACTIVE_OR_HISTORY = "any", "Active or history"


class ContraindicationRule(OrganisationRule):
    """A condition or an ongoing medication course that stands against a procedure."""

    PAIR_FIELDS = ("condition", "medication", "procedure")

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
            models.UniqueConstraint(
                fields=["organisation", "replaces"],
                condition=Q(replaces__isnull=False),
                name="contraindication_one_override_per_default",
                violation_error_message="This organisation already has a rule standing in for that default.",
            ),
            models.CheckConstraint(
                condition=(Q(condition__isnull=False) & Q(medication__isnull=True))
                | (Q(condition__isnull=True) & Q(medication__isnull=False)),
                name="contraindication_one_cause",
                violation_error_message="Give exactly one cause: a condition or a medication.",
            ),
            # scheduler.rules refuses any other value (every check of the procedure failed): held for every write.
            models.CheckConstraint(
                condition=Q(severity__in=ContraindicationSeverity.values),
                name="contraindication_severity_known",
                violation_error_message="A severity is absolute or relative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.condition_id or self.medication_id} ✕ {self.procedure_id} ({self.severity})"


class RecheckRun(models.Model):
    """A re-check of every patient a rule change may affect, done in chunks by Celery (or in-process).

    `cursor` is the last patient done, so a run a dead worker left half-way resumes where it was;
    the admin shows its progress.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cause = models.CharField(max_length=300)
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Whose patients are re-checked; empty: every organisation's (a default changed).",
    )
    procedures = models.JSONField(default=list, help_text="The procedures whose bookings the change may affect.")
    created_at = models.DateTimeField()
    cursor = models.UUIDField(null=True, blank=True, editable=False)
    patients_done = models.PositiveIntegerField(default=0)
    appointments_changed = models.PositiveIntegerField(default=0)
    progressed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Steps that failed at the run's place since it last moved (scheduler.recheck.ISOLATE_AFTER), and the patients
    # that could not be re-checked on their own (each {"patient", "error", "at"}): left as they were, to look at.
    failed_steps = models.PositiveIntegerField(default=0, editable=False)
    failures = models.JSONField(default=list, blank=True, editable=False)
    # Every rule book version its checks used, those that left an appointment as it was included, as "<organisation
    # code>: <version>": one per organisation re-checked, more when a later change lands half-way (its own run
    # follows). Ordered by organisation, then version number.
    rulebook_versions = models.JSONField(
        "rule book versions", default=list, blank=True, editable=False, help_text="The versions it checked against."
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "re-check after a rule change"

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "running"
        failed = f", {len(self.failures)} could not be re-checked" if self.failures else ""
        return f"{self.cause} ({state}, {self.patients_done} patients, {self.appointments_changed} changed{failed})"


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


class RuleBookVersion(models.Model):
    """One change of a rule book: the defaults' (no organisation) or one organisation's.

    Version 1 of each is the rule book as shipped (no row); every change adds the next number with
    who, when, why and a readable diff. An organisation's rule book version is `d<defaults>.o<own>`
    (scheduler.selectors.rulebook_load), so a change of the defaults moves every organisation's.
    """

    organisation = models.ForeignKey(Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    diff = models.JSONField(default=list, help_text="What changed: one entry per rule, field by field.")

    class Meta:
        ordering = ["-created_at", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "number"],
                condition=Q(organisation__isnull=False),
                name="rulebook_version_unique_number",
            ),
            models.UniqueConstraint(
                fields=["number"], condition=Q(organisation__isnull=True), name="rulebook_defaults_version_unique"
            ),
            models.CheckConstraint(condition=Q(number__gte=2), name="rulebook_version_after_shipped"),
        ]

    def __str__(self) -> str:
        whose = self.organisation or "defaults"
        return f"{whose} rule book version {self.number}"
