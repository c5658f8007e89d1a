"""An interval rule's gap is at most ten years in its unit, whatever path writes it (scheduler.rules.MAX_GAP_VALUE):
a longer one overflowed the engine's calendar arithmetic in the re-check and in every booking it applied to.
A gap stored longer than that is first shortened to ten years (such a rule could not be checked at all: every
booking it applied to failed), named on the output and in the rule's note, so migrating never stops on it.

On SQLite a new check constraint rebuilds the table, which drops its configuration-version triggers (reminders
0005): they are made again afterwards, as reminders 0008 does for the templates' table."""

from importlib import import_module

from django.db import migrations, models

TRIGGERS = import_module("reminders.migrations.0005_config_version_triggers")
TABLE = "scheduler_intervalrule"


# Ten years in each unit, as the constraint below (scheduler.rules.MAX_GAP_VALUE when this was written).
TEN_YEARS = {"hours": 87648, "days": 3652, "weeks": 521, "months": 120}


def gaps_shortened(apps, schema_editor):
    IntervalRule = apps.get_model("scheduler", "IntervalRule")
    for unit, most in TEN_YEARS.items():
        for rule in IntervalRule.objects.filter(gap_unit=unit, gap_value__gt=most).order_by("pk"):
            said = (
                f"Gap shortened from {rule.gap_value} to {most} {unit} (ten years at most) by migration scheduler 0008."
            )
            print(f"\n  Interval rule {rule.pk}: {said}")
            note = f"{rule.note}\n\n{said}" if rule.note else said
            IntervalRule.objects.filter(pk=rule.pk).update(gap_value=most, note=note)


def triggers_again(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return  # PostgreSQL keeps triggers across a constraint change
    for event in ("insert", "update", "delete"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_config_bump_{event};")
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_config_bump_{event} AFTER {event.upper()} ON {TABLE} "
            f"BEGIN {TRIGGERS.SQLITE_BUMP} END;"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0014_appointment_redundant_indexes"),
        ("reminders", "0005_config_version_triggers"),
        ("scheduler", "0007_repeat_defaults"),
    ]

    operations = [
        migrations.RunPython(gaps_shortened, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="intervalrule",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("gap_unit", "hours"), ("gap_value__lte", 87648)),
                    models.Q(("gap_unit", "days"), ("gap_value__lte", 3652)),
                    models.Q(("gap_unit", "weeks"), ("gap_value__lte", 521)),
                    models.Q(("gap_unit", "months"), ("gap_value__lte", 120)),
                    _connector="OR",
                ),
                name="interval_rule_gap_at_most_ten_years",
                violation_error_message="A gap is at most 10 years.",
            ),
        ),
        migrations.RunPython(triggers_again, migrations.RunPython.noop),
    ]
