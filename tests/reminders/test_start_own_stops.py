# ruff: noqa: F811 (the fixtures imported from test_sms_delivery_reports are named as the tests ask for them)
"""A START records first the parked STOPs of texts to its own number only (reminders.reports.sms_reply_heard): another
number's parked STOP, whose row may be held, must not spend the START's time inside the inbound webhook, nor be
recorded by it (the next run takes it). And the desk still hears of a patient's own STOP under a merge's opt-out
(reminders.consent.latest_own_opt_out): the provider blocks the number until START whatever staff switch on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clinic.merging import patient_merge
from reminders import reports as parked_reports
from reminders.consent import latest_own_opt_out, sms_reply
from reminders.models import ContactOptOut, ParkedDeliveryReport
from tests.factories import PatientFactory
from tests.reminders.helpers import SID, park, text_sent

pytestmark = pytest.mark.django_db


def test_a_start_records_its_own_numbers_parked_stop_and_leaves_another_numbers(clinic, practitioner, now):
    mine = text_sent(clinic, now, phone="+447700900601", sid=SID, hours_later=0)
    theirs = text_sent(clinic, now, phone="+447700900602", sid=SID + "b", hours_later=1)
    park(mine, now + timedelta(minutes=1), stopped=True)
    other = park(theirs, now + timedelta(minutes=1), stopped=True)

    parked_reports.sms_reply_heard(from_number=mine.recipient, body="START", now=now + timedelta(minutes=5))

    assert list(ParkedDeliveryReport.objects.values_list("pk", flat=True)) == [other.pk]
    other.refresh_from_db()
    assert other.attempts == 0  # not tried: not this sender's
    assert ContactOptOut.objects.filter(patient=mine.appointment.patient, via="sms_provider").exists()
    assert not ContactOptOut.objects.filter(patient=theirs.appointment.patient).exists()


def test_the_desk_still_hears_of_the_patients_own_stop_beneath_a_merges_opt_out(clinic, now):
    number = "+447700900611"
    survivor = PatientFactory(clinic=clinic, phone=number, reminder_channels=["email"], sms_consent=False)
    duplicate = PatientFactory(clinic=clinic, phone=number, reminder_channels=["email", "sms"], sms_consent=True)
    assert sms_reply(from_number=number, body="STOP", now=now) == 1  # the duplicate's texts were on
    patient_merge(merged=duplicate, into=survivor, actor_label="t", clinical=True, now=now + timedelta(minutes=1))
    survivor.refresh_from_db()

    assert ContactOptOut.objects.filter(patient=survivor, via="merge").exists()
    stopped = latest_own_opt_out(survivor, "sms")
    assert stopped is not None and stopped.via == "sms_stop"

    # Texts switched back on since: nothing stops them, nothing to tell.
    survivor.sms_consent, survivor.reminder_channels = True, ["email", "sms"]
    survivor.save(update_fields=["sms_consent", "reminder_channels"])
    assert latest_own_opt_out(survivor, "sms") is None
