"""The admin site: signed in through the front desk's one sign-in, and with a code where 2FA is required.

The admin's own login form would be a second door: no sign-in limiter and no
authenticator code. So it sends people to the front desk's sign-in, and with
STAFF_TWO_FACTOR_REQUIRED on the admin opens only to sessions verified with a
code (what django-otp's OTPAdminSite checks).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.urls import reverse


class ClinicAdminSite(admin.AdminSite):
    def has_permission(self, request) -> bool:
        if not super().has_permission(request):
            return False
        return not settings.STAFF_TWO_FACTOR_REQUIRED or request.user.is_verified()

    def login(self, request, extra_context=None):
        if request.user.is_authenticated:
            # Signed in, but not allowed in: sending them to sign in again would loop.
            return render(
                request,
                "frontdesk/error.html",
                {
                    "heading": "You can't use the admin",
                    "detail": "Your account has no access to the admin site. Ask a clinic administrator if you need it.",
                },
                status=403,
            )
        return redirect_to_login(request.GET.get("next") or reverse("admin:index"), reverse("frontdesk:login"))
