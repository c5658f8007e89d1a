"""core.compiled: a hot query compiled once gives what the queryset gives, and a kept UPDATE saves what
Model.save(update_fields=...) saves. On SQLite and PostgreSQL (the suite runs on both)."""

import gc
import threading
import uuid
import weakref
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import Count, F
from django.db.models.query import QuerySet
from django.db.models.signals import pre_save
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from clinic.models import AuditEvent, Patient, ProcedureRecord
from core.compiled import CompiledQuery, columns, insert_rows, instances, save_fields
from reminders.models import OutboxMessage, ReminderTemplate
from tests import shipped
from tests.factories import AppointmentFactory, PatientFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db

COLUMNS = ("pk", "first_name", "date_of_birth", "reminder_channels", "sms_consent", "updated_at", "clinic__timezone")


def patients(ids):
    return (
        Patient.objects.filter(pk__in=ids)
        .order_by("last_name", "first_name")
        .annotate(records=Count("procedure_records"), shout=F("last_name"))
        .values_list(*COLUMNS, "records", "shout")
    )


@pytest.fixture
def three(catalogue):
    people = [
        PatientFactory(first_name=name, date_of_birth=date(1990, 2, day), reminder_channels=["email", "sms"][:day])
        for day, name in ((1, "Ann"), (2, "Bea"), (3, "Cai"))
    ]
    ProcedureRecordFactory.create_batch(2, patient=people[1], performed_at=datetime(2026, 1, 5, 10, tzinfo=UTC))
    return people


def test_rows_are_what_the_queryset_gives_with_python_values(three):
    ids = [p.pk for p in three]
    compiled = CompiledQuery(patients)

    rows = compiled.rows(ids)

    assert rows == list(patients(ids))
    pk, name, born, channels, consent, updated, zone, records, shout = rows[1]
    assert (pk, name, born, channels, consent, records, shout) == (
        three[1].pk,
        "Bea",
        date(1990, 2, 2),
        ["email", "sms"],
        False,
        2,
        "Example",
    )
    assert isinstance(updated, datetime) and updated.tzinfo is not None
    assert zone == three[1].clinic.timezone


def test_compiled_once_per_number_of_ids_then_run_with_other_ids(three):
    built = []
    compiled = CompiledQuery(lambda ids: built.append(len(ids)) or patients(ids))

    first = compiled.rows([three[0].pk])
    second = compiled.rows([three[2].pk])
    both = compiled.rows([three[2].pk, three[0].pk])
    again = compiled.rows([three[1].pk, three[0].pk])

    assert built == [1, 2]
    assert [r[1] for r in first] == ["Ann"] and [r[1] for r in second] == ["Cai"]
    assert [r[1] for r in both] == ["Ann", "Cai"] and [r[1] for r in again] == ["Ann", "Bea"]
    assert compiled.rows([uuid.uuid4()]) == []
    with CaptureQueriesContext(connection) as queries:
        assert compiled.rows([]) == list(patients([])) == []
    assert len(queries) == 0  # as the ORM: an empty IN list asks the database nothing


def test_one_statement_per_run_counted_like_any_other(three):
    compiled = CompiledQuery(patients)
    compiled.rows([three[0].pk])
    with CaptureQueriesContext(connection) as queries:
        compiled.rows([three[1].pk])
    assert len(queries) == 1
    assert "procedure" in queries[0]["sql"].lower()


@pytest.mark.django_db(transaction=True)
def test_a_locking_query_needs_a_transaction(three):
    compiled = CompiledQuery(lambda ids: Patient.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
    with transaction.atomic():
        assert compiled.rows([three[0].pk]) == [(three[0].pk,)]
    with pytest.raises(TransactionManagementError):
        compiled.rows([three[0].pk])


def test_what_it_cannot_keep_is_refused(three):
    with pytest.raises(TypeError, match="values_list"):
        CompiledQuery(lambda ids: Patient.objects.filter(pk__in=ids)).rows([three[0].pk])
    with pytest.raises(TypeError, match="reach the SQL"):
        CompiledQuery(lambda ids: Patient.objects.filter(last_name="Example").values_list("pk")).rows([three[0].pk])


def test_several_arguments_datetimes_and_an_id_named_twice(three):
    def both_halves(patient_id, ids, since):
        ann = Patient.objects.filter(pk=patient_id).order_by().values_list("first_name", "updated_at")
        others = (
            Patient.objects.filter(pk__in=ids, updated_at__gte=since)
            .exclude(pk=patient_id)
            .order_by()
            .values_list("first_name", "updated_at")
        )
        return ann.union(others, all=True)

    compiled = CompiledQuery(both_halves)
    ids = [p.pk for p in three]
    since = min(p.updated_at for p in three)

    def names(*args):
        rows = compiled.rows(*args)
        assert rows == list(both_halves(*args))  # what the ORM gives, every time
        return sorted(name for name, _ in rows)

    assert names(three[0].pk, ids, since) == ["Ann", "Bea", "Cai"]
    assert names(three[1].pk, ids, since) == ["Ann", "Bea", "Cai"]
    assert names(three[1].pk, ids, since + timedelta(days=1)) == ["Bea"]
    assert names(three[2].pk, ids[:2], since) == ["Ann", "Bea", "Cai"]


def test_a_value_django_rewrites_or_cannot_stand_in_for_is_refused(three):
    later = CompiledQuery(lambda at: Patient.objects.filter(updated_at__lt=at + timedelta(days=1)).values_list("pk"))
    with pytest.raises(TypeError, match="reach the SQL"):
        later.rows(three[0].updated_at)
    with pytest.raises(TypeError, match="not int"):
        CompiledQuery(lambda n: Patient.objects.filter(pk=n).values_list("pk")).rows(3)
    with pytest.raises(TypeError, match="not datetime"):  # naive
        CompiledQuery(lambda at: Patient.objects.filter(updated_at=at).values_list("pk")).rows(datetime(2026, 1, 1))


def test_ids_given_as_strings_are_prepared_as_the_ids_they_stand_for(three):
    compiled = CompiledQuery(
        lambda ids: Patient.objects.filter(pk__in=ids).order_by("first_name").values_list("first_name")
    )
    ids = [three[0].pk, three[2].pk]
    assert compiled.rows(ids) == [("Ann",), ("Cai",)]
    assert compiled.rows([str(pk) for pk in ids]) == [("Ann",), ("Cai",)]  # the plan compiled for UUIDs


def test_strings_and_lists_of_strings_stand_in_like_ids(three):
    def named(first_name, codes):
        return (
            Patient.objects.filter(first_name=first_name, procedure_records__procedure_id__in=codes)
            .order_by()
            .values_list("first_name", "procedure_records__procedure_id")
        )

    compiled = CompiledQuery(named)
    for args in (("Bea", ["botox"]), ("Bea", ["filler"]), ("Ann", ["botox"]), ("Bea", ["filler", "botox"])):
        assert compiled.rows(*args) == list(named(*args))
    assert compiled.rows("Bea", ["botox"]) == [("Bea", "botox"), ("Bea", "botox")]
    assert compiled.rows("Bea'); DROP TABLE clinic_patient; --", ["botox"]) == []  # a parameter, never SQL
    assert Patient.objects.count() == 3
    starts = CompiledQuery(lambda prefix: Patient.objects.filter(first_name__startswith=prefix).values_list("pk"))
    with pytest.raises(TypeError, match="reach the SQL"):  # Django escapes it and adds a wildcard
        starts.rows("B")


@pytest.fixture
def templates(catalogue):
    shipped.care_texts()
    return list(ReminderTemplate.objects.order_by("pk")[:2])


def test_save_fields_saves_those_fields_and_no_other(templates):
    first, second = templates
    before = ReminderTemplate.objects.get(pk=first.pk)
    first.name, first.sms_text, first.email_subject = "Renamed", "New text", "Changed in memory only"

    with CaptureQueriesContext(connection) as queries:
        save_fields(first, ["name", "sms_text", "updated_at"])

    saved = ReminderTemplate.objects.get(pk=first.pk)
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert (saved.name, saved.sms_text, saved.email_subject) == ("Renamed", "New text", before.email_subject)
    assert saved.updated_at > before.updated_at  # auto_now, as save() would
    assert ReminderTemplate.objects.get(pk=second.pk).name == second.name


def test_save_fields_of_a_row_that_is_gone_fails_as_save_does(templates):
    ghost = templates[0]
    ReminderTemplate.objects.filter(pk=ghost.pk).delete()
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        save_fields(ghost, ["name"])


def test_a_refused_write_surfaces_as_djangos_integrity_error(templates):
    first, second = templates
    first.default_key = second.default_key  # unique
    with pytest.raises(IntegrityError), transaction.atomic():
        save_fields(first, ["default_key"])
    assert ReminderTemplate.objects.get(pk=first.pk).default_key != second.default_key


def test_a_model_with_its_own_save_or_save_signals_is_saved_by_django(three, templates):
    heard = []

    def listener(sender, instance, update_fields, **kwargs):
        heard.append((sender, set(update_fields)))

    pre_save.connect(listener, sender=ReminderTemplate)
    try:
        templates[0].name = "Heard"
        save_fields(templates[0], ["name"])
    finally:
        pre_save.disconnect(listener, sender=ReminderTemplate)
    assert heard == [(ReminderTemplate, {"name"})]
    assert ReminderTemplate.objects.get(pk=templates[0].pk).name == "Heard"

    clinic = three[0].clinic  # Clinic.save fills in the country and saves it with the fields named
    clinic.name, clinic.country = "Renamed clinic", ""
    save_fields(clinic, ["name"])
    clinic.refresh_from_db()
    assert clinic.name == "Renamed clinic" and clinic.country == "GB"


def test_instances_are_the_rows_the_orm_loads_with_their_relation_cached(three):
    compiled = CompiledQuery(
        lambda ids: Patient.objects.filter(pk__in=ids).order_by("first_name").values_list(*columns(Patient, "clinic"))
    )
    ids = [p.pk for p in three]

    loaded = instances(compiled.rows(ids), Patient, "clinic")

    expected = list(Patient.objects.filter(pk__in=ids).select_related("clinic").order_by("first_name"))
    assert [_values(p) for p in loaded] == [_values(p) for p in expected]
    with CaptureQueriesContext(connection) as queries:
        assert [_values(p.clinic) for p in loaded] == [_values(p.clinic) for p in expected]
    assert len(queries) == 0
    assert all(not p._state.adding and p._state.db == "default" for p in loaded)
    loaded[0].first_name = "Saved as any loaded row"
    loaded[0].save(update_fields=["first_name"])
    assert Patient.objects.get(pk=loaded[0].pk).first_name == "Saved as any loaded row"


def _values(instance):
    return [getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields]


def test_nested_and_empty_relations_come_back_as_select_related_gives_them(three):
    records = CompiledQuery(
        lambda ids: (
            ProcedureRecord.objects.filter(patient_id__in=ids)
            .order_by("pk")
            .values_list(*columns(ProcedureRecord, "patient__clinic", "area", "appointment__practitioner"))
        )
    )
    ids = [p.pk for p in three]

    loaded = instances(records.rows(ids), ProcedureRecord, "patient__clinic", "area", "appointment__practitioner")

    expected = list(
        ProcedureRecord.objects.filter(patient_id__in=ids)
        .select_related("patient__clinic", "area", "appointment__practitioner")
        .order_by("pk")
    )
    assert len(loaded) == 2
    with CaptureQueriesContext(connection) as queries:
        assert [_values(r) for r in loaded] == [_values(r) for r in expected]
        assert [_values(r.patient) for r in loaded] == [_values(r.patient) for r in expected]
        assert [_values(r.patient.clinic) for r in loaded] == [_values(r.patient.clinic) for r in expected]
        assert all(r.area is None and r.appointment is None for r in loaded)  # empty: cached as None
    assert len(queries) == 0


@pytest.mark.django_db(transaction=True)
def test_a_threads_connection_and_what_was_compiled_for_it_go_when_the_thread_does():
    compiled = CompiledQuery(patients)
    seen = []

    def in_a_thread():
        try:
            assert compiled.rows([uuid.uuid4()]) == []
            seen.append(weakref.ref(connections["default"]))  # this thread's connection object
        finally:
            connection.close()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    gc.collect()
    assert len(seen) == 1 and seen[0]() is None  # nothing of this module holds on to the thread's connection


def _messages(appointment, templates, count, **extra):
    at = datetime(2026, 3, 3, 10, tzinfo=UTC)
    return [
        OutboxMessage(
            appointment=appointment,
            kind=templates[i % 2].kind,
            channel="email" if i % 2 else "sms",
            template=templates[i % 2],
            due_at=at + timedelta(hours=i),
            payload={"n": i, "text": "a 'quoted' ünïcode value"},
            created_at=at,
            **extra,
        )
        for i in range(count)
    ]


@pytest.fixture
def appointment(templates):
    return AppointmentFactory()


def test_insert_rows_stores_what_bulk_create_stores_in_one_statement(appointment, templates):
    ours, djangos = (
        _messages(appointment, templates, 3, status="skipped"),
        _messages(appointment, templates, 3, status="cancelled"),
    )
    with CaptureQueriesContext(connection) as queries:
        insert_rows(ours)
    assert len(queries) == 1 and queries[0]["sql"].startswith("INSERT")
    OutboxMessage.objects.bulk_create(djangos)
    compared = [
        f.attname for f in OutboxMessage._meta.concrete_fields if f.attname not in ("id", "status", "updated_at")
    ]
    stored = {m.pk: m for m in OutboxMessage.objects.all()}
    for mine, theirs in zip(ours, djangos, strict=True):
        assert not mine._state.adding and mine._state.db == "default"
        assert [getattr(stored[mine.pk], a) for a in compared] == [getattr(stored[theirs.pk], a) for a in compared]
        assert stored[mine.pk].updated_at is not None  # auto_now, as bulk_create sets it
    insert_rows(_messages(appointment, templates, 1, status="sent"))  # another number of rows: its own statement
    assert OutboxMessage.objects.count() == 7


def test_insert_rows_of_many_or_mixed_rows_goes_through_bulk_create_and_keyless_rows_get_their_keys(
    appointment, templates
):
    through_bulk_create = []
    original = QuerySet.bulk_create

    def spy(self, objs, *args, **kwargs):
        through_bulk_create.append(len(objs))
        return original(self, objs, *args, **kwargs)

    many = _messages(appointment, templates, 60, status="skipped")
    QuerySet.bulk_create = spy
    try:
        insert_rows(many)
        insert_rows(_messages(appointment, templates, 2, status="sent"))  # two rows: its own statement
    finally:
        QuerySet.bulk_create = original
    assert through_bulk_create == [60]
    assert OutboxMessage.objects.count() == 62
    insert_rows([])
    assert OutboxMessage.objects.count() == 62
    keyless = [
        AuditEvent(appointment=appointment, action=action, at=appointment.start_at, actor_label=action)
        for action in ("booked", "cancelled")
    ]
    with CaptureQueriesContext(connection) as queries:
        insert_rows(keyless)  # their keys are the database's: read back by RETURNING, in order
    assert len(queries) == 1 and "RETURNING" in queries[0]["sql"]
    assert [AuditEvent.objects.get(pk=event.pk).action for event in keyless] == ["booked", "cancelled"]
    assert all(not event._state.adding for event in keyless)
    mixed = [AuditEvent(appointment=appointment, action="booked", at=appointment.start_at), keyless[0]]
    QuerySet.bulk_create = spy
    try:
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_rows(mixed)  # one with a key, one without: bulk_create's way (here, a key that exists)
    finally:
        QuerySet.bulk_create = original
    assert through_bulk_create == [60, 2]


def test_insert_rows_refused_by_a_constraint_is_djangos_integrity_error(appointment, templates):
    first = _messages(appointment, templates, 1)
    insert_rows(first)
    again = _messages(appointment, templates, 1)  # the same template and channel, unsent: one only
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(again)
    assert OutboxMessage.objects.count() == 1


def test_insert_rows_can_skip_rows_a_constraint_refuses_and_says_how_many_went_in(appointment, templates):
    [first] = _messages(appointment, templates, 1)
    assert insert_rows([first], skip_conflicts=True) == 1 and not first._state.adding
    [again] = _messages(appointment, templates, 1)  # the same template and channel, unsent: one only
    with transaction.atomic():
        assert insert_rows([again], skip_conflicts=True) == 0  # skipped, no error: the transaction goes on
        assert again._state.adding  # not marked saved
        assert OutboxMessage.objects.count() == 1
    keyless = AuditEvent(appointment=appointment, action="booked", at=appointment.start_at)
    with pytest.raises(ValueError, match="keys set"):
        insert_rows([keyless], skip_conflicts=True)  # bulk_create could not say which it skipped
