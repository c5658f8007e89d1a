"""The admin says what a change of settings leaves booked, and refuses a history date the API refuses.

Bookings keep their stored instants whatever an administrator changes over them (the domain brief: nothing is changed
silently), so the admin warns on saving, as it does for working hours and time off (clinic.admin.PractitionerAdmin):

* a clinic's new time zone: the active visits still to come whose local time now reads otherwise, how many and the
  first one's new time (a zone that reads them the same says nothing); and those who hear of a clinic's settings
  (clinic.setting_checks, the reminders) are told which fields changed;
* a practitioner switched off, or moved to another site, with active visits still to come (at the old site): how
  many, and that they stay booked until moved or cancelled;
* a reported procedure's date set in the admin to one still to come is a form error in the words of
  clinic.services.procedure_record_add (performed_in_future), as the API and the desk refuse it.

The clock is the suite's Monday 2 March 2026, 09:00 UTC (London on GMT; New York on EST, EDT from 8 March).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib import messages
from django.contrib.messages import get_messages
from django.urls import reverse

from clinic import setting_checks
from clinic.models import AppointmentStatus, Clinic, Practitioner, ProcedureRecord
from clinic.services import IN_THE_FUTURE
from tests.conftest import CLOCK
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import admin_errors, admin_post, practitioner_admin_post, split

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(CLOCK, tick=False):
        yield CLOCK


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="warn-london", name="Warn London", timezone="Europe/London")


@pytest.fixture
def sister(clinic):
    return ClinicFactory(code="warn-west", name="Warn West", timezone="Europe/London", organisation=clinic.organisation)


@pytest.fixture
def ada(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Ada")


def visit(practitioner, day: int, hour: int = 11, status=AppointmentStatus.CONFIRMED, clinic=None):
    """A Botox visit with `practitioner` on `day` March 2026 at `hour` UTC."""
    clinic = clinic or practitioner.clinic
    return AppointmentFactory(
        clinic=clinic,
        patient=PatientFactory(clinic=clinic),
        practitioner=practitioner,
        start_at=datetime(2026, 3, day, hour, tzinfo=UTC),
        status=status,
    )


def said(response) -> list[tuple[int, str]]:
    assert response.status_code == 200, response.content[:600]
    errors = response.context and response.context.get("errors")
    assert not errors, errors
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def warnings(response) -> list[str]:
    return [text for level, text in said(response) if level == messages.WARNING]


def save_clinic(admin_client, clinic: Clinic, **changes):
    """The clinic's admin form posted as drawn, with `changes`."""
    fields = ["code", "name", "timezone", "country", "phone", "address", "map_url", "reply_to_email"]
    fields += ["sender_name", "sms_name", "logo_url", "brand_colour"]
    data = {name: getattr(clinic, name) for name in fields}
    data |= {
        "organisation": str(clinic.organisation_id),
        "cancellation_window_hours": str(clinic.cancellation_window_hours),
    }
    return admin_client.post(reverse("admin:clinic_clinic_change", args=[clinic.pk]), {**data, **changes}, follow=True)


# --- A clinic's time zone ------------------------------------------------------------------------------------------


def test_a_new_zone_over_visits_to_come_warns_how_many_and_the_first_ones_new_time(admin_client, clinic, ada):
    """Two visits to come (10 and 12 March, 11:00 London = UTC) read 07:00 in New York (EDT from 8 March); the
    cancelled one and the one already over are not counted. The visits keep their instants."""
    first = visit(ada, 10)
    visit(ada, 12)
    visit(ada, 11, status=AppointmentStatus.CANCELLED)
    visit(ada, 2, hour=8)  # over before the save

    warned = warnings(save_clinic(admin_client, clinic, timezone="America/New_York", country="US"))

    assert len(warned) == 1, warned
    assert "Warn London has 2 booked appointments still to come that now read at another local time" in warned[0]
    assert "the first, Tue 10 Mar 2026, 11:00 in Europe/London, is now Tue 10 Mar 2026, 07:00" in warned[0]
    assert "Tell the patients the new time, or move them." in warned[0]
    first.refresh_from_db()
    assert first.start_at == datetime(2026, 3, 10, 11, tzinfo=UTC)
    assert first.status == AppointmentStatus.CONFIRMED


def test_one_visit_read_anew_is_said_in_the_singular(admin_client, clinic, ada):
    visit(ada, 10)
    warned = warnings(save_clinic(admin_client, clinic, timezone="America/New_York"))
    assert [w for w in warned if "has 1 booked appointment still to come that now reads at another" in w], warned


def test_a_new_zone_with_no_visits_to_come_says_only_that_it_was_saved(admin_client, clinic, ada):
    visit(ada, 11, status=AppointmentStatus.CANCELLED)
    visit(ada, 2, hour=8)
    response = save_clinic(admin_client, clinic, timezone="America/New_York")
    assert Clinic.objects.get(pk=clinic.pk).timezone == "America/New_York"
    assert not warnings(response)
    assert [text for level, text in said(response) if level == messages.SUCCESS and "changed successfully" in text]


def test_a_new_zone_that_reads_every_visit_the_same_says_nothing(admin_client, clinic, ada):
    """Dublin keeps London's clock in March (GMT until the last Sunday): 11:00 stays 11:00."""
    visit(ada, 10)
    assert not warnings(save_clinic(admin_client, clinic, timezone="Europe/Dublin"))


def test_another_clinics_visits_are_not_counted(admin_client, clinic, sister, ada):
    visit(PractitionerFactory(clinic=sister, name="Dr West"), 10)
    assert not warnings(save_clinic(admin_client, clinic, timezone="America/New_York"))


def test_those_who_hear_of_a_clinics_settings_are_told_what_changed(admin_client, clinic, monkeypatch):
    """clinic.setting_checks.clinic_settings_saved, after the save, with the fields changed; not on a save that
    changed nothing."""
    heard = []

    def listener(*, clinic, changed, now):
        heard.append((clinic.pk, clinic.timezone, changed, now))

    monkeypatch.setattr(setting_checks, "_saved", [listener])
    said(save_clinic(admin_client, clinic, timezone="America/New_York", country="US"))
    assert heard == [(clinic.pk, "America/New_York", frozenset({"timezone", "country"}), CLOCK)]

    heard.clear()
    said(save_clinic(admin_client, Clinic.objects.get(pk=clinic.pk)))
    assert heard == []


# --- A practitioner switched off, or moved to another site -----------------------------------------------------------


def test_switching_off_a_practitioner_with_visits_to_come_warns_they_stay_booked(admin_client, ada):
    kept = visit(ada, 10)
    visit(ada, 12)
    visit(ada, 11, status=AppointmentStatus.CANCELLED)

    warned = warnings(practitioner_admin_post(admin_client, ada, active=False))

    assert not Practitioner.objects.get(pk=ada.pk).is_active
    assert warned == [
        "Dr Ada is no longer active and has 2 booked appointments still to come (the first on Tue 10 Mar 2026, "
        "11:00). They stay booked until moved or cancelled: the front desk's Today page lists them under "
        '"Practitioner no longer here".'
    ]
    kept.refresh_from_db()
    assert kept.status == AppointmentStatus.CONFIRMED and kept.practitioner_id == ada.pk


def test_switching_off_a_practitioner_with_none_to_come_says_nothing(admin_client, ada):
    visit(ada, 11, status=AppointmentStatus.CANCELLED)
    visit(ada, 2, hour=8)
    assert not warnings(practitioner_admin_post(admin_client, ada, active=False))
    assert not Practitioner.objects.get(pk=ada.pk).is_active


def test_saving_a_practitioner_already_off_does_not_warn_again(admin_client, ada):
    visit(ada, 10)
    Practitioner.objects.filter(pk=ada.pk).update(is_active=False)
    assert not warnings(practitioner_admin_post(admin_client, Practitioner.objects.get(pk=ada.pk), active=False))


def test_moving_a_practitioner_to_another_site_warns_of_the_visits_left_at_the_old_one(admin_client, ada, sister):
    kept = visit(ada, 10)

    warned = warnings(practitioner_admin_post(admin_client, ada, clinic=sister))

    assert Practitioner.objects.get(pk=ada.pk).clinic_id == sister.pk
    assert warned == [
        "Dr Ada now works at Warn West and has 1 booked appointment still to come at Warn London (the first on "
        "Tue 10 Mar 2026, 11:00). They stay booked there until moved or cancelled: Warn London's calendar still "
        "shows them."
    ]
    kept.refresh_from_db()
    assert kept.clinic_id == ada.clinic_id and kept.status == AppointmentStatus.CONFIRMED


def test_moving_a_practitioner_with_none_to_come_says_nothing(admin_client, ada, sister):
    visit(ada, 11, status=AppointmentStatus.CANCELLED)
    assert not warnings(practitioner_admin_post(admin_client, ada, clinic=sister))


# --- A reported procedure's date corrected in the admin -------------------------------------------------------------


@pytest.fixture
def botox(clinic):
    """Botox reported done on Sunday 1 March, 10:00."""
    return ProcedureRecord.objects.create(
        patient=PatientFactory(clinic=clinic), procedure_id="botox", performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC)
    )


def record_errors(response) -> list[tuple[str, str]]:
    """(field, message) of each error of the procedure history's rows on the page sent back."""
    formset = next(i.formset for i in response.context["inline_admin_formsets"] if i.formset.model is ProcedureRecord)
    return [(field, str(message)) for row in formset.errors for field, errors in row.items() for message in errors]


def test_a_procedure_date_corrected_to_the_future_is_a_form_error_in_the_services_words(admin_client, botox):
    response = admin_post(admin_client, botox.patient, edit={botox.pk: split(CLOCK + timedelta(minutes=1))})
    assert response.status_code == 200
    assert record_errors(response) == [("performed_at", IN_THE_FUTURE)]
    assert ProcedureRecord.objects.get(pk=botox.pk).performed_at == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_a_procedure_date_corrected_to_now_or_before_is_saved(admin_client, botox):
    response = admin_post(admin_client, botox.patient, edit={botox.pk: split(CLOCK)})
    assert response.status_code == 302, admin_errors(response)
    assert ProcedureRecord.objects.get(pk=botox.pk).performed_at == CLOCK


def test_a_new_procedure_in_the_future_is_refused(admin_client, botox):
    tomorrow = split(CLOCK + timedelta(days=1))
    response = admin_post(
        admin_client, botox.patient, add={"procedure_records": {"procedure": "botox", "source": "reported", **tomorrow}}
    )
    assert response.status_code == 200
    assert record_errors(response) == [("performed_at", IN_THE_FUTURE)]
    assert ProcedureRecord.objects.filter(patient=botox.patient).count() == 1


def test_a_row_whose_date_is_left_as_it_is_is_not_checked_again(admin_client, botox):
    """A row stored with a later date (written before this check) does not block a change of its notes."""
    ProcedureRecord.objects.filter(pk=botox.pk).update(performed_at=CLOCK + timedelta(days=1))
    response = admin_post(admin_client, botox.patient, edit={botox.pk: {"notes": "Upper face"}})
    assert response.status_code == 302, admin_errors(response)
    assert ProcedureRecord.objects.get(pk=botox.pk).notes == "Upper face"
