"""Input no view should ever see: a NUL in the address or query string, and admin date filters outside the calendar.

Both are checked once here, for every page, instead of in each view, form or list filter: a NUL reaches
PostgreSQL (which refuses it in text) from any look-up by a path or query value, and Django's admin turns a
year it cannot hold (`?start_at__year=9999`) into an uncaught ValueError or OverflowError.
"""

from __future__ import annotations

from datetime import MAXYEAR, MINYEAR

from django.contrib import messages
from django.core.exceptions import BadRequest
from django.http import HttpResponseRedirect
from django.utils.http import urlencode

NUL = "\x00"
# Interfaces that answer a NUL themselves, each in its own format, and keep doing so: the API (RFC 9457 problem
# JSON naming the parameter, api/parsers.py and api/fields.py; a 404 problem for an address, tests/api/test_input.py),
# FHIR (an OperationOutcome naming the search parameter, fhir/search.py) and the calendar feeds (a forged feed
# address is not found, like any other: reminders/views.py).
_ANSWERED_BY_THEIR_VIEWS = ("/api/", "/fhir/", "/reminders/calendar/")
# The front desk's addresses hold ids it parses itself: an odd one, a NUL included, is not found (404), as
# tests/qa/test_bad_input_sweep.py pins. A NUL in its query strings is refused here like anywhere else.
_PATHS_ANSWERED_BY_THEIR_VIEWS = (*_ANSWERED_BY_THEIR_VIEWS, "/clinic/")

# A date drill-down needs the year after the one asked for (Django bounds it by the next year, month or day) and a
# year lookup the whole year in any zone: the first and last years the calendar holds are left out.
FIRST_YEAR, LAST_YEAR = MINYEAR + 1, MAXYEAR - 1
_YEAR_LOOKUPS = {"year", "iso_year"}


class NulRefusedMiddleware:
    """A NUL character in the path, or in a query-string name or value, is a 400 before any view runs.

    Raised as BadRequest, so the site's handler400 answers (config.errors.bad_request: problem details under /api/,
    an OperationOutcome under /fhir/). It sits last in MIDDLEWARE, so the refusal carries the headers of every
    other answer (no-store, CSP).
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        in_path = NUL in request.path and not path.startswith(_PATHS_ANSWERED_BY_THEIR_VIEWS)
        if in_path or (not path.startswith(_ANSWERED_BY_THEIR_VIEWS) and _nul_in_query(request)):
            raise BadRequest("A NUL character (U+0000) in the address or the query string is never valid input.")
        return self.get_response(request)


def _nul_in_query(request) -> bool:
    return any(NUL in name or any(NUL in value for value in values) for name, values in request.GET.lists())


class AdminDateFilterMiddleware:
    """Every admin change list: a year filter the calendar cannot hold (`?created_at__year=0`, the date
    hierarchy's `?start_at__year=9999`) is dropped, with a message, and the list shown without it.

    Non-numbers are left to the admin itself, which already answers them with the unfiltered list.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if match is None or match.namespace != "admin" or not (match.url_name or "").endswith("_changelist"):
            return None
        refused = [(name, value) for name, value in request.GET.items() if _year_out_of_range(name, request.GET)]
        if not refused:
            return None
        dropped = set()
        for name, _ in refused:
            field = name.split("__", 1)[0]
            dropped |= {name, f"{field}__month", f"{field}__day"}  # the drill-down below the year goes with it
        kept = [(name, value) for name, values in request.GET.lists() if name not in dropped for value in values]
        shown = ", ".join(f"{name}={value}" for name, value in refused)
        messages.warning(
            request, f"Dates run from year {FIRST_YEAR} to {LAST_YEAR}: the date filter {shown} was ignored."
        )
        return HttpResponseRedirect(request.path + (f"?{urlencode(kept)}" if kept else ""))


def _year_out_of_range(name: str, query) -> bool:
    if not _YEAR_LOOKUPS & set(name.split("__")[1:]):
        return False
    for value in query.getlist(name):
        try:
            year = int(value)
        except ValueError:
            continue  # not a number: the admin answers it with the unfiltered list
        if not FIRST_YEAR <= year <= LAST_YEAR:
            return True
    return False
