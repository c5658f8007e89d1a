"""Rules per organisation, versioned: an organisation's change is its own, makes a new version with who, when,
why and a diff, is never served stale from a process's copy, and re-checks only its own patients."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from scheduler import rulebooks, selectors, versioned
from scheduler.booking import Actor, UnableToBook, appointment_book, appointment_check
from scheduler.models import IntervalRule, RecheckRun, RuleBookVersion
from scheduler.recheck import recheck_run_start
from tests.factories import ClinicFactory, PatientFactory, PractitionerFactory, ProcedureRecordFactory

LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.django_db


def local(d, hh=10, month=3):
    return datetime(2026, month, d, hh, tzinfo=LONDON)


@pytest.fixture
def two_organisations(catalogue):
    """Patient A at clinic A (organisation A), patient B at clinic B (organisation B): both had Botox on 1 March."""
    out = []
    for code in ("org-a", "org-b"):
        clinic = ClinicFactory(code=code, timezone="Europe/London")
        PractitionerFactory(clinic=clinic, name=f"Dr {code}")
        patient = PatientFactory(clinic=clinic)
        ProcedureRecordFactory(patient=patient, procedure_id="botox", performed_at=local(1))
        out.append(patient)
    return out


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_user("orgadmin-a", password="pw-for-tests")


def default(key="botox-then-microneedling"):
    return IntervalRule.objects.get(default_key=key)


def relax(organisation_id, user, *, gap=(3, "days"), reason="our protocol allows it (ASDS 2017)", now=None):
    rule = default()
    override = IntervalRule(
        organisation_id=organisation_id,
        replaces=rule,
        earlier_procedure_id=rule.earlier_procedure_id,
        later_procedure_id=rule.later_procedure_id,
        gap_value=gap[0],
        gap_unit=gap[1],
        severity=rule.severity,
        source="Organisation protocol",
    )
    version = rulebooks.rule_save(rule=override, user=user, reason=reason, now=now or local(2, 9))
    return override, version


def book(patient, code, when, now):
    return appointment_book(patient=patient, procedure_code=code, start_at=when, actor=Actor("t"), now=now)


def test_an_organisations_relaxed_rule_does_not_affect_another_organisation(two_organisations, admin_user, now):
    a, b = two_organisations
    relax(a.organisation_id, admin_user)

    assert book(a, "microneedling", local(10), now).appointment.status == "confirmed"  # 3 days are enough at A
    with pytest.raises(UnableToBook) as refused:
        book(b, "microneedling", local(10), now)  # B keeps the shipped 2 weeks
    assert refused.value.check.blocking[0].rule_id == str(default().pk)
    assert refused.value.check.rulebook_version == "d1.o1"


def test_each_change_is_a_new_version_with_who_when_why_and_a_diff(two_organisations, admin_user, now):
    a, b = two_organisations
    assert selectors.rulebook_load(a.organisation_id).version == "d1.o1"  # as shipped

    override, version = relax(a.organisation_id, admin_user)

    assert (version.number, version.created_by, version.created_at) == (2, admin_user, local(2, 9))
    assert version.reason == "our protocol allows it (ASDS 2017)"
    [entry] = version.diff
    assert entry["change"] == "relaxed" and entry["replaces"] == default().pk
    assert entry["fields"]["gap_value"] == {"from": 2, "to": 3}
    assert entry["fields"]["gap_unit"] == {"from": "weeks", "to": "days"}
    assert rulebooks.diff_text(version.diff)[0].startswith("relaxed botox → microneedling")
    assert selectors.rulebook_load(a.organisation_id).version == "d1.o2"
    assert selectors.rulebook_load(b.organisation_id).version == "d1.o1"

    override.is_active = False
    disabled = rulebooks.rule_save(rule=override, user=admin_user, reason="not done here", now=local(2, 10))
    assert (disabled.number, disabled.diff[0]["change"]) == (3, "disabled")
    assert appointment_check(
        patient=a, procedure_code="microneedling", start_at=local(3), now=now
    ).rulebook_version == ("d1.o3")

    rulebooks.rule_delete(rule=override, user=admin_user, reason="back to the default", now=local(2, 11))
    assert selectors.rulebook_load(a.organisation_id).version == "d1.o4"
    assert [r.id for r in selectors.rulebook_load(a.organisation_id).looking_back["microneedling"]].count(
        str(default().pk)
    ) == 1  # the default applies again


def test_a_default_changed_by_a_superuser_moves_every_organisations_version(two_organisations, admin_user):
    a, b = two_organisations
    rule = default()
    rule.gap_value = 3
    rulebooks.rule_save(rule=rule, user=admin_user, reason="new consensus", now=local(2, 9))

    assert selectors.rulebook_load(a.organisation_id).version == "d2.o1"
    assert selectors.rulebook_load(b.organisation_id).version == "d2.o1"


def test_a_copy_held_by_a_process_cannot_serve_a_rule_edited_elsewhere(two_organisations, admin_user, now):
    a, _ = two_organisations
    override, _ = relax(a.organisation_id, admin_user)
    held = selectors.rulebook_load(a.organisation_id)  # this process's copy, under the current version
    assert selectors.rulebook_load(a.organisation_id) is held
    seen = versioned.current_version()

    # Another process edits the rule with a bulk update: no signal, nothing in this process hears of it.
    IntervalRule.objects.filter(pk=override.pk).update(gap_value=4, gap_unit="weeks")

    assert versioned.current_version() != seen
    fresh = selectors.rulebook_load(a.organisation_id)
    assert fresh is not held
    assert [r.gap_value for r in fresh.looking_back["microneedling"] if r.id == str(override.pk)] == [4]
    with pytest.raises(UnableToBook):
        book(a, "microneedling", local(10), now)  # the 4 weeks hold, not the held 3 days


def test_a_version_written_elsewhere_is_seen_at_once(two_organisations):
    a, _ = two_organisations
    held = selectors.rulebook_load(a.organisation_id)
    RuleBookVersion.objects.create(organisation_id=a.organisation_id, number=2, created_at=local(2), reason="x")

    assert selectors.rulebook_load(a.organisation_id) is not held
    assert selectors.rulebook_load(a.organisation_id).version == "d1.o2"


@pytest.mark.parametrize(
    "gap, field",
    [((-2, "weeks"), "gap_value"), ((0, "days"), "gap_value"), ((2, "fortnights"), "gap_unit")],
)
def test_a_negative_gap_or_an_unknown_unit_is_refused_with_the_field_named(two_organisations, admin_user, gap, field):
    a, _ = two_organisations
    with pytest.raises(ValidationError) as refused:
        relax(a.organisation_id, admin_user, gap=gap)

    assert field in refused.value.message_dict
    assert not IntervalRule.objects.filter(organisation_id=a.organisation_id).exists()
    assert not RuleBookVersion.objects.exists()


def test_a_change_without_a_reason_is_refused(two_organisations, admin_user):
    a, _ = two_organisations
    with pytest.raises(ValidationError) as refused:
        relax(a.organisation_id, admin_user, reason="  ")
    assert "reason" in refused.value.message_dict


def test_a_rule_change_rechecks_only_its_organisations_patients(
    two_organisations, admin_user, now, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_BROKER_URL = ""  # the embedded default: the run goes in this process
    a, b = two_organisations
    for patient in (a, b):
        book(patient, "microneedling", local(20), now)

    with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
        relax(a.organisation_id, admin_user)

    run = RecheckRun.objects.get()
    assert run.organisation_id == a.organisation_id and run.finished_at is not None
    assert run.patients_done == 1
    assert recheck_run_start(
        cause="t", procedures=["microneedling"], now=now, organisation_id=b.organisation_id
    ).organisation_id == (b.organisation_id)


def test_an_organisation_adds_a_rule_of_its_own(two_organisations, admin_user, now):
    a, b = two_organisations
    added = IntervalRule(
        organisation_id=a.organisation_id,
        earlier_procedure_id="botox",
        later_procedure_id="filler",
        gap_value=3,
        gap_unit="weeks",
        severity="block",
        source="Organisation protocol",
    )
    version = rulebooks.rule_save(rule=added, user=admin_user, reason="our protocol", now=local(2, 9))

    assert version.diff[0]["change"] == "added"
    with pytest.raises(UnableToBook):
        book(a, "filler", local(10), now)
    assert book(b, "filler", local(10), now).appointment.status == "confirmed"


# --- Same-procedure repeats (clinic practice, warn) ------------------------------------------------------------


def test_a_repeat_too_soon_warns_in_both_directions_and_never_refuses(two_organisations, now):
    a, _ = two_organisations
    repeat = str(IntervalRule.objects.get(default_key="botox-repeat").pk)

    after = book(a, "botox", local(20), now)  # 19 days after the Botox of 1 March
    assert after.appointment.status == "confirmed"
    assert [(str(w.code), w.rule_id) for w in after.check.warnings] == [("interval_too_soon_after", repeat)]

    # Between the two: too soon after the first and too close before the booked one.
    between = appointment_check(patient=a, procedure_code="botox", start_at=local(10), now=now)
    assert between.eligible
    assert sorted(str(w.code) for w in between.warnings if w.rule_id == repeat) == [
        "interval_too_close_before",
        "interval_too_soon_after",
    ]

    # 12 weeks after the booked one: no warning.
    later = appointment_check(patient=a, procedure_code="botox", start_at=local(12, month=6), now=now)
    assert not later.warnings


def test_the_same_booking_is_not_its_own_repeat(two_organisations, now):
    a, _ = two_organisations
    ProcedureRecordFactory._meta.model.objects.filter(patient=a).delete()
    booked = book(a, "botox", local(20), now)

    assert booked.check.warnings == ()
