"""Query filters for the lists (django-filter), scoped to the caller's clinics, and as strict as the bodies.

A filter value naming something outside the caller's scope is refused
exactly like one naming nothing at all: no existence leaks. What
django-filter would quietly ignore is refused with a 400 instead: an empty
value (`?status=`), a single-valued parameter given twice, a boolean that is
neither true nor false (`?bookable=0.82`). Each filter documents in the
schema exactly what it accepts.
"""

from __future__ import annotations

import functools
import operator
import re

import django_filters
from django import forms
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.access import caller_for
from api.fields import DATE_TIME_PATTERN, TEXT_PATTERN, parse_aware
from api.merged import refuse_if_merged
from clinic.models import Appointment, AppointmentStatus, Patient, Practitioner, ProcedureType
from clinic.selectors import patient_search
from core.errors import ErrorCode, InvalidInput
from core.ids import parse_uuid

EMPTY = "Give a value, or leave the parameter out."
ONCE = "Give this parameter once."

# Ids are UUIDs in their canonical form (what the schema's `format: uuid` means).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def refuse_repeated_and_empty(query_params, names, *, repeatable=()) -> None:
    """A 400 for any of `names` given empty, or given more than once unless it is `repeatable`."""
    errors = {}
    for name in names:
        values = query_params.getlist(name)
        if "" in values:
            errors[name] = [EMPTY]
        elif len(values) > 1 and name not in repeatable:
            errors[name] = [ONCE]
    if errors:
        raise serializers.ValidationError(errors)


def _documented(filter_, schema: dict):
    """The filter's parameter schema in the OpenAPI document (drf-spectacular reads this override)."""
    help_text = filter_.extra.get("help_text")
    return extend_schema_field({**schema, **({"description": str(help_text)} if help_text else {})})(filter_)


class TextFilter(django_filters.CharFilter):
    """A non-empty string of at most `max_length` characters, taken as sent (not stripped: " " is a value)."""

    def __init__(self, *args, max_length: int, **kwargs):
        super().__init__(*args, max_length=max_length, strip=False, **kwargs)
        _documented(self, {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": TEXT_PATTERN})


class AwareDateTimeFormField(forms.Field):
    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_aware(value)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="invalid")


class AwareDateTimeFilter(django_filters.Filter):
    field_class = AwareDateTimeFormField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _documented(self, {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN})


class StrictBooleanFormField(forms.Field):
    """`true` or `false`, as the schema's boolean is written in a query; anything else is refused, not ignored."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if value not in ("true", "false"):
            raise forms.ValidationError("Give true or false.", code="invalid")
        return value == "true"


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanFormField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _documented(self, {"type": "boolean"})


class ScopedIdFilter(django_filters.CharFilter):
    """By opaque id, within the caller's clinics; anything else is "There is no such <noun>." (unknown_<noun>)."""

    def __init__(self, *args, noun: str, scope, moved=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.noun, self.scope, self.code, self.moved = noun, scope, ErrorCode(f"unknown_{noun}"), moved
        _documented(self, {"type": "string", "format": "uuid"})

    def filter(self, qs, value):
        if value in ([], (), {}, "", None):
            return qs
        record = self.scope(self.parent.request).filter(pk=value).first() if _UUID.fullmatch(value) else None
        if record is None:
            if self.moved is not None:
                self.moved(self.parent.request, value, field=self.field_name)  # raises where the id moved
            raise InvalidInput(self.code, f"There is no such {self.noun}.", field=self.field_name)
        return qs.filter(**{self.field_name: record})


class ProcedureCodeFilter(TextFilter):
    """By procedure code, any in the catalogue (a list may hold bookings of a procedure no longer bookable); a code
    not in it is refused as a body's is ("There is no procedure with code …", unknown_procedure), not read as an
    empty list: a typo must not look like "no bookings"."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=50, help_text="Procedure code.", **kwargs)

    def filter(self, qs, value):
        if value in ([], (), {}, "", None):
            return qs
        known = list(ProcedureType.objects.order_by().values_list("code", flat=True))
        if value not in known:
            raise InvalidInput.unknown_code(
                ErrorCode.UNKNOWN_PROCEDURE, what="procedure", given=value, known=known, field="procedure"
            )
        return super().filter(qs, value)


def _patients(request):
    """The patients of the caller's clinics' organisations (the record is shared by the organisation's
    clinics: a sister site's patient is the caller's too), as `ApiCaller.patient` finds them."""
    return Patient.objects.filter(
        organisation_id__in=caller_for(request).clinics().values("organisation_id"),
        merged_into__isnull=True,  # a tombstone is in no list, search or body: 400 patient_merged, as in a body
    )


def _merged_patient(request, value, *, field: str) -> None:
    refuse_if_merged(caller_for(request).clinics(), value, field=field)


def _practitioners(request):
    return Practitioner.objects.filter(clinic__in=caller_for(request).clinics())


class StrictFilterSet(django_filters.FilterSet):
    """Refuses an empty value and a repeated single-valued parameter (django-filter would ignore them)."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        repeatable = {name for name, f in self.filters.items() if isinstance(f, django_filters.MultipleChoiceFilter)}
        try:
            refuse_repeated_and_empty(self.data, self.filters, repeatable=repeatable)
        except serializers.ValidationError as error:
            for name, messages in error.detail.items():
                # Said in these words alone: a choice filter's own error for an empty value ("Select a valid
                # choice.  is not one of the available choices.") would come first and read as garbled.
                self.form.errors.pop(name, None)
                self.form.add_error(name, [str(message) for message in messages])
            return False
        return valid


class ClinicFilterMixin:
    """`?clinic=` by id or code, within the caller's clinics."""

    def filter_clinic(self, queryset, name, value):
        clinics = caller_for(self.request).clinics()
        pk = parse_uuid(value)
        clinic = clinics.filter(Q(code=value) | Q(pk=pk) if pk else Q(code=value)).first()
        if clinic is None:
            raise InvalidInput(ErrorCode.UNKNOWN_CLINIC, "There is no such clinic.", field="clinic")
        return queryset.filter(**{name: clinic})


def _clinic_filter():
    return TextFilter(method="filter_clinic", max_length=64, help_text="Clinic id or code.")


class ProcedureFilter(StrictFilterSet):
    bookable = StrictBooleanFilter(help_text="true: only procedures that can be booked; false: only the others.")

    class Meta:
        model = ProcedureType
        fields = ["bookable"]


class PractitionerFilter(ClinicFilterMixin, StrictFilterSet):
    clinic = _clinic_filter()
    procedure = ProcedureCodeFilter(field_name="procedures__code")

    class Meta:
        model = Practitioner
        fields = ["clinic", "procedure"]


class PatientFilter(ClinicFilterMixin, StrictFilterSet):
    clinic = _clinic_filter()
    search = TextFilter(
        method="filter_search", max_length=100, help_text="Name, e-mail, phone digits or date of birth (YYYY-MM-DD)."
    )

    class Meta:
        model = Patient
        fields = ["clinic", "search"]

    def filter_search(self, queryset, name, value):
        """A national number is read as dialled in the country of one of the caller's clinics (as the front desk
        reads it in its clinic's): "07911 123456" finds +447911123456 for a platform of a British clinic."""
        countries = sorted(set(caller_for(self.request).clinics().values_list("country", flat=True)) - {""})
        if len(countries) <= 1:
            return patient_search(queryset, value, country=countries[0] if countries else "")
        return functools.reduce(operator.or_, (patient_search(queryset, value, country=c) for c in countries))


class AppointmentFilter(ClinicFilterMixin, StrictFilterSet):
    clinic = _clinic_filter()
    patient = ScopedIdFilter(
        field_name="patient",
        noun="patient",
        scope=_patients,
        moved=_merged_patient,
        help_text="Patient id (a merged record's: 400 patient_merged naming the survivor in merged_into).",
    )
    practitioner = ScopedIdFilter(
        field_name="practitioner", noun="practitioner", scope=_practitioners, help_text="Practitioner id."
    )
    status = django_filters.MultipleChoiceFilter(
        choices=AppointmentStatus.choices, help_text="Repeat for several statuses."
    )
    procedure = ProcedureCodeFilter(field_name="procedure_id")
    start_after = AwareDateTimeFilter(
        field_name="start_at", lookup_expr="gte", help_text="Starts at or after this time (with an offset)."
    )
    start_before = AwareDateTimeFilter(
        field_name="start_at", lookup_expr="lt", help_text="Starts before this time (with an offset)."
    )

    class Meta:
        model = Appointment
        fields = ["clinic", "patient", "practitioner", "status", "procedure", "start_after", "start_before"]
