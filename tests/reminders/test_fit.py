"""Will the texts go? A clinic's name for texts and every SMS template are checked against each other when either is
saved (reminders/fit.py), so a text is not found too long, or naming a treatment, only when it is due."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command

from clinic.models import Clinic
from reminders import content, fit, longest, wording
from reminders.admin import ReminderTemplateForm
from reminders.channels import LocmemSmsBackend
from reminders.dispatch import dispatch_local
from reminders.models import MessageKind, OutboxMessage, ReminderTemplate
from reminders.texts import SMS_MAX_SEGMENTS, sms_segments, sms_units
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.conftest import book, london

LONG_NAME = (  # 182 characters: the longest shipped text (the texts-only aftercare) fits names up to about 145
    "The Royal Borough of Kensington and Chelsea Centre for Advanced Aesthetic Medicine, Skin Rejuvenation, "
    "Laser Dermatology and Cosmetic Wellbeing (incorporating the Chelsea Skin Rooms)"
)


def _refused(clinic: Clinic) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as invalid:
        clinic.full_clean()
    return invalid.value.message_dict


def test_a_short_name_passes_and_the_shipped_texts_fit_it(care_texts):
    ClinicFactory.build(code="bloom", name="Bloom Clinic", timezone="Europe/London", phone="+442079460000").full_clean()


def test_a_name_no_text_fits_is_refused_with_the_texts_it_breaks_and_a_name_for_texts_mends_it(care_texts):
    clinic = ClinicFactory.build(code="kc", name=LONG_NAME, timezone="Europe/London", phone="+442079460000")
    errors = _refused(clinic)
    assert list(errors) == ["name"]
    assert "Texts name the clinic" in errors["name"][0]
    assert "would not go" in errors["name"][0] and "segments" in errors["name"][0]
    assert "SMS name" in errors["name"][0]
    clinic.sms_name = "KC Aesthetics"
    clinic.full_clean()  # the long name stays for e-mails, the admin and the consent wording


def test_a_name_for_texts_that_names_a_treatment_is_reported_on_that_field(care_texts):
    clinic = ClinicFactory.build(code="kc", name="KC", timezone="Europe/London", sms_name="The Botox Bar")
    errors = _refused(clinic)
    assert list(errors) == ["sms_name"]
    assert "must not name a diagnosis, procedure or drug" in errors["sms_name"][0] and "botox" in errors["sms_name"][0]


@pytest.mark.parametrize(
    "name", ["The Botox Bar", "Клиника красоты Анна", "Filler & Skin Studio"], ids=["treatment", "cyrillic", "filler"]
)
def test_a_name_that_would_stop_every_text_is_refused(care_texts, name):
    clinic = ClinicFactory.build(code="x", name=name, timezone="Europe/London")
    errors = _refused(clinic)
    assert "Texts name the clinic" in errors["name"][0]
    clinic.sms_name = "Anna Beauty"
    clinic.full_clean()


def test_a_clinic_is_not_blamed_for_a_template_that_fails_with_any_name(care_texts):
    ReminderTemplate.objects.create(  # saved without its check, as an old row would be
        name="Far too long", kind="reminder", anchor="start", offset_value=-1, offset_unit="days", sms_text="x" * 500
    )
    ClinicFactory.build(code="bloom", name="Bloom Clinic", timezone="Europe/London").full_clean()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe"])  # "Europe": a folder of the zone files, not a zone
def test_an_invalid_time_zone_is_reported_by_its_own_field_not_by_a_crash(care_texts, zone):
    errors = _refused(ClinicFactory.build(code="x", name="Bloom", timezone=zone))
    assert list(errors) == ["timezone"]


def test_texts_name_the_clinic_by_its_name_for_texts_and_e_mails_by_its_name(care_texts, now):
    clinic = ClinicFactory(code="kc", name=LONG_NAME, sms_name="KC Aesthetics", timezone="Europe/London")
    patient = PatientFactory(
        clinic=clinic, first_name="Ada", email="ada@example.com", phone="+447700900123",
        reminder_channels=["email", "sms"], sms_consent=True,
    )  # fmt: skip
    PractitionerFactory(clinic=clinic, name="Dr Hart")
    book(patient, "microneedling", london(2026, 3, 4, 10), now)
    dispatch_local(now=now)
    texts = [sms["body"] for sms in LocmemSmsBackend.outbox]
    assert texts and all("KC Aesthetics" in body and LONG_NAME not in body for body in texts)
    assert mail.outbox and all(LONG_NAME in m.body for m in mail.outbox)


def _template_form(text: str, *, active: bool = True) -> ReminderTemplateForm:
    data = {
        "name": "Long reminder", "kind": "reminder", "procedure": "", "anchor": "start", "offset_value": "-1",
        "offset_unit": "days", "email_subject": "", "email_text": "", "email_html": "", "sms_text": text,
        "origin": "clinic", "source": "", **({"is_active": "on"} if active else {}),
    }  # fmt: skip
    return ReminderTemplateForm(data)


def test_a_template_too_long_for_the_longest_named_clinic_is_refused_naming_it(care_texts):
    ClinicFactory(code="short", name="Bloom", timezone="Europe/London")
    text = "Hi {{ patient_first_name }}, {{ clinic_name }} here. " + "Please bring your ID. " * 18
    assert _template_form(text).is_valid()  # fits with "Bloom"
    ClinicFactory(code="long", name="A clinic", sms_name="Marylebone Skin and Laser Rooms Limited", timezone="UTC")
    form = _template_form(text)
    assert not form.is_valid()
    message = form.errors["sms_text"][0]
    assert "For the patients of A clinic (texts name it “Marylebone Skin and Laser Rooms Limited”)" in message
    assert f"at most {SMS_MAX_SEGMENTS} go" in message
    assert _template_form(text, active=False).is_valid()  # a template that sends nothing is not held to it
    ReminderTemplate(  # the model holds a text to itself only: the shipped texts load whatever the clinics' names
        name="Long reminder", kind="reminder", anchor="start", offset_value=-1, offset_unit="days", sms_text=text
    ).full_clean()


def test_a_template_is_held_to_its_length_as_rendered_not_as_written(care_texts):
    """The placeholders' names and both branches of an {% if %} are not what goes."""
    branch = "Keep the area out of the sun and do not wear makeup. " * 4  # 212 characters
    text = "{% if email_on %}" + branch + "{% else %}" + branch + "{% endif %}"
    assert len(text) > 459
    ReminderTemplate(
        name="Both ways", kind="reminder", anchor="start", offset_value=-1, offset_unit="days", sms_text=text
    ).full_clean()
    with pytest.raises(ValidationError) as invalid:
        ReminderTemplate(
            name="Too long", kind="reminder", anchor="start", offset_value=-1, offset_unit="days",
            sms_text="{% if email_on %}" + branch * 3 + "{% endif %}",
        ).full_clean()  # fmt: skip
    assert "segments" in invalid.value.message_dict["sms_text"][0]


def test_the_longest_named_clinics_are_the_ones_checked(care_texts):
    short = ClinicFactory(code="a", name="Ann", timezone="UTC")
    gsm = ClinicFactory(code="b", name="Bartholomew's", timezone="UTC")
    ucs2 = ClinicFactory(code="c", name="Клиника красоты Анна Петрова", timezone="UTC")  # longer than any
    picked = {c.pk for c in fit._longest_named(Clinic.objects.all())}
    assert picked == {gsm.pk, ucs2.pk} and short.pk not in picked


def test_the_checks_context_holds_every_placeholder_a_real_text_gets(care_texts, now):
    """The check renders with wording.sms_context, as a send does; every value a send can put in a text is at
    most as long as the check's (a first name within FIRST_NAME_CHECKED's length)."""
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London", phone="+442079460000")
    patient = PatientFactory(
        clinic=clinic, first_name="Alexandrina-Beatrix", email="a@example.com", phone="+447700900123",
        reminder_channels=["sms"], sms_consent=True,
    )  # fmt: skip
    PractitionerFactory(clinic=clinic, name="Dr Hart")
    appointment = book(patient, "microneedling", london(2026, 9, 30, 10, 30), now)  # a Wednesday in September
    widest: dict[str, int] = {}
    for context in longest.contexts(clinic, clinic.display_sms_name):
        for key, value in context.items():
            widest[key] = max(widest.get(key, 0), len(str(value)))
    messages = OutboxMessage.objects.filter(appointment=appointment, channel="sms")
    assert messages.exists()
    for message in messages:
        message.kind = MessageKind.RECALL  # the recall's dates too
        message.payload = {"due_on": "2026-09-30", "from_start": "2026-12-30T10:30:00+00:00"}
        for sent_at in (appointment.start_at - timedelta(days=1), now):
            real = content._context(message, sent_at, for_sms=True, unsubscribe_url="")
            assert set(real) <= set(widest)
            for key, value in real.items():
                assert len(str(value)) <= widest[key], (key, value)


def test_the_shipped_texts_fit_with_a_forty_character_name_for_texts(care_texts):
    clinic = ClinicFactory.build(code="x", name="X", sms_name="W" * 40, timezone="Pacific/Chatham")
    for template in ReminderTemplate.objects.filter(is_active=True).exclude(sms_text=""):
        for sms in longest.renders(template.sms_text, clinic, clinic.display_sms_name):
            assert sms_segments(sms)[0] <= SMS_MAX_SEGMENTS, template.name


@pytest.fixture
def superuser_client(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_the_admin_refuses_a_clinic_renamed_so_that_no_text_fits_and_keeps_the_old_name(superuser_client, care_texts):
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    form = {
        "code": "bloom",
        "organisation": str(clinic.organisation_id),
        "name": LONG_NAME,
        "timezone": "Europe/London",
        "country": "GB",
        "cancellation_window_hours": "24",
    }
    response = superuser_client.post(f"/admin/clinic/clinic/{clinic.pk}/change/", form)
    assert response.status_code == 200
    assert "Texts name the clinic" in response.content.decode()
    clinic.refresh_from_db()
    assert clinic.name == "Bloom Clinic"
    response = superuser_client.post(f"/admin/clinic/clinic/{clinic.pk}/change/", {**form, "sms_name": "Bloom"})
    assert response.status_code == 302
    clinic.refresh_from_db()
    assert (clinic.name, clinic.sms_name, clinic.display_sms_name) == (LONG_NAME, "Bloom", "Bloom")


def test_reminders_status_names_a_clinic_saved_before_the_check_whose_name_stops_its_texts(care_texts):
    ClinicFactory(code="long", name=LONG_NAME, timezone="Europe/London")  # saved without full_clean, as before
    ClinicFactory(code="bloom", name="Bloom", timezone="Europe/London")
    out = StringIO()
    call_command("reminders_status", stdout=out)
    section = out.getvalue().split("Clinics whose name stops texts going:")[1].split("Texts that cannot go")[0]
    assert "long " in section and "Texts name the clinic" in section and "bloom" not in section
    out = StringIO()
    call_command("reminders_status", "--clinic", "bloom", stdout=out)
    section = out.getvalue().split("Clinics whose name stops texts going:")[1]
    assert section.split("Texts that cannot go for any clinic:") == ["\n  (none)\n", "\n  (none)\n"]


@pytest.mark.parametrize(
    "given, greeted",
    [
        ("Ada", "Ada"),
        ("  Maximiliana-Josefine ", "Maximiliana-Josefine"),  # 20: as it is
        ("Anna-Maria Josefine Alexandra", "Anna-Maria Josefine"),
        ("Wolfeschlegelsteinhausenbergerdorff", "Wolfeschlegelsteinha"),  # one part: cut
    ],
)
def test_a_text_greets_a_patient_by_at_most_the_first_name_length_the_checks_use(given, greeted):
    assert wording.sms_first_name(given) == greeted
    assert len(wording.sms_first_name(given)) <= len(longest.FIRST_NAME_CHECKED) == wording.SMS_FIRST_NAME_MAX


def test_a_patient_with_a_first_name_longer_than_the_checks_gets_a_text_the_checks_passed(care_texts, now):
    """A clinic's template that greets by name, as long as the checks allow for a 20-character first name: a patient
    whose whole first name has 29 would make it four segments, and it would fail for good."""
    clinic = ClinicFactory(code="bloom", name="Bloom", timezone="Europe/London", phone="+442079460000")
    base = "Hi {{ patient_first_name }}, see you soon at {{ clinic_name }}. "
    renders = [
        *longest.renders(base, clinic, clinic.display_sms_name),
        *longest.renders(base, longest.stand_in(), "Clinic"),
    ]
    widest = max(sms_units(sms)[0] for sms in renders)
    text = base + "x" * (
        458 - widest
    )  # exactly three segments with a 20-character first name (the base lost its last space)
    assert not longest.template_own_problem(text) and not fit.template_sms_problem(text)
    patient = PatientFactory(
        clinic=clinic, first_name="Anna-Maria Josefine Alexandra", phone="+447700900123", email="",
        reminder_channels=["sms"], sms_consent=True,
    )  # fmt: skip
    PractitionerFactory(clinic=clinic, name="Dr Hart")
    appointment = book(patient, "microneedling", london(2026, 3, 4, 10), now)
    message = OutboxMessage.objects.filter(appointment=appointment, channel="sms").first()
    message.template = ReminderTemplate(name="Greeting", kind=message.kind, anchor="event", sms_text=text)
    sms = content.render_message(message=message, now=now).sms  # raised RenderError (4 segments) before
    assert sms.startswith("Hi Anna-Maria Josefine, see you soon at Bloom.")


def _told(sms: str) -> str:
    """A rendered text with each link's random part replaced by its length (a stand-in appointment's link names a
    fresh random id in each render)."""
    return re.sub(r"https://\S+", lambda link: f"<link of {len(link[0])}>", sms)


@pytest.mark.parametrize(
    "text",
    [
        "{{ clinic_name }}: see you {{ appointment_local }}.{% if manage_url %} Change: {{ manage_url }}{% endif %}",
        "{% with link=manage_url %}{% if link %}{{ link }}{% else %}Call us.{% endif %}{% endwith %}",
        "{% firstof recall_ideal_date recall_earliest_date 'soon' %}{% if recall_ask_first %} Ask us.{% endif %}",
        "{{ previous_start_local|default:'before' }} is now {{ appointment_local }}.",
    ],
)
def test_a_text_is_checked_with_every_value_it_names_present_and_absent(text):
    """The checks render each optional value present and absent only where the text names it (longest.contexts
    `naming`): the texts they see are the texts the full product of all five makes."""
    clinic = longest.stand_in()
    narrowed = {_told(sms) for sms in longest.renders(text, clinic, longest.NEUTRAL_NAME)}
    everything = {
        _told(wording.render_sms(text, context)) for context in longest.contexts(clinic, longest.NEUTRAL_NAME)
    }
    assert narrowed == everything
    assert len(everything) >= 2  # what the text names does vary it


def test_the_shipped_texts_are_checked_with_what_the_full_product_would_render(care_texts):
    templates = ReminderTemplate.objects.exclude(sms_text="")
    assert templates.count() >= 10
    for template in templates:
        narrowed = {_told(sms) for sms in longest.renders(template.sms_text, longest.stand_in(), longest.NEUTRAL_NAME)}
        everything = {
            _told(wording.render_sms(template.sms_text, context))
            for context in longest.contexts(longest.stand_in(), longest.NEUTRAL_NAME)
        }
        assert narrowed == everything, template.default_key
