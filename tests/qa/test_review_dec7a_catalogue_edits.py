"""Review probe (7 December): the catalogue, the care texts and the plan templates edited while patients are in care.

Clinics edit what the product ships (docs/reminders.md, "Reminder plans"; docs/plans.md, "Templates"; docs/rules.md,
"Editing the defaults, and upgrades") while visits are booked, messages planned and courses half done. Probed here,
each against what the docs promise and what a clinic would expect:

* a care text's words, its timing offset, its kind, its switch, the template deleted, and a new text added, after
  messages were planned for booked (or completed) visits: which words and which moment the patient gets, nothing
  sent twice or lost, nothing from another kind of message ("a row is planned from the templates as they are then,
  and its template is asked again when it goes"; texts are "rendered when sent");
* a procedure switched off (`bookable` unticked, the admin's "retire") while future bookings and course sessions
  of it stand: the bookings stay and are kept (messages, completion, cancellation), booking, availability,
  eligibility and planning answer a 400 (never a 500), the desk's pages still open;
* a plan template's gaps, session count and procedure edited mid-course: "a template edited mid-course changes no
  window of a session nobody moved" and the domain brief's "nothing is changed silently";
* `setup_demo` run again on a live database (bin/run runs it at every start): "idempotent", "a template is created
  only when its key is missing, so edits survive".

Each step runs at its own moment (time_machine, clock stopped); the suite's Monday is 2 March 2026, 09:00 UTC
(London on GMT).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from clinic.models import AuditEvent, Clinic, Practitioner, ProcedureType
from plans.models import PlanTemplate, TreatmentPlan
from reminders.dispatch import dispatch_local
from reminders.models import MessageKind, OutboxMessage, OutboxStatus, ReminderTemplate
from scheduler.booking import appointment_complete, appointment_reschedule
from tests.admin_forms import template_form
from tests.factories import PatientFactory
from tests.qa.helpers import API, CLINICIAN, NOW, RECEPTION, book, fresh, ldn, post, problem, rows, staff_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes")]

PRE_CARE = "microneedling-pre-care-24h"
POST_48H = "microneedling-post-care-48h"
MN_COURSE = "microneedling-course"


# --- Helpers -----------------------------------------------------------------------------------------------------


def template(key: str) -> ReminderTemplate:
    return ReminderTemplate.objects.get(default_key=key)


def run_at(moment: datetime) -> datetime:
    """One dispatcher pass at `moment`, as beat would run it then."""
    with time_machine.travel(moment, tick=False):
        dispatch_local(now=moment)
    return moment


def sweep(start: datetime, end: datetime, step: timedelta = timedelta(hours=1)) -> None:
    moment = start
    while moment <= end:
        run_at(moment)
        moment += step


def sent_with(words: str) -> list:
    return [m for m in mail.outbox if words in m.body or words in m.subject]


def superuser() -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_superuser("qa-dec7a-root", "root@dec7a.example", "pw-7a-x"))
    return client


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def admin_edit_template(client: Client, obj: ReminderTemplate, **changes) -> None:
    response = client.post(admin_url(ReminderTemplate, "change", obj.pk), template_form(obj, **changes))
    assert response.status_code == 302, response.content.decode()[:3000]


@pytest.fixture
def world(platform_ready, clinic, practitioner, patient, clock):
    """The London clinic (Dr Ada), Pat Lee (e-mail only), the shipped care texts and plan templates, the clock at
    Monday 2 March 2026 09:00 UTC."""
    return clinic


def planned(appointment, key: str) -> list[OutboxMessage]:
    return rows(appointment, template=template(key))


def plan_course(api, patient, clinic, start_from="2026-03-09", template_code=MN_COURSE) -> dict:
    response = post(
        api,
        f"/patients/{patient.pk}/plans/",
        {"template": template_code, "start_from": start_from, "clinic": str(clinic.pk)},
    )
    assert response.status_code == 201, response.content[:1500]
    return response.json()


# --- Care texts edited after messages were planned ---------------------------------------------------------------


def test_a_care_text_reworded_after_planning_goes_once_in_its_new_words_at_the_planned_time(world, patient):
    """docs/reminders.md: texts are "rendered when sent from the appointment as it is then". The clinic rewords the
    microneedling pre-care e-mail after Pat's booking planned it: she gets it once, in the new words, at the moment
    planned (24 h before), and a second pass sends nothing more."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    (row,) = planned(visit, PRE_CARE)
    assert row.due_at == datetime(2026, 3, 9, 10, tzinfo=UTC)
    pre = template(PRE_CARE)
    admin_edit_template(superuser(), pre, email_text="Hello {{ patient_first_name }}, REWORDED: stop retinoids now.")

    sweep(datetime(2026, 3, 9, 8, tzinfo=UTC), datetime(2026, 3, 9, 12, tzinfo=UTC))

    got = sent_with("REWORDED")
    assert len(got) == 1 and "Pat" in got[0].body
    row = fresh(row)
    assert (row.status, row.sent_at) == (OutboxStatus.SENT, datetime(2026, 3, 9, 10, tzinfo=UTC))
    assert not [m for m in mail.outbox if "Stop topical retinoids (Retin-A) now." in m.body]  # the old words did not go


def test_a_pre_care_offset_edited_after_planning_re_times_what_is_still_to_go(world, patient):
    """docs/reminders.md: a template's offset changed re-plans its rows still to go (moved, never duplicated). The
    clinic changes the pre-care from 24 h to 48 h before: Pat's already planned note moves to 48 h before and goes
    once; a booking moved afterwards is planned by the template as it is now (48 h before the new time). (First
    written as "keeps its planned moment"; changed with the mend of the retimed-and-reworded defect below.)"""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    moved = book(patient, ldn(2026, 4, 14), NOW)
    pre = template(PRE_CARE)
    admin_edit_template(superuser(), pre, offset_value=-48)

    (row,) = planned(visit, PRE_CARE)
    assert row.due_at == datetime(2026, 3, 8, 10, tzinfo=UTC)  # 48 h before, at once
    sweep(datetime(2026, 3, 8, 9, tzinfo=UTC), datetime(2026, 3, 9, 12, tzinfo=UTC))
    assert fresh(row).status == OutboxStatus.SENT
    assert OutboxMessage.objects.filter(appointment=visit, template=pre, status=OutboxStatus.SENT).count() == 1

    later = datetime(2026, 3, 10, 12, tzinfo=UTC)
    with time_machine.travel(later, tick=False):
        appointment_reschedule(appointment=moved, start_at=ldn(2026, 4, 21), actor=RECEPTION, now=later)
    (after,) = [r for r in planned(moved, PRE_CARE) if r.status == OutboxStatus.PENDING]
    assert after.due_at == ldn(2026, 4, 19).astimezone(UTC)  # 48 h before the new time (BST)


def test_an_aftercare_text_retimed_and_reworded_is_never_sent_in_its_new_words_at_its_old_moment(world, patient):
    """The clinic decides makeup waits 72 h, not 48, and edits the "+48 h" aftercare text's offset and words
    together the morning after Pat's treatment. Whichever moment her message keeps, the words must fit it: the
    old words at 48 h, or the new words at 72 h; never "72 hours have passed" at 48 h."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    done_at = datetime(2026, 3, 10, 11, tzinfo=UTC)
    with time_machine.travel(done_at, tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=done_at)
    (row,) = planned(visit, POST_48H)
    assert row.due_at == done_at + timedelta(hours=48)
    with time_machine.travel(datetime(2026, 3, 11, 9, tzinfo=UTC), tick=False):
        admin_edit_template(
            superuser(),
            template(POST_48H),
            offset_value=72,
            email_subject="You may wear makeup again (72 hours)",
            email_text="Hello {{ patient_first_name }}, 72 hours have passed since your visit, so makeup may be used.",
            sms_text="{{ clinic_name }}: 72 hours have passed since your visit, so makeup may be used again.",
        )

    sweep(datetime(2026, 3, 12, 10, tzinfo=UTC), datetime(2026, 3, 13, 12, tzinfo=UTC))

    row = fresh(row)
    early = row.status == OutboxStatus.SENT and row.sent_at < done_at + timedelta(hours=72)
    assert not (early and sent_with("72 hours have passed")), (row.status, row.sent_at)


def test_a_pre_care_template_turned_into_aftercare_is_not_sent_before_the_visit(world, patient):
    """docs/reminders.md: a planned row's template "is asked again when it goes" so that a row "is never sent blank
    or with another treatment's words". An administrator repurposes the pre-care template as an at-completion
    aftercare text (the admin accepts it: kind and anchor fit). Pat's planned pre-care note must not go 24 h before
    her visit telling her how to look after skin not yet treated."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    (row,) = planned(visit, PRE_CARE)
    admin_edit_template(
        superuser(),
        template(PRE_CARE),
        kind=MessageKind.POST_CARE,
        anchor="completion",
        offset_value=0,
        offset_unit="hours",
        email_subject="Aftercare for your treatment",
        email_text="Hello {{ patient_first_name }}, AFTERCARE: do not wash your face for 5 hours.",
    )
    assert fresh(template(PRE_CARE)).kind == MessageKind.POST_CARE  # the admin took the edit

    run_at(datetime(2026, 3, 9, 10, tzinfo=UTC))

    assert sent_with("AFTERCARE") == [], fresh(row).status
    assert fresh(row).status == OutboxStatus.CANCELLED


def test_a_care_text_switched_off_cancels_its_planned_rows_with_a_reason_and_switched_back_on_in_time_it_goes(
    world, patient
):
    """docs/reminders.md: a row whose template "was since switched off ... is cancelled, with the reason in
    `last_error`". Switched off and on again before the moment comes, the note goes once; switched off when the
    moment comes, it is cancelled, said why, and the patient gets nothing, nor later."""
    first = book(patient, ldn(2026, 3, 10), NOW)
    second = book(patient, ldn(2026, 3, 17), NOW)
    pre = template(PRE_CARE)
    ReminderTemplate.objects.filter(pk=pre.pk).update(is_active=False)
    ReminderTemplate.objects.filter(pk=pre.pk).update(is_active=True)
    run_at(datetime(2026, 3, 9, 10, tzinfo=UTC))
    assert [r.status for r in planned(first, PRE_CARE)] == [OutboxStatus.SENT]

    ReminderTemplate.objects.filter(pk=pre.pk).update(is_active=False)
    sweep(datetime(2026, 3, 16, 9, tzinfo=UTC), datetime(2026, 3, 17, 9, tzinfo=UTC))
    (row,) = planned(second, PRE_CARE)
    assert row.status == OutboxStatus.CANCELLED and "deactivated" in row.last_error
    assert len(sent_with("Preparing for your visit")) == 1  # the first visit's only


def test_a_care_text_deleted_in_the_admin_leaves_no_500_and_nothing_planned_goes(world, patient, clinic, api):
    """A superuser deletes the pre-care text in the admin while visits are booked (its rows' template becomes
    empty). The delete pages answer, the planned note is cancelled when its moment comes (nothing blank goes), and
    the booking still moves, and its desk page and API record still open."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    run_at(NOW)  # the confirmation goes
    pre = template(PRE_CARE)
    root = superuser()
    assert root.get(admin_url(ReminderTemplate, "delete", pre.pk)).status_code == 200
    response = root.post(admin_url(ReminderTemplate, "delete", pre.pk), {"post": "yes"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not ReminderTemplate.objects.filter(pk=pre.pk).exists()

    run_at(datetime(2026, 3, 9, 10, tzinfo=UTC))
    orphan = OutboxMessage.objects.filter(appointment=visit, kind=MessageKind.PRE_CARE).get()
    assert orphan.status == OutboxStatus.CANCELLED and "removed" in orphan.last_error
    assert sent_with("Preparing for your visit") == []

    later = datetime(2026, 3, 9, 11, tzinfo=UTC)
    with time_machine.travel(later, tick=False):
        appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 12), actor=RECEPTION, now=later)
        desk = staff_client(clinic, "receptionist", "qa-dec7a-desk")
        page = desk.get(reverse("frontdesk:appointment", args=[clinic.code, visit.pk]))
        assert page.status_code == 200
        record = api.get(f"{API}/appointments/{visit.pk}/")
        assert record.status_code == 200, record.content[:800]
        assert "pre_care" not in [r["kind"] for r in record.json()["reminders"] if r["status"] == "pending"]


def test_a_pre_care_text_added_later_reaches_every_visit_still_to_come(
    world, patient, settings, django_capture_on_commit_callbacks
):
    """The clinic adds a "72 h before: stop blood thinners after speaking to your GP" pre-care e-mail for
    microneedling, in the admin. Two visits are booked; one is then moved by a day. A clinic expects both patients'
    coming visits to get the new instruction, not only the one that happened to be moved (mended: the admin's save
    starts a run that plans it for the visits booked before it, reminders.services.template_rollout_start)."""
    settings.CELERY_BROKER_URL = ""  # the embedded default: the run is done once the save commits
    kept = book(patient, ldn(2026, 3, 20), NOW)
    moved = book(patient, ldn(2026, 4, 20), NOW)
    draft = ReminderTemplate(
        name="Microneedling, 72 h before",
        kind=MessageKind.PRE_CARE,
        procedure_id="microneedling",
        anchor="start",
        offset_value=-72,
        offset_unit="hours",
        send_if_late=True,
        email_subject="Three days before your visit",
        email_text="Hello {{ patient_first_name }}, NEW INSTRUCTION three days before your visit.",
        origin="clinic",
        is_active=True,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser().post(admin_url(ReminderTemplate, "add"), template_form(draft))
    assert response.status_code == 302, response.content.decode()[:3000]
    added = ReminderTemplate.objects.get(name=draft.name)
    later = NOW + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        appointment_reschedule(appointment=moved, start_at=ldn(2026, 4, 21), actor=RECEPTION, now=later)
    assert rows(moved, template=added)  # the moved visit is planned the new text

    assert rows(kept, template=added)  # the visit nobody touched
    assert len(rows(kept, template=added)) == 1  # e-mail only, once


# --- A procedure switched off while visits of it are booked ------------------------------------------------------


def test_a_procedure_switched_off_keeps_its_booked_visits_their_messages_completion_and_cancellation(
    world, patient, clinic, clinical_api, api
):
    """docs/rules.md: "a catalogue edit (a procedure switched off ...) holds from the next request on". What is
    already booked is the clinic's to keep: the visit stays confirmed, its pre-care still goes, the desk's page and
    the API's record open, the clinician completes it (aftercare planned), and another is cancelled; a new booking
    of it is refused with 400 `procedure_not_bookable`."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    other = book(patient, ldn(2026, 4, 14), NOW)
    ProcedureType.objects.filter(code="microneedling").update(bookable=False)

    run_at(datetime(2026, 3, 9, 10, tzinfo=UTC))
    assert [r.status for r in planned(visit, PRE_CARE)] == [OutboxStatus.SENT]
    desk = staff_client(clinic, "receptionist", "qa-dec7a-desk2")
    assert desk.get(reverse("frontdesk:appointment", args=[clinic.code, visit.pk])).status_code == 200
    assert desk.get(reverse("frontdesk:patient", args=[clinic.code, patient.pk])).status_code == 200
    assert api.get(f"{API}/appointments/{visit.pk}/").json()["status"] == "confirmed"

    with time_machine.travel(datetime(2026, 3, 10, 11, tzinfo=UTC), tick=False):
        done = clinical_api.post(f"{API}/appointments/{visit.pk}/complete/", {}, format="json")
        assert done.status_code == 200, done.content[:800]
        cancelled = api.post(f"{API}/appointments/{other.pk}/cancel/", {"reason": "retired"}, format="json")
        assert cancelled.status_code == 200, cancelled.content[:800]
        refused = api.post(
            f"{API}/appointments/",
            {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-05-05T10:00:00+01:00"},
            format="json",
        )
    problem(refused, 400, "procedure_not_bookable")
    assert planned(visit, POST_48H), "aftercare planned for the completed visit"


def test_a_procedure_switched_off_answers_availability_eligibility_and_a_move_with_a_400_not_a_500(world, patient, api):
    """Availability, eligibility and a move of a booked visit of a switched-off procedure: each a problem document
    (400 `procedure_not_bookable`), never a 500, and the visit stays where it was."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    ProcedureType.objects.filter(code="microneedling").update(bookable=False)
    slots = api.get(
        f"{API}/availability/",
        {"patient": str(patient.pk), "procedure": "microneedling", "from": "2026-03-20T09:00:00+00:00"},
    )
    problem(slots, 400, "procedure_not_bookable")
    check = post(
        api,
        "/eligibility/",
        {"patient": str(patient.pk), "procedure": "microneedling", "start": "2026-03-20T10:00:00+00:00"},
    )
    problem(check, 400, "procedure_not_bookable")
    move = post(api, f"/appointments/{visit.pk}/reschedule/", {"start": "2026-03-11T10:00:00+00:00"})
    assert move.status_code == 400 and move.json()["code"] == "procedure_not_bookable", move.content[:800]
    assert fresh(visit).start_at == ldn(2026, 3, 10)
    listed = api.get(f"{API}/procedures/", {"bookable": "true"}).json()["results"]
    assert "microneedling" not in [p["code"] for p in listed]


def test_a_procedure_switched_off_mid_course_new_plans_refused_the_course_still_reads_and_replans_answer(
    world, patient, clinic, api
):
    """A microneedling course is booked, then microneedling is switched off. A new course is refused with a 400;
    the booked course still reads (API and desk), and a re-plan is a 4xx problem (never a 500) that moves nothing."""
    plan = plan_course(api, patient, clinic)
    starts = [s["start"] for s in plan["sessions"]]
    ProcedureType.objects.filter(code="microneedling").update(bookable=False)

    again = post(
        api,
        f"/patients/{patient.pk}/plans/",
        {"template": MN_COURSE, "start_from": "2026-06-01", "clinic": str(clinic.pk)},
    )
    problem(again, 400, "procedure_not_bookable")
    read = api.get(f"{API}/plans/{plan['id']}/")
    assert read.status_code == 200 and [s["status"] for s in read.json()["sessions"]] == ["booked"] * 3
    desk = staff_client(clinic, "receptionist", "qa-dec7a-desk3")
    assert desk.get(reverse("frontdesk:plan", args=[clinic.code, plan["id"]])).status_code == 200
    replan = post(api, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": "2026-04-20T09:00:00+01:00"})
    assert 400 <= replan.status_code < 500, replan.content[:800]
    assert [s["start"] for s in api.get(f"{API}/plans/{plan['id']}/").json()["sessions"]] == starts


# --- Plan templates edited mid-course -----------------------------------------------------------------------------


def test_a_course_templates_gaps_edited_mid_course_move_no_session_window_or_booking(world, patient, clinic, api):
    """docs/plans.md: "a template edited mid-course changes no window of a session nobody moved"; the domain brief:
    nothing changes silently. The microneedling course's gaps go from 4/4/6 weeks to 6/8/10 weeks while Pat's course
    is booked: every session keeps its booking, time, status and window, no audit entry or message is written."""
    plan = plan_course(api, patient, clinic)
    before = api.get(f"{API}/plans/{plan['id']}/").json()["sessions"]
    audits, messages = AuditEvent.objects.count(), OutboxMessage.objects.count()

    PlanTemplate.objects.filter(code=MN_COURSE, organisation=None).update(
        min_gap_value=6, ideal_gap_value=8, max_gap_value=10
    )

    after = api.get(f"{API}/plans/{plan['id']}/").json()["sessions"]
    keep = ("appointment", "start", "status", "window", "appointment_status")
    assert [{k: s[k] for k in keep} for s in after] == [{k: s[k] for k in keep} for s in before]
    assert (AuditEvent.objects.count(), OutboxMessage.objects.count()) == (audits, messages)


def test_a_course_templates_session_count_edited_mid_course_leaves_the_plans_own_sessions(world, patient, clinic, api):
    """The microneedling course goes from 3 sessions to 2 (and another clinic's edit to 5) while Pat's 3-session
    course is booked: her plan keeps its 3 sessions, the third still booked, and the desk's calendar calls it
    "Session 3 of 3"."""
    plan = plan_course(api, patient, clinic)
    PlanTemplate.objects.filter(code=MN_COURSE, organisation=None).update(sessions=2)

    sessions = api.get(f"{API}/plans/{plan['id']}/").json()["sessions"]
    assert [(s["index"], s["status"]) for s in sessions] == [(1, "booked"), (2, "booked"), (3, "booked")]
    desk = staff_client(clinic, "receptionist", "qa-dec7a-desk4")
    day = date.fromisoformat(sessions[2]["start"][:10])
    feed = desk.get(
        reverse("frontdesk:calendar_events", args=[clinic.code]),
        {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()},
    )
    assert feed.status_code == 200, feed.content[:800]
    courses = {e["id"]: e["course"] for e in feed.json()["events"]}
    assert courses[sessions[2]["appointment"]].startswith("Session 3 of 3")


def test_a_course_templates_procedure_edited_mid_course_never_books_another_treatment(world, patient, clinic, api):
    """The administrator edits the shipped microneedling course's procedure (the admin accepts it; the template is
    in use). Pat's session 3 was cancelled and the desk re-plans it: it must be microneedling, the course she is
    in, or be refused; never a plasma pen appointment."""
    plan = plan_course(api, patient, clinic)
    third = plan["sessions"][2]["appointment"]
    assert post(api, f"/appointments/{third}/cancel/", {"reason": "away"}).status_code == 200
    PlanTemplate.objects.filter(code=MN_COURSE, organisation=None).update(procedure_id="plasma_pen")

    replan = post(api, f"/plans/{plan['id']}/replan/", {"from_session": 3, "start": "2026-04-06T09:00:00+01:00"})

    assert replan.status_code < 500, replan.content[:800]
    booked = TreatmentPlan.objects.get(pk=plan["id"]).sessions.get(index=3).appointment
    assert booked is None or booked.procedure_id == "microneedling", booked.procedure_id


def test_a_course_template_in_use_cannot_be_deleted_in_the_admin_and_switched_off_the_course_still_replans(
    world, patient, clinic, api
):
    """A superuser tries to delete the microneedling course template while Pat's course runs: the admin says it is
    in use (no 500, nothing deleted). Switched off instead, it is no longer offered for a new course (400), and Pat's
    course still reads and re-plans (a dry run answers 200)."""
    plan = plan_course(api, patient, clinic)
    course = PlanTemplate.objects.get(code=MN_COURSE, organisation=None)
    root = superuser()
    page = root.get(admin_url(PlanTemplate, "delete", course.pk))
    assert page.status_code == 200
    root.post(admin_url(PlanTemplate, "delete", course.pk), {"post": "yes"})
    assert PlanTemplate.objects.filter(pk=course.pk).exists()

    PlanTemplate.objects.filter(pk=course.pk).update(is_active=False)
    refused = post(
        api, f"/patients/{patient.pk}/plans/", {"template": MN_COURSE, "start_from": "2026-06-01", "dry_run": True}
    )
    problem(refused, 400, "unknown_plan_template")
    assert api.get(f"{API}/plans/{plan['id']}/").status_code == 200
    dry = post(
        api,
        f"/plans/{plan['id']}/replan/",
        {"from_session": 2, "start": "2026-04-13T09:00:00+01:00", "dry_run": True},
    )
    assert dry.status_code == 200, dry.content[:800]


# --- setup_demo again on a live database ----------------------------------------------------------------------


def run_setup(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("setup_demo", *args, stdout=out)
    return out.getvalue()


def test_setup_demo_again_keeps_every_edit_of_care_texts_plan_templates_and_the_catalogue_and_plans_nothing(
    world, patient
):
    """docs/production.md: `setup_demo --no-demo` "leaves what exists as the operators left it: run on every
    upgrade". Between two runs the clinic rewords, retimes and switches off care texts, edits a course's gaps,
    switches a procedure off and lengthens another, with a visit booked: the second run creates nothing, changes
    none of it, and plans or cancels no message."""
    run_setup("--no-demo")
    visit = book(patient, ldn(2026, 3, 10), NOW)
    ReminderTemplate.objects.filter(default_key=PRE_CARE).update(email_text="EDITED {{ patient_first_name }}")
    ReminderTemplate.objects.filter(default_key=POST_48H).update(offset_value=72)
    ReminderTemplate.objects.filter(default_key="microneedling-post-care-7d").update(is_active=False)
    PlanTemplate.objects.filter(code=MN_COURSE, organisation=None).update(ideal_gap_value=5, max_gap_value=7)
    ProcedureType.objects.filter(code="plasma_pen").update(bookable=False)
    ProcedureType.objects.filter(code="botox").update(duration_minutes=45)
    messages = sorted(OutboxMessage.objects.values_list("id", "status", "due_at"))

    out = run_setup("--no-demo")

    assert "0 default rule(s) created" in out and "0 default reminder template(s) created" in out
    assert "0 default plan template(s) created" in out
    assert template(PRE_CARE).email_text == "EDITED {{ patient_first_name }}"
    assert template(POST_48H).offset_value == 72
    assert template("microneedling-post-care-7d").is_active is False
    course = PlanTemplate.objects.get(code=MN_COURSE, organisation=None)
    assert (course.ideal_gap_value, course.max_gap_value) == (5, 7)
    assert ProcedureType.objects.get(code="plasma_pen").bookable is False
    assert ProcedureType.objects.get(code="botox").duration_minutes == 45
    assert sorted(OutboxMessage.objects.values_list("id", "status", "due_at")) == messages
    assert fresh(visit).status == "confirmed"


def test_setup_demo_again_leaves_a_switched_off_procedure_off_for_the_demo_practitioners(platform_ready, clock):
    """A demo install (bin/run runs `setup_demo` at every start): the operator switched plasma pen off. The next
    start must not hand it back to the demo practitioners as a procedure they do."""
    run_setup()
    ProcedureType.objects.filter(code="plasma_pen").update(bookable=False)
    hart = Practitioner.objects.get(clinic__code="demo", name="Dr Amelia Hart")
    hart.procedures.remove("plasma_pen")
    run_setup()
    assert "plasma_pen" not in set(fresh(hart).procedures.values_list("code", flat=True))


def test_setup_demo_again_leaves_a_demo_practitioners_procedures_as_the_administrator_set_them(platform_ready, clock):
    """Priya Shah, RN stops doing plasma pen; an administrator takes it off her. After the next start of the demo
    install (`setup_demo` again, "idempotent" per the API contract) she still does not do it."""
    run_setup()
    priya = Practitioner.objects.get(clinic__code="demo", name="Priya Shah, RN")
    priya.procedures.remove("plasma_pen")
    run_setup()
    assert "plasma_pen" not in set(fresh(priya).procedures.values_list("code", flat=True))


def test_setup_demo_again_keeps_a_demo_clinics_name_and_zone_as_the_administrator_set_them(platform_ready, clock):
    """The demo clinic is renamed (and its contact details set) by an administrator; the next start of the demo
    install keeps the contact details (scheduler.defaults: "contact details an administrator entered stay as they
    are") and must keep the name it was given too."""
    run_setup()
    Clinic.objects.filter(code="demo").update(name="Bloom Aesthetics Soho", timezone="Europe/Dublin")
    run_setup()
    demo = Clinic.objects.get(code="demo")
    assert (demo.name, demo.timezone) == ("Bloom Aesthetics Soho", "Europe/Dublin")


def test_setup_demo_again_gives_back_a_deleted_care_text_as_the_docs_say(platform_ready, clock):
    """docs/reminders.md: a template "is created only when its key is missing"; docs/rules.md says the same of a
    deleted default rule ("created again by the next setup_demo: disable it rather than delete it"). A care text a
    superuser deleted comes back, active, on the next run; one switched off stays off."""
    run_setup("--no-demo")
    ReminderTemplate.objects.filter(default_key="botox-post-care-completion").delete()
    ReminderTemplate.objects.filter(default_key="filler-post-care-completion").update(is_active=False)
    out = run_setup("--no-demo")
    assert "1 default reminder template(s) created" in out
    assert template("botox-post-care-completion").is_active is True
    assert template("filler-post-care-completion").is_active is False


def test_an_edited_care_text_planned_for_a_demo_patient_is_untouched_by_setup_again(platform_ready, clock):
    """A demo patient's booking has its pre-care planned; the text is reworded; setup runs again (with the demo):
    the pending row is the same row, due at the same moment, and the text is the edited one."""
    run_setup()
    demo = Clinic.objects.get(code="demo")
    someone = PatientFactory(clinic=demo, first_name="Zed", last_name="Dec7a", reminder_channels=["email"])
    visit = book(someone, ldn(2026, 3, 10), NOW)
    (row,) = planned(visit, PRE_CARE)
    ReminderTemplate.objects.filter(default_key=PRE_CARE).update(email_text="EDITED {{ patient_first_name }}")
    run_setup()
    assert [(r.pk, r.due_at, r.status) for r in planned(visit, PRE_CARE)] == [(row.pk, row.due_at, row.status)]
    assert template(PRE_CARE).email_text == "EDITED {{ patient_first_name }}"
