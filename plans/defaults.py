"""Loading the shipped plan templates (fixtures/plan_templates.json): clinic practice, not sourced.

Idempotent like the rules (scheduler/defaults.py): a template is created only when its key is missing,
so an administrator's edits survive a re-run of setup.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from plans.models import PlanTemplate

SHIPPED = Path(settings.BASE_DIR) / "fixtures" / "plan_templates.json"
CLINIC_PRACTICE = "Clinic practice (not from the published sources)"


@transaction.atomic
def plan_templates_load() -> int:
    """Create the default templates that are missing; return how many were created."""
    created = 0
    for row in json.loads(SHIPPED.read_text(encoding="utf-8"))["templates"]:
        template = PlanTemplate(
            code=row["code"],
            name=row["name"],
            procedure_id=row["procedure"],
            kind=row["kind"],
            sessions=row["sessions"],
            min_gap_value=row["min_gap"][0],
            min_gap_unit=row["min_gap"][1],
            ideal_gap_value=row["ideal_gap"][0],
            ideal_gap_unit=row["ideal_gap"][1],
            max_gap_value=row["max_gap"][0],
            max_gap_unit=row["max_gap"][1],
            source=CLINIC_PRACTICE,
            note=row.get("note", ""),
            default_key=row["key"],
        )
        if PlanTemplate.objects.filter(default_key=row["key"]).exists():
            continue
        template.full_clean(validate_unique=False)
        template.save(force_insert=True)
        created += 1
    return created
