"""Today's arrivals and the day and week schedules."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django.views.decorators.http import require_safe

from frontdesk import selectors
from frontdesk.forms import PatientSearchForm, ScheduleFilterForm
from frontdesk.views.base import clinic_page, page


@clinic_page
@require_safe
def today(request):
    clinic = request.clinic
    now = timezone.now()
    day = timezone.localdate(now, timezone=clinic.tz)
    return page(
        request,
        "frontdesk/today.html",
        {
            "search_form": PatientSearchForm(clinic=clinic),
            "arrivals": selectors.arrivals(user=request.user, clinic=clinic, day=day),
            "pending": selectors.pending_clearance(user=request.user, clinic=clinic),
            "attention": selectors.needs_attention(user=request.user, clinic=clinic),
            "gone": selectors.booked_with_practitioner_gone(user=request.user, clinic=clinic, now=now),
            "away": selectors.booked_while_away(user=request.user, clinic=clinic, now=now),
            "off_hours": selectors.booked_off_hours(user=request.user, clinic=clinic, now=now),
            "undelivered": selectors.undelivered(user=request.user, clinic=clinic, now=now),
            "no_outcome": selectors.awaiting_outcome(user=request.user, clinic=clinic, now=now),
            "no_outcome_shown": selectors.OUTCOME_SHOWN,
            "now": now,
            "nav": "today",
        },
    )


@clinic_page
@require_safe
def schedule(request):
    clinic = request.clinic
    form = ScheduleFilterForm(request.GET or None, clinic=clinic)
    data = form.cleaned_data if form.is_valid() else {}
    today = timezone.localdate(timezone=clinic.tz)
    day = data.get("date") or today
    view = data.get("view") or "day"
    practitioner_id = data.get("practitioner") or None
    if view == "week":
        first = day - timedelta(days=day.weekday())
        days = [first + timedelta(days=n) for n in range(7)]
        step = timedelta(days=7)
    else:
        days = [day]
        step = timedelta(days=1)
    columns = selectors.schedule_columns(
        user=request.user,
        clinic=clinic,
        days=days,
        practitioner_id=practitioner_id,
        include_cancelled=bool(data.get("cancelled")),
    )

    def link(target):
        query = request.GET.copy()
        query["date"] = target.isoformat()
        query["view"] = view
        return "?" + query.urlencode()

    return page(
        request,
        "frontdesk/schedule.html",
        {
            "form": form,
            "columns": columns,
            "days": days,
            "view": view,
            "day": day,
            "previous_link": link(days[0] - step),
            "next_link": link(days[0] + step),
            "today_link": link(today),
            "day_link": link(day).replace("view=week", "view=day"),
            "week_link": link(day).replace("view=day", "view=week"),
            "total": sum(len(c.appointments) for c in columns),
            "show_practitioner": view == "week",
            "nav": "schedule",
        },
    )
