"""Outside QA probe of the front desk in a real browser, as a receptionist and a clinician at a busy desk use it:
keyboard only, visible focus, what a screen reader is told, and errors that say what to do.

Promises checked (quoted in each test): docs/frontdesk.md ("Accessibility", "Booking: the live check", "The
calendar", "The working day", "Assets") and the domain brief, section 5 ("Who uses it"). Every page visited is
also watched for console errors, failed requests (4xx/5xx other than the ones a test expects) and
Content-Security-Policy violations.

Two findings failed then (strict xfails) and pass since: a live-check error now marks its field (aria-invalid, the
invalid class, aria-describedby; cleared when the error goes) and the aria-live panel names it ("Check “Date”: ..."),
where the panel said only "Correct the field marked in red" with nothing marked; and a clinician's page for a booking
pending clearance no longer has two textareas id="id_reason" (the cancel reason is cancel_reason, its own label).

Same setup as tests/frontdesk/test_browser*.py: Debian's headless chromium driven by Playwright against
pytest-django's live server (no browser download), marked `browser`. The live server runs on the real clock, so
dates are computed from timezone.now() in the clinic's zone.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from clinic.models import (
    Appointment,
    AppointmentStatus,
    ConditionStatus,
    HistorySource,
    PatientCondition,
    Practitioner,
    ProcedureRecord,
    StaffRole,
)
from tests.factories import PatientFactory
from tests.frontdesk.conftest import book, make_staff
from tests.frontdesk.helpers import london, page, sign_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# --- What the browser saw -------------------------------------------------------------------------------------

# htmx 2 logs an aborted request (hx-sync="this:replace": a newer change replaced it) with console.error. That is
# htmx's own bookkeeping while a date is typed digit by digit, not a fault of the page (see the report).
HTMX_ABORT_LOGS = ("htmx:sendAbort", "htmx:afterRequest")


class Watch:
    """Console errors, uncaught exceptions, failed requests and CSP violations on every page of one tab."""

    def __init__(self, tab) -> None:
        self.problems: list[str] = []
        self.allowed: set[tuple[int, str]] = set()  # (status, path fragment) a test expects
        tab.on("console", self._console)
        tab.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        tab.on("response", self._response)
        tab.on("requestfailed", self._failed)
        tab.expose_function("__qaCsp", lambda text: self.problems.append(f"CSP violation: {text}"))
        tab.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => window.__qaCsp("
            "e.violatedDirective + ' blocked ' + e.blockedURI + ' at ' + e.sourceFile + ':' + e.lineNumber));"
        )

    def expect(self, status: int, path: str) -> None:
        self.allowed.add((status, path))

    def _console(self, message) -> None:
        text = message.text
        if message.type != "error":
            return
        if text.startswith("Failed to load resource"):  # the response itself is judged in _response
            return
        if text.split(",")[0] in HTMX_ABORT_LOGS:
            return
        self.problems.append(f"console: {text}")

    def _response(self, response) -> None:
        if response.status < 400:
            return
        if any(response.status == status and path in response.url for status, path in self.allowed):
            return
        self.problems.append(f"{response.status} {response.request.method} {response.url}")

    def _failed(self, request) -> None:
        failure = request.failure or ""
        if "ERR_ABORTED" in failure:  # htmx replacing an older check with a newer one
            return
        self.problems.append(f"request failed: {request.url} {failure}")


AUDIT_JS = """() => {
  const problems = [];
  const shown = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const h1 = [...document.querySelectorAll('h1')].filter(shown).length;
  if (h1 !== 1) problems.push(`${h1} visible h1`);
  if (document.querySelectorAll('main').length !== 1) problems.push('not exactly one <main>');
  const skip = document.querySelector('a.skip-link');
  if (!skip || !document.querySelector(skip.getAttribute('href'))) problems.push('no skip link to an existing target');
  const count = {};
  document.querySelectorAll('[id]').forEach(el => { count[el.id] = (count[el.id] || 0) + 1; });
  Object.entries(count).filter(([, n]) => n > 1).forEach(([id, n]) => problems.push(`id "${id}" used ${n} times`));
  document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach(el => {
    const what = `${el.tagName.toLowerCase()}[name=${el.name}]`;
    const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    const labels = [...(el.labels || [])];
    if (!named && labels.length === 0) problems.push(`${what} has no label`);
    if (labels.length > 1) problems.push(`${what} has ${labels.length} labels`);
    for (const attr of ['aria-describedby', 'aria-labelledby']) {
      (el.getAttribute(attr) || '').split(/\\s+/).filter(Boolean).forEach(ref => {
        if (!document.getElementById(ref)) problems.push(`${what} ${attr} points at missing #${ref}`);
      });
    }
  });
  return problems;
}"""


def audit(tab) -> list[str]:
    """docs/frontdesk.md, "Accessibility": "Every field has a <label> ..., its help text and error are tied to it
    with aria-describedby ... There is a skip link, landmarks, one h1 per page"."""
    return tab.evaluate(AUDIT_JS)


FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.x + Math.min(r.width / 2, 20), r.y + r.height / 2);
  return {
    what: `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${(el.getAttribute('aria-label') || el.innerText
          || el.value || '').trim().slice(0, 50)}"`,
    type: el.type || '',
    ring: el.matches(':focus-visible') && (s.outlineStyle !== 'none' || s.boxShadow !== 'none'),
    onscreen: r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth && r.width > 0,
    covered: !!hit && !(el === hit || el.contains(hit) || hit.contains(el)),
  };
}"""


def focused(tab) -> dict | None:
    return tab.evaluate(FOCUS_JS)


def unseen_focus(info: dict | None) -> str | None:
    """Why a keyboard user could not see where the focus is, or None."""
    if info is None:
        return "focus lost to the page itself"
    if info["type"] in ("date", "time") and not info["ring"]:
        return None  # the native picker button inside a date/time input: Chromium draws its own focus
    if not info["ring"]:
        return f"{info['what']}: no focus ring"
    if not info["onscreen"]:
        return f"{info['what']}: focused off screen"
    if info["covered"]:
        return f"{info['what']}: focused but covered by another element"
    return None


def tab_to(tab, selector: str, limit: int = 600, *, back: bool = False) -> list[str]:
    """Press Tab (or Shift+Tab) until `selector` has the focus, as a keyboard user would; return every stop on the
    way where the focus could not be seen."""
    unseen: list[str] = []
    for _ in range(limit):
        if tab.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector):
            return unseen
        tab.keyboard.press("Shift+Tab" if back else "Tab")
        problem = unseen_focus(focused(tab))
        # Leaving a modal dialog's last control passes through the browser's own UI once; not the page's doing.
        if problem and problem != "focus lost to the page itself":
            unseen.append(problem)
    raise AssertionError(f"Tab never reached {selector}")


def has_focus(tab, selector: str) -> bool:
    return tab.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector)


def type_date(tab, day) -> None:
    """Type a date into the focused <input type=date>, key by key, in the order its parts show (day first for
    en-GB; Debian's headless chromium may show month first whatever the page's locale)."""
    tab.keyboard.type(day.strftime("%d%m%Y"))
    if tab.evaluate("() => document.activeElement.value") != day.isoformat():
        tab.keyboard.press("Shift+Tab")
        tab.keyboard.press("Shift+Tab")  # back to the first part
        tab.keyboard.type(day.strftime("%m%d%Y"))
    assert tab.evaluate("() => document.activeElement.value") == day.isoformat()


def local_today(clinic):
    return timezone.localdate(timezone.now(), clinic.tz)


def botox_five_days_ago(clinic, first="Olivia", last="Bennett"):
    """A patient who had Botox five days ago: microneedling is refused for two weeks after it (domain brief,
    section 2, rule 001), and the first allowed day."""
    patient = PatientFactory(clinic=clinic, first_name=first, last_name=last)
    done = ProcedureRecord.objects.create(
        patient=patient,
        procedure_id="botox",
        area_id="face",
        performed_at=timezone.now() - timedelta(days=5),
        source=HistorySource.CLINIC,
    )
    return patient, done.performed_at.astimezone(clinic.tz).date() + timedelta(days=14)


def pending_today(clinic, practitioner):
    """Grace, with a history of eczema (a relative contraindication to microneedling, brief section 3), whose
    microneedling started a little while ago today and is held pending clearance."""
    grace = PatientFactory(clinic=clinic, first_name="Grace", last_name="Turner")
    PatientCondition.objects.create(patient=grace, condition_id="eczema", status=ConditionStatus.HISTORY)
    now = timezone.localtime(timezone.now(), clinic.tz)
    start = max(now - timedelta(minutes=20), now.replace(hour=0, minute=0, second=0, microsecond=0))
    return book(grace, practitioner, "microneedling", start, status=AppointmentStatus.PENDING_CLEARANCE)


def when(day) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


# --- Booking from the calendar, keyboard only -------------------------------------------------------------------


def test_keyboard_only_a_refused_booking_from_the_calendar_is_taken_at_the_earliest_date(page, live_server, london):  # noqa: F811
    """Brief section 5: "Receptionists book ... see why a booking is refused and the earliest date that works".
    docs/frontdesk.md: "Every gesture has a keyboard path (cells and Move links are links; the dialogs trap and
    return focus)"; "Focus is a dark ring with a yellow halo, visible on every background"; "There is a skip
    link"; the dialog "says the same as the page: why not, the earliest eligible start, the next free times";
    "a refusal answers 409 with the form and panel again"; after booking "the calendar's status line says what
    was booked"."""
    from playwright.sync_api import expect

    watch = Watch(page)
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    olivia, earliest = botox_five_days_ago(london)
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    day = local_today(london) + timedelta(days=2)
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={day}")
    assert audit(page) == []

    # The first Tab shows the skip link; Enter takes the focus past the menus.
    page.keyboard.press("Tab")
    assert has_focus(page, "a.skip-link") and unseen_focus(focused(page)) is None
    page.keyboard.press("Enter")
    assert has_focus(page, "main")

    # Tab into the grid (one Tab stop: calendar.js), then down to Dr Hart's empty 12:00 cell (the grid starts at
    # 08:00, Page Down is an hour); the focus is visible at every stop on the way.
    cell = f'td[data-practitioner="{hart.pk}"][data-time="12:00"] a.cal-free'
    assert tab_to(page, "#calendar [tabindex='0']") == []
    for _ in range(4):
        page.keyboard.press("PageDown")
        assert unseen_focus(focused(page)) is None
    assert has_focus(page, cell)
    page.keyboard.press("Enter")
    dialog = page.locator("#book-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Find a patient")).to_be_focused()
    # Escape closes the dialog and gives the focus back to the cell it came from.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert has_focus(page, cell)
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Find a patient")).to_be_focused()
    # Shift+Tab stays inside the open dialog (the calendar behind is out of reach).
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => !!document.activeElement.closest('#book-dialog')")

    assert tab_to(page, "#book-dialog input[type=search]", limit=5) == []  # back to the search field
    page.keyboard.type("Bennett")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("link", name="Book for Bennett, Olivia")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Procedure")).to_be_focused()
    assert audit(page) == []  # the booking form inside the calendar page: labels and ids still unique
    page.keyboard.type("m")  # type-ahead on the closed list: Microneedling
    page.keyboard.press("Tab")
    page.keyboard.type("f")  # Face
    panel = dialog.locator("#check-panel")
    expect(panel).to_have_attribute("aria-live", "polite")
    expect(panel).to_contain_text(f"Not possible at {when(day)}, 12:00")
    expect(panel).to_contain_text("must be at least 2 weeks after Botulinum toxin injection (Botox)")
    expect(panel.locator(".earliest")).to_contain_text(f"Earliest eligible start: {when(earliest)}")
    # The live check replaced the panel, not the form: the focus is still where the user is.
    assert has_focus(page, "#book-dialog #id_area")

    # Meanwhile someone else takes the first time offered: the refusal says so and offers what is free now.
    first = panel.locator("button.slot").first
    expect(first).to_have_accessible_name(f"Book {earliest:%a} {earliest.day} {earliest:%b} 09:00 Dr Amelia Hart")
    taken = datetime.combine(earliest, time(9), tzinfo=london.tz)
    book(PatientFactory(clinic=london, first_name="Sam", last_name="Clarke"), hart, "botox", taken)
    watch.expect(409, f"/patients/{olivia.pk}/book/confirm/")
    assert tab_to(page, "#book-dialog button.slot", limit=30) == []
    page.keyboard.press("Enter")
    expect(dialog.locator("[role=alert]")).to_contain_text("Not booked.")
    expect(dialog).to_be_visible()
    assert page.evaluate("() => !!document.activeElement.closest('#book-dialog')"), "focus left the dialog"
    first = dialog.locator("#check-panel button.slot").first
    expect(first).to_contain_text(f"{earliest:%a} {earliest.day} {earliest:%b}")
    expect(first).not_to_contain_text("09:00")  # the taken time is not offered again

    assert tab_to(page, "#book-dialog #check-panel button.slot", limit=30) == []
    offered = first.inner_text()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    status = page.locator("#cal-status")
    expect(status).to_have_attribute("role", "status")
    expect(status).to_contain_text("Booked and confirmed: Microneedling")
    booked = Appointment.objects.get(patient=olivia)
    start = timezone.localtime(booked.start_at, london.tz)
    assert start.date() == earliest and f"{start:%H:%M}" in offered
    # Booked on another day than the one shown: the focus goes to the status line's link, not the page top.
    assert unseen_focus(focused(page)) is None
    assert page.evaluate("() => document.activeElement.closest('#cal-status') !== null")
    assert watch.problems == []


# --- The live check: errors tied to fields and announced -----------------------------------------------------------


def test_the_live_check_keeps_focus_ties_errors_to_fields_and_announces_the_verdict(page, live_server, london):  # noqa: F811
    """docs/frontdesk.md: "Every field has a <label> ..., its help text and error are tied to it with
    aria-describedby"; "Field errors reach the fields outside the panel through htmx out-of-band swaps of each
    field's id_<field>-error element. The panel is an aria-live region, so screen readers hear the verdict"; "a
    past day is an error on the date"."""
    from playwright.sync_api import expect

    watch = Watch(page)
    sam = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/{sam.pk}/book/")
    assert audit(page) == []
    panel = page.locator("#check-panel")
    expect(panel).to_have_attribute("aria-live", "polite")

    assert tab_to(page, "#id_procedure") == []
    page.keyboard.type("b")  # Botox
    expect(panel).to_contain_text("Possible now, will be confirmed")
    assert has_focus(page, "#id_procedure")

    assert tab_to(page, "#id_date") == []
    type_date(page, local_today(london) - timedelta(days=3))
    error = page.locator("#id_date-error")
    expect(error).to_have_text("That day has passed; choose today or a later day.")
    assert "id_date-error" in page.locator("#id_date").get_attribute("aria-describedby").split()
    assert has_focus(page, "#id_date"), "the live check took the focus away from the date being typed"
    expect(panel).not_to_contain_text("Possible")  # no stale verdict next to an error

    # Put right: the error goes away and the verdict is back, for that day.
    good = local_today(london) + timedelta(days=7)
    page.locator("#id_date").fill(good.isoformat())
    page.locator("#id_date").dispatch_event("change")
    expect(error).to_have_text("")
    expect(panel).to_contain_text(f"Possible from {when(good)}")
    assert audit(page) == []
    assert watch.problems == []


def test_a_live_check_error_marks_its_field_invalid_and_the_announcement_names_it(page, live_server, london):  # noqa: F811
    """docs/frontdesk.md, "Accessibility": "a field with an error gets aria-invalid"; "Statuses are always words
    with an icon, colour only adds to them". On the booking page the live check is the path a receptionist
    takes; what the aria-live panel says is all a screen-reader user hears of it."""
    from playwright.sync_api import expect

    sam = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke")
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/{sam.pk}/book/?procedure=botox")
    date = page.locator("#id_date")
    date.fill((local_today(london) - timedelta(days=3)).isoformat())
    date.dispatch_event("change")
    expect(page.locator("#id_date-error")).to_contain_text("That day has passed")
    hint = page.locator("#check-panel").inner_text()
    assert (date.get_attribute("aria-invalid"), "Date" in hint) == ("true", True), hint
    assert "Check “Date”: That day has passed" in hint
    expect(page.locator(".field:has(#id_date)")).to_have_class("field field--invalid")
    assert "id_date-error" in date.get_attribute("aria-describedby").split()
    assert has_focus(page, "#id_date")  # marked in place: the input was not swapped out

    # Put right, the mark goes with the error.
    date.fill((local_today(london) + timedelta(days=7)).isoformat())
    date.dispatch_event("change")
    expect(page.locator("#id_date-error")).to_have_text("")
    expect(date).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field:has(#id_date)")).to_have_class("field")
    expect(page.locator("#check-panel")).to_contain_text("Possible from")
    assert audit(page) == []


# --- The working day: check in, move, cancel (receptionist); clear and complete (clinician) ------------------------


def test_receptionist_checks_in_moves_and_cancels_with_the_keyboard(page, live_server, london):  # noqa: F811
    """Brief section 5: "Receptionists book, reschedule and cancel". docs/frontdesk.md: "Check in. 'Check in' on
    Today's arrivals ... The calendar, Today and the day sheet show 'Arrived HH:MM'"; "Move, with the same live
    check"; a pending booking tells a receptionist "Only a clinician can clear it"; "Buttons a user may not use
    are hidden as a courtesy"."""
    from playwright.sync_api import expect

    watch = Watch(page)
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    pending = pending_today(london, hart)
    olivia = PatientFactory(clinic=london, first_name="Olivia", last_name="Bennett")
    day = local_today(london) + timedelta(days=3)
    at = datetime.combine(day, time(0), tzinfo=london.tz)
    botox = book(olivia, hart, "botox", at.replace(hour=10))
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")

    # Today: Grace arrives. Check her in from the arrivals, by keyboard.
    expect(page.get_by_role("heading", level=1)).to_contain_text("Today")
    assert audit(page) == []
    assert tab_to(page, "button[aria-label^='Check in Grace Turner']") == []
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(".messages[role=status]")).to_contain_text("Checked in")
    pending.refresh_from_db()
    assert pending.checked_in_at is not None
    arrived = timezone.localtime(pending.checked_in_at, london.tz)
    page.goto(f"{live_server.url}/clinic/london/")
    expect(page.locator("table")).to_contain_text(f"Arrived {arrived:%H:%M}")

    # Her booking waits for a clinician: the receptionist is told so, without a form she could not use.
    page.goto(f"{live_server.url}/clinic/london/appointments/{pending.pk}/")
    assert audit(page) == []
    expect(page.locator(".panel--pending")).to_contain_text("Only a clinician can clear it")
    expect(page.get_by_role("button", name="Clear and confirm")).to_have_count(0)
    expect(page.get_by_role("button", name="Mark completed")).to_have_count(0)

    # Move Olivia's Botox to 14:00 the next day, keyboard only: the card's "Move" link on the calendar (the
    # keyboard path for a drag), then the live check.
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={day}")
    move = page.locator(f'[data-appointment="{botox.pk}"] a.cal-appt__move')
    expect(move).to_have_attribute("aria-label", "Move Olivia Bennett's 10:00 appointment")
    # The grid is one Tab stop (calendar.js): Page Down twice to the 10:00 card (the grid starts at 08:00), F2 into it.
    assert tab_to(page, "#calendar [tabindex='0']") == []
    page.keyboard.press("PageDown")
    page.keyboard.press("PageDown")
    assert has_focus(page, f'[data-appointment="{botox.pk}"] a.cal-appt__link')
    page.keyboard.press("F2")
    assert has_focus(page, f'[data-appointment="{botox.pk}"] a.cal-appt__move')
    assert unseen_focus(focused(page)) is None
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Move Botulinum toxin injection")
    assert audit(page) == []
    assert tab_to(page, "#id_date") == []
    new_day = day + timedelta(days=1)
    type_date(page, new_day)
    page.keyboard.press("Tab")
    for _ in range(3):  # on through the date's own parts to the time
        if has_focus(page, "#id_time"):
            break
        page.keyboard.press("Tab")
    assert has_focus(page, "#id_time")
    page.keyboard.type("1400")
    panel = page.locator("#check-panel")
    expect(panel).to_contain_text(f"Possible at {when(new_day)}, 14:00")
    assert tab_to(page, "#check-panel form.book-now button", limit=30) == []
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(".messages[role=status]")).to_contain_text(f"Moved to {new_day:%a %d %b %Y}, 14:00")
    assert audit(page) == []
    botox.refresh_from_db()
    assert timezone.localtime(botox.start_at, london.tz) == datetime.combine(new_day, time(14), tzinfo=london.tz)

    # Cancel it, with a reason, keyboard only (the "Cancel this appointment…" disclosure first).
    assert tab_to(page, "details.danger-zone summary") == []
    page.keyboard.press("Enter")
    assert tab_to(page, "textarea[name=reason]", limit=5) == []
    expect(page.get_by_label("Reason for cancelling (optional)")).to_be_focused()
    page.keyboard.type("Patient called: away that week.")
    assert tab_to(page, "button.btn--danger", limit=5) == []
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(".messages[role=status]")).to_contain_text("Cancelled: the slot is free again")
    expect(page.locator(".lead")).to_contain_text("Cancelled")
    botox.refresh_from_db()
    assert (botox.status, botox.cancel_reason) == (AppointmentStatus.CANCELLED, "Patient called: away that week.")
    assert audit(page) == []
    assert watch.problems == []


def test_clinician_clears_a_relative_contraindication_with_a_reason_and_completes(page, live_server, london):  # noqa: F811
    """Brief section 5: "Clinicians record completion, clear relative contraindications with a reason"; section
    3: "relative = the booking is held as pending clearance until a clinician records a clearance with a reason
    (audited)". docs/frontdesk.md: a field with an error "gets aria-invalid", its error "tied to it with
    aria-describedby"; "No bad input answers 500"."""
    from playwright.sync_api import expect

    watch = Watch(page)
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    pending = pending_today(london, hart)
    make_staff(london, StaffRole.CLINICIAN, "clinician")
    sign_in(page, live_server, "clinician")
    page.goto(f"{live_server.url}/clinic/london/appointments/{pending.pk}/")
    expect(page.locator(".panel--pending")).to_contain_text("history of Eczema")
    clearance = page.locator(".panel--pending textarea")

    # Clear with no reason: refused, and the error is on the reason field, said in words and tied to it.
    watch.expect(400, f"/appointments/{pending.pk}/clear/")
    assert tab_to(page, "form[action$='/clear/'] button") == []
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(clearance).to_have_attribute("aria-invalid", "true")
    described = clearance.get_attribute("aria-describedby").split()
    errors = [page.locator(f".panel--pending [id='{ref}']").inner_text() for ref in described]
    assert "This field is required." in " ".join(errors)
    pending.refresh_from_db()
    assert pending.status == AppointmentStatus.PENDING_CLEARANCE and not pending.clearance_reason

    # With a reason: cleared (audited with it), then completed.
    assert tab_to(page, ".panel--pending textarea") == []
    page.keyboard.type("Eczema quiescent for two years; test patch fine.")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(".messages[role=status]")).to_contain_text("Cleared")
    expect(page.locator(".audit")).to_contain_text("Eczema quiescent for two years")
    assert tab_to(page, "form[action$='/complete/'] button") == []
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(".messages[role=status]")).to_contain_text("Marked completed")
    expect(page.get_by_role("link", name="Aftercare sheet to print")).to_be_visible()
    pending.refresh_from_db()
    assert pending.status == AppointmentStatus.COMPLETED
    assert pending.clearance_reason == "Eczema quiescent for two years; test patch fine."
    assert audit(page) == []
    assert watch.problems == []


def test_on_a_pending_appointment_the_cancel_reason_is_its_own_field(page, live_server, london):  # noqa: F811
    """docs/frontdesk.md, "Accessibility": "Every field has a <label> ..., its help text and error are tied to it
    with aria-describedby". A clinician on a booking pending clearance sees both the clearance reason and
    "Cancel this appointment…" with its own reason."""
    from playwright.sync_api import expect

    pending = pending_today(london, Practitioner.objects.get(name="Dr Amelia Hart"))
    make_staff(london, StaffRole.CLINICIAN, "clinician")
    sign_in(page, live_server, "clinician")
    page.goto(f"{live_server.url}/clinic/london/appointments/{pending.pk}/")
    page.get_by_text("Cancel this appointment…").click()
    # A click on the cancel field's label, as a person does before typing, must land in the cancel field.
    page.locator("details.danger-zone label").click()
    expect(page.locator("details.danger-zone textarea")).to_be_focused()
    assert audit(page) == []


# --- Every page: one h1, landmarks, labelled fields, a clean console --------------------------------------------


def test_every_desk_page_has_one_h1_a_skip_link_labelled_fields_and_a_clean_console(page, live_server, london):  # noqa: F811
    """docs/frontdesk.md, "Accessibility": "Every field has a <label> ... its help text and error are tied to it
    with aria-describedby ... There is a skip link, landmarks, one h1 per page"; "Assets": "The favicon is ...
    (no 404 in the console)"; the Content-Security-Policy allows no inline script or style ("no inline script
    or style: the Content-Security-Policy allows neither")."""
    watch = Watch(page)
    hart = Practitioner.objects.get(name="Dr Amelia Hart")
    olivia, _ = botox_five_days_ago(london)
    PatientCondition.objects.create(patient=olivia, condition_id="eczema", status=ConditionStatus.HISTORY)
    today = local_today(london)
    at = datetime.combine(today + timedelta(days=3), time(11), tzinfo=london.tz)
    booked = book(olivia, hart, "filler", at, area_id="face")
    done = book(olivia, hart, "botox", at - timedelta(days=30), status=AppointmentStatus.COMPLETED)
    make_staff(london, StaffRole.CLINICIAN, "clinician")
    page.goto(f"{live_server.url}/login/")
    found = {"sign in": audit(page)}
    sign_in(page, live_server, "clinician")
    clinic = "/clinic/london"
    pages = {
        "today": f"{clinic}/",
        "calendar, day": f"{clinic}/calendar/?date={today}",
        "calendar, week": f"{clinic}/calendar/?date={today}&view=week&practitioner={hart.pk}",
        "calendar, book (no JS page)": f"{clinic}/calendar/book/?practitioner={hart.pk}&q=Bennett",
        "day sheet": f"{clinic}/calendar/sheet/?date={at.date()}",
        "schedule, day": f"{clinic}/schedule/?date={at.date()}",
        "schedule, week": f"{clinic}/schedule/?date={at.date()}&view=week",
        "patients": f"{clinic}/patients/?q=Bennett",
        "new patient": f"{clinic}/patients/new/",
        "patient": f"{clinic}/patients/{olivia.pk}/",
        "edit patient": f"{clinic}/patients/{olivia.pk}/edit/",
        "medical history": f"{clinic}/patients/{olivia.pk}/history/",
        "book, refused": f"{clinic}/patients/{olivia.pk}/book/?procedure=microneedling&area=face"
        f"&date={today + timedelta(days=2)}&time=10:00",
        "plan a course": f"{clinic}/patients/{olivia.pk}/plan/",
        "merge": f"{clinic}/patients/{olivia.pk}/merge/",
        "appointment": f"{clinic}/appointments/{booked.pk}/",
        "move": f"{clinic}/appointments/{booked.pk}/reschedule/?date={at.date()}&time=12:00",
        "appointment, completed": f"{clinic}/appointments/{done.pk}/",
        "aftercare": f"{clinic}/appointments/{done.pk}/aftercare/",
        "rules": f"{clinic}/rules/",
        "two-step sign-in": "/account/two-step/",
        "not found": f"{clinic}/patients/00000000-0000-0000-0000-000000000000/",
    }
    watch.expect(404, "/patients/00000000-0000-0000-0000-000000000000/")
    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}")
        found[name] = audit(page)
    # A new patient sent with errors: each error next to its field and the field marked.
    page.goto(f"{live_server.url}{clinic}/patients/new/")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Mobile phone").fill("12345")
    page.get_by_role("button", name="Add patient").click()
    page.wait_for_load_state()
    found["new patient, with errors"] = audit(page)
    invalid = page.evaluate("() => [...document.querySelectorAll('[aria-invalid=true]')].map(e => e.name).sort()")
    assert invalid == ["last_name", "phone"]
    assert {name: problems for name, problems in found.items() if problems} == {}
    assert watch.problems == []
