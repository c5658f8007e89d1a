"""Review probe (dec5n): the per-process copies kept under the configuration version (scheduler/versioned.py: rule
books, the booking catalogue, reminder templates, webhook subscriptions, the SMS term list) and what else a process
or a planned row keeps of an edit. For each edit path (the admin posted as a superuser would, the services, the
REST API, raw SQL as a data migration writes it, a delete, an edit of a related row) the next request or send,
made as another process would make it (holding the copies it loaded before the edit), must show the edit: a
booking checked against the new rule, a text with the new words, no delivery to a paused endpoint.

A planned row keeps nothing of its template or endpoint: both are read when it goes (reminders.verdicts.still_wanted).
Four findings, mended: a queued text whose template's SMS was blanked went out empty, and an e-mail whose
template's e-mail was blanked went with no subject (DEFECTs: such a row is now cancelled, saying why); a care
text whose template was moved to another procedure went with that procedure's words, and a webhook delivery of
an event its endpoint had since unsubscribed from was retried (QUESTIONs, decided: both are cancelled, saying
why). The PostgreSQL finding about a booking waiting on the patient's lock is told at its test, below.

"Another process" is simulated in two ways: in one thread, by putting back after the edit the copies this process
held before it (the edit's own process may reload them while saving; another has not), and, where commits matter,
with a second thread on its own connection. PostgreSQL-only: a booking waiting on the patient's lock while an edit
commits (the lock's statement reads the version before its wait).
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection

from clinic.models import ApiClient, Appointment, Medication, ProcedureRecord, ProcedureType, TreatmentArea
from clinic.services import lock_live_patient
from core.errors import InvalidInput
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import OutboxMessage, ReminderTemplate
from reminders.texts import clinical_terms_in
from scheduler import booking, defaults, rulebooks, selectors, versioned
from scheduler.booking import UnableToBook, appointment_check
from scheduler.models import ConfigVersion, IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    API,
    NOW,
    as_rendered,
    book,
    edited_while_another_process_holds_copies,
    held_version,
    ldn,
    register_webhook,
    rows,
    staff_client,
    superuser_client,
    texts,
    url,
    words,
)
from tests.races import held_in_another_connection, in_a_thread, lock_waits

pytestmark = pytest.mark.usefixtures("message_outboxes")

BOTOX_DONE = ldn(2026, 3, 1)


# --- Another process ---------------------------------------------------------------------------------------------


def botox_then_microneedling() -> IntervalRule:
    return IntervalRule.objects.get(default_key="botox-then-microneedling", organisation=None)


def microneedling_check(patient, when):
    return appointment_check(patient=patient, procedure_code="microneedling", start_at=when, now=NOW)


def with_botox_done(patient):
    ProcedureRecord.objects.create(patient=patient, procedure_id="botox", performed_at=BOTOX_DONE, source="reported")
    return patient


def at(moment):
    with time_machine.travel(moment, tick=False):
        return dispatch_local(now=moment)


def reached_by(patient_channels, patient):
    """The patient reached on these channels, texts consented to."""
    patient.reminder_channels = patient_channels
    patient.sms_consent = True
    patient.save()


# --- Rule books ---------------------------------------------------------------------------------------------------


def test_a_default_tightened_in_the_admin_refuses_the_next_check_of_a_process_holding_the_old_book(
    care_texts, patient, practitioner
):
    with_botox_done(patient)
    assert microneedling_check(patient, ldn(2026, 3, 20)).eligible  # 19 days: fine under 2 weeks; the copy is loaded
    client = superuser_client()
    page = url(IntervalRule, "change", botox_then_microneedling().pk)
    data = {**as_rendered(client, page, IntervalRule), "gap_value": "4", "change_reason": "QA: 4 weeks now"}

    with edited_while_another_process_holds_copies(f"rulebook:{patient.organisation_id}"):
        assert client.post(page, data).status_code == 302

    check = microneedling_check(patient, ldn(2026, 3, 20))
    assert not check.eligible and check.rulebook_version == "d2.o1"


def test_an_override_switching_a_default_off_frees_its_organisations_patients_at_a_sister_site_only(
    care_texts, clinic, west, other_clinic
):
    PractitionerFactory(clinic=west, name="Dr West")
    PractitionerFactory(clinic=other_clinic, name="Dr NY")
    ours = with_botox_done(PatientFactory(clinic=west))
    theirs = with_botox_done(PatientFactory(clinic=other_clinic))
    assert not microneedling_check(ours, ldn(2026, 3, 5)).eligible
    assert not microneedling_check(theirs, ldn(2026, 3, 5)).eligible
    default = botox_then_microneedling()
    override = IntervalRule(
        organisation=clinic.organisation,
        replaces=default,
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=default.gap_value,
        gap_unit=default.gap_unit,
        severity=default.severity,
        scope=default.scope,
        source="qa probe",
        is_active=False,
    )

    with edited_while_another_process_holds_copies(
        f"rulebook:{clinic.organisation_id}", f"rulebook:{other_clinic.organisation_id}"
    ):
        rulebooks.rule_save(rule=override, user=None, reason="QA: off for us", now=NOW)

    assert microneedling_check(ours, ldn(2026, 3, 5)).eligible  # West shares London's organisation and its book
    assert not microneedling_check(theirs, ldn(2026, 3, 5)).eligible  # another organisation's book is untouched

    # Deleting the override gives the default back, to the next check of a process that held the freed book.
    with edited_while_another_process_holds_copies(f"rulebook:{clinic.organisation_id}"):
        rulebooks.rule_delete(rule=override, user=None, reason="QA: back on", now=NOW)
    check = microneedling_check(ours, ldn(2026, 3, 5))
    assert not check.eligible and check.rulebook_version == "d1.o3"


def test_a_rule_rewritten_by_raw_sql_as_a_data_migration_does_is_seen_by_the_next_booking(
    care_texts, patient, practitioner
):
    with_botox_done(patient)
    assert not microneedling_check(patient, ldn(2026, 3, 10)).eligible
    with edited_while_another_process_holds_copies(f"rulebook:{patient.organisation_id}"):
        with connection.cursor() as cursor:  # a RunSQL step: no model, no signal
            cursor.execute(
                "UPDATE scheduler_intervalrule SET gap_value = 1, gap_unit = 'days' WHERE default_key = %s",
                ["botox-then-microneedling"],
            )
    assert book(patient, ldn(2026, 3, 10), NOW).status == "confirmed"


def test_the_desks_rules_page_shows_the_version_and_gap_of_an_edit_made_elsewhere(
    care_texts, clinic, patient, practitioner
):
    desk = staff_client(clinic, "clinic_admin", "qa-rules-desk")
    assert "d1.o1" in words(desk.get(f"/clinic/{clinic.code}/rules/"))
    microneedling_check(patient, ldn(2026, 3, 20))  # the book is held by this process
    default = botox_then_microneedling()
    tighter = IntervalRule(
        organisation=clinic.organisation,
        replaces=default,
        earlier_procedure_id="botox",
        later_procedure_id="microneedling",
        gap_value=5,
        gap_unit="weeks",
        severity=default.severity,
        scope=default.scope,
        source="qa probe",
    )
    with edited_while_another_process_holds_copies(f"rulebook:{clinic.organisation_id}"):
        rulebooks.rule_save(rule=tighter, user=None, reason="QA: five weeks for us", now=NOW)

    page = words(desk.get(f"/clinic/{clinic.code}/rules/"))
    assert "d1.o2" in page and "QA: five weeks for us" in page
    assert selectors.rulebook_load(clinic.organisation_id).version == "d1.o2"


# --- The booking catalogue ----------------------------------------------------------------------------------------


def test_a_procedure_switched_off_in_the_admin_is_refused_by_the_next_api_booking(
    clock, care_texts, api, patient, practitioner
):
    start = "2026-03-10T10:00:00+00:00"
    made = api.post(
        f"{API}/appointments/", {"patient": str(patient.pk), "procedure": "filler", "start": start}, format="json"
    )
    assert made.status_code == 201, made.content
    client = superuser_client()
    page = url(ProcedureType, "change", "filler")
    data = as_rendered(client, page, ProcedureType)
    data.pop("bookable", None)  # the box left unticked

    with edited_while_another_process_holds_copies("booking-catalogue"):
        assert client.post(page, data).status_code == 302

    again = api.post(
        f"{API}/appointments/",
        {"patient": str(patient.pk), "procedure": "filler", "start": "2026-03-11T10:00:00+00:00"},
        format="json",
    )
    assert again.status_code == 400 and again.json()["code"] == "procedure_not_bookable", again.content


def test_a_longer_duration_set_in_the_admin_is_the_next_bookings_length_and_search_slot(
    care_texts, patient, practitioner
):
    first = book(patient, ldn(2026, 3, 10), NOW, code="botox")
    assert first.end_at - first.start_at == timedelta(minutes=ProcedureType.objects.get(code="botox").duration_minutes)
    assert first.end_at - first.start_at != timedelta(minutes=95)
    client = superuser_client()
    page = url(ProcedureType, "change", "botox")
    data = {**as_rendered(client, page, ProcedureType), "duration_minutes": "95"}

    with edited_while_another_process_holds_copies("booking-catalogue"):
        assert client.post(page, data).status_code == 302

    second = book(PatientFactory(clinic=patient.clinic), ldn(2026, 3, 13), NOW, code="botox")
    assert second.end_at - second.start_at == timedelta(minutes=95)
    slots = booking.appointment_slots(
        patient=patient,
        procedure_code="botox",
        window_start=ldn(2026, 3, 16, 9),
        window_end=ldn(2026, 3, 16, 18),
        now=NOW,
    )
    assert slots and all((s.end_at - s.start_at).total_seconds() == 95 * 60 for s in slots)


def test_a_procedure_renamed_in_the_admin_is_the_name_the_next_refusal_gives(care_texts, patient, practitioner):
    with_botox_done(patient)
    assert "Botulinum toxin injection" in microneedling_check(patient, ldn(2026, 3, 5)).blocking[0].message
    client = superuser_client()
    page = url(ProcedureType, "change", "botox")
    data = {**as_rendered(client, page, ProcedureType), "name": "Neuromodulator (Botox)"}

    with edited_while_another_process_holds_copies(f"rulebook:{patient.organisation_id}"):
        assert client.post(page, data).status_code == 302

    assert "Neuromodulator (Botox)" in microneedling_check(patient, ldn(2026, 3, 5)).blocking[0].message


def test_an_area_deleted_in_the_admin_is_unknown_to_the_next_booking(care_texts, patient, practitioner):
    book(patient, ldn(2026, 3, 10), NOW, code="botox", area_code="scalp")
    Appointment.objects.filter(area_id="scalp").delete()  # nothing names it any more (an area is protected)
    client = superuser_client()

    with edited_while_another_process_holds_copies("booking-catalogue"):
        assert client.post(url(TreatmentArea, "delete", "scalp"), {"post": "yes"}).status_code == 302

    with pytest.raises(InvalidInput) as refused:
        book(patient, ldn(2026, 3, 12), NOW, code="botox", area_code="scalp")
    assert refused.value.code == "unknown_area"


# --- Texts --------------------------------------------------------------------------------------------------------


def test_a_medication_added_in_the_admin_stops_the_next_text_naming_it(care_texts, patient, practitioner):
    reached_by(["sms"], patient)
    confirmation = ReminderTemplate.objects.get(default_key="booking-confirmation")
    ReminderTemplate.objects.filter(pk=confirmation.pk).update(
        sms_text="{{ clinic_name }}: booked for {{ start_local }}. Keep taking your Glowzene."
    )
    assert clinical_terms_in("Keep taking your Glowzene.") == []  # the term list is held, without it
    client = superuser_client()

    with edited_while_another_process_holds_copies("sms-forbidden-terms"):
        assert client.post(url(Medication, "add"), {"code": "glowzene", "name": "Glowzene"}).status_code == 302

    book(patient, ldn(2026, 3, 10), NOW)
    at(NOW)
    assert texts() == []
    [row] = rows(Appointment.objects.get(patient=patient), kind="confirmation")
    assert row.status == "failed" and "glowzene" in row.last_error.lower()


def test_a_texts_words_changed_in_the_admin_are_the_words_of_the_next_text(care_texts, patient, practitioner):
    reached_by(["sms"], patient)
    book(patient, ldn(2026, 3, 10), NOW)  # the templates are held
    at(NOW)
    LocmemSmsBackend.outbox = []
    client = superuser_client()
    confirmation = ReminderTemplate.objects.get(default_key="booking-confirmation")
    page = url(ReminderTemplate, "change", confirmation.pk)
    data = {
        **as_rendered(client, page, ReminderTemplate),
        "sms_text": "{{ clinic_name }}: see you {{ start_local }}. QA words.",
    }

    with edited_while_another_process_holds_copies("reminder-templates"):
        assert client.post(page, data).status_code == 302

    book(PatientFactory(clinic=patient.clinic, reminder_channels=["sms"], sms_consent=True), ldn(2026, 3, 11), NOW)
    at(NOW)
    assert len(texts()) == 1 and texts()[0].endswith("QA words.")


def test_a_template_switched_off_and_one_added_change_the_next_bookings_plan(care_texts, patient, practitioner):
    first = book(patient, ldn(2026, 3, 10), NOW)
    assert rows(first, kind="reminder")
    client = superuser_client()
    reminder = ReminderTemplate.objects.get(default_key="day-before-reminder")
    page = url(ReminderTemplate, "change", reminder.pk)
    data = as_rendered(client, page, ReminderTemplate)
    data.pop("is_active", None)

    with edited_while_another_process_holds_copies("reminder-templates"):
        assert client.post(page, data).status_code == 302
        ReminderTemplate.objects.create(
            name="QA week-before",
            kind="reminder",
            anchor="start",
            offset_value=-7,
            offset_unit="days",
            email_subject="A week to go",
            email_text="Hello {{ first_name }}, a week to go.",
        )

    second = book(PatientFactory(clinic=patient.clinic), ldn(2026, 3, 20), NOW)
    assert [r.template.name for r in rows(second, kind="reminder")] == ["QA week-before"]


# --- Webhooks -----------------------------------------------------------------------------------------------------


@pytest.fixture
def hooks(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True
    settings.WEBHOOKS_ALLOW_HTTP = True


def deliveries(appointment_id, endpoint_id):
    return list(OutboxMessage.objects.filter(appointment_id=appointment_id, endpoint_id=endpoint_id, channel="webhook"))


def test_an_endpoint_paused_over_the_api_gets_nothing_from_the_next_booking(
    hooks, care_texts, api, patient, practitioner
):
    endpoint = register_webhook(api, "http://127.0.0.1:9/in")
    first = book(patient, ldn(2026, 3, 10), NOW)
    assert deliveries(first.pk, endpoint["id"])

    with edited_while_another_process_holds_copies("webhook-subscriptions"):
        paused = api.patch(f"{API}/webhooks/{endpoint['id']}/", {"active": False}, format="json")
        assert paused.status_code == 200, paused.content

    second = book(PatientFactory(clinic=patient.clinic), ldn(2026, 3, 12), NOW)
    assert deliveries(second.pk, endpoint["id"]) == []


def test_a_grant_taken_away_in_the_admin_stops_new_and_queued_deliveries(
    hooks, care_texts, clinic, patient, practitioner
):
    platform, key = new_api_client(clinic, name="qa-grant-platform")
    endpoint = register_webhook(http(key), "http://127.0.0.1:9/in")
    queued = book(patient, ldn(2026, 3, 10), NOW)
    [waiting] = deliveries(queued.pk, endpoint["id"])
    client = superuser_client()
    page = url(ApiClient, "change", platform.pk)
    data = {**as_rendered(client, page, ApiClient), "clinics": []}

    with edited_while_another_process_holds_copies("webhook-subscriptions"):
        assert client.post(page, data).status_code == 302

    later = book(PatientFactory(clinic=clinic), ldn(2026, 3, 12), NOW)
    assert deliveries(later.pk, endpoint["id"]) == []
    at(NOW)  # the delivery queued before: cancelled as it comes up, not sent
    waiting.refresh_from_db()
    assert waiting.status == "cancelled" and "no longer granted" in waiting.last_error


def test_a_revoked_platform_gets_nothing_from_the_next_booking(hooks, care_texts, clinic, patient, practitioner):
    platform, key = new_api_client(clinic, name="qa-revoked-platform")
    endpoint = register_webhook(http(key), "http://127.0.0.1:9/in")
    assert deliveries(book(patient, ldn(2026, 3, 10), NOW).pk, endpoint["id"])
    with edited_while_another_process_holds_copies("webhook-subscriptions"):
        platform.revoked_at = NOW
        platform.save()
    assert deliveries(book(PatientFactory(clinic=clinic), ldn(2026, 3, 12), NOW).pk, endpoint["id"]) == []


def test_a_practitioner_no_longer_doing_a_procedure_is_refused_by_the_connections_compiled_statement(
    care_texts, patient, practitioner
):
    # A named practitioner is taken by a statement compiled once per connection (core.compiled): it must still read
    # who does what as it stands.
    book(patient, ldn(2026, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    practitioner.procedures.remove("filler")
    with pytest.raises(InvalidInput) as refused:
        book(
            PatientFactory(clinic=patient.clinic), ldn(2026, 3, 11), NOW, code="filler", practitioner_id=practitioner.pk
        )
    assert refused.value.code == "practitioner_does_not_do_procedure"


# --- What a planned row keeps of its template and endpoint ----------------------------------------------------------


def admin_edit_template(key: str, **changes):
    client = superuser_client()
    template = ReminderTemplate.objects.get(default_key=key)
    page = url(ReminderTemplate, "change", template.pk)
    response = client.post(page, {**as_rendered(client, page, ReminderTemplate), **changes})
    assert response.status_code == 302, response.content.decode()[:1500]


def test_a_text_planned_before_its_template_lost_its_sms_is_not_sent_blank(care_texts, patient, practitioner):
    """(Was a strict-xfail DEFECT: a text planned before its template's SMS was removed in the admin, the template
    made e-mail only, still went, empty: render_message rendered template.sms_text '' and nothing checked the
    template still had an SMS; still_wanted checked only is_active.) The row is cancelled, saying why."""
    reached_by(["sms"], patient)
    appointment = book(patient, ldn(2026, 3, 10), NOW)
    assert [r.channel for r in rows(appointment, kind="confirmation")] == ["sms"]

    admin_edit_template("booking-confirmation", sms_text="")
    at(NOW)

    assert texts() == []
    [row] = rows(appointment, kind="confirmation")
    assert row.status == "cancelled" and row.last_error == "its template no longer has an SMS text"


def test_an_email_planned_before_its_template_lost_its_email_is_not_sent_empty(care_texts, patient, practitioner):
    """(Was a strict-xfail DEFECT: an e-mail planned before its template's e-mail was removed in the admin, the
    template made SMS only, still went with no subject and an empty body.) The row is cancelled, saying why."""
    appointment = book(patient, ldn(2026, 3, 10), NOW)
    assert [r.channel for r in rows(appointment, kind="confirmation")] == ["email"]

    admin_edit_template("booking-confirmation", email_subject="", email_text="", email_html="")
    at(NOW)

    assert [m for m in mail.outbox if not m.subject.strip()] == []
    [row] = rows(appointment, kind="confirmation")
    assert row.status == "cancelled" and "no longer has an e-mail" in row.last_error


def test_a_care_text_moved_to_another_procedure_is_not_sent_to_the_old_procedures_patients(
    care_texts, patient, practitioner
):
    """(Was a strict-xfail QUESTION: a care text planned for a Botox booking still went, with filler's words, after
    the admin moved its template to filler: should a planned row follow its template to another procedure?
    Decided: no. A row whose template no longer applies to the booking's procedure is cancelled when it comes up,
    saying why; the day-before reminder still goes.)"""
    appointment = book(patient, ldn(2026, 3, 10), NOW, code="botox")
    assert rows(appointment, kind="pre_care")
    at(NOW)
    mail.outbox.clear()

    admin_edit_template(
        "botox-pre-care-24h", procedure="filler", email_subject="Before your filler", email_text="QA filler words."
    )
    at(ldn(2026, 3, 9, 10))

    assert mail.outbox and not any("QA filler words" in m.body for m in mail.outbox)
    [pre_care] = rows(appointment, kind="pre_care")
    assert pre_care.status == "cancelled" and "moved to another procedure (filler)" in pre_care.last_error


def test_a_delivery_of_an_event_the_platform_unsubscribed_from_is_cancelled(
    hooks, care_texts, api, patient, practitioner
):
    """(Was a strict-xfail QUESTION: a delivery queued for an event the platform then unsubscribed from, PATCH
    events, was still attempted, and retried: still_wanted checked the endpoint active and granted, not
    endpoint.wants(event). Decided: cancelled when its turn comes, as a paused endpoint's are, saying why.)"""
    endpoint = register_webhook(api, "http://127.0.0.1:9/in")
    [queued] = deliveries(book(patient, ldn(2026, 3, 10), NOW).pk, endpoint["id"])
    narrowed = api.patch(f"{API}/webhooks/{endpoint['id']}/", {"events": ["appointment.cancelled"]}, format="json")
    assert narrowed.status_code == 200, narrowed.content

    at(NOW)

    queued.refresh_from_db()
    assert queued.status == "cancelled" and queued.attempts == 1
    assert queued.last_error == "the webhook endpoint no longer subscribes to appointment.created"


# --- Another process with its own connection ----------------------------------------------------------------------


def transactional_world(code: str):
    """What the thread probes start from (a transactional test's database was flushed: the version row too)."""
    ConfigVersion.objects.update_or_create(id=1, defaults={"value": secrets.randbits(60)})
    defaults.catalogue_load()
    defaults.rules_load()
    clinic = ClinicFactory(code=code, timezone="Europe/London", organisation=OrganisationFactory(code=f"{code}-org"))
    PractitionerFactory(clinic=clinic, name="Dr Thread")
    return clinic


def run_in_another_connection(call):
    outcome: list = []
    in_a_thread(call, outcome).join(30)
    assert len(outcome) == 1, "the other connection did not finish"
    return outcome[0]


@pytest.mark.django_db(transaction=True)
def test_a_rule_tightened_here_is_seen_by_the_next_booking_made_on_another_connection(settings):
    settings.CELERY_BROKER_URL = ""  # the change's re-check runs here, as with no broker
    clinic = transactional_world("qa-thread")
    patient = with_botox_done(PatientFactory(clinic=clinic))
    assert run_in_another_connection(lambda: microneedling_check(patient, ldn(2026, 3, 20)).eligible) is True
    held = held_version(f"rulebook:{clinic.organisation_id}")

    rule = botox_then_microneedling()
    rule.gap_value = 4
    rulebooks.rule_save(rule=rule, user=None, reason="QA: 4 weeks", now=NOW)

    assert versioned.current_version() != held
    outcome = run_in_another_connection(lambda: book(patient, ldn(2026, 3, 20), NOW))
    assert isinstance(outcome, UnableToBook) and outcome.check.rulebook_version == "d2.o1"


def book_while_the_patients_lock_is_held(patient, edit, *, forget: bool = False):
    """Book for `patient` on another connection while a third holds the patient's lock; `edit` commits while the
    booking waits for it; the booking's outcome."""
    outcome: list = []
    with held_in_another_connection(lambda: lock_live_patient(patient.pk)):
        if forget:
            versioned.forget()
        thread = in_a_thread(lambda: book(patient, ldn(2026, 3, 10), NOW, code="filler"), outcome)
        deadline = time.monotonic() + 10
        while lock_waits() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock_waits() >= 1, "the booking never waited for the patient's lock"
        edit()
    thread.join(30)
    assert len(outcome) == 1
    return outcome[0]


def switch_filler_off():
    ProcedureType.objects.filter(code="filler").update(bookable=False)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_booking_waiting_for_the_patients_lock_with_no_copy_held_sees_a_procedure_switched_off_meanwhile():
    """The control of the next probe: with no copy held, the copy is read after the wait and the edit is seen."""
    clinic = transactional_world("qa-wait-a")
    patient = PatientFactory(clinic=clinic)
    book(PatientFactory(clinic=clinic), ldn(2026, 3, 9), NOW, code="filler")

    outcome = book_while_the_patients_lock_is_held(patient, switch_filler_off, forget=True)

    assert isinstance(outcome, InvalidInput) and outcome.code == "procedure_not_bookable"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_booking_waiting_for_the_patients_lock_is_taken_as_made_before_a_switch_off_meanwhile():
    """The process holds the catalogue; a booking waits for the patient's lock while the procedure is switched off.
    Decided (docs/rules.md, "Cache"): the booking is taken as made before the edit (its lock's statement read the
    version with the snapshot from before the wait), and the next booking is refused. (Was a strict-xfail DEFECT:
    the comment at scheduler.lifecycle._LOCK_PATIENT_WITH_VERSION said otherwise; it now says this.)"""
    clinic = transactional_world("qa-wait-b")
    patient = PatientFactory(clinic=clinic)
    book(PatientFactory(clinic=clinic), ldn(2026, 3, 9), NOW, code="filler")  # this process holds the catalogue
    held_version("booking-catalogue")

    outcome = book_while_the_patients_lock_is_held(patient, switch_filler_off)

    assert isinstance(outcome, Appointment), outcome
    with pytest.raises(InvalidInput) as refused:
        book(PatientFactory(clinic=clinic), ldn(2026, 3, 11), NOW, code="filler")
    assert refused.value.code == "procedure_not_bookable"
