"""Staff two-factor sign-in: who must use it, enrolling an authenticator app, and the half-finished sign-in.

A staff user with a confirmed TOTP device always signs in with password and
code. Clinic administrators, anyone who may edit the shared rules and anyone
who may use the admin site must have one when STAFF_TWO_FACTOR_REQUIRED is on
(production); until they enrol, their session reaches only the enrolment page.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import get_user_model
from django_otp import devices_for_user, user_has_device, verify_token
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.models import StaffMembership, StaffRole

# Anyone who may add, change or delete a shared rule changes what every clinic may book.
RULE_PERMISSIONS = tuple(
    f"scheduler.{action}_{model}"
    for model in ("intervalrule", "contraindicationrule")
    for action in ("add", "change", "delete")
)
# Between the right password and the code, at most this long.
PENDING_SECONDS = 300
PENDING_KEY = "frontdesk:two-factor-pending"
DEVICE_NAME = "Authenticator app"


def two_factor_required(user) -> bool:
    """True for the roles that must sign in with a code (when STAFF_TWO_FACTOR_REQUIRED is on)."""
    if not settings.STAFF_TWO_FACTOR_REQUIRED or not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser or user.is_staff:  # the admin site
        return True
    if StaffMembership.objects.filter(user=user, role=StaffRole.CLINIC_ADMIN).exists():
        return True
    return any(user.has_perm(permission) for permission in RULE_PERMISSIONS)


def has_device(user) -> bool:
    return user_has_device(user, confirmed=True)


def confirmed_device(user) -> TOTPDevice | None:
    return next(iter(devices_for_user(user, confirmed=True)), None)


def enrolment_device(user) -> TOTPDevice:
    """The user's unconfirmed device: the same secret on every visit until it is confirmed with a code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def enrolment_confirm(*, device: TOTPDevice, code: str) -> bool:
    """Confirm the device with a code from the app; any other device of the user is then removed."""
    if not verify_token(device.user, device.persistent_id, code):
        return False
    TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return True


def secret_text(device: TOTPDevice) -> str:
    """The secret as an authenticator app asks for it when typed in: base32, in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URL as an SVG QR code in a data: URI (an <img>, so no inline markup or script)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode()


# --- The half-finished sign-in: the password was right, the code is still to come --------------------------


@dataclass(frozen=True)
class Pending:
    user: object
    backend: str
    next_url: str


def pending_start(request, *, user, next_url: str, now: float) -> None:
    request.session[PENDING_KEY] = {"user": user.pk, "backend": user.backend, "next": next_url, "at": now}


def pending_get(request, *, now: float) -> Pending | None:
    data = request.session.get(PENDING_KEY)
    if not isinstance(data, dict) or now - data.get("at", 0) > PENDING_SECONDS:
        return None
    user = get_user_model().objects.filter(pk=data.get("user"), is_active=True).first()
    if user is None:
        return None
    return Pending(user=user, backend=data.get("backend", ""), next_url=data.get("next", ""))


def pending_clear(request) -> None:
    request.session.pop(PENDING_KEY, None)


def code_verify(*, user, code: str) -> TOTPDevice | None:
    """The user's device if the code is right (each code works once; wrong ones slow the device down)."""
    device = confirmed_device(user)
    if device is None:
        return None
    return verify_token(user, device.persistent_id, code)


def code_throttled(user) -> bool:
    """True while the device makes the user wait after wrong codes (1, 2, 4, ... seconds)."""
    device = confirmed_device(user)
    return device is not None and not device.verify_is_allowed()[0]
