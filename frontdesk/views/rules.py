"""The organisation's rule book, read-only: every rule in force with its source and basis, what the
organisation changed, and the versions (who, when, why, what). Editing is in the admin (docs/rules.md)."""

from __future__ import annotations

from django.views.decorators.http import require_safe

from frontdesk.views.base import clinic_page, page
from scheduler import rulebooks, selectors


@clinic_page
@require_safe
def rules(request):
    overview = selectors.rulebook_overview(request.clinic.organisation_id)
    versions = [(version, rulebooks.diff_text(version.diff or [])) for version in overview["versions"]]
    return page(
        request,
        "frontdesk/rules.html",
        {**overview, "versions": versions, "organisation": request.clinic.organisation, "nav": "rules"},
    )
