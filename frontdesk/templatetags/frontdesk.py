"""Small display helpers for the front-desk templates."""

import re

import phonenumbers
from django import template
from django.utils import timezone
from phonenumbers import PhoneNumberFormat

from core.timeutils import wall_clock, wall_moment, wall_span

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


# A parenthesised path into the repository (docs/sources.md, or a seed file in a citation not yet
# brought up to date), and a short reference id left on its own once that is dropped.
_REPOSITORY_PATH = re.compile(r"\s*\([^()\s]*/[^()\s]*\)")
_BARE_REFERENCE = re.compile(r"^\[?(\d{3})\]?$")


@register.filter
def source_refs(source: str) -> str:
    """A rule's citation as the desk reads it, without the pointer into the repository.

    "[000] Dr.Oracle, contraindications; [001] Yazbek Artistry, microneedling care (docs/sources.md)"
    reads "[000] Dr.Oracle, contraindications; [001] Yazbek Artistry, microneedling care"; the full
    text stays in the tooltip. Only parenthesised paths are dropped (docs/sources.md, or a file
    path in a citation not yet brought up to date); "(2017)" in an administrator's text stays. A
    citation that was only a file path reads "reference text 001", never a bare "001".
    """
    refs = []
    for part in (source or "").split(";"):
        ref = _REPOSITORY_PATH.sub("", part).strip()
        bare = _BARE_REFERENCE.match(ref)
        refs.append(f"reference text {bare[1]}" if bare else ref)
    return "; ".join(ref for ref in refs if ref)


@register.simple_tag(takes_context=True)
def conflict_of(context, violation):
    """The patient's appointment a violation conflicts with, if it is one, from the page's `appointments_by_id`
    (selectors.patient_appointments_by_id). A page without it shows the violation without the link: a filter
    argument would raise VariableDoesNotExist there, and the page would be a 500."""
    ref = getattr(violation, "conflicts_with", None)
    appointments_by_id = context.get("appointments_by_id")
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
def hidden_initial(bound_field) -> str:
    """The hidden copy of the value a field was drawn with (`show_hidden_initial`), which a group of choices drawn
    option by option does not render itself: has_changed then compares with what the user saw."""
    return bound_field.as_hidden(only_initial=True) if bound_field.field.show_hidden_initial else ""


@register.filter
def when(value) -> str:
    """A moment that may be a calendar bound (an earliest eligible start), in the current (clinic) zone: a local
    midnight shows as the day alone, any other time as `moment` does. An exact start, which may well be at 00:00,
    is written with `moment`."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    if local.hour == 0 and local.minute == 0:
        return f"{local:%a} {local.day} {local:%b %Y}"
    return moment(value)


@register.filter
def moment(value) -> str:
    """An exact moment (a visit's start, the start a check was asked for) in the current (clinic) zone, always with
    its time, midnight too ("Tue 10 Mar 2026, 00:00"); a time the clocks go back over says which reading it is
    ("Sun 25 Oct 2026, 01:30 GMT", `core.timeutils.wall_moment`)."""
    return wall_moment(value) if value is not None else ""


@register.filter
def visit_times(appointment) -> str:
    """A visit's times as its calendar card reads them, in the current (clinic) zone: "10:00–10:30"; in the hour the
    clocks go back over, with the zone's abbreviation ("01:30–02:00 GMT", "01:30 BST–01:00 GMT": core.timeutils.wall_span)."""
    return wall_span(appointment.start_at, appointment.end_at, timezone.get_current_timezone())


@register.filter
def clock(value) -> str:
    """A moment's time of day in the current (clinic) zone, saying which reading in the hour the clocks go back over
    ("01:15 BST", then "01:15 GMT": core.timeutils.wall_clock)."""
    return wall_clock(timezone.localtime(value)) if value is not None else ""


def display_phone(value: str, country: str) -> str:
    """An E.164 number as the desk dials it: national format for the clinic's country, else international."""
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value  # not a phone number (e.g. an e-mail recipient): as it is
    # By country calling code, not region: +44 7911 is GB as dialled even where the plan assigns it to Jersey.
    local = bool(country) and number.country_code == phonenumbers.country_code_for_region(country)
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL if local else PhoneNumberFormat.INTERNATIONAL)


@register.filter
def phone(value: str, clinic) -> str:
    """`{{ patient.phone|phone:clinic }}`: the number in the clinic's national format where it is local."""
    return display_phone(value, getattr(clinic, "country", ""))
