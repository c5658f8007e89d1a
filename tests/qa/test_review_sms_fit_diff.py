"""Review of 390da83..HEAD: a clinic's name and the SMS templates checked against each other when either is saved
(reminders/fit.py, clinic/setting_checks.py, Clinic.clean, ReminderTemplate.clean, Clinic.sms_name through
wording.sms_context), reminders_status's list of clinics whose name stops texts, docs/reminders.md.

What the check promises (docs/reminders.md, fit.py): a text it passes goes when it is due, because it renders "as a
send does ... with what the clinic does not decide at its longest plausible". The tests below compare it with real
sends (content.render_message, dispatch_local); each DEFECT test passes either way the defect is mended: the check
refuses the text when it is saved, or the text goes.
"""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clinic.models import Clinic
from reminders import content, fit, longest, wording
from reminders.channels import LocmemSmsBackend
from reminders.consent import clinic_sms_consent_wording
from reminders.defaults import care_texts_load
from reminders.dispatch import dispatch_local
from reminders.models import MessageKind, OutboxMessage, ReminderTemplate
from reminders.texts import SMS_MAX_SEGMENTS, sms_segments, sms_units
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.reminders.conftest import book, london

LIMIT = 153 * SMS_MAX_SEGMENTS  # 459 GSM-7 septets in three segments
LONG_NAME = (  # 182 characters, saved before the check (as tests/reminders/test_fit.py's)
    "The Royal Borough of Kensington and Chelsea Centre for Advanced Aesthetic Medicine, Skin Rejuvenation, "
    "Laser Dermatology and Cosmetic Wellbeing (incorporating the Chelsea Skin Rooms)"
)
FORTY = "Amberley Skin and Laser Rooms of Chelsea"  # 40 characters
assert len(FORTY) == 40


@pytest.fixture(autouse=True)
def _outboxes(settings):
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REMINDERS_PUBLIC_BASE_URL = "https://clinic.example"
    LocmemSmsBackend.outbox = []
    yield
    LocmemSmsBackend.outbox = []


@pytest.fixture
def root_client(db):
    client = Client(raise_request_exception=False)  # a crash shows as the 500 an operator would see
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def _template(**fields) -> ReminderTemplate:
    values = {
        "name": "Review text",
        "kind": MessageKind.REMINDER,
        "anchor": "start",
        "offset_value": -1,
        "offset_unit": "days",
        "is_active": True,
    }
    return ReminderTemplate(**{**values, **fields})


def _check_max(text: str, clinic: Clinic) -> int:
    """The longest the check renders `text` for `clinic` (GSM-7 septets)."""
    return max(sms_units(sms)[0] for sms in longest.renders(text, clinic, clinic.display_sms_name))


def _padded(prefix: str, clinic: Clinic, *, to: int = LIMIT) -> str:
    """`prefix` and a plain filler, so that the longest text the check renders for `clinic` is exactly `to`."""
    text = prefix + "x" * (to + 1 - _check_max(prefix + "x", clinic))  # a rendered text is stripped
    assert _check_max(text, clinic) == to
    return text


def _sms_patient(clinic, first_name="Ada"):
    PractitionerFactory(clinic=clinic, name=f"Dr {clinic.code}")
    return PatientFactory(
        clinic=clinic, first_name=first_name, email="", phone="+447700900123", reminder_channels=["sms"],
        sms_consent=True,
    )  # fmt: skip


def _status() -> str:
    out = StringIO()
    call_command("reminders_status", stdout=out)
    return out.getvalue()


def _clinic_form(clinic: Clinic, **changes) -> dict:
    form = {
        "code": clinic.code,
        "organisation": str(clinic.organisation_id),
        "name": clinic.name,
        "sms_name": clinic.sms_name,
        "timezone": clinic.timezone,
        "country": clinic.country,
        "phone": clinic.phone,
        "cancellation_window_hours": "24",
    }
    return {**form, **changes}


# --- A text the check passes that fails when it is due ---------------------------------------------------------


def _refused_when_saved(template) -> bool:
    """As the admin saves a template: the model's own check (ReminderTemplate.clean), then its form's check against
    the clinics' names (reminders.admin.ReminderTemplateForm, fit.template_sms_problem) for an active one."""
    try:
        template.full_clean()
    except ValidationError:
        return True
    return bool(template.is_active and fit.template_sms_problem(template.sms_text))


def test_a_template_the_check_passed_goes_to_a_clinic_with_a_longer_name_and_no_phone(care_texts, now):
    quiet = ClinicFactory(code="quiet", name=FORTY, timezone="Europe/London")  # 40 + no phone
    loud = ClinicFactory(  # 31 + "020 7946 0000" (13) = 44: the one checked
        code="loud", name="Bloom Skin Rooms of West Ealing", timezone="Europe/London", phone="+442079460000"
    )
    quiet.full_clean(), loud.full_clean()  # both fine when saved
    text = _padded("{{ clinic_name }}: thank you for booking. ", loud)
    template = _template(name="Thanks", kind=MessageKind.CONFIRMATION, anchor="event", offset_value=0, sms_text=text)
    if _refused_when_saved(template):
        return  # mended: refused when saved
    template.save()
    book(_sms_patient(quiet), "microneedling", london(2026, 3, 4, 10), now)
    dispatch_local(now=now)
    row = OutboxMessage.objects.get(template=template, channel="sms")
    assert row.status == "sent", row.last_error  # now: failed, "SMS refused: ... takes 4 (GSM-7 ...)"


def test_a_template_the_check_passed_fits_a_clinic_whose_zone_abbreviation_is_longer(care_texts):
    ClinicFactory(code="utc", name="Bloom Clinic of Kathmandu", timezone="UTC")
    kathmandu = ClinicFactory(code="ktm", name="Bloom Clinic of Kathmand", timezone="Asia/Kathmandu")
    utc = Clinic.objects.get(code="utc")
    text = _padded("{{ clinic_name }}: now {{ start_local }}, was {{ previous_start_local }}. ", utc)
    if _refused_when_saved(_template(kind=MessageKind.RESCHEDULED, anchor="event", offset_value=0, sms_text=text)):
        return
    longest = _check_max(text, kathmandu)  # what a send to its patients renders (the check's own context)
    assert longest <= LIMIT, f"{longest} septets: {sms_segments('x' * longest)[0]} segments"


def test_a_day_before_text_the_check_passed_goes_on_new_years_eve(care_texts, now):
    clinic = ClinicFactory(code="amb", name=FORTY, timezone="Europe/London")
    template = _template(sms_text=_padded("{{ clinic_name }}: see you {{ start_relative_local }}. ", clinic))
    assert sms_units(template.sms_text)[0] <= LIMIT  # the raw check (braces count two) passes it
    if _refused_when_saved(template):
        return
    template.save()
    book(_sms_patient(clinic), "microneedling", london(2027, 1, 1, 10), now)
    row = OutboxMessage.objects.get(template=template, channel="sms")
    assert row.due_at == london(2026, 12, 31, 10)
    sms = content.render_message(message=row, now=row.due_at).sms  # now: RenderError "SMS refused ... 4"
    assert "tomorrow, Fri 1 Jan 2027" in sms


def test_a_recall_text_the_check_passed_goes_when_there_is_no_earliest_date(care_texts, now):
    name = (  # 138 characters: the shipped texts fit it
        "The Kensington Centre for Aesthetic Medicine, Skin Rejuvenation and Laser Dermatology (Chelsea) "
        "with the Fulham and Putney Skin Rooms Group"
    )
    clinic = ClinicFactory(code="kc", name=name, timezone="Europe/London")
    clinic.full_clean()  # the shipped texts fit it
    prefix = (
        "{{ clinic_name }}: due {{ recall_due_date }}.{% if recall_earliest_date %} From {{ recall_earliest_date }}."
        "{% else %} Call {{ clinic_name }} to book.{% endif %} "
    )
    template = _template(kind=MessageKind.RECALL, anchor="completion", offset_value=0, sms_text=_padded(prefix, clinic))
    if _refused_when_saved(template):
        return
    template.save()
    appointment = book(_sms_patient(clinic), "microneedling", london(2026, 3, 4, 10), now)
    row = OutboxMessage.objects.filter(appointment=appointment, channel="sms").first()
    row.kind, row.template, row.payload = MessageKind.RECALL, template, {"due_on": "2026-09-30"}
    sms = content.render_message(message=row, now=now).sms  # now: RenderError "SMS refused ... takes 4"
    assert "Call" in sms


def test_a_template_no_text_fits_is_reported_somewhere(care_texts, now):
    prefix = "{{ clinic_name }}: {{ start_relative_local }}. Move or cancel: {{ manage_url }} "
    text = prefix + "x" * (LIMIT - sms_units(prefix)[0])  # the raw text fits; every rendered one is longer
    template = _template(name="Too long for all", sms_text=text)
    try:
        template.full_clean()  # no clinic yet
    except ValidationError:
        return
    template.save()
    clinic = ClinicFactory(code="bloom", name="Bloom", timezone="Europe/London")
    try:
        clinic.full_clean()
    except ValidationError as refused:
        assert template.name in str(refused)
        return
    book(_sms_patient(clinic), "microneedling", london(2026, 3, 4, 10), now)
    row = OutboxMessage.objects.get(template=template, channel="sms")
    assert "SMS refused" in content_error(row, row.due_at)  # every patient's text fails
    assert template.name in _status()  # nowhere an operator looks says so


def content_error(row: OutboxMessage, when) -> str:
    try:
        content.render_message(message=row, now=when)
    except wording.RenderError as exc:
        return str(exc)
    return ""


# --- A check that refuses what would have gone ---------------------------------------------------------------


def test_a_template_whose_every_render_fits_is_not_refused_for_its_raw_length(care_texts):
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    shipped = ReminderTemplate.objects.get(default_key="microneedling-post-care-completion")
    edited = shipped.sms_text.replace(
        "dusty chores. ", "dusty chores; keep pets off your pillow and wash the pillowcase and towels you use. "
    )
    assert edited != shipped.sms_text
    assert _check_max(edited, clinic) < LIMIT - 20  # every text it renders fits with room to spare
    assert sms_units(edited)[0] > LIMIT  # its raw text does not
    shipped.sms_text = edited
    shipped.full_clean(exclude=["default_key"])


def test_setup_loads_a_missing_shipped_text_although_one_clinic_has_a_legacy_long_name(care_texts):
    ClinicFactory(code="legacy", name=LONG_NAME, timezone="Europe/London")  # saved without full_clean
    ReminderTemplate.objects.filter(default_key="microneedling-post-care-completion").delete()
    assert care_texts_load() == 1


# --- Crashes ------------------------------------------------------------------------------------------------


RENDER_FAILURES = {
    "include": '{{ clinic_name }}: see you {{ start_local }}. {% include "sms_footer.txt" %}',
    "loop-over-a-flag": "{{ clinic_name }}: {% for part in email_on %}{{ part }}{% endfor %} see you.",
}


@pytest.mark.parametrize("text", RENDER_FAILURES.values(), ids=RENDER_FAILURES.keys())
def test_a_template_that_fails_when_rendered_is_refused_on_save_not_a_crash(care_texts, text):
    ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    with pytest.raises(ValidationError) as refused:
        _template(sms_text=text).full_clean()
    assert "sms_text" in refused.value.message_dict


def test_a_clinic_still_saves_in_the_admin_when_a_template_saved_earlier_fails_when_rendered(care_texts, root_client):
    _template(name="Footer", sms_text=RENDER_FAILURES["include"]).save()  # saved without its check
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    response = root_client.post(
        f"/admin/clinic/clinic/{clinic.pk}/change/", _clinic_form(clinic, name="Bloom Skin Clinic")
    )
    assert response.status_code == 302
    clinic.refresh_from_db()
    assert clinic.name == "Bloom Skin Clinic"


def test_reminders_status_survives_a_template_that_fails_when_rendered(care_texts):
    _template(name="Footer", sms_text=RENDER_FAILURES["include"]).save()  # saved without its check
    ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    assert "Clinics whose name stops texts going:" in _status()


@pytest.mark.parametrize(
    "changes",
    [{"timezone": "Mars/Olympus"}, {"name": ""}, {"name": "x" * 201}, {"sms_name": "y" * 41}, {"phone": "call us"}],
    ids=["bad-zone", "empty-name", "name-too-long", "sms-name-too-long", "bad-phone"],
)
def test_odd_input_in_the_clinic_admin_is_a_form_error_not_a_crash(care_texts, root_client, changes):
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    response = root_client.post(f"/admin/clinic/clinic/{clinic.pk}/change/", _clinic_form(clinic, **changes))
    assert response.status_code == 200
    assert "errornote" in response.content.decode()


def test_a_long_name_is_accepted_when_no_template_or_only_inactive_ones_would_send(care_texts, root_client):
    ReminderTemplate.objects.update(is_active=False)
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    response = root_client.post(f"/admin/clinic/clinic/{clinic.pk}/change/", _clinic_form(clinic, name=LONG_NAME))
    assert response.status_code == 302
    ReminderTemplate.objects.all().delete()
    clinic.refresh_from_db()
    clinic.name = LONG_NAME + "!"
    clinic.full_clean()


# --- What the SMS name reaches, and what stays -------------------------------------------------------------


def test_texts_use_the_sms_name_and_e_mails_calendar_files_and_consent_keep_the_full_name(care_texts, now):
    clinic = ClinicFactory(code="kc", name=LONG_NAME, sms_name="KC Aesthetics", timezone="Europe/London")
    clinic.full_clean()
    PractitionerFactory(clinic=clinic, name="Dr Hart")
    patient = PatientFactory(
        clinic=clinic, first_name="Ada", email="ada@example.com", phone="+447700900123",
        reminder_channels=["email", "sms"], sms_consent=True,
    )  # fmt: skip
    appointment = book(patient, "microneedling", london(2026, 3, 4, 10), now)
    dispatch_local(now=now)
    texts = [sms["body"] for sms in LocmemSmsBackend.outbox]
    assert texts and all(body.startswith("KC Aesthetics:") for body in texts)
    (email,) = mail.outbox
    assert LONG_NAME in email.body and "KC Aesthetics" not in email.body + email.subject
    assert email.attachments  # the calendar file, as content.appointment_ics writes it
    ics_text = content.appointment_ics(appointment=appointment, now=now).decode().replace("\r\n ", "")
    assert "KC Aesthetics" not in ics_text and "Royal Borough" in ics_text
    wording = clinic_sms_consent_wording(clinic)
    assert LONG_NAME in wording and "KC Aesthetics" not in wording


def test_a_clinic_without_an_sms_name_is_named_in_texts_as_before(care_texts, now):
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    book(_sms_patient(clinic), "microneedling", london(2026, 3, 4, 10), now)
    dispatch_local(now=now)
    (sms,) = LocmemSmsBackend.outbox
    assert sms["body"].startswith("Bloom Clinic: your appointment is booked for Wed 4 Mar, 10:00 (GMT).")


# --- Cost ---------------------------------------------------------------------------------------------------


def test_checking_a_clinic_reads_the_database_a_few_times_not_once_per_text(care_texts):
    clinic = ClinicFactory.build(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    templates = ReminderTemplate.objects.filter(is_active=True).exclude(sms_text="").count()
    assert templates >= 10
    with CaptureQueriesContext(connection) as queries:
        clinic.clean()
    assert len(queries) <= 5, f"{len(queries)} queries for {templates} templates"


def test_saving_a_template_costs_the_same_queries_with_many_clinics(care_texts):
    text = "{{ clinic_name }}: see you {{ start_local }}."
    ClinicFactory(code="c0", name="Clinic 0", timezone="Europe/London")
    _template(sms_text=text).full_clean()  # the catalogue's terms read once
    with CaptureQueriesContext(connection) as one:
        _template(sms_text=text).full_clean()
    for n in range(1, 40):
        ClinicFactory(code=f"c{n}", name=f"Clinic {n}" + "x" * (n % 7), timezone="Europe/London", phone="+442079460000")
    with CaptureQueriesContext(connection) as many:
        _template(sms_text=text).full_clean()
    assert len(many) == len(one) <= 6


# --- What the docs say ----------------------------------------------------------------------------------------


def test_the_shipped_texts_fit_names_up_to_about_145_characters_as_the_docs_say(care_texts):
    def fits(n: int) -> bool:
        return not fit.clinic_sms_problems(ClinicFactory.build(code="x", name="W" * n, timezone="Europe/London"))

    low, high = 1, 200  # the longest name that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    assert 140 <= low <= 150, low


def test_the_admin_labels_the_field_sms_name_as_the_docs_and_refusals_call_it(care_texts, root_client):
    clinic = ClinicFactory(code="bloom", name="Bloom Clinic", timezone="Europe/London")
    page = root_client.get(f"/admin/clinic/clinic/{clinic.pk}/change/").content.decode()
    assert 'for="id_sms_name">SMS name' in page
