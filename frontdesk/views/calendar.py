"""The calendar: the day as a grid of practitioners by quarter hours, its JSON feed, and booking from a cell.

The grid is server-rendered (a table; see docs/frontdesk.md for why not a JavaScript calendar);
frontdesk/static/frontdesk/calendar.js adds booking from a cell in a dialog (the steps below
answer with fragments when it asks) and dragging, which asks the reschedule page's dry run
before anything changes. Every gesture is also a link or a form.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_http_methods, require_safe

from clinic.models import AppointmentStatus, Practitioner
from clinic.selectors import clinics_for_user, patient_search, patients_in
from core.timeutils import MAX_YEAR, MIN_YEAR, wall_clock, within_years
from frontdesk import selectors
from frontdesk.forms import PatientForm, PatientSearchForm, ScheduleFilterForm
from frontdesk.views.base import appointment_or_404, clinic_page, page, patient_or_404
from frontdesk.views.booking import booking_context, booking_form
from frontdesk.views.patients import patient_created

# A calendar asks for a day, a week or a month at most; more is a mistake, not a query to run.
MAX_FEED_DAYS = 42
SEARCH_LIMIT = 20


def _valid_fields(form) -> dict:
    """The fields of a filter form that are valid (all of them when it is unbound)."""
    form.is_valid()
    return form.cleaned_data if form.is_bound else {}


@clinic_page
@require_safe
def calendar(request):
    clinic = request.clinic
    # Its own ids: the booking form in the dialog has a date and a practitioner too.
    form = ScheduleFilterForm(request.GET or None, clinic=clinic, auto_id="cal_%s")
    # A bad field is said beside it (or above the grid) and left out; the others still stand: another clinic's
    # practitioner or view=month keeps the day asked for rather than drawing today.
    data = _valid_fields(form)
    now = timezone.now()
    today = timezone.localdate(now, timezone=clinic.tz)
    day = data.get("date") or today
    # A week is one practitioner's (the one chosen, or the first): seven columns of one person's days.
    week = data.get("view") == "week"
    grid = selectors.day_grid(
        user=request.user,
        clinic=clinic,
        day=day,
        now=now,
        practitioner_id=data.get("practitioner") or None,
        include_cancelled=bool(data.get("cancelled")),
        week=week,
    )
    step = timedelta(days=7 if week else 1)

    def link(target: date, view: str = "week" if week else "day") -> str:
        query = request.GET.copy()
        for name in form.errors:  # said once on this page; the links go on without it
            query.pop(name, None)
        query["date"] = target.isoformat()
        query["view"] = view
        if view == "week" and not query.get("practitioner") and grid.columns:
            query["practitioner"] = str(grid.columns[0].practitioner.pk)
        return "?" + query.urlencode()

    return page(
        request,
        "frontdesk/calendar.html",
        {
            "form": form,
            "grid": grid,
            "day": day,
            "now": now,
            "week": week,
            "practitioner": grid.columns[0].practitioner if week and grid.columns else None,
            "previous_link": link(day - step),
            "next_link": link(day + step),
            "today_link": link(today),
            "day_link": link(day, "day"),
            "week_link": link(day, "week"),
            "nav": "calendar",
        },
    )


def _bound(value: str | None, tz) -> datetime | None:
    """A calendar's range bound: an ISO date (the clinic's local midnight) or an ISO instant with an offset."""
    if not value:
        return None
    try:
        if "T" not in value and " " not in value:
            day = parse_date(value)
            return selectors.local_day_range(day, tz)[0] if day and within_years(day) else None
        instant = parse_datetime(value)
    except (ValueError, OverflowError):
        return None
    # A time without an offset is ambiguous across the clocks changing: refuse it rather than guess. Years
    # out of the services' range are refused too: year 1 at +14:00 has no UTC (and no local time here).
    if instant is None or not timezone.is_aware(instant) or not within_years(instant):
        return None
    return instant


@clinic_page
@require_safe
def calendar_events(request):
    clinic = request.clinic
    start, end = _bound(request.GET.get("start"), clinic.tz), _bound(request.GET.get("end"), clinic.tz)
    problem = None
    if start is None or end is None:
        problem = (
            "start and end must be ISO dates (2026-03-02) or instants with an offset (2026-03-02T09:00:00+00:00), "
            f"in the years {MIN_YEAR} to {MAX_YEAR}."
        )
    elif end <= start:
        problem = "end must be after start."
    elif end - start > timedelta(days=MAX_FEED_DAYS):
        problem = f"The range may be at most {MAX_FEED_DAYS} days."
    if problem:
        return JsonResponse({"title": "Bad date range", "status": 400, "detail": problem}, status=400)
    return JsonResponse(selectors.calendar_feed(user=request.user, clinic=clinic, start=start, end=end))


def _cell(request) -> tuple[Practitioner | None, datetime | None]:
    """The practitioner and local start an empty cell names (None for either that is missing or not this clinic's)."""
    clinic = request.clinic
    practitioner = selectors.practitioner_for_user(request.user, clinic, request.GET.get("practitioner"))
    start = _bound(request.GET.get("start_at"), clinic.tz)
    return practitioner, timezone.localtime(start, clinic.tz) if start else None


def _cell_query(practitioner, start) -> str:
    """The cell again, for the next step of booking from it."""
    query = {"practitioner": str(practitioner.pk)} if practitioner else {}
    if start:
        query["start_at"] = start.isoformat()
    return urlencode(query)


def _booking_initial(practitioner, start) -> dict:
    """The booking form's practitioner, date and time for the cell (with its reading in the hour the clocks go
    back over, "01:15 BST" or "01:15 GMT": the time alone happens twice)."""
    initial = {"practitioner": str(practitioner.pk)} if practitioner else {}
    if start:
        initial.update(date=start.date().isoformat(), time=wall_clock(start))
    return initial


def _step(request, template: str, context: dict, *, status: int = 200):
    """One step of booking from a cell: the fragment in the calendar's dialog (`HX-Request`), else a page."""
    practitioner, start = _cell(request)
    context = {
        **context,
        "practitioner": practitioner,
        "start": start,
        "cell_query": _cell_query(practitioner, start),
        "in_place": request.htmx,
        "step": template,
        "nav": "calendar",
    }
    return page(request, template if request.htmx else "frontdesk/calendar_book.html", context, status=status)


@clinic_page
@require_safe
def calendar_book(request):
    """From an empty cell: find the patient (or register one), then book them there.

    On the calendar page this runs in a dialog (calendar.js asks with `HX-Request` and gets the
    fragment); without JavaScript it is a page, and a patient found leads to their booking page
    with the practitioner and time filled in.
    """
    clinic = request.clinic
    form = PatientSearchForm(request.GET if "q" in request.GET else None, clinic=clinic)
    results, more = [], False
    if form.is_valid():
        clinic_patients = patients_in(clinics_for_user(request.user).filter(pk=clinic.pk))
        found = list(
            patient_search(clinic_patients, form.cleaned_data["q"].strip(), country=clinic.country)[: SEARCH_LIMIT + 1]
        )
        results, more = found[:SEARCH_LIMIT], len(found) > SEARCH_LIMIT
    practitioner, start = _cell(request)
    return _step(
        request,
        "frontdesk/_calendar_find.html",
        {
            "search_form": form,
            "results": results,
            "more": more,
            "book_query": urlencode(_booking_initial(practitioner, start)),
        },
    )


def _booking_in_place(request, patient, *, added: bool = False):
    """The booking form and live check for `patient` at the cell, in the calendar's dialog."""
    practitioner, start = _cell(request)
    query = _cell_query(practitioner, start)
    return page(
        request,
        "frontdesk/_booking.html",
        {
            **booking_context(request, patient),
            "form": booking_form(request, patient, None, initial=_booking_initial(practitioner, start)),
            "panel": None,
            "in_place": True,
            "added": added,
            "back_url": reverse("frontdesk:calendar_book", args=[request.clinic.code]) + (f"?{query}" if query else ""),
        },
    )


@clinic_page
@require_safe
def calendar_book_patient(request, patient_id):
    """The patient chosen for a cell: in the dialog, the booking form and live check; else the booking page."""
    patient = patient_or_404(request, patient_id)
    if request.htmx:
        return _booking_in_place(request, patient)
    practitioner, start = _cell(request)
    query = urlencode(_booking_initial(practitioner, start))
    return redirect(reverse("frontdesk:book", args=[request.clinic.code, patient.pk]) + (f"?{query}" if query else ""))


@clinic_page
@require_http_methods(["GET", "HEAD", "POST"])
def calendar_register(request):
    """A new patient for a cell (the new-patient form and service), then booking them there."""
    form = PatientForm(request.POST or None, clinic=request.clinic)
    if request.method == "POST" and (patient := patient_created(request, form)):
        if request.htmx:
            return _booking_in_place(request, patient, added=True)
        messages.success(request, f"{patient} added.")
        practitioner, start = _cell(request)
        query = urlencode(_booking_initial(practitioner, start))
        return redirect(
            reverse("frontdesk:book", args=[request.clinic.code, patient.pk]) + (f"?{query}" if query else "")
        )
    return _step(request, "frontdesk/_calendar_register.html", {"form": form})


@clinic_page
@require_safe
def day_sheet(request):
    """The day per practitioner, to print (frontdesk.css has the print styles).

    A bad query (an impossible date, a practitioner not of this clinic) answers 400 with the page saying
    what is wrong and nothing to print: never another day's sheet, nor everyone's for one practitioner's."""
    clinic = request.clinic
    form = ScheduleFilterForm(request.GET or None, clinic=clinic)
    data = _valid_fields(form)
    if form.errors:
        return page(
            request,
            "frontdesk/day_sheet.html",
            {"form": form, "day": data.get("date"), "nav": "calendar", "sheets": []},
            status=400,
        )
    day = data.get("date") or timezone.localdate(timezone=clinic.tz)
    return page(
        request,
        "frontdesk/day_sheet.html",
        {
            "form": form,
            "day": day,
            "nav": "calendar",
            "sheets": selectors.day_sheets(
                user=request.user, clinic=clinic, day=day, practitioner_id=data.get("practitioner") or None
            ),
        },
    )


@clinic_page
@require_safe
def aftercare_sheet(request, appointment_id):
    """A completed treatment's post-care texts and the patient's next possible dates, to print."""
    appointment = appointment_or_404(request, appointment_id)
    if appointment.status != AppointmentStatus.COMPLETED:
        raise Http404("Only a completed treatment has an aftercare sheet.")
    return page(
        request,
        "frontdesk/aftercare.html",
        {
            "appointment": appointment,
            "nav": "patients",
            "sheet": selectors.aftercare(appointment=appointment, now=timezone.now()),
        },
    )
