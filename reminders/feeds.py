"""Private calendar feeds: one practitioner's (or one patient's) appointments as an iCalendar feed.

Calendar apps poll the feed's URL; each appointment is one VEVENT with the same UID and rising SEQUENCE
as the .ics files e-mailed about it (reminders.content), so an entry moves or turns CANCELLED in place.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from icalendar import Calendar

from clinic.models import Appointment, AppointmentStatus, Patient, Practitioner
from core.plain_text import single_line
from reminders.content import appointment_event, calendar_changes, calendar_ical, vtimezone
from reminders.models import CalendarFeed

# What a feed shows: a quarter back (for the record), everything ahead.
FEED_HISTORY = timedelta(days=92)
FEED_MAX_EVENTS = 2000
# A booking a clinician must still clear, or one a later change made unsafe, is not settled yet.
_TENTATIVE = (AppointmentStatus.PENDING_CLEARANCE, AppointmentStatus.NEEDS_REVIEW)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def feed_url(token: str) -> str:
    return settings.REMINDERS_PUBLIC_BASE_URL.rstrip("/") + reverse("reminders:calendar_feed", args=[token])


def calendar_feed_create(
    *, now: datetime, practitioner: Practitioner | None = None, patient: Patient | None = None, created_by: str = ""
) -> tuple[CalendarFeed, str]:
    """A new feed and its token (shown once: only its hash is kept)."""
    if (practitioner is None) == (patient is None):
        raise ValueError("A feed belongs to one practitioner or one patient.")
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed.objects.create(
        practitioner=practitioner, patient=patient, token_hash=_hash(token), created_at=now, created_by=created_by
    )
    return feed, token


def patient_calendar_feed_renew(*, patient: Patient, now: datetime) -> str:
    """The patient's own calendar link, asked for from their page: a new one switches the previous off
    (a link shared by mistake is ended by asking again). Returns the new feed's URL (shown once)."""
    with transaction.atomic():
        # Race condition: two asks at once (a double press, two tabs) would each switch off the links before them and
        # leave both new ones live, one the patient never saw. Under the patient's lock, the second ends the first's.
        Patient.objects.select_for_update().filter(pk=patient.pk).values_list("pk", flat=True).first()
        calendar_feed_revoke(feeds=CalendarFeed.objects.filter(patient=patient), now=now)
        _, token = calendar_feed_create(now=now, patient=patient, created_by="the patient, from their page")
    return feed_url(token)


def calendar_feed_revoke(*, feeds: QuerySet[CalendarFeed], now: datetime) -> int:
    return feeds.filter(revoked_at__isnull=True).update(revoked_at=now)


def calendar_feed_for_token(token: str) -> CalendarFeed | None:
    """The live feed behind `token`, or None (unknown, revoked, or a switched-off practitioner's: the same to the
    caller). A practitioner who leaves is switched off (Practitioner.is_active); the feed on a phone they keep stops
    with that, and answers again only if they are switched back on."""
    if not token or len(token) > 100:
        return None
    return (
        CalendarFeed.objects.filter(token_hash=_hash(token), revoked_at__isnull=True)
        .filter(Q(practitioner__isnull=True) | Q(practitioner__is_active=True))
        .select_related("practitioner", "patient")
        .first()
    )


def _appointments(feed: CalendarFeed, now: datetime) -> list[Appointment]:
    """The feed's appointments by start: those ahead first within FEED_MAX_EVENTS (the soonest), then as many of the
    last FEED_HISTORY's as there is room for (the latest): a calendar over the cap loses its oldest past visits
    before any to come (and past FEED_MAX_EVENTS ahead, the farthest). Two statements at most."""
    owner = {"practitioner_id": feed.practitioner_id} if feed.practitioner_id else {"patient_id": feed.patient_id}
    rows = (
        Appointment.objects.filter(**owner)
        .select_related("clinic", "procedure", "practitioner")
        .annotate(calendar_changes=calendar_changes())  # each event's SEQUENCE, in the same query
    )
    ahead = list(rows.filter(start_at__gte=now).order_by("start_at", "id")[:FEED_MAX_EVENTS])
    room = FEED_MAX_EVENTS - len(ahead)
    if not room:
        return ahead
    past = list(rows.filter(start_at__gte=now - FEED_HISTORY, start_at__lt=now).order_by("-start_at", "-id")[:room])
    return [*reversed(past), *ahead]


def calendar_feed_ics(*, feed: CalendarFeed, now: datetime) -> bytes:
    owner = feed.practitioner or feed.patient
    calendar = Calendar()
    calendar.add("prodid", "-//Clinic scheduling//Calendar feed//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add(
        "x-wr-calname", f"Appointments: {single_line(owner.name)}" if feed.practitioner_id else "My appointments"
    )
    calendar.add("refresh-interval", timedelta(hours=1), parameters={"value": "DURATION"})
    appointments = list(_appointments(feed, now))
    for appointment in appointments:
        cancelled = appointment.status == AppointmentStatus.CANCELLED
        calendar.add_component(
            appointment_event(
                appointment=appointment,
                now=now,
                cancelled=cancelled,
                status="TENTATIVE" if appointment.status in _TENTATIVE else None,
            )
        )
    if not appointments:
        return _with_owner_zone(calendar.to_ical(), feed, now)
    return calendar_ical(calendar, [moment for a in appointments for moment in (a.start_at, a.end_at)])


def _with_owner_zone(body: bytes, feed: CalendarFeed, now: datetime) -> bytes:
    """An empty feed with its owner's clinic's VTIMEZONE: RFC 5545 asks a calendar for at least one component, and
    a strict reader refuses one without (nothing to show is not a broken subscription)."""
    clinic = (feed.practitioner or feed.patient).clinic
    zone = vtimezone(clinic.timezone, now.year - 1, now.year + 1)
    at = body.rfind(b"END:VCALENDAR")
    return body[:at] + zone + body[at:] if zone and at >= 0 else body
