"""What is still to go is planned again when its moment is redefined under it (reminders.services).

A row is planned from its template and its clinic's zone as they are then, and its words are rendered when it goes.
Two edits change the moment without a move of the visit: a template's kind, anchor or offset (the admin, "+48 h"
made "+72 h" and reworded; a pre-care note made aftercare), and a clinic's time zone (a wrong zone corrected).
Left as planned, the new words would go at the old moment ("72 hours have passed" at 48 h), aftercare words before
the visit, a pre-care text at 07:00 held by quiet hours until after its moment. Review probes dec7a and dec6z
found each; these pin the service's answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings

from clinic.setting_checks import clinic_settings_saved
from reminders.models import Anchor, Channel, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from reminders.services import outbox_template_retimed
from reminders.verdicts import still_wanted
from scheduler.booking import appointment_complete
from tests.reminders.conftest import CLINICIAN, NEW_YORK, book, london

pytestmark = pytest.mark.django_db

NOW = london(2026, 3, 2, 9)
PRE_CARE = "microneedling-pre-care-24h"
POST_48H = "microneedling-post-care-48h"


def rows_of(appointment, key, *statuses):
    found = OutboxMessage.objects.filter(appointment=appointment, template__default_key=key)
    if statuses:
        found = found.filter(status__in=statuses)
    return {row.channel: row for row in found}


def edit(key, **fields) -> ReminderTemplate:
    template = ReminderTemplate.objects.get(default_key=key)
    for name, value in fields.items():
        setattr(template, name, value)
    template.save()
    return template


def test_aftercare_re_timed_goes_at_its_new_moment(patient, practitioner):
    visit = book(patient, "microneedling", london(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    assert {r.due_at for r in rows_of(visit, POST_48H).values()} == {done_at + timedelta(hours=48)}

    later = datetime(2026, 3, 11, 9, tzinfo=UTC)
    outbox_template_retimed(template=edit(POST_48H, offset_value=72), now=later)

    rows = rows_of(visit, POST_48H)
    assert {r.due_at for r in rows.values()} == {done_at + timedelta(hours=72)}
    assert {r.status for r in rows.values()} == {OutboxStatus.PENDING}


def test_pre_care_re_timed_earlier_moves_every_unsent_row_and_plans_none_twice(patient, practitioner):
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)
    before = rows_of(visit, PRE_CARE)
    assert {r.due_at for r in before.values()} == {london(2026, 3, 19)}

    outbox_template_retimed(template=edit(PRE_CARE, offset_value=-48), now=NOW)

    after = rows_of(visit, PRE_CARE)
    assert {c: r.pk for c, r in after.items()} == {c: r.pk for c, r in before.items()}  # moved, not duplicated
    assert {r.due_at for r in after.values()} == {london(2026, 3, 18)}


def test_pre_care_re_timed_to_a_moment_already_passed_goes_at_once_as_a_late_care_note_does(patient, practitioner):
    visit = book(patient, "microneedling", london(2026, 3, 3, 10), NOW)  # tomorrow: its 24 h note is due at 10:00
    now = london(2026, 3, 2, 9, 30)

    outbox_template_retimed(template=edit(PRE_CARE, offset_value=-48), now=now)  # 48 h before: yesterday

    rows = rows_of(visit, PRE_CARE)
    assert {r.status for r in rows.values()} == {OutboxStatus.PENDING}  # care instructions: sent late, not dropped
    soon = now + timedelta(minutes=settings.REMINDERS_CHANGE_GRACE_MINUTES)  # after the edit settles, as after a move
    assert all(now <= r.due_at <= soon for r in rows.values()), [r.due_at for r in rows.values()]


def test_a_reminder_re_timed_to_a_moment_passed_is_cancelled_with_the_reason(patient, practitioner):
    visit = book(patient, "botox", london(2026, 3, 3, 10), NOW)
    reminder = ReminderTemplate.objects.get(default_key="day-before-reminder")
    assert {r.status for r in rows_of(visit, "day-before-reminder").values()} == {OutboxStatus.PENDING}

    reminder.offset_value, reminder.offset_unit = -3, "days"
    reminder.save()
    outbox_template_retimed(template=reminder, now=london(2026, 3, 2, 9, 30))

    rows = rows_of(visit, "day-before-reminder")
    assert {r.status for r in rows.values()} == {OutboxStatus.CANCELLED}
    assert all("re-timed" in r.last_error for r in rows.values()), [r.last_error for r in rows.values()]


def test_a_pre_care_note_made_aftercare_cancels_what_it_planned_before_the_visit(patient, practitioner):
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)
    assert len(rows_of(visit, PRE_CARE, OutboxStatus.PENDING)) == 2

    made = edit(PRE_CARE, kind=MessageKind.POST_CARE, anchor=Anchor.COMPLETION, offset_value=24, offset_unit="hours")
    outbox_template_retimed(template=made, now=NOW)

    rows = rows_of(visit, PRE_CARE)
    assert {r.status for r in rows.values()} == {OutboxStatus.CANCELLED}
    assert all("post-care" in r.last_error for r in rows.values())


def test_a_row_whose_template_changed_kind_is_not_sent_even_unreplanned(patient, practitioner):
    """The backstop at send time (verdicts.still_wanted), for a template changed outside the admin."""
    visit = book(patient, "microneedling", london(2026, 3, 20), NOW)
    row = rows_of(visit, PRE_CARE)[Channel.EMAIL]
    ReminderTemplate.objects.filter(default_key=PRE_CARE).update(kind=MessageKind.POST_CARE, anchor=Anchor.COMPLETION)

    row.refresh_from_db()
    verdict = still_wanted(row, london(2026, 3, 19))

    assert verdict is not None and verdict[0] == OutboxStatus.CANCELLED


def test_a_zone_corrected_plans_the_texts_still_to_go_in_the_zone_as_it_stands(patient, practitioner, clinic):
    """The visit keeps its instant (11:00 UTC, 07:00 in New York). Its 24 h pre-care text, due at 07:00 there,
    would be held by quiet hours until after its moment; planned in the new zone it goes the evening before."""
    visit = book(patient, "microneedling", datetime(2026, 3, 20, 11, tzinfo=UTC), NOW)
    before = rows_of(visit, PRE_CARE)
    assert {r.due_at for r in before.values()} == {datetime(2026, 3, 19, 11, tzinfo=UTC)}

    clinic.timezone = "America/New_York"
    clinic.save()
    clinic_settings_saved(clinic=clinic, changed={"timezone"}, now=NOW)

    after = rows_of(visit, PRE_CARE)
    text = after[Channel.SMS].due_at.astimezone(NEW_YORK)
    assert text < datetime(2026, 3, 19, 7, tzinfo=NEW_YORK) and text.hour < 21, text  # before quiet hours began
    assert after[Channel.EMAIL].due_at == datetime(2026, 3, 19, 11, tzinfo=UTC)  # e-mail: no quiet hours
    assert {r.pk for r in after.values()} == {r.pk for r in before.values()}


def test_a_clinic_saved_without_a_new_zone_re_plans_nothing(patient, practitioner, clinic):
    visit = book(patient, "microneedling", datetime(2026, 3, 20, 11, tzinfo=UTC), NOW)
    OutboxMessage.objects.filter(appointment=visit, template__default_key=PRE_CARE).update(
        due_at=datetime(2026, 3, 19, 10, tzinfo=UTC)
    )

    clinic_settings_saved(clinic=clinic, changed={"name"}, now=NOW)

    assert {r.due_at for r in rows_of(visit, PRE_CARE).values()} == {datetime(2026, 3, 19, 10, tzinfo=UTC)}


def test_a_row_claimed_before_its_template_was_re_timed_later_waits_for_the_new_moment(patient, practitioner):
    """A claim is taken as the admin saves: the claimed rows are not "still to go" for the re-timing, so their send
    asks the template as it stands (verdicts.timing_verdict) and holds them until its moment."""
    from reminders.dispatch import outbox_claim_due, outbox_send_batch

    visit = book(patient, "microneedling", london(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    moment = done_at + timedelta(hours=48)
    with time_machine.travel(moment, tick=False):
        claims = [
            c for c in outbox_claim_due(now=moment) if c.message_id in {r.pk for r in rows_of(visit, POST_48H).values()}
        ]
        assert len(claims) == 2
        edit(POST_48H, offset_value=72)  # saved after the claim: not re-timed by the admin's save
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=moment)

    rows = rows_of(visit, POST_48H)
    assert {(r.status, r.due_at) for r in rows.values()} == {(OutboxStatus.PENDING, done_at + timedelta(hours=72))}
    assert all("re-timed" in r.last_error for r in rows.values())


def test_a_claim_taken_with_its_own_lease_is_dated_by_when_it_was_taken(patient, practitioner):
    """The claim's time is the one stored with it (`claimed_at`), not its lease's end less the lease setting: a claim
    taken with a longer lease (a dispatcher's own, a setting lowered since) would otherwise be dated after the
    template's save and sent at the old moment."""
    from reminders.dispatch import outbox_claim_due, outbox_send_batch

    visit = book(patient, "microneedling", london(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    moment = done_at + timedelta(hours=48)
    longer = timedelta(seconds=settings.REMINDERS_CLAIM_LEASE_SECONDS + 3600)
    ours = {r.pk for r in rows_of(visit, POST_48H).values()}
    with time_machine.travel(moment, tick=False):
        claims = [c for c in outbox_claim_due(now=moment, lease=longer) if c.message_id in ours]
        assert len(claims) == 2
    saved = moment + timedelta(seconds=2)  # two seconds after the claim, well inside its lease
    with time_machine.travel(saved, tick=False):
        edit(POST_48H, offset_value=72)
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=saved)

    rows = rows_of(visit, POST_48H)
    assert {(r.status, r.due_at) for r in rows.values()} == {(OutboxStatus.PENDING, done_at + timedelta(hours=72))}
