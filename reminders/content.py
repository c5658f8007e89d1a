"""What a message says: templates rendered at send time, the .ics file, next possible dates.

Texts are rendered when the message goes out, from the appointment as it is
then, so a moved appointment's reminder names the new time. SMS texts get a
context without procedure, area or drug names, and the rendered text is
checked against the catalogue so that no diagnosis or drug name leaves by SMS.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.utils import parseaddr

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.utils.html import escape, linebreaks
from icalendar import Calendar, Event, Timezone, vCalAddress

from clinic.models import Appointment, AuditAction, AuditEvent, Practitioner
from core.plain_text import single_line, without_controls
from reminders.consent import patient_accepts
from reminders.links import manage_url
from reminders.models import FROM_PRACTITIONER, Channel, MessageKind, OutboxMessage, ReminderTemplate
from reminders.texts import HTML_ENGINE, TEXT_ENGINE, clinical_terms_in, sms_text_problem
from reminders.wording import (
    RenderError,
    fmt_day,
    fmt_long_date,
    recall_context,
    render_sms,
    render_template,
    sms_context,
    sms_first_name,
)
from scheduler import rules, selectors


@dataclass(frozen=True)
class CalendarFile:
    """One iCalendar file for an e-mail's attachment: an iTIP object has one METHOD (RFC 5546), so a cancellation
    and a booking are two files."""

    ics: bytes
    method: str  # "REQUEST" or "CANCEL": the file's and its MIME part's


@dataclass(frozen=True)
class Rendered:
    subject: str = ""
    text: str = ""
    html: str = ""
    sms: str = ""
    # An e-mail's calendar files, one per part that attaches one (several parts go as one e-mail: render_messages).
    calendars: tuple[CalendarFile, ...] = ()

    @property
    def ics(self) -> bytes | None:
        """The first calendar file's text (an e-mail of one message has one at most)."""
        return self.calendars[0].ics if self.calendars else None


# --- Context ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextPossible:
    code: str
    name: str
    from_date: str  # "" when no date can be given
    ideally_from_date: str = ""  # when a warn-level rule suggests waiting longer


def _warnings_as_blocks(rulebook: rules.RuleBook) -> rules.RuleBook:
    """`rulebook` with every interval rule a block: its earliest start is the day no warning stands against."""
    intervals = {r.id: r for rs in rulebook.looking_back.values() for r in rs}.values()
    return rules.RuleBook(
        [dataclasses.replace(r, severity=rules.IntervalSeverity.BLOCK) for r in intervals],
        [c for cs in rulebook.contraindications.values() for c in cs],
        rulebook.names,
    )


def next_possible(*, appointment: Appointment, now: datetime) -> list[NextPossible]:
    """For this patient, when each procedure that has a rule after this one becomes possible again.

    Asked of the engine with the patient's whole timeline (so a booking or a
    course elsewhere counts), once with the rules as they are and once with
    warnings treated as blocks, for "ideally from". Where the second finds no day at all (a warning against every
    date, such as a course not ended yet), no date is given: the texts say to ask the clinic first.
    """
    rulebook = selectors.rulebook_load(appointment.patient.organisation_id)
    timeline = selectors.timeline_for_patient(appointment.patient_id)
    tz = appointment.clinic.tz
    codes = sorted({r.later_procedure for r in rulebook.looking_forward.get(appointment.procedure_id, ())})
    strict = _warnings_as_blocks(rulebook)
    out = []
    for code in codes:
        proposal = rules.Proposal(code, now, appointment.area_id)
        earliest = rules.earliest_eligible_start(timeline, rulebook, proposal, tz)
        ideal = rules.earliest_eligible_start(timeline, strict, proposal, tz)
        # No day meets the warnings (a course not ended yet): the warning stands against every date, so no date is
        # given and the patient is asked to talk to the clinic first, as where the rules themselves give none.
        from_date = fmt_long_date(earliest, tz) if earliest and ideal else ""
        ideally = fmt_long_date(ideal, tz) if from_date and ideal > earliest else ""
        out.append(NextPossible(code, rulebook.name(code), from_date, ideally))
    return out


@dataclass(frozen=True)
class RecallOutlook:
    """What a recall can say of when its treatment is possible, as the aftercare's list does (`next_possible`):
    `earliest`, a day later than the one it goes on that the rules allow (None when that day is possible);
    `ideal`, the later day no warning stands against (None when it is no later); `ask_first` when no date can be
    given: the rules refuse the treatment on every date from the recall's opening (a course that has not ended,
    an absolute contraindication), or a warning stands against every date. The patient is then told to talk to the
    clinic before booking, not invited to book (`recall_ask_first`)."""

    earliest: datetime | None = None
    ideal: datetime | None = None
    ask_first: bool = False


def recall_outlook(*, appointment: Appointment, recall: dict, now: datetime) -> RecallOutlook:
    """When the recalled treatment is possible for this patient, asked of the engine as the record is when the
    message goes (a booking, a reported treatment or a merge since the recall was planned may push it later):
    from the template's minimum gap (`opens_on`; rows planned before it was kept: the earliest found then) or
    now, whichever is later; once with the rules as they are and once with warnings as blocks. No date when it
    is today (a patient due now and free to book now needs no second date); none either, and `ask_first`, when
    either asking finds no earliest start at all."""
    opens_on = recall.get("opens_on") or recall.get("earliest_on")
    procedure = recall.get("procedure")
    if not procedure:
        return RecallOutlook()
    tz = appointment.clinic.tz
    # A row planned before `opens_on` was kept has `earliest_on` null where no date could be given then (a course not
    # ended): asked from now, as any row is once its opening has passed.
    opens = max(rules.start_of_local_day(date.fromisoformat(opens_on), tz), now) if opens_on else now
    timeline = selectors.timeline_for_patient(appointment.patient_id)
    rulebook = selectors.rulebook_load(appointment.patient.organisation_id)
    proposal = rules.Proposal(procedure, opens, appointment.area_id)
    earliest = rules.earliest_eligible_start(timeline, rulebook, proposal, tz)
    ideal = earliest and rules.earliest_eligible_start(timeline, _warnings_as_blocks(rulebook), proposal, tz)
    if earliest is None or ideal is None:
        return RecallOutlook(ask_first=True)
    today = now.astimezone(tz).date()
    return RecallOutlook(
        earliest=earliest if earliest.astimezone(tz).date() > today else None,
        ideal=ideal if ideal.astimezone(tz).date() > max(earliest.astimezone(tz).date(), today) else None,
    )


def recall_earliest(*, appointment: Appointment, recall: dict, now: datetime) -> datetime | None:
    """`recall_outlook`'s date alone: None when it is possible that day or no date can be given (the outlook's
    `ask_first` tells the two apart)."""
    return recall_outlook(appointment=appointment, recall=recall, now=now).earliest


def _recall_outlook_once(message: OutboxMessage, recall: dict, now: datetime) -> RecallOutlook:
    """`recall_outlook` once per message and moment: an e-mail's text is built more than once (its body, a group
    of messages merged into one), and each would read the patient's history again."""
    kept = getattr(message, "_recall_outlook", None)
    if kept is None or kept[0] != now:
        kept = (now, recall_outlook(appointment=message.appointment, recall=recall, now=now))
        message._recall_outlook = kept
    return kept[1]


def _midday(day: str | None, tz) -> datetime:
    """A stored ISO date as an instant on that local day (for the date formatters)."""
    return datetime.combine(date.fromisoformat(day), time(12), tzinfo=tz)


def names_practitioner(template: ReminderTemplate | None) -> bool:
    """Whether an e-mail of `template` names the visit's practitioner: its calendar file does (the event's
    description), or its words ask for {{ practitioner_name }}. A row without a template is taken to."""
    if template is None or template.attach_ics:
        return True
    return any(
        "practitioner_name" in (text or "")
        for text in (template.email_subject, template.email_text, template.email_html)
    )


def _change_context(message: OutboxMessage, previous: str | None) -> dict:
    """What an e-mail change notice says changed: `time_changed` (false when the visit kept its time and changed
    practitioner), `previous_practitioner_name` (the practitioner the patient last heard of by e-mail, when that is
    not the one now: reminders.services, `from_practitioner`; else empty)."""
    appointment = message.appointment
    other = (message.payload or {}).get(FROM_PRACTITIONER)
    name = ""
    if other and other != str(appointment.practitioner_id):
        name = Practitioner.objects.filter(pk=other).values_list("name", flat=True).first() or ""
    return {
        "time_changed": previous is None or datetime.fromisoformat(previous) != appointment.start_at,
        "previous_practitioner_name": name,
    }


def _context(message: OutboxMessage, now: datetime, *, for_sms: bool, unsubscribe_url: str) -> dict:
    appointment = message.appointment
    clinic = appointment.clinic
    tz = clinic.tz
    previous = (message.payload or {}).get("from_start")
    context = sms_context(
        clinic=clinic,
        # Texts name the clinic by its name for texts when it has one (every text does: reminders.fit).
        clinic_name=clinic.display_sms_name if for_sms else clinic.name,
        first_name=sms_first_name(appointment.patient.first_name) if for_sms else appointment.patient.first_name,
        start_at=appointment.start_at,
        end_at=appointment.end_at,
        now=now,
        manage_link=manage_url(appointment) if appointment.is_active else "",
        email_on=patient_accepts(appointment.patient, "email")[0],
        previous_start=datetime.fromisoformat(previous) if previous else None,
    )
    if message.kind == MessageKind.RECALL:  # planned by plans.recalls: the due date is in the row
        recall = message.payload or {}
        outlook = _recall_outlook_once(message, recall, now)
        context.update(
            recall_context(
                due_on=_midday(recall.get("due_on"), tz),
                earliest=outlook.earliest,
                ideal=outlook.ideal,
                tz=tz,
                ask_first=outlook.ask_first,
            )
        )
    if for_sms:
        return context  # no procedure, area or practitioner: nothing clinical goes by SMS
    context.update(
        {
            "procedure_name": appointment.procedure.name,
            "procedure_short": appointment.procedure.display_short,
            "practitioner_name": appointment.practitioner.name,
            "area_name": appointment.area.name if appointment.area_id else "",
            "clinic_address": clinic.address,
            "clinic_map_url": clinic.map_url,
            "clinic_logo_url": clinic.logo_url,
            "clinic_colour": clinic.brand_colour or "#1f6f5c",
            "unsubscribe_url": unsubscribe_url,
        }
    )
    if message.kind == MessageKind.RESCHEDULED:
        context.update(_change_context(message, previous))
    if message.kind == MessageKind.RECALL:
        code = (message.payload or {}).get("procedure")
        context["recall_procedure_name"] = (
            selectors.rulebook_load(appointment.patient.organisation_id).name(code) if code else ""
        )
    if message.kind == MessageKind.POST_CARE:
        context["next_possible"] = next_possible(appointment=appointment, now=now)
    return context


def private_subject(subject: str, *, appointment: Appointment, now: datetime) -> str:
    """A subject shows on a lock screen: unless the clinic allows it, it names no treatment or drug."""
    if appointment.clinic.name_treatment_in_previews or not clinical_terms_in(subject):
        return subject
    return (
        f"{appointment.clinic.name}: about your appointment on "
        f"{fmt_day(appointment.start_at, appointment.clinic.tz, now=now)}"
    )


# --- iCalendar ------------------------------------------------------------------------------------------


def ics_uid(appointment: Appointment) -> str:
    """One UID per appointment, for ever: every file about it (e-mailed or in a feed) updates one entry."""
    return f"appointment-{appointment.pk}@clinic-scheduling"


# Every change a calendar entry shows: its time, its cancellation, and its STATUS (a booking awaiting clearance
# or flagged for review is TENTATIVE, a cleared or released one CONFIRMED). A file whose SEQUENCE did not rise
# may be ignored as a repeat (RFC 5546).
CALENDAR_CHANGES = (
    AuditAction.RESCHEDULED,
    AuditAction.CANCELLED,
    AuditAction.CLEARED,
    AuditAction.NEEDS_REVIEW,
    AuditAction.CLEARANCE_REQUESTED,
    AuditAction.RELEASED,
)


def calendar_changes(appointment_ref: str = "pk") -> Coalesce:
    """The SEQUENCE of `ics_sequence` as a subquery, for a read of appointments (or of rows naming one, by
    `appointment_ref`) that then needs no query per calendar file: set it as `calendar_changes`."""
    changes = (
        AuditEvent.objects.filter(appointment=OuterRef(appointment_ref), action__in=CALENDAR_CHANGES)
        .order_by()
        .values("appointment")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(changes), 0)


def ics_sequence(appointment: Appointment) -> int:
    """Rises with every change a calendar must apply (a move, a cancellation, a status); read with the appointment when
    it was (`calendar_changes`), else counted."""
    known = getattr(appointment, "calendar_changes", None)
    if known is not None:
        return known
    return appointment.audit_events.filter(action__in=CALENDAR_CHANGES).count()


def ics_time(moment: datetime, tz) -> datetime:
    """A time for DTSTART/DTEND: the clinic's wall time (TZID), or UTC for the second reading of a wall time
    that happens twice.

    RFC 5545 (3.3.5) reads a TZID time that occurs twice (the hour the clocks go back) as its first occurrence,
    so a visit in the repeated hour's second reading written as a wall time would show up to an hour early, or
    end before it starts; UTC names the one instant. The first reading is what the wall time means already."""
    local = moment.astimezone(tz)
    if local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset():
        return moment.astimezone(UTC)
    return local


def appointment_event(
    *,
    appointment: Appointment,
    now: datetime,
    cancelled: bool = False,
    status: str | None = None,
) -> Event:
    """The appointment as one VEVENT: its UID for ever, SEQUENCE rising with each change, times in the clinic's
    zone (the calendar holding it adds the VTIMEZONE). `status` overrides CONFIRMED/CANCELLED (a feed marks a
    booking awaiting clearance TENTATIVE). It carries no link to the patient's page, in a feed or an e-mailed file
    alike: a calendar may be shared, and that page can cancel the visit and ask for a new feed (the e-mail's own
    text carries the link, to the patient only).

    The title names the clinic, not the treatment, unless the clinic allows it (a calendar shows titles on
    lock screens and widgets).
    """
    clinic = appointment.clinic
    tz = clinic.tz
    organizer = clinic.reply_to_email or parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    event = Event()
    event.add("uid", ics_uid(appointment))
    event.add("dtstamp", now.astimezone(UTC))
    event.add("dtstart", ics_time(appointment.start_at, tz))
    event.add("dtend", ics_time(appointment.end_at, tz))
    event.add("sequence", ics_sequence(appointment))
    # Words stored before control characters were refused go without them (RFC 5545 allows none; core.plain_text).
    name, treatment = single_line(clinic.name), single_line(appointment.procedure.display_short)
    title = f"{treatment} at {name}" if clinic.name_treatment_in_previews else f"Appointment at {name}"
    event.add("summary", title)
    event.add("location", ", ".join([name, *without_controls(clinic.address).splitlines()]))
    details = [f"{treatment} with {single_line(appointment.practitioner.name)}."]
    if clinic.phone:
        details.append(f"Call {name} on {clinic.phone_national}.")
    if clinic.map_url:
        details.append(f"Map: {single_line(clinic.map_url)}")
    event.add("description", "\n".join(details))
    event.add("organizer", vCalAddress(f"mailto:{organizer}"), parameters={"cn": single_line(clinic.display_sender)})
    event.add("status", status or ("CANCELLED" if cancelled else "CONFIRMED"))
    return event


def appointment_ics(*, appointment: Appointment, now: datetime, cancelled: bool = False) -> bytes:
    """The appointment as an iCalendar invitation (METHOD:REQUEST) or its cancellation (METHOD:CANCEL),
    with its clinic's VTIMEZONE. The patient it is e-mailed to is its ATTENDEE (RFC 5546 asks for one on both;
    a mail client matches its user to it), as having accepted, no reply asked for: the booking is made."""
    calendar = Calendar()
    calendar.add("prodid", "-//Clinic scheduling//Appointment reminders//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if cancelled else "REQUEST")
    event = appointment_event(appointment=appointment, now=now, cancelled=cancelled)
    patient = appointment.patient
    if patient.email:
        event.add(
            "attendee",
            vCalAddress(f"mailto:{patient.email}"),
            parameters={
                "cn": single_line(patient.first_name),
                "partstat": "ACCEPTED",
                "rsvp": "FALSE",
                "role": "REQ-PARTICIPANT",
            },
        )
    calendar.add_component(event)
    return calendar_ical(calendar, [appointment.start_at, appointment.end_at])


@functools.lru_cache(maxsize=256)
def vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    """The zone's VTIMEZONE for those years, serialised: b"" for a zone icalendar does not know."""
    try:
        timezone = Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1), last_date=date(last_year + 1, 1, 1))
    except ValueError:  # left out, as icalendar's add_missing_timezones does
        return b""
    return timezone.to_ical()


def calendar_ical(calendar: Calendar, moments: Iterable[datetime]) -> bytes:
    """`calendar` serialised with the VTIMEZONE of every zone its events name, before its events, covering the
    year before the first of `moments` to the year after the last (RFC 5545 asks for the observances in effect
    at the calendar's times).

    icalendar's own `add_missing_timezones` covers 1970 to 2038 (about 140 transitions per zone, built afresh
    each time): the most costly part of a confirmation e-mail. Each zone and span of years is built and
    serialised once per process here, and its lines go in as they are (content lines are independent, so the
    bytes are what icalendar would write with the component in place).
    """
    body = calendar.to_ical()
    years = [moment.year for moment in moments]
    if not years:
        return body
    first, last = min(years) - 1, max(years) + 1
    zones = b"".join(vtimezone(tzid, first, last) for tzid in sorted(calendar.get_missing_tzids()))
    if not zones:
        return body
    at = body.find(b"\r\nBEGIN:") + 2  # the first component inside the calendar
    return body[:at] + zones + body[at:] if at > 1 else body


# --- Rendering ----------------------------------------------------------------------------------------------


# The order a patient should read messages about one visit in, when several go as one.
READING_ORDER = (
    MessageKind.CONFIRMATION,
    MessageKind.RESCHEDULED,
    MessageKind.REMINDER,
    MessageKind.PRE_CARE,
    MessageKind.POST_CARE,
    MessageKind.CANCELLED,
)


_MINUTES = {"minutes": 1, "hours": 60, "days": 24 * 60}


def reading_order(message: OutboxMessage) -> tuple:
    """By the visit's time; of two visits at the same time (one cancelled, another booked in its place), the one
    booked first reads first, so the patient's last word on that time is about the booking that stands (an SMS
    names no procedure to tell them apart); then by kind; of one kind, by the moment each was planned for (its
    template's offset from its anchor), not the moment it goes: two aftercare texts held together for the morning
    read "no makeup for 48 hours" before "48 hours on, makeup may be used again"."""
    kind = READING_ORDER.index(message.kind) if message.kind in READING_ORDER else len(READING_ORDER)
    appointment, template = message.appointment, message.template
    offset = template.offset_value * _MINUTES.get(template.offset_unit, 1) if template is not None else 0
    planned = (message.anchor_at or message.due_at, offset)
    return (
        appointment.start_at,
        appointment.created_at,
        str(appointment.pk),
        kind,
        planned,
        message.due_at,
        str(message.pk),
    )


def render_messages(*, messages: list[OutboxMessage], now: datetime, unsubscribe_url: str = "") -> Rendered:
    """Several rows to one patient on one channel as one message, every text kept, in reading order.

    An SMS joins the texts with a blank line (the caller keeps the result within the SMS limit). An e-mail shows
    each part under its own subject (the first part's leads), and each part keeps what an e-mail of its own would
    carry: its calendar file (one attachment a part that has one, a cancellation's METHOD:CANCEL and a booking's
    METHOD:REQUEST apart; a file the same as another part's once) and its visit's "See, move or cancel" link, after
    that visit's last part (the last visit's in the footer, where an e-mail of one visit has it). An e-mail is one
    clinic's, from its sender to its footer: rows of two clinics do not go as one (RenderError; the dispatcher's
    merge does not offer them, riders._merge_pool).
    """
    ordered = sorted(messages, key=reading_order)
    if ordered[0].channel == Channel.SMS:
        parts = [render_message(message=m, now=now) for m in ordered]
        if len(parts) == 1:
            return parts[0]
        sms = "\n\n".join(part.sms for part in parts)
        problem = sms_text_problem(sms)
        if problem:
            raise RenderError(f"SMS refused: {problem}")
        return Rendered(sms=sms)
    if len({m.appointment.clinic_id for m in ordered}) > 1:
        raise RenderError("e-mails of two clinics do not go as one: each names its own clinic's sender and details")
    return _email_of([_email_part(message=m, now=now, unsubscribe_url=unsubscribe_url) for m in ordered])


@dataclass(frozen=True)
class _EmailPart:
    """One e-mail row as an e-mail of its own would say it: its subject, its body without the page around it, the
    context the page is drawn from, and its calendar file."""

    message: OutboxMessage
    subject: str
    html: str
    text: str
    context: dict
    calendar: CalendarFile | None


def _email_part(*, message: OutboxMessage, now: datetime, unsubscribe_url: str) -> _EmailPart:
    template: ReminderTemplate | None = message.template
    if template is None:
        raise RenderError("its template was deleted")
    context = _context(message, now, for_sms=False, unsubscribe_url=unsubscribe_url)
    subject = private_subject(
        " ".join(render_template(TEXT_ENGINE, template.email_subject, context).split()),
        appointment=message.appointment,
        now=now,
    )
    if not subject:
        raise RenderError("the e-mail's subject renders empty")
    text = render_template(TEXT_ENGINE, template.email_text, context)
    if not text:
        raise RenderError("the e-mail's text renders empty")
    html = (
        render_template(HTML_ENGINE, template.email_html, context)
        if template.email_html.strip()
        else linebreaks(escape(text))
    )
    calendar = None
    if template.attach_ics:
        cancelled = message.kind == MessageKind.CANCELLED
        calendar = CalendarFile(
            appointment_ics(appointment=message.appointment, now=now, cancelled=cancelled),
            "CANCEL" if cancelled else "REQUEST",
        )
    return _EmailPart(message, subject, html, text, context, calendar)


def _subject_of(parts: list[_EmailPart]) -> str:
    """The first part's subject; when later parts say the same of other visits (a course cancelled whole: three
    cancellations), it says how many more, so an inbox does not show one visit where there are three. Parts of other
    kinds (a reminder beside a cancellation, a recall) are not counted: they are not what the subject says."""
    first = parts[0].message
    alike = {part.message.appointment_id for part in parts if part.message.kind == first.kind}
    others = len(alike - {first.appointment_id}) if first.kind != MessageKind.RECALL else 0
    if others < 1:
        return parts[0].subject
    return f"{parts[0].subject} (and {others} more {'visit' if others == 1 else 'visits'})"


def _email_of(parts: list[_EmailPart]) -> Rendered:
    """The e-mail of these parts (in reading order, of one clinic): the first part's subject, each later part under
    its own; each visit's link after its last part, the last visit's in the footer; every distinct calendar file."""
    html, text = [], []
    for i, part in enumerate(parts):
        heading = i > 0
        html.append(
            (f'<h2 style="font-size:1.1em;margin:1.5rem 0 .5rem">{escape(part.subject)}</h2>' if heading else "")
            + part.html
        )
        text.append((f"{part.subject}\n\n" if heading else "") + part.text)
        following = parts[i + 1] if i + 1 < len(parts) else None
        if following is not None and following.message.appointment_id != part.message.appointment_id:
            # Its visit's last part, and another visit follows: its own link here (a single e-mail's, in its footer).
            link_html = render_to_string("reminders/email_manage_link.html", part.context).strip()
            link_text = render_to_string("reminders/email_manage_link.txt", part.context).strip()
            if link_text:
                html.append(link_html)
                text.append(link_text)
    last = parts[-1]
    subject = _subject_of(parts)
    layout = {**last.context, "body_html": "".join(html), "subject": subject}
    calendars = list(dict.fromkeys(part.calendar for part in parts if part.calendar is not None))
    return Rendered(
        subject=subject,
        text="\n\n".join(text) + "\n\n" + render_to_string("reminders/email_footer.txt", layout).strip() + "\n",
        html=render_to_string("reminders/email.html", layout),
        calendars=tuple(calendars),
    )


def render_message(*, message: OutboxMessage, now: datetime, unsubscribe_url: str = "") -> Rendered:
    """The subject and bodies (e-mail) or text (SMS) for one outbox row."""
    template: ReminderTemplate | None = message.template
    if template is None:
        raise RenderError("its template was deleted")
    if message.channel == Channel.SMS:
        sms = render_sms(template.sms_text, _context(message, now, for_sms=True, unsubscribe_url=""))
        if not sms:  # a blank text is no message (the dispatcher cancels a row whose template has none)
            raise RenderError("the text renders empty")
        problem = sms_text_problem(sms)
        if problem:
            raise RenderError(f"SMS refused: {problem}")
        return Rendered(sms=sms)
    return _email_of([_email_part(message=message, now=now, unsubscribe_url=unsubscribe_url)])
