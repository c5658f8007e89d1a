"""A sweep for leaks between tenants: can a caller scoped to one clinic or organisation read or change
another's data, through the API, FHIR, the front desk, patient links or the admin?

Three tenants throughout:
* `clinic` (London) and `west`: two clinics of one organisation (A);
* `other_clinic` (New York): alone in organisation B.

Each test asserts the safe behaviour. Seven failed when a QA pass wrote them (2 December): the admin
showed another organisation's rule-book versions and re-check runs and named every tenant in its list
filters, let a clinic administrator change the shared procedure catalogue and reminder texts; the API's
`?patient=` filter refused a sister site's patient; the front desk's plan booking took a session time
without an offset to a 500.
"""

from datetime import UTC, datetime

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from clinic.models import (
    Appointment,
    AppointmentStatus,
    MedicationCourse,
    PatientCondition,
    ProcedureRecord,
    ProcedureType,
    StaffMembership,
    StaffRole,
)
from plans.models import TreatmentPlan
from reminders.models import OutboxMessage, ReminderTemplate
from scheduler.models import RecheckRun, RuleBookVersion
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import (
    MedicationCourseFactory,
    PatientFactory,
)

pytestmark = pytest.mark.django_db

TUESDAY_10 = "2026-03-03T10:00:00+00:00"
WEDNESDAY_11 = "2026-03-04T11:00:00+00:00"
THURSDAY_10 = "2026-03-05T10:00:00+00:00"


# --- Fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def west_patient(west):
    """A patient of organisation A whose home clinic is West."""
    return PatientFactory(clinic=west, first_name="Wendy", last_name="West", phone="+447911000111")


def key_for(*clinics, clinical=True, name=None) -> str:
    return new_api_client(*clinics, clinical=clinical, name=name)[1]


def book(api, patient, procedure="botox", start=TUESDAY_10, **extra):
    return api.post(
        "/api/v1/appointments/",
        {"patient": str(patient.pk), "procedure": procedure, "start": start, **extra},
        format="json",
    )


def booked(api, patient, **kwargs) -> str:
    response = book(api, patient, **kwargs)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def not_500(response):
    assert response.status_code < 500, response.content[:500]
    return response


# --- API: another organisation's patient in the URL ----------------------------------------------------


PATIENT_URLS = [
    ("get", "/api/v1/patients/{p}/", None),
    ("patch", "/api/v1/patients/{p}/", {"first_name": "Mallory"}),
    ("get", "/api/v1/patients/{p}/procedures/", None),
    ("post", "/api/v1/patients/{p}/procedures/", {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"}),
    ("get", "/api/v1/patients/{p}/medications/", None),
    ("post", "/api/v1/patients/{p}/medications/", {"drug": "isotretinoin", "started_on": "2026-01-01"}),
    ("get", "/api/v1/patients/{p}/medications/{c}/", None),
    ("patch", "/api/v1/patients/{p}/medications/{c}/", {"ended_on": "2026-02-01"}),
    ("get", "/api/v1/patients/{p}/conditions/", None),
    ("put", "/api/v1/patients/{p}/conditions/", [{"condition": "pregnancy", "status": "active"}]),
    ("post", "/api/v1/patients/{p}/plans/", {"template": "botox-maintenance", "start_from": "2026-03-09"}),
    ("post", "/api/v1/patients/{p}/merge/", {"into": "{mine}"}),
]


@pytest.mark.parametrize("method,path,body", PATIENT_URLS, ids=[f"{m} {p}" for m, p, _ in PATIENT_URLS])
def test_another_organisations_patient_is_404_everywhere_and_unchanged(
    templates, clinic, patient, practitioner, other_patient, method, path, body
):
    course = MedicationCourseFactory(patient=other_patient, started_on=datetime(2025, 1, 1).date())
    api = http(key_for(clinic))
    url = path.format(p=other_patient.pk, c=course.pk)
    if isinstance(body, dict):
        body = {k: (str(patient.pk) if v == "{mine}" else v) for k, v in body.items()}
    response = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
    problem_of(response, 404)
    other_patient.refresh_from_db()
    course.refresh_from_db()
    assert other_patient.first_name == "Other" and other_patient.merged_into_id is None
    assert course.ended_on is None
    assert MedicationCourse.objects.filter(patient=other_patient).count() == 1
    assert not ProcedureRecord.objects.filter(patient=other_patient).exists()
    assert not PatientCondition.objects.filter(patient=other_patient).exists()
    assert not Appointment.objects.exists()


def test_a_course_of_another_organisations_patient_under_my_patients_url_is_404(clinic, patient, other_patient):
    course = MedicationCourseFactory(patient=other_patient, started_on=datetime(2025, 1, 1).date())
    api = http(key_for(clinic))
    url = f"/api/v1/patients/{patient.pk}/medications/{course.pk}/"
    problem_of(api.get(url), 404)
    problem_of(api.patch(url, {"ended_on": "2026-02-01"}, format="json"), 404)
    course.refresh_from_db()
    assert course.ended_on is None


def test_merging_my_patient_into_another_organisations_record_is_404(clinic, patient, other_patient):
    """The merge's `into` names a record in the body: another organisation's is not found, nothing moves."""
    api = http(key_for(clinic, other_patient.clinic))  # a caller who can see both organisations
    body = problem_of(
        api.post(f"/api/v1/patients/{patient.pk}/merge/", {"into": str(other_patient.pk)}, format="json"), 404
    )
    assert body["code"] == "unknown_patient"
    patient.refresh_from_db()
    assert patient.merged_into_id is None


# --- API: appointments at another clinic, of the organisation or not --------------------------------------


APPOINTMENT_ACTIONS = [
    ("get", "/api/v1/appointments/{a}/", None),
    ("post", "/api/v1/appointments/{a}/reschedule/", {"start": THURSDAY_10}),
    ("post", "/api/v1/appointments/{a}/reschedule-check/", {"start": THURSDAY_10}),
    ("post", "/api/v1/appointments/{a}/cancel/", {}),
    ("post", "/api/v1/appointments/{a}/complete/", {}),
    ("post", "/api/v1/appointments/{a}/clear/", {"reason": "checked"}),
    ("post", "/api/v1/appointments/{a}/no-show/", {}),
]


@pytest.mark.parametrize("where", ["sister_site", "other_organisation"])
@pytest.mark.parametrize(
    "method,path,body", APPOINTMENT_ACTIONS, ids=[p.split("{a}/")[1] or "detail" for _, p, _ in APPOINTMENT_ACTIONS]
)
def test_an_appointment_outside_my_clinics_is_404_for_every_action(
    clinic, west, patient, practitioner, other_clinic, other_patient, other_practitioner, where, method, path, body
):
    appointment_id = booked(http(key_for(clinic)), patient)
    caller = west if where == "sister_site" else other_clinic
    api = http(key_for(caller))  # clinical: may complete, clear, mark no-show where granted
    url = path.format(a=appointment_id)
    response = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
    problem_of(response, 404)
    appointment = Appointment.objects.get(pk=appointment_id)
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert appointment.start_at == datetime(2026, 3, 3, 10, tzinfo=UTC)


# --- API: ids in bodies and queries ---------------------------------------------------------------------


def test_rescheduling_to_a_practitioner_of_another_clinic_is_refused_and_moves_nothing(
    clinic, west, patient, practitioner, west_practitioner, other_practitioner
):
    """A move stays at its clinic: a practitioner of the sister site (even one the caller reaches) or of another
    organisation is "no such practitioner"."""
    api = http(key_for(clinic, west))
    appointment_id = booked(api, patient, clinic=clinic.code)
    for stranger in (west_practitioner, other_practitioner):
        body = {"start": THURSDAY_10, "practitioner": str(stranger.pk)}
        check = problem_of(
            api.post(f"/api/v1/appointments/{appointment_id}/reschedule-check/", body, format="json"), 400
        )
        assert check["code"] == "unknown_practitioner"
        move = problem_of(api.post(f"/api/v1/appointments/{appointment_id}/reschedule/", body, format="json"), 400)
        assert move["code"] == "unknown_practitioner"
    appointment = Appointment.objects.get(pk=appointment_id)
    assert appointment.practitioner_id == practitioner.pk and appointment.clinic_id == clinic.pk
    assert appointment.start_at == datetime(2026, 3, 3, 10, tzinfo=UTC)


@pytest.mark.parametrize("what", ["west_practitioner", "other_practitioner", "west_clinic", "other_clinic"])
def test_eligibility_availability_and_booking_refuse_a_place_outside_my_clinics(
    clinic, west, patient, practitioner, west_practitioner, other_clinic, other_practitioner, what
):
    """A London-only client names a practitioner or clinic it was not granted (sister site or other org)."""
    api = http(key_for(clinic))
    extra = {
        "west_practitioner": {"practitioner": str(west_practitioner.pk)},
        "other_practitioner": {"practitioner": str(other_practitioner.pk)},
        "west_clinic": {"clinic": str(west.pk)},
        "other_clinic": {"clinic": other_clinic.code},
    }[what]
    field = next(iter(extra))
    body = {"patient": str(patient.pk), "procedure": "botox", "start": TUESDAY_10, **extra}
    eligibility = problem_of(api.post("/api/v1/eligibility/", body, format="json"), 400)
    assert eligibility["errors"] == {field: [f"There is no such {field}."]} or eligibility["code"] in (
        "unknown_practitioner",
        "unknown_clinic",
    )
    query = {"patient": str(patient.pk), "procedure": "botox", **extra}
    availability = problem_of(api.get("/api/v1/availability/", query), 400)
    assert availability["code"] == f"unknown_{field}"
    booking = problem_of(book(api, patient, **extra), 400)
    assert booking["code"] == f"unknown_{field}"
    assert not Appointment.objects.exists()


def test_a_patient_of_another_organisation_in_a_body_or_query_is_no_such_patient(clinic, practitioner, other_patient):
    api = http(key_for(clinic))
    body = {"patient": str(other_patient.pk), "procedure": "botox", "start": TUESDAY_10}
    for response in (
        api.post("/api/v1/eligibility/", body, format="json"),
        api.get("/api/v1/availability/", {"patient": str(other_patient.pk), "procedure": "botox"}),
        api.get("/api/v1/appointments/", {"patient": str(other_patient.pk)}),
        book(api, other_patient),
    ):
        assert problem_of(response, 400)["errors"] == {"patient": ["There is no such patient."]}


def test_list_filters_refuse_a_practitioner_or_clinic_outside_my_clinics(
    clinic, west, practitioner, west_practitioner, other_practitioner, other_clinic
):
    api = http(key_for(clinic))
    for query in ({"practitioner": str(west_practitioner.pk)}, {"practitioner": str(other_practitioner.pk)}):
        assert problem_of(api.get("/api/v1/appointments/", query), 400)["code"] == "unknown_practitioner"
    for value in (west.code, str(west.pk), other_clinic.code):
        assert problem_of(api.get("/api/v1/appointments/", {"clinic": value}), 400)["code"] == "unknown_clinic"
        assert problem_of(api.get("/api/v1/patients/", {"clinic": value}), 400)["code"] == "unknown_clinic"
        assert problem_of(api.get("/api/v1/practitioners/", {"clinic": value}), 400)["code"] == "unknown_clinic"


def test_patient_search_never_finds_another_organisations_patient(clinic, patient, other_patient):
    api = http(key_for(clinic))
    for term in ("Other", other_patient.email, other_patient.phone, "+1212"):
        rows = api.get("/api/v1/patients/", {"search": term}).json()["results"]
        assert str(other_patient.pk) not in [row["id"] for row in rows]


def test_filtering_appointments_by_a_shared_patient_whose_home_is_the_sister_site(
    clinic, west, practitioner, west_patient
):
    api = http(key_for(clinic))
    assert api.get(f"/api/v1/patients/{west_patient.pk}/").status_code == 200
    appointment_id = booked(api, west_patient, clinic=clinic.code)
    response = api.get("/api/v1/appointments/", {"patient": str(west_patient.pk)})
    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["results"]] == [appointment_id]


# --- API: treatment plans ---------------------------------------------------------------------------------


def test_a_plan_at_another_clinic_is_404_and_cannot_be_replanned(
    templates, clinic, west, patient, practitioner, other_clinic
):
    london = http(key_for(clinic))
    response = london.post(
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09"},
        format="json",
    )
    assert response.status_code == 201, response.content
    plan_id = response.json()["id"]
    before = sorted(Appointment.objects.values_list("start_at", flat=True))
    for stranger in (west, other_clinic):
        api = http(key_for(stranger))
        assert problem_of(api.get(f"/api/v1/plans/{plan_id}/"), 404)["code"] == "unknown_plan"
        replan = api.post(
            f"/api/v1/plans/{plan_id}/replan/", {"from_session": 2, "start": "2026-04-20T09:00:00+01:00"}, format="json"
        )
        problem_of(replan, 404)
    assert sorted(Appointment.objects.values_list("start_at", flat=True)) == before


def test_a_plan_cannot_be_placed_at_a_clinic_or_with_a_practitioner_outside_my_clinics(
    templates, clinic, west, patient, practitioner, west_practitioner, other_practitioner
):
    api = http(key_for(clinic))
    url = f"/api/v1/patients/{patient.pk}/plans/"
    base = {"template": "microneedling-course", "start_from": "2026-03-09"}
    for extra, code in (
        ({"clinic": west.code}, "unknown_clinic"),
        ({"practitioner": str(west_practitioner.pk)}, "unknown_practitioner"),
        ({"practitioner": str(other_practitioner.pk)}, "unknown_practitioner"),
    ):
        for dry_run in (True, False):
            response = api.post(url, {**base, **extra, "dry_run": dry_run}, format="json")
            assert problem_of(response, 400)["code"] == code
    assert not Appointment.objects.exists() and not TreatmentPlan.objects.exists()


def test_a_plan_proposal_naming_a_practitioner_of_the_sister_site_books_nothing_there(
    templates, clinic, west, patient, practitioner, west_practitioner
):
    """`proposal[].practitioner` is an id in a body: one outside the plan's clinic must not be booked."""
    api = http(key_for(clinic))
    url = f"/api/v1/patients/{patient.pk}/plans/"
    base = {"template": "microneedling-course", "start_from": "2026-03-09"}
    dry = api.post(url, {**base, "dry_run": True}, format="json").json()
    proposal = [{"start": s["start"], "practitioner": str(west_practitioner.pk)} for s in dry["sessions"]]
    response = not_500(api.post(url, {**base, "proposal": proposal}, format="json"))
    assert response.status_code in (400, 409), response.content
    assert not Appointment.objects.filter(practitioner=west_practitioner).exists()
    assert not TreatmentPlan.objects.exists()


def test_plan_templates_of_another_organisation_are_neither_listed_nor_usable(templates, clinic, patient, other_clinic):
    from plans.models import PlanTemplate

    shipped = PlanTemplate.objects.filter(organisation__isnull=True).first()
    PlanTemplate.objects.create(
        **{
            f.name: getattr(shipped, f.name)
            for f in PlanTemplate._meta.fields
            if f.name not in ("id", "organisation", "code", "name", "default_key")
        },
        organisation=other_clinic.organisation,
        code="b-secret-course",
        name="Organisation B's secret course",
    )
    api = http(key_for(clinic))
    codes = [row["code"] for row in api.get("/api/v1/plan-templates/", {"page_size": 200}).json()["results"]]
    assert "b-secret-course" not in codes
    response = api.post(
        f"/api/v1/patients/{patient.pk}/plans/",
        {"template": "b-secret-course", "start_from": "2026-03-09", "dry_run": True},
        format="json",
    )
    refused = problem_of(response, 400)
    assert refused["code"] == "unknown_plan_template"
    # The codes there are, as this organisation sees them: not the other's.
    assert refused["detail"].endswith(" Templates: botox-maintenance, microneedling-course, plasma-pen-course.")


# --- API: webhooks ---------------------------------------------------------------------------------------


@pytest.fixture
def _webhooks_allowed(settings):
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_HOSTS = True


def _register(api, url="https://hooks.example.com/in") -> str:
    response = api.post("/api/v1/webhooks/", {"url": url}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_webhooks_reach_only_platforms_granted_the_appointments_clinic(
    _webhooks_allowed, clinic, west, patient, practitioner, other_clinic
):
    london_api = http(key_for(clinic))
    west_api = http(key_for(west))
    other_api = http(key_for(other_clinic))
    london_hook, west_hook, other_hook = _register(london_api), _register(west_api), _register(other_api)
    appointment_id = booked(london_api, patient)
    assert OutboxMessage.objects.filter(endpoint_id=london_hook, appointment_id=appointment_id).exists()
    assert not OutboxMessage.objects.filter(endpoint_id__in=[west_hook, other_hook]).exists()
    assert west_api.get(f"/api/v1/webhooks/{west_hook}/deliveries/").json()["count"] == 0


def test_another_platforms_webhook_and_its_deliveries_are_404(_webhooks_allowed, clinic, patient, practitioner):
    mine_api = http(key_for(clinic))
    theirs_api = http(key_for(clinic))
    mine, theirs = _register(mine_api), _register(theirs_api)
    booked(theirs_api, patient)
    [delivery] = theirs_api.get(f"/api/v1/webhooks/{theirs}/deliveries/").json()["results"]
    mine_before = OutboxMessage.objects.filter(endpoint_id=mine).count()
    for method, path, body in (
        ("get", f"/api/v1/webhooks/{theirs}/", None),
        ("patch", f"/api/v1/webhooks/{theirs}/", {"url": "https://evil.example.com/"}),
        ("delete", f"/api/v1/webhooks/{theirs}/", None),
        ("post", f"/api/v1/webhooks/{theirs}/rotate-secret/", {}),
        ("get", f"/api/v1/webhooks/{theirs}/deliveries/", None),
        ("post", f"/api/v1/webhooks/{theirs}/deliveries/{delivery['id']}/redeliver/", {}),
        # Their delivery through my own endpoint's address: not mine either.
        ("post", f"/api/v1/webhooks/{mine}/deliveries/{delivery['id']}/redeliver/", {}),
    ):
        call = getattr(mine_api, method)
        response = call(path, body, format="json") if body is not None else call(path)
        problem_of(response, 404)
    assert theirs_api.get(f"/api/v1/webhooks/{theirs}/").json()["url"] == "https://hooks.example.com/in"
    assert OutboxMessage.objects.filter(endpoint_id=mine).count() == mine_before
    assert OutboxMessage.objects.filter(endpoint_id=theirs).count() == 1


# --- FHIR ------------------------------------------------------------------------------------------------


def test_fhir_reads_nothing_outside_my_clinics(clinic, west, patient, practitioner, west_practitioner):
    appointment_id = booked(http(key_for(clinic)), patient)
    api = http(key_for(west))
    response = api.get(f"/fhir/r4/Appointment/{appointment_id}")
    assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"
    response = api.get(f"/fhir/r4/Schedule/{practitioner.pk}")
    assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"
    for query in (
        {"patient": f"Patient/{patient.pk}"},
        {"practitioner": f"Practitioner/{practitioner.pk}"},
        {"location": f"Location/{clinic.pk}"},
        {"_id": appointment_id},
        {},
    ):
        bundle = api.get("/fhir/r4/Appointment", query).json()
        assert bundle["resourceType"] == "Bundle" and bundle["total"] == 0, (query, bundle)
    schedules = api.get("/fhir/r4/Schedule", {"actor": f"Practitioner/{practitioner.pk}"}).json()
    assert schedules["total"] == 0
    slots = api.get("/fhir/r4/Slot", {"schedule": f"Schedule/{practitioner.pk}"}).json()
    assert slots["total"] == 0


# --- Front desk ----------------------------------------------------------------------------------------


def _staff(clinic, role, username, **membership):
    user = get_user_model().objects.create_user(username=username, password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=clinic, role=role, **membership)
    client = Client()
    client.force_login(user)
    return client


def test_front_desk_staff_reach_nothing_of_another_clinic_or_organisation(
    templates, clinic, west, patient, practitioner, west_practitioner, other_clinic, other_patient
):
    west_id = booked(http(key_for(west)), patient, clinic=west.code)
    plan = (
        http(key_for(west))
        .post(
            f"/api/v1/patients/{patient.pk}/plans/",
            {"template": "microneedling-course", "start_from": "2026-03-09"},
            format="json",
        )
        .json()
    )
    course = MedicationCourseFactory(patient=other_patient, started_on=datetime(2025, 1, 1).date())
    desk = _staff(clinic, StaffRole.CLINIC_ADMIN, "london-admin")
    for url in (
        f"/clinic/{other_clinic.code}/",
        f"/clinic/{other_clinic.code}/patients/",
        f"/clinic/{west.code}/appointments/{west_id}/",
        f"/clinic/{clinic.code}/appointments/{west_id}/",
        f"/clinic/{clinic.code}/appointments/{west_id}/aftercare/",
        f"/clinic/{clinic.code}/plans/{plan['id']}/",
        f"/clinic/{clinic.code}/patients/{other_patient.pk}/",
        f"/clinic/{clinic.code}/patients/{other_patient.pk}/history/",
        f"/clinic/{clinic.code}/patients/{other_patient.pk}/book/",
    ):
        assert desk.get(url).status_code == 404, url
    for url, data in (
        (f"/clinic/{clinic.code}/appointments/{west_id}/cancel/", {"reason": "x"}),
        (f"/clinic/{clinic.code}/appointments/{west_id}/complete/", {}),
        (f"/clinic/{clinic.code}/appointments/{west_id}/no-show/", {}),
        (f"/clinic/{clinic.code}/appointments/{west_id}/check-in/", {}),
        (f"/clinic/{clinic.code}/plans/{plan['id']}/replan/", {"from_session": 2, "start_from": "2026-04-20"}),
        (f"/clinic/{clinic.code}/patients/{other_patient.pk}/edit/", {"first_name": "Mallory"}),
        (f"/clinic/{clinic.code}/patients/{other_patient.pk}/history/medications/{course.pk}/end/", {}),
        (f"/clinic/{clinic.code}/patients/{patient.pk}/history/medications/{course.pk}/end/", {}),
        (f"/clinic/{clinic.code}/patients/{patient.pk}/merge/", {"into": str(other_patient.pk)}),
    ):
        response = desk.post(url, data)
        assert response.status_code in (404, 400, 200, 302), (url, response.status_code)
    assert Appointment.objects.get(pk=west_id).status == AppointmentStatus.CONFIRMED
    other_patient.refresh_from_db()
    patient.refresh_from_db()
    course.refresh_from_db()
    assert other_patient.first_name == "Other" and course.ended_on is None and patient.merged_into_id is None


def test_front_desk_calendar_and_day_sheet_show_no_sister_site_appointment(
    clinic, west, patient, practitioner, west_practitioner
):
    booked(http(key_for(west)), patient, clinic=west.code, start=TUESDAY_10)
    desk = _staff(clinic, StaffRole.RECEPTIONIST, "london-desk")
    events = desk.get(
        f"/clinic/{clinic.code}/calendar/events.json",
        {"start": "2026-03-02T00:00:00+00:00", "end": "2026-03-09T00:00:00+00:00"},
    )
    assert events.status_code == 200
    assert str(west_practitioner.pk) not in events.content.decode() and "Dr West" not in events.content.decode()
    sheet = desk.get(f"/clinic/{clinic.code}/calendar/sheet/", {"date": "2026-03-03"})
    assert sheet.status_code == 200 and "Dr West" not in sheet.content.decode()
    cell = desk.get(f"/clinic/{clinic.code}/calendar/book/", {"practitioner": str(west_practitioner.pk)})
    assert cell.status_code in (200, 404) and "Dr West" not in cell.content.decode()


def test_front_desk_move_with_a_sister_site_practitioner_moves_nothing(
    clinic, west, patient, practitioner, west_practitioner
):
    appointment_id = booked(http(key_for(clinic)), patient)
    desk = _staff(clinic, StaffRole.RECEPTIONIST, "london-desk2")
    response = desk.post(
        f"/clinic/{clinic.code}/appointments/{appointment_id}/reschedule/",
        {"date": "2026-03-05", "time": "10:00", "practitioner": str(west_practitioner.pk), "reason": "x"},
    )
    assert response.status_code < 500
    appointment = Appointment.objects.get(pk=appointment_id)
    assert appointment.practitioner_id == practitioner.pk and appointment.clinic_id == clinic.pk


def test_front_desk_plan_booking_with_a_damaged_session_time_is_not_a_500(templates, clinic, patient, practitioner):
    desk = _staff(clinic, StaffRole.RECEPTIONIST, "london-desk3")
    desk.raise_request_exception = False
    response = desk.post(
        f"/clinic/{clinic.code}/patients/{patient.pk}/plan/book/",
        {
            "template": "microneedling-course",
            "start_from": "2026-03-09",
            "session": ["2026-03-09T10:00", "2026-04-06T10:00", "2026-05-04T10:00"],
        },
    )
    assert response.status_code < 500
    assert not Appointment.objects.exists()


# --- Patient links, calendar feeds, unsubscribe -------------------------------------------------------------


def test_patient_links_and_feeds_with_forged_tokens_are_refused_without_a_500(clinic, patient, practitioner):
    from reminders.links import manage_token

    appointment = Appointment.objects.get(pk=booked(http(key_for(clinic)), patient))
    token = manage_token(appointment)
    pk_hex, expires, mac = token.split(".")
    client = Client(raise_request_exception=False)
    other_pk = "0" * 32
    for forged in (f"{other_pk}.{expires}.{mac}", f"{pk_hex}.zzzzzz.{mac}", "x", "a.b.c", f"{pk_hex}.{expires}.x"):
        response = client.get(f"/my/{forged}/")
        assert 400 <= response.status_code < 500, (forged, response.status_code)
        response = client.post(f"/my/{forged}/cancel/", {"reason": "x"})
        assert 400 <= response.status_code < 500, (forged, response.status_code)
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CONFIRMED
    for bad in ("x", "a" * 43, "a" * 200):
        assert client.get(f"/reminders/calendar/{bad}.ics").status_code == 404
        response = client.get(f"/reminders/unsubscribe/{bad}/")
        assert 400 <= response.status_code < 500, (bad, response.status_code)


# --- Garbage ids: 404 problem documents, never 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/patients/{bad}/",
        "/api/v1/patients/{bad}/procedures/",
        "/api/v1/patients/{p}/medications/{bad}/",
        "/api/v1/appointments/{bad}/",
        "/api/v1/plans/{bad}/",
        "/api/v1/webhooks/{bad}/",
        "/api/v1/webhooks/{bad}/deliveries/",
    ],
)
@pytest.mark.parametrize("bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1", "%00"])
def test_garbage_ids_in_urls_are_404_problems(clinic, patient, path, bad):
    api = http(key_for(clinic))
    api.raise_request_exception = False
    response = api.get(path.format(bad=bad, p=patient.pk))
    if response.status_code == 400:  # a NUL in the address is refused as such
        problem_of(response, 400)
    else:
        problem_of(response, 404)


# --- Admin: what belongs to every organisation, and what belongs to another --------------------------------------


@pytest.fixture
def org_admin(catalogue, clinic):
    """A clinic administrator as setup_demo makes one (scheduler/defaults._grant_admin_permissions)."""
    from scheduler.defaults import _grant_admin_permissions

    user = get_user_model().objects.create_user("a-admin", password="pw-for-tests-only", is_staff=True)
    _grant_admin_permissions(user)
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.CLINIC_ADMIN)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def test_admin_lists_no_patient_appointment_or_staff_of_another_organisation(
    org_admin, clinic, patient, practitioner, other_clinic, other_patient, other_practitioner
):
    stranger = PatientFactory(clinic=other_clinic, first_name="Zebedee", last_name="Quuxley")
    booked(http(key_for(other_clinic)), stranger, start="2026-03-03T10:00:00-05:00")
    _staff(other_clinic, StaffRole.RECEPTIONIST, "b-desk-zz")
    for model in ("patient", "appointment", "practitioner", "staffmembership", "clinic", "organisation"):
        response = org_admin.get(f"/admin/clinic/{model}/")
        assert response.status_code == 200, model
        text = response.content.decode()
        assert "Quuxley" not in text and "b-desk-zz" not in text and "Dr Elsewhere" not in text, model
    assert org_admin.get(f"/admin/clinic/patient/{stranger.pk}/change/").status_code in (302, 404)
    appointment = Appointment.objects.get(patient=stranger)
    assert org_admin.get(f"/admin/clinic/appointment/{appointment.pk}/change/").status_code in (302, 404)


def test_admin_list_filters_name_no_clinic_or_organisation_of_another_tenant(org_admin, clinic, other_clinic):
    other_clinic.organisation.name = "Zorgon Holdings"
    other_clinic.organisation.save()
    other_clinic.name = "Zorgon Beauty NYC"
    other_clinic.save()
    leaking = []
    for url in (
        "/admin/clinic/appointment/",
        "/admin/clinic/practitioner/",
        "/admin/clinic/patient/",
        "/admin/clinic/staffmembership/",
        "/admin/reminders/outboxmessage/",
        "/admin/scheduler/intervalrule/",
        "/admin/scheduler/contraindicationrule/",
        "/admin/scheduler/rulebookversion/",
    ):
        response = org_admin.get(url)
        assert response.status_code == 200, url
        if "Zorgon" in response.content.decode():
            leaking.append(url)
    assert leaking == []


def test_admin_rule_book_versions_of_another_organisation_are_not_listed(org_admin, clinic, other_clinic):
    version = RuleBookVersion.objects.create(
        organisation=other_clinic.organisation,
        number=2,
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        reason="B-SECRET-REASON relaxed isotretinoin",
    )
    listing = org_admin.get("/admin/scheduler/rulebookversion/")
    assert listing.status_code == 200
    assert "B-SECRET-REASON" not in listing.content.decode() and str(other_clinic.organisation) not in (
        listing.content.decode()
    )
    assert org_admin.get(f"/admin/scheduler/rulebookversion/{version.pk}/change/").status_code in (302, 404)


def test_admin_recheck_runs_of_another_organisation_are_not_listed(org_admin, clinic, other_clinic):
    fields = {f.name for f in RecheckRun._meta.fields}
    data = {"cause": "B-SECRET-CAUSE", "organisation": other_clinic.organisation}
    if "created_at" in fields:
        data["created_at"] = datetime(2026, 3, 1, tzinfo=UTC)
    RecheckRun.objects.create(**data)
    listing = org_admin.get("/admin/scheduler/recheckrun/")
    assert listing.status_code == 200
    assert "B-SECRET-CAUSE" not in listing.content.decode()


def _admin_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_a_clinic_administrator_cannot_change_a_reminder_template_every_organisation_sends(org_admin):
    model_admin = django_admin.site._registry[ReminderTemplate]
    request = _admin_request(org_admin.user)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert not model_admin.has_add_permission(request)


def test_a_clinic_administrator_cannot_change_the_shared_procedure_catalogue(org_admin):
    before = ProcedureType.objects.get(code="botox")
    response = org_admin.post(
        "/admin/clinic/proceduretype/botox/change/",
        {
            "code": "botox",
            "name": before.name,
            "short_name": before.short_name,
            "duration_minutes": 240,
            # `bookable` left out: unticked
        },
    )
    assert response.status_code in (302, 403), response.status_code
    after = ProcedureType.objects.get(code="botox")
    assert (after.duration_minutes, after.bookable) == (before.duration_minutes, before.bookable)
