"""What every clinic page shares: the clinic from the URL, the user's role there, local time.

`clinic_page` 404s a clinic the user is not on the staff of, exactly as for one
that does not exist, and shows every time on the page in the clinic's zone.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render, resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from clinic.models import StaffRole
from clinic.record_changes import ChangedBy
from clinic.selectors import CLINICAL_ROLES, clinics_for_user, staff_role
from core.errors import NotAllowed, NotFound
from frontdesk import selectors
from scheduler.booking import Actor


def clinic_page(view):
    @wraps(view)
    def wrapper(request, clinic_code: str, *args, **kwargs):
        clinic = selectors.clinic_for_user(request.user, clinic_code)
        if clinic is None:  # another clinic's pages are as absent as a made-up one
            return render(
                request,
                "frontdesk/error.html",
                {
                    "heading": "Not found",
                    "detail": "There is no such page at your clinic.",
                    "clinics": clinics_for_user(request.user),
                },
                status=404,
            )
        role = staff_role(request.user, clinic.pk)
        request.clinic = clinic
        request.staff_role = role
        request.clinical = role in CLINICAL_ROLES
        request.actor = Actor(
            label=f"{request.user.get_username()} (front desk)", user=request.user, clinical=request.clinical
        )
        with timezone.override(clinic.tz):
            try:
                return view(request, *args, **kwargs)
            except (NotAllowed, PermissionDenied) as error:
                return page(
                    request,
                    "frontdesk/error.html",
                    {
                        "heading": "You can't do that",
                        "detail": getattr(error, "message", "") or str(error),
                    },
                    status=403,
                )
            except (NotFound, Http404):
                # The same answer whether it does not exist or belongs to another clinic.
                return page(
                    request,
                    "frontdesk/error.html",
                    {
                        "heading": "Not found",
                        "detail": "There is no such page at this clinic.",
                    },
                    status=404,
                )

    return signed_in_required(wrapper)


def signed_in_required(view):
    """`login_required`, except for a request a page makes in place (htmx, or the calendar's dialog, both with
    `HX-Request`) when the session has ended: a redirect would be followed inside the panel and the whole
    sign-in page drawn there. It is told to go to the sign-in page as a whole (`HX-Redirect`), with a word on
    why, and back to the page it was on (htmx's `HX-Current-URL`, on this site only) after signing in."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.headers.get("HX-Request") != "true":
            return redirect_to_login(request.get_full_path())
        back = request.get_full_path()
        current = request.headers.get("HX-Current-URL", "")
        if current and url_has_allowed_host_and_scheme(
            current, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            parts = urlsplit(current)
            back = parts.path + (f"?{parts.query}" if parts.query else "")
        messages.info(request, "Your session ended: sign in again to go on.")
        response = HttpResponse(status=204)
        response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({REDIRECT_FIELD_NAME: back})}"
        return response

    return wrapper


def page(request, template: str, context: dict | None = None, *, status: int = 200) -> HttpResponse:
    clinic = request.clinic
    base = {
        "clinic": clinic,
        "clinics": clinics_for_user(request.user),
        "role": request.staff_role,
        "role_label": StaffRole(request.staff_role).label if request.staff_role else "",
        "clinical": request.clinical,
        "today": timezone.localdate(timezone=clinic.tz),
    }
    return render(request, template, {**base, **(context or {})}, status=status)


def desk_changed_by(request) -> ChangedBy:
    """Who changes a patient's details at the desk, for the consent record (reminders.consent)."""
    return ChangedBy(via="desk", label=request.actor.label)


def patient_or_404(request, patient_id):
    patient = selectors.patient_for_user(request.user, request.clinic, patient_id)
    if patient is None:
        raise Http404("No such patient.")
    return patient


def appointment_or_404(request, appointment_id):
    appointment = selectors.appointment_for_user(request.user, request.clinic, appointment_id)
    if appointment is None:
        raise Http404("No such appointment.")
    return appointment
