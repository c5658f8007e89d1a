"""Loading the shipped defaults (catalogue, sourced rules) and the demo clinics.

Idempotent: a catalogue row or default rule is created only when its code or
key is missing (an operator's or administrator's edits survive), and a demo
organisation is populated once, when it is made (or while nobody is in it); a demo
row found is left as it is (`demo_load`: bin/run loads the demo at every start). Each default rule
cites the published sources of docs/sources.md by id ("[001] Yazbek
Artistry, microneedling care (docs/sources.md)"); a citation still in the
file-path form of earlier releases is brought up to date (see
`citation_superseded`), and nothing else of an existing rule is touched.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, check_password, make_password
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Q, signals
from django.utils import timezone

from clinic.models import (
    Clinic,
    Condition,
    ConditionStatus,
    HistorySource,
    Medication,
    MedicationCourse,
    Organisation,
    Patient,
    PatientCondition,
    Practitioner,
    ProcedureRecord,
    ProcedureType,
    StaffMembership,
    StaffRole,
    TreatmentArea,
    WorkingHours,
)
from core.defaults import shipped_rows_create_missing
from scheduler import rulebooks
from scheduler.models import ContraindicationRule, IntervalRule, RuleBasis

FIXTURES = Path(settings.BASE_DIR) / "fixtures"


def _read(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# Earlier releases cited the sources by the path of a local copy outside the
# repository, e.g. "001 (reference/seeds/001_<hash>.txt)". Only shipped
# defaults ever carried that form, so a stored source that still does is the
# shipped citation, unedited: re-running setup_demo replaces it with the
# current one. The path fragment is kept here only to recognise such rows.
_SUPERSEDED_CITATION = "(reference/seeds/"


def citation_superseded(stored: str, shipped: str) -> bool:
    """Whether a default's stored citation is an old shipped one that `shipped` replaces."""
    return _SUPERSEDED_CITATION in (stored or "") and stored != shipped


def _refresh_citation(obj, shipped: str) -> None:
    if citation_superseded(obj.source, shipped):
        obj.source = shipped
        obj.save(update_fields=["source"])


# The catalogue's models and their lists in fixtures/catalogue.json.
_CATALOGUE = (
    (ProcedureType, "procedures"),
    (Medication, "medications"),
    (Condition, "conditions"),
    (TreatmentArea, "areas"),
)


@transaction.atomic
def catalogue_load() -> None:
    """Create the catalogue rows that are missing.

    An existing row keeps what the platform's operators changed (a procedure's duration, whether it is
    bookable, a name): `setup_demo --no-demo` runs on every upgrade and must not put the shipped values back
    over them, as the default rules and care texts keep an administrator's edits. A release that must change
    a shipped row changes it in a migration, as the care texts' updates do. One read and one insert a model
    (`shipped_rows_create_missing`; row by row it was 146 statements)."""
    data = _read("catalogue.json")
    for model, name in _CATALOGUE:
        rows = {row["code"]: row for row in data[name]}
        shipped_rows_create_missing(model, "code", rows, lambda code, model=model, rows=rows: model(**rows[code]))


def _interval_fields(row: dict) -> dict:
    return {
        "earlier_procedure_id": row.get("earlier_procedure"),
        "earlier_medication_id": row.get("earlier_medication"),
        "later_procedure_id": row["later"],
        "gap_value": row["gap"][0],
        "gap_unit": row["gap"][1],
        "severity": row["severity"],
        "source": row["source"],
        "basis": row.get("basis", RuleBasis.SOURCED),
        "note": row.get("note", ""),
    }


def _contraindication_fields(row: dict) -> dict:
    return {
        "condition_id": row.get("condition"),
        "medication_id": row.get("medication"),
        "procedure_id": row["procedure"],
        "severity": row["severity"],
        "applies_to": row["applies_to"],
        "area_specific": row["area_specific"],
        "source": row["source"],
    }


def _defaults_create_missing(model, rows: list[dict], fields: Callable[[dict], dict]) -> list:
    """The shipped defaults of `model` not stored yet (by key), created in one statement; those created.

    A stored default keeps every field an administrator may have edited; only a citation in the superseded
    file-path form is rewritten. Saved one by one, the rules cost a set-up ~200 statements; `bulk_create` sends
    no model signals, so each rule created is announced as saved (`post_save`, with the arguments a save sends):
    its re-check of the patients it may affect starts once the load commits, as an edit's does."""
    by_key = {row["key"]: row for row in rows}
    created = shipped_rows_create_missing(
        model,
        "default_key",
        by_key,
        lambda key: model(default_key=key, **fields(by_key[key])),
        stored=lambda rule: _refresh_citation(rule, by_key[rule.default_key]["source"]),
    )
    rules_created_announce(model, created)
    return created


def rules_created_announce(model, created: list) -> None:
    """Each rule of `created` (inserted by `bulk_create`, which sends no model signals) announced as saved, with
    the arguments a save sends: its re-check starts once the insert commits, as an edit's does."""
    for rule in created:
        signals.post_save.send(
            sender=model, instance=rule, created=True, update_fields=None, raw=False, using=rule._state.db
        )


@transaction.atomic
def rules_load() -> int:
    """Create the default rules that are missing; return how many were created.

    An existing default keeps every field an administrator may have edited;
    only a citation in the superseded file-path form is rewritten. Defaults a release adds to a
    database that already had some make the next version of the defaults (every organisation's
    rule book version moves); the first load is version 1, as shipped.
    """
    data = _read("rules.json")
    had_defaults = IntervalRule.objects.filter(default_key__isnull=False).exists()
    added = _defaults_create_missing(IntervalRule, data["intervals"], _interval_fields)
    added += _defaults_create_missing(ContraindicationRule, data["contraindications"], _contraindication_fields)
    if had_defaults and added:
        rulebooks.version_record(
            organisation_id=None,
            user=None,
            reason=f"release: {len(added)} shipped default(s) added",
            diff=[rulebooks.diff_entry(rule, None, rulebooks.rule_state(rule)) for rule in added],
            now=timezone.now(),
        )
    return len(added)


DEMO_ORGANISATIONS = {"demo": "Demo Aesthetics", "demo-ny": "Demo Aesthetics New York"}

DEMO_CLINICS = [
    {
        "code": "demo",
        "organisation": "demo",
        "name": "Demo Aesthetics London",
        "timezone": "Europe/London",
        "details": {
            "phone": "+442079460958",
            "address": "12 Example Street\nLondon W1A 1AA",
            "map_url": "https://www.openstreetmap.org/search?query=W1A%201AA",
            "reply_to_email": "hello@demo-london.example",
        },
        "practitioners": ["Dr Amelia Hart", "Priya Shah, RN"],
    },
    {
        # A second site of the same organisation: its own practitioners, the same patients' records.
        "code": "demo-west",
        "organisation": "demo",
        "name": "Demo Aesthetics West London",
        "timezone": "Europe/London",
        "details": {
            "phone": "+442079460959",
            "address": "40 Example Road\nLondon W11 2AA",
            "map_url": "https://www.openstreetmap.org/search?query=W11%202AA",
            "reply_to_email": "hello@demo-west.example",
        },
        "practitioners": ["Dr Oliver West", "Chloe Adams, RN"],
    },
    {
        "code": "demo-ny",
        "organisation": "demo-ny",
        "name": "Demo Aesthetics New York",
        "timezone": "America/New_York",
        "details": {
            "phone": "+12125550147",
            "address": "200 Example Avenue\nNew York, NY 10001",
            "map_url": "https://www.openstreetmap.org/search?query=10001",
            "reply_to_email": "hello@demo-ny.example",
        },
        "practitioners": ["Dr Maya Chen", "Jordan Reyes, RN"],
    },
]


# A clinic's contact details (`details` of DEMO_CLINICS): all empty is a demo clinic from before they existed.
_CONTACT_FIELDS = ("phone", "address", "map_url", "reply_to_email")


@transaction.atomic
def demo_load(*, today: date, staff_password: str | None = None) -> list[Clinic]:
    """The demo clinics of the API contract: `demo` and `demo-west` in organisation `demo`, `demo-ny` alone;
    practitioners doing every bookable procedure, Mon-Sat 09-18; returns the demo clinics found by their codes.

    Run at every start of a demo install (bin/run), so it changes nothing that exists and populates a demo
    organisation once: its clinics, their practitioners, patients and staff are made only when the organisation is
    (or while nobody is in it: no practitioner and no patient at any of its clinics, say one an operator made by
    hand before the first start, whose clinic found by a demo code keeps its name and zone). A demo organisation
    with anyone in it is never populated again: a demo clinic whose code an administrator changed, a practitioner
    or patient renamed or deleted, a staff membership taken away, is not made again under the demo's name (a
    second demo clinic would register the demo patients twice). An organisation or clinic found keeps what an
    administrator made of it (names, time zone, organisation, contact details, a practitioner's procedures and
    working hours). Only a demo clinic with no contact details at all (from a release before them) is given the
    demo's; and the demo staff are made for the demo clinics found when no demo user exists yet (an install loaded
    without `--staff-password`, started later with one)."""
    bookable = list(ProcedureType.objects.filter(bookable=True))
    organisations, populated = {}, set()
    for code, name in DEMO_ORGANISATIONS.items():
        organisation, made = Organisation.objects.get_or_create(code=code, defaults={"name": name})
        organisations[code] = organisation
        if made or _nobody_in(organisation):
            populated.add(code)
    clinics, new_clinics = [], []
    for spec in DEMO_CLINICS:
        organisation = organisations[spec["organisation"]]
        if spec["organisation"] in populated:
            clinic, made = Clinic.objects.get_or_create(
                code=spec["code"],
                defaults={"name": spec["name"], "timezone": spec["timezone"], "organisation": organisation},
            )
        else:
            clinic, made = Clinic.objects.filter(code=spec["code"]).first(), False
        if clinic is None:
            continue  # not made again in an organisation already populated (its code changed, say)
        if made or not any(getattr(clinic, field) for field in _CONTACT_FIELDS):
            Clinic.objects.filter(pk=clinic.pk).update(**spec["details"])
            clinic.refresh_from_db()
        clinics.append(clinic)
        if spec["organisation"] in populated and clinic.organisation_id == organisation.pk:
            new_clinics.append(clinic)
            for name in spec["practitioners"]:
                _demo_practitioner(clinic, name, bookable)
            if spec["code"] != "demo-west":  # demo-west shares demo's patients: one record per patient
                _demo_patients(clinic, today)
    if staff_password:
        # Hashed once for all of them (one password, one salt), and only if a user is made: a hash costs a
        # quarter of a second, and demo_staff_password_set then checks them all with one.
        encoded = functools.cache(lambda: make_password(staff_password))
        first_staff = not get_user_model().objects.filter(username__in=_demo_usernames()).exists()
        for clinic in clinics if first_staff else new_clinics:
            _demo_staff(clinic, encoded)
        if first_staff or "demo" in populated:
            _demo_organisation_admin(organisations["demo"], encoded)
    return clinics


def _nobody_in(organisation: Organisation) -> bool:
    """No practitioner and no patient at any clinic of `organisation` (none, if it has no clinic)."""
    return not (
        Practitioner.objects.filter(clinic__organisation=organisation).exists()
        or Patient.objects.filter(organisation=organisation).exists()
    )


def _demo_practitioner(clinic: Clinic, name: str, bookable: list[ProcedureType]) -> Practitioner:
    """A demo practitioner, made with every bookable procedure and Mon-Sat 09-18; one found keeps the procedures
    and hours an administrator gave them (none added back, none put back)."""
    practitioner, made = Practitioner.objects.get_or_create(clinic=clinic, name=name)
    if made:
        practitioner.procedures.add(*bookable)
        WorkingHours.objects.bulk_create(
            WorkingHours(practitioner=practitioner, weekday=day, start_time=time(9), end_time=time(18))
            for day in range(6)
        )
    return practitioner


def demo_staff_password_set(*, password: str) -> list[str]:
    """Give the demo staff users `password` where they have another one (bin/run started again with another
    DEMO_STAFF_PASSWORD); return their usernames. Demo users only: a demo username holding its demo
    membership, not a superuser, and not one whose sign-in an administrator disabled (an unusable password).
    One already on `password` keeps its hash (and its sessions)."""
    users = (
        get_user_model()
        .objects.filter(
            Q(memberships__clinic__code__in=[spec["code"] for spec in DEMO_CLINICS])
            | Q(memberships__organisation__code__in=DEMO_ORGANISATIONS, memberships__clinic=None),
            username__in=_demo_usernames(),
            is_superuser=False,
        )
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
        .distinct()
        .order_by("username")
    )
    verdicts: dict[str, bool] = {}  # per stored hash: users made together share one
    stale = []
    for user in users:
        if user.password not in verdicts:
            verdicts[user.password] = check_password(password, user.password)
        if not verdicts[user.password]:
            stale.append(user)
    if stale:
        get_user_model().objects.filter(pk__in=[u.pk for u in stale]).update(password=make_password(password))
    return [u.username for u in stale]


def _demo_patients(clinic: Clinic, today: date) -> None:
    tz = clinic.tz
    suffix = "" if clinic.code == "demo" else " (NY)"
    phone = "+447911123" if clinic.code == "demo" else "+1212555"

    def patient(first: str, last: str, n: int) -> tuple[Patient, bool]:
        return Patient.objects.get_or_create(
            clinic=clinic,
            first_name=first,
            last_name=last + suffix,
            defaults={
                "email": f"{first.lower()}.{last.lower()}@example.com",
                "phone": f"{phone}{n:03d}" if suffix == "" else f"{phone}{n:04d}",
                "reminder_channels": ["email", "sms"],
                "sms_consent": True,
                "date_of_birth": date(1985, 1 + n % 12, 1 + n % 28),
            },
        )

    def at(day: date, hour: int) -> datetime:
        return datetime.combine(day, time(hour), tzinfo=tz)

    olivia, made = patient("Olivia", "Bennett", 101)
    if made:  # Botox five days ago: microneedling is refused until two weeks after it.
        ProcedureRecord.objects.create(
            patient=olivia,
            procedure_id="botox",
            performed_at=at(today - timedelta(days=5), 11),
            area_id="face",
            source=HistorySource.CLINIC,
            clinic=clinic,
        )
    grace, made = patient("Grace", "Turner", 102)
    if made:  # A history of eczema: microneedling books as pending clearance.
        PatientCondition.objects.create(patient=grace, condition_id="eczema", status=ConditionStatus.HISTORY)
    hannah, made = patient("Hannah", "Price", 103)
    if made:  # An isotretinoin course that ended two months ago.
        MedicationCourse.objects.create(
            patient=hannah,
            drug_id="isotretinoin",
            started_on=today - timedelta(days=240),
            ended_on=today - timedelta(days=60),
        )
    patient("Sam", "Clarke", 104)


def _demo_user(username: str, role: StaffRole, encoded_password: Callable[[], str]):
    user, made = get_user_model().objects.get_or_create(
        username=username,
        defaults={
            "is_staff": role == StaffRole.CLINIC_ADMIN,
            "first_name": role.label,
            "password": encoded_password,  # a callable: called only when the user is made
        },
    )
    if made:
        if role == StaffRole.CLINIC_ADMIN:
            _grant_admin_permissions(user)
    return user


def _demo_organisation_admin(organisation: Organisation, encoded_password: Callable[[], str]) -> None:
    """`orgadmin` administers every clinic of the organisation (and switches between them)."""
    user = _demo_user("orgadmin", StaffRole.CLINIC_ADMIN, encoded_password)
    StaffMembership.objects.get_or_create(
        user=user, organisation=organisation, clinic=None, defaults={"role": StaffRole.CLINIC_ADMIN}
    )


def _demo_staff_roles(clinic_code: str) -> list[tuple[str, StaffRole]]:
    suffix = {"demo": "", "demo-ny": "-ny"}.get(clinic_code, clinic_code.removeprefix("demo"))
    return [
        (f"reception{suffix}", StaffRole.RECEPTIONIST),
        (f"clinician{suffix}", StaffRole.CLINICIAN),
        (f"clinicadmin{suffix}", StaffRole.CLINIC_ADMIN),
    ]


def _demo_usernames() -> list[str]:
    return [name for spec in DEMO_CLINICS for name, _ in _demo_staff_roles(spec["code"])] + ["orgadmin"]


def _demo_staff(clinic: Clinic, encoded_password: Callable[[], str]) -> None:
    for username, role in _demo_staff_roles(clinic.code):
        user = _demo_user(username, role, encoded_password)
        StaffMembership.objects.get_or_create(user=user, clinic=clinic, defaults={"role": role, "organisation": None})


def _grant_admin_permissions(user) -> None:
    # The clinic's own data, rules and reminders; API clients (booking platforms) stay with superusers.
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["clinic", "scheduler", "reminders"]).exclude(
            content_type__model="apiclient"
        )
    )
