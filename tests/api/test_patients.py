"""Clinics, catalogue, practitioners and patients' records: scoped to the caller, strict about input."""

import pytest

from clinic.models import MedicationCourse, Patient, PatientCondition, ProcedureRecord
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import MedicationCourseFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.django_db


# --- Catalogue ----------------------------------------------------------------------------------


def test_clinics_lists_only_the_callers(api, clinic, other_clinic):
    body = api.get("/api/v1/clinics/").json()
    assert body == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "id": str(clinic.pk),
                "code": "london",
                "name": "London Clinic",
                "timezone": "Europe/London",
                "organisation": str(clinic.organisation_id),
            }
        ],
    }


def test_procedures_is_the_catalogue(api):
    body = api.get("/api/v1/procedures/?bookable=true").json()
    codes = {row["code"] for row in body["results"]}
    assert codes == {"botox", "filler", "microneedling", "plasma_pen"}
    assert set(body["results"][0]) == {"code", "name", "duration_minutes", "bookable"}


def test_practitioners_scoped_and_filtered_by_clinic(api, clinic, practitioner, other_practitioner):
    body = api.get("/api/v1/practitioners/").json()
    assert [p["id"] for p in body["results"]] == [str(practitioner.pk)]
    assert body["results"][0]["clinic"] == str(clinic.pk)
    assert "microneedling" in body["results"][0]["procedures"]
    assert api.get("/api/v1/practitioners/?clinic=london").json()["count"] == 1
    assert api.get(f"/api/v1/practitioners/?clinic={clinic.pk}").json()["count"] == 1


def test_practitioner_filter_on_another_clinic_is_refused_like_a_missing_one(api, other_clinic):
    outside = problem_of(api.get(f"/api/v1/practitioners/?clinic={other_clinic.pk}"), 400)
    missing = problem_of(api.get("/api/v1/practitioners/?clinic=nowhere"), 400)
    assert outside["errors"] == missing["errors"] == {"clinic": ["There is no such clinic."]}


def test_bad_page_is_400(api):
    assert problem_of(api.get("/api/v1/procedures/?page=abc"), 400)["errors"]["page"]
    assert problem_of(api.get("/api/v1/procedures/?page=99"), 400)["errors"]["page"]
    assert problem_of(api.get("/api/v1/procedures/?page_size=0"), 400)["errors"]["page_size"]


# --- Patients ------------------------------------------------------------------------------------------


NEW_PATIENT = {
    "first_name": "Ada",
    "last_name": "Byron",
    "date_of_birth": "1990-12-10",
    "email": "ada@example.com",
    "phone": "+447911123456",
    "reminder_channels": ["email", "sms"],
    "sms_consent": True,
}


def test_create_patient_201(api, clinic):
    response = api.post("/api/v1/patients/", NEW_PATIENT, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    patient = Patient.objects.get(pk=body["id"])
    assert patient.clinic == clinic
    assert body == {
        "id": str(patient.pk),
        "clinic": str(clinic.pk),
        "organisation": str(clinic.organisation_id),  # the patient joins the clinic's organisation
        **NEW_PATIENT,
    }
    assert patient.organisation_id == clinic.organisation_id
    assert response["Location"] == f"/api/v1/patients/{patient.pk}/"


def test_create_patient_needs_a_clinic_when_caller_has_several(clinic, other_clinic):
    api = http(new_api_client(clinic, other_clinic)[1])
    body = problem_of(api.post("/api/v1/patients/", NEW_PATIENT, format="json"), 400)
    assert body["errors"] == {"clinic": ["Say which clinic the patient belongs to."]}
    ok = api.post("/api/v1/patients/", {**NEW_PATIENT, "clinic": "newyork"}, format="json")
    assert ok.status_code == 201 and ok.json()["clinic"] == str(other_clinic.pk)


def test_create_patient_in_another_clinic_is_refused(api, other_clinic):
    """Mass assignment: a `clinic` the caller does not have reads as no such clinic; nothing is created."""
    body = problem_of(
        api.post("/api/v1/patients/", {**NEW_PATIENT, "clinic": str(other_clinic.pk)}, format="json"), 400
    )
    assert body["errors"] == {"clinic": ["There is no such clinic."]}
    assert not Patient.objects.exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("first_name", 123),
        ("sms_consent", "yes"),
        ("date_of_birth", "10/12/1990"),
        ("reminder_channels", "email"),
        ("reminder_channels", ["fax"]),
        ("date_of_birth", "0001-01-01"),
    ],
)
def test_create_patient_wrong_types_are_400(api, field, value):
    body = problem_of(api.post("/api/v1/patients/", {**NEW_PATIENT, field: value}, format="json"), 400)
    assert [name.split(".")[0] for name in body["errors"]] == [field]  # list items as reminder_channels.0
    assert not Patient.objects.exists()


def test_create_patient_invalid_phone_is_400_from_the_model(api):
    body = problem_of(api.post("/api/v1/patients/", {**NEW_PATIENT, "phone": "07700 900123"}, format="json"), 400)
    assert "phone" in body["errors"]


def test_create_patient_unknown_field_is_400(api):
    body = problem_of(api.post("/api/v1/patients/", {**NEW_PATIENT, "id": "mine"}, format="json"), 400)
    assert body["errors"] == {"id": ["Unknown field."]}


def test_patients_list_scoped_and_searchable(api, patient, other_patient):
    body = api.get("/api/v1/patients/").json()
    assert [p["id"] for p in body["results"]] == [str(patient.pk)]
    assert api.get("/api/v1/patients/?search=Pat").json()["count"] == 1
    assert api.get("/api/v1/patients/?search=Other").json()["count"] == 0


def test_patient_detail_and_404_outside_scope(api, patient, other_patient):
    assert api.get(f"/api/v1/patients/{patient.pk}/").json()["first_name"] == "Pat"
    outside = problem_of(api.get(f"/api/v1/patients/{other_patient.pk}/"), 404)
    missing = problem_of(api.get("/api/v1/patients/not-a-uuid/"), 404)
    assert outside["detail"] == missing["detail"]


def test_patch_patient(api, patient):
    response = api.patch(f"/api/v1/patients/{patient.pk}/", {"last_name": "Smith", "sms_consent": True}, format="json")
    assert response.status_code == 200
    patient.refresh_from_db()
    assert (patient.last_name, patient.sms_consent) == ("Smith", True)


def test_patch_patient_cannot_move_clinic(api, patient, other_clinic):
    body = problem_of(
        api.patch(f"/api/v1/patients/{patient.pk}/", {"clinic": str(other_clinic.pk)}, format="json"), 400
    )
    assert body["errors"] == {"clinic": ["Unknown field."]}
    patient.refresh_from_db()
    assert patient.clinic.code == "london"


def test_patch_patient_of_another_clinic_is_404(api, other_patient):
    problem_of(api.patch(f"/api/v1/patients/{other_patient.pk}/", {"last_name": "X"}, format="json"), 404)
    other_patient.refresh_from_db()
    assert other_patient.last_name == "Person"


def test_patch_birth_date_in_future_is_400(api, patient):
    body = problem_of(api.patch(f"/api/v1/patients/{patient.pk}/", {"date_of_birth": "2030-01-01"}, format="json"), 400)
    assert body["code"] == "birth_date_in_future"


# --- History ----------------------------------------------------------------------------------------------


def test_procedure_history_add_and_list_in_clinic_offset(other_clinic, other_patient):
    api = http(new_api_client(other_clinic)[1])
    url = f"/api/v1/patients/{other_patient.pk}/procedures/"
    response = api.post(
        url, {"procedure": "botox", "performed_at": "2026-02-20T15:00:00+00:00", "area": "face"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["performed_at"] == "2026-02-20T10:00:00-05:00"  # New York's offset
    assert response.json()["source"] == "reported"
    assert ProcedureRecord.objects.filter(patient=other_patient).count() == 1
    assert api.get(url).json()["results"][0]["procedure"] == "botox"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"procedure": "botox", "performed_at": "2026-02-20T15:00:00"}, "performed_at"),
        ({"procedure": "nope", "performed_at": "2026-02-20T15:00:00+00:00"}, "procedure"),
        ({"procedure": "botox", "performed_at": "2026-04-20T15:00:00+00:00"}, "performed_at"),
        ({"procedure": "botox", "performed_at": "2026-02-20T15:00:00+00:00", "area": "elbow"}, "area"),
        ({"procedure": "botox", "performed_at": "2026-02-20T15:00:00+00:00", "source": "rumour"}, "source"),
    ],
)
def test_procedure_history_bad_input_is_400(api, patient, payload, field):
    body = problem_of(api.post(f"/api/v1/patients/{patient.pk}/procedures/", payload, format="json"), 400)
    assert field in body["errors"]
    assert not ProcedureRecord.objects.exists()


def test_procedure_history_of_another_clinics_patient_is_404(api, other_patient):
    problem_of(
        api.post(
            f"/api/v1/patients/{other_patient.pk}/procedures/",
            {"procedure": "botox", "performed_at": "2026-02-20T15:00:00+00:00"},
            format="json",
        ),
        404,
    )
    problem_of(api.get(f"/api/v1/patients/{other_patient.pk}/procedures/"), 404)


def test_medications_add_list_and_end(api, patient):
    url = f"/api/v1/patients/{patient.pk}/medications/"
    response = api.post(url, {"drug": "isotretinoin", "started_on": "2025-09-01"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["ended_on"] is None
    course_id = response.json()["id"]
    assert response["Location"] == f"{url}{course_id}/"
    assert api.get(url).json()["results"][0]["drug"] == "isotretinoin"
    ended = api.patch(f"{url}{course_id}/", {"ended_on": "2026-01-31"}, format="json")
    assert ended.status_code == 200 and ended.json()["ended_on"] == "2026-01-31"
    assert MedicationCourse.objects.get(pk=course_id).ended_on.isoformat() == "2026-01-31"


def test_medication_ending_before_start_is_400(api, patient):
    body = problem_of(
        api.post(
            f"/api/v1/patients/{patient.pk}/medications/",
            {"drug": "isotretinoin", "started_on": "2025-09-01", "ended_on": "2025-01-01"},
            format="json",
        ),
        400,
    )
    assert body["errors"] == {"ended_on": ["A course cannot end before it starts."]}


def test_medication_course_of_another_patient_is_404(api, patient, clinic):
    someone_else = PatientFactory(clinic=clinic)
    course = MedicationCourseFactory(patient=someone_else, started_on="2025-01-01")
    problem_of(api.get(f"/api/v1/patients/{patient.pk}/medications/{course.pk}/"), 404)


def test_conditions_put_replaces_and_get_reads(api, patient):
    url = f"/api/v1/patients/{patient.pk}/conditions/"
    lines = [
        {"condition": "eczema", "status": "history"},
        {"condition": "tattoo_in_area", "status": "active", "area": "face"},
    ]
    response = api.put(url, lines, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 2
    assert {(r["condition"], r["area"]) for r in api.get(url).json()["results"]} == {
        ("eczema", None),
        ("tattoo_in_area", "face"),
    }
    assert api.put(url, [], format="json").json()["count"] == 0
    assert not PatientCondition.objects.exists()


def test_a_conditions_put_made_from_an_old_read_is_412_with_if_match_and_changes_nothing(api, patient):
    """A platform replaces the intake from a GET made before a clinician recorded an active skin infection: with the
    GET's ETag in If-Match the PUT is refused and the infection stays (stale-writes probe, 4 December)."""
    url = f"/api/v1/patients/{patient.pk}/conditions/"
    api.put(url, [{"condition": "eczema", "status": "history"}], format="json")
    read = api.get(url)
    etag = read["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    PatientCondition.objects.create(patient=patient, condition_id="skin_infection", status="active")

    stale = [{"condition": "eczema", "status": "active"}]
    body = problem_of(api.put(url, stale, format="json", HTTP_IF_MATCH=etag), 412)

    assert body["code"] == "record_changed" and "nothing was saved" in body["detail"]
    assert set(PatientCondition.objects.filter(patient=patient).values_list("condition_id", "status")) == {
        ("eczema", "history"),
        ("skin_infection", "active"),
    }
    # Read again, the same change goes through, and answers the new version.
    fresh = api.get(url)["ETag"]
    assert fresh != etag
    current = [*stale, {"condition": "skin_infection", "status": "active"}]
    assert problem_of(api.put(url, current, format="json", HTTP_IF_MATCH=f"W/{fresh}"), 412)  # weak: no match
    assert problem_of(api.put(url, current, format="json", HTTP_IF_MATCH='""'), 412)  # an empty tag is not a pass
    done = api.put(url, current, format="json", HTTP_IF_MATCH=f"{etag}, {fresh}")  # any of a list may match
    assert done.status_code == 200 and done["ETag"] == api.get(url)["ETag"] != fresh
    # Without If-Match, or with *, the PUT replaces as before.
    assert api.put(url, current, format="json", HTTP_IF_MATCH="*").status_code == 200
    assert api.put(url, current, format="json").status_code == 200


def test_a_patient_patch_made_from_an_old_read_is_412_with_if_match_and_changes_nothing(api, patient):
    """A platform corrects the surname from a GET made before the desk corrected the mobile number: with the GET's
    ETag in If-Match the PATCH is refused and the number stays (stale-writes probe, 4 December)."""
    url = f"/api/v1/patients/{patient.pk}/"
    read = api.get(url)
    etag = read["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert api.get(url)["ETag"] == etag  # nothing changed: the same version
    Patient.objects.filter(pk=patient.pk).update(phone="+447911123459")

    body = problem_of(
        api.patch(url, {"last_name": "Lee-Smith", "phone": read.json()["phone"]}, format="json", HTTP_IF_MATCH=etag),
        412,
    )
    assert body["code"] == "record_changed" and "nothing was saved" in body["detail"]
    # Bad input is a 400 first, whatever the If-Match says.
    assert problem_of(api.patch(url, {"email": "not-an-address"}, format="json", HTTP_IF_MATCH=etag), 400)["errors"]
    stored = Patient.objects.get(pk=patient.pk)
    assert (stored.last_name, stored.phone) == (patient.last_name, "+447911123459")

    # Read again, the change goes through and answers the new version, the one a GET gives.
    fresh = api.get(url)["ETag"]
    assert fresh != etag
    problem_of(api.patch(url, {"last_name": "Lee-Smith"}, format="json", HTTP_IF_MATCH=f"W/{fresh}"), 412)
    done = api.patch(url, {"last_name": "Lee-Smith"}, format="json", HTTP_IF_MATCH=f"{etag}, {fresh}")
    assert done.status_code == 200, done.content
    assert done["ETag"] == api.get(url)["ETag"] != fresh
    assert Patient.objects.get(pk=patient.pk).last_name == "Lee-Smith"
    # Without If-Match, or with *, as before.
    assert api.patch(url, {"first_name": "Patricia"}, format="json", HTTP_IF_MATCH="*").status_code == 200
    assert api.patch(url, {"first_name": "Pat"}, format="json").status_code == 200


def test_a_course_end_made_from_an_old_read_is_412_with_if_match_and_changes_nothing(api, patient):
    """A platform records the end of an isotretinoin course from a GET made before a clinician recorded a later end:
    with the GET's ETag in If-Match it is refused, and the later end (which blocks microneedling longer) stays."""
    course = MedicationCourseFactory(patient=patient, drug_id="isotretinoin", started_on="2025-06-01")
    url = f"/api/v1/patients/{patient.pk}/medications/{course.pk}/"
    etag = api.get(url)["ETag"]
    MedicationCourse.objects.filter(pk=course.pk).update(ended_on="2026-02-20")

    body = problem_of(api.patch(url, {"ended_on": "2025-12-01"}, format="json", HTTP_IF_MATCH=etag), 412)
    assert body["code"] == "record_changed"
    assert str(MedicationCourse.objects.get(pk=course.pk).ended_on) == "2026-02-20"

    fresh = api.get(url)["ETag"]
    assert fresh != etag
    done = api.patch(url, {"ended_on": "2026-02-21"}, format="json", HTTP_IF_MATCH=fresh)
    assert done.status_code == 200 and done.json()["ended_on"] == "2026-02-21"
    assert done["ETag"] == api.get(url)["ETag"] != fresh
    # A course removed meanwhile: a 404, not a 500.
    MedicationCourse.objects.filter(pk=course.pk).delete()
    problem_of(api.patch(url, {"ended_on": "2026-02-22"}, format="json", HTTP_IF_MATCH=fresh), 404)


def test_a_conditions_put_with_a_bad_page_size_is_400_before_anything_is_replaced(api, patient):
    """Its answer is a page of the new intake: a page size that is not one was a 400 after the replacement had been
    made (found by the schema fuzzing, 4 December)."""
    url = f"/api/v1/patients/{patient.pk}/conditions/"
    api.put(url, [{"condition": "eczema", "status": "history"}], format="json")
    problem_of(api.put(url + "?page_size=201", [], format="json"), 400)
    problem_of(api.put(url + "?page=0", [], format="json"), 400)
    assert PatientCondition.objects.filter(patient=patient).count() == 1


def test_conditions_put_bad_lines_are_400_and_change_nothing(api, patient):
    url = f"/api/v1/patients/{patient.pk}/conditions/"
    api.put(url, [{"condition": "eczema", "status": "history"}], format="json")
    body = problem_of(
        api.put(
            url,
            [{"condition": "eczema", "status": "history"}, {"condition": "made_up", "status": "active"}],
            format="json",
        ),
        400,
    )
    # Dotted with its line, as the serializers' own errors are (docs/api.md: "0.status for line 0 of the intake").
    assert list(body["errors"]) == ["1.condition"]
    [message] = body["errors"]["1.condition"]
    # It names the codes there are, so the caller can pick one.
    assert message.startswith("There is no condition with code 'made_up'. Codes: ")
    assert {"eczema", "pregnancy", "scleroderma"} <= set(message.removesuffix(".").split(": ")[1].split(", "))
    body = problem_of(api.put(url, [{"condition": "eczema", "status": "sometimes"}], format="json"), 400)
    assert list(body["errors"]) == ["0.status"]
    body = problem_of(api.put(url, {"condition": "eczema"}, format="json"), 400)
    assert body["errors"]["non_field_errors"]
    assert PatientCondition.objects.filter(patient=patient).count() == 1


def test_practitioners_from_other_clinics_never_listed_even_by_procedure(api, practitioner, other_clinic):
    PractitionerFactory(clinic=other_clinic, procedures=["botox"])
    assert api.get("/api/v1/practitioners/?procedure=botox").json()["count"] == 1


def test_patient_with_several_bad_fields_gets_every_error_at_once(api, clinic):
    response = api.post(
        "/api/v1/patients/",
        {
            "clinic": str(clinic.pk),
            "first_name": "Ada",
            "last_name": "L",
            "phone": "0770",
            "reminder_channels": ["email"],
        },
        format="json",
    )

    errors = problem_of(response, 400)["errors"]
    assert set(errors) == {"phone", "reminder_channels"}
