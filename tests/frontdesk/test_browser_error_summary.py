"""After a refused full-page form, the errors are summed up at the top and the focus goes there (fields.js, as the
GOV.UK error summary): each error a link that takes the focus to its field. A page answering a POST with only a
message (a booking refused as it was sent) moves the focus to that message. The live check, which draws errors
while the receptionist types, never moves the focus."""

from datetime import timedelta

import pytest
from django.utils import timezone

from clinic.models import Appointment, Practitioner, StaffRole
from tests.factories import PatientFactory
from tests.frontdesk.conftest import book, make_staff
from tests.frontdesk.helpers import london, page, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _focused_id(tab) -> str:
    return tab.evaluate("document.activeElement && document.activeElement.id")


def test_a_refused_new_patient_form_sums_up_its_errors_and_leads_to_each_field(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/new/")
    page.get_by_role("textbox", name="E-mail").fill("not an address")
    page.get_by_role("button", name="Add patient").click()

    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary.get_by_role("heading", level=2)).to_have_text("There is a problem")
    assert _focused_id(page) == "error-summary"
    links = summary.get_by_role("link")
    texts = links.all_inner_texts()
    assert any(t.startswith("First name:") for t in texts), texts
    assert any(t.startswith("Last name:") for t in texts), texts
    assert any(t.startswith("E-mail:") for t in texts), texts
    assert not any("(required)" in t for t in texts), texts
    # The summary comes first in the page's main content, before the form.
    assert page.evaluate("document.getElementById('main').firstElementChild.id") == "error-summary"

    summary.get_by_role("link", name="Last name:").click()
    expect(page.get_by_label("Last name")).to_be_focused()
    summary.get_by_role("link", name="E-mail:").click()
    expect(page.get_by_role("textbox", name="E-mail")).to_be_focused()


def test_a_page_without_errors_has_no_summary_and_keeps_the_focus(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/new/")
    expect(page.get_by_label("First name")).to_be_visible()
    assert page.locator("#error-summary").count() == 0
    assert _focused_id(page) in ("", None)


def test_the_live_check_does_not_pull_the_focus_away(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    olivia = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/{olivia.pk}/book/")
    page.get_by_label("Procedure").select_option("botox")
    page.get_by_label("Date").fill("2020-01-01")  # in the past: the live check marks the field
    page.get_by_label("Time").fill("10:00")
    expect(page.locator("#check-panel")).not_to_be_empty()
    expect(page.locator(".field--invalid").first).to_be_visible()
    expect(page.get_by_label("Time")).to_be_focused()
    assert page.locator("#error-summary").count() == 0


def test_a_booking_refused_as_it_was_sent_takes_the_focus_to_why(page, live_server, london):  # noqa: F811
    """The slot was free when the live check looked and taken when the booking arrived: the page answers the POST
    with the refusal alone (no field is wrong), and the focus goes to it."""
    from playwright.sync_api import expect

    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    olivia = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    other = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    day = (timezone.localtime(timezone.now(), london.tz) + timedelta(days=3)).date()
    sign_in(page, live_server, "reception")
    page.goto(
        f"{live_server.url}/clinic/london/patients/{olivia.pk}/book/"
        f"?procedure=botox&date={day.isoformat()}&time=11:00&practitioner={hart.pk}"
    )
    book_now = page.locator("#check-panel form.book-now button")
    expect(book_now).to_be_visible()
    start = timezone.make_aware(timezone.datetime.combine(day, timezone.datetime.min.time()), london.tz)
    book(other, hart, "botox", start + timedelta(hours=11))  # taken meanwhile
    book_now.click()

    alert = page.locator("#main .alert--error").first
    expect(alert).to_contain_text("Not booked")
    expect(alert).to_be_focused()
    assert page.locator("#error-summary").count() == 0
    assert not Appointment.objects.filter(patient=olivia).exists()
