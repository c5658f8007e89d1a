"""Deployment checks of the reminder channels: a backend that cannot be imported, or Twilio without its
credentials or sender, would fail every message of that channel at send time (each marked failed, the
patient told nothing); a public address patients cannot reach would make every link in a message dead. `manage.py check --deploy`, which a deployment runs (docs/production.md), says so
before anything is sent. Deploy-only: the other management commands (reminders_status, run_dispatcher,
migrate) still run, so e-mail keeps going while SMS is being fixed."""

from __future__ import annotations

import email.utils
import ipaddress
import os
import urllib.parse

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


@register(deploy=True)
def public_base_url(app_configs=None, **kwargs) -> list[Error | Warning]:
    """REMINDERS_PUBLIC_BASE_URL is the address in every link a patient gets (the patient page in each message,
    texts too; unsubscribe; calendar feeds): left at its local default, or on an address only this machine or its
    network reaches, every link is dead for the patient (reminders.E005); over plain HTTP, a patient's page and
    its token travel unencrypted (reminders.W002)."""
    url = settings.REMINDERS_PUBLIC_BASE_URL
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    unreachable = (
        not host
        or host == "localhost"
        or host.endswith((".localhost", ".local", ".internal"))
        or (address is not None and not address.is_global)
    )
    if parts.scheme not in ("http", "https") or unreachable:
        return [
            Error(
                f"REMINDERS_PUBLIC_BASE_URL {url!r} is not an address patients can reach: every link in their "
                "messages (their page, unsubscribe, calendar feeds) would be dead.",
                hint="Set it to the service's public HTTPS address, e.g. https://clinic.example.com (README, "
                "Configuration).",
                id="reminders.E005",
            )
        ]
    if parts.scheme != "https":
        return [
            Warning(
                f"REMINDERS_PUBLIC_BASE_URL {url!r} is plain HTTP: a patient's page and its link's token would "
                "travel unencrypted.",
                hint="Serve the service over HTTPS and set the https:// address.",
                id="reminders.W002",
            )
        ]
    return []


# Backends that keep messages on this machine: the embedded defaults and the test doubles (Django's, Anymail's,
# ours), and any subclass of one. By path, so a backend that cannot be imported is reminder_channels' to say.
_LOCAL_EMAIL = {
    "django.core.mail.backends.console.EmailBackend": "prints every e-mail on the worker's output",
    "django.core.mail.backends.filebased.EmailBackend": "writes every e-mail to a file on the worker",
    "django.core.mail.backends.locmem.EmailBackend": "keeps every e-mail in the worker's memory",
    "django.core.mail.backends.dummy.EmailBackend": "drops every e-mail",
    "anymail.backends.test.EmailBackend": "keeps every e-mail in the worker's memory",
}
_LOCAL_SMS = {
    "reminders.channels.ConsoleSmsBackend": "prints every text on the worker's output",
    "reminders.channels.FileSmsBackend": "writes every text to a file on the worker",
    "reminders.channels.LocmemSmsBackend": "keeps every text in the worker's memory",
}
# Sender domains no provider delivers from: a name of this machine or its network, or an address literal.
_NO_PUBLIC_DOMAIN = (".localhost", ".local", ".internal", ".localdomain", ".lan", ".home.arpa")


def _keeps_local(path: str, local: dict[str, str]) -> str | None:
    """What the backend at `path` does with messages, when it or a class it derives from is one of `local`."""
    try:
        backend = import_string(path)
    except ImportError:
        return None  # reminder_channels says so (reminders.E001, E002)
    if not isinstance(backend, type):
        return None  # a factory: what it makes is not known here
    for base, what in local.items():
        try:
            if issubclass(backend, import_string(base)):
                return what
        except ImportError:  # Anymail's test backend in a release that has none
            continue
    return None


def _no_public_domain(domain: str) -> bool:
    bare = domain.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return True
    except ValueError:
        pass
    return "." not in domain or domain.endswith(_NO_PUBLIC_DOMAIN)


@register(deploy=True)
def backends_reach_patients(app_configs=None, **kwargs) -> list[Warning]:
    """The e-mail and SMS backends left at the embedded defaults (or a test double) in a deployment: each message is
    marked sent and reaches no patient (reminders.W003 e-mail, reminders.W004 SMS); e-mail sent from the embedded
    `reminders@localhost` (reminders.W005), which providers refuse. A warning, not an error: a
    deployment that means to send no texts silences it (`DJANGO_SILENCED_SYSTEM_CHECKS=reminders.W004`)."""
    found = []
    if (what := _keeps_local(settings.EMAIL_BACKEND, _LOCAL_EMAIL)) is not None:
        found.append(
            Warning(
                f"EMAIL_BACKEND is {settings.EMAIL_BACKEND!r}, which {what}: each e-mail would be marked sent and "
                "reach no patient.",
                hint="Set EMAIL_BACKEND to SMTP or an Anymail backend with its ANYMAIL_* settings (README, "
                "Configuration).",
                id="reminders.W003",
            )
        )
    sender = email.utils.parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    domain = sender.rpartition("@")[2].lower()
    if _no_public_domain(domain):
        found.append(
            Warning(
                f"DEFAULT_FROM_EMAIL {settings.DEFAULT_FROM_EMAIL!r} is not an address at a domain of yours: "
                "providers refuse or bury e-mail from it.",
                hint="Set DEFAULT_FROM_EMAIL to an address at the clinic's domain, e.g. Clinic <clinic@example.com>.",
                id="reminders.W005",
            )
        )
    what = _keeps_local(settings.SMS_BACKEND, _LOCAL_SMS)
    if what is not None:
        found.append(
            Warning(
                f"SMS_BACKEND is {settings.SMS_BACKEND!r}, which {what}: each text would be marked sent and reach "
                "no patient.",
                hint="Set SMS_BACKEND to reminders.channels.TwilioSmsBackend with its TWILIO_* settings (README, "
                "Configuration), or silence reminders.W004 where no text is meant to go.",
                id="reminders.W004",
            )
        )
    return found
