"""Review probe (7 December, d): what is still to go, planned again when its moment is redefined under it.

docs/reminders.md ("Two edits redefine the moment of rows already planned"): a template's kind, anchor or offset
changed in the admin, and a clinic's time zone changed in the admin, plan again at once, in the admin's transaction,
the rows still to go (`reminders.services.outbox_template_retimed`, `outbox_clinic_settings_saved`, `_retime`), so
that a text never goes in its new words at its old moment. Reminders and pre-care notes of visits still to come are
planned "as a move plans them (moved, never duplicated; one whose new moment has passed goes at once if it carries
care instructions, else is cancelled with the reason)", aftercare from the visit's completion; confirmations, change
notices and recalls are left as they are. The domain brief (care reminders): times are clinic-local, no SMS between
21:00 and 08:00, a pre-care note moves earlier, never later.

Probed here, with the real dispatcher (`dispatch_local`) run over time (time_machine, clock stopped):

* rows in every state when a template is re-timed or a zone changes: pending, held for clearance, in doubt, claimed,
  sent, skipped, failed, cancelled; visits today, still to come, moved a moment ago (the grace period), cancelled,
  completed (aftercare), booked as a course's sessions;
* a template for every procedure against one for a single procedure, an offset in days against one in hours across
  the clock change, a zone change whose new moment has passed (pre-care, sent late, against a reminder, dropped);
* the messages of other templates of the same visit, which nobody re-timed: nothing sent twice, nothing lost;
* the admin's transaction against a dispatcher's claim of the same rows (PostgreSQL, threads);
* what a zone change costs in statements per visit, and that the admin pages answer (never a 500).

The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT until Sunday 29 March; New York on EST until Sunday
8 March).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import Appointment, AppointmentStatus, Clinic
from reminders import channels
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local, outbox_claim_due, outbox_send_batch
from reminders.models import Anchor, Channel, MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from reminders.services import outbox_clinic_settings_saved
from scheduler.booking import appointment_cancel, appointment_complete, appointment_reschedule
from tests.admin_forms import clinic_form, template_form
from tests.factories import ClinicFactory, PatientConditionFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import CLINICIAN, NEW_YORK, NOW, RECEPTION, book, fresh, ldn, post, rows, texts
from tests.races import held_in_another_connection, in_a_thread, until_a_connection_waits_for_a_lock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes")]

PRE_CARE = "microneedling-pre-care-24h"
POST_48H = "microneedling-post-care-48h"
POST_7D = "microneedling-post-care-7d"
DAY_BEFORE = "day-before-reminder"
BOTOX_PRE = "botox-pre-care-24h"
UNSENT = (OutboxStatus.PENDING, OutboxStatus.HELD)


# --- Helpers -----------------------------------------------------------------------------------------------------


def template(key: str) -> ReminderTemplate:
    return ReminderTemplate.objects.get(default_key=key)


def of(appointment, key: str, *statuses) -> dict[str, OutboxMessage]:
    """The appointment's rows of the template `key` (of `statuses`, if given), by channel; at most one each."""
    found = rows(appointment, template=template(key))
    if statuses:
        found = [r for r in found if r.status in statuses]
    by_channel = {r.channel: r for r in found}
    assert len(by_channel) == len(found), [(r.channel, r.status) for r in found]
    return by_channel


def run_at(moment: datetime) -> datetime:
    """One dispatcher pass at `moment`, as beat would run it then."""
    with time_machine.travel(moment, tick=False):
        dispatch_local(now=moment)
    return moment


def sweep(start: datetime, end: datetime, step: timedelta = timedelta(minutes=30)) -> None:
    moment = start
    while moment <= end:
        run_at(moment)
        moment += step


def sent(appointment, key: str) -> list[OutboxMessage]:
    """The rows of the template `key` the dispatcher handed over for `appointment` (a companion counts)."""
    return [r for r in rows(appointment, template=template(key)) if r.sent_at is not None]


def superuser(username: str = "qa-dec7d-root") -> Client:
    client = Client(raise_request_exception=False)
    user = get_user_model().objects.filter(username=username).first()
    user = user or get_user_model().objects.create_superuser(username, f"{username}@dec7d.example", "pw-7d-x")
    client.force_login(user)
    return client


def template_url(obj: ReminderTemplate) -> str:
    return reverse("admin:reminders_remindertemplate_change", args=[obj.pk])


def retime(key: str, at: datetime, client: Client | None = None, **changes) -> None:
    """The administrator saves the template `key` with `changes`, at `at`, in the admin."""
    with time_machine.travel(at, tick=False):
        response = (client or superuser()).post(template_url(template(key)), template_form(template(key), **changes))
    assert response.status_code == 302, response.content.decode()[:3000]


def change_zone(clinic: Clinic, zone: str, at: datetime, **changes) -> list[str]:
    """The administrator corrects the clinic's zone in the admin at `at`; the messages the admin showed."""
    with time_machine.travel(at, tick=False):
        response = superuser().post(
            reverse("admin:clinic_clinic_change", args=[clinic.pk]),
            clinic_form(fresh(clinic), timezone=zone, **changes),
            follow=True,
        )
    assert response.status_code == 200, response.content[:600]
    errors = response.context and response.context.get("errors")
    assert not errors, errors
    assert Clinic.objects.get(pk=clinic.pk).timezone == zone
    return [str(m) for m in get_messages(response.wsgi_request)]


def snapshot(appointment, *kinds) -> dict:
    """What the rows of `kinds` are now: (status, due, anchor, error) by row."""
    return {
        r.pk: (r.status, r.due_at, r.anchor_at, r.last_error) for r in rows(appointment) if not kinds or r.kind in kinds
    }


class FlakySms(LocmemSmsBackend):
    """The SMS provider down for a moment: every text refused with a transient error while `down`."""

    down = False

    def send(self, *, to: str, body: str, outbox_id: str) -> str:
        if FlakySms.down:
            raise channels.TransientSendError("503 from the provider")
        return super().send(to=to, body=body, outbox_id=outbox_id)


def texting(clinic, first_name: str, phone: str = "+447700900123"):
    """A patient of `clinic` on e-mail and SMS."""
    return PatientFactory(
        clinic=clinic,
        first_name=first_name,
        last_name="Reed",
        email=f"{first_name.lower()}@example.com",
        phone=phone,
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


@pytest.fixture
def patient(clinic):
    """Olivia, on e-mail and SMS (overrides the API's Pat Lee, e-mail only)."""
    return texting(clinic, "Olivia")


@pytest.fixture
def world(platform_ready, clinic, practitioner, patient, clock):
    """The London clinic (Dr Ada), Olivia on e-mail and SMS, the shipped care texts and plan templates, the clock
    stopped at Monday 2 March 2026 09:00 UTC."""
    return clinic


# --- A template re-timed in the admin ----------------------------------------------------------------------------


def test_a_reminder_for_every_procedure_re_timed_moves_each_visit_s_rows_and_each_goes_once_at_its_new_moment(
    world, patient
):
    """docs/reminders.md: a template's offset changed plans its reminders of visits still to come "as a move plans
    them (moved, never duplicated)". The day-before reminder (no procedure: every booking) is made two days before:
    a Botox visit's and a microneedling visit's reminders move to two days before, keep their rows, and go once
    each, then; the confirmations are not touched."""
    botox = book(patient, ldn(2026, 3, 5), NOW, code="botox")
    needling = book(texting(patient.clinic, "Maya", "+447700900125"), ldn(2026, 3, 6, 14), NOW)
    before = {v.pk: of(v, DAY_BEFORE) for v in (botox, needling)}
    confirmations = {v.pk: snapshot(v, MessageKind.CONFIRMATION) for v in (botox, needling)}

    retime(DAY_BEFORE, NOW + timedelta(minutes=5), offset_value=-2)

    for visit, due in ((botox, ldn(2026, 3, 3)), (needling, ldn(2026, 3, 4, 14))):
        after = of(visit, DAY_BEFORE)
        assert {c: r.pk for c, r in after.items()} == {c: r.pk for c, r in before[visit.pk].items()}
        assert {(r.status, r.due_at) for r in after.values()} == {(OutboxStatus.PENDING, due)}
        assert snapshot(visit, MessageKind.CONFIRMATION) == confirmations[visit.pk]
    sweep(NOW + timedelta(minutes=30), ldn(2026, 3, 6, 8))
    for visit, due in ((botox, ldn(2026, 3, 3)), (needling, ldn(2026, 3, 4, 14))):
        went = sent(visit, DAY_BEFORE)
        assert sorted(r.channel for r in went) == [Channel.EMAIL, Channel.SMS]
        assert {r.sent_at for r in went} == {due}, [(r.channel, r.sent_at) for r in went]


def test_a_template_of_one_procedure_re_timed_leaves_other_procedures_visits_as_planned(world, patient):
    """A template with a procedure applies to that procedure's bookings only (docs/reminders.md, "Reminder plans"):
    the Botox pre-care note made 48 h before moves the Botox visit's note; the microneedling visit's rows (its own
    pre-care note and the day-before reminder) stay exactly as planned."""
    botox = book(patient, ldn(2026, 3, 10), NOW, code="botox")
    needling = book(texting(patient.clinic, "Maya", "+447700900125"), ldn(2026, 3, 11), NOW)
    untouched = snapshot(needling)

    retime(BOTOX_PRE, NOW, offset_value=-48)

    assert {r.due_at for r in of(botox, BOTOX_PRE).values()} == {ldn(2026, 3, 8)}
    assert snapshot(needling) == untouched


def test_rows_already_sent_skipped_failed_or_cancelled_stay_as_they_are_and_nothing_goes_twice(world, patient):
    """Only what is still to go is planned again. Today's visit had its pre-care note at booking (late: at once);
    another visit's pre-care e-mail failed for good, another's text was skipped, a cancelled visit's rows were
    cancelled. The pre-care note re-timed to 2 h before: none of these rows changes, no new row is planned for a
    template and channel already sent, failed or skipped for the visit's time, and a day's dispatching sends no
    pre-care note again."""
    today = book(patient, ldn(2026, 3, 2, 15), NOW)
    run_at(NOW)
    assert {r.status for r in of(today, PRE_CARE).values()} == {OutboxStatus.SENT}
    failed = book(patient, ldn(2026, 3, 4, 11), NOW)
    OutboxMessage.objects.filter(pk=of(failed, PRE_CARE)[Channel.EMAIL].pk).update(
        status=OutboxStatus.FAILED, last_error="permanent failure: mailbox gone", attempts=1
    )
    skipped = book(patient, ldn(2026, 3, 5, 11), NOW)
    OutboxMessage.objects.filter(pk=of(skipped, PRE_CARE)[Channel.SMS].pk).update(
        status=OutboxStatus.SKIPPED, last_error="the patient opted out"
    )
    called_off = book(patient, ldn(2026, 3, 6, 11), NOW)
    appointment_cancel(appointment=called_off, actor=RECEPTION, now=NOW + timedelta(minutes=1))
    final = {
        r.pk: (r.status, r.due_at, r.sent_at, r.last_error)
        for r in OutboxMessage.objects.filter(template=template(PRE_CARE)).exclude(status__in=UNSENT)
    }
    counted = OutboxMessage.objects.filter(template=template(PRE_CARE)).count()

    retime(PRE_CARE, NOW + timedelta(minutes=2), offset_value=-2)

    now_final = {
        r.pk: (r.status, r.due_at, r.sent_at, r.last_error) for r in OutboxMessage.objects.filter(pk__in=list(final))
    }
    assert now_final == final
    assert OutboxMessage.objects.filter(template=template(PRE_CARE)).count() == counted  # nothing planned anew
    assert {r.due_at for r in of(failed, PRE_CARE, *UNSENT).values()} == {ldn(2026, 3, 4, 9)}
    sweep(NOW + timedelta(minutes=5), ldn(2026, 3, 6, 12), step=timedelta(hours=1))
    assert len(sent(today, PRE_CARE)) == 2  # the two sent at booking; no third
    assert [r.channel for r in sent(failed, PRE_CARE)] == [Channel.SMS]
    assert [r.channel for r in sent(skipped, PRE_CARE)] == [Channel.EMAIL]
    assert sent(called_off, PRE_CARE) == []


def test_held_rows_of_a_visit_awaiting_clearance_stay_held_at_their_new_moment(world, patient):
    """docs/reminders.md: booked as `pending_clearance`, every message is held until a clinician clears it. Re-timed
    meanwhile, the held rows move but stay held: nothing goes, even once the new moment has passed."""
    PatientConditionFactory(patient=patient, condition_id="eczema", status="history")  # a relative contraindication
    visit = book(patient, ldn(2026, 3, 10), NOW)
    assert visit.status == AppointmentStatus.PENDING_CLEARANCE
    assert {r.status for r in rows(visit)} == {OutboxStatus.HELD}

    retime(PRE_CARE, NOW, offset_value=-48)

    assert {(r.status, r.due_at) for r in of(visit, PRE_CARE).values()} == {(OutboxStatus.HELD, ldn(2026, 3, 8))}
    sweep(ldn(2026, 3, 8, 9), ldn(2026, 3, 9, 12), step=timedelta(hours=1))
    assert mail.outbox == [] and texts() == []


def test_a_row_in_doubt_is_left_to_be_asked_about_and_never_doubled(world, patient):
    """A row in doubt (its sender stopped, perhaps after the provider took it) is not re-planned: the provider is
    asked first. Its twin on the other channel is re-timed. At most one row still to go per template and channel
    (the constraint), and the e-mail is not sent twice."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    email = of(visit, PRE_CARE)[Channel.EMAIL]
    OutboxMessage.objects.filter(pk=email.pk).update(
        in_doubt=True, in_doubt_since=NOW, due_at=NOW + timedelta(hours=1), attempts=1
    )

    retime(PRE_CARE, NOW + timedelta(minutes=1), offset_value=-48)

    unsent = of(visit, PRE_CARE, *UNSENT)
    assert unsent[Channel.EMAIL].pk == email.pk and unsent[Channel.EMAIL].in_doubt
    assert unsent[Channel.SMS].due_at == ldn(2026, 3, 8)
    sweep(NOW + timedelta(hours=1), ldn(2026, 3, 9, 12), step=timedelta(hours=2))
    assert len([r for r in sent(visit, PRE_CARE) if r.channel == Channel.EMAIL]) == 1
    assert len(mail.outbox) == len({m.subject for m in mail.outbox})  # no e-mail twice


def test_a_pre_care_note_re_timed_into_quiet_hours_texts_before_they_begin(world, patient):
    """The domain brief: no SMS between 21:00 and 08:00; a pre-care note moves earlier, never later. Re-timed to
    13 h before a Wednesday 10:00 visit (Tuesday 21:00), the text goes at 20:59 and the e-mail at 21:00, once each."""
    visit = book(patient, ldn(2026, 3, 4), NOW)

    retime(PRE_CARE, NOW, offset_value=-13)

    planned = of(visit, PRE_CARE)
    assert planned[Channel.EMAIL].due_at == ldn(2026, 3, 3, 21)
    assert planned[Channel.SMS].due_at == ldn(2026, 3, 3, 20, 59)
    sweep(ldn(2026, 3, 3, 20, 29), ldn(2026, 3, 3, 21, 30), step=timedelta(minutes=15))
    went = {r.channel: r.sent_at for r in sent(visit, PRE_CARE)}
    assert went[Channel.SMS] < ldn(2026, 3, 3, 21) and went[Channel.EMAIL] >= ldn(2026, 3, 3, 21), went


def test_a_pre_care_offset_made_days_across_the_clock_change_keeps_the_wall_clock(world, patient):
    """docs/reminders.md: hours are elapsed time, days keep the local wall-clock time across DST. A Sunday 29 March
    10:00 visit (BST; the clocks went forward at 01:00): "24 hours before" is Saturday 09:00 GMT; re-timed to "1
    day before" it is Saturday 10:00 GMT. It goes once, then."""
    dr_sunday = PractitionerFactory(clinic=patient.clinic, name="Dr Sunday", hours=[6])
    sunday = book(patient, ldn(2026, 3, 29, 10), NOW, practitioner_id=dr_sunday.pk)
    assert {r.due_at for r in of(sunday, PRE_CARE).values()} == {datetime(2026, 3, 28, 9, tzinfo=UTC)}

    retime(PRE_CARE, NOW, offset_value=-1, offset_unit="days")

    assert {r.due_at for r in of(sunday, PRE_CARE).values()} == {datetime(2026, 3, 28, 10, tzinfo=UTC)}
    sweep(datetime(2026, 3, 28, 8, tzinfo=UTC), datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert {r.sent_at for r in sent(sunday, PRE_CARE)} == {datetime(2026, 3, 28, 10, tzinfo=UTC)}


def test_aftercare_made_hours_across_the_clock_change_goes_once_at_its_new_moment(world, patient):
    """Aftercare is planned again "from the visit's completion". Done Friday 27 March 11:00 GMT, "+7 days" is
    Friday 3 April 11:00 BST (10:00 UTC); made "+168 hours" the morning after, it is 11:00 UTC (12:00 BST), once;
    nothing goes at 10:00 UTC."""
    visit = book(patient, ldn(2026, 3, 27, 11), NOW)
    done_at = datetime(2026, 3, 27, 11, 30, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    assert {r.due_at for r in of(visit, POST_7D).values()} == {datetime(2026, 4, 3, 10, 30, tzinfo=UTC)}

    retime(POST_7D, datetime(2026, 3, 28, 9, tzinfo=UTC), offset_value=168, offset_unit="hours")

    assert {r.due_at for r in of(visit, POST_7D).values()} == {datetime(2026, 4, 3, 11, 30, tzinfo=UTC)}
    sweep(datetime(2026, 4, 3, 9, 30, tzinfo=UTC), datetime(2026, 4, 3, 13, tzinfo=UTC))
    assert {r.sent_at for r in sent(visit, POST_7D)} == {datetime(2026, 4, 3, 11, 30, tzinfo=UTC)}


def test_aftercare_re_timed_to_a_moment_already_passed_goes_once_at_once(world, patient):
    """ "A moment since passed going at once": the "+7 days" text made "+1 day" three days after the visit goes at
    the next pass, once, and never again at its old moment."""
    visit = book(patient, ldn(2026, 3, 3, 11), NOW)
    done_at = ldn(2026, 3, 3, 12)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    edited = ldn(2026, 3, 6, 12)

    retime(POST_7D, edited, offset_value=1)

    sweep(edited, ldn(2026, 3, 11, 12), step=timedelta(hours=3))
    went = sent(visit, POST_7D)
    assert sorted(r.channel for r in went) == [Channel.EMAIL, Channel.SMS]
    assert {r.sent_at for r in went} == {edited}


def test_a_course_s_booked_sessions_are_each_re_timed_once(world, api, patient, clinic):
    """A treatment plan books its sessions (docs/plans.md); each is a visit still to come like any other: the
    pre-care note re-timed moves each session's rows, none doubled."""
    plan = post(
        api,
        f"/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09", "clinic": str(clinic.pk)},
    )
    assert plan.status_code == 201, plan.content[:1500]
    sessions = [s["appointment"] for s in plan.json()["sessions"]]
    assert len(sessions) == 3

    retime(PRE_CARE, NOW, offset_value=-48)

    for session in Appointment.objects.filter(pk__in=sessions):
        planned = OutboxMessage.objects.filter(appointment=session, template=template(PRE_CARE))
        assert sorted(r.channel for r in planned) == [Channel.EMAIL, Channel.SMS]
        assert {r.due_at for r in planned} == {session.start_at - timedelta(hours=48)}


def test_a_pre_care_note_made_aftercare_never_goes_before_the_visit_and_goes_once_at_completion(world, patient):
    """docs/reminders.md: rows of another kind now are cancelled; "what the new kind sends is planned where that
    kind is (at the next completion)". The pre-care note made an at-completion aftercare text: nothing of it goes
    before the visit; completed, the visit gets it once."""
    visit = book(patient, ldn(2026, 3, 4), NOW)

    retime(PRE_CARE, NOW, kind=MessageKind.POST_CARE, anchor=Anchor.COMPLETION, offset_value=0, offset_unit="hours")

    assert {r.status for r in of(visit, PRE_CARE).values()} == {OutboxStatus.CANCELLED}
    sweep(NOW, ldn(2026, 3, 4, 9), step=timedelta(hours=2))
    assert sent(visit, PRE_CARE) == []
    done_at = ldn(2026, 3, 4, 11)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    sweep(done_at, done_at + timedelta(hours=2))
    went = sent(visit, PRE_CARE)
    assert sorted(r.channel for r in went) == [Channel.EMAIL, Channel.SMS] and {r.kind for r in went} == {
        MessageKind.POST_CARE
    }


# --- Messages of other templates, and what the dispatcher holds -------------------------------------------------


def day_before_text_waiting_for_a_retry(patient, settings) -> OutboxMessage:
    """A visit on Tuesday 3 March whose day-before reminder text met the SMS provider's 503 at Monday 10:00: its row
    waits a minute for its retry (dispatch's backoff)."""
    settings.SMS_BACKEND = "tests.qa.test_review_dec7d_retiming.FlakySms"
    visit = book(patient, ldn(2026, 3, 3), NOW)
    run_at(NOW)  # the confirmation goes
    FlakySms.down = True
    try:
        run_at(ldn(2026, 3, 2, 10))
    finally:
        FlakySms.down = False
    waiting = of(visit, DAY_BEFORE)[Channel.SMS]
    assert (waiting.status, waiting.attempts) == (OutboxStatus.PENDING, 1), (waiting.status, waiting.last_error)
    return waiting


def test_re_timing_a_pre_care_note_does_not_drop_the_visit_s_reminder_waiting_for_a_retry(world, patient, settings):
    """The day-before reminder's text is due Monday 10:00; the SMS provider answers a 503 then, so the row waits a
    minute for its retry (dispatch's backoff). At 10:00:30 an administrator re-times the microneedling pre-care note.
    The reminder nobody re-timed must still go at the retry."""
    waiting = day_before_text_waiting_for_a_retry(patient, settings)

    retime(PRE_CARE, ldn(2026, 3, 2, 10, 0) + timedelta(seconds=30), offset_value=-25)

    sweep(ldn(2026, 3, 2, 10, 5), ldn(2026, 3, 2, 11))
    assert fresh(waiting).status == OutboxStatus.SENT, (fresh(waiting).status, fresh(waiting).last_error)


def test_a_zone_correction_does_not_drop_a_reminder_waiting_for_a_retry(world, clinic, patient, settings):
    """London and Lisbon keep the same clock all year: correcting the one to the other moves no moment. The
    day-before reminder's text, waiting a minute for its retry after a 503, must still go."""
    waiting = day_before_text_waiting_for_a_retry(patient, settings)

    change_zone(clinic, "Europe/Lisbon", ldn(2026, 3, 2, 10, 0) + timedelta(seconds=30), country="PT")

    sweep(ldn(2026, 3, 2, 10, 5), ldn(2026, 3, 2, 11))
    assert fresh(waiting).status == OutboxStatus.SENT, (fresh(waiting).status, fresh(waiting).last_error)


def test_a_template_re_timed_while_a_visit_s_move_is_in_its_grace_period_sends_nothing_before_it_ends(
    world, patient, settings
):
    """docs/reminders.md: after a move, what would go at once waits out the grace period (a receptionist trying
    times sends the patient nothing until the time settles). Olivia, told of her Tuesday 10:00 visit, is moved at
    09:00 to today 18:00: the pre-care note, now late, waits until 09:05. An administrator re-times the pre-care
    note at 09:01: nothing may reach her before 09:05."""
    visit = book(patient, ldn(2026, 3, 3), NOW)
    run_at(NOW)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 2, 17), actor=RECEPTION, now=NOW)
    assert {r.due_at for r in of(visit, PRE_CARE, *UNSENT).values()} == {NOW + timedelta(minutes=5)}

    retime(PRE_CARE, NOW + timedelta(minutes=1), offset_value=-25)

    run_at(NOW + timedelta(minutes=2))
    run_at(NOW + timedelta(minutes=4))
    assert mail.outbox == [] and texts() == [], [m.subject for m in mail.outbox] + texts()


def test_an_aftercare_text_claimed_when_it_is_re_timed_and_reworded_never_goes_in_its_new_words_at_its_old_moment(
    world, patient
):
    """docs/reminders.md: re-timing plans again at once "so that a text never goes in its new words at its old
    moment ("72 hours have passed" at 48 h)". The dispatcher has just claimed Olivia's "+48 h" texts (due now) when
    the administrator saves the template as "+72 h" with its new words; the claimed rows then go."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    run_at(done_at)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    moment = done_at + timedelta(hours=48)
    with time_machine.travel(moment, tick=False):
        claims = outbox_claim_due(now=moment)
    assert {c.message_id for c in claims} == {r.pk for r in of(visit, POST_48H).values()}

    retime(
        POST_48H,
        moment,
        offset_value=72,
        email_subject="You may wear makeup again (72 hours)",
        email_text="Hello {{ patient_first_name }}, 72 hours have passed since your visit, so makeup may be used.",
        sms_text="{{ clinic_name }}: 72 hours have passed since your visit, so makeup may be used again.",
    )
    with time_machine.travel(moment, tick=False):
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=moment)
    sweep(moment + timedelta(minutes=30), done_at + timedelta(hours=73))

    new_words_at = [r.sent_at for r in sent(visit, POST_48H)]
    told = [m.body for m in mail.outbox] + texts()
    early = [t for t in told if "72 hours have passed" in t and min(new_words_at) < done_at + timedelta(hours=72)]
    assert not early, (new_words_at, told)


# --- A clinic's time zone changed --------------------------------------------------------------------------------


def test_a_zone_change_whose_new_moment_has_passed_sends_care_late_and_drops_the_reminder(settings, platform_ready):
    """docs/reminders.md: planned again in the new zone, "one whose new moment has passed goes at once if it carries
    care instructions, else is cancelled with the reason". A New York clinic's Sunday 8 March 10:00 EDT visit (14:00
    UTC): its day-before texts ("1 day before", wall clock) are due Saturday 10:00 EST (15:00 UTC). At 14:30 UTC the
    zone is corrected to London: "1 day before" is now Saturday 14:00 UTC, passed. The pre-care note (made "1 day
    before" here, sent late) goes at once, once; the reminder is cancelled with the reason and never sent."""
    ReminderTemplate.objects.filter(default_key=PRE_CARE).update(offset_value=-1, offset_unit="days")
    clinic = ClinicFactory(code="qa-dec7d-ny", name="Hudson Clinic", timezone="America/New_York", country="US")
    PractitionerFactory(clinic=clinic, name="Dr Hudson", hours=range(7))
    patient = texting(clinic, "Nora", "+12125550123")
    visit = book(patient, datetime(2026, 3, 8, 10, tzinfo=NEW_YORK), NOW)
    assert {r.due_at for r in rows(visit, kind__in=["reminder", "pre_care"])} == {datetime(2026, 3, 7, 15, tzinfo=UTC)}
    corrected = datetime(2026, 3, 7, 14, 30, tzinfo=UTC)

    change_zone(clinic, "Europe/London", corrected, country="GB")

    reminders = of(visit, DAY_BEFORE)
    assert {r.status for r in reminders.values()} == {OutboxStatus.CANCELLED}
    assert all("time zone" in r.last_error for r in reminders.values()), [r.last_error for r in reminders.values()]
    graced = corrected + timedelta(minutes=settings.REMINDERS_CHANGE_GRACE_MINUTES)  # at once, after the edit settles
    assert {(r.status, r.due_at) for r in of(visit, PRE_CARE).values()} == {(OutboxStatus.PENDING, graced)}
    sweep(corrected, datetime(2026, 3, 8, 13, tzinfo=UTC))
    assert sorted(r.channel for r in sent(visit, PRE_CARE)) == [Channel.EMAIL, Channel.SMS]
    assert sent(visit, DAY_BEFORE) == []


def test_a_zone_change_leaves_confirmations_notices_and_recalls_as_they_are(world, clinic, patient):
    """docs/reminders.md: "Confirmations, notices and recalls are about the booking as it stands": a zone change
    leaves them as planned. One visit's confirmation not sent yet, another's move notice waiting out its grace, a
    completed Botox visit's recall: none changes; the still-to-come reminders are the ones planned again."""
    fresh_visit = book(patient, ldn(2026, 3, 12), NOW)
    moved = book(patient, ldn(2026, 3, 13), NOW - timedelta(hours=1))
    OutboxMessage.objects.filter(appointment=moved, kind=MessageKind.CONFIRMATION).update(
        status=OutboxStatus.SENT, sent_at=NOW - timedelta(hours=1), payload={"told_start": moved.start_at.isoformat()}
    )
    appointment_reschedule(appointment=moved, start_at=ldn(2026, 3, 13, 14), actor=RECEPTION, now=NOW)
    done = book(texting(clinic, "Maya", "+447700900125"), ldn(2026, 2, 27), NOW - timedelta(days=5), code="botox")
    appointment_complete(appointment=done, actor=CLINICIAN, now=NOW)
    kept = (MessageKind.CONFIRMATION, MessageKind.RESCHEDULED, MessageKind.RECALL)
    before = {v.pk: snapshot(v, *kept) for v in (fresh_visit, moved, done)}
    assert [r.kind for r in rows(moved, kind=MessageKind.RESCHEDULED, status=OutboxStatus.PENDING)]
    assert [r.kind for r in rows(done, kind=MessageKind.RECALL)], "completing Botox plans a recall"

    said = change_zone(clinic, "America/New_York", NOW + timedelta(minutes=1), country="US")

    assert any("another local time" in m for m in said), said
    for visit in (fresh_visit, moved, done):
        assert snapshot(visit, *kept) == before[visit.pk]


@pytest.mark.parametrize("visits", [1, 6], ids=["one-visit", "six-visits"])
def test_what_a_zone_change_costs_grows_by_a_few_statements_per_visit(world, clinic, patient, visits):
    """Report only: the statements the zone change's re-planning runs (`outbox_clinic_settings_saved`) for one and
    for six visits of one patient; each visit costs at most a dozen (its rows locked, what was sent read, a row
    updated per channel and template)."""
    for n in range(visits):
        book(texting(clinic, f"Pat{n}", f"+4477009002{n:02d}"), ldn(2026, 3, 10, 11 + n), NOW)
    clinic.timezone = "America/New_York"
    clinic.save()
    with CaptureQueriesContext(connection) as ran:
        outbox_clinic_settings_saved(clinic=clinic, changed=frozenset({"timezone"}), now=NOW)
    print(f"zone change over {visits} visit(s): {len(ran)} statements")
    assert len(ran) <= 6 + 14 * visits, [q["sql"][:120] for q in ran]


def test_the_admin_pages_answer_the_re_timing_edits_and_refuse_a_kind_its_anchor_does_not_fit(world, patient):
    """No 500 from the admin: a template's page opens, a kind saved with an anchor it does not fit is refused on the
    form (nothing re-timed), a kind, anchor and offset changed together are saved; a clinic's zone changed over
    visits still to come is said."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    planned = snapshot(visit)
    root = superuser()
    pre = template(PRE_CARE)
    assert root.get(template_url(pre)).status_code == 200
    assert root.get(reverse("admin:reminders_remindertemplate_changelist")).status_code == 200

    refused = root.post(template_url(pre), template_form(pre, kind=MessageKind.POST_CARE))  # anchor still "start"
    assert refused.status_code == 200 and b"errorlist" in refused.content
    assert snapshot(visit) == planned

    retime(PRE_CARE, NOW, client=root, kind=MessageKind.REMINDER, offset_value=-2, offset_unit="days")
    carried = of(visit, PRE_CARE).values()  # pre-care rows, now a reminder's: still a word ahead of the start
    assert {(r.status, r.kind) for r in carried} == {(OutboxStatus.PENDING, MessageKind.REMINDER)}
    assert {r.due_at for r in carried} == {ldn(2026, 3, 8)}  # 2 days before, re-timed
    said = change_zone(visit.clinic, "Asia/Tokyo", NOW, country="JP")
    assert any("another local time" in m for m in said), said


# --- The admin's transaction against the dispatcher (PostgreSQL) -------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_race_the_admin_re_timing_against_a_dispatcher_claiming_the_same_rows(platform_ready, settings):
    """The dispatcher's claim of Olivia's "+48 h" aftercare texts (its transaction open, rows locked) meets the
    administrator's save of that template as "+72 h", reworded: the admin's re-timing waits for the claim's lock,
    then the claimed rows are sent. Whatever the order, the new words never go at the old moment, and each text
    goes once."""
    clinic = ClinicFactory(code="qa-dec7d-race", name="Race Clinic", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr Race")
    patient = texting(clinic, "Olivia")
    root = superuser("qa-dec7d-race-root")
    visit = book(patient, ldn(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    with time_machine.travel(done_at, tick=False):
        dispatch_local(now=done_at)
    mail.outbox.clear()
    LocmemSmsBackend.outbox = []
    moment = done_at + timedelta(hours=48)
    claims: list = []
    saved: list = []
    words = {
        "offset_value": 72,
        "email_subject": "You may wear makeup again (72 hours)",
        "email_text": "Hello {{ patient_first_name }}, 72 hours have passed since your visit, so makeup may be used.",
        "sms_text": "{{ clinic_name }}: 72 hours have passed since your visit, so makeup may be used again.",
    }
    form = template_form(template(POST_48H), **words)

    def admin_save():
        return root.post(template_url(template(POST_48H)), form).status_code

    with time_machine.travel(moment, tick=True):
        with held_in_another_connection(lambda: claims.extend(outbox_claim_due(now=moment))):
            admin = in_a_thread(admin_save, saved)
            until_a_connection_waits_for_a_lock()
        admin.join(30)
        assert saved == [302], saved
        assert {c.message_id for c in claims} == {r.pk for r in of(visit, POST_48H).values()}
        outbox_send_batch(message_ids=[c.message_id for c in claims], claim_token=claims[0].token, now=moment)
    sweep(moment + timedelta(minutes=30), done_at + timedelta(hours=73), step=timedelta(hours=1))

    went = sent(visit, POST_48H)
    assert sorted(r.channel for r in went) == [Channel.EMAIL, Channel.SMS]
    told = [m.body for m in mail.outbox] + texts()
    early = [r for r in went if r.sent_at < done_at + timedelta(hours=72)]
    assert not (early and any("72 hours have passed" in t for t in told)), ([r.sent_at for r in went], told)
