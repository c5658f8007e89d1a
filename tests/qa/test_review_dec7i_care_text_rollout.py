"""Review probe (7 December, i): a care text added or re-aimed in the admin, planned for the visits booked before it.

docs/reminders.md ("A template added in the admin ..."): a template added, switched on again, given another
procedure, kind, anchor or offset, or a channel given text, is planned for the visits booked before it (a reminder
or pre-care note for every active visit still to come of its procedure, aftercare for visits done in the last 90
days whose moment is still ahead), in chunks after the save commits, each visit under its patient's lock, planned
"as a booking would now" (quiet hours, a moment passed sent at once only where late sending is allowed, held while
the visit needs review or clearance, only the channels the patient accepts). "A channel the visit already has a row
of the text for (sent, cancelled by staff, anything) is left alone, so nothing goes twice and a run can be
repeated." Confirmations and notices are not sent for changes made before the template.

Probed here where the run meets the other paths (reminders.services.template_rollout_*, reminders.tasks,
reminders.admin): bookings, moves, cancellations, completions, merges and opt-outs landing half-way through a run
(one visit a chunk); the template saved twice, re-timed, switched off, deleted, re-aimed or made another kind while
its run is half-way; templates for every procedure, aftercare, the kinds a run must not plan, held visits, a New York
visit's quiet hours, a moment passed; what the patient then receives from the real dispatcher (`dispatch_local`);
the run's admin pages; and statements per visit against the size of a patient's history.

Found and mended the same day: a visit whose record was merged while the run waited for its lock was skipped for
good; a text made a confirmation or recall half-way planned those for the rest; a re-timing run planned aftercare
staff had cancelled; a superuser could no longer delete a text that had a run; late sending switched on reached no
visit booked before (now it starts a run).

The run is done in-process (no broker: settings.CELERY_BROKER_URL = ""), the admin's on-commit callbacks executed.
The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT; New York on EST until Sunday 8 March).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinic.merging import patient_merge
from clinic.models import Appointment, AppointmentStatus, StaffMembership, StaffRole
from reminders import services
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate, TemplateRollout
from scheduler.booking import appointment_book, appointment_cancel, appointment_complete, appointment_reschedule
from scheduler.defaults import _grant_admin_permissions
from tests.admin_forms import care_text_form
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, NEW_YORK, NOW, RECEPTION, client_for, ldn, nyc
from tests.races import held_in_another_connection, in_a_thread, until_a_connection_waits_for_a_lock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes", "no_broker")]

ADD_URL = "/admin/reminders/remindertemplate/add/"
RUNS_URL = "/admin/reminders/templaterollout/"
SUBJECT = "Three days before your visit"
SMS_WORDS = "Three days to go: ask your GP which of your medicines to pause."


@pytest.fixture
def no_broker(settings):
    """tests run with a Redis broker URL configured: without it, a run is done in the admin's request."""
    settings.CELERY_BROKER_URL = ""


@pytest.fixture
def ldn_clinic(care_texts):
    return ClinicFactory(code="rollout-ldn", name="Bloom Clinic", timezone="Europe/London")


@pytest.fixture
def ny_clinic(care_texts, ldn_clinic):
    return ClinicFactory(code="rollout-ny", name="Hudson Clinic", timezone="America/New_York")


@pytest.fixture
def dr_ldn(ldn_clinic):
    return PractitionerFactory(clinic=ldn_clinic, name="Dr Hart")


@pytest.fixture
def dr_ny(ny_clinic):
    return PractitionerFactory(clinic=ny_clinic, name="Dr Hudson")


@pytest.fixture
def root(db):
    return client_for(get_user_model().objects.create_superuser("rollout-root", "root@qa.example", "pw-qa-7i"))


def person(clinic, name: str, *, channels=("email", "sms")):
    return PatientFactory(
        clinic=clinic,
        first_name=name,
        email=f"{name.lower()}@example.com",
        phone=f"+4477009{sum(map(ord, name)) % 100000:05d}",
        reminder_channels=list(channels),
        sms_consent=True,
    )


def book(patient, when, now=NOW, code="microneedling"):
    with time_machine.travel(now, tick=False):
        return appointment_book(
            patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now
        ).appointment


def form(**changes) -> dict:
    """The admin's form for a microneedling pre-care note 72 h before, by e-mail and text."""
    return care_text_form(**{"name": "Rollout probe, 72 h before", **changes})


def admin_add(client, capture, at=NOW, **changes) -> ReminderTemplate:
    with time_machine.travel(at, tick=False), capture(execute=True):
        response = client.post(ADD_URL, form(**changes))
    assert response.status_code == 302, response.content.decode()[:3000]
    return ReminderTemplate.objects.get(name=form(**changes)["name"])


def admin_change(client, capture, template, at=NOW, **changes) -> None:
    with time_machine.travel(at, tick=False), capture(execute=True):
        response = client.post(f"/admin/reminders/remindertemplate/{template.pk}/change/", form(**changes))
    assert response.status_code == 302, response.content.decode()[:3000]


def quiet_template(**fields) -> ReminderTemplate:
    """The probe's text written without the admin (no run yet): a run is started and stepped by hand."""
    values = {
        "name": "Rollout probe, 72 h before",
        "kind": MessageKind.PRE_CARE,
        "procedure_id": "microneedling",
        "anchor": "start",
        "offset_value": -72,
        "offset_unit": "hours",
        "send_if_late": True,
        "email_subject": SUBJECT,
        "email_text": "Hello {{ patient_first_name }}, stop blood thinners.",
        "sms_text": SMS_WORDS,
    }
    values.update(fields)
    return ReminderTemplate.objects.create(**values)


def new_run(template, now=NOW) -> TemplateRollout:
    run = services.template_rollout_start(template=template, before=None, now=now)
    assert run is not None
    return run


def step(run, now=NOW, chunk=1) -> bool:
    with time_machine.travel(now, tick=False):
        return services.template_rollout_step(run_id=run.pk, now=now, chunk=chunk)


def finish(run, now=NOW) -> None:
    for _ in range(100):
        if step(run, now, chunk=200):
            return
    raise AssertionError("the run never finished")


def in_pk_order(*visits) -> list[Appointment]:
    return sorted(visits, key=lambda v: v.pk)


def rows_of(visit, template) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(appointment_id=visit.pk, template=template).order_by("channel", "id"))


def by_channel(visit, template) -> dict[str, list[tuple]]:
    found: dict[str, list[tuple]] = {}
    for r in rows_of(visit, template):
        found.setdefault(r.channel, []).append((r.status, r.anchor_at, r.kind))
    return found


def fresh(visit) -> Appointment:
    return Appointment.objects.get(pk=visit.pk)


def dispatch_until(end, start=NOW, every=timedelta(hours=1)) -> None:
    moment = start
    while moment <= end:
        with time_machine.travel(moment, tick=False):
            dispatch_local(now=moment)
        moment += every


def our_mails(address: str) -> list:
    """The e-mails to `address` carrying the probe's words: on their own, or riding inside another (a confirmation
    going at the same moment carries a pre-care note due with it)."""
    return [m for m in mail.outbox if address in m.to and "stop blood thinners" in m.body]


def our_texts(phone: str) -> list:
    return [t for t in LocmemSmsBackend.outbox if t["to"] == phone and SMS_WORDS in t["body"]]


# --- The run against changes half-way -------------------------------------------------------------------------


def test_bookings_moves_and_cancellations_half_way_leave_each_active_visit_one_row_per_channel(ldn_clinic, dr_ldn):
    people = [person(ldn_clinic, f"Mid{i}") for i in range(4)]
    visits = in_pk_order(*(book(p, ldn(2026, 3, 16 + i)) for i, p in enumerate(people)))
    first, second, third, fourth = visits
    template = quiet_template()
    run = new_run(template)

    assert step(run) is False  # the first visit by pk is done
    assert set(by_channel(first, template)) == {Channel.EMAIL, Channel.SMS}
    with time_machine.travel(NOW, tick=False):
        appointment_cancel(appointment=fresh(second), actor=RECEPTION, now=NOW, reason="changed her mind")
        appointment_reschedule(appointment=fresh(third), start_at=ldn(2026, 3, 27), actor=RECEPTION, now=NOW)
        appointment_reschedule(appointment=fresh(first), start_at=ldn(2026, 3, 26), actor=RECEPTION, now=NOW)
    newcomer = book(person(ldn_clinic, "Late"), ldn(2026, 3, 25, 14))
    finish(run)

    for visit in (first, third, fourth, newcomer):
        start = fresh(visit).start_at
        got = by_channel(visit, template)
        assert got == {
            Channel.EMAIL: [(OutboxStatus.PENDING, start, MessageKind.PRE_CARE)],
            Channel.SMS: [(OutboxStatus.PENDING, start, MessageKind.PRE_CARE)],
        }, (visit, got)
    assert {r.status for r in rows_of(second, template)} <= {OutboxStatus.CANCELLED}


def test_a_visit_whose_time_came_before_the_run_reached_it_gets_nothing(ldn_clinic, dr_ldn):
    soon = book(person(ldn_clinic, "Soon"), ldn(2026, 3, 3, 10))
    later = book(person(ldn_clinic, "Later"), ldn(2026, 3, 20, 10))
    template = quiet_template()
    run = new_run(template)

    finish(run, now=ldn(2026, 3, 3, 11))  # the beat resumed it the day after

    assert rows_of(soon, template) == []
    assert set(by_channel(later, template)) == {Channel.EMAIL, Channel.SMS}


def test_a_patient_merged_before_the_run_reaches_the_visit_has_the_text_planned_for_the_survivor(ldn_clinic, dr_ldn):
    survivor, duplicate = person(ldn_clinic, "Keeper", channels=("email",)), person(ldn_clinic, "Twin")
    theirs = book(duplicate, ldn(2026, 3, 23))
    visits = in_pk_order(book(survivor, ldn(2026, 3, 16)), theirs, book(person(ldn_clinic, "Third"), ldn(2026, 3, 17)))
    template = quiet_template()
    run = new_run(template)
    for _ in range(visits.index(theirs)):  # the run goes as far as the visit before the duplicate's
        step(run)
    with time_machine.travel(NOW, tick=False):
        patient_merge(merged=duplicate, into=survivor, now=NOW, actor_label="dr@qa", clinical=True)
    finish(run)

    assert fresh(theirs).patient_id == survivor.pk
    assert set(by_channel(theirs, template)) == {Channel.EMAIL}  # the survivor's channels, read under the lock
    assert all(by_channel(v, template) for v in visits)


def test_a_merge_landing_while_the_run_waits_for_the_lock_does_not_lose_the_visit(ldn_clinic, dr_ldn, monkeypatch):
    survivor, duplicate = person(ldn_clinic, "Keeper"), person(ldn_clinic, "Twin")
    visit = book(duplicate, ldn(2026, 3, 23))
    template = quiet_template()
    run = new_run(template)
    real_lock = services.lock_live_patient
    merged = []

    def lock_after_the_merge_commits(patient_id):
        # What PostgreSQL does when the merge holds the record's lock: the run waits, the merge commits, the lock
        # returns the record as merged away.
        if patient_id == duplicate.pk and not merged:
            merged.append(patient_merge(merged=duplicate, into=survivor, now=NOW, actor_label="dr@qa", clinical=True))
        return real_lock(patient_id)

    monkeypatch.setattr(services, "lock_live_patient", lock_after_the_merge_commits)
    finish(run)
    monkeypatch.undo()
    finish(new_run(quiet_template(name="Another text")))  # any later run: the visit is the survivor's now

    assert merged and fresh(visit).patient_id == survivor.pk
    assert set(by_channel(visit, template)) == {Channel.EMAIL, Channel.SMS}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_race_a_merge_committing_while_a_later_chunk_waits_for_the_records_lock(ldn_clinic, dr_ldn):
    survivor, duplicate = person(ldn_clinic, "Keeper"), person(ldn_clinic, "Twin")
    theirs = book(duplicate, ldn(2026, 3, 23))
    book(person(ldn_clinic, "Other"), ldn(2026, 3, 16))
    template = quiet_template()
    run = new_run(template)
    # A chunk done already: a later step does not wait for older transactions (only the first one does).
    TemplateRollout.objects.filter(pk=run.pk).update(progressed_at=NOW)
    outcome: list = []

    def merge():
        patient_merge(merged=duplicate, into=survivor, now=NOW, actor_label="dr@qa", clinical=True)

    with held_in_another_connection(merge):
        worker = in_a_thread(lambda: services.template_rollout_step(run_id=run.pk, now=NOW), outcome)
        until_a_connection_waits_for_a_lock()
    worker.join(30)

    assert outcome == [True] and fresh(theirs).patient_id == survivor.pk
    assert set(by_channel(theirs, template)) == {Channel.EMAIL, Channel.SMS}


def test_a_patient_who_stops_texts_half_way_gets_only_email(ldn_clinic, dr_ldn):
    first, second = in_pk_order(
        book(person(ldn_clinic, "Ann"), ldn(2026, 3, 16)), book(person(ldn_clinic, "Bo"), ldn(2026, 3, 17))
    )
    template = quiet_template()
    run = new_run(template)
    step(run)
    type(second.patient).objects.filter(pk=second.patient_id).update(reminder_channels=["email"])
    finish(run)

    assert set(by_channel(first, template)) == {Channel.EMAIL, Channel.SMS}
    assert set(by_channel(second, template)) == {Channel.EMAIL}


# --- The template changed while its run is half-way ---------------------------------------------------------------


def test_two_runs_of_one_text_interleaved_plan_each_visit_once(ldn_clinic, dr_ldn):
    visits = [book(person(ldn_clinic, f"Two{i}"), ldn(2026, 3, 16 + i)) for i in range(3)]
    template = quiet_template()
    one, two = new_run(template), new_run(template)
    step(one)
    step(two)
    step(two)
    finish(one)
    finish(two)

    for visit in visits:
        assert {c: len(v) for c, v in by_channel(visit, template).items()} == {Channel.EMAIL: 1, Channel.SMS: 1}


def test_saved_twice_then_re_timed_moves_the_rows_and_plans_nothing_twice(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    cap = django_capture_on_commit_callbacks
    visit = book(person(ldn_clinic, "Retime"), ldn(2026, 3, 20))
    template = admin_add(root, cap)
    admin_change(root, cap, template, email_text="Reworded, {{ patient_first_name }}.")  # words only: no run
    admin_change(root, cap, template, offset_value="-48")

    assert TemplateRollout.objects.filter(template=template).count() == 2
    rows = rows_of(visit, template)
    assert sorted((r.channel, r.status, r.due_at) for r in rows) == [
        (Channel.EMAIL, OutboxStatus.PENDING, visit.start_at - timedelta(hours=48)),
        (Channel.SMS, OutboxStatus.PENDING, visit.start_at - timedelta(hours=48)),
    ]


def test_switched_off_half_way_the_run_stops_and_what_it_planned_never_goes(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    visits = in_pk_order(*(book(person(ldn_clinic, f"Off{i}"), ldn(2026, 3, 16 + i)) for i in range(3)))
    template = quiet_template()
    run = new_run(template)
    step(run)
    admin_change(root, django_capture_on_commit_callbacks, template, is_active=False)
    assert step(run) is True

    run.refresh_from_db()
    assert run.finished_at is not None and run.visits_done == 1
    assert [bool(rows_of(v, template)) for v in visits] == [True, False, False]
    dispatch_until(ldn(2026, 3, 17), start=ldn(2026, 3, 13, 8))
    assert our_mails(visits[0].patient.email) == [] and our_texts(visits[0].patient.phone) == []


def test_deleted_half_way_the_run_goes_with_it_and_nothing_it_planned_goes(ldn_clinic, dr_ldn):
    visits = in_pk_order(*(book(person(ldn_clinic, f"Del{i}"), ldn(2026, 3, 16 + i)) for i in range(2)))
    template = quiet_template()
    run = new_run(template)
    step(run)
    ReminderTemplate.objects.get(pk=template.pk).delete()

    assert step(run) is True and not TemplateRollout.objects.filter(pk=run.pk).exists()
    assert OutboxMessage.objects.filter(appointment__in=visits, template__isnull=True, kind="pre_care").count() == 2
    dispatch_until(ldn(2026, 3, 16), start=ldn(2026, 3, 13, 8))
    assert our_mails(visits[0].patient.email) == [] and our_texts(visits[0].patient.phone) == []


def test_a_superuser_can_still_delete_a_text_that_had_a_run(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    book(person(ldn_clinic, "Gone"), ldn(2026, 3, 20))
    template = admin_add(root, django_capture_on_commit_callbacks)
    assert TemplateRollout.objects.filter(template=template).exists()
    with time_machine.travel(NOW, tick=False):
        response = root.post(f"/admin/reminders/remindertemplate/{template.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not ReminderTemplate.objects.filter(pk=template.pk).exists()


def test_given_another_procedure_half_way_the_new_procedures_visits_get_it_and_the_old_ones_do_not(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    needling = in_pk_order(*(book(person(ldn_clinic, f"Mn{i}"), ldn(2026, 3, 16 + i)) for i in range(2)))
    botox = [book(person(ldn_clinic, f"Bx{i}"), ldn(2026, 3, 16 + i, 14), code="botox") for i in range(2)]
    template = quiet_template()
    run = new_run(template)
    step(run)
    admin_change(root, django_capture_on_commit_callbacks, template, procedure="botox")
    finish(run)

    assert all(set(by_channel(v, template)) == {Channel.EMAIL, Channel.SMS} for v in botox)
    assert rows_of(needling[1], template) == []
    dispatch_until(ldn(2026, 3, 16), start=ldn(2026, 3, 13, 8))
    assert our_mails(needling[0].patient.email) == []  # planned before the move: cancelled as it goes
    assert all(len(our_mails(v.patient.email)) == 1 for v in botox)


@pytest.mark.parametrize("kind, anchor, offset", [("confirmation", "event", 0), ("recall", "completion", 30)])
def test_a_text_made_a_confirmation_half_way_is_not_planned_for_the_rest(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks, kind, anchor, offset
):
    visits = in_pk_order(*(book(person(ldn_clinic, f"Kd{i}"), ldn(2026, 3, 16 + i)) for i in range(3)))
    template = quiet_template()
    run = new_run(template)
    step(run)
    made = {"kind": kind, "anchor": anchor, "offset_value": str(offset), "send_if_late": False}
    admin_change(root, django_capture_on_commit_callbacks, template, **made)
    assert not TemplateRollout.objects.exclude(pk=run.pk).exists()  # the save itself starts none
    finish(run)

    assert [r.kind for v in visits[1:] for r in rows_of(v, template)] == []


# --- What a run plans -------------------------------------------------------------------------------------------


def test_a_text_for_every_procedure_reaches_every_procedures_visits(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    visits = [
        book(person(ldn_clinic, "Any1"), ldn(2026, 3, 16)),
        book(person(ldn_clinic, "Any2"), ldn(2026, 3, 17), code="botox"),
    ]
    template = admin_add(root, django_capture_on_commit_callbacks, procedure="", kind="reminder", offset_value="-50")
    for visit in visits:
        assert {r.channel: r.due_at for r in rows_of(visit, template)} == {
            Channel.EMAIL: visit.start_at - timedelta(hours=50),
            Channel.SMS: visit.start_at - timedelta(hours=50),
        }


@pytest.mark.parametrize(
    "kind, anchor, offset",
    [("confirmation", "event", "0"), ("cancelled", "event", "0"), ("recall", "completion", "720")],
)
def test_the_kinds_about_a_change_made_start_no_run(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks, kind, anchor, offset
):
    visit = book(person(ldn_clinic, "Kinds"), ldn(2026, 3, 20))
    template = admin_add(
        root,
        django_capture_on_commit_callbacks,
        name=f"Probe {kind}",
        kind=kind,
        anchor=anchor,
        offset_value=offset,
        sms_text="",
        send_if_late=False,
    )
    assert not TemplateRollout.objects.filter(template=template).exists()
    assert rows_of(visit, template) == []


def test_aftercare_added_reaches_the_visits_done_lately_and_what_is_sent_goes_once(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    pat = person(ldn_clinic, "After")
    visit = book(pat, ldn(2026, 2, 27), now=ldn(2026, 2, 20))
    done_at = ldn(2026, 3, 1, 11)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=fresh(visit), actor=CLINICIAN, now=done_at)
    cap = django_capture_on_commit_callbacks
    after = {"name": "Probe aftercare", "kind": "post_care", "anchor": "completion", "offset_value": "48"}
    template = admin_add(root, cap, **after)
    admin_change(root, cap, template, **after, is_active=False)
    admin_change(root, cap, template, **after)  # switched on again: a second run, nothing twice
    assert TemplateRollout.objects.filter(template=template).count() == 2

    assert {(r.channel, r.due_at) for r in rows_of(visit, template)} == {
        (Channel.EMAIL, done_at + timedelta(hours=48)),
        (Channel.SMS, done_at + timedelta(hours=48)),
    }
    dispatch_until(ldn(2026, 3, 4), start=ldn(2026, 3, 3, 8))
    assert len(our_mails(pat.email)) == 1 and len(our_texts(pat.phone)) == 1


def test_aftercare_run_with_visits_completed_half_way_plans_each_once(ldn_clinic, dr_ldn):
    today = [book(person(ldn_clinic, f"Done{i}"), ldn(2026, 3, 2, 10 + i), now=ldn(2026, 2, 20)) for i in range(3)]
    done_at = ldn(2026, 3, 2, 12, 30)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=fresh(today[0]), actor=CLINICIAN, now=done_at)
    template = quiet_template(kind=MessageKind.POST_CARE, anchor="completion", offset_value=48, name="Probe after")
    run = new_run(template, now=done_at)
    step(run, now=done_at)
    with time_machine.travel(done_at, tick=False):
        for visit in today[1:]:
            appointment_complete(appointment=fresh(visit), actor=CLINICIAN, now=done_at)
    finish(run, now=done_at)

    for visit in today:
        assert {c: len(v) for c, v in by_channel(visit, template).items()} == {Channel.EMAIL: 1, Channel.SMS: 1}
    dispatch_until(ldn(2026, 3, 5), start=ldn(2026, 3, 4, 8))
    assert all(len(our_texts(fresh(v).patient.phone)) == 1 for v in today)


def test_aftercare_staff_cancelled_is_not_planned_again_by_a_re_timing_run(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    cap = django_capture_on_commit_callbacks
    pat = person(ldn_clinic, "Stopped")
    visit = book(pat, ldn(2026, 2, 27), now=ldn(2026, 2, 20))
    done_at = ldn(2026, 3, 1, 11)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=fresh(visit), actor=CLINICIAN, now=done_at)
    after = {"name": "Probe aftercare", "kind": "post_care", "anchor": "completion", "offset_value": "48"}
    template = admin_add(root, cap, **after)
    [sms] = [r for r in rows_of(visit, template) if r.channel == Channel.SMS]
    services.outbox_cancel(message_ids=[sms.pk], now=NOW)

    admin_change(root, cap, template, **{**after, "offset_value": "72"})
    dispatch_until(ldn(2026, 3, 5), start=ldn(2026, 3, 3, 8))

    assert [r.status for r in rows_of(visit, template) if r.channel == Channel.SMS] == [OutboxStatus.CANCELLED]
    assert our_texts(pat.phone) == []


def test_a_pre_care_note_staff_cancelled_is_not_revived_by_a_second_run_and_the_rest_goes_once(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    cap = django_capture_on_commit_callbacks
    pat = person(ldn_clinic, "Once")
    visit = book(pat, ldn(2026, 3, 20))
    template = admin_add(root, cap)
    [sms] = [r for r in rows_of(visit, template) if r.channel == Channel.SMS]
    services.outbox_cancel(message_ids=[sms.pk], now=NOW)
    admin_change(root, cap, template, is_active=False)
    admin_change(root, cap, template)
    admin_change(root, cap, template, offset_value="-71")

    dispatch_until(ldn(2026, 3, 18), start=ldn(2026, 3, 16, 8))
    assert len(our_mails(pat.email)) == 1 and our_texts(pat.phone) == []
    assert [r.status for r in rows_of(visit, template) if r.channel == Channel.SMS] == [OutboxStatus.CANCELLED]


@pytest.mark.parametrize("status", [AppointmentStatus.NEEDS_REVIEW, AppointmentStatus.PENDING_CLEARANCE])
def test_a_visit_held_for_a_clinician_gets_the_text_held_and_nothing_goes(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks, status
):
    pat = person(ldn_clinic, "Held")
    visit = book(pat, ldn(2026, 3, 20))
    Appointment.objects.filter(pk=visit.pk).update(status=status)
    template = admin_add(root, django_capture_on_commit_callbacks)

    assert {r.status for r in rows_of(visit, template)} == {OutboxStatus.HELD}
    dispatch_until(ldn(2026, 3, 18), start=ldn(2026, 3, 16, 8))
    assert our_mails(pat.email) == [] and our_texts(pat.phone) == []


def test_a_new_york_visit_is_planned_in_new_yorks_quiet_hours_and_goes_before_them(
    root, ny_clinic, dr_ny, django_capture_on_commit_callbacks
):
    pat = person(ny_clinic, "Nyc")
    visit = book(pat, nyc(2026, 3, 20))
    template = admin_add(root, django_capture_on_commit_callbacks, offset_value="-84")  # 22:00 New York, the 16th

    rows = {r.channel: r for r in rows_of(visit, template)}
    assert rows[Channel.EMAIL].due_at == nyc(2026, 3, 16, 22)
    text_at = rows[Channel.SMS].due_at.astimezone(NEW_YORK)
    assert nyc(2026, 3, 16, 20) <= text_at < nyc(2026, 3, 16, 21), text_at
    dispatch_until(nyc(2026, 3, 17), start=nyc(2026, 3, 16, 12), every=timedelta(minutes=30))
    assert len(our_mails(pat.email)) == 1 and len(our_texts(pat.phone)) == 1


@pytest.mark.parametrize("late", [True, False])
def test_a_moment_passed_goes_at_once_only_where_late_sending_is_allowed(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks, late
):
    pat = person(ldn_clinic, "Late")
    visit = book(pat, ldn(2026, 3, 3, 14))  # 29 h ahead: 72 h before has passed
    admin_add(root, django_capture_on_commit_callbacks, send_if_late="on" if late else False)

    dispatch_until(NOW + timedelta(hours=1))
    assert (len(our_mails(pat.email)), len(our_texts(pat.phone))) == ((1, 1) if late else (0, 0))
    assert bool(OutboxMessage.objects.filter(appointment=visit, template__name=form()["name"]).exists()) is late


def test_late_sending_switched_on_reaches_the_visits_whose_moment_had_passed(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    visit = book(person(ldn_clinic, "Lately"), ldn(2026, 3, 3, 14))
    template = admin_add(root, django_capture_on_commit_callbacks, send_if_late=False)
    assert rows_of(visit, template) == []
    admin_change(root, django_capture_on_commit_callbacks, template)  # send_if_late on
    booked_now = book(person(ldn_clinic, "Newly"), ldn(2026, 3, 3, 15))

    assert set(by_channel(booked_now, template)) == {Channel.EMAIL, Channel.SMS}
    assert set(by_channel(visit, template)) == {Channel.EMAIL, Channel.SMS}


# --- The admin pages ---------------------------------------------------------------------------------------------


def test_the_runs_page_shows_a_superuser_the_run_and_a_clinic_administrator_nothing(
    root, ldn_clinic, dr_ldn, django_capture_on_commit_callbacks
):
    book(person(ldn_clinic, "Page"), ldn(2026, 3, 20))
    template = admin_add(root, django_capture_on_commit_callbacks)
    run = TemplateRollout.objects.get(template=template)

    listing = root.get(RUNS_URL)
    assert listing.status_code == 200 and "Rollout probe, 72 h before" in listing.content.decode()
    assert root.get(f"{RUNS_URL}{run.pk}/change/").status_code == 200

    user = get_user_model().objects.create_user("rollout-admin", password="pw-qa-7i", is_staff=True)
    StaffMembership.objects.create(user=user, clinic=ldn_clinic, role=StaffRole.CLINIC_ADMIN)
    _grant_admin_permissions(user)
    site_admin = client_for(user)
    assert site_admin.get(RUNS_URL).status_code == 403
    assert site_admin.get(f"{RUNS_URL}{run.pk}/change/").status_code == 403
    index = site_admin.get("/admin/")
    assert index.status_code == 200 and RUNS_URL not in index.content.decode()


# --- Statements per visit -----------------------------------------------------------------------------------------


def _step_statements(clinic, history: int, visits: int, tag: str) -> int:
    for i in range(visits):
        pat = person(clinic, f"Q{tag}{i}")
        for h in range(history):
            AppointmentFactory(
                patient=pat,
                clinic=clinic,
                procedure_id="microneedling",
                start_at=ldn(2025, 1, 5) + timedelta(days=7 * h),
                end_at=ldn(2025, 1, 5, 11) + timedelta(days=7 * h),
                status=AppointmentStatus.COMPLETED,
            )
        book(pat, ldn(2026, 4, 6 + i, 10 + len(tag)))
    template = quiet_template(name=f"Counted {tag}")
    run = TemplateRollout.objects.create(template=template, cause="counted", created_at=NOW, progressed_at=NOW)
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as seen:
        services.template_rollout_step(run_id=run.pk, now=NOW, chunk=200)
    run.refresh_from_db()
    assert run.finished_at is not None and run.messages_planned >= visits * 2
    TemplateRollout.objects.filter(pk=run.pk).delete()
    ReminderTemplate.objects.filter(pk=template.pk).update(is_active=False)
    Appointment.objects.filter(start_at__gt=NOW).update(status=AppointmentStatus.CANCELLED)  # out of the next count
    return len(seen)


def test_statements_per_visit_do_not_grow_with_the_patients_history(ldn_clinic, dr_ldn):
    short_two = _step_statements(ldn_clinic, history=0, visits=2, tag="a")
    short_four = _step_statements(ldn_clinic, history=0, visits=4, tag="bb")
    long_two = _step_statements(ldn_clinic, history=8, visits=2, tag="ccc")
    long_four = _step_statements(ldn_clinic, history=8, visits=4, tag="dddd")

    per_visit = (short_four - short_two) / 2
    assert per_visit <= 12, (short_two, short_four)
    assert (long_four - long_two) / 2 == per_visit, (short_two, short_four, long_two, long_four)
