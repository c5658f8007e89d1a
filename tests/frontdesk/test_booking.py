"""Booking: the live check (htmx), refusals with rule, event and earliest start, one-click slots, posting.

`now` is Monday 2 March 2026 09:00 London (GMT); practitioners work Mon-Sat 09:00-18:00.
Botox five days ago (25 Feb) means microneedling from Wednesday 11 March.
"""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from clinic.models import Appointment, AuditEvent
from tests.factories import PatientFactory, PractitionerFactory
from tests.frontdesk.conftest import url
from tests.frontdesk.html import field_error, squash, text_by_id

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def check(client, clinic, patient, **params):
    return client.get(url("book", clinic, patient), params, **HTMX)


def test_the_empty_booking_page_asks_for_a_procedure(reception, clinic, patient, frozen):
    response = reception.get(url("book", clinic, patient))
    page = squash(response)
    assert "Choose a procedure to see when it is possible" in page
    for field in ("procedure", "area", "practitioner", "date", "time"):
        assert f'<label for="id_{field}">' in page
    assert 'hx-get="' in page and 'aria-live="polite"' in page


def test_a_too_early_microneedling_is_refused_with_rule_event_earliest_start_and_slots(
    reception, clinic, patient, practitioner, botox_five_days_ago, frozen
):
    response = check(reception, clinic, patient, procedure="microneedling", date="2026-03-05", time="10:00")
    page = squash(response)
    assert response.status_code == 200 and "<html" not in page  # only the panel
    assert "Not possible at Thu 5 Mar 2026, 10:00" in page
    assert (
        "Microneedling (collagen induction therapy) must be at least 2 weeks after Botulinum toxin injection "
        "(Botox) (done 25 February 2026 09:00); earliest allowed 11 March 2026."
    ) in page
    assert "Rule source: [001] Yazbek Artistry, microneedling care</span>" in page  # readable, no repo path
    assert 'Earliest eligible start: <strong class="earliest__date">Wed 11 Mar 2026</strong>' in page
    assert "First free times" in page
    assert 'name="start_at" value="2026-03-11T09:00:00+00:00"' in page
    assert "csrfmiddlewaretoken" in page  # each slot is a one-click POST form


def test_with_only_a_procedure_the_first_possible_times_are_offered(
    reception, clinic, patient, practitioner, botox_five_days_ago, frozen
):
    page = squash(check(reception, clinic, patient, procedure="microneedling"))
    assert "Not possible yet" in page and "Wed 11 Mar 2026" in page
    assert "does not work" not in page  # no availability noise when no time was asked for
    assert page.count('class="slot"') == 6


def test_an_allowed_time_offers_a_book_button_and_more_times(reception, clinic, patient, practitioner, frozen):
    page = squash(check(reception, clinic, patient, procedure="botox", date="2026-03-03", time="10:00"))
    assert "Possible at Tue 3 Mar 2026, 10:00, will be confirmed" in page
    assert "Book Tue 3 Mar 2026, 10:00 with Dr Amelia Hart" in page
    assert 'name="start_at" value="2026-03-03T10:00:00+00:00"' in page
    assert "Other free times" in page


def test_a_relative_contraindication_is_shown_as_pending_clearance(
    reception, clinic, patient, practitioner, eczema_history, frozen
):
    page = squash(check(reception, clinic, patient, procedure="microneedling", date="2026-03-03", time="10:00"))
    assert "held pending clearance" in page
    assert "history of Eczema needs a clinician&#x27;s clearance" in page
    assert "each held pending clearance" in page


def test_a_busy_practitioner_is_an_availability_refusal(reception, clinic, patient, practitioner, frozen):
    page = squash(check(reception, clinic, patient, procedure="botox", date="2026-03-08", time="10:00"))  # Sunday
    assert "Not possible at Sun 8 Mar 2026, 10:00" in page
    assert "Dr Amelia Hart does not work at 10:00 on Sunday" in page
    assert "Earliest eligible start" not in page  # the rules allow it; the calendar does not
    assert 'value="2026-03-09T09:00:00+00:00"' in page  # Monday 09:00 offered after it


@pytest.mark.parametrize(
    "day, time, message",
    [
        ("2026-03-29", "01:30", "does not exist in Europe/London"),
        ("2026-10-25", "01:30", "happens twice in Europe/London"),
        ("2026-03-02", "08:00", "That time has already passed"),
    ],
)
def test_impossible_local_times_are_errors_next_to_the_time(
    reception, clinic, patient, practitioner, frozen, day, time, message
):
    full = reception.get(url("book", clinic, patient), {"procedure": "botox", "date": day, "time": time})
    assert message in field_error(full, "id_time")
    partial = squash(check(reception, clinic, patient, procedure="botox", date=day, time=time))
    assert 'id="id_time-error" hx-swap-oob="true"' in partial and message in partial


def test_a_past_day_is_an_error_next_to_the_date(reception, clinic, patient, practitioner, frozen):
    response = reception.get(url("book", clinic, patient), {"procedure": "botox", "date": "2026-03-01"})
    assert field_error(response, "id_date") == "That day has passed; choose today or a later day."


def test_a_practitioner_who_does_not_do_it_is_an_error_next_to_the_practitioner(reception, clinic, patient, frozen):
    injector = PractitionerFactory(clinic=clinic, name="Inge Injector", procedures=["botox"])
    response = reception.get(url("book", clinic, patient), {"procedure": "microneedling", "practitioner": injector.pk})
    assert field_error(response, "id_practitioner") == (
        "Inge Injector does not do Microneedling (collagen induction therapy)."
    )


def test_booking_a_slot_confirms_it_in_one_post(reception, clinic, patient, practitioner, botox_five_days_ago, frozen):
    response = reception.post(
        url("book_submit", clinic, patient),
        {
            "procedure": "microneedling",
            "area": "face",
            "practitioner": practitioner.pk,
            "start_at": "2026-03-11T09:00:00+00:00",
        },
    )
    appointment = Appointment.objects.get(patient=patient)
    assert response.status_code == 302 and response.url == url("appointment", clinic, appointment)
    assert appointment.status == "confirmed" and appointment.area_id == "face"
    assert AuditEvent.objects.get(appointment=appointment).actor_label == "reception (front desk)"
    page = squash(reception.get(response.url))
    assert "Booked and confirmed" in page and "Wednesday 11 March 2026, 09:00" in page


def test_booking_by_local_date_and_time(reception, clinic, patient, practitioner, frozen):
    response = reception.post(
        url("book_submit", clinic, patient), {"procedure": "botox", "date": "2026-07-01", "time": "14:00"}
    )
    assert response.status_code == 302
    assert Appointment.objects.get().start_at.isoformat() == "2026-07-01T13:00:00+00:00"  # BST


def test_a_relative_contraindication_books_as_pending_clearance(
    reception, clinic, patient, practitioner, eczema_history, frozen
):
    response = reception.post(
        url("book_submit", clinic, patient),
        {"procedure": "microneedling", "start_at": "2026-03-03T10:00:00+00:00"},
        follow=True,
    )
    assert Appointment.objects.get().status == "pending_clearance"
    assert "PENDING CLEARANCE" in squash(response)


def test_a_refused_booking_says_why_and_what_instead(
    reception, clinic, patient, practitioner, botox_five_days_ago, frozen
):
    response = reception.post(
        url("book_submit", clinic, patient), {"procedure": "microneedling", "date": "2026-03-05", "time": "10:00"}
    )
    page = squash(response)
    assert response.status_code == 409
    assert "Not booked." in page and "must be at least 2 weeks after" in page
    assert "Wed 11 Mar 2026" in page and 'value="2026-03-11T09:00:00+00:00"' in page
    assert not Appointment.objects.exists()


def test_a_time_without_offset_is_refused(reception, clinic, patient, practitioner, frozen):
    response = reception.post(
        url("book_submit", clinic, patient), {"procedure": "botox", "start_at": "2026-03-03T10:00"}
    )
    assert "has no UTC offset" in squash(response)
    assert not Appointment.objects.exists()


def test_missing_fields_are_shown_next_to_them(reception, clinic, patient, practitioner, frozen):
    response = reception.post(url("book_submit", clinic, patient), {"procedure": "", "date": "2026-03-03"})
    assert field_error(response, "id_procedure") == "This field is required."
    response = reception.post(url("book_submit", clinic, patient), {"procedure": "botox", "date": "2026-03-03"})
    assert field_error(response, "id_time") == "Choose a time, or one of the free times offered."
    response = reception.post(url("book_submit", clinic, patient), {"procedure": "botox", "time": "10:00"})
    assert field_error(response, "id_date") == "Choose a date for this time."
    assert not Appointment.objects.exists()


def test_booking_needs_the_csrf_token(receptionist, clinic, patient, practitioner, frozen):
    client = Client(enforce_csrf_checks=True)
    client.force_login(receptionist)
    response = client.post(
        url("book_submit", clinic, patient), {"procedure": "botox", "start_at": "2026-03-03T10:00:00+00:00"}
    )
    assert response.status_code == 403
    assert not Appointment.objects.exists()


def test_the_patient_header_shows_whom_we_book_for(reception, clinic, patient, frozen):
    response = reception.get(url("book", clinic, patient))
    assert "Book for Olivia Bennett" in squash(response)
    assert text_by_id(response.content, "when-help").startswith("In clinic time")


def test_a_day_without_a_time_offers_the_first_times_from_that_day(reception, clinic, patient, practitioner, frozen):
    page = squash(check(reception, clinic, patient, procedure="botox", date="2026-03-04"))
    assert "Possible from Wed 4 Mar 2026, will be confirmed" in page
    assert 'value="2026-03-04T09:00:00+00:00"' in page


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
@pytest.mark.parametrize("time", ["", "23:30"])
def test_a_date_outside_1900_to_2999_is_a_form_error_on_the_booking_page(
    reception, clinic, patient, practitioner, frozen, day, time
):
    params = {"procedure": "botox", "date": day, "time": time}
    full = reception.get(url("book", clinic, patient), params)
    partial = check(reception, clinic, patient, **params)

    assert full.status_code == partial.status_code == 200
    assert field_error(full, "id_date") == "Out of range: years 1900 to 2999."
    assert 'id="id_date-error" hx-swap-oob="true"' in squash(partial) and "Out of range" in squash(partial)


@pytest.mark.parametrize(
    "fields",
    [
        {"date": "9999-12-31", "time": "23:30"},
        {"date": "0001-01-01", "time": "10:00"},
        {"start_at": "9999-12-31T23:30:00+00:00"},
        {"start_at": "0001-01-01T00:00:00+00:00"},
    ],
)
def test_a_date_outside_1900_to_2999_is_refused_when_confirming(
    reception, clinic, patient, practitioner, frozen, fields
):
    response = reception.post(url("book_submit", clinic, patient), {"procedure": "botox", **fields})

    assert response.status_code == 400  # bad input, as the cancel and notes forms answer it
    assert "Out of range: years 1900 to 2999." in squash(response)
    assert not Appointment.objects.exists()


@pytest.fixture
def infection_and_eczema(patient):
    from clinic.models import ConditionStatus, PatientCondition

    PatientCondition.objects.create(patient=patient, condition_id="skin_infection", status=ConditionStatus.ACTIVE)
    PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)


@pytest.mark.parametrize("when", [{}, {"date": "2026-03-03"}, {"date": "2026-03-03", "time": "10:00"}])
def test_a_refusal_gives_one_verdict_even_with_a_clearance_pending_too(
    reception, clinic, patient, practitioner, infection_and_eczema, frozen, when
):
    response = check(reception, clinic, patient, procedure="microneedling", **when)
    page = squash(response)

    assert page.count('class="verdict-box__title"') == 1 and "Not possible" in page
    assert "No date is possible" in page
    assert "It can be booked" not in page and "held pending clearance" not in page
    assert "Possible" not in page.replace("Not possible", "")
    assert "history of Eczema needs a clinician&#x27;s clearance" in page  # still listed, as a further hurdle
    assert "Would also need a clinician's clearance" in page


def test_a_taken_time_gives_one_verdict_even_with_a_clearance_pending_too(
    reception, clinic, patient, practitioner, eczema_history, frozen
):
    page = squash(check(reception, clinic, patient, procedure="microneedling", date="2026-03-08", time="10:00"))

    assert "Not possible at Sun 8 Mar 2026, 10:00" in page and "does not work" in page
    assert "It can be booked" not in page
    assert "Would also need a clinician's clearance" in page


@pytest.mark.parametrize(
    "source, shown",
    [
        (
            "[001] Yazbek Artistry, microneedling care (docs/sources.md)",
            "Rule source: [001] Yazbek Artistry, microneedling care",
        ),
        (
            "001 (Alster TS, Graber EM. Microneedling: a review. Dermatol Surg 2018)",
            "Rule source: 001 (Alster TS, Graber EM. Microneedling: a review. Dermatol Surg 2018)",
        ),
        # A citation not yet brought up to date (a file path alone) never reads as a bare number.
        ("001 (seeds/001_d9301594.txt)", "Rule source: reference text 001"),
        (
            "000 (seeds/000_e8641ba4.txt); 001 (seeds/001_d9301594.txt)",
            "Rule source: reference text 000; reference text 001",
        ),
        ("Clinic policy, reviewed 2026", "Rule source: Clinic policy, reviewed 2026"),
    ],
)
def test_a_refusal_names_its_source_in_words(
    reception, clinic, patient, practitioner, botox_five_days_ago, frozen, source, shown
):
    from scheduler.models import IntervalRule

    IntervalRule.objects.filter(earlier_procedure="botox", later_procedure="microneedling").update(source=source)

    page = squash(check(reception, clinic, patient, procedure="microneedling", date="2026-03-05", time="10:00"))

    assert f"{shown}</span>" in page.replace("&#x27;", "'")


@pytest.mark.parametrize("named", [True, False], ids=["practitioner named", "any practitioner"])
def test_a_booking_form_sent_twice_goes_to_the_booking_it_made(reception, clinic, patient, practitioner, frozen, named):
    """A double click (or a resent page) books once, and its second sending is not answered "Not booked": it goes to
    the appointment its first made, saying so (as a move sent twice is one move)."""
    form = {"procedure": "botox", "date": "2026-07-01", "time": "14:00"}
    if named:
        form["practitioner"] = practitioner.pk
    first = reception.post(url("book_submit", clinic, patient), form)
    second = reception.post(url("book_submit", clinic, patient), form)
    appointment = Appointment.objects.get(patient=patient)
    assert first.url == second.url == url("appointment", clinic, appointment)
    page = squash(reception.get(second.url))
    assert "Already booked (the form was sent twice). Booked and confirmed: Botulinum toxin" in page
    assert "Not booked" not in page
    assert AuditEvent.objects.filter(appointment=appointment).count() == 1


def test_a_booking_form_sent_twice_from_the_calendar_answers_its_fragment(
    reception, clinic, patient, practitioner, frozen
):
    form = {"procedure": "botox", "date": "2026-07-01", "time": "14:00", "practitioner": practitioner.pk}
    reception.post(url("book_submit", clinic, patient), form, **HTMX)
    second = reception.post(url("book_submit", clinic, patient), form, **HTMX)
    assert second.status_code == 200 and "Already booked" in squash(second)
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_a_pending_clearance_booking_sent_twice_still_says_it_waits_for_a_clinician(
    reception, clinic, patient, practitioner, eczema_history, frozen
):
    form = {"procedure": "microneedling", "start_at": "2026-03-03T10:00:00+00:00"}
    reception.post(url("book_submit", clinic, patient), form)
    second = reception.post(url("book_submit", clinic, patient), form, follow=True)
    page = squash(second)
    assert "Already booked (the form was sent twice)" in page and "PENDING CLEARANCE" in page


def test_another_area_or_an_old_booking_of_the_same_is_not_sent_twice(reception, clinic, patient, practitioner, frozen):
    """Only the same booking made minutes ago counts: the same time for another treatment area is refused as it was
    (the patient is busy), and so is a repeat of a booking made long before."""
    form = {
        "procedure": "botox",
        "area": "face",
        "date": "2026-07-01",
        "time": "14:00",
        "practitioner": practitioner.pk,
    }
    reception.post(url("book_submit", clinic, patient), form)
    other_area = reception.post(url("book_submit", clinic, patient), {**form, "area": "neck"})
    assert other_area.status_code == 409 and "Not booked." in squash(other_area)
    Appointment.objects.filter(patient=patient).update(created_at=timezone.now() - timedelta(minutes=11))
    again = reception.post(url("book_submit", clinic, patient), form)
    assert again.status_code == 409 and "Not booked." in squash(again)
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_another_time_taken_by_someone_else_is_still_not_booked(reception, clinic, patient, practitioner, frozen):
    """Only the same patient's same booking counts as sent twice: another patient's slot is refused as before."""
    form = {"procedure": "botox", "date": "2026-07-01", "time": "14:00", "practitioner": practitioner.pk}
    someone = PatientFactory(clinic=clinic, first_name="Someone", last_name="Else")
    reception.post(url("book_submit", clinic, someone), form)
    refused = reception.post(url("book_submit", clinic, patient), form)
    assert refused.status_code == 409 and "Not booked." in squash(refused)
    assert Appointment.objects.filter(patient=patient).count() == 0


@pytest.mark.parametrize(
    ("start_at", "said"),
    [
        ("2026-10-25T00:30:00+00:00", "at Sun 25 Oct 2026, 01:30 BST"),  # the first 01:30
        ("2026-10-25T01:30:00+00:00", "at Sun 25 Oct 2026, 01:30 GMT"),  # the second, an hour later
        ("2026-10-26T10:00:00+00:00", "at Mon 26 Oct 2026, 10:00,"),  # any other time: no abbreviation
    ],
)
def test_the_check_panel_says_which_reading_of_a_time_the_clocks_go_back_over(
    reception, clinic, patient, practitioner, frozen, start_at, said
):
    page = squash(check(reception, clinic, patient, procedure="botox", start_at=start_at))
    assert said in page, page[:600]
