"""A booking a later record change made unsafe shows as needs_review, with its reasons, over the API."""

import pytest
import time_machine

from tests.api.helpers import book

pytestmark = pytest.mark.django_db


def flagged_by_a_reported_botox(api, patient) -> dict:
    """A microneedling booked over the API, then put under review by a Botox reported done 1 March."""
    booked = book(api, patient).json()
    reported = api.post(
        f"/api/v1/patients/{patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00", "source": "reported"},
        format="json",
    )
    assert reported.status_code == 201
    assert api.get(f"/api/v1/appointments/{booked['id']}/").json()["status"] == "needs_review"
    return booked


def test_a_procedure_reported_after_booking_shows_needs_review_with_its_reasons(api, patient, practitioner):
    booked = book(api, patient)
    assert booked.status_code == 201 and booked.json()["review_reasons"] == []

    reported = api.post(
        f"/api/v1/patients/{patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00", "source": "reported"},
        format="json",
    )
    assert reported.status_code == 201

    detail = api.get(f"/api/v1/appointments/{booked.json()['id']}/").json()
    assert detail["status"] == "needs_review"
    [reason] = detail["review_reasons"]
    assert (reason["code"], reason["kind"], reason["severity"]) == ("interval_too_soon_after", "interval", "block")
    assert reason["conflicts_with"]["code"] == "botox"
    assert reason["earliest_allowed"].endswith("+00:00")  # the clinic's offset (London in March: GMT)


def test_completing_a_booking_that_needs_review_is_a_409(clinical_api, api, patient, practitioner):
    booked = flagged_by_a_reported_botox(api, patient)

    with time_machine.travel("2026-03-10T12:00:00+00:00", tick=False):
        response = clinical_api.post(f"/api/v1/appointments/{booked['id']}/complete/", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "review_required"


def test_marking_a_booking_that_needs_review_a_no_show_is_a_409_and_a_cancel_closes_it(
    clinical_api, api, patient, practitioner
):
    """api-contract, v1 additions: it leaves needs_review only by being rescheduled, cancelled, or by the record
    being corrected. A no-show is refused (409 not_no_show, saying to cancel it) and changes nothing."""
    booked = flagged_by_a_reported_botox(api, patient)

    with time_machine.travel("2026-03-10T12:00:00+00:00", tick=False):
        response = clinical_api.post(f"/api/v1/appointments/{booked['id']}/no-show/", {}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "not_no_show"
        assert "cancel it if the patient did not come" in response.json()["detail"]
        assert api.get(f"/api/v1/appointments/{booked['id']}/").json()["status"] == "needs_review"
        cancelled = api.post(f"/api/v1/appointments/{booked['id']}/cancel/", {"reason": "did not come"}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
