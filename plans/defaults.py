"""Loading the shipped plan templates (fixtures/plan_templates.json): clinic practice, not sourced.

Idempotent like the rules (scheduler/defaults.py): a template is created only when its key is missing,
so an administrator's edits survive a re-run of setup.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.defaults import shipped_rows_create_missing
from plans.models import PlanTemplate
from reminders.models import Anchor, MessageKind, ReminderTemplate, TemplateOrigin

SHIPPED = Path(settings.BASE_DIR) / "fixtures" / "plan_templates.json"
CLINIC_PRACTICE = "Clinic practice (not from the published sources)"


@transaction.atomic
def plan_templates_load() -> int:
    """Create the default templates (and the recall message) that are missing; return how many were created.
    Each is checked first (`full_clean`); one read and one insert for each model, retried once should a
    concurrent load insert the same keys (`shipped_rows_create_missing`)."""
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    created = _recall_message_load(shipped["recall_message"])
    rows = {row["key"]: row for row in shipped["templates"]}
    return created + len(
        shipped_rows_create_missing(PlanTemplate, "default_key", rows, lambda key: _template(rows[key]))
    )


def _template(row: dict) -> PlanTemplate:
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
    template.full_clean(validate_unique=False)
    return template


def _recall_message_load(row: dict) -> int:
    """The recall's texts: a reminder template of kind recall (plans.recalls plans it), edited in the admin."""

    def build(key: str) -> ReminderTemplate:
        message = ReminderTemplate(
            default_key=key,
            name=row["name"],
            kind=MessageKind.RECALL,
            anchor=Anchor.COMPLETION,
            offset_value=0,
            offset_unit="days",
            send_if_late=True,
            origin=TemplateOrigin.CLINIC,
            source=row["source"],
            email_subject=row["email_subject"],
            email_text="\n".join(row["email_text"]),
            sms_text=row["sms_text"],
        )
        message.full_clean(exclude=["default_key"])
        return message

    return len(shipped_rows_create_missing(ReminderTemplate, "default_key", [row["key"]], build))
