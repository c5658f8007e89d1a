"""Deployment checks of the reminder channels: a backend that cannot be imported, or Twilio without its
credentials or sender, would fail every message of that channel at send time (each marked failed, the
patient told nothing). `manage.py check --deploy`, which a deployment runs (docs/production.md), says so
before anything is sent. Deploy-only: the other management commands (reminders_status, run_dispatcher,
migrate) still run, so e-mail keeps going while SMS is being fixed."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.utils.module_loading import import_string

from reminders.channels import BaseSmsBackend, TwilioSmsBackend


def _load(path: str, setting: str, code: str) -> tuple[type | None, list[Error]]:
    try:
        return import_string(path), []
    except ImportError as exc:
        return None, [
            Error(
                f"{setting} {path!r} cannot be imported ({exc}): every message on this channel would fail.",
                hint=f"Set {setting} to a backend's dotted path (README, Configuration).",
                id=code,
            )
        ]


@register(deploy=True)
def reminder_channels(app_configs=None, **kwargs) -> list[Error]:
    sms, found = _load(settings.SMS_BACKEND, "SMS_BACKEND", "reminders.E001")
    found += _load(settings.EMAIL_BACKEND, "EMAIL_BACKEND", "reminders.E002")[1]
    if sms is None:
        return found
    if not callable(sms) or (isinstance(sms, type) and not issubclass(sms, BaseSmsBackend)):
        found.append(
            Error(
                f"SMS_BACKEND {settings.SMS_BACKEND!r} is not an SMS backend (a reminders.channels.BaseSmsBackend, "
                "or a callable that makes one).",
                id="reminders.E004",
            )
        )
    elif isinstance(sms, type) and issubclass(sms, TwilioSmsBackend):
        missing = [name for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN") if not getattr(settings, name)]
        if not (settings.SMS_FROM or settings.TWILIO_MESSAGING_SERVICE_SID):
            missing.append("SMS_FROM or TWILIO_MESSAGING_SERVICE_SID")
        if missing:
            found.append(
                Error(
                    f"Twilio is the SMS backend but these are unset: {'; '.join(missing)}. Every text would fail.",
                    hint="Set them from the Twilio console (README, Configuration).",
                    id="reminders.E003",
                )
            )
    return found


@register(deploy=True)
def outbound_proxy(app_configs=None, **kwargs) -> list[Warning]:
    """Twilio and webhook requests connect directly, to the address they checked (channels._post: a proxy would
    look the name up again and undo the private-address check). A proxy set in the environment is not used for
    them: where the proxy is the only way out, every text and delivery would retry and then fail."""
    named = [name for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy") if os.environ.get(name)]
    if not named:
        return []
    return [
        Warning(
            f"{named[0]} is set, but SMS (Twilio) and webhook requests do not go through a proxy: they connect "
            "directly to the address they checked.",
            hint="Allow direct outbound HTTPS from the workers (docs/production.md, Outbound HTTPS).",
            id="reminders.W001",
        )
    ]
