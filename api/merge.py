"""POST /api/v1/patients/{id}/merge/: merge this record into another of the organisation (clinic.merging)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.response import Response

from api import schema as docs
from api.idempotency import idempotent
from api.serializers import MergeIn, MergeOut, PatientOut
from api.views import ApiView, _input
from clinic.merging import patient_merge
from clinic.models import Appointment, Patient
from clinic.selectors import merged_patient_survivor, patients_in
from core.errors import ErrorCode, InvalidInput, NotFound
from core.ids import parse_uuid
from scheduler.recheck import violation_records_in_zone


def warnings_out(warnings: list[dict]) -> list[dict]:
    """A merge's warnings (stored in UTC) with their times in the offset of each appointment's clinic."""
    if not warnings:
        return []
    booked = Appointment.objects.filter(pk__in={w["appointment"] for w in warnings}).select_related("clinic")
    zones = {str(appointment.pk): appointment.clinic.tz for appointment in booked}
    return [violation_records_in_zone([w], zones[w["appointment"]])[0] for w in warnings]


class PatientMergeApi(ApiView):
    serializer_class = MergeOut

    def _survivor(self, value, patient: Patient) -> Patient:
        """The record to merge into: a live record of the same organisation. Another organisation's, or
        none, is a 404 (the same answer: nothing outside is revealed); a tombstone is a 400 naming its survivor."""
        pk = parse_uuid(value)
        into = patients_in(self.clinics()).filter(pk=pk, organisation_id=patient.organisation_id).first()
        if into is not None:
            return into
        survivor = merged_patient_survivor(self.clinics(), pk) if pk else None
        if survivor is not None and survivor.organisation_id == patient.organisation_id:
            raise InvalidInput(
                ErrorCode.PATIENT_MERGED,
                f"That record was merged into {survivor.pk}; merge into that one.",
                field="into",
                data={"merged_into": str(survivor.pk)},
            )
        raise NotFound(ErrorCode.UNKNOWN_PATIENT, "There is no such patient in this record's organisation.")

    @extend_schema(
        tags=["patients"],
        operation_id="patients_merge",
        summary="Merge this record into another of the organisation (clinician's right); this one becomes a "
        "tombstone whose address redirects (308) to the survivor",
        request=MergeIn,
        parameters=[docs.IDEMPOTENCY_KEY],
        examples=[
            OpenApiExample(
                "Merge, keeping pregnancy active",
                request_only=True,
                value={
                    "into": "5f0c7a4e-2f6b-4a53-9d7e-1c8f2b6a9e10",
                    "intake": [{"condition": "pregnancy", "area": None, "status": "active"}],
                },
            )
        ],
        responses=docs.responses(
            200, MergeOut, bad_request=True, idempotent=True, forbidden=True, body=True, merge=True
        ),
    )
    @idempotent
    def post(self, request, patient_id):
        patient = self.patient_from_url()
        data = _input(MergeIn, request)
        into = self._survivor(data["into"], patient)
        actor = self.caller.actor_for_record(patient)  # the record is the organisation's, not its home clinic's
        record = patient_merge(
            merged=patient,
            into=into,
            now=timezone.now(),
            actor_label=actor.label,
            actor_user=actor.user,
            clinical=actor.clinical,
            intake={(line["condition"], line.get("area")): line["status"] for line in data.get("intake", [])},
        )
        into.refresh_from_db()
        return Response({**PatientOut(into).data, "warnings": warnings_out(record.details["warnings"])})
