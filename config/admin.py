"""The admin site: signed in through the front desk's one sign-in, and with a code where 2FA is required.

The admin's own login form would be a second door: no sign-in limiter and no
authenticator code. So it sends people to the front desk's sign-in, and with
STAFF_TWO_FACTOR_REQUIRED on the admin opens only to sessions verified with a
code (what django-otp's OTPAdminSite checks). An action posted on any change list with a selected id its
model's key cannot hold is a bad request (ClinicAdminSite.admin_view).
"""

from __future__ import annotations

from contextlib import suppress
from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import BadRequest, ValidationError
from django.db import connection
from django.shortcuts import render
from django.urls import reverse


class FormFieldAutocompleteJsonView(AutocompleteJsonView):
    """The admin's autocomplete offers what the form's field offers.

    Django's answers from the related model's admin: its view permission and its rows. For a field a form lists
    in `autocomplete_fields` the answer is the form's instead: whoever may fill the form (add or change
    permission on its model) may search, and only among the choices the form's field would take
    (`formfield_for_foreignkey`, scoped to the administrator's clinics). A clinic administrator granting a staff
    role finds their own staff and accounts with no role yet, without any right to the user admin (which would
    list every tenant's accounts). The form's admin may hold back more (`autocomplete_narrow`: the role form shows
    an account with no role anywhere only to its exact username or e-mail). Any other question, and any
    many-to-many field, gets Django's answer."""

    def process_request(self, request):
        term, model_admin, source_field, to_field_name = super().process_request(request)
        self.source_admin = None
        with suppress(NotRegistered):
            source_admin = self.admin_site.get_model_admin(source_field.model)
            # Foreign keys only: their form fields carry the clinic scoping (ClinicScopedChoices); a many-to-many
            # field's would not, so it keeps Django's answer (the related admin's own scoped rows).
            if source_field.many_to_one and source_field.name in source_admin.get_autocomplete_fields(request):
                self.source_admin = source_admin
        return term, model_admin, source_field, to_field_name

    def has_perm(self, request, obj=None) -> bool:
        if self.source_admin is not None:
            return self.source_admin.has_add_permission(request) or self.source_admin.has_change_permission(request)
        return super().has_perm(request, obj)

    def get_queryset(self):
        if self.source_admin is None:
            return super().get_queryset()
        field = self.source_admin.formfield_for_foreignkey(self.source_field, self.request)
        offered = field.queryset.model._default_manager.filter(pk__in=field.queryset.values("pk"))
        queryset = offered.complex_filter(self.source_field.get_limit_choices_to())
        queryset, distinct = self.model_admin.get_search_results(self.request, queryset, self.term)
        queryset = queryset.distinct() if distinct else queryset
        if narrow := getattr(self.source_admin, "autocomplete_narrow", None):  # what the form's admin holds back
            queryset = narrow(self.request, self.source_field.name, queryset, self.term)
        return queryset.order_by(*(self.model_admin.get_ordering(self.request) or ()), "pk")


class ClinicAdminSite(admin.AdminSite):
    def autocomplete_view(self, request):
        return FormFieldAutocompleteJsonView.as_view(admin_site=self)(request)

    def admin_view(self, view, cacheable=False):
        """Every model admin's change list: an action posted with a selected id its primary key cannot hold
        (`_selected_action=junk`, a UUID for an integer key, a number out of the column's range, a NUL) is a bad
        request (400), checked after the site's own sign-in and permission checks. Django filters `pk__in` with the
        ids as posted, and such an id raised (ValidationError, ValueError) as a 500."""
        model_admin = getattr(view, "__self__", None)
        if getattr(view, "__name__", "") == "changelist_view" and isinstance(model_admin, admin.ModelAdmin):
            view = _action_ids_checked(view, model_admin.model._meta.pk)
        return super().admin_view(view, cacheable)

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


def _action_ids_checked(view, key):
    @wraps(view)
    def checked(request, *args, **kwargs):
        if request.method == "POST":
            odd = [value for value in request.POST.getlist(ACTION_CHECKBOX_NAME) if not _key_holds(key, value)]
            if odd:
                raise BadRequest(
                    f"The selected {key.model._meta.verbose_name_plural} include an id that is not one "
                    f"({', '.join(repr(value[:40]) for value in odd[:3])}): nothing was done."
                )
        return view(request, *args, **kwargs)

    return checked


def _key_holds(key, value: str) -> bool:
    """`value` is one the primary key `key` can hold: read by the field, with no NUL, and in its column's range."""
    if "\x00" in value:
        return False
    try:
        typed = key.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return False
    if isinstance(typed, int):
        low, high = connection.ops.integer_field_range(key.get_internal_type())
        return (low is None or typed >= low) and (high is None or typed <= high)
    return typed is not None
