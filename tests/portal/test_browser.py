"""The patient's page on a phone, in real headless Chromium (Debian's, driven by Playwright) against a live server.

At 390 px wide (an ordinary phone) a patient opens the link from their reminder, moves the
appointment to an offered time, and no page scrolls sideways or breaks the Content-Security-Policy
(the clinic's colour is an inline style with the page's nonce). The harness is the front desk's
(tests/frontdesk/test_browser.py). Screenshots go to test-output/screenshots/portal-*.png.
"""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from clinic.models import Appointment, AuditEvent
from reminders.consent import unsubscribe_url
from reminders.links import manage_url
from tests.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS  # noqa: F401  (the shared setup)
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.portal.conftest import book

PHONE = {"width": 390, "height": 844}
LOGO = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='40' height='40'%3E"
    "%3Ccircle cx='20' cy='20' r='18' fill='%237a1f5c'/%3E%3C/svg%3E"
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-GB")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.csp_violations = []  # what the Content-Security-Policy refused, as the console reports it
    tab.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and tab.csp_violations.append(f"{tab.url}: {message.text}")
        ),
    )
    yield tab
    context.close()


def fits(tab, name: str) -> None:
    """The page is no wider than the screen (no sideways scroll), the policy refused nothing on it,
    and a picture of it is kept."""
    tab.screenshot(path=str(SHOTS / f"portal-{name}.png"), full_page=True)
    widths = tab.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert widths[2] == PHONE["width"], name
    assert max(widths[:2]) <= widths[2], f"{name} scrolls sideways: {widths}"
    assert tab.csp_violations == [], name


def test_a_patient_moves_their_appointment_on_a_phone_and_no_page_scrolls_sideways(
    phone, live_server, catalogue, settings
):
    from playwright.sync_api import expect

    settings.REMINDERS_PUBLIC_BASE_URL = live_server.url
    clinic = ClinicFactory(
        code="london",
        name="Bloom Skin & Aesthetics Clinic Kensington",
        timezone="Europe/London",
        phone="+442079460958",
        address="Flat 3, 112 Extraordinarily-Long-Street-Name Road\nKensington, London W8 4PT",
        map_url="https://www.openstreetmap.org/search?query=W8%204PT",
        logo_url=LOGO,
        brand_colour="#7a1f5c",
    )
    PractitionerFactory(clinic=clinic, name="Dr Amelia Hart", hours=range(7))  # every day: any day the suite runs
    patient = PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        email="olivia.bennett-longname@example.co.uk",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    tz = clinic.tz
    now = timezone.now()
    start = datetime.combine(now.astimezone(tz).date() + timedelta(days=5), time(10), tzinfo=tz)
    appointment = book(patient, start, now)

    # The link from the reminder: the appointment, in the clinic's colour.
    phone.goto(manage_url(appointment))
    expect(phone.get_by_role("heading", level=1)).to_have_text("Your appointment")
    expect(phone.locator(".when__date")).to_contain_text(f"{start:%A} {start.day} {start:%B %Y}")
    expect(phone.get_by_role("link", name="020 7946 0958")).to_have_attribute("href", "tel:+442079460958")
    brand = phone.get_by_role("link", name="Move appointment").evaluate("e => getComputedStyle(e).backgroundColor")
    assert brand == "rgb(122, 31, 92)"  # the stylesheet and the clinic's colour both apply
    fits(phone, "01-appointment")

    # Cancel asks first (and is left alone).
    phone.get_by_role("link", name="Cancel appointment").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Cancel this appointment?")
    fits(phone, "02-cancel-confirm")
    phone.get_by_role("link", name="No, keep it").click()

    # Move: the offered times, grouped by day; the first day is open.
    phone.get_by_role("link", name="Move appointment").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Choose a new time")
    fits(phone, "03-move-times")
    first_day = phone.locator("details.day").first
    expect(first_day).to_have_attribute("open", "")
    # The real clock: late in the day the first day offered may hold only a slot or two.
    choice = first_day.locator("button.slot").last
    chosen_time = choice.locator(".slot__time").inner_text()
    choice.click()

    expect(phone.get_by_role("heading", level=1)).to_have_text("Move your appointment?")
    fits(phone, "04-move-confirm")
    phone.get_by_role("button", name="Yes, move it").click()

    expect(phone.locator(".notice--done")).to_contain_text("Done: your appointment is now on")
    expect(phone.locator(".when__time")).to_contain_text(chosen_time)
    fits(phone, "05-moved")
    moved = Appointment.objects.get(pk=appointment.pk)
    assert moved.start_at != start and f"{moved.start_at.astimezone(tz):%H:%M}" == chosen_time
    assert AuditEvent.objects.filter(appointment=appointment).last().actor_label == f"patient {patient.pk}"

    # Preferences: switching SMS off, then on without the tick, is refused next to the box.
    phone.get_by_label("Text messages (SMS)").uncheck()
    phone.get_by_role("button", name="Save my choices").click()
    expect(phone.locator(".notice--done")).to_contain_text("Your message choices are saved.")
    phone.get_by_label("Text messages (SMS)").check()
    phone.get_by_role("button", name="Save my choices").click()
    expect(phone.locator(".field-error")).to_contain_text("tick the box")
    fits(phone, "06-preferences-refused")

    # A damaged link, and the unsubscribe pages, look the same and fit too.
    phone.goto(f"{live_server.url}/my/not-a-real-link/")
    expect(phone.get_by_role("heading", level=1)).to_have_text("This link does not work")
    fits(phone, "07-bad-link")
    phone.goto(unsubscribe_url(patient_id=patient.pk))
    fits(phone, "08-unsubscribe")
    phone.get_by_role("button", name="Unsubscribe").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    fits(phone, "09-unsubscribed")

    # Inside the window the page says to call, with nothing to press but the number.
    Appointment.objects.filter(pk=appointment.pk).update(
        start_at=now + timedelta(hours=3), end_at=now + timedelta(hours=4)
    )
    phone.goto(manage_url(appointment))
    expect(phone.get_by_role("link", name="Call us on 020 7946 0958")).to_be_visible()
    expect(phone.get_by_role("link", name="Move appointment")).to_have_count(0)
    fits(phone, "10-inside-window")
