"""Re-check every future booking once, for the rules' new reading of a day (5 December 2026, docs/rules.md).

Two changes of how a calendar gap is measured may forbid what was booked before them: each event's date is read in
its own clinic's zone (a sister site's visit, a day recorded at another site), and two events on one local date are
0 days apart whichever comes first that day. "The rules hold over time" (domain 6), so every organisation's future
active bookings of the procedures the rules relate are re-checked, as after a change of the defaults: this makes the
run, and the beat's `resume_rechecks` (or `run_dispatcher` with no broker) does it within minutes, in chunks. A
database with nothing booked ahead gets no run."""

from django.db import migrations
from django.utils import timezone

ACTIVE = ("pending_clearance", "confirmed", "needs_review")  # clinic.models.ACTIVE_APPOINTMENT_STATUSES, as of now
CAUSE = "rules' reading of a day: each event's date where it happens; one date is 0 days apart (5 December 2026)"


def start(apps, schema_editor):
    Appointment = apps.get_model("clinic", "Appointment")
    ProcedureType = apps.get_model("clinic", "ProcedureType")
    RecheckRun = apps.get_model("scheduler", "RecheckRun")
    now = timezone.now()
    if not Appointment.objects.filter(start_at__gt=now, status__in=ACTIVE).exists():
        return
    procedures = sorted(ProcedureType.objects.values_list("code", flat=True))
    RecheckRun.objects.create(cause=CAUSE, procedures=procedures, created_at=now, organisation=None)


class Migration(migrations.Migration):
    dependencies = [
        ("scheduler", "0010_recheck_run_rulebook_versions"),
        ("clinic", "0018_procedurerecord_clinic"),
    ]

    operations = [migrations.RunPython(start, migrations.RunPython.noop)]
