"""One appointment: clinician actions with permissions checked by the services, cancel, reschedule, reminders."""

from datetime import UTC, datetime, timedelta

import pytest

from clinic.models import AppointmentStatus, AuditEvent, ProcedureRecord
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from tests.frontdesk.conftest import at_london, book, url
from tests.frontdesk.html import field_error, squash

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def pending(patient, practitioner, eczema_history, frozen):
    return book(
        patient,
        practitioner,
        "microneedling",
        frozen - timedelta(minutes=30),
        status=AppointmentStatus.PENDING_CLEARANCE,
    )


@pytest.fixture
def started(patient, practitioner, frozen):
    return book(patient, practitioner, "botox", frozen - timedelta(minutes=10))


@pytest.fixture
def upcoming(patient, practitioner, frozen):
    return book(patient, practitioner, "botox", at_london(2026, 3, 5, 10))


def test_a_pending_booking_says_what_needs_clearing(reception, clinical, clinic, pending):
    page = squash(reception.get(url("appointment", clinic, pending)))
    assert "Pending clearance" in page and "history of Eczema" in page
    assert "Only a clinician can clear it" in page
    assert 'name="reason"' not in page.split("Pending clearance", 2)[2][:600]
    clinician_page = squash(clinical.get(url("appointment", clinic, pending)))
    assert '<label for="id_reason">Clinical reason for clearance' in clinician_page


def test_a_receptionist_posting_a_clearance_gets_403(reception, clinic, pending):
    response = reception.post(url("clear", clinic, pending), {"reason": "Looks fine"})
    assert response.status_code == 403
    assert "Only a clinician can clear a contraindication." in squash(response)
    pending.refresh_from_db()
    assert pending.status == AppointmentStatus.PENDING_CLEARANCE and pending.cleared_at is None


def test_a_receptionist_gets_403_even_with_an_empty_reason(reception, clinic, pending):
    assert reception.post(url("clear", clinic, pending), {"reason": ""}).status_code == 403


def test_clearance_needs_a_reason_shown_next_to_the_field(clinical, clinic, pending):
    response = clinical.post(url("clear", clinic, pending), {"reason": "   "})
    assert response.status_code == 400
    assert field_error(response, "id_reason") == "This field is required."


def test_a_clinician_clears_with_a_reason(clinical, clinician, clinic, pending):
    response = clinical.post(url("clear", clinic, pending), {"reason": "Eczema quiet for two years"})
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == AppointmentStatus.CONFIRMED and pending.cleared_by == clinician
    event = AuditEvent.objects.get(appointment=pending, action="cleared")
    assert event.reason == "Eczema quiet for two years" and event.actor_user == clinician
    page = squash(clinical.get(response.url))
    assert "Cleared:" in page and "“Eczema quiet for two years”" in page


def test_a_move_panel_keeps_the_clearance_the_move_keeps(
    reception, clinical, clinic, patient, practitioner, eczema_history, frozen
):
    """A cleared booking moved a day stays confirmed (the service keeps the clearance for the same rules); the
    panel says so, instead of asking for a clinician again (a QA probe found the dry run disagreeing)."""
    held = book(
        patient, practitioner, "microneedling", at_london(2026, 3, 10, 10), status=AppointmentStatus.PENDING_CLEARANCE
    )
    query = {"date": "2026-03-11", "time": "10:00"}
    before = squash(reception.get(url("reschedule", clinic, held), query, **HTMX))
    assert "will be held pending clearance" in before or "Needs a clinician's clearance" in before
    assert clinical.post(url("clear", clinic, held), {"reason": "Eczema quiet for two years"}).status_code == 302
    after = squash(reception.get(url("reschedule", clinic, held), query, **HTMX))
    assert "Possible at Wed 11 Mar 2026, 10:00, will be confirmed" in after
    assert "Needs a clinician's clearance" not in after
    assert "Cleared already" in after and "history of Eczema" in after
    response = reception.post(url("reschedule", clinic, held), {"start_at": "2026-03-11T10:00:00+00:00"})
    assert response.status_code == 302
    held.refresh_from_db()
    assert held.status == AppointmentStatus.CONFIRMED


def test_clearing_what_is_not_pending_is_a_conflict(clinical, clinic, started):
    response = clinical.post(url("clear", clinic, started), {"reason": "x"})
    assert response.status_code == 409
    assert "Only a booking pending clearance can be cleared." in squash(response)


def test_a_receptionist_cannot_mark_completed(reception, clinic, started):
    assert reception.post(url("complete", clinic, started)).status_code == 403
    started.refresh_from_db()
    assert started.status == AppointmentStatus.CONFIRMED


def test_a_clinician_marks_completed_which_enters_the_history(clinical, clinic, started):
    response = clinical.post(url("complete", clinic, started), follow=True)
    started.refresh_from_db()
    assert started.status == AppointmentStatus.COMPLETED
    assert ProcedureRecord.objects.filter(appointment=started, source="clinic").exists()
    assert "post-care starts now" in squash(response)


def test_completion_before_the_start_is_refused(clinical, clinic, upcoming):
    response = clinical.post(url("complete", clinic, upcoming))
    assert response.status_code == 409
    assert "cannot be completed before it starts" in squash(response)


def test_a_pending_booking_must_be_cleared_before_completion(clinical, clinic, pending):
    response = clinical.post(url("complete", clinic, pending))
    assert response.status_code == 409 and "must clear this booking" in squash(response)


def test_no_show_is_a_clinician_action_after_the_start(reception, clinical, clinic, started, upcoming):
    assert reception.post(url("no_show", clinic, started)).status_code == 403
    started.refresh_from_db()
    assert started.status == AppointmentStatus.CONFIRMED
    assert clinical.post(url("no_show", clinic, started)).status_code == 302
    started.refresh_from_db()
    assert started.status == AppointmentStatus.NO_SHOW
    assert clinical.post(url("no_show", clinic, upcoming)).status_code == 409


def test_a_started_booking_that_needs_review_offers_cancel_not_no_show(clinical, clinic, started):
    """It leaves needs_review only by being moved or cancelled (or released): no no-show button, a hint to cancel,
    and a posted no-show is a 409 that says so and changes nothing."""
    started.status = AppointmentStatus.NEEDS_REVIEW
    started.save(update_fields=["status"])
    page = squash(clinical.get(url("appointment", clinic, started)))
    assert "Mark no-show" not in page and "Mark completed" not in page
    assert "cancel it if the patient did not come" in page
    refused = clinical.post(url("no_show", clinic, started))
    assert refused.status_code == 409 and "cancel it if the patient did not come" in squash(refused)
    started.refresh_from_db()
    assert started.status == AppointmentStatus.NEEDS_REVIEW


def test_clinician_buttons_show_only_when_they_apply(reception, clinical, clinic, started, upcoming):
    assert "Mark completed" in squash(clinical.get(url("appointment", clinic, started)))
    assert "Mark completed" not in squash(reception.get(url("appointment", clinic, started)))
    assert "Mark no-show" in squash(clinical.get(url("appointment", clinic, started)))
    assert "Mark no-show" not in squash(reception.get(url("appointment", clinic, started)))
    page = squash(clinical.get(url("appointment", clinic, upcoming)))
    assert "Mark completed" not in page and "once the appointment has started" in page


def test_cancel_with_a_reason(reception, clinic, upcoming):
    response = reception.post(url("cancel", clinic, upcoming), {"reason": "Patient is travelling"})
    assert response.status_code == 302
    upcoming.refresh_from_db()
    assert upcoming.status == AppointmentStatus.CANCELLED and upcoming.cancel_reason == "Patient is travelling"
    again = reception.post(url("cancel", clinic, upcoming), {})
    assert again.status_code == 409 and "cannot be cancelled" in squash(again)


def test_actions_are_posts_only(clinical, clinic, started):
    for name in ("cancel", "clear", "complete", "no_show"):
        assert clinical.get(url(name, clinic, started)).status_code == 405


# --- Reschedule ------------------------------------------------------------------------------


@pytest.fixture
def botox_then_microneedling(patient, practitioner, frozen):
    botox = book(patient, practitioner, "botox", at_london(2026, 3, 5, 10))
    microneedling = book(patient, practitioner, "microneedling", at_london(2026, 3, 20, 10))
    return botox, microneedling


def test_a_move_that_breaks_another_booking_names_it(reception, clinic, botox_then_microneedling):
    botox, microneedling = botox_then_microneedling
    response = reception.get(url("reschedule", clinic, botox), {"date": "2026-03-12", "time": "10:00"}, **HTMX)
    page = squash(response)
    assert "Not possible at Thu 12 Mar 2026, 10:00" in page
    assert "is booked 20 March 2026 10:00; Botulinum toxin injection (Botox) must be at least 2 weeks before it" in page
    assert f'Conflicts with <a href="{url("appointment", clinic, microneedling)}">' in page


def test_a_move_can_overlap_the_old_time_of_the_same_appointment(reception, clinic, botox_then_microneedling):
    botox, _ = botox_then_microneedling
    page = squash(reception.get(url("reschedule", clinic, botox), {"date": "2026-03-05", "time": "10:15"}, **HTMX))
    assert "Possible at Thu 5 Mar 2026, 10:15, will be confirmed" in page
    assert "Move to Thu 5 Mar 2026, 10:15 with Dr Amelia Hart" in page


def test_a_move_is_posted_and_audited(reception, clinic, botox_then_microneedling):
    botox, _ = botox_then_microneedling
    response = reception.post(
        url("reschedule", clinic, botox), {"start_at": "2026-03-04T11:00:00+00:00", "reason": "Patient asked"}
    )
    assert response.status_code == 302
    botox.refresh_from_db()
    assert botox.start_at == datetime(2026, 3, 4, 11, tzinfo=UTC)
    assert AuditEvent.objects.get(appointment=botox, action="rescheduled").reason == "Patient asked"


def test_a_move_to_a_slot_with_the_same_practitioner_is_posted_as_the_page_does(
    reception, clinic, practitioner, botox_then_microneedling
):
    botox, _ = botox_then_microneedling
    panel = squash(reception.get(url("reschedule", clinic, botox), {"date": "2026-03-04", "time": "11:00"}, **HTMX))
    assert f'name="practitioner" value="{practitioner.pk}"' in panel  # what the slot buttons send

    response = reception.post(
        url("reschedule", clinic, botox),
        {"practitioner": str(practitioner.pk), "start_at": "2026-03-04T11:00:00+00:00", "reason": ""},
    )

    assert response.status_code == 302
    botox.refresh_from_db()
    assert botox.start_at == datetime(2026, 3, 4, 11, tzinfo=UTC) and botox.practitioner == practitioner


def test_the_practitioner_list_on_the_move_page_offers_the_current_one(
    reception, clinic, practitioner, second_practitioner, botox_then_microneedling
):
    botox, _ = botox_then_microneedling
    page = squash(
        reception.get(
            url("reschedule", clinic, botox), {"date": "2026-03-04", "time": "11:00", "practitioner": practitioner.pk}
        )
    )
    assert "Select a valid choice" not in page
    assert f'<option value="{practitioner.pk}" selected>Dr Amelia Hart (as now)</option>' in page
    assert f'<option value="{second_practitioner.pk}">Priya Shah</option>' in page
    assert "Possible at Wed 4 Mar 2026, 11:00" in page


def test_the_move_page_asks_for_a_new_date_and_time(reception, clinic, botox_then_microneedling):
    botox, _ = botox_then_microneedling
    page = squash(reception.get(url("reschedule", clinic, botox)))

    assert '<label for="id_date">New date</label>' in page and '<label for="id_time">New time</label>' in page
    assert 'aria-describedby="when-help id_date-error"' in page


def test_a_move_to_another_practitioner(reception, clinic, second_practitioner, botox_then_microneedling):
    botox, _ = botox_then_microneedling
    response = reception.post(
        url("reschedule", clinic, botox),
        {"practitioner": str(second_practitioner.pk), "start_at": "2026-03-04T11:00:00+00:00"},
    )

    assert response.status_code == 302
    botox.refresh_from_db()
    assert botox.practitioner == second_practitioner


def test_a_refused_move_is_409_and_changes_nothing(reception, clinic, botox_then_microneedling):
    botox, _ = botox_then_microneedling
    response = reception.post(url("reschedule", clinic, botox), {"date": "2026-03-12", "time": "10:00"})
    assert response.status_code == 409 and "Not moved." in squash(response)
    botox.refresh_from_db()
    assert botox.start_at == at_london(2026, 3, 5, 10)


def test_a_nonexistent_local_time_is_an_error_next_to_the_time(reception, clinic, botox_then_microneedling):
    botox, _ = botox_then_microneedling
    response = reception.get(url("reschedule", clinic, botox), {"date": "2026-03-29", "time": "01:15"})
    assert "does not exist" in field_error(response, "id_time")


def test_a_cancelled_appointment_cannot_be_moved(reception, clinic, upcoming):
    upcoming.status = AppointmentStatus.CANCELLED
    upcoming.save()
    assert "cannot be moved" in squash(reception.get(url("reschedule", clinic, upcoming)))


# --- Reminders --------------------------------------------------------------------------------


def test_reminders_show_what_is_due_sent_and_failed(reception, clinic, upcoming, frozen):
    OutboxMessage.objects.filter(appointment=upcoming).delete()
    common = {"appointment": upcoming, "created_at": frozen}
    OutboxMessage.objects.create(
        kind=MessageKind.REMINDER,
        channel=Channel.SMS,
        due_at=at_london(2026, 3, 4, 10),
        status=OutboxStatus.PENDING,
        **common,
    )
    OutboxMessage.objects.create(
        kind=MessageKind.CONFIRMATION,
        channel=Channel.EMAIL,
        due_at=frozen,
        status=OutboxStatus.SENT,
        sent_at=frozen,
        recipient="olivia@example.com",
        **common,
    )
    OutboxMessage.objects.create(
        kind=MessageKind.PRE_CARE,
        channel=Channel.SMS,
        due_at=frozen,
        status=OutboxStatus.FAILED,
        attempts=5,
        last_error="Number unreachable",
        **common,
    )
    OutboxMessage.objects.create(
        kind=MessageKind.WEBHOOK,
        channel=Channel.WEBHOOK,
        due_at=frozen,
        status=OutboxStatus.FAILED,
        event="appointment.booked",
        **common,
    )
    page = squash(reception.get(url("appointment", clinic, upcoming)))
    reminders = page[page.index('id="reminders-heading"') : page.index('id="audit-heading"')]
    assert 'Due <span class="count">1</span>' in reminders and "Due Wed 4 Mar 2026, 10:00" in reminders
    assert 'Sent <span class="count">1</span>' in reminders and "Sent Mon 2 Mar 2026, 09:00" in reminders
    assert 'Failed <span class="count">1</span>' in reminders
    assert "Last error: Number unreachable (after 5 attempts)" in reminders
    assert "appointment.booked" not in reminders  # webhooks are not patient reminders


def test_a_booking_through_the_front_desk_lists_its_reminders(reception, clinic, patient, practitioner, frozen):
    from reminders.defaults import care_texts_load

    care_texts_load()
    response = reception.post(
        url("book_submit", clinic, patient),
        {"procedure": "botox", "start_at": "2026-03-05T10:00:00+00:00"},
        follow=True,
    )
    page = squash(response)
    rows = OutboxMessage.objects.exclude(channel=Channel.WEBHOOK).filter(appointment__patient=patient)
    assert rows.exists()
    assert f'Due <span class="count">{rows.filter(status__in=["held", "pending"]).count()}</span>' in page


def test_no_reminders_says_so_once(reception, clinic, pending):
    OutboxMessage.objects.filter(appointment=pending).delete()
    page = squash(reception.get(url("appointment", clinic, pending)))
    assert "No reminders for this appointment yet: they are held until it is cleared." in page
    assert 'Due <span class="count">' not in page


def test_a_cancelled_appointment_cannot_be_moved_whatever_is_asked(reception, clinic, upcoming):
    upcoming.status = AppointmentStatus.CANCELLED
    upcoming.save()

    checked = reception.get(url("reschedule", clinic, upcoming), {"date": "2026-03-04", "time": "11:00"})
    panel = reception.get(url("reschedule", clinic, upcoming), {"date": "2026-03-04", "time": "11:00"}, **HTMX)
    posted = reception.post(url("reschedule", clinic, upcoming), {"start_at": "2026-03-04T11:00:00+00:00"})

    assert checked.status_code == panel.status_code == 200 and "cannot be moved" in squash(checked)
    assert posted.status_code == 409 and "cannot be moved" in squash(posted)
    upcoming.refresh_from_db()
    assert upcoming.start_at == at_london(2026, 3, 5, 10)


def test_a_reminder_is_named_once(reception, clinic, upcoming, frozen):
    from reminders.models import ReminderTemplate

    template = ReminderTemplate.objects.create(
        name="Booking confirmation (every procedure)",
        kind="confirmation",
        anchor="event",
        email_subject="Booked",
        email_text="Booked.",
    )
    OutboxMessage.objects.filter(appointment=upcoming).delete()
    OutboxMessage.objects.create(
        appointment=upcoming,
        created_at=frozen,
        kind=MessageKind.CONFIRMATION,
        channel=Channel.EMAIL,
        template=template,
        due_at=frozen,
        status=OutboxStatus.SENT,
        sent_at=frozen,
    )
    OutboxMessage.objects.create(
        appointment=upcoming,
        created_at=frozen,
        kind=MessageKind.REMINDER,
        channel=Channel.SMS,
        due_at=frozen,
        status=OutboxStatus.PENDING,
    )

    page = squash(reception.get(url("appointment", clinic, upcoming)))

    assert '<span class="reminder__what">Booking confirmation (every procedure)</span>' in page
    assert "Booking confirmation: Booking confirmation" not in page
    assert '<span class="reminder__what">Appointment reminder</span>' in page  # no template: its kind


@pytest.mark.parametrize("reason", ["superseded: the appointment moved", "superseded by a newer copy"])
def test_a_reminder_replaced_by_a_newer_one_is_shown_neutrally(reception, clinic, upcoming, frozen, reason):
    OutboxMessage.objects.filter(appointment=upcoming).delete()
    OutboxMessage.objects.create(
        appointment=upcoming,
        created_at=frozen,
        kind=MessageKind.REMINDER,
        channel=Channel.SMS,
        due_at=frozen,
        status=OutboxStatus.CANCELLED,
        last_error=reason,
    )

    page = squash(reception.get(url("appointment", clinic, upcoming)))
    reminders = page[page.index('id="reminders-heading"') : page.index('id="audit-heading"')]

    assert '<span class="tag tag--not_sent">Replaced</span>' in reminders
    assert "Replaced by a newer copy" in reminders
    assert "Last error" not in reminders and "reminder__error" not in reminders and "Cancelled" not in reminders


def test_a_cancelled_reminder_says_why_without_calling_it_an_error(reception, clinic, upcoming, frozen):
    OutboxMessage.objects.filter(appointment=upcoming).delete()
    OutboxMessage.objects.create(
        appointment=upcoming,
        created_at=frozen,
        kind=MessageKind.REMINDER,
        channel=Channel.SMS,
        due_at=frozen,
        status=OutboxStatus.CANCELLED,
        last_error="the appointment was cancelled",
    )

    reminders = squash(reception.get(url("appointment", clinic, upcoming)))

    assert "Why: the appointment was cancelled" in reminders and "Last error" not in reminders
