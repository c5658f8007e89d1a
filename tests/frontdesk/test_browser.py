"""End to end in real headless Chromium (Debian's package, driven by Playwright) against a live server.

Scenarios from the issue: a receptionist finds a patient, is refused a too-early
microneedling with the reason and earliest date, and books the suggested slot; a
clinician clears a pending booking and completes it; a receptionist of one
clinic cannot open another clinic's patient. Screenshots of the key pages go to
test-output/screenshots/.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from clinic.models import (
    Appointment,
    AppointmentStatus,
    ConditionStatus,
    HistorySource,
    MedicationCourse,
    PatientCondition,
    Practitioner,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
)
from reminders.models import Channel, MessageKind, OutboxMessage, OutboxStatus
from tests.browser import SHOTS
from tests.factories import ClinicFactory, PatientFactory
from tests.frontdesk.conftest import book, make_staff
from tests.frontdesk.helpers import london, page, shot, sign_in  # noqa: F401 (fixtures)

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are still synchronous.


pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_receptionist_is_refused_a_too_early_microneedling_and_books_the_suggested_slot(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    now = timezone.now()
    olivia = PatientFactory(
        clinic=london,
        first_name="Olivia",
        last_name="Bennett",
        phone="+447911123101",
        email="olivia.bennett@example.com",
    )
    botox = ProcedureRecord.objects.create(
        patient=olivia,
        procedure_id="botox",
        performed_at=now - timedelta(days=5),
        area_id="face",
        source=HistorySource.CLINIC,
    )
    PatientFactory(clinic=london, first_name="Oliver", last_name="Stone")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    tz = london.tz
    earliest = botox.performed_at.astimezone(tz).date() + timedelta(days=14)

    page.goto(f"{live_server.url}/login/")
    shot(page, "01-login")
    sign_in(page, live_server, "reception")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Today")
    shot(page, "02-today")

    # Find the patient.
    page.get_by_role("searchbox", name="Find a patient").fill("Bennett")
    page.get_by_role("searchbox", name="Find a patient").press("Enter")
    expect(page.get_by_role("heading", name="1 result for “Bennett”")).to_be_visible()
    shot(page, "03-search")
    page.get_by_role("link", name="Bennett, Olivia").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Olivia Bennett")
    expect(page.locator(".outlook")).to_contain_text("Not before")
    shot(page, "04-patient-timeline")

    # Ask for microneedling too early: refused with the rule, the event and the earliest date.
    page.get_by_role("navigation", name="Patient").get_by_role("link", name="Book").click()
    page.get_by_label("Procedure").select_option("microneedling")
    page.get_by_label("Treatment area").select_option("face")
    too_early = (now.astimezone(tz) + timedelta(days=2)).date()
    page.get_by_label("Date").fill(too_early.isoformat())
    page.get_by_label("Time").fill("10:00")
    panel = page.locator("#check-panel")
    expect(panel).to_contain_text(f"Not possible at {too_early:%a} {too_early.day} {too_early:%b %Y}, 10:00")
    expect(panel).to_contain_text("must be at least 2 weeks after Botulinum toxin injection (Botox)")
    expect(panel.locator(".earliest")).to_contain_text(
        f"Earliest eligible start: {earliest:%a} {earliest.day} {earliest:%b %Y}"
    )
    shot(page, "05-booking-refused")

    # One click on the first suggested slot books it.
    first_slot = panel.locator("button.slot").first
    expect(first_slot).to_contain_text(f"{earliest:%a} {earliest.day} {earliest:%b}")
    first_slot.click()
    expect(page.locator(".messages")).to_contain_text("Booked and confirmed")
    expect(page.locator(".lead .badge")).to_have_text("✓Confirmed")
    shot(page, "06-booked")
    appointment = Appointment.objects.get(patient=olivia)
    assert appointment.status == AppointmentStatus.CONFIRMED and appointment.procedure_id == "microneedling"
    assert appointment.start_at.astimezone(tz).date() == earliest and appointment.area_id == "face"

    # The schedule shows it, with its status in words.
    page.goto(f"{live_server.url}/clinic/london/schedule/?date={earliest.isoformat()}&view=week")
    expect(page.locator(".schedule")).to_contain_text("Olivia Bennett")
    shot(page, "07-schedule-week")


def test_keyboard_only_booking_panel_updates_live(page, live_server, london):  # noqa: F811
    """The live check reacts to keyboard changes and focus stays visible where the user is."""
    from playwright.sync_api import expect

    patient = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/{patient.pk}/book/")
    page.get_by_label("Procedure").focus()
    page.keyboard.press("ArrowDown")  # first procedure, chosen with the keyboard alone
    expect(page.locator("#check-panel")).to_contain_text("will be confirmed")
    assert page.evaluate("document.activeElement.id") == "id_procedure"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_clinician_clears_a_pending_booking_and_completes_it(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    grace = PatientFactory(clinic=london, first_name="Grace", last_name="Turner")

    PatientCondition.objects.create(patient=grace, condition_id="eczema", status=ConditionStatus.HISTORY)
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    pending = book(
        grace, hart, "microneedling", timezone.now() - timedelta(minutes=20), status=AppointmentStatus.PENDING_CLEARANCE
    )
    make_staff(london, StaffRole.CLINICIAN, "clinician")

    sign_in(page, live_server, "clinician")
    page.get_by_role("link", name="Grace Turner · Microneedling").first.click()
    expect(page.locator("#clearance-heading")).to_contain_text("Pending clearance")
    expect(page.locator(".panel--pending")).to_contain_text("history of Eczema")
    shot(page, "08-pending-clearance")

    page.get_by_label("Clinical reason for clearance").fill("Eczema quiescent for two years; test patch fine.")
    page.get_by_role("button", name="Clear and confirm").click()
    expect(page.locator(".messages")).to_contain_text("Cleared")
    expect(page.locator(".lead .badge")).to_have_text("✓Confirmed")

    page.get_by_role("button", name="Mark completed").click()
    expect(page.locator(".messages")).to_contain_text("Marked completed")
    expect(page.locator(".lead .badge")).to_have_text("✔Completed")
    expect(page.locator(".audit")).to_contain_text("Cleared")
    shot(page, "09-completed")
    pending.refresh_from_db()
    assert pending.status == AppointmentStatus.COMPLETED and pending.clearance_reason.startswith("Eczema")


def test_a_receptionist_cannot_open_another_clinics_patient(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    new_york = ClinicFactory(code="new-york", name="Demo Aesthetics New York", timezone="America/New_York")
    stranger = PatientFactory(clinic=new_york, first_name="Nora", last_name="Jones")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")

    for path in (f"/clinic/london/patients/{stranger.pk}/", f"/clinic/new-york/patients/{stranger.pk}/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.locator("main")).not_to_contain_text("Nora")
    shot(page, "10-other-clinic-not-found")


def test_new_patient_errors_sit_next_to_their_fields(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.get_by_role("link", name="New patient").first.click()
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Mobile phone").fill("12345")
    page.get_by_role("button", name="Add patient").click()
    expect(page.locator("#id_last_name-error")).to_have_text("This field is required.")
    expect(page.locator("#id_phone-error")).to_contain_text("international form")
    assert page.get_by_label("Mobile phone").get_attribute("aria-invalid") == "true"
    shot(page, "11-new-patient-errors")


PHONE = {"width": 390, "height": 844}


def test_no_page_is_wider_than_a_phone(browser, live_server, london):  # noqa: F811
    """At 390 px every front-desk page fits: nothing makes the page scroll sideways, and the week view
    stacks its days instead of scrolling them."""
    now = timezone.now()
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    olivia = PatientFactory(
        clinic=london,
        first_name="Olivia",
        last_name="Bennett-Featherstonehaugh",
        phone="+447911123101",
        email="olivia.bennett-featherstonehaugh@example-clinic.co.uk",
    )
    ProcedureRecord.objects.create(
        patient=olivia,
        procedure_id="botox",
        performed_at=now - timedelta(days=5),
        area_id="face",
        source=HistorySource.CLINIC,
        notes="Done at another clinic",
    )
    PatientCondition.objects.create(patient=olivia, condition_id="eczema", status=ConditionStatus.HISTORY)
    MedicationCourse.objects.create(patient=olivia, drug_id="isotretinoin", started_on=now.date() - timedelta(days=30))
    today_at = timezone.localtime(now, london.tz).replace(hour=11, minute=0, second=0, microsecond=0)
    booked = book(olivia, hart, "filler", today_at, area_id="decolletage")
    pending = book(
        olivia, hart, "microneedling", today_at + timedelta(days=1), status=AppointmentStatus.PENDING_CLEARANCE
    )
    book(olivia, hart, "botox", today_at + timedelta(days=2), status=AppointmentStatus.CANCELLED)
    OutboxMessage.objects.create(
        appointment=booked,
        created_at=now,
        kind=MessageKind.CONFIRMATION,
        channel=Channel.EMAIL,
        due_at=now,
        status=OutboxStatus.FAILED,
        attempts=5,
        recipient=olivia.email,
        last_error="SMTPRecipientsRefused: " + "x" * 120,
    )
    # A second clinic, so that the sign-in lands on the clinic chooser and the header has a switcher.
    other = ClinicFactory(code="london-west", name="Demo Aesthetics London West", timezone="Europe/London")
    clinician = make_staff(london, StaffRole.CLINICIAN, "clinician")
    StaffMembership.objects.create(user=clinician, clinic=other, role=StaffRole.CLINICIAN)

    day = today_at.date()
    base = f"{live_server.url}/clinic/london"
    pages = {
        "choose clinic": "/",
        "today": "/clinic/london/",
        "schedule, day": f"/clinic/london/schedule/?date={day}",
        "schedule, week": f"/clinic/london/schedule/?date={day}&view=week",
        "patients": "/clinic/london/patients/?q=Bennett",
        "new patient, with errors": None,  # posted below
        "patient": f"/clinic/london/patients/{olivia.pk}/",
        "edit patient": f"/clinic/london/patients/{olivia.pk}/edit/",
        "medical history": f"/clinic/london/patients/{olivia.pk}/history/",
        "book, refused": f"/clinic/london/patients/{olivia.pk}/book/?procedure=microneedling&area=face"
        f"&date={day + timedelta(days=2)}&time=10:00",
        "book, possible": f"/clinic/london/patients/{olivia.pk}/book/?procedure=botox&date={day + timedelta(days=1)}"
        "&time=15:00",
        "move": f"/clinic/london/appointments/{booked.pk}/reschedule/?date={day + timedelta(days=3)}&time=12:00",
        "appointment": f"/clinic/london/appointments/{booked.pk}/",
        "appointment, pending": f"/clinic/london/appointments/{pending.pk}/",
        "not found": "/clinic/london/patients/00000000-0000-0000-0000-000000000000/",
        "calendar": f"/clinic/london/calendar/?date={day}",
        "calendar, week": f"/clinic/london/calendar/?date={day}&view=week&practitioner={hart.pk}",
        "calendar, book from a cell": f"/clinic/london/calendar/book/?practitioner={hart.pk}"
        f"&start_at={today_at.isoformat().replace('+', '%2B')}&q=Bennett",
    }

    context = browser.new_context(viewport=PHONE, locale="en-GB", device_scale_factor=1)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    too_wide = {}

    def measure(name: str) -> None:
        tab.wait_for_load_state()
        width = tab.evaluate("document.documentElement.scrollWidth")
        inner = tab.evaluate("window.innerWidth")
        if width > inner:
            too_wide[name] = width
        tab.screenshot(path=str(SHOTS / f"phone-{name.replace(', ', '-').replace(' ', '-')}.png"), full_page=True)

    try:
        tab.goto(f"{live_server.url}/login/")
        measure("sign in")
        sign_in(tab, live_server, "clinician")
        for name, path in pages.items():
            if path is None:
                tab.goto(f"{base}/patients/new/")
                tab.get_by_label("First name").fill("Ada")
                tab.get_by_label("Mobile phone").fill("12345")
                tab.get_by_role("button", name="Add patient").click()
            else:
                tab.goto(f"{live_server.url}{path}")
            measure(name)
        tab.goto(f"{base}/schedule/?date={day}&view=week")
        week_scrolls = tab.evaluate(
            "(() => { const s = document.querySelector('.schedule'); return s.scrollWidth > s.clientWidth; })()"
        )
    finally:
        context.close()

    assert too_wide == {}, f"pages wider than {PHONE['width']} px: {too_wide}"
    assert not week_scrolls, "the week view scrolls sideways at phone width"
