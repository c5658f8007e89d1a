"""Accessibility review (WCAG 2.2 AA basics) of the pages receptionists and patients live in: the front desk (patient
search, the patient's page, the booking page and its confirm step, the calendar's day and week, the schedule, the
appointment page's cancel form, the move page) and the patient's pages (`/my/<token>/`: the appointment, cancel, move).

Read: docs/frontdesk.md ("Pages", "Booking: the live check", "The calendar", "Accessibility": "Every field has a
<label> ..., its help text and error are tied to it with aria-describedby, and a field with an error gets aria-invalid";
"Statuses are always words with an icon, colour only adds to them"; "tables with header cells"; "After a refused form
... the page starts with an error summary"), docs/portal.md, the templates (frontdesk/templates, portal/templates,
reminders/_page.html), frontdesk/forms.py (FrontdeskForm), portal/forms.py (FocusOnError), frontdesk/static/frontdesk
(fields.js, frontdesk.css), tests/browser.py and tests/qa/test_desk_browser_probe.py.

Server-side pages are read with Django's test client, the clock stopped at the suite's Monday (2 March 2026, 09:00
London) and parsed with the standard library's html.parser: <html lang>, one <h1>, a <title> of each page's own, an
accessible name for every input, select and textarea (a <label for>, a wrapping label, aria-label or
aria-labelledby; also after a refused submission), errors tied to their field (aria-invalid, aria-describedby naming
a non-empty error), announced (role=alert, or the page marked as answering a POST so fields.js builds the focused
summary; the patient's pages: role=alert and autofocus on the field), buttons and links with words, no positive
tabindex, no id twice, calendar tables with header cells (th scope), verdicts and statuses in words, and what an action
did said in a role=status region. In Debian's chromium (Playwright, pytest-django's live server, marked `browser`: a
missing chromium skips, or fails under REQUIRE_SERVICES=1, as tests/conftest.py's `browser` fixture does): booking from
the patient's page keyboard only, a refused cancel corrected keyboard only through the error summary, and a patient
cancelling keyboard only.

Found:
- holds: every page read has <html lang="en-GB">, one h1, a title naming the page and the clinic, a name for every
  form control, words on every button and link, no positive tabindex, no id twice.
- holds: a refused booking, new patient, move or cancel marks each field in error (aria-invalid, aria-describedby
  naming its error) and the page is marked for the focused error summary; the cancel's disclosure opens on its error.
- holds: the patient's refused cancel and preferences say the error in role=alert, tied to the field, which autofocuses.
- holds: the booking check says its verdict and each rule's weight in words ("Not possible", "Not allowed",
  "Caution", "Needs clinician clearance", "held pending clearance"); icons are aria-hidden, colour only adds.
- holds: the calendar's day and week tables have th scope=col for each column and th scope=row for each quarter hour;
  a card's status is a word; an empty cell's link is named "Book <day> <time> with <practitioner>".
- holds: booked, cancelled (desk and patient) and moved (patient) are said in a role=status region.
- holds (chromium): booking from the patient's page, a cancel corrected through the error summary and a patient's
  cancel are done keyboard only, the focus always visible on the page's own controls.
- DEFECT, MENDED: the week view marked today's column by a pale blue background only (`.cal-head--today`, frontdesk.css):
  no word and no aria-current="date", so a screen reader, and anyone who cannot tell #eef4ff from white, is not told
  which column is today (WCAG 1.4.1, 1.3.1). It now says "Today" and has aria-current="date".
- QUESTION: a quarter hour outside the practitioner's working hours differs from one inside only by a grey
  (#f1f1f1) against white background, about 1.1:1 (docs/frontdesk.md says "white; outside is grey"); a screen reader
  hears "outside working hours", a sighted receptionist only a shade (WCAG 1.4.1). A pattern or word wanted?
- QUESTION, DECIDED and MENDED: the calendar's title was "Calendar · <clinic>" for every day and for the week (the schedule's likewise),
  so several tabs, or a screen reader's window list, cannot be told apart (WCAG 2.4.2 asks a title that describes
  the page's topic; the h1 names the day). The title now names the day or week shown, as the h1 does.
- Minor, mended: the new-patient form's hidden `confirm_new` and `shown` pointed aria-describedby at no element.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from clinic.models import (
    Appointment,
    AppointmentStatus,
    ConditionStatus,
    HistorySource,
    PatientCondition,
    ProcedureRecord,
    StaffRole,
)
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import make_staff
from tests.frontdesk.helpers import london, page, sign_in  # noqa: F401 (fixtures)
from tests.qa.helpers import NOW, book, ldn, org_rule, portal_page, staff_client

server = pytest.mark.django_db

# --- Reading a page as assistive technology does --------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CONTROLS = ("input", "select", "textarea")


class Node:
    def __init__(self, tag: str, attrs, parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children: list[Node | str] = []

    def text(self, *, named: bool = False) -> str:
        """The words inside; `named`: as an accessible name reads them (aria-hidden parts left out)."""
        out = []
        for child in self.children:
            if isinstance(child, str):
                out.append(child)
            elif named and child.attrs.get("aria-hidden") == "true":
                continue
            elif child.tag == "img":
                out.append(child.attrs.get("alt") or "")
            else:
                out.append(child.text(named=named))
        return " ".join(" ".join(out).split())

    def walk(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def __repr__(self) -> str:
        return f"<{self.tag} id={self.attrs.get('id', '')!r} name={self.attrs.get('name', '')!r}>"


class Page(HTMLParser):
    """A page's element tree (html.parser: no lxml in the venv) and the checks this review makes of it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", [], None)
        self._open = self.root
        self.feed(html)
        self.close()
        self.all = list(self.root.walk())
        self.by_id: dict[str, list[Node]] = {}
        for node in self.all:
            if "id" in node.attrs:
                self.by_id.setdefault(node.attrs["id"], []).append(node)

    @classmethod
    def of(cls, response) -> Page:
        return cls(response.content.decode())

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self._open)
        self._open.children.append(node)
        if tag not in VOID:
            self._open = node

    def handle_startendtag(self, tag, attrs):
        self._open.children.append(Node(tag, attrs, self._open))

    def handle_endtag(self, tag):
        node = self._open
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self._open = node.parent

    def handle_data(self, data):
        self._open.children.append(data)

    def find(self, tag: str) -> list[Node]:
        return [node for node in self.all if node.tag == tag]

    def by_class(self, name: str) -> list[Node]:
        return [node for node in self.all if name in node.classes()]

    def element(self, id_: str) -> Node | None:
        nodes = self.by_id.get(id_)
        return nodes[0] if nodes else None

    @property
    def title(self) -> str:
        titles = self.find("title")
        return titles[0].text() if titles else ""

    def controls(self) -> list[Node]:
        return [n for n in self.all if n.tag in CONTROLS and n.attrs.get("type") not in ("hidden", "submit", "button")]

    def name_of(self, el: Node) -> str:
        """The accessible name, in the order the accessible-name computation takes its sources."""
        attrs = el.attrs
        if attrs.get("aria-labelledby"):
            return " ".join(self.element(i).text() for i in attrs["aria-labelledby"].split() if self.element(i))
        if (attrs.get("aria-label") or "").strip():
            return attrs["aria-label"].strip()
        if el.tag in CONTROLS:
            if el.attrs.get("type") in ("submit", "button"):
                return attrs.get("value", "")
            labels = [lab for lab in self.find("label") if attrs.get("id") and lab.attrs.get("for") == attrs["id"]]
            labels += [a for a in el.ancestors() if a.tag == "label" and a not in labels]
            return " ".join(lab.text(named=True) for lab in labels) or attrs.get("title", "")
        return el.text(named=True) or attrs.get("title", "")

    def described_by(self, el: Node) -> str:
        return " ".join(
            self.element(i).text() for i in (el.attrs.get("aria-describedby") or "").split() if self.element(i)
        )

    def problems(self) -> list[str]:
        """What the basic checks find wrong on the page (empty: none)."""
        out = []
        html = self.find("html")
        if not html or not html[0].attrs.get("lang"):
            out.append("no <html lang>")
        if len(self.find("h1")) != 1:
            out.append(f"{len(self.find('h1'))} <h1>")
        if not self.title:
            out.append("no <title>")
        for el in self.all:
            tabindex = el.attrs.get("tabindex") or ""
            if tabindex.isdigit() and int(tabindex) > 0:
                out.append(f"{el!r} tabindex={tabindex}")
            for attr in ("aria-describedby", "aria-labelledby"):  # hidden inputs too: checkers flag them
                for ref in (el.attrs.get(attr) or "").split():
                    if ref not in self.by_id:
                        out.append(f"{el!r} {attr} names missing #{ref}")
            if (el.tag == "button" or (el.tag == "a" and "href" in el.attrs)) and not self.name_of(el):
                out.append(f"{el!r} has no words")
        out += [f"{c!r} has no accessible name" for c in self.controls() if not self.name_of(c)]
        out += [f"id {i!r} used {len(nodes)} times" for i, nodes in self.by_id.items() if len(nodes) > 1]
        for table in self.find("table"):
            if table.attrs.get("role") in ("grid", "treegrid", "presentation"):
                continue
            ths = [n for n in table.walk() if n.tag == "th"]
            if not ths:
                out.append(f"table {table!r} has no header cells")
            out += [f"th {th.text()!r} has no scope" for th in ths if th.attrs.get("scope") not in ("col", "row")]
        return out

    def region_texts(self, *roles: str) -> list[str]:
        return [n.text() for n in self.all if n.attrs.get("role") in roles]


def invalid_fields(doc: Page) -> dict[str, str]:
    """Each field whose `<id>-error` element has words: its id and the words (frontdesk/_field.html)."""
    found = {}
    for node in doc.by_class("field-error"):
        id_ = node.attrs.get("id", "")
        if id_.endswith("-error") and node.text():
            found[id_.removesuffix("-error")] = node.text()
    return found


def assert_errors_tied(doc: Page, expected: set[str]) -> None:
    """Every field in `expected` is in error, named, marked aria-invalid and described by its error's words."""
    errors = invalid_fields(doc)
    assert expected <= set(errors), (expected, errors)
    for id_, words in errors.items():
        field = doc.element(id_)
        assert field is not None, f"no field #{id_} for its error"
        assert doc.name_of(field), f"#{id_} lost its name in the error state"
        assert field.attrs.get("aria-invalid") == "true", f"#{id_} in error is not aria-invalid"
        assert f"{id_}-error" in (field.attrs.get("aria-describedby") or "").split(), f"#{id_} not tied to its error"
        assert words in doc.described_by(field)


# --- The world ----------------------------------------------------------------------------------------------------


@pytest.fixture
def desk(catalogue, clock):
    """A London clinic, two practitioners working every day 09:00-18:00, Olivia (Botox five days ago: microneedling
    is not allowed for two weeks, domain brief rule 001) with a filler booked on Wednesday, and Grace (eczema in her
    history: microneedling needs a clinician's clearance) with a microneedling pending clearance on Wednesday."""
    clinic = ClinicFactory(code="a11y", name="Access Clinic", timezone="Europe/London")
    hart = PractitionerFactory(clinic=clinic, name="Dr Amelia Hart", hours=range(7))
    shah = PractitionerFactory(clinic=clinic, name="Priya Shah", hours=range(7))
    olivia = PatientFactory(
        clinic=clinic, first_name="Olivia", last_name="Bennett", email="olivia@example.com", phone="+447911123456"
    )
    ProcedureRecord.objects.create(
        patient=olivia,
        procedure_id="botox",
        area_id="face",
        performed_at=NOW - timedelta(days=5),
        source=HistorySource.CLINIC,
    )
    grace = PatientFactory(clinic=clinic, first_name="Grace", last_name="Turner", email="grace@example.com")
    PatientCondition.objects.create(patient=grace, condition_id="eczema", status=ConditionStatus.HISTORY)
    filler = book(olivia, ldn(2026, 3, 4, 10), NOW, code="filler", area_code="face", practitioner_id=hart.pk)
    pending = book(grace, ldn(2026, 3, 4, 11), NOW, code="microneedling", area_code="face", practitioner_id=shah.pk)
    assert pending.status == AppointmentStatus.PENDING_CLEARANCE
    reception = staff_client(clinic, StaffRole.RECEPTIONIST, "a11y-reception")
    return clinic, hart, olivia, grace, filler, pending, reception


def desk_pages(clinic, hart, olivia, filler) -> dict[str, str]:
    code, p, a = clinic.code, olivia.pk, filler.pk
    return {
        "Today": f"/clinic/{code}/",
        "patient search": f"/clinic/{code}/patients/?q=Bennett",
        "patient": f"/clinic/{code}/patients/{p}/",
        "booking": f"/clinic/{code}/patients/{p}/book/",
        "booking, checked": f"/clinic/{code}/patients/{p}/book/?procedure=microneedling&area=face&date=2026-03-05&time=11:00",
        "appointment": f"/clinic/{code}/appointments/{a}/",
        "move": f"/clinic/{code}/appointments/{a}/reschedule/?date=2026-03-06&time=12:00",
        "calendar day": f"/clinic/{code}/calendar/?date=2026-03-04",
        "calendar week": f"/clinic/{code}/calendar/?date=2026-03-04&view=week",
        "schedule day": f"/clinic/{code}/schedule/?date=2026-03-04",
        "schedule week": f"/clinic/{code}/schedule/?date=2026-03-04&view=week",
        "book from a cell": f"/clinic/{code}/calendar/book/?practitioner={hart.pk}&start_at=2026-03-04T12:00:00%2B00:00&q=Bennett",
        "new patient": f"/clinic/{code}/patients/new/",
        "medical history": f"/clinic/{code}/patients/{p}/history/",
    }


# --- Every page: language, heading, title, names, tab order, tables --------------------------------------------


@server
def test_every_page_has_its_language_one_h1_a_title_and_a_name_for_every_control(desk, client):
    """WCAG 3.1.1 (<html lang>), 2.4.2 (title), 1.3.1 (one h1, tables with header cells), 4.1.2 and 3.3.2 (each
    control named), 2.4.4 (links and buttons with words), 2.4.3 (no positive tabindex). docs/frontdesk.md,
    "Accessibility": "Every field has a <label> ... one h1 per page, and tables with header cells"."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    found = {}
    for name, url in desk_pages(clinic, hart, olivia, filler).items():
        response = reception.get(url)
        assert response.status_code == 200, (name, response.status_code)
        found[name] = Page.of(response).problems()
    for name in ("manage", "cancel", "move"):
        response = client.get(portal_page(filler, name))
        assert response.status_code == 200, (name, response.status_code)
        found[f"patient's {name}"] = Page.of(response).problems()
    assert {name: problems for name, problems in found.items() if problems} == {}


@server
def test_each_kind_of_page_has_a_title_of_its_own_naming_the_clinic(desk, client):
    """WCAG 2.4.2: a title that says what the page is, so tabs and a screen reader's window list tell pages apart."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    titles = {name: Page.of(reception.get(url)).title for name, url in desk_pages(clinic, hart, olivia, filler).items()}
    titles |= {
        f"patient's {n}": Page.of(client.get(portal_page(filler, n))).title for n in ("manage", "cancel", "move")
    }
    assert all(title.endswith("· Access Clinic") for title in titles.values()), titles
    same_kind = [("booking", "booking, checked"), ("calendar day", "calendar week"), ("schedule day", "schedule week")]
    kinds = {titles[name] for name in titles if name not in {b for _, b in same_kind}}
    assert len(kinds) == len(titles) - len(same_kind), titles
    assert "Olivia Bennett" in titles["patient"] and "Olivia Bennett" in titles["booking"]
    assert titles["patient"] != titles["booking"] != titles["medical history"]


@server
def test_the_calendar_title_names_the_day_or_week_shown(desk):
    clinic, hart, olivia, grace, filler, pending, reception = desk
    day = Page.of(reception.get(f"/clinic/{clinic.code}/calendar/?date=2026-03-04")).title
    other_day = Page.of(reception.get(f"/clinic/{clinic.code}/calendar/?date=2026-03-05")).title
    week = Page.of(reception.get(f"/clinic/{clinic.code}/calendar/?date=2026-03-04&view=week")).title
    assert len({day, other_day, week}) == 3, (day, other_day, week)
    assert "4" in day and "5" in other_day


# --- Errors after a refused submission ----------------------------------------------------------------------------


@server
def test_a_refused_booking_marks_each_field_ties_its_error_and_asks_for_the_summary(desk):
    """docs/frontdesk.md, "Accessibility": "its help text and error are tied to it with aria-describedby, and a field
    with an error gets aria-invalid"; after a refused form "the page starts with an error summary ... the focus moves
    to the summary" (fields.js builds it on a page marked data-answer-to-post). WCAG 3.3.1, 4.1.2."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    response = reception.post(
        f"/clinic/{clinic.code}/patients/{olivia.pk}/book/confirm/",
        {"procedure": "", "area": "face", "practitioner": "", "date": "2026-02-20", "time": "10:00"},
    )
    assert response.status_code == 400
    doc = Page.of(response)
    assert doc.problems() == []
    assert "data-answer-to-post" in doc.find("body")[0].attrs
    assert_errors_tied(doc, {"id_procedure", "id_date"})
    # The date's help is still read with it, and with the error.
    date = doc.element("id_date")
    assert date.attrs["aria-describedby"].split()[0] == "when-help"


@server
def test_refused_new_patient_and_move_forms_mark_and_tie_each_error(desk):
    """The same promise on the new-patient form (every required field left empty, an e-mail that is none) and the
    move page (a day that has passed)."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    response = reception.post(f"/clinic/{clinic.code}/patients/new/", {"email": "not an address"})
    assert response.status_code in (200, 400)
    doc = Page.of(response)
    assert doc.problems() == []
    assert "data-answer-to-post" in doc.find("body")[0].attrs
    assert_errors_tied(doc, {"id_first_name", "id_last_name", "id_email"})

    response = reception.post(
        f"/clinic/{clinic.code}/appointments/{filler.pk}/reschedule/",
        {"date": "2026-02-20", "time": "10:00", "practitioner": "", "reason": ""},
    )
    assert response.status_code == 400
    doc = Page.of(response)
    assert doc.problems() == []
    assert "data-answer-to-post" in doc.find("body")[0].attrs
    assert_errors_tied(doc, {"id_date"})


@server
def test_a_refused_cancel_opens_its_disclosure_on_the_error_tied_to_the_reason(desk):
    """docs/frontdesk.md: the cancel's reason "is checked by its form first ... (blank, too long, a control
    character ...): refused, nothing is cleared and the form comes back with why (400)". The form sits in a
    <details>: closed, the field in error and its message would be hidden from everyone."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    response = reception.post(f"/clinic/{clinic.code}/appointments/{filler.pk}/cancel/", {"reason": "Called\x07 in"})
    assert response.status_code == 400
    doc = Page.of(response)
    assert doc.problems() == []
    assert "data-answer-to-post" in doc.find("body")[0].attrs
    [reason] = [c for c in doc.controls() if c.tag == "textarea" and c.attrs.get("name") == "reason"]
    assert_errors_tied(doc, {reason.attrs["id"]})
    assert all("open" in d.attrs for d in reason.ancestors() if d.tag == "details")
    assert Appointment.objects.get(pk=filler.pk).status == AppointmentStatus.CONFIRMED


@server
def test_the_patients_refused_forms_say_why_in_an_alert_tied_to_the_field_that_takes_the_focus(desk, client):
    """docs/portal.md, the patient's pages: a refused cancel note (over 500 characters) and texts switched on
    without the consent box. WCAG 3.3.1 and 4.1.3: the error is in role=alert, the field is described by it and
    marked invalid, and the page opens on it (autofocus, portal.forms.FocusOnError)."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    response = client.post(portal_page(filler, "cancel"), {"reason": "x" * 501})
    assert response.status_code in (200, 400)
    doc = Page.of(response)
    assert doc.problems() == []
    [reason] = [c for c in doc.controls() if c.attrs.get("name") == "reason"]
    assert doc.name_of(reason).startswith("Anything you would like us to know?")
    error = doc.element(f"{reason.attrs['id']}_error")
    assert error is not None and error.attrs.get("role") == "alert" and "500" in error.text()
    assert f"{reason.attrs['id']}_error" in reason.attrs.get("aria-describedby", "").split()
    assert reason.attrs.get("aria-invalid") == "true"
    assert "autofocus" in reason.attrs
    assert Appointment.objects.get(pk=filler.pk).status == AppointmentStatus.CONFIRMED

    manage = Page.of(client.get(portal_page(filler)))
    drawn = {
        n.attrs["name"]: n.attrs.get("value", "on")
        for n in manage.find("input")
        if n.attrs.get("name") and (n.attrs.get("type") != "checkbox" or "checked" in n.attrs)
    }
    response = client.post(portal_page(filler, "preferences"), drawn | {"sms": "on"}, follow=True)
    doc = Page.of(response)
    assert doc.problems() == []
    [consent] = [c for c in doc.controls() if c.attrs.get("name") == "sms_consent"]
    error = doc.element(f"{consent.attrs['id']}_error")
    assert error is not None and error.attrs.get("role") == "alert" and error.text()
    assert f"{consent.attrs['id']}_error" in consent.attrs.get("aria-describedby", "").split()
    assert "autofocus" in consent.attrs


# --- Meaning in words, not colour -------------------------------------------------------------------------------


@server
def test_the_booking_check_says_each_verdict_and_each_rules_weight_in_words(desk):
    """docs/frontdesk.md: "Statuses are always words with an icon, colour only adds to them". WCAG 1.4.1: a block, a
    caution and a clearance differ in their words, not only in red, amber or green; the icons are aria-hidden."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    base = f"/clinic/{clinic.code}/patients"

    def panel(patient, code, day):
        doc = Page.of(reception.get(f"{base}/{patient.pk}/book/?procedure={code}&area=face&date={day}&time=14:00"))
        [check] = [n for n in doc.all if n.attrs.get("id") == "check-panel"]
        assert check.attrs.get("aria-live") == "polite"
        [title] = [n for n in check.walk() if "verdict-box__title" in n.classes()]
        labels = [n.text() for n in check.walk() if "violation__label" in n.classes()]
        icons = [n for n in check.walk() if "verdict-box__icon" in n.classes()]
        assert icons and all(i.attrs.get("aria-hidden") == "true" for i in icons)
        return title.text(named=True), labels

    # Microneedling five days after Botox (and the day after a filler): not allowed (a block).
    verdict, labels = panel(olivia, "microneedling", "2026-03-05")
    assert verdict.startswith("Not possible at") and set(labels) == {"Not allowed"}
    # Microneedling for a history of eczema: possible, held pending a clinician's clearance.
    verdict, labels = panel(grace, "microneedling", "2026-03-09")
    assert verdict.startswith("Possible at") and "held pending clearance" in verdict
    assert "Needs clinician clearance" in labels and set(labels) <= {"Needs clinician clearance", "Caution"}
    # A caution (an organisation's warn-level rule: plasma pen four weeks after Botox): possible, confirmed, and the
    # rule said as a caution.
    org_rule(olivia, "botox", "plasma_pen", 4, "weeks", severity="warn")
    verdict, labels = panel(olivia, "plasma_pen", "2026-03-09")
    assert verdict.startswith("Possible at") and "will be confirmed" in verdict
    assert labels and set(labels) == {"Caution"}


@server
def test_calendar_tables_have_header_cells_for_time_and_column_and_cards_say_their_status(desk):
    """docs/frontdesk.md, "The calendar": "screen readers get header cells for practitioner and time"; a card shows
    "the status in words with its icon"; every empty cell is a link (its name says what it books)."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    for view, columns in (("day", ["Dr Amelia Hart", "Priya Shah"]), ("week", None)):
        doc = Page.of(reception.get(f"/clinic/{clinic.code}/calendar/?date=2026-03-04&view={view}"))
        [table] = [t for t in doc.find("table") if t.attrs.get("id") == "calendar"]
        [head] = [n for n in table.walk() if n.tag == "thead"]
        heads = [n for n in head.walk() if n.tag == "th"]
        assert all(th.attrs.get("scope") == "col" and th.text() for th in heads)
        names = [th.text() for th in heads[1:]]
        if columns:
            assert names == columns
        else:
            assert names[0].startswith("Mon 2 Mar") and len(names) == 7
        rows = [n for n in table.walk() if n.tag == "tr" and n.parent.tag == "tbody"]
        assert len(rows) >= 44  # 08:00 to 19:00 by quarter hours
        for row in rows:
            first = next(c for c in row.children if isinstance(c, Node))
            assert first.tag == "th" and first.attrs.get("scope") == "row" and first.text(), row
        free = [a for a in table.walk() if "cal-free" in a.classes()]
        assert free and all(doc.name_of(a).startswith("Book ") for a in free)
        if view == "week":
            assert all(" Mar " in doc.name_of(a) for a in free)  # the day, as each column is one
    doc = Page.of(reception.get(f"/clinic/{clinic.code}/calendar/?date=2026-03-04"))
    badges = [b.text(named=True) for b in doc.by_class("badge")]
    assert "Confirmed" in badges and "Pending clearance" in badges


@server
def test_the_week_says_which_column_is_today_in_words_or_aria_current(desk):
    clinic, hart, olivia, grace, filler, pending, reception = desk
    doc = Page.of(reception.get(f"/clinic/{clinic.code}/calendar/?date=2026-03-04&view=week"))
    [today] = doc.by_class("cal-head--today")
    assert today.text().startswith("Mon 2 Mar")
    assert today.attrs.get("aria-current") == "date" or "today" in today.text().lower(), today.text()


# --- What an action did, said in a status region --------------------------------------------------------------


@server
def test_booked_and_cancelled_are_said_in_a_status_region(desk, client):
    """WCAG 4.1.3 and the brief: what an action did (booked, cancelled, moved) is said where a screen reader hears it,
    on the desk (base.html's messages) and on the patient's pages (reminders/_page.html)."""
    clinic, hart, olivia, grace, filler, pending, reception = desk
    sam = PatientFactory(clinic=clinic, first_name="Sam", last_name="Clarke", email="sam@example.com")
    response = reception.post(
        f"/clinic/{clinic.code}/patients/{sam.pk}/book/confirm/",
        {"procedure": "filler", "area": "face", "practitioner": str(hart.pk), "date": "2026-03-09", "time": "14:00"},
        follow=True,
    )
    doc = Page.of(response)
    assert any(t.startswith("Booked and confirmed: Dermal filler") for t in doc.region_texts("status", "alert"))
    assert doc.problems() == []
    booked = Appointment.objects.get(patient=sam)

    response = reception.post(
        f"/clinic/{clinic.code}/appointments/{booked.pk}/cancel/", {"reason": "Patient called"}, follow=True
    )
    doc = Page.of(response)
    assert any("ancelled" in t for t in doc.region_texts("status", "alert")), doc.region_texts("status", "alert")
    assert Appointment.objects.get(pk=booked.pk).status == AppointmentStatus.CANCELLED

    # The patient: a move, then a cancel.
    move = Page.of(client.get(portal_page(filler, "move")))
    slot = next(b.attrs["value"] for b in move.find("button") if b.attrs.get("name") == "slot")
    confirm = Page.of(client.get(portal_page(filler, "move_confirm"), {"slot": slot}))
    fields = {n.attrs["name"]: n.attrs.get("value", "") for n in confirm.find("input") if n.attrs.get("name")}
    response = client.post(portal_page(filler, "move_confirm"), fields, follow=True)
    doc = Page.of(response)
    assert any(t.startswith("Done: your appointment is now on") for t in doc.region_texts("status")), doc.title
    moved = Appointment.objects.get(pk=filler.pk)
    cancel = Page.of(client.get(portal_page(moved, "cancel")))
    fields = {n.attrs["name"]: n.attrs.get("value", "") for n in cancel.find("input") if n.attrs.get("name")}
    response = client.post(portal_page(moved, "cancel"), fields | {"reason": ""}, follow=True)
    doc = Page.of(response)
    assert "Your appointment is cancelled." in " ".join(doc.region_texts("status"))


# --- In Debian's chromium, keyboard only --------------------------------------------------------------------------

FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  return {
    what: `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${(el.innerText || el.value || '').trim().slice(0, 40)}"`,
    type: el.type || '',
    ring: el.matches(':focus-visible') && (s.outlineStyle !== 'none' || s.boxShadow !== 'none'),
    onscreen: r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth && r.width > 0,
  };
}"""

POSITIVE_TABINDEX_JS = (
    "() => [...document.querySelectorAll('[tabindex]')].filter(e => e.tabIndex > 0).map(e => e.outerHTML.slice(0, 80))"
)


def unseen(tab) -> str | None:
    """Why a keyboard user could not see where the focus is now, or None."""
    info = tab.evaluate(FOCUS_JS)
    if info is None:
        return None  # between the page's last control and the browser's own UI
    if info["type"] in ("date", "time"):
        return None  # the picker parts inside a date or time input: Chromium draws their focus itself
    if not info["ring"] or not info["onscreen"]:
        return f"{info['what']}: ring={info['ring']} onscreen={info['onscreen']}"
    return None


def tab_to(tab, selector: str, limit: int = 80) -> list[str]:
    """Tab until `selector` has the focus; every stop on the way where the focus could not be seen."""
    problems: list[str] = []
    for _ in range(limit):
        if tab.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector):
            return problems
        tab.keyboard.press("Tab")
        problem = unseen(tab)
        if problem:
            problems.append(problem)
    raise AssertionError(f"Tab never reached {selector}")


def type_date(tab, day) -> None:
    """Type into the focused <input type=date> in the order its parts show (day first for en-GB, else month)."""
    tab.keyboard.type(day.strftime("%d%m%Y"))
    if tab.evaluate("() => document.activeElement.value") != day.isoformat():
        tab.keyboard.press("Shift+Tab")
        tab.keyboard.press("Shift+Tab")
        tab.keyboard.type(day.strftime("%m%d%Y"))
    assert tab.evaluate("() => document.activeElement.value") == day.isoformat()


def local_day(clinic, days: int):
    return timezone.localdate(timezone.now(), clinic.tz) + timedelta(days=days)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_keyboard_only_a_receptionist_books_from_the_patients_page(page, live_server, london):  # noqa: F811
    """The brief: keyboard-only receptionists. WCAG 2.1.1 (everything by keyboard), 2.4.7 (focus visible), 2.4.3
    (order: no positive tabindex), 4.1.3 (the live check's verdict in an aria-live panel, what was booked in a
    role=status region). From the patient's page: Tab to Book, fill the booking form by keys, Book."""
    from playwright.sync_api import expect

    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sam = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke", email="sam@example.com")
    day = local_day(london, 3)
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/patients/{sam.pk}/")
    assert page.evaluate(POSITIVE_TABINDEX_JS) == []

    problems = tab_to(page, f'a.btn--primary[href$="/patients/{sam.pk}/book/"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/patients/{sam.pk}/book/")
    assert page.evaluate(POSITIVE_TABINDEX_JS) == []
    problems += tab_to(page, "#id_procedure")
    page.keyboard.type("d")  # type-ahead on the closed list: Dermal filler
    page.keyboard.press("Tab")
    page.keyboard.type("f")  # Face
    page.keyboard.press("Tab")
    page.keyboard.type("d")  # Dr Amelia Hart
    page.keyboard.press("Tab")
    type_date(page, day)
    problems += tab_to(page, "#id_time", limit=5)
    page.keyboard.type("1100")
    if page.evaluate("() => document.activeElement.value") == "":
        page.keyboard.type("A")  # a 12-hour field (hh:mm AM/PM), as Debian's headless chromium may draw it
    assert page.evaluate("() => document.activeElement.value") == "11:00"
    page.keyboard.press("Enter")  # the form's own submit: the check, in place (htmx), the focus kept
    panel = page.locator("#check-panel")
    expect(panel).to_have_attribute("aria-live", "polite")
    expect(panel).to_contain_text(f"Possible at {day:%a} {day.day} {day:%b %Y}, 11:00, will be confirmed")
    button = panel.locator(".book-now button")
    expect(button).to_have_accessible_name(f"Book {day:%a} {day.day} {day:%b %Y}, 11:00 with Dr Amelia Hart")
    problems += tab_to(page, "#check-panel .book-now button", limit=20)
    page.keyboard.press("Enter")
    page.wait_for_url("**/appointments/*/")
    status = page.locator("[role=status]")
    expect(status).to_contain_text("Booked and confirmed: Dermal filler")
    booked = Appointment.objects.get(patient=sam)
    assert timezone.localtime(booked.start_at, london.tz) == datetime.combine(day, time(11), tzinfo=london.tz)
    assert problems == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_keyboard_only_a_stale_cancel_takes_the_focus_to_why_and_goes_through_sent_again(page, live_server, london):  # noqa: F811
    """docs/frontdesk.md: a cancel "sent after a colleague moved the visit, it cancels nothing (409), the page says
    where the visit is now with the reason kept, and sending it again cancels it"; "A page answering a POST with only
    a message ... moves the focus to that message" (WCAG 3.3.1, 4.1.3). Keyboard only: open the disclosure, type the
    reason, send; the refusal takes the focus; send again; "Cancelled" in a status region."""
    from playwright.sync_api import expect

    from tests.frontdesk.conftest import book as write_visit

    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    hart = london.practitioners.get(name="Dr Amelia Hart")
    sam = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke", email="sam@example.com")
    start = datetime.combine(local_day(london, 2), time(11), tzinfo=london.tz)
    visit = write_visit(sam, hart, "filler", start)
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/appointments/{visit.pk}/")

    problems = tab_to(page, "details.danger-zone > summary")
    page.keyboard.press("Enter")
    problems += tab_to(page, "details.danger-zone textarea", limit=5)
    expect(page.locator("details.danger-zone textarea")).to_have_accessible_name("Reason for cancelling (optional)")
    page.keyboard.type("Patient called: away that week")
    # Meanwhile a colleague moves the visit an hour later.
    Appointment.objects.filter(pk=visit.pk).update(
        start_at=start + timedelta(hours=1), end_at=visit.end_at + timedelta(hours=1)
    )
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    focused_alert = page.evaluate("() => document.activeElement.closest('[role=alert]')?.innerText || ''")
    assert focused_alert, "the refusal did not take the focus"
    moved = start + timedelta(hours=1)
    assert f"it is now on {moved:%a} {moved.day} {moved:%b %Y}, 12:00" in focused_alert, focused_alert
    assert "Nothing was cancelled" in focused_alert
    reason = page.locator("details.danger-zone textarea")
    expect(reason).to_have_value("Patient called: away that week")
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CONFIRMED

    problems += tab_to(page, "details.danger-zone button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("[role=status]")).to_contain_text("ancelled")
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CANCELLED
    assert problems == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_keyboard_only_a_patient_cancels_from_their_link(page, live_server, london):  # noqa: F811
    """docs/portal.md: "/my/<token>/cancel/ GET asks ..., POST cancels and returns to the page with 'Your appointment
    is cancelled.'" Keyboard only, the focus visible at each stop, the outcome in a role=status region."""
    from playwright.sync_api import expect

    from tests.frontdesk.conftest import book as write_visit

    hart = london.practitioners.get(name="Dr Amelia Hart")
    sam = PatientFactory(clinic=london, first_name="Sam", last_name="Clarke", email="sam@example.com")
    visit = write_visit(sam, hart, "filler", datetime.combine(local_day(london, 4), time(11), tzinfo=london.tz))
    page.goto(f"{live_server.url}{portal_page(visit)}")
    assert page.evaluate(POSITIVE_TABINDEX_JS) == []
    problems = tab_to(page, "a.button[href$='/cancel/']")
    page.keyboard.press("Enter")
    page.wait_for_url("**/cancel/")
    problems += tab_to(page, "textarea[name=reason]")
    expect(page.locator("textarea[name=reason]")).to_have_accessible_name(
        "Anything you would like us to know? (optional)"
    )
    page.keyboard.type("Away that week")
    problems += tab_to(page, "button[type=submit]", limit=5)
    expect(page.locator(":focus")).to_have_text("Yes, cancel it")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("[role=status]")).to_contain_text("Your appointment is cancelled.")
    assert Appointment.objects.get(pk=visit.pk).status == AppointmentStatus.CANCELLED
    assert problems == []


CELL_BACKGROUNDS_JS = """() => {
  const lum = c => { const [r, g, b] = c.match(/\\d+/g).slice(0, 3).map(v => { v = v / 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const cell = sel => getComputedStyle(document.querySelector(sel));
  const outside = cell('td.cal-cell:not(.cal-cell--working):not(.cal-cell--appt):not(.cal-cell--off)');
  const inside = cell('td.cal-cell.cal-cell--working');
  const [a, b] = [lum(outside.backgroundColor), lum(inside.backgroundColor)].sort().reverse();
  return {ratio: (a + 0.05) / (b + 0.05), pattern: outside.backgroundImage !== inside.backgroundImage,
          outside: outside.backgroundColor, inside: inside.backgroundColor};
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.xfail(
    strict=True,
    reason="QUESTION: a quarter hour outside working hours differs from one inside only by a grey (#f1f1f1) against "
    "white background (about 1.1:1, no pattern, no word on screen); 'outside working hours' is said to screen "
    "readers only (WCAG 1.4.1). docs/frontdesk.md chose 'white; outside is grey': a pattern or 3:1 wanted?",
)
def test_outside_working_hours_is_told_apart_by_more_than_a_faint_shade(page, live_server, london):  # noqa: F811
    make_staff(london, StaffRole.RECEPTIONIST, "reception")
    sign_in(page, live_server, "reception")
    page.goto(f"{live_server.url}/clinic/london/calendar/?date={local_day(london, 2)}")
    assert page.locator("a.cal-free", has_text="outside working hours").count() > 0
    found = page.evaluate(CELL_BACKGROUNDS_JS)
    assert found["pattern"] or found["ratio"] >= 3, found
