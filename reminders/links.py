"""The signed link in each confirmation and reminder that lets a patient see and act on their appointment.

The token names the appointment and an expiry (a week after the appointment ends); it is signed
with the project's secret, so it cannot be forged or edited, and it stops working by itself. The
patient pages (portal/) read it back with `appointment_from_manage_token`.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing

from clinic.models import Appointment
from core.errors import ErrorCode, InvalidInput
from core.ids import parse_uuid

MANAGE_SALT = "reminders.manage-appointment"
MANAGE_PATH = "/my/"  # where portal/urls.py is mounted (config/urls.py)
VALID_AFTER_END = timedelta(days=7)


def manage_token(appointment: Appointment) -> str:
    expires = int((appointment.end_at + VALID_AFTER_END).timestamp())
    return signing.dumps({"a": str(appointment.pk), "e": expires}, salt=MANAGE_SALT, compress=True)


def manage_url(appointment: Appointment) -> str:
    return f"{settings.REMINDERS_PUBLIC_BASE_URL.rstrip('/')}{MANAGE_PATH}{manage_token(appointment)}/"


def appointment_from_manage_token(token: str, *, now: datetime) -> Appointment:
    """The appointment a link names; InvalidInput for a forged, damaged, expired or stale link."""
    try:
        data = signing.loads(token, salt=MANAGE_SALT)
    except signing.BadSignature:
        raise InvalidInput(ErrorCode.INVALID_MANAGE_LINK, "This link is not valid. Please use the link in your "
                                                          "latest message, or call the clinic.")
    pk = parse_uuid(data.get("a")) if isinstance(data, dict) else None
    expires = data.get("e") if isinstance(data, dict) else None
    if pk is None or not isinstance(expires, int):
        raise InvalidInput(ErrorCode.INVALID_MANAGE_LINK, "This link is not valid. Please call the clinic.")
    if now >= datetime.fromtimestamp(expires, tz=UTC):
        raise InvalidInput(ErrorCode.MANAGE_LINK_EXPIRED, "This link has expired. Please call the clinic.")
    appointment = (Appointment.objects.select_related("clinic", "patient", "procedure", "practitioner")
                   .filter(pk=pk).first())
    if appointment is None:
        raise InvalidInput(ErrorCode.INVALID_MANAGE_LINK, "This appointment no longer exists. Please call the clinic.")
    return appointment
