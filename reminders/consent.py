"""Patient consent per channel: who may be messaged, signed unsubscribe links, opt-outs, preferences.

An unsubscribe link carries a signed token (django.core.signing, salted) naming
the patient and channel, so it works without a login and cannot be forged or
pointed at someone else. Opt-outs (and a patient's own opt-ins) update the patient and are recorded.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from phonenumbers import PhoneNumberFormat

from clinic.models import Clinic, MessageTopic, Patient, ReminderChannel
from clinic.record_changes import ContactChange, patient_contact_changed
from clinic.services import phone_to_e164
from core.errors import ErrorCode, InvalidInput
from reminders import channels
from reminders.models import (
    PATIENT_CHANNELS,
    Channel,
    ContactOptIn,
    ContactOptOut,
    MessageKind,
    OptInVia,
    OptOutVia,
    OutboxMessage,
    OutboxStatus,
    ParkedDeliveryReport,
)

UNSUBSCRIBE_SALT = "reminders.unsubscribe"
# Links signed before the reminders became an app of their own (the first round's e-mails): still honoured, since
# links do not expire and a patient may unsubscribe from an old e-mail.
UNSUBSCRIBE_SALTS_BEFORE = ("scheduler.reminders.unsubscribe",)

# What a patient can switch off by kind; confirmations and change notices are not optional.
TOPIC_OF_KIND = {
    MessageKind.PRE_CARE: MessageTopic.CARE,
    MessageKind.POST_CARE: MessageTopic.CARE,
    MessageKind.REMINDER: MessageTopic.REMINDERS,
    MessageKind.RECALL: MessageTopic.REMINDERS,
}


def patient_accepts(patient: Patient, channel: str, kind: str | None = None) -> tuple[bool, str]:
    """Whether `patient` may get a message (of `kind`, when given) on `channel` now, and if not, why."""
    topic = TOPIC_OF_KIND.get(kind)
    if topic is not None and topic in (patient.muted_topics or []):
        return False, f"the patient switched off {MessageTopic(topic).label.lower()}"
    channels = patient.reminder_channels or []
    if channel == Channel.EMAIL:
        if PATIENT_CHANNELS[Channel.EMAIL] not in channels:
            return False, "the patient has not chosen e-mail reminders (or unsubscribed)"
        if not patient.email:
            return False, "the patient has no e-mail address"
        return True, ""
    if channel == Channel.SMS:
        if PATIENT_CHANNELS[Channel.SMS] not in channels:
            return False, "the patient has not chosen SMS reminders (or replied STOP)"
        if not patient.sms_consent:
            return False, "the patient has not consented to SMS"
        if not patient.phone:
            return False, "the patient has no phone number"
        return True, ""
    raise ValueError(f"{channel!r} is not a patient channel")


def unsubscribe_token(*, patient_id, channel: str = Channel.EMAIL) -> str:
    return signing.dumps({"p": str(patient_id), "c": channel}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_url(*, patient_id, channel: str = Channel.EMAIL) -> str:
    path = reverse("reminders:unsubscribe", kwargs={"token": unsubscribe_token(patient_id=patient_id, channel=channel)})
    return settings.REMINDERS_PUBLIC_BASE_URL.rstrip("/") + path


def unsubscribe_token_read(token: str) -> tuple[Patient, str]:
    """The patient and channel a token names; InvalidInput for a forged, damaged or stale link.

    The payload is checked for shape before it is used: only this server can sign one, but an
    old format or a bug must read as an invalid link, never as a server error.
    """
    for salt in (UNSUBSCRIBE_SALT, *UNSUBSCRIBE_SALTS_BEFORE):
        try:
            data = signing.loads(token, salt=salt)
            break
        except signing.BadSignature:
            continue
    else:
        raise InvalidInput(
            ErrorCode.INVALID_UNSUBSCRIBE_LINK,
            "This unsubscribe link is not valid. "
            "Please use the link from your most recent e-mail, or contact the clinic.",
        )
    patient_id, channel = _token_payload(data)
    patient = Patient.objects.select_related("clinic").filter(pk=patient_id).first() if patient_id is not None else None
    if patient is not None and patient.merged_into_id is not None:
        # A link from before a merge opts out the record the patient now is (merges leave one hop).
        patient = Patient.objects.select_related("clinic").get(pk=patient.merged_into_id)
    if patient is None:
        raise InvalidInput(
            ErrorCode.INVALID_UNSUBSCRIBE_LINK, "This unsubscribe link no longer matches a patient record."
        )
    return patient, channel


def _token_payload(data) -> tuple[uuid.UUID | None, str | None]:
    """`(patient id, channel)` from a token's payload, or `(None, None)` when it has another shape."""
    if not isinstance(data, dict):
        return None, None
    channel, raw_id = data.get("c"), data.get("p")
    if not isinstance(channel, str) or channel not in (Channel.EMAIL, Channel.SMS) or not isinstance(raw_id, str):
        return None, None
    try:
        return uuid.UUID(raw_id), channel
    except ValueError:
        return None, None


def patient_opt_out(
    *,
    patient: Patient,
    channel: str,
    via: str,
    now: datetime,
    detail: str = "",
    address: str | None = None,
    unless_opted_in_since: datetime | None = None,
) -> bool:
    """Withdraw `patient`'s consent for `channel`; return False when it was already withdrawn (or, with `address`,
    when the patient's number or e-mail address for that channel is no longer that one; with
    `unless_opted_in_since`, when the patient opted in to the channel since that moment: an opt-out heard late does
    not undo a later opt-in).

    Unsent messages are left in place: the send step re-checks consent and
    skips them; a send already past that check is waited for (its row's lock), so an
    opt-out and a send racing each other cannot both win.
    """
    with transaction.atomic():
        current = Patient.objects.select_for_update().get(pk=patient.pk)
        if address is not None and not _reached_at(current, channel, address):
            return False  # Race condition: changed since the STOP was heard; the new number or address is not stopped
        if (
            unless_opted_in_since is not None
            and ContactOptIn.objects.filter(patient=current, channel=channel, at__gte=unless_opted_in_since).exists()
        ):
            return False  # Race condition: switched back on (the desk, a START) after the refusal it would record
        # Race condition: a send re-reads consent under its outbox row's lock and holds that lock through the
        # provider call. Waiting here for the patient's rows being sent on this channel (no SKIP LOCKED) records
        # the opt-out after a send already past its check, never before it. Lock order patient, then outbox rows,
        # as bookings take them; a send locks only outbox rows (reminders.claimed._lock_options), so no cycle.
        list(
            OutboxMessage.objects.select_for_update(of=("self",))
            .filter(appointment__patient_id=current.pk, channel=channel, status=OutboxStatus.SENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        was_on = _consented({"reminder_channels": current.reminder_channels, "sms_consent": current.sms_consent})
        channels = [c for c in (current.reminder_channels or []) if c != channel]
        changed = channels != (current.reminder_channels or [])
        fields = ["reminder_channels", "updated_at"]
        current.reminder_channels = channels
        if channel == Channel.SMS and current.sms_consent:
            current.sms_consent = False
            fields.append("sms_consent")
            changed = True
        if not changed:
            return False
        current.save(update_fields=fields)
        ContactOptOut.objects.create(
            patient=current, channel=channel, via=via, at=now, detail=detail[:200], was_on=was_on[channel]
        )
    return True


def _reached_at(patient: Patient, channel: str, address: str) -> bool:
    if channel == Channel.SMS:
        return patient.phone == address
    return patient.email.strip().lower() == address.lower()


# Replies that mean "stop texting me" (the keywords carriers and Twilio treat as opt-out).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
# Those that also count as the first word of a longer reply ("stop all", "Stop please"). CANCEL, END, QUIT and
# REVOKE do not: "Cancel my appointment" is about a visit, not about texts.
LEADING_STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT"})


# Hyphens inside a word of a reply read as spaces: a phone's keyboard writes "opt-out" for "opt out".
_HYPHENS = str.maketrans({"-": " ", "\u2010": " ", "\u2011": " "})


def is_stop_reply(body: str) -> bool:
    """Whether an inbound text asks to stop: its words (split at spaces and hyphens, the punctuation around each
    dropped) are a STOP word, or one run together ("STOP ALL", "opt out", "opt-out"; letters only), or start with an
    unambiguous one, written whole or as its first two words run together (letters only: "Stop please", "Opt out
    please"). "ST\\0OP", "STOPPED", "Don't stop" and "Opt outside" are not."""
    text = (body or "").upper().translate(_HYPHENS)
    words = [word for word in (token.strip(string.punctuation) for token in text.split()) if word]
    if not words:
        return False
    first_two = words[:2]
    if words[0] in LEADING_STOP_WORDS or (
        all(w.isalpha() for w in first_two) and "".join(first_two) in LEADING_STOP_WORDS
    ):
        return True
    return all(w.isalpha() for w in words) and "".join(words) in STOP_WORDS


# Replies that mean "text me again" after a STOP (the keywords carriers and Twilio treat as opt-in; not YES, which
# answers many a question). The whole reply must be one of them: "Start my treatment" is not.
START_WORDS = frozenset({"START", "UNSTOP"})


def is_start_reply(body: str) -> bool:
    """Whether an inbound text asks for texts again: START or UNSTOP alone, case and punctuation around it aside."""
    words = [word for word in (token.strip(string.punctuation) for token in (body or "").upper().split()) if word]
    return len(words) == 1 and words[0] in START_WORDS


def sms_reply(*, from_number: str, body: str, now: datetime) -> int:
    """Handle an inbound SMS: STOP opts the patients with that number out, START back in (sms_reply_opt_in);
    anything else changes nothing. Return how many patients changed."""
    if is_start_reply(body):
        return sms_reply_opt_in(from_number=from_number, body=body, now=now)
    return sms_reply_opt_out(from_number=from_number, body=body, now=now)


def sms_reply_opt_out(*, from_number: str, body: str, now: datetime) -> int:
    """Handle an inbound SMS: a STOP word opts every patient with that number out; return how many."""
    if not is_stop_reply(body):
        return 0
    count = 0
    for patient in sender_patients(from_number):
        count += patient_opt_out(
            patient=patient, channel=Channel.SMS, via=OptOutVia.SMS_STOP, now=now, detail=f"reply from {from_number}"
        )
    return count


def sms_provider_stopped(*, phone: str, now: datetime, detail: str, since: datetime | None = None) -> int:
    """The SMS provider refused to text `phone` because its owner replied STOP to it (channels.RecipientStopped,
    or a delivery report): the provider heard a STOP this service may not have (the inbound webhook down or not set
    up), and blocks the number until a START. Texts off for every patient with that number, as their STOP would,
    recorded via `sms_provider` (a START undoes it); return how many changed. A patient whose texts were switched
    back on after `since` (when the refused text went; default now) is left alone."""
    count = 0
    for patient in sender_patients(phone, wide=False):
        count += patient_opt_out(
            patient=patient,
            channel=Channel.SMS,
            via=OptOutVia.SMS_PROVIDER,
            now=now,
            detail=detail,
            address=phone,
            unless_opted_in_since=since or now,
        )
    return count


# What an e-mail provider reports (anymail's normalised event types) that means "no more e-mail from you": the
# recipient marked one as spam, or unsubscribed through the provider's own link or list.
EMAIL_STOP_EVENTS = frozenset({"complained", "unsubscribed"})


def email_provider_stopped(
    *, event_type: str, recipient: object, provider: str, now: datetime, happened_at: datetime | None = None
) -> int:
    """A spam complaint or an unsubscribe the e-mail provider reports (reminders.views.email_event): e-mail off for
    every patient with that address (as a STOP does for a number), recorded via `email_provider`; return how many
    changed. Other events (delivered, opened, bounced, ...) change nothing: a bounce is not the patient's choice.
    Providers send an event again for hours: one that happened before the patient's e-mail was switched back on
    (`happened_at`) does not switch it off again."""
    address = recipient.strip() if isinstance(recipient, str) else ""
    if event_type not in EMAIL_STOP_EVENTS or not address:
        return 0
    count = 0
    for patient in Patient.objects.filter(email__iexact=address, merged_into__isnull=True).order_by("pk"):
        count += patient_opt_out(
            patient=patient,
            channel=Channel.EMAIL,
            via=OptOutVia.EMAIL_PROVIDER,
            now=now,
            detail=f"{provider}: {event_type}",
            address=address,
            unless_opted_in_since=happened_at or now,
        )
    return count


def sms_reply_opt_in(*, from_number: str, body: str, now: datetime) -> int:
    """A START from a number: texts back on for each patient with that number whose texts are off because of their
    STOP (their latest ContactOptOut for SMS is a STOP, heard here or by the provider, that switched texts off:
    `was_on`); return how many. It undoes
    the STOP as the provider lifts its block on START; it is no first consent and undoes nothing else (a patient who
    never agreed to texts, whose texts staff switched off, or who turned them off on their own page, which a START
    from a shared phone should not undo, is left as they are). Unlike a STOP,
    the sender must name one number: a national form that reads as numbers of two countries opts nobody in.
    """
    count = 0
    patients = list(sender_patients(from_number, wide=False))
    stop_waits = _numbers_with_a_parked_stop() if patients else set()
    for patient in patients:
        with transaction.atomic():
            current = Patient.objects.select_for_update(of=("self",)).select_related("clinic").get(pk=patient.pk)
            # Race condition: a STOP or a desk edit may have changed the texts while this waited for the lock.
            if channels_on(current)[Channel.SMS]:
                # Race condition: the provider reported this number's STOP, and the report waits parked (its row held
                # past every wait: reminders.reports); recorded later as of when it came, it would switch texts off
                # after this START. The START is recorded: a STOP from before it leaves texts on
                # (patient_opt_out's `unless_opted_in_since`).
                if current.phone in stop_waits:
                    ContactOptIn.objects.create(
                        patient=current,
                        channel=Channel.SMS,
                        via=OptInVia.SMS_START,
                        at=now,
                        wording=body.strip()[:160],
                        detail=f"reply from {from_number}; texts on, the provider's STOP not recorded yet"[:200],
                    )
                continue
            if not current.phone:
                continue
            # Only the patient's own STOP is undone, and only one that switched texts off: texts switched off by
            # staff (a wrong number, say) or never consented to stay off, whatever came after.
            if not _own_stop_to_undo(current):
                continue
            current.sms_consent = True
            chosen = set(current.reminder_channels or []) | {PATIENT_CHANNELS[Channel.SMS]}
            current.reminder_channels = [c for c in ReminderChannel.values if c in chosen]
            current.save(update_fields=["sms_consent", "reminder_channels", "updated_at"])
            ContactOptIn.objects.create(
                patient=current,
                channel=Channel.SMS,
                via=OptInVia.SMS_START,
                at=now,
                wording=body.strip()[:160],
                detail=f"reply from {from_number}"[:200],
            )
            patient_contact_changed(patient_id=current.pk, now=now)  # what they may now get is planned
            count += 1
    return count


def _own_stop_to_undo(patient: Patient) -> bool:
    """Whether the patient's texts are off by their own STOP (heard here or by the provider) that switched them off:
    their latest SMS opt-out. What a START undoes, and nothing else."""
    last_off = ContactOptOut.objects.filter(patient=patient, channel=Channel.SMS).order_by("-at", "-pk").first()
    return last_off is not None and last_off.via in PATIENT_STOP_VIAS and last_off.was_on


def _numbers_with_a_parked_stop() -> set[str]:
    """The numbers of texts whose provider reported their owner's STOP, the report parked and not recorded yet
    (reminders.reports). None is parked almost always: one statement, two when one is."""
    provider_ids = [
        report.get("provider_id")
        for report in ParkedDeliveryReport.objects.filter(channel=Channel.SMS, report__stopped=True).values_list(
            "report", flat=True
        )
        if isinstance(report, dict) and report.get("provider_id")
    ]
    if not provider_ids:
        return set()
    return set(
        OutboxMessage.objects.filter(channel=Channel.SMS, provider_id__in=provider_ids)
        .exclude(recipient="")
        .values_list("recipient", flat=True)
    )


def _texts_agreed(patient: Patient) -> bool:
    return _consented({"reminder_channels": patient.reminder_channels, "sms_consent": patient.sms_consent})[Channel.SMS]


def merge_consent_record(*, merged: Patient, into: Patient, now: datetime) -> None:
    """clinic.merging subscriber, called before anything moves: the joined record gets texts only where both records
    had them (merging._stricter_consent). When one record's texts were off for a reason a START cannot undo (never
    agreed, switched off by staff or on the patient's own page) and the other's were on, or off by its own STOP, the
    survivor's texts are off for good until someone switches them on: recorded as an opt-out `via` merge, so that a
    START (sms_reply_opt_in) finds it, not the other record's STOP, which moves to the survivor with its rows and
    would otherwise switch on texts the survivor never agreed to."""
    # Chosen and consented to, the number aside: the merge fills in a number the survivor lacks from the other.
    startable = [_texts_agreed(side) or _own_stop_to_undo(side) for side in (merged, into)]
    if all(startable) or not any(startable):
        return  # a START undoes what it would have on either record, or nothing on either
    ContactOptOut.objects.create(
        patient=into,
        channel=Channel.SMS,
        via=OptOutVia.MERGE,
        at=now,
        detail=f"record {merged.pk} merged in"[:200],
        was_on=channels_on(into)[Channel.SMS],
    )


def sender_patients(from_number: str, *, wide: bool = True) -> QuerySet[Patient]:
    """The patients (not merged away) whose stored E.164 number an inbound sender is, however the provider wrote it.

    International forms (`+`, `00` or bare digits with the country code) are read as such. A national form
    ("07911 123456", or "(212) 555-0123" where no trunk 0 is dialled, as a provider of that country may write it) is
    read in each country that has a clinic (a bounded set), a reading counting only where it is a valid number of
    that country, and, when `wide`, matches every number that results: a STOP not honoured is worse than one read
    widely. Bare digits may be either ("2125550123": Morocco's +212..., or New York's +1 212...), so a STOP reads
    them both ways. Not `wide` (an opt-in), a sender with an international reading is read so only, and a national
    form matches only when every reading gives the same number. The sender exactly as given matches too.
    """
    match = Q(phone=from_number)
    international = _international_e164(from_number)
    if international is not None:
        match |= Q(phone=international)
    if not from_number.strip().startswith(("+", "00")) and (wide or international is None):
        countries = Clinic.objects.exclude(country="").values_list("country", flat=True).distinct()
        numbers = {phone_to_e164(from_number, country=country) for country in countries} - {None}
        if wide or len(numbers) == 1:
            for number in numbers:
                match |= Q(phone=number)
    return Patient.objects.filter(match, merged_into__isnull=True).order_by("pk")


def _international_e164(sender: str) -> str | None:
    """`sender` in E.164 when it is written with its country code (+44..., 0044..., 447911...), else None."""
    text = sender.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text[:1].isdigit() and not text.startswith("0"):
        text = "+" + text
    if not text.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


# --- A patient's own choices (the appointment page, portal/) ------------------------------------------


def senders_named(clinic: Clinic) -> str:
    """Who may send a patient of `clinic` (their home clinic) messages, in a patient's words: consent and opt-outs
    are the patient's across the organisation, and each visit's messages come from the visit's clinic, so an
    organisation of several is named with every clinic of it ("Bloom Group (Bloom London, Bloom West)"); else the
    clinic's name. The SMS consent wording and the unsubscribe page (reminders.views) name the same."""
    clinics = sorted(clinic.organisation.clinics.values_list("name", flat=True)) if clinic.organisation_id else []
    if len(clinics) > 1:
        return f"{clinic.organisation.name} ({', '.join(clinics)})"
    return clinic.name


def sms_consent_wording(patient: Patient) -> str:
    """What a patient ticks to switch text messages on: shown on their page and recorded as shown.

    Consent is the patient's across their organisation, and a visit's texts come from the clinic of the visit:
    the wording names every clinic that may send them (the organisation and its clinics), not only the home
    clinic, so a patient of several sites agrees to what they will get."""
    return clinic_sms_consent_wording(patient.clinic)


def clinic_sms_consent_wording(clinic: Clinic) -> str:
    """sms_consent_wording for a patient of `clinic` (their home clinic), one registered there included."""
    return (
        f"I agree to get text messages from {senders_named(clinic)} about my appointments and their care "
        f"at the mobile number they have for me. I can reply STOP at any time."
    )


def channels_on(patient: Patient) -> dict[str, bool]:
    """Which channels actually reach the patient now: chosen, consented (SMS) and with an address."""
    chosen = patient.reminder_channels or []
    return {
        Channel.EMAIL: PATIENT_CHANNELS[Channel.EMAIL] in chosen and bool(patient.email),
        Channel.SMS: PATIENT_CHANNELS[Channel.SMS] in chosen and patient.sms_consent and bool(patient.phone),
    }


# Where staff or a platform, not the patient, switched a channel (ContactOptIn / ContactOptOut `via`).
STAFF_VIAS = frozenset({OptOutVia.DESK, OptOutVia.API, OptOutVia.ADMIN})
# Not the patient's own choice either: a merge of records one of which never agreed (merge_consent_record).
NOT_THE_PATIENTS_VIAS = STAFF_VIAS | {OptOutVia.MERGE}
# The patient's STOP, heard by this service or by the SMS provider: a START undoes either, and the provider blocks
# the number until that START whatever staff switch on.
PATIENT_STOP_VIAS = frozenset({OptOutVia.SMS_STOP, OptOutVia.SMS_PROVIDER})


def _consented(values: Mapping[str, object]) -> dict[str, bool]:
    """Which channels contact choices switch on, addresses aside: chosen, and for SMS consented to."""
    chosen = values.get("reminder_channels") or []
    return {
        Channel.EMAIL: PATIENT_CHANNELS[Channel.EMAIL] in chosen,
        Channel.SMS: PATIENT_CHANNELS[Channel.SMS] in chosen and bool(values.get("sms_consent")),
    }


def staff_consent_record(*, patient_id, now: datetime, change: ContactChange | None = None) -> None:
    """Record a channel that staff or a platform switched on (ContactOptIn) or off (ContactOptOut), with who did it.

    Subscribed to clinic's contact seam (reminders.apps): called in the transaction of the change, the patient's row
    locked. A change the patient made themselves (`change` None: their page, a reply) is recorded where it is made.
    The desk shows the consent box with the wording to read to the patient (frontdesk.forms.PatientForm), so a desk
    opt-in to texts records that wording; a platform's own form is not known (blank).
    """
    if change is None:
        return
    patient = Patient.objects.select_related("clinic__organisation").get(pk=patient_id)
    before = _consented(change.before)
    after = _consented({"reminder_channels": patient.reminder_channels, "sms_consent": patient.sms_consent})
    detail = change.by.label[:200]
    for channel in (Channel.EMAIL, Channel.SMS):
        if after[channel] == before[channel]:
            continue
        if after[channel]:
            wording = sms_consent_wording(patient) if channel == Channel.SMS and change.by.via == OptInVia.DESK else ""
            ContactOptIn.objects.create(
                patient=patient, channel=channel, via=change.by.via, at=now, wording=wording, detail=detail
            )
        elif change.before:  # a registration switches nothing off
            ContactOptOut.objects.create(
                patient=patient, channel=channel, via=change.by.via, at=now, detail=detail, was_on=True
            )


def sms_restart_advice(stopped: ContactOptOut) -> str:
    """What staff must know before switching texts back on after the patient's own STOP (`stopped`, their latest
    SMS opt-out), or "": where the provider blocks a number after a STOP (`blocks_after_stop`), texts reach the
    patient only once they text START; after a STOP only the provider heard, their START may not have reached this
    service either, so switching texts on here is then the way back."""
    if stopped.via not in PATIENT_STOP_VIAS or not channels.sms_backend_blocks_after_stop():
        return ""
    advice = (
        "The SMS provider blocks their number after a STOP: texts reach them again only once they text START"
        " to the number the clinic's texts come from."
    )
    if stopped.via == OptOutVia.SMS_PROVIDER:
        advice += " If they have, and texts are still off here, switch them back on."
    return advice


def patient_sms_restart_advice(stopped: ContactOptOut) -> str:
    """sms_restart_advice in the patient's words, for their own page when they switch texts back on after their own
    STOP (`stopped`), or "": the provider's block stays until they text START, whatever they switch on here."""
    if not sms_restart_advice(stopped):
        return ""
    advice = (
        "You replied STOP to one of our texts, so our text service holds back our texts to you until you text START"
        " to the number they come from. Please text START to it."
    )
    if stopped.via == OptOutVia.SMS_PROVIDER:
        advice += " If you have already, there is nothing more to do."
    return advice


def email_restart_advice(stopped: ContactOptOut) -> str:
    """What staff must know before switching e-mail back on after the patient's spam complaint or unsubscribe that
    the e-mail provider reported (`stopped`, their latest e-mail opt-out), or "": the provider keeps refusing the
    address (its suppression list) whatever is switched on here, and each e-mail then fails as refused."""
    if stopped.via != OptOutVia.EMAIL_PROVIDER:
        return ""
    return (
        "The e-mail provider stops sending to their address after a spam complaint or unsubscribe: e-mails reach"
        " them again only once the address is taken off the provider's suppression list."
    )


def latest_own_opt_out(patient: Patient, channel: str) -> ContactOptOut | None:
    """The patient's own latest withdrawal of `channel` (theirs, not staff's or a platform's), if that is why the
    channel is off: what the desk tells staff before they switch it back on."""
    stopped = latest_opt_out(patient, channel)
    if stopped is not None and stopped.via == OptOutVia.MERGE:
        # A merge's opt-out says one record never agreed; beneath it the other's own STOP may still stand (the
        # provider then blocks the number until START), which staff must hear of before switching texts on.
        stopped = (
            ContactOptOut.objects.filter(patient=patient, channel=channel, at__lte=stopped.at)
            .exclude(via=OptOutVia.MERGE)
            .order_by("-at", "-pk")
            .first()
        )
        if (
            stopped is not None
            and ContactOptIn.objects.filter(patient=patient, channel=channel, at__gt=stopped.at).exists()
        ):
            stopped = None  # switched back on since (a START, the desk): that STOP no longer stands
    return None if stopped is None or stopped.via in NOT_THE_PATIENTS_VIAS else stopped


def latest_opt_out(patient: Patient, channel: str) -> ContactOptOut | None:
    """The patient's latest withdrawal of `channel` (e-mail or SMS), if the channel is off and nothing switched it on
    since: what the desk shows beside the choice."""
    if channels_on(patient)[channel]:
        return None
    opt_out = ContactOptOut.objects.filter(patient=patient, channel=channel).order_by("-at", "-pk").first()
    if opt_out is None or ContactOptIn.objects.filter(patient=patient, channel=channel, at__gt=opt_out.at).exists():
        return None
    return opt_out


@dataclass(frozen=True)
class PreferencesChange:
    switched_on: tuple[str, ...] = ()
    switched_off: tuple[str, ...] = ()
    muted_topics: tuple[str, ...] = ()
    topics_changed: bool = False
    # What the patient must do for texts switched back on to reach them (patient_sms_restart_advice), or "".
    advice: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.switched_on or self.switched_off or self.topics_changed)


def _invalid(message: str, field: str) -> InvalidInput:
    return InvalidInput(ErrorCode.INVALID_PATIENT, message, field=field)


def patient_preferences_update(
    *,
    patient: Patient,
    now: datetime,
    email: bool | None = None,
    sms: bool | None = None,
    sms_consent: bool = False,
    muted_topics: Iterable[str] | None = None,
    mute: Mapping[str, bool] | None = None,
) -> PreferencesChange:
    """The patient's own choice of channels and kinds of message; None leaves a setting as it is.

    Switching a channel off is an opt-out (ContactOptOut, as an unsubscribe link records one);
    switching SMS back on needs `sms_consent` (the box they ticked), recorded with its wording
    (ContactOptIn). Confirmations and change notices are not optional: only care instructions
    and reminders can be muted (Patient.muted_topics). Texts switched back on after the patient's own
    STOP, where the provider blocks until START, come with `advice` to text START (patient_sms_restart_advice).
    `muted_topics` is the whole list; `mute` names only the kinds a page changed (True: muted, False: unmuted),
    applied to the list as stored under the patient's lock, so that a page left open does not undo a kind muted
    elsewhere meanwhile (as the channels beside them, saved only where changed).
    """
    topics = None if muted_topics is None else sorted(set(muted_topics))
    if any(topic not in MessageTopic.values for topic in (*(topics or ()), *(mute or {}))):
        raise _invalid(f"Kinds of message are drawn from {MessageTopic.values}.", "muted_topics")
    with transaction.atomic():
        current = Patient.objects.select_for_update(of=("self",)).select_related("clinic").get(pk=patient.pk)
        if mute:
            # Race condition: merged into the list as it is now, read under the lock.
            merged = set(current.muted_topics or []) if topics is None else set(topics)
            merged |= {topic for topic, muted in mute.items() if muted}
            merged -= {topic for topic, muted in mute.items() if not muted}
            topics = sorted(merged)
        state = channels_on(current)
        chosen = set(current.reminder_channels or [])
        fields = {"updated_at"}
        advice = ""
        on: list[str] = []
        off: list[str] = []
        if email is not None and email != state[Channel.EMAIL]:
            if email and not current.email:
                raise _invalid("We have no e-mail address for you. Please ask the clinic to add it.", "email")
            (on if email else off).append(Channel.EMAIL)
        if sms is not None and sms != state[Channel.SMS]:
            if sms and not current.phone:
                raise _invalid("We have no mobile number for you. Please ask the clinic to add it.", "sms")
            if sms and not sms_consent:
                raise _invalid("To get text messages, tick the box to say you agree to them.", "sms_consent")
            if sms:  # read while texts are still off: their own STOP behind it, which the provider may hold them to
                stopped = latest_own_opt_out(current, Channel.SMS)
                advice = patient_sms_restart_advice(stopped) if stopped is not None else ""
            (on if sms else off).append(Channel.SMS)
            current.sms_consent = sms
            fields.add("sms_consent")
        chosen |= {PATIENT_CHANNELS[c] for c in on}
        chosen -= {PATIENT_CHANNELS[c] for c in off}
        current.reminder_channels = [c for c in ReminderChannel.values if c in chosen]
        if on or off:
            fields.add("reminder_channels")
        topics_changed = topics is not None and topics != sorted(current.muted_topics or [])
        if topics_changed:
            current.muted_topics = topics
            fields.add("muted_topics")
        if len(fields) == 1:
            return PreferencesChange(muted_topics=tuple(current.muted_topics or []))
        current.save(update_fields=sorted(fields))
        for channel in off:
            ContactOptOut.objects.create(patient=current, channel=channel, via=OptOutVia.PATIENT_PAGE, at=now)
        for channel in on:
            ContactOptIn.objects.create(
                patient=current,
                channel=channel,
                via=OptInVia.PATIENT_PAGE,
                at=now,
                wording=sms_consent_wording(current) if channel == Channel.SMS else "",
            )
        patient_contact_changed(patient_id=current.pk, now=now)  # what they may now get is planned
    return PreferencesChange(tuple(on), tuple(off), tuple(current.muted_topics or []), topics_changed, advice)
