"""POST /api/v1/patients/{id}/merge/ and the 308 of a merged record's address."""

import pytest

from clinic.models import Patient, PatientMerge, ProcedureRecord
from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import PatientConditionFactory, PatientFactory, ProcedureRecordFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def survivor(clinic):
    return PatientFactory(clinic=clinic, first_name="Olivia", last_name="Bennett")


@pytest.fixture
def duplicate(clinic):
    return PatientFactory(clinic=clinic, first_name="Olivia", last_name="Benett")


def _merge(api, duplicate, into, **body):
    return api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(into), **body}, format="json")


def test_a_clinical_caller_merges_and_gets_the_survivor(clinical_api, survivor, duplicate):
    ProcedureRecordFactory(patient=duplicate, procedure_id="botox", performed_at="2026-02-01T10:00:00+00:00")
    response = _merge(clinical_api, duplicate, survivor.pk)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(survivor.pk)
    assert ProcedureRecord.objects.get().patient_id == survivor.pk
    merge = PatientMerge.objects.get()
    assert (merge.merged_id, merge.into_id, merge.actor_label) == (
        duplicate.pk,
        survivor.pk,
        "API client clinical-platform",
    )


def test_a_tombstones_address_redirects_to_the_survivor_with_308(clinical_api, survivor, duplicate):
    _merge(clinical_api, duplicate, survivor.pk)
    response = clinical_api.get(f"/api/v1/patients/{duplicate.pk}/")
    assert response.status_code == 308
    assert response["Location"] == f"/api/v1/patients/{survivor.pk}/"
    assert response.json()["merged_into"] == str(survivor.pk)
    history = clinical_api.get(f"/api/v1/patients/{duplicate.pk}/procedures/?page=1")
    assert history.status_code == 308 and history["Location"] == f"/api/v1/patients/{survivor.pk}/procedures/?page=1"
    assert clinical_api.get(response["Location"]).status_code == 200


def test_a_change_sent_to_a_tombstones_address_is_refused_not_carried_over(clinical_api, survivor, duplicate):
    """The duplicate's old intake, PUT again by a platform that still holds the old id, would replace the survivor's
    whole intake and erase a contraindication only the survivor held (probe of the merge, 4 December)."""
    PatientConditionFactory(patient=survivor, condition_id="clotting_disorder", status="active")
    PatientConditionFactory(patient=duplicate, condition_id="eczema", status="history")
    assert _merge(clinical_api, duplicate, survivor.pk).status_code == 200
    before = sorted(survivor.conditions.values_list("condition_id", "status"))

    stale_intake = clinical_api.put(
        f"/api/v1/patients/{duplicate.pk}/conditions/",
        [{"condition": "eczema", "status": "history"}],
        format="json",
    )
    stale_contact = clinical_api.patch(f"/api/v1/patients/{duplicate.pk}/", {"phone": "+447700900999"}, format="json")

    for response in (stale_intake, stale_contact):
        body = problem_of(response, 409)
        assert (body["code"], body["merged_into"]) == ("patient_merged", str(survivor.pk))
        assert f"/api/v1/patients/{survivor.pk}/" in body["detail"] and "not made" in body["detail"]
        assert "Location" not in response
    assert sorted(survivor.conditions.values_list("condition_id", "status")) == before
    assert ("clotting_disorder", "active") in before
    survivor.refresh_from_db()
    assert survivor.phone != "+447700900999"
    # Additions still go to the survivor (308, method and body kept).
    added = clinical_api.post(
        f"/api/v1/patients/{duplicate.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"},
        format="json",
    )
    assert added.status_code == 308 and added["Location"] == f"/api/v1/patients/{survivor.pk}/procedures/"


def test_a_keyed_addition_redirected_from_a_tombstone_goes_with_the_same_key_at_the_survivor(
    clinical_api, survivor, duplicate
):
    """A 308 is not the request's result: the Idempotency-Key stays free for the request at Location, as a client
    that follows redirects sends it (it was kept, and the follow-up was refused as the key reused: review of
    2f2ba10)."""
    assert _merge(clinical_api, duplicate, survivor.pk).status_code == 200
    body = {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"}
    key = {"HTTP_IDEMPOTENCY_KEY": "report-botox-1"}

    redirected = clinical_api.post(f"/api/v1/patients/{duplicate.pk}/procedures/", body, format="json", **key)
    assert redirected.status_code == 308
    followed = clinical_api.post(redirected["Location"], body, format="json", **key)
    again = clinical_api.post(redirected["Location"], body, format="json", **key)

    assert followed.status_code == 201, followed.content
    assert again.status_code == 201 and again.json()["id"] == followed.json()["id"]  # replayed, not recorded twice
    assert ProcedureRecord.objects.filter(patient=survivor).count() == 1


def test_tombstones_leave_lists_search_and_bodies(clinical_api, survivor, duplicate):
    _merge(clinical_api, duplicate, survivor.pk)
    listed = clinical_api.get("/api/v1/patients/").json()
    assert [row["id"] for row in listed["results"]] == [str(survivor.pk)]
    booking = clinical_api.post(
        "/api/v1/appointments/",
        {"patient": str(duplicate.pk), "procedure": "botox", "start": "2026-03-20T10:00:00+00:00"},
        format="json",
    )
    refused = problem_of(booking, 400)
    assert (refused["code"], refused["merged_into"]) == ("patient_merged", str(survivor.pk))
    assert list(refused["errors"]) == ["patient"]


def test_another_callers_tombstone_is_a_plain_404(survivor, duplicate, clinical_api, other_clinic):
    _merge(clinical_api, duplicate, survivor.pk)
    outsider = http(new_api_client(other_clinic)[1])
    assert problem_of(outsider.get(f"/api/v1/patients/{duplicate.pk}/"), 404)["code"] == "unknown_patient"


def test_conflicting_intake_is_a_409_until_decided(clinical_api, survivor, duplicate):
    PatientConditionFactory(patient=survivor, condition_id="pregnancy", status="history")
    PatientConditionFactory(patient=duplicate, condition_id="pregnancy", status="active")
    body = problem_of(_merge(clinical_api, duplicate, survivor.pk), 409)
    assert body["type"] == "urn:clinic-api:problem:merge-conflict"
    assert body["conflicts"] == [
        {
            "kind": "intake",
            "condition": "pregnancy",
            "area": None,
            "statuses": {str(survivor.pk): "history", str(duplicate.pk): "active"},
        }
    ]
    decided = _merge(
        clinical_api, duplicate, survivor.pk, intake=[{"condition": "pregnancy", "area": None, "status": "active"}]
    )
    assert decided.status_code == 200, decided.content
    assert survivor.conditions.get().status == "active"


def test_bad_merges(clinic, clinical_api, api, survivor, duplicate, other_clinic):
    assert problem_of(_merge(clinical_api, duplicate, duplicate.pk), 400)["code"] == "merge_into_self"
    # Another organisation's record, even one the caller can see, is not found from here.
    both = http(new_api_client(clinic, other_clinic, clinical=True, name="both")[1])
    elsewhere = PatientFactory(clinic=other_clinic)
    assert problem_of(_merge(both, duplicate, elsewhere.pk), 404)["code"] == "unknown_patient"
    assert problem_of(_merge(clinical_api, duplicate, "not-an-id"), 404)["code"] == "unknown_patient"
    assert problem_of(_merge(api, duplicate, survivor.pk), 403)["code"] == "clinician_required"
    assert problem_of(clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {}, format="json"), 400)
    # Into a tombstone: a 400 naming its survivor. From a tombstone: its address redirects (308).
    third = PatientFactory(clinic=clinic)
    assert _merge(clinical_api, duplicate, survivor.pk).status_code == 200
    into_tombstone = problem_of(_merge(clinical_api, third, duplicate.pk), 400)
    assert into_tombstone["code"] == "patient_merged" and str(survivor.pk) in into_tombstone["detail"]
    again = _merge(clinical_api, duplicate, third.pk)
    assert again.status_code == 308 and again["Location"] == f"/api/v1/patients/{survivor.pk}/merge/"
    assert Patient.objects.get(pk=third.pk).merged_into is None


def test_the_merge_is_documented(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    merge = schema["paths"]["/api/v1/patients/{patient_id}/merge/"]["post"]
    assert merge["responses"]["409"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/MergeProblemOut"
    }
    assert "308" in schema["paths"]["/api/v1/patients/{patient_id}/"]["get"]["responses"]
    intake = schema["paths"]["/api/v1/patients/{patient_id}/conditions/"]["put"]["responses"]
    assert "409" in intake and "308" not in intake  # a change to a merged record is refused, not redirected
    assert "412" in intake  # If-Match naming an intake that changed since (docs/api.md)
    replace = schema["paths"]["/api/v1/patients/{patient_id}/conditions/"]["put"]
    assert "If-Match" in [p["name"] for p in replace["parameters"] if p["in"] == "header"]
    assert "ETag" in intake["200"]["headers"]
    assert schema["components"]["schemas"]["MergeInRequest"]["required"] == ["into"]
