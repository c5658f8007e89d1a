"""The calendar end to end in headless Chromium: book from a cell, drag to a refused and an allowed time,
keyboard-only booking, and no browser-console errors (no 404s: the favicon is there)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from clinic.models import Appointment, HistorySource, Practitioner, ProcedureRecord, StaffRole
from tests.factories import PatientFactory
from tests.frontdesk.conftest import book, make_staff
from tests.frontdesk.test_browser import SHOTS, london, page, shot, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _day(clinic, days: int):
    """A local day some days ahead, and 10:00 on it."""
    at = timezone.localtime(timezone.now(), clinic.tz).replace(hour=10, minute=0, second=0, microsecond=0)
    at += timedelta(days=days)
    return at.date(), at


def _cell(tab, practitioner, hhmm: str):
    return tab.locator(f'td[data-practitioner="{practitioner.pk}"][data-time="{hhmm}"]')


def _drag(tab, source, target) -> None:
    """HTML5 drag and drop as the browser dispatches it. (Playwright's mouse-driven drag_to starts no
    HTML5 drag in Debian's headless chromium, so the events are dispatched with one DataTransfer.)"""
    transfer = tab.evaluate_handle("() => new DataTransfer()")
    source.dispatch_event("dragstart", {"dataTransfer": transfer})
    target.dispatch_event("dragenter", {"dataTransfer": transfer})
    target.dispatch_event("dragover", {"dataTransfer": transfer})
    target.dispatch_event("drop", {"dataTransfer": transfer})
    source.dispatch_event("dragend", {"dataTransfer": transfer})


def _console_errors(tab) -> list[str]:
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on(
        "response",
        lambda response: errors.append(f"{response.status} {response.url}") if response.status >= 400 else None,
    )
    return errors


def test_book_from_an_empty_cell(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    errors = _console_errors(page)
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    day, _ = _day(london, 2)
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={day}")
    expect(page.locator(".cal-zone")).to_contain_text("Europe/London")
    shot(page, "calendar-day")

    _cell(page, hart, "11:00").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("at 11:00 with Dr Amelia Hart")
    page.get_by_label("Find a patient").fill("Bennett")
    page.get_by_role("button", name="Find patient").click()
    page.get_by_role("link", name="Book for Bennett, Olivia").click()
    page.get_by_label("Procedure").select_option("botox")
    panel = page.locator("#check-panel")
    expect(panel).to_contain_text("will be confirmed")
    panel.locator("form.book-now button").click()
    expect(page.locator(".messages")).to_contain_text("Booked and confirmed")
    booked = Appointment.objects.get()
    assert (booked.practitioner, timezone.localtime(booked.start_at, london.tz).strftime("%H:%M")) == (hart, "11:00")
    assert errors == []


def test_a_refused_drag_snaps_back_with_the_reason_and_the_earliest_date(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    olivia = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    botox = ProcedureRecord.objects.create(
        patient=olivia,
        procedure_id="botox",
        area_id="face",
        performed_at=timezone.now() - timedelta(days=5),
        source=HistorySource.CLINIC,
    )
    day, at = _day(london, 3)  # written straight in; any time this day is too soon after the botox
    moved = book(olivia, hart, "microneedling", at, area_id="face")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    earliest = botox.performed_at.astimezone(london.tz).date() + timedelta(days=14)
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={day}")

    card = page.locator(f'[data-appointment="{moved.pk}"]')
    _drag(page, card, _cell(page, hart, "14:00"))

    dialog = page.locator("#cal-dialog")
    expect(dialog).to_contain_text("This move is not possible")
    expect(dialog).to_contain_text("must be at least 2 weeks after Botulinum toxin injection (Botox)")
    expect(dialog).to_contain_text(f"Earliest eligible start: {earliest:%a} {earliest.day} {earliest:%b %Y}")
    shot(page, "calendar-drag-refused")
    page.get_by_role("button", name="Close, leave it where it was").click()
    expect(dialog).to_be_hidden()
    # Nothing changed: the card is still in its 10:00 cell and the appointment where it was.
    expect(page.locator("tr", has=card).locator("th")).to_have_text("10:00")
    moved.refresh_from_db()
    assert moved.start_at == at


def test_an_allowed_drag_asks_to_confirm_then_moves(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    shah = Practitioner.objects.get(name="Priya Shah, RN")
    grace = PatientFactory(clinic=london, first_name="Grace", last_name="Turner")
    day, at = _day(london, 3)
    moved = book(grace, hart, "botox", at)
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={day}")

    _drag(page, page.locator(f'[data-appointment="{moved.pk}"]'), _cell(page, shah, "14:00"))

    dialog = page.locator("#cal-dialog")
    expect(dialog).to_contain_text("Move this appointment?")
    moved.refresh_from_db()
    assert moved.start_at == at  # asking changes nothing
    dialog.locator("form.book-now button").click()
    expect(page.locator(".messages")).to_contain_text("Moved to")
    moved.refresh_from_db()
    assert (moved.practitioner, timezone.localtime(moved.start_at, london.tz).strftime("%H:%M")) == (shah, "14:00")


def test_keyboard_only_booking_from_the_calendar(page, live_server, london):  # noqa: F811
    from playwright.sync_api import expect

    shah = Practitioner.objects.get(name="Priya Shah, RN")
    PatientFactory(clinic=london, first_name="Sam", last_name="Clarke")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    day, _ = _day(london, 2)
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={day}")

    _cell(page, shah, "15:00").get_by_role("link").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Find a patient").focus()
    page.keyboard.type("Clarke")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Book for Clarke, Sam").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Procedure").focus()
    page.keyboard.press("ArrowDown")  # the first procedure
    panel = page.locator("#check-panel")
    expect(panel).to_contain_text("will be confirmed")
    panel.locator("form.book-now button").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Booked")
    booked = Appointment.objects.get()
    assert (booked.practitioner, timezone.localtime(booked.start_at, london.tz).strftime("%H:%M")) == (shah, "15:00")


def test_the_day_sheet_prints_a_page_per_practitioner_without_the_menus(page, live_server, london):  # noqa: F811
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    olivia = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett", phone="+447911123101")
    day, at = _day(london, 1)
    book(olivia, hart, "botox", at)
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/sheet/?date={day}")
    page.emulate_media(media="print")

    assert page.locator(".topbar").is_hidden()
    assert page.get_by_role("cell", name="07911 123101").is_visible()
    pdf = page.pdf(format="A4", print_background=True)
    (SHOTS / "day-sheet.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 2  # two practitioners, a page each
