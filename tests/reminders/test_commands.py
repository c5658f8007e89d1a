"""Operator commands: the embedded dispatcher, the outbox report, webhook registration, setup."""

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.management import CommandError, call_command

from clinic.models import ApiClient
from reminders.channels import webhook_url_problem
from reminders.dispatch import outbox_claim_due
from reminders.models import OutboxMessage, ReminderTemplate, WebhookEndpoint
from tests.reminders.conftest import book, london

WEDNESDAY_10 = london(2026, 3, 4, 10)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_run_dispatcher_once_sends_what_is_due_by_the_clock(patient, practitioner, now):
    book(patient, "microneedling", WEDNESDAY_10, now)
    with time_machine.travel(now, tick=False):
        assert run("run_dispatcher", "--once") == "Outbox: 2 sent\n"
    with time_machine.travel(london(2026, 3, 3, 10), tick=False):
        # The day-before reminder and the pre-care go as one message per channel.
        assert run("run_dispatcher", "--once") == "Outbox: 2 merged, 2 sent\n"
    assert len(mail.outbox) == 2


def test_run_dispatcher_stops_when_the_process_that_started_it_is_gone(monkeypatch, db):
    parents = iter([100, 100, 1])  # bin/run's server exits: the dispatcher is re-parented to init
    monkeypatch.setattr("os.getppid", lambda: next(parents))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    # The loop drops stale connections between passes; here that would be the test's own transaction.
    monkeypatch.setattr("reminders.management.commands.run_dispatcher.close_old_connections", lambda: None)
    out = run("run_dispatcher", "--exit-with-parent", "--interval", "0.01")
    assert out == "Reminder dispatcher: checking the outbox every 0.01s.\n"


def test_reminders_status_shows_counts_due_and_failed(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    OutboxMessage.objects.filter(appointment=appointment, kind="pre_care", channel="sms").update(
        status="failed", last_error="gave up after 6 attempts; last error: provider answered 503"
    )
    with time_machine.travel(now + timedelta(minutes=1), tick=False):
        out = run("reminders_status", "--clinic", "london")

    assert "  pending    email: 3, sms: 2\n" in out
    assert "  failed     sms: 1\n" in out
    assert "Overdue (pending or claimed, past due):\n  2026-03-02 09:00 london     confirmation" in out
    assert "Due in the next 24 h:\n  (none)" in out
    assert "Claimed, not yet sent: 0 (a claim takes at most REMINDERS_MAX_IN_FLIGHT 1000 less these)\n" in out
    assert "Due, waiting for a claim: 2, the oldest due 1 min ago\n" in out
    assert "pre_care                 sms      failed" in out
    assert "      gave up after 6 attempts; last error: provider answered 503" in out


def test_reminders_status_shows_what_the_workers_hold_and_how_late_the_rest_is(patient, practitioner, now):
    book(patient, "microneedling", WEDNESDAY_10, now)
    outbox_claim_due(now=now, limit=1, lease=timedelta(hours=1))  # handed to a worker, not sent yet
    with time_machine.travel(now + timedelta(minutes=7), tick=False):
        out = run("reminders_status")

    assert "Claimed, not yet sent: 1 " in out
    assert "Due, waiting for a claim: 1, the oldest due 7 min ago (the dispatcher is behind, or not running)\n" in out
    with time_machine.travel(now + timedelta(minutes=7), tick=False):
        outbox_claim_due(now=now + timedelta(minutes=7))
        assert "Due, waiting for a claim: 0\n" in run("reminders_status")


def test_add_webhook_endpoint_prints_the_secret_last(settings, clinic):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    client = ApiClient(name="Platform")
    client.set_new_key()
    client.save()

    out = run("add_webhook_endpoint", "Platform", "https://platform.example/hooks", "--event", "appointment.created")

    endpoint = WebhookEndpoint.objects.get()
    assert out.splitlines()[-1] == endpoint.secret and endpoint.secret.startswith("whsec_")
    assert endpoint.events == ["appointment.created"]
    with pytest.raises(CommandError, match="Webhook URLs must use https://."):
        run("add_webhook_endpoint", "Platform", "http://platform.example/hooks")
    with pytest.raises(CommandError, match="There is no API client named 'Nobody'."):
        run("add_webhook_endpoint", "Nobody", "https://platform.example/hooks")
    assert webhook_url_problem(endpoint.url) == ""


def test_setup_demo_loads_the_care_texts_once(db):
    first = run("setup_demo", "--no-demo")
    second = run("setup_demo", "--no-demo")
    assert "14 default reminder template(s) created." in first
    assert "0 default reminder template(s) created." in second
    assert ReminderTemplate.objects.filter(origin="sourced", procedure_id="microneedling").count() == 4


def test_reminders_status_counts_a_row_whose_lease_ran_out_as_waiting_not_claimed(patient, practitioner, now):
    book(patient, "microneedling", WEDNESDAY_10, now)
    [claim] = outbox_claim_due(now=now, limit=1, lease=timedelta(minutes=1))  # its worker then dies
    with time_machine.travel(now + timedelta(minutes=3), tick=False):
        out = run("reminders_status", "--clinic", "london")
        retaken = outbox_claim_due(now=now + timedelta(minutes=3))

    # Both due rows wait: the pending one and the one whose sender died; the next claim takes exactly these.
    assert "Claimed, not yet sent: 0 " in out
    assert "Due, waiting for a claim: 2, the oldest due 3 min ago\n" in out
    assert len(retaken) == 2 and claim.message_id in {c.message_id for c in retaken}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hours", "0"], "argument --hours: must be from 1 to 8784, not 0"),
        (["--hours", "8785"], "argument --hours: must be from 1 to 8784, not 8785"),
        (["--hours", "1.5"], "argument --hours: invalid whole number: '1.5'"),
        (["--limit", "0"], "argument --limit: must be from 1 to 1000, not 0"),
        (["--limit", "1001"], "argument --limit: must be from 1 to 1000, not 1001"),
    ],
)
def test_reminders_status_refuses_numbers_out_of_bounds_naming_the_option(db, args, message):
    with pytest.raises(CommandError) as refused:
        run("reminders_status", *args)

    assert message in str(refused.value)


def test_reminders_status_takes_its_bounds_and_refuses_an_unknown_clinic(clinic, now):
    with time_machine.travel(now, tick=False):
        out = run("reminders_status", "--hours", "8784", "--limit", "1")
    assert "Due in the next 8784 h:\n" in out
    with pytest.raises(CommandError) as refused:
        run("reminders_status", "--clinic", "LONDON")
    assert str(refused.value) == "No clinic with code 'LONDON'."


@pytest.mark.parametrize("interval", ["-0.5", "inf", "nan"])
def test_run_dispatcher_refuses_an_interval_it_cannot_wait_before_any_pass(monkeypatch, db, interval):
    passes = []

    def dispatch_local(**kwargs):
        passes.append(1)
        raise KeyboardInterrupt  # were the interval taken, stop after one pass (the command's Ctrl-C)

    monkeypatch.setattr("reminders.dispatch.dispatch_local", dispatch_local)

    with pytest.raises(CommandError) as refused:
        run("run_dispatcher", "--interval", interval)

    assert "argument --interval: must be a number of seconds above 0 (0: the setting)" in str(refused.value)
    assert passes == []


def test_add_webhook_endpoint_refuses_the_same_url_twice_for_one_client_not_for_another(settings, clinic):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    for name in ("Platform", "Other"):
        client = ApiClient(name=name)
        client.set_new_key()
        client.save()
    run("add_webhook_endpoint", "Platform", "https://platform.example/hooks")
    first = WebhookEndpoint.objects.get()

    with pytest.raises(CommandError) as refused:
        run("add_webhook_endpoint", "Platform", "https://platform.example/hooks", "--event", "appointment.created")
    run("add_webhook_endpoint", "Platform", "https://platform.example/hooks/other")
    run("add_webhook_endpoint", "Other", "https://platform.example/hooks")

    assert str(refused.value) == (
        f"Platform already has endpoint {first.pk} for https://platform.example/hooks (a second one would get "
        "every event twice); change or remove it in the admin."
    )
    assert WebhookEndpoint.objects.count() == 3
