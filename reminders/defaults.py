"""Loading the shipped reminder plans (fixtures/care_texts.json), idempotently.

A template is created only when its key is missing, so an administrator's
edits survive every re-run of setup_demo. Sourced templates cite the
published sources of docs/sources.md by id; a citation still in the
file-path form of earlier releases is brought up to date, and nothing else of
an existing template is touched. Needs the catalogue loaded first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.defaults import shipped_rows_create_missing
from reminders.models import ReminderTemplate
from scheduler import versioned
from scheduler.defaults import citation_superseded

CARE_TEXTS = Path(settings.BASE_DIR) / "fixtures" / "care_texts.json"


def _text(value) -> str:
    return "\n".join(value) if isinstance(value, list) else (value or "")


@transaction.atomic
@versioned.within_snapshot  # the SMS checks read the catalogue's names once for the fourteen texts, not each
def care_texts_load(path: Path = CARE_TEXTS) -> int:
    """Create the default reminder templates that are missing; return how many were created.

    Those stored are read in one statement and the missing ones inserted in one, retried once should a
    concurrent load insert the same keys (`shipped_rows_create_missing`; row by row it was 138 statements a load).
    Each is checked first, as the admin checks an edit (`full_clean`): a broken fixture fails setup loudly, not at
    send time."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = {row["key"]: row for row in data["templates"]}
    return len(
        shipped_rows_create_missing(
            ReminderTemplate, "default_key", rows, lambda key: _template(rows[key]), stored=_refresh_citation(rows)
        )
    )


def _refresh_citation(rows: dict) -> Callable[[ReminderTemplate], None]:
    def refresh(template: ReminderTemplate) -> None:
        shipped = rows[template.default_key]["source"]
        if citation_superseded(template.source, shipped):
            template.source = shipped
            template.save(update_fields=["source"])

    return refresh


def _template(row: dict) -> ReminderTemplate:
    template = ReminderTemplate(
        default_key=row["key"],
        name=row["name"],
        kind=row["kind"],
        procedure_id=row["procedure"],
        anchor=row["anchor"],
        offset_value=row["offset"][0],
        offset_unit=row["offset"][1],
        send_if_late=row["send_if_late"],
        attach_ics=row["attach_ics"],
        origin=row["origin"],
        source=row["source"],
        email_subject=row.get("email_subject", ""),
        email_text=_text(row.get("email_text")),
        email_html=_text(row.get("email_html")),
        sms_text=row.get("sms_text", ""),
    )
    template.full_clean(exclude=["default_key"])
    return template
