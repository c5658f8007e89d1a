"""Review probe dec7e: the follow-ups of commits ea45509 (the desk for practitioners gone) and 451d8b7 (a course books
the procedure it was made for; setup_demo creates only what is missing), attacked where they meet other paths.

What is probed, and why (docs/frontdesk.md, Today and "The calendar"; docs/plans.md, "A template in use" and
"Re-plan"; README.md, Quick start):

- A practitioner moved back to the old site, switched off and on again, moved to another organisation's clinic: the
  old site's Today list ("Practitioner no longer here"), calendar, feed and day sheet follow where they work now, and
  no desk reads another organisation's site, patients or words.
- A practitioner with visits at both sites on one day: each site shows its own visits in the right column, and the
  new site offers no quarter hour the practitioner already spends at the old one.
- The new Today list's count against the calendar's cards; the other Today lists that may hold the same visit.
- A course whose every session was cancelled, then re-planned; a course made with an area; a template in use edited
  in its other fields (sessions, kind, organisation) or switched off: what the desk and a re-plan then read.
- setup_demo over a database an administrator changed: a demo practitioner deleted, a demo clinic's code renamed;
  `--no-demo`, then the demo twice.

World: the QA probes' London clinic (organisation of its own, "Dr Ada", patient "Pat Lee"), its sister site West,
and the New York clinic of another organisation; the suite's clock, Monday 2 March 2026, 09:00 London.
"""

from __future__ import annotations

from datetime import date, timedelta
from io import StringIO

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from clinic.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Organisation,
    Patient,
    Practitioner,
    StaffMembership,
    StaffRole,
    TimeOff,
    WorkingHours,
)
from core.errors import InvalidInput
from frontdesk import selectors
from plans.defaults import plan_templates_load
from plans.models import PlanKind, PlanSession, PlanTemplate, TreatmentPlan
from plans.recalls import recall_for
from plans.services import plan_book, plan_replan
from scheduler.booking import (
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_reschedule,
    appointment_slots,
)
from tests.factories import PatientFactory, PractitionerFactory
from tests.qa.helpers import NOW, RECEPTION, book, fresh_appointment, ldn, squash, staff_client

pytestmark = pytest.mark.django_db

TUESDAY = "2026-03-03"
ON_TUESDAY = date(2026, 3, 3)
MN = "microneedling-course"


def page(client, name: str, clinic, *args, **query) -> str:
    response = client.get(reverse(f"frontdesk:{name}", args=[clinic.code, *args]), query)
    assert response.status_code == 200, (name, response.status_code)
    return squash(response)


def feed(client, clinic, start=TUESDAY, end="2026-03-04") -> dict:
    response = client.get(reverse("frontdesk:calendar_events", args=[clinic.code]), {"start": start, "end": end})
    assert response.status_code == 200
    return response.json()


def gone_panel(today: str) -> str:
    """Today's "Practitioner no longer here" panel ("" when there is none)."""
    start = today.find('aria-labelledby="gone-heading"')
    return "" if start < 0 else today[start : today.find("</section>", start)]


def panel(today: str, heading_id: str) -> str:
    start = today.find(f'aria-labelledby="{heading_id}"')
    return "" if start < 0 else today[start : today.find("</section>", start)]


def move(practitioner, clinic) -> None:
    practitioner.clinic = clinic
    practitioner.save(update_fields=["clinic"])


def switch(practitioner, on: bool) -> None:
    practitioner.is_active = on
    practitioner.save(update_fields=["is_active"])


@pytest.fixture
def desk(clinic):
    return staff_client(clinic, StaffRole.RECEPTIONIST, "desk-london")


@pytest.fixture
def west_desk(west):
    return staff_client(west, StaffRole.RECEPTIONIST, "desk-west")


@pytest.fixture
def ny_desk(other_clinic):
    return staff_client(other_clinic, StaffRole.RECEPTIONIST, "desk-ny")


@pytest.fixture
def colleague(clinic):
    return PractitionerFactory(clinic=clinic, name="Dr Stays")


@pytest.fixture
def visit(patient, practitioner, colleague, clock):
    """Pat Lee's Botox with Dr Ada on Tuesday 3 March, 10:00 London (booked while Dr Ada worked here)."""
    return book(patient, ldn(2026, 3, 3, 10), NOW, code="botox", practitioner_id=practitioner.pk)


# --- Moves and switches the desk follows -----------------------------------------------------------------------------


def test_a_practitioner_moved_back_to_the_old_site_is_an_ordinary_column_again_and_leaves_today(
    desk, clinic, west, practitioner, visit
):
    move(practitioner, west)
    assert "Dr Ada works at another site now." in gone_panel(page(desk, "today", clinic))

    move(practitioner, clinic)

    assert gone_panel(page(desk, "today", clinic)) == ""
    calendar = page(desk, "calendar", clinic, date=TUESDAY)
    assert '<th scope="col" class="cal-head">Dr Ada</th>' in calendar
    assert f"?practitioner={practitioner.pk}&amp;start_at=" in calendar
    assert {r["title"]: r["active"] for r in feed(desk, clinic)["resources"]}["Dr Ada"] is True
    sheet = page(desk, "day_sheet", clinic, date=TUESDAY)
    assert "Dr Ada · Tuesday 3 March 2026" in sheet and "another site" not in sheet


def test_a_practitioner_switched_off_and_on_again_is_bookable_again_and_leaves_today(
    desk, clinic, practitioner, patient, visit, clock
):
    switch(practitioner, False)
    assert "Dr Ada is no longer active." in gone_panel(page(desk, "today", clinic))

    switch(practitioner, True)

    assert gone_panel(page(desk, "today", clinic)) == ""
    assert "No longer active" not in page(desk, "calendar", clinic, date=TUESDAY)
    slots = appointment_slots(
        patient=patient,
        procedure_code="botox",
        window_start=ldn(2026, 3, 5, 9),
        window_end=ldn(2026, 3, 5, 10),
        now=NOW,
        clinic_id=clinic.pk,
    )
    assert str(practitioner.pk) in {s.practitioner_id for s in slots}


def test_moved_to_another_organisations_clinic_the_old_desk_reads_no_word_of_the_new_one(
    desk, clinic, other_clinic, practitioner, visit
):
    """The old site's Today, calendar, feed, day sheet and the visit's page show the visit, and nothing of where the
    practitioner works now: that is another organisation's."""
    move(practitioner, other_clinic)

    today = page(desk, "today", clinic)
    assert str(visit.pk) in gone_panel(today) and "Dr Ada works at another site now." in gone_panel(today)
    shown = [
        today,
        page(desk, "calendar", clinic, date=TUESDAY),
        page(desk, "day_sheet", clinic, date=TUESDAY),
        page(desk, "appointment", clinic, visit.pk),
        str(feed(desk, clinic)),
    ]
    for text in shown:
        assert "New York" not in text and other_clinic.code not in text and other_clinic.organisation.name not in text


def test_moved_to_another_organisation_the_new_desk_sees_nothing_of_the_old_visits(
    ny_desk, other_clinic, practitioner, visit
):
    move(practitioner, other_clinic)

    shown = [
        page(ny_desk, "today", other_clinic),
        page(ny_desk, "calendar", other_clinic, date=TUESDAY),
        page(ny_desk, "day_sheet", other_clinic, date=TUESDAY),
        str(feed(ny_desk, other_clinic)),
    ]
    for text in shown:
        assert str(visit.pk) not in text and "Pat Lee" not in text
    response = ny_desk.get(reverse("frontdesk:appointment", args=[other_clinic.code, visit.pk]))
    assert response.status_code == 404


def test_time_off_the_new_organisation_gives_is_not_read_in_its_words_at_the_old_desk(
    desk, clinic, other_clinic, practitioner, visit
):
    move(practitioner, other_clinic)
    TimeOff.objects.create(
        practitioner=practitioner,
        start_at=ldn(2026, 3, 3, 8),
        end_at=ldn(2026, 3, 3, 18),
        reason="Induction at Manhattan Skin, 5th Ave",
    )

    today = page(desk, "today", clinic)
    calendar = page(desk, "calendar", clinic, date=TUESDAY)

    assert str(visit.pk) in gone_panel(today)  # the desk is told, in its own words
    assert "Manhattan" not in today and "Manhattan" not in calendar


def test_a_move_at_the_old_site_keeping_one_who_moved_away_is_refused_saying_so_not_a_500(
    desk, clinic, west, practitioner, visit
):
    """The desk's move page still opens; a move that names nobody (keeping Dr Ada) is refused as bad input naming
    the practitioner or the clinic, and the visit stays where it was."""
    move(practitioner, west)
    assert "Dr Ada" in page(desk, "reschedule", clinic, visit.pk)

    with pytest.raises(InvalidInput) as refused:
        appointment_reschedule(
            appointment=fresh_appointment(visit), start_at=ldn(2026, 3, 4, 10), actor=RECEPTION, now=NOW
        )

    assert set(refused.value.errors) & {"practitioner", "clinic"}
    assert fresh_appointment(visit).start_at == ldn(2026, 3, 3, 10)


# --- A practitioner with visits at both sites on one day -------------------------------------------------------------


@pytest.fixture
def both_sites(patient, practitioner, west, visit, clock):
    """Dr Ada moved to West after the London visit at 10:00 was booked; a West patient booked with her at 12:00."""
    move(practitioner, west)
    there = PatientFactory(clinic=west, first_name="Wendy", last_name="West")
    return visit, book(there, ldn(2026, 3, 3, 12), NOW, code="botox", practitioner_id=practitioner.pk)


def test_each_site_shows_its_own_visit_of_one_who_works_at_both_on_one_day(
    desk, west_desk, clinic, west, practitioner, both_sites
):
    old, new = both_sites
    london = page(desk, "calendar", clinic, date=TUESDAY)
    assert f'data-appointment="{old.pk}"' in london and f'data-appointment="{new.pk}"' not in london
    assert 'Dr Ada <span class="tag">Works at another site now</span>' in london
    west_page = page(west_desk, "calendar", west, date=TUESDAY)
    assert f'data-appointment="{new.pk}"' in west_page and f'data-appointment="{old.pk}"' not in west_page
    assert '<th scope="col" class="cal-head">Dr Ada</th>' in west_page
    assert [r["active"] for r in feed(west_desk, west)["resources"] if r["title"] == "Dr Ada"] == [True]
    assert [r["active"] for r in feed(desk, clinic)["resources"] if r["title"] == "Dr Ada"] == [False]
    assert "Dr Ada (works at another site now)" in page(desk, "day_sheet", clinic, date=TUESDAY)
    sheet = page(west_desk, "day_sheet", west, date=TUESDAY)
    assert "Dr Ada · Tuesday 3 March 2026" in sheet and "(works at another site now)" not in sheet


def test_the_new_site_books_nobody_over_the_quarter_hours_spent_at_the_old_one(west, practitioner, both_sites, clock):
    old, _ = both_sites
    there = PatientFactory(clinic=west, first_name="Nia", last_name="Hughes")
    slots = appointment_slots(
        patient=there,
        procedure_code="botox",
        window_start=ldn(2026, 3, 3, 10),
        window_end=ldn(2026, 3, 3, 10, 30),
        now=NOW,
        clinic_id=west.pk,
    )
    hers = {s.start_at for s in slots if s.practitioner_id == str(practitioner.pk)}
    assert hers and not hers & {ldn(2026, 3, 3, 10), ldn(2026, 3, 3, 10, 15)}  # 10:30 is free again
    with pytest.raises(UnableToBook, match="Dr Ada already has an appointment at that time"):
        appointment_book(
            patient=there,
            procedure_code="botox",
            start_at=ldn(2026, 3, 3, 10),
            actor=RECEPTION,
            now=NOW,
            practitioner_id=practitioner.pk,
            clinic_id=west.pk,
        )
    assert Appointment.objects.filter(practitioner=practitioner, start_at=ldn(2026, 3, 3, 10)).count() == 1


def test_the_new_sites_calendar_offers_no_cell_the_practitioner_spends_at_the_old_site(west, practitioner, both_sites):
    user = get_user_model().objects.create_user(username="grid-west", password="pw-for-qa-only-123")
    StaffMembership.objects.create(user=user, clinic=west, role=StaffRole.RECEPTIONIST)
    grid = selectors.day_grid(user=user, clinic=west, day=ON_TUESDAY, now=NOW)
    n = [c.practitioner.name for c in grid.columns].index("Dr Ada")
    at_ten = [row.cells[n] for row in grid.rows if row.cells[n].starts_at == ldn(2026, 3, 3, 10)]

    assert at_ten and not any(c.kind == "free" and c.bookable for c in at_ten)


# --- Today's list against the calendar and the other lists ------------------------------------------------------------


def test_todays_count_is_the_number_of_their_cards_the_old_sites_feed_shows(
    desk, clinic, west, patient, practitioner, colleague, clock
):
    """Three visits still to come with Dr Ada (one waiting for clearance, one under way now), one over, one cancelled;
    one with a colleague. Today counts the three; the week's feed shows exactly those under her inactive column."""
    under_way = Appointment.objects.create(
        clinic=clinic,
        patient=patient,
        practitioner=practitioner,
        procedure_id="botox",
        start_at=NOW - timedelta(minutes=10),
        end_at=NOW + timedelta(minutes=20),
        status=AppointmentStatus.CONFIRMED,
    )
    later = [book(patient, ldn(2026, 3, day, 10), NOW, code="botox", practitioner_id=practitioner.pk) for day in (4, 5)]
    Appointment.objects.filter(pk=later[0].pk).update(status=AppointmentStatus.PENDING_CLEARANCE)
    cancelled = book(patient, ldn(2026, 3, 6, 10), NOW, code="botox", practitioner_id=practitioner.pk)
    appointment_cancel(appointment=cancelled, actor=RECEPTION, now=NOW, reason="x")
    book(patient, ldn(2026, 3, 6, 11), NOW, code="botox", practitioner_id=colleague.pk)
    move(practitioner, west)

    listed = gone_panel(page(desk, "today", clinic))
    week = feed(desk, clinic, start="2026-03-02", end="2026-03-09")
    hers = {e["id"] for e in week["events"] if e["resourceId"] == str(practitioner.pk)}

    assert '<span class="count">3</span>' in listed
    assert hers == {str(under_way.pk), str(later[0].pk), str(later[1].pk)}
    assert all(str(pk) in listed for pk in hers) and str(cancelled.pk) not in listed


def test_a_visit_whose_practitioner_moved_is_listed_once_not_also_outside_working_hours(
    desk, clinic, west, practitioner, visit
):
    move(practitioner, west)
    WorkingHours.objects.filter(practitioner=practitioner, weekday=1).update(start_time="13:00")  # West's Tuesdays

    today = page(desk, "today", clinic)

    assert str(visit.pk) in gone_panel(today)
    assert str(visit.pk) not in panel(today, "off-hours-heading")


# --- Plans: what a course keeps ---------------------------------------------------------------------------------------


@pytest.fixture
def course(catalogue) -> PlanTemplate:
    plan_templates_load()
    return PlanTemplate.objects.get(code=MN, organisation=None)


@pytest.fixture
def plan(patient, clinic, practitioner, course, clock) -> TreatmentPlan:
    return plan_book(
        patient=patient, clinic=clinic, template=course, start_at=ldn(2026, 3, 9, 9), actor=RECEPTION, now=NOW
    )


def sessions_of(plan) -> list[PlanSession]:
    return list(PlanSession.objects.filter(plan=plan).select_related("appointment").order_by("index"))


def test_a_course_whose_every_session_was_cancelled_is_replanned_as_the_treatment_it_was_made_for(plan, course):
    for session in sessions_of(plan):
        appointment_cancel(appointment=session.appointment, actor=RECEPTION, now=NOW, reason="patient away")
    PlanTemplate.objects.filter(pk=course.pk).update(procedure_id="botox")  # around the admin

    plan_replan(
        plan=TreatmentPlan.objects.get(pk=plan.pk), from_index=1, start_at=ldn(2026, 3, 16, 9), actor=RECEPTION, now=NOW
    )

    booked = [s.appointment for s in sessions_of(plan)]
    assert [a.status != AppointmentStatus.CANCELLED for a in booked] == [True, True, True]
    assert {a.procedure_id for a in booked} == {"microneedling"}
    assert {a.end_at - a.start_at for a in booked} == {timedelta(minutes=60)}


def test_a_recall_after_a_session_of_a_template_changed_around_the_admin_is_for_the_courses_treatment(plan, course):
    first, second, third = sessions_of(plan)
    for later in (second, third):
        appointment_cancel(appointment=later.appointment, actor=RECEPTION, now=NOW, reason="x")
    PlanTemplate.objects.filter(pk=course.pk).update(procedure_id="botox")

    due = recall_for(appointment=fresh_appointment(first.appointment))

    assert due is not None and due.procedure == "microneedling"


def test_a_course_made_with_an_area_is_replanned_in_that_area_whatever_the_template_says_now(
    patient, clinic, practitioner, course, clock
):
    plan = plan_book(
        patient=patient,
        clinic=clinic,
        template=course,
        start_at=ldn(2026, 3, 9, 9),
        actor=RECEPTION,
        now=NOW,
        area_code="face",
    )
    first, second, _ = sessions_of(plan)
    assert first.appointment.area_id == "face"
    appointment_cancel(appointment=second.appointment, actor=RECEPTION, now=NOW, reason="x")
    PlanTemplate.objects.filter(pk=course.pk).update(area_id="neck")

    plan_replan(
        plan=TreatmentPlan.objects.get(pk=plan.pk), from_index=2, start_at=ldn(2026, 4, 6, 9), actor=RECEPTION, now=NOW
    )

    assert {s.appointment.area_id for s in sessions_of(plan)} == {"face"}


def test_a_templates_session_count_edited_in_use_changes_no_course_under_way(admin_client, desk, clinic, plan, course):
    from tests.plans.helpers import admin_change

    assert admin_change(admin_client, course, sessions=5).status_code == 302
    second = sessions_of(plan)[1].appointment
    day = second.start_at.astimezone(clinic.tz).date().isoformat()

    card = page(desk, "calendar", clinic, date=day)
    assert "Session 2 of 3" in card and "of 5" not in card
    plan_replan(
        plan=TreatmentPlan.objects.get(pk=plan.pk), from_index=2, start_at=ldn(2026, 4, 13, 9), actor=RECEPTION, now=NOW
    )
    assert PlanSession.objects.filter(plan=plan).count() == 3


def test_a_templates_kind_edited_in_use_leaves_the_courses_cards_as_they_were(admin_client, desk, clinic, plan, course):
    from tests.plans.helpers import admin_change

    refused = admin_change(admin_client, course, kind=PlanKind.MAINTENANCE)  # decided: a template in use keeps its kind
    assert refused.status_code == 200 and b"its kind cannot change" in refused.content
    second = sessions_of(plan)[1].appointment
    day = second.start_at.astimezone(clinic.tz).date().isoformat()

    assert "Session 2 of 3" in page(desk, "calendar", clinic, date=day)


def test_a_template_in_use_is_not_moved_to_another_organisation_without_a_word(
    admin_client, plan, course, other_clinic
):
    from tests.plans.helpers import admin_change

    response = admin_change(admin_client, course, organisation=other_clinic.organisation_id)

    assert response.status_code == 200  # refused on the form, as another procedure is
    assert PlanTemplate.objects.get(pk=course.pk).organisation_id is None


def test_a_template_in_use_switched_off_still_replans_its_courses(plan, course):
    PlanTemplate.objects.filter(pk=course.pk).update(is_active=False)
    third = sessions_of(plan)[2]
    appointment_cancel(appointment=third.appointment, actor=RECEPTION, now=NOW, reason="x")

    plan_replan(
        plan=TreatmentPlan.objects.get(pk=plan.pk), from_index=3, start_at=ldn(2026, 4, 20, 9), actor=RECEPTION, now=NOW
    )

    moved = sessions_of(plan)[2].appointment
    assert moved.status != AppointmentStatus.CANCELLED and moved.procedure_id == "microneedling"


# --- setup_demo over a database an administrator changed --------------------------------------------------------------


def setup_demo(*args: str) -> str:
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("setup_demo", *args, stdout=out)
    return out.getvalue()


def demo_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Organisation, Clinic, Practitioner, Patient, StaffMembership, WorkingHours)
    }


def test_setup_demo_no_demo_makes_no_clinic_and_the_demo_twice_makes_it_once(catalogue):
    setup_demo("--no-demo")
    assert Clinic.objects.count() == 0 and Practitioner.objects.count() == 0

    setup_demo("--staff-password", "pw-for-qa-only-123")
    first = demo_counts()
    assert sorted(Clinic.objects.values_list("code", flat=True)) == ["demo", "demo-ny", "demo-west"]
    setup_demo("--staff-password", "pw-for-qa-only-123")
    setup_demo("--no-demo")

    assert demo_counts() == first


def test_setup_demo_does_not_bring_back_a_demo_practitioner_an_administrator_deleted(catalogue):
    setup_demo()
    Practitioner.objects.get(clinic__code="demo", name="Priya Shah, RN").delete()
    before = demo_counts()

    setup_demo()

    assert demo_counts() == before
    assert not Practitioner.objects.filter(name="Priya Shah, RN").exists()


def test_setup_demo_after_the_demo_clinics_code_was_renamed_makes_no_second_demo(catalogue):
    setup_demo("--staff-password", "pw-for-qa-only-123")
    Clinic.objects.filter(code="demo").update(code="london-main")
    before = demo_counts()

    setup_demo("--staff-password", "pw-for-qa-only-123")

    assert Patient.objects.filter(first_name="Olivia", last_name="Bennett").count() == 1
    assert demo_counts() == before
