"""Signing in and out, and the landing page that sends staff to their clinic."""
from __future__ import annotations

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render

from clinic.selectors import clinics_for_user
from frontdesk import ratelimit


class RateLimitedAuthenticationForm(AuthenticationForm):
    """Refuses to even try the password once this username (or this address) has failed too often."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "locked": "Too many failed sign-ins. For your security, sign-in is paused for %(minutes)s minutes; "
                  "try again later or ask your clinic administrator to reset your password.",
    }
    locked = False

    def __init__(self, request=None, *args, **kwargs) -> None:
        super().__init__(request, *args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autocapitalize": "none"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})
        for name in ("username", "password"):
            self.fields[name].widget.attrs["aria-describedby"] = "login-errors"

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = ratelimit.client_address(self.request)
        if ratelimit.login_locked(username=username, address=address):
            self.locked = True
            raise forms.ValidationError(self.error_messages["locked"], code="locked",
                                        params={"minutes": ratelimit.lockout_minutes()})
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            ratelimit.login_failed(username=username, address=address)
            raise
        ratelimit.login_succeeded(username=username, address=address)
        return cleaned


class LoginView(auth_views.LoginView):
    template_name = "frontdesk/login.html"
    form_class = RateLimitedAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.locked:
            response.status_code = 429
        return response


class LogoutView(auth_views.LogoutView):
    pass


@login_required
def home(request):
    clinics = list(clinics_for_user(request.user))
    if len(clinics) == 1:
        return redirect("frontdesk:today", clinic_code=clinics[0].code)
    return render(request, "frontdesk/choose_clinic.html", {"clinic_list": clinics})
