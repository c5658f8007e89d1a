"""What messages say: the shipped care texts, template checks, e-mail headers, .ics, no clinical words by SMS."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils.html import strip_tags
from icalendar import Calendar

from reminders.channels import LocmemSmsBackend
from reminders.consent import unsubscribe_token_read
from reminders.defaults import CARE_TEXTS, care_texts_load
from reminders.dispatch import dispatch_local
from reminders.models import ReminderTemplate, TemplateOrigin
from reminders.texts import sms_fold, sms_segments, sms_text_problem
from scheduler.booking import appointment_reschedule
from tests.factories import PatientFactory
from tests.reminders.conftest import RECEPTION, book, london

WEDNESDAY_10 = london(2026, 3, 4, 10)


# --- The shipped plans ------------------------------------------------------------------------------------


# Every statement the sourced microneedling texts must carry (docs/sources.md: [001], [000], [002]).
MICRONEEDLING_PRE_CARE = [
    "Stop topical retinoids (Retin-A) now.",
    "Avoid sun exposure on the area to be treated.",
    "If you are on autoimmune therapy, talk to the clinic about pausing it.",
]
MICRONEEDLING_POST_CARE = [
    "Do not wash your face for at least 5 hours, ideally 12.",
    "No makeup, eyelids included, for 48 hours.",
    "Avoid sunlight and heavily scented creams for 24 hours.",
    "A hyaluronic acid serum may be used for the first 3 days.",
    "Redness like a mild sunburn, tightness and tingling are expected and fade within hours.",
    "No direct sun for 2 days; wear a hat.",
    "No public bathing, sunbathing, tanning salon, sauna, other beauty treatments, sweaty training or dusty chores.",
    "{% for item in next_possible %}",
    "Call the clinic if you notice spreading redness, pus, fever, darkening of the skin, or lasting numbness.",
]


@pytest.mark.parametrize(
    "key, anchor, offset, phrases",
    [
        ("microneedling-pre-care-24h", "start", (-24, "hours"), MICRONEEDLING_PRE_CARE),
        ("microneedling-post-care-completion", "completion", (0, "hours"), MICRONEEDLING_POST_CARE),
        ("microneedling-post-care-48h", "completion", (48, "hours"), ["makeup may be used again"]),
        ("microneedling-post-care-7d", "completion", (7, "days"), ["the one-week restrictions end today"]),
    ],
)
def test_the_sourced_microneedling_set_is_seeded_as_the_sources_give_it(care_texts, key, anchor, offset, phrases):
    template = ReminderTemplate.objects.get(default_key=key)
    assert (template.procedure_id, template.anchor, (template.offset_value, template.offset_unit)) == (
        "microneedling",
        anchor,
        offset,
    )
    assert template.origin == TemplateOrigin.SOURCED and template.source.startswith("[001] ")
    for phrase in phrases:
        assert phrase in template.email_text
        if template.email_html and not phrase.startswith("{%"):
            assert phrase in strip_tags(template.email_html)


def test_other_procedures_get_clearly_marked_clinic_templates(care_texts):
    for code in ("botox", "filler", "plasma_pen"):
        templates = ReminderTemplate.objects.filter(procedure_id=code)
        assert {t.kind for t in templates} == {"pre_care", "post_care"}
        for template in templates:
            assert template.origin == TemplateOrigin.CLINIC
            assert "CLINIC TEMPLATE, not sourced" in template.name
            assert template.source.startswith("Clinic template: not from the published sources")


def test_loading_the_care_texts_is_idempotent_and_keeps_edits(care_texts):
    template = ReminderTemplate.objects.get(default_key="day-before-reminder")
    template.sms_text = "{{ clinic_name }}: see you tomorrow at {{ start_time }}."
    template.save()

    assert care_texts_load() == 0
    assert ReminderTemplate.objects.count() == len(json.loads(CARE_TEXTS.read_text())["templates"]) == 14
    template.refresh_from_db()
    assert template.sms_text == "{{ clinic_name }}: see you tomorrow at {{ start_time }}."


def test_loading_the_care_texts_updates_an_old_file_path_citation_only(care_texts):
    ReminderTemplate.objects.filter(default_key="microneedling-post-care-completion").update(
        source="001, 000, 002 (reference/seeds/)", email_subject="Your aftercare"
    )
    ReminderTemplate.objects.filter(default_key="microneedling-post-care-48h").update(source="Clinic protocol v2")

    assert care_texts_load() == 0

    edited = ReminderTemplate.objects.get(default_key="microneedling-post-care-completion")
    assert edited.source.startswith("[001] ") and edited.source.endswith("(docs/sources.md)")
    assert edited.email_subject == "Your aftercare"
    assert ReminderTemplate.objects.get(default_key="microneedling-post-care-48h").source == "Clinic protocol v2"


def test_a_broken_shipped_text_fails_the_load_loudly_and_loads_none_of_the_file(catalogue, tmp_path):
    shipped = json.loads(CARE_TEXTS.read_text())
    broken = shipped["templates"][-1]
    broken["sms_text"] = "{{ clinic_name }}: no Botox for 24 hours after your visit."
    fixture = tmp_path / "care_texts.json"
    fixture.write_text(json.dumps(shipped))

    with pytest.raises(ValidationError) as refused:
        care_texts_load(fixture)

    assert "botox" in str(refused.value.message_dict["sms_text"]).lower()
    assert ReminderTemplate.objects.count() == 0  # the good ones before it are not loaded either
    assert care_texts_load() == 14  # the shipped file, untouched, still loads whole


# --- Template checks (the admin form runs these) ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, offending",
    [
        ("Your Botox is tomorrow", "botox"),
        ("Stop your Retin-A tonight", "retin-a"),
        ("Microneedling at 10:00", "microneedling"),
        ("Your eczema check", "eczema"),
        ("About your isotretinoin course", "isotretinoin"),
        ("Your plasma pen visit", "plasma pen"),
        ("your cold sores", "cold sores"),
    ],
)
def test_an_sms_may_not_name_a_procedure_drug_or_diagnosis(catalogue, text, offending):
    assert offending in sms_text_problem(text)


def test_everyday_words_inside_catalogue_names_are_allowed_by_sms(catalogue):
    assert sms_text_problem("Active reminder: avoid the solar glare and no makeup for 48 hours.") == ""


def test_an_sms_is_at_most_three_segments_counted_as_carriers_count_them(catalogue):
    # Three concatenated GSM-7 segments hold 3 x 153 = 459 characters, not 480.
    assert sms_text_problem("x" * 459) == ""
    assert sms_text_problem("x" * 460) == (
        "An SMS may take at most 3 segments (459 plain characters, fewer with accents outside the GSM alphabet "
        "or emoji); this one takes 4 (GSM-7, 460 characters)."
    )
    # One character outside GSM-7 turns the whole text into UCS-2: 3 x 67 = 201.
    assert sms_text_problem("x" * 200 + "д") == ""  # a Cyrillic letter: no look-alike in GSM-7
    assert "takes 4 (UCS-2" in sms_text_problem("x" * 201 + "д")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", (0, "GSM-7")),
        ("x" * 160, (1, "GSM-7")),
        ("x" * 161, (2, "GSM-7")),
        ("x" * 306, (2, "GSM-7")),
        ("x" * 307, (3, "GSM-7")),
        ("€" * 80, (1, "GSM-7")),  # the euro sign is an extension character: two septets each
        ("€" * 81, (2, "GSM-7")),
        ("é" * 160, (1, "GSM-7")),  # é is in the default alphabet
        ("ó" * 70, (1, "UCS-2")),  # ó is not
        ("ó" * 71, (2, "UCS-2")),
        ("🙂" * 35, (1, "UCS-2")),  # an emoji is two UTF-16 units
        ("🙂" * 36, (2, "UCS-2")),
    ],
)
def test_segments_are_counted_per_encoding(text, expected):
    assert sms_segments(text) == expected


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Clínica Bella", "Clinica Bella"),  # í is not in the GSM alphabet: i
        ("Dr Smith\u2019s \u2013 \u201ccare\u201d\u2026", 'Dr Smith\'s - "care"...'),
        ("Café Ñandú, ça", "Café Ñandu, ca"),  # é and Ñ are in it and stay; ú and ç are not
        ("10\u00a0March\u200b", "10 March"),  # a non-breaking space, a zero-width one
        ("Clínica 😀", "Clínica 😀"),  # UCS-2 anyway (the emoji): kept exactly as written
        ("Łódź", "Lodz"),  # Ł's stroke is no accent (NFKD keeps it): folded by its own look-alike
        ("Iğdır", "Igdir"),  # so is the dotless ı
        ("Клиника", "Клиника"),  # another script has none: kept
        ("Plain text, €5 [ok]", "Plain text, €5 [ok]"),
    ],
)
def test_an_sms_is_folded_into_the_gsm_alphabet_where_every_character_has_a_look_alike(text, folded):
    assert sms_fold(text) == folded
    assert sms_fold(folded) == folded


@pytest.mark.django_db
def test_one_accent_no_longer_doubles_a_texts_segments():
    """220 characters in the GSM alphabet are 2 parts; with one "í" they were UCS-2, 4 parts (67 a part), over the
    limit of 3, and the care text failed at send time."""
    text = "Clínica Bella: " + "x" * 205
    assert sms_segments(text) == (4, "UCS-2")
    assert sms_segments(sms_fold(text)) == (2, "GSM-7")
    assert sms_text_problem(text) == ""  # measured as it will go
    assert "4 (UCS-2" in sms_text_problem("Clínica 😀 " + "x" * 200)


def test_a_template_is_checked_before_it_is_saved(care_texts):
    template = ReminderTemplate(
        name="Bad",
        kind="post_care",
        procedure_id="botox",
        anchor="start",
        offset_value=2,
        offset_unit="hours",
        email_subject="Hi {% if %}",
        email_text="Text",
        sms_text="Your Botox aftercare",
    )
    with pytest.raises(ValidationError) as invalid:
        template.full_clean()
    errors = invalid.value.message_dict
    assert errors["anchor"] == ["A post-care is anchored to: treatment completion."]
    assert errors["offset_value"] == ["A message anchored to the start must come before it."]
    assert errors["email_subject"][0].startswith("Template error:")
    assert errors["sms_text"][0].startswith("An SMS must not name a diagnosis, procedure or drug")


def test_the_shipped_sms_texts_pass_the_check(care_texts):
    for template in ReminderTemplate.objects.exclude(sms_text=""):
        assert sms_text_problem(template.sms_text) == "", template.name


# --- Rendering -----------------------------------------------------------------------------------------------------


def test_every_email_carries_a_signed_one_click_unsubscribe_link_and_a_stable_message_id(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [email] = mail.outbox
    row = appointment.outbox_messages.get(kind="confirmation", channel="email")
    assert email.extra_headers["Message-ID"] == f"<{row.pk}@clinic.example>"
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = email.extra_headers["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://clinic.example/reminders/unsubscribe/")
    assert f"Unsubscribe from e-mails: {link}" in email.body
    assert f'href="{link}"' in email.alternatives[0][0]
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert unsubscribe_token_read(token) == (patient, "email")


def test_the_confirmation_carries_the_appointment_as_icalendar(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)

    [attachment] = mail.outbox[0].attachments
    calendar = Calendar.from_ical(attachment.get_payload(decode=True))
    [event] = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == WEDNESDAY_10
    assert event.decoded("dtend") == WEDNESDAY_10 + timedelta(hours=1)
    assert str(event["uid"]) == f"appointment-{appointment.pk}@clinic-scheduling"
    assert str(event["summary"]) == "Appointment at Bloom Clinic"
    assert int(event["sequence"]) == 0


def test_a_moved_appointments_calendar_entry_replaces_the_old_one(patient, practitioner, now):
    appointment = book(patient, "microneedling", WEDNESDAY_10, now)
    dispatch_local(now=now)
    later = now + timedelta(hours=1)
    appointment_reschedule(appointment=appointment, start_at=london(2026, 3, 5, 11), actor=RECEPTION, now=later)
    dispatch_local(now=later + timedelta(minutes=5))

    moved = next(m for m in mail.outbox if "moved" in m.subject)
    [event] = Calendar.from_ical(moved.attachments[0].get_payload(decode=True)).walk("VEVENT")
    assert str(event["uid"]) == f"appointment-{appointment.pk}@clinic-scheduling"  # same entry...
    assert int(event["sequence"]) == 1  # ...newer version
    assert event.decoded("dtstart") == london(2026, 3, 5, 11)


def test_patient_supplied_text_is_escaped_in_html(clinic, practitioner, now):
    patient = PatientFactory(clinic=clinic, first_name="<script>x</script>", reminder_channels=["email"])
    book(patient, "botox", WEDNESDAY_10, now)
    dispatch_local(now=now)
    html = mail.outbox[0].alternatives[0][0]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Hello <script>x</script>," in mail.outbox[0].body  # the plain-text part is not HTML


def test_plain_text_and_sms_are_not_html_escaped(clinic, practitioner, now):
    patient = PatientFactory(
        clinic=clinic, first_name="Zoë O'Neil & co", reminder_channels=["email", "sms"], sms_consent=True
    )
    clinic.name = "Bloom & Glow"
    clinic.save()
    book(patient, "botox", WEDNESDAY_10, now)
    dispatch_local(now=now)
    assert "Hello Zoë O'Neil & co," in mail.outbox[0].body
    assert mail.outbox[0].subject == "Your appointment at Bloom & Glow on Wed 4 Mar"
    assert LocmemSmsBackend.outbox[0]["body"].startswith("Bloom & Glow: your appointment is booked")


def test_a_new_catalogue_name_is_refused_in_sms_at_once_and_the_list_is_kept(catalogue, django_assert_num_queries):
    from clinic.models import Medication
    from scheduler import versioned

    assert sms_text_problem("Bring your Zentravex leaflet.") == ""
    with django_assert_num_queries(1):  # the configuration version; the list is the process's copy
        sms_text_problem("Second read comes from the copy.")
    with django_assert_num_queries(1), versioned.snapshot():  # a batch of sends reads the version once
        sms_text_problem("One.")
        sms_text_problem("Two.")

    Medication.objects.create(code="zentravex", name="Zentravex")
    assert "must not name" in sms_text_problem("Bring your Zentravex leaflet.")
    Medication.objects.filter(code="zentravex").update(name="Zentravexa")  # a bulk update: no signal fires
    assert "zentravexa" in sms_text_problem("Bring your Zentravexa leaflet.")


def test_the_one_pass_check_finds_what_the_term_by_term_check_finds(catalogue):
    from reminders.texts import _forbidden_terms

    forbidden = _forbidden_terms()
    for term in forbidden.terms:
        for text in (term, f"About {term}.", f"{term}s and more", f"x{term}", f"({term})"):
            by_term = [t for t in forbidden.terms if re.search(rf"(?<!\w){re.escape(t)}(?:s|es)?(?!\w)", text)]
            assert (forbidden.any_of.search(text) is not None) == bool(by_term), (term, text)


def test_delivery_channels_and_the_patients_choice_of_channel_agree():
    from clinic.models import ReminderChannel
    from reminders.models import PATIENT_CHANNELS, Channel

    assert {str(c) for c in PATIENT_CHANNELS} == {str(c) for c in ReminderChannel}
    assert all(channel.value == choice.value for channel, choice in PATIENT_CHANNELS.items())
    assert Channel.WEBHOOK not in PATIENT_CHANNELS


@pytest.mark.parametrize(
    ("sent", "expected_day", "expected"),
    [
        (datetime(2026, 3, 9, 19, 0, tzinfo=UTC), "tomorrow", "tomorrow, Tue 10 Mar, 07:00 (GMT)"),
        (datetime(2026, 3, 10, 6, 0, tzinfo=UTC), "today", "today, Tue 10 Mar, 07:00 (GMT)"),
        (datetime(2026, 3, 8, 20, 59, tzinfo=UTC), "on Tue 10 Mar", "on Tue 10 Mar, 07:00 (GMT)"),
        (datetime(2026, 3, 9, 23, 59, tzinfo=UTC), "tomorrow", "tomorrow, Tue 10 Mar, 07:00 (GMT)"),
    ],
)
def test_the_day_of_a_visit_is_said_as_seen_when_the_message_goes(sent, expected_day, expected):
    """A reminder moved earlier out of quiet hours can go two days ahead: the text says the day from the moment
    it is sent, in the clinic's zone, never a fixed 'tomorrow'."""
    from zoneinfo import ZoneInfo

    from reminders.wording import fmt_datetime_relative, fmt_day_relative

    london = ZoneInfo("Europe/London")
    visit = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    assert fmt_day_relative(visit, london, now=sent) == expected_day
    assert fmt_datetime_relative(visit, london, now=sent) == expected
    # The clinic's day counts, not UTC's: 01:30 UTC on the 10th is still the 9th (21:30) in New York.
    new_york = ZoneInfo("America/New_York")  # the visit is at 03:00 EDT on the 10th there
    assert fmt_day_relative(visit, new_york, now=datetime(2026, 3, 10, 1, 30, tzinfo=UTC)) == "tomorrow"
