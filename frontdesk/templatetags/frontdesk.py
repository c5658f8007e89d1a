"""Small display helpers for the front-desk templates."""
from django import template

register = template.Library()

SEVERITY_LABELS = {
    "block": "Not allowed",
    "absolute": "Absolute contraindication",
    "relative": "Needs clinician clearance",
    "warn": "Caution",
}


@register.filter
def severity_label(violation) -> str:
    return SEVERITY_LABELS.get(str(violation.severity), str(violation.severity))


@register.filter
def severity_class(violation) -> str:
    severity = str(violation.severity)
    if severity in ("block", "absolute"):
        return "refused"
    if severity == "relative":
        return "pending"
    return "warn"


@register.filter
def source_refs(source: str) -> str:
    """A rule's citation as the desk reads it, without the pointer into the repository.

    "[000] Dr.Oracle, contraindications; [001] Yazbek Artistry, microneedling care (docs/sources.md)"
    reads "[000] Dr.Oracle, contraindications; [001] Yazbek Artistry, microneedling care"; the full
    text stays in the tooltip. Only parenthesised paths are dropped (docs/sources.md, or a file
    path in a citation not yet brought up to date); "(2017)" in an administrator's text stays.
    """
    import re

    refs = [re.sub(r"\s*\([^()\s]*/[^()\s]*\)", "", part).strip() for part in (source or "").split(";")]
    return "; ".join(ref for ref in refs if ref)


@register.filter
def conflict(violation, appointments_by_id):
    """The patient's appointment a violation conflicts with, if it is one."""
    ref = getattr(violation, "conflicts_with", None)
    if ref is None or not appointments_by_id:
        return None
    return appointments_by_id.get(str(ref.id))


@register.filter
def field_kind(bound_field) -> str:
    widget = bound_field.field.widget
    if getattr(widget, "allow_multiple_selected", False) and getattr(widget, "input_type", "") == "checkbox":
        return "group"
    if getattr(widget, "input_type", "") == "radio":
        return "group"
    if getattr(widget, "input_type", "") == "checkbox":
        return "checkbox"
    if widget.is_hidden:
        return "hidden"
    return "input"


@register.filter
def when(value) -> str:
    """A moment in the current (clinic) zone; a calendar bound (local midnight) shows as the day alone."""
    from django.utils import timezone

    if value is None:
        return ""
    local = timezone.localtime(value)
    if local.hour == 0 and local.minute == 0:
        return f"{local:%a} {local.day} {local:%b %Y}"
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}"
