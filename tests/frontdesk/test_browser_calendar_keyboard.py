"""Moving through the calendar by keyboard, in headless Chromium with Playwright's keyboard (no dispatched
events): the grid is one Tab stop with a roving tabindex (calendar.js, the WAI-ARIA grid pattern), the arrows,
Home/End, Ctrl+Home/End and PageUp/PageDown move between cells across a card's rows, Enter or Space on a free
quarter hour opens the booking dialog for it, Escape gives the focus back to the cell, a booking made there
leaves the focus on the new card in the fetched grid, a cell with nothing to do (time off) is reached and named
but Enter does nothing, and F2 reaches a card's Move link."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from clinic.models import Appointment, Practitioner, StaffRole, TimeOff
from tests.factories import PatientFactory
from tests.frontdesk.conftest import book, make_staff
from tests.frontdesk.helpers import london, page, shot, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The grid's first row: the practitioners work from 09:00 (tests/factories.py), the day shows 08:00 to 19:00
# at least (frontdesk/selectors.py, DEFAULT_DAY).
FIRST, LAST = "08:00", "18:45"

# Where the focus is, as (time, practitioner id) of its cell, or ("card", appointment id) on an appointment.
FOCUSED_CELL_JS = """() => {
  const el = document.activeElement;
  const td = el && el.closest('#calendar td');
  if (!td) return null;
  const card = td.querySelector('[data-appointment]');
  return card ? ['card', card.dataset.appointment] : [td.dataset.time, td.dataset.practitioner];
}"""

# The grid's Tab stops: every element in it with tabindex 0, and whether it is the one with the focus.
TAB_STOPS_JS = """() => [...document.querySelectorAll('#calendar [tabindex="0"]')]
  .map(n => n === document.activeElement)"""


def _day(clinic, days: int):
    return timezone.localdate(timezone.now(), clinic.tz) + timedelta(days=days)


def _at(clinic, day, hour: int, minute: int = 0):
    return datetime.combine(day, time(hour, minute), tzinfo=clinic.tz)


def focused_cell(tab):
    found = tab.evaluate(FOCUSED_CELL_JS)
    return tuple(found) if found else None


def assert_one_tab_stop_with_the_focus(tab) -> None:
    assert tab.evaluate(TAB_STOPS_JS) == [True], "exactly one element of the grid is in the Tab order, the focused one"


def press(tab, key: str, expected: tuple) -> None:
    tab.keyboard.press(key)
    assert focused_cell(tab) == expected, f"after {key}"
    assert_one_tab_stop_with_the_focus(tab)


@pytest.fixture
def desk(page, live_server, london):  # noqa: F811
    """Two days ahead (no "now" row): Dr Hart has a 30-minute botox at 10:00, Priya Shah training 14:00-16:00."""
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    shah = Practitioner.objects.get(name="Priya Shah, RN")
    day = _day(london, 2)
    olivia = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    booked = book(olivia, hart, "botox", _at(london, day, 10))
    TimeOff.objects.create(
        practitioner=shah, start_at=_at(london, day, 14), end_at=_at(london, day, 16), reason="Training"
    )
    PatientFactory(clinic=london, first_name="Sam", last_name="Clarke")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    address = f"{live_server.url}/clinic/london/calendar/?date={day}"
    page.goto(address)
    return {"hart": str(hart.pk), "shah": str(shah.pk), "card": ("card", str(booked.pk)), "address": address}


def tab_into_the_grid(tab) -> None:
    """From the control just before the grid, one Tab."""
    tab.get_by_role("link", name="Day sheet to print").focus()
    tab.keyboard.press("Tab")


def test_the_grid_is_one_tab_stop_and_the_arrows_move_between_cells(page, desk):  # noqa: F811
    from playwright.sync_api import expect

    hart, shah, card = desk["hart"], desk["shah"], desk["card"]
    expect(page.locator("#calendar")).to_have_attribute("role", "grid")
    expect(page.locator("#cal-keys")).to_be_visible()  # the keys are said on the page
    # Two columns of 44 quarter hours (08:00-19:00), less the card's 2 and the training's 8: 78 links, one Tab stop.
    assert page.locator("#calendar a.cal-free").count() == 2 * 44 - 2 - 8

    tab_into_the_grid(page)
    assert focused_cell(page) == (FIRST, hart)  # the top left cell
    assert_one_tab_stop_with_the_focus(page)
    press(page, "ArrowRight", (FIRST, shah))
    press(page, "ArrowRight", (FIRST, shah))  # the last column: the focus stays
    press(page, "ArrowLeft", (FIRST, hart))
    press(page, "ArrowUp", (FIRST, hart))  # the first row: the focus stays
    press(page, "PageDown", ("09:00", hart))  # an hour
    press(page, "ArrowDown", ("09:15", hart))
    press(page, "ArrowDown", ("09:30", hart))
    press(page, "ArrowDown", ("09:45", hart))
    press(page, "ArrowDown", card)  # 10:00-10:30: one cell over two rows
    press(page, "ArrowDown", ("10:30", hart))  # past the card's second row
    press(page, "ArrowUp", card)  # entered at its second row (10:15) ...
    press(page, "ArrowRight", ("10:15", shah))  # ... so right is the same quarter hour
    press(page, "ArrowUp", ("10:00", shah))
    press(page, "ArrowLeft", card)
    press(page, "ArrowRight", ("10:00", shah))
    shot(page, "calendar-keyboard-cell")
    press(page, "Home", card)
    shot(page, "calendar-keyboard-card")
    press(page, "End", ("10:00", shah))
    press(page, "PageUp", ("09:00", shah))
    press(page, "Control+End", (LAST, shah))
    press(page, "Control+Home", (FIRST, hart))
    press(page, "PageDown", ("09:00", hart))

    # Tab leaves the grid at once; Shift+Tab comes back to the cell it left.
    page.keyboard.press("Tab")
    assert focused_cell(page) is None
    assert page.evaluate("() => !document.activeElement.closest('#calendar')")
    page.keyboard.press("Shift+Tab")
    assert focused_cell(page) == ("09:00", hart)
    assert_one_tab_stop_with_the_focus(page)


def test_enter_on_a_free_quarter_hour_books_it_and_the_focus_follows_the_new_card(page, desk):  # noqa: F811
    from playwright.sync_api import expect

    shah = desk["shah"]
    tab_into_the_grid(page)
    press(page, "ArrowRight", (FIRST, shah))
    for hour in ("09:00", "10:00", "11:00"):
        press(page, "PageDown", (hour, shah))

    page.keyboard.press("Enter")
    dialog = page.locator("#book-dialog")
    expect(dialog).to_be_visible()
    day = _day(Practitioner.objects.get(pk=shah).clinic, 2)
    expect(dialog).to_contain_text(f"{day:%a} {day.day} {day:%b %Y} at 11:00 with Priya Shah, RN")
    expect(dialog.get_by_label("Find a patient")).to_be_focused()
    # Escape closes it and gives the focus back to the cell, still the grid's one Tab stop.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused_cell(page) == ("11:00", shah)
    assert_one_tab_stop_with_the_focus(page)

    page.keyboard.press("Space")  # Space opens it too, as a click would
    expect(dialog.get_by_label("Find a patient")).to_be_focused()
    page.keyboard.type("Clarke")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("link", name="Book for Clarke, Sam")).to_be_focused()
    page.keyboard.press("Enter")
    # The booking form is filled in with the cell's practitioner and time.
    expect(dialog.get_by_label("Practitioner")).to_have_value(shah)
    expect(dialog.get_by_label("Time")).to_have_value("11:00")
    expect(dialog.get_by_label("Procedure")).to_be_focused()
    page.keyboard.press("ArrowDown")  # the first procedure
    expect(dialog.locator("#check-panel")).to_contain_text("will be confirmed")
    dialog.locator("#check-panel form.book-now button").focus()
    page.keyboard.press("Enter")

    expect(page.locator("#cal-status")).to_contain_text("Booked")
    booked = Appointment.objects.get(patient__last_name="Clarke")
    assert (str(booked.practitioner_id), timezone.localtime(booked.start_at, booked.clinic.tz).strftime("%H:%M")) == (
        shah,
        "11:00",
    )
    # The grid was fetched again: the focus is on the new card, the grid's one Tab stop, and the arrows go on.
    expect(page.locator(f'[data-appointment="{booked.pk}"] a').first).to_be_focused()
    assert focused_cell(page) == ("card", str(booked.pk))
    assert_one_tab_stop_with_the_focus(page)
    press(page, "ArrowUp", ("10:45", shah))
    assert page.url == desk["address"]


def test_a_cell_with_nothing_to_book_is_reached_and_named_but_enter_does_nothing(page, desk):  # noqa: F811
    from playwright.sync_api import expect

    shah = desk["shah"]
    tab_into_the_grid(page)
    press(page, "End", (FIRST, shah))
    for _ in range(6):  # 09:00 ... 14:00
        page.keyboard.press("PageDown")
    assert focused_cell(page) == ("14:00", shah)
    training = page.locator(f'td[data-practitioner="{shah}"][data-time="14:00"]')
    expect(training).to_be_focused()  # the cell itself: it has no link
    expect(training).to_have_attribute("aria-label", "14:00, Priya Shah, RN: Training (not bookable)")
    shot(page, "calendar-keyboard-time-off")

    for key in ("Enter", "Space"):
        page.keyboard.press(key)
        expect(page.locator("#book-dialog")).to_be_hidden()
        expect(training).to_be_focused()
    assert page.url == desk["address"]
    press(page, "ArrowDown", ("14:15", shah))  # still in the grid


def test_f2_reaches_a_cards_move_link_and_enter_on_a_card_opens_it(page, desk):  # noqa: F811
    from playwright.sync_api import expect

    hart, card = desk["hart"], desk["card"]
    tab_into_the_grid(page)
    press(page, "PageDown", ("09:00", hart))
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    assert focused_cell(page) == card

    page.keyboard.press("F2")
    move = page.get_by_role("link", name="Move Olivia Bennett's 10:00 appointment")
    expect(move).to_be_focused()
    page.keyboard.press("Tab")  # within the card while in it
    expect(move).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(f'[data-appointment="{card[1]}"] a.cal-appt__link')).to_be_focused()
    assert_one_tab_stop_with_the_focus(page)

    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{desk['address'].split('/calendar/')[0]}/appointments/{card[1]}/")


def test_a_booking_whose_grid_cannot_be_fetched_again_still_says_booked(page, desk):  # noqa: F811
    """The grid is fetched again after a booking; when that fails (the network, a session that ended), the status
    still says what was done (review of stop 30: the promise's rejection left it unsaid)."""
    from playwright.sync_api import expect

    shah = desk["shah"]
    tab_into_the_grid(page)
    press(page, "ArrowRight", (FIRST, shah))
    press(page, "PageDown", ("09:00", shah))
    page.keyboard.press("Enter")
    dialog = page.locator("#book-dialog")
    expect(dialog.get_by_label("Find a patient")).to_be_focused()
    page.keyboard.type("Clarke")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("link", name="Book for Clarke, Sam")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Procedure")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(dialog.locator("#check-panel")).to_contain_text("will be confirmed")
    page.route(desk["address"], lambda route: route.abort())  # the grid's fetch after booking fails
    dialog.locator("#check-panel form.book-now button").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#cal-status")).to_contain_text("Booked")
    assert Appointment.objects.filter(patient__last_name="Clarke").count() == 1
