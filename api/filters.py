"""Query filters for the lists (django-filter), scoped to the caller's clinics.

A filter value naming something outside the caller's scope is refused
exactly like one naming nothing at all: no existence leaks.
"""
from __future__ import annotations

import uuid

import django_filters
from django import forms
from django.db.models import Q
from rest_framework import serializers

from api.access import caller_for
from api.fields import parse_aware
from clinic.models import Appointment, AppointmentStatus, Patient, Practitioner


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


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


class ClinicFilterMixin:
    """`?clinic=` by id or code, within the caller's clinics."""

    def filter_clinic(self, queryset, name, value):
        clinics = caller_for(self.request).clinics()
        pk = _as_uuid(value)
        clinic = clinics.filter(Q(code=value) | Q(pk=pk) if pk else Q(code=value)).first()
        if clinic is None:
            # DRF's ValidationError: raised while filtering, after django-filter's own validation.
            raise serializers.ValidationError({"clinic": ["There is no such clinic."]})
        return queryset.filter(**{name: clinic})


def _patients(request):
    if request is None:
        return Patient.objects.none()
    return Patient.objects.filter(clinic__in=caller_for(request).clinics())


def _practitioners(request):
    if request is None:
        return Practitioner.objects.none()
    return Practitioner.objects.filter(clinic__in=caller_for(request).clinics())


class ScopedModelChoiceFilter(django_filters.ModelChoiceFilter):
    """By opaque id; anything not a valid id of ours is 'not one of the available choices'."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("error_messages", {"invalid_choice": "There is no such record."})
        super().__init__(*args, **kwargs)


class PractitionerFilter(ClinicFilterMixin, django_filters.FilterSet):
    clinic = django_filters.CharFilter(method="filter_clinic", help_text="Clinic id or code.")
    procedure = django_filters.CharFilter(field_name="procedures__code", help_text="Procedure code.")

    class Meta:
        model = Practitioner
        fields = ["clinic", "procedure"]


class PatientFilter(ClinicFilterMixin, django_filters.FilterSet):
    clinic = django_filters.CharFilter(method="filter_clinic", help_text="Clinic id or code.")
    search = django_filters.CharFilter(method="filter_search",
                                       help_text="Name, e-mail, phone digits or date of birth (YYYY-MM-DD).")

    class Meta:
        model = Patient
        fields = ["clinic", "search"]

    def filter_search(self, queryset, name, value):
        from clinic.selectors import patient_search

        return patient_search(queryset, value)


class AppointmentFilter(ClinicFilterMixin, django_filters.FilterSet):
    clinic = django_filters.CharFilter(method="filter_clinic", help_text="Clinic id or code.")
    patient = ScopedModelChoiceFilter(queryset=_patients, help_text="Patient id.")
    practitioner = ScopedModelChoiceFilter(queryset=_practitioners, help_text="Practitioner id.")
    status = django_filters.MultipleChoiceFilter(choices=AppointmentStatus.choices,
                                                 help_text="Repeat for several statuses.")
    procedure = django_filters.CharFilter(field_name="procedure_id", help_text="Procedure code.")
    start_after = AwareDateTimeFilter(field_name="start_at", lookup_expr="gte",
                                      help_text="Starts at or after this time (with an offset).")
    start_before = AwareDateTimeFilter(field_name="start_at", lookup_expr="lt",
                                       help_text="Starts before this time (with an offset).")

    class Meta:
        model = Appointment
        fields = ["clinic", "patient", "practitioner", "status", "procedure", "start_after", "start_before"]
