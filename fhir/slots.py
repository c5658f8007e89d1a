"""Slots for FHIR: free and busy time of practitioners' schedules in a window, from the scheduler's calendars.

Free time comes from `scheduler.availability.Schedule` (working hours, time off, bookings), the same
calendars booking uses:
* with a `service-type` (a procedure), a free Slot is a start where that procedure fits, on the booking
  grid (BOOKING_SLOT_STEP_MINUTES), lasting the procedure's duration: what booking would accept, without
  any patient's interval rules (Slots are not per patient: the eligibility endpoint is);
* without one, free Slots are the free stretches of working time (grid cells merged), each for the bookable
  procedures the practitioner does whose duration fits in it (R4's serviceType: what can be booked into the Slot).
A procedure switched off (not `bookable`) has no free Slot, as booking and REST availability refuse it.
Busy Slots are the appointments holding time (busy, or busy-tentative while awaiting clearance) and time
off (busy-unavailable; entries that overlap or touch are one Slot).
A window lists the Slots that start in it, as R4's Slot `start` search reads: free time is cut on the grid, each
cell belongs to the window its start falls in, so adjacent windows never list the same time twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings

from clinic.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, Practitioner, ProcedureType, TimeOff
from fhir.mapping import SLOT_STATUS_FOR_APPOINTMENT, SlotRow
from scheduler.availability import Schedule


def _free_stretches(practitioner: Practitioner, cells: list, tz) -> list[SlotRow]:
    """The practitioner's free grid cells (in time order) merged into free stretches of working time, each for the
    bookable procedures they do whose duration fits in it."""
    procedures = sorted((p for p in practitioner.procedures.all() if p.bookable), key=lambda p: p.code)

    def stretch(start: datetime, end: datetime) -> SlotRow:
        fitting = tuple((p.code, p.name) for p in procedures if timedelta(minutes=p.duration_minutes) <= end - start)
        return SlotRow(str(practitioner.pk), start, end, "free", fitting, tz)

    rows: list[SlotRow] = []
    start = end = None
    for cell in cells:
        if end is not None and cell.start_at == end:
            end = cell.end_at
            continue
        if start is not None:
            rows.append(stretch(start, end))
        start, end = cell.start_at, cell.end_at
    if start is not None:
        rows.append(stretch(start, end))
    return rows


def _free(
    practitioners: list[Practitioner], window_start: datetime, window_end: datetime, procedure: ProcedureType | None
) -> list[SlotRow]:
    """The free Slots of every practitioner: one `Schedule` (one read of the calendars) for all the practitioners
    of a time zone, whatever their number; each practitioner's slots are what a schedule of their own gives."""
    step = timedelta(minutes=settings.BOOKING_SLOT_STEP_MINUTES)
    by_zone: dict[str, list[Practitioner]] = defaultdict(list)
    for practitioner in practitioners:
        by_zone[practitioner.clinic.timezone].append(practitioner)
    duration = timedelta(minutes=procedure.duration_minutes) if procedure is not None else step
    rows: list[SlotRow] = []
    for group in by_zone.values():
        tz = group[0].clinic.tz
        schedule = Schedule(group, tz, window_start, window_end + duration)
        cells: dict[str, list] = defaultdict(list)  # each practitioner's, in time order
        # free_slots reads its window end as inclusive; a Slot starting at the window end is the next window's.
        for slot in schedule.free_slots(duration=duration, step=step, window_start=window_start, window_end=window_end):
            if slot.start_at < window_end:
                cells[slot.practitioner_id].append(slot)
        for practitioner in group:
            mine = cells.get(str(practitioner.pk), [])
            if procedure is not None:
                rows += [
                    SlotRow(
                        str(practitioner.pk),
                        slot.start_at,
                        slot.end_at,
                        "free",
                        ((procedure.code, procedure.name),),
                        tz,
                    )
                    for slot in mine
                ]
            else:
                rows += _free_stretches(practitioner, mine, tz)
    return rows


def _time_off(
    practitioners: list[Practitioner], window_start: datetime, window_end: datetime
) -> list[tuple[object, datetime, datetime]]:
    """Each practitioner's time off as spans (practitioner id, start, end) starting in [window_start, window_end):
    entries that overlap or touch are one span, so two entries over the same hours ('sick', 'training') are one
    Slot, not two with one id. A span is whole: entries before the window that reach into it make it start
    before (it is the earlier window's), entries after the window that it reaches lengthen it."""
    entries = TimeOff.objects.filter(practitioner__in=practitioners, end_at__gte=window_start).order_by()
    fields = ("practitioner_id", "start_at", "end_at")
    rows = list(entries.filter(start_at__lt=window_end).values_list(*fields))
    reach = window_end  # entries starting from here on are read only while a span reaches them
    while rows and (furthest := max(end for _, _, end in rows)) >= reach:
        more = list(entries.filter(start_at__gte=reach, start_at__lte=furthest).values_list(*fields))
        if not more:
            break
        rows += more
        reach = furthest + timedelta(microseconds=1)
    spans: list[tuple[object, datetime, datetime]] = []
    for practitioner_id, start, end in sorted(rows):
        last = spans[-1] if spans else None
        if last and last[0] == practitioner_id and start <= last[2]:
            spans[-1] = (practitioner_id, last[1], max(last[2], end))
        else:
            spans.append((practitioner_id, start, end))
    return [span for span in spans if window_start <= span[1] < window_end]


def _busy(
    practitioners: list[Practitioner], window_start: datetime, window_end: datetime, procedure: ProcedureType | None
) -> list[SlotRow]:
    """Appointments holding time and time off, starting in [window_start, window_end)."""
    by_id = {p.pk: p for p in practitioners}
    appointments = Appointment.objects.filter(
        practitioner__in=practitioners,
        status__in=ACTIVE_APPOINTMENT_STATUSES,
        start_at__gte=window_start,
        start_at__lt=window_end,
    ).select_related("procedure")
    rows = [
        SlotRow(
            str(a.practitioner_id),
            a.start_at,
            a.end_at,
            SLOT_STATUS_FOR_APPOINTMENT[a.status],
            ((a.procedure_id, a.procedure.name),),
            by_id[a.practitioner_id].clinic.tz,
        )
        for a in appointments
        if procedure is None or a.procedure_id == procedure.code
    ]
    if procedure is None:
        rows += [
            SlotRow(str(practitioner_id), start, end, "busy-unavailable", (), by_id[practitioner_id].clinic.tz)
            for practitioner_id, start, end in _time_off(practitioners, window_start, window_end)
        ]
    return rows


def slots_search(
    *,
    practitioners: Iterable[Practitioner],
    window_start: datetime,
    window_end: datetime,
    statuses: set[str],
    procedure: ProcedureType | None,
    now: datetime,
) -> list[SlotRow]:
    """Slots starting in [window_start, window_end), in time order.
    Free time that has passed is not free any more: free Slots start at `now` (on the grid) at the earliest."""
    practitioners = [p for p in practitioners if procedure is None or procedure in p.procedures.all()]
    rows: list[SlotRow] = []
    free_from = max(window_start, now)
    # A procedure switched off has no free time (booking refuses it); its appointments still hold theirs.
    if "free" in statuses and free_from < window_end and (procedure is None or procedure.bookable):
        rows += _free(practitioners, free_from, window_end, procedure)
    if statuses - {"free"}:
        rows += [row for row in _busy(practitioners, window_start, window_end, procedure) if row.status in statuses]
    rows.sort(key=lambda row: (row.start_at, row.practitioner_id, row.status))
    return rows
