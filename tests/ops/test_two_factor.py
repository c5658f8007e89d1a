"""Staff two-step sign-in: enrolling an authenticator app, signing in with a code, the roles that must.

Time is frozen and moved by hand: a TOTP code changes every 30 seconds, each
code works once, and after a wrong code the device makes the user wait.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.models import StaffRole
from tests.factories import ClinicFactory
from tests.frontdesk.conftest import PASSWORD, make_staff
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def clinic(catalogue):
    return ClinicFactory(code="london", name="London Clinic", timezone="Europe/London")


def code_for(device: TOTPDevice) -> str:
    """What the authenticator app shows now."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    return f"{(int(code_for(device)) + 1) % 10**device.digits:0{device.digits}d}"


def enrolled(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def password_step(client, username: str, address: str = "10.0.0.1"):
    return client.post("/login/", {"username": username, "password": PASSWORD}, REMOTE_ADDR=address)


def code_step(client, code: str, address: str = "10.0.0.1"):
    return client.post("/login/code/", {"code": code}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- Enrolling ---------------------------------------------------------------------------------------------------


def test_a_receptionist_enrols_by_scanning_and_confirming_a_code(clinic, clock):
    user = make_staff(clinic, StaffRole.RECEPTIONIST, "reception")
    client = Client()
    client.force_login(user)

    page = client.get("/account/two-step/")
    html = squash(page)
    device = TOTPDevice.objects.get(user=user)
    assert page.status_code == 200 and not device.confirmed
    assert 'src="data:image/svg+xml;base64,' in html  # the QR code, as an image
    assert device.config_url.split("secret=")[1][:8] in html.replace(" ", "")  # the key, typed by hand
    assert text_by_id(client.get("/account/two-step/").content, "totp-secret") == text_by_id(
        page.content, "totp-secret"
    )  # the same secret until confirmed

    refused = client.post("/account/two-step/", {"code": wrong_code(device)})
    assert refused.status_code == 400 and "That code is not right" in squash(refused)
    clock.shift(timedelta(seconds=31))  # past the device's wait after a wrong code, and a new code
    confirmed = client.post("/account/two-step/", {"code": code_for(device)})

    assert confirmed.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id  # this session counts as verified
    assert "Two-step sign-in is on" in squash(client.get("/account/two-step/"))


def test_letters_are_not_a_code(clinic):
    client = Client()
    client.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client.get("/account/two-step/")

    response = client.post("/account/two-step/", {"code": "abcdef"})

    assert response.status_code == 400 and "Enter the digits your authenticator app shows" in squash(response)


# --- Signing in with a code --------------------------------------------------------------------------------------


def test_with_a_device_the_right_password_alone_does_not_sign_in(clinic, clock):
    device = enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client = Client()

    after_password = password_step(client, "reception")

    assert after_password.status_code == 302 and after_password.url == "/login/code/"
    assert not signed_in(client)
    assert client.get("/clinic/london/").status_code == 302
    page = client.get("/login/code/")
    assert page.status_code == 200 and "Signing in as <strong>reception</strong>" in squash(page)

    after_code = code_step(client, code_for(device))

    assert after_code.status_code == 302
    assert signed_in(client) and client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get("/clinic/london/").status_code == 200


def test_a_wrong_code_is_refused_with_a_clear_message(clinic, clock):
    device = enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client = Client()
    password_step(client, "reception")

    refused = code_step(client, wrong_code(device))

    assert refused.status_code == 200
    assert "That code is not right" in squash(refused)
    assert not signed_in(client)
    # Straight after a wrong code the device makes you wait, even with the right one.
    waiting = code_step(client, code_for(device))
    assert waiting.status_code == 429 and "wait a few seconds" in squash(waiting)
    clock.shift(timedelta(seconds=2))
    assert code_step(client, code_for(device)).status_code == 302 and signed_in(client)


def test_a_code_works_only_once(clinic, clock):
    device = enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    first, second = Client(), Client()
    password_step(first, "reception")
    password_step(second, "reception")
    code = code_for(device)

    assert code_step(first, code).status_code == 302
    assert "That code is not right" in squash(code_step(second, code))
    assert not signed_in(second)


def test_the_code_step_expires(clinic, clock):
    device = enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client = Client()
    password_step(client, "reception")
    clock.shift(timedelta(minutes=6))

    response = client.post("/login/code/", {"code": code_for(device)}, follow=True)

    assert not signed_in(client)
    assert "Sign in with your username and password first" in squash(response)


def test_the_code_step_without_a_password_step_goes_back_to_sign_in(client):
    response = client.get("/login/code/")

    assert response.status_code == 302 and response.url == "/login/"


def test_the_next_page_survives_both_steps_but_never_leaves_the_site(clinic, clock):
    device = enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client = Client()
    client.post(
        "/login/?next=/clinic/london/patients/",
        {"username": "reception", "password": PASSWORD, "next": "/clinic/london/patients/"},
    )
    assert code_step(client, code_for(device)).url == "/clinic/london/patients/"

    clock.shift(timedelta(seconds=31))
    other = Client()
    other.post("/login/", {"username": "reception", "password": PASSWORD, "next": "https://evil.example/"})
    assert code_step(other, code_for(device)).url == "/"


# --- Rate limits --------------------------------------------------------------------------------------------------


def test_wrong_codes_count_as_failed_sign_ins_and_lock(clinic, clock, settings):
    settings.FRONTDESK_LOGIN_MAX_FAILURES = 3
    device = enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client = Client()
    password_step(client, "reception")
    for _ in range(3):
        clock.shift(timedelta(seconds=31))  # past the device's own wait: only the limiter is left
        assert "That code is not right" in squash(code_step(client, wrong_code(device)))

    clock.shift(timedelta(seconds=31))
    locked = code_step(client, code_for(device))

    assert locked.status_code == 429 and "Too many failed sign-ins" in squash(locked)
    assert not signed_in(client)
    # The count is the sign-in's: the password step is refused as well until the window has passed.
    assert password_step(client, "reception").status_code == 429


def test_wrong_passwords_still_lock_before_any_code(clinic, settings):
    settings.FRONTDESK_LOGIN_MAX_FAILURES = 2
    enrolled(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    client = Client()
    for _ in range(2):
        client.post("/login/", {"username": "reception", "password": "wrong"}, REMOTE_ADDR="10.0.0.1")

    assert password_step(client, "reception").status_code == 429


# --- Who must use it ----------------------------------------------------------------------------------------------


@pytest.fixture
def required(settings):
    settings.STAFF_TWO_FACTOR_REQUIRED = True


def test_a_clinic_administrator_without_a_device_reaches_only_the_enrolment_page(clinic, required, clock):
    make_staff(clinic, StaffRole.CLINIC_ADMIN, "clinicadmin")
    client = Client()

    landed = password_step(client, "clinicadmin")
    page = client.get(landed.url, follow=True)
    assert page.redirect_chain[-1][0].startswith("/account/two-step/")
    assert "Your role needs two-step sign-in" in squash(page)

    blocked = client.get("/clinic/london/patients/")
    assert blocked.status_code == 302 and blocked.url.startswith("/account/two-step/?next=")
    api = client.get("/api/v1/patients/")
    assert api.status_code == 403 and api["Content-Type"] == "application/problem+json"
    assert api.json()["code"] == "two_factor_required"
    fhir = client.get("/fhir/r4/Appointment")
    assert fhir.status_code == 403 and fhir.json()["resourceType"] == "OperationOutcome"
    htmx = client.get("/clinic/london/", HTTP_HX_REQUEST="true")
    assert htmx["HX-Redirect"].startswith("/account/two-step/")

    device = TOTPDevice.objects.get(user__username="clinicadmin")
    assert (
        client.post("/account/two-step/?next=/clinic/london/patients/", {"code": code_for(device)}).url
        == "/clinic/london/patients/"
    )
    assert client.get("/clinic/london/patients/").status_code == 200


def test_whoever_may_edit_the_rules_must_use_it_and_a_receptionist_need_not(clinic, required):
    editor = make_staff(clinic, StaffRole.CLINICIAN, "clinician")
    editor.user_permissions.add(Permission.objects.get(codename="change_intervalrule"))
    receptionist = Client()
    receptionist.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))
    rule_editor = Client()
    rule_editor.force_login(editor)

    assert receptionist.get("/clinic/london/").status_code == 200
    assert rule_editor.get("/clinic/london/").url.startswith("/account/two-step/")


def test_the_admin_needs_a_verified_session(clinic, required, clock):
    root = get_user_model().objects.create_superuser("root", password=PASSWORD)
    device = enrolled(root)
    by_password_only = Client()
    by_password_only.force_login(root)  # a session that skipped the code

    sent_back = by_password_only.get("/admin/")
    assert sent_back.status_code == 302 and sent_back.url.startswith("/login/?next=")
    assert not signed_in(by_password_only)

    client = Client()
    password_step(client, "root")
    code_step(client, code_for(device))
    assert client.get("/admin/").status_code == 200


def test_the_admin_login_page_is_the_front_desk_sign_in(client, admin_client):
    assert client.get("/admin/login/?next=/admin/scheduler/").url == "/login/?next=/admin/scheduler/"
    assert client.get("/admin/").url.startswith("/admin/login/")


def test_a_signed_in_user_without_admin_access_is_told_so_not_looped(clinic):
    client = Client()
    client.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, "reception"))

    response = client.get("/admin/", follow=True)

    assert response.status_code == 403 and "use the admin" in squash(response)


def test_off_by_default_locally_so_demo_administrators_sign_in_with_a_password(clinic, settings):
    assert settings.STAFF_TWO_FACTOR_REQUIRED is False  # the test run is in local mode, like bin/run
    admin = make_staff(clinic, StaffRole.CLINIC_ADMIN, "clinicadmin")
    admin.is_staff = True
    admin.save()
    client = Client()

    assert password_step(client, "clinicadmin").status_code == 302 and signed_in(client)
    assert client.get("/clinic/london/").status_code == 200
    assert client.get("/admin/").status_code == 200
