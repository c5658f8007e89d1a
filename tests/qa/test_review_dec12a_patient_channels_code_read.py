"""Review probe (12 December, a): the patient-facing message plumbing read line by line: reminders/channels.py,
consent.py, links.py, feeds.py, pages.py, views.py and urls.py, with the templates they render (reminders/_page.html,
unsubscribe.html, unsubscribe_done.html, link_invalid.html, the e-mail's own), beside docs/reminders.md ("Unsubscribe",
"Inbound SMS", "A STOP only the provider heard", "Calendar feeds"), the domain brief's reminder sections and the API
contract.

Read for: an opt-out (a STOP reply, an unsubscribe link, consent withdrawn) that a later message ignores, or that
stops a message it should not; a link or feed token another patient or clinic could use, that never expires, or that
shows more than its holder should see; a token compared in non-constant time; an address normalised one way here and
another there; an inbound reply matched to the wrong patient (or to none); a GET that changes state; a feed with times
in the wrong zone, cancelled visits or another organisation's visits; bad input answered with a 500; patient-typed
text unescaped. Each suspicion is pinned by the smallest test that shows it, through the inbound SMS webhook, the
unsubscribe link, the patient's own page and the calendar feed, as a patient, a provider or a calendar app meets them.
The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT).

Found (strict xfails, since mended or decided; the tests now pass):
- DEFECT, mended: a reply that starts with OPTOUT written with a space ("Opt out please", "opt out of these texts")
  was not a STOP, though docs/reminders.md says spaces inside the keyword do not matter ("opt out") and a reply that
  starts with OPTOUT counts ("Stop please"); the two rules were applied apart (reminders/consent.py,
  `is_stop_reply`: the first two words run together now count as a leading keyword).
- QUESTION, decided: a hyphenated keyword ("opt-out", "Stop-all") was no STOP; a hyphen inside a reply's word is now
  read as a space (reminders/consent.py, `is_stop_reply`).
- DEFECT, mended: a STOP from a sender written in the US national form ("(212) 555-0123", "212 555 0123") reached no
  patient of a New York clinic: only a sender starting with 0 was read as national, and bare digits as international
  only (+212..., Morocco), though docs/reminders.md reads a national-form sender "as a number of each country that
  has a clinic" (reminders/consent.py, `sender_patients`: now read in each clinic's country where it is valid there).
- QUESTION, decided: the unsubscribe page said "You will no longer get appointment reminders or care instructions by
  e-mail", yet the opt-out stops every e-mail: an e-mail-only patient whose visit the clinic then cancels hears
  nothing of it (consent.patient_accepts has no exception for notices). The page now says that confirmations,
  changes and cancellations stop too (reminders/templates/reminders/unsubscribe.html).
- QUESTION, decided: a patient who replied STOP and switched texts back on from their own page, where the SMS
  provider blocks a number after STOP (Twilio), was never told to text START (the desk is:
  consent.sms_restart_advice); their next text was refused (21610), recorded as a STOP, and texts went off again
  without a word to them. The page's answer now gives the advice (reminders/consent.py, `patient_preferences_update`
  and `patient_sms_restart_advice`; portal/views.py, `preferences`).
- QUESTION, decided: a practitioner switched off (Practitioner.is_active false) kept a live calendar feed until
  someone revoked it in the admin; it is now a 404 like a revoked one (reminders/feeds.py, `calendar_feed_for_token`).

Held (passing): the signed links' and the inbound webhook's secrets are compared in constant time (the manage link's
MAC, the unsubscribe link's signature, SMS_INBOUND_TOKEN, Twilio's signature); a HEAD of a real unsubscribe link (a
scanner's) is a 405 and changes nothing; a patient's feed holds their own visits at every site of their organisation,
each in its clinic's zone with that zone's VTIMEZONE, a cancelled one as STATUS:CANCELLED, and nobody else's (another
patient's at the same clinic, another organisation's). Read and found right without a test here (each pinned by an
earlier probe or tests/reminders): a GET of the unsubscribe link only asks; one-click POST without CSRF; forged,
foreign-salted and oddly shaped links are 400s; links follow a merge one hop; the manage link's expiry follows the
visit as it stands; feed tokens stored hashed (looked up by SHA-256, so their comparison leaks nothing), revoked on
renewal, served `private, no-store`, with no link to the patient's page; e-mail complaints matched case aside and only
while the address is the patient's; a START opting in only a STOP's own records; e-mail HTML, subjects and calendar
files escaping patient-typed names (tests/qa/test_review_dec8b_outputs_escaping.py).
"""

from __future__ import annotations

import hmac as hmac_module
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail, signing
from django.test import Client
from icalendar import Calendar

from clinic.models import AppointmentStatus
from reminders import consent, links, reports
from reminders.consent import unsubscribe_url
from reminders.dispatch import dispatch_local
from reminders.feeds import calendar_feed_create, feed_url
from reminders.links import manage_token
from reminders.models import ContactOptOut, OptOutVia
from scheduler.booking import appointment_cancel
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, RECEPTION, book, form_on, fresh, ldn, nyc, portal_page, words
from tests.reminders.conftest import twilio  # noqa: F401 (fixture: Twilio's API as a local fake server)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock", "care_texts", "message_outboxes")]

MOBILE = "+447911123456"  # a valid GB mobile
NY_MOBILE = "+12125550123"  # a valid New York number
REFUSED_AFTER_STOP = (400, b'{"code": 21610, "message": "Attempt to send to unsubscribed recipient"}')


@pytest.fixture
def texter(clinic):
    """A London patient on e-mail and texts, consented."""
    return PatientFactory(
        clinic=clinic,
        first_name="Ada",
        email="ada@example.com",
        phone=MOBILE,
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )


def inbound(client, sender: str, body: str):
    """A reply as the SMS provider posts it, with the inbound token."""
    return client.post("/reminders/sms/inbound/?token=t", {"From": sender, "Body": body})


def texts_on(patient) -> bool:
    return consent.channels_on(fresh(patient))["sms"]


# --- consent.is_stop_reply: the two documented rules together ------------------------------------------------------


@pytest.mark.parametrize("body", ["Opt out please", "opt out of these texts"])
def test_a_reply_starting_with_opt_out_written_with_a_space_is_a_stop(client, settings, texter, body):
    """docs/reminders.md, "Inbound SMS": "Case, spaces and punctuation around the words do not matter, nor do spaces
    inside the keyword ("stop all", "opt out"); a reply that starts with STOP, STOPALL, UNSUBSCRIBE or OPTOUT counts
    too ("Stop please")". "opt out" alone stops; "Opt out please" starts with it. (Was a strict-xfail DEFECT,
    mended: reminders/consent.py, `is_stop_reply` reads the first two words run together as a leading keyword.)"""
    settings.SMS_INBOUND_TOKEN = "t"
    assert inbound(client, MOBILE, "opt out").status_code == 200 and not texts_on(texter)  # the keyword alone
    consent.sms_reply(from_number=MOBILE, body="START", now=NOW + timedelta(minutes=1))
    assert texts_on(texter)
    assert inbound(client, MOBILE, body).status_code == 200
    assert not texts_on(texter)
    assert list(ContactOptOut.objects.values_list("via", flat=True)) == [OptOutVia.SMS_STOP, OptOutVia.SMS_STOP]


@pytest.mark.parametrize("body", ["opt-out", "Stop-all"])
def test_a_hyphenated_stop_keyword_is_a_stop(client, settings, texter, body):
    """The code's own reading: "a STOP not honoured is worse than one read widely" (consent.sender_patients). "opt
    out" and "stop all" are read as OPTOUT and STOPALL; the same words with a hyphen, as a phone's keyboard writes
    "opt-out", are chatter. (Was a strict-xfail QUESTION, decided: reminders/consent.py, `is_stop_reply` reads a
    hyphen inside a word as a space.)"""
    settings.SMS_INBOUND_TOKEN = "t"
    assert inbound(client, MOBILE, body).status_code == 200
    assert not texts_on(texter)
    assert list(ContactOptOut.objects.values_list("via", flat=True)) == [OptOutVia.SMS_STOP]


# --- consent.sender_patients: a national form without a trunk 0 ----------------------------------------------------


@pytest.mark.parametrize("sender", ["(212) 555-0123", "212 555 0123"])
def test_a_stop_from_a_us_national_form_sender_reaches_the_new_york_patient(client, settings, other_clinic, sender):
    """docs/reminders.md, "Inbound SMS": "'That number' is the patient's number however the provider writes the
    sender ... A sender in national form (`07911 123456`) is read as a number of each country that has a clinic, and
    every number that results is stopped (a STOP not honoured is worse than one read widely)". The New York clinic's
    country is US: "(212) 555-0123" there is +12125550123, the patient's number. The international form reaches them
    (the control). (Was a strict-xfail DEFECT, mended: reminders/consent.py, `sender_patients` reads a sender with
    no trunk 0 in national form too, in each clinic's country where it is a valid number there.)"""
    settings.SMS_INBOUND_TOKEN = "t"
    assert other_clinic.country == "US"
    pia = PatientFactory(clinic=other_clinic, phone=NY_MOBILE, reminder_channels=["sms"], sms_consent=True)
    control = PatientFactory(clinic=other_clinic, phone="+12125550199", reminder_channels=["sms"], sms_consent=True)
    assert inbound(client, "+1 212 555 0199", "STOP").status_code == 200
    assert not texts_on(control)
    assert inbound(client, sender, "STOP").status_code == 200
    assert not texts_on(pia)
    assert ContactOptOut.objects.get(patient=pia).detail == f"reply from {sender}"


# --- views.unsubscribe: what the page says stops, and what does -----------------------------------------------------


def test_the_unsubscribe_page_says_that_notices_of_changes_and_cancellations_stop_too(clinic, practitioner):
    """The domain brief: patients "receive confirmations and care reminders by email and/or SMS, per their consent,
    and can opt out". The patient's own page keeps two things apart ("Booking confirmations and changes to your
    appointments are always sent, on the channels you keep on"); the unsubscribe link, offered by every mail client on
    every e-mail (List-Unsubscribe), switches the channel off, so an e-mail-only patient's cancellation goes nowhere,
    while its page said "You will no longer get appointment reminders or care instructions by e-mail". (Was a
    strict-xfail QUESTION, decided: reminders/templates/reminders/unsubscribe.html says every e-mail stops,
    confirmations and notices of changes and cancellations too.)"""
    ivy = PatientFactory(clinic=clinic, first_name="Ivy", email="ivy@example.com", reminder_channels=["email"])
    appointment = book(ivy, ldn(2026, 3, 10), NOW)
    dispatch_local(now=NOW)
    assert len(mail.outbox) == 1  # the confirmation, with the link
    path = urlsplit(unsubscribe_url(patient_id=ivy.pk)).path
    assert f"<{unsubscribe_url(patient_id=ivy.pk)}>" == mail.outbox[0].extra_headers["List-Unsubscribe"]
    page = Client().get(path)
    assert page.status_code == 200
    assert Client().post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    mail.outbox.clear()
    appointment_cancel(appointment=appointment, actor=RECEPTION, now=NOW + timedelta(hours=1))
    dispatch_local(now=NOW + timedelta(hours=2))
    assert mail.outbox == []  # the clinic's cancellation reaches nobody
    assert fresh(appointment).status == AppointmentStatus.CANCELLED
    said = words(page)
    assert "You will no longer get" in said
    assert "cancel" in said.lower(), said


def test_a_scanners_head_of_a_real_unsubscribe_link_changes_nothing(texter):
    """docs/reminders.md: "a GET alone changes nothing, because link scanners fetch links"; some fetch with HEAD."""
    path = urlsplit(unsubscribe_url(patient_id=texter.pk)).path
    assert Client().head(path).status_code == 405
    assert Client().get(path).status_code == 200
    assert consent.channels_on(fresh(texter)) == {"email": True, "sms": True}
    assert not ContactOptOut.objects.exists()


# --- consent.patient_preferences_update: texts back on after a STOP the provider still blocks -----------------------


def test_texts_switched_back_on_from_the_page_after_a_stop_tell_the_patient_to_text_start(
    clock,
    twilio,  # noqa: F811 (the imported fixture)
    texter,
    practitioner,
):
    """docs/reminders.md, "A STOP only the provider heard": "Where the provider blocks after a STOP (Twilio,
    `blocks_after_stop`), the desk's consent box says texts reach the patient again only once they text START,
    switching them on at the desk does not lift the block". The patient's own page switches them on the same way
    (with the consent tick), and is told nothing: Twilio refuses the reminder (21610), which is recorded as the
    patient's STOP, and texts are off again. (Was a strict-xfail QUESTION, decided: reminders/consent.py,
    `patient_preferences_update` returns `advice` (`patient_sms_restart_advice`), which portal/views.py,
    `preferences`, adds to its answer.)"""
    twilio.default = REFUSED_AFTER_STOP
    assert reports.sms_reply_heard(from_number=MOBILE, body="STOP", now=NOW) == 1
    appointment = book(texter, ldn(2026, 3, 10), NOW)
    client = Client()
    page = client.get(portal_page(appointment))
    data = {**form_on(page, "preferences/"), "sms": "on", "sms_consent": "on"}
    answer = client.post(portal_page(appointment, "preferences"), data, follow=True)
    assert answer.status_code == 200
    assert texts_on(texter)  # the page switched them on
    later = ldn(2026, 3, 9, 10, 30)
    clock.move_to(later)
    dispatch_local(now=later)
    assert [r.status for r in twilio.requests] == [400]  # the reminder, refused: the number is blocked
    assert not texts_on(texter)
    assert ContactOptOut.objects.filter(patient=texter).latest("at").via == OptOutVia.SMS_PROVIDER
    assert "START" in words(answer), words(answer)


# --- feeds: who sees what, in which zone, for how long ---------------------------------------------------------------


def feed(token: str):
    response = Client().get(urlsplit(feed_url(token)).path)
    assert response.status_code == 200, response.status_code
    calendar = Calendar.from_ical(response.content)
    return calendar, {str(e["uid"]): e for e in calendar.walk("VEVENT")}


def test_a_patients_feed_holds_their_visits_at_every_site_each_in_its_zone_and_nobody_elses(
    clinic, practitioner, patient, other_clinic, other_patient, other_practitioner
):
    """docs/reminders.md, "Calendar feeds": one patient's appointments, "an entry moves in place and a cancelled one
    stays as STATUS:CANCELLED ... Times are in the clinic's zone with its VTIMEZONE". The patient's organisation has a
    New York site: the visit there is in New York's zone, the London one in London's, both zones defined; another
    patient's visit at the same clinic and another organisation's are not there."""
    hudson = ClinicFactory(
        code="qa-hudson", name="Hudson Site", timezone="America/New_York", organisation=clinic.organisation
    )
    PractitionerFactory(clinic=hudson, name="Dr Hudson")
    here = book(patient, ldn(2026, 3, 10), NOW, code="botox")
    there = book(patient, nyc(2026, 3, 20), NOW, code="filler", clinic_id=hudson.pk)
    gone = book(patient, ldn(2026, 6, 16), NOW, code="botox")
    appointment_cancel(appointment=gone, actor=RECEPTION, now=NOW)
    neighbour = book(PatientFactory(clinic=clinic), ldn(2026, 3, 10, 14), NOW, code="botox")
    elsewhere = book(other_patient, nyc(2026, 3, 10), NOW, code="botox")
    _, token = calendar_feed_create(now=NOW, patient=patient)
    calendar, events = feed(token)
    uid = "appointment-{}@clinic-scheduling".format
    assert set(events) == {uid(here.pk), uid(there.pk), uid(gone.pk)}
    assert uid(neighbour.pk) not in events and uid(elsewhere.pk) not in events
    assert str(events[uid(gone.pk)]["status"]) == "CANCELLED"
    assert str(events[uid(here.pk)]["dtstart"].params["TZID"]) == "Europe/London"
    assert str(events[uid(there.pk)]["dtstart"].params["TZID"]) == "America/New_York"
    assert events[uid(there.pk)].decoded("dtstart") == nyc(2026, 3, 20)
    assert sorted(str(z["tzid"]) for z in calendar.walk("VTIMEZONE")) == ["America/New_York", "Europe/London"]


def test_a_switched_off_practitioners_feed_is_no_longer_served(patient, practitioner):
    """docs/reminders.md: "The action *Revoke* turns the URL into a 404 at once; a lost link is revoked and
    replaced". A practitioner who leaves is switched off (Practitioner.is_active); their feed URL, in a calendar on a
    phone they keep, goes on showing the clinic's visits booked with them. (Was a strict-xfail QUESTION, decided:
    reminders/feeds.py, `calendar_feed_for_token` finds no feed of a switched-off practitioner.)"""
    book(patient, ldn(2026, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    _, token = calendar_feed_create(now=NOW, practitioner=practitioner)
    path = urlsplit(feed_url(token)).path
    assert Client().get(path).status_code == 200
    practitioner.is_active = False
    practitioner.save(update_fields=["is_active"])
    assert Client().get(path).status_code == 404


# --- Secrets compared in constant time -----------------------------------------------------------------------------


def test_the_links_and_the_inbound_webhooks_secrets_are_compared_in_constant_time(
    client, settings, monkeypatch, texter, practitioner
):
    """A link's MAC, a signed token's signature and a webhook's token, compared with `==`, would leak how much of a
    guess is right by how long the answer takes. Each comparison goes through a constant-time compare: the manage
    link's MAC (links.constant_time_compare), the unsubscribe link's signature (django.core.signing's),
    SMS_INBOUND_TOKEN and Twilio's signature (hmac.compare_digest)."""
    seen: list[str] = []

    def spy(name, real):
        def compare(a, b):
            seen.append(name)
            return real(a, b)

        return compare

    monkeypatch.setattr(links, "constant_time_compare", spy("manage", links.constant_time_compare))
    monkeypatch.setattr(signing, "constant_time_compare", spy("unsubscribe", signing.constant_time_compare))
    monkeypatch.setattr(hmac_module, "compare_digest", spy("webhook", hmac_module.compare_digest))
    appointment = book(texter, ldn(2026, 3, 10), NOW)
    good = manage_token(appointment)
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert client.get(f"/my/{forged}/").status_code == 400
    assert seen == ["manage"]
    token = consent.unsubscribe_token(patient_id=texter.pk)
    assert client.get(f"/reminders/unsubscribe/{token[:-2]}xx/").status_code == 400
    assert "unsubscribe" in seen
    settings.SMS_INBOUND_TOKEN = "right-token"
    seen.clear()
    refused = client.post("/reminders/sms/inbound/?token=wrong-token", {"From": MOBILE, "Body": "STOP"})
    assert refused.status_code == 403 and seen == ["webhook"]
    settings.SMS_BACKEND = "reminders.channels.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.SMS_FROM = "AC1", "auth", "+447700900999"
    seen.clear()
    unsigned = client.post("/reminders/sms/inbound/", {"From": MOBILE, "Body": "STOP"}, HTTP_X_TWILIO_SIGNATURE="x")
    assert unsigned.status_code == 403 and seen == ["webhook"]
    assert texts_on(texter)
