"""An availability search reads only the part of a patient's timeline its rules can reach.

`selectors.timeline_for_window` leaves out events of procedures no interval rule relates to
the one asked for, and events beyond the rules' reach of the window; the blocked ranges, and
so the slots offered, must be exactly those the whole timeline gives.
"""

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.models import AppointmentStatus, ProcedureType
from scheduler import rules, selectors
from scheduler.availability import _Busy
from scheduler.models import IntervalRule
from tests.factories import (
    AppointmentFactory,
    MedicationCourseFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.usefixtures("catalogue")
# The patients here have no organisation rules of their own: the defaults (`rulebook_load(None)`) are theirs.


def spans(timeline, code, lo, hi):
    blocked = rules.blocked_ranges(timeline, selectors.rulebook_load(None), rules.Proposal(code, lo), LONDON, hi)
    return blocked.spans


def rules_with_an_earlier_procedure():
    book = selectors.rulebook_load(None)
    return [r for rs in book.looking_back.values() for r in rs if r.earlier_procedure]


def test_the_window_timeline_blocks_exactly_what_the_whole_timeline_blocks(now):
    rnd = random.Random(7)
    # A rule one way only: booking plasma pen must keep 5 weeks before a booked filler (nothing the other way).
    IntervalRule.objects.create(
        earlier_procedure_id="plasma_pen", later_procedure_id="filler", gap_value=5, gap_unit="weeks", source="test"
    )
    patient = PatientFactory()
    practitioner = PractitionerFactory(clinic=patient.clinic)
    codes = list(ProcedureType.objects.values_list("code", flat=True))
    for _ in range(120):  # three years of history, every procedure, some of it long ago
        ProcedureRecordFactory(
            patient=patient, procedure_id=rnd.choice(codes), performed_at=now - timedelta(hours=rnd.randint(1, 26_000))
        )
    later = sorted({r.later_procedure for r in rules_with_an_earlier_procedure()})
    for index, days in enumerate((3, 20, 45, 60)):  # booked ahead: the rules look forward from a proposal too
        start = now + timedelta(days=days, hours=2)
        AppointmentFactory(
            clinic=patient.clinic,
            patient=patient,
            practitioner=practitioner,
            procedure_id=later[index % len(later)],
            start_at=start,
            end_at=start + timedelta(minutes=30),
            status=AppointmentStatus.CONFIRMED,
        )
    MedicationCourseFactory(patient=patient, started_on=(now - timedelta(days=200)).date(), ended_on=None)
    whole = selectors.timeline_for_patient(patient.pk)

    compared = 0
    assert rules_with_an_earlier_procedure()
    for code in codes:
        for offset, days in ((0, 14), (0, 90), (30, 7), (-1, 1)):
            lo, hi = now + timedelta(days=offset), now + timedelta(days=offset + days)
            window = selectors.timeline_for_window(
                patient.pk, rulebook=selectors.rulebook_load(None), procedure=code, lo=lo, hi=hi
            )
            assert spans(window, code, lo, hi) == spans(whole, code, lo, hi), (code, offset, days)
            compared += bool(spans(whole, code, lo, hi))
    assert compared >= 4  # some of these windows are blocked at all: the comparison says something


def test_busy_overlap_is_any_span_meeting_the_interval_however_spans_nest():
    base = datetime(2026, 3, 2, 9, tzinfo=LONDON)
    rnd = random.Random(3)
    for _ in range(200):
        raw = []
        for _ in range(rnd.randint(0, 8)):
            start = base + timedelta(minutes=rnd.randint(0, 600))
            raw.append((start, start + timedelta(minutes=rnd.randint(0, 300))))
        busy = _Busy(raw)
        for _ in range(20):
            start = base + timedelta(minutes=rnd.randint(-60, 700))
            end = start + timedelta(minutes=rnd.randint(1, 120))
            assert busy.overlaps(start, end) == any(s < end and e > start for s, e in raw)
