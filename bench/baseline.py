"""The benchmarks' baseline: the cheapest way to store the row a booking stores.

Same HTTP stack as POST /api/v1/appointments/ (authentication, throttle, strict
JSON, the same input serializer, the tenancy look-up of the patient) and the
same appointment row, but no rules, no locks, no audit, no outbox. The load
section compares booking throughput with this. Mounted only when
settings.BENCH_ENDPOINTS is true (env BENCH_ENDPOINTS=1); never in the public API.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.access import caller_for
from api.serializers import BookingIn
from clinic.models import Appointment, AppointmentStatus, ProcedureType
from core.ids import parse_uuid

# Procedure durations do not change during a run; reading them once keeps the baseline bare.
_durations: dict[str, int] = {}


def _duration(code: str) -> timedelta | None:
    if not _durations:
        _durations.update(ProcedureType.objects.values_list("code", "duration_minutes"))
    minutes = _durations.get(code)
    return timedelta(minutes=minutes) if minutes else None


class BaselineBookingApi(APIView):
    """POST the body of a booking; insert the appointment as given."""

    def post(self, request):
        serializer = BookingIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        patient = caller_for(request).patient(parse_uuid(data["patient"]))  # the booking's tenancy look-up
        duration = _duration(data["procedure"])
        if patient is None or duration is None or not data.get("practitioner"):
            return Response(
                {"detail": "unknown patient or procedure, or no practitioner"}, status=status.HTTP_400_BAD_REQUEST
            )
        try:
            appointment = Appointment.objects.create(
                clinic_id=patient.clinic_id,
                patient=patient,
                practitioner_id=data["practitioner"],
                procedure_id=data["procedure"],
                area_id=data.get("area"),
                start_at=data["start"],
                end_at=data["start"] + duration,
                status=AppointmentStatus.CONFIRMED,
            )
        except IntegrityError:  # the exclusion constraint: the practitioner is taken then
            return Response({"detail": "slot taken"}, status=status.HTTP_409_CONFLICT)
        return Response({"id": str(appointment.pk)}, status=status.HTTP_201_CREATED)
