"""`manage.py check --deploy` refuses reminder channels that would fail every message at send time."""

import pytest
from django.core.mail.backends.console import EmailBackend as ConsoleEmailBackend
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from reminders.channels import ConsoleSmsBackend
from reminders.checks import public_base_url, reminder_channels

TWILIO = "reminders.channels.TwilioSmsBackend"


def codes(found) -> list[str]:
    return [error.id for error in found]


def test_the_embedded_and_working_backends_pass(settings):
    settings.SMS_BACKEND = "reminders.channels.ConsoleSmsBackend"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

    assert reminder_channels() == []


def test_an_sms_backend_that_cannot_be_imported_is_an_error_naming_it(settings):
    settings.SMS_BACKEND = "reminders.channels.TwillioSmsBackend"  # a typo

    found = reminder_channels()

    assert codes(found) == ["reminders.E001"]
    assert "'reminders.channels.TwillioSmsBackend' cannot be imported" in found[0].msg


def test_an_sms_backend_that_is_not_one_is_an_error(settings):
    settings.SMS_BACKEND = "django.core.mail.backends.console.EmailBackend"

    found = reminder_channels()

    assert codes(found) == ["reminders.E004"]
    assert "is not an SMS backend" in found[0].msg


def make_console_backend():
    from reminders.channels import ConsoleSmsBackend

    return ConsoleSmsBackend()


def test_a_callable_that_makes_a_backend_passes_as_sms_backend_accepts_it(settings):
    settings.SMS_BACKEND = "tests.reminders.test_checks.make_console_backend"

    assert reminder_channels() == []


def test_a_setting_that_names_no_callable_is_not_a_backend(settings):
    settings.SMS_BACKEND = "reminders.checks.__doc__"  # a string, not something that makes a backend

    found = reminder_channels()

    assert codes(found) == ["reminders.E004"]


def test_an_email_backend_that_cannot_be_imported_is_an_error(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmarkk.EmailBackend"

    found = reminder_channels()

    assert codes(found) == ["reminders.E002"]
    assert "EMAIL_BACKEND 'anymail.backends.postmarkk.EmailBackend' cannot be imported" in found[0].msg


@pytest.mark.parametrize(
    "sid, token, sender, service, missing",
    [
        ("", "", "+447700900123", "", "TWILIO_ACCOUNT_SID; TWILIO_AUTH_TOKEN"),
        ("AC123", "", "+447700900123", "", "TWILIO_AUTH_TOKEN"),
        ("AC123", "secret", "", "", "SMS_FROM or TWILIO_MESSAGING_SERVICE_SID"),
    ],
)
def test_twilio_without_its_credentials_or_a_sender_is_an_error(settings, sid, token, sender, service, missing):
    settings.SMS_BACKEND = TWILIO
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = sid, token
    settings.SMS_FROM, settings.TWILIO_MESSAGING_SERVICE_SID = sender, service

    found = reminder_channels()

    assert codes(found) == ["reminders.E003"]
    assert f"these are unset: {missing}." in found[0].msg


@pytest.mark.parametrize("sender, service", [("+447700900123", ""), ("", "MG123")])
def test_twilio_with_credentials_and_a_number_or_a_messaging_service_passes(settings, sender, service):
    settings.SMS_BACKEND = TWILIO
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC123", "secret"
    settings.SMS_FROM, settings.TWILIO_MESSAGING_SERVICE_SID = sender, service

    assert reminder_channels() == []


def test_check_deploy_stops_on_it_and_the_other_commands_do_not(settings):
    settings.SMS_BACKEND = TWILIO
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""

    with pytest.raises(SystemCheckError, match="reminders.E003"):
        call_command("check", deploy=True)
    call_command("check")  # what migrate, reminders_status and run_dispatcher run: e-mail keeps going


def test_a_proxy_in_the_environment_is_a_warning_that_sms_and_webhooks_do_not_use_it(monkeypatch):
    from reminders.checks import outbound_proxy

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert outbound_proxy() == []

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    [warning] = outbound_proxy()
    assert warning.id == "reminders.W001" and "HTTPS_PROXY is set" in warning.msg


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",  # the embedded default
        "https://localhost",
        "https://clinic.localhost",
        "https://[::1]:8443",
        "https://10.0.0.5",
        "https://192.168.1.20/clinic",
        "https://0.0.0.0",
        "https://clinic.internal",
        "clinic.example.com",  # no scheme: read as a path
        "ftp://clinic.example.com",
        "",
    ],
)
def test_a_public_address_patients_cannot_reach_is_an_error(settings, url):
    settings.REMINDERS_PUBLIC_BASE_URL = url

    found = public_base_url()

    assert codes(found) == ["reminders.E005"]
    assert "every link in their messages" in found[0].msg


def test_a_plain_http_public_address_is_a_warning(settings):
    settings.REMINDERS_PUBLIC_BASE_URL = "http://clinic.example.com"
    assert codes(public_base_url()) == ["reminders.W002"]


@pytest.mark.parametrize(
    "url", ["https://clinic.example.com", "https://CLINIC.example.com:8443/base", "https://8.8.8.8"]
)
def test_a_public_https_address_passes(settings, url):
    settings.REMINDERS_PUBLIC_BASE_URL = url
    assert public_base_url() == []


# --- Backends that reach no patient (reminders.W003, W004, W005) -----------------------------------------------------


def deliver_ids(settings) -> list[str]:
    from reminders.checks import backends_reach_patients

    return codes(backends_reach_patients())


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
    ],
)
def test_an_email_backend_that_keeps_mail_on_the_machine_is_a_deploy_warning(settings, backend):
    settings.EMAIL_BACKEND = backend
    settings.SMS_BACKEND = TWILIO
    settings.DEFAULT_FROM_EMAIL = "Clinic <clinic@example.com>"

    assert deliver_ids(settings) == ["reminders.W003"]


@pytest.mark.parametrize("backend", ["ConsoleSmsBackend", "FileSmsBackend", "LocmemSmsBackend"])
def test_an_sms_backend_that_keeps_texts_on_the_machine_is_a_deploy_warning(settings, backend):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.SMS_BACKEND = f"reminders.channels.{backend}"
    settings.DEFAULT_FROM_EMAIL = "clinic@example.com"

    assert deliver_ids(settings) == ["reminders.W004"]


class OwnConsoleSms(ConsoleSmsBackend):
    """A deployment's own printing backend."""


class OwnConsoleMail(ConsoleEmailBackend):
    """A deployment's own printing e-mail backend."""


def test_a_subclass_of_a_local_backend_is_one_too_and_a_callable_is_passed_over(settings):
    settings.DEFAULT_FROM_EMAIL = "clinic@example.com"
    settings.EMAIL_BACKEND = "tests.reminders.test_checks.OwnConsoleMail"
    settings.SMS_BACKEND = "tests.reminders.test_checks.OwnConsoleSms"
    assert deliver_ids(settings) == ["reminders.W003", "reminders.W004"]

    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"  # Anymail's test double keeps mail in memory
    settings.SMS_BACKEND = "tests.reminders.test_checks.make_console_backend"  # a factory: what it makes is unknown
    assert deliver_ids(settings) == ["reminders.W003"]


@pytest.mark.parametrize(
    "sender, warned",
    [
        ("Clinic reminders <reminders@localhost>", True),  # the embedded default
        ("clinic@host.local", True),
        ("clinic@mail.internal", True),
        ("clinic@localhost.localdomain", True),
        ("clinic@127.0.0.1", True),
        ("clinic@[10.0.0.5]", True),
        ("clinic@example.com", False),
        ("Clinic <clinic@example.com>", False),
    ],
)
def test_email_from_an_address_at_no_public_domain_is_a_deploy_warning(settings, sender, warned):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.SMS_BACKEND = TWILIO
    settings.DEFAULT_FROM_EMAIL = sender

    assert deliver_ids(settings) == (["reminders.W005"] if warned else [])


def test_the_deliver_warnings_are_deploy_only_and_a_deployment_may_silence_one(settings):
    from django.core.checks import registry

    from reminders.checks import backends_reach_patients

    assert backends_reach_patients in registry.registry.get_checks(include_deployment_checks=True)
    assert backends_reach_patients not in registry.registry.get_checks()  # run_dispatcher, migrate still run
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "clinic@example.com"
    settings.SMS_BACKEND = "reminders.channels.ConsoleSmsBackend"
    assert "reminders.W004" in {m.id for m in registry.run_checks(include_deployment_checks=True)}

    settings.SILENCED_SYSTEM_CHECKS = ["reminders.W004"]
    messages = registry.run_checks(include_deployment_checks=True)

    assert "reminders.W004" not in {m.id for m in messages if not m.is_silenced()}
