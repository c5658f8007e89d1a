"""riders.mergeable: which of a patient's due texts go as one message with the one being sent.

Two rules, for any rows in any order (docs/reminders.md, "One message, not two in the same minute"):
- a visit's texts keep their reading order (`content.reading_order`): a text joins only if every text of its own
  visit among the companions that reads before it joined too; one that did not fit goes later on its own, and a
  text of its visit that read after it would otherwise reach the patient first ("48 hours on, makeup may be used
  again" before "no makeup for 48 hours", dec12f);
- the same rows make the same message whatever order they come in (the claim's order ties on `due_at` and then
  breaks ties by a random id; a grouping that followed it made the overnight import's texts go in two sends a third
  of the time, dec8a).
And nothing is left out for nothing: a text left out either did not fit, or a text of its visit that reads before
it was left out.

The rows are built in memory (never saved) and the SMS limit is a budget of sizes (`content.render_messages`
swapped for a sum), so the examples are many and fast; tests/qa/test_review_dec12f_message_content_code_read.py
drives the same rule through a real send.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from clinic.models import Appointment
from reminders import content, riders
from reminders.models import Channel, MessageKind, OutboxMessage, ReminderTemplate
from reminders.wording import RenderError

NOW = datetime(2026, 3, 4, 10, 31, tzinfo=UTC)
LIMIT = 10  # the SMS's budget; a row's size is drawn from 1 to LIMIT + 1 (the largest never fits)
KINDS = [
    MessageKind.CONFIRMATION,
    MessageKind.RESCHEDULED,
    MessageKind.REMINDER,
    MessageKind.PRE_CARE,
    MessageKind.POST_CARE,
]


def _visit(start_hours: int, pk: int) -> Appointment:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(hours=start_hours)
    return Appointment(id=uuid.UUID(int=pk), start_at=start, created_at=datetime(2026, 3, 1, tzinfo=UTC))


def _text(visit: Appointment, kind, offset_hours: int, due_minutes: int, pk: int) -> OutboxMessage:
    template = ReminderTemplate(offset_value=offset_hours, offset_unit="hours")
    due = NOW - timedelta(minutes=due_minutes)
    row = OutboxMessage(id=uuid.UUID(int=pk), kind=kind, channel=Channel.SMS, due_at=due, anchor_at=visit.start_at)
    row.appointment, row.template = visit, template
    return row


texts_of_a_visit = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from([0, 48, 168]),  # the template's offset: at completion, 48 hours on, a week on
        st.integers(0, 2),  # due this many minutes ago: few values, so texts are often due together
        st.integers(1, LIMIT + 1),  # its size
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def due_texts(draw):
    """One or two visits' texts (one of them carries, the others are its companions) and each row's size."""
    visits = [_visit(draw(st.sampled_from([0, 24, 24 * 100])), pk) for pk in range(1, draw(st.integers(1, 2)) + 1)]
    drawn = [(visit, text) for visit in visits for text in draw(texts_of_a_visit)]
    pks = draw(st.permutations(range(100, 100 + len(drawn))))  # ids in no order of their own
    rows, sizes = [], {}
    for (visit, (kind, offset, due, size)), pk in zip(drawn, pks, strict=True):
        row = _text(visit, kind, offset, due, pk)
        rows.append(row)
        sizes[row.pk] = size
    carrier = draw(st.sampled_from(rows))
    return carrier, [row for row in rows if row is not carrier], sizes


def _budget(sizes: dict):
    def render_messages(*, messages, now, unsubscribe_url=""):
        if sum(sizes[row.pk] for row in messages) > LIMIT:
            raise RenderError("SMS refused: over the limit")
        return None

    return render_messages


def _before(row: OutboxMessage, other: OutboxMessage) -> bool:
    """Whether `other` is a text of the same visit as `row` that reads before it."""
    same_visit = other.appointment_id == row.appointment_id
    return other.pk != row.pk and same_visit and content.reading_order(other) < content.reading_order(row)


@settings(max_examples=300, deadline=None)
@given(due_texts(), st.data())
def test_a_visits_texts_join_in_reading_order_and_the_same_rows_make_the_same_message(drawn, data):
    carrier, companions, sizes = drawn
    with mock.patch.object(content, "render_messages", _budget(sizes)):
        joined = riders.mergeable(carrier, companions, NOW)
        for _ in range(3):
            shuffled = data.draw(st.permutations(companions))
            assert [row.pk for row in riders.mergeable(carrier, shuffled, NOW)] == [row.pk for row in joined]

    taken = {row.pk for row in joined}
    assert sizes[carrier.pk] > LIMIT or sizes[carrier.pk] + sum(sizes[pk] for pk in taken) <= LIMIT
    for row in joined:  # nothing of a visit goes before a text of that visit that reads earlier and stays behind
        assert all(other.pk in taken for other in companions if _before(row, other)), (row.kind, row.pk)
    for row in companions:  # left out: it did not fit, or one of its visit that reads before it was left out
        if row.pk in taken or any(other.pk not in taken for other in companions if _before(row, other)):
            continue
        assert sizes[carrier.pk] + sum(sizes[pk] for pk in taken) + sizes[row.pk] > LIMIT, (row.kind, row.pk)


def test_the_aftercare_that_fits_waits_for_the_one_before_it_that_does_not():
    """dec12f's case, by sizes: a booking's confirmation carries; the at-completion aftercare (too long to join)
    and the +48 h aftercare (it would fit) of another visit are due with it. The +48 h text stays behind too, and
    whichever order the two come in, the confirmation goes alone."""
    done, booked = _visit(0, 1), _visit(24 * 18, 2)
    confirmation = _text(booked, MessageKind.CONFIRMATION, 0, 3, 10)
    at_completion = _text(done, MessageKind.POST_CARE, 0, 2, 11)
    two_days_on = _text(done, MessageKind.POST_CARE, 48, 0, 12)
    sizes = {confirmation.pk: 3, at_completion.pk: 8, two_days_on.pk: 3}
    with mock.patch.object(content, "render_messages", _budget(sizes)):
        assert riders.mergeable(confirmation, [at_completion, two_days_on], NOW) == []
        assert riders.mergeable(confirmation, [two_days_on, at_completion], NOW) == []
    # Carried by the +48 h text, the one of its visit that reads before it is tried first (without it the carrier
    # would wait), before the confirmation due earlier.
    sizes[at_completion.pk] = 5
    with mock.patch.object(content, "render_messages", _budget(sizes)):
        assert riders.mergeable(two_days_on, [confirmation, at_completion], NOW) == [at_completion]
