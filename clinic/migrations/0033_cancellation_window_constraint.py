"""A clinic's cancellation window is at most a year (8760 hours) whatever path writes it: clinic 0032 bounded it by the
admin form's validator only, and a window of millions of hours (stored before 0032, or written past the form) put the
deadline before year 1, so every patient's page of the clinic's visits failed (scheduler.selfservice.change_deadline).
A window stored longer is first brought back to a year, named on the output, so migrating never stops on it; the
check constraint then refuses a longer one. Reversing keeps the shortened windows (a longer one was never usable)."""

from django.db import migrations, models

A_YEAR = 8760  # clinic.models.MAX_CANCELLATION_WINDOW_HOURS when this was written


def windows_shortened(apps, schema_editor):
    Clinic = apps.get_model("clinic", "Clinic")
    for clinic in Clinic.objects.filter(cancellation_window_hours__gt=A_YEAR).order_by("code"):
        print(
            f"\n  Clinic {clinic.code}: cancellation window shortened from {clinic.cancellation_window_hours} to "
            f"{A_YEAR} hours (a year at most) by migration clinic 0033."
        )
        Clinic.objects.filter(pk=clinic.pk).update(cancellation_window_hours=A_YEAR)


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0032_clinic_cancellation_window_at_most_a_year"),
    ]

    operations = [
        migrations.RunPython(windows_shortened, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="clinic",
            constraint=models.CheckConstraint(
                condition=models.Q(("cancellation_window_hours__gte", 0), ("cancellation_window_hours__lte", A_YEAR)),
                name="clinic_cancellation_window_at_most_a_year",
                violation_error_message="A cancellation window is at most 8760 hours (a year).",
            ),
        ),
    ]
