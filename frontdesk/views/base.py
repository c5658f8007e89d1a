"""What every clinic page shares: the clinic from the URL, the user's role there, local time.

`clinic_page` 404s a clinic the user is not on the staff of, exactly as for one
that does not exist, and shows every time on the page in the clinic's zone. A
service's refusal that a view does not map next to its form is still a page
that says it (403, 404, 409 or 400), never a server error.
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
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from clinic.models import StaffRole
from clinic.record_changes import ChangedBy
from clinic.selectors import CLINICAL_ROLES, clinics_for_user, staff_role
from core.errors import DomainError, InvalidInput, NotAllowed, NotFound, PreconditionFailed
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
            except DomainError as error:
                return _not_done(request, error)

    return signed_in_required(wrapper)


def _not_done(request, error: DomainError) -> HttpResponse:
    """A refusal a view did not map itself (each view maps the ones it expects, next to its form): said on a page of
    its own with the service's sentence and a way back, never a server error (the service that refused rolled back
    what it had begun). A stale page (`PreconditionFailed`) is a 409, as on the desk's own forms."""
    if isinstance(error, PreconditionFailed):
        heading, status = "This has changed since you opened the page", 409
    elif isinstance(error, InvalidInput):
        heading, status = "That can't be done as asked", 400
    else:  # Refused, InvalidTransition and any refusal added later
        heading, status = "Not done", error.http_status
    return page(request, "frontdesk/error.html", {"heading": heading, "detail": error.message}, status=status)


def signed_in_required(view):
    """`login_required`, with where to come back to chosen for what the request was.

    A page opened (GET) comes back to itself. A form sent (POST) comes back to the page the form was on (its
    `Referer`, on this site only), else the clinic's Today page: its own address takes POST only, so signing in
    and going there would be a blank 405; what was typed cannot be kept, and the sign-in page says to send the
    form again. A request a page makes in place (htmx, or the calendar's dialog, both with `HX-Request`) is told
    to go to the sign-in page as a whole (`HX-Redirect`): a redirect would be followed inside the panel and the
    whole sign-in page drawn there; it comes back to the page it was on (htmx's `HX-Current-URL`, on this site
    only)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        sent = request.method not in ("GET", "HEAD")
        if request.headers.get("HX-Request") != "true":
            if not sent:
                return redirect_to_login(request.get_full_path())
            messages.info(request, "Your session ended; sign in and send the form again.")
            return redirect_to_login(_page_the_form_was_on(request, kwargs.get("clinic_code")))
        back = own_page(request, request.headers.get("HX-Current-URL", ""))
        if back is None:
            back = _page_the_form_was_on(request, kwargs.get("clinic_code")) if sent else request.get_full_path()
        messages.info(request, "Your session ended: sign in again to go on.")
        response = HttpResponse(status=204)
        response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({REDIRECT_FIELD_NAME: back})}"
        return response

    return wrapper


def own_page(request, address: str) -> str | None:
    """`address` (a Referer, htmx's HX-Current-URL) as a path and query on this site, or None: another site's
    address (or a scheme-relative one) is never where signing in leads."""
    if not address or not url_has_allowed_host_and_scheme(
        address, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return None
    parts = urlsplit(address)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # A path of this site that a browser reads as another's (`//evil.example/x`, `/\evil.example`) is none either.
    if not parts.path.startswith("/") or not url_has_allowed_host_and_scheme(
        path, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return None
    return path


def _page_the_form_was_on(request, clinic_code: str | None) -> str:
    """Where a form sent after the session ended comes back to once signed in: the page it was on (the Referer),
    unless that is the address it posts to (a refusal drawn there answers POST only), else the clinic's Today."""
    referer = own_page(request, request.headers.get("Referer", ""))
    if referer is not None and urlsplit(referer).path != request.path:
        return referer
    if clinic_code:
        return reverse("frontdesk:today", kwargs={"clinic_code": clinic_code})
    return resolve_url(settings.LOGIN_REDIRECT_URL)


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
