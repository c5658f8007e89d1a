"""Lost updates that can hurt a patient: a change made from a stale view of the record that silently erases what
someone else recorded meanwhile.

Every test opens a form (or GETs a resource) first, lets someone else change the record, and then submits what the
first screen held, as a browser or a platform would (the desk's forms are read from the rendered page, field by field).

Promises under test:

- /work/shared/domain.md section 3: a blood clotting disorder and an active skin infection are *absolute*
  contraindications for microneedling; section 6: "Whenever a patient's record changes ... every future active
  appointment ... is checked again ... Nothing is changed silently".
- /work/shared/api-contract.md: `PUT /patients/{id}/conditions/` replaces the intake; `PATCH /patients/{id}/`;
  docs/api.md ("A change that replaces what the record holds (PUT of the intake, PATCH of the patient or of a
  course) ... was made on a view of the old record"): said of merged records only; no ETag, If-Match or version
  field is promised anywhere. RFC 9110 section 13.1.1: a server that receives If-Match "MUST evaluate the
  condition"; a list of entity tags none of which matches the current representation is false (412).
- clinic/services.py PATIENT_CHOICES and frontdesk.forms.PatientForm: "saving a new surname must not switch texts
  back on"; "a contact choice only where the desk changed it (what was drawn against what is submitted, not against
  the record as it is now)"; clinic/admin.py PatientAdmin.save_model likewise.
- clinic/services.py medication_course_end: "Record the end of an ongoing course".

Written on 4 December; its nine defects were mended the same day (the desk's intake page and the API's intake PUT
with If-Match refuse a replacement made from an intake that changed since, as the API's PATCH of a patient or of a
course does; the desk's end-of-course form refuses a course ended meanwhile; the desk's patient edit and the
patient's own page save only what was changed on them; the admin's inline rows keep what they were drawn with,
leave a row alone that the admin did not change, and refuse, saying so, one changed meanwhile).

The world: the API's London clinic, Dr Ada and Pat Lee (tests/api/conftest.py); the clock stopped at the suite's
Monday, 2 March 2026, 09:00 London.
"""

from __future__ import annotations

from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from clinic.models import AppointmentStatus, MedicationCourse, Patient, PatientCondition, StaffRole
from clinic.services import IntakeLine, conditions_replace, medication_course_add, medication_course_end
from reminders import consent
from reminders.models import Channel, ContactOptIn, OptOutVia
from tests.qa.helpers import API, book, form_on, fresh, fresh_appointment, ldn, portal_page, staff_client, words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("message_outboxes", "clock")]


# --- Forms as a browser submits them ----------------------------------------------------------------------------


def desk_url(name: str, clinic, *args) -> str:
    return reverse(f"frontdesk:{name}", args=[clinic.code, *[getattr(a, "pk", a) for a in args]])


def intake(patient) -> set[tuple]:
    return {(c.condition_id, c.status, c.area_id) for c in PatientCondition.objects.filter(patient=patient)}


@pytest.fixture(autouse=True)
def _no_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def desk_a(clinic):
    """Receptionist A at the London desk."""
    return staff_client(clinic, StaffRole.RECEPTIONIST, "desk-a")


@pytest.fixture
def desk_b(clinic):
    """Clinician B at the London desk."""
    return staff_client(clinic, StaffRole.CLINICIAN, "clinician-b")


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser("qa-stale-root", "root@qa.example", "pw-for-qa-only-123")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def booked(patient, practitioner, clock):
    """Pat Lee has a filler allergy (history) on the intake and microneedling booked for Friday 20 March, confirmed."""
    conditions_replace(patient=patient, lines=[IntakeLine("filler_allergy", "history")])
    appointment = book(patient, ldn(2026, 3, 20), ldn(2026, 3, 2, 9))
    assert appointment.status == AppointmentStatus.CONFIRMED
    return appointment


# --- 1. The intake: the desk's form and the platform's PUT --------------------------------------------------------


def test_desk_intake_saved_from_a_stale_form_keeps_a_clotting_disorder_added_meanwhile(
    clinic, patient, booked, desk_a, desk_b
):
    """A opens the intake; B adds an active clotting disorder (absolute for microneedling: the booking goes to
    needs_review); A, still on the old page, dates the filler-allergy line and saves. B's line must stay."""
    history = desk_url("patient_history", clinic, patient)
    stale = form_on(desk_a.get(history), history)
    assert stale["conditions-0-condition"] == "filler_allergy"

    fresh_form = form_on(desk_b.get(history), history)
    fresh_form |= {"conditions-1-condition": "clotting_disorder", "conditions-1-status": "active"}
    assert desk_b.post(history, fresh_form).status_code == 302
    assert ("clotting_disorder", "active", None) in intake(patient)
    assert fresh_appointment(booked).status == AppointmentStatus.NEEDS_REVIEW

    stale["conditions-0-noted_on"] = "2019-05-01"
    response = desk_a.post(history, stale)

    # Found by this probe and mended on 4 December (it was: frontdesk/views/patients.py patient_history posts the whole list to clinic.services.conditions_replace,
    # which deletes every row and writes the page's lines back; nothing says what the page was drawn from. A's save
    # answers 302 "Medical history saved.", the clotting disorder is gone and the microneedling booking held for
    # review is released back to `confirmed` (its reminders go out) without anyone having been told.)
    assert ("clotting_disorder", "active", None) in intake(patient), (response.status_code, intake(patient))
    assert fresh_appointment(booked).status == AppointmentStatus.NEEDS_REVIEW


def _results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def test_api_intake_put_from_a_stale_get_keeps_a_skin_infection_added_meanwhile(
    clinic, patient, booked, clinical_api, desk_b
):
    """A platform GETs the intake, B records an active skin infection at the desk, the platform PUTs what it read
    with one line changed. Either B's line survives or the PUT is refused (412/409); it must not vanish silently."""
    path = f"{API}/patients/{patient.pk}/conditions/"
    read = clinical_api.get(path)
    lines = _results(read)
    assert lines == [{"condition": "filler_allergy", "status": "history", "area": None, "noted_on": None}]

    conditions_replace(
        patient=patient, lines=[IntakeLine("filler_allergy", "history"), IntakeLine("skin_infection", "active")]
    )
    assert fresh_appointment(booked).status == AppointmentStatus.NEEDS_REVIEW

    lines[0]["noted_on"] = "2019-05-01"
    headers = {"HTTP_IF_MATCH": read["ETag"]} if read.has_header("ETag") else {}
    response = clinical_api.put(path, lines, format="json", **headers)

    # Found by this probe and mended on 4 December (it was: api/views.py PatientConditionsApi.put has no precondition (no ETag on the GET, If-Match ignored, no
    # version field): the stale PUT answers 200, the active skin infection is erased and the booking released.)
    assert response.status_code in (409, 412) or ("skin_infection", "active", None) in intake(patient), (
        response.status_code,
        intake(patient),
    )
    assert fresh_appointment(booked).status == AppointmentStatus.NEEDS_REVIEW


def test_api_replacing_writes_honour_if_match(patient, clinical_api):
    """A careful platform sends If-Match with what it last read; a tag that is not the resource's current one must
    be a 412 (RFC 9110 13.1.1), not silently ignored. Tried on the three writes that replace what the record holds."""
    course = medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2025, 6, 1))
    writes = {
        "intake PUT": (
            f"{API}/patients/{patient.pk}/conditions/",
            "put",
            [{"condition": "eczema", "status": "history"}],
        ),
        "patient PATCH": (f"{API}/patients/{patient.pk}/", "patch", {"last_name": "Lee-Smith"}),
        "course PATCH": (f"{API}/patients/{patient.pk}/medications/{course.pk}/", "patch", {"ended_on": "2026-01-15"}),
    }
    answers = {}
    for operation, (path, method, body) in writes.items():
        read = clinical_api.get(path)
        assert read.status_code == 200
        response = getattr(clinical_api, method)(path, body, format="json", HTTP_IF_MATCH='"not-the-current-version"')
        answers[operation] = (read.get("ETag"), response.status_code)

    # Found by this probe and mended on 4 December (the intake PUT first, then both PATCHes): no operation of the
    # API sent an ETag or read If-Match: each stale precondition was answered 200 and the write applied, so a
    # platform had no way to avoid overwriting what another wrote meanwhile (RFC 9110: an If-Match that matches
    # nothing is a 412).
    assert all(status == 412 and etag for etag, status in answers.values()), answers


# --- 2. Contact and consent: a STOP or an unsubscribe meanwhile --------------------------------------------------


@pytest.fixture
def texted(patient):
    """Pat Lee gets reminders by e-mail and text, with SMS consent."""
    patient.reminder_channels, patient.sms_consent = ["email", "sms"], True
    patient.save()
    return patient


def test_desk_edit_saved_after_a_stop_keeps_texts_off(clinic, texted, desk_a):
    """The desk opens the edit form; the patient replies STOP; the desk saves a new e-mail address. Texts stay off."""
    edit = desk_url("patient_edit", clinic, texted)
    stale = form_on(desk_a.get(edit), edit)
    assert stale["sms_consent"] == "on" and stale["reminder_channels"] == ["email", "sms"]

    assert consent.sms_reply(from_number=texted.phone, body="STOP", now=ldn(2026, 3, 2, 9))

    stale["email"] = "pat.new@example.com"
    assert desk_a.post(edit, stale).status_code == 302
    texted = fresh(texted)
    assert texted.email == "pat.new@example.com"
    assert consent.channels_on(texted)["sms"] is False
    assert texted.reminder_channels == ["email"] and texted.sms_consent is False
    assert not ContactOptIn.objects.filter(patient=texted).exists()


def test_desk_edit_changing_email_choice_after_a_stop_keeps_texts_off(clinic, texted, desk_a):
    """The desk unticks e-mail (the patient asked, at the desk) on a form opened before their STOP: the list of
    channels is saved whole, but SMS consent stays as the STOP left it, so texts do not come back."""
    edit = desk_url("patient_edit", clinic, texted)
    stale = form_on(desk_a.get(edit), edit)
    assert consent.sms_reply(from_number=texted.phone, body="STOP", now=ldn(2026, 3, 2, 9))

    stale["reminder_channels"] = ["sms"]
    assert desk_a.post(edit, stale).status_code == 302
    assert consent.channels_on(fresh(texted)) == {"email": False, "sms": False}


def test_desk_edit_ticking_texts_on_a_stale_form_keeps_an_email_unsubscribe(clinic, patient, desk_a):
    """The patient (e-mail only) asks at the desk to be texted too; the desk ticks SMS and the consent box. Meanwhile
    the patient clicked the unsubscribe link in an e-mail. The desk did not touch e-mail: it must stay off."""
    edit = desk_url("patient_edit", clinic, patient)
    stale = form_on(desk_a.get(edit), edit)
    assert stale["reminder_channels"] == "email" and "sms_consent" not in stale

    assert consent.patient_opt_out(
        patient=patient, channel=Channel.EMAIL, via=OptOutVia.EMAIL_LINK, now=ldn(2026, 3, 2, 9)
    )
    assert consent.channels_on(fresh(patient))["email"] is False

    stale |= {"reminder_channels": ["email", "sms"], "sms_consent": "on"}
    assert desk_a.post(edit, stale).status_code == 302
    patient = fresh(patient)
    assert consent.channels_on(patient)["sms"] is True

    # Found by this probe and mended on 4 December (it was: PatientForm.patient_fields (frontdesk/forms.py) compares the channel *list* drawn with the list
    # submitted; once the desk changes one channel, the whole stale list is saved, so the e-mail the patient
    # unsubscribed from meanwhile is switched back on and recorded as a desk opt-in in the receptionist's name
    # (clinic/admin.py PatientAdmin.save_model does the same).)
    assert consent.channels_on(patient)["email"] is False, (
        patient.reminder_channels,
        list(ContactOptIn.objects.filter(patient=patient, channel="email").values_list("via", "detail")),
    )


def test_desk_edit_from_a_stale_form_keeps_a_phone_number_changed_meanwhile(clinic, texted, api, desk_a):
    """A platform records the patient's new mobile (PATCH) while the desk's edit form is open; the desk saves a new
    surname. The texts must go to the new number, not back to the old one."""
    edit = desk_url("patient_edit", clinic, texted)
    stale = form_on(desk_a.get(edit), edit)
    response = api.patch(f"{API}/patients/{texted.pk}/", {"phone": "+447400123456"}, format="json")
    assert response.status_code == 200, response.content

    stale["last_name"] = "Lee-Smith"
    assert desk_a.post(edit, stale).status_code == 302
    texted = fresh(texted)
    assert texted.last_name == "Lee-Smith"

    # Found by this probe and mended on 4 December (it was: frontdesk/views/patients.py patient_edit saves every contact field the stale page held (only the
    # patient's *choices* are compared with what was drawn): the old number +447911123456 is written back and the
    # reminders (with treatment and care details) go to a number the patient gave up, without a word to the desk.)
    assert texted.phone == "+447400123456", texted.phone


def test_admin_save_after_a_stop_keeps_texts_off(texted, admin_client):
    """The admin's change form opened before the STOP, saved with a new surname: texts stay off."""
    change = reverse("admin:clinic_patient_change", args=[texted.pk])
    stale = form_on(admin_client.get(change), change)
    assert consent.sms_reply(from_number=texted.phone, body="STOP", now=ldn(2026, 3, 2, 9))

    stale["last_name"] = "Lee-Admin"
    response = admin_client.post(change, stale)
    assert response.status_code == 302, words(response)[:600]
    texted = fresh(texted)
    assert texted.last_name == "Lee-Admin" and consent.channels_on(texted)["sms"] is False


def test_admin_channels_changed_on_a_stale_page_keep_an_email_unsubscribe(texted, admin_client):
    """The admin's page was drawn with e-mail and texts on; the patient unsubscribed from e-mail meanwhile; the admin
    switches texts off (the patient asked). What the admin changed is applied to the channels as they are now:
    e-mail stays off too (the list was saved whole, switching e-mail back on)."""
    change = reverse("admin:clinic_patient_change", args=[texted.pk])
    stale = form_on(admin_client.get(change), change)
    Patient.objects.filter(pk=texted.pk).update(reminder_channels=["sms"])  # the unsubscribe, meanwhile

    stale["reminder_channels"] = '["email"]'
    response = admin_client.post(change, stale)
    assert response.status_code == 302, words(response)[:600]
    assert fresh(texted).reminder_channels == []


def test_portal_preferences_saved_after_a_stop_keep_texts_off(patient, texted, booked):
    """The patient's own page, opened before their STOP, saved with reminders muted: texts stay off (switching
    them back on needs the consent box, which the page drawn with texts on does not show)."""
    page, prefs = portal_page(booked), portal_page(booked, "preferences")
    client = Client()
    stale = form_on(client.get(page), prefs)
    assert stale.get("sms") == "on" and "sms_consent" not in stale
    assert consent.sms_reply(from_number=texted.phone, body="STOP", now=ldn(2026, 3, 2, 9))

    stale.pop("reminders", None)
    response = client.post(prefs, stale)
    assert response.status_code in (303, 400), response.status_code
    assert consent.channels_on(fresh(texted))["sms"] is False


def test_portal_preferences_saved_from_a_stale_page_keep_an_email_unsubscribe(patient, booked):
    """The patient has their appointment page open, clicks "unsubscribe" in an e-mail, then mutes care
    instructions on the page still open. E-mail, untouched on the page, must stay off."""
    page, prefs = portal_page(booked), portal_page(booked, "preferences")
    client = Client()
    stale = form_on(client.get(page), prefs)
    assert stale.get("email") == "on"
    assert consent.patient_opt_out(
        patient=patient, channel=Channel.EMAIL, via=OptOutVia.EMAIL_LINK, now=ldn(2026, 3, 2, 9)
    )

    stale.pop("care", None)
    assert client.post(prefs, stale).status_code == 303
    patient = fresh(patient)
    assert "care" in patient.muted_topics

    # Found by this probe and mended on 4 December (it was: portal/views.py preferences passes every box as submitted to reminders.consent.
    # patient_preferences_update, which compares it with the record as it is now, not with what the page was drawn
    # with (the desk and the admin keep what their user left alone): the unsubscribe is undone and an opt-in
    # "via patient_page" recorded that the patient never made. Lower harm (e-mail, the patient's own page).)
    assert consent.channels_on(patient)["email"] is False, patient.reminder_channels


# --- 3. Medication courses ended or edited from two places --------------------------------------------------------


@pytest.fixture
def isotretinoin(patient):
    return medication_course_add(patient=patient, drug_code="isotretinoin", started_on=date(2025, 6, 1))


def test_desk_end_of_course_from_a_stale_page_does_not_overwrite_an_end_recorded_meanwhile(
    clinic, patient, isotretinoin, clinical_api, desk_a
):
    """The desk's page shows the isotretinoin course ongoing (with "Record end"); a clinician's platform records
    its end on 20 February 2026; the receptionist, on the old page, records 1 December 2025 (what the patient
    first said). The form exists only for an ongoing course: the second end must be refused, not written over."""
    history = desk_url("patient_history", clinic, patient)
    end = desk_url("medication_end", clinic, patient, isotretinoin)
    stale = form_on(desk_a.get(history), end)

    response = clinical_api.patch(
        f"{API}/patients/{patient.pk}/medications/{isotretinoin.pk}/", {"ended_on": "2026-02-20"}, format="json"
    )
    assert response.status_code == 200, response.content

    stale[f"end-{isotretinoin.pk}-ended_on"] = "2025-12-01"
    response = desk_a.post(end, stale)
    assert response.status_code != 500

    # Found by this probe and mended on 4 December (it was: clinic.services.medication_course_end ("Record the end of an ongoing course") never checks that the
    # course is still ongoing, and the desk's form carries nothing of what it was drawn from: the 302 "End of the
    # isotretinoin course recorded." moves the end 81 days earlier, and with it the 6-month microneedling block
    # (from 20 August to 1 June 2026).)
    assert fresh(isotretinoin).ended_on == date(2026, 2, 20), (response.status_code, fresh(isotretinoin).ended_on)


def test_admin_inline_save_from_a_stale_page_keeps_a_course_end_corrected_meanwhile(
    patient, isotretinoin, admin_client
):
    """The course ended 1 December 2025; the admin's change page is opened; a clinician corrects the end to
    20 February 2026 at the desk; the admin, on the old page, changes the patient's surname and saves."""
    medication_course_end(course=isotretinoin, ended_on=date(2025, 12, 1))
    change = reverse("admin:clinic_patient_change", args=[patient.pk])
    stale = form_on(admin_client.get(change), change)

    medication_course_end(course=fresh(isotretinoin), ended_on=date(2026, 2, 20))

    stale["last_name"] = "Lee-Admin"
    response = admin_client.post(change, stale)
    assert response.status_code == 302, words(response)[:600]

    # Found by this probe and mended on 4 December (clinic.forms.StaleRowsFormSet): the admin's inline rows carried
    # nothing of what the page was drawn with: Django's inline formset saw the submitted 2025-12-01 differ from the
    # row's 2026-02-20 and wrote it back; the correction was undone and microneedling allowed from 1 June instead
    # of 20 August 2026.
    assert fresh(isotretinoin).ended_on == date(2026, 2, 20), fresh(isotretinoin).ended_on
    assert fresh(patient).last_name == "Lee-Admin"


def test_admin_changing_a_course_someone_changed_meanwhile_is_refused_with_what_changed(
    patient, isotretinoin, admin_client
):
    """The admin edits the course's notes on a page opened before a clinician corrected its end: the row is refused
    (it would have been saved whole, with the old end), the page says which field changed, and nothing is saved."""
    medication_course_end(course=isotretinoin, ended_on=date(2025, 12, 1))
    change = reverse("admin:clinic_patient_change", args=[patient.pk])
    stale = form_on(admin_client.get(change), change)
    medication_course_end(course=fresh(isotretinoin), ended_on=date(2026, 2, 20))

    [notes] = [name for name in stale if name.startswith("medication_courses-0-notes")]
    stale[notes], stale["last_name"] = "Seen by the dermatologist.", "Lee-Admin"
    response = admin_client.post(change, stale)

    assert response.status_code == 200
    page = words(response)
    assert "Someone changed this row since the page was opened (Ended on)" in page, page[:800]
    course = fresh(isotretinoin)
    assert (course.ended_on, course.notes) == (date(2026, 2, 20), isotretinoin.notes)
    assert fresh(patient).last_name == "Lee"

    # Reloaded, the same change goes through, on the course as it is now.
    again = form_on(admin_client.get(change), change)
    again[notes] = "Seen by the dermatologist."
    assert admin_client.post(change, again).status_code == 302
    course = fresh(isotretinoin)
    assert (course.ended_on, course.notes) == (date(2026, 2, 20), "Seen by the dermatologist.")


def _admin_save_over_a_rewritten_intake(patient, admin_client, *, keep_filler_allergy: bool = True):
    """The admin's change page is opened; B adds an active clotting disorder at the desk (keeping the filler allergy
    line the page shows, or replacing it); the admin, on the old page, changes the surname and saves. The answer."""
    change = reverse("admin:clinic_patient_change", args=[patient.pk])
    stale = form_on(admin_client.get(change), change)
    kept = [IntakeLine("filler_allergy", "history")] if keep_filler_allergy else []
    conditions_replace(patient=patient, lines=[*kept, IntakeLine("clotting_disorder", "active")])
    stale["last_name"] = "Lee-Admin"
    return admin_client.post(change, stale)


def test_admin_intake_inline_saved_from_a_stale_page_keeps_a_clotting_disorder_added_meanwhile(
    patient, booked, admin_client
):
    """B's line is kept whatever the stale page holds. Since 6 December an intake saved keeps the rows of the lines it
    leaves as they were (clinic.services.conditions_replace), so a page showing only those is not stale for them: the
    admin's surname goes through, and the line added meanwhile stays, its booking still held for review."""
    response = _admin_save_over_a_rewritten_intake(patient, admin_client)
    assert response.status_code == 302
    assert ("clotting_disorder", "active", None) in intake(patient)
    assert ("filler_allergy", "history", None) in intake(patient)
    assert fresh(patient).last_name == "Lee-Admin"
    assert fresh_appointment(booked).status == AppointmentStatus.NEEDS_REVIEW


def test_admin_intake_inline_saved_over_a_line_removed_meanwhile_is_refused(patient, booked, admin_client):
    """The admin's stale page names a line B removed (replaced by a clotting disorder): refused (the row it names is
    gone), not a 500; B's line is kept, the surname not saved."""
    response = _admin_save_over_a_rewritten_intake(patient, admin_client, keep_filler_allergy=False)
    assert response.status_code == 200
    assert "Please correct the error" in words(response)  # "the errors below", now with what they are
    assert intake(patient) == {("clotting_disorder", "active", None)}
    assert fresh(patient).last_name == "Lee"
    assert fresh_appointment(booked).status == AppointmentStatus.NEEDS_REVIEW


def test_admin_stale_intake_save_says_what_to_correct(patient, booked, admin_client):
    """The refusal names something the admin can act on (reload the page)."""
    response = _admin_save_over_a_rewritten_intake(patient, admin_client, keep_filler_allergy=False)
    [conditions] = [x.formset for x in response.context["inline_admin_formsets"] if x.formset.prefix == "conditions"]
    assert conditions.errors[0] == {"id": ["Select a valid choice. That choice is not one of the available choices."]}

    # Found by this probe and mended on 4 December (clinic.forms.StaleRowsFormSet): the error was only on each stale
    # row's hidden `id` field, which Django's tabular inline never displays: the page said "Please correct the error
    # below." and showed no error anywhere; the admin could not tell that the intake changed meanwhile, and saving
    # again failed the same way until the page was reloaded. (Until 6 December clinic.services.conditions_replace
    # gave every line a new row on each save, so an intake saved anywhere made every open admin page stale; now a
    # line removed or changed meanwhile does.)
    assert 'class="errorlist' in response.content.decode(), "no error shown on the page"
    assert "were changed or removed since it was opened: nothing was saved. Reload the page" in words(response)


def test_admin_save_from_a_stale_page_keeps_a_procedure_reported_meanwhile(patient, clinical_api, admin_client):
    """The admin's change page is opened; a platform records microneedling done elsewhere last week; the admin saves
    a new surname. The history is added to, never replaced: the reported procedure stays."""
    change = reverse("admin:clinic_patient_change", args=[patient.pk])
    stale = form_on(admin_client.get(change), change)
    response = clinical_api.post(
        f"{API}/patients/{patient.pk}/procedures/",
        {"procedure": "microneedling", "performed_at": "2026-02-24T10:00:00+00:00"},
        format="json",
    )
    assert response.status_code == 201, response.content

    stale["last_name"] = "Lee-Admin"
    response = admin_client.post(change, stale)
    assert response.status_code == 302, words(response)[:600]
    assert list(patient.procedure_records.values_list("procedure_id", flat=True)) == ["microneedling"]


# --- 4. A stale save at the desk is an answer, not a 500 ---------------------------------------------------------


def test_desk_stale_saves_of_a_record_gone_meanwhile_answer_clearly(clinic, patient, isotretinoin, desk_a):
    """The course deleted in the admin while the desk's page was open: recording its end is a 404 page, not a 500."""
    history = desk_url("patient_history", clinic, patient)
    end = desk_url("medication_end", clinic, patient, isotretinoin)
    stale = form_on(desk_a.get(history), end)
    MedicationCourse.objects.filter(pk=isotretinoin.pk).delete()
    stale[f"end-{isotretinoin.pk}-ended_on"] = "2026-02-20"
    response = desk_a.post(end, stale)
    assert response.status_code == 404
