"""Outside QA probe of the patient's own pages in a real browser, as a patient on a phone who got the link by SMS
uses them: a 360 px phone, bigger text and a zoomed desktop, the keyboard alone, a screen reader's view of the page,
a double tap, the Back button and a browser with JavaScript switched off.

Promises under test:
- docs/portal.md: "Mobile first: at 390 px nothing scrolls sideways"; the page shows "date and time in the clinic's
  zone with the zone named ("10:00–11:00 London time (GMT)")"; "Every POST needs the page's CSRF token and answers
  with a 303 to a page (a reload repeats nothing)"; "A move sent twice (a double tap, a resent form) is one move";
  inside the window "call us on …" with a tap-to-call button; "expired link | 410 "This link has expired""; "SMS on
  without the tick | 400, the same page with the message next to the field"; "Under the Content-Security-Policy ...
  the layout is a static stylesheet".
- docs/reminders.md, "Unsubscribe": "Opening the link shows a one-button page"; the unsubscribe pages share the look.
- reminders/static/reminders/patient.css (the pages' own statement): "Nothing is wider than the screen; every control
  is a thumb-sized target; focus is always visible".
- docs/frontdesk.md, "Accessibility" (the standard the project sets itself): "Every field has a <label> ..., its help
  text and error are tied to it with aria-describedby, and a field with an error gets aria-invalid"; "Focus is a
  dark ring with a yellow halo"; "Buttons, fields and choices are at least 44 px high"; "one h1 per page"; and
  "Assets": "The favicon ... (no 404 in the console)".

Same harness as tests/portal/test_browser.py and tests/qa/test_desk_browser_probe.py: Debian's headless chromium
driven by Playwright against pytest-django's live server, marked `browser`. The live server runs on the real clock,
so the appointment is booked five days ahead, at 10:00 in the clinic's zone. Every tab watches for console errors,
failed requests and 4xx/5xx answers other than the ones a test expects (the favicon's 404 has its own test).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from clinic.models import Appointment, AppointmentStatus, AuditAction, AuditEvent, MessageTopic, Patient
from portal.forms import slot_key
from reminders.consent import unsubscribe_url
from reminders.links import manage_token, manage_url
from scheduler.selfservice import patient_move_options
from tests.browser import SHOTS  # the shared setup (tests/conftest.py `browser`)
from tests.factories import AppointmentFactory, ClinicFactory, PatientFactory, PractitionerFactory
from tests.portal.conftest import book

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 360, "height": 740}
# A 1280 x 740 laptop window at 200% browser zoom lays the page out in 640 x 370 CSS pixels.
ZOOMED_DESKTOP = {"width": 640, "height": 370}


# --- The browser and what it saw ---------------------------------------------------------------------------------


class Watch:
    """Console errors, uncaught exceptions, failed requests and error answers on every page of one tab."""

    def __init__(self, tab) -> None:
        self.problems: list[str] = []
        self.allowed: set[tuple[int, str]] = set()  # (status, path fragment) a test expects for a page
        self.posts: list[str] = []
        tab.on("console", self._console)
        tab.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        tab.on("response", self._response)
        tab.on("requestfailed", self._failed)
        tab.on("request", lambda request: request.method == "POST" and self.posts.append(request.url))

    def _failed(self, request) -> None:
        # A request the browser itself cancelled because the tab moved on (the icon of a page left at once) is
        # not a fault of the page; any other failure is (a refused connection, a reset, a blocked resource).
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed: {request.url} {request.failure}")

    def expect(self, status: int, path: str) -> None:
        self.allowed.add((status, path))

    def _console(self, message) -> None:
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource"):
            # A page's own answer is judged by its response below; the favicon's 404 (no response event in
            # Playwright) has its own test.
            return
        self.problems.append(f"console: {message.text}")  # CSP refusals land here too

    def _response(self, response) -> None:
        if response.status < 400:
            return
        if any(response.status == status and path in response.url for status, path in self.allowed):
            return
        self.problems.append(f"{response.status} {response.request.method} {response.url}")


def open_tab(browser, *, viewport=PHONE, js: bool = True, zone: str = "Europe/London"):
    """A phone's browser tab (touch, en-GB), in the given zone; returns (context, tab, watch)."""
    context = browser.new_context(
        viewport=viewport,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
        timezone_id=zone,
        java_script_enabled=js,
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    return context, tab, Watch(tab)


@pytest.fixture
def phone(browser):
    context, tab, watch = open_tab(browser)
    tab.watch = watch
    yield tab
    context.close()


LAYOUT_JS = """() => {
  const shown = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const problems = [];
  const de = document.documentElement;
  if (de.scrollWidth > innerWidth) problems.push(`page ${de.scrollWidth}px wide in ${innerWidth}px`);
  document.querySelectorAll('body *').forEach(el => {
    if (!shown(el)) return;
    const r = el.getBoundingClientRect();
    const what = `${el.tagName.toLowerCase()}.${el.className} "${(el.innerText || '').trim().slice(0, 30)}"`;
    if (r.right > innerWidth + 1 || r.left < -1) problems.push(`${what} cut off: ${r.left}..${r.right}`);
    const s = getComputedStyle(el);
    if (s.overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1) problems.push(`${what} clipped`);
  });
  return problems;
}"""


AUDIT_JS = """() => {
  const shown = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const problems = [];
  if (!/^en/.test(document.documentElement.lang)) problems.push(`lang="${document.documentElement.lang}"`);
  const heads = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].filter(shown).map(h => +h.tagName[1]);
  if (heads.filter(h => h === 1).length !== 1) problems.push(`headings ${heads}: not one h1`);
  if (heads[0] !== 1) problems.push(`headings ${heads}: the first is not the h1`);
  heads.forEach((h, i) => { if (i && h > heads[i - 1] + 1) problems.push(`headings ${heads}: a level skipped`); });
  if (document.querySelectorAll('main').length !== 1) problems.push('not exactly one <main>');
  const ids = {};
  document.querySelectorAll('[id]').forEach(el => { ids[el.id] = (ids[el.id] || 0) + 1; });
  Object.entries(ids).filter(([, n]) => n > 1).forEach(([id, n]) => problems.push(`id "${id}" used ${n} times`));
  document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach(el => {
    const what = `${el.tagName.toLowerCase()}[name=${el.name}]`;
    const labels = [...(el.labels || [])].filter(l => l.innerText.trim());
    if (!el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby') && !labels.length)
      problems.push(`${what} has no label`);
  });
  document.querySelectorAll('[aria-describedby], [aria-labelledby]').forEach(el => {
    for (const attr of ['aria-describedby', 'aria-labelledby'])
      (el.getAttribute(attr) || '').split(/\\s+/).filter(Boolean).forEach(ref => {
        if (!document.getElementById(ref)) problems.push(`${el.tagName} ${attr} points at missing #${ref}`);
      });
  });
  document.querySelectorAll('a[href], button, summary').forEach(el => {
    if (shown(el) && !(el.getAttribute('aria-label') || el.innerText.trim()))
      problems.push(`${el.tagName} without a name`);
  });
  return problems;
}"""


# Every control a thumb presses: its box, or for a checkbox the box and its label together (a tap on either ticks it).
TARGETS_JS = """() => {
  const shown = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const out = [];
  document.querySelectorAll('a[href], button, summary, input:not([type=hidden]), textarea').forEach(el => {
    if (!shown(el)) return;
    const inSentence = el.tagName === 'A' && el.parentElement.tagName === 'P'
      && el.parentElement.innerText.trim() !== el.innerText.trim();  // a link inside a sentence
    if (inSentence) return;
    const rects = [el.getBoundingClientRect(), ...[...(el.labels || [])].map(l => l.getBoundingClientRect())];
    const top = Math.min(...rects.map(r => r.top)), bottom = Math.max(...rects.map(r => r.bottom));
    const left = Math.min(...rects.map(r => r.left)), right = Math.max(...rects.map(r => r.right));
    out.push({what: `${el.tagName.toLowerCase()} "${(el.innerText || el.name || '').trim().slice(0, 30)}"`,
              height: Math.round(bottom - top), width: Math.round(right - left)});
  });
  return out;
}"""


FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  return {
    what: `${el.tagName.toLowerCase()} "${(el.innerText || el.name || '').trim().slice(0, 40)}"`,
    ring: el.matches(':focus-visible') && s.outlineStyle !== 'none' && s.boxShadow !== 'none',
    onscreen: r.bottom > 0 && r.top < innerHeight && r.width > 0,
    top: r.top + scrollY,
    inMain: !!el.closest('main'),
  };
}"""


def layout_problems(tab) -> list[str]:
    return tab.evaluate(LAYOUT_JS)


def small_targets(tab) -> list[str]:
    return [f"{t['what']}: {t['width']}x{t['height']}" for t in tab.evaluate(TARGETS_JS) if t["height"] < 44]


def tab_until(tab, selector: str, limit: int = 40) -> list[dict]:
    """Press Tab until `selector` has the focus; every stop on the way, as the page reported it."""
    stops = []
    for _ in range(limit):
        if tab.evaluate("s => document.activeElement.matches(s)", selector):
            return stops
        tab.keyboard.press("Tab")
        stops.append(tab.evaluate(FOCUS_JS))
    raise AssertionError(f"Tab never reached {selector}: {stops}")


def unseen(stops: list[dict]) -> list[str]:
    """Stops where a keyboard user could not see the focus."""
    return [
        (stop or {}).get("what", "focus lost to the page")
        for stop in stops
        if not stop or not stop["ring"] or not stop["onscreen"]
    ]


# --- The clinic, the patient and the appointment -----------------------------------------------------------------


def five_days_ahead_at_ten(clinic) -> datetime:
    return datetime.combine(
        timezone.localdate(timezone.now(), clinic.tz) + timedelta(days=5), time(10), tzinfo=clinic.tz
    )


def make_world(settings, live_server, *, zone="Europe/London", place="London"):
    settings.REMINDERS_PUBLIC_BASE_URL = live_server.url
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    clinic = ClinicFactory(
        code=place.lower().replace(" ", "-"),
        name="Bloom Skin & Aesthetics Clinic Kensington",
        timezone=zone,
        phone="+442079460958",
        address="Flat 3, 112 Extraordinarily-Long-Street-Name Road\nKensington, London W8 4PT",
        map_url="https://www.openstreetmap.org/search?query=W8%204PT",
        brand_colour="#7a1f5c",
    )
    PractitionerFactory(clinic=clinic, name="Dr Amelia Hart", hours=range(7))  # every day: whatever day it runs
    patient = PatientFactory(
        clinic=clinic,
        first_name="Olivia",
        email="olivia.bennett-longname@example.co.uk",
        phone="+447700900123",
        reminder_channels=["email", "sms"],
        sms_consent=True,
    )
    return book(patient, five_days_ahead_at_ten(clinic), timezone.now())


@pytest.fixture
def appointment(live_server, catalogue, settings):
    return make_world(settings, live_server)


def url(appointment, name: str = "manage") -> str:
    return django_settings.REMINDERS_PUBLIC_BASE_URL + reverse(f"portal:{name}", args=[manage_token(appointment)])


def confirm_url(appointment, slot) -> str:
    return f"{url(appointment, 'move_confirm')}?slot={slot_key(slot.start_at, slot.practitioner_id)}"


def options(appointment):
    return patient_move_options(appointment=appointment, now=timezone.now())


def expired_link(appointment) -> str:
    """A link of the same patient's visit that ended ten days ago (links end a week after the visit)."""
    old = AppointmentFactory(
        clinic=appointment.clinic,
        patient=appointment.patient,
        practitioner=appointment.practitioner,
        procedure_id="microneedling",
        start_at=timezone.now() - timedelta(days=10),
        end_at=timezone.now() - timedelta(days=10) + timedelta(hours=1),
        status=AppointmentStatus.COMPLETED,
    )
    return manage_url(old)


def audits(appointment, action) -> int:
    return AuditEvent.objects.filter(appointment=appointment, action=action).count()


# --- Layout: a 360 px phone, double text size, a zoomed desktop --------------------------------------------------


def test_every_patient_page_fits_a_360px_phone_with_double_text_and_a_desktop_at_200pct_zoom(phone, appointment):
    """docs/portal.md: "Mobile first: at 390 px nothing scrolls sideways"; patient.css: "Nothing is wider than the
    screen". Checked below 390 (a 360 px Android phone), with the phone's text at 200%, and on a 1280 px window
    zoomed to 200% (WCAG 1.4.4 and 1.4.10): no sideways scroll, nothing cut off at an edge, no clipped box."""
    pages = {
        "appointment": manage_url(appointment),
        "cancel": url(appointment, "cancel"),
        "move": url(appointment, "move"),
        "confirm": confirm_url(appointment, options(appointment)[-1]),
        "bad link": manage_url(appointment).replace("/my/", "/my/x"),
        "expired link": expired_link(appointment),
        "unsubscribe": unsubscribe_url(patient_id=appointment.patient_id),
    }
    phone.watch.expect(400, "/my/x")
    phone.watch.expect(410, "/my/")
    found = []
    for layout, viewport, text in (
        ("phone", PHONE, "100%"),
        ("phone, text 200%", PHONE, "200%"),
        ("desktop at 200%", ZOOMED_DESKTOP, "100%"),
    ):
        phone.set_viewport_size(viewport)
        for name, address in pages.items():
            phone.goto(address)
            # The phone's own text-size setting: every size on these pages is in rem, so the root size scales them.
            phone.evaluate(f"() => document.documentElement.style.fontSize = '{text}'")
            found += [f"{layout}, {name}: {problem}" for problem in layout_problems(phone)]
        phone.screenshot(path=str(SHOTS / f"qa-portal-{layout.replace(' ', '-').replace(',', '')}.png"), full_page=True)
    # The calendar link's long address and a refusal next to a checkbox must wrap too.
    phone.set_viewport_size(PHONE)
    phone.goto(manage_url(appointment))
    phone.get_by_role("button", name="Get a calendar link").click()
    phone.get_by_label("Text messages (SMS)").uncheck()
    phone.get_by_role("button", name="Save my choices").click()
    phone.get_by_label("Text messages (SMS)").check()
    phone.watch.expect(400, "/preferences/")
    phone.get_by_role("button", name="Save my choices").click()
    found += [f"phone, refused choices: {problem}" for problem in layout_problems(phone)]
    assert found == []
    # The refusal itself (docs/portal.md: "SMS on without the tick | 400, the same page with the message next to
    # the field"): in words, a role=alert, the box marked invalid, nothing changed.
    error = phone.locator(".field-error")
    assert "tick the box" in error.inner_text()
    assert error.get_attribute("role") == "alert"
    assert phone.locator("input[name=sms_consent]").get_attribute("aria-invalid") == "true"
    assert not Patient.objects.get(pk=appointment.patient_id).sms_consent
    assert phone.watch.problems == []


# --- What a screen reader is told -----------------------------------------------------------------------------


TITLES = {
    "appointment": "Your appointment · ",
    "cancel": "Cancel your appointment · ",
    "move": "Move your appointment · ",
    "confirm": "Confirm the new time · ",
    "bad link": "Link not valid",
    "expired link": "Link expired",
    "unsubscribe": "Unsubscribe · ",
}


def test_every_page_has_a_language_a_title_naming_it_one_h1_ordered_headings_and_named_controls(phone, appointment):
    """docs/frontdesk.md, "Accessibility": "Every field has a <label> (radio and checkbox groups a <fieldset> and
    <legend>)"; "Every id on a page is used once"; "landmarks, one h1 per page". And WCAG's basics a patient's screen
    reader needs: the page's language, a title that says which page it is (and whose), headings in order."""
    pages = {
        "appointment": manage_url(appointment),
        "cancel": url(appointment, "cancel"),
        "move": url(appointment, "move"),
        "confirm": confirm_url(appointment, options(appointment)[0]),
        "bad link": manage_url(appointment).replace("/my/", "/my/x"),
        "expired link": expired_link(appointment),
        "unsubscribe": unsubscribe_url(patient_id=appointment.patient_id),
    }
    phone.watch.expect(400, "/my/x")
    phone.watch.expect(410, "/my/")
    found = []
    for name, address in pages.items():
        phone.goto(address)
        title = phone.title()
        if not title.startswith(TITLES[name]):
            found.append(f"{name}: title {title!r}")
        if TITLES[name].endswith(" · ") and not title.endswith(appointment.clinic.name):
            found.append(f"{name}: title {title!r} does not name the clinic")
        found += [f"{name}: {problem}" for problem in phone.evaluate(AUDIT_JS)]
    # The expired link says so and what to do (docs/portal.md: "expired link | 410 "This link has expired"").
    response = phone.goto(pages["expired link"])
    assert response.status == 410
    assert phone.get_by_role("heading", level=1).inner_text() == "This link has expired"
    text = phone.locator("main").inner_text()
    assert "call the clinic" in text and "The phone number is in the messages we sent you." in text
    # The unsubscribe page: one button, and the one page after it.
    phone.goto(pages["unsubscribe"])
    # The form posts to its own address: wait for the page after it, or the audit may run while it is replaced.
    with phone.expect_navigation():
        phone.get_by_role("button", name="Unsubscribe").click()
    phone.wait_for_load_state()
    found += [f"unsubscribed: {problem}" for problem in phone.evaluate(AUDIT_JS)]
    assert phone.title().startswith("Unsubscribed · ")
    assert found == []
    assert phone.watch.problems == []


# --- Touch ---------------------------------------------------------------------------------------------------


def test_buttons_times_and_choices_are_at_least_44px_high(phone, appointment):
    """patient.css: "every control is a thumb-sized target"; docs/frontdesk.md: "Buttons, fields and choices are at
    least 44 px high". The footer's map link is left to its own test; links inside a sentence are exempt."""
    found = []
    for address in (manage_url(appointment), url(appointment, "cancel"), url(appointment, "move")):
        phone.goto(address)
        found += [problem for problem in small_targets(phone) if "Find us on the map" not in problem]
    # Inside the window: nothing but the number to press.
    Appointment.objects.filter(pk=appointment.pk).update(
        start_at=timezone.now() + timedelta(hours=3), end_at=timezone.now() + timedelta(hours=4)
    )
    phone.goto(manage_url(appointment))
    call = phone.get_by_role("link", name="Call us on 020 7946 0958")
    assert call.get_attribute("href") == "tel:+442079460958"
    assert call.bounding_box()["height"] >= 44
    found += [problem for problem in small_targets(phone) if "Find us on the map" not in problem]
    assert found == []
    # Once its time has come (docs/portal.md: "any change once the appointment's time has come (with a message that
    # says so)"): still only the number, and the message.
    Appointment.objects.filter(pk=appointment.pk).update(
        start_at=timezone.now() - timedelta(minutes=10), end_at=timezone.now() + timedelta(minutes=50)
    )
    phone.goto(manage_url(appointment))
    assert phone.get_by_role("link", name="Move appointment").count() == 0
    assert phone.get_by_role("link", name="Call us on 020 7946 0958").bounding_box()["height"] >= 44
    assert phone.locator("#call-us").inner_text().strip() != ""
    assert phone.watch.problems == []


def test_the_map_link_in_the_footer_is_thumb_sized(phone, appointment):
    """patient.css: "every control is a thumb-sized target". Failed before: the footer's 'Find us on the map' link was
    20 px high beside the 44 px phone link; .contact__map gives it the phone link's min-height."""
    phone.goto(manage_url(appointment))
    box = phone.get_by_role("link", name="Find us on the map").bounding_box()
    assert box["height"] >= 44, box


# --- The keyboard alone ----------------------------------------------------------------------------------------


def test_keyboard_only_a_patient_opens_another_day_and_moves_the_appointment(phone, appointment):
    """Every control is reached with Tab in the order it is seen, with "a dark ring with a yellow halo" visible at
    every stop; a closed day opens with Enter, a time is chosen with Space, the move is confirmed with Enter."""
    second_day = options(appointment)
    days = sorted({slot.start_at.astimezone(appointment.clinic.tz).date() for slot in second_day})
    target = next(slot for slot in second_day if slot.start_at.astimezone(appointment.clinic.tz).date() == days[1])

    phone.goto(manage_url(appointment))
    stops = tab_until(phone, "a.contact__phone")  # through the whole page, to the footer
    assert unseen(stops) == []
    in_main = [stop for stop in stops if stop["inMain"]]
    assert [stop["top"] for stop in in_main] == sorted(stop["top"] for stop in in_main), (
        "Tab order is not the order seen"
    )
    assert [stop["what"] for stop in in_main][:2] == ['a "Move appointment"', 'a "Cancel appointment"']

    phone.goto(manage_url(appointment))
    tab_until(phone, "a.button[href$='/move/']")
    phone.keyboard.press("Enter")
    phone.wait_for_url("**/move/")
    closed_day = phone.locator("details.day").nth(1)
    assert closed_day.get_attribute("open") is None
    unseen_stops = unseen(tab_until(phone, "details.day:nth-of-type(2) > summary", limit=80))
    phone.keyboard.press("Enter")
    assert closed_day.get_attribute("open") == ""
    wanted = f"button[value='{slot_key(target.start_at, target.practitioner_id)}']"
    unseen_stops += unseen(tab_until(phone, wanted, limit=80))
    phone.keyboard.press(" ")
    phone.wait_for_url("**/move/confirm/**")
    assert phone.get_by_role("heading", level=1).inner_text() == "Move your appointment?"
    unseen_stops += unseen(tab_until(phone, "button[type=submit]"))
    phone.keyboard.press("Enter")
    phone.wait_for_selector(".notice--done")
    assert unseen_stops == []
    assert "Done: your appointment is now on" in phone.locator(".notice--done").inner_text()
    assert Appointment.objects.get(pk=appointment.pk).start_at == target.start_at
    assert phone.watch.problems == []


def test_keyboard_only_a_patient_mutes_care_texts_then_cancels_with_a_note(phone, appointment):
    """Checkboxes toggle with Space, the form saves with Enter; Cancel asks first, the note is typed, Enter cancels."""
    phone.goto(manage_url(appointment))
    unseen_stops = unseen(tab_until(phone, "input[name=care]"))
    phone.keyboard.press(" ")
    assert not phone.locator("input[name=care]").is_checked()
    unseen_stops += unseen(tab_until(phone, "#preferences button[type=submit]"))
    phone.keyboard.press("Enter")
    phone.wait_for_selector(".notice--done")
    assert "Your message choices are saved." in phone.locator(".notice--done").inner_text()
    assert Patient.objects.get(pk=appointment.patient_id).muted_topics == [MessageTopic.CARE]

    phone.goto(manage_url(appointment))
    unseen_stops += unseen(tab_until(phone, "a.button[href$='/cancel/']"))
    phone.keyboard.press("Enter")
    phone.wait_for_url("**/cancel/")
    unseen_stops += unseen(tab_until(phone, "textarea"))
    phone.keyboard.type("Away with work that week")
    unseen_stops += unseen(tab_until(phone, "button.button--danger"))
    phone.keyboard.press("Enter")
    phone.wait_for_selector(".notice--done")
    assert unseen_stops == []
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CANCELLED
    note = AuditEvent.objects.get(appointment=appointment, action=AuditAction.CANCELLED)
    assert "Away with work that week" in str(note.reason)
    assert phone.watch.problems == []


# --- Errors ------------------------------------------------------------------------------------------------------


def refuse_texts_without_the_tick(phone, appointment) -> None:
    phone.goto(manage_url(appointment))
    phone.get_by_label("Text messages (SMS)").uncheck()
    phone.get_by_role("button", name="Save my choices").click()
    phone.wait_for_selector(".notice--done")
    phone.get_by_label("Text messages (SMS)").check()
    phone.watch.expect(400, "/preferences/")
    phone.get_by_role("button", name="Save my choices").click()
    phone.wait_for_selector(".field-error")


DESCRIBED_JS = (
    "f => (f.getAttribute('aria-describedby') || '').split(/\\s+/).filter(Boolean)"
    ".map(id => document.getElementById(id)).filter(Boolean).map(e => e.innerText).join(' ')"
)


def test_a_refused_consent_box_is_described_by_its_error(phone, appointment):
    """docs/frontdesk.md, "Accessibility": "its help text and error are tied to it with aria-describedby". Failed
    before: the box's aria-describedby named #id_sms_consent_error (Django 5.2 adds it) but the error's id was
    'sms-consent-error'; every field's error is now drawn by portal/_field_error.html with the id Django names."""
    refuse_texts_without_the_tick(phone, appointment)
    assert phone.locator(".field-error").inner_text() in phone.locator("input[name=sms_consent]").evaluate(DESCRIBED_JS)
    assert phone.evaluate(AUDIT_JS) == []  # no aria-describedby on the page points at a missing id


def test_a_refused_cancel_note_is_described_by_its_error(phone, appointment):
    """The same for the cancel page's note (over 500 characters): failed before, its error had no id at all."""
    phone.goto(url(appointment, "cancel"))
    phone.locator("textarea").evaluate("t => { t.removeAttribute('maxlength'); t.value = 'x'.repeat(501); }")
    phone.watch.expect(400, "/cancel/")
    phone.get_by_role("button", name="Yes, cancel it").click()
    error = phone.locator(".field-error")
    assert "at most 500 characters" in error.inner_text()
    assert error.inner_text() in phone.locator("textarea").evaluate(DESCRIBED_JS)
    assert phone.evaluate("() => document.activeElement.name") == "reason"  # the page opens on the note
    assert phone.evaluate(AUDIT_JS) == []
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CONFIRMED
    assert phone.watch.problems == []


def test_after_a_refused_save_the_focus_is_on_the_field_in_error(phone, appointment):
    """Failed before: the focus was on the page itself after a refused save (reloaded, so its role=alert was not
    announced either). Now the first field in error is rendered with `autofocus` (portal.forms.FocusOnError, no
    script) and the form's action has no #fragment (a page opened at one skips autofocus); the box is described by
    its error, so the reason is read out with it."""
    refuse_texts_without_the_tick(phone, appointment)
    assert phone.evaluate("() => document.activeElement.name") == "sms_consent"
    assert phone.locator("input[name=sms_consent]").evaluate(
        "f => { const r = f.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    )


# --- The clinic's time, whatever the phone's zone -----------------------------------------------------------------


def test_times_are_the_clinics_with_its_zone_named_on_a_phone_set_to_another_zone(
    browser, live_server, catalogue, settings
):
    """docs/portal.md: "date and time in the clinic's zone with the zone named ("10:00–11:00 London time (GMT)")";
    the move page's times and the confirm step's from → to are the clinic's too. A New York clinic, seen from a
    phone set to Tokyo time."""
    appointment = make_world(settings, live_server, zone="America/New_York", place="New York")
    tz = appointment.clinic.tz
    start = appointment.start_at.astimezone(tz)
    abbreviation = start.tzname()  # EST or EDT, whichever holds on the day
    context, tab, watch = open_tab(browser, zone="Asia/Tokyo")
    try:
        tab.goto(manage_url(appointment))
        assert tab.locator(".when__time").inner_text() == f"10:00–11:00 New York time ({abbreviation})"
        assert f"{start:%A} {start.day} {start:%B %Y}" == tab.locator(".when__date").inner_text()
        assert "New York time" in tab.locator("main p.hint").first.inner_text()  # "You can move or cancel it until …"
        slot = options(appointment)[0]
        local = slot.start_at.astimezone(tz)
        tab.goto(url(appointment, "move"))
        assert "All times are New York time." in tab.locator("main").inner_text()
        first = tab.locator("details.day").first
        assert f"{local:%A} {local.day} {local:%B}" in first.locator("summary").inner_text()
        assert first.locator("button.slot .slot__time").first.inner_text() == f"{local:%H:%M}"
        tab.goto(confirm_url(appointment, slot))
        assert f"{local:%H:%M}–" in tab.locator("dd strong").inner_text()
        assert f"New York time ({local.tzname()})" in tab.locator("main").inner_text()
        tab.get_by_role("button", name="Yes, move it").click()
        tab.wait_for_selector(".notice--done")
        assert f"at {local:%H:%M} New York time ({local.tzname()})." in tab.locator(".notice--done").inner_text()
        assert watch.problems == []
    finally:
        context.close()


# --- A double tap, and the Back button ----------------------------------------------------------------------------


def second_tab(phone, address: str):
    """The same page already open in another tab of the same phone (the link opened from the SMS and the e-mail)."""
    tab = phone.context.new_page()
    tab.watch = Watch(tab)
    tab.goto(address)
    return tab


def test_a_double_tap_on_yes_cancel_it_cancels_once_and_back_repeats_nothing(phone, appointment):
    """docs/portal.md: "Every POST ... answers with a 303 to a page (a reload repeats nothing)"; "cancelled | 409, the
    appointment page with the message". A double tap (Chromium sends it once) and the same question answered again in
    a second tab are one cancellation; Back to the question after cancelling says plainly it is already cancelled.
    Chromium usually sends a double tap once; on a busy machine (CI, once) it sends it twice, and the second answer
    is the plain refusal of cancelling twice (tests/portal: 'cancelling twice is a clear refusal')."""
    other = second_tab(phone, url(appointment, "cancel"))
    phone.goto(url(appointment, "cancel"))
    phone.watch.expect(409, "/cancel/")  # a double tap sent twice: its second post is the refusal
    phone.get_by_role("button", name="Yes, cancel it").dblclick()
    phone.wait_for_selector(".notice--done, [role=alert]")
    phone.wait_for_load_state("networkidle")
    if len(phone.watch.posts) == 1:
        assert "Your appointment is cancelled." in phone.locator(".notice--done").inner_text()
    else:
        # Sent twice: the page the phone ends on is whichever answer the browser showed last (on a slow machine, CI
        # of 5 December, the first's): either says the truth, and the cancellation is one (asserted below).
        assert len(phone.watch.posts) == 2, phone.watch.posts
        shown = phone.locator(".notice--done, [role=alert]").first.inner_text()
        assert "Your appointment is cancelled." in shown or "This appointment is already cancelled." in shown
    other.watch.expect(409, "/cancel/")
    other.get_by_role("button", name="Yes, cancel it").click()
    assert "This appointment is already cancelled." in other.get_by_role("alert").inner_text()
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CANCELLED
    assert audits(appointment, AuditAction.CANCELLED) == 1
    posts = len(phone.watch.posts)
    assert len(other.watch.posts) == 1

    phone.go_back()
    assert len(phone.watch.posts) == posts  # nothing sent again
    assert "This appointment is already cancelled." in phone.get_by_role("alert").inner_text()
    assert phone.get_by_role("button", name="Yes, cancel it").count() == 0
    phone.reload()
    assert len(phone.watch.posts) == posts
    assert audits(appointment, AuditAction.CANCELLED) == 1
    assert phone.watch.problems == [] and other.watch.problems == []


def test_a_double_tap_on_yes_move_it_moves_once_and_back_repeats_nothing(phone, appointment):
    """docs/portal.md: "A move sent twice (a double tap, a resent form) is one move: the second finds the booking where
    it asks it to be and changes, records and announces nothing"; the POST answers 303, so Back and a reload send
    nothing again."""
    slot = options(appointment)[-1]
    other = second_tab(phone, confirm_url(appointment, slot))
    phone.goto(confirm_url(appointment, slot))
    phone.get_by_role("button", name="Yes, move it").dblclick()
    phone.wait_for_selector(".notice--done")
    phone.wait_for_load_state("networkidle")
    other.get_by_role("button", name="Yes, move it").click()
    assert "Done: your appointment is now on" in other.locator(".notice--done").inner_text()
    assert Appointment.objects.get(pk=appointment.pk).start_at == slot.start_at
    assert audits(appointment, AuditAction.RESCHEDULED) == 1
    posts = len(phone.watch.posts)
    assert posts >= 1 and len(other.watch.posts) == 1
    phone.reload()
    phone.go_back()
    phone.go_back()
    assert len(phone.watch.posts) == posts
    assert audits(appointment, AuditAction.RESCHEDULED) == 1
    assert phone.watch.problems == [] and other.watch.problems == []


def test_back_to_the_confirm_step_after_a_move_does_not_offer_the_same_move_again(phone, appointment):
    """Failed before: Back after a move showed 'Move your appointment? From <new time> To <the same time>' with 'Yes,
    move it'. Now (portal.views._already_there) it says the appointment is already at this time, with no button."""
    slot = options(appointment)[-1]
    phone.goto(confirm_url(appointment, slot))
    phone.get_by_role("button", name="Yes, move it").click()
    phone.wait_for_selector(".notice--done")
    phone.go_back()
    assert phone.get_by_role("heading", level=1).inner_text() == "Move your appointment?"
    assert phone.get_by_role("button", name="Yes, move it").count() == 0, phone.locator(".card").inner_text()
    assert "Your appointment is already at this time" in phone.locator("main").inner_text()
    assert phone.get_by_role("link", name="Choose another time").count() == 1
    assert audits(appointment, AuditAction.RESCHEDULED) == 1
    assert phone.watch.problems == []


# --- Links whose appointment is over, cancelled or expired --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "label", "sentence"),
    [
        (AppointmentStatus.CANCELLED, "Cancelled", "This appointment is cancelled."),
        (AppointmentStatus.COMPLETED, "Completed", "This appointment has taken place."),
        (AppointmentStatus.NO_SHOW, "Missed", "This appointment was missed."),
    ],
)
def test_an_appointment_that_is_over_says_so_in_a_sentence_with_what_to_do(phone, appointment, status, label, sentence):
    """Failed before: a link to a visit the clinic cancelled showed only a grey 'Cancelled' label, no sentence saying
    so and what to do, the phone only in the footer. Now manage.html says it and how to book again, with the
    tap-to-call button (and the same for a completed or missed visit)."""
    Appointment.objects.filter(pk=appointment.pk).update(status=status)
    phone.goto(manage_url(appointment))
    assert phone.locator(".status").inner_text() == label
    main = phone.locator("main")
    note = phone.locator("#call-us").inner_text()
    assert sentence in note and "To book again, please call us on 020 7946 0958" in note, main.inner_text()
    assert main.locator("a[href='tel:+442079460958']").count() == 1
    assert phone.get_by_role("link", name="Call us on 020 7946 0958").bounding_box()["height"] >= 44
    assert phone.watch.problems == []


# --- The calendar link ---------------------------------------------------------------------------------------


def test_the_calendar_link_is_a_link_the_phone_can_open(phone, appointment):
    """docs/portal.md, "A calendar link": a private iCalendar feed "to subscribe to from a phone's calendar". Failed
    before: the address was plain text inside the message, to long-press, select and paste. Now the message has an
    "Add to my calendar" webcal:// link (the phone's calendar subscribes) and the address itself as a link, still in
    full for copying (the live server's base is http; tests/portal/test_views.py checks the https one)."""
    phone.goto(manage_url(appointment))
    phone.get_by_role("button", name="Get a calendar link").click()
    notice = phone.locator(".notice--done")
    address = notice.locator("a[href^='http'][href*='/reminders/calendar/']")
    assert address.count() == 1, notice.inner_html()
    assert address.inner_text() == address.get_attribute("href") and address.inner_text() in notice.inner_text()
    add = notice.get_by_role("link", name="Add to my calendar")
    assert add.get_attribute("href") == "webcal://" + address.inner_text().partition("://")[2]
    assert add.bounding_box()["height"] >= 44
    assert phone.request.get(address.inner_text()).headers["content-type"].startswith("text/calendar")
    assert layout_problems(phone) == []
    assert phone.watch.problems == []


# --- Without JavaScript -----------------------------------------------------------------------------------------


def test_with_javascript_off_a_patient_moves_saves_choices_gets_a_calendar_link_and_cancels(browser, appointment):
    """The pages are plain HTML forms (docs/portal.md: "Under the Content-Security-Policy ... the layout is a static
    stylesheet"): every step works with JavaScript switched off, including opening another day's times."""
    context, tab, watch = open_tab(browser, js=False)
    try:
        tab.goto(manage_url(appointment))
        tab.get_by_role("link", name="Move appointment").click()
        tab.locator("details.day").nth(1).locator("summary").click()
        choice = tab.locator("details.day").nth(1).locator("button.slot").first
        chosen = choice.get_attribute("value")
        choice.click()
        tab.get_by_role("button", name="Yes, move it").click()
        assert "Done: your appointment is now on" in tab.locator(".notice--done").inner_text()
        moved = Appointment.objects.get(pk=appointment.pk)
        assert slot_key(moved.start_at, str(moved.practitioner_id)) == chosen

        tab.get_by_label("Appointment reminders").uncheck()
        tab.get_by_role("button", name="Save my choices").click()
        assert "Your message choices are saved." in tab.locator(".notice--done").inner_text()
        assert Patient.objects.get(pk=appointment.patient_id).muted_topics == [MessageTopic.REMINDERS]
        tab.get_by_role("button", name="Get a calendar link").click()
        assert "/reminders/calendar/" in tab.locator(".notice--done").inner_text()

        tab.get_by_role("link", name="Cancel appointment").click()
        tab.get_by_role("button", name="Yes, cancel it").click()
        assert "Your appointment is cancelled." in tab.locator(".notice--done").inner_text()
        assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CANCELLED
        assert watch.problems == []
    finally:
        context.close()


# --- The console --------------------------------------------------------------------------------------------------


def test_every_patient_page_names_an_icon_that_exists(phone, appointment):
    """Chromium asks every page for its icon (the one it names, or /favicon.ico); a 404 there is logged in the
    console as "Failed to load resource" on every patient page. Failed before: reminders/_page.html named no icon;
    it now names reminders/static/reminders/favicon.svg, on every page that shares it (the unsubscribe and bad-link
    pages too)."""
    not_found = []  # the icon's 404 has no response event in Playwright: only the console tells
    phone.on("console", lambda m: "status of 404" in m.text and not_found.append(f"{phone.url}: {m.text}"))
    phone.watch.expect(400, "/my/x")
    for address in (
        manage_url(appointment),
        url(appointment, "cancel"),
        url(appointment, "move"),
        confirm_url(appointment, options(appointment)[0]),
        unsubscribe_url(patient_id=appointment.patient_id),
        manage_url(appointment).replace("/my/", "/my/x"),
    ):
        phone.goto(address)
        icon = phone.evaluate(
            "() => (document.querySelector('link[rel~=icon]') || {}).href || new URL('/favicon.ico', location).href"
        )
        assert icon.endswith(".svg"), (address, icon)
        assert phone.request.get(icon).status == 200, icon
    phone.wait_for_timeout(300)  # the icon is fetched after the page's load event
    assert not_found == []
    assert phone.watch.problems == []
