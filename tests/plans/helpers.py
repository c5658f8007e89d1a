"""Helpers shared by plan tests and the probes that reuse them: posting a plan template's admin change form, as
drawn, with some fields changed (tests/plans/test_template_edits_in_use.py).
"""

from plans.models import PlanTemplate


def change_form(template: PlanTemplate, **changes) -> dict:
    """The admin's change form for `template` as drawn, with `changes` made."""
    data = {
        "organisation": template.organisation_id or "",
        "code": template.code,
        "name": template.name,
        "procedure": template.procedure_id,
        "kind": template.kind,
        "sessions": template.sessions,
        "min_gap_value": template.min_gap_value,
        "min_gap_unit": template.min_gap_unit,
        "ideal_gap_value": template.ideal_gap_value,
        "ideal_gap_unit": template.ideal_gap_unit,
        "max_gap_value": template.max_gap_value,
        "max_gap_unit": template.max_gap_unit,
        "area": template.area_id or "",
        "source": template.source,
        "note": template.note,
        "is_active": "on" if template.is_active else "",
        "_save": "Save",
    }
    return {k: v for k, v in {**data, **changes}.items() if v != ""}


def admin_change(admin_client, template: PlanTemplate, **changes):
    admin_client.raise_request_exception = False
    return admin_client.post(f"/admin/plans/plantemplate/{template.pk}/change/", change_form(template, **changes))
