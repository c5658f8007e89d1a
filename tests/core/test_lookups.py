"""core.lookups: the status list written into the statement selects what `status__in` selects, and the range
overlap selects what the two comparisons select (PostgreSQL), so the hot reads can use the exclusion constraints'
partial indexes without answering differently."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from clinic.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus
from core.lookups import InLiterals, SpansOverlap
from tests.factories import PatientFactory, PractitionerFactory

pytestmark = pytest.mark.usefixtures("catalogue")
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def appointments():
    rnd = random.Random(5)
    clinic = PatientFactory().clinic
    rows = []
    for status in list(AppointmentStatus) * 8:
        start = T0 + timedelta(minutes=rnd.randrange(0, 24 * 60, 5))
        rows.append(
            Appointment(
                clinic=clinic,
                # one patient and one practitioner per row: the exclusion constraints let active rows overlap
                # only across them
                patient=PatientFactory(clinic=clinic),
                practitioner=PractitionerFactory(clinic=clinic, hours=[]),
                procedure_id="botox",
                start_at=start,
                end_at=start + timedelta(minutes=rnd.choice([5, 30, 45, 90, 600])),
                status=status,
            )
        )
    Appointment.objects.bulk_create(rows)
    return rows


def test_in_literals_selects_what_status_in_selects_and_binds_no_status(appointments):
    bound = set(Appointment.objects.filter(status__in=ACTIVE_APPOINTMENT_STATUSES).values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as queries:
        written = set(
            Appointment.objects.filter(InLiterals(F("status"), ACTIVE_APPOINTMENT_STATUSES)).values_list(
                "pk", flat=True
            )
        )
    assert written == bound and 0 < len(bound) < len(appointments)
    [query] = queries.captured_queries
    assert "IN ('pending_clearance', 'confirmed', 'needs_review')" in query["sql"]


@pytest.mark.parametrize("values", [[], ["confirmed", "x' OR '1'='1"], ["a b"], ["café"], ["confirmed\n"]])
def test_in_literals_takes_plain_codes_only(values):
    with pytest.raises(ValueError):
        InLiterals(F("status"), values)


@pytest.mark.postgres
def test_beside_the_two_comparisons_spans_overlap_selects_what_they_select_whatever_the_window(appointments):
    rnd = random.Random(11)
    for _ in range(80):
        lo = T0 + timedelta(minutes=rnd.randrange(-120, 26 * 60, 5))
        hi = lo + timedelta(minutes=rnd.choice([-60, -5, 0, 0, 5, 15, 60, 240]))  # empty and reversed too
        compared = Appointment.objects.filter(start_at__lt=hi, end_at__gt=lo)
        both = compared.filter(SpansOverlap(F("start_at"), F("end_at"), lo, hi))
        assert set(both.values_list("pk", flat=True)) == set(compared.values_list("pk", flat=True))
        if hi > lo:  # alone, for a real window: the same but for a span starting exactly at its end
            alone = Appointment.objects.filter(SpansOverlap(F("start_at"), F("end_at"), lo, hi)).exclude(start_at=hi)
            assert set(alone.values_list("pk", flat=True)) == set(compared.values_list("pk", flat=True))


def test_spans_overlap_elsewhere_is_refused_not_answered_wrongly(appointments):
    query = Appointment.objects.filter(SpansOverlap(F("start_at"), F("end_at"), T0, T0 + timedelta(hours=1)))
    if connection.vendor == "postgresql":
        assert list(query)  # answered (what it answers: the test above)
    else:
        with pytest.raises(NotImplementedError):
            list(query)
