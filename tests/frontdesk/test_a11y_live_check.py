"""The live check marks the field in error and names it: its out-of-band error says data-invalid (which
frontdesk/fields.js turns into aria-invalid and the invalid class on the input in place), the aria-live panel
says "Check “Date”: ...", and the page without JavaScript marks the input itself, as before.

`now` is Monday 2 March 2026 09:00 London, so 1 March has passed.
"""

from html.parser import HTMLParser

import pytest

from tests.frontdesk.conftest import book, url
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
PAST = "That day has passed; choose today or a later day."


class _Elements(HTMLParser):
    """Each element with an id: its tag, attributes and its parent's attributes."""

    VOID = {"input", "br", "img", "meta", "link", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict] = [{}]
        self.by_id: dict[str, tuple[str, dict, dict]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.by_id.setdefault(attrs["id"], (tag, attrs, self.stack[-1]))
        if tag not in self.VOID:
            self.stack.append(attrs)

    def handle_endtag(self, tag):
        if tag not in self.VOID and len(self.stack) > 1:
            self.stack.pop()


def elements(response) -> dict[str, tuple[str, dict, dict]]:
    parser = _Elements()
    parser.feed(response.content.decode())
    return parser.by_id


def test_the_live_check_marks_the_field_in_error_and_names_it(reception, clinic, patient, practitioner, frozen):
    # Given a receptionist checking Botox on a day that has passed
    response = reception.get(url("book", clinic, patient), {"procedure": "botox", "date": "2026-03-01"}, **HTMX)
    found = elements(response)
    # Then the date's error, swapped out of band, carries the error and marks its field
    tag, error, _ = found["id_date-error"]
    assert (tag, error["hx-swap-oob"], error.get("data-invalid")) == ("p", "true", "true")
    assert text_by_id(response.content, "id_date-error") == PAST
    # ... and every other field's error comes empty and unmarked, which clears a mark left from before
    for name in ("procedure", "area", "practitioner", "time"):
        assert "data-invalid" not in found[f"id_{name}-error"][1], name
        assert text_by_id(response.content, f"id_{name}-error") == ""
    # ... and the aria-live panel names the field, by its label as shown, with what to do
    panel = squash(response)
    assert f"Check “Date”: {PAST}" in panel
    assert "marked in red" not in panel


def test_each_field_in_error_is_named(reception, clinic, patient, practitioner, frozen):
    response = reception.get(
        url("book", clinic, patient), {"procedure": "nonsense", "date": "2026-03-01", "time": "25:00"}, **HTMX
    )
    panel = squash(response)
    assert "Check “Procedure”: Select a valid choice." in panel
    assert f"Check “Date”: {PAST}" in panel
    assert "Check “Time”: Enter a valid time." in panel
    marked = {id_ for id_, (_, attrs, _) in elements(response).items() if attrs.get("data-invalid") == "true"}
    assert marked == {"id_procedure-error", "id_date-error", "id_time-error"}


def test_the_move_check_names_its_own_label(reception, clinic, patient, practitioner, frozen):
    appointment = book(patient, practitioner, "botox", frozen.replace(day=5))
    response = reception.get(url("reschedule", clinic, appointment), {"date": "2026-03-01"}, **HTMX)
    assert f"Check “New date”: {PAST}" in squash(response)
    assert elements(response)["id_date-error"][1].get("data-invalid") == "true"


def test_put_right_the_error_goes_unmarked_and_the_verdict_is_back(reception, clinic, patient, practitioner, frozen):
    response = reception.get(url("book", clinic, patient), {"procedure": "botox", "date": "2026-03-09"}, **HTMX)
    assert "data-invalid" not in elements(response)["id_date-error"][1]
    panel = squash(response)
    assert "Check “" not in panel and "Possible from Mon 9 Mar 2026" in panel


def test_without_javascript_the_page_marks_the_input_itself(reception, clinic, patient, practitioner, frozen):
    response = reception.get(url("book", clinic, patient), {"procedure": "botox", "date": "2026-03-01"})
    tag, date, wrapper = elements(response)["id_date"]
    assert (tag, date["aria-invalid"]) == ("input", "true")
    assert "id_date-error" in date["aria-describedby"].split()
    assert wrapper["class"].split() == ["field", "field--invalid"]
    assert "aria-invalid" not in elements(response)["id_time"][1]
    assert f"Check “Date”: {PAST}" in squash(response)
    assert "hx-swap-oob" not in squash(response)  # the full page has the errors in place


def test_every_page_loads_the_script_that_marks_fields_in_place(reception, clinic, patient, frozen):
    page = squash(reception.get(url("book", clinic, patient)))
    assert 'src="/static/frontdesk/fields.js" defer' in page
