"""A move made from a page drawn before someone else moved the visit is refused by the service, under the patient's
and the visit's locks (scheduler.booking.appointment_reschedule `drawn`), not by the desk before them: two moves sent
from one page at the same instant are told apart (one moves, the other is told the visit moved meanwhile), and the
same move sent twice is not taken for someone else's (it changes nothing the second time and says it moved).
"""

from __future__ import annotations

import pytest
from django.test import Client

from clinic.models import AuditAction, AuditEvent
from core.errors import ErrorCode, PreconditionFailed
from scheduler.booking import Actor, appointment_book, appointment_reschedule
from tests.frontdesk.conftest import at_london, url

pytestmark = pytest.mark.django_db


def _visit(patient, practitioner, now):
    return appointment_book(
        patient=patient,
        procedure_code="botox",
        start_at=at_london(2026, 3, 10, 10),
        actor=Actor("test"),
        now=now,
        practitioner_id=str(practitioner.pk),
    ).appointment


def _moves(visit) -> int:
    return AuditEvent.objects.filter(appointment=visit, action=AuditAction.RESCHEDULED).count()


def test_the_service_refuses_a_move_drawn_before_another_and_saves_nothing(clinic, practitioner, patient, frozen):
    visit = _visit(patient, practitioner, frozen)
    drawn = (visit.start_at, str(practitioner.pk))
    appointment_reschedule(appointment=visit, start_at=at_london(2026, 3, 11, 10), actor=Actor("a"), now=frozen)
    with pytest.raises(PreconditionFailed) as refused:
        appointment_reschedule(
            appointment=visit, start_at=at_london(2026, 3, 12, 10), actor=Actor("b"), now=frozen, drawn=drawn
        )
    assert refused.value.code == ErrorCode.RECORD_CHANGED
    visit.refresh_from_db()
    assert visit.start_at == at_london(2026, 3, 11, 10) and _moves(visit) == 1
    # Drawn from where it is now, the same move goes through.
    appointment_reschedule(
        appointment=visit,
        start_at=at_london(2026, 3, 12, 10),
        actor=Actor("b"),
        now=frozen,
        drawn=(visit.start_at, str(practitioner.pk)),
    )
    visit.refresh_from_db()
    assert visit.start_at == at_london(2026, 3, 12, 10) and _moves(visit) == 2


def test_the_same_move_sent_twice_is_not_refused_and_moves_once(clinic, practitioner, patient, reception, frozen):
    visit = _visit(patient, practitioner, frozen)
    body = {
        "date": "2026-03-11",
        "time": "10:00",
        "practitioner": str(practitioner.pk),
        "from_start_at": f"{visit.start_at.isoformat()}|{practitioner.pk}",
    }
    move = url("reschedule", clinic, visit)
    assert reception.post(move, body).status_code == 302
    again = reception.post(move, body, follow=True)
    assert again.status_code == 200 and "Moved to" in again.content.decode()
    visit.refresh_from_db()
    assert visit.start_at == at_london(2026, 3, 11, 10) and _moves(visit) == 1


def test_a_move_drawn_with_another_practitioner_is_refused_unless_it_asks_for_where_it_is(
    clinic, practitioner, second_practitioner, patient, frozen
):
    visit = _visit(patient, practitioner, frozen)
    drawn = (visit.start_at, str(practitioner.pk))
    appointment_reschedule(
        appointment=visit,
        start_at=visit.start_at,
        actor=Actor("a"),
        now=frozen,
        practitioner_id=str(second_practitioner.pk),
    )
    with pytest.raises(PreconditionFailed):  # keeping "the current practitioner" would be the first one
        appointment_reschedule(
            appointment=visit,
            start_at=at_london(2026, 3, 11, 10),
            actor=Actor("b"),
            now=frozen,
            practitioner_id=str(practitioner.pk),
            drawn=drawn,
        )
    # Asking for exactly where it is now changes nothing and is not refused.
    result = appointment_reschedule(
        appointment=visit,
        start_at=visit.start_at,
        actor=Actor("b"),
        now=frozen,
        practitioner_id=str(second_practitioner.pk),
        drawn=drawn,
    )
    assert result.appointment.practitioner_id == second_practitioner.pk and _moves(visit) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_moves_sent_from_one_page_at_once_one_moves_and_the_other_is_told(
    clinic, practitioner, patient, receptionist, frozen
):
    from tests.races import race

    visit = _visit(patient, practitioner, frozen)
    drawn = f"{visit.start_at.isoformat()}|{practitioner.pk}"

    def send(day: str):
        def post():
            client = Client()
            client.force_login(receptionist)
            return client.post(
                url("reschedule", clinic, visit),
                {"date": day, "time": "10:00", "practitioner": str(practitioner.pk), "from_start_at": drawn},
            )

        return post

    answers = race(send("2026-03-11"), send("2026-03-12"))
    codes = sorted(getattr(answer, "status_code", repr(answer)) for answer in answers)
    assert codes == [302, 409]
    [told] = [answer for answer in answers if answer.status_code == 409]
    assert "moved since you opened this page" in told.content.decode()
    visit.refresh_from_db()
    assert visit.start_at in (at_london(2026, 3, 11, 10), at_london(2026, 3, 12, 10)) and _moves(visit) == 1
