"""A rule's severity is one of its choices whatever path writes it (interval: block or warn; contraindication: absolute
or relative): the admin's form refused any other, but one stored past it ("Block", by a shell, a script or a data
migration) made every check and booking of the rule's procedure a 500 (scheduler.rules refuses it), in every
organisation for a default. A value stored outside the choices is first read safely, named on the output and in the
rule's note, so migrating never stops on it: a case variant (or one with spaces about it) as its value, anything else
as the strictest severity (block, absolute), which refuses rather than lets pass. Where that changed a rule and a
booking ahead may be affected, a re-check run of the rule's procedures is made, as after any rule change.

On SQLite a new check constraint rebuilds the table, which drops its configuration-version triggers (reminders 0005):
they are made again afterwards, as scheduler 0008 does, and before the constraints when reversing (which rebuilds
the tables again)."""

from importlib import import_module

from django.db import migrations, models
from django.utils import timezone

TRIGGERS = import_module("reminders.migrations.0005_config_version_triggers")
TABLES = ("scheduler_intervalrule", "scheduler_contraindicationrule")

# The choices when this was written (scheduler.models.IntervalSeverity, ContraindicationSeverity), strictest first.
SEVERITIES = {"IntervalRule": ("block", "warn"), "ContraindicationRule": ("absolute", "relative")}
ACTIVE = ("pending_clearance", "confirmed", "needs_review")  # clinic.models.ACTIVE_APPOINTMENT_STATUSES, as of now
CAUSE = "rule severity outside its choices read safely by migration scheduler 0013"


def read_as(stored: str, known: tuple[str, ...]) -> str:
    """A case variant as its value; anything else as the strictest severity."""
    folded = stored.strip().casefold()
    return folded if folded in known else known[0]


def severities_read_safely(apps, schema_editor):
    procedures_by_organisation: dict = {}
    for model_name, known in SEVERITIES.items():
        Rule = apps.get_model("scheduler", model_name)
        for rule in Rule.objects.exclude(severity__in=known).order_by("pk"):
            severity = read_as(rule.severity, known)
            said = f"Severity {rule.severity!r} read as {severity!r} by migration scheduler 0013."
            print(f"\n  {model_name} {rule.pk}: {said}")
            note = f"{rule.note}\n\n{said}" if rule.note else said
            Rule.objects.filter(pk=rule.pk).update(severity=severity, note=note)
            if model_name == "IntervalRule":
                codes = {rule.later_procedure_id, rule.earlier_procedure_id} - {None}
            else:
                codes = {rule.procedure_id}
            procedures_by_organisation.setdefault(rule.organisation_id, set()).update(codes)
    if not procedures_by_organisation:
        return
    Appointment = apps.get_model("clinic", "Appointment")
    RecheckRun = apps.get_model("scheduler", "RecheckRun")
    now = timezone.now()
    for organisation_id, codes in procedures_by_organisation.items():
        booked = Appointment.objects.filter(start_at__gt=now, status__in=ACTIVE, procedure_id__in=codes)
        if organisation_id is not None:
            booked = booked.filter(patient__organisation_id=organisation_id)
        if booked.exists():
            RecheckRun.objects.create(
                cause=CAUSE, procedures=sorted(codes), created_at=now, organisation_id=organisation_id
            )


def triggers_again(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return  # PostgreSQL keeps triggers across a constraint change
    for table in TABLES:
        for event in ("insert", "update", "delete"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_config_bump_{event};")
            schema_editor.execute(
                f"CREATE TRIGGER {table}_config_bump_{event} AFTER {event.upper()} ON {table} "
                f"BEGIN {TRIGGERS.SQLITE_BUMP} END;"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("reminders", "0005_config_version_triggers"),
        ("scheduler", "0012_rule_constraint_messages"),
    ]

    operations = [
        migrations.RunPython(severities_read_safely, migrations.RunPython.noop),
        # Reversed, this runs last: after the constraints are removed (the tables rebuilt again).
        migrations.RunPython(migrations.RunPython.noop, triggers_again),
        migrations.AddConstraint(
            model_name="contraindicationrule",
            constraint=models.CheckConstraint(
                condition=models.Q(("severity__in", ["absolute", "relative"])),
                name="contraindication_severity_known",
                violation_error_message="A severity is absolute or relative.",
            ),
        ),
        migrations.AddConstraint(
            model_name="intervalrule",
            constraint=models.CheckConstraint(
                condition=models.Q(("severity__in", ["block", "warn"])),
                name="interval_rule_severity_known",
                violation_error_message="A severity is block or warn.",
            ),
        ),
        migrations.RunPython(triggers_again, migrations.RunPython.noop),
    ]
