"""The clinic-practice repeat defaults of domain section 6 (severity warn, not sourced), for databases that
already hold the shipped defaults; a new database gets them from setup (scheduler.defaults.rules_load).
They make the next version of the defaults, so every organisation's rule book version moves."""

from django.db import migrations
from django.db.models import Max
from django.utils import timezone

SOURCE = "Clinic practice (domain brief section 6); not from the sources"
REPEATS = [
    ("botox-repeat", "botox", 12, "Botox again after at least 12 weeks (fewer antibody problems)."),
    ("filler-repeat", "filler", 2, "A filler top-up after at least 2 weeks."),
    ("microneedling-repeat", "microneedling", 4, "Microneedling sessions at least 4 weeks apart."),
    ("plasma-pen-repeat", "plasma_pen", 6, "Plasma pen sessions at least 6 weeks apart."),
]


def forwards(apps, schema_editor):
    IntervalRule = apps.get_model("scheduler", "IntervalRule")
    ProcedureType = apps.get_model("clinic", "ProcedureType")
    RuleBookVersion = apps.get_model("scheduler", "RuleBookVersion")
    if not IntervalRule.objects.filter(default_key__isnull=False).exists():
        return  # no defaults yet: setup loads them all, repeats included
    known = set(ProcedureType.objects.values_list("code", flat=True))
    diff = []
    for key, code, weeks, note in REPEATS:
        if code not in known or IntervalRule.objects.filter(default_key=key).exists():
            continue
        rule = IntervalRule.objects.create(
            default_key=key,
            earlier_procedure_id=code,
            later_procedure_id=code,
            gap_value=weeks,
            gap_unit="weeks",
            severity="warn",
            basis="practice",
            source=SOURCE,
            note=note,
        )
        diff.append(
            {
                "kind": "interval",
                "rule": f"{code} → {code}: {weeks} weeks (warn)",
                "rule_id": rule.pk,
                "replaces": None,
                "change": "added",
                "fields": {"gap_value": {"from": None, "to": weeks}, "gap_unit": {"from": None, "to": "weeks"}},
            }
        )
    if diff:
        latest = RuleBookVersion.objects.filter(organisation__isnull=True).aggregate(n=Max("number"))["n"]
        RuleBookVersion.objects.create(
            organisation=None,
            number=(latest or 1) + 1,
            created_at=timezone.now(),
            reason=f"release: {len(diff)} clinic-practice repeat default(s) added",
            diff=diff,
        )


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0006_organisation_rule_books"), ("clinic", "0012_organisation_required")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
