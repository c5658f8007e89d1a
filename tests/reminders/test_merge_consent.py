"""A START after two records were merged undoes only what it would have undone on either record.

The joined record gets texts only where both records had them (clinic.merging._stricter_consent), and a START is
no first consent: it undoes the patient's own STOP, nothing else (reminders.consent.sms_reply_opt_in). The merge
moves every opt-out of the merged record to the survivor, so the other record's STOP would read as the survivor's
own: when one record's texts were off for a reason a START cannot undo (never agreed, switched off by staff) and the
other's were on or off by its own STOP, the merge records an opt-out of its own (`via` merge,
reminders.consent.merge_consent_record), which a START leaves standing.
"""

from datetime import timedelta

import pytest

from clinic.merging import patient_merge
from reminders.consent import sms_reply
from reminders.models import ContactOptOut, OptOutVia
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NUMBER = "+447700900777"


def person(clinic, name, **contact):
    values = {"phone": NUMBER, "email": f"{name.lower()}@example.com", "reminder_channels": ["email", "sms"]}
    values["sms_consent"] = True
    values.update(contact)
    return PatientFactory(clinic=clinic, first_name="Ada", last_name=name, **values)


def merge_then_start(clinic, now, survivor, duplicate):
    patient_merge(merged=duplicate, into=survivor, actor_label="test", clinical=True, now=now + timedelta(minutes=1))
    sms_reply(from_number=NUMBER, body="START", now=now + timedelta(minutes=2))
    survivor.refresh_from_db()
    return survivor


def merge_opt_outs(patient):
    return list(ContactOptOut.objects.filter(patient=patient, via=OptOutVia.MERGE))


def test_both_agreed_one_stopped_then_start_brings_texts_back(clinic, now):
    survivor = person(clinic, "Lee", phone="+447700900778")  # its own number, texts on
    duplicate = person(clinic, "Leigh")
    sms_reply(from_number=NUMBER, body="STOP", now=now)
    survivor.phone = NUMBER  # (the survivor's number is the duplicate's: same person)
    survivor.save(update_fields=["phone"])
    survivor = merge_then_start(clinic, now, survivor, duplicate)
    assert survivor.sms_consent and "sms" in survivor.reminder_channels
    assert merge_opt_outs(survivor) == []


def test_both_stopped_then_start_brings_texts_back(clinic, now):
    survivor, duplicate = person(clinic, "Lee"), person(clinic, "Leigh")
    assert sms_reply(from_number=NUMBER, body="STOP", now=now) == 2
    survivor = merge_then_start(clinic, now, survivor, duplicate)
    assert survivor.sms_consent
    assert merge_opt_outs(survivor) == []


def test_the_survivor_never_agreed_the_duplicate_stopped_texts_stay_off_after_start(clinic, now):
    survivor = person(clinic, "Lee", reminder_channels=["email"], sms_consent=False)
    duplicate = person(clinic, "Leigh")
    assert sms_reply(from_number=NUMBER, body="STOP", now=now) == 1  # the duplicate's texts were on
    survivor = merge_then_start(clinic, now, survivor, duplicate)
    assert not survivor.sms_consent and "sms" not in survivor.reminder_channels
    [recorded] = merge_opt_outs(survivor)
    assert recorded.channel == "sms" and not recorded.was_on
    assert recorded.at == now + timedelta(minutes=1) and str(duplicate.pk) in recorded.detail


def test_the_duplicate_never_agreed_the_survivors_texts_go_off_and_a_start_leaves_them_off(clinic, now):
    survivor = person(clinic, "Lee")
    duplicate = person(clinic, "Leigh", reminder_channels=["email"], sms_consent=False)
    survivor = merge_then_start(clinic, now, survivor, duplicate)
    assert not survivor.sms_consent
    [recorded] = merge_opt_outs(survivor)
    assert recorded.was_on  # the survivor's texts reached the patient until the merge


def test_neither_ever_agreed_records_nothing(clinic, now):
    survivor = person(clinic, "Lee", reminder_channels=["email"], sms_consent=False)
    duplicate = person(clinic, "Leigh", reminder_channels=["email"], sms_consent=False)
    survivor = merge_then_start(clinic, now, survivor, duplicate)
    assert not survivor.sms_consent
    assert ContactOptOut.objects.filter(patient=survivor).count() == 0


def test_a_stop_after_the_merge_is_undone_by_start_as_ever(clinic, now):
    """The merge's own opt-out stands only until texts are on again: agreed at the desk afterwards, then a STOP and
    a START, texts come back."""
    survivor = person(clinic, "Lee")
    duplicate = person(clinic, "Leigh", reminder_channels=["email"], sms_consent=False)
    survivor = merge_then_start(clinic, now, survivor, duplicate)
    assert merge_opt_outs(survivor) and not survivor.sms_consent
    survivor.sms_consent, survivor.reminder_channels = True, ["email", "sms"]
    survivor.save(update_fields=["sms_consent", "reminder_channels"])
    sms_reply(from_number=NUMBER, body="STOP", now=now + timedelta(minutes=3))
    sms_reply(from_number=NUMBER, body="START", now=now + timedelta(minutes=4))
    survivor.refresh_from_db()
    assert survivor.sms_consent
