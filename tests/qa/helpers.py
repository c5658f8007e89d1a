"""Plain helpers the QA probes share: the suite's clock and zones, local wall-clock times, reading pages,
messages and FHIR answers, and booking through the services or the API. Fixtures live in tests/qa/conftest.py,
except the cross-path race probes' `world` and `quiet_world` (a world of their own, which other probes' `world`
fixtures must not meet): the probes that use them import them (`# noqa: F401 - fixtures`).

Helpers first written for one probe and reused by others follow, each section naming the probe it came from.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.schedule import Schedule as FhirSchedule
from fhir.resources.R4B.slot import Slot as FhirSlot

from clinic.models import Appointment, AppointmentStatus, AuditAction, StaffMembership, StaffRole
from core.errors import InvalidInput, InvalidTransition
from reminders import channels, dispatch
from reminders.channels import LocmemSmsBackend
from reminders.consent import patient_preferences_update
from reminders.dispatch import dispatch_local
from reminders.links import manage_token
from reminders.models import HOLDING_STATUSES, Anchor, MessageKind, OutboxMessage, OutboxStatus, WebhookEndpoint
from scheduler import versioned
from scheduler.booking import (
    Actor,
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_recheck,
    appointment_reschedule,
    cleared_rules,
    is_cleared,
)
from scheduler.defaults import _grant_admin_permissions
from scheduler.lifecycle import EVENT_FOR_ACTION
from scheduler.models import IntervalRule
from tests import shipped
from tests.api.conftest import http, new_api_client
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.races import held_in_another_connection, in_a_thread, until_a_connection_waits_for_a_lock
from tests.reminders.conftest import book as reminders_book
from tests.reminders.conftest import london
from tests.reminders.support import sender_dies

NOW = CLOCK  # the suite's one clock: Monday 2 March 2026, 09:00 UTC (09:00 in London, on GMT)
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
RECEPTION = Actor("reception@qa")
CLINICIAN = Actor("clinician@qa", clinical=True)
API = "/api/v1"
PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"
FHIR_MODELS = {"Slot": FhirSlot, "Schedule": FhirSchedule, "Appointment": FhirAppointment}


# --- Local wall-clock times ----------------------------------------------------------------------------------


def at(tz, y, m, d, hh=10, mm=0) -> datetime:
    """A wall-clock time in the zone `tz` (10:00 unless told)."""
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def ldn(y, m, d, hh=10, mm=0) -> datetime:
    """A wall-clock time in London (10:00 unless told)."""
    return at(LONDON, y, m, d, hh, mm)


def nyc(y, m, d, hh=10, mm=0) -> datetime:
    """A wall-clock time in New York (10:00 unless told)."""
    return at(NEW_YORK, y, m, d, hh, mm)


# --- The database and pages ----------------------------------------------------------------------------------


def fresh(obj):
    """`obj` with its fields read again from the database."""
    obj.refresh_from_db()
    return obj


def fresh_appointment(appointment) -> Appointment:
    """The appointment read again, with its clinic, patient, procedure and practitioner."""
    return Appointment.objects.select_related("clinic", "patient", "procedure", "practitioner").get(pk=appointment.pk)


def squash(response) -> str:
    """The response's body with every run of white space folded to one space."""
    return " ".join(response.content.decode().split())


def words(response) -> str:
    """The page's visible words: tags, scripts and styles dropped, white space folded."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()


def staff_client(clinic, role: str, username: str, *, csrf: bool = False) -> Client:
    """A signed-in front-desk client for a new user holding `role` at `clinic`."""
    user = get_user_model().objects.create_user(username=username, password="pw-for-qa-only-123")
    StaffMembership.objects.create(user=user, clinic=clinic, role=role)
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def org_rule(patient, earlier, later, value, unit, severity="block", scope="any_area") -> IntervalRule:
    """An interval rule of the patient's organisation between two procedures (source "qa probe")."""
    return IntervalRule.objects.create(
        organisation=patient.organisation,
        earlier_procedure_id=earlier,
        later_procedure_id=later,
        gap_value=value,
        gap_unit=unit,
        severity=severity,
        scope=scope,
        source="qa probe",
    )


# --- Bookings and the messages they send ---------------------------------------------------------------------


def book(patient, when, now, code="microneedling", **kwargs) -> Appointment:
    """An appointment booked through the booking service by the reception desk."""
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now, **kwargs
    ).appointment


def portal_page(appointment, name: str = "manage") -> str:
    """The patient's own page `name` for the appointment, by its signed link."""
    return reverse(f"portal:{name}", args=[manage_token(appointment)])


def rows(appointment, **filters) -> list[OutboxMessage]:
    """The appointment's planned e-mails and texts (not webhooks), soonest first."""
    return list(
        OutboxMessage.objects.filter(appointment=appointment, **filters).exclude(channel="webhook").order_by("due_at")
    )


def texts() -> list[str]:
    """The bodies of the texts sent so far (the in-memory SMS backend)."""
    return [sms["body"] for sms in LocmemSmsBackend.outbox]


def send_all_until(end: datetime, *, start: datetime, step: timedelta = timedelta(minutes=30)) -> None:
    """Run the dispatcher every `step` from `start` to `end`, as beat would (each send judged at its own time)."""
    moment = start
    while moment <= end:
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        moment += step


# --- The REST API and FHIR -----------------------------------------------------------------------------------


def post(client, path, body, key=None):
    """A JSON POST to the API at `path` (under /api/v1), with an Idempotency-Key when given."""
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"{API}{path}", body, format="json", **headers)


def problem(response, status: int, code: str | None = None) -> dict:
    """An RFC 9457 problem document with `status` (and the documented `code`); its body."""
    assert response.status_code == status, (response.status_code, response.content[:800])
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    if code is not None:
        assert body.get("code") == code, body
    return body


def ok(response, status: int = 200) -> dict:
    """An answer with `status`; its body."""
    assert response.status_code == status, (response.status_code, response.content[:800])
    return response.json()


def get(client, path, status=200):
    """A GET of the API at `path` (under /api/v1), answered with `status`; the body."""
    return ok(client.get(f"{API}{path}"), status)


def api_book(client, patient, start, procedure="botox", expect=201, **extra) -> dict:
    """An appointment booked over the API, answered with `expect`; the answer's body."""
    response = client.post(
        f"{API}/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )
    assert response.status_code == expect, response.content
    return response.json()


def api_world(api, clinical_api, patient, settings, *, appointment_id: str | None = None) -> dict:
    """One of each thing an API path names, for `patient`, as sweeps of every path need them: a Botox booked for
    3 March 2026 at 10:00 UTC (unless `appointment_id` names one), a finished isotretinoin course, a plasma-pen plan
    from 9 March and a webhook endpoint of the clinical caller's (a private host allowed); and an id no delivery has."""
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    if appointment_id is None:
        appointment_id = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    course = post(
        api,
        f"/patients/{patient.pk}/medications/",
        {"drug": "isotretinoin", "started_on": "2025-01-01", "ended_on": "2025-02-01"},
    )
    # Webhooks belong to the API client that registered them: the one a sweep calls them with.
    webhook = register_webhook(clinical_api, "https://hooks.platform.example/x")
    shipped.plan_templates()
    plan = post(api, f"/patients/{patient.pk}/plans/", {"template": "plasma-pen-course", "start_from": "2026-03-09"})
    return {
        "patient_id": str(patient.pk),
        "appointment_id": appointment_id,
        "course_id": ok(course, 201)["id"],
        "webhook_id": webhook["id"],
        "delivery_id": str(uuid.uuid4()),
        "plan_id": ok(plan, 201)["id"],
    }


def database_url() -> str:
    """The test database as a DATABASE_URL a subprocess can open (its rows must be committed)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def register_webhook(client, url: str, expect: int = 201, **extra) -> dict:
    """A webhook endpoint subscribed over the API, answered with `expect`; the answer's body."""
    response = client.post(f"{API}/webhooks/", {"url": url, **extra}, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def fhir_json(response, status: int = 200) -> dict:
    """The body of a FHIR JSON answer with `status`."""
    assert response.status_code == status, (response.status_code, response.content[:400])
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    return json.loads(response.content)


def fhir_search(client, path: str, **headers) -> tuple[dict, list[dict]]:
    """A searchset Bundle, validated with fhir.resources (the Bundle and every resource in it), and the resources it
    found (its `match` entries; an `outcome` entry is what the server says of the search, an OperationOutcome)."""
    body = fhir_json(client.get(path, **headers))
    Bundle.model_validate(body)
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    resources = []
    for entry in body.get("entry", []):
        if entry["search"]["mode"] == "outcome":
            OperationOutcome.model_validate(entry["resource"])
            continue
        FHIR_MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
        resources.append(entry["resource"])
    return body, resources


def fhir_ids(client, path: str) -> list[str]:
    """The ids of the resources a FHIR search finds, in the Bundle's order."""
    return [r["id"] for r in fhir_search(client, path)[1]]


def fhir_outcome(response, status: int) -> dict:
    """An OperationOutcome answer with `status` (FHIR JSON, never HTML, never a 500); its one issue."""
    body = fhir_json(response, status)
    OperationOutcome.model_validate(body)
    [issue] = body["issue"]
    assert issue["severity"] == "error" and issue["diagnostics"], issue
    return issue


# --- The admin's patient page, posted back as drawn -------------------------------------------------------------


def admin_post(admin_client, patient, *, edit=None, delete=(), add=None):
    """Post the admin's patient page back as drawn, with `edit` {row pk: {field: value}} applied to the rows it names,
    the rows of `delete` (pks) ticked for deletion and `add` {inline prefix: {field: value}} as one new row."""
    url = reverse("admin:clinic_patient_change", args=[patient.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    data = {}
    form = page.context["adminform"].form
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if name in ("reminder_channels", "muted_topics"):
            data[name] = json.dumps(value or [])
        elif value is not None:
            data[name] = str(getattr(value, "pk", value))
        if field.show_hidden_initial:
            data[f"initial-{name}"] = data.get(name, "")
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = str(value)
        for sub in formset.forms:
            for name, field in sub.fields.items():
                value = sub.initial.get(name, field.initial)
                if value is None:
                    continue
                if isinstance(value, datetime):  # the split widget: a date and a time, in the admin's zone (UTC)
                    texts = {f"{name}_{i}": part for i, part in enumerate(utc_parts(value))}
                else:
                    texts = {
                        name: value.isoformat() if hasattr(value, "isoformat") else str(getattr(value, "pk", value))
                    }
                for key, text in texts.items():
                    data[sub.add_prefix(key)] = text
                    if field.show_hidden_initial:
                        data[sub.add_initial_prefix(key)] = text
            pk = sub.instance.pk
            for field_name, value in (edit or {}).get(pk, {}).items():
                data[sub.add_prefix(field_name)] = value
            if pk in delete:
                data[sub.add_prefix("DELETE")] = "on"
        if add and formset.prefix in add:
            index = int(data[f"{formset.prefix}-TOTAL_FORMS"])
            data[f"{formset.prefix}-TOTAL_FORMS"] = str(index + 1)
            for field_name, value in add[formset.prefix].items():
                data[f"{formset.prefix}-{index}-{field_name}"] = value
    return admin_client.post(url, data)


def admin_errors(response) -> str:
    """The admin page's error messages (a form sent back)."""
    return " | ".join(
        re.sub(r"<[^>]+>", " ", m)
        for m in re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S)
    )


def utc_parts(moment) -> tuple[str, str]:
    """A time as the admin's split date-time widget reads it (the admin works in UTC, TIME_ZONE)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S")


def split(moment) -> dict:
    """The admin's performed_at fields for `moment`."""
    day, clock = utc_parts(moment)
    return {"performed_at_0": day, "performed_at_1": clock}


def practitioner_admin_post(admin_client, practitioner, *, clinic=None, active=True):
    """The practitioner's admin form, their procedures and working hours kept as they are."""
    hours = list(practitioner.working_hours.all())
    data = {
        "clinic": str((clinic or practitioner.clinic).pk),
        "name": practitioner.name,
        "procedures": [p.pk for p in practitioner.procedures.all()],
        "working_hours-TOTAL_FORMS": str(len(hours)),
        "working_hours-INITIAL_FORMS": str(len(hours)),
        "time_off-TOTAL_FORMS": "0",
        "time_off-INITIAL_FORMS": "0",
    }
    if active:
        data["is_active"] = "on"
    for n, period in enumerate(hours):
        data |= {
            f"working_hours-{n}-id": str(period.pk),
            f"working_hours-{n}-practitioner": str(practitioner.pk),
            f"working_hours-{n}-weekday": str(period.weekday),
            f"working_hours-{n}-start_time": f"{period.start_time:%H:%M}",
            f"working_hours-{n}-end_time": f"{period.end_time:%H:%M}",
        }
    return admin_client.post(reverse("admin:clinic_practitioner_change", args=[practitioner.pk]), data, follow=True)


def hours_post(admin_client, practitioner, periods, *, active=True):
    """The practitioner's admin page sent with `periods`: (stored row or None, start, end, delete) on Tuesdays."""
    data = {
        "clinic": str(practitioner.clinic_id),
        "name": practitioner.name,
        "procedures": [p.pk for p in practitioner.procedures.all()],
        "working_hours-TOTAL_FORMS": str(len(periods)),
        "working_hours-INITIAL_FORMS": str(sum(1 for row, *_ in periods if row is not None)),
        "time_off-TOTAL_FORMS": "0",
        "time_off-INITIAL_FORMS": "0",
    }
    if active:
        data["is_active"] = "on"
    for n, (row, start, end, delete) in enumerate(periods):
        data |= {
            f"working_hours-{n}-id": str(row.pk) if row else "",
            f"working_hours-{n}-practitioner": str(practitioner.pk),
            f"working_hours-{n}-weekday": "1",
            f"working_hours-{n}-start_time": start,
            f"working_hours-{n}-end_time": end,
        }
        if delete:
            data[f"working_hours-{n}-DELETE"] = "on"
    return admin_client.post(reverse("admin:clinic_practitioner_change", args=[practitioner.pk]), data, follow=True)


def at_moment(moment: datetime, fn, **kwargs):
    """`fn(**kwargs, now=moment)` with the clock at `moment`."""
    with time_machine.travel(moment, tick=False):
        return fn(**kwargs, now=moment)


def moved(visit, start: datetime, when: datetime) -> Appointment:
    """The desk moves `visit` to `start` at `when`."""
    return at_moment(
        when, appointment_reschedule, appointment=fresh_appointment(visit), start_at=start, actor=RECEPTION
    )


def move_with_notices_stopped(patient, operator) -> tuple[Appointment, datetime]:
    """Tuesday 10 March 10:00 booked and confirmed (e-mail and text name 10:00); an hour after the suite's Monday the
    desk moves it to 12:00 and `operator` stops both move notices in the outbox. The visit, and that moment."""
    from reminders import services

    visit = book(patient, ldn(2026, 3, 10), NOW)
    at_moment(NOW, dispatch_local)
    later = NOW + timedelta(hours=1)
    moved(visit, ldn(2026, 3, 10, 12), later)
    notices = rows(visit, kind=MessageKind.RESCHEDULED, status=OutboxStatus.PENDING)
    assert {n.channel for n in notices} == {"email", "sms"}
    assert at_moment(later, services.outbox_cancel, message_ids=[n.pk for n in notices], actor=operator) == 2
    return visit, later


# --- Cross-path races (tests/qa/test_cross_path_races_probe.py): their own actor, booking and API call, the world,
# and the invariants checked after each round ---------------------------------------------------------------------

RACE_RECEPTION = Actor("reception@qa-race")


def local(m, d, hh=10, mm=0):
    return datetime(2026, m, d, hh, mm, tzinfo=LONDON)


def race_book(patient, code, when, *, now=NOW, **kwargs):
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=RACE_RECEPTION, now=now, **kwargs
    ).appointment


@pytest.fixture
def world(transactional_db, catalogue, settings):
    """A London clinic with the shipped rules, care texts and plan templates; Dr A and Dr B do everything, Dr C
    only Botox; a platform (clinical right) with a webhook endpoint; messages go to the in-memory backends."""
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    settings.CELERY_BROKER_URL = ""  # a rule change's re-check runs in the process that saved it
    LocmemSmsBackend.outbox = []
    shipped.care_texts()
    shipped.plan_templates()
    clinic = ClinicFactory(code="qa-xr", name="Race Clinic", timezone="Europe/London")
    dr_a = PractitionerFactory(clinic=clinic, name="Dr A")
    dr_b = PractitionerFactory(clinic=clinic, name="Dr B")
    dr_c = PractitionerFactory(clinic=clinic, name="Dr C", procedures=["botox"])
    platform, key = new_api_client(clinic, name="qa-race-platform", clinical=True)
    WebhookEndpoint.objects.create(client=platform, url="https://platform.example/hooks")
    with time_machine.travel(NOW, tick=True):
        yield SimpleNamespace(clinic=clinic, dr_a=dr_a, dr_b=dr_b, dr_c=dr_c, key=key)


@pytest.fixture
def quiet_world(world):
    """The same clinic without the webhook endpoint: for the dispatcher, which would call it."""
    WebhookEndpoint.objects.all().delete()
    OutboxMessage.objects.filter(channel="webhook").delete()
    return world


def race_post(key, path, body):
    """One API call as a platform would make it, on the calling thread's own connection."""
    return http(key).post(API + path, body, format="json")


def ran(outcomes):
    """Every call finished and none raised (a view that raises is a 500)."""
    for outcome in outcomes:
        assert outcome is not None, "a call did not finish"
        assert not isinstance(outcome, Exception) or isinstance(
            outcome, UnableToBook | InvalidInput | InvalidTransition
        ), repr(outcome)
    return outcomes


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _replays(appointment: Appointment) -> None:
    """The audit trail, replayed from the booking, ends in the appointment's status and time; each change starts
    where the one before it ended."""
    events = list(appointment.audit_events.order_by("id"))
    assert events and events[0].action == AuditAction.BOOKED, events
    status, start = events[0].details["status"], _at(events[0].details["start_at"])
    for event in events[1:]:
        details = event.details
        if event.action == AuditAction.RESCHEDULED:
            assert (_at(details["from"]["start_at"]), details["from"]["status"]) == (start, status), (
                f"{appointment.pk}: a move from {details['from']} after the trail says {start} {status}"
            )
            start, status = _at(details["to"]["start_at"]), details["to"]["status"]
        elif event.action in (AuditAction.NEEDS_REVIEW, AuditAction.RELEASED, AuditAction.CLEARANCE_REQUESTED):
            assert details["from"] == status, (appointment.pk, event.action, details, status)
            status = details["to"]
        elif event.action == AuditAction.CLEARED:
            assert status == AppointmentStatus.PENDING_CLEARANCE
            status = AppointmentStatus.CONFIRMED
        elif event.action in (AuditAction.CANCELLED, AuditAction.COMPLETED, AuditAction.NO_SHOW):
            assert status in (
                AppointmentStatus.CONFIRMED,
                AppointmentStatus.PENDING_CLEARANCE,
                AppointmentStatus.NEEDS_REVIEW,
            ), (appointment.pk, event.action, status)
            status = {
                AuditAction.CANCELLED: AppointmentStatus.CANCELLED,
                AuditAction.COMPLETED: AppointmentStatus.COMPLETED,
                AuditAction.NO_SHOW: AppointmentStatus.NO_SHOW,
            }[event.action]
    assert (status, start) == (appointment.status, appointment.start_at), (
        f"{appointment.pk}: the audit trail ends in {status} at {start}, the appointment is "
        f"{appointment.status} at {appointment.start_at}"
    )
    webhooks = list(
        OutboxMessage.objects.filter(appointment=appointment, channel="webhook").values_list("event", "payload")
    )
    if WebhookEndpoint.objects.filter(client__clinics=appointment.clinic_id).exists():
        # Brief 6: 'each move is audited, shown to staff and sent as a webhook'; one per change, in order.
        by_sequence = sorted(webhooks, key=lambda row: row[1]["sequence"])
        assert [row[1]["sequence"] for row in by_sequence] == list(range(1, len(events) + 1)), webhooks
        assert [row[0] for row in by_sequence] == [EVENT_FOR_ACTION[e.action] for e in events]


def _outbox_is_consistent(appointment: Appointment) -> None:
    rows = list(
        OutboxMessage.objects.filter(appointment=appointment).exclude(channel="webhook").select_related("template")
    )
    unsent = [r for r in rows if r.status in (OutboxStatus.PENDING, OutboxStatus.HELD)]
    keys = [(r.template_id, r.channel) for r in unsent]
    assert len(keys) == len(set(keys)), f"{appointment.pk}: two unsent copies of one message"
    status = appointment.status
    if status == AppointmentStatus.CANCELLED:
        assert {r.kind for r in unsent} <= {MessageKind.CANCELLED}, [(r.kind, r.status) for r in unsent]
    elif status == AppointmentStatus.COMPLETED:
        assert {r.kind for r in unsent} <= {MessageKind.POST_CARE, MessageKind.RECALL}, [r.kind for r in unsent]
    elif status in HOLDING_STATUSES:
        assert not [r for r in unsent if r.status == OutboxStatus.PENDING], (
            f"{appointment.pk} is {status} but {[r.kind for r in unsent if r.status == 'pending']} would go"
        )
    if appointment.is_active:
        stale = [r for r in unsent if r.template.anchor == Anchor.START and r.anchor_at != appointment.start_at]
        assert not stale, f"{appointment.pk}: unsent reminders for {[r.anchor_at for r in stale]}"
    sent = [
        (r.template_id, r.channel, r.anchor_at)
        for r in rows
        if r.status == OutboxStatus.SENT and r.template and r.template.anchor == Anchor.START
    ]
    assert len(sent) == len(set(sent)), f"{appointment.pk}: a reminder went twice for one time"


def assert_invariants() -> None:
    """The whole database, as an outside checker would read it after a round."""
    now = datetime.now(UTC)
    appointments = list(
        Appointment.objects.select_related("patient", "clinic", "procedure", "area", "practitioner").order_by(
            "start_at"
        )
    )
    for appointment in appointments:
        assert appointment.status in AppointmentStatus.values
        if appointment.is_active:
            assert appointment.patient.merged_into_id is None, f"{appointment.pk} is active on a merged record"
        if appointment.is_active and appointment.start_at > now:
            check = appointment_recheck(appointment=appointment)
            blocking = check.evaluation.blocking
            if appointment.status == AppointmentStatus.NEEDS_REVIEW:
                assert blocking and appointment.review_reasons, f"{appointment.pk} needs review for nothing"
            else:
                assert not blocking, (
                    f"{appointment.pk} ({appointment.procedure_id} {appointment.start_at}) is {appointment.status} "
                    f"and breaks {[v.code for v in blocking]}"
                )
            if appointment.status == AppointmentStatus.CONFIRMED:
                cleared = cleared_rules(appointment)  # the rules' ids and what they are about
                waiting = {v.rule_id for v in check.evaluation.needs_clearance if not is_cleared(v, cleared)}
                assert not waiting, f"{appointment.pk} is confirmed but needs clearance for {waiting}"
        _replays(appointment)
        _outbox_is_consistent(appointment)
    active = [a for a in appointments if a.is_active]
    for one, other in combinations(active, 2):
        if one.start_at < other.end_at and other.start_at < one.end_at:
            assert one.practitioner_id != other.practitioner_id, f"{one.practitioner} double-booked"
            assert one.patient_id != other.patient_id, f"patient {one.patient_id} double-booked"


def _told_in_order(appointment: Appointment) -> list[list[OutboxMessage]]:
    """What the patient received about `appointment`, message by message (each with the rows that went in it), in
    the order the e-mails were handed over."""
    by_id = {str(r.pk): r for r in OutboxMessage.objects.filter(appointment=appointment).exclude(channel="webhook")}
    received = []
    for message in mail.outbox:
        carrier = by_id.get(message.extra_headers.get("X-Outbox-Id"))
        if carrier is None:
            continue
        companions = [by_id[pk] for pk in (carrier.payload or {}).get("sent_with", []) if pk in by_id]
        received.append([carrier, *companions])
    return received


def _change_of(appointment, change):
    """(the audited action, the change as a call taking `now`), and the time a move goes to."""
    moved_to = local(3, 11)
    if change == "cancel":
        return (
            AuditAction.CANCELLED,
            partial(appointment_cancel, appointment=appointment, actor=RACE_RECEPTION),
            moved_to,
        )
    move = partial(appointment_reschedule, appointment=appointment, start_at=moved_to, actor=RACE_RECEPTION)
    return AuditAction.RESCHEDULED, move, moved_to


@contextmanager
def _change_held_after_the_claim(world, monkeypatch, change):
    """A visit on 10 March whose confirmation a dispatcher's claim holds (not committed); staff `change` it
    (cancel or reschedule, in a thread) and the change waits for that row; the claim commits; the change plans
    its messages and is held before its commit until `commit` is set (on leaving the block at the latest).
    Threads appended to `threads` are joined on leaving."""
    from reminders import services

    mail.outbox = []
    appointment = race_book(PatientFactory(clinic=world.clinic), "botox", local(3, 10), practitioner_id=world.dr_a.pk)
    action, act, moved_to = _change_of(appointment, change)
    planned, commit = threading.Event(), threading.Event()
    react = services.REACTIONS[action]

    def react_then_hold(work, previous):  # the change's messages are planned; it commits when told to
        react(work, previous)
        planned.set()
        assert commit.wait(20)

    monkeypatch.setitem(services.REACTIONS, action, react_then_hold)
    held = SimpleNamespace(appointment=appointment, moved_to=moved_to, claims=[], changed=[], threads=[], commit=commit)
    try:
        with held_in_another_connection(lambda: held.claims.extend(dispatch.outbox_claim_due(now=NOW))):
            kinds = [OutboxMessage.objects.get(pk=c.message_id).kind for c in held.claims]
            assert kinds == [MessageKind.CONFIRMATION], kinds
            held.threads.append(in_a_thread(partial(act, now=NOW), held.changed))
            until_a_connection_waits_for_a_lock()  # the change waits for the claim's row
        assert planned.wait(10), "the change did not go on once the claim committed"
        yield held
    finally:
        commit.set()
        for thread in held.threads:
            thread.join(20)


# --- The first word a patient hears (tests/qa/test_review_first_word.py), in the reminders suite's world ---------

TUESDAY = london(2026, 3, 10, 10)
WEDNESDAY = london(2026, 3, 11, 10)
MONDAY_DUE = london(2026, 3, 9, 10)  # Tuesday's reminder and pre-care note (a day, 24 h, before)
PHONE = "+447700900123"


def deliver(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch.dispatch_local(now=timezone.now())


def send(claims, now):
    return dispatch.outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=now)


def rows_of_kinds(appointment, *kinds):
    return OutboxMessage.objects.filter(appointment=appointment, kind__in=kinds).exclude(channel="webhook")


def first_word_patient(clinic, now, *, email=True, sms=False, muted=(), code="microneedling"):
    """Booked for Tuesday while no channel was on (so no confirmation); e-mail and/or texts turned on on their
    page the day after: the visit's reminder and pre-care note, due Monday 10:00, are the first they hear of it."""
    patient = PatientFactory(
        clinic=clinic, first_name="Ada", email="ada@example.com", phone=PHONE, reminder_channels=[], sms_consent=False
    )
    appointment = reminders_book(patient, code, TUESDAY, now)
    assert not rows_of_kinds(appointment, *MessageKind.values).exists()
    patient_preferences_update(
        patient=patient,
        now=now + timedelta(days=1),
        email=email or None,
        sms=sms or None,
        sms_consent=sms,
        muted_topics=list(muted) if muted else None,
    )
    return appointment


def _heard(channel):
    return [m.body for m in mail.outbox] if channel == "email" else texts()


def _first_word_in_doubt(clinic, now, monkeypatch, settings, *, channel="email", provider_took_it=True):
    """The first word, Tuesday's reminder (care muted: no pre-care note), went to the provider on Monday 10:00 (or
    not) and its sender died before recording it; reclaimed after the lease, in doubt, the provider cannot be asked
    just then (its API down): the row waits, `pending` and in doubt. Returns the appointment and that moment."""
    settings.REMINDERS_MERGE_MINUTES = 0
    appointment = first_word_patient(clinic, now, email=channel == "email", sms=channel == "sms", muted=("care",))
    assert list(rows_of_kinds(appointment, *MessageKind.values).values_list("kind", flat=True)) == [
        MessageKind.REMINDER
    ]
    claims = dispatch.outbox_claim_due(now=MONDAY_DUE)
    sender_dies(
        monkeypatch,
        lambda: send(claims, MONDAY_DUE),
        after_the_provider_took_it=provider_took_it,
        channel=channel,
    )
    assert len(_heard(channel)) == (1 if provider_took_it else 0)
    return appointment, asked_while_the_lookup_is_down(monkeypatch, settings, rows_in_doubt=1)


def asked_while_the_lookup_is_down(monkeypatch, settings, *, rows_in_doubt: int):
    """Once the lease of Monday's claim ran out, its rows are claimed again, in doubt, and the provider cannot be
    asked (its API down): they wait, `pending` and in doubt. Returns that moment."""

    def lookup_down(**kwargs):
        raise channels.TransientSendError("the provider's API answered 503")

    monkeypatch.setattr(channels, "accepted", lookup_down)
    after_lease = MONDAY_DUE + timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 1)
    assert deliver(after_lease) == {dispatch.SendOutcome.RETRY: rows_in_doubt}
    monkeypatch.undo()
    return after_lease


# --- The admin's change forms as rendered (tests/qa/test_admin_sweep_probe.py) ----------------------------------

PASSWORD = "qa-admin-sweep-pw-4417"


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def client_for(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def superuser_client() -> Client:
    return client_for(get_user_model().objects.create_superuser("qa-root", "root@qa.example", PASSWORD))


class _FormFields(HTMLParser):
    """The named fields of the admin's change form (`<form id="<model>_form">`): name, kind, value, options."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[dict] = []
        self._select: dict | None = None
        self._textarea: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside or not a.get("name") and tag != "option":
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            classes = a.get("class") or ""
            if "vDateField" in classes:
                kind = "date"
            elif "vTimeField" in classes:
                kind = "time"
            self.fields.append(
                {"name": a["name"], "kind": kind, "value": a.get("value") or "", "checked": "checked" in a}
            )
        elif tag == "select":
            self._select = {"name": a["name"], "kind": "select", "options": [], "selected": [], "value": ""}
            self._select["multiple"] = "multiple" in a
            self.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            value = a.get("value") or ""
            self._select["options"].append(value)
            if "selected" in a:
                self._select["selected"].append(value)
        elif tag == "textarea":
            self._textarea = {"name": a["name"], "kind": "textarea", "value": ""}
            self.fields.append(self._textarea)

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea["value"] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form" and self.inside:
            self.inside = False


def form_fields(page: str, model) -> list[dict]:
    parser = _FormFields(f"{model._meta.model_name}_form")
    parser.feed(page)
    fields = [f for f in parser.fields if f["name"] != "csrfmiddlewaretoken"]
    # One new row in each inline: the empty form's `__prefix__` becomes the next index.
    totals = {f["name"][: -len("-TOTAL_FORMS")]: f for f in fields if f["name"].endswith("-TOTAL_FORMS")}
    out = []
    for field in fields:
        if "__prefix__" in field["name"]:
            prefix = field["name"].split("-__prefix__-")[0]
            if prefix not in totals:
                continue
            field = {**field, "name": field["name"].replace("__prefix__", totals[prefix]["value"] or "0")}
        out.append(field)
    for prefix, total in totals.items():
        if any(f["name"].startswith(f"{prefix}-{total['value'] or '0'}-") for f in out):
            total["value"] = str(int(total["value"] or 0) + 1)
    return out


def as_rendered(client, page_url, model) -> dict:
    """The form as the admin renders it, posted back unchanged (a new inline row left empty)."""
    page = client.get(page_url)
    assert page.status_code == 200, page_url
    data: dict = {}
    for field in form_fields(page.content.decode(), model):
        if field["kind"] == "checkbox":
            if field["checked"]:
                data[field["name"]] = field["value"] or "on"
        elif field["kind"] == "select":
            data[field["name"]] = field["selected"] if field.get("multiple") else (field["selected"] or [""])[0]
        elif field["kind"] != "radio":
            data[field["name"]] = field["value"]
    data["_save"] = "Save"
    return data


# --- A page's form as a browser would submit it (tests/qa/test_stale_writes_probe.py) ---------------------------


class _Form(HTMLParser):
    """The fields of the first <form> whose action ends with `action`, as a browser would submit them untouched:
    text, hidden and date inputs with their values, ticked boxes, each select's selected option(s), textareas."""

    def __init__(self, action: str, page: str):
        super().__init__(convert_charrefs=True)
        self.action, self.page, self.inside, self.done = action, page, False, False
        self.data: dict[str, list[str]] = {}
        self._select: tuple[str, list[str], bool] | None = None
        self._textarea: str | None = None

    def _add(self, name, value):
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        target = (a.get("action") or self.page).split("#")[0]  # no action: the page's own address
        if tag == "form" and not self.done and target.endswith(self.action):
            self.inside = True
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(name, a.get("value") or "on")
            else:
                self._add(name, a.get("value") or "")
        elif tag == "select" and name:
            self._select = (name, [], False)
        elif tag == "option" and self._select is not None:
            if "selected" in a:
                self._select[1].append(a.get("value") or "")
        elif tag == "textarea" and name:
            self._textarea = name
            self._add(name, "")

    def handle_data(self, data):
        if self._textarea is not None:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "select" and self._select is not None:
            name, selected, _ = self._select
            self.data[name] = selected or [""]
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form" and self.inside:
            self.inside, self.done = False, True


def form_on(response, action: str) -> dict:
    """What the form posting to `action` on the page would submit as it stands (one value, or a list)."""
    assert response.status_code == 200, response.status_code
    parser = _Form(action, response.wsgi_request.path)
    parser.feed(response.content.decode())
    assert parser.done, f"no form posting to {action}"
    data = {k: (v[0] if len(v) == 1 else v) for k, v in parser.data.items() if k != "csrfmiddlewaretoken"}
    return data


# --- Cached copies another process holds (tests/qa/test_review_dec5n_caches.py) ---------------------------------


def held_version(name: str) -> int:
    """The version this process holds its copy `name` under (there must be one: a probe of a stale copy needs it)."""
    with versioned._lock:
        held = versioned._copies.get(name)
    assert held is not None, f"no copy of {name} is held: the probe would prove nothing"
    return held[0]


@contextmanager
def edited_while_another_process_holds_copies(*names: str):
    """The block edits; afterwards this process holds exactly the copies it held before (as another process that
    loaded them before the edit does), and the configuration version must have moved."""
    before = {name: held_version(name) for name in names}
    with versioned._lock:
        kept = dict(versioned._copies)
    yield
    with versioned._lock:
        versioned._copies.clear()
        versioned._copies.update(kept)
    now_version = versioned.current_version()
    assert all(now_version != version for version in before.values()), "the edit did not move the version"


def fhir_strings(body) -> list[str]:
    """Every string in a FHIR resource (or bundle), keys left out, at any depth."""
    strings, stack = [], [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            strings.append(item)
    return strings


# --- Administrators and the rule forms they post (tests/qa/test_review_dec6f_rulebooks.py, dec10a, dec12e, dec12i) ---


def clinic_admin_client(username: str, password: str, *, clinic=None, organisation=None):
    """A clinic administrator of `clinic` or of the whole `organisation`, as setup_demo makes one (the clinic, scheduler
    and reminders permissions), signed in to the admin; the user and the client."""
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=True)
    StaffMembership.objects.create(user=user, clinic=clinic, organisation=organisation, role=StaffRole.CLINIC_ADMIN)
    _grant_admin_permissions(user)
    return user, client_for(user)


def ticked(data: dict) -> dict:
    """A form's fields as a browser posts them: True as "on", False (a box left unticked) left out."""
    return {name: "on" if value is True else value for name, value in data.items() if value is not False}


def interval_rule_form(tag: str, rule=None, **over) -> dict:
    """The admin's interval rule form as a person fills it: from `rule` (a stored one) or blank (its source
    "<tag> protocol", its reason "<tag>: our protocol"), with `over` applied (`is_active=False` leaves the box
    unticked)."""
    data = {
        "organisation": "",
        "replaces": "",
        "earlier_procedure": "",
        "earlier_medication": "",
        "later_procedure": "",
        "gap_value": "",
        "gap_unit": "weeks",
        "severity": "block",
        "scope": "any_area",
        "basis": "sourced",
        "source": f"{tag} protocol",
        "note": "",
        "is_active": True,
        "change_reason": f"{tag}: our protocol",
    }
    if rule is not None:
        data.update(
            organisation=str(rule.organisation_id or ""),
            replaces=str(rule.replaces_id or ""),
            earlier_procedure=rule.earlier_procedure_id or "",
            earlier_medication=rule.earlier_medication_id or "",
            later_procedure=rule.later_procedure_id,
            gap_value=str(rule.gap_value),
            gap_unit=rule.gap_unit,
            severity=rule.severity,
            scope=rule.scope,
            basis=rule.basis,
            source=rule.source,
            note=rule.note,
            is_active=rule.is_active,
        )
    data.update(over)
    return ticked(data)
