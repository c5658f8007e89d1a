"""Treatment plan panels that other pages include: a patient's plans, and the recalls due on Today.

Inclusion tags, so the pages that show them (owned elsewhere) gain one line each and no view change.
"""

from django import template

from plans import selectors

register = template.Library()


@register.inclusion_tag("frontdesk/_recalls_due.html", takes_context=True)
def recalls_due(context, clinic, today):
    return {"clinic": clinic, "today": today, "recalls": selectors.recalls_due(clinic=clinic, today=today)}


@register.inclusion_tag("frontdesk/_patient_plans.html", takes_context=True)
def patient_plans(context, patient):
    plans = patient.plans.select_related("template", "clinic").order_by("-created_at")
    return {"clinic": context["clinic"], "patient": patient, "plans": plans}
