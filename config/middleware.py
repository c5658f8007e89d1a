"""Project-wide middleware: responses are never cached, and required two-step sign-in is enforced.

Both sit in config/ because they span the front desk, the API and the admin.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import urlencode

from api.authentication import api_key_given
from api.problems import PROBLEM_CONTENT_TYPE, problem
from fhir.mapping import operation_outcome
from fhir.views import FHIR_JSON
from frontdesk import twofactor


class NoStoreMiddleware:
    """Pages and API answers carry patient data: no browser, shared terminal or proxy may keep a copy.

    Every response of the application (static files are answered earlier, by WhiteNoise) gets
    `Cache-Control: no-store` and friends, unless it is anonymous and set its own Cache-Control.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        signed_in = getattr(getattr(request, "user", None), "is_authenticated", False)
        if signed_in or getattr(request, "auth", None) is not None or not response.has_header("Cache-Control"):
            if response.has_header("Cache-Control"):
                del response.headers["Cache-Control"]
            add_never_cache_headers(response)
        return response


class TwoFactorRequiredMiddleware:
    """A signed-in user whose role needs two-step sign-in (frontdesk.twofactor) but whose session was not
    verified with a code reaches only the sign-in, sign-out and enrolment pages until it is."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            settings.STAFF_TWO_FACTOR_REQUIRED
            and user is not None
            and user.is_authenticated
            and not user.is_verified()
            and not self._exempt(request)
            and twofactor.two_factor_required(user)
        ):
            return self._refuse(request, user)
        return self.get_response(request)

    @staticmethod
    def _exempt(request) -> bool:
        # An API key authenticates the call, not the browser's session. Read as api.authentication reads it (one
        # helper: the header's bytes split at ASCII whitespace, as DRF does): any other Authorization header (Basic,
        # Bearer, empty, `Token` joined to its key by a U+00A0) authenticates nothing there, so DRF would fall back
        # on the session, and it is no reason to skip the two-step check.
        if request.path.startswith(_KEYED_PREFIXES) and api_key_given(request):
            return True
        return request.path in {
            reverse("frontdesk:two_factor"),
            reverse("frontdesk:logout"),
            reverse("frontdesk:login"),
            reverse("frontdesk:login_code"),
        }

    @staticmethod
    def _refuse(request, user) -> HttpResponse:
        if request.path.startswith("/fhir/"):  # FHIR's clients read an OperationOutcome, as for its other errors
            detail = (
                "Your role needs two-step sign-in: set it up at "
                f"{reverse('frontdesk:two_factor')} and sign in with a code, or use an API key."
            )
            body = operation_outcome(code="forbidden", diagnostics=detail, problem="two_factor_required")
            return JsonResponse(body, status=403, content_type=FHIR_JSON)
        if request.path.startswith("/api/"):
            body = problem(
                403,
                code="two_factor_required",
                instance=request.path,
                detail="Your role needs two-step sign-in: set it up at "
                f"{reverse('frontdesk:two_factor')} and sign in with a code, or use an API key.",
            )
            return JsonResponse(body, status=403, content_type=PROBLEM_CONTENT_TYPE)
        if twofactor.has_device(user):
            # Signed in some other way than with the code (e.g. before the device was set up): do it properly.
            logout(request)
            messages.info(request, "Sign in again with your password and a code from your authenticator app.")
            target = f"{reverse('frontdesk:login')}?{urlencode({'next': request.get_full_path()})}"
        else:
            target = f"{reverse('frontdesk:two_factor')}?{urlencode({'next': request.get_full_path()})}"
        if request.headers.get("HX-Request") == "true":  # htmx follows the header, not a 302 into a panel
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
            return response
        return redirect(target)


# Where an API key (not the browser's session) may authenticate a call: the v1 API and FHIR.
_KEYED_PREFIXES = ("/api/", "/fhir/")
