"""The subject of one e-mail made of several messages (reminders.content.render_messages, docs/reminders.md): the
first part's, saying how many more visits the same kind of message is about (a course cancelled whole), and nothing
more when the other parts are of other kinds (a reminder beside a confirmation) or the first is a recall."""

from datetime import UTC, datetime

import pytest

from reminders.content import render_messages
from reminders.models import Channel, MessageKind, OutboxMessage
from tests.reminders.conftest import book

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _email(appointment, kind):
    return (
        OutboxMessage.objects.select_related("appointment__clinic", "appointment__patient", "template")
        .filter(appointment=appointment, kind=kind, channel=Channel.EMAIL)
        .get()
    )


@pytest.fixture
def two_visits(patient, practitioner):
    first = book(patient, "botox", datetime(2026, 3, 10, 10, tzinfo=UTC), NOW)
    second = book(patient, "botox", datetime(2026, 6, 10, 9, tzinfo=UTC), NOW)
    return first, second


def test_the_same_kind_about_other_visits_is_counted(two_visits):
    first, second = two_visits
    one = render_messages(messages=[_email(first, MessageKind.CONFIRMATION)], now=NOW)
    both = render_messages(
        messages=[_email(first, MessageKind.CONFIRMATION), _email(second, MessageKind.CONFIRMATION)], now=NOW
    )
    assert both.subject == f"{one.subject} (and 1 more visit)"


def test_another_kind_about_another_visit_is_not_counted(two_visits):
    first, second = two_visits
    alone = render_messages(messages=[_email(first, MessageKind.CONFIRMATION)], now=NOW)
    mixed = render_messages(
        messages=[_email(first, MessageKind.CONFIRMATION), _email(second, MessageKind.REMINDER)], now=NOW
    )
    assert mixed.subject == alone.subject
