"""Benchmark sections. Each takes the report and records its figures.

Sections run in order; `ALL` lists them. Data is made here, in the bench
database, with fixed seeds so two runs measure the same work.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bench.procs import analyze

CODES = ["botox", "filler", "microneedling", "plasma_pen"]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _history(n: int, *, seed: int, until: datetime) -> list:
    from scheduler.rules import EventState, ProcedureEvent

    rnd = random.Random(seed)
    start = until - timedelta(days=20 * 365)
    span = (until - start).total_seconds()
    return [
        ProcedureEvent(
            f"e{i}",
            rnd.choice(CODES),
            start + timedelta(seconds=int(rnd.random() * span) // 60 * 60),
            rnd.choice([None, "face", "neck"]),
            state=rnd.choice([EventState.DONE, EventState.DONE, EventState.VOID]),
        )
        for i in range(n)
    ]


def engine(report, *, quick: bool, database_url: str, **_) -> None:
    """In-process eligibility checks over timelines of 10 to 10,000 events."""
    from scheduler.rules import Proposal, Timeline, evaluate
    from scheduler.selectors import rulebook_load

    tz = ZoneInfo("Europe/London")
    rules = rulebook_load(None)  # the defaults: no organisation
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    samples_per_size = 300 if quick else 3000
    medians = {}
    for size in (10, 100, 1_000, 10_000):
        timeline = Timeline(_history(size, seed=size, until=now))
        rnd = random.Random(7)
        proposals = [
            Proposal(rnd.choice(CODES), now + timedelta(minutes=15 * rnd.randrange(0, 4 * 24 * 90)))
            for _ in range(samples_per_size)
        ]
        samples = []
        for proposal in proposals:
            began = time.perf_counter()
            evaluate(timeline, rules, proposal, tz)
            samples.append(time.perf_counter() - began)
        medians[size] = statistics.median(samples)
        report.add(f"engine_check_median_{size}_events", medians[size] * 1000, "ms")
        report.add(
            f"engine_check_p99_{size}_events",
            _percentile(samples, 0.99) * 1000,
            "ms",
            target="< 2 ms" if size == 10_000 else "",
        )
    report.add("engine_growth_10_to_10000_events", medians[10_000] / medians[10], "x", target="< 5x")


def busy_clinic(*, code: str, name: str, practitioner: str, others: int, days: int, seed: int, now, tz) -> tuple:
    """A London clinic whose three practitioners (Mon-Sat 09-18, every bookable procedure) are two-thirds booked
    by `others` patients for `days` days from tomorrow (shuffled by `seed`, so every run books the same); the
    clinic, its practitioners and how many appointments were made."""
    from datetime import time as clock

    from clinic.models import Appointment, AppointmentStatus, Clinic, Patient, Practitioner, ProcedureType, WorkingHours

    clinic, _ = Clinic.objects.get_or_create(code=code, defaults={"name": name, "timezone": "Europe/London"})
    practitioners = []
    for index in range(3):
        member, _ = Practitioner.objects.get_or_create(clinic=clinic, name=f"{practitioner} {index}")
        member.procedures.set(ProcedureType.objects.filter(bookable=True))
        WorkingHours.objects.filter(practitioner=member).delete()
        WorkingHours.objects.bulk_create(
            WorkingHours(practitioner=member, weekday=d, start_time=clock(9), end_time=clock(18)) for d in range(6)
        )
        practitioners.append(member)
    patients = Patient.objects.bulk_create(
        Patient(clinic=clinic, organisation_id=clinic.organisation_id, first_name=f"Other{i}", last_name=name)
        for i in range(others)
    )
    rnd = random.Random(seed)
    bookings = []
    day = now.astimezone(tz).date() + timedelta(days=1)
    for _ in range(days):
        if day.weekday() < 6:
            for p_index, member in enumerate(practitioners):
                for hour in range(9, 18):
                    if rnd.random() < 0.67:
                        start = datetime.combine(day, clock(hour), tzinfo=tz)
                        # A patient is in one place at a time (the exclusion constraint): different per practitioner.
                        other = patients[(p_index + 3 * hour + day.toordinal()) % len(patients)]
                        bookings.append(
                            Appointment(
                                clinic=clinic,
                                patient=other,
                                practitioner=member,
                                procedure_id="botox",
                                start_at=start,
                                end_at=start + timedelta(minutes=60),
                                status=AppointmentStatus.CONFIRMED,
                            )
                        )
        day += timedelta(days=1)
    Appointment.objects.bulk_create(bookings, batch_size=2000)
    analyze()
    return clinic, practitioners, len(bookings)


def availability(report, *, quick: bool, database_url: str, **_) -> None:
    """A 90-day availability query for a patient with a long history at a busy clinic."""
    from clinic.models import Patient, ProcedureRecord
    from scheduler.booking import appointment_slots

    tz = ZoneInfo("Europe/London")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Two thirds of every practitioner's hours booked for 90 days.
    clinic, practitioners, booked = busy_clinic(
        code="bench-busy", name="Busy", practitioner="Bench practitioner", others=50, days=92, seed=3, now=now, tz=tz
    )
    patient = Patient.objects.create(clinic=clinic, first_name="Long", last_name="History")
    ProcedureRecord.objects.bulk_create(
        ProcedureRecord(
            patient=patient,
            procedure_id=event.procedure,
            performed_at=event.start_at,
            area_id=event.area,
            source="clinic",
        )
        for event in _history(1_000, seed=11, until=now - timedelta(days=1))
    )
    report.add("availability_busy_clinic_appointments", booked, "appointments")

    runs = 5 if quick else 20

    def search(code: str, days: int) -> tuple[list[float], float, int]:
        """Wall seconds of each run, CPU seconds per run (this process and its PostgreSQL backend), slots."""
        cpu_before = time.process_time() + _backend_cpu()
        samples, found = [], 0
        for _ in range(runs):
            began = time.perf_counter()
            found = len(
                appointment_slots(
                    patient=patient,
                    procedure_code=code,
                    window_start=now,
                    window_end=now + timedelta(days=days),
                    now=now,
                )
            )
            samples.append(time.perf_counter() - began)
        return samples, (time.process_time() + _backend_cpu() - cpu_before) / runs, found

    search("botox", 14)  # warm: the rule book is read once per process
    # 14 days (the API's default window) of a procedure the long history allows now; 90 days of one it
    # blocks for the first weeks (the engine's blocked ranges cut the window).
    for days, code, target in ((14, "botox", "< 15 ms"), (90, "microneedling", "< 40 ms")):
        samples, cpu, found = search(code, days)
        report.add(f"availability_{days}_days_median", statistics.median(samples) * 1000, "ms", target=target)
        report.add(f"availability_{days}_days_max", max(samples) * 1000, "ms")
        report.add(
            f"availability_{days}_days_cpu",
            cpu * 1000,
            "ms",
            note="CPU per search, Python and PostgreSQL: the median on an idle machine is close to this",
        )
        report.add(f"availability_{days}_days_slots", found, "slots")
    _availability_pages(report, runs=runs, now=now)


def _availability_pages(report, *, runs: int, now: datetime) -> None:
    """What the API's availability answer makes: a page (`count` and 50 slots), against every slot of the window
    (what it made before the slots were made a day at a time), at a clinic of 8 practitioners with open calendars
    (Mon-Sat 09-18), for a patient with no history. In process, CPU of this process per search."""
    from datetime import time as clock

    from clinic.models import Clinic, Patient, Practitioner, ProcedureType, WorkingHours
    from scheduler.booking import appointment_slots, free_appointment_slots

    clinic = Clinic.objects.create(code="bench-open", name="Open", timezone="Europe/London")
    bookable = list(ProcedureType.objects.filter(bookable=True))
    for index in range(8):
        member = Practitioner.objects.create(clinic=clinic, name=f"Open practitioner {index}")
        member.procedures.set(bookable)
        WorkingHours.objects.bulk_create(
            WorkingHours(practitioner=member, weekday=d, start_time=clock(9), end_time=clock(18)) for d in range(6)
        )
    patient = Patient.objects.create(clinic=clinic, first_name="New", last_name="Patient")
    asked = {"patient": patient, "procedure_code": "botox", "window_start": now, "now": now}

    def cpu_ms(read, *args) -> float:
        began = time.process_time()
        for _ in range(runs):
            read(*args)
        return (time.process_time() - began) * 1000 / runs

    def page(window: dict, first: int) -> tuple:
        found = free_appointment_slots(**window)
        return len(found), found[first : first + 50]

    for days in (14, 90):
        window = {**asked, "window_end": now + timedelta(days=days)}
        report.add(f"availability_open_{days}_days_slots", len(appointment_slots(**window)), "slots")
        report.add(
            f"availability_open_{days}_days_every_slot_cpu",
            cpu_ms(lambda window: appointment_slots(**window), window),
            "ms",
            note="every slot made: the API before",
        )
        report.add(f"availability_open_{days}_days_first_page_cpu", cpu_ms(page, window, 0), "ms", note="count, 50")
        report.add(
            f"availability_open_{days}_days_later_page_cpu", cpu_ms(page, window, 1000), "ms", note="count, 1000-1049"
        )


def _backend_cpu() -> float:
    """CPU seconds of this process's PostgreSQL backend (same machine), from /proc."""
    import os

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calendar_day(report, *, quick: bool, database_url: str, **_) -> None:
    """The front desk's calendar day view (frontdesk/views/calendar.py) of a clinic with 10 practitioners
    and 120 appointments, through the whole Django stack in-process: server time, no network."""
    from datetime import time as clock

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from clinic.models import (
        Appointment,
        AppointmentStatus,
        Clinic,
        Patient,
        Practitioner,
        StaffMembership,
        StaffRole,
        TimeOff,
        WorkingHours,
    )

    tz = ZoneInfo("Europe/London")
    clinic, _ = Clinic.objects.get_or_create(
        code="bench-calendar", defaults={"name": "Bench calendar", "timezone": "Europe/London"}
    )
    day = datetime(2026, 3, 2, tzinfo=tz).date()  # a Monday
    practitioners = [
        Practitioner.objects.create(clinic=clinic, name=f"Calendar practitioner {i:02d}") for i in range(10)
    ]
    WorkingHours.objects.bulk_create(
        WorkingHours(practitioner=p, weekday=d, start_time=clock(9), end_time=clock(18))
        for p in practitioners
        for d in range(6)
    )
    TimeOff.objects.create(
        practitioner=practitioners[0],
        start_at=datetime.combine(day, clock(13), tzinfo=tz),
        end_at=datetime.combine(day, clock(14), tzinfo=tz),
        reason="Lunch meeting",
    )
    patients = Patient.objects.bulk_create(
        Patient(clinic=clinic, organisation_id=clinic.organisation_id, first_name=f"Cal{i}", last_name="Bench")
        for i in range(120)
    )
    rnd = random.Random(5)
    statuses = [AppointmentStatus.CONFIRMED] * 6 + [AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.COMPLETED]
    bookings = []
    for n, practitioner in enumerate(practitioners):  # 12 each: 09:00 to 17:15, 45 minutes apart
        for k in range(12):
            start = datetime.combine(day, clock(9), tzinfo=tz) + timedelta(minutes=45 * k)
            bookings.append(
                Appointment(
                    clinic=clinic,
                    patient=patients[n * 12 + k],
                    practitioner=practitioner,
                    procedure_id=rnd.choice(CODES),
                    start_at=start,
                    end_at=start + timedelta(minutes=30),
                    status=rnd.choice(statuses),
                )
            )
    Appointment.objects.bulk_create(bookings)
    user = get_user_model().objects.create_user(username="bench-calendar-desk", password=None)
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
    client = Client()
    client.force_login(user)
    path = f"/clinic/{clinic.code}/calendar/?date={day.isoformat()}"
    client.get(path)  # templates compiled, connections open
    runs = 10 if quick else 50
    samples, cpu = [], []
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        response = client.get(path)
        samples.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)  # this process only: steadier than wall time on a busy machine
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    report.add("calendar_day_appointments", len(bookings), "appointments")
    report.add("calendar_day_view_median", statistics.median(samples) * 1000, "ms", target="< 300 ms")
    report.add("calendar_day_view_max", max(samples) * 1000, "ms")
    report.add("calendar_day_view_cpu_median", statistics.median(cpu) * 1000, "ms")
    report.add("calendar_day_view_queries", len(queries), "queries")


def plans(report, *, quick: bool, database_url: str, **_) -> None:
    """Planning a 6-session course across 12 months (plans.services.plan_propose: the timeline, the rule book,
    the practitioners' calendars read in chunks, the pure planner) for a patient with 1,000 history events at
    a clinic two-thirds booked for 13 months."""
    from clinic.models import Patient, ProcedureRecord
    from plans.models import PlanTemplate
    from plans.services import plan_propose

    tz = ZoneInfo("Europe/London")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Two thirds of every hour booked, 13 months ahead.
    clinic, practitioners, booked = busy_clinic(
        code="bench-plans",
        name="Bench plans",
        practitioner="Plans practitioner",
        others=60,
        days=400,
        seed=17,
        now=now,
        tz=tz,
    )
    patient = Patient.objects.create(
        clinic=clinic, organisation_id=clinic.organisation_id, first_name="Course", last_name="Patient"
    )
    ProcedureRecord.objects.bulk_create(
        ProcedureRecord(
            patient=patient,
            procedure_id=event.procedure,
            performed_at=event.start_at,
            area_id=event.area,
            source="clinic",
        )
        for event in _history(1_000, seed=23, until=now - timedelta(days=30))
    )
    course, _ = PlanTemplate.objects.get_or_create(
        code="bench-six-sessions",
        organisation=None,
        defaults={
            "name": "Six sessions over a year (bench)",
            "procedure_id": "microneedling",
            "sessions": 6,
            "min_gap_value": 7,
            "min_gap_unit": "weeks",
            "ideal_gap_value": 9,
            "ideal_gap_unit": "weeks",
            "max_gap_value": 11,
            "max_gap_unit": "weeks",
        },
    )
    report.add("plans_busy_clinic_appointments", booked, "appointments")

    def propose():
        return plan_propose(patient=patient, clinic=clinic, template=course, start_at=now + timedelta(days=1))

    plan = propose().plan  # connections open, rule book cached
    assert plan.feasible and len(plan.sessions) == 6, plan.obstacle
    span = plan.sessions[-1].start_at - plan.sessions[0].start_at
    runs = 10 if quick else 50
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        propose()
        samples.append(time.perf_counter() - began)
    report.add("plans_course_span", span.days, "days")
    report.add("plans_six_session_course_median", statistics.median(samples) * 1000, "ms", target="< 50 ms")
    report.add("plans_six_session_course_max", max(samples) * 1000, "ms")


def schema(report, *, quick: bool, **_) -> None:
    """The published OpenAPI schema (api/published.py). Baseline: drf-spectacular's own view, which generates and
    renders the schema for every request; both views called in-process, CPU of this process per request."""
    from django.test import Client, RequestFactory, override_settings
    from drf_spectacular.views import SpectacularAPIView

    from api import published

    factory = RequestFactory()
    runs = 3 if quick else 15

    def cpu_ms(view, path: str, **headers) -> float:
        began = time.process_time()
        response = view(factory.get(path, **headers))
        if hasattr(response, "render"):
            response.render()
        assert response.status_code in (200, 304), response.status_code
        return (time.process_time() - began) * 1000

    theirs, ours = SpectacularAPIView.as_view(), published.PublishedSchemaApi.as_view()
    with override_settings(API_THROTTLE_RATE="1000000/min"):  # one caller asks hundreds of times here
        for label, path in (("yaml", "/api/v1/schema/"), ("json", "/api/v1/schema/?format=json")):
            baseline = statistics.median(cpu_ms(theirs, path) for _ in range(runs))
            published.schema_renderings_forget()
            first = cpu_ms(ours, path)
            later = statistics.median(cpu_ms(ours, path) for _ in range(runs * 20))
            report.add(f"schema_{label}_baseline_cpu_median", baseline, "ms", note="drf-spectacular's view")
            report.add(f"schema_{label}_first_cpu", first, "ms", note="a process's first: generated, rendered")
            report.add(f"schema_{label}_cpu_median", later, "ms")
            report.add(f"schema_{label}_speedup", baseline / later, "x", note="baseline / later requests")
        client = Client()
        etag = client.get("/api/v1/schema/")["ETag"]
        held = statistics.median(cpu_ms(ours, "/api/v1/schema/", HTTP_IF_NONE_MATCH=etag) for _ in range(runs * 20))
        report.add("schema_304_cpu_median", held, "ms", note="If-None-Match naming the rendering held")
        began = time.process_time()
        for _ in range(runs * 20):
            assert client.get("/api/v1/schema/").status_code == 200
        full_stack = (time.process_time() - began) * 1000 / (runs * 20)
        report.add("schema_full_stack_cpu_mean", full_stack, "ms", note="through every middleware")


def _load(report, **kwargs) -> None:
    from bench.load import booking_load

    booking_load(report, **kwargs)


def _reminders(report, **kwargs) -> None:
    from bench.pipeline import reminder_pipeline

    reminder_pipeline(report, **kwargs)


def _faults(report, **kwargs) -> None:
    from bench.faults import faults

    faults(report, **kwargs)


ALL = [
    ("engine", engine),
    ("availability", availability),
    ("calendar", calendar_day),
    ("plans", plans),
    ("schema", schema),
    ("booking", _load),
    ("reminders", _reminders),
    ("faults", _faults),
]
