"""Review probe (12 December, h): the background work and the operator's commands read line by line.

Read: config/celery.py, reminders/tasks.py, scheduler/tasks.py (plans/ has no task: `shared_task` is used nowhere
else but bench/tasks.py, the bench's no-op), core/runs.py, core/quiet_ticks.py, the Celery and beat settings of
config/settings.py, every management command (api: create_api_client, purge_idempotency_keys; fixtures: setup_demo;
reminders: add_webhook_endpoint, reminders_status, run_dispatcher), and what they lean on (dispatch.dispatch_due_batches,
reports.parked_reports_record, recheck.recheck_run_step, services.template_rollout_step, selectors.outbox_summary),
beside the README (Production), docs/production.md (Processes, Worker and beat, Health), docs/reminders.md (Claim,
Send, Running it, Operations, delivery reports) and docs/api.md (the daily purge). There is no docs/operations*.md
and no `--dry-run` anywhere. Read for: a periodic task in the wrong zone or that double-sends when run twice at
once; a task not safe under at-least-once delivery; a model instance or naive datetime as a task argument; an
exception swallowed; a periodic duty the docs name with no beat entry; a command that tracebacks on bad input, acts
on everything when given one thing, or prints a patient's contact; docs and code naming different things. The
suite's Monday is 2 March 2026, 09:00 UTC (London on GMT, New York on EST).

Found (strict xfails, each mended or decided as recommended the same day; the tests now pass):
- DEFECT: `reminders_status --clinic ""` (a script's `--clinic "$CLINIC"` with the variable unset) lists every
  clinic's outbox, every organisation's, as if no clinic had been named; any other code it does not know is refused
  (reminders/management/commands/reminders_status.py `Command.handle`, `if options["clinic"]`, and
  selectors.outbox_rows, `if clinic_code`).
- DEFECT: a delivery report the database could not take is tried again "for about a day" (docs/reminders.md, the
  task's own comment) only at the default visibility timeout: the retries are a fixed 56 while each wait is capped at
  half of CELERY_VISIBILITY_TIMEOUT, so at 600 s (a documented setting) the report is given up after 4.5 hours
  (reminders/tasks.py `REPORT_RETRIES`, `record_delivery_report`).
- DEFECT (docs): docs/reminders.md, Send step 4, says of the send path "Workers acknowledge late and reject on
  worker loss", where the send tasks are exactly the ones that do not (reminders/tasks.py `SEND_TASK`,
  reject_on_worker_lost False; the same page says so a hundred lines on).
- QUESTION: `reminders_status` prints a failed row's provider words whole, the patient's e-mail address or number in
  them ("recipient refused: {'ann.lee@example.org': ...}"), where the log line of the same failure masks it; the
  command's output goes where logs go (cron mail, a monitoring job). Recommendation: mask contacts in its output
  (core.redact.contacts_masked on `last_error`); the admin keeps the words whole for staff.
- QUESTION: the daily `purge_idempotency_keys` is the one periodic duty outside the beat, and docs/production.md (the
  processes a deployment runs) never names it (only docs/api.md says "daily (cron)"); each stored key keeps its
  POST's response (a patient's name, number, e-mail, date of birth) for ever where it is not run. Recommendation: a
  daily beat entry running the purge (api/management/commands/purge_idempotency_keys.py's query as a task).
- QUESTION: only the per-second tick expires; the three once-a-minute entries (resume-rechecks,
  resume-template-rollouts, record-parked-reports) have no `expires`, so a day without a worker leaves 4,320 of them
  in Redis, all run at once when a worker starts (each resume re-enqueueing the same runs, each parked-report run
  spending up to 10 s on the same held rows). Recommendation: `"options": {"expires": 60}` on each
  (config/settings.py CELERY_BEAT_SCHEDULE): a late resume is the next one's work.
- QUESTION: `setup_demo --no-demo --staff-password X` ignores the password without a word, where the option's help
  promises "demo users an earlier run made are given it too": an install once run with the demo (its staff on the
  README's public password) cannot re-key them on the way to production this way. Recommendation: refuse the
  combination with a CommandError (fixtures/management/commands/setup_demo.py `Command.handle`).

Held (passing): every beat entry names a task the worker's autodiscovery registers, is sent with no argument, runs
on a plain interval (no crontab, so CELERY_TIMEZONE decides nothing; clinic-local moments such as the 10:00 recall
live in the outbox rows) and is named in the docs; at the default visibility timeout a report's waits stay under half
of it and add up to about a day; in run_dispatcher's pass a re-check run whose step keeps failing neither stops a
stalled care text's run from being taken up nor the due sends. Read and found right without a test here: every task
takes ids and ISO strings (the `now` of dispatch_due/send_batch is a test's, parsed with fromisoformat: a naive
string would be taken as naive, test-only), reads the clock at its edge, and is safe run twice (claims by SKIP
LOCKED and a claim token, a run's step under its row's SKIP LOCKED lock with a cursor, parked reports recorded
idempotently); the send tasks acknowledge late without rejecting on worker loss (their rows wait out the lease, in
doubt); a failure is logged, never swallowed (core.runs._steps_here, delivery_report_later, run_dispatcher's three
resumes each in its own try); the commands refuse unknown codes, bad numbers and bad URLs with a CommandError or a
usage error (tests/qa/test_operator_commands_probe.py).
"""

from __future__ import annotations

import inspect
import re
import smtplib
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import CommandError, call_command

from api.models import IdempotencyKey
from config.celery import app
from reminders import tasks
from reminders.dispatch import dispatch_local
from reminders.models import Channel, OutboxMessage, ReminderTemplate, TemplateRollout
from scheduler import recheck
from scheduler.models import RecheckRun
from tests.factories import PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, book, ldn, nyc

pytestmark = [pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3600


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def seconds(schedule) -> float | None:
    """A beat entry's interval in seconds (a number or a timedelta); None for anything else (a crontab)."""
    if isinstance(schedule, bool):
        return None
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    return None


@pytest.fixture
def registered():
    """The tasks a worker started with `celery -A config worker` knows (the app's autodiscovery)."""
    app.loader.import_default_modules()
    return app.tasks


@pytest.fixture
def mailed(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    settings.CELERY_BROKER_URL = ""  # nothing here may reach a broker: runs are done in this process


class RefusingSmtp(BaseEmailBackend):
    """An SMTP server that refuses every recipient, as smtplib reports it (the address quoted)."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPRecipientsRefused({m.to[0]: (550, b"5.1.1 mailbox unavailable") for m in email_messages})


# --- reminders_status ----------------------------------------------------------------------------------------------


def test_reminders_status_refuses_a_blank_clinic_rather_than_show_every_organisations_outbox(
    clinic, other_clinic, care_texts, mailed
):
    """London (organisation of its own) and New York (another) each have a confirmation due. `--clinic ""` is a code
    no clinic has: refused as `--clinic londn` is, not the whole outbox.
    (Was a strict-xfail DEFECT, mended: reminders_status and selectors.outbox_rows test whether a code was given.)"""
    PractitionerFactory(clinic=clinic)
    PractitionerFactory(clinic=other_clinic)
    with time_machine.travel(NOW, tick=False):
        book(PatientFactory(clinic=clinic, first_name="Ann"), ldn(2026, 3, 10), NOW)
        book(PatientFactory(clinic=other_clinic, first_name="Bob"), nyc(2026, 3, 10), NOW)
        assert clinic.organisation_id != other_clinic.organisation_id
        with pytest.raises(CommandError, match="No clinic with code ''"):
            run("reminders_status", "--clinic", "")  # printed both clinics' rows, exit 0


def test_reminders_status_masks_the_contact_a_providers_refusal_quotes(clinic, care_texts, mailed, settings, caplog):
    """The SMTP server refuses Ann's address for good; the failure's log line names no one (core.redact). The
    operator's status list shows the failure and why, and (recommended) no more of Ann than the log does.
    (Was a strict-xfail QUESTION, decided: reminders_status prints last_error through core.redact.contacts_masked.)"""
    settings.EMAIL_BACKEND = f"{__name__}.RefusingSmtp"
    PractitionerFactory(clinic=clinic)
    ann = PatientFactory(clinic=clinic, first_name="Ann", email="ann.lee@example.org")
    with time_machine.travel(NOW, tick=False):
        book(ann, ldn(2026, 3, 10), NOW)
        assert dispatch_local(now=NOW) == {"failed": 1}
        shown = run("reminders_status")

    failed = OutboxMessage.objects.get(status="failed")
    assert "ann.lee@example.org" in failed.last_error  # the row keeps the provider's words whole, for staff
    assert "ann.lee@example.org" not in caplog.text and "recipient refused" in caplog.text
    assert f"id={failed.pk}" in shown and "recipient refused" in shown
    assert "ann.lee@example.org" not in shown


# --- the beat's schedule -------------------------------------------------------------------------------------------


def test_every_beat_entry_is_a_registered_argument_free_interval_task_the_docs_name(settings, registered):
    """A beat entry's task must be one a worker knows (else each run is an 'unregistered task' error), is sent with
    no argument, and runs on an interval: nothing depends on CELERY_TIMEZONE (UTC), the clinic-local moments (quiet
    hours, the 10:00 recall) living in the outbox rows. An operator reading the log finds each entry in the docs."""
    described = doc("docs/reminders.md") + doc("README.md") + doc("docs/production.md") + doc("docs/rules.md")
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        task = registered[entry["task"]]
        required = [
            p
            for p in inspect.signature(task.run).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert required == [], (name, required)
        assert "args" not in entry and "kwargs" not in entry, name
        assert seconds(entry["schedule"]) is not None, (name, entry["schedule"])
        short = entry["task"].split(".", 1)[1]
        assert name in described or short in described, name
    assert {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()} == {
        "reminders.dispatch_due",
        "scheduler.resume_rechecks",
        "reminders.resume_template_rollouts",
        "reminders.record_parked_reports",
        "api.purge_idempotency_keys",
    }


def test_every_beat_entry_expires_within_its_interval(settings):
    """docs/reminders.md: while no worker runs, each tick waits in Redis and a worker that starts drops it unrun.
    Recommended of every entry: a run not taken within its interval is dropped, the next one doing its work.
    (Was a strict-xfail QUESTION, decided: each minute's entry expires after its minute, the daily one after its day.)"""
    unexpiring = {
        name: entry.get("options", {}).get("expires")
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if not (
            entry.get("options", {}).get("expires") is not None
            and float(entry["options"]["expires"]) <= max(seconds(entry["schedule"]) or 0, 1.0)
        )
    }
    assert settings.CELERY_BEAT_SCHEDULE["reminders-dispatch-due"]["options"]["expires"] == max(
        settings.REMINDERS_DISPATCH_INTERVAL_SECONDS, 1.0
    )
    assert unexpiring == {}


def test_the_periodic_work_a_deployment_runs_removes_idempotency_keys_past_their_window(
    api, clinic, settings, registered, mailed
):
    """docs/api.md: keys are replayed for 24 hours and should be purged daily. A platform creates a patient with an
    Idempotency-Key; its stored response names her. Two days on, the deployment of docs/production.md (web, worker,
    beat) has run each beat entry: the key, and the patient's details with it, is gone.
    (Was a strict-xfail QUESTION, decided: the beat's daily purge-idempotency-keys, api.tasks.)"""
    with time_machine.travel(NOW, tick=False):
        created = api.post(
            "/api/v1/patients/",
            {"first_name": "Nora", "last_name": "Quinn", "email": "nora.quinn@example.org"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="nora-1",
        )
    assert created.status_code == 201, created.content
    assert "nora.quinn@example.org" in IdempotencyKey.objects.get(key="nora-1").response_body
    assert not OutboxMessage.objects.exists()  # the tick below claims nothing, so hands nothing to a broker

    with time_machine.travel(NOW + timedelta(days=2), tick=False):
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            registered[entry["task"]].run()

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == []


# --- the one task that waits: a delivery report tried again ----------------------------------------------------------


def waits(visibility: int, settings) -> list[int]:
    """The waits record_delivery_report takes, retry after retry, before it gives a report up."""
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": visibility}
    return [tasks.report_wait(r) for r in range(tasks.report_retries())]


def test_at_the_default_visibility_timeout_a_report_is_tried_for_about_a_day_each_wait_under_half_of_it(settings):
    """docs/reminders.md: "30 s, then each wait twice the last up to 30 minutes or half the broker's visibility
    timeout, for about a day"."""
    taken = waits(3600, settings)
    assert taken[:7] == [30, 60, 120, 240, 480, 960, 1800]
    assert max(taken) == 1800 < 3600 / 2 + 1
    assert 22 * 3600 <= sum(taken) <= 27 * 3600


def test_a_report_is_tried_for_about_a_day_at_a_shorter_visibility_timeout(settings):
    """CELERY_VISIBILITY_TIMEOUT is a setting (docs/reminders.md's table: "the one task that waits ... waits at
    most half of it"); the report is still tried for about a day, its waits shorter and more of them.
    (Was a strict-xfail DEFECT, mended: reminders.tasks.report_retries.)"""
    taken = waits(600, settings)
    assert max(taken) <= 300
    assert sum(taken) >= 22 * 3600, f"given up after {sum(taken) / 3600:.1f} h"


# --- what the docs say of the send tasks ---------------------------------------------------------------------------


def test_the_docs_say_of_the_send_tasks_what_they_do_on_worker_loss(registered):
    """The send tasks acknowledge late and are not handed back when their worker is lost: their rows wait out the
    lease and are claimed again in doubt. What docs/reminders.md says in the steps of a send must agree.
    (Was a strict-xfail DEFECT, mended: docs/reminders.md Send step 4.)"""
    for name in ("reminders.send_batch", "reminders.send_message"):
        assert registered[name].acks_late is True and registered[name].reject_on_worker_lost is False
    assert registered["reminders.record_delivery_report"].reject_on_worker_lost is True  # the settings' default
    steps = doc("docs/reminders.md").split("2. **Send**", 1)[1].split("**The guarantee, honestly:**", 1)[0]
    said = re.sub(r"\s+", " ", steps)
    assert "Workers acknowledge late and reject on worker loss." not in said


# --- run_dispatcher's pass: each duty on its own ----------------------------------------------------------------------


def test_run_dispatcher_takes_up_a_stalled_care_text_and_sends_while_a_recheck_keeps_failing(
    clinic, care_texts, mailed, monkeypatch, caplog
):
    """With no broker, run_dispatcher's pass does the beat's minute duties. A re-check run whose step fails (the
    database refusing it) is logged and left for the next pass; the stalled care text's run beside it is still taken
    up, and the confirmation due now still goes."""
    PractitionerFactory(clinic=clinic)
    ann = PatientFactory(clinic=clinic, first_name="Ann", email="ann@example.org")
    earlier = NOW - timedelta(minutes=10)
    with time_machine.travel(earlier, tick=False):
        visit = book(ann, ldn(2026, 3, 20), earlier)
    template = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    OutboxMessage.objects.filter(template=template).delete()
    rollout = TemplateRollout.objects.create(template=template, cause="probe", created_at=earlier)
    stuck = RecheckRun.objects.create(cause="probe", procedures=["microneedling"], created_at=earlier)

    def refused(**kwargs):
        raise RuntimeError("the database refused the re-check")

    monkeypatch.setattr(recheck, "recheck_run_step", refused)
    due = OutboxMessage.objects.filter(appointment=visit, status="pending", due_at__lte=NOW).count()
    with time_machine.travel(NOW, tick=False):
        out = run("run_dispatcher", "--once")

    rollout.refresh_from_db()
    stuck.refresh_from_db()
    assert stuck.finished_at is None
    assert rollout.finished_at == NOW and rollout.visits_done == 1
    assert set(
        OutboxMessage.objects.filter(appointment=visit, template=template).values_list("channel", flat=True)
    ) == {Channel.EMAIL}
    assert due == 1 and out == "Outbox: 1 sent\n"  # the confirmation
    assert "resuming the stalled re-checks failed" in caplog.text


# --- setup_demo ----------------------------------------------------------------------------------------------------


def test_setup_demo_without_the_demo_does_not_silently_ignore_a_staff_password(catalogue):
    """An install once run with the demo (its staff on the README's public password) is readied for production:
    `setup_demo --no-demo --staff-password <new>` either re-keys the demo staff or says it will not; it does neither.
    (Was a strict-xfail QUESTION, decided: setup_demo refuses the combination.)"""
    run("setup_demo", "--staff-password", "demo-pass-2026")
    reception = get_user_model().objects.get(username="reception")
    assert reception.check_password("demo-pass-2026")

    with pytest.raises(CommandError, match="--no-demo"):
        run("setup_demo", "--no-demo", "--staff-password", "a-new-long-secret-9")

    reception.refresh_from_db()
    assert reception.check_password("demo-pass-2026")
