"""Sign-in, sign-out, landing on one's clinic, and rate-limited failed sign-ins."""

from urllib.parse import urlencode

import pytest
from django.test import Client, override_settings

from clinic.models import StaffRole
from tests.frontdesk.conftest import PASSWORD, make_staff, url
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db


def sign_in(client, username, password=PASSWORD, address="10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_login_page_labels_every_field_and_carries_a_csrf_token(client):
    response = client.get("/login/")
    html = squash(response)
    assert response.status_code == 200
    assert '<label for="id_username">' in html and '<label for="id_password">' in html
    assert "csrfmiddlewaretoken" in html


def test_a_receptionist_of_one_clinic_lands_on_its_today_page(client, receptionist, clinic):
    response = sign_in(client, "reception")
    assert response.status_code == 302
    assert client.get(response.url).url == url("today", clinic)


def test_staff_of_two_clinics_choose_and_see_only_theirs(client, clinic, other_clinic, catalogue):
    from tests.factories import ClinicFactory

    ClinicFactory(code="paris", name="Paris Clinic")
    user = make_staff(clinic, StaffRole.CLINICIAN, "both")
    from clinic.models import StaffMembership

    StaffMembership.objects.create(user=user, clinic=other_clinic, role=StaffRole.RECEPTIONIST)
    client.force_login(user)
    page = squash(client.get("/"))
    assert "London Clinic" in page and "New York Clinic" in page and "Paris Clinic" not in page


def test_a_user_on_no_clinic_is_told_so(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("loner", password=PASSWORD))
    assert "not on the staff of any clinic" in squash(client.get("/"))


def test_clinic_pages_need_a_signed_in_user(client, clinic):
    response = client.get(url("today", clinic))
    assert response.status_code == 302 and response.url.startswith("/login/?next=")


def test_a_panel_asking_after_the_session_ended_sends_the_page_to_sign_in_not_the_sign_in_page_into_the_panel(
    client, clinic, patient
):
    """A redirect followed inside an htmx panel (or the calendar's dialog) drew the whole sign-in page there."""
    panel = url("book", clinic, patient) + "?procedure=botox&date=2026-03-03&time=10:00"
    page_was = f"/clinic/{clinic.code}/patients/{patient.pk}/book/?procedure=botox"

    response = client.get(panel, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{page_was}")

    assert response.status_code == 204 and response.content == b""
    assert response["HX-Redirect"] == "/login/?" + urlencode({"next": page_was})
    assert "Your session ended: sign in again to go on." in squash(client.get(response["HX-Redirect"]))
    # Another site's address is never where it goes back to: the panel's own address then.
    other = client.get(panel, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://evil.example/clinic/")
    assert other["HX-Redirect"] == "/login/?" + urlencode({"next": panel})
    # Without HX-Request, the usual redirect.
    assert client.get(panel).status_code == 302


def test_sign_out_is_a_post_and_ends_the_session(reception, clinic):
    assert reception.get("/logout/").status_code == 405
    assert reception.post("/logout/").status_code == 302
    assert reception.get(url("today", clinic)).status_code == 302


def test_login_without_csrf_token_is_refused(receptionist):
    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, "reception").status_code == 403


@override_settings(FRONTDESK_LOGIN_MAX_FAILURES=3)
def test_after_too_many_failures_even_the_right_password_is_refused(client, receptionist):
    for _ in range(3):
        response = sign_in(client, "reception", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in squash(response)
    locked = sign_in(client, "reception")
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in text_by_id(locked.content, "login-errors")
    assert "_auth_user_id" not in client.session


@override_settings(FRONTDESK_LOGIN_MAX_FAILURES=3)
def test_the_lock_is_per_username_and_address(client, receptionist, clinician):
    for _ in range(3):
        sign_in(client, "reception", "wrong", address="10.0.0.1")
    assert sign_in(client, "reception", address="10.0.0.2").status_code == 302  # another desk
    Client().logout()
    assert sign_in(Client(), "clinician", address="10.0.0.1").status_code == 302  # another user


@override_settings(FRONTDESK_LOGIN_MAX_FAILURES=3)
def test_a_success_resets_the_count(client, receptionist):
    for _ in range(2):
        sign_in(client, "reception", "wrong")
    assert sign_in(client, "reception").status_code == 302
    client.logout()
    for _ in range(2):
        sign_in(client, "reception", "wrong")
    assert sign_in(client, "reception").status_code == 302


@override_settings(FRONTDESK_LOGIN_MAX_FAILURES_PER_IP=4)
def test_one_address_trying_many_usernames_is_stopped(client, receptionist):
    for n in range(4):
        sign_in(client, f"guess{n}", "wrong")
    response = sign_in(client, "reception")
    assert response.status_code == 429


@override_settings(FRONTDESK_LOGIN_MAX_FAILURES=2, FRONTDESK_LOGIN_WINDOW_SECONDS=60)
def test_the_lock_lifts_when_the_window_ends(client, receptionist):
    import time_machine

    with time_machine.travel("2026-03-02 09:00Z", tick=False) as traveller:
        for _ in range(2):
            sign_in(client, "reception", "wrong")
        assert sign_in(client, "reception").status_code == 429
        traveller.shift(61)
        assert sign_in(client, "reception").status_code == 302
