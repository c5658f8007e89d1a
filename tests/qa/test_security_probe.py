"""An outside probe of security and permissions across the product: staff roles on every front-desk write,
required two-step sign-in and what an unverified session reaches, the admin as an organisation's
administrator, API keys and their scope, throttling, CSRF, security headers and open redirects.

Each test quotes the promise it checks (docs/frontdesk.md, docs/production.md, docs/api.md,
docs/organisations.md, docs/rules.md, api-contract.md, domain.md section 5). Tenants throughout:
* organisation A: `qa-london` and its sister site `qa-west`;
* organisation B: `qa-ny`, alone.

Written by a QA pass; four findings failed then and pass since: an unverified session past required two-step
sign-in on /api/ with any non-Token Authorization header; a site administrator granting themselves the whole
organisation in the staff memberships form; the practitioner form listing every tenant's users; a 500 for a
signed-in user at /login/?next=/login/.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from clinic.models import (
    ApiClient,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    Patient,
    StaffMembership,
    StaffRole,
)
from reminders.models import OutboxMessage, OutboxStatus
from scheduler.defaults import _grant_admin_permissions
from scheduler.models import IntervalRule, RuleBookVersion
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, fresh

# The clock stands at the suite's Monday for every test (`clock`, tests/qa/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

PASSWORD = "qa-security-pw-7731"


# --- Tenants, people, keys -------------------------------------------------------------------------------------


def staff(username, role, *, clinic=None, organisation=None, **extra):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
    StaffMembership.objects.create(user=user, clinic=clinic, organisation=organisation, role=role)
    return user


def clinic_admin(username, *, clinic=None, organisation=None):
    """A clinic administrator as setup_demo makes one: is_staff and the clinic/scheduler/reminders permissions."""
    user = staff(username, StaffRole.CLINIC_ADMIN, clinic=clinic, organisation=organisation, is_staff=True)
    _grant_admin_permissions(user)
    return user


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def api_key(*clinics, clinical=False, name=None) -> tuple[ApiClient, str]:
    client = ApiClient(name=name or f"qa-platform-{ApiClient.objects.count() + 1}", clinical=clinical)
    key = client.set_new_key()
    client.save()
    client.clinics.set(clinics)
    return client, key


def api(key: str | None = None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def london(catalogue):
    return ClinicFactory(code="qa-london", name="QA London")


@pytest.fixture
def west(london):
    return ClinicFactory(code="qa-west", name="QA West", organisation=london.organisation)


@pytest.fixture
def ny(catalogue):
    return ClinicFactory(code="qa-ny", name="Zorgon Beauty NYC", timezone="America/New_York")


@pytest.fixture
def patient(london):
    return PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett", phone="+447911123101")


@pytest.fixture
def stranger(ny):
    return PatientFactory(clinic=ny, first_name="Zebedee", last_name="Quuxley", phone="+12125550199")


def started(patient, clinic, *, status=AppointmentStatus.CONFIRMED, minutes_ago=60):
    """An appointment at `clinic` that began `minutes_ago` (so it may be completed or marked a no-show)."""
    start = NOW - timedelta(minutes=minutes_ago)
    return AppointmentFactory(
        patient=patient,
        clinic=clinic,
        practitioner=PractitionerFactory(clinic=clinic),
        start_at=start,
        end_at=start + timedelta(minutes=30),
        status=status,
    )


def upcoming(patient, clinic, *, days=3):
    start = NOW + timedelta(days=days, hours=1)
    return AppointmentFactory(
        patient=patient,
        clinic=clinic,
        practitioner=PractitionerFactory(clinic=clinic),
        start_at=start,
        end_at=start + timedelta(minutes=30),
    )


def outbox_row(appointment) -> OutboxMessage:
    return OutboxMessage.objects.create(
        appointment=appointment,
        kind="pre_care",
        channel="email",
        due_at=NOW + timedelta(days=1),
        created_at=NOW,
        recipient="z@q.example",
    )


def desk(clinic, path: str) -> str:
    return f"/clinic/{clinic.code}/{path}"


ACTIONS = {
    # action -> (status the appointment needs, POST body)
    "clear": (AppointmentStatus.PENDING_CLEARANCE, {"reason": "Eczema quiescent for 2 years"}),
    "complete": (AppointmentStatus.CONFIRMED, {}),
    "no-show": (AppointmentStatus.CONFIRMED, {}),
}


# --- Front desk: roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_receptionist_posting_a_clinicians_action_gets_403_and_nothing_changes(london, patient, action):
    """docs/frontdesk.md, Permissions: "A receptionist POSTing to clear, complete or mark a no-show gets 403
    from `NotAllowed`, whatever the page showed (those three are clinician actions)." """
    status, body = ACTIONS[action]
    appointment = started(patient, london, status=status)
    reception = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london))

    response = reception.post(desk(london, f"appointments/{appointment.pk}/{action}/"), body)

    assert response.status_code == 403, response.status_code
    assert fresh(appointment).status == status
    assert not AuditEvent.objects.filter(appointment=appointment).exists()
    assert not patient.procedure_records.exists()


@pytest.mark.parametrize("role", [StaffRole.CLINICIAN, StaffRole.CLINIC_ADMIN])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_clinicians_and_clinic_administrators_may_do_them(london, patient, role, action):
    """docs/api.md, roles: "clinician, clinic administrator ... may complete / clear / mark no-show: yes"."""
    status, body = ACTIONS[action]
    appointment = started(patient, london, status=status)
    user = staff("qa-clinical", role, clinic=london)

    response = signed_in(user).post(desk(london, f"appointments/{appointment.pk}/{action}/"), body)

    assert response.status_code == 302, response.status_code
    expected = {
        "clear": AppointmentStatus.CONFIRMED,
        "complete": AppointmentStatus.COMPLETED,
        "no-show": AppointmentStatus.NO_SHOW,
    }
    assert fresh(appointment).status == expected[action]


def test_a_grant_at_the_clinic_wins_over_an_organisation_wide_one(london, west, patient):
    """docs/organisations.md: "A role granted at the clinic itself wins over an organisation-wide one."
    A clinician of the whole organisation who is a receptionist at London completes at West, not at London."""
    user = staff("qa-mixed", StaffRole.CLINICIAN, organisation=london.organisation)
    StaffMembership.objects.create(user=user, clinic=london, role=StaffRole.RECEPTIONIST)
    at_london = started(patient, london)
    at_west = started(patient, west, minutes_ago=120)  # the patient cannot be in two places
    client = signed_in(user)

    refused = client.post(desk(london, f"appointments/{at_london.pk}/complete/"))
    done = client.post(desk(west, f"appointments/{at_west.pk}/complete/"))

    assert refused.status_code == 403 and fresh(at_london).status == AppointmentStatus.CONFIRMED
    assert done.status_code == 302 and fresh(at_west).status == AppointmentStatus.COMPLETED


def test_the_api_judges_a_staff_sessions_right_at_the_appointments_clinic(london, west, patient):
    """docs/frontdesk.md: "The `Actor` passed to the services carries `clinical` from the user's role at that
    clinic"; docs/api.md: a receptionist may not complete (403). Receptionist at London, clinician at West."""
    user = staff("qa-two-hats", StaffRole.RECEPTIONIST, clinic=london)
    StaffMembership.objects.create(user=user, clinic=west, role=StaffRole.CLINICIAN)
    at_london = started(patient, london)
    at_west = started(patient, west, minutes_ago=120)  # the patient cannot be in two places
    session = APIClient()
    session.force_login(user)

    refused = session.post(f"/api/v1/appointments/{at_london.pk}/complete/", {}, format="json")
    done = session.post(f"/api/v1/appointments/{at_west.pk}/complete/", {}, format="json")

    assert refused.status_code == 403 and refused.json()["code"] == "clinician_required"
    assert fresh(at_london).status == AppointmentStatus.CONFIRMED
    assert done.status_code == 200 and fresh(at_west).status == AppointmentStatus.COMPLETED


def test_a_receptionist_cannot_merge_records_on_the_desk(london, patient):
    """docs/frontdesk.md: "Merge duplicate (clinicians and clinic administrators ...)"; docs/organisations.md:
    merging "is for clinicians and clinic administrators"."""
    duplicate = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennet", phone="+447911123101")
    reception = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london))

    response = reception.post(desk(london, f"patients/{duplicate.pk}/merge/"), {"into": str(patient.pk)})

    assert response.status_code == 403, response.status_code
    assert fresh(duplicate).merged_into_id is None
    assert Patient.objects.filter(merged_into__isnull=False).count() == 0


def test_a_receptionist_books_moves_and_cancels_and_edits_the_record(london, patient):
    """domain.md section 5: "Receptionists book, reschedule and cancel ... and take the medical-history intake";
    these are not the clinician's actions, so they are not refused."""
    appointment = upcoming(patient, london)
    reception = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london))

    cancelled = reception.post(desk(london, f"appointments/{appointment.pk}/cancel/"), {"reason": "asked to"})
    edited = reception.post(
        desk(london, f"patients/{patient.pk}/edit/"),
        {
            "first_name": "Olivia",
            "last_name": "Bennett-Smith",
            "date_of_birth": "",
            "email": patient.email,
            "phone": "07911 123101",
            "reminder_channels": ["email"],
        },
    )

    assert cancelled.status_code == 302 and fresh(appointment).status == AppointmentStatus.CANCELLED
    assert edited.status_code == 302, edited.status_code
    assert fresh(patient).last_name == "Bennett-Smith"


@pytest.mark.parametrize(
    "path,body",
    [
        ("appointments/{a}/cancel/", {"reason": "x"}),
        ("appointments/{a}/complete/", {}),
        ("appointments/{a}/no-show/", {}),
        ("appointments/{a}/check-in/", {}),
        ("appointments/{a}/notes/", {"notes": "MALLORY WAS HERE"}),
        ("patients/{p}/edit/", {"first_name": "Mallory", "last_name": "X", "reminder_channels": ["email"]}),
        ("patients/{p}/merge/", {"into": "{mine}"}),
    ],
)
def test_another_organisations_rows_are_404_to_a_clinician_and_unchanged(london, patient, ny, stranger, path, body):
    """docs/frontdesk.md: "a clinic, patient or appointment of another clinic answers 404, exactly like one
    that does not exist"; tried both under one's own clinic's address and under the other clinic's."""
    theirs = started(stranger, ny, minutes_ago=30)
    clinician = signed_in(staff("qa-clin", StaffRole.CLINICIAN, clinic=london))
    url = path.format(a=theirs.pk, p=stranger.pk)
    data = {k: (str(patient.pk) if v == "{mine}" else v) for k, v in body.items()}

    for clinic in (london, ny):
        response = clinician.post(desk(clinic, url), data)
        assert response.status_code == 404, (clinic.code, response.status_code)

    theirs = fresh(theirs)
    assert (theirs.status, theirs.notes, theirs.checked_in_at) == (AppointmentStatus.CONFIRMED, "", None)
    assert (fresh(stranger).first_name, fresh(stranger).merged_into_id) == ("Zebedee", None)
    assert fresh(patient).merged_into_id is None


def test_the_rules_page_shows_only_ones_own_organisations_rule_book(london, ny):
    """docs/frontdesk.md: `/clinic/<code>/rules/` is "The organisation's rules, read-only"; docs/organisations.md:
    "anything of another organisation: not found (404 in URLs)"."""
    from scheduler import rulebooks

    root = get_user_model().objects.create_superuser("qa-root", password=PASSWORD)
    default = IntervalRule.objects.filter(default_key__isnull=False).first()
    rule = IntervalRule(
        organisation=ny.organisation,
        replaces=default,
        earlier_procedure_id=default.earlier_procedure_id,
        earlier_medication_id=default.earlier_medication_id,
        later_procedure_id=default.later_procedure_id,
        gap_value=default.gap_value + 1,
        gap_unit=default.gap_unit,
        severity=default.severity,
        source="Zorgon protocol",
    )
    rulebooks.rule_save(rule=rule, user=root, reason="ZORGON-SECRET-REASON", now=NOW)
    reception = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london))

    own = reception.get(desk(london, "rules/"))
    theirs = reception.get(desk(ny, "rules/"))

    assert own.status_code == 200 and "ZORGON" not in own.content.decode().upper()
    assert theirs.status_code == 404 and "ZORGON" not in theirs.content.decode().upper()


# --- CSRF --------------------------------------------------------------------------------------------------


CSRF_POSTS = [
    ("patients/{p}/book/confirm/", {"procedure": "botox", "start_at": "2026-03-05T10:00"}),
    ("appointments/{a}/reschedule/", {"start_at": "2026-03-06T10:00"}),
    ("appointments/{a}/cancel/", {"reason": "csrf"}),
    ("appointments/{a}/clear/", {"reason": "csrf"}),
    ("appointments/{a}/complete/", {}),
    ("appointments/{a}/no-show/", {}),
    ("appointments/{a}/check-in/", {}),
    ("appointments/{a}/notes/", {"notes": "CSRF"}),
    ("patients/new/", {"first_name": "Eve", "last_name": "Forger", "reminder_channels": ["email"]}),
    ("patients/{p}/edit/", {"first_name": "Eve", "last_name": "Forger", "reminder_channels": ["email"]}),
    ("patients/{p}/merge/", {"into": "{p}"}),
    ("patients/{p}/history/medications/", {"drug": "isotretinoin", "started_on": "2026-01-01"}),
    ("patients/{p}/history/procedures/", {"procedure": "botox", "performed_on": "2026-02-01"}),
    ("patients/{p}/plan/book/", {"template": "botox-maintenance", "start_from": "2026-03-09"}),
    ("calendar/book/new-patient/", {"first_name": "Eve", "last_name": "Forger"}),
]


@pytest.mark.parametrize("path,body", CSRF_POSTS, ids=[p for p, _ in CSRF_POSTS])
def test_every_front_desk_post_without_the_csrf_token_is_refused_and_writes_nothing(london, patient, path, body):
    """docs/frontdesk.md: "Every form carries Django's CSRF token; the action URLs accept POST only." """
    appointment = started(patient, london, status=AppointmentStatus.PENDING_CLEARANCE, minutes_ago=30)
    user = staff("qa-clin", StaffRole.CLINIC_ADMIN, clinic=london)
    client = signed_in(user, enforce_csrf_checks=True)
    before = (Patient.objects.count(), Appointment.objects.count(), AuditEvent.objects.count())

    url = desk(london, path.format(a=appointment.pk, p=patient.pk))
    response = client.post(url, {k: v.format(p=patient.pk) if isinstance(v, str) else v for k, v in body.items()})

    assert response.status_code == 403, response.status_code
    assert "CSRF" in response.content.decode()  # refused for the missing token, not for some other reason
    assert (Patient.objects.count(), Appointment.objects.count(), AuditEvent.objects.count()) == before
    appointment = fresh(appointment)
    assert (appointment.status, appointment.notes, appointment.checked_in_at) == (
        AppointmentStatus.PENDING_CLEARANCE,
        "",
        None,
    )
    assert (fresh(patient).first_name, patient.medication_courses.count(), patient.procedure_records.count()) == (
        "Olivia",
        0,
        0,
    )


def test_sign_out_is_csrf_protected(london):
    """docs/frontdesk.md: `/logout/` (POST); every form carries the CSRF token: a forged sign-out does nothing."""
    client = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london), enforce_csrf_checks=True)
    assert client.post("/logout/").status_code == 403
    assert client.get(desk(london, "")).status_code == 200


def test_the_sign_in_limit_counts_the_real_address_not_a_forwarded_for_header(london):
    """docs/frontdesk.md, Sign-in rate limit: "The address is `REMOTE_ADDR`; ... (do not trust `X-Forwarded-For`
    blindly)". Past FRONTDESK_LOGIN_MAX_FAILURES (5) "the password is not even checked: the form answers 429"."""
    staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london)
    client = Client()
    for n in range(5):
        wrong = client.post(
            "/login/",
            {"username": "qa-desk", "password": "nope"},
            REMOTE_ADDR="10.9.9.9",
            HTTP_X_FORWARDED_FOR=f"1.2.3.{n}",
        )
        assert wrong.status_code == 200

    locked = client.post(
        "/login/", {"username": "qa-desk", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="8.8.8.8"
    )

    assert locked.status_code == 429 and "_auth_user_id" not in client.session


def test_the_admin_sign_in_address_signs_nobody_in_by_itself(london):
    """docs/frontdesk.md: "The admin site has no login form of its own: `/admin/login/` sends people here" (so
    neither the limiter nor the code can be skipped through it)."""
    clinic_admin("qa-cadmin", clinic=london)
    client = Client()

    response = client.post("/admin/login/", {"username": "qa-cadmin", "password": PASSWORD, "next": "/admin/"})

    assert response.status_code == 302 and response.url.startswith("/login/")
    assert "_auth_user_id" not in client.session


# --- Two-step sign-in ------------------------------------------------------------------------------------------


@pytest.fixture
def required(settings):
    settings.STAFF_TWO_FACTOR_REQUIRED = True


def test_an_unverified_administrator_reaches_nothing_but_the_enrolment_page(required, london, patient):
    """docs/production.md: administrators "sign in with a password and a code ... Until they set one up ... they
    reach nothing else"; docs/frontdesk.md: the middleware "answers `403 two_factor_required` under `/api/`".
    Reads and writes alike, for a clinic administrator and an organisation-wide one."""
    appointment = upcoming(patient, london)
    for user in (
        clinic_admin("qa-cadmin", clinic=london),
        clinic_admin("qa-orgadmin", organisation=london.organisation),
    ):
        client = signed_in(user)
        for path in (desk(london, ""), desk(london, f"patients/{patient.pk}/"), "/admin/"):
            response = client.get(path)
            assert response.status_code == 302 and response.url.startswith("/account/two-step/"), (user, path)
        fhir = client.get("/fhir/r4/Appointment")  # FHIR answers as FHIR does: an OperationOutcome
        assert fhir.status_code == 403 and fhir["Content-Type"] == "application/fhir+json"
        assert fhir.json()["issue"][0]["details"]["coding"][0]["code"] == "two_factor_required"
        assert client.get("/fhir/r4/Appointment", HTTP_AUTHORIZATION="Bearer x").status_code == 403
        cancel = client.post(desk(london, f"appointments/{appointment.pk}/cancel/"), {"reason": "x"})
        assert cancel.status_code == 302 and fresh(appointment).status == AppointmentStatus.CONFIRMED
        listed = client.get("/api/v1/patients/")
        assert listed.status_code == 403 and listed.json()["code"] == "two_factor_required"
        assert client.get("/account/two-step/").status_code == 200


@pytest.mark.parametrize("header", ["Basic cWE6cWE=", "Bearer anything", ""])
def test_an_unverified_session_cannot_reach_the_api_by_sending_some_other_authorization_header(
    required, london, patient, header
):
    """docs/frontdesk.md: the middleware "answers `403 two_factor_required` under `/api/` (a session, not an API
    key)". A header that is not an API key leaves the caller a session, so it must still be refused."""
    client = signed_in(clinic_admin("qa-cadmin", clinic=london))

    response = client.get("/api/v1/patients/", HTTP_AUTHORIZATION=header)

    assert response.status_code in (401, 403), response.status_code
    assert "Bennett" not in response.content.decode()


def test_a_half_done_sign_in_is_nobody(required, london):
    """docs/frontdesk.md: "the right password only marks the session as half-done for five minutes (nobody is
    signed in yet)"."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london)
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    client = Client()

    step = client.post("/login/", {"username": "qa-desk", "password": PASSWORD})

    assert step.status_code == 302 and step.url == "/login/code/"
    assert "_auth_user_id" not in client.session
    page = client.get(desk(london, ""))
    assert page.status_code == 302 and page.url.startswith("/login/")
    assert client.get("/api/v1/clinics/").status_code == 401


# --- The admin, as an organisation's administrator ---------------------------------------------------------


@pytest.fixture
def london_admin(london, west):
    """Administrator of the London site only (not of West, not of the organisation)."""
    return clinic_admin("qa-london-admin", clinic=london)


def test_a_site_administrator_cannot_grant_themselves_the_whole_organisation(london, west, london_admin):
    """docs/organisations.md: "In the admin, a clinic administrator sees their clinics"; a grant is "to a clinic or
    to a whole organisation (every clinic, now and later)". London's administrator adding an organisation-wide
    administrator grant for themselves would reach West, which nobody granted them."""
    west_patient = PatientFactory(clinic=west, first_name="Wendy", last_name="Westley")
    at_west = upcoming(west_patient, west)
    client = signed_in(london_admin)

    client.post(
        "/admin/clinic/staffmembership/add/",
        {"user": london_admin.pk, "clinic": "", "organisation": london.organisation.pk, "role": "clinic_admin"},
    )

    assert not StaffMembership.objects.filter(user=london_admin, clinic=None).exists()
    assert client.get(f"/admin/clinic/appointment/{at_west.pk}/change/").status_code in (302, 404)


def test_the_practitioner_form_names_no_user_of_another_organisation(london, ny, london_admin):
    """docs/organisations.md: "anything of another organisation: not found"; the admin shows a clinic
    administrator their own clinics' rows (tests/api/test_tenancy_sweep.py checks the staff lists)."""
    staff("zorgon-desk-user", StaffRole.RECEPTIONIST, clinic=ny)
    practitioner = PractitionerFactory(clinic=london)
    client = signed_in(london_admin)

    add = client.get("/admin/clinic/practitioner/add/")
    change = client.get(f"/admin/clinic/practitioner/{practitioner.pk}/change/")

    assert add.status_code == 200 and change.status_code == 200
    assert "zorgon-desk-user" not in add.content.decode()
    assert "zorgon-desk-user" not in change.content.decode()


def test_another_organisations_rows_are_absent_from_every_admin_door(london, london_admin, ny, stranger):
    """docs/organisations.md: the admin shows a clinic administrator "their clinics and the patients of their
    organisations"; anything else is not found. Tried through the change page, the history page, the
    delete page, a list filter naming its id, the search box and the autocomplete endpoint."""
    theirs = upcoming(stranger, ny)
    message = outbox_row(theirs)
    client = signed_in(london_admin)
    doors = [
        f"/admin/clinic/patient/{stranger.pk}/change/",
        f"/admin/clinic/patient/{stranger.pk}/history/",
        f"/admin/clinic/patient/{stranger.pk}/delete/",
        f"/admin/clinic/appointment/{theirs.pk}/change/",
        f"/admin/clinic/appointment/{theirs.pk}/history/",
        f"/admin/reminders/outboxmessage/{message.pk}/change/",
        f"/admin/clinic/clinic/{ny.pk}/change/",
        f"/admin/clinic/organisation/{ny.organisation.pk}/change/",
        f"/admin/clinic/patient/?organisation__id__exact={ny.organisation.pk}",
        f"/admin/clinic/patient/?clinic__id__exact={ny.pk}",
        "/admin/clinic/patient/?q=Zebedee",
        f"/admin/reminders/outboxmessage/?q={theirs.pk}",
        "/admin/autocomplete/?app_label=clinic&model_name=appointment&field_name=patient&term=Quux",
        "/admin/autocomplete/?app_label=clinic&model_name=patient&field_name=clinic&term=NYC",
        "/admin/autocomplete/?app_label=clinic&model_name=clinic&field_name=organisation&term=qa-ny",
    ]
    leaks = []
    for door in doors:
        response = client.get(door, follow=True)
        assert response.status_code < 500, door
        text = response.content.decode()  # no door's address carries these words, so none is an echo
        if "Quuxley" in text or "Zorgon" in text or "z@q.example" in text:
            leaks.append(door)
    assert leaks == []


def test_raw_ids_of_another_organisation_in_admin_forms_are_refused(london, london_admin, ny, stranger):
    """docs/organisations.md: an administrator sees "their clinics and the patients of their organisations";
    docs/reminders.md: calendar feeds, "a clinic administrator sees and chooses only their clinics'". Ids typed
    into the forms by hand (no choice lists them) make nothing: no patient registered at New York, no feed of
    New York's patient or practitioner, no practitioner moved there."""
    from reminders.models import CalendarFeed

    theirs = PractitionerFactory(clinic=ny, name="Dr Zorgon")
    mine = PractitionerFactory(clinic=london, name="Dr Mine")
    client = signed_in(london_admin)
    patients_before = Patient.objects.filter(clinic=ny).count()

    responses = [
        client.post(
            "/admin/clinic/patient/add/",
            {
                "clinic": str(ny.pk),
                "first_name": "Injected",
                "last_name": "Patient",
                "reminder_channels": '["email"]',
                **{
                    f"{prefix}-{k}": v
                    for prefix in ("conditions", "medication_courses", "procedure_records")
                    for k, v in {"TOTAL_FORMS": "0", "INITIAL_FORMS": "0"}.items()
                },
            },
        ),
        client.post("/admin/reminders/calendarfeed/add/", {"patient": str(stranger.pk)}),
        client.post("/admin/reminders/calendarfeed/add/", {"practitioner": str(theirs.pk)}),
        client.post(
            f"/admin/clinic/practitioner/{mine.pk}/change/",
            {"clinic": str(ny.pk), "name": "Dr Mine", "is_active": "on"},
        ),
    ]

    assert all(r.status_code < 500 for r in responses)
    assert Patient.objects.filter(clinic=ny).count() == patients_before
    assert not CalendarFeed.objects.exists()
    assert fresh(mine).clinic_id == london.pk
    # The control: the same form with one's own practitioner makes a feed.
    client.post("/admin/reminders/calendarfeed/add/", {"practitioner": str(mine.pk)})
    assert CalendarFeed.objects.filter(practitioner=mine).exists()


def test_an_admin_action_posted_with_another_organisations_row_changes_nothing(
    london, london_admin, patient, ny, stranger
):
    """docs/organisations.md: another organisation's rows are not found to an administrator: the outbox's
    "Cancel (unsent messages)" action, posted with their message's id, cancels nothing."""
    message = outbox_row(upcoming(stranger, ny))
    mine = outbox_row(upcoming(patient, london))  # the control: the same action on one's own row works
    before = message.status

    response = signed_in(london_admin).post(
        "/admin/reminders/outboxmessage/",
        {"action": "cancel", "_selected_action": [str(message.pk), str(mine.pk)], "index": "0"},
    )

    assert response.status_code == 302
    assert fresh(mine).status == OutboxStatus.CANCELLED
    assert fresh(message).status == before


def test_an_administrator_cannot_write_another_organisations_rule_book(london, london_admin, ny):
    """docs/rules.md: an organisation's administrators "add, change and delete their organisation's rules; the
    defaults and other organisations' rules are read-only or absent for them"."""
    default = IntervalRule.objects.filter(default_key__isnull=False, is_active=True).first()
    versions = RuleBookVersion.objects.count()
    client = signed_in(london_admin)

    response = client.post(
        "/admin/scheduler/intervalrule/add/",
        {
            "organisation": str(ny.organisation.pk),
            "replaces": str(default.pk),
            "earlier_procedure": default.earlier_procedure_id or "",
            "earlier_medication": default.earlier_medication_id or "",
            "later_procedure": default.later_procedure_id,
            "gap_value": default.gap_value + 2,
            "gap_unit": default.gap_unit,
            "severity": default.severity,
            "basis": default.basis,
            "scope": default.scope,
            "source": "cross-tenant",
            "is_active": "on",
            "change_reason": "cross-tenant write",
        },
    )
    changed_default = client.post(
        f"/admin/scheduler/intervalrule/{default.pk}/change/",
        {
            "later_procedure": default.later_procedure_id,
            "gap_value": 1,
            "gap_unit": default.gap_unit,
            "severity": "warn",
            "change_reason": "weaken the default for everyone",
        },
    )

    assert response.status_code < 500 and changed_default.status_code < 500
    assert not IntervalRule.objects.filter(organisation=ny.organisation).exists()
    assert fresh(default).severity == default.severity and fresh(default).gap_value == default.gap_value
    assert RuleBookVersion.objects.count() == versions


def test_api_clients_and_webhook_endpoints_stay_with_superusers(london, london_admin):
    """docs/reminders.md (admin): "webhook endpoints (and their secrets) ... are for superusers only";
    scheduler/defaults: API clients "stay with superusers". An administrator can neither list nor add them."""
    platform, _ = api_key(london, name="qa-existing-platform")
    client = signed_in(london_admin)

    listing = client.get("/admin/clinic/apiclient/")
    change = client.get(f"/admin/clinic/apiclient/{platform.pk}/change/")
    added = client.post("/admin/clinic/apiclient/add/", {"name": "qa-rogue", "clinics": [str(london.pk)]})
    hooks = client.get("/admin/reminders/webhookendpoint/")

    assert listing.status_code == 403 and change.status_code in (302, 403, 404) and hooks.status_code == 403
    assert added.status_code == 403 and not ApiClient.objects.filter(name="qa-rogue").exists()


# --- API keys ----------------------------------------------------------------------------------------------


def test_revoked_rotated_and_mixed_keys_are_401_with_the_token_challenge(london):
    """docs/api.md: "No key (or an unknown, malformed or revoked key): 401 with `WWW-Authenticate: Token`";
    rotation: "the old key stops working at once"."""
    revoked, revoked_key = api_key(london)
    revoked.revoked_at = NOW
    revoked.save()
    rotated, old_key = api_key(london)
    rotated.set_new_key()
    rotated.save()
    holder, good = api_key(london)
    while good.partition(".")[0].isdigit():  # a hex prefix of digits only reads the same in capitals (2 % of keys)
        good = holder.set_new_key()
        holder.save()
    other, other_key = api_key(london)
    mixed = f"{other.key_prefix}.{good.partition('.')[2]}"  # another client's prefix, a valid secret
    upper_prefix = f"{good.partition('.')[0].upper()}.{good.partition('.')[2]}"
    assert upper_prefix != good

    for key in (revoked_key, old_key, mixed, upper_prefix, good + "x", good[:-1], f"{good} extra"):
        response = api(key).get("/api/v1/clinics/")
        assert response.status_code == 401, key
        assert response["WWW-Authenticate"] == "Token"
        assert response["Content-Type"] == "application/problem+json"
    assert api(good).get("/api/v1/clinics/").status_code == 200


def test_an_unknown_prefix_is_still_compared_in_constant_time(london, monkeypatch):
    """docs/api.md (api/authentication.py): "Keys are looked up by their public prefix and compared by hash in
    constant time"; "Compare even when there is no client, so timing says nothing about which prefixes exist"."""
    import api.authentication as authentication

    calls, compare = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(authentication.hmac, "compare_digest", spy)
    _, key = api_key(london)

    known = api(key).get("/api/v1/clinics/")
    unknown = api("deadbeef.not-a-real-secret").get("/api/v1/clinics/")

    assert known.status_code == 200 and unknown.status_code == 401
    assert len(calls) == 2


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("complete/", {}, AppointmentStatus.CONFIRMED),
        ("no-show/", {}, AppointmentStatus.CONFIRMED),
        ("clear/", {"reason": "fine"}, AppointmentStatus.PENDING_CLEARANCE),
    ],
)
def test_a_key_without_the_clinical_flag_gets_403_on_clinical_actions(london, patient, path, body, status):
    """docs/api.md: an API client "may complete / clear / mark no-show ... only with `--clinical`"; "A known
    caller without the right: 403"."""
    appointment = started(patient, london, status=status)
    _, key = api_key(london, clinical=False)

    response = api(key).post(f"/api/v1/appointments/{appointment.pk}/{path}", body, format="json")

    assert response.status_code == 403 and response.json()["code"] == "clinician_required"
    assert fresh(appointment).status == status
    assert not AuditEvent.objects.filter(appointment=appointment).exists()


def test_a_key_without_the_clinical_flag_cannot_merge(london, patient):
    """docs/organisations.md: merging is "for clinicians and clinic administrators (API clients with the clinical
    flag)"; docs/api.md: "403 `clinician_required`"."""
    duplicate = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennet")
    _, key = api_key(london, clinical=False)

    response = api(key).post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(patient.pk)}, format="json")

    assert response.status_code == 403 and response.json()["code"] == "clinician_required"
    assert fresh(duplicate).merged_into_id is None


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("get", "", None),
        ("post", "cancel/", {"reason": "x"}),
        ("post", "complete/", {}),
        ("post", "no-show/", {}),
        ("post", "reschedule/", {"start": "2026-03-09T10:00:00+00:00"}),
    ],
)
def test_a_key_granted_one_clinic_finds_no_appointment_at_another(
    london, west, ny, patient, stranger, method, path, body
):
    """api-contract.md: a key "is scoped to the clinics it was granted; anything outside that scope is a 404, never
    a 403 that confirms it exists"; docs/api.md: appointments are "acted on only at the caller's own clinics" (the
    sister site included). A clinical key, so that 404 is not a 403 in disguise."""
    at_west = started(patient, west, minutes_ago=30)
    at_ny = started(stranger, ny, minutes_ago=30)
    _, key = api_key(london, clinical=True)

    for appointment in (at_west, at_ny):
        url = f"/api/v1/appointments/{appointment.pk}/{path}"
        response = getattr(api(key), method)(url, body, format="json") if body is not None else api(key).get(url)
        assert response.status_code == 404, (appointment.clinic.code, response.status_code)
        assert response.json()["code"] in ("unknown_appointment", "not_found")
        appointment = fresh(appointment)
        assert appointment.status == AppointmentStatus.CONFIRMED and appointment.start_at == NOW - timedelta(minutes=30)


def test_throttling_answers_429_with_retry_after_per_caller(london, settings):
    """docs/api.md: `API_THROTTLE_RATE` is "requests per caller (API client, staff user, anonymous address)";
    api-contract.md: "Throttling answers 429 with `Retry-After`"; docs/api.md: 429 "with `Retry-After` and
    `retry_after`"."""
    settings.API_THROTTLE_RATE = "3/min"
    _, first = api_key(london)
    _, second = api_key(london)

    answers = [api(first).get("/api/v1/clinics/").status_code for _ in range(3)]
    throttled = api(first).get("/api/v1/clinics/")

    assert answers == [200, 200, 200]
    assert throttled.status_code == 429 and throttled["Content-Type"] == "application/problem+json"
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert throttled.json()["retry_after"] == int(throttled["Retry-After"])
    assert api(second).get("/api/v1/clinics/").status_code == 200  # another caller counts alone


def test_a_staff_session_has_no_webhook_endpoints(london):
    """docs/api.md, Webhook subscriptions: "An API client manages its **own** webhook endpoints ... a staff session
    has none (403)"."""
    session = APIClient()
    session.force_login(staff("qa-cadmin", StaffRole.CLINIC_ADMIN, clinic=london))

    listed = session.get("/api/v1/webhooks/")

    assert listed.status_code == 403 and listed["Content-Type"] == "application/problem+json"


# --- Headers, cookies, redirects ---------------------------------------------------------------------------


def test_every_answer_with_or_without_patient_data_is_no_store_private_and_unframeable(london, patient):
    """docs/production.md: "every page and API answer carries `Cache-Control: no-store, private`"; CSP: "no inline
    script, no framing (`frame-ancestors 'none'`)". Errors and anonymous answers included."""
    reception = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london))
    _, key = api_key(london)
    answers = {
        "desk page": reception.get(desk(london, f"patients/{patient.pk}/")),
        "desk 404": reception.get(desk(london, "patients/00000000-0000-0000-0000-000000000000/")),
        "desk 403": reception.post(desk(london, f"appointments/{started(patient, london).pk}/complete/")),
        "api 200": api(key).get(f"/api/v1/patients/{patient.pk}/"),
        "api 401": api().get("/api/v1/patients/"),
        "api 404": api(key).get("/api/v1/patients/nope/"),
        "login": Client().get("/login/"),
        "portal bad link": Client().get("/my/not-a-token/"),
    }
    for name, response in answers.items():
        cache = {part.strip() for part in response.get("Cache-Control", "").split(",")}
        assert {"no-store", "private"} <= cache, (name, response.get("Cache-Control"))
        policy = response.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy, name
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0], name


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        " https://evil.example/",
        "http://testserver@evil.example/",
    ],
)
def test_sign_in_never_sends_anyone_off_the_site(london, target):
    """docs/frontdesk.md: sign-in at `/login/` (and `/admin/login/` "sends people here"); a `next` from the
    address is followed only on this site (tests/ops: "never leaves the site"). Both doors, and a signed-in user
    who opens the sign-in page again."""
    from urllib.parse import quote

    staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london)
    for start in (f"/login/?next={quote(target)}", f"/admin/login/?next={quote(target)}"):
        client = Client()
        login_url = start
        if start.startswith("/admin/"):
            login_url = client.get(start).url
        response = client.post(login_url, {"username": "qa-desk", "password": PASSWORD})
        assert response.status_code == 302, start
        location = response["Location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\")), (start, location)
        again = client.get(f"/login/?next={quote(target)}")
        assert again.status_code == 302 and again["Location"].startswith("/") and "evil" not in again["Location"]


def test_two_step_set_up_never_sends_anyone_off_the_site(london):
    """docs/frontdesk.md: setting up two-step sign-in at `/account/two-step/`: confirmed with a code, the user goes
    on to `next`, which must be a page of this site."""
    from django_otp.oath import TOTP

    from frontdesk import twofactor

    user = staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london)
    client = signed_in(user)
    client.get("/account/two-step/")
    device = twofactor.enrolment_device(user)
    code = f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():06d}"

    response = client.post("/account/two-step/?next=//evil.example/", {"code": code})

    assert response.status_code == 302 and response["Location"].startswith("/")
    assert not response["Location"].startswith("//")


def test_a_signed_in_user_sent_back_to_the_sign_in_page_gets_no_500(london):
    """docs/frontdesk.md: "No bad input answers 500"; `/` (and the sign-in page, for a signed-in user) sends them
    on. A `next` naming the sign-in page itself (a stale link, a crafted one) must not crash it."""
    client = signed_in(staff("qa-desk", StaffRole.RECEPTIONIST, clinic=london))
    client.raise_request_exception = False

    response = client.get("/login/?next=/login/")

    assert response.status_code in (200, 302), response.status_code


def test_a_site_administrator_leaves_the_organisations_grants_and_other_tenants_users_alone(london, ny, london_admin):
    """The other half of the memberships fix: the organisation's administrator's own grant is shown to a site's
    administrator but not changeable or deletable by them, and the form takes neither a superuser nor another
    organisation's staff, typed by id (the autocomplete never offered them)."""
    org_admin = clinic_admin("qa-org-admin", organisation=london.organisation)
    grant = StaffMembership.objects.get(user=org_admin)
    elsewhere = staff("zorgon-receptionist", StaffRole.RECEPTIONIST, clinic=ny)
    root = get_user_model().objects.create_superuser("qa-root", password=PASSWORD)
    client = signed_in(london_admin)

    change = client.post(
        f"/admin/clinic/staffmembership/{grant.pk}/change/",
        {"user": org_admin.pk, "clinic": "", "organisation": london.organisation.pk, "role": "receptionist"},
    )
    assert change.status_code in (302, 403) and StaffMembership.objects.get(pk=grant.pk).role == "clinic_admin"
    client.post(f"/admin/clinic/staffmembership/{grant.pk}/delete/", {"post": "yes"})
    assert StaffMembership.objects.filter(pk=grant.pk).exists()

    for user in (elsewhere, root):
        client.post(
            "/admin/clinic/staffmembership/add/",
            {"user": user.pk, "clinic": london.pk, "organisation": "", "role": "clinic_admin"},
        )
        assert not StaffMembership.objects.filter(user=user, clinic=london).exists(), user
