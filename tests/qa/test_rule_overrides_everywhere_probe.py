"""QA probe: an organisation's own rule book is what EVERY feature applies, never the shipped defaults and
never another organisation's (domain.md section 6, "Rules belong to an organisation").

Organisation A changes its rule book five times (rule book `d1.o6`): it tightens `botox-then-microneedling`
from 2 to 4 weeks, relaxes `isotretinoin-then-microneedling-block` from 6 to 3 months (with a reason),
disables `filler-then-microneedling` (with a reason), adds a same-procedure repeat rule (microneedling after
microneedling, 6 weeks, block) and narrows the eczema contraindication for microneedling to active eczema
only. Organisation B keeps the defaults (`d1.o1`). For a patient of each, with the same history, the probe
compares every place that applies or shows interval rules: API eligibility and booking (violations,
earliest_eligible_start, next_available_slot, rulebook_version in 200, 201 and 409 bodies), reschedule and
its dry run, availability, treatment plans (dry run and booking), recalls, the post-care text's "when you may
next have ..." dates, the front desk's booking panel, patient outlook and appointment history, the re-check
after a record change and after a rule edit (needs_review, audit with the version), and FHIR's view of a
booking under review. It also checks that a disabled rule never shows in violations, that a change without a
reason is refused with a clear error (service and admin), and that B is untouched throughout.

The clock is the suite's Monday, 2 March 2026 09:00 UTC (London on GMT until 29 March, then BST); the
practitioners work Monday to Saturday, 09:00-18:00.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from clinic.models import (
    ApiClient,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    ConditionStatus,
    MedicationCourse,
    PatientCondition,
    StaffMembership,
    StaffRole,
)
from clinic.services import procedure_record_add
from plans.models import Recall
from reminders.content import render_message
from reminders.models import MessageKind, OutboxMessage
from scheduler import rulebooks, selectors
from scheduler.booking import Actor, UnableToBook, appointment_book, appointment_cancel, appointment_complete
from scheduler.models import ContraindicationRule, IntervalRule, RecheckRun, RuleBookVersion
from scheduler.selfservice import patient_move_check, patient_move_options
from tests import shipped
from tests.conftest import CLOCK
from tests.factories import (
    ClinicFactory,
    OrganisationFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)
from tests.qa.helpers import fresh, ldn

pytestmark = pytest.mark.django_db

RECEPTION = Actor("reception@qa-rulebooks")
CLINICIAN = Actor("clinician@qa-rulebooks", clinical=True)
A_VERSION = "d1.o6"  # the shipped book plus A's five changes
B_VERSION = "d1.o1"  # as shipped


def default(key: str, model=IntervalRule):
    return model.objects.get(default_key=key)


@pytest.fixture(autouse=True)
def _clock(settings):
    """The suite's Monday; rule-change re-checks run in this process (no broker)."""
    settings.CELERY_BROKER_URL = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "reminders.channels.LocmemSmsBackend"
    with time_machine.travel(CLOCK, tick=True):
        yield


@pytest.fixture
def world(catalogue):
    """Organisations A (with its five changes) and B (the defaults), one London clinic and practitioner each."""
    shipped.care_texts()
    shipped.plan_templates()
    admin_user = get_user_model().objects.create_user("qa-rb-admin", password="pw-for-tests-only")
    out = {"admin": admin_user}
    for tag in ("a", "b"):
        org = OrganisationFactory(code=f"qa-rb-{tag}", name=f"QA Rules {tag.upper()}")
        clinic = ClinicFactory(
            code=f"qa-rb-{tag}-ldn", name=f"QA {tag.upper()} London", timezone="Europe/London", organisation=org
        )
        out[tag] = {"org": org, "clinic": clinic, "dr": PractitionerFactory(clinic=clinic, name=f"Dr {tag.upper()}")}
    org_a = out["a"]["org"].pk

    def override(key, model=IntervalRule, *, reason, **fields):
        base = default(key, model)
        rule = model(organisation_id=org_a, replaces=base, source="QA organisation A protocol")
        for name in base.PAIR_FIELDS:
            setattr(rule, f"{name}_id", getattr(base, f"{name}_id"))
        for name in ("gap_value", "gap_unit", "severity", "scope", "applies_to", "area_specific", "basis"):
            if hasattr(base, name):
                setattr(rule, name, fields.pop(name, getattr(base, name)))
        for name, value in fields.items():
            setattr(rule, name, value)
        rulebooks.rule_save(rule=rule, user=admin_user, reason=reason, now=CLOCK)
        return rule

    rules = {
        "tightened": override("botox-then-microneedling", gap_value=4, reason="QA: our surgeons want 4 weeks"),
        "relaxed": override(
            "isotretinoin-then-microneedling-block", gap_value=3, reason="QA: ASDS 2017 consensus allows 3 months"
        ),
        "disabled": override("filler-then-microneedling", is_active=False, reason="QA: not our practice"),
        "narrowed": override(
            "microneedling-eczema",
            ContraindicationRule,
            applies_to="active",
            reason="QA: only active eczema needs clearance here",
        ),
    }
    added = IntervalRule(
        organisation_id=org_a,
        earlier_procedure_id="microneedling",
        later_procedure_id="microneedling",
        gap_value=6,
        gap_unit="weeks",
        severity="block",
        source="QA organisation A protocol",
    )
    rulebooks.rule_save(rule=added, user=admin_user, reason="QA: sessions at least 6 weeks apart", now=CLOCK)
    rules["added"] = added
    out["rules"] = rules
    out["api_a"] = api_for(out["a"]["clinic"])
    out["api_b"] = api_for(out["b"]["clinic"])
    return out


def api_for(clinic) -> APIClient:
    client = ApiClient(name=f"qa-rb-platform-{clinic.code}", clinical=True)
    key = client.set_new_key()
    client.save()
    client.clinics.set([clinic])
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return http


def twins(world, **extra):
    """One patient of each organisation (home clinic A or B), with the same details."""
    return (
        PatientFactory(clinic=world["a"]["clinic"], first_name="Alma", last_name="Ayers", **extra),
        PatientFactory(clinic=world["b"]["clinic"], first_name="Bea", last_name="Byrne", **extra),
    )


def history(patients, code, when):
    for patient in patients:
        ProcedureRecordFactory(patient=patient, procedure_id=code, performed_at=when)


def book(patient, code, when, now=CLOCK):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=RECEPTION, now=now).appointment


def post(api, path, body):
    return api.post(path, body, format="json")


def blocking_rules(body) -> list[str]:
    return [v["rule"] for v in body["violations"] if v["severity"] in ("block", "absolute")]


def all_rule_ids(body) -> set[str]:
    return {v["rule"] for v in body.get("violations", []) + body.get("warnings", []) if v.get("rule")}


def test_the_version_each_organisation_starts_from_and_bs_book_is_the_defaults(world):
    """Domain 6: 'The sourced defaults ... are the base every organisation starts from. An organisation may
    tighten, relax (with a reason), disable (with a reason) or add rules; each change makes a new version of its
    rule book'. Five changes of A make A's book d1.o6; B's is still the shipped one, rule for rule."""
    book_a = selectors.rulebook_load(world["a"]["org"].pk)
    book_b = selectors.rulebook_load(world["b"]["org"].pk)
    shipped = selectors.rulebook_load(None)
    assert (book_a.version, book_b.version) == (A_VERSION, B_VERSION)
    assert RuleBookVersion.objects.filter(organisation=world["b"]["org"]).count() == 0

    def ids(rb) -> set[str]:
        intervals = {f"i{r.id}" for rs in rb.looking_back.values() for r in rs}
        return intervals | {f"c{c.id}" for cs in rb.contraindications.values() for c in cs}

    def tag(rule) -> str:
        return f"{'i' if isinstance(rule, IntervalRule) else 'c'}{rule.pk}"

    assert ids(book_b) == ids(shipped)
    own = {tag(r) for r in world["rules"].values()}
    assert not own & ids(book_b)
    assert own - {tag(world["rules"]["disabled"])} <= ids(book_a)
    assert tag(world["rules"]["disabled"]) not in ids(book_a)
    assert tag(default("filler-then-microneedling")) not in ids(book_a)
    assert tag(default("botox-then-microneedling")) not in ids(book_a)  # stood in for
    assert tag(default("microneedling-eczema", ContraindicationRule)) not in ids(book_a)


# --- API: eligibility, booking, reschedule and its dry run, availability -----------------------------------------


def test_eligibility_and_booking_use_the_patients_own_tightened_rule_with_earliest_slot_and_version(world):
    """Contract: a 409 carries 'violations ... earliest_eligible_start ... next_available_slot'; 'Eligibility
    answers and booking answers (201 and 409) carry rulebook_version: the version of the organisation's rule
    book they were checked against'; docs/rules.md: the audit entry records it too. Botox on 25 February:
    microneedling from 25 March at A (4 weeks), from 11 March at B (2 weeks)."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    tightened = str(world["rules"]["tightened"].pk)
    body = {"procedure": "microneedling", "start": "2026-03-16T10:00:00+00:00"}

    el_a = post(world["api_a"], "/api/v1/eligibility/", {**body, "patient": str(pa.pk)}).json()
    el_b = post(world["api_b"], "/api/v1/eligibility/", {**body, "patient": str(pb.pk)}).json()
    assert (el_a["eligible"], el_a["status"], el_a["rulebook_version"]) == (False, "refused", A_VERSION)
    assert blocking_rules(el_a) == [tightened]
    assert el_a["violations"][0]["earliest_allowed"] == "2026-03-25T00:00:00+00:00"
    assert "4 weeks" in el_a["violations"][0]["message"]
    assert el_a["earliest_eligible_start"] == "2026-03-25T00:00:00+00:00"
    assert (el_b["eligible"], el_b["status"], el_b["rulebook_version"]) == (True, "confirmed", B_VERSION)
    assert el_b["violations"] == [] and el_b["warnings"] == []

    refused = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)})
    assert refused.status_code == 409, refused.content
    r = refused.json()
    assert (r["rulebook_version"], blocking_rules(r)) == (A_VERSION, [tightened])
    assert r["earliest_eligible_start"] == "2026-03-25T00:00:00+00:00"
    assert r["next_available_slot"]["start"] == "2026-03-25T09:00:00+00:00"
    assert r["next_available_slot"]["practitioner"] == str(world["a"]["dr"].pk)

    ok_b = post(world["api_b"], "/api/v1/appointments/", {**body, "patient": str(pb.pk)})
    assert ok_b.status_code == 201, ok_b.content
    assert (ok_b.json()["status"], ok_b.json()["rulebook_version"]) == ("confirmed", B_VERSION)

    ok_a = post(
        world["api_a"],
        "/api/v1/appointments/",
        {**body, "patient": str(pa.pk), "start": r["next_available_slot"]["start"]},
    )
    assert ok_a.status_code == 201, ok_a.content
    assert ok_a.json()["rulebook_version"] == A_VERSION
    audits = {
        a.appointment.patient_id: a.details["rulebook_version"]
        for a in AuditEvent.objects.filter(action="booked").select_related("appointment")
    }
    assert audits == {pa.pk: A_VERSION, pb.pk: B_VERSION}


def test_a_relaxed_isotretinoin_wait_is_three_months_at_a_and_six_at_b(world):
    """Domain 6: 'The 6-month isotretinoin wait before microneedling is the standard case ... a clinic must be
    able to choose, and show which it chose'. A course ended 10 January 2026: at A microneedling is possible
    from 10 April (3 months, with the 12-month warning of [000] still given), at B from 10 July."""
    pa, pb = twins(world)
    for patient in (pa, pb):
        MedicationCourse.objects.create(
            patient=patient, drug_id="isotretinoin", started_on=date(2025, 7, 1), ended_on=date(2026, 1, 10)
        )
    relaxed = str(world["rules"]["relaxed"].pk)
    shipped_block = str(default("isotretinoin-then-microneedling-block").pk)
    shipped_warn = str(default("isotretinoin-then-microneedling-warn").pk)
    body = {"procedure": "microneedling", "start": "2026-03-16T10:00:00+00:00"}

    a = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)}).json()
    b = post(world["api_b"], "/api/v1/appointments/", {**body, "patient": str(pb.pk)}).json()
    assert (a["status"], blocking_rules(a), a["rulebook_version"]) == (409, [relaxed], A_VERSION)
    assert a["earliest_eligible_start"] == "2026-04-10T00:00:00+01:00"
    assert a["next_available_slot"]["start"] == "2026-04-10T09:00:00+01:00"
    assert (b["status"], blocking_rules(b), b["rulebook_version"]) == (409, [shipped_block], B_VERSION)
    assert b["earliest_eligible_start"] == "2026-07-10T00:00:00+01:00"

    later = {**body, "start": "2026-04-13T10:00:00+01:00"}
    ok_a = post(world["api_a"], "/api/v1/appointments/", {**later, "patient": str(pa.pk)})
    assert ok_a.status_code == 201, ok_a.content
    assert [w["rule"] for w in ok_a.json()["warnings"]] == [shipped_warn]
    assert post(world["api_b"], "/api/v1/appointments/", {**later, "patient": str(pb.pk)}).status_code == 409


def test_a_disabled_rule_never_appears_in_violations_warnings_availability_or_review_reasons(world):
    """Domain 6: an organisation may 'disable (with a reason)' a rule. A filler on 27 February: at B
    microneedling waits 4 weeks (to 27 March); at A the switched-off rule must never be named, in an eligibility
    answer, a booking's warnings, the free slots, or a later re-check's reasons."""
    pa, pb = twins(world)
    history((pa, pb), "filler", ldn(2026, 2, 27))
    off = {str(world["rules"]["disabled"].pk), str(default("filler-then-microneedling").pk)}
    body = {"procedure": "microneedling", "start": "2026-03-16T10:00:00+00:00"}

    el_a = post(world["api_a"], "/api/v1/eligibility/", {**body, "patient": str(pa.pk)}).json()
    el_b = post(world["api_b"], "/api/v1/eligibility/", {**body, "patient": str(pb.pk)}).json()
    assert el_a["eligible"] is True and not all_rule_ids(el_a) & off
    assert el_b["eligible"] is False and blocking_rules(el_b) == [str(default("filler-then-microneedling").pk)]
    assert el_b["earliest_eligible_start"] == "2026-03-27T00:00:00+00:00"

    window = {"procedure": "microneedling", "from": "2026-03-03T00:00:00+00:00", "to": "2026-03-05T00:00:00+00:00"}
    slots_a = world["api_a"].get("/api/v1/availability/", {**window, "patient": str(pa.pk)})
    slots_b = world["api_b"].get("/api/v1/availability/", {**window, "patient": str(pb.pk)})
    assert slots_a.status_code == slots_b.status_code == 200, (slots_a.content, slots_b.content)
    assert slots_a.json()["results"][0]["start"] == "2026-03-03T09:00:00+00:00"
    assert slots_b.json()["results"] == []

    booked = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)})
    assert booked.status_code == 201 and not all_rule_ids(booked.json()) & off
    # A Botox reported later makes the booking unsafe under A's tightened rule: only that rule is named.
    procedure_record_add(patient=pa, procedure_code="botox", performed_at=ldn(2026, 3, 1), now=CLOCK)
    flagged = Appointment.objects.get(pk=booked.json()["id"])
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    assert {r["rule"] for r in flagged.review_reasons} == {str(world["rules"]["tightened"].pk)}


def test_an_added_same_procedure_repeat_block_refuses_at_a_while_b_only_has_the_practice_warning(world):
    """Domain 6: an organisation may 'add rules'; docs/rules.md: 'a rule of the organisation that replaces
    nothing is added (a repeat rule included)'. Microneedling on 2 March: a second one four weeks later is
    refused at A (6 weeks, block) with the earliest start 13 April, and books at B (the shipped 4-week repeat
    warning is met exactly)."""
    pa, pb = twins(world)
    history((pa, pb), "microneedling", ldn(2026, 3, 2, 8))
    body = {"procedure": "microneedling", "start": "2026-03-30T10:00:00+01:00"}
    a = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)})
    b = post(world["api_b"], "/api/v1/appointments/", {**body, "patient": str(pb.pk)})
    assert a.status_code == 409, a.content
    assert blocking_rules(a.json()) == [str(world["rules"]["added"].pk)]
    assert a.json()["earliest_eligible_start"] == "2026-04-13T00:00:00+01:00"
    assert a.json()["next_available_slot"]["start"] == "2026-04-13T09:00:00+01:00"
    assert b.status_code == 201, b.content
    assert (b.json()["warnings"], b.json()["rulebook_version"]) == ([], B_VERSION)


def test_a_narrowed_contraindication_confirms_history_of_eczema_at_a_and_holds_it_at_b(world):
    """Domain 6 lets an organisation change a rule; docs/rules.md: a contraindication's 'counts when' (active
    or history) is part of the rule. A narrows microneedling-eczema to active eczema: a history of eczema books
    confirmed at A and pending clearance at B; active eczema is still held at A, under A's rule."""
    pa, pb = twins(world)
    for patient in (pa, pb):
        PatientCondition.objects.create(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)
    active = PatientFactory(clinic=world["a"]["clinic"], first_name="Cara", last_name="Active")
    PatientCondition.objects.create(patient=active, condition_id="eczema", status=ConditionStatus.ACTIVE)
    body = {"procedure": "microneedling", "start": "2026-03-16T10:00:00+00:00"}

    el_a = post(world["api_a"], "/api/v1/eligibility/", {**body, "patient": str(pa.pk)}).json()
    el_b = post(world["api_b"], "/api/v1/eligibility/", {**body, "patient": str(pb.pk)}).json()
    assert (el_a["status"], el_a["violations"]) == ("confirmed", [])
    assert el_b["status"] == "pending_clearance"
    assert [v["rule"] for v in el_b["violations"]] == [str(default("microneedling-eczema", ContraindicationRule).pk)]

    a = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)}).json()
    b = post(world["api_b"], "/api/v1/appointments/", {**body, "patient": str(pb.pk)}).json()
    c = post(
        world["api_a"],
        "/api/v1/appointments/",
        {**body, "patient": str(active.pk), "start": "2026-03-16T14:00:00+00:00"},
    ).json()
    assert (a["status"], b["status"], c["status"]) == ("confirmed", "pending_clearance", "pending_clearance")
    el_c = post(
        world["api_a"],
        "/api/v1/eligibility/",
        {**body, "patient": str(active.pk), "start": "2026-03-17T10:00:00+00:00"},
    )
    held = [v["rule"] for v in el_c.json()["violations"] if v["kind"] == "contraindication"]
    assert held == [str(world["rules"]["narrowed"].pk)]


def test_reschedule_and_its_dry_run_apply_the_patients_own_rule_book(world):
    """docs/api.md: 'reschedule-check ... the same checks as .../reschedule/ ... answered as eligibility
    answers'; 'Eligibility answers (and the reschedule dry run) carry rulebook_version as well'; a reschedule's
    201 and 409 carry it, and the audit of the move records it."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 25)), book(pb, "microneedling", ldn(2026, 3, 25))
    target = {"start": "2026-03-16T10:00:00+00:00"}

    dry_a = post(world["api_a"], f"/api/v1/appointments/{mn_a.pk}/reschedule-check/", target)
    dry_b = post(world["api_b"], f"/api/v1/appointments/{mn_b.pk}/reschedule-check/", target)
    assert dry_a.status_code == dry_b.status_code == 200, (dry_a.content, dry_b.content)
    da, db = dry_a.json(), dry_b.json()
    assert (da["eligible"], blocking_rules(da)) == (False, [str(world["rules"]["tightened"].pk)])
    assert da["earliest_eligible_start"] == "2026-03-25T00:00:00+00:00"
    assert da["next_available_slot"]["start"] == "2026-03-25T09:00:00+00:00"
    assert da.get("rulebook_version") == A_VERSION
    assert (db["eligible"], db.get("rulebook_version")) == (True, B_VERSION)

    moved_a = post(world["api_a"], f"/api/v1/appointments/{mn_a.pk}/reschedule/", target)
    moved_b = post(world["api_b"], f"/api/v1/appointments/{mn_b.pk}/reschedule/", target)
    assert moved_a.status_code == 409, moved_a.content
    assert (moved_a.json()["rulebook_version"], blocking_rules(moved_a.json())) == (
        A_VERSION,
        [str(world["rules"]["tightened"].pk)],
    )
    assert fresh(mn_a).start_at == ldn(2026, 3, 25)
    assert moved_b.status_code == 201, moved_b.content
    assert moved_b.json()["rulebook_version"] == B_VERSION
    assert AuditEvent.objects.get(appointment=mn_b, action="rescheduled").details["rulebook_version"] == B_VERSION

    later = post(world["api_a"], f"/api/v1/appointments/{mn_a.pk}/reschedule/", {"start": "2026-03-26T10:00:00+00:00"})
    assert later.status_code == 201 and later.json()["rulebook_version"] == A_VERSION
    assert AuditEvent.objects.get(appointment=mn_a, action="rescheduled").details["rulebook_version"] == A_VERSION


def test_availability_offers_nothing_inside_as_tightened_gap(world):
    """Contract: availability lists 'free slots that are also interval-eligible for that patient'. Botox on
    25 February: A's first microneedling slot is 25 March 09:00, B's 11 March 09:00."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    window = {"procedure": "microneedling", "from": "2026-03-09T00:00:00+00:00", "to": "2026-03-28T00:00:00+00:00"}
    a = world["api_a"].get("/api/v1/availability/", {**window, "patient": str(pa.pk), "page_size": 200})
    b = world["api_b"].get("/api/v1/availability/", {**window, "patient": str(pb.pk), "page_size": 200})
    assert a.status_code == b.status_code == 200, (a.content, b.content)
    starts_a = [s["start"] for s in a.json()["results"]]
    starts_b = [s["start"] for s in b.json()["results"]]
    assert starts_a and starts_a[0] == "2026-03-25T09:00:00+00:00"
    assert all(s >= "2026-03-25" for s in starts_a)
    assert starts_b[0] == "2026-03-11T09:00:00+00:00"


# --- Plans and recalls ------------------------------------------------------------------------------------------


def test_a_plan_dry_run_and_booking_place_sessions_by_as_rules_and_refuse_bs_placement(world):
    """docs/plans.md: 'every session must also satisfy every interval rule against the patient's history, their
    other bookings and the plan's own sessions'; a plan with a proposal that breaks a rule is a 409
    'plan_refused' with 'the booking refusal's fields'. Botox on 25 February; microneedling course from
    3 March: at A session 1 waits for 25 March (4 weeks) and each next one 6 weeks (A's added repeat rule, the
    template's latest); at B sessions go on 11 March, then at the ideal 4 weeks."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    body = {"template": "microneedling-course", "start_from": "2026-03-03", "dry_run": True}
    a = post(world["api_a"], f"/api/v1/patients/{pa.pk}/plans/", body)
    b = post(world["api_b"], f"/api/v1/patients/{pb.pk}/plans/", body)
    assert a.status_code == b.status_code == 200, (a.content, b.content)
    assert a.json()["feasible"] and b.json()["feasible"]
    assert [s["start"] for s in a.json()["sessions"]] == [
        "2026-03-25T09:00:00+00:00",
        "2026-05-06T09:00:00+01:00",
        "2026-06-17T09:00:00+01:00",
    ]
    assert [s["start"] for s in b.json()["sessions"]] == [
        "2026-03-11T09:00:00+00:00",
        "2026-04-08T09:00:00+01:00",
        "2026-05-06T09:00:00+01:00",
    ]

    # B's placement proposed for A's patient is refused whole, naming A's rule and A's version.
    proposal = [{"start": s["start"]} for s in b.json()["sessions"]]
    refused = post(world["api_a"], f"/api/v1/patients/{pa.pk}/plans/", {**body, "dry_run": False, "proposal": proposal})
    assert refused.status_code == 409, refused.content
    r = refused.json()
    assert (r["session"], blocking_rules(r)) == (1, [str(world["rules"]["tightened"].pk)])
    assert r["earliest_eligible_start"] == "2026-03-25T00:00:00+00:00"
    assert r.get("rulebook_version") == A_VERSION
    assert not Appointment.objects.filter(patient=pa).exists()

    booked = post(world["api_a"], f"/api/v1/patients/{pa.pk}/plans/", {**body, "dry_run": False})
    assert booked.status_code == 201, booked.content
    appointments = Appointment.objects.filter(patient=pa).order_by("start_at")
    assert [a.start_at for a in appointments] == [ldn(2026, 3, 25, 9), ldn(2026, 5, 6, 9), ldn(2026, 6, 17, 9)]
    assert {a.status for a in appointments} == {AppointmentStatus.CONFIRMED}
    assert set(
        AuditEvent.objects.filter(appointment__patient=pa, action="booked").values_list(
            "details__rulebook_version", flat=True
        )
    ) == {A_VERSION}


def test_a_botox_recall_gives_the_earliest_date_under_the_patients_own_rules(world):
    """docs/plans.md, Recalls: 'Says the ideal date and the earliest date the rules allow for this patient (the
    engine's earliest eligible start from the template's minimum gap, with the whole timeline)'. Botox on
    2 March (maintenance: 3 months minimum) with microneedling booked on 16 June: at A a Botox must come 4 weeks
    before that microneedling or 3 weeks after it, so the earliest is 7 July; at B 2 June is fine."""
    pa, pb = twins(world)
    for patient in (pa, pb):
        botox = book(patient, "botox", ldn(2026, 3, 2, 10))
        book(patient, "microneedling", ldn(2026, 6, 16, 10))
        appointment_complete(appointment=botox, actor=CLINICIAN, now=ldn(2026, 3, 2, 10, 40))
    recall_a, recall_b = Recall.objects.get(patient=pa), Recall.objects.get(patient=pb)
    assert (recall_a.due_on, recall_b.due_on) == (date(2026, 6, 8), date(2026, 6, 8))
    assert recall_b.earliest_on == date(2026, 6, 2)
    assert recall_a.earliest_on == date(2026, 7, 7)

    def text(patient):
        message = OutboxMessage.objects.get(appointment__patient=patient, kind=MessageKind.RECALL, channel="email")
        return render_message(message=message, now=message.due_at).text

    assert "Tuesday 7 July 2026" in text(pa) and "Tuesday 2 June 2026" not in text(pa)
    # At B 2 June was possible when the recall was planned, but the message goes on 8 June, 8 days before the
    # microneedling: too close at B as well, so the rules, asked again when it goes, say after it, 7 July
    # (reminders.content.recall_earliest; the message used to say 2 June, a day already past).
    assert "Tuesday 7 July 2026" in text(pb) and "Tuesday 2 June 2026" not in text(pb)


# --- Patient messages ------------------------------------------------------------------------------------------


def _post_care_text(patient) -> str:
    message = (
        OutboxMessage.objects.filter(appointment__patient=patient, kind=MessageKind.POST_CARE, channel="email")
        .order_by("due_at")
        .first()
    )
    assert message is not None
    return render_message(message=message, now=message.due_at).text


def test_the_post_care_next_dates_are_computed_from_the_patients_own_rule_book(world):
    """Domain 4: 'The post-care note also says when the patient may next have Botox, filler or plasma pen,
    computed from the interval rules for this patient'; docs/reminders.md: 'asked of the rule engine with the
    patient's whole timeline'. Microneedling done on 2 March, another booked on 13 April: at A a Botox must be
    4 weeks before that booking (tightened) and the filler rule is off; at B it is the other way round."""
    pa, pb = twins(world)
    for patient in (pa, pb):
        first = book(patient, "microneedling", ldn(2026, 3, 2, 10))
        book(patient, "microneedling", ldn(2026, 4, 13, 10))  # exactly A's 6 weeks later
        appointment_complete(appointment=first, actor=CLINICIAN, now=ldn(2026, 3, 2, 11))
    text_a, text_b = _post_care_text(pa), _post_care_text(pb)

    assert "- Botulinum toxin injection (Botox): possible from Monday 4 May 2026" in text_a
    assert "- Dermal filler (e.g. hyaluronic acid, Juvederm): possible from Monday 23 March 2026" in text_a
    assert "- Botulinum toxin injection (Botox): possible from Monday 23 March 2026" in text_b
    assert "- Dermal filler (e.g. hyaluronic acid, Juvederm): possible from Monday 4 May 2026" in text_b
    for text in (text_a, text_b):
        assert "- Plasma pen (fibroblast) treatment: possible from Monday 9 March 2026" in text

    # The printed aftercare sheet at the desk says the same (frontdesk.selectors.aftercare uses next_possible).
    desk_a = _desk(world["a"]["clinic"], "qa-rb-aftercare-a")
    done_a = Appointment.objects.get(patient=pa, status=AppointmentStatus.COMPLETED)
    sheet = desk_a.get(f"/clinic/{world['a']['clinic'].code}/appointments/{done_a.pk}/aftercare/")
    assert sheet.status_code == 200
    assert "Monday 4 May 2026" in sheet.content.decode()


def test_the_post_care_repeat_date_follows_as_added_block_rule(world):
    """Domain 4 / docs/reminders.md: the dates are 'for this patient', once with the rules and once with
    warnings as blocks. After a microneedling on 2 March, A's own 6-week repeat block makes the next
    microneedling possible from 13 April; B has only the 4-week practice warning (possible now, ideally from
    30 March)."""
    pa, pb = twins(world)
    for patient in (pa, pb):
        first = book(patient, "microneedling", ldn(2026, 3, 2, 10))
        appointment_complete(appointment=first, actor=CLINICIAN, now=ldn(2026, 3, 2, 11))
    text_a, text_b = _post_care_text(pa), _post_care_text(pb)
    assert "- Microneedling (collagen induction therapy): possible from Monday 13 April 2026\n" in text_a
    assert (
        "- Microneedling (collagen induction therapy): possible from Monday 2 March 2026, ideally from "
        "Monday 30 March 2026"
    ) in text_b


# --- Front desk --------------------------------------------------------------------------------------------------


def _desk(clinic, username) -> Client:
    user = get_user_model().objects.create_user(username, password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
    client = Client()
    client.force_login(user)
    return client


def test_the_front_desk_panel_outlook_and_history_use_the_organisations_rule_book(world):
    """docs/frontdesk.md: the booking panel asks scheduler.booking ('what the panel says is what booking
    does'); the patient page shows 'when each bookable procedure is possible again and why'; the appointment's
    audit trail shows 'each booking ... with the rule book version it used'."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    desk_a, desk_b = _desk(world["a"]["clinic"], "qa-rb-desk-a"), _desk(world["b"]["clinic"], "qa-rb-desk-b")
    ca, cb = world["a"]["clinic"].code, world["b"]["clinic"].code
    params = {"procedure": "microneedling", "date": "2026-03-16", "time": "10:00"}

    panel_a = desk_a.get(f"/clinic/{ca}/patients/{pa.pk}/book/", params, HTTP_HX_REQUEST="true")
    panel_b = desk_b.get(f"/clinic/{cb}/patients/{pb.pk}/book/", params, HTTP_HX_REQUEST="true")
    assert panel_a.status_code == panel_b.status_code == 200
    html_a, html_b = panel_a.content.decode(), panel_b.content.decode()
    assert "Not possible at Mon 16 Mar 2026, 10:00" in html_a
    assert "at least 4 weeks after Botulinum toxin injection (Botox)" in html_a
    assert 'Earliest eligible start: <strong class="earliest__date">Wed 25 Mar 2026</strong>' in html_a
    assert 'value="2026-03-25T09:00:00+00:00"' in html_a
    assert "Possible at Mon 16 Mar 2026, 10:00" in html_b

    outlook_a = desk_a.get(f"/clinic/{ca}/patients/{pa.pk}/").content.decode()
    outlook_b = desk_b.get(f"/clinic/{cb}/patients/{pb.pk}/").content.decode()
    assert "Not before <strong>Wed 25 Mar 2026</strong>" in outlook_a
    assert "Not before <strong>Wed 11 Mar 2026</strong>" in outlook_b
    assert "Wed 11 Mar 2026" not in outlook_a

    refused = desk_a.post(
        f"/clinic/{ca}/patients/{pa.pk}/book/confirm/",
        {**params, "practitioner": str(world["a"]["dr"].pk), "area": ""},
    )
    assert refused.status_code == 409 and "Not booked." in refused.content.decode()
    booked = desk_a.post(
        f"/clinic/{ca}/patients/{pa.pk}/book/confirm/",
        {
            "procedure": "microneedling",
            "area": "",
            "practitioner": str(world["a"]["dr"].pk),
            "start_at": "2026-03-25T09:00:00+00:00",
        },
    )
    assert booked.status_code == 302, booked.content
    appointment = Appointment.objects.get(patient=pa)
    page = desk_a.get(f"/clinic/{ca}/appointments/{appointment.pk}/").content.decode()
    assert f"rule book {A_VERSION}" in page


# --- After booking: record changes, rule edits, FHIR -------------------------------------------------------------


def test_a_record_change_rechecks_under_as_rules_and_fhir_shows_the_review(world):
    """Domain 6: 'Whenever a patient's record changes ... every future active appointment ... is checked again.
    What now breaks a block rule ... becomes needs_review'; contract: it 'carries review_reasons'; docs/fhir.md:
    a needs_review appointment is 'pending' with our status and 'one review-reason extension' per reason.
    Microneedling booked for 16 March; a Botox done on 2 March is recorded: 2 weeks is enough at B, not at A."""
    pa, pb = twins(world)
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 16)), book(pb, "microneedling", ldn(2026, 3, 16))
    for patient in (pa, pb):
        procedure_record_add(patient=patient, procedure_code="botox", performed_at=ldn(2026, 3, 2, 8), now=CLOCK)

    assert fresh(mn_b).status == AppointmentStatus.CONFIRMED
    flagged = fresh(mn_a)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = flagged.review_reasons
    assert reason["rule"] == str(world["rules"]["tightened"].pk)
    assert datetime.fromisoformat(reason["earliest_allowed"]) == ldn(2026, 3, 30, 0)
    assert AuditEvent.objects.get(appointment=mn_a, action="needs_review").details["rulebook_version"] == A_VERSION

    fhir_a = world["api_a"].get(f"/fhir/r4/Appointment/{mn_a.pk}")
    fhir_b = world["api_b"].get(f"/fhir/r4/Appointment/{mn_b.pk}")
    assert fhir_a.status_code == fhir_b.status_code == 200, (fhir_a.content, fhir_b.content)
    assert (fhir_a.json()["status"], fhir_b.json()["status"]) == ("pending", "booked")
    reviews = [e["valueString"] for e in fhir_a.json()["extension"] if e["url"].endswith("review-reason")]
    assert len(reviews) == 1 and "4 weeks" in reviews[0]


def test_editing_an_override_after_booking_rechecks_under_the_new_version_and_spares_b(
    world, django_capture_on_commit_callbacks
):
    """Domain 6: whenever 'an organisation's rules change, every future active appointment of the affected
    patients is checked again'; 'each change makes a new version of its rule book, and every decision records
    the version it used'. Microneedling booked on 25 March, 4 weeks after a Botox: A lengthens its rule to 5
    weeks; A's booking needs review under d1.o7, later answers say d1.o7; B's twin is untouched (d1.o1)."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 25)), book(pb, "microneedling", ldn(2026, 3, 25))

    rule = world["rules"]["tightened"]
    rule.gap_value = 5
    with django_capture_on_commit_callbacks(execute=True):
        version = rulebooks.rule_save(rule=rule, user=world["admin"], reason="QA: 5 weeks now", now=CLOCK)
    assert (version.number, version.diff[0]["change"]) == (7, "tightened")

    flagged = fresh(mn_a)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    assert [datetime.fromisoformat(r["earliest_allowed"]) for r in flagged.review_reasons] == [ldn(2026, 4, 1, 0)]
    assert AuditEvent.objects.get(appointment=mn_a, action="needs_review").details["rulebook_version"] == "d1.o7"
    assert fresh(mn_b).status == AppointmentStatus.CONFIRMED
    assert not AuditEvent.objects.filter(appointment=mn_b).exclude(action="booked").exists()
    assert {run.organisation_id for run in RecheckRun.objects.all()} == {world["a"]["org"].pk}

    body = {"procedure": "microneedling", "start": "2026-03-30T10:00:00+01:00"}
    el_a = post(world["api_a"], "/api/v1/eligibility/", {**body, "patient": str(pa.pk)}).json()
    el_b = post(world["api_b"], "/api/v1/eligibility/", {**body, "patient": str(pb.pk)}).json()
    assert (el_a["eligible"], el_a["rulebook_version"]) == (False, "d1.o7")
    by_rule = {v["rule"]: v["earliest_allowed"] for v in el_a["violations"]}
    assert by_rule[str(rule.pk)] == "2026-04-01T00:00:00+01:00"  # 5 weeks after 25 February
    assert (el_b["eligible"], el_b["rulebook_version"]) == (True, B_VERSION)


# --- Reasons -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"gap_value": 2}, id="relax-iso-to-2-months"),
        pytest.param({"is_active": False}, id="disable-iso"),
    ],
)
@pytest.mark.parametrize("reason", ["", "   "])
def test_a_relaxation_or_disabling_without_a_reason_is_refused_and_changes_nothing(world, change, reason):
    """Domain 6: an organisation may 'relax (with a reason), disable (with a reason)'; docs/rules.md: 'Each
    change ... needs a reason'. Without one the service refuses with the reason named, and neither the rule nor
    the version moves."""
    rule = IntervalRule.objects.get(pk=world["rules"]["relaxed"].pk)
    for name, value in change.items():
        setattr(rule, name, value)
    with pytest.raises(ValidationError) as refused:
        rulebooks.rule_save(rule=rule, user=world["admin"], reason=reason, now=CLOCK)
    assert "reason" in refused.value.message_dict
    assert "why" in refused.value.message_dict["reason"][0].lower()
    stored = IntervalRule.objects.get(pk=rule.pk)
    assert (stored.gap_value, stored.is_active) == (3, True)
    assert selectors.rulebook_load(world["a"]["org"].pk).version == A_VERSION


def test_the_admin_refuses_a_relaxation_without_a_reason(world, settings):
    """docs/rules.md, Who edits: 'The form asks for the reason (change_reason)'; every change 'needs a reason'.
    An administrator who relaxes A's isotretinoin wait to 2 months and leaves the reason empty gets the form back
    with the field marked, and nothing changes."""
    settings.STAFF_TWO_FACTOR_REQUIRED = False
    superuser = get_user_model().objects.create_superuser("qa-rb-super", password="pw-for-tests-only")
    admin = Client()
    admin.force_login(superuser)
    rule = world["rules"]["relaxed"]
    url = f"/admin/scheduler/intervalrule/{rule.pk}/change/"
    form = admin.get(url)
    assert form.status_code == 200
    data = {
        "replaces": str(rule.replaces_id),
        "earlier_medication": rule.earlier_medication_id,
        "later_procedure": rule.later_procedure_id,
        "gap_value": "2",
        "gap_unit": rule.gap_unit,
        "severity": rule.severity,
        "scope": rule.scope,
        "source": rule.source,
        "basis": rule.basis,
        "note": "",
        "is_active": "on",
        "change_reason": "",
    }
    response = admin.post(url, data)
    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert "change_reason" in errors
    assert IntervalRule.objects.get(pk=rule.pk).gap_value == 3
    assert selectors.rulebook_load(world["a"]["org"].pk).version == A_VERSION

    response = admin.post(url, {**data, "change_reason": "QA: 2 months per our dermatologist"})
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert IntervalRule.objects.get(pk=rule.pk).gap_value == 2
    assert selectors.rulebook_load(world["a"]["org"].pk).version == "d1.o7"
    assert selectors.rulebook_load(world["b"]["org"].pk).version == B_VERSION


def test_bs_answers_do_not_move_while_a_keeps_changing(world, django_capture_on_commit_callbacks):
    """docs/rules.md: 'Another organisation's rules never apply'. B's answer for the same question is identical
    before and after A's further changes (a delete reverting A's tightened rule, a new rule), rule for rule."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    history((pa, pb), "filler", ldn(2026, 2, 27))
    body = {"procedure": "microneedling", "start": "2026-03-09T10:00:00+00:00", "patient": str(pb.pk)}
    before = post(world["api_b"], "/api/v1/eligibility/", body).json()
    assert set(blocking_rules(before)) == {
        str(default("botox-then-microneedling").pk),
        str(default("filler-then-microneedling").pk),
    }

    with django_capture_on_commit_callbacks(execute=True):
        rulebooks.rule_delete(rule=world["rules"]["tightened"], user=world["admin"], reason="QA: back", now=CLOCK)
        rulebooks.rule_save(
            rule=IntervalRule(
                organisation_id=world["a"]["org"].pk,
                earlier_procedure_id="filler",
                later_procedure_id="microneedling",
                gap_value=8,
                gap_unit="weeks",
                severity="block",
                source="QA organisation A protocol",
            ),
            user=world["admin"],
            reason="QA: a stricter filler rule of our own",
            now=CLOCK,
        )
    after = post(world["api_b"], "/api/v1/eligibility/", body).json()
    assert after == before
    el_a = post(world["api_a"], "/api/v1/eligibility/", {**body, "patient": str(pa.pk)}).json()
    assert el_a["rulebook_version"] == "d1.o8"
    assert str(default("botox-then-microneedling").pk) in blocking_rules(el_a)  # the default is back at A


def test_a_next_available_slot_never_lands_inside_as_own_rule_when_b_would_allow_it(world):
    """Contract: next_available_slot is 'the first bookable slot ... at or after earliest_eligible_start'.
    With a filler on 27 February (disabled at A) and a Botox on 25 February, microneedling on 12 March is refused
    at A by the tightened Botox rule only (slot 25 March) and at B by the filler rule only (slot 27 March): each
    organisation's answer follows its own book, not the other's."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    history((pa, pb), "filler", ldn(2026, 2, 27))
    body = {"procedure": "microneedling", "start": "2026-03-12T10:00:00+00:00"}
    a = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)}).json()
    b = post(world["api_b"], "/api/v1/appointments/", {**body, "patient": str(pb.pk)}).json()
    assert (a["next_available_slot"]["start"], b["next_available_slot"]["start"]) == (
        "2026-03-25T09:00:00+00:00",
        "2026-03-27T09:00:00+00:00",
    )
    assert blocking_rules(a) == [str(world["rules"]["tightened"].pk)]
    assert blocking_rules(b) == [str(default("filler-then-microneedling").pk)]
    # the practitioner of the slot is the patient's organisation's own
    assert a["next_available_slot"]["practitioner"] == str(world["a"]["dr"].pk)
    assert b["next_available_slot"]["practitioner"] == str(world["b"]["dr"].pk)


# --- More places: replan, plan recalls, the patient's own page, the desk's move, medication rules, clearance -----


def _plan_for(world, tag, patient) -> dict:
    api = world[f"api_{tag}"]
    body = {"template": "microneedling-course", "start_from": "2026-03-03"}
    booked = post(api, f"/api/v1/patients/{patient.pk}/plans/", body)
    assert booked.status_code == 201, booked.content
    return booked.json()


def test_a_replan_dry_run_keeps_as_repeat_gap(world):
    """docs/plans.md: 'Re-plan: session from_session goes to the first possible slot from start within the
    course's gaps ... every later one re-proposed'; every session satisfies every interval rule. A's plan
    (25 March, 6 May, 17 June) asked to bring session 2 forward to 22 April (the template's 4 weeks) keeps it
    on 6 May: A's own 6-week repeat block forbids anything sooner."""
    pa, _ = twins(world)
    history((pa,), "botox", ldn(2026, 2, 25))
    plan = _plan_for(world, "a", pa)
    replan = post(
        world["api_a"],
        f"/api/v1/plans/{plan['id']}/replan/",
        {"from_session": 2, "start": "2026-04-22T00:00:00+01:00", "dry_run": True},
    )
    assert replan.status_code == 200, replan.content
    starts = {s["index"]: s["start"] for s in replan.json()["sessions"]}
    assert starts[2] == "2026-05-06T09:00:00+01:00"


def test_a_plan_sessions_recall_gives_the_earliest_date_of_as_repeat_rule(world):
    """docs/plans.md, Recalls: 'A plan's session completes and the next session has no active booking: due at
    the ideal gap'; it 'says ... the earliest date the rules allow for this patient'. Session 1 done, the later
    ones cancelled: at A the next microneedling is possible from 6 weeks on (A's block), at B from the
    template's 4 weeks."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    for tag, patient in (("a", pa), ("b", pb)):
        _plan_for(world, tag, patient)
        first, *rest = Appointment.objects.filter(patient=patient).order_by("start_at")
        for later in rest:
            appointment_cancel(appointment=later, actor=RECEPTION, now=CLOCK, reason="QA")
        appointment_complete(appointment=first, actor=CLINICIAN, now=first.start_at + timedelta(hours=1))
    recall_a, recall_b = Recall.objects.get(patient=pa), Recall.objects.get(patient=pb)
    assert (recall_a.due_on, recall_a.earliest_on) == (date(2026, 4, 22), date(2026, 5, 6))
    assert (recall_b.due_on, recall_b.earliest_on) == (date(2026, 4, 8), date(2026, 4, 8))


def test_the_patients_own_move_page_offers_only_times_as_rules_allow(world):
    """docs/portal.md: 'Times offered (patient_move_options): appointment_slots with the appointment itself
    left out, so every slot passes every rule for this patient'. Botox on 25 February, microneedling booked on
    26 March: A's patient is offered nothing before 25 March, B's is offered 11 March."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 26)), book(pb, "microneedling", ldn(2026, 3, 26))
    options_a = patient_move_options(appointment=mn_a, now=CLOCK)
    options_b = patient_move_options(appointment=mn_b, now=CLOCK)
    assert options_a and options_a[0].start_at == ldn(2026, 3, 25, 9)
    assert options_b[0].start_at == ldn(2026, 3, 11, 9)
    with pytest.raises(UnableToBook) as refused:
        patient_move_check(appointment=mn_a, start_at=ldn(2026, 3, 16), practitioner_id=None, now=CLOCK)
    assert [v.rule_id for v in refused.value.check.blocking] == [str(world["rules"]["tightened"].pk)]
    assert refused.value.check.rulebook_version == A_VERSION
    assert patient_move_check(appointment=mn_b, start_at=ldn(2026, 3, 16), practitioner_id=None, now=CLOCK).eligible


def test_the_desks_move_panel_uses_as_rule_and_earliest_date(world):
    """docs/frontdesk.md: 'Booking and moving are one flow ... checks it through scheduler.booking
    (appointment_check, or appointment_reschedule_check ...)'. Moving A's microneedling to 16 March shows A's
    4-week rule and 25 March; B's desk may move its twin there."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 26)), book(pb, "microneedling", ldn(2026, 3, 26))
    desk_a, desk_b = _desk(world["a"]["clinic"], "qa-rb-move-a"), _desk(world["b"]["clinic"], "qa-rb-move-b")
    params = {"date": "2026-03-16", "time": "10:00"}
    html_a = desk_a.get(
        f"/clinic/{world['a']['clinic'].code}/appointments/{mn_a.pk}/reschedule/", params, HTTP_HX_REQUEST="true"
    ).content.decode()
    html_b = desk_b.get(
        f"/clinic/{world['b']['clinic'].code}/appointments/{mn_b.pk}/reschedule/", params, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "at least 4 weeks after Botulinum toxin injection (Botox)" in html_a
    assert 'Earliest eligible start: <strong class="earliest__date">Wed 25 Mar 2026</strong>' in html_a
    assert "Possible at Mon 16 Mar 2026, 10:00" in html_b


def test_tightening_as_relaxed_medication_rule_again_flags_the_booking_it_allowed(
    world, django_capture_on_commit_callbacks
):
    """Domain 6: when 'an organisation's rules change, every future active appointment of the affected patients
    is checked again'; a rule measured from a medication course's end is a rule like any other. A's patient
    booked microneedling on 13 April under A's 3 months after an isotretinoin course ended 10 January; A goes
    back to 6 months: the booking needs review, earliest 10 July, under d1.o7."""
    pa, _ = twins(world)
    MedicationCourse.objects.create(
        patient=pa, drug_id="isotretinoin", started_on=date(2025, 7, 1), ended_on=date(2026, 1, 10)
    )
    mn = book(pa, "microneedling", ldn(2026, 4, 13))
    assert mn.status == AppointmentStatus.CONFIRMED
    rule = world["rules"]["relaxed"]
    rule.gap_value = 6
    with django_capture_on_commit_callbacks(execute=True):
        rulebooks.rule_save(rule=rule, user=world["admin"], reason="QA: back to 6 months", now=CLOCK)
    flagged = fresh(mn)
    assert flagged.status == AppointmentStatus.NEEDS_REVIEW
    [reason] = flagged.review_reasons
    assert reason["rule"] == str(rule.pk)
    assert datetime.fromisoformat(reason["earliest_allowed"]) == ldn(2026, 7, 10, 0)
    assert AuditEvent.objects.get(appointment=mn, action="needs_review").details["rulebook_version"] == "d1.o7"


def test_a_clearance_records_the_version_and_clears_the_organisations_own_rule(world):
    """docs/rules.md: the version is recorded in 'the booking's audit entry (...; reschedules and clearances
    too)'. Active eczema at A is held under A's narrowed rule; history of eczema at B under the default; each
    clearance names its own rule and version."""
    pa, pb = twins(world)
    PatientCondition.objects.create(patient=pa, condition_id="eczema", status=ConditionStatus.ACTIVE)
    PatientCondition.objects.create(patient=pb, condition_id="eczema", status=ConditionStatus.HISTORY)
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 16)), book(pb, "microneedling", ldn(2026, 3, 16))
    assert mn_a.status == mn_b.status == AppointmentStatus.PENDING_CLEARANCE
    for api, mn in ((world["api_a"], mn_a), (world["api_b"], mn_b)):
        cleared = post(api, f"/api/v1/appointments/{mn.pk}/clear/", {"reason": "QA: dermatologist approved"})
        assert cleared.status_code == 200, cleared.content
    audit_a = AuditEvent.objects.get(appointment=mn_a, action="cleared").details
    audit_b = AuditEvent.objects.get(appointment=mn_b, action="cleared").details
    assert (audit_a["rulebook_version"], audit_b["rulebook_version"]) == (A_VERSION, B_VERSION)
    assert audit_a["rules"] == [str(world["rules"]["narrowed"].pk)]
    assert audit_b["rules"] == [str(default("microneedling-eczema", ContraindicationRule).pk)]


def test_a_warning_tightened_to_a_block_moves_the_plasma_pen_date_at_a_only(world):
    """Domain 6: an organisation may 'tighten' a rule (docs/rules.md: 'a harsher severity (tightened)'); domain
    4: the post-care note gives 'plasma pen after 7 to 10 days' computed for this patient. A makes the 10-day
    plasma pen warning a block: after a microneedling on 2 March, plasma pen on 10 March is refused at A
    (earliest 12 March) and only warned at B; the post-care text follows each book."""
    shipped = default("microneedling-then-plasma-pen-warn")
    harsher = IntervalRule(
        organisation_id=world["a"]["org"].pk,
        replaces=shipped,
        earlier_procedure_id="microneedling",
        later_procedure_id="plasma_pen",
        gap_value=shipped.gap_value,
        gap_unit=shipped.gap_unit,
        severity="block",
        source="QA organisation A protocol",
    )
    version = rulebooks.rule_save(rule=harsher, user=world["admin"], reason="QA: 10 days, no less", now=CLOCK)
    assert version.diff[0]["change"] == "tightened"
    pa, pb = twins(world)
    for patient in (pa, pb):
        first = book(patient, "microneedling", ldn(2026, 3, 2, 10))
        appointment_complete(appointment=first, actor=CLINICIAN, now=ldn(2026, 3, 2, 11))
    assert "- Plasma pen (fibroblast) treatment: possible from Thursday 12 March 2026\n" in _post_care_text(pa)
    assert (
        "- Plasma pen (fibroblast) treatment: possible from Monday 9 March 2026, ideally from Thursday 12 March 2026"
    ) in _post_care_text(pb)

    body = {"procedure": "plasma_pen", "start": "2026-03-10T10:00:00+00:00"}
    a = post(world["api_a"], "/api/v1/appointments/", {**body, "patient": str(pa.pk)})
    b = post(world["api_b"], "/api/v1/appointments/", {**body, "patient": str(pb.pk)})
    assert a.status_code == 409, a.content
    assert (blocking_rules(a.json()), a.json()["rulebook_version"]) == ([str(harsher.pk)], "d1.o7")
    assert a.json()["earliest_eligible_start"] == "2026-03-12T00:00:00+00:00"
    assert b.status_code == 201, b.content
    assert [w["rule"] for w in b.json()["warnings"]] == [str(shipped.pk)]


def test_the_desks_plan_proposal_places_sessions_by_the_organisations_rules(world):
    """docs/plans.md: a plan 'places every session of a course where it is safe (every interval rule ...)';
    the desk's plan page asks plans.services.plan_propose. Botox on 25 February: A's first microneedling
    session is 25 March, B's 11 March."""
    pa, pb = twins(world)
    history((pa, pb), "botox", ldn(2026, 2, 25))
    params = {"template": "microneedling-course", "start_from": "2026-03-03"}
    html = {}
    for tag, patient in (("a", pa), ("b", pb)):
        desk = _desk(world[tag]["clinic"], f"qa-rb-plan-{tag}")
        response = desk.get(f"/clinic/{world[tag]['clinic'].code}/patients/{patient.pk}/plan/", params)
        assert response.status_code == 200
        html[tag] = response.content.decode()
    assert "2026-03-25T09:00:00+00:00" in html["a"] and "2026-03-11T09:00:00+00:00" not in html["a"]
    assert "2026-03-11T09:00:00+00:00" in html["b"]


def test_an_intake_change_is_rechecked_under_the_narrowed_contraindication(world):
    """Domain 6: when the intake changes, 'what now meets a relative one goes back to clinician clearance' --
    under the organisation's rules. A history of eczema entered after booking: B's booking goes back to pending
    clearance (default: active or history), A's stays confirmed (A counts active eczema only)."""
    pa, pb = twins(world)
    mn_a, mn_b = book(pa, "microneedling", ldn(2026, 3, 16)), book(pb, "microneedling", ldn(2026, 3, 16))
    intake = [{"condition": "eczema", "status": "history"}]
    for api, patient in ((world["api_a"], pa), (world["api_b"], pb)):
        response = api.put(f"/api/v1/patients/{patient.pk}/conditions/", intake, format="json")
        assert response.status_code == 200, response.content
    assert fresh(mn_b).status == AppointmentStatus.PENDING_CLEARANCE
    assert AuditEvent.objects.get(appointment=mn_b, action="clearance_requested").details["rulebook_version"] == (
        B_VERSION
    )
    assert fresh(mn_a).status == AppointmentStatus.CONFIRMED
    assert not AuditEvent.objects.filter(appointment=mn_a).exclude(action="booked").exists()


def test_a_plan_dry_run_says_which_rule_book_it_placed_the_sessions_by(world):
    """Domain 6: 'every decision records the version it used'; contract: 'Eligibility answers and booking answers
    (201 and 409) carry rulebook_version'. A plan's 409 carries it (api/plans.py), but its dry run -- the
    proposal a receptionist then books exactly -- and its 201 did not (a QA question, answered): the proposal, the
    plan (201 and GET) and a re-plan now say the version; the plan records the one it was last placed by."""
    pa, _ = twins(world)
    history((pa,), "botox", ldn(2026, 2, 25))
    body = {"template": "microneedling-course", "start_from": "2026-03-03"}
    dry = post(world["api_a"], f"/api/v1/patients/{pa.pk}/plans/", {**body, "dry_run": True})
    assert dry.status_code == 200, dry.content
    booked = post(world["api_a"], f"/api/v1/patients/{pa.pk}/plans/", body)
    assert booked.status_code == 201, booked.content
    assert (dry.json().get("rulebook_version"), booked.json().get("rulebook_version")) == (A_VERSION, A_VERSION)
    plan_id = booked.json()["id"]
    assert world["api_a"].get(f"/api/v1/plans/{plan_id}/").json()["rulebook_version"] == A_VERSION
    # A rule edit after booking: a re-plan dry run, and the plan once re-planned, say the new version.
    rule = world["rules"]["tightened"]
    rule.gap_value = 5
    rulebooks.rule_save(rule=rule, user=world["admin"], reason="QA: 5 weeks now", now=CLOCK)
    replan = {"from_session": 2, "start": booked.json()["sessions"][1]["start"]}
    dry2 = post(world["api_a"], f"/api/v1/plans/{plan_id}/replan/", {**replan, "dry_run": True})
    assert dry2.status_code == 200, dry2.content
    newer = dry2.json()["rulebook_version"]
    assert newer == "d1.o7"
    applied = post(world["api_a"], f"/api/v1/plans/{plan_id}/replan/", replan)
    assert applied.status_code in (200, 201), applied.content
    assert applied.json()["rulebook_version"] == newer


def test_the_botox_post_care_gives_the_microneedling_date_of_as_tightened_rule(world):
    """Domain 4: the post-care dates are 'computed from the interval rules for this patient'; docs/reminders.md:
    each procedure 'that has an interval rule after this one' is listed (the Botox text is a clinic template with
    the same list). Botox done on 2 March: microneedling from 30 March at A (4 weeks), from 16 March at B."""
    pa, pb = twins(world)
    for patient in (pa, pb):
        botox = book(patient, "botox", ldn(2026, 3, 2, 10))
        appointment_complete(appointment=botox, actor=CLINICIAN, now=ldn(2026, 3, 2, 10, 30))
    assert "- Microneedling (collagen induction therapy): possible from Monday 30 March 2026" in _post_care_text(pa)
    assert "- Microneedling (collagen induction therapy): possible from Monday 16 March 2026" in _post_care_text(pb)


def test_an_organisation_administrator_relaxes_in_the_admin_only_with_a_reason_and_only_for_a(world, settings):
    """docs/rules.md, Who edits: 'an organisation's administrators ... add, change and delete their
    organisation's rules ... The form asks for the reason (change_reason)'; domain 6: 'relax (with a reason)'.
    A's administrator relaxes microneedling-then-botox from 3 to 2 weeks: without a reason the form comes back
    with the field marked and nothing is saved; with one, A's book is d1.o7 and a Botox 16 days after a
    microneedling is allowed at A, still refused at B."""
    settings.STAFF_TWO_FACTOR_REQUIRED = False
    user = get_user_model().objects.create_user("qa-rb-org-admin", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="scheduler"))
    StaffMembership.objects.create(user=user, organisation=world["a"]["org"], role=StaffRole.CLINIC_ADMIN)
    admin = Client()
    admin.force_login(user)
    shipped = default("microneedling-then-botox")
    data = {
        "organisation": str(world["a"]["org"].pk),
        "replaces": str(shipped.pk),
        "earlier_procedure": shipped.earlier_procedure_id,
        "earlier_medication": "",
        "later_procedure": shipped.later_procedure_id,
        "gap_value": "2",
        "gap_unit": "weeks",
        "severity": shipped.severity,
        "scope": shipped.scope,
        "basis": shipped.basis,
        "source": "QA organisation A protocol",
        "note": "",
        "is_active": "on",
        "change_reason": "",
    }
    refused = admin.post("/admin/scheduler/intervalrule/add/", data)
    assert refused.status_code == 200
    assert "change_reason" in refused.context["adminform"].form.errors
    assert not IntervalRule.objects.filter(organisation=world["a"]["org"], replaces=shipped).exists()
    assert selectors.rulebook_load(world["a"]["org"].pk).version == A_VERSION

    saved = admin.post("/admin/scheduler/intervalrule/add/", {**data, "change_reason": "QA: 2 weeks suffice"})
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved.content
    relaxed = IntervalRule.objects.get(organisation=world["a"]["org"], replaces=shipped)
    assert relaxed.reason == "QA: 2 weeks suffice"
    latest = RuleBookVersion.objects.filter(organisation=world["a"]["org"]).order_by("-number").first()
    assert (latest.number, latest.diff[0]["change"], latest.created_by) == (7, "relaxed", user)

    pa, pb = twins(world)
    history((pa, pb), "microneedling", ldn(2026, 3, 2, 8))
    body = {"procedure": "botox", "start": "2026-03-18T10:00:00+00:00"}
    a = post(world["api_a"], "/api/v1/eligibility/", {**body, "patient": str(pa.pk)}).json()
    b = post(world["api_b"], "/api/v1/eligibility/", {**body, "patient": str(pb.pk)}).json()
    assert (a["eligible"], a["rulebook_version"]) == (True, "d1.o7")
    assert (b["eligible"], b["rulebook_version"], blocking_rules(b)) == (False, B_VERSION, [str(shipped.pk)])
