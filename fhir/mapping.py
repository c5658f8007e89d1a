"""Our records as FHIR R4 resources (JSON dicts): Schedule, Slot, Appointment, and the status maps.

Plain dicts, so the service does not depend on a FHIR model library at run time; the tests validate
every shape emitted here with `fhir.resources` (R4B models, which R4 JSON satisfies for these resources).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clinic.models import Appointment, AppointmentStatus, Practitioner

# Code systems of our own (URNs: no registry needed, never dereferenced).
PROCEDURE_SYSTEM = "urn:clinic-scheduling:procedure"
STATUS_EXTENSION = "urn:clinic-scheduling:fhir:appointment-status"
REVIEW_EXTENSION = "urn:clinic-scheduling:fhir:review-reason"
PROBLEM_SYSTEM = "urn:clinic-api:problem"
# The systems of the status codes (R4 value sets): a token search may name them (`system|code`).
APPOINTMENT_STATUS_SYSTEM = "http://hl7.org/fhir/appointmentstatus"
SLOT_STATUS_SYSTEM = "http://hl7.org/fhir/slotstatus"

# Our appointment statuses → FHIR R4 Appointment.status. Every appointment also carries our own status
# in the STATUS_EXTENSION, since two of ours map to one FHIR code (docs/fhir.md explains each choice).
APPOINTMENT_STATUS = {
    AppointmentStatus.PENDING_CLEARANCE: "pending",  # a clinician must clear it before it is final
    AppointmentStatus.NEEDS_REVIEW: "pending",  # a later record change made it unsafe: not final any more
    AppointmentStatus.CONFIRMED: "booked",
    AppointmentStatus.COMPLETED: "fulfilled",
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.NO_SHOW: "noshow",
}
# FHIR Appointment.status codes this server can answer with, and which of ours each one searches.
FHIR_APPOINTMENT_STATUSES = {
    code: tuple(ours for ours, theirs in APPOINTMENT_STATUS.items() if theirs == code)
    for code in dict.fromkeys(APPOINTMENT_STATUS.values())
}
# Every other R4 code is valid in a search and simply matches nothing here.
OTHER_FHIR_APPOINTMENT_STATUSES = ("proposed", "arrived", "entered-in-error", "checked-in", "waitlist")


def fhir_appointment_status(appointment: Appointment) -> str:
    """Our status in R4's words; a confirmed appointment whose patient has checked in has `arrived`."""
    if appointment.status == AppointmentStatus.CONFIRMED and appointment.checked_in_at is not None:
        return "arrived"
    return APPOINTMENT_STATUS[appointment.status]


# An appointment holding its slot → FHIR Slot.status.
SLOT_STATUS_FOR_APPOINTMENT = {
    AppointmentStatus.PENDING_CLEARANCE: "busy-tentative",
    AppointmentStatus.CONFIRMED: "busy",
    AppointmentStatus.NEEDS_REVIEW: "busy",  # it still holds the slot until moved or cancelled
}
SLOT_STATUSES = ("free", "busy", "busy-tentative", "busy-unavailable")


def compact(value):
    """`value` without empty arrays, objects or strings and without nulls, at any depth. R4 JSON: 'objects and
    arrays are never empty, and properties never have null values'; an empty property is omitted."""
    if isinstance(value, dict):
        items = ((key, compact(item)) for key, item in value.items())
        return {key: item for key, item in items if item not in ([], {}, "", None)}
    if isinstance(value, list):
        return [item for item in map(compact, value) if item not in ([], {}, "", None)]
    return value


def _instant(value: datetime, tz) -> str:
    return value.astimezone(tz).isoformat()


def _procedure_concept(code: str, name: str) -> dict:
    return {"coding": [{"system": PROCEDURE_SYSTEM, "code": code, "display": name}], "text": name}


def schedule_resource(practitioner: Practitioner) -> dict:
    """One Schedule per practitioner at their clinic; its id is the practitioner's."""
    procedures = sorted(practitioner.procedures.all(), key=lambda p: p.code)
    return compact(
        {
            "resourceType": "Schedule",
            "id": str(practitioner.pk),
            "active": practitioner.is_active,
            "serviceType": [_procedure_concept(p.code, p.name) for p in procedures],
            "actor": [
                {"reference": f"Practitioner/{practitioner.pk}", "display": practitioner.name},
                {"reference": f"Location/{practitioner.clinic_id}", "display": practitioner.clinic.name},
            ],
            "comment": f"{practitioner.name} at {practitioner.clinic.name} (times in {practitioner.clinic.timezone})",
        }
    )


@dataclass(frozen=True)
class SlotRow:
    practitioner_id: str
    start_at: datetime
    end_at: datetime
    status: str
    procedures: tuple[tuple[str, str], ...]  # (code, name) the slot is for
    tz: object

    @property
    def id(self) -> str:
        # Stable for the same practitioner, start, length and status: [A-Za-z0-9.-], cut to R4's 64 characters,
        # which shortens `busy-tentative` and `busy-unavailable` (`.60.busy-tentat`): still unique, as the
        # statuses differ in their first letters after `busy-`. Kept as it is: clients hold these ids.
        minutes = int((self.end_at - self.start_at).total_seconds() // 60)
        return f"{self.practitioner_id}.{self.start_at:%Y%m%d%H%M}.{minutes}.{self.status}"[:64]


def slot_resource(row: SlotRow) -> dict:
    resource = {
        "resourceType": "Slot",
        "id": row.id,
        "schedule": {"reference": f"Schedule/{row.practitioner_id}"},
        "status": row.status,
        "start": _instant(row.start_at, row.tz),
        "end": _instant(row.end_at, row.tz),
    }
    if row.procedures:
        resource["serviceType"] = [_procedure_concept(code, name) for code, name in row.procedures]
    return compact(resource)


def appointment_resource(appointment: Appointment, *, reason_shown: bool = False) -> dict:
    tz = appointment.clinic.tz
    resource = {
        "resourceType": "Appointment",
        "id": str(appointment.pk),
        "extension": [{"url": STATUS_EXTENSION, "valueCode": appointment.status}],
        "status": fhir_appointment_status(appointment),
        "serviceType": [_procedure_concept(appointment.procedure_id, appointment.procedure.name)],
        "start": _instant(appointment.start_at, tz),
        "end": _instant(appointment.end_at, tz),
        "minutesDuration": int((appointment.end_at - appointment.start_at).total_seconds() // 60),
        "created": _instant(appointment.created_at, tz),
        "participant": [
            {"actor": {"reference": f"Patient/{appointment.patient_id}"}, "required": "required", "status": "accepted"},
            {
                "actor": {
                    "reference": f"Practitioner/{appointment.practitioner_id}",
                    "display": appointment.practitioner.name,
                },
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {"reference": f"Location/{appointment.clinic_id}", "display": appointment.clinic.name},
                "required": "required",
                "status": "accepted",
            },
        ],
    }
    if appointment.status == AppointmentStatus.CANCELLED and appointment.cancel_reason and reason_shown:
        # Words someone wrote (the patient's note to the clinic on their page, the desk's reason) may say something
        # of their health: the clinic's staff and a clinical API client read them (`reason_shown`).
        resource["cancelationReason"] = {"text": appointment.cancel_reason}  # fhir.views' renderer makes it fit
    if appointment.status == AppointmentStatus.NEEDS_REVIEW:
        resource["extension"] += [
            {"url": REVIEW_EXTENSION, "valueString": reason.get("message") or reason.get("code") or "needs review"}
            for reason in appointment.review_reasons or []
        ]
    return compact(resource)


def operation_outcome(
    *, code: str, diagnostics: str, problem: str, expression: list[str] | None = None, severity: str = "error"
) -> dict:
    issue = {
        "severity": severity,
        "code": code,
        "diagnostics": diagnostics,
        "details": {"coding": [{"system": PROBLEM_SYSTEM, "code": problem}], "text": diagnostics},
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
