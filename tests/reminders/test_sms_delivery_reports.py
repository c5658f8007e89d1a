# ruff: noqa: F811 (the fixtures imported from tests/reminders/helpers.py are named as the tests ask for them)
"""The SMS provider's delivery reports: a text Twilio accepted and then could not deliver is not "sent".

docs/reminders.md, "Delivery reports from the SMS provider": each text asks for a status callback where
SMS_STATUS_CALLBACK_URL is set; a signed report that a text was undelivered or failed marks the rows it carried
failed (shown with the other failures, sent again by an operator), and one refused after the patient's STOP to the
provider (21610) turns their texts off, as the same refusal heard at once does.
"""

import urllib.parse
from datetime import timedelta

import kombu.exceptions
import pytest
from django.db import DatabaseError
from django.utils import timezone

from reminders import consent, dispatch, tasks
from reminders import reports as parked_reports
from reminders.channels import TwilioSmsBackend
from reminders.dispatch import SendOutcome, dispatch_local
from reminders.models import ContactOptOut, OptOutVia, OutboxMessage, ParkedDeliveryReport
from reminders.services import last_told_start, outbox_retry
from scheduler.booking import appointment_cancel
from tests.factories import PatientFactory
from tests.races import held_in_another_connection
from tests.reminders.conftest import RECEPTION, book
from tests.reminders.helpers import (  # noqa: F401 (fixtures)
    OTHER_SID,
    SID,
    STATUS_URL,
    WEDNESDAY_10,
    accepted,
    database_away,
    report,
    reports,
    sent_text,
    signed,
)

pytestmark = pytest.mark.django_db


def test_each_text_asks_for_delivery_reports_where_a_url_is_set(reports, settings):
    TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="a")
    settings.SMS_STATUS_CALLBACK_URL = ""
    TwilioSmsBackend().send(to="+447700900123", body="x", outbox_id="b")
    asked, not_asked = (urllib.parse.parse_qs(request.body.decode()) for request in reports.requests)
    assert asked["StatusCallback"] == [STATUS_URL + "?outbox=a"]  # the row, for the report to wait for
    assert "StatusCallback" not in not_asked


def test_a_text_reported_undelivered_is_failed_and_can_be_sent_again(client, reports, sent_text, patient, now):
    assert report(client).status_code == 204
    sent_text.refresh_from_db()
    assert sent_text.status == "failed"
    assert sent_text.last_error.startswith("Twilio reported the text undelivered (error 30003) after it was sent")
    patient.refresh_from_db()
    assert patient.sms_consent and not ContactOptOut.objects.exists()  # not the patient's choice

    reports.script = [accepted(OTHER_SID)]
    assert outbox_retry(message_ids=[sent_text.pk], now=now) == 1
    assert dispatch_local(now=now) == {SendOutcome.SENT: 1}
    sent_text.refresh_from_db()
    assert (sent_text.status, sent_text.provider_id) == ("sent", OTHER_SID)


@pytest.mark.parametrize("status", ["queued", "sent", "delivered", "read"])
def test_reports_of_a_text_on_its_way_or_delivered_change_nothing(client, sent_text, status):
    assert report(client, status=status, error="").status_code == 204
    sent_text.refresh_from_db()
    assert (sent_text.status, sent_text.last_error) == ("sent", "")


def test_every_row_the_text_carried_fails_with_it(client, sent_text):
    """A text may carry companions (reminders merged into one message): they share its provider id."""
    companion = OutboxMessage.objects.filter(appointment=sent_text.appointment, channel="sms").exclude(pk=sent_text.pk)[
        0
    ]
    OutboxMessage.objects.filter(pk=companion.pk).update(status="sent", provider_id=SID)

    assert report(client, status="failed", error="30008").status_code == 204
    statuses = OutboxMessage.objects.filter(pk__in=[sent_text.pk, companion.pk]).values_list("status", flat=True)
    assert set(statuses) == {"failed"}


def test_a_refusal_after_the_patients_stop_to_the_provider_turns_texts_off(client, sent_text, patient):
    """Twilio reports 21610 by status callback where a Messaging Service sends the text: the STOP the provider
    heard, recorded as the refusal heard at once is (test_provider_stop.py)."""
    sibling = PatientFactory(
        clinic=patient.clinic, first_name="Bo", phone=patient.phone, reminder_channels=["sms"], sms_consent=True
    )
    assert report(client, status="failed", error="21610").status_code == 204

    sent_text.refresh_from_db()
    assert sent_text.status == "failed" and "21610" in sent_text.last_error
    for stopped in (patient, sibling):
        stopped.refresh_from_db()
        assert (stopped.sms_consent, "sms" in stopped.reminder_channels) == (False, False)
        [opt_out] = ContactOptOut.objects.filter(patient=stopped)
        assert (opt_out.channel, opt_out.via) == ("sms", OptOutVia.SMS_PROVIDER)
        assert opt_out.detail == "Twilio reported the text failed (error 21610)"

    # Twilio sends a report again when it did not hear the answer: nothing more happens.
    assert report(client, status="failed", error="21610").status_code == 204
    assert ContactOptOut.objects.count() == 2
    sent_text.refresh_from_db()
    assert sent_text.status == "failed"


def test_a_report_of_a_text_not_sent_from_here_changes_nothing(client, sent_text, patient):
    assert report(client, sid=OTHER_SID, status="failed", error="21610").status_code == 204
    sent_text.refresh_from_db()
    patient.refresh_from_db()
    assert sent_text.status == "sent" and patient.sms_consent and not ContactOptOut.objects.exists()


def test_a_report_is_checked_by_its_signature(client, sent_text):
    params = {"MessageSid": SID, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert report(client, signature="bm90IGl0").status_code == 403
    # Signed for another URL (Twilio signs the URL it called): refused.
    wrong_url = signed(params, url="https://elsewhere.example/reminders/sms/status/")
    assert report(client, signature=wrong_url).status_code == 403
    sent_text.refresh_from_db()
    assert sent_text.status == "sent"


def test_without_a_configured_url_the_signature_is_of_the_url_called(client, settings, sent_text):
    """A Messaging Service's own status callback, set in Twilio's console: the URL Django sees."""
    settings.SMS_STATUS_CALLBACK_URL = ""
    params = {"MessageSid": SID, "MessageStatus": "undelivered", "ErrorCode": "30003", "To": "+447700900123"}
    signature = signed(params, url="http://testserver/reminders/sms/status/")
    assert report(client, signature=signature).status_code == 204
    sent_text.refresh_from_db()
    assert sent_text.status == "failed"


@pytest.mark.parametrize(
    "params",
    [
        {"MessageStatus": "undelivered"},  # no sid
        {"MessageSid": SID},  # no status
        {"MessageSid": "SM42", "MessageStatus": "failed"},  # not a message's sid
        {"MessageSid": SID + "\x00", "MessageStatus": "failed"},
    ],
)
def test_a_signed_request_that_is_not_a_report_is_a_400(client, sent_text, params):
    response = client.post("/reminders/sms/status/", params, HTTP_X_TWILIO_SIGNATURE=signed(params))
    assert response.status_code == 400
    sent_text.refresh_from_db()
    assert sent_text.status == "sent"


def test_only_a_post_from_a_provider_that_sends_reports_is_heard(client, settings, reports):
    assert client.get("/reminders/sms/status/").status_code == 405
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"  # sends no reports
    assert report(client).status_code == 404


def not_parked_either(**kwargs):
    return None  # reminders.reports.delivery_report_park's answer when the database does not answer


def test_a_report_not_recorded_is_parked_in_the_database_and_recorded_later_as_of_when_it_came(
    client, settings, sent_text, now, monkeypatch
):
    """Without a broker (the embedded local pipeline) too: the report is kept in the database that answered (its
    row was locked, say) and answered 202; run_dispatcher's or the beat's run records it later, as of when it came,
    and removes it. Twilio sends a report once: in Redis alone, a restart lost it."""
    settings.CELERY_BROKER_URL = ""
    with monkeypatch.context() as patched:
        patched.setattr(parked_reports, "delivery_reported", database_away)
        assert report(client).status_code == 202
    parked = ParkedDeliveryReport.objects.get()
    assert (parked.channel, parked.report["provider_id"], parked.report["failed"]) == ("sms", SID, True)
    sent_text.refresh_from_db()
    assert sent_text.status == "sent"  # not recorded yet

    with monkeypatch.context() as patched:  # the row still locked at the first run: kept, counted
        patched.setattr(parked_reports, "delivery_reported", database_away)
        assert parked_reports.parked_reports_record() == 0
    parked.refresh_from_db()
    assert (parked.attempts, parked.last_error) == (1, "DatabaseError: the database went away")

    assert parked_reports.parked_reports_record() == 1
    assert not ParkedDeliveryReport.objects.exists()
    sent_text.refresh_from_db()
    assert sent_text.status == "failed"
    assert sent_text.last_error.endswith(f"after it was sent, at {parked.received_at:%Y-%m-%d %H:%M} UTC")
    assert parked_reports.parked_reports_record() == 0  # nothing left, nothing twice


def test_the_beat_and_run_dispatcher_record_the_parked_reports(settings, sent_text, monkeypatch):
    from django.core.management import call_command

    from config.settings import CELERY_BEAT_SCHEDULE

    assert CELERY_BEAT_SCHEDULE["record-parked-reports"]["task"] == tasks.record_parked_reports.name
    runs = []
    monkeypatch.setattr(parked_reports, "parked_reports_record", lambda **kwargs: runs.append(kwargs) or 0)
    call_command("run_dispatcher", "--once")
    assert tasks.record_parked_reports() == 0 and len(runs) == 2


def test_a_report_read_but_not_recorded_nor_parked_without_workers_is_a_503(client, settings, sent_text, monkeypatch):
    """The embedded local pipeline has no broker: with the database away too, the report is only in the log."""
    settings.CELERY_BROKER_URL = ""
    monkeypatch.setattr(parked_reports, "delivery_reported", database_away)
    monkeypatch.setattr(parked_reports, "delivery_report_park", not_parked_either)
    assert report(client).status_code == 503


def test_a_report_read_but_not_recorded_when_the_broker_is_away_too_is_a_503(client, sent_text, monkeypatch):
    def broker_away(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(parked_reports, "delivery_reported", database_away)
    monkeypatch.setattr(parked_reports, "delivery_report_park", not_parked_either)
    # The broker's client failing is what is replaced here; tests/reminders/test_celery.py hands a report to real
    # workers on a real Redis.
    monkeypatch.setattr(tasks.record_delivery_report, "apply_async", broker_away)
    assert report(client).status_code == 503


def test_a_report_the_workers_record_later_is_recorded_as_of_when_it_came(sent_text, now, monkeypatch):
    """The task (run here in this process, as a worker would) tries again while the database is away, and records
    the report with the moment it came, not the moment it is recorded."""
    calls = []
    record = parked_reports.delivery_reported

    def away_once(**kwargs):
        calls.append(kwargs["now"])
        if len(calls) == 1:
            raise DatabaseError("the database went away")
        return record(**kwargs)

    monkeypatch.setattr(parked_reports, "delivery_reported", away_once)
    came = now + timedelta(minutes=5)
    fields = {"provider_id": SID, "failed": True, "stopped": False, "detail": "Twilio reported the text undelivered"}

    result = tasks.record_delivery_report.apply(args=("sms", fields, came.isoformat()))

    assert result.successful() and result.result == 1
    assert calls == [came, came]
    sent_text.refresh_from_db()
    assert sent_text.status == "failed"
    assert (
        sent_text.last_error == f"Twilio reported the text undelivered after it was sent, at {came:%Y-%m-%d %H:%M} UTC"
    )


def test_a_report_is_tried_again_for_about_a_day_each_wait_twice_the_last(settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}  # the default
    waits = [tasks.report_wait(n) for n in range(tasks.REPORT_RETRIES)]
    assert waits[:7] == [30, 60, 120, 240, 480, 960, 1800]
    assert max(waits) == 1800  # half the broker's visibility timeout: never handed out twice for waiting
    assert 23 * 3600 < sum(waits) < 26 * 3600


def test_a_shorter_visibility_timeout_shortens_the_longest_wait(settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
    assert max(tasks.report_wait(n) for n in range(tasks.REPORT_RETRIES)) == 300
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1}
    assert tasks.report_wait(0) == 1


def test_a_report_still_not_recorded_after_its_last_try_is_logged_with_its_contents(monkeypatch, caplog):
    monkeypatch.setattr(parked_reports, "delivery_reported", database_away)
    fields = {"provider_id": SID, "failed": True, "stopped": False, "detail": "Twilio reported the text undelivered"}

    result = tasks.record_delivery_report.apply(
        args=("sms", fields, "2026-03-02T09:00:00+00:00"), retries=tasks.REPORT_RETRIES
    )

    assert result.failed() and isinstance(result.result, DatabaseError)
    [given_up] = [r for r in caplog.records if r.name == "reminders.tasks"]
    assert given_up.levelname == "ERROR"
    assert "given up" in given_up.getMessage() and SID in given_up.getMessage()
    assert "2026-03-02T09:00:00+00:00" in given_up.getMessage()


def test_the_report_names_the_row_it_is_for_and_is_signed_over_that_url(client, sent_text):
    params = {"MessageSid": SID, "MessageStatus": "undelivered", "ErrorCode": "30003", "To": "+447700900123"}
    without_query = signed(params)  # the URL without the row: not the one Twilio called
    assert report(client, outbox=sent_text.pk, signature=without_query).status_code == 403
    assert report(client, outbox=sent_text.pk).status_code == 204
    sent_text.refresh_from_db()
    assert sent_text.status == "failed"


@pytest.fixture
def unheard_booking(client, reports, clinic, practitioner, now):
    """A texts-only patient's booking whose confirmation Twilio reported undelivered."""
    texts_only = PatientFactory(
        clinic=clinic, phone="+447700900777", email="", reminder_channels=["sms"], sms_consent=True
    )
    reports.script = [accepted(SID)]
    appointment = book(texts_only, "microneedling", WEDNESDAY_10, now)
    assert dispatch_local(now=now) == {SendOutcome.SENT: 1}
    assert report(client).status_code == 204
    return appointment


def test_after_an_undelivered_confirmation_the_cancellation_still_goes(unheard_booking, now):
    """The patient booked it; a handset off for a day gets the text later: a cancellation must still reach them
    (the confirmation counts as told: HANDED_OVER)."""
    appointment = unheard_booking
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=now)

    notice = OutboxMessage.objects.get(appointment=appointment, kind="cancelled", channel="sms")
    assert notice.status == "pending"
    assert dispatch_local(now=now) == {SendOutcome.SENT: 1}


def test_a_stop_not_recorded_leaves_the_text_sent_so_the_same_report_again_does_both(
    client, settings, sent_text, patient, monkeypatch
):
    settings.CELERY_BROKER_URL = ""
    with monkeypatch.context() as patched:
        patched.setattr(consent, "sms_provider_stopped", database_away)
        assert report(client, status="failed", error="21610").status_code == 202  # parked
    sent_text.refresh_from_db()
    assert sent_text.status == "sent"  # so that the report, should it come again, still matches

    assert report(client, status="failed", error="21610").status_code == 204
    sent_text.refresh_from_db()
    patient.refresh_from_db()
    assert sent_text.status == "failed" and not patient.sms_consent
    stops = ContactOptOut.objects.filter(patient=patient).count()
    assert parked_reports.parked_reports_record() == 1  # the parked one, recorded after: nothing more, nothing twice
    assert ContactOptOut.objects.filter(patient=patient).count() == stops


def test_a_refusal_of_a_text_sent_before_the_patient_texted_start_leaves_texts_on(client, sent_text, patient):
    """The report comes after the patient's STOP and START (or the desk switched texts back on): the refusal was
    of a text sent before that, and does not switch them off again."""
    consent.patient_opt_out(patient=patient, channel="sms", via="sms_stop", now=timezone.now())
    assert consent.sms_reply_opt_in(from_number=patient.phone, body="START", now=timezone.now()) == 1

    assert report(client, status="failed", error="21610").status_code == 204

    sent_text.refresh_from_db()
    patient.refresh_from_db()
    assert sent_text.status == "failed"
    assert patient.sms_consent and "sms" in patient.reminder_channels
    assert not ContactOptOut.objects.filter(via=OptOutVia.SMS_PROVIDER).exists()


def test_a_late_report_of_a_text_sent_again_changes_nothing(client, reports, sent_text, now):
    assert report(client).status_code == 204
    assert outbox_retry(message_ids=[sent_text.pk], now=now) == 1
    assert report(client, status="failed", error="30008").status_code == 204  # of the first send, heard late
    sent_text.refresh_from_db()
    assert (sent_text.status, sent_text.provider_id) == ("pending", SID)

    reports.script = [accepted(OTHER_SID)]
    dispatch_local(now=now)
    assert report(client, status="failed", error="30008").status_code == 204
    sent_text.refresh_from_db()
    assert (sent_text.status, sent_text.provider_id) == ("sent", OTHER_SID)


def test_an_error_code_that_is_not_one_is_left_out(client, sent_text):
    assert report(client, error="30003<script>").status_code == 204
    sent_text.refresh_from_db()
    assert sent_text.last_error.startswith("Twilio reported the text undelivered after it was sent")


def test_twilio_set_up_wrongly_here_is_a_503_not_a_500(client, reports, settings):
    settings.SMS_FROM = ""  # nor a Messaging Service: the backend cannot be made
    assert report(client).status_code == 503
    assert client.post("/reminders/sms/inbound/", {"From": "+447700900123", "Body": "STOP"}).status_code == 503


@pytest.mark.postgres
def test_a_report_that_comes_while_the_sender_still_holds_its_row_waits_for_it(transactional_db, client, sent_text):
    """Twilio may report before the sender has recorded its answer (the row `sending`, no id yet): the report
    names the row (`?outbox=`), waits for the sender's transaction and then finds the text it is about."""
    OutboxMessage.objects.filter(pk=sent_text.pk).update(status="sending", provider_id="")

    def sender_records_its_answer():
        OutboxMessage.objects.filter(pk=sent_text.pk).update(status="sent", provider_id=SID)

    with held_in_another_connection(sender_records_its_answer, release_after=0.5):
        assert report(client, outbox=sent_text.pk).status_code == 204
    sent_text.refresh_from_db()
    assert sent_text.status == "failed" and "30003" in sent_text.last_error


def test_after_an_undelivered_confirmation_is_sent_again_a_cancellation_still_goes(unheard_booking, now):
    """Waiting to go again, the confirmation was still handed over once (it keeps its `sent_at`): the patient may
    have it late, so the cancellation must follow (review of db4a76e: it was lost)."""
    appointment = unheard_booking
    confirmation = OutboxMessage.objects.get(appointment=appointment, kind="confirmation")
    assert outbox_retry(message_ids=[confirmation.pk], now=now + timedelta(minutes=1)) == 1

    appointment_cancel(appointment=appointment, actor=RECEPTION, now=now + timedelta(minutes=2))

    # Planned, and when it goes it still finds the patient told (booking_told), so it is sent, not dropped.
    dispatch_local(now=now + timedelta(hours=1))
    notice = OutboxMessage.objects.get(appointment=appointment, kind="cancelled", channel="sms")
    assert notice.status == "sent", notice.last_error


def test_the_time_an_undelivered_confirmation_named_is_still_the_one_the_patient_last_heard(client, sent_text, patient):
    assert report(client).status_code == 204
    assert last_told_start(sent_text.appointment) == WEDNESDAY_10


@pytest.mark.postgres
def test_a_report_waits_for_its_row_only_so_long_then_is_parked_and_recorded_once_the_row_is_free(
    transactional_db, client, settings, sent_text, monkeypatch
):
    """A sender stuck on the provider does not hold up the web worker past ROW_LOCK_WAIT: the report is parked in
    the database and answered 202, the row left as it is; once the sender lets go, the parked run records it (with
    workers: tests/reminders/test_celery.py)."""
    settings.CELERY_BROKER_URL = ""
    monkeypatch.setattr(dispatch, "ROW_LOCK_WAIT", "200ms")
    OutboxMessage.objects.filter(pk=sent_text.pk).update(status="sending", provider_id="")

    def stuck_sender():
        OutboxMessage.objects.select_for_update().filter(pk=sent_text.pk).exists()

    with held_in_another_connection(stuck_sender):
        assert report(client, outbox=sent_text.pk).status_code == 202
        sent_text.refresh_from_db()
        assert (sent_text.status, sent_text.last_error) == ("sending", "")
        assert parked_reports.parked_reports_record() == 0  # the row still locked: it waits
    assert ParkedDeliveryReport.objects.get().attempts == 1

    # The sender records the provider's answer and lets go; the next run records the report.
    OutboxMessage.objects.filter(pk=sent_text.pk).update(status="sent", provider_id=SID, sent_at=timezone.now())
    assert parked_reports.parked_reports_record() == 1
    sent_text.refresh_from_db()
    assert sent_text.status == "failed" and not ParkedDeliveryReport.objects.exists()
