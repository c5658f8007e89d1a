"""Reads scoped to what a caller may see: staff see their clinics, nothing else.

Every query the interfaces make about patients or appointments starts from
one of these, so tenancy is enforced in one place.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

import phonenumbers
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value, When, Window
from django.db.models.functions import Coalesce, ExtractIsoWeekDay, RowNumber, TruncDate, TruncTime
from django.db.models.lookups import Contains, Exact
from django.utils import timezone

from clinic.duplicates import Identity, MatchReason, match_reasons, normalise_email
from clinic.models import (
    AUDIT_ONLY_ACTIONS,
    ApiClient,
    Appointment,
    AuditEvent,
    Clinic,
    Organisation,
    Patient,
    StaffMembership,
    StaffRole,
    TimeOff,
    WorkingHours,
    joined_periods,
)
from core.compiled import CompiledQuery, columns, instances
from core.errors import ErrorCode, InvalidInput
from core.ids import parse_uuid
from core.text_match import Lowered, name_forms

CLINICAL_ROLES = (StaffRole.CLINICIAN, StaffRole.CLINIC_ADMIN)


def catalogue_entry(model, code: str | None, *, field: str, what: str):
    """The catalogue row (procedure, medication, condition, area) with `code`, or None for no code;
    an unknown code is an InvalidInput naming `field` (code `unknown_<field>`)."""
    if not code:
        return None
    found = model.objects.filter(code=code).first()
    if found is None:
        known = model.objects.values_list("code", flat=True)
        raise InvalidInput.unknown_code(ErrorCode(f"unknown_{field}"), what=what, given=code, known=known, field=field)
    return found


def clinics_granted_to_client(client_id) -> QuerySet[Clinic]:
    """The clinics granted to an API client as it stands: one by one, or every clinic of a granted organisation
    (the API's scope, `api.access`; what an endpoint's deliveries may list, `reminders.webhooks`)."""
    return Clinic.objects.filter(
        Q(pk__in=ApiClient.clinics.through.objects.filter(apiclient_id=client_id).values("clinic_id"))
        | Q(
            organisation_id__in=ApiClient.organisations.through.objects.filter(apiclient_id=client_id).values(
                "organisation_id"
            )
        )
    )


def clinics_for_user(user) -> QuerySet[Clinic]:
    """The clinics the user was granted: one by one, or every clinic of an organisation (now and later)."""
    if not getattr(user, "is_authenticated", False):
        return Clinic.objects.none()
    granted = StaffMembership.objects.filter(user=user)
    return Clinic.objects.filter(
        Q(pk__in=granted.filter(clinic__isnull=False).values("clinic_id"))
        | Q(organisation_id__in=granted.filter(clinic__isnull=True).values("organisation_id"))
    )


def staff_role(user, clinic_id) -> str | None:
    """The user's role at the clinic (a grant of the clinic itself wins over one of its whole
    organisation), or None when they have none there."""
    if not getattr(user, "is_authenticated", False):
        return None
    rows = StaffMembership.objects.filter(
        Q(clinic_id=clinic_id)
        | Q(clinic__isnull=True, organisation_id__in=Clinic.objects.filter(pk=clinic_id).values("organisation_id")),
        user=user,
    ).values_list("clinic_id", "role")
    roles = dict(rows)
    return next((role for granted, role in roles.items() if granted is not None), roles.get(None))


def is_clinical(user, clinic_id) -> bool:
    return staff_role(user, clinic_id) in CLINICAL_ROLES


def organisations_of(clinics: QuerySet[Clinic]) -> QuerySet[Organisation]:
    return Organisation.objects.filter(pk__in=clinics.values("organisation_id"))


def patients_in(clinics: QuerySet[Clinic]) -> QuerySet[Patient]:
    """The patients of every organisation these clinics belong to: the record is one per patient,
    shared by the organisation's clinics (appointments stay per clinic: `appointments_in`).
    Tombstones (records merged into another) are not patients any more: see `merged_patient_survivor`."""
    return Patient.objects.filter(
        organisation_id__in=clinics.values("organisation_id"), merged_into__isnull=True
    ).select_related("clinic")


# Read by every API request that names a patient: compiled once per connection and number of clinics
# (core.compiled), so the request does not build and compile the scope's subquery and join each time.
_PATIENT_IN = CompiledQuery(
    lambda clinic_ids, pk: (
        patients_in(Clinic.objects.filter(pk__in=clinic_ids)).filter(pk=pk).values_list(*columns(Patient, "clinic"))
    )
)


def patient_in(clinic_ids: list, pk) -> Patient | None:
    """`patients_in(<these clinics>).filter(pk=pk).first()`, compiled: the patient `pk` of these clinics'
    organisations (a tombstone is none), its clinic loaded, or None (None too for no `pk`)."""
    if pk is None:
        return None
    found = instances(_PATIENT_IN.rows(sorted(clinic_ids), pk), Patient, "clinic")
    return found[0] if found else None


MAX_MERGE_CHAIN = 10


def merged_patient_survivor(clinics: QuerySet[Clinic], patient_id) -> Patient | None:
    """The record a tombstone in these clinics' organisations was merged into (following a chain), or None
    when `patient_id` is no tombstone of theirs. For redirects: a merged record's address still works."""
    return merged_patient_survivors(clinics, [patient_id]).get(patient_id)


def merged_patient_survivors(clinics: QuerySet[Clinic], patient_ids) -> dict:
    """`merged_patient_survivor` of each of `patient_ids` that is a tombstone of these clinics' organisations, keyed
    by the id as the caller gave it (a UUID or its text, in any case: each is read with `parse_uuid`, and one that is
    no UUID is simply no tombstone), in one statement (and a chain's rare further hops): a search naming many ids
    asks once."""
    given_as: dict = {}
    for given in patient_ids:
        pk = parse_uuid(given)
        if pk is not None:
            given_as.setdefault(pk, []).append(given)
    if not given_as:
        return {}
    tombstones = Patient.objects.filter(
        organisation_id__in=clinics.values("organisation_id"), pk__in=list(given_as), merged_into__isnull=False
    ).select_related("merged_into")
    found = {}
    for tombstone in tombstones:
        survivor = tombstone.merged_into
        for _ in range(MAX_MERGE_CHAIN):  # merges re-point older tombstones, so a chain is at most one hop
            if survivor.merged_into_id is None:
                found.update(dict.fromkeys(given_as[tombstone.pk], survivor))
                break
            survivor = survivor.merged_into
    return found


@dataclass(frozen=True)
class DuplicateCandidate:
    patient: Patient
    reasons: list[MatchReason]


# Rows read at most for one registration: the same birth date, phone or e-mail, in one organisation.
DUPLICATE_ROWS_READ = 200
DUPLICATE_CANDIDATES_SHOWN = 10


def identity_of(patient: Patient) -> Identity:
    """Who a record (saved or not) says the patient is, as the duplicate matcher reads it."""
    return Identity(
        first_name=patient.first_name,
        last_name=patient.last_name,
        date_of_birth=patient.date_of_birth,
        phone=patient.phone,
        email=patient.email,
    )


def duplicate_candidates(*, organisation_id, identity: Identity) -> list[DuplicateCandidate]:
    """Live records of the organisation that may be the person `identity` describes, with why; one query.

    The database narrows to the same birth date, phone or e-mail; the matcher (clinic.duplicates)
    decides on the names. Tombstones are never candidates, but what they held still counts: a merged-away
    record's old number, address or name offers its survivor (one hop: `merged_into` is always a live record), so
    a person whose survivor kept another number is not registered a third time.
    """
    condition = Q()
    if identity.date_of_birth is not None:
        condition |= Q(date_of_birth=identity.date_of_birth)
    exact = Q(pk__in=[])
    if identity.phone:
        exact |= Q(phone=identity.phone)
    if normalise_email(identity.email):
        # In any case of any script, on SQLite too (its LIKE, behind iexact, folds ASCII letters only).
        exact |= Q(Exact(Lowered("email"), identity.email.strip().lower()))
    condition |= exact
    if not condition:
        return []
    rows = (
        Patient.objects.filter(condition, organisation_id=organisation_id)
        .select_related("merged_into")
        .only(
            *("id", "first_name", "last_name", "date_of_birth", "phone", "email", "clinic_id", "organisation_id"),
            *("merged_into__id", "merged_into__first_name", "merged_into__last_name", "merged_into__date_of_birth"),
            *("merged_into__phone", "merged_into__email", "merged_into__clinic_id", "merged_into__organisation_id"),
        )
        # The rows of the same phone or e-mail and those of the same birth date taken in turn, each by name: a birthday
        # shared by more than DUPLICATE_ROWS_READ others must not push the same number out of what is read, nor an
        # address a desk gave hundreds of records (a placeholder) the same person's name and birth date.
        .annotate(
            turn=Window(
                RowNumber(),
                partition_by=[Case(When(exact, then=Value(0)), default=Value(1))],
                order_by=["last_name", "first_name", "id"],
            )
        )
        .order_by("turn", Case(When(exact, then=Value(0)), default=Value(1)), "id")[:DUPLICATE_ROWS_READ]
    )
    found: dict = {}  # by the live record, in the order first met
    for row in rows:
        reasons = match_reasons(identity, identity_of(row))
        if reasons:
            live = row.merged_into or row
            known = found.setdefault(live.pk, DuplicateCandidate(patient=live, reasons=[]))
            known.reasons.extend(reason for reason in reasons if reason not in known.reasons)
    # The likeliest first, before the cut: the same name and birth date, then by how many reasons, a phone (one
    # person's) before an e-mail address (often a family's), then as read. An address a family (or a desk's
    # placeholder) gives ten records must not hide the record of the same person.
    ranked = sorted(
        found.values(),
        key=lambda candidate: (
            MatchReason.BIRTH_DATE_AND_NAME not in candidate.reasons,
            -len(candidate.reasons),
            MatchReason.PHONE not in candidate.reasons,
        ),
    )
    return ranked[:DUPLICATE_CANDIDATES_SHOWN]


def appointments_in(clinics: QuerySet[Clinic]) -> QuerySet[Appointment]:
    return Appointment.objects.filter(clinic__in=clinics).select_related(
        "clinic", "patient", "practitioner", "procedure", "area"
    )


def changes_counted(appointment_id) -> Q:
    """The audit entries that count as the appointment's changes: each lifecycle change, not a message staff asked
    to send again (`AUDIT_ONLY_ACTIONS`)."""
    return Q(appointment_id=appointment_id) & ~Q(action__in=AUDIT_ONLY_ACTIONS)


def appointment_sequence(appointment_id) -> int:
    """The appointment's change count: the `sequence` its webhooks carry, and its reads."""
    return AuditEvent.objects.filter(changes_counted(appointment_id)).count()


def with_sequence(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """`appointments`, each with `change_sequence` (`appointment_sequence`), in the same statement."""
    counted = (
        AuditEvent.objects.filter(changes_counted(OuterRef("pk")))
        .order_by()
        .values("appointment_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return appointments.annotate(change_sequence=Coalesce(Subquery(counted), 0))


def in_time_off(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """Those of `appointments` that overlap their practitioner's time off, each with `away`: the reason of the
    first such time off (blank when none was given). One statement with the rest of the query."""
    away = TimeOff.objects.filter(
        practitioner_id=OuterRef("practitioner_id"), start_at__lt=OuterRef("end_at"), end_at__gt=OuterRef("start_at")
    )
    return appointments.annotate(away=Subquery(away.order_by("start_at").values("reason")[:1])).filter(Exists(away))


def off_working_hours(appointments: QuerySet[Appointment], tz) -> QuerySet[Appointment]:
    """Those of `appointments` that no period of their practitioner's weekly hours holds, read in `tz` (their clinic's
    zone): outside_working_hours in SQL, one statement with the rest of the query, for any number of practitioners.
    An appointment that ends on another local day than it starts is outside, as there."""
    held = WorkingHours.objects.filter(
        practitioner_id=OuterRef("practitioner_id"),
        weekday=OuterRef("local_weekday"),
        start_time__lte=OuterRef("local_start"),
        end_time__gte=OuterRef("local_end"),
    )
    return appointments.annotate(
        local_weekday=ExtractIsoWeekDay("start_at", tzinfo=tz) - 1,  # Weekday: Monday is 0
        local_start=TruncTime("start_at", tzinfo=tz),
        local_end=TruncTime("end_at", tzinfo=tz),
        local_start_day=TruncDate("start_at", tzinfo=tz),
        local_end_day=TruncDate("end_at", tzinfo=tz),
    ).filter(~Exists(held) | ~Q(local_start_day=F("local_end_day")))


def outside_working_hours(appointments: list[Appointment], hours: list[WorkingHours], tz) -> list[Appointment]:
    """Those of one practitioner's `appointments` that no period of their weekly `hours` holds (in `tz`, their
    clinic's zone): what a change of hours left booked when nobody is there. In memory, no query."""
    by_day: dict[int, list[tuple]] = {}
    for period in hours:
        by_day.setdefault(period.weekday, []).append((period.start_time, period.end_time))
    by_day = {weekday: joined_periods(periods) for weekday, periods in by_day.items()}

    def held(appointment: Appointment) -> bool:
        start, end = appointment.start_at.astimezone(tz), appointment.end_at.astimezone(tz)
        if end.date() != start.date():
            return False
        return any(since <= start.time() and end.time() <= until for since, until in by_day.get(start.weekday(), []))

    return [appointment for appointment in appointments if not held(appointment)]


# Where dates are written month first; elsewhere 18/06/1985 is the 18th of June.
MONTH_FIRST_COUNTRIES = frozenset({"US", "PR", "GU", "VI", "AS", "MP", "UM", "PH", "FM", "MH", "PW"})
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TYPED_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})$")


def typed_date(query: str, *, country: str = "") -> date | None:
    """A date as staff type it: ISO (1985-06-18), or day first (18/06/1985, 18.06.1985, 18/06/85) except where
    the country writes month first (06/18/1985 in the US); None when it is not one. A two-digit year is the latest
    year ending so that is not after today (85 is 1985, 19 is 2019): it is a date of birth."""
    query = query.strip()
    short_year = False
    if match := _ISO_DATE.match(query):
        year, month, day = (int(part) for part in match.groups())
    elif match := _TYPED_DATE.match(query):
        first, second, year = (int(part) for part in match.groups())
        month, day = (first, second) if country in MONTH_FIRST_COUNTRIES else (second, first)
        short_year = len(match.group(3)) == 2
    else:
        return None
    try:
        if short_year:
            today = timezone.localdate()
            year += today.year // 100 * 100
            if date(year, month, 28 if (month, day) == (2, 29) else day) > today:
                year -= 100
        return date(year, month, day)
    except ValueError:
        return None


def _two_digit_year(query: str) -> bool:
    match = _TYPED_DATE.match(query.strip())
    return match is not None and len(match.group(3)) == 2


def _phone_condition(query: str, country: str, *, leading: bool = False) -> Q:
    """Patients whose stored (E.164) number is the one typed, in whatever format, or begins with it, or (unless
    `leading`) holds its digits anywhere. A trunk zero written in brackets after the country code ("+44 (0)7911 12",
    as printed on letterheads) is not dialled."""
    typed = query.strip()
    if typed.startswith(("+", "00")):
        typed = _BRACKETED_TRUNK_ZERO.sub(" ", typed)
    digits = "".join(ch for ch in typed if ch.isdigit())
    if len(digits) < 4:
        return Q(pk__in=[])
    # Leading only: the digits start the number after its country code, whichever (1 to 3 digits).
    condition = Q(phone__regex=rf"^\+[0-9]{{1,3}}{digits}") if leading else Q(phone__contains=digits)
    if typed.startswith(("+", "00")):
        condition |= Q(phone__startswith="+" + (digits[2:] if typed.startswith("00") else digits))
    elif country:
        # As dialled in the clinic's country: "0791 1" begins +44 7911, "07911 123101" is +44 7911123101.
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(country)
        prefix = (metadata.national_prefix or "") if metadata else ""
        if prefix and digits.startswith(prefix):
            condition |= Q(phone__startswith=f"+{metadata.country_code}{digits[len(prefix) :]}")
    try:
        number = phonenumbers.parse("+" + typed[2:] if typed.startswith("00") else typed, country or None)
    except phonenumbers.NumberParseException:
        return condition
    return condition | Q(phone=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


_BRACKETED_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")


def _words_match(words: list[str]) -> Q:
    """Every word in the first name, the last name or the e-mail address, in any case of any script; in a name also
    as people type it (`Patient.search_name`): without its accents or apostrophes, "nunez" for Núñez, "O'Brien" for
    O’Brien, "mary-jane" for Mary Jane."""
    condition = Q()
    for word in words:
        folded = word.lower()
        matches = (
            Q(Contains(Lowered("first_name"), folded))
            | Q(Contains(Lowered("last_name"), folded))
            | Q(Contains(Lowered("email"), folded))
        )
        for plain in name_forms(word):  # a word of only apostrophes or dashes, empty, would match every name
            if plain:
                matches |= Q(search_name__contains=plain)
        condition &= matches
    return condition


def patient_search(patients: QuerySet[Patient], query: str, *, country: str = "") -> QuerySet[Patient]:
    """Match name, e-mail, phone (in any format; national numbers as `country`'s) or date of birth
    (ISO, or as typed in `country`, e.g. 18/06/1985), or a name with a date of birth ("Bennett 18/06/1985").
    Letters are matched in any case of any script, on PostgreSQL and SQLite alike (`core.text_match.Lowered`); a query with
    a letter or an @ in it is no phone number (an address with digits would find numbers holding them)."""
    query = (query or "").strip()
    # A word of punctuation only ("." or "@" alone) says nothing of anyone: it would list every address.
    words = [word for word in query.split() if not all(unicodedata.category(ch)[0] in "PZ" for ch in word)]
    if not words:
        return patients.none()
    condition = _words_match(words)
    born = typed_date(query, country=country)
    if born is not None:
        condition |= Q(date_of_birth=born)
    if (born is None or _two_digit_year(query)) and not any(ch.isalpha() or ch == "@" for ch in query):
        # Six digits in pairs are a date with a two-digit year and the start of a number as much ("06.12.34" of a
        # French mobile): both are asked, the number only as its start.
        condition |= _phone_condition(query, country, leading=born is not None)
    elif len(words) > 1:
        dated = [(word, typed_date(word, country=country)) for word in words]
        dates = [(word, day) for word, day in dated if day is not None]
        if len(dates) == 1:  # a name and a date of birth: both must hold
            word, day = dates[0]
            condition |= _words_match([w for w in words if w != word]) & Q(date_of_birth=day)
    return patients.filter(condition)
