"""What every response says about itself: a Content-Security-Policy, no caching, and short staff sessions."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from clinic.models import StaffRole
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory
from tests.frontdesk.conftest import PASSWORD, make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


@pytest.fixture
def reception(clinic):
    client = Client()
    client.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    return client


def no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def directives(response) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def test_front_desk_pages_allow_only_their_own_scripts_and_are_never_cached(reception, clinic):
    patient = PatientFactory(clinic=clinic)

    for path in ("/", "/clinic/london/", f"/clinic/london/patients/{patient.pk}/"):
        response = reception.get(path, follow=True)
        assert response.status_code == 200, path
        policy = directives(response)
        assert policy["script-src"] == "script-src 'self'", path
        assert policy["style-src"] == "style-src 'self'", path
        assert "frame-ancestors 'none'" in policy.values()
        assert no_store(response), path


def test_api_answers_with_patient_data_are_never_cached(clinic):
    patient = PatientFactory(clinic=clinic)
    api = http(new_api_client(clinic)[1])

    found = api.get(f"/api/v1/patients/{patient.pk}/")
    refused = http("not-a-key").get("/api/v1/patients/")

    assert found.status_code == 200 and no_store(found)
    assert refused.status_code == 401 and no_store(refused)
    assert "private" in found["Cache-Control"]


def test_the_sign_in_page_and_the_admin_carry_the_policy(client, admin_client):
    assert "script-src 'self'" in client.get("/login/")["Content-Security-Policy"]
    admin_page = admin_client.get("/admin/")
    assert admin_page.status_code == 200
    assert directives(admin_page)["script-src"] == "script-src 'self'" and no_store(admin_page)


def test_only_the_public_api_docs_relax_inline_styles(client):
    docs = client.get("/api/v1/docs/")
    setup = client.get("/api/v1/docs/?script=")

    assert docs.status_code == 200 and setup.status_code == 200
    assert directives(docs)["script-src"] == "script-src 'self'"
    assert "'unsafe-inline'" in directives(docs)["style-src"]
    assert "SwaggerUIBundle" in setup.content.decode()  # the set-up is a script file, not inline


def test_a_staff_session_ends_with_the_browser_and_after_a_working_day(clinic, settings):
    make_staff(clinic, StaffRole.RECEPTIONIST, "reception")
    client = Client()
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        signed_in = client.post("/login/", {"username": "reception", "password": PASSWORD})
    cookie = signed_in.cookies[settings.SESSION_COOKIE_NAME]

    assert settings.SESSION_COOKIE_AGE == 10 * 3600
    assert cookie["max-age"] == "" and cookie["expires"] == ""  # a browser-session cookie
    with time_machine.travel(start + timedelta(hours=9, minutes=50), tick=False):
        assert client.get("/clinic/london/").status_code == 200
    with time_machine.travel(start + timedelta(hours=10, minutes=1), tick=False):
        after = client.get("/clinic/london/")
    assert after.status_code == 302 and after.url.startswith("/login/")


def test_the_patients_unsubscribe_page_keeps_its_style_under_the_policy(client, clinic):
    from reminders.consent import unsubscribe_url

    clinic.brand_colour = "#7a1f5c"  # the patient pages' one inline style is the clinic's colour (docs/portal.md)
    clinic.save()
    patient = PatientFactory(clinic=clinic)
    path = "/" + unsubscribe_url(patient_id=patient.pk).split("/", 3)[3]

    response = client.get(path)

    assert response.status_code == 200 and no_store(response)
    assert '<link rel="stylesheet" href="/static/reminders/patient.css">' in response.content.decode()
    nonce = re.search(r'<style nonce="([^"]+)">', response.content.decode()).group(1)
    assert f"'nonce-{nonce}'" in directives(response)["style-src"]
    assert "'unsafe-inline'" not in directives(response)["style-src"]
