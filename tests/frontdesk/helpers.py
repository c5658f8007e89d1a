"""Helpers and fixtures shared by front-desk test modules: the browser tests' tab, screenshots, sign-in and London
clinic; a second site (West) of the clinic's organisation with its practitioner and desk; merging duplicate records
(with their own `book`, through the booking service); and reading the inputs a page's form would send.

Fixtures here are imported by the modules that use them (`# noqa: F401 (fixtures)`).
"""

import re
from datetime import date
from html import unescape as html_unescape

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from clinic.merging import patient_merge
from clinic.models import StaffMembership, StaffRole
from scheduler.booking import Actor, appointment_book
from tests.browser import SHOTS
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import PASSWORD

# --- The browser tests (tests/frontdesk/test_browser.py and its neighbours) ---------------------------------------


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def shot(tab, name: str) -> None:
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(tab, live_server, username: str) -> None:
    tab.goto(f"{live_server.url}/login/")
    tab.get_by_label("Username").fill(username)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_load_state()


@pytest.fixture
def london(catalogue):
    clinic = ClinicFactory(code="london", name="Demo Aesthetics London", timezone="Europe/London")
    # Seven days a week, so the first slot does not depend on the day the suite runs.
    PractitionerFactory(clinic=clinic, name="Dr Amelia Hart", hours=range(7))
    PractitionerFactory(clinic=clinic, name="Priya Shah, RN", hours=range(7))
    return clinic


# --- A second site of the clinic's organisation ----------------------------------------------------------------


@pytest.fixture
def west(clinic):
    return ClinicFactory(code="west", name="West Clinic", timezone="Europe/London", organisation=clinic.organisation)


@pytest.fixture
def west_practitioner(west):
    return PractitionerFactory(clinic=west, name="Dr Oliver West")


@pytest.fixture
def west_desk(west) -> Client:
    user = get_user_model().objects.create_user(username="reception-west", password=PASSWORD)
    StaffMembership.objects.create(user=user, clinic=west, role=StaffRole.RECEPTIONIST)
    client = Client()
    client.force_login(user)
    return client


# --- Merging duplicate records ------------------------------------------------------------------------------------

RECEPTION = Actor("reception@test")
HEADING = "To check: the records merged"


def twin(clinic, last_name="Bennett"):
    return PatientFactory(clinic=clinic, first_name="Olivia", last_name=last_name, date_of_birth=date(1985, 6, 18))


def book(patient, code, start_at, practitioner, now):
    return appointment_book(
        patient=patient,
        procedure_code=code,
        start_at=start_at,
        actor=RECEPTION,
        now=now,
        practitioner_id=practitioner.pk,
    ).appointment


def merge(merged, into, now):
    return patient_merge(merged=merged, into=into, now=now, actor_label="api", clinical=True)


# --- Reading forms -----------------------------------------------------------------------------------------------


def inputs(response, form_action: str = "") -> dict[str, list[str]]:
    """What the browser sends from the page's POST form to `form_action` ("": the form without an action, posting to
    the page itself): every named input and textarea as drawn (checkboxes when checked)."""
    html = response.content.decode()
    [body] = [
        body
        for attrs, body in re.findall(r"<form\b([^>]*)>(.*?)</form>", html, re.S)
        if 'method="post"' in attrs and (f'action="{form_action}"' in attrs if form_action else "action=" not in attrs)
    ]
    data: dict[str, list[str]] = {}
    for tag in re.findall(r"<input[^>]*>", body):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or 'type="submit"' in tag:
            continue
        if 'type="checkbox"' in tag and "checked" not in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        data.setdefault(name.group(1), []).append(value.group(1) if value else "on")
    for name, text in re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', body, re.S):
        data.setdefault(name, []).append(html_unescape(text.removeprefix("\n")))
    return {name: [html_unescape(v) for v in values] for name, values in data.items()}
