"""Review probe, as the next owner, of the session's changes (c13b638..ec7bed1), as a real user meets them.

Covered: Today's inline Mark completed / No-show buttons (frontdesk/views/appointments.py `_act`, today.html) from a
sister site's desk, with a name holding markup, a double click, a deactivated practitioner, a plan's session, CSRF;
checking a merge's warning (clinic.merging.merge_warning_check) with a tampered `message`, odd unicode notes, on a
record merged away since the page was drawn, after a later merge and after the organisation's rule changed;
the merge's own SMS opt-out (reminders.consent.merge_consent_record) as the desk shows it and as START, e-mail and two
numbers meet it, and a START heard while a STOP is parked; the parked reports' lock wait inside a caller's
transaction, a budget of 0, a parked e-mail report; the clinic move refusal (Clinic.save) by a stale instance, a
queryset update, a tombstone, update_fields; the appointments admin's "Over, no outcome recorded" filter by instant.

Expected behaviour is docs/frontdesk.md, docs/organisations.md and docs/reminders.md. A defect is a strict xfail whose
reason starts "DEFECT:", an undecided product question "QUESTION:". Found, and mended the same day (8c9b4a8): four
DEFECTs (a tampered check recorded against another warning of the booking; the desk calling the merge's opt-out the
patient's own; a merge opt-out recorded for a survivor who agreed but had no number; an old copy of a clinic writing
its old organisation back) and two QUESTIONs decided (a check posted from a record merged away since reaches its
survivor; a run given no budget takes none). The QUESTION of queryset writes (update, bulk_update) moving a clinic in
use was decided on 6 December: the ORM holds them as Clinic.save does (clinic.models.ClinicQuerySet.update); raw SQL
is an operator's own.

The world: organisation "qa-p" with London and West (Europe/London) and New York sites, and "Elsewhere Ltd", another
organisation's clinic. The clock is the suite's Monday, 2 March 2026, 09:00 London (GMT = UTC).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.urls import reverse

from clinic.merging import merge_warning_check, patient_merge
from clinic.models import AppointmentStatus, Clinic, MergeWarningCheck, Patient, ProcedureRecord, StaffRole
from clinic.record_changes import ChangedBy
from clinic.services import patient_update
from core.errors import NotFound
from frontdesk.selectors import merge_warnings
from plans.defaults import plan_templates_load
from plans.selectors import plan_sessions
from plans.services import plan_book, plan_template_get
from reminders import dispatch
from reminders import reports as parked_reports
from reminders.channels import DeliveryReport
from reminders.consent import email_provider_stopped, sms_reply
from reminders.models import ContactOptIn, ContactOptOut, MessageKind, OptOutVia, OutboxMessage, ParkedDeliveryReport
from scheduler import rulebooks
from scheduler.booking import Actor, appointment_book
from scheduler.models import IntervalRule
from scheduler.recheck import appointments_warnings
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    OrganisationFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)
from tests.qa.helpers import NOW, fresh, ldn, nyc, squash, staff_client
from tests.races import held_in_another_connection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes")]

RECEPTION = Actor("reception@qa-p")
CLINICIAN = Actor("clinician@qa-p", clinical=True)
NO_OUTCOME = "Visits with no outcome yet"
BANNER = "To check: the records merged"


@pytest.fixture
def world(care_texts):
    org = OrganisationFactory(code="qa-p", name="QA Probe P")
    london = ClinicFactory(code="qa-p-london", name="P London", timezone="Europe/London", organisation=org)
    west = ClinicFactory(code="qa-p-west", name="P West", timezone="Europe/London", organisation=org)
    ny = ClinicFactory(code="qa-p-ny", name="P Manhattan", timezone="America/New_York", organisation=org)
    other = ClinicFactory(code="qa-p-other", name="Elsewhere Ltd", timezone="Europe/London")
    return {
        "org": org,
        "london": london,
        "west": west,
        "ny": ny,
        "other": other,
        "dr_london": PractitionerFactory(clinic=london, name="Dr Ada Hart", hours=range(7)),
        "dr_west": PractitionerFactory(clinic=west, name="Dr West", hours=range(7)),
        "dr_ny": PractitionerFactory(clinic=ny, name="Dr Manhattan", hours=range(7)),
        "dr_other": PractitionerFactory(clinic=other, name="Dr Other", hours=range(7)),
    }


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def person(world, site="london", last_name="Bennett", first_name="Olivia", **kwargs) -> Patient:
    """Olivia, born 18 June 1985, registered at `site` (on e-mail and SMS unless told)."""
    fields = {
        "date_of_birth": date(1985, 6, 18),
        "email": f"{first_name.lower()}.{last_name.lower()}@example.com",
        "phone": "+447911123456",
        "reminder_channels": ["email", "sms"],
        "sms_consent": True,
        **kwargs,
    }
    return PatientFactory(clinic=world[site], first_name=first_name, last_name=last_name, **fields)


def book(world, patient, code, when, site="london", now=NOW, doctor=None, **kwargs):
    return appointment_book(
        patient=patient,
        procedure_code=code,
        start_at=when,
        actor=RECEPTION,
        now=now,
        clinic_id=world[site].pk,
        practitioner_id=world[doctor or f"dr_{site}"].pk,
        **kwargs,
    ).appointment


def past_visit(world, patient, when, site="london", code="botox"):
    """Booked a week before `when` through the booking service, so it is over now and nobody closed it."""
    return book(world, patient, code, when, site=site, now=when - timedelta(days=7))


def merge(duplicate, survivor, now=NOW):
    return patient_merge(merged=duplicate, into=survivor, now=now, actor_label="clinician@qa-p", clinical=True)


def override(world, key, *, reason, **fields) -> IntervalRule:
    """The organisation's rule standing in for the default `key` (a new version of its rule book)."""
    base = IntervalRule.objects.get(default_key=key)
    rule = IntervalRule(organisation=world["org"], replaces=base, source="QA organisation protocol")
    for name in base.PAIR_FIELDS:
        setattr(rule, f"{name}_id", getattr(base, f"{name}_id"))
    for name in ("gap_value", "gap_unit", "severity", "scope", "basis"):
        setattr(rule, name, fields.pop(name, getattr(base, name)))
    for name, value in fields.items():
        setattr(rule, name, value)
    rulebooks.rule_save(rule=rule, user=None, reason=reason, now=NOW)
    return rule


def no_outcome(client, site) -> str:
    page = squash(client.get(reverse("frontdesk:today", args=[site.code])))
    if NO_OUTCOME not in page:
        return ""
    return page.split(NO_OUTCOME, 1)[1].split("These visits of the last 90 days", 1)[0]


def banner(client, site, patient) -> str:
    page = squash(client.get(reverse("frontdesk:patient", args=[site.code, patient.pk])))
    return page.split(BANNER, 1)[1].split("A warning blocks nothing", 1)[0] if BANNER in page else ""


def check_url(site, patient) -> str:
    return reverse("frontdesk:merge_warning_check", args=[site.code, patient.pk])


def standing_form(patient, appointment) -> dict:
    """What the survivor's page puts in the check form of `appointment`'s merge warning (merge, booking, words)."""
    appointments = list(patient.appointments.select_related("clinic", "procedure", "area", "practitioner"))
    [warning] = [w for w in merge_warnings(patient, appointments, NOW) if w.appointment.pk == appointment.pk]
    return {"merge": str(warning.merge_id), "appointment": str(appointment.pk), "message": warning.message}


@pytest.fixture
def desk(world):
    return staff_client(world["london"], StaffRole.RECEPTIONIST, "qa-p-desk")


@pytest.fixture
def doctor(world):
    return staff_client(world["london"], StaffRole.CLINICIAN, "qa-p-doctor")


@pytest.fixture
def two_botox(world, frozen):
    """Olivia's two records each booked a Botox three weeks apart (20 March at West, 10 April at London), merged:
    "Botox again after at least 12 weeks" (warn) now joins them."""
    survivor, duplicate = person(world), person(world, "west", "Benett")
    west_botox = book(world, duplicate, "botox", ldn(2026, 3, 20), site="west")
    london_botox = book(world, survivor, "botox", ldn(2026, 4, 10))
    record = merge(duplicate, survivor)
    assert {w["appointment"] for w in record.details["warnings"]} == {str(west_botox.pk), str(london_botox.pk)}
    return survivor, west_botox, london_botox


# --- Today's inline Mark completed / No-show -------------------------------------------------------------------


def test_a_sister_sites_clinician_cannot_close_londons_visit_through_their_own_sites_address(world, frozen):
    """West's clinician (same organisation) does not see London's Today; posting London's visit to West's address,
    or to London's, closes nothing: only the visit's own site's clinicians close it."""
    visit = past_visit(world, person(world), ldn(2026, 2, 27, 11))
    west_doctor = staff_client(world["west"], StaffRole.CLINICIAN, "qa-p-west-doctor")
    assert no_outcome(west_doctor, world["west"]) == ""
    for site in ("west", "london"):
        url = reverse("frontdesk:complete", args=[world[site].code, visit.pk])
        assert west_doctor.post(url, {"back": "today"}).status_code in (403, 404), site
        url = reverse("frontdesk:no_show", args=[world[site].code, visit.pk])
        assert west_doctor.post(url, {"back": "today"}).status_code in (403, 404), site
    assert fresh(visit).status == AppointmentStatus.CONFIRMED


def test_the_visit_named_back_on_today_is_shown_as_text_not_markup(world, doctor, frozen):
    """A patient registered with markup in the name: the message naming the visit closed from Today escapes it."""
    patient = person(world, first_name="<script>alert(1)</script>", last_name="O'Brien\u202e")
    visit = past_visit(world, patient, ldn(2026, 2, 27, 11))
    response = doctor.post(reverse("frontdesk:complete", args=[world["london"].code, visit.pk]), {"back": "today"})
    assert response.status_code == 302
    page = doctor.get(response["Location"]).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert fresh(visit).status == AppointmentStatus.COMPLETED


def test_a_double_click_on_mark_completed_completes_once_and_the_second_says_why(world, doctor, frozen):
    """The second post of the same button (a double click) changes nothing and says the visit is completed."""
    visit = past_visit(world, person(world), ldn(2026, 2, 27, 11))
    url = reverse("frontdesk:complete", args=[world["london"].code, visit.pk])
    assert doctor.post(url, {"back": "today"}).status_code == 302
    again = doctor.post(url, {"back": "today"})
    assert again.status_code in (302, 400, 409)
    if again.status_code != 302:
        assert "completed" in squash(again).lower()
    visit = fresh(visit)
    assert visit.status == AppointmentStatus.COMPLETED
    assert visit.audit_events.filter(action="completed").count() == 1
    assert ProcedureRecord.objects.filter(appointment=visit).count() == 1


def test_a_visit_whose_practitioner_has_left_since_is_closed_from_today(world, doctor, frozen):
    """Dr Bob saw the patient last Thursday, then left (deactivated): the visit is still asked about and closed."""
    bob = PractitionerFactory(clinic=world["london"], name="Dr Bob Gone", hours=range(7))
    world["dr_bob"] = bob
    visit = book(world, person(world), "botox", ldn(2026, 2, 26, 11), now=ldn(2026, 2, 19), doctor="dr_bob")
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    assert "Dr Bob Gone" in no_outcome(doctor, world["london"])
    response = doctor.post(reverse("frontdesk:complete", args=[world["london"].code, visit.pk]), {"back": "today"})
    assert response.status_code == 302 and response["Location"] == reverse("frontdesk:today", args=["qa-p-london"])
    assert fresh(visit).status == AppointmentStatus.COMPLETED
    assert "Dr Bob Gone" not in no_outcome(doctor, world["london"])


def test_a_plan_session_closed_from_today_shows_completed_in_the_plan(world, doctor, frozen):
    plan_templates_load()
    patient = person(world)
    booked_on = ldn(2026, 2, 16)
    with time_machine.travel(booked_on, tick=False):
        plan = plan_book(
            patient=patient,
            clinic=world["london"],
            template=plan_template_get("microneedling-course", organisation_id=world["org"].pk),
            start_at=ldn(2026, 2, 24, 11),
            actor=RECEPTION,
            now=booked_on,
            practitioner_id=world["dr_london"].pk,
        )
    [first, *_] = plan_sessions(plan, NOW.date())
    assert first.status == "booked"
    url = reverse("frontdesk:complete", args=[world["london"].code, first.session.appointment.pk])
    assert doctor.post(url, {"back": "today"}).status_code == 302
    [first, *_] = plan_sessions(plan, NOW.date())
    assert first.status == "completed"
    assert no_outcome(doctor, world["london"]) == ""


def test_the_inline_buttons_need_the_csrf_token(world, frozen):
    visit = past_visit(world, person(world), ldn(2026, 2, 27, 11))
    guarded = staff_client(world["london"], StaffRole.CLINICIAN, "qa-p-csrf", csrf=True)
    url = reverse("frontdesk:no_show", args=[world["london"].code, visit.pk])
    assert guarded.post(url, {"back": "today"}).status_code == 403
    assert fresh(visit).status == AppointmentStatus.CONFIRMED


# --- Checking a merge's warning ----------------------------------------------------------------------------------


def test_a_check_naming_words_the_merge_did_not_warn_of_records_nothing(world, desk, frozen):
    survivor, duplicate = person(world), person(world, "west", "Benett")
    ProcedureRecordFactory(
        patient=survivor, procedure_id="botox", performed_at=ldn(2026, 2, 20), clinic=world["london"]
    )
    west_botox = book(world, duplicate, "botox", ldn(2026, 3, 20), site="west")
    london_botox = book(world, survivor, "botox", ldn(2026, 4, 10))
    merge(duplicate, survivor)
    form = standing_form(survivor, london_botox)
    others = [
        w["message"]
        for w in appointments_warnings(patient_id=survivor.pk, now=NOW)
        if w["appointment"] == str(london_botox.pk) and w["message"] != form["message"]
    ]
    assert others, "the booking warns of the patient's own Botox of 20 February too"
    response = desk.post(check_url(world["london"], survivor), {**form, "message": others[0]})
    assert response.status_code in (404, 409)
    assert not MergeWarningCheck.objects.exists()
    assert "Fri 10 Apr 2026" in banner(desk, world["london"], survivor) and west_botox.status == "confirmed"


@pytest.mark.parametrize(
    "note",
    ["😀" * 500, "e\u0301" * 250, "\u202eevil\u202c ok", "日本語のメモ"],
    ids=["500 emoji", "combining accents", "bidi override", "cjk"],
)
def test_an_odd_unicode_note_up_to_500_characters_is_kept_as_typed(world, desk, two_botox, note):
    survivor, _, london_botox = two_botox
    response = desk.post(check_url(world["london"], survivor), {**standing_form(survivor, london_botox), "note": note})
    assert response.status_code == 302
    assert MergeWarningCheck.objects.get().note == note


def test_501_emoji_are_refused_clearly_and_nothing_is_recorded(world, desk, two_botox):
    survivor, _, london_botox = two_botox
    form = {**standing_form(survivor, london_botox), "note": "😀" * 501}
    response = desk.post(check_url(world["london"], survivor), form)
    assert response.status_code == 400
    assert "Keep the note to 500 characters or fewer." in squash(response)
    assert not MergeWarningCheck.objects.exists()


def test_a_check_posted_from_a_page_of_a_record_merged_away_since_reaches_its_survivor(world, desk, two_botox):
    survivor, _, london_botox = two_botox
    form = standing_form(survivor, london_botox)
    newest = person(world, last_name="Bennet", phone="+447911123999")
    merge(survivor, newest, now=NOW + timedelta(minutes=5))
    response = desk.post(check_url(world["london"], survivor), form)
    assert response.status_code == 302
    assert MergeWarningCheck.objects.filter(appointment=london_botox).exists()


def test_a_check_made_before_a_later_merge_stays_on_the_new_survivor(world, desk, two_botox):
    """Checked on Olivia's page; then Olivia's record is merged into a third record: the new survivor's page lists
    the warning as checked, not in its banner (the check names the merge, which still warns of that booking)."""
    survivor, _, london_botox = two_botox
    assert desk.post(check_url(world["london"], survivor), standing_form(survivor, london_botox)).status_code == 302
    newest = person(world, last_name="Bennet", phone="+447911123999")
    merge(survivor, newest, now=NOW + timedelta(minutes=5))
    shown = banner(desk, world["london"], newest)
    assert "Fri 10 Apr 2026" not in shown, shown
    page = squash(desk.get(reverse("frontdesk:patient", args=["qa-p-london", newest.pk])))
    assert "Checked by qa-p-desk" in page


def test_a_rule_tightened_after_the_check_brings_the_warning_back_in_its_new_words(world, desk, two_botox):
    survivor, _, london_botox = two_botox
    checked = standing_form(survivor, london_botox)
    assert desk.post(check_url(world["london"], survivor), checked).status_code == 302
    assert "Fri 10 Apr 2026" not in banner(desk, world["london"], survivor)
    override(world, "botox-repeat", gap_value=16, gap_unit="weeks", severity="warn", reason="QA: tighter protocol")
    shown = banner(desk, world["london"], survivor)
    assert "Fri 10 Apr 2026" in shown and "An earlier warning on it was checked by qa-p-desk" in shown, shown
    assert standing_form(fresh(survivor), london_botox)["message"] != checked["message"]


def test_a_rule_switched_off_and_back_on_after_the_check_stays_checked(world, desk, two_botox):
    """Same words again: the check covers them (docs/frontdesk.md: a check covers the warning in its words)."""
    survivor, _, london_botox = two_botox
    assert desk.post(check_url(world["london"], survivor), standing_form(survivor, london_botox)).status_code == 302
    rule = override(world, "botox-repeat", is_active=False, reason="QA: not our practice")
    assert banner(desk, world["london"], survivor) == ""  # neither warning stands while the rule is off
    rule.is_active = True
    rulebooks.rule_save(rule=rule, user=None, reason="QA: back to it", now=NOW)
    shown = banner(desk, world["london"], survivor)
    assert "Fri 10 Apr 2026" not in shown, shown
    assert "Fri 20 Mar 2026" in shown  # the West booking's warning, never checked, is back


def test_another_organisations_staff_cannot_check_through_their_own_clinic(world, two_botox):
    survivor, _, london_botox = two_botox
    form = standing_form(survivor, london_botox)
    stranger = staff_client(world["other"], StaffRole.CLINICIAN, "qa-p-stranger")
    assert stranger.post(check_url(world["other"], survivor), form).status_code == 404
    assert stranger.post(check_url(world["london"], survivor), form).status_code in (403, 404)
    assert not MergeWarningCheck.objects.exists()


def test_the_service_refuses_a_merge_of_another_patient_even_called_directly(world, two_botox):
    survivor, _, london_botox = two_botox
    form = standing_form(survivor, london_botox)
    stranger = person(world, "other", last_name="Stranger", phone="+447911000001")
    with pytest.raises(NotFound):
        merge_warning_check(
            patient=stranger,
            merge_id=form["merge"],
            appointment_id=form["appointment"],
            message=form["message"],
            checked_by=None,
            now=NOW,
        )
    assert not MergeWarningCheck.objects.exists()


# --- The merge's SMS opt-out and START ---------------------------------------------------------------------------


def test_the_desk_is_not_told_the_patient_turned_texts_off_after_a_merge(world, desk, frozen):
    survivor = person(world)
    duplicate = person(world, "west", "Benett", reminder_channels=["email"], sms_consent=False)
    merge(duplicate, survivor)
    assert ContactOptOut.objects.filter(patient=survivor, via=OptOutVia.MERGE).exists()
    page = squash(desk.get(reverse("frontdesk:patient_edit", args=["qa-p-london", survivor.pk])))
    assert "turned texts off themselves" not in page


def test_a_survivor_without_a_number_given_one_by_the_merge_records_no_opt_out(world, frozen):
    survivor = person(world, phone="")
    duplicate = person(world, "west", "Benett", phone="+447911123777")
    merge(duplicate, survivor)
    survivor.refresh_from_db()
    assert survivor.phone == "+447911123777" and survivor.sms_consent and "sms" in survivor.reminder_channels
    assert not ContactOptOut.objects.filter(patient=survivor, channel="sms").exists()


def test_both_records_stopped_from_different_numbers_a_start_from_the_survivors_number_restarts(world, frozen):
    """Each record's own STOP: a START would have undone either, so the merge records nothing of its own."""
    survivor = person(world, phone="+447911123456")
    duplicate = person(world, "west", "Benett", phone="+447911123777")
    assert sms_reply(from_number="+447911123456", body="STOP", now=NOW - timedelta(hours=2)) == 1
    assert sms_reply(from_number="+447911123777", body="STOP", now=NOW - timedelta(hours=1)) == 1
    merge(duplicate, survivor)
    assert not ContactOptOut.objects.filter(via=OptOutVia.MERGE).exists()
    assert sms_reply(from_number="+447911123777", body="START", now=NOW + timedelta(hours=1)) == 0  # gone number
    assert sms_reply(from_number="+447911123456", body="START", now=NOW + timedelta(hours=2)) == 1
    survivor.refresh_from_db()
    assert survivor.sms_consent and "sms" in survivor.reminder_channels


def test_an_email_unsubscribe_is_untouched_by_the_merge_and_the_start(world, frozen):
    survivor = person(world)
    duplicate = person(world, "west", "Benett", email="olivia.dup@example.com")
    assert email_provider_stopped(
        event_type="unsubscribed", recipient="olivia.dup@example.com", provider="qa", now=NOW - timedelta(hours=1)
    )
    merge(duplicate, survivor)
    assert not ContactOptOut.objects.filter(via=OptOutVia.MERGE).exists()  # texts were on on both
    sms_reply(from_number=survivor.phone, body="START", now=NOW + timedelta(hours=1))
    survivor.refresh_from_db()
    assert "email" not in survivor.reminder_channels  # the stricter consent: e-mail off on either stays off
    assert survivor.sms_consent and "sms" in survivor.reminder_channels
    assert not ContactOptIn.objects.filter(patient=survivor, channel="email").exists()


def test_a_desk_opt_in_after_the_merge_then_stop_and_start_ends_with_texts_on(world, desk, frozen):
    """The merge switched texts off (the duplicate never agreed); the patient then agrees at the desk; later STOP
    and START: the START undoes the STOP, not the merge's opt-out of before."""
    survivor = person(world)
    duplicate = person(world, "west", "Benett", reminder_channels=["email"], sms_consent=False)
    merge(duplicate, survivor)
    survivor.refresh_from_db()
    assert not survivor.sms_consent or "sms" not in survivor.reminder_channels
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        patient_update(
            patient=survivor,
            today=NOW.date(),
            changed_by=ChangedBy("desk", "qa-p-desk"),
            reminder_channels=["email", "sms"],
            sms_consent=True,
        )
    survivor.refresh_from_db()
    assert survivor.sms_consent and "sms" in survivor.reminder_channels
    sms_reply(from_number=survivor.phone, body="STOP", now=NOW + timedelta(hours=2))
    sms_reply(from_number=survivor.phone, body="START", now=NOW + timedelta(hours=3))
    survivor.refresh_from_db()
    assert survivor.sms_consent and "sms" in survivor.reminder_channels


def _texted(world, patient, when, site="london") -> OutboxMessage:
    appointment = book(world, patient, "microneedling", when, site=site)
    dispatch.dispatch_local(now=NOW)
    text = OutboxMessage.objects.get(appointment=appointment, channel="sms", kind=MessageKind.CONFIRMATION)
    assert text.status == "sent" and text.provider_id
    return text


def _park(text, *, stopped=False, channel="sms"):
    report = DeliveryReport(
        provider_id=text.provider_id,
        failed=True,
        stopped=stopped,
        detail="Twilio reported the text failed (error 21610)" if stopped else "bounced",
        outbox_id=str(text.pk),
    )
    return parked_reports.delivery_report_park(channel=channel, report=report, received_at=NOW)


def test_a_number_two_organisations_patients_share_a_start_while_its_stop_is_parked_keeps_both_on(world, frozen):
    """London's patient and Elsewhere Ltd's share a phone. The provider's STOP of London's text waits parked (its
    row held); a START comes: both keep texts, and the STOP recorded later leaves both on (it came before)."""
    ours = person(world)
    theirs = person(world, "other", last_name="Gray", first_name="Ann", date_of_birth=date(1990, 1, 1))
    text = _texted(world, ours, ldn(2026, 3, 11, 11))
    _park(text, stopped=True)
    original = parked_reports.parked_reports_record
    parked_reports.parked_reports_record = lambda **kwargs: 0  # its row still held: nothing recorded this time
    try:
        parked_reports.sms_reply_heard(from_number=ours.phone, body="START", now=NOW + timedelta(minutes=5))
    finally:
        parked_reports.parked_reports_record = original
    assert ContactOptIn.objects.filter(patient__in=[ours, theirs], channel="sms").count() == 2
    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        assert parked_reports.parked_reports_record() == 1
    for one in (ours, theirs):
        one.refresh_from_db()
        assert one.sms_consent and "sms" in one.reminder_channels, one


# --- Parked reports: the lock wait and the budget ----------------------------------------------------------------


def test_a_parked_email_bounce_is_recorded_with_the_short_wait(world, frozen, monkeypatch):
    patient = person(world, reminder_channels=["email"], sms_consent=False)
    appointment = book(world, patient, "microneedling", ldn(2026, 3, 11, 11))
    dispatch.dispatch_local(now=NOW)
    mail_row = OutboxMessage.objects.get(appointment=appointment, channel="email", kind=MessageKind.CONFIRMATION)
    OutboxMessage.objects.filter(pk=mail_row.pk).update(provider_id="qa-p-mail-1")
    mail_row.refresh_from_db()
    waits = []
    original = parked_reports.delivery_reported
    monkeypatch.setattr(
        parked_reports, "delivery_reported", lambda **kw: waits.append(kw.get("lock_wait")) or original(**kw)
    )
    _park(mail_row, channel="email")
    assert parked_reports.parked_reports_record() == 1
    assert waits == [parked_reports.PARKED_LOCK_WAIT]
    assert fresh(mail_row).status == "failed" and not ParkedDeliveryReport.objects.exists()


@pytest.mark.parametrize("budget", [0, -1])
def test_a_run_with_no_budget_takes_up_no_report(world, frozen, budget):
    text = _texted(world, person(world), ldn(2026, 3, 11, 11))
    _park(text)
    assert parked_reports.parked_reports_record(budget=budget) == 0
    assert ParkedDeliveryReport.objects.count() == 1


@pytest.mark.postgres
def test_a_held_row_inside_a_callers_transaction_leaves_its_lock_wait_and_the_transaction_usable(
    transactional_db, world
):
    """A caller (a START's webhook, inside ATOMIC_REQUESTS) with its own lock wait: the parked report whose row is
    held fails after the short wait, inside a savepoint; the caller's wait is back and its transaction goes on."""
    with time_machine.travel(NOW, tick=True):
        text = _texted(world, person(world), ldn(2026, 3, 11, 11))
        _park(text, stopped=True)
        with held_in_another_connection(lambda: OutboxMessage.objects.select_for_update().filter(pk=text.pk).exists()):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '7s'")
                assert parked_reports.parked_reports_record(stops_only=True, budget=5) == 0
                with connection.cursor() as cursor:
                    cursor.execute("SHOW lock_timeout")
                    assert cursor.fetchone()[0] == "7s"
                assert Patient.objects.filter(pk__isnull=False).exists()  # the transaction still answers
        parked = ParkedDeliveryReport.objects.get()
        assert parked.attempts == 1 and parked.last_error


# --- A clinic in use does not move ------------------------------------------------------------------------------


@pytest.fixture
def buyer(catalogue):
    return OrganisationFactory(code="qa-p-buyer", name="Buyer Group")


@pytest.fixture
def empty_site(world):
    return ClinicFactory(code="qa-p-new", name="P New Site", timezone="Europe/London", organisation=world["org"])


def test_a_stale_instance_saved_after_the_clinic_moved_and_filled_does_not_move_it_back(world, buyer, empty_site):
    stale = Clinic.objects.get(pk=empty_site.pk)
    mover = Clinic.objects.get(pk=empty_site.pk)
    mover.organisation = buyer
    mover.save()
    PatientFactory(clinic=mover, first_name="Bea", last_name="Buyer", phone="+447911000002")
    stale.name = "P New Site (renamed)"
    try:
        stale.save()
    except ValidationError:
        pass
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=empty_site.pk) == buyer.pk


@pytest.mark.parametrize("path", ["update", "bulk_update"])
def test_a_clinic_in_use_is_not_moved_by_a_queryset_write(world, buyer, path):
    london = world["london"]
    person(world)
    try:
        with transaction.atomic():  # bulk_update's own block joins the caller's: a refusal spoils it
            if path == "update":
                Clinic.objects.filter(pk=london.pk).update(organisation=buyer)
            else:
                london.organisation = buyer
                Clinic.objects.bulk_update([london], ["organisation"])
    except ValidationError as refused:
        assert "cannot move to another organisation" in str(refused)
    else:
        pytest.fail("a clinic in use moved by a queryset write")
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=london.pk) == world["org"].pk


def test_a_clinic_whose_only_patient_was_merged_away_is_still_in_use(world, buyer, empty_site):
    """Its one patient was merged into a London record: the tombstone keeps name and birth date at this clinic."""
    duplicate = PatientFactory(clinic=empty_site, first_name="Olivia", last_name="Benett", phone="+447911000003")
    merge(duplicate, person(world))
    site = Clinic.objects.get(pk=empty_site.pk)
    site.organisation = buyer
    with pytest.raises(ValidationError) as refused:
        site.full_clean()
    assert "cannot move to another organisation" in str(refused.value)
    with pytest.raises(ValidationError):
        site.save(update_fields=["organisation_id"])
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=empty_site.pk) == world["org"].pk


def test_an_empty_clinic_moves_back_and_forth_and_is_held_once_used(world, buyer, empty_site):
    site = Clinic.objects.get(pk=empty_site.pk)
    for organisation in (buyer, world["org"], buyer):
        site.organisation = organisation
        site.full_clean()
        site.save(update_fields=["organisation"])
    AppointmentFactory(
        patient=PatientFactory(clinic=ClinicFactory(code="qa-p-buyer-home", organisation=buyer)),
        clinic=site,
        practitioner=PractitionerFactory(clinic=site),
    )
    site.organisation = world["org"]
    with pytest.raises(ValidationError):
        site.save()
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=site.pk) == buyer.pk
    site.name = "Renamed"
    site.save(update_fields=["name"])  # a save that leaves the organisation alone still works
    assert Clinic.objects.get(pk=site.pk).name == "Renamed"


# --- The appointments admin's "Over, no outcome recorded" --------------------------------------------------------


def _admin_rows(admin_client, **params) -> str:
    response = admin_client.get(reverse("admin:clinic_appointment_changelist"), {"outcome": "missing", **params})
    assert response.status_code == 200
    return squash(response)


def test_the_admin_filter_reads_over_by_the_instant_whatever_the_clinics_zone(world, admin_client, frozen):
    """At 09:00 UTC (04:00 in New York): a New York visit of 03:00-03:30 there is over, one at 04:15 there is not,
    a London visit of 08:00-08:30 is over, one ended at 09:00 sharp is over, one ending 09:01 is not."""
    ny_patient = person(world, "ny", last_name="Early", phone="+12125550100")
    ldn_patient = person(world, last_name="Late", phone="+447911000004")
    rows = {
        "NyOver": (ny_patient, "ny", nyc(2026, 3, 2, 3), 30),
        "NyNot": (ny_patient, "ny", nyc(2026, 3, 2, 4, 15), 30),
        "LdnOver": (ldn_patient, "london", ldn(2026, 3, 2, 8), 30),
        "LdnSharp": (ldn_patient, "london", ldn(2026, 3, 2, 8, 30), 30),
        "LdnNot": (ldn_patient, "london", ldn(2026, 3, 2, 8, 31), 30),
    }
    for name, (patient, site, start, minutes) in rows.items():
        AppointmentFactory(
            patient=PatientFactory(
                clinic=world[site], first_name=name, last_name=patient.last_name, phone=patient.phone
            ),
            clinic=world[site],
            practitioner=PractitionerFactory(clinic=world[site], name=f"Dr {name}"),
            start_at=start,
            end_at=start + timedelta(minutes=minutes),
        )
    page = _admin_rows(admin_client)
    assert {name for name in rows if name in page} == {"NyOver", "LdnOver", "LdnSharp"}, page[:3000]


def test_a_queryset_write_moves_an_empty_clinic_and_refuses_the_whole_batch_with_one_in_use(world, buyer, empty_site):
    """Nothing of its own: the update moves it. With a clinic in use in the same batch, no row moves."""
    assert Clinic.objects.filter(pk=empty_site.pk).update(organisation=buyer) == 1
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=empty_site.pk) == buyer.pk
    other_empty = ClinicFactory(code="qa-p-new2", name="P Newer Site", organisation=world["org"])
    london = world["london"]
    person(world)
    with pytest.raises(ValidationError, match=world["org"].name), transaction.atomic():
        Clinic.objects.filter(pk__in=[other_empty.pk, london.pk]).update(organisation=buyer)
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=other_empty.pk) == world["org"].pk
    assert Clinic.objects.filter(pk=london.pk).update(name="London (renamed)") == 1


def test_a_distinct_queryset_moves_an_empty_clinic_on_every_database(world, buyer, empty_site):
    """Review (6 December): the guard locked the caller's own queryset, and PostgreSQL refuses FOR UPDATE with
    DISTINCT; it locks by the rows' ids."""
    moved = Clinic.objects.filter(code__in=["qa-p-new"]).distinct().update(organisation=buyer)
    assert moved == 1
    assert Clinic.objects.values_list("organisation_id", flat=True).get(pk=empty_site.pk) == buyer.pk
