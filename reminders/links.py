"""The signed link in each confirmation and reminder that lets a patient see and act on their appointment.

The token names the appointment and the expiry it was made with (a week after the appointment ends) and
carries a 96-bit HMAC of both under the project's secret, so it cannot be forged or edited. It works until a
week after the appointment ends *as it stands*: a link sent before the clinic moved the visit later keeps
working until a week after the new time, and one moved earlier stops a week after the earlier end. It is kept short (about 56 characters) because it goes by SMS too. The patient
pages (portal/) read it back with `appointment_from_manage_token`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import base36_to_int
from django.utils.http import int_to_base36 as base36

from clinic.models import Appointment
from core.errors import ErrorCode, InvalidInput
from core.ids import parse_uuid

MANAGE_SALT = "reminders.manage-appointment"
MANAGE_PATH = "/my/"  # where portal/urls.py is mounted (config/urls.py)
VALID_AFTER_END = timedelta(days=7)


def _mac(payload: str) -> str:
    digest = salted_hmac(MANAGE_SALT, payload, algorithm="sha256").digest()[:12]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def manage_token(appointment: Appointment) -> str:
    expires = int((appointment.end_at + VALID_AFTER_END).timestamp())
    payload = f"{appointment.pk.hex}.{base36(expires)}"
    return f"{payload}.{_mac(payload)}"


def manage_url(appointment: Appointment) -> str:
    return f"{settings.REMINDERS_PUBLIC_BASE_URL.rstrip('/')}{MANAGE_PATH}{manage_token(appointment)}/"


def appointment_from_manage_token(token: str, *, now: datetime) -> Appointment:
    """The appointment a link names; InvalidInput for a forged, damaged, expired or stale link."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or not constant_time_compare(_mac(f"{parts[0]}.{parts[1]}"), parts[2]):
        raise InvalidInput(
            ErrorCode.INVALID_MANAGE_LINK,
            "This link is not valid. Please use the link in your latest message, or call the clinic.",
        )
    pk = parse_uuid(parts[0])
    try:
        expires = base36_to_int(parts[1])
    except ValueError:
        expires = None
    if pk is None or expires is None:
        raise InvalidInput(ErrorCode.INVALID_MANAGE_LINK, "This link is not valid. Please call the clinic.")
    try:
        datetime.fromtimestamp(expires, tz=UTC)
    except (OverflowError, OSError, ValueError):  # signed, but no time a link we made could carry
        raise InvalidInput(ErrorCode.INVALID_MANAGE_LINK, "This link is not valid. Please call the clinic.")
    appointment = (
        Appointment.objects.select_related("clinic", "patient", "procedure", "practitioner").filter(pk=pk).first()
    )
    if appointment is None:
        raise InvalidInput(ErrorCode.INVALID_MANAGE_LINK, "This appointment no longer exists. Please call the clinic.")
    # The appointment's end now, not the one the link was made with: the visit may have moved since.
    if now >= appointment.end_at + VALID_AFTER_END:
        raise InvalidInput(ErrorCode.MANAGE_LINK_EXPIRED, "This link has expired. Please call the clinic.")
    return appointment
