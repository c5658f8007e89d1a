"""Moving models between apps loses nothing: a database filled at the previous migration state
is migrated to the current one, and every row is found again through today's models.

The reminders models moved from `scheduler` to their own app and `ApiClient` from `api` to
`clinic` (docs/architecture.md); both moves are state-only, so the tables and rows stay put.
"""

from datetime import UTC, date, datetime

import pytest
from django.contrib.contenttypes.models import ContentType

from clinic.models import ApiClient, Appointment, Clinic, Patient
from reminders.models import ContactOptOut, OutboxMessage, ReminderTemplate, WebhookEndpoint
from tests.helpers import _leaves, _migrate

BEFORE = [
    ("clinic", "0003_intake_unique_on_every_database"),
    ("api", "0002_idempotency_key"),
    ("scheduler", "0002_reminders_outbox"),
]
AT = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_every_row_survives_the_move_of_reminders_and_api_clients():
    old = _migrate(BEFORE)
    clinic = old.get_model("clinic", "Clinic").objects.create(code="moved", name="Moved", timezone="Europe/London")
    procedure = old.get_model("clinic", "ProcedureType").objects.create(code="botox", name="Botox", duration_minutes=30)
    practitioner = old.get_model("clinic", "Practitioner").objects.create(clinic=clinic, name="Dr Old")
    patient = old.get_model("clinic", "Patient").objects.create(
        clinic=clinic, first_name="Ada", last_name="Old", date_of_birth=date(1980, 1, 2)
    )
    appointment = old.get_model("clinic", "Appointment").objects.create(
        clinic=clinic,
        patient=patient,
        practitioner=practitioner,
        procedure=procedure,
        status="confirmed",
        start_at=AT,
        end_at=AT.replace(hour=11),
    )
    client = old.get_model("api", "ApiClient").objects.create(
        name="Old platform", key_prefix="abcd1234", key_hash="f" * 64
    )
    client.clinics.add(clinic)
    endpoint = old.get_model("scheduler", "WebhookEndpoint").objects.create(
        client=client, url="https://platform.example/hooks", secret="whsec_x", events=["appointment.created"]
    )
    template = old.get_model("scheduler", "ReminderTemplate").objects.create(
        name="Old reminder",
        kind="reminder",
        anchor="start",
        offset_value=-24,
        offset_unit="hours",
        sms_text="See you tomorrow.",
    )
    message = old.get_model("scheduler", "OutboxMessage").objects.create(
        appointment=appointment,
        kind="reminder",
        channel="sms",
        template=template,
        due_at=AT,
        created_at=AT,
        recipient="+447911123456",
        payload={"k": 1},
    )
    hook = old.get_model("scheduler", "OutboxMessage").objects.create(
        appointment=appointment,
        kind="webhook",
        channel="webhook",
        endpoint=endpoint,
        event="appointment.created",
        due_at=AT,
        created_at=AT,
    )
    old.get_model("scheduler", "ContactOptOut").objects.create(patient=patient, channel="sms", via="sms_stop", at=AT)
    # As a database of the previous release has them (the test database was created at today's state).
    ContentType.objects.filter(app_label="reminders").update(app_label="scheduler")
    ContentType.objects.filter(app_label="clinic", model="apiclient").update(app_label="api")
    granted = ContentType.objects.get(app_label="scheduler", model="outboxmessage").permission_set.count()

    _migrate(_leaves())

    assert Clinic.objects.get(code="moved").name == "Moved"
    assert Patient.objects.get(pk=patient.pk).date_of_birth == date(1980, 1, 2)
    assert Appointment.objects.get(pk=appointment.pk).status == "confirmed"
    moved_client = ApiClient.objects.get(pk=client.pk)
    assert (moved_client.name, moved_client.key_prefix) == ("Old platform", "abcd1234")
    assert list(moved_client.clinics.values_list("code", flat=True)) == ["moved"]
    moved_endpoint = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (moved_endpoint.client_id, moved_endpoint.events) == (client.pk, ["appointment.created"])
    assert ReminderTemplate.objects.get(pk=template.pk).sms_text == "See you tomorrow."
    row = OutboxMessage.objects.get(pk=message.pk)
    assert (row.template_id, row.recipient, row.payload, row.appointment_id) == (
        template.pk,
        "+447911123456",
        {"k": 1},
        appointment.pk,
    )
    assert OutboxMessage.objects.get(pk=hook.pk).endpoint_id == endpoint.pk
    assert ContactOptOut.objects.get(patient_id=patient.pk).via == "sms_stop"
    # Content types, and so the permissions granted on them, followed the models.
    moved = ContentType.objects.get(app_label="reminders", model="outboxmessage")
    assert moved.permission_set.count() == granted > 0
    assert not ContentType.objects.filter(app_label="scheduler", model="outboxmessage").exists()
    assert ContentType.objects.filter(app_label="clinic", model="apiclient").exists()
    assert not ContentType.objects.filter(app_label="api", model="apiclient").exists()


@pytest.mark.django_db
def test_the_shipped_pre_care_sms_is_replaced_only_where_it_was_never_edited(catalogue):
    import importlib

    from django.apps import apps

    from reminders.defaults import care_texts_load

    step = importlib.import_module("reminders.migrations.0002_sms_segments_and_sms_only_pre_care")
    care_texts_load()
    template = ReminderTemplate.objects.get(default_key="microneedling-pre-care-24h")
    template.sms_text = step.OLD
    template.save(update_fields=["sms_text"])

    step.sms_only_pre_care(apps, None)
    template.refresh_from_db()
    assert template.sms_text == step.NEW and "{% if email_on %}" in step.NEW

    template.sms_text = "Our own wording."
    template.save(update_fields=["sms_text"])
    step.sms_only_pre_care(apps, None)
    template.refresh_from_db()
    assert template.sms_text == "Our own wording."


@pytest.mark.django_db
def test_the_shipped_aftercare_sms_gives_the_first_week_to_texts_only_patients_where_never_edited(catalogue):
    import importlib

    from django.apps import apps

    from reminders.defaults import care_texts_load

    step = importlib.import_module("reminders.migrations.0018_sms_only_aftercare_gives_the_first_week")
    care_texts_load()
    template = ReminderTemplate.objects.get(default_key="microneedling-post-care-completion")
    assert template.sms_text == step.NOW  # a new database has the new text already
    template.sms_text = step.BEFORE
    template.save(update_fields=["sms_text"])

    step.forwards(apps, None)
    template.refresh_from_db()
    assert template.sms_text == step.NOW and "{% else %}No direct sun for 2 days" in step.NOW

    template.sms_text = "Our own aftercare wording."
    template.save(update_fields=["sms_text"])
    step.forwards(apps, None)
    template.refresh_from_db()
    assert template.sms_text == "Our own aftercare wording."


@pytest.mark.django_db
def test_the_shipped_recall_texts_ask_first_where_never_edited(catalogue):
    """reminders 0026: the `recall-due` texts (loaded with the plan templates) gain `recall_ask_first` where they are
    still the wording shipped before; an administrator's own wording stays."""
    import importlib

    from django.apps import apps

    from plans.defaults import plan_templates_load

    step = importlib.import_module("reminders.migrations.0026_recall_asks_first_when_no_date")
    plan_templates_load()
    template = ReminderTemplate.objects.get(default_key="recall-due")
    now = {field: new for _, field, _, new in step.CHANGES}
    assert {field: getattr(template, field) for field in now} == now  # a new database has the new texts already
    for _, field, old, _ in step.CHANGES:
        setattr(template, field, old)
    template.email_subject = "Our own subject"
    template.save()

    step.forwards(apps, None)
    template.refresh_from_db()
    assert template.email_subject == "Our own subject"
    assert template.email_text == now["email_text"] and template.sms_text == now["sms_text"]
    assert "{% if recall_ask_first %}" in template.sms_text


def test_the_text_update_migration_brings_unedited_templates_to_exactly_the_shipped_texts():
    import importlib
    import json

    from plans.defaults import SHIPPED as PLAN_TEMPLATES
    from reminders.defaults import CARE_TEXTS

    shipped = {t["key"]: t for t in json.loads(CARE_TEXTS.read_text())["templates"]}
    shipped["recall-due"] = json.loads(PLAN_TEMPLATES.read_text())["recall_message"]  # loaded with the plans
    # Each step's "now" is the shipped text unless a later step changed that same field again.
    steps = [
        "0003_shipped_texts_act_and_privacy",
        "0013_day_before_reminder_says_the_day",
        "0018_sms_only_aftercare_gives_the_first_week",
        "0020_move_notice_names_the_practitioner",
        "0025_thank_you_says_the_visits_day",
        "0026_recall_asks_first_when_no_date",
    ]
    latest = {}
    for name in steps:
        for key, field, old, new in importlib.import_module(f"reminders.migrations.{name}").CHANGES:
            assert old != new and latest.get((key, field), old) == old, (name, key, field)
            latest[(key, field)] = new
    for (key, field), new in latest.items():
        value = shipped[key].get(field)
        assert new == ("\n".join(value) if isinstance(value, list) else value or ""), (key, field)


@pytest.mark.django_db(transaction=True)
def test_every_clinic_becomes_an_organisation_of_one_and_every_row_is_kept():
    """Issue #11: organisations arrive; each clinic of the previous release becomes an organisation of
    one (same code and name), its patients join it, and every row is found again unchanged."""
    from django.contrib.auth import get_user_model

    from clinic.models import Organisation, StaffMembership

    old = _migrate([("clinic", "0009_appointment_checked_in_and_notes")])
    OldClinic, OldPatient = old.get_model("clinic", "Clinic"), old.get_model("clinic", "Patient")
    north = OldClinic.objects.create(code="north", name="North Clinic", timezone="Europe/London")
    south = OldClinic.objects.create(code="south", name="South Clinic", timezone="America/New_York")
    patients = {
        OldPatient.objects.create(clinic=north, first_name="Ann", last_name="North").pk: "north",
        OldPatient.objects.create(clinic=north, first_name="Ben", last_name="North").pk: "north",
        OldPatient.objects.create(
            clinic=south, first_name="Cat", last_name="South", email="cat@example.com"
        ).pk: "south",
    }
    user = old.get_model("auth", "User").objects.create(username="desk")
    old.get_model("clinic", "StaffMembership").objects.create(user=user, clinic=south, role="receptionist")
    client = old.get_model("clinic", "ApiClient").objects.create(name="P", key_prefix="ab12cd34", key_hash="e" * 64)
    client.clinics.add(north)
    before = {
        row["id"]: row for row in OldPatient.objects.values("id", "first_name", "last_name", "email", "clinic_id")
    }

    _migrate(_leaves())

    assert sorted(Organisation.objects.values_list("code", "name")) == [
        ("north", "North Clinic"),
        ("south", "South Clinic"),
    ]
    for clinic in Clinic.objects.all():
        assert clinic.organisation.code == clinic.code
    after = {row["id"]: row for row in Patient.objects.values("id", "first_name", "last_name", "email", "clinic_id")}
    assert after == before  # every patient, every field, home clinic unchanged
    for pk, code in patients.items():
        assert Patient.objects.get(pk=pk).organisation.code == code
    membership = StaffMembership.objects.get(user__username="desk")
    assert (membership.clinic.code, membership.organisation_id, membership.role) == ("south", None, "receptionist")
    assert [c.code for c in ApiClient.objects.get(pk=client.pk).clinics.all()] == ["north"]
    assert not ApiClient.objects.get(pk=client.pk).organisations.exists()
    user_model = get_user_model()
    assert user_model.objects.filter(username="desk").exists()


@pytest.mark.django_db(transaction=True)
def test_a_gap_stored_longer_than_ten_years_is_shortened_not_a_failed_migration(capsys):
    """scheduler 0008 adds the ten-year check constraint: a rule saved longer before it (which no booking could be
    checked against: the engine's arithmetic overflowed) is shortened to ten years and named, the rest kept."""
    from scheduler.models import IntervalRule

    old = _migrate([("scheduler", "0007_repeat_defaults")])
    procedure = old.get_model("clinic", "ProcedureType").objects.create(
        code="gap-test", name="Gap test", duration_minutes=30
    )
    OldRule = old.get_model("scheduler", "IntervalRule")
    common = {"earlier_procedure": procedure, "later_procedure": procedure, "source": "test"}
    long_ = OldRule.objects.create(gap_value=150, gap_unit="months", **common)
    days = OldRule.objects.create(gap_value=4000, gap_unit="days", **common)
    kept = OldRule.objects.create(gap_value=120, gap_unit="months", **common)
    capsys.readouterr()

    _migrate(_leaves())

    assert IntervalRule.objects.get(pk=long_.pk).gap_value == 120
    assert (
        IntervalRule.objects.get(pk=long_.pk).note
        == "Gap shortened from 150 to 120 months (ten years at most) by migration scheduler 0008."
    )
    assert IntervalRule.objects.get(pk=kept.pk).note == ""
    assert IntervalRule.objects.get(pk=days.pk).gap_value == 3652
    assert IntervalRule.objects.get(pk=kept.pk).gap_value == 120
    said = capsys.readouterr().out
    assert f"Interval rule {long_.pk}: Gap shortened from 150 to 120 months" in said
    assert f"Interval rule {days.pk}: Gap shortened from 4000 to 3652 days" in said
    assert f"Interval rule {kept.pk} " not in said


@pytest.mark.django_db(transaction=True)
def test_each_history_record_is_given_the_clinic_whose_day_it_was_read_on():
    """clinic 0018: a record keeps the clinic whose zone gives its day (docs/rules.md). Rows from before are filled
    as they were read: a visit's record with the visit's clinic, a reported one with the home clinic."""
    from clinic.models import ProcedureRecord

    old = _migrate([("clinic", "0017_shipped_short_names")])
    org = old.get_model("clinic", "Organisation").objects.create(code="chain", name="Chain")
    OldClinic = old.get_model("clinic", "Clinic")
    home = OldClinic.objects.create(code="home", name="Home", timezone="Europe/London", organisation=org)
    sister = OldClinic.objects.create(code="sister", name="Sister", timezone="Pacific/Auckland", organisation=org)
    procedure = old.get_model("clinic", "ProcedureType").objects.create(code="botox", name="Botox", duration_minutes=30)
    patient = old.get_model("clinic", "Patient").objects.create(
        clinic=home, organisation=org, first_name="Ada", last_name="Old"
    )
    visit = old.get_model("clinic", "Appointment").objects.create(
        clinic=sister,
        patient=patient,
        practitioner=old.get_model("clinic", "Practitioner").objects.create(clinic=sister, name="Dr Kiwi"),
        procedure=procedure,
        status="completed",
        start_at=AT,
        end_at=AT.replace(hour=11),
    )
    OldRecord = old.get_model("clinic", "ProcedureRecord")
    done_there = OldRecord.objects.create(patient=patient, procedure=procedure, performed_at=AT, appointment=visit)
    reported = OldRecord.objects.create(patient=patient, procedure=procedure, performed_at=AT, source="reported")

    _migrate(_leaves())

    assert ProcedureRecord.objects.get(pk=done_there.pk).clinic_id == sister.pk
    assert ProcedureRecord.objects.get(pk=reported.pk).clinic_id == home.pk
    assert ProcedureRecord.objects.get(pk=reported.pk).dating_clinic.timezone == "Europe/London"


@pytest.mark.django_db(transaction=True)
def test_the_new_reading_of_a_day_rechecks_what_was_booked_before_it():
    """scheduler 0011: a microneedling booked at 11:00 after a plasma pen at 10:00 the same day was allowed before the
    rules read one date as 0 days apart (docs/rules.md); the upgrade makes a re-check run of every organisation's
    future bookings, and running it flags the pair for review (each is too close to the other, as after any rule
    change that forbids a booked pair). A database with nothing booked ahead gets no run."""
    from datetime import timedelta

    from django.utils import timezone

    from scheduler import defaults
    from scheduler.models import RecheckRun
    from scheduler.recheck import recheck_run_step

    before = [("scheduler", "0010_recheck_run_rulebook_versions"), ("clinic", "0018_procedurerecord_clinic")]
    _migrate(before)
    _migrate(_leaves())
    assert not RecheckRun.objects.exists()  # nothing booked ahead: no run

    old = _migrate(before)
    organisation = old.get_model("clinic", "Organisation").objects.create(code="upg", name="Upgraded")
    clinic = old.get_model("clinic", "Clinic").objects.create(
        code="upg", name="Upgraded", timezone="Europe/London", organisation=organisation
    )
    practitioner = old.get_model("clinic", "Practitioner").objects.create(clinic=clinic, name="Dr Up")
    patient = old.get_model("clinic", "Patient").objects.create(
        clinic=clinic, organisation=organisation, first_name="Ada", last_name="Up"
    )
    Procedure, OldAppointment = old.get_model("clinic", "ProcedureType"), old.get_model("clinic", "Appointment")
    day = (timezone.now() + timedelta(days=20)).replace(hour=10, minute=0, second=0, microsecond=0)
    for code, start in (("plasma_pen", day), ("microneedling", day + timedelta(hours=1))):
        OldAppointment.objects.create(
            clinic=clinic,
            patient=patient,
            practitioner=practitioner,
            procedure=Procedure.objects.get_or_create(code=code, defaults={"name": code, "duration_minutes": 30})[0],
            status="confirmed",
            start_at=start,
            end_at=start + timedelta(minutes=30),
        )

    _migrate(_leaves())

    [run] = RecheckRun.objects.all()
    assert {"microneedling", "plasma_pen"} <= set(run.procedures) and run.organisation_id is None
    assert "0 days apart" in run.cause
    defaults.catalogue_load()
    defaults.rules_load()
    while not recheck_run_step(run_id=run.pk, now=timezone.now()):
        pass
    statuses = dict(Appointment.objects.values_list("procedure_id", "status"))
    assert statuses == {"plasma_pen": "needs_review", "microneedling": "needs_review"}  # the pair, each way
