"""Reads scoped to what a caller may see: staff see their clinics, nothing else.

Every query the interfaces make about patients or appointments starts from
one of these, so tenancy is enforced in one place.
"""
from __future__ import annotations

from django.db.models import Q, QuerySet

from clinic.models import Appointment, Clinic, Patient, StaffMembership, StaffRole

CLINICAL_ROLES = (StaffRole.CLINICIAN, StaffRole.CLINIC_ADMIN)


def clinics_for_user(user) -> QuerySet[Clinic]:
    if not getattr(user, "is_authenticated", False):
        return Clinic.objects.none()
    return Clinic.objects.filter(memberships__user=user).distinct()


def staff_role(user, clinic_id) -> str | None:
    """The user's role at the clinic, or None when they have none there."""
    if not getattr(user, "is_authenticated", False):
        return None
    return StaffMembership.objects.filter(user=user, clinic_id=clinic_id).values_list("role", flat=True).first()


def is_clinical(user, clinic_id) -> bool:
    return staff_role(user, clinic_id) in CLINICAL_ROLES


def patients_in(clinics: QuerySet[Clinic]) -> QuerySet[Patient]:
    return Patient.objects.filter(clinic__in=clinics).select_related("clinic")


def appointments_in(clinics: QuerySet[Clinic]) -> QuerySet[Appointment]:
    return Appointment.objects.filter(clinic__in=clinics).select_related(
        "clinic", "patient", "practitioner", "procedure", "area")


def patient_search(patients: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """Match name, e-mail, phone (digits) or date of birth (YYYY-MM-DD)."""
    from datetime import date

    query = (query or "").strip()
    if not query:
        return patients.none()
    condition = Q()
    for word in query.split():
        condition &= Q(first_name__icontains=word) | Q(last_name__icontains=word) | Q(email__icontains=word)
    digits = "".join(ch for ch in query if ch.isdigit())
    if len(digits) >= 4:
        condition |= Q(phone__contains=digits)
    try:
        condition |= Q(date_of_birth=date.fromisoformat(query))
    except ValueError:
        pass
    return patients.filter(condition)
