"""Plain helpers the QA probes share: the suite's clock and zones, local wall-clock times, reading pages,
messages and FHIR answers, and booking through the services or the API. Fixtures live in tests/qa/conftest.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.schedule import Schedule as FhirSchedule
from fhir.resources.R4B.slot import Slot as FhirSlot

from clinic.models import Appointment, StaffMembership
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.links import manage_token
from reminders.models import OutboxMessage
from scheduler.booking import Actor, appointment_book
from scheduler.models import IntervalRule
from tests.conftest import CLOCK

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
    """A searchset Bundle, validated with fhir.resources (the Bundle and every resource in it)."""
    body = fhir_json(client.get(path, **headers))
    Bundle.model_validate(body)
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    resources = [entry["resource"] for entry in body.get("entry", [])]
    for resource in resources:
        FHIR_MODELS[resource["resourceType"]].model_validate(resource)
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
        for m in re.findall(r'<ul class="errorlist[^"]*">(.*?)</ul>', response.content.decode(), re.S)
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
