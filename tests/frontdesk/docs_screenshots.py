"""The screenshots in docs/frontdesk.md ("Our day next to Cliniko's and Jane's"), taken from a demo day.

Not part of the suite (the name does not match test_*.py); run it on purpose to refresh docs/img/:

    .venv/bin/python -m pytest tests/frontdesk/docs_screenshots.py -q

The clock is frozen at Tuesday 3 March 2026 11:20 London (ticking), so the current-time line is on the grid.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from clinic.models import AppointmentStatus, HistorySource, Practitioner, ProcedureRecord, StaffRole, TimeOff
from tests.factories import PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import at_london, book, make_staff
from tests.frontdesk.helpers import london, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
IMG = Path(settings.BASE_DIR) / "docs" / "img"
NOW = datetime(2026, 3, 3, 11, 20, tzinfo=UTC)  # GMT in March: 11:20 in London


def _demo_day(clinic):
    """Three practitioners, a dozen visits in every status, time off, an arrival and a note."""
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    shah = Practitioner.objects.get(name="Priya Shah, RN")
    cole = PractitionerFactory(clinic=clinic, name="Dr Ben Cole", hours=range(7))
    people = {
        name: PatientFactory(clinic=clinic, first_name=name.split()[0], last_name=name.split()[1])
        for name in (
            "Olivia Bennett",
            "Grace Turner",
            "Sam Clarke",
            "Aisha Khan",
            "Tom Reid",
            "Mia Wong",
            "Leo Price",
            "Ella Shaw",
        )
    }
    ProcedureRecord.objects.create(
        patient=people["Olivia Bennett"],
        procedure_id="botox",
        area_id="face",
        performed_at=NOW - timedelta(days=5),
        source=HistorySource.CLINIC,
    )
    visits = [
        ("Grace Turner", hart, "botox", 9, 0, AppointmentStatus.COMPLETED, {}),
        ("Sam Clarke", hart, "filler", 10, 0, AppointmentStatus.CONFIRMED, {"checked_in_at": NOW}),
        ("Aisha Khan", hart, "botox", 13, 30, AppointmentStatus.CONFIRMED, {"notes": "Prefers the left room"}),
        ("Tom Reid", shah, "microneedling", 9, 30, AppointmentStatus.NO_SHOW, {}),
        ("Mia Wong", shah, "plasma_pen", 11, 0, AppointmentStatus.PENDING_CLEARANCE, {}),
        ("Olivia Bennett", shah, "microneedling", 15, 0, AppointmentStatus.CONFIRMED, {"area_id": "face"}),
        ("Leo Price", cole, "botox", 9, 15, AppointmentStatus.COMPLETED, {}),
        ("Ella Shaw", cole, "filler", 12, 0, AppointmentStatus.CONFIRMED, {}),
    ]
    booked = {}
    for name, who, procedure, hh, mm, status, extra in visits:
        booked[name] = book(people[name], who, procedure, at_london(2026, 3, 3, hh, mm), status=status, **extra)
    TimeOff.objects.create(
        practitioner=cole, start_at=at_london(2026, 3, 3, 14), end_at=at_london(2026, 3, 3, 16), reason="Training"
    )
    return hart, shah, cole, booked


@pytest.fixture
def frozen_live():
    with time_machine.travel(NOW, tick=True):
        yield


def _window(browser, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    context.set_default_timeout(15_000)
    return context, context.new_page()


def test_docs_screenshots(browser, live_server, london, frozen_live):  # noqa: F811
    IMG.mkdir(parents=True, exist_ok=True)
    hart, shah, cole, booked = _demo_day(london)
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    address = f"{live_server.url}/clinic/london/calendar/?date=2026-03-03"
    assert timezone.now() >= NOW

    context, tab = _window(browser, 1200, 760)
    try:
        sign_in(tab, live_server, "reception")
        tab.goto(address)
        tab.locator(".legend").evaluate("e => e.scrollIntoView({block: 'start'})")
        tab.screenshot(path=str(IMG / "calendar-day.png"))

        tab.locator(f'td[data-practitioner="{hart.pk}"][data-time="15:00"] a').click()
        dialog = tab.locator("#book-dialog")
        dialog.get_by_label("Find a patient").fill("Bennett")
        dialog.get_by_role("button", name="Find patient").click()
        dialog.get_by_role("link", name="Book for Bennett, Olivia").click()
        dialog.get_by_label("Procedure").select_option("microneedling")
        dialog.get_by_label("Treatment area").select_option("face")
        dialog.locator("#check-panel .slot").first.wait_for()
        tab.screenshot(path=str(IMG / "calendar-book-in-place.png"))
        dialog.get_by_role("button", name="Close, book nothing").click()

        card = tab.locator(f'[data-appointment="{booked["Olivia Bennett"].pk}"]')
        target = tab.locator(f'td[data-practitioner="{shah.pk}"][data-time="16:30"]')
        card.evaluate("e => e.scrollIntoView({block: 'center'})")
        start, end = card.bounding_box(), target.bounding_box()
        tab.mouse.move(start["x"] + 20, start["y"] + 12)
        tab.mouse.down()
        tab.mouse.move(end["x"] + 20, end["y"] + 8, steps=10)
        tab.mouse.up()
        tab.locator("#cal-dialog[data-outcome='refused']").wait_for()
        tab.screenshot(path=str(IMG / "calendar-drag-refused.png"))
    finally:
        context.close()

    context, phone = _window(browser, 390, 844)
    try:
        sign_in(phone, live_server, "reception")
        phone.goto(address)
        phone.locator(".legend").evaluate("e => e.scrollIntoView({block: 'start'})")
        phone.screenshot(path=str(IMG / "calendar-phone.png"))
    finally:
        context.close()
