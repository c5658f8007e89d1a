"""What a clinic is: its catalogue, people, patients' histories and appointments.

Catalogue entries (procedures, medications, conditions, areas) are keyed by
their stable code, so fixtures, rules and the API all speak the same codes.
Times are stored in UTC; each clinic's IANA zone says how to show them.
"""

import functools
import hashlib
import re
import secrets
import uuid
import zoneinfo
from collections.abc import Iterable
from datetime import time
from importlib import resources

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.db.models.signals import pre_save
from django.dispatch import receiver

from clinic import setting_checks
from core.plain_text import validate_lines, validate_single_line
from core.text_match import search_name


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a region's folder ("Europe")
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/London).")


@functools.cache
def _zone_countries() -> dict[str, str]:
    """IANA zone -> ISO 3166 alpha-2 country, from the tz database's own zone.tab (the tzdata package)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    rows = (line.split("\t") for line in text.splitlines() if line and not line.startswith("#"))
    return {row[2]: row[0] for row in rows if len(row) >= 3}


def country_for_timezone(value: str) -> str:
    """The country a zone belongs to (Europe/London -> GB), or "" for a zone of no one country (UTC)."""
    return _zone_countries().get(value, "")


def validate_country(value: str) -> None:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"{value!r} is not a country code we know (ISO 3166 alpha-2, e.g. GB).")


def validate_e164(value: str) -> None:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValidationError("Enter the phone number in international form, e.g. +447911123456.")
    if (
        not phonenumbers.is_valid_number(number)
        or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != value
    ):
        raise ValidationError("Enter a valid phone number in E.164 form, e.g. +447911123456.")


class ReminderChannel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"


def validate_reminder_channels(value) -> None:
    allowed = set(ReminderChannel.values)
    if not isinstance(value, list) or any(item not in allowed for item in value):
        raise ValidationError(f"Reminder channels must be a list drawn from {sorted(allowed)}.")
    if len(set(value)) != len(value):
        raise ValidationError("Each reminder channel may be given once.")


# --- Catalogue -----------------------------------------------------------------


class MessageTopic(models.TextChoices):
    """What a patient can switch off by kind (per channel is `reminder_channels`)."""

    CARE = "care", "Care instructions"
    REMINDERS = "reminders", "Appointment reminders"


def validate_message_topics(value) -> None:
    if not isinstance(value, list) or any(item not in MessageTopic.values for item in value):
        raise ValidationError(f"Topics are a list drawn from {MessageTopic.values}.")


class ProcedureType(models.Model):
    code = models.SlugField(primary_key=True, max_length=50)
    name = models.CharField(max_length=200, validators=[validate_single_line])
    short_name = models.CharField(
        max_length=40,
        blank=True,
        validators=[validate_single_line],
        help_text='For sentences and tight spaces ("Botox"); the name when empty.',
    )
    duration_minutes = models.PositiveIntegerField(default=60)
    bookable = models.BooleanField(default=True, help_text="Clinic procedures are bookable.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(duration_minutes__gte=5), name="procedure_duration_min"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def display_short(self) -> str:
        return self.short_name or self.name


class Medication(models.Model):
    code = models.SlugField(primary_key=True, max_length=50)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Condition(models.Model):
    code = models.SlugField(primary_key=True, max_length=50)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TreatmentArea(models.Model):
    code = models.SlugField(primary_key=True, max_length=50)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# --- Clinic and people ----------------------------------------------------------


def validate_colour(value: str) -> None:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        raise ValidationError(f"{value!r} is not a colour like #1f6f5c.")


class Organisation(models.Model):
    """Who owns clinics (sites) and the patients they share: one record per patient across its sites.

    A patient's history, medications, intake and consent belong to the organisation; an appointment
    takes place at one of its clinics. A clinic made without one is an organisation of one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.SlugField(unique=True, max_length=50)
    name = models.CharField(max_length=200, validators=[validate_single_line])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# The longest cancellation window a clinic may set: a year.
MAX_CANCELLATION_WINDOW_HOURS = 24 * 365

# What a clinic is set up with, and moves with it to another organisation (Clinic._move_refusal).
CLINIC_SET_UP = frozenset({"clinic.StaffMembership", "clinic.Practitioner", "clinic.ApiClient"})
_UNKNOWN = object()  # an organisation not read with the clinic


class ClinicQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """An update that writes the organisation (`update`, and `bulk_update`, which updates through it) is held
        to what `Clinic.save` holds: a clinic in use does not move (`Clinic._move_refusal`). The rows are locked,
        written, then checked in one transaction: a refused move leaves every row as it was."""
        if not {"organisation", "organisation_id"} & kwargs.keys():
            return super().update(**kwargs)
        rows = Clinic._base_manager.using(self.db)
        with transaction.atomic(using=self.db):
            # Race condition: locked before they are read, as `Clinic.save` locks the clinic it checks. By their ids
            # (the caller's queryset may be one FOR UPDATE refuses, a DISTINCT say).
            pks = list(self.order_by().values_list("pk", flat=True))
            before = dict(
                rows.filter(pk__in=pks).select_for_update().order_by("pk").values_list("pk", "organisation_id")
            )
            count = super().update(**kwargs)
            in_use = Clinic._in_use_annotations()
            after = rows.filter(pk__in=before).annotate(**in_use).values("pk", "organisation_id", *in_use)
            moved = [row for row in after if row["organisation_id"] != before[row["pk"]]]
            for row in moved:
                refusal = Clinic._refusal(row, "")  # named below, read only when refused
                if refusal:
                    name = Organisation.objects.using(self.db).get(pk=before[row["pk"]]).name
                    raise ValidationError({"organisation": Clinic._refusal(row, name)})
            return count


class Clinic(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.SlugField(unique=True, max_length=50)
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        related_name="clinics",
        blank=True,  # left empty, the clinic becomes an organisation of one (same code and name)
    )
    name = models.CharField(max_length=200, validators=[validate_single_line])
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    country = models.CharField(
        max_length=2,
        blank=True,
        validators=[validate_country],
        help_text="ISO 3166 alpha-2 code, e.g. GB: phone numbers typed without a country code are read as "
        "this country's. Left empty, it is taken from the time zone.",
    )
    # What patients see of the clinic: every message says how to reach it and where it is.
    phone = models.CharField(
        max_length=20,
        blank=True,
        validators=[validate_e164],
        help_text="E.164, e.g. +442079460000; messages show it in national format.",
    )
    address = models.TextField(blank=True, validators=[validate_lines], help_text="Postal address, one line per line.")
    map_url = models.URLField(
        max_length=500, blank=True, validators=[validate_single_line], help_text="A link to the clinic on a map."
    )
    reply_to_email = models.EmailField(
        blank=True, validators=[validate_single_line], help_text="Where patients' replies to e-mails go."
    )
    sender_name = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_single_line],
        help_text="E-mails come from this name; the clinic's name when empty.",
    )
    sms_name = models.CharField(
        "SMS name",
        max_length=40,
        blank=True,
        validators=[validate_single_line],
        help_text="How text messages name the clinic (every text does): the clinic's name when empty. A long name, "
        "or one that names a treatment, can make a text too long or not allowed by SMS; saving checks every text.",
    )
    logo_url = models.URLField(max_length=500, blank=True)
    brand_colour = models.CharField(max_length=7, blank=True, validators=[validate_colour])
    name_treatment_in_previews = models.BooleanField(
        default=False,
        help_text="Name the treatment in e-mail subjects, SMS and calendar titles (seen on a "
        "lock screen). Off: they name only the clinic; the e-mail body names it.",
    )
    # At most a year (8760 hours): a window of millions of hours (a typo) put the deadline before year 1, and every
    # patient's page of the clinic failed (scheduler.selfservice.change_deadline).
    cancellation_window_hours = models.PositiveIntegerField(
        default=24,
        validators=[MaxValueValidator(MAX_CANCELLATION_WINDOW_HOURS)],
        help_text="Patients may cancel or move an appointment themselves until this many hours before it starts "
        "(at most 8760, a year).",
    )

    objects = ClinicQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # The form's validator holds the admin only; this holds every write (clinic 0033 brought longer ones back).
            models.CheckConstraint(
                condition=Q(
                    cancellation_window_hours__gte=0, cancellation_window_hours__lte=MAX_CANCELLATION_WINDOW_HOURS
                ),
                name="clinic_cancellation_window_at_most_a_year",
                violation_error_message="A cancellation window is at most 8760 hours (a year).",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.country:
            self.country = country_for_timezone(self.timezone)
            if "update_fields" in kwargs and kwargs["update_fields"] is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "country"}
        update_fields = kwargs.get("update_fields")
        writes_organisation = update_fields is None or {"organisation", "organisation_id"} & set(update_fields)
        # Every save of a stored clinic that writes its organisation checks (a copy read before the clinic moved
        # would write the old organisation back); a clinic is saved seldom, so the two statements cost nothing felt.
        if writes_organisation and not self._state.adding:
            with transaction.atomic():
                # Race condition: the clinic's row is locked before the check and until the write (FOR UPDATE waits
                # for a patient or an appointment being added to it meanwhile, and the check then sees it).
                refusal = self._move_refusal(lock=True)
                if refusal:
                    raise ValidationError({"organisation": refusal})
                self._save_in_organisation(*args, **kwargs)
        else:
            self._save_in_organisation(*args, **kwargs)
        if writes_organisation:
            self._stored_organisation_id = self.organisation_id

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        # The organisation as read: a save or clean that leaves it so asks the database nothing about a move.
        instance._stored_organisation_id = instance.__dict__.get("organisation_id", _UNKNOWN)
        return instance

    def _save_in_organisation(self, *args, **kwargs) -> None:
        if self.organisation_id is not None:
            super().save(*args, **kwargs)
            return
        # A clinic on its own is an organisation of one, always a new one, made with the clinic or not at all: a
        # clinic refused (its code taken at the same moment) leaves no organisation behind.
        try:
            with transaction.atomic():
                self.organisation = self._new_organisation()
                super().save(*args, **kwargs)
        except Exception:
            self.organisation = None  # rolled back with the clinic: a second save makes a new one again
            raise

    def clean(self) -> None:
        # What the rooms above need of a clinic's settings (clinic.setting_checks): every text names the clinic.
        problems = setting_checks.clinic_problems(self)
        refusal = self._move_refusal(lock=False) if self._may_move() else None
        if refusal:
            problems.setdefault("organisation", []).append(refusal)
        if problems:
            raise ValidationError(problems)

    def _may_move(self) -> bool:
        """Whether the organisation may differ from the stored one: never for a new clinic, nor for one whose
        organisation is as it was read (or last saved); otherwise the database says (`_move_refusal`)."""
        if self._state.adding:
            return False
        return self.organisation_id != getattr(self, "_stored_organisation_id", _UNKNOWN)

    def _move_refusal(self, *, lock: bool) -> str | None:
        """Why the clinic may not move to the organisation it now names, or None (not moving, or nothing of its own
        yet: set up under the wrong organisation). Its patients, appointments and records belong to its
        organisation, and the desk reads them by clinic: moved, they would be another organisation's to see.
        Joining two organisations' patients is a merge, not an edit of a clinic. One statement (two when locking)."""
        rows = Clinic._base_manager.filter(pk=self.pk)
        if lock:
            # Its own statement: one that locks and checks together would check with what it saw before waiting.
            list(rows.select_for_update().values_list("pk", flat=True))
        in_use = self._in_use_annotations()
        stored = rows.annotate(**in_use).values("organisation_id", "organisation__name", *in_use).first()
        if stored is None:
            return None  # not stored yet
        self._stored_organisation_id = stored["organisation_id"]
        if stored["organisation_id"] == self.organisation_id:
            return None
        return self._refusal(stored, stored["organisation__name"])

    @classmethod
    def _in_use_annotations(cls) -> dict:
        """has_<n>: whether the clinic's row has rows of its own of the nth relation (`_own_rows_relations`)."""
        return {
            f"has_{i}": models.Exists(rel.related_model._base_manager.filter(**{rel.field.name: models.OuterRef("pk")}))
            for i, rel in enumerate(cls._own_rows_relations())
        }

    @classmethod
    def _refusal(cls, row: dict, organisation_name: str) -> str | None:
        """Why a clinic read with `_in_use_annotations` may not leave the organisation named, or None when it has
        nothing of its own."""
        kinds = list(
            dict.fromkeys(
                str(rel.related_model._meta.verbose_name_plural)
                for i, rel in enumerate(cls._own_rows_relations())
                if row[f"has_{i}"]
            )
        )
        if not kinds:
            return None
        what = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + f" and {kinds[-1]}"
        return (
            f"This clinic already has {what} of {organisation_name}: it cannot move to another "
            "organisation; a clinic moves only while it has nothing of its own (its patients' records would be "
            "the other organisation's to see). Joining two organisations' patients is a merge, not an edit of a "
            "clinic."
        )

    @classmethod
    def _own_rows_relations(cls) -> list:
        """Every relation whose rows name the clinic (a new one counts too), except the clinic's own set-up, which
        moves with it: its practitioners (and their hours), staff roles and API clients' grants."""
        relations = []
        for rel in cls._meta.get_fields(include_hidden=True):
            if not (rel.auto_created and not rel.concrete and (rel.one_to_many or rel.one_to_one)):
                continue
            model = rel.related_model
            owner = model._meta.auto_created or model  # a many-to-many's own table: the model that declares it
            if owner._meta.label not in CLINIC_SET_UP:
                relations.append(rel)
        return relations

    def _new_organisation(self, attempts: int = 5) -> Organisation:
        """A new organisation under a free code. Another clinic saved at the same moment may take the code found
        free between the read and the insert: the insert then fails on the unique code inside its own savepoint,
        and the next free code is tried (the caller's transaction goes on)."""
        for _ in range(attempts - 1):
            code = self._free_organisation_code()
            try:
                with transaction.atomic():
                    return Organisation.objects.create(code=code, name=self.name)
            except IntegrityError:
                if not Organisation.objects.filter(code=code).exists():
                    raise  # not the code: nothing another try would mend
        return Organisation.objects.create(code=self._free_organisation_code(), name=self.name)

    def _free_organisation_code(self) -> str:
        """The clinic's code, or `<code>-2`, `-3`... when an organisation has it: a clinic never joins an existing
        organisation by sharing its code (it would share that organisation's patients)."""
        limit = Organisation._meta.get_field("code").max_length
        taken = set(Organisation.objects.filter(code__startswith=self.code[: limit - 8]).values_list("code", flat=True))
        candidate, n = self.code[:limit], 1
        while candidate in taken:
            n += 1
            suffix = f"-{n}"
            candidate = self.code[: limit - len(suffix)] + suffix
        return candidate

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def display_sender(self) -> str:
        return self.sender_name or self.name

    @property
    def display_sms_name(self) -> str:
        return self.sms_name.strip() or self.name

    @property
    def phone_national(self) -> str:
        """The number as the clinic's patients dial it ("020 7946 0958"); empty when there is none."""
        if not self.phone:
            return ""
        try:
            number = phonenumbers.parse(self.phone, None)
        except phonenumbers.NumberParseException:
            return self.phone
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


class StaffRole(models.TextChoices):
    RECEPTIONIST = "receptionist", "Receptionist"
    CLINICIAN = "clinician", "Clinician"
    CLINIC_ADMIN = "clinic_admin", "Clinic administrator"


class StaffMembership(models.Model):
    """A staff user's role at one clinic, or at every clinic of an organisation (now and later).

    A user sees only the clinics they were granted, and the patients of those clinics' organisations.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="memberships",
        help_text="Grants every clinic of the organisation; leave the clinic empty.",
    )
    role = models.CharField(max_length=20, choices=StaffRole.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "clinic"], name="one_role_per_clinic"),
            models.UniqueConstraint(
                fields=["user", "organisation"], condition=Q(clinic=None), name="one_role_per_organisation"
            ),
            models.CheckConstraint(
                condition=Q(clinic__isnull=True) ^ Q(organisation__isnull=True),
                name="membership_clinic_or_organisation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} – {self.get_role_display()} at {self.clinic or self.organisation}"

    def clean(self) -> None:
        if (self.clinic_id is None) == (self.organisation_id is None):
            raise ValidationError("Grant either one clinic or a whole organisation.")


class Practitioner(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="practitioners")
    name = models.CharField(max_length=200, validators=[validate_single_line])
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="practitioners"
    )
    procedures = models.ManyToManyField(ProcedureType, related_name="practitioners", blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


def joined_periods(periods: Iterable[tuple[time, time]]) -> list[tuple[time, time]]:
    """One day's working periods (from, to) in order, those that overlap or touch as one stretch: 09:00-13:00 and
    13:00-18:00 are 09:00-18:00, a visit across 13:00 held (rows stored before the admin refused such a day,
    clinic.forms.WorkingHoursFormSet, and joined by migration 0031; a row written past the admin reads the same)."""
    joined: list[tuple[time, time]] = []
    for start, end in sorted(periods):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


class WorkingHours(models.Model):
    """A weekly working period in the clinic's local time."""

    practitioner = models.ForeignKey(Practitioner, on_delete=models.CASCADE, related_name="working_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start_time = models.TimeField()
    end_time = models.TimeField()

    class Meta:
        ordering = ["weekday", "start_time"]
        verbose_name_plural = "working hours"
        constraints = [
            models.CheckConstraint(
                condition=Q(end_time__gt=F("start_time")),
                name="working_hours_end_after_start",
                # Said in the admin's form: a day's hours end by 23:59 (an end of 00:00 would be before the start).
                violation_error_message="The end must be after the start, on the same day: hours end by 23:59 at the "
                "latest, not at 00:00.",
            ),
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="working_hours_weekday_range"),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start_time:%H:%M}–{self.end_time:%H:%M}"

    def clean(self) -> None:
        # Visits start on whole minutes: a period from 09:00:30 would offer 09:00:30, which booking refuses.
        errors = {
            name: "Enter a time in whole minutes (no seconds)."
            for name in ("start_time", "end_time")
            if getattr(self, name) is not None and (getattr(self, name).second or getattr(self, name).microsecond)
        }
        if errors:
            raise ValidationError(errors)


class TimeOff(models.Model):
    practitioner = models.ForeignKey(Practitioner, on_delete=models.CASCADE, related_name="time_off")
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["start_at"]
        verbose_name_plural = "time off"
        constraints = [
            models.CheckConstraint(condition=Q(end_at__gt=F("start_at")), name="time_off_end_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.practitioner} off {self.start_at:%Y-%m-%d %H:%M} – {self.end_at:%Y-%m-%d %H:%M}"


# --- Patients and their history ---------------------------------------------------


NAME_FIELDS = frozenset({"first_name", "last_name"})


class PatientQuerySet(models.QuerySet):
    """Keeps `Patient.search_name` true on the bulk paths that skip `Patient.save` (loaddata's raw saves are
    `_search_name_on_raw_save`'s): `bulk_create` and `bulk_update` write each record's search name with it, and an
    `update` of a name without its search name (SQL cannot make a name plain as people type it) is refused."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for patient in objs:
            patient.search_name = search_name(patient.first_name, patient.last_name)
        update_fields = kwargs.get("update_fields")
        if update_fields and NAME_FIELDS & set(update_fields) and "search_name" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "search_name"]  # a conflict's row takes the name as typed too
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs, fields, *args, **kwargs):
        objs = list(objs)
        if NAME_FIELDS & set(fields):
            for patient in objs:
                patient.search_name = search_name(patient.first_name, patient.last_name)
            fields = [*fields, "search_name"] if "search_name" not in fields else fields
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs):
        if NAME_FIELDS & set(kwargs) and "search_name" not in kwargs:  # bulk_update's own update writes it
            raise TypeError(
                "A patient's name is changed by Patient.save or bulk_update, which keep its search_name: "
                "QuerySet.update would leave the search reading the old name."
            )
        return super().update(**kwargs)


class Patient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The record belongs to the organisation (every one of its clinics sees and counts it); `clinic` is
    # the patient's home clinic, whose organisation they join.
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        related_name="patients",
        blank=True,  # taken from the home clinic
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    first_name = models.CharField(max_length=100, validators=[validate_single_line])
    last_name = models.CharField(max_length=100, validators=[validate_single_line])
    # The names as people type them (core.text_match.search_name: no accents, no apostrophes, joined, family name
    # first), kept by every save for the patient search (clinic.selectors.patient_search): "jose nunez" finds José
    # Núñez.
    # A TextField: a name made plain may be longer than typed (ß is ss, æ is ae).
    search_name = models.TextField(blank=True, default="", editable=False)
    date_of_birth = models.DateField(null=True, blank=True)
    email = models.EmailField(blank=True, validators=[validate_single_line])
    phone = models.CharField(
        max_length=20, blank=True, validators=[validate_e164], help_text="E.164, e.g. +447911123456"
    )
    reminder_channels = models.JSONField(default=list, blank=True, validators=[validate_reminder_channels])
    sms_consent = models.BooleanField(default=False)
    muted_topics = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_message_topics],
        help_text="Kinds of message the patient switched off: care (pre- and post-care instructions) and/or "
        "reminders. Confirmations and change notices always go on the channels they accept.",
    )
    # A tombstone: this record was merged into another (clinic/merging.py) and only redirects there.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from", editable=False
    )
    merged_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PatientQuerySet.as_manager()

    class Meta:
        ordering = ["last_name", "first_name"]
        # PostgreSQL also has a trigram index on each text the search reads (clinic 0024; not declared here: SQLite
        # has none).
        indexes = [
            models.Index(fields=["clinic", "last_name", "first_name"]),
            models.Index(fields=["organisation", "last_name", "first_name"]),
            # Duplicate candidates at registration (clinic/duplicates.py): same birth date, phone or e-mail.
            models.Index(fields=["organisation", "date_of_birth"], name="patient_org_birth"),
            models.Index(fields=["organisation", "phone"], name="patient_org_phone"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(merged_into__isnull=True, merged_at__isnull=True)
                | Q(merged_into__isnull=False, merged_at__isnull=False),
                name="patient_merged_into_and_at",
            ),
            models.CheckConstraint(condition=~Q(merged_into=F("pk")), name="patient_not_merged_into_itself"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def save(self, *args, **kwargs) -> None:
        if self.organisation_id is None and self.clinic_id is not None:
            self.organisation_id = Clinic.objects.values_list("organisation_id", flat=True).get(pk=self.clinic_id)
        self.search_name = search_name(self.first_name, self.last_name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"first_name", "last_name"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "search_name"}
        super().save(*args, **kwargs)

    @property
    def is_tombstone(self) -> bool:
        return self.merged_into_id is not None

    def clean(self) -> None:
        # The home clinic is one of the organisation's: the record belongs to one organisation (moving a patient
        # between organisations is a merge or a new record, never an edit of the home clinic).
        if self.organisation_id is not None and self.clinic_id is not None:
            if self.clinic.organisation_id != self.organisation_id:
                raise ValidationError(
                    {"clinic": f"The home clinic must be one of {self.organisation}'s clinics: the record is theirs."}
                )
        channels = self.reminder_channels or []
        if ReminderChannel.SMS in channels and not self.phone:
            raise ValidationError({"reminder_channels": "SMS reminders need a phone number."})
        if ReminderChannel.EMAIL in channels and not self.email:
            raise ValidationError({"reminder_channels": "E-mail reminders need an e-mail address."})


@receiver(pre_save, sender=Patient, dispatch_uid="clinic.patient.search_name_on_raw_save")
def _search_name_on_raw_save(sender, instance: Patient, raw: bool, **kwargs) -> None:
    """loaddata saves a fixture's records as written, past `Patient.save`: their search name is made here."""
    if raw:
        instance.search_name = search_name(instance.first_name, instance.last_name)


class HistorySource(models.TextChoices):
    CLINIC = "clinic", "Done at this clinic"
    REPORTED = "reported", "Reported by the patient"


# A line a visit's completion wrote (its `appointment`) is that visit's outcome, which the rules, the visit's status and
# its recall all follow: these fields of it, and the line itself, stay as the completion wrote them.
VISIT_OUTCOME_FIELDS = ("procedure_id", "performed_at", "area_id", "source", "appointment_id")
VISIT_OUTCOME_MESSAGE = (
    "A treatment written by a visit's completion is that visit's outcome, which the rules, the visit's status and its "
    "recall all follow: it cannot be removed, nor its treatment, time, area or source changed."
)


class ProcedureRecordQuerySet(models.QuerySet):
    def delete(self):
        """Refused, with nothing removed, when any of the lines is a visit's outcome. A visit's own removal leaves
        its line in the history, no longer its outcome (SET_NULL); a patient's removal is refused while they have
        any line (PROTECT, below), so it never reaches this method."""
        written = list(self.filter(appointment__isnull=False)[:1])
        if written:
            raise models.ProtectedError(VISIT_OUTCOME_MESSAGE, set(written))
        return super().delete()


class ProcedureRecord(models.Model):
    """A procedure the patient has had, here or elsewhere. One a visit's completion wrote (`appointment`) keeps what
    the completion wrote: removing it, or changing its outcome fields, is refused here, whichever path tries (the
    admin's inline says so before; clinic.forms.ProcedureRecordsFormSet). Its notes may change."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # PROTECT: a patient's clinical record is not deleted with them (the admin refuses, naming it); erasure would be
    # its own deliberate, audited act, which the service does not offer yet (docs/organisations.md).
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="procedure_records")
    procedure = models.ForeignKey(ProcedureType, on_delete=models.PROTECT, related_name="+")
    performed_at = models.DateTimeField()
    area = models.ForeignKey(TreatmentArea, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=10, choices=HistorySource.choices, default=HistorySource.REPORTED)
    appointment = models.OneToOneField(
        "Appointment", null=True, blank=True, on_delete=models.SET_NULL, related_name="procedure_record"
    )
    clinic = models.ForeignKey(
        Clinic,
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # as an appointment's: a clinic's deletion must not move its records' days
        related_name="+",
        help_text="The clinic that recorded it (a visit's: the visit's clinic); its zone gives the day.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProcedureRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-performed_at"]
        indexes = [models.Index(fields=["patient", "performed_at"])]

    def __str__(self) -> str:
        return f"{self.procedure} on {self.performed_at:%Y-%m-%d}"

    def save(self, *args, **kwargs) -> None:
        # Every new record says which clinic's day it is, whichever way it is made (the services name it; the
        # admin's inline and fixtures do not): the visit's, else the patient's home clinic as it is now.
        if self._state.adding and self.clinic_id is None:
            self.clinic_id = self.appointment.clinic_id if self.appointment_id else self.patient.clinic_id
        if not self._state.adding:
            self._keep_visit_outcome(kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.appointment_id is not None:
            raise models.ProtectedError(VISIT_OUTCOME_MESSAGE, {self})
        return super().delete(*args, **kwargs)

    def _keep_visit_outcome(self, update_fields) -> None:
        fields = set(VISIT_OUTCOME_FIELDS)
        if update_fields is not None:
            fields &= {self._meta.get_field(name).attname for name in update_fields}
        if not fields:
            return
        stored = type(self)._base_manager.filter(pk=self.pk, appointment__isnull=False).values(*fields).first()
        # Compared as the field reads them: an id given as its text, or a time as ISO text, is the same value.
        changed = sorted(
            name
            for name in fields
            if stored is not None and stored[name] != self._meta.get_field(name).to_python(getattr(self, name))
        )
        if changed:
            raise ValidationError(
                {name.removesuffix("_id"): VISIT_OUTCOME_MESSAGE for name in changed}, code="visit_outcome"
            )

    @property
    def dating_clinic(self) -> Clinic:
        """The clinic whose zone gives the procedure its day (docs/rules.md): the visit's, else the clinic that
        recorded it, else the patient's home clinic (the timeline's read, scheduler.selectors, says the same)."""
        if self.appointment_id is not None:
            return self.appointment.clinic
        return self.clinic if self.clinic_id is not None else self.patient.clinic


class MedicationCourse(models.Model):
    """A course of a drug; `ended_on` is null while it is ongoing."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="medication_courses")  # as history
    drug = models.ForeignKey(Medication, on_delete=models.PROTECT, related_name="+")
    started_on = models.DateField()
    ended_on = models.DateField(null=True, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_on"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_on__isnull=True) | Q(ended_on__gte=F("started_on")),
                name="medication_course_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        end = self.ended_on.isoformat() if self.ended_on else "ongoing"
        return f"{self.drug} {self.started_on.isoformat()} – {end}"


class ConditionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    HISTORY = "history", "History"


class PatientCondition(models.Model):
    """One line of the medical-history intake."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="conditions")  # as history
    condition = models.ForeignKey(Condition, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=ConditionStatus.choices)
    area = models.ForeignKey(TreatmentArea, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    noted_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["condition_id"]
        # Two partial constraints rather than one with nulls_distinct=False, which
        # SQLite would silently not enforce: once per area, and once with no area.
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "condition", "area"], condition=Q(area__isnull=False), name="condition_once_per_area"
            ),
            models.UniqueConstraint(
                fields=["patient", "condition"], condition=Q(area__isnull=True), name="condition_once_without_area"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.condition} ({self.get_status_display()})"


# --- Appointments ---------------------------------------------------------------------


class AppointmentStatus(models.TextChoices):
    PENDING_CLEARANCE = "pending_clearance", "Pending clearance"
    CONFIRMED = "confirmed", "Confirmed"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    NO_SHOW = "no_show", "No-show"
    # Fine when booked; a later change to the record (or the rules) makes it break a block rule or an
    # absolute contraindication. Holds its slot; reminders held; leaves by a move, a cancellation or a
    # correction of the record.
    NEEDS_REVIEW = "needs_review", "Needs review"


# Statuses in which an appointment still holds its slot and counts in the timeline.
ACTIVE_APPOINTMENT_STATUSES = (
    AppointmentStatus.PENDING_CLEARANCE,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.NEEDS_REVIEW,
)


class Appointment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Every booking inserts a row here, and every index costs every insert: the clinic, patient and
    # practitioner are looked up by the `(…, start_at)` indexes below, not by one of their own (0014).
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="appointments", db_index=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments", db_index=False)
    practitioner = models.ForeignKey(
        Practitioner, on_delete=models.PROTECT, related_name="appointments", db_index=False
    )
    procedure = models.ForeignKey(ProcedureType, on_delete=models.PROTECT, related_name="+")
    area = models.ForeignKey(TreatmentArea, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=AppointmentStatus.choices)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    clearance_reason = models.TextField(blank=True)
    clearance_details = models.JSONField(default=dict, blank=True, help_text="Which rules the clearance covers.")
    completed_at = models.DateTimeField(null=True, blank=True)
    checked_in_at = models.DateTimeField(null=True, blank=True, help_text="When the patient arrived at the desk.")
    notes = models.TextField(blank=True, help_text="The desk's notes about this visit; never sent to the patient.")
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.TextField(blank=True, validators=[validate_lines])
    review_reasons = models.JSONField(
        default=list,
        blank=True,
        help_text="While it needs review: the violations a later change brought (the same shape as a refusal's).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["start_at"]
        indexes = [
            models.Index(fields=["practitioner", "start_at"]),
            models.Index(fields=["patient", "start_at"]),
            models.Index(fields=["clinic", "start_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(end_at__gt=F("start_at")), name="appointment_end_after_start"),
            models.CheckConstraint(condition=Q(status__in=AppointmentStatus.values), name="appointment_status_valid"),
        ]
        # On PostgreSQL migration 0002 adds an exclusion constraint so that no
        # practitioner holds two overlapping active appointments.

    def __str__(self) -> str:
        return f"{self.procedure} for {self.patient} at {self.start_at:%Y-%m-%d %H:%M} UTC"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_APPOINTMENT_STATUSES


class AuditAction(models.TextChoices):
    BOOKED = "booked", "Booked"
    RESCHEDULED = "rescheduled", "Rescheduled"
    CANCELLED = "cancelled", "Cancelled"
    CLEARED = "cleared", "Cleared"
    COMPLETED = "completed", "Completed"
    NO_SHOW = "no_show", "Marked no-show"
    # Re-checks after a change to the patient's record: what the change did to a booked appointment.
    NEEDS_REVIEW = "needs_review", "Flagged for review"
    CLEARANCE_REQUESTED = "clearance_requested", "Sent back for clearance"
    RELEASED = "released", "Released after review"
    # The patient is at the desk: a fact about the visit, recorded once; the status does not change.
    CHECKED_IN = "checked_in", "Checked in"
    # A merge moved the booking to the surviving record (clinic.merging): its patient changed, nothing else; details
    # name both records. Said to the platforms (`appointment.patient_merged`), who may hold the old record's id.
    PATIENT_MERGED = "patient_merged", "Moved to the merged record"
    # Staff asked for one of the patient's messages that failed (or was skipped) to go again: the desk's "Send again",
    # an operator's retry. Not a change to the appointment; the trail says who asked for which message (details:
    # message, channel, name, the status it had). The sender still checks it when it goes, and may drop it.
    RESEND_REQUESTED = "resend_requested", "Re-send requested"
    # Staff stopped one of the patient's messages before it went (an operator's Cancel in the outbox): who stopped
    # which message (details as a re-send's), so a notice the patient never got is not a mystery in the trail.
    MESSAGE_CANCELLED = "message_cancelled", "Message stopped"


# Entries of the trail that change nothing about the appointment: no reaction of its messages, no event to the
# platforms, not counted in its changes (a webhook's `sequence`).
AUDIT_ONLY_ACTIONS = frozenset({AuditAction.RESEND_REQUESTED, AuditAction.MESSAGE_CANCELLED})


class AuditEvent(models.Model):
    """Who did what to an appointment, when and why. Append-only."""

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="audit_events")
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    at = models.DateTimeField()
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who acted: a staff user or an API client.")
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_label} at {self.at:%Y-%m-%d %H:%M}"


class PatientMerge(models.Model):
    """Who merged which record into which, when, and what moved. Append-only (clinic/merging.py).

    Both patients stay: the merged one as a tombstone (`Patient.merged_into`), so this row keeps its ids.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merged = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="merges_away")
    into = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="merges_in")
    at = models.DateTimeField()
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who merged: a staff user or an API client.")
    details = models.JSONField(
        default=dict, blank=True, help_text="What moved (counts), the intake decisions, consent before and after."
    )

    class Meta:
        ordering = ["-at"]
        constraints = [models.UniqueConstraint(fields=["merged"], name="patient_merged_once")]

    def __str__(self) -> str:
        return f"{self.merged_id} merged into {self.into_id} by {self.actor_label} at {self.at:%Y-%m-%d %H:%M}"


MERGE_CHECK_NOTE_MAX = 500


class MergeWarningCheck(models.Model):
    """Staff looked at a warning a merge brought together (its `details["warnings"]`) and decided: who, when, with
    what note. Append-only (clinic.merging.merge_warning_check). It covers the warning as it was checked, its rule's
    words (`message`): should the rules later say something else of the same booking, that is shown again, and a
    new check of it is a new row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Found by its merge through the unique constraint's index, which leads with it.
    merge = models.ForeignKey(PatientMerge, on_delete=models.PROTECT, related_name="warning_checks", db_index=False)
    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="merge_warning_checks")
    message = models.TextField(help_text="The warning as it was shown when checked.")
    checked_at = models.DateTimeField()
    checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The name as the page showed it then: it stays when the user is renamed or removed.
    checked_by_name = models.CharField(max_length=200)
    note = models.CharField(max_length=MERGE_CHECK_NOTE_MAX, blank=True)

    class Meta:
        ordering = ["checked_at"]
        constraints = [
            # Checking the same warning twice (two desks, a double click) keeps the first check.
            models.UniqueConstraint(fields=["merge", "appointment", "message"], name="merge_warning_checked_once")
        ]

    def __str__(self) -> str:
        return f"Merge warning checked by {self.checked_by_name} at {self.checked_at:%Y-%m-%d %H:%M}"


def hash_key(key: str) -> str:
    # Keys are 256-bit random secrets, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiClient(models.Model):
    """A booking platform: a hashed key scoped to the clinics it was granted (the API's caller)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    clinics = models.ManyToManyField(Clinic, related_name="api_clients", blank=True)
    organisations = models.ManyToManyField(
        Organisation,
        related_name="api_clients",
        blank=True,
        help_text="Grants every clinic of these organisations, now and later.",
    )
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    clinical = models.BooleanField(
        default=False, help_text="May complete appointments and clear contraindications (the clinician's right)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        db_table = "api_apiclient"  # created by the api app; moved here without renaming the table

    def __str__(self) -> str:
        return self.name

    def set_new_key(self) -> str:
        """Give the client a fresh key; return it (it is shown once and stored only hashed)."""
        prefix = secrets.token_hex(4)
        key = f"{prefix}.{secrets.token_urlsafe(32)}"
        self.key_prefix = prefix
        self.key_hash = hash_key(key)
        return key
