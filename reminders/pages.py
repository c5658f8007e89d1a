"""What the patients' own pages share: the unsubscribe pages here and the appointment page (portal/).

They wear the clinic's look (reminders/_page.html). Its logo lives on the clinic's own site, while the
Content-Security-Policy (config/settings.py) admits images from this site only: each such response
widens `img-src` by that one https origin, and nothing else.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpResponse

from clinic.models import Clinic


def logo_origin(clinic: Clinic | None) -> str | None:
    """The https origin the clinic's logo is served from, or None (no logo, or not over https)."""
    try:
        parts = urlsplit((clinic.logo_url if clinic else "") or "")
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or not parts.hostname:
        return None
    return f"https://{parts.hostname}{f':{port}' if port else ''}"


def with_clinic_look(response: HttpResponse, clinic: Clinic | None) -> HttpResponse:
    """Let the page show the clinic's logo under the policy."""
    origin = logo_origin(clinic)
    if origin:
        # The attribute django-csp's own csp_update decorator sets; a decorator cannot name a per-clinic origin.
        update = dict(getattr(response, "_csp_update", None) or {})
        update["img-src"] = [*update.get("img-src", []), origin]
        response._csp_update = update
    return response
