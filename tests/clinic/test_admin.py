"""A clinic administrator can open every admin page, rules included."""

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from django.urls import reverse


@pytest.fixture
def admin_client_with_data(admin_client, db):
    call_command("setup_demo")
    return admin_client


@pytest.mark.parametrize(
    "model",
    [m for m in admin.site._registry if m._meta.app_label in ("clinic", "scheduler")],
    ids=lambda m: m._meta.label,
)
def test_admin_changelist_and_change_pages_open(admin_client_with_data, model):
    info = model._meta.app_label, model._meta.model_name

    assert admin_client_with_data.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == 200
    first = model.objects.first()
    if first is not None:
        assert (
            admin_client_with_data.get(reverse("admin:{}_{}_change".format(*info), args=[first.pk])).status_code == 200
        )


def test_appointments_cannot_be_added_around_the_rules(admin_client_with_data):
    assert admin_client_with_data.get(reverse("admin:clinic_appointment_add")).status_code == 403


def test_a_clinic_administrator_sees_only_their_clinic(client, db):
    from clinic.models import Patient

    call_command("setup_demo", "--staff-password", "pw-for-tests")
    client.login(username="clinicadmin-ny", password="pw-for-tests")
    london_patient = Patient.objects.filter(clinic__code="demo").first()

    listing = client.get(reverse("admin:clinic_patient_changelist"))
    other = client.get(reverse("admin:clinic_patient_change", args=[london_patient.pk]))

    assert listing.status_code == 200
    assert "(NY)" in listing.content.decode() and str(london_patient.pk) not in listing.content.decode()
    assert other.status_code == 302  # the admin's "does not exist" redirect: nothing shown
    assert client.get(reverse("admin:clinic_appointment_changelist")).status_code == 200


def test_an_administrator_of_one_site_sees_the_organisations_patients_but_only_their_sites_rows(client, db):
    from clinic.models import Clinic, Organisation, Patient, StaffMembership

    call_command("setup_demo", "--staff-password", "pw-for-tests")
    olivia = Patient.objects.get(clinic__code="demo", first_name="Olivia")
    client.login(username="clinicadmin-west", password="pw-for-tests")
    assert client.get(reverse("admin:clinic_patient_change", args=[olivia.pk])).status_code == 200
    clinics = client.get(reverse("admin:clinic_clinic_changelist")).content.decode()
    assert "Demo Aesthetics West London" in clinics and "Demo Aesthetics New York" not in clinics
    # Organisations are the operators' to make; a clinic cannot be moved to another by its administrator.
    assert client.get(reverse("admin:clinic_organisation_add")).status_code == 403
    west = Clinic.objects.get(code="demo-west")
    form = client.get(reverse("admin:clinic_clinic_change", args=[west.pk])).content.decode()
    assert 'name="organisation"' not in form
    # The organisation's administrator sees every site's memberships.
    client.login(username="orgadmin", password="pw-for-tests")
    memberships = client.get(reverse("admin:clinic_staffmembership_changelist")).content.decode()
    assert "reception-west" in memberships and "reception-ny" not in memberships
    assert StaffMembership.objects.get(user__username="orgadmin").organisation == Organisation.objects.get(code="demo")


def test_a_merged_record_shows_where_it_went_read_only_and_the_merge_trail_cannot_be_edited(admin_client, catalogue):
    from clinic.merging import patient_merge
    from clinic.models import PatientMerge
    from tests.conftest import CLOCK
    from tests.factories import PatientFactory

    survivor = PatientFactory(first_name="Olivia")
    duplicate = PatientFactory(clinic=survivor.clinic, first_name="Olivja")
    patient_merge(merged=duplicate, into=survivor, now=CLOCK, actor_label="dr@test", clinical=True)

    page = admin_client.get(reverse("admin:clinic_patient_change", args=[duplicate.pk])).content.decode()
    assert "Merged into" in page and str(survivor) in page
    assert 'name="merged_into"' not in page and 'name="merged_at"' not in page
    merge = PatientMerge.objects.get()
    assert admin_client.get(reverse("admin:clinic_patientmerge_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:clinic_patientmerge_add")).status_code == 403
    shown = admin_client.get(reverse("admin:clinic_patientmerge_change", args=[merge.pk]))
    assert shown.status_code == 200 and 'name="actor_label"' not in shown.content.decode()


def test_the_audit_trail_cannot_be_added_to_changed_or_deleted_in_the_admin(admin_client_with_data):
    from datetime import timedelta

    from django.utils import timezone

    from clinic.models import AuditEvent, Patient, Practitioner
    from tests.factories import AppointmentFactory

    practitioner = Practitioner.objects.filter(clinic__code="demo").first()
    start = timezone.now().replace(microsecond=0) + timedelta(days=30)
    appointment = AppointmentFactory(
        clinic=practitioner.clinic,
        patient=Patient.objects.filter(clinic=practitioner.clinic).first(),
        practitioner=practitioner,
        procedure_id="botox",
        start_at=start,
        end_at=start + timedelta(hours=1),
        status="confirmed",
    )
    event = AuditEvent.objects.create(
        appointment=appointment, action="booked", at=timezone.now(), actor_label="t", reason="r"
    )
    assert admin_client_with_data.get(reverse("admin:clinic_auditevent_add")).status_code == 403
    assert admin_client_with_data.get(reverse("admin:clinic_auditevent_delete", args=[event.pk])).status_code == 403
    before = event.reason
    response = admin_client_with_data.post(reverse("admin:clinic_auditevent_change", args=[event.pk]), {"reason": "x"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.reason == before


def test_time_off_or_hours_changed_over_bookings_already_made_are_flagged(admin_client, catalogue):
    """Time off does not move what is booked in it: the admin says so on saving, and the desk's Today page
    lists those bookings until they are moved or cancelled (docs/frontdesk.md)."""
    from datetime import UTC, datetime, timedelta

    import time_machine
    from django.contrib.messages import get_messages

    from clinic.models import AppointmentStatus
    from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory

    clinic = ClinicFactory(code="london", timezone="Europe/London")
    practitioner = PractitionerFactory(clinic=clinic, name="Dr Ada")
    patient = PatientFactory(clinic=clinic)

    def booking(day, status=AppointmentStatus.CONFIRMED):
        start = datetime(2026, 3, day, 10, tzinfo=UTC)
        return AppointmentFactory(
            clinic=clinic,
            patient=patient,
            practitioner=practitioner,
            procedure_id="botox",
            start_at=start,
            end_at=start + timedelta(minutes=30),
            status=status,
        )

    inside, _cancelled, _after = booking(10), booking(11, AppointmentStatus.CANCELLED), booking(20)

    def save(*time_off, hours=()):
        data = {
            "clinic": str(clinic.pk),
            "name": practitioner.name,
            "is_active": "on",
            "working_hours-TOTAL_FORMS": str(len(hours)),
            "working_hours-INITIAL_FORMS": "0",
            "time_off-TOTAL_FORMS": str(len(time_off)),
            "time_off-INITIAL_FORMS": "0",
        }
        for n, (weekday, start, end) in enumerate(hours):
            data |= {
                f"working_hours-{n}-weekday": str(weekday),
                f"working_hours-{n}-start_time": start,
                f"working_hours-{n}-end_time": end,
            }
        for n, (start, end, reason) in enumerate(time_off):
            data |= {
                f"time_off-{n}-start_at_0": start.strftime("%Y-%m-%d"),
                f"time_off-{n}-start_at_1": start.strftime("%H:%M"),
                f"time_off-{n}-end_at_0": end.strftime("%Y-%m-%d"),
                f"time_off-{n}-end_at_1": end.strftime("%H:%M"),
                f"time_off-{n}-reason": reason,
            }
        response = admin_client.post(
            reverse("admin:clinic_practitioner_change", args=[practitioner.pk]), data, follow=True
        )
        assert response.status_code == 200
        return [str(m) for m in get_messages(response.wsgi_request)]

    with time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=UTC), tick=False):
        # No working hours yet: both bookings still to come (10 and 20 March, Tuesday and Friday) are outside them.
        practitioner.working_hours.all().delete()  # the factory's Monday-to-Saturday hours
        said = save()
        assert [m for m in said if "Dr Ada has 2 booked appointments still to come outside their working hours" in m]
        assert "Tue 10 Mar 2026, 10:00" in " ".join(said)
        assert not [m for m in said if "time off" in m]  # nothing off: nothing said of it
        # Tuesdays 09:00-18:00 only: Friday's booking is still outside them.
        said = save(hours=[(1, "09:00", "18:00")])
        assert [m for m in said if "has 1 booked appointment still to come outside" in m]
        practitioner.working_hours.all().delete()
        said = save(hours=[(1, "09:00", "18:00"), (4, "09:00", "18:00")])
        assert not [m for m in said if "outside their working hours" in m]
        said = save((datetime(2026, 3, 9, 0), datetime(2026, 3, 14, 0), "Holiday"))
        assert [m for m in said if "Dr Ada has 1 booked appointment still to come in their time off" in m]

        from tests.frontdesk.conftest import make_staff, url

        reception = Client()
        reception.force_login(make_staff(clinic, "receptionist", "desk"))
        page = reception.get(url("today", clinic)).content.decode()
        assert "Practitioner away" in page and "Dr Ada is off then (Holiday)." in page
        assert page.count("Dr Ada is off then") == 1  # the cancelled one and the one after are not listed
        inside.status = AppointmentStatus.CANCELLED
        inside.save()
        assert "Practitioner away" not in reception.get(url("today", clinic)).content.decode()


def _autocomplete_users(client, term: str = "") -> tuple[int, set[str]]:
    query = {"app_label": "clinic", "model_name": "staffmembership", "field_name": "user", "term": term}
    response = client.get(reverse("admin:autocomplete"), query)
    names = {row["text"] for row in response.json()["results"]} if response.status_code == 200 else set()
    return response.status_code, names


def test_a_clinic_administrator_finds_the_users_to_grant_a_role_to(client, db):
    """The staff role form picks its user by autocomplete. A clinic administrator has no right to the user admin
    (it lists every tenant's accounts), and the autocomplete answered them 403: no role could be granted. It now
    offers what the form takes: their own staff by any search, an account with no role anywhere yet only by its
    exact username or e-mail (such accounts are any organisation's future staff: not to be browsed); never
    another organisation's staff, a superuser or an inactive account."""
    from django.contrib.auth import get_user_model

    call_command("setup_demo", "--staff-password", "pw-for-tests")
    users = get_user_model().objects
    users.create_user("newcomer-ana", email="ana@example.com", password="x")  # no role anywhere yet
    users.create_user("newcomer-gone", password="x", is_active=False)
    users.create_superuser("root-rita", password="x")
    client.login(username="clinicadmin", password="pw-for-tests")

    status, names = _autocomplete_users(client)
    assert status == 200
    assert {"reception", "clinician"} <= names
    assert not names & {"reception-ny", "clinicadmin-ny", "root-rita", "newcomer-ana", "newcomer-gone"}
    # The user admin itself stays closed to them.
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403

    assert _autocomplete_users(client, "ana") == (200, set())  # no browsing of role-less accounts
    assert _autocomplete_users(client, "Newcomer-Ana") == (200, {"newcomer-ana"})
    assert _autocomplete_users(client, "ANA@example.com") == (200, {"newcomer-ana"})
    assert _autocomplete_users(client, "newcomer-gone") == (200, set())
    assert _autocomplete_users(client, "reception-ny") == (200, set())
    assert _autocomplete_users(client, "recep")[1] == {"reception"}


def test_staff_who_may_not_grant_roles_get_403_from_the_user_search(client, db):
    """An admin user without the right to add or change staff roles learns nothing from the endpoint."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    call_command("setup_demo", "--staff-password", "pw-for-tests")
    viewer = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_patient", "view_appointment"]))
    client.force_login(viewer)
    assert client.get(reverse("admin:index")).status_code == 200  # inside the admin
    assert _autocomplete_users(client)[0] == 403


def test_other_autocomplete_questions_get_djangos_answer(client, db):
    """A field no form lists in `autocomplete_fields` is answered as Django does: the related admin's view right
    and its own (scoped) rows."""
    from clinic.models import Patient

    call_command("setup_demo", "--staff-password", "pw-for-tests")
    client.login(username="clinicadmin-ny", password="pw-for-tests")
    query = {"app_label": "clinic", "model_name": "appointment", "field_name": "patient", "term": ""}
    response = client.get(reverse("admin:autocomplete"), query)
    assert response.status_code == 200
    shown = {row["id"] for row in response.json()["results"]}
    ny = {str(pk) for pk in Patient.objects.filter(clinic__code="demo-ny").values_list("pk", flat=True)}
    assert shown and shown <= ny


def test_a_superuser_finds_every_user(admin_client, db):
    from django.contrib.auth import get_user_model

    call_command("setup_demo", "--staff-password", "pw-for-tests")
    status, names = _autocomplete_users(admin_client, "reception")
    assert status == 200
    assert {"reception", "reception-ny", "reception-west"} <= names
    assert names == set(
        get_user_model().objects.filter(username__icontains="reception").values_list("username", flat=True)
    )
