"""Every front-desk page answers only the methods it serves: a read-only page (Today, the calendar, the rule
book, a patient's record) refuses POST, PUT, PATCH and DELETE with 405 and an `Allow` header, instead of
drawing itself as if the request had done something; a form page takes GET and POST; an action takes POST.

The table below is the front desk's method contract, written page by page from what each page does; a test
fails if a page is added to `frontdesk.urls` without a line here.
"""

from __future__ import annotations

import uuid

import pytest
from django.urls import URLPattern, URLResolver, reverse

from frontdesk import urls as frontdesk_urls

READ = {"GET", "HEAD"}
FORM = {"GET", "HEAD", "POST"}
ACTION = {"POST"}

METHODS: dict[str, set[str]] = {
    "today": READ,
    "schedule": READ,
    "calendar": READ,
    "calendar_events": READ,
    "calendar_book": READ,
    "calendar_register": FORM,
    "calendar_book_patient": READ,
    "day_sheet": READ,
    "patients": READ,
    "patient_new": FORM,
    "patient": READ,
    "patient_edit": FORM,
    "patient_merge": FORM,
    "merge_warning_check": ACTION,
    "patient_history": FORM,
    "medication_add": ACTION,
    "medication_end": ACTION,
    "procedure_add": ACTION,
    "book": READ,
    "book_submit": ACTION,
    "plan_new": READ,
    "plan_book": ACTION,
    "plan": READ,
    "plan_replan": ACTION,
    "plan_cancel": ACTION,
    "appointment": READ,
    "aftercare": READ,
    "reschedule": FORM,
    "cancel": ACTION,
    "clear": ACTION,
    "complete": ACTION,
    "check_in": ACTION,
    "notes": ACTION,
    "message_send_again": ACTION,
    "no_show": ACTION,
    "rules": READ,
    "home": READ,
    "two_factor": FORM,
}

SWEPT = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _names(patterns) -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names |= _names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def _path(name: str, clinic) -> str:
    """The page's address at `clinic`, with made-up ids: the method is refused before anything is looked up."""
    if name in {"home", "two_factor"}:
        return reverse(f"frontdesk:{name}")
    pattern = next(p for p in frontdesk_urls.clinic_patterns if p.name == name)
    ids = {key: uuid.uuid4() for key in pattern.pattern.converters}
    return reverse(f"frontdesk:{name}", kwargs={"clinic_code": clinic.code, **ids})


def test_every_page_is_in_the_method_table():
    signing_in = {"login", "login_code", "logout"}  # Django's own views and the code step (tests below)
    assert _names(frontdesk_urls.urlpatterns) - signing_in == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_page_refuses_the_methods_it_does_not_serve(clinical, clinic, name):
    path = _path(name, clinic)
    for method in SWEPT:
        response = clinical.generic(method, path)
        if method in METHODS[name]:
            assert response.status_code not in (405, 500), (method, path, response.status_code)
        else:
            assert response.status_code == 405, (method, path, response.status_code)
            assert set(response["Allow"].split(", ")) == METHODS[name], (method, path)


def test_a_read_only_page_is_not_drawn_for_a_post(clinical, clinic):
    """The rule book is read-only (editing is in the admin): a POST to it is refused, not answered as a GET."""
    response = clinical.post(reverse("frontdesk:rules", args=[clinic.code]), {"anything": "1"})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_signing_in_pages_refuse_other_methods(client):
    assert client.put(reverse("frontdesk:login")).status_code == 405
    assert client.delete(reverse("frontdesk:login_code")).status_code == 405
    assert client.get(reverse("frontdesk:logout")).status_code == 405  # signing out is a POST (CSRF)


def test_signed_out_a_refused_method_still_asks_to_sign_in_first(client, clinic):
    """Nothing about a clinic's pages is told before signing in, not even which methods they take."""
    response = client.post(reverse("frontdesk:rules", args=[clinic.code]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("frontdesk:login"))
