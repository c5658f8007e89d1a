"""Review probe dec9c: a critical read of the session's changes since aa856ff (7 December).

What is probed, change by change:

1. scheduler.rules._distinct and scheduler.recheck._substance (a reason held by two copies of an event is named once,
   ids set aside): copies removed one by one, the stored reasons' order, a merge's report of the warnings the two
   records bring together, genuinely distinct events (areas, clinics, courses) kept apart.
2. start_day_relative saying "yesterday" (reminders.wording._near_day, the shipped thank-you texts, 0025): the SMS
   length checks (reminders.longest) against what a text sent after its visit renders.
3. api.merged.refuse_if_merged (a tombstone's id in a body or ?patient= is a 400 patient_merged): tenancy, the
   published 400 body, an Idempotency-Key, FHIR's search by patient.
4. api.negotiation.IgnoreUnknownFormat: the schema's own ?format= still chooses; FHIR unaffected.
6. portal.views.patient_page's 415: form content types with parameters, multipart, every POST of the page.
7. reminders.views.email_event refusing an event with a text no database can store: what it refuses besides.
8. clinic.forms.ProcedureRecordsFormSet: a line a visit's completion wrote, on the admin's patient page, after a
   merge too; its disabled fields and the hidden initials.

Findings were strict xfails (DEFECT: a bug; QUESTION: a product choice to make); the rest pass and say what holds.
Mended the same day, each test passing since: the five DEFECTs (recheck._substance compares in no order;
merging._warnings_brought_together reports what the two records did not hold before, by what and when; longest renders
a day after the visit; email_event records what it can, leaving out a text no database stores) and the first
QUESTION (a 400 patient_merged is not kept under its key); the second QUESTION decided too: FHIR's search by a
tombstone says where the patient went in an outcome entry (fhir.views.AppointmentSearchView._say_if_merged).
- DEFECT: the copy that named a reason removed, the visit is announced needs_review again when the other copy's id
  sorts after another reason of the same rule (recheck._substance compares the reasons in their id order);
- DEFECT: a merge reports a warning its survivor already had (the same course on both records) or not, by which
  copy's id sorts first (rules._distinct keeps the lower id; merging._warnings_brought_together);
- DEFECT: reminders.longest renders no moment after the visit: "yesterday, Fri 31 Dec 2027, ..." is 2 characters
  longer than any render checked, so a template the check passed is too long to go the morning after;
- DEFECT: reminders.views.email_event refuses a complaint whose unstored provider words hold a NUL, and one such
  event refuses its whole batch (SendGrid), the complaints in it lost;
- QUESTION: the 400 patient_merged is kept under its Idempotency-Key (the booking re-sent with the survivor's id
  under it is a 422); FHIR's search by a tombstone is an empty searchset.
The clock is the suite's Monday, 2 March 2026, 09:00 UTC (London on GMT).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import jsonschema
import pytest
import time_machine
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditEvent,
    MedicationCourse,
    Patient,
    PatientMerge,
    ProcedureRecord,
)
from reminders import longest
from reminders.links import manage_token
from reminders.models import ContactOptOut
from reminders.texts import sms_length_problem
from reminders.wording import fmt_day_relative, render_sms, sms_context
from scheduler import rules
from scheduler.booking import appointment_book, appointment_complete
from tests.factories import PatientFactory
from tests.qa.helpers import API, CLINICIAN, LONDON, NOW, RECEPTION, admin_errors, admin_post, ldn

pytestmark = [pytest.mark.django_db]

LOW = "00000000-0000-4000-8000-0000000000{:02d}"  # ids that sort before any uuid4
HIGH = "ffffffff-ffff-4fff-bfff-ffffffffff{:02d}"  # and after any


def flagged(appointment_id) -> int:
    return AuditEvent.objects.filter(appointment_id=appointment_id, action="needs_review").count()


def book_api(api, patient, code: str, start: str, **headers) -> dict:
    response = api.post(
        f"{API}/appointments/",
        {"patient": str(patient.pk), "procedure": code, "start": start},
        format="json",
        **headers,
    )
    assert response.status_code == 201, response.content
    return response.json()


def merged_pair(clinic, first: str) -> tuple[Patient, Patient]:
    """(tombstone, survivor): two records of one person at `clinic`, merged by a clinician."""
    survivor = PatientFactory(clinic=clinic, first_name=first, last_name="Survivor")
    tombstone = PatientFactory(clinic=clinic, first_name=first, last_name="Tombstone")
    patient_merge(merged=tombstone, into=survivor, now=NOW, actor_label="clinician@dec9c", clinical=True)
    tombstone.refresh_from_db()
    assert tombstone.merged_into_id == survivor.pk
    return tombstone, survivor


# ============================== 1. A reason named once however many copies hold it ===============================


def test_removing_the_naming_copy_of_a_treatment_flags_nothing_again_whatever_the_ids(
    api, patient, practitioner, clock, admin_client
):
    """A microneedling on 10 March; Botox on 28 February (entered by the platform) and on 1 March (an export listed
    it twice: two lines). Both Botox dates break the 2-week rule: two reasons, one per date. The copy of 1 March that
    named its reason is removed in the admin: the other copy holds it, the same two reasons stand, nothing is
    announced (docs/rules.md, After booking)."""
    visit = book_api(api, patient, "microneedling", "2026-03-10T10:00:00+00:00")
    first_copy, second_copy = (
        ProcedureRecord.objects.create(
            pk=uuid.UUID(pk),
            patient=patient,
            procedure_id="botox",
            performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC),
            notes="old system row 7",
        )
        for pk in (LOW.format(1), HIGH.format(1))
    )
    response = api.post(
        f"{API}/patients/{patient.pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-02-28T10:00:00+00:00"},
        format="json",
    )
    assert response.status_code == 201, response.content
    appointment = Appointment.objects.get(pk=visit["id"])
    assert appointment.status == AppointmentStatus.NEEDS_REVIEW
    named = [r["conflicts_with"]["id"] for r in appointment.review_reasons]
    assert named == [str(first_copy.pk), response.json()["id"]]  # two reasons; the copy sorting first names one
    assert flagged(visit["id"]) == 1

    removed = admin_post(admin_client, patient, delete=[first_copy.pk])
    assert removed.status_code == 302, admin_errors(removed)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.NEEDS_REVIEW
    assert sorted(r["conflicts_with"]["id"] for r in appointment.review_reasons) == sorted(
        [str(second_copy.pk), response.json()["id"]]
    )
    assert flagged(visit["id"]) == 1


def test_removing_the_naming_copy_re_points_the_reason_silently_when_ids_keep_their_order(
    api, patient, practitioner, clock, admin_client
):
    """The same with one Botox date: the copy named is removed, the reason is re-pointed to the other copy (its id,
    its time), nothing is announced; the last copy removed releases the visit."""
    visit = book_api(api, patient, "microneedling", "2026-03-10T10:00:00+00:00")
    copies = [
        ProcedureRecord.objects.create(
            pk=uuid.UUID(pk), patient=patient, procedure_id="botox", performed_at=datetime(2026, 3, 1, 10, tzinfo=UTC)
        )
        for pk in (LOW.format(2), HIGH.format(2))
    ]
    course = api.post(
        f"{API}/patients/{patient.pk}/medications/",
        {"drug": "isotretinoin", "started_on": "2024-01-01", "ended_on": "2024-02-01"},
        format="json",
    )
    assert course.status_code == 201  # a record change: the visit is checked again, and flagged
    appointment = Appointment.objects.get(pk=visit["id"])
    assert [r["conflicts_with"]["id"] for r in appointment.review_reasons] == [str(copies[0].pk)]

    assert admin_post(admin_client, patient, delete=[copies[0].pk]).status_code == 302
    appointment.refresh_from_db()
    [reason] = appointment.review_reasons
    assert (reason["conflicts_with"]["id"], reason["conflicts_with"]["at"]) == (
        str(copies[1].pk),
        "2026-03-01T10:00:00+00:00",
    )
    assert flagged(visit["id"]) == 1
    assert admin_post(admin_client, patient, delete=[copies[1].pk]).status_code == 302
    appointment.refresh_from_db()
    assert (appointment.status, appointment.review_reasons) == (AppointmentStatus.CONFIRMED, [])


def test_a_merges_warnings_do_not_depend_on_which_copy_of_a_course_has_the_lower_id(clinic, practitioner, clock):
    """The warning stood on the survivor before the merge (its own course): docs/organisations.md, warnings one
    record had on its own are not repeated. Two such merges differing only in the copies' ids report alike."""
    reported = []
    for n, (survivor_id, merged_id) in enumerate([(HIGH, LOW), (LOW, HIGH)], start=10):
        survivor = PatientFactory(clinic=clinic, first_name=f"Ines{n}", last_name="Moe")
        duplicate = PatientFactory(clinic=clinic, first_name=f"Ines{n}", last_name="Moe")
        for patient, pk in ((survivor, survivor_id), (duplicate, merged_id)):
            MedicationCourse.objects.create(
                pk=uuid.UUID(pk.format(n)),
                patient=patient,
                drug_id="isotretinoin",
                started_on=date(2025, 9, 1),
                ended_on=date(2026, 2, 15),
            )
        appointment_book(
            patient=survivor,
            procedure_code="filler",
            start_at=ldn(2026, 3, 20, 10 + 2 * (n - 10)),
            actor=RECEPTION,
            now=NOW,
            practitioner_id=practitioner.pk,
        )
        merge = patient_merge(merged=duplicate, into=survivor, now=NOW, actor_label="dec9c", clinical=True)
        reported.append(len(merge.details["warnings"]))
    assert reported[0] == reported[1], reported


def test_distinct_events_that_read_alike_in_part_stay_apart():
    """Only copies are one reason: the same Botox at two clinics, two courses of a drug started apart (their ongoing
    reasons name their start), a condition in two areas, a booking and a history line of one procedure at two
    instants."""
    names = {"botox": "Botox", "microneedling": "Microneedling", "isotretinoin": "Isotretinoin", "herpes": "Herpes"}
    book = rules.RuleBook(
        intervals=[
            rules.IntervalRule("r1", "microneedling", 2, "weeks", earlier_procedure="botox"),
            rules.IntervalRule("r2", "microneedling", 6, "months", earlier_medication="isotretinoin"),
        ],
        contraindications=[
            rules.ContraindicationRule("c1", "microneedling", "relative", condition="herpes", area_specific=True)
        ],
        names=names,
    )
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    timeline = rules.Timeline(
        [
            rules.ProcedureEvent("p1", "botox", at, clinic="london"),
            rules.ProcedureEvent("p2", "botox", at, clinic="west"),
            rules.ProcedureEvent("p3", "botox", at, clinic="london"),  # a copy of p1
        ],
        [
            rules.MedicationCourse("m1", "isotretinoin", date(2026, 1, 1)),
            rules.MedicationCourse("m2", "isotretinoin", date(2026, 2, 1)),
        ],
        [
            rules.ConditionEntry("k1", "herpes", "active", "lips"),
            rules.ConditionEntry("k2", "herpes", "active", "eyes"),
        ],
    )
    found = rules.evaluate(timeline, book, rules.Proposal("microneedling", at + timedelta(days=5)), LONDON)
    ids = sorted(v.conflicts_with.id for v in found.violations)
    assert ids == ["k1", "k2", "m1", "m2", "p1", "p2"], ids


# ============================== 2. "yesterday" and the SMS length checks ==========================================


def _fitting(text: str) -> str:
    """`text` padded with plain letters to the longest the template's own check lets through."""
    low, high = 0, 459
    while low < high:  # the largest pad the check passes
        mid = (low + high + 1) // 2
        if longest.template_own_problem(text + "x" * mid):
            high = mid - 1
        else:
            low = mid
    assert longest.template_own_problem(text + "x" * low) == ""
    assert longest.template_own_problem(text + "x" * (low + 1))
    return text + "x" * low


def _sent_the_morning_after(text: str, clinic_name: str) -> str:
    """`text` as texted at 08:00 on New Year's Day 2028 for a visit at 10:30 the day before (a Friday)."""
    visit = datetime(2027, 12, 31, 10, 30, tzinfo=UTC)
    context = sms_context(
        clinic=longest.stand_in(),
        clinic_name=clinic_name,
        first_name=longest.FIRST_NAME_CHECKED,
        start_at=visit,
        end_at=visit + timedelta(hours=1),
        now=datetime(2028, 1, 1, 8, tzinfo=UTC),
        manage_link="",
        email_on=False,
    )
    return render_sms(text, context)


def test_a_template_the_check_passed_is_never_too_long_when_sent_the_day_after_its_visit(catalogue):
    text = _fitting("{{ clinic_name }}: thank you for your visit {{ start_relative_local }}. ")
    sent = _sent_the_morning_after(text, longest.NEUTRAL_NAME)
    assert "yesterday, Fri 31 Dec 2027" in sent
    assert sms_length_problem(sent) == ""


def test_the_shipped_thank_you_texts_fit_when_they_say_yesterday_or_a_date(care_texts):
    """The shipped completion texts use start_day_relative, whose longest ('on Wed 29 Sep 2027') the check renders;
    sent the morning after, they say 'yesterday' and still fit."""
    from reminders.models import ReminderTemplate

    shipped = ReminderTemplate.objects.filter(
        default_key__endswith="-post-care-completion", sms_text__contains="{{ start_day_relative }}"
    )
    assert shipped.count() >= 3
    for template in shipped:
        assert longest.template_own_problem(template.sms_text) == "", template.default_key
        sent = _sent_the_morning_after(template.sms_text, "A clinic with a rather long name for texts")
        assert "thank you for your visit yesterday." in sent and sms_length_problem(sent) == "", sent


def test_yesterday_is_the_clinics_day_not_utcs():
    """A 23:30 visit in New York marked done at 00:30 its next morning (05:30 UTC): 'yesterday'; done at 22:00 the
    same evening (03:00 UTC the next day): 'today'."""
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    visit = datetime(2026, 3, 2, 23, 30, tzinfo=ny)
    assert fmt_day_relative(visit, ny, now=datetime(2026, 3, 3, 0, 30, tzinfo=ny)) == "yesterday"
    assert fmt_day_relative(visit, ny, now=datetime(2026, 3, 2, 23, 59, tzinfo=ny)) == "today"
    assert fmt_day_relative(visit, ny, now=datetime(2026, 3, 4, 9, 0, tzinfo=ny)) == "on Mon 2 Mar"


# ============================== 3. A tombstone's id in a body or ?patient= ========================================


def test_a_tombstone_in_a_body_or_filter_names_its_survivor(api, clinic, practitioner, clock):
    tombstone, survivor = merged_pair(clinic, "Tove")
    booking = api.post(
        f"{API}/appointments/",
        {"patient": str(tombstone.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"},
        format="json",
    )
    listed = api.get(f"{API}/appointments/?patient={tombstone.pk}")
    check = api.post(
        f"{API}/eligibility/",
        {"patient": str(tombstone.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"},
        format="json",
    )
    slots = api.get(f"{API}/availability/?patient={tombstone.pk}&procedure=botox")
    for response in (booking, listed, check, slots):
        assert response.status_code == 400, response.content
        body = response.json()
        assert (body["code"], body["merged_into"], body["status"]) == ("patient_merged", str(survivor.pk), 400)
        assert body["type"] == "urn:clinic-api:problem:validation-error" and body["errors"]["patient"]
    assert not Appointment.objects.filter(patient__in=[tombstone, survivor]).exists()


def test_another_organisations_tombstone_stays_unknown_and_reveals_nothing(api, other_clinic, clock):
    tombstone, survivor = merged_pair(other_clinic, "Ulla")
    answers = [
        api.post(
            f"{API}/appointments/",
            {"patient": str(tombstone.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"},
            format="json",
        ),
        api.get(f"{API}/appointments/?patient={tombstone.pk}"),
        api.get(f"{API}/availability/?patient={tombstone.pk}&procedure=botox"),
    ]
    for response in answers:
        assert response.status_code == 400
        assert response.json()["code"] == "unknown_patient"
        assert "merged_into" not in response.json() and str(survivor.pk) not in response.content.decode()


def test_the_400_patient_merged_fits_the_published_validation_problem(api, clinic, clock):
    """Generated clients read the 400 as ValidationProblemOut: `merged_into` is an extension member it allows."""
    tombstone, _ = merged_pair(clinic, "Vera")
    schema = json.loads(api.get(f"{API}/schema/?format=json").content)
    component = schema["components"]["schemas"]["ValidationProblemOut"]
    assert component.get("additionalProperties", True) is not False
    response = api.get(f"{API}/appointments/?patient={tombstone.pk}")
    jsonschema.validate(response.json(), component)


def test_the_booking_sent_again_with_the_survivors_id_under_its_key_is_made(api, clinic, practitioner, clock):
    """A keyed booking naming a tombstone is a 400 patient_merged ('send that id'), not kept under its key (as a 308
    is not, api.idempotency._names_a_survivor): sent again with the survivor's id under the same key, it is made.
    (Was a strict-xfail QUESTION.)"""
    tombstone, survivor = merged_pair(clinic, "Wenche")
    body = {"patient": str(tombstone.pk), "procedure": "botox", "start": "2026-03-10T10:00:00+00:00"}
    first = api.post(f"{API}/appointments/", body, format="json", HTTP_IDEMPOTENCY_KEY="dec9c-merged-1")
    assert (first.status_code, first.json()["merged_into"]) == (400, str(survivor.pk))
    again = api.post(
        f"{API}/appointments/",
        {**body, "patient": first.json()["merged_into"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="dec9c-merged-1",
    )
    assert again.status_code == 201, again.content


def test_fhirs_search_by_a_tombstone_does_not_silently_find_nothing(api, clinic, practitioner, clock):
    """FHIR's Appointment search by a tombstone finds nothing under the old id (its appointments moved), and says so
    in an outcome entry (R4 Bundle search.mode 'outcome') naming the survivor, as the REST list's 400 patient_merged
    does; by the survivor's id it finds the visit. (Was a strict-xfail QUESTION: an empty searchset, silent.)"""
    from fhir.resources.R4B.bundle import Bundle

    tombstone, survivor = merged_pair(clinic, "Xenia")
    book_api(api, survivor, "botox", "2026-03-10T10:00:00+00:00")
    response = api.get(f"/fhir/r4/Appointment?patient={tombstone.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    Bundle.model_validate(body)
    assert body["total"] == 0
    [said] = body["entry"]
    assert said["search"] == {"mode": "outcome"}
    [issue] = said["resource"]["issue"]
    assert issue["severity"] == "warning" and f"Patient/{survivor.pk}" in issue["diagnostics"], issue
    found = api.get(f"/fhir/r4/Appointment?patient={survivor.pk}").json()
    assert found["total"] == 1 and [e["search"]["mode"] for e in found["entry"]] == ["match"]


def test_fhirs_search_naming_many_ids_asks_once_and_says_each_merged_record_once(
    api, clinic, practitioner, clock, django_assert_max_num_queries
):
    """Each merged record the search names is said once, however often it is named (patient=T,T, actor=Patient/T),
    and the survivors are read in one statement however many ids are named (a POST search may name thousands)."""
    tombstone, survivor = merged_pair(clinic, "Yrsa")
    other, other_survivor = merged_pair(clinic, "Zia")
    strangers = ",".join(str(uuid.uuid4()) for _ in range(40))
    with django_assert_max_num_queries(12) as few:
        few_answer = api.get(f"/fhir/r4/Appointment?patient={tombstone.pk}")
    many = f"/fhir/r4/Appointment?patient={tombstone.pk},{tombstone.pk},{other.pk},{strangers}&actor=Patient/{tombstone.pk}"
    with django_assert_max_num_queries(len(few.captured_queries)):
        answer = api.get(many)
    assert few_answer.status_code == answer.status_code == 200, answer.content
    said = [e["resource"]["issue"][0]["diagnostics"] for e in answer.json()["entry"]]
    assert said == [
        f"Patient/{tombstone.pk} was merged into Patient/{survivor.pk}: search by that id.",
        f"Patient/{other.pk} was merged into Patient/{other_survivor.pk}: search by that id.",
    ]


# ============================== 4. ?format= naming no renderer ====================================================


def test_the_schemas_format_still_chooses_and_an_unknown_one_elsewhere_is_ignored(api, clinic):
    as_json = api.get(f"{API}/schema/?format=json")
    as_yaml = api.get(f"{API}/schema/?format=yaml")
    assert as_json.status_code == as_yaml.status_code == 200
    assert "json" in as_json["Content-Type"] and json.loads(as_json.content)["openapi"].startswith("3.")
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi") and as_yaml.content.startswith(b"openapi:")
    listed = api.get(f"{API}/clinics/?format=xml")
    assert (listed.status_code, listed["Content-Type"]) == (200, "application/json")
    assert api.get(f"{API}/clinics/?format=xml", HTTP_ACCEPT="application/xml").status_code == 406
    fhir = api.get("/fhir/r4/metadata?format=xml")
    assert fhir.status_code == 200 and fhir["Content-Type"].startswith("application/fhir+json")


# ============================== 6. The patient's pages take forms only ============================================


@pytest.fixture
def page(api, patient, practitioner, clock):
    Patient.objects.filter(pk=patient.pk).update(email="pat@example.com", reminder_channels=["email"])
    visit = book_api(api, patient, "botox", "2026-03-10T10:00:00+00:00")
    appointment = Appointment.objects.get(pk=visit["id"])
    return appointment, f"/my/{manage_token(appointment)}"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded",
        "application/x-www-form-urlencoded;charset=utf-8",
    ],
)
def test_a_form_with_a_charset_or_in_capitals_is_read(client, page, content_type):
    appointment, base = page
    response = client.generic(
        "POST", f"{base}/preferences/", "email=on&initial-email=True&reminders=on", content_type=content_type
    )
    assert response.status_code == 303, (response.status_code, response.content[:300])
    appointment.patient.refresh_from_db()
    assert appointment.patient.muted_topics == ["care"] and appointment.patient.reminder_channels == ["email"]


def test_multipart_and_an_empty_form_are_read_and_other_bodies_change_nothing(client, page):
    appointment, base = page
    assert client.post(f"{base}/calendar/", {}).status_code == 303  # multipart with its boundary, no fields
    for path in ("cancel", "move/confirm", "preferences", "calendar"):
        response = client.generic("POST", f"{base}/{path}/", "{}", content_type="application/json")
        assert response.status_code == 415, (path, response.status_code)
        response = client.generic("POST", f"{base}/{path}/", b"")  # no Content-Type at all
        assert response.status_code == 415, (path, response.status_code)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    # A form with nothing in it, as a browser sends it: its Content-Type, no body (the test client names no
    # Content-Type for an empty body unless told).
    cancelled = client.generic("POST", f"{base}/cancel/", "", CONTENT_TYPE="application/x-www-form-urlencoded")
    assert cancelled.status_code == 303, cancelled.status_code
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED


def test_the_one_click_unsubscribe_is_not_a_patient_page(client, patient):
    """RFC 8058's POST goes to reminders.views.unsubscribe, which reads List-Unsubscribe=One-Click as before."""
    from reminders.consent import unsubscribe_token

    Patient.objects.filter(pk=patient.pk).update(email="pat@example.com", reminder_channels=["email"])
    token = unsubscribe_token(patient_id=patient.pk, channel="email")
    response = client.post(
        f"/reminders/unsubscribe/{token}/",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert ContactOptOut.objects.filter(patient=patient, channel="email").exists()


# ============================== 7. An e-mail event no database can store =========================================

SECRET = "dec9c:hook-secret"
AUTH = "Basic " + base64.b64encode(SECRET.encode()).decode()


@pytest.fixture
def events(settings, patient):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    Patient.objects.filter(pk=patient.pk).update(email="ada@example.com", reminder_channels=["email"])

    def send(provider: str, body):
        settings.EMAIL_BACKEND = f"anymail.backends.{provider}.EmailBackend"
        return client_post(provider, json.dumps(body))

    return send


def client_post(provider: str, body: str):
    from django.test import Client

    return Client().post(
        f"/reminders/email/{provider}/tracking/", body, content_type="application/json", HTTP_AUTHORIZATION=AUTH
    )


def email_on(patient) -> bool:
    patient.refresh_from_db()
    return "email" in patient.reminder_channels and not ContactOptOut.objects.filter(patient=patient).exists()


def postmark_complaint(**fields) -> dict:
    return {
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "ID": 42,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": "ada@example.com",
        "BouncedAt": "2026-03-02T09:00:00Z",
        "Metadata": {},
        **fields,
    }


def test_a_complaint_with_its_fields_left_empty_still_records(events, patient):
    assert events("postmark", postmark_complaint(Description=None, Details=None, MessageID=None)).status_code == 200
    assert not email_on(patient)


def test_a_complaint_is_recorded_whatever_the_providers_unstored_words_hold(events, patient):
    response = events("postmark", postmark_complaint(Details="spam filter said \x00 nothing"))
    assert response.status_code == 200, response.status_code
    assert not email_on(patient)


def test_an_unreadable_event_does_not_lose_the_rest_of_its_batch(events, patient):
    batch = [
        {"event": "delivered", "email": "bo@example.com", "timestamp": 1772442000, "response": "250 ok \x00"},
        {"event": "spamreport", "email": "ada@example.com", "timestamp": 1772442000, "sg_event_id": "e2"},
    ]
    response = events("sendgrid", batch)
    assert not email_on(patient), response.status_code


def test_a_sendgrid_batch_of_readable_events_records_each(events, patient):
    other = PatientFactory(clinic=patient.clinic, email="bo@example.com", reminder_channels=["email"])
    batch = [
        {"event": "delivered", "email": "bo@example.com", "timestamp": 1772442000, "response": "250 ok"},
        {"event": "spamreport", "email": "ada@example.com", "timestamp": 1772442000},
        {"event": "unsubscribe", "email": "bo@example.com", "timestamp": 1772442000},
    ]
    assert events("sendgrid", batch).status_code == 200
    assert not email_on(patient) and not email_on(other)


# ============================== 8. A line a visit's completion wrote, in the admin ================================


@pytest.fixture
def completed(patient, practitioner):
    """Pat's Botox of Monday 23 February at London, completed by a clinician: its history line."""
    with time_machine.travel(ldn(2026, 2, 20, 9), tick=False):
        visit = appointment_book(
            patient=patient,
            procedure_code="botox",
            start_at=ldn(2026, 2, 23),
            actor=RECEPTION,
            now=ldn(2026, 2, 20, 9),
            practitioner_id=practitioner.pk,
        ).appointment
    with time_machine.travel(ldn(2026, 2, 23, 11), tick=False):
        appointment_complete(appointment=visit, actor=CLINICIAN, now=ldn(2026, 2, 23, 11))
    return ProcedureRecord.objects.get(appointment=visit)


def test_a_completion_line_keeps_its_outcome_and_takes_a_note(admin_client, patient, completed, clock):
    """Posted with its treatment, time, area and source changed (a hand-made post: the page shows them disabled)
    and a note: the note is saved, the outcome stays; a removal is refused with nothing saved."""
    tampered = admin_post(
        admin_client,
        patient,
        edit={
            completed.pk: {
                "procedure": "filler",
                "performed_at_0": "2026-02-01",
                "source": "reported",
                "notes": "Mild bruising reported on day 2.",
            }
        },
    )
    assert tampered.status_code == 302, admin_errors(tampered)
    line = ProcedureRecord.objects.get(pk=completed.pk)
    assert (line.procedure_id, line.performed_at, line.source, line.notes) == (
        "botox",
        completed.performed_at,
        completed.source,
        "Mild bruising reported on day 2.",
    )
    refused = admin_post(admin_client, patient, delete=[completed.pk])
    assert refused.status_code == 200 and "cannot be removed" in refused.content.decode()
    assert ProcedureRecord.objects.filter(pk=completed.pk).exists()


def test_a_completion_line_moved_by_a_merge_is_kept_on_the_survivors_page(admin_client, patient, completed, clock):
    survivor = PatientFactory(clinic=patient.clinic, first_name="Pat", last_name="Lee")
    patient_merge(merged=patient, into=survivor, now=NOW, actor_label="dec9c", clinical=True)
    completed.refresh_from_db()
    assert completed.patient_id == survivor.pk and completed.appointment_id is not None
    refused = admin_post(admin_client, survivor, delete=[completed.pk])
    assert refused.status_code == 200 and "cannot be removed" in refused.content.decode()
    assert ProcedureRecord.objects.filter(pk=completed.pk).exists()
    assert PatientMerge.objects.filter(merged=patient).exists()
    tomb = admin_client.get(reverse("admin:clinic_patient_change", args=[patient.pk]))
    assert tomb.status_code == 200


def test_the_completed_visit_itself_cannot_be_deleted_in_the_admin(admin_client, completed):
    response = admin_client.post(
        reverse("admin:clinic_appointment_delete", args=[completed.appointment_id]), {"post": "yes"}
    )
    assert response.status_code == 403
    completed.refresh_from_db()
    assert completed.appointment_id is not None
