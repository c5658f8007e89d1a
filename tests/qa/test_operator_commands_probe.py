"""QA probe of what an operator runs: the management commands and the settings check at start.

Promises under test (quoted):

* README, *Configuration*: "Numbers, periods and times are checked when they are read, at start
  (`config/env.py`, for the settings and `config/gunicorn.py`): a value the service cannot use (not a
  number; below its minimum, such as a batch of 0 or an interval of 0 s, ...; quiet hours that are not a
  time of day; a throttle rate that does not parse) stops it with an error naming the variable, rather
  than failing later, or silently."
* docs/production.md: "A number, period or time the settings cannot use stops every process at start";
  "`manage.py check --deploy` lists anything still missing."
* docs/api.md: "`create_api_client NAME --clinic CODE [--clinic CODE ...] [--clinical]` (or
  `--organisation CODE`, repeatable: every clinic of it, now and later) prints the key alone on its last
  line; it is stored only as a SHA-256 hash"; "Run `python manage.py purge_idempotency_keys` daily (cron)
  to delete Idempotency-Key records past their 24-hour window".
* docs/reminders.md: `add_webhook_endpoint` "prints the signing secret on its last line"; "URLs must be
  `https://` and may not resolve to private, loopback or link-local addresses (checked at registration
  and before every delivery ...)"; "`reminders_status [--clinic CODE] [--hours 24]` prints counts by
  status and channel, what is overdue ..., due soon, held, and failed ...; rows claimed and not yet sent
  (against `REMINDERS_MAX_IN_FLIGHT`), and due rows waiting for a claim"; "`run_dispatcher --once` does
  one pass".
* setup_demo --help: "Safe to re-run."; docs/rules.md: "`setup_demo` (run at install and on each
  upgrade; `--no-demo` in production) creates a default only when its key is missing ... so an
  administrator's edits survive"; README: demo password "`demo-pass-2026` (override with
  `DEMO_STAFF_PASSWORD`)".

Commands run through `call_command` and, where exit status and stderr matter, as `manage.py` in a
subprocess (DJANGO_LOCAL=1; a test that lets the subprocess read its rows uses a live database).
The clock is Monday 2 March 2026, 09:00 UTC (London on GMT, New York on EST).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from api.models import IdempotencyKey
from clinic.models import ApiClient, Clinic, Organisation, Patient, Practitioner, ProcedureType, WorkingHours, hash_key
from reminders.channels import LocmemSmsBackend
from reminders.defaults import care_texts_load
from reminders.dispatch import outbox_claim_due
from reminders.models import OutboxMessage, ReminderTemplate, WebhookEndpoint
from scheduler.booking import appointment_book
from scheduler.lifecycle import Actor
from scheduler.models import ContraindicationRule, IntervalRule
from tests.factories import (
    ClinicFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
)
from tests.qa.helpers import NOW, database_url

ROOT = Path(__file__).resolve().parents[2]
RECEPTION = Actor("reception@test")


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def manage(*args: str, database_url: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """`manage.py ...` as an operator runs it: a local run, only the given variables set."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_URL", "CELERY_", "REMINDERS_", "API_", "LOG_LEVEL"))
        # A proxy the machine sets for its package downloads is a deploy warning here (reminders.W001).
        and not k.lower().endswith("_proxy")
    }
    base |= {"DJANGO_LOCAL": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}
    base["DATABASE_URL"] = database_url or f"sqlite:///{ROOT / 'var' / 'qa_ops_unused.sqlite3'}"
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- settings checked at start ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"REMINDERS_BATCH_SIZE": "0"}, "REMINDERS_BATCH_SIZE"),
        ({"API_THROTTLE_RATE": "abc"}, "API_THROTTLE_RATE"),
        ({"REMINDERS_SMS_QUIET_START": "25:00"}, "REMINDERS_SMS_QUIET_START"),
        ({"REMINDERS_DISPATCH_INTERVAL_SECONDS": "0"}, "REMINDERS_DISPATCH_INTERVAL_SECONDS"),
        ({"REMINDERS_CLAIMS_PER_RUN": "0"}, "REMINDERS_CLAIMS_PER_RUN"),
        ({"REMINDERS_MAX_IN_FLIGHT": "-3"}, "REMINDERS_MAX_IN_FLIGHT"),
        ({"DATABASE_PGBOUNCER": "2"}, "DATABASE_PGBOUNCER"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/13", "CACHE_REDIS_TIMEOUT_SECONDS": "-1"}, "CACHE_REDIS_TIMEOUT"),
        ({"FRONTDESK_LOGIN_WINDOW_SECONDS": "15m"}, "FRONTDESK_LOGIN_WINDOW_SECONDS"),
    ],
)
def test_manage_py_stops_at_start_on_a_value_it_cannot_use_naming_the_variable(env, variable):
    result = manage("check", **env)

    assert result.returncode != 0
    assert "System check identified" not in result.stdout
    assert re.match(rf"django\.core\.exceptions\.ImproperlyConfigured: {variable}", last_line(result.stderr))


def test_the_worker_and_gunicorn_stop_too_naming_the_variable():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REMINDERS_", "REDIS_URL", "CELERY_"))}
    env |= {"DJANGO_LOCAL": "1", "REMINDERS_BATCH_SIZE": "0", "REDIS_URL": "redis://127.0.0.1:6379/13"}
    env |= {"CELERY_TASK_DEFAULT_QUEUE": "qa-ops-probe", "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'qa_ops.db'}"}
    venv = Path(sys.executable).parent
    worker = subprocess.run(
        [str(venv / "celery"), "-A", "config", "worker", "--pool=solo", "-l", "info"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    web = subprocess.run(
        [str(venv / "gunicorn"), "--config", "config/gunicorn.py", "config.wsgi", "--check-config"],
        cwd=ROOT,
        env=env | {"REMINDERS_BATCH_SIZE": "100", "WEB_CONCURRENCY": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert worker.returncode != 0 and "REMINDERS_BATCH_SIZE must be at least 1, not 0" in last_line(worker.stderr)
    assert web.returncode != 0 and "WEB_CONCURRENCY must be at least 1, not 0" in last_line(web.stderr)


def test_empty_allowed_hosts_is_caught_by_the_deploy_check():
    # ", " reads as no host at all (every request a 400); check --deploy is the documented safety net.
    production = {
        "DJANGO_LOCAL": "0",
        "DJANGO_SECRET_KEY": "qa-" + "k" * 60,
        "DJANGO_ALLOWED_HOSTS": " , ",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://clinic.example.com",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
        "REMINDERS_PUBLIC_BASE_URL": "https://clinic.example.com",
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production)

    assert result.returncode != 0
    assert "security.W020" in result.stderr and "ALLOWED_HOSTS" in result.stderr


def test_a_database_url_that_does_not_parse_names_the_variable():
    """Failed before (dj_database_url's "Scheme '://' is unknown" named no variable); config.env.env_database
    names DATABASE_URL, and not its value (it may carry a password)."""
    result = manage("check", database_url="nonsense")

    assert result.returncode != 0
    assert "DATABASE_URL" in last_line(result.stderr)


def test_a_log_level_that_does_not_exist_names_the_variable():
    """Failed before ('Unable to configure root logger'); config.env.env_log_level names LOG_LEVEL."""
    result = manage("check", LOG_LEVEL="LOUD")

    assert result.returncode != 0
    assert "LOG_LEVEL" in last_line(result.stderr)


def test_a_lease_shorter_than_a_send_is_refused_at_start():
    """Failed before (it started silently); config/settings.py refuses a lease not above the send timeout,
    naming both variables."""
    result = manage("check", REMINDERS_CLAIM_LEASE_SECONDS="5", REMINDERS_SEND_TIMEOUT_SECONDS="10")

    assert result.returncode != 0
    assert "REMINDERS_CLAIM_LEASE_SECONDS" in last_line(result.stderr)


def test_a_bad_argument_is_a_usage_error_not_a_traceback():
    # argparse refuses before the database is touched.
    for args in (["reminders_status", "--hours", "abc"], ["run_dispatcher", "--interval", "soon"]):
        result = manage(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "invalid" in last_line(result.stderr) and args[1] in last_line(result.stderr)
    bad_event = manage("add_webhook_endpoint", "P", "https://p.example/h", "--event", "appointment.exploded")
    assert bad_event.returncode == 2 and "invalid choice: 'appointment.exploded'" in bad_event.stderr


# --- create_api_client --------------------------------------------------------------------------------------------


@pytest.fixture
def clinics(catalogue):
    london = ClinicFactory(code="london", name="London", timezone="Europe/London")
    west = ClinicFactory(code="west", name="West", timezone="Europe/London", organisation=london.organisation)
    ny = ClinicFactory(code="newyork", name="New York", timezone="America/New_York")
    return london, west, ny


@pytest.mark.django_db
def test_create_api_client_prints_a_working_key_once_alone_on_the_last_line(clinics):
    london, west, ny = clinics
    out = run("create_api_client", "Trial platform", "--organisation", london.organisation.code, "--clinical")

    key = out.splitlines()[-1]
    client = ApiClient.objects.get(name="Trial platform")
    assert out.count(key) == 1 and key not in out.splitlines()[0]
    assert client.key_hash == hash_key(key) and key not in (client.key_hash, client.key_prefix)
    assert client.clinical and list(client.organisations.all()) == [london.organisation]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    with time_machine.travel(NOW, tick=True):
        answer = api.get("/api/v1/clinics/")
    assert answer.status_code == 200
    assert sorted(c["code"] for c in answer.json()["results"]) == ["london", "west"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        ([], "Grant at least one --clinic or --organisation."),
        (
            ["--clinic", "london", "--clinic", "nope", "--clinic", "also-nope"],
            "No clinic with code(s): also-nope, nope.",
        ),
        (["--clinic", "london", "--organisation", "nope"], "No organisation with code(s): nope."),
        (["--clinic", "London"], "No clinic with code(s): London."),
    ],
)
def test_create_api_client_refuses_unknown_codes_and_creates_nothing(clinics, args, message):
    with pytest.raises(CommandError) as refused:
        run("create_api_client", "Platform", *args)

    assert str(refused.value) == message
    assert not ApiClient.objects.exists()


@pytest.mark.django_db
def test_create_api_client_twice_is_refused_and_the_first_key_still_works(clinics):
    first = last_line(run("create_api_client", "Platform", "--clinic", "london"))
    with pytest.raises(CommandError, match="An API client named 'Platform' already exists"):
        run("create_api_client", "Platform", "--clinic", "west")

    client = ApiClient.objects.get()
    assert client.key_hash == hash_key(first)
    assert [c.code for c in client.clinics.all()] == ["london"]


@pytest.mark.django_db(transaction=True)
def test_create_api_client_as_run_by_hand_exit_status_and_output(clinics):
    url = database_url()
    refused = manage("create_api_client", "Platform", "--clinic", "nope", database_url=url)
    made = manage("create_api_client", "Platform", "--clinic", "london", database_url=url)

    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == "CommandError: No clinic with code(s): nope."
    assert made.returncode == 0 and made.stderr == ""
    key = made.stdout.splitlines()[-1]
    assert made.stdout.count(key) == 1 and ApiClient.objects.get().key_hash == hash_key(key)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", "   "])
def test_create_api_client_refuses_a_blank_name(clinics, name):
    """Failed before (a client with a blank name and a key); create_api_client.handle refuses it before saving."""
    with pytest.raises(CommandError, match="blank"):
        run("create_api_client", name, "--clinic", "london")
    assert not ApiClient.objects.exists()


@pytest.mark.django_db
def test_create_api_client_refuses_a_name_longer_than_the_column(clinics):
    """Failed before (stored on SQLite, a DataError traceback on PostgreSQL); create_api_client.handle checks the
    column's length before saving."""
    with pytest.raises(CommandError, match="at most 200 characters; this one has 250"):
        run("create_api_client", "x" * 250, "--clinic", "london")
    assert not ApiClient.objects.exists()


# --- purge_idempotency_keys ---------------------------------------------------------------------------------------


def idempotency_key(owner: str, key: str, created_at: datetime) -> IdempotencyKey:
    return IdempotencyKey.objects.create(
        owner=owner,
        key=key,
        fingerprint="0" * 64,
        method="POST",
        path="/api/v1/appointments/",
        response_status=201,
        response_body="{}",
        response_content_type="application/json",
        created_at=created_at,
    )


@pytest.mark.django_db
def test_purge_deletes_only_keys_past_their_24_hours_for_every_caller():
    ages = {"fresh": timedelta(hours=1), "edge": timedelta(hours=24), "old": timedelta(hours=24, seconds=1)}
    ages["ancient"] = timedelta(days=30)
    for owner in ("client:aaaa", "user:7"):
        for name, age in ages.items():
            idempotency_key(owner, name, NOW - age)

    with time_machine.travel(NOW, tick=False):
        first = run("purge_idempotency_keys")
        second = run("purge_idempotency_keys")

    assert first == "Deleted 4 expired idempotency key(s).\n"
    assert second == "Deleted 0 expired idempotency key(s).\n"
    kept = sorted(IdempotencyKey.objects.values_list("owner", "key"))
    assert kept == [(o, k) for o in ("client:aaaa", "user:7") for k in ("edge", "fresh")]


# --- setup_demo ---------------------------------------------------------------------------------------------------


def demo_counts() -> dict:
    return {
        model.__name__: model.objects.count()
        for model in (
            Organisation,
            Clinic,
            Practitioner,
            WorkingHours,
            Patient,
            IntervalRule,
            ContraindicationRule,
            ReminderTemplate,
            get_user_model(),
        )
    }


@pytest.mark.django_db
def test_setup_demo_twice_adds_nothing_the_second_time():
    with time_machine.travel(NOW, tick=False):
        first = run("setup_demo", "--staff-password", "demo-pass-2026")
        after_first = demo_counts()
        second = run("setup_demo", "--staff-password", "demo-pass-2026")

    assert "Demo clinics: demo (Europe/London), demo-west (Europe/London), demo-ny (America/New_York)" in first
    assert after_first["Clinic"] == 3 and after_first["Patient"] == 8 and after_first["WorkingHours"] == 36
    assert demo_counts() == after_first
    assert "Catalogue loaded; 0 default rule(s) created." in second
    assert "0 default reminder template(s) created." in second
    assert "0 default plan template(s) created" in second


@pytest.mark.django_db
def test_setup_demo_no_demo_loads_no_clinic_and_leaves_an_existing_demo_alone():
    with time_machine.travel(NOW, tick=False):
        bare = run("setup_demo", "--no-demo")
        assert not Clinic.objects.exists() and not get_user_model().objects.exists()
        run("setup_demo")
        before = demo_counts()
        again = run("setup_demo", "--no-demo")
        # A password with --no-demo is refused, not silently ignored (decided 7 December, dec12h), and changes nothing.
        with pytest.raises(CommandError, match="give one or the other"):
            run("setup_demo", "--no-demo", "--staff-password", "refused-here")

    assert "Demo clinics" not in bare + again
    assert "default rule(s) created" in bare and IntervalRule.objects.exists()
    assert demo_counts() == before


@pytest.mark.django_db
def test_setup_demo_keeps_an_operators_edit_of_the_shared_catalogue():
    """A QUESTION before (update_or_create put the shipped values back over a superuser's edit on every upgrade);
    scheduler.defaults.catalogue_load now creates missing rows only, as the rules and care texts do."""
    run("setup_demo", "--no-demo")
    ProcedureType.objects.filter(code="botox").update(duration_minutes=45, bookable=False)

    run("setup_demo", "--no-demo")

    botox = ProcedureType.objects.get(code="botox")
    assert (botox.duration_minutes, botox.bookable) == (45, False)


@pytest.mark.django_db
def test_setup_demo_staff_password_override_on_a_second_run():
    """Failed before (the first password stayed, silently); scheduler.defaults.demo_staff_password_set gives the
    demo users the new one and setup_demo says so."""
    with time_machine.travel(NOW, tick=False):
        run("setup_demo", "--staff-password", "demo-pass-2026")
        out = run("setup_demo", "--staff-password", "another-pass-2026")

    reception = get_user_model().objects.get(username="reception")
    assert reception.check_password("another-pass-2026")
    assert "Demo staff password changed to the one given for: " in out and "reception" in out


# --- add_webhook_endpoint -----------------------------------------------------------------------------------------


@pytest.fixture
def platform(clinics, settings):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = False
    client = ApiClient(name="Platform")
    client.set_new_key()
    client.save()
    client.clinics.set([clinics[0]])
    return client


@pytest.mark.django_db
def test_add_webhook_endpoint_prints_its_secret_once_last_and_refuses_bad_input(platform):
    out = run("add_webhook_endpoint", "Platform", "https://platform.example/hooks", "--event", "appointment.created")

    endpoint = WebhookEndpoint.objects.get()
    assert out.splitlines()[-1] == endpoint.secret and out.count(endpoint.secret) == 1
    assert endpoint.secret.startswith("whsec_") and endpoint.events == ["appointment.created"]
    for name, url, message in [
        ("Nobody", "https://platform.example/h", "There is no API client named 'Nobody'."),
        ("Platform", "http://platform.example/h", "Webhook URLs must use https://."),
        ("Platform", "ftp://platform.example/h", "Give an absolute https:// URL."),
        ("Platform", "https://10.1.2.3/h", "may not point at private, loopback or link-local addresses"),
        ("Platform", "https://[::1]/h", "may not point at private, loopback or link-local addresses"),
        # Resolved at registration, as the API does: localhost is a loopback address.
        ("Platform", "https://localhost/h", "may not point at private, loopback or link-local addresses"),
        ("Platform", "https://platform.example/" + "a" * 600, "at most 500 characters"),
    ]:
        with pytest.raises(CommandError, match=re.escape(message)):
            run("add_webhook_endpoint", name, url)
    with pytest.raises(CommandError, match="invalid choice"):
        run("add_webhook_endpoint", "Platform", "https://platform.example/h", "--event", "appointment.booked")
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db
def test_add_webhook_endpoint_refuses_a_name_that_resolves_to_a_private_address(platform, monkeypatch):
    """Failed before (registered); the command now registers through the API's
    reminders.webhooks.webhook_subscription_create, which resolves the host."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.internal.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(CommandError, match="private"):
        run("add_webhook_endpoint", "Platform", "https://hooks.internal.example/h")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_add_webhook_endpoint_twice_does_not_double_the_deliveries(platform):
    """Failed before (a second endpoint, every event POSTed twice); the command refuses, naming the existing
    endpoint (reminders.selectors.webhook_endpoint_find). The API still registers a second one."""
    run("add_webhook_endpoint", "Platform", "https://platform.example/hooks")
    first = WebhookEndpoint.objects.get()
    with pytest.raises(
        CommandError, match=f"Platform already has endpoint {first.pk} for https://platform.example/hooks"
    ):
        run("add_webhook_endpoint", "Platform", "https://platform.example/hooks")
    assert WebhookEndpoint.objects.count() == 1


# --- reminders_status and run_dispatcher against a real outbox --------------------------------------------------


@pytest.fixture
def outbox_world(clinics, settings):
    """London and New York bookings (e-mail and SMS), one awaiting clearance; nothing sent yet."""
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    LocmemSmsBackend.outbox = []
    care_texts_load()
    london, _, ny = clinics
    channels = {"reminder_channels": ["email", "sms"], "sms_consent": True}
    ada = PatientFactory(clinic=london, first_name="Ada", phone="+447700900123", **channels)
    eve = PatientFactory(clinic=london, first_name="Eve", phone="+447700900124", **channels)
    PatientConditionFactory(patient=eve, condition_id="eczema", status="history")
    bob = PatientFactory(clinic=ny, first_name="Bob", phone="+12125550100", **channels)
    PractitionerFactory(clinic=london)
    PractitionerFactory(clinic=ny)
    book = {"actor": RECEPTION, "now": NOW}
    appointment_book(patient=ada, procedure_code="botox", start_at=datetime(2026, 3, 4, 10, tzinfo=UTC), **book)
    held = appointment_book(
        patient=eve, procedure_code="microneedling", start_at=datetime(2026, 3, 5, 10, tzinfo=UTC), **book
    )
    assert held.appointment.status == "pending_clearance"
    appointment_book(patient=bob, procedure_code="botox", start_at=datetime(2026, 3, 4, 15, tzinfo=UTC), **book)
    yield
    LocmemSmsBackend.outbox = []


def db_counts(clinic_code: str | None = None) -> dict[str, dict[str, int]]:
    rows = OutboxMessage.objects.all()
    if clinic_code:
        rows = rows.filter(appointment__clinic__code=clinic_code)
    counts: dict[str, dict[str, int]] = {}
    for status, channel in rows.values_list("status", "channel"):
        counts.setdefault(status, {}).setdefault(channel, 0)
        counts[status][channel] += 1
    return counts


def printed_counts(out: str) -> dict[str, dict[str, int]]:
    section = out.split("Outbox by status and channel:\n", 1)[1].split("Held until clearance:", 1)[0]
    counts: dict[str, dict[str, int]] = {}
    for line in section.splitlines():
        if line.strip() == "(empty)":
            continue
        status, rest = line.split(None, 1)
        counts[status] = {c: int(n) for c, n in (part.split(": ") for part in rest.split(", "))}
    return counts


@pytest.mark.django_db
def test_reminders_status_figures_match_the_outbox_per_clinic(outbox_world):
    failed = OutboxMessage.objects.filter(appointment__clinic__code="newyork", status="pending").first()
    OutboxMessage.objects.filter(pk=failed.pk).update(status="failed", last_error="gave up after 6 attempts: 503")
    later = NOW + timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        everything = run("reminders_status")
        london = run("reminders_status", "--clinic", "london")
        ny = run("reminders_status", "--clinic", "newyork")

    assert printed_counts(everything) == db_counts()
    assert printed_counts(london) == db_counts("london") and printed_counts(ny) == db_counts("newyork")
    held = OutboxMessage.objects.filter(status="held")
    assert held.exists()
    assert f"Held until clearance: {held.count()}\n" in everything
    assert f"Held until clearance: {held.filter(appointment__clinic__code='london').count()}\n" in london
    waiting = OutboxMessage.objects.filter(status="pending", due_at__lte=later)
    assert f"Due, waiting for a claim: {waiting.count()}, the oldest due 10 min ago (the dispatcher" in everything
    # The failure is listed with its last error, in New York's local time (EST, UTC-5), only under New York.
    local = failed.due_at.astimezone(Clinic.objects.get(code="newyork").tz)
    assert f"  {local:%Y-%m-%d %H:%M} newyork" in ny and "gave up after 6 attempts: 503" in ny
    assert "gave up after 6 attempts: 503" not in london


@pytest.mark.django_db
def test_run_dispatcher_once_sends_what_is_due_and_a_second_pass_sends_nothing(outbox_world):
    due = OutboxMessage.objects.filter(status="pending", due_at__lte=NOW).count()
    with time_machine.travel(NOW, tick=False):
        first = run("run_dispatcher", "--once")
        second = run("run_dispatcher", "--once")
        status = run("reminders_status")

    sent = OutboxMessage.objects.filter(status__in=["sent", "merged", "skipped"]).count()
    assert due and sent == due
    assert first.startswith("Outbox: ") and sum(int(n) for n in re.findall(r"(\d+) \w+", first)) == due
    assert second == ""
    assert "Due, waiting for a claim: 0\n" in status and "Claimed, not yet sent: 0 " in status


@pytest.mark.django_db
def test_reminders_status_refuses_an_unknown_clinic(outbox_world):
    """Failed before (an empty outbox, exit 0); reminders_status.handle refuses the code, naming it."""
    with pytest.raises(CommandError, match="No clinic with code 'londn'"):
        run("reminders_status", "--clinic", "londn")


@pytest.mark.django_db
@pytest.mark.parametrize("args", [["--limit", "-1"], ["--hours", "100000000000"]])
def test_reminders_status_refuses_numbers_it_cannot_use(outbox_world, args):
    """Failed before (ValueError and OverflowError tracebacks); --limit and --hours take a bounded whole number."""
    with time_machine.travel(NOW, tick=False), pytest.raises(CommandError, match=args[0]):
        run("reminders_status", *args)


@pytest.mark.django_db
def test_reminders_status_counts_rows_whose_sender_died_as_waiting(outbox_world):
    """Failed before (counted nowhere); reminders.selectors._waiting uses the dispatcher's own due condition."""
    claims = outbox_claim_due(now=NOW, lease=timedelta(minutes=1))
    assert claims
    later = NOW + timedelta(minutes=20)  # the worker died: every lease ran out 19 minutes ago
    with time_machine.travel(later, tick=False):
        out = run("reminders_status")

    assert "Claimed, not yet sent: 0 " in out
    pending = OutboxMessage.objects.filter(status="pending", due_at__lte=later).count()
    waiting = f"Due, waiting for a claim: {len(claims) + pending}, the oldest due 20 min ago (the dispatcher is behind"
    assert waiting in out


def _count_passes(monkeypatch, stop_after: int) -> list[int]:
    passes: list[int] = []

    def dispatch_local(**kwargs):
        passes.append(1)
        if len(passes) >= stop_after:
            raise KeyboardInterrupt  # the command treats it as Ctrl-C: stops quietly
        return {}

    monkeypatch.setattr("reminders.management.commands.run_dispatcher.dispatch.dispatch_local", dispatch_local)
    monkeypatch.setattr("reminders.management.commands.run_dispatcher.close_old_connections", lambda: None)
    return passes


@pytest.mark.django_db
def test_run_dispatcher_interval_zero_falls_back_to_the_setting_and_says_so(monkeypatch, settings):
    settings.REMINDERS_DISPATCH_INTERVAL_SECONDS = 0.01
    _count_passes(monkeypatch, stop_after=2)

    out = run("run_dispatcher", "--interval", "0")

    assert out == "Reminder dispatcher: checking the outbox every 0.01s.\n"


@pytest.mark.django_db
@pytest.mark.parametrize("interval", ["-1", "nan"])
def test_run_dispatcher_refuses_an_interval_it_cannot_wait(monkeypatch, interval):
    """Failed before (-1: a busy loop; nan: a ValueError after one pass); --interval takes only a finite number
    of seconds, not below 0 (0: the setting)."""
    passes = _count_passes(monkeypatch, stop_after=20)

    with pytest.raises(CommandError, match="interval"):
        run("run_dispatcher", "--interval", interval)
    assert passes == []
