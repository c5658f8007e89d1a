"""Signing in (password, then an authenticator code for staff who have one) and out, setting up two-step
sign-in, the landing page that sends staff to their clinic, and the page a form with a stale CSRF token gets."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from django import forms
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_safe
from django_otp import login as otp_login

from clinic.selectors import clinics_for_user
from frontdesk import ratelimit, twofactor
from frontdesk.views.base import own_page

LOCKED_MESSAGE = (
    "Too many failed sign-ins. For your security, sign-in is paused for %(minutes)s minutes; "
    "try again later or ask your clinic administrator to reset your password."
)


class RateLimitedAuthenticationForm(AuthenticationForm):
    """Refuses to even try the password once this username (or this address) has failed too often."""

    error_messages = {**AuthenticationForm.error_messages, "locked": LOCKED_MESSAGE}
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
            raise forms.ValidationError(
                self.error_messages["locked"], code="locked", params={"minutes": ratelimit.lockout_minutes()}
            )
        try:
            return super().clean()
        except forms.ValidationError:
            ratelimit.login_failed(username=username, address=address)
            raise


class CodeForm(forms.Form):
    code = forms.CharField(
        label="6-digit code from your authenticator app",
        min_length=6,
        max_length=8,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "autocapitalize": "none",
                "spellcheck": "false",
                "aria-describedby": "login-errors",
            }
        ),
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if not code.isdigit():
            raise forms.ValidationError("Enter the digits your authenticator app shows.", code="not_digits")
        return code


def _safe_next(request, candidate: str) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("frontdesk:home")


class LoginView(auth_views.LoginView):
    template_name = "frontdesk/login.html"
    form_class = RateLimitedAuthenticationForm
    redirect_authenticated_user = True
    http_method_names = ["get", "head", "post", "options"]  # Django's form views take PUT as a POST

    def get_redirect_url(self):
        """The safe `next`, unless it is this page: a signed-in user sent back here would loop (Django raises)."""
        url = super().get_redirect_url()
        return "" if url and urlsplit(url).path == self.request.path else url

    def form_valid(self, form):
        user = form.get_user()
        address = ratelimit.client_address(self.request)
        if twofactor.has_device(user):
            # The password was right; the session is not signed in until the code is. The failure counter
            # is cleared only then, so a known password does not buy unlimited code guesses.
            twofactor.pending_start(self.request, user=user, next_url=self.get_redirect_url(), now=time.time())
            return redirect("frontdesk:login_code")
        ratelimit.login_succeeded(username=user.get_username(), address=address)
        return super().form_valid(form)

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.locked:
            response.status_code = 429
        return response


@require_http_methods(["GET", "HEAD", "POST"])
def login_code(request):
    """The second step: the code from the authenticator app of the user whose password was right."""
    pending = twofactor.pending_get(request, now=time.time())
    if pending is None:
        twofactor.pending_clear(request)
        messages.info(
            request,
            "Sign in with your username and password first (a started sign-in lasts "
            f"{twofactor.PENDING_SECONDS // 60} minutes).",
        )
        return redirect("frontdesk:login")
    username = pending.user.get_username()
    address = ratelimit.client_address(request)
    form = CodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and form.is_valid():
        if ratelimit.login_locked(username=username, address=address):
            twofactor.pending_clear(request)
            form.add_error(None, LOCKED_MESSAGE % {"minutes": ratelimit.lockout_minutes()})
            status = 429
        elif twofactor.code_throttled(pending.user):
            form.add_error(None, "Too many wrong codes in a row: wait a few seconds, then enter the newest code.")
            status = 429
        else:
            device = twofactor.code_verify(user=pending.user, code=form.cleaned_data["code"])
            if device is not None:
                twofactor.pending_clear(request)
                auth_login(request, pending.user, backend=pending.backend or None)
                otp_login(request, device)
                ratelimit.login_succeeded(username=username, address=address)
                return redirect(_safe_next(request, pending.next_url))
            ratelimit.login_failed(username=username, address=address)
            form.add_error(
                None,
                "That code is not right. Enter the code your app shows now "
                "(each code works once and changes every 30 seconds).",
            )
    return render(request, "frontdesk/login_code.html", {"form": form, "username": username}, status=status)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def two_factor(request):
    """Set up two-step sign-in: scan the code (or type the secret) into an app, then confirm with a code."""
    user = request.user
    if twofactor.has_device(user):
        return render(
            request, "frontdesk/two_factor.html", {"enabled": True, "required": twofactor.two_factor_required(user)}
        )
    device = twofactor.enrolment_device(user)
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        if twofactor.enrolment_confirm(device=device, code=form.cleaned_data["code"]):
            otp_login(request, device)
            messages.success(
                request,
                "Two-step sign-in is on: from now on you sign in with your password "
                "and a code from your authenticator app.",
            )
            return redirect(_safe_next(request, request.GET.get("next", "")))
        form.add_error(
            None, "That code is not right. Check that the app shows this account, then enter the code it shows now."
        )
    return render(
        request,
        "frontdesk/two_factor.html",
        {
            "enabled": False,
            "required": twofactor.two_factor_required(user),
            "form": form,
            "secret": twofactor.secret_text(device),
            "qr": twofactor.qr_data_uri(device),
        },
        status=400 if form.errors else 200,
    )


class LogoutView(auth_views.LogoutView):
    pass


@login_required
@require_safe
def home(request):
    clinics = list(clinics_for_user(request.user))
    if len(clinics) == 1:
        return redirect("frontdesk:today", clinic_code=clinics[0].code)
    return render(request, "frontdesk/choose_clinic.html", {"clinic_list": clinics})


def csrf_failure(request, reason: str = ""):
    """settings.CSRF_FAILURE_VIEW: a form whose CSRF token no longer matches the session (a page open for too long,
    or signed out and in again in another tab) gets plain words and a way back instead of Django's "CSRF verification
    failed" page; nothing was saved. For every HTML form of the site, the patients' own pages too, so it needs no
    sign-in and names no clinic; the API is not sent here (DRF answers its own 403). `reason` is Django's
    (it logs it, django.security.csrf), not for the reader."""
    back = own_page(request, request.headers.get("Referer", "")) or "/"
    return render(request, "frontdesk/csrf_failure.html", {"back": back}, status=403)
