"""QA probe of issue 11: one record per patient across an organisation's clinics, rule books per organisation
with versions, re-checks after booking, duplicates and merging.

Each test quotes the promise it checks (domain.md section 6, api-contract.md "v1 additions", docs/organisations.md,
docs/rules.md, docs/api.md, issue 11). Tests use the service functions, the REST API and the front desk as a
receptionist, clinician, organisation administrator or booking platform would.
"""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from clinic.merging import patient_merge
from clinic.models import (
    ApiClient,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    MedicationCourse,
    Patient,
    PatientCondition,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
)
from clinic.services import (
    IntakeLine,
    conditions_replace,
    medication_course_add,
    procedure_record_add,
)
from core.errors import InvalidInput
from scheduler import rulebooks, selectors
from scheduler.booking import (
    Actor,
    UnableToBook,
    appointment_book,
    appointment_cancel,
    appointment_check,
    appointment_reschedule,
)
from scheduler.models import ContraindicationRule, IntervalRule
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import fresh, ldn, nyc

RECEPTION = Actor("reception@qa-org")
CLINICIAN = Actor("clinician@qa-org", clinical=True)


def book(patient, code, when, **kwargs):
    return appointment_book(
        patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=CLOCK, **kwargs
    ).appointment


@pytest.fixture(autouse=True)
def _clock(settings):
    """The suite's Monday (2 March 2026, 09:00 UTC); rule-change re-checks run in this process."""
    settings.CELERY_BROKER_URL = ""
    with time_machine.travel(CLOCK, tick=True):
        yield


@pytest.fixture
def chain(catalogue):
    """Organisation `qa-chain`: London (home of the patients) and New York sites, one practitioner each."""
    org = OrganisationFactory(code="qa-chain", name="QA Chain")
    london = ClinicFactory(code="qa-london", name="QA London", timezone="Europe/London", organisation=org)
    newyork = ClinicFactory(code="qa-newyork", name="QA New York", timezone="America/New_York", organisation=org)
    return {
        "org": org,
        "london": london,
        "newyork": newyork,
        "dr_london": PractitionerFactory(clinic=london, name="Dr London"),
        "dr_newyork": PractitionerFactory(clinic=newyork, name="Dr New York"),
    }


@pytest.fixture
def elsewhere(catalogue):
    """A clinic of another organisation (alone in its own), with a practitioner."""
    clinic = ClinicFactory(code="qa-elsewhere", name="Elsewhere", timezone="Europe/London")
    PractitionerFactory(clinic=clinic, name="Dr Elsewhere")
    return clinic


@pytest.fixture
def org_admin(db):
    return get_user_model().objects.create_user("qa-org-admin", password="pw-for-tests-only")


def api_for(*, organisations=(), clinics=(), clinical=False, name=None) -> APIClient:
    client = ApiClient(name=name or f"qa-platform-{ApiClient.objects.count() + 1}", clinical=clinical)
    key = client.set_new_key()
    client.save()
    client.clinics.set(clinics)
    client.organisations.set(organisations)
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return http


def override(default_key, organisation_id, user, **fields):
    """An organisation's rule standing in for a default, saved through the rule-book service."""
    default = IntervalRule.objects.get(default_key=default_key)
    rule = IntervalRule(
        organisation_id=organisation_id,
        replaces=default,
        earlier_procedure_id=fields.pop("earlier_procedure_id", default.earlier_procedure_id),
        earlier_medication_id=default.earlier_medication_id,
        later_procedure_id=fields.pop("later_procedure_id", default.later_procedure_id),
        gap_value=fields.pop("gap_value", default.gap_value),
        gap_unit=fields.pop("gap_unit", default.gap_unit),
        severity=fields.pop("severity", default.severity),
        source="QA organisation protocol",
        **fields,
    )
    version = rulebooks.rule_save(rule=rule, user=user, reason="QA protocol", now=CLOCK)
    return rule, version


def save(rule, user, reason="QA change"):
    return rulebooks.rule_save(rule=rule, user=user, reason=reason, now=CLOCK)


# --- Rule books per organisation -----------------------------------------------------------------------------


def test_an_organisations_relaxed_isotretinoin_wait_books_there_and_not_elsewhere_with_the_version_used(
    chain, elsewhere, org_admin, django_capture_on_commit_callbacks
):
    """Domain 6: 'The 6-month isotretinoin wait before microneedling is the standard case ... a clinic must be able
    to choose, and show which it chose'; contract: 'booking answers (201 and 409) carry rulebook_version: the
    version of the organisation's rule book they were checked against'. Another organisation is unaffected."""
    ours = PatientFactory(clinic=chain["london"], first_name="Iso", last_name="Ours")
    theirs = PatientFactory(clinic=elsewhere, first_name="Iso", last_name="Theirs")
    for patient in (ours, theirs):
        MedicationCourse.objects.create(
            patient=patient, drug_id="isotretinoin", started_on=date(2025, 6, 1), ended_on=date(2025, 11, 30)
        )
    with django_capture_on_commit_callbacks(execute=True):
        override("isotretinoin-then-microneedling-block", chain["org"].pk, org_admin, gap_value=3)

    body = {"procedure": "microneedling", "start": "2026-03-16T10:00:00+00:00"}  # 3.5 months after the end
    api = api_for(organisations=[chain["org"]])
    booked = api.post("/api/v1/appointments/", {**body, "patient": str(ours.pk)}, format="json")
    assert booked.status_code == 201, booked.content
    assert booked.json()["rulebook_version"] == "d1.o2"
    # The 12-month warning of [000] still stands: relaxing the block did not silence it.
    assert any("isotretinoin" in str(w).lower() for w in booked.json()["warnings"])

    other = api_for(clinics=[elsewhere])
    refused = other.post("/api/v1/appointments/", {**body, "patient": str(theirs.pk)}, format="json")
    assert refused.status_code == 409, refused.content
    assert refused.json()["rulebook_version"] == "d1.o1"
    assert {v["rule"] for v in refused.json()["violations"] if v["severity"] == "block"} == {
        str(IntervalRule.objects.get(default_key="isotretinoin-then-microneedling-block").pk)
    }
    booking_audit = AuditEvent.objects.get(appointment_id=booked.json()["id"], action="booked")
    assert booking_audit.details["rulebook_version"] == "d1.o2"


def test_tightening_flags_a_booking_at_the_other_site_and_loosening_the_same_rule_releases_it(
    chain, elsewhere, org_admin, django_capture_on_commit_callbacks
):
    """Issue 11 item 3: 'on every rule change re-check every affected patient'; contract: needs_review 'carries
    review_reasons (violations, same shape as a refusal's)' and leaves it 'by the record being corrected (then it
    is re-checked and goes back to confirmed)'; docs/organisations.md: a Botox at one site counts at every other,
    and a refusal 'says where' (conflicts_with.clinic). Loosening is an edit of the same rule here."""
    patient = PatientFactory(clinic=chain["london"])
    botox = book(patient, "botox", ldn(2026, 3, 3, 11), practitioner_id=chain["dr_london"].pk)
    mn = book(patient, "microneedling", nyc(2026, 3, 23, 10), practitioner_id=chain["dr_newyork"].pk)
    assert mn.status == AppointmentStatus.CONFIRMED and mn.clinic == chain["newyork"]

    with django_capture_on_commit_callbacks(execute=True):
        rule, v2 = override("botox-then-microneedling", chain["org"].pk, org_admin, gap_value=4)
    flagged = fresh(mn)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = flagged.review_reasons
    assert reason["rule"] == str(rule.pk) and reason["severity"] == "block"
    assert reason["conflicts_with"]["id"] == str(botox.pk)
    assert reason["conflicts_with"]["clinic"] in (str(chain["london"].pk), chain["london"].code, chain["london"].name)
    audit = AuditEvent.objects.get(appointment=mn, action="needs_review")
    assert audit.details["rulebook_version"] == "d1.o2" and v2.number == 2

    # The platform granted the New York site sees the same.
    seen = api_for(clinics=[chain["newyork"]]).get(f"/api/v1/appointments/{mn.pk}/")
    assert seen.status_code == 200 and seen.json()["status"] == "needs_review"
    assert seen.json()["review_reasons"][0]["rule"] == str(rule.pk)

    rule.gap_value = 2  # loosened back to the default's length, as the organisation's own rule
    with django_capture_on_commit_callbacks(execute=True):
        v3 = save(rule, org_admin, "QA: loosened again")
    assert v3.diff[0]["change"] == "relaxed"
    released = fresh(mn)
    assert (released.status, released.review_reasons) == (AppointmentStatus.CONFIRMED, [])
    assert AuditEvent.objects.get(appointment=mn, action="released").details["rulebook_version"] == "d1.o3"


def test_disabling_a_default_for_an_organisation_releases_its_booking_only_and_the_rules_page_says_so(
    chain, elsewhere, org_admin, django_capture_on_commit_callbacks
):
    """Domain 6: an organisation may 'disable (with a reason)' a rule, each change 'a new version of its rule
    book'; docs/rules.md: the Rules page shows 'the defaults it switched off, and the versions with their readable
    diffs'; 'Another organisation's rules never apply'."""
    ours = PatientFactory(clinic=chain["london"])
    theirs = PatientFactory(clinic=elsewhere)
    mn_ours = book(ours, "microneedling", ldn(2026, 3, 20))
    mn_theirs = book(theirs, "microneedling", ldn(2026, 3, 20))
    for patient in (ours, theirs):  # a filler elsewhere, reported late: 4 weeks are needed before microneedling
        procedure_record_add(patient=patient, procedure_code="filler", performed_at=ldn(2026, 3, 1), now=CLOCK)
    assert fresh(mn_ours).status == fresh(mn_theirs).status == AppointmentStatus.NEEDS_REVIEW

    with django_capture_on_commit_callbacks(execute=True):
        rule, version = override("filler-then-microneedling", chain["org"].pk, org_admin, is_active=False)
    assert version.diff[0]["change"] == "disabled"
    assert fresh(mn_ours).status == AppointmentStatus.CONFIRMED
    assert fresh(mn_theirs).status == AppointmentStatus.NEEDS_REVIEW

    desk_user = get_user_model().objects.create_user("qa-ny-desk", password="pw-for-tests-only")
    StaffMembership.objects.create(user=desk_user, clinic=chain["newyork"], role=StaffRole.RECEPTIONIST)
    desk = Client()
    desk.force_login(desk_user)
    page = desk.get(f"/clinic/{chain['newyork'].code}/rules/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "QA protocol" in html  # why it was switched off
    assert "disabled" in html.lower() or "switched off" in html.lower()
    assert "d1.o2" in html


def test_an_added_hours_rule_is_elapsed_time_across_the_clock_change(chain, elsewhere, org_admin):
    """docs/rules.md: 'Hours are elapsed time: 48 hours after 10:00 on Monday is 10:00 on Wednesday, to the
    minute (across a clock change, 09:00 or 11:00). No default uses hours; an administrator's rule may.'
    London goes to BST on 29 March 2026."""
    added = IntervalRule(
        organisation_id=chain["org"].pk,
        earlier_procedure_id="botox",
        later_procedure_id="plasma_pen",
        gap_value=48,
        gap_unit="hours",
        severity="block",
        source="QA organisation protocol",
    )
    save(added, org_admin)
    ours = PatientFactory(clinic=chain["london"])
    theirs = PatientFactory(clinic=elsewhere)
    for patient in (ours, theirs):
        book(patient, "botox", ldn(2026, 3, 28, 10))  # GMT

    too_soon = appointment_check(
        patient=ours, procedure_code="plasma_pen", start_at=ldn(2026, 3, 30, 10, 59), now=CLOCK
    )
    assert not too_soon.eligible
    assert too_soon.evaluation.blocking[0].rule_id == str(added.pk)
    assert too_soon.evaluation.earliest_eligible_start == ldn(2026, 3, 30, 11)  # BST: 48 h to the minute
    assert appointment_check(
        patient=ours, procedure_code="plasma_pen", start_at=ldn(2026, 3, 30, 11), now=CLOCK
    ).eligible
    assert appointment_check(
        patient=theirs, procedure_code="plasma_pen", start_at=ldn(2026, 3, 30, 10, 59), now=CLOCK
    ).eligible


def test_a_repeat_rule_tightened_to_block_refuses_both_ways_but_never_against_itself(chain, org_admin):
    """Docs/rules.md: 'An organisation edits them [the repeat defaults] like any other rule'; 'A repeat rule ...
    is checked both ways like any other ... an appointment is never its own repeat (a reschedule leaves itself
    out)'."""
    rule, _ = override("botox-repeat", chain["org"].pk, org_admin, severity="block")
    patient = PatientFactory(clinic=chain["london"])
    first = book(patient, "botox", ldn(2026, 4, 1))

    with pytest.raises(UnableToBook) as after:
        book(patient, "botox", ldn(2026, 4, 22))
    assert after.value.check.blocking[0].rule_id == str(rule.pk)
    with pytest.raises(UnableToBook) as before:
        book(patient, "botox", ldn(2026, 3, 10))  # 3 weeks before the booked one
    assert before.value.check.blocking[0].rule_id == str(rule.pk)

    moved = appointment_reschedule(appointment=first, start_at=ldn(2026, 4, 3), actor=RECEPTION, now=CLOCK)
    assert moved.appointment.status == AppointmentStatus.CONFIRMED
    assert moved.appointment.start_at == ldn(2026, 4, 3)


def test_an_override_cannot_quietly_stand_in_for_another_pair(chain, org_admin):
    """docs/rules.md: 'a rule of the organisation that replaces a default stands in for it: the same pair with a
    longer gap or a harsher severity (tightened), a shorter gap ... (relaxed), or switched off (is_active off:
    disabled)'; domain 6: 'Never a silent change'. An override naming another pair is refused (it would have
    dropped the default and added another rule under a "tightened" diff), and nothing changes."""
    patient = PatientFactory(clinic=chain["london"])
    book(patient, "botox", ldn(2026, 3, 10))
    before = selectors.rulebook_load(chain["org"].pk).version
    with pytest.raises(ValidationError) as refused:
        override("botox-then-microneedling", chain["org"].pk, org_admin, later_procedure_id="filler", gap_value=3)
    assert "replaces" in refused.value.message_dict
    assert "later procedure" in refused.value.message_dict["replaces"][0]
    check = appointment_check(patient=patient, procedure_code="microneedling", start_at=ldn(2026, 3, 13), now=CLOCK)
    assert not check.eligible  # Botox → microneedling still holds
    assert selectors.rulebook_load(chain["org"].pk).version == before


def test_a_contraindication_moved_to_another_procedure_releases_what_it_flagged(
    chain, org_admin, django_capture_on_commit_callbacks
):
    """Domain 6: an organisation may add rules; what now breaks 'an absolute contraindication becomes
    needs_review'; contract: it leaves needs_review when 're-checked and goes back to confirmed'."""
    patient = PatientFactory(clinic=chain["london"])
    conditions_replace(patient=patient, lines=[IntakeLine("diabetes", "active")], now=CLOCK)
    pp = book(patient, "plasma_pen", ldn(2026, 3, 20))
    added = ContraindicationRule(
        organisation_id=chain["org"].pk,
        condition_id="diabetes",
        procedure_id="plasma_pen",
        severity="absolute",
        source="QA organisation protocol",
    )
    with django_capture_on_commit_callbacks(execute=True):
        save(added, org_admin, "QA: no plasma pen with diabetes")
    assert fresh(pp).status == AppointmentStatus.NEEDS_REVIEW

    added.procedure_id = "botox"  # meant Botox
    with django_capture_on_commit_callbacks(execute=True):
        version = save(added, org_admin, "QA: meant Botox")
    assert version.number == 3 and "procedure" in version.diff[0]["fields"]
    assert fresh(pp).status == AppointmentStatus.CONFIRMED


def test_a_rule_is_not_moved_to_another_organisation(chain, elsewhere, org_admin, django_capture_on_commit_callbacks):
    """docs/rules.md: 'Each change ... writes a RuleBookVersion: whose rule book ..., the next number'; domain 6:
    whenever 'an organisation's rules change, every future active appointment of the affected patients is checked
    again'. Moving a rule from one organisation's book to another's wrote a version of the second only and never
    re-checked the first's bookings; it is refused now (add it there, delete it here), and the admin shows a
    rule's organisation read-only once it exists."""
    patient = PatientFactory(clinic=chain["london"])
    book(patient, "botox", ldn(2026, 3, 10))
    filler = book(patient, "filler", ldn(2026, 3, 24))  # 2 weeks after
    rule = IntervalRule(
        organisation_id=chain["org"].pk,
        earlier_procedure_id="botox",
        later_procedure_id="filler",
        gap_value=3,
        gap_unit="weeks",
        severity="block",
        source="QA organisation protocol",
    )
    with django_capture_on_commit_callbacks(execute=True):
        save(rule, org_admin)
    assert fresh(filler).status == AppointmentStatus.NEEDS_REVIEW
    before = selectors.rulebook_load(chain["org"].pk).version

    rule.organisation_id = elsewhere.organisation_id
    with pytest.raises(ValidationError) as refused:
        save(rule, org_admin, "QA: belongs to the other organisation")
    assert "organisation" in refused.value.message_dict

    assert IntervalRule.objects.get(pk=rule.pk).organisation_id == chain["org"].pk
    assert selectors.rulebook_load(chain["org"].pk).version == before
    assert fresh(filler).status == AppointmentStatus.NEEDS_REVIEW  # still under the chain's rule


# --- One record across sites and zones -----------------------------------------------------------------------


def test_a_botox_at_the_london_site_counts_at_the_new_york_site_in_local_dates(chain):
    """Domain 6: 'a Botox done at one site counts at every other'; domain 2: 'Gaps in days, weeks or months are
    calendar gaps ... the later event's local date must be on or after the earlier event's local date plus the
    gap'. Botox on 2 March (same date in both zones), so microneedling from 16 March (New York is on EDT by then)."""
    patient = PatientFactory(clinic=chain["london"])
    botox = book(patient, "botox", ldn(2026, 3, 2, 16), practitioner_id=chain["dr_london"].pk)
    api = api_for(clinics=[chain["newyork"]])
    body = {"patient": str(patient.pk), "procedure": "microneedling", "practitioner": str(chain["dr_newyork"].pk)}

    refused = api.post("/api/v1/appointments/", {**body, "start": "2026-03-14T17:00:00-04:00"}, format="json")
    assert refused.status_code == 409, refused.content
    [violation] = refused.json()["violations"]
    assert violation["conflicts_with"]["id"] == str(botox.pk)
    assert violation["conflicts_with"]["clinic"] is not None
    booked = api.post("/api/v1/appointments/", {**body, "start": "2026-03-16T09:00:00-04:00"}, format="json")
    assert booked.status_code == 201, booked.content
    assert booked.json()["status"] == "confirmed"


def test_a_recheck_agrees_with_the_booking_when_the_two_sites_disagree_on_the_date(chain):
    """docs/rules.md: a record change 're-checks every future appointment' with 'the rules as they stand now';
    nothing may change when nothing relevant changed. A Botox at 00:30 London on 2 March is 1 March in New York;
    recorded at the London home clinic, its day is London's (docs/rules.md: each event's date is read where it
    happened), so the New York site refuses 15 March and takes 16 March, and adding an unrelated past filler does
    not flip that booking."""
    from clinic.models import WorkingHours

    WorkingHours.objects.create(practitioner=chain["dr_newyork"], weekday=6, start_time="09:00", end_time="18:00")
    patient = PatientFactory(clinic=chain["london"])
    procedure_record_add(patient=patient, procedure_code="botox", performed_at=ldn(2026, 3, 2, 0, 30), now=CLOCK)
    check = appointment_check(
        patient=patient,
        procedure_code="microneedling",
        start_at=nyc(2026, 3, 15, 9),
        now=CLOCK,
        practitioner_id=chain["dr_newyork"].pk,
    )
    assert not check.eligible  # 2 March (London) + 2 weeks: 16 March, wherever it is booked
    assert check.earliest_eligible_start == nyc(2026, 3, 16, 0)
    mn = book(patient, "microneedling", nyc(2026, 3, 16, 9), practitioner_id=chain["dr_newyork"].pk)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED
    procedure_record_add(patient=patient, procedure_code="filler", performed_at=ldn(2025, 1, 5), now=CLOCK)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED


# --- Duplicates ----------------------------------------------------------------------------------------------


def test_a_number_typed_locally_at_the_new_york_site_matches_a_record_registered_in_london(chain):
    """docs/organisations.md: 'phone: the same number in E.164' and 'the organisation's live records are
    searched'; a New York desk types a US number without its country code."""
    PatientFactory(clinic=chain["london"], first_name="Grace", last_name="Hopper", phone="+12125550147", email="")
    api = api_for(organisations=[chain["org"]])
    answer = api.post(
        "/api/v1/patients/",
        {"clinic": str(chain["newyork"].pk), "first_name": "G", "last_name": "Smith", "phone": "(212) 555-0147"},
        format="json",
    )
    assert answer.status_code == 409, answer.content
    assert answer.json()["candidates"][0]["reasons"] == ["phone"]
    assert Patient.objects.filter(last_name="Smith").count() == 0


# --- Merging -------------------------------------------------------------------------------------------------


@pytest.fixture
def pair(chain):
    survivor = PatientFactory(
        clinic=chain["london"], first_name="Olivia", last_name="Bennett", date_of_birth=date(1985, 6, 18)
    )
    duplicate = PatientFactory(
        clinic=chain["newyork"], first_name="Olivia", last_name="Benett", date_of_birth=date(1985, 6, 18)
    )
    return survivor, duplicate


def test_a_merge_brings_plans_recalls_opt_ins_feeds_and_messages_and_the_plan_follows_in_the_api(chain, pair):
    """docs/organisations.md: 'history, medication courses, appointments (with their audit trail and outbox rows
    ...), opt-outs and opt-ins, calendar feeds, and any other row that names the patient move to the survivor'
    (the brief: plans and messages too)."""
    from plans.defaults import plan_templates_load
    from reminders.defaults import care_texts_load
    from reminders.models import CalendarFeed, ContactOptIn, ContactOptOut, OutboxMessage

    plan_templates_load()
    care_texts_load()
    survivor, duplicate = pair
    api = api_for(organisations=[chain["org"]], clinical=True)
    planned = api.post(
        f"/api/v1/patients/{duplicate.pk}/plans/",
        {
            "template": "microneedling-course",
            "start_from": "2026-03-09",
            "clinic": chain["newyork"].code,
        },
        format="json",
    )
    assert planned.status_code == 201, planned.content
    plan_id = planned.json()["id"]
    ContactOptOut.objects.create(patient=duplicate, channel="sms", via="sms_stop", at=CLOCK)
    ContactOptIn.objects.create(patient=duplicate, channel="email", via="patient_page", at=CLOCK)
    CalendarFeed.objects.create(patient=duplicate, token_hash="f" * 64, created_at=CLOCK)
    messages = set(OutboxMessage.objects.filter(appointment__patient=duplicate).values_list("pk", flat=True))

    merged = api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert merged.status_code == 200, merged.content

    plan = api.get(f"/api/v1/plans/{plan_id}/")
    assert plan.status_code == 200 and plan.json()["patient"] == str(survivor.pk)
    assert all(s["status"] == "booked" for s in plan.json()["sessions"])
    assert ContactOptOut.objects.get().patient_id == survivor.pk
    assert ContactOptIn.objects.get().patient_id == survivor.pk
    assert CalendarFeed.objects.get().patient_id == survivor.pk
    assert set(OutboxMessage.objects.filter(appointment__patient=survivor).values_list("pk", flat=True)) >= messages
    assert not Appointment.objects.filter(patient=duplicate).exists()


def test_back_to_back_and_cancelled_appointments_are_no_overlap_but_two_sites_at_once_are(chain, pair):
    """docs/organisations.md: 'Two active appointments at the same time are a conflict too (cancel or move one
    first)'; api.md: 409 merge-conflict '... Nothing changes.' Back to back is not the same time; a cancelled one
    holds no time."""
    survivor, duplicate = pair
    api = api_for(organisations=[chain["org"]], clinical=True)
    kept = book(survivor, "botox", ldn(2026, 3, 20, 10), practitioner_id=chain["dr_london"].pk)
    # 10:00 London is 06:00 New York (before DST there): the New York site's day starts at 09:00 = 13:00 London.
    at_ny = book(duplicate, "botox", nyc(2026, 3, 20, 9), practitioner_id=chain["dr_newyork"].pk)
    clash = book(survivor, "filler", ldn(2026, 3, 20, 13), practitioner_id=chain["dr_london"].pk)

    refused = api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert refused.status_code == 409, refused.content
    assert refused.json()["conflicts"] == [
        {"kind": "appointment_overlap", "appointments": [str(clash.pk), str(at_ny.pk)]}
    ]
    assert fresh(at_ny).patient_id == duplicate.pk and fresh(duplicate).merged_into_id is None

    appointment_cancel(appointment=clash, actor=RECEPTION, now=CLOCK, reason="QA: settle the clash")
    back_to_back = book(survivor, "botox", at_ny.end_at, practitioner_id=chain["dr_london"].pk)
    ok = api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert ok.status_code == 200, ok.content
    assert {fresh(kept).patient_id, fresh(at_ny).patient_id, fresh(back_to_back).patient_id} == {survivor.pk}


def test_a_tombstone_refuses_new_data_by_every_service_and_by_the_api(chain, pair):
    """docs/organisations.md: 'nothing can be booked or recorded on it (the patient lock refuses it,
    patient_merged)'; api.md: 'A merged record's address answers 308 ...'; 'Tombstones are in no list, search or
    body: {"patient": "<tombstone>"} on a booking ... are a 400 patient_merged with merged_into'."""
    survivor, duplicate = pair
    stale = Patient.objects.get(pk=duplicate.pk)  # as a request that read it before the merge holds it
    patient_merge(merged=duplicate, into=survivor, now=CLOCK, actor_label="qa", clinical=True)

    attempts = [
        lambda: conditions_replace(patient=stale, lines=[IntakeLine("pregnancy", "active")], now=CLOCK),
        lambda: medication_course_add(patient=stale, drug_code="isotretinoin", started_on=date(2026, 1, 1), now=CLOCK),
        lambda: procedure_record_add(patient=stale, procedure_code="botox", performed_at=ldn(2026, 2, 1), now=CLOCK),
        lambda: book(stale, "botox", ldn(2026, 3, 20)),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput) as refused:
            attempt()
        assert refused.value.code == "patient_merged"
    assert not PatientCondition.objects.exists() and not MedicationCourse.objects.exists()
    assert not ProcedureRecord.objects.exists() and not Appointment.objects.exists()

    api = api_for(organisations=[chain["org"]])
    posted = api.post(
        f"/api/v1/patients/{duplicate.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"},
        format="json",
    )
    assert posted.status_code == 308 and str(survivor.pk) in posted["Location"]
    assert not ProcedureRecord.objects.exists()
    patched = api.patch(f"/api/v1/patients/{duplicate.pk}/", {"email": "new@example.com"}, format="json")
    # A replacing change is refused rather than carried over to the survivor (2f2ba10; api.md).
    assert patched.status_code == 409 and patched.json()["merged_into"] == str(survivor.pk)
    assert fresh(duplicate).email != "new@example.com" and fresh(survivor).email != "new@example.com"
    booking = api.post(
        "/api/v1/appointments/",
        {"patient": str(duplicate.pk), "procedure": "botox", "start": "2026-03-20T10:00:00+00:00"},
        format="json",
    )
    assert booking.status_code == 400 and booking.json()["code"] == "patient_merged"
    assert booking.json()["merged_into"] == str(survivor.pk)
    assert not Appointment.objects.exists()


def test_a_contact_edit_of_a_record_already_merged_is_refused_not_lost(chain, pair):
    """docs/organisations.md: 'nothing can be booked or recorded on it'; brief: 'the tombstone refuses new data'.
    A desk that opened the edit form before the merge saves after it: the new phone must not land on the
    tombstone, where nobody will ever see it."""
    from clinic.services import patient_update

    survivor, duplicate = pair
    stale = Patient.objects.get(pk=duplicate.pk)
    patient_merge(merged=duplicate, into=survivor, now=CLOCK, actor_label="qa", clinical=True)
    with pytest.raises(InvalidInput) as refused:
        patient_update(patient=stale, today=CLOCK.date(), phone="+447911123999")
    assert refused.value.code == "patient_merged"
    assert fresh(duplicate).phone != "+447911123999"


def test_merging_into_another_organisations_record_is_refused_everywhere_and_changes_nothing(chain, pair, elsewhere):
    """Issue 11: 'Merging a record ... into another organisation's record ... is a clear 400/404'; api.md: '404
    unknown_patient when into is another organisation's record'. The front desk, given such an id in the form,
    must refuse too."""
    _, duplicate = pair
    foreign = PatientFactory(clinic=elsewhere, first_name="Olivia", last_name="Bennett")
    api = api_for(organisations=[chain["org"]], clinics=[elsewhere], clinical=True)
    answer = api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(foreign.pk)}, format="json")
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_patient"

    user = get_user_model().objects.create_user("qa-two-org-clinician", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=chain["newyork"], role=StaffRole.CLINICIAN)
    StaffMembership.objects.create(user=user, clinic=elsewhere, role=StaffRole.CLINICIAN)
    desk = Client()
    desk.force_login(user)
    page = desk.post(f"/clinic/{chain['newyork'].code}/patients/{duplicate.pk}/merge/", {"into": str(foreign.pk)})
    assert page.status_code in (400, 404)
    assert fresh(duplicate).merged_into_id is None and fresh(foreign).merged_into_id is None


def test_a_clinician_of_one_site_merges_records_of_the_organisation_through_the_api_as_on_the_desk(chain, pair):
    """docs/organisations.md: merging 'is for clinicians and clinic administrators'; the record belongs to the
    organisation and 'Every site's desk finds and books the organisation's patients'. The New York site's front
    desk lets its clinician merge two records whose home is London; the API (the same user's session) must too."""
    survivor, duplicate = pair
    duplicate.clinic = chain["london"]  # both records' home is the London site
    duplicate.save()
    twin = PatientFactory(clinic=chain["london"], first_name="Olivia", last_name="Bennet")
    user = get_user_model().objects.create_user("qa-ny-clinician", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=chain["newyork"], role=StaffRole.CLINICIAN)
    desk = Client()
    desk.force_login(user)
    on_desk = desk.post(f"/clinic/{chain['newyork'].code}/patients/{twin.pk}/merge/", {"into": str(survivor.pk)})
    assert on_desk.status_code == 302 and fresh(twin).merged_into_id == survivor.pk

    api = APIClient()
    api.force_login(user)
    answer = api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert answer.status_code == 200, answer.content
    assert fresh(duplicate).merged_into_id == survivor.pk


def test_the_merge_flags_a_booking_at_the_other_site_and_that_sites_desk_lists_it(chain, pair):
    """Domain 6: 'merging two records unions their history and re-checks everything booked'; issue 11: 'a "Needs
    attention" list on the front desk's Today for receptionists and clinicians'."""
    survivor, duplicate = pair
    procedure_record_add(patient=survivor, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=CLOCK)
    mn = book(duplicate, "microneedling", nyc(2026, 3, 5, 10), practitioner_id=chain["dr_newyork"].pk)
    assert mn.status == AppointmentStatus.CONFIRMED

    patient_merge(merged=duplicate, into=survivor, now=CLOCK, actor_label="qa", clinical=True)
    flagged = fresh(mn)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW and flagged.patient_id == survivor.pk

    user = get_user_model().objects.create_user("qa-ny-reception", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=chain["newyork"], role=StaffRole.RECEPTIONIST)
    desk = Client()
    desk.force_login(user)
    today = desk.get(f"/clinic/{chain['newyork'].code}/")
    assert today.status_code == 200
    html = today.content.decode()
    section = html.split('id="attention-heading"', 1)[1].split("</section>", 1)[0]
    assert f"/appointments/{mn.pk}/" in section
    assert flagged.review_reasons[0]["message"].split(":")[0][:20] in section


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["booking", "merge"])
def test_a_merge_racing_a_booking_never_leaves_it_confirmed_and_unsafe(catalogue, monkeypatch, first):
    """Issue 11 item 2/3 and docs/organisations.md: 'Both rows are locked'; 'nothing can be booked ... on it (the
    patient lock refuses it)'; 'the survivor's future booked appointments are re-checked in the same transaction'.
    A microneedling booked on the duplicate while it is merged into a record with a Botox 3 days earlier must end
    refused or needs_review, never confirmed."""
    from clinic import merging
    from scheduler import selectors as scheduler_selectors

    org = OrganisationFactory(code=f"qa-race-{first}")
    clinic = ClinicFactory(code=f"qa-race-{first}", timezone="Europe/London", organisation=org)
    PractitionerFactory(clinic=clinic)
    survivor = PatientFactory(clinic=clinic, first_name="Race", last_name="Survivor")
    duplicate = PatientFactory(clinic=clinic, first_name="Race", last_name="Duplicate")
    ProcedureRecord.objects.create(
        patient=survivor, procedure_id="botox", performed_at=ldn(2026, 3, 1), source="reported"
    )

    started = threading.Event()
    if first == "booking":
        real = scheduler_selectors.timeline_for_patient

        def slow_timeline(patient_id):
            started.set()
            time.sleep(0.6)
            return real(patient_id)

        monkeypatch.setattr(scheduler_selectors, "timeline_for_patient", slow_timeline)
    else:
        real_move = merging._move_related_rows

        def slow_move(merged, into):
            started.set()
            time.sleep(0.6)
            return real_move(merged, into)

        monkeypatch.setattr(merging, "_move_related_rows", slow_move)

    outcome = {}

    def do_booking():
        try:
            outcome["booked"] = book(Patient.objects.get(pk=duplicate.pk), "microneedling", ldn(2026, 3, 4)).pk
        except (UnableToBook, InvalidInput) as refused:
            outcome["booking_refused"] = refused
        finally:
            connection.close()

    def do_merge():
        try:
            patient_merge(
                merged=Patient.objects.get(pk=duplicate.pk),
                into=Patient.objects.get(pk=survivor.pk),
                now=CLOCK,
                actor_label="qa",
                clinical=True,
            )
            outcome["merged"] = True
        except Exception as error:  # noqa: BLE001 - recorded and asserted below
            outcome["merge_error"] = error
        finally:
            connection.close()

    one, two = (do_booking, do_merge) if first == "booking" else (do_merge, do_booking)
    t1 = threading.Thread(target=one)
    t1.start()
    assert started.wait(5)
    t2 = threading.Thread(target=two)
    t2.start()
    t1.join(20)
    t2.join(20)

    assert "merge_error" not in outcome, outcome
    assert outcome.get("merged") is True
    assert Patient.objects.get(pk=duplicate.pk).merged_into_id == survivor.pk
    if "booked" in outcome:
        appointment = Appointment.objects.get(pk=outcome["booked"])
        assert appointment.patient_id == survivor.pk
        assert appointment.status == AppointmentStatus.NEEDS_REVIEW
    else:
        assert isinstance(outcome["booking_refused"], UnableToBook | InvalidInput)
        assert not Appointment.objects.exists()


def test_the_intake_decision_must_name_a_real_status_and_a_bad_one_changes_nothing(chain, pair):
    """api.md: merge body 'intake': [{'condition','area','status'}]; bad input 'must give a clear 4xx and store
    nothing'; docs/organisations.md: conflicting lines 'need a decision'."""
    survivor, duplicate = pair
    PatientCondition.objects.create(patient=survivor, condition_id="pregnancy", status="history")
    PatientCondition.objects.create(patient=duplicate, condition_id="pregnancy", status="active")
    api = api_for(organisations=[chain["org"]], clinical=True)
    url = f"/api/v1/patients/{duplicate.pk}/merge/"

    bad = api.post(
        url, {"into": str(survivor.pk), "intake": [{"condition": "pregnancy", "status": "maybe"}]}, format="json"
    )
    assert bad.status_code == 400, bad.content
    wrong_line = api.post(
        url, {"into": str(survivor.pk), "intake": [{"condition": "eczema", "status": "active"}]}, format="json"
    )
    assert wrong_line.status_code == 409 and wrong_line.json()["conflicts"][0]["condition"] == "pregnancy"
    # The real line decided, plus one the two do not disagree on: a 400 naming it, not a silent drop.
    extra = api.post(
        url,
        {
            "into": str(survivor.pk),
            "intake": [{"condition": "pregnancy", "status": "active"}, {"condition": "eczema", "status": "history"}],
        },
        format="json",
    )
    assert extra.status_code == 400 and "eczema" in extra.json()["errors"]["intake"][0], extra.content
    assert fresh(duplicate).merged_into_id is None
    assert PatientCondition.objects.filter(patient=duplicate).count() == 1

    ok = api.post(
        url, {"into": str(survivor.pk), "intake": [{"condition": "pregnancy", "status": "active"}]}, format="json"
    )
    assert ok.status_code == 200, ok.content
    assert list(PatientCondition.objects.filter(patient=survivor).values_list("status", flat=True)) == ["active"]


def test_a_rule_change_rechecks_a_merged_in_booking_under_the_survivors_organisation(
    chain, pair, org_admin, django_capture_on_commit_callbacks
):
    """Domain 6: an organisation's rule change re-checks 'every future active appointment of the affected
    patients'; after a merge, the moved appointment is the survivor's and must be found by the run."""
    survivor, duplicate = pair
    book(survivor, "botox", ldn(2026, 3, 3))
    mn = book(duplicate, "microneedling", ldn(2026, 3, 24), practitioner_id=chain["dr_london"].pk)  # 3 weeks after
    patient_merge(merged=duplicate, into=survivor, now=CLOCK, actor_label="qa", clinical=True)
    assert fresh(mn).status == AppointmentStatus.CONFIRMED
    with django_capture_on_commit_callbacks(execute=True):
        override("botox-then-microneedling", chain["org"].pk, org_admin, gap_value=4)
    assert fresh(mn).status == AppointmentStatus.NEEDS_REVIEW


def test_refusal_answers_carry_the_version_they_were_checked_against_after_an_edit(chain, org_admin):
    """Issue 11 item 4: 'Each booking decision, refusal and eligibility answer records the rulebook_version it
    used'; contract: eligibility answers carry it."""
    patient = PatientFactory(clinic=chain["london"])
    book(patient, "botox", ldn(2026, 3, 3))
    api = api_for(organisations=[chain["org"]])
    body = {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-03-18T10:00:00+00:00"}
    assert api.post("/api/v1/eligibility/", body, format="json").json()["rulebook_version"] == "d1.o1"
    override("botox-then-microneedling", chain["org"].pk, org_admin, gap_value=3)
    eligibility = api.post("/api/v1/eligibility/", body, format="json").json()
    assert (eligibility["eligible"], eligibility["rulebook_version"]) == (False, "d1.o2")
    refused = api.post("/api/v1/appointments/", body, format="json")
    assert refused.status_code == 409 and refused.json()["rulebook_version"] == "d1.o2"


def test_an_organisation_administrator_sees_only_their_own_recheck_runs_and_versions(
    chain, elsewhere, settings, django_capture_on_commit_callbacks
):
    """docs/organisations.md: 'Rule-book versions and re-check runs list the defaults' and the administrator's own
    organisations''; docs/rules.md: versions are listed 'never another's'."""
    from django.contrib.auth.models import Permission

    settings.STAFF_TWO_FACTOR_REQUIRED = False
    admin_user = get_user_model().objects.create_user("qa-chain-admin", password="pw-for-tests-only", is_staff=True)
    admin_user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["clinic", "scheduler"]))
    StaffMembership.objects.create(user=admin_user, organisation=chain["org"], role=StaffRole.CLINIC_ADMIN)
    for clinic, reason in ((chain["london"], "QA-OURS-REASON"), (elsewhere, "QA-THEIRS-REASON")):
        book(PatientFactory(clinic=clinic), "microneedling", ldn(2026, 3, 20))
        with django_capture_on_commit_callbacks(execute=True):
            rulebooks.rule_save(
                rule=IntervalRule(
                    organisation_id=clinic.organisation_id,
                    earlier_procedure_id="filler",
                    later_procedure_id="microneedling",
                    gap_value=5,
                    gap_unit="weeks",
                    severity="warn",
                    source="QA organisation protocol",
                ),
                user=admin_user,
                reason=reason,
                now=CLOCK,
            )
    admin = Client()
    admin.force_login(admin_user)
    runs = admin.get("/admin/scheduler/recheckrun/")
    versions = admin.get("/admin/scheduler/rulebookversion/")
    assert runs.status_code == 200 and versions.status_code == 200
    from scheduler.models import RecheckRun

    assert RecheckRun.objects.count() == 2
    assert {run.organisation_id for run in runs.context["cl"].result_list} == {chain["org"].pk}
    assert "QA-OURS-REASON" in versions.content.decode()
    assert "QA-THEIRS-REASON" not in versions.content.decode()


def test_the_admin_shows_an_existing_rules_organisation_read_only(rf):
    """The admin offers the organisation when a rule is added, and shows it read-only after (rulebooks.rule_save
    refuses a move; the admin must not offer one it would refuse)."""
    from django.contrib import admin as django_admin

    rule_admin = django_admin.site._registry[IntervalRule]
    request = rf.get("/")
    assert "organisation" not in rule_admin.get_readonly_fields(request, None)
    assert "organisation" in rule_admin.get_readonly_fields(request, IntervalRule(gap_value=1))
