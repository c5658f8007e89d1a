"""The site-wide refusals of config/request_guards.py: a NUL in an address or query string is a 400 before any view
(the API, FHIR and the calendar feeds keep answering it in their own formats), and an admin date filter whose year
the calendar cannot hold is dropped with a message instead of answering 500."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from tests.factories import AppointmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(admin_client) -> Client:
    admin_client.raise_request_exception = False
    return admin_client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/clinic/appointment/?status__exact=junk%00",
        "/admin/clinic/proceduretype/bo%00tox/change/",
        "/admin/clinic/condition/%00/history/",
        "/admin/clinic/patient/?q%00=x",
        "/login/?next=/%00",
        "/my/%00/",
    ],
)
def test_a_nul_in_the_address_or_the_query_is_a_400_before_any_view(root, path):
    response = root.get(path)

    assert response.status_code == 400
    assert "no-store" in response["Cache-Control"]


def test_the_same_pages_without_the_nul_answer_as_before(root, catalogue):
    assert root.get("/admin/clinic/appointment/?status__exact=junk").status_code == 200
    assert root.get("/admin/clinic/proceduretype/botox/change/").status_code == 200


def test_the_api_keeps_answering_a_nul_with_its_own_problem_documents(db):
    response = Client().get("/api/v1/clinics/?clinic=%00")

    assert response.status_code == 401  # the API's own answer (no key), not the site's 400 page
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query",
    [
        "start_at__year=9999",
        "start_at__year=9999&start_at__month=12&start_at__day=31",
        "start_at__year=0",
        "start_at__year=99999999999999999999",
        "created_at__year__gte=10000",
    ],
)
def test_an_admin_year_the_calendar_cannot_hold_is_dropped_with_a_message(root, query):
    response = root.get(f"/admin/clinic/appointment/?{query}&status__exact=confirmed")

    assert response.status_code == 302
    assert response["Location"] == "/admin/clinic/appointment/?status__exact=confirmed"
    assert "the date filter" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert root.get(response["Location"]).status_code == 200


def test_an_admin_year_within_the_calendar_still_filters(root, catalogue):
    AppointmentFactory()

    for path in (
        "/admin/clinic/appointment/?start_at__year=2026",
        "/admin/clinic/appointment/?start_at__year=9998&start_at__month=12&start_at__day=31",
        "/admin/clinic/patient/?created_at__year=2",
        "/admin/reminders/outboxmessage/?due_at__year=9998&due_at__month=12",
    ):
        assert root.get(path).status_code == 200, path
