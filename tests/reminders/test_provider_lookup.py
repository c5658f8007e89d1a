"""Asking a provider whether it accepted a message (reminders.channels.accepted).

Asked only for a row in doubt: its sender stopped after claiming it, perhaps after the provider took the
message and before the database recorded it (reminders.dispatch._settle_doubt). Each backend answers with
its provider id, None (never accepted), or CANNOT_TELL (then the row is sent again: at least once).
"""

import json

import pytest
from django.core import mail

from reminders import channels
from reminders.channels import CANNOT_TELL, FileSmsBackend, LocmemSmsBackend


def _email(outbox_id: str) -> str:
    return channels.send_email(
        outbox_id=outbox_id, to="p@example.com", subject="s", text="t", html="<p>t</p>", ics=None, unsubscribe_url=""
    )


def test_the_in_memory_mail_backend_answers_by_the_outbox_id_header(settings):
    assert settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend"
    provider_id = _email("row-1")

    assert channels.accepted(channel="email", outbox_id="row-1") == provider_id
    assert channels.accepted(channel="email", outbox_id="row-2") is None
    mail.outbox.clear()
    assert channels.accepted(channel="email", outbox_id="row-1") is None


def test_the_file_mail_backend_answers_from_its_folder(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    assert channels.accepted(channel="email", outbox_id="row-1") is None  # no folder yet: nothing sent

    provider_id = _email("row-10")

    assert channels.accepted(channel="email", outbox_id="row-10") == provider_id
    assert channels.accepted(channel="email", outbox_id="row-1") is None  # the header's whole value, not a prefix


@pytest.mark.parametrize(
    "backend", ["django.core.mail.backends.console.EmailBackend", "django.core.mail.backends.smtp.EmailBackend"]
)
def test_mail_backends_that_cannot_be_asked_say_so(settings, backend):
    settings.EMAIL_BACKEND = backend
    assert channels.accepted(channel="email", outbox_id="row-1") is CANNOT_TELL


def test_webhook_receivers_cannot_be_asked():
    assert channels.accepted(channel="webhook", outbox_id="row-1") is CANNOT_TELL


def test_the_file_sms_backend_answers_and_ignores_a_line_cut_short(settings, tmp_path):
    path = tmp_path / "sms.jsonl"
    settings.SMS_BACKEND, settings.SMS_FILE_PATH = "reminders.channels.FileSmsBackend", str(path)
    assert channels.accepted(channel="sms", outbox_id="row-1") is None

    provider_id = FileSmsBackend().send(to="+447700900123", body="hello", outbox_id="row-1")
    with path.open("a") as handle:  # a writer killed mid-line: that text never reached the provider
        handle.write(json.dumps({"outbox_id": "row-2", "to": "+447700900123", "body": "hi"})[:20])

    assert channels.accepted(channel="sms", outbox_id="row-1") == provider_id
    assert channels.accepted(channel="sms", outbox_id="row-2") is None


def test_the_in_memory_sms_backend_answers(settings):
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    LocmemSmsBackend.outbox = []
    provider_id = LocmemSmsBackend().send(to="+447700900123", body="hello", outbox_id="row-1")

    assert channels.accepted(channel="sms", outbox_id="row-1") == provider_id
    assert channels.accepted(channel="sms", outbox_id="row-2") is None


@pytest.mark.parametrize("backend", ["reminders.channels.ConsoleSmsBackend", "reminders.channels.TwilioSmsBackend"])
def test_sms_backends_that_cannot_be_asked_say_so(settings, backend):
    settings.SMS_BACKEND = backend
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.SMS_FROM = "AC1", "token", "+447700900999"
    assert channels.accepted(channel="sms", outbox_id="row-1") is CANNOT_TELL
